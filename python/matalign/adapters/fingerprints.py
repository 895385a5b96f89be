"""Cheminformatics baselines on SMILES (RDKit): Morgan fingerprints and the RDKit descriptors.

Both parse each SMILES with RDKit; a string RDKit cannot parse raises ``ValueError`` naming the
structure id. The same molecule written as different SMILES gives the same vector.

Examples
--------
>>> from matalign.adapters.fingerprints import Morgan
>>> from matalign.structures import Structure
>>> fp = Morgan()
>>> x = fp.embed([Structure("ethanol", smiles="CCO"), Structure("ethanol-2", smiles="OCC")])
>>> x.shape, bool((x[0] == x[1]).all()), sorted(set(x.ravel().tolist()))
((2, 2048), True, [0.0, 1.0])
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..structures import Structure
from ._base import Adapter, require

__all__ = ["Morgan", "RDKitDescriptors", "parse_smiles", "DESCRIPTOR_CLIP"]

#: RDKit descriptors are clipped to ±DESCRIPTOR_CLIP (float32 holds up to 3.4e38).
DESCRIPTOR_CLIP = 1e30


def parse_smiles(s: Structure, adapter: str):
    """Parse ``s.smiles`` with RDKit; ``ValueError`` naming ``s.id`` if RDKit cannot.

    RDKit's own error log for the failed parse is silenced.

    Examples
    --------
    >>> from matalign.adapters.fingerprints import parse_smiles
    >>> from matalign.structures import Structure
    >>> parse_smiles(Structure("m", smiles="c1ccccc1O"), "morgan").GetNumAtoms()
    7
    """
    require("rdkit", "rdkit", extra="chem")
    from rdkit import Chem, rdBase

    with rdBase.BlockLogs():
        mol = Chem.MolFromSmiles(s.smiles) if s.smiles.strip() else None
    if mol is None:
        raise ValueError(f"adapter {adapter!r}: structure {s.id!r} has a SMILES that RDKit "
                         f"cannot parse: {s.smiles!r}")
    return mol


class Morgan(Adapter):
    """Morgan (ECFP-like) fingerprint from RDKit's ``rdFingerprintGenerator``.

    Parameters
    ----------
    radius : int
        Morgan radius (default 2, i.e. ECFP4).
    n_bits : int
        Fingerprint length (default 2048).
    counts : bool
        False (default): 0/1 bits as float. True: hashed environment counts.
    pooling : {'mean'}
        Accepted for the common interface; a fingerprint is already one vector per molecule.

    Examples
    --------
    >>> from matalign.adapters.fingerprints import Morgan
    >>> from matalign.structures import Structure
    >>> x = Morgan(counts=True, n_bits=64).embed([Structure("m", smiles="CCCC")])
    >>> x.shape, float(x.max()) >= 1.0
    ((1, 64), True)
    """

    name = "morgan"
    modality = "smiles"
    package = "rdkit"

    def __init__(self, *, radius: int = 2, n_bits: int = 2048, counts: bool = False,
                 pooling: str = "mean") -> None:
        super().__init__(pooling=pooling)
        if int(radius) < 0 or int(n_bits) < 1:
            raise ValueError(f"radius must be >= 0 and n_bits >= 1, got {radius}, {n_bits}")
        require("rdkit", "rdkit", extra="chem")
        from rdkit.Chem import rdFingerprintGenerator

        self.radius, self.dim, self.counts = int(radius), int(n_bits), bool(counts)
        self.layer = f"Morgan radius {self.radius} ({'counts' if self.counts else 'bits'})"
        self._gen = rdFingerprintGenerator.GetMorganGenerator(radius=self.radius,
                                                              fpSize=self.dim)

    def _embed_batch(self, batch: list[Structure]) -> np.ndarray:
        out = np.empty((len(batch), self.dim), dtype=np.float32)
        for i, s in enumerate(batch):
            mol = parse_smiles(s, self.name)
            fp = (self._gen.GetCountFingerprintAsNumPy(mol) if self.counts
                  else self._gen.GetFingerprintAsNumPy(mol))
            out[i] = fp
        return out

    def _extra_metadata(self) -> dict[str, Any]:
        return {"radius": self.radius, "n_bits": self.dim, "counts": self.counts}


class RDKitDescriptors(Adapter):
    """All RDKit 2D descriptors (``Descriptors.CalcMolDescriptors``), 217 in RDKit 2026.9.

    Values are raw (MolWt in Da, TPSA in Å², counts, ...), with one deterministic rule so the
    output is always finite: a descriptor RDKit fails to compute (None), NaN, or infinite
    becomes 0, and every value is clipped to ``±DESCRIPTOR_CLIP`` (1e30; this only bites on
    ``Ipc`` of very large molecules). The scales differ by many orders of magnitude, so
    standardise before comparing (``matalign.preprocess``).

    Parameters
    ----------
    pooling : {'mean'}
        Accepted for the common interface.

    Attributes
    ----------
    names : list of str
        Descriptor names, in column order.

    Examples
    --------
    >>> from matalign.adapters.fingerprints import RDKitDescriptors
    >>> from matalign.structures import Structure
    >>> d = RDKitDescriptors()
    >>> x = d.embed([Structure("ethanol", smiles="CCO")])
    >>> round(float(x[0, d.names.index("MolWt")]), 2)
    46.07
    """

    name = "rdkit-descriptors"
    modality = "smiles"
    package = "rdkit"
    layer = "RDKit 2D descriptors"

    def __init__(self, *, pooling: str = "mean") -> None:
        super().__init__(pooling=pooling)
        require("rdkit", "rdkit", extra="chem")
        from rdkit.Chem import Descriptors

        self._desc = Descriptors
        self.names = [n for n, _ in Descriptors._descList]
        self.dim = len(self.names)

    def _embed_batch(self, batch: list[Structure]) -> np.ndarray:
        from rdkit import rdBase

        out = np.empty((len(batch), self.dim), dtype=np.float64)
        for i, s in enumerate(batch):
            mol = parse_smiles(s, self.name)
            with rdBase.BlockLogs():
                vals = self._desc.CalcMolDescriptors(mol, missingVal=np.nan)
            out[i] = [np.nan if vals.get(n) is None else float(vals[n]) for n in self.names]
        out[~np.isfinite(out)] = 0.0
        np.clip(out, -DESCRIPTOR_CLIP, DESCRIPTOR_CLIP, out=out)
        return out.astype(np.float32)

    def _extra_metadata(self) -> dict[str, Any]:
        return {"names": list(self.names),
                "non_finite_rule": f"None/NaN/inf -> 0, then clip to +-{DESCRIPTOR_CLIP:g}"}
