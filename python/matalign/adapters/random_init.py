"""Random-init baselines: real MLIP architectures with freshly initialised weights.

The paper's random-initialisation control: the same architecture, graph construction,
layer and pooling as the trained adapter, but weights drawn from the architecture's own
initialisers under ``torch.manual_seed(seed)`` (the caller's RNG state is left untouched).
The same seed gives the same weights and features; the metadata records
``random_init: True`` and the seed.

- ``random-chgnet``: CHGNet 0.3.0 architecture (64-d, last atom-conv layer).
- ``random-sevennet``: SevenNet-0 architecture (128-d, input of ``reduce_input_to_hidden``);
  the convolutions' neighbour-count normalisers (a dataset statistic, not a learned weight)
  are taken from the trained checkpoint, since a random model would otherwise divide by 0.

Examples
--------
>>> import matalign as ma
>>> ma.adapters.info("random-chgnet").family
'random'
>>> ad = ma.adapters.get("random-chgnet", seed=1)   # doctest: +SKIP
>>> ad.metadata["random_init"], ad.metadata["seed"]   # doctest: +SKIP
(True, 1)
"""

from __future__ import annotations

from typing import Any

from .chgnet import CHGNetAdapter
from .sevennet import SevenNetAdapter

__all__ = ["random_chgnet", "random_sevennet"]


def random_chgnet(seed: int = 0, model: str = "0.3.0", **options: Any) -> CHGNetAdapter:
    """CHGNet architecture of checkpoint ``model`` with fresh weights from ``seed``."""
    return CHGNetAdapter(model, random_init=True, seed=seed, **options)


def random_sevennet(seed: int = 0, model: str = "7net-0", **options: Any) -> SevenNetAdapter:
    """SevenNet architecture of checkpoint ``model`` with fresh weights from ``seed``."""
    return SevenNetAdapter(model, random_init=True, seed=seed, **options)
