"""Bring-your-own-checkpoint MLIP adapters: MACE, Orb, MatterSim, fairchem (UMA/eSEN/EqV2).

The weights of these models live on hubs (GitHub releases, S3, Hugging Face; UMA is gated).
matalign never downloads and never calls a package's default-name loader: each adapter takes
``checkpoint=PATH`` to a file you fetched yourself. Without it, a ValueError names the file
that is expected; a path that does not exist raises FileNotFoundError; a missing package
raises ImportError naming the pip package. The checkpoint is checked before the package is
imported.

========== ==================== ================================================================
adapter    package              features (per atom, pooled per structure)
========== ==================== ================================================================
mace       mace-torch           ``MACECalculator(model_paths=...).get_descriptors(atoms,
                                invariants_only=True, num_layers=-1)``: the invariant (l=0)
                                node features of all interaction layers, concatenated
orb        orb-models           ``model.model(batch)["node_features"]`` (last message-passing
                                layer), model built by ``orb_models.forcefield.pretrained.<arch>
                                (weights_path=...)``
mattersim  mattersim            input of ``model.model.final`` (the per-atom GatedMLP readout),
                                ``Potential.from_checkpoint(load_path=...)``
fairchem   fairchem-core        l=0 slice ``[:, 0, :]`` of the backbone's ``node_embedding``,
                                ``fairchem.core.units.mlip_unit.load_predict_unit(path)``
========== ==================== ================================================================

The dimension depends on the checkpoint: it is measured once at load time on a water
molecule (in a box for models that need a cell).

These adapters were written against the packages' documented APIs (mace-torch 0.3.16,
orb-models 0.5.5, mattersim 1.2.3, fairchem-core 2.x) but could not be run here: none of
the packages is installed in the development environment (mace-torch pins e3nn 0.4.4, which
conflicts with sevenn), and their weights are not available offline.

Examples
--------
>>> import matalign as ma
>>> ma.adapters.info("mace").offline
False
>>> ma.adapters.get("mace")
Traceback (most recent call last):
...
ValueError: adapter 'mace' needs checkpoint=PATH: a MACE .model file ...
"""

from __future__ import annotations

import contextlib
import os
from typing import Any

import numpy as np

from ..structures import Structure
from ._base import Adapter, checkpoint_path, pool, require
from ._mlip_common import atoms_of, boxed, quiet

__all__ = ["MACEAdapter", "OrbAdapter", "MatterSimAdapter", "FairChemAdapter"]


class _BYOAdapter(Adapter):
    """Shared logic: checkpoint check first, then the package, then load, then probe dim."""

    modality = "atoms"
    expected = ""
    module = ""            # import name
    periodic_only = False  # needs a cell: molecules are boxed

    def __init__(self, *, checkpoint: str | os.PathLike | None = None, pooling: str = "mean",
                 device: str = "cpu", vacuum: float = 8.0, name: str | None = None) -> None:
        super().__init__(pooling=pooling)
        self.name = name or self.name
        path = checkpoint_path(checkpoint, adapter=self.name, expected=self.expected)
        with quiet():
            require(self.module, pip_name=self.package)
        self.checkpoint = os.path.abspath(path)
        self.device = device
        self.vacuum = float(vacuum)
        with quiet():
            self._load()
        self.dim = self._probe_dim()

    def _load(self) -> None:
        raise NotImplementedError

    def _atom_features_one(self, atoms) -> np.ndarray:
        raise NotImplementedError

    def _prepare(self, structure: Structure):
        atoms = atoms_of(structure, self.name)
        return boxed(atoms, self.vacuum) if self.periodic_only else atoms.copy()

    def _probe_dim(self) -> int:
        from ase.build import molecule

        probe = Structure("probe", atoms=molecule("H2O"))
        return int(self._atom_features_one(self._prepare(probe)).shape[1])

    def _extra_metadata(self) -> dict[str, Any]:
        return {"box_vacuum_A": self.vacuum if self.periodic_only else None}

    def atom_features(self, batch: list[Structure]) -> tuple[np.ndarray, list[int]]:
        """Per-atom features of a batch (all atoms concatenated) and the atoms per structure."""
        import torch

        feats, counts = [], []
        for s in batch:
            atoms = self._prepare(s)
            with torch.no_grad() if self._no_grad else contextlib.nullcontext():
                f = self._atom_features_one(atoms)
            feats.append(np.asarray(f, dtype=np.float64))
            counts.append(len(atoms))
        return np.concatenate(feats), counts

    _no_grad = True

    def _embed_batch(self, batch: list[Structure]) -> np.ndarray:
        feats, counts = self.atom_features(batch)
        return pool(feats, counts, self.pooling)


