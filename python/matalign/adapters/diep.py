"""DIEP adapter (``diep`` wheel ships ``pretrained_models/diep_fold1``, MatPES r²SCAN; offline).

Features are the 64-d node features after a graph-convolution block, read with
``model.predict_structure(structure, return_features=True, output_layers=[layer])``; the
default ``layer='gc_3'`` is the last block (``gc_1``, ``gc_2`` are earlier ones). DIEP has no
batched feature API, so structures run one at a time.

Molecules (``pbc=False``) are put in a periodic orthorhombic box: each side the molecule's
extent plus ``vacuum`` (default 6 Å, above DIEP's 5 Å cutoff). Keep it small: DIEP's graph
building is slow in large vacuum cells.

DIEP is a new package (2026) with one published model; treat it as a bonus model.

Examples
--------
>>> import matalign as ma
>>> ma.adapters.info("diep").dim
64
>>> from ase.build import bulk
>>> from matalign.structures import Structure
>>> ad = ma.adapters.get("diep")   # doctest: +SKIP
>>> ad.embed([Structure("si", atoms=bulk("Si"))]).shape   # doctest: +SKIP
(1, 64)
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from ..structures import Structure
from ._base import Adapter, pool, require
from ._mlip_common import atoms_of, boxed, check_elements, package_file, quiet

__all__ = ["DIEPAdapter"]

_MODEL_DIR = ("pretrained_models", "diep_fold1")


class DIEPAdapter(Adapter):
    """DIEP node features after a graph-convolution block, pooled per structure.

    Parameters
    ----------
    layer : {'gc_3', 'gc_2', 'gc_1'}
    pooling : {'mean', 'sum', 'max'}
    vacuum : float
        Padding (Å) added to a molecule's extent on each box side.
    device : str
    name : str or None
    """

    modality = "atoms"
    dim = 64
    package = "diep"

    def __init__(self, *, layer: str = "gc_3", pooling: str = "mean", vacuum: float = 6.0,
                 device: str = "cpu", name: str | None = None) -> None:
        super().__init__(pooling=pooling)
        if not float(vacuum) > 0:
            raise ValueError(f"vacuum must be positive (Å), got {vacuum!r}")
        with quiet():
            require("diep", extra="mlip")
        with quiet():
            import diep.pretrained

        model_dir = package_file("diep", *_MODEL_DIR)
        with quiet():
            pot = diep.pretrained.load_potential(model_dir, device=device, stress=False)
        self._model = pot.model.eval()
        allowed = [f"gc_{i + 1}" for i in range(self._model.n_blocks)]
        if layer not in allowed:
            raise ValueError(f"layer must be one of {allowed}, got {layer!r}")
        self.layer = f"{layer} node features (graph-convolution block {layer[3:]} of "\
                     f"{self._model.n_blocks})"
        self.layer_name = layer
        self.vacuum = float(vacuum)
        self.device = device
        self.name = name or "diep"
        self.checkpoint = os.path.join(model_dir, "state.pt")
        from ase.data import atomic_numbers
        self._known = {atomic_numbers[e] for e in self._model.element_types}

    def _extra_metadata(self) -> dict[str, Any]:
        return {"model_dir": os.path.dirname(self.checkpoint), "box_vacuum_A": self.vacuum}

    def atom_features(self, batch: list[Structure]) -> tuple[np.ndarray, list[int]]:
        """Per-atom features of a batch (all atoms concatenated) and the atoms per structure."""
        import torch
        from pymatgen.io.ase import AseAtomsAdaptor

        feats, counts = [], []
        for s in batch:
            atoms = boxed(atoms_of(s, self.name), self.vacuum)
            check_elements(s, atoms.get_atomic_numbers(), self._known, self.name,
                           what=f"{len(self._known)} elements")
            atoms.wrap()
            struct = AseAtomsAdaptor.get_structure(atoms)
            with torch.no_grad():
                out = self._model.predict_structure(struct, return_features=True,
                                                    output_layers=[self.layer_name])
            feats.append(out[self.layer_name]["node_feat"].detach().cpu().numpy())
            counts.append(len(atoms))
        return np.concatenate(feats), counts

    def _embed_batch(self, batch: list[Structure]) -> np.ndarray:
        feats, counts = self.atom_features(batch)
        return pool(feats, counts, self.pooling)


def diep_adapter(**options: Any) -> DIEPAdapter:
    """Factory used by the registry (``diep``)."""
    return DIEPAdapter(**options)
