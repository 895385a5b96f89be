"""The built-in adapters. One ``register`` call per name; modules are imported on ``get``.

Adapter modules (one per family) own their entries' ``target`` factories.
"""

from __future__ import annotations

from . import register

# Filled by the adapter modules' authors: e.g.
# register("morgan", modality="smiles", dim=2048, offline=True, family="descriptor",
#          package="rdkit", extra="chem", target="descriptors:Morgan", radius=2, n_bits=2048)
from . import _registry_mlip  # noqa: E402,F401  (MLIP adapters, issue 5)
from . import _registry_baselines  # noqa: E402,F401
from . import _registry_protein  # noqa: E402,F401  (ProteinMPNN)