class MACEAdapter(_BYOAdapter):
    """MACE (MACE-MP, MACE-OFF, MACE-OMAT, ...) from a local ``.model`` file.

    Parameters
    ----------
    checkpoint : path
        A MACE ``.model`` file, e.g. ``2023-12-10-mace-128-L0_energy_epoch-249.model`` or
        ``MACE-OFF23_small.model``.
    num_layers : int
        Passed to ``get_descriptors``: -1 concatenates the invariant features of all
        interaction layers (MACE's recommended descriptor); 1 keeps the first layer only.
    pooling, device, name
        As for every adapter.
    """

    name = "mace"
    package = "mace-torch"
    module = "mace"
    expected = ("a MACE .model file such as 2023-12-10-mace-128-L0_energy_epoch-249.model "
                "(MACE-MP-0) or MACE-OFF23_small.model")
    layer = "get_descriptors(invariants_only=True): l=0 node features of the interaction layers"
    _no_grad = False   # the calculator manages autograd itself

    def __init__(self, *, checkpoint=None, num_layers: int = -1, **kw: Any) -> None:
        self.num_layers = int(num_layers)
        super().__init__(checkpoint=checkpoint, **kw)

    def _load(self) -> None:
        from mace.calculators import MACECalculator

        self._calc = MACECalculator(model_paths=self.checkpoint, device=self.device,
                                    default_dtype="float64")

    def _atom_features_one(self, atoms) -> np.ndarray:
        return self._calc.get_descriptors(atoms, invariants_only=True,
                                          num_layers=self.num_layers)


class OrbAdapter(_BYOAdapter):
    """Orb v2/v3 from a local weights file.

    Parameters
    ----------
    checkpoint : path
        An Orb ``.ckpt`` file, e.g. ``orb-v3-conservative-inf-omat-20250404.ckpt``.
    architecture : str
        Name of the builder in ``orb_models.forcefield.pretrained`` that matches the file,
        e.g. ``"orb_v3_conservative_inf_omat"`` or ``"orb_v2"``; it is called with
        ``weights_path=checkpoint`` (a local path, so nothing is downloaded).
    pooling, device, name
    """

    name = "orb"
    package = "orb-models"
    module = "orb_models"
    expected = ("an Orb weights file such as orb-v3-conservative-inf-omat-20250404.ckpt "
                "(pass architecture= the matching orb_models.forcefield.pretrained builder)")
    layer = "node_features of the backbone (last message-passing layer)"

    def __init__(self, *, checkpoint=None, architecture: str = "orb_v3_conservative_inf_omat",
                 **kw: Any) -> None:
        self.architecture = architecture
        super().__init__(checkpoint=checkpoint, **kw)

    def _load(self) -> None:
        from orb_models.forcefield import pretrained

        builder = getattr(pretrained, self.architecture, None)
        if builder is None:
            raise ValueError(f"orb_models.forcefield.pretrained has no builder "
                             f"{self.architecture!r}")
        self._orb = builder(weights_path=self.checkpoint, device=self.device).eval()

    def _atom_features_one(self, atoms) -> np.ndarray:
        from orb_models.forcefield import atomic_system

        graph = atomic_system.ase_atoms_to_atom_graphs(
            atoms, system_config=self._orb.system_config, device=self.device)
        out = self._orb.model(graph)
        return out["node_features"].detach().cpu().numpy()

    def _extra_metadata(self) -> dict[str, Any]:
        return {**super()._extra_metadata(), "architecture": self.architecture}


class MatterSimAdapter(_BYOAdapter):
    """MatterSim (M3GNet architecture) from a local ``.pth`` checkpoint.

    Parameters
    ----------
    checkpoint : path
        ``mattersim-v1.0.0-1M.pth`` or ``mattersim-v1.0.0-5M.pth``.
    pooling, device, vacuum, name
        Molecules are boxed (MatterSim needs a cell).
    """

    name = "mattersim"
    package = "mattersim"
    module = "mattersim"
    expected = "a MatterSim checkpoint such as mattersim-v1.0.0-1M.pth"
    layer = "input of model.model.final (per-atom features entering the GatedMLP readout)"
    periodic_only = True

    def _load(self) -> None:
        from mattersim.forcefield.potential import Potential

        self._pot = Potential.from_checkpoint(load_path=self.checkpoint, device=self.device,
                                              load_training_state=False)
        self._pot.model.eval()

    def _atom_features_one(self, atoms) -> np.ndarray:
        from mattersim.datasets.utils.build import build_dataloader
        from mattersim.forcefield.potential import batch_to_dict

        captured: list = []
        hook = self._pot.model.final.register_forward_pre_hook(
            lambda _m, args: captured.append(args[0].detach()))
        try:
            loader = build_dataloader([atoms], only_inference=True, batch_size=1)
            for graph in loader:
                self._pot.model(batch_to_dict(graph.to(self.device)))
        finally:
            hook.remove()
        return captured[-1].cpu().numpy()


class FairChemAdapter(_BYOAdapter):
    """UMA / eSEN / EquiformerV2 via fairchem-core from a local checkpoint.

    Parameters
    ----------
    checkpoint : path
        e.g. ``uma-s-1p1.pt`` or ``esen_sm_conserving_all.pt``.
    task : str
        UMA task head / dataset the structure belongs to ('omat', 'omol', 'oc20', 'odac',
        'omc'); used to build the input data.
    pooling, device, vacuum, name
    """

    name = "fairchem"
    package = "fairchem-core"
    module = "fairchem.core"
    expected = "a fairchem checkpoint such as uma-s-1p1.pt (UMA) or esen_sm_conserving_all.pt"
    layer = "l=0 slice [:, 0, :] of the backbone's node_embedding"
    _no_grad = False   # the predict unit manages autograd itself (forces)

    def __init__(self, *, checkpoint=None, task: str = "omat", **kw: Any) -> None:
        self.task = task
        super().__init__(checkpoint=checkpoint, **kw)

    def _load(self) -> None:
        from fairchem.core.units.mlip_unit import load_predict_unit

        self._unit = load_predict_unit(self.checkpoint, device=self.device)
        model = self._unit.model
        self._backbone = getattr(model, "module", model).backbone

    def _atom_features_one(self, atoms) -> np.ndarray:
        from fairchem.core.datasets.atomic_data import AtomicData, atomicdata_list_to_batch

        data = AtomicData.from_ase(atoms, task_name=self.task)
        captured: list = []
        hook = self._backbone.register_forward_hook(
            lambda _m, _i, out: captured.append(out["node_embedding"].detach()))
        try:
            self._unit.predict(atomicdata_list_to_batch([data]))
        finally:
            hook.remove()
        emb = captured[-1]
        return emb[:, 0, :].cpu().numpy() if emb.ndim == 3 else emb.cpu().numpy()

    def _extra_metadata(self) -> dict[str, Any]:
        return {**super()._extra_metadata(), "task": self.task}


def mace(**options: Any) -> MACEAdapter:
    """Factory used by the registry (``mace``)."""
    return MACEAdapter(**options)


def orb(**options: Any) -> OrbAdapter:
    """Factory used by the registry (``orb``)."""
    return OrbAdapter(**options)


def mattersim(**options: Any) -> MatterSimAdapter:
    """Factory used by the registry (``mattersim``)."""
    return MatterSimAdapter(**options)


def fairchem(**options: Any) -> FairChemAdapter:
    """Factory used by the registry (``fairchem``)."""
    return FairChemAdapter(**options)
