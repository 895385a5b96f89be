"""MLIPs that live in their own environment: MACE, Orb, MatterSim, fairchem (eSEN/UMA).

Each family is installed by ``matalign env create FAMILY`` into its own environment
(:mod:`matalign.envs`) and runs there in a worker process (:mod:`matalign.adapters._worker`)
unless its package is importable in the calling interpreter. Every adapter has three ways to
get weights:

- ``checkpoint=PATH``: a local file you fetched yourself (never downloaded at run time);
- ``random_init=True`` (the ``random-*`` registry names): the real architecture built through
  the package's own constructors with weights from its own initialisers under
  ``torch.manual_seed(seed)``: the random-initialisation control, and what CI runs;
- ``allow_download=True``: the package's own download path for users who are online (the
  only way anything is fetched; off by default).

========== ============= ========================================================================
adapter    package        features (per atom, pooled per structure)
========== ============= ========================================================================
mace       mace-torch     ``model(batch, compute_force=False)["node_feats"]``: with
                          ``features="invariant"`` (default) the l=0 channels of every
                          interaction layer, concatenated (MACE's own descriptor,
                          ``get_descriptors(invariants_only=True)``); with ``"equivariant"`` all
                          irreps components of every layer
orb        orb-models     ``model.model(batch)["node_features"]`` (last message-passing step)
mattersim  mattersim      input of ``model.final`` (the per-atom GatedMLP readout)
fairchem   fairchem-core  l=0 slice ``[:, 0, :]`` of the eSEN/UMA backbone's ``node_embedding``
                          (one structure per forward pass, seeded: see below)
========== ============= ========================================================================

Structures are batched by atom count (``max_atoms`` per forward pass) under
``torch.inference_mode``; periodic-only models get molecules in a box (``vacuum`` Å).
The eSEN/UMA backbone draws a random rotation about every edge in its forward pass, so
fairchem runs one structure per forward pass with torch's RNG seeded from ``seed`` (the
caller's RNG state is kept): its rows are then bitwise independent of the batch, the store
chunk and the run, like every other adapter's.
A checkpoint of another architecture raises ``ValueError`` naming the file and what was
expected; a structure the model cannot handle (an unknown element) raises ``ValueError``
naming the structure.

Examples
--------
>>> import matalign as ma
>>> ma.adapters.info("mace").environment
'mace'
>>> ma.adapters.get("mace")
Traceback (most recent call last):
...
ValueError: adapter 'mace' needs checkpoint=PATH: a MACE .model file ...
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from ..structures import Structure
from ._base import Adapter, checkpoint_path, pool, require
from ._mlip_common import atoms_of, boxed, check_elements, quiet, seeded

__all__ = ["MACEAdapter", "OrbAdapter", "MatterSimAdapter", "FairChemAdapter", "precheck"]


def precheck(factory: str, name: str, options: dict[str, Any]) -> None:
    """Argument checks done in the calling process before a worker starts (same errors as
    the adapter's own)."""
    cls = {"mace": MACEAdapter, "orb": OrbAdapter, "mattersim": MatterSimAdapter,
           "fairchem": FairChemAdapter}[factory]
    if not options.get("random_init") and not options.get("allow_download"):
        checkpoint_path(options.get("checkpoint"), adapter=options.get("name") or name,
                        expected=cls.expected)
    pooling = options.get("pooling", "mean")
    from ._base import POOLINGS
    if pooling not in POOLINGS:
        raise ValueError(f"pooling must be one of {POOLINGS}, got {pooling!r}")


def _wrong_architecture(adapter: str, path: str, expected: str, exc: BaseException):
    return ValueError(f"adapter {adapter!r}: checkpoint {path!r} is not {expected} "
                      f"({type(exc).__name__}: {str(exc)[:300]})")


class _EnvMLIP(Adapter):
    """Shared logic: weights (checkpoint / random / download), atom-count batching, pooling."""

    modality = "atoms"
    expected = ""
    module = ""            # import name
    periodic_only = False  # needs a cell: molecules are boxed
    family = ""
    random_name = ""       # registry name of the random-init variant

    def __init__(self, *, checkpoint: str | os.PathLike | None = None,
                 random_init: bool = False, seed: int = 0, allow_download: bool = False,
                 pooling: str = "mean", device: str = "cpu", vacuum: float = 8.0,
                 max_atoms: int = 4096, name: str | None = None) -> None:
        super().__init__(pooling=pooling)
        self.random_init = bool(random_init)
        self.seed = int(seed)
        self.allow_download = bool(allow_download)
        self.name = name or (self.random_name if self.random_init else self.name)
        if self.random_init and checkpoint is not None:
            raise ValueError(f"adapter {self.name!r}: random_init=True builds fresh weights; "
                             f"do not pass checkpoint= as well")
        path = None
        if not self.random_init and not (allow_download and checkpoint is None):
            path = os.path.abspath(checkpoint_path(checkpoint, adapter=self.name,
                                                   expected=self.expected))
        with quiet():
            require(self.module, pip_name=self.package)
        self.checkpoint = path
        self.device = device
        self.vacuum = float(vacuum)
        self.max_atoms = int(max_atoms)
        import torch

        self._torch = torch
        with quiet():
            if self.random_init:
                with seeded(self.seed):
                    self._build_random()
            elif path is None:
                self._download()
            else:
                self._load(path)
        self.dim = self._probe_dim()

    # -- per family -----------------------------------------------------------------------
    def _build_random(self) -> None:
        raise NotImplementedError

    def _load(self, path: str) -> None:
        raise NotImplementedError

    def _download(self) -> None:
        raise NotImplementedError

    def _forward(self, atoms_list: list) -> np.ndarray:
        """Per-atom features of a list of prepared ase.Atoms, concatenated in order."""
        raise NotImplementedError

    def _check(self, structure: Structure, atoms) -> None:
        """Raise ValueError naming the structure if the model cannot handle it."""

    # -- shared ---------------------------------------------------------------------------
    def _prepare(self, structure: Structure):
        atoms = atoms_of(structure, self.name)
        atoms = boxed(atoms, self.vacuum) if self.periodic_only else atoms.copy()
        self._check(structure, atoms)
        return atoms

    def _probe_dim(self) -> int:
        from ase.build import molecule

        probe = Structure("probe", atoms=molecule("H2O"))
        return int(self.atom_features([probe])[0].shape[1])

    def _extra_metadata(self) -> dict[str, Any]:
        meta = {"random_init": self.random_init, "box_vacuum_A":
                self.vacuum if self.periodic_only else None, "max_atoms": self.max_atoms}
        if self.random_init:
            meta["seed"] = self.seed
        return meta

    def atom_features(self, batch: list[Structure]) -> tuple[np.ndarray, list[int]]:
        """Per-atom features of a batch (all atoms concatenated) and the atoms per structure.

        Structures go through the model in groups of at most ``max_atoms`` atoms (a larger
        structure goes alone), in order.
        """
        prepared = [self._prepare(s) for s in batch]
        counts = [len(a) for a in prepared]
        feats: list[np.ndarray] = []
        group: list = []
        n = 0
        for atoms in prepared + [None]:
            if atoms is None or (group and n + len(atoms) > self.max_atoms):
                with quiet(), self._grad_mode():
                    f = self._forward(group)
                feats.append(np.asarray(f, dtype=np.float64))
                group, n = [], 0
            if atoms is not None:
                group.append(atoms)
                n += len(atoms)
        out = np.concatenate(feats)
        if out.shape[0] != sum(counts):
            raise RuntimeError(f"internal error in adapter {self.name!r}: {out.shape[0]} atom "
                               f"rows for {sum(counts)} atoms")
        return out, counts

    def _grad_mode(self):
        return self._torch.inference_mode()

    def _embed_batch(self, batch: list[Structure]) -> np.ndarray:
        feats, counts = self.atom_features(batch)
        return pool(feats, counts, self.pooling)


# -- MACE --------------------------------------------------------------------------------------

class MACEAdapter(_EnvMLIP):
    """MACE (MACE-MP-0, MACE-OFF, MACE-OMAT, ...): a local ``.model`` file or random weights.

    Parameters
    ----------
    checkpoint : path
        A MACE ``.model`` file (a whole pickled model, as MACE saves it: load only files you
        trust), e.g. ``2023-12-10-mace-128-L0_energy_epoch-249.model`` (MACE-MP-0 small).
    features : {'invariant', 'equivariant'}
        'invariant' (default): the l=0 channels of every interaction layer, concatenated
        (MACE's descriptor); 'equivariant': every irreps component of every layer's node
        features (the l>0 parts rotate with the structure).
    num_layers : int
        Interaction layers to keep, from the first (-1: all).
    random_init, seed : bool, int
        Build the architecture below with fresh weights instead of loading a file.
    hidden_irreps, max_ell, correlation, num_interactions, r_max : architecture of the random
        model; the defaults are MACE-MP-0 medium's (128x0e+128x1o, max_ell 3, correlation 3,
        2 interactions, 6 Å, 89 elements).
    model_size : {'small', 'medium', 'large'}
        With ``allow_download=True`` and no checkpoint: which MACE-MP-0 ``mace_mp`` fetches.
    pooling, device, name, max_atoms
        As for every adapter.
    """

    name = "mace"
    family = "mace"
    random_name = "random-mace"
    package = "mace-torch"
    module = "mace"
    expected = ("a MACE .model file such as 2023-12-10-mace-128-L0_energy_epoch-249.model "
                "(MACE-MP-0 small) or MACE-OFF23_small.model")

    def __init__(self, *, checkpoint=None, features: str = "invariant", num_layers: int = -1,
                 hidden_irreps: str = "128x0e+128x1o", max_ell: int = 3, correlation: int = 3,
                 num_interactions: int = 2, r_max: float = 6.0, model_size: str = "small",
                 **kw: Any) -> None:
        if features not in ("invariant", "equivariant"):
            raise ValueError(f"features must be 'invariant' or 'equivariant', got "
                             f"{features!r}")
        self.features = features
        self.num_layers = int(num_layers)
        self._arch = dict(hidden_irreps=str(hidden_irreps), max_ell=int(max_ell),
                          correlation=int(correlation), num_interactions=int(num_interactions),
                          r_max=float(r_max))
        self.model_size = model_size
        super().__init__(checkpoint=checkpoint, **kw)
        self.layer = (f"node_feats ({self.features}) of interaction layers "
                      f"1..{self._keep_layers()} of {self._n_inter}")

    def _build_random(self) -> None:
        import torch
        from e3nn import o3
        from mace import modules

        a = self._arch
        zs = list(range(1, 84)) + list(range(89, 95))   # MACE-MP-0's 89 elements: H-Bi, Ac-Pu
        self._model = modules.ScaleShiftMACE(
            r_max=a["r_max"], num_bessel=10, num_polynomial_cutoff=5, max_ell=a["max_ell"],
            interaction_cls=modules.interaction_classes["RealAgnosticResidualInteractionBlock"],
            interaction_cls_first=modules.interaction_classes[
                "RealAgnosticResidualInteractionBlock"],
            num_interactions=a["num_interactions"], num_elements=len(zs),
            hidden_irreps=o3.Irreps(a["hidden_irreps"]), MLP_irreps=o3.Irreps("16x0e"),
            atomic_energies=np.zeros(len(zs)), avg_num_neighbors=30.0, atomic_numbers=zs,
            correlation=a["correlation"], gate=torch.nn.functional.silu,
            radial_MLP=[64, 64, 64], atomic_inter_scale=1.0, atomic_inter_shift=0.0)
        self._setup()

    def _load(self, path: str) -> None:
        import torch
        from mace import modules

        try:
            model = torch.load(path, map_location="cpu", weights_only=False)
        except Exception as exc:  # noqa: BLE001  (any unreadable file)
            raise _wrong_architecture(self.name, path, self.expected, exc) from None
        if not isinstance(model, modules.MACE):
            raise _wrong_architecture(self.name, path, self.expected,
                                      TypeError(f"it holds a {type(model).__name__}"))
        self._model = model
        self._setup()

    def _download(self) -> None:
        from mace.calculators import mace_mp

        calc = mace_mp(model=self.model_size, device="cpu", default_dtype="float64")
        self._model = calc.models[0]
        self._setup()

    def _setup(self) -> None:
        from e3nn import o3
        from mace.tools import utils

        m = self._model.to(self.device).eval()
        for p in m.parameters():
            p.requires_grad_(False)
        self._dtype = next(m.parameters()).dtype
        self._z_table = utils.AtomicNumberTable([int(z) for z in m.atomic_numbers])
        self._r_max = float(m.r_max)
        self._heads = list(getattr(m, "heads", None) or ["Default"])
        self._n_inter = int(m.num_interactions)
        irreps = o3.Irreps(str(m.products[0].linear.irreps_out))
        self._lmax = irreps.lmax
        self._n_inv = irreps.dim // (self._lmax + 1) ** 2
        self._per_layer = [irreps.dim] * self._n_inter
        self._per_layer[-1] = self._n_inv   # MACE keeps only scalars after the last layer

    def _keep_layers(self) -> int:
        n = self._n_inter if self.num_layers == -1 else self.num_layers
        if not 1 <= n <= self._n_inter:
            raise ValueError(f"num_layers must be -1 or 1..{self._n_inter}, got "
                             f"{self.num_layers}")
        return n

    def _check(self, structure: Structure, atoms) -> None:
        check_elements(structure, atoms.numbers, self._z_table.zs, self.name)

    def _extra_metadata(self) -> dict[str, Any]:
        meta = {**super()._extra_metadata(), "features": self.features,
                "num_layers": self.num_layers}
        if self.random_init:
            meta["architecture"] = self._arch
        return meta

    def _grad_mode(self):
        # MACE's forward switches autograd on for positions; features need no gradient.
        return self._torch.no_grad()

    def _graph(self, atoms_list):
        from mace import data as mace_data
        from mace.tools import torch_geometric, torch_tools

        with torch_tools.default_dtype(self._dtype):
            graphs = [mace_data.AtomicData.from_config(
                mace_data.config_from_atoms(a, key_specification=mace_data.KeySpecification()),
                z_table=self._z_table, cutoff=self._r_max, heads=self._heads)
                for a in atoms_list]
        loader = torch_geometric.dataloader.DataLoader(graphs, batch_size=len(graphs),
                                                       shuffle=False, drop_last=False)
        return next(iter(loader)).to(self.device)

    def _forward(self, atoms_list: list) -> np.ndarray:
        from mace.modules.utils import extract_invariant

        batch = self._graph(atoms_list)
        out = self._model(batch.to_dict(), compute_force=False, training=False)
        x = out["node_feats"]
        n = self._keep_layers()
        if self.features == "invariant":
            x = extract_invariant(x, num_layers=n, num_features=self._n_inv, l_max=self._lmax)
        else:
            x = x[:, :int(np.sum(self._per_layer[:n]))]
        return x.detach().to("cpu", self._torch.float64).numpy()

    def energies(self, atoms_list: list) -> np.ndarray:
        """The package's own energy-only prediction of a batch (for the benchmark)."""
        batch = self._graph(atoms_list)
        with self._torch.no_grad():
            out = self._model(batch.to_dict(), compute_force=False, training=False)
        return out["energy"].detach().cpu().numpy()


# -- Orb ---------------------------------------------------------------------------------------

class OrbAdapter(_EnvMLIP):
    """Orb v2/v3: a local weights file or random weights of the same architecture.

    Parameters
    ----------
    checkpoint : path
        An Orb ``.ckpt`` state dict, e.g. ``orb-v3-conservative-inf-omat-20250404.ckpt``.
    architecture : str
        The ``orb_models.forcefield.pretrained`` builder that matches the file (called with
        ``weights_path=checkpoint``, a local path, so nothing is downloaded), e.g.
        ``"orb_v3_conservative_inf_omat"`` (default) or ``"orb_v2"``. With
        ``random_init=True`` the same architecture is built without loading weights.
    random_init, seed, allow_download, pooling, device, vacuum, name, max_atoms
    """

    name = "orb"
    family = "orb"
    random_name = "random-orb"
    package = "orb-models"
    module = "orb_models"
    expected = ("an Orb weights file such as orb-v3-conservative-inf-omat-20250404.ckpt "
                "(pass architecture= the matching orb_models.forcefield.pretrained builder)")
    layer = "node_features of the GNS backbone (last message-passing step)"

    _ARCH = {  # builder -> (architecture function, its keyword arguments, radius, neighbours)
        "orb_v3_conservative_inf_omat": ("orb_v3_conservative_architecture", {}, 6.0, 120),
        "orb_v3_conservative_20_omat": ("orb_v3_conservative_architecture", {}, 6.0, 20),
        "orb_v3_direct_inf_omat": ("orb_v3_direct_architecture", {}, 6.0, 120),
        "orb_v3_direct_20_omat": ("orb_v3_direct_architecture", {}, 6.0, 20),
        "orb_v2": ("orb_v2_architecture", {}, 6.0, 20),
    }

    def __init__(self, *, checkpoint=None, architecture: str = "orb_v3_conservative_inf_omat",
                 **kw: Any) -> None:
        self.architecture = architecture
        super().__init__(checkpoint=checkpoint, **kw)

    def _builder(self):
        from orb_models.forcefield import pretrained

        builder = getattr(pretrained, self.architecture, None)
        if builder is None or not self.architecture.startswith("orb_"):
            raise ValueError(f"orb_models.forcefield.pretrained has no builder "
                             f"{self.architecture!r}; known here: {sorted(self._ARCH)}")
        return builder

    def _build_random(self) -> None:
        from orb_models.forcefield import pretrained
        from orb_models.forcefield.atomic_system import SystemConfig

        self._builder()
        if self.architecture not in self._ARCH:
            raise ValueError(f"random_init supports the Orb architectures {sorted(self._ARCH)}; "
                             f"got {self.architecture!r}")
        fn, kwargs, radius, neigh = self._ARCH[self.architecture]
        self._orb = getattr(pretrained, fn)(
            device="cpu", system_config=SystemConfig(radius=radius, max_num_neighbors=neigh),
            **kwargs)
        self._setup()

    def _load(self, path: str) -> None:
        builder = self._builder()
        try:
            self._orb = builder(weights_path=path, device="cpu", compile=False)
        except Exception as exc:  # noqa: BLE001  (any failure to load: not this model)
            raise _wrong_architecture(self.name, path, self.expected, exc) from None
        self._setup()

    def _download(self) -> None:
        self._orb = self._builder()(device="cpu", compile=False)
        self._setup()

    def _setup(self) -> None:
        self._orb = self._orb.to(self.device).eval()
        for p in self._orb.parameters():
            p.requires_grad_(False)

    def _check(self, structure: Structure, atoms) -> None:
        check_elements(structure, atoms.numbers, range(1, 119), self.name, what="Z 1-118")

    def _extra_metadata(self) -> dict[str, Any]:
        return {**super()._extra_metadata(), "architecture": self.architecture}

    def _graph(self, atoms_list):
        from orb_models.forcefield import atomic_system, base

        graphs = [atomic_system.ase_atoms_to_atom_graphs(
            a, system_config=self._orb.system_config, device=self._torch.device(self.device))
            for a in atoms_list]
        return base.batch_graphs(graphs)

    def _forward(self, atoms_list: list) -> np.ndarray:
        out = self._orb.model(self._graph(atoms_list))
        return out["node_features"].detach().to("cpu", self._torch.float64).numpy()

    def energies(self, atoms_list: list) -> np.ndarray:
        """The package's own energy-only prediction of a batch (for the benchmark): the
        energy head on the backbone, as ``predict`` computes it before any force."""
        batch = self._graph(atoms_list)
        with self._torch.inference_mode():
            out = self._orb.model(batch)
            e = self._orb.heads["energy"](out["node_features"], batch)
        return e.detach().cpu().numpy()


# -- MatterSim ---------------------------------------------------------------------------------

class MatterSimAdapter(_EnvMLIP):
    """MatterSim (M3GNet architecture): a local ``.pth`` checkpoint or random weights.

    Parameters
    ----------
    checkpoint : path
        ``mattersim-v1.0.0-1M.pth`` or ``mattersim-v1.0.0-5M.pth`` (give a path, not the bare
        name, which the package would download).
    random_init, seed
        The M3Gnet architecture of the package with its default arguments (4 blocks, 128
        units, 5 Å cutoff, 4 Å three-body cutoff) and fresh weights.
    allow_download, pooling, device, vacuum, name, max_atoms
        Molecules are boxed (MatterSim needs a cell).
    """

    name = "mattersim"
    family = "mattersim"
    random_name = "random-mattersim"
    package = "mattersim"
    module = "mattersim"
    expected = "a MatterSim checkpoint such as mattersim-v1.0.0-1M.pth"
    layer = "input of model.final (per-atom features entering the GatedMLP readout)"
    periodic_only = True

    def _build_random(self) -> None:
        from mattersim.forcefield.m3gnet.m3gnet import M3Gnet

        self._model = M3Gnet(device=self.device)
        self._setup()

    def _load(self, path: str) -> None:
        from mattersim.forcefield.potential import Potential

        try:
            pot = Potential.from_checkpoint(load_path=path, device=self.device,
                                            load_training_state=False)
        except Exception as exc:  # noqa: BLE001  (any failure to load: not this model)
            raise _wrong_architecture(self.name, path, self.expected, exc) from None
        self._model = pot.model
        self._setup()

    def _download(self) -> None:
        from mattersim.forcefield.potential import Potential

        self._model = Potential.from_checkpoint(load_path="mattersim-v1.0.0-1M.pth",
                                                device=self.device,
                                                load_training_state=False).model
        self._setup()

    def _setup(self) -> None:
        self._model = self._model.to(self.device).eval()
        for p in self._model.parameters():
            p.requires_grad_(False)
        args = self._model.model_args
        self._cutoff = float(args["cutoff"])
        self._tb_cutoff = float(args["threebody_cutoff"])
        self._max_z = int(args["max_z"])

    def _check(self, structure: Structure, atoms) -> None:
        check_elements(structure, atoms.numbers, range(1, self._max_z + 1), self.name,
                       what=f"Z 1-{self._max_z}")

    def _dicts(self, atoms_list):
        from mattersim.datasets.utils.build import build_dataloader
        from mattersim.forcefield.potential import batch_to_dict

        loader = build_dataloader(atoms_list, only_inference=True,
                                  batch_size=len(atoms_list), cutoff=self._cutoff,
                                  threebody_cutoff=self._tb_cutoff)
        return [batch_to_dict(g, device=self.device) for g in loader]

    def _forward(self, atoms_list: list) -> np.ndarray:
        captured: list = []
        hook = self._model.final.register_forward_pre_hook(
            lambda _m, args: captured.append(args[0].detach()))
        try:
            for d in self._dicts(atoms_list):
                self._model(d)
        finally:
            hook.remove()
        return self._torch.cat(captured).to("cpu", self._torch.float64).numpy()

    def energies(self, atoms_list: list) -> np.ndarray:
        """The package's own energy-only prediction (M3Gnet forward, no forces)."""
        with self._torch.inference_mode():
            return self._torch.cat([self._model(d) for d in self._dicts(atoms_list)]).numpy()


# -- fairchem ----------------------------------------------------------------------------------

class FairChemAdapter(_EnvMLIP):
    """eSEN / UMA (fairchem-core's eSCN-MD backbone): a local checkpoint or random weights.

    Parameters
    ----------
    checkpoint : path
        e.g. ``uma-s-1p1.pt`` or ``esen_sm_conserving_all.pt``, loaded with
        ``fairchem.core.units.mlip_unit.load_predict_unit``.
    task : str
        UMA task / dataset of the structures ('omat', 'omol', 'oc20', 'odac', 'omc').
    random_init, seed
        An eSEN backbone (``eSCNMDBackbone``) of ``num_layers`` layers, ``channels``
        channels, lmax 2, 6 Å cutoff, with fresh weights (defaults: 4 layers, 128 channels,
        the eSEN-small shape). ``seed`` also fixes the backbone's random edge rotations
        (one structure per forward pass), with a checkpoint as well.
    allow_download, pooling, device, vacuum, name, max_atoms
    """

    name = "fairchem"
    family = "fairchem"
    random_name = "random-esen"
    package = "fairchem-core"
    module = "fairchem.core"
    expected = "a fairchem checkpoint such as uma-s-1p1.pt (UMA) or esen_sm_conserving_all.pt"
    layer = "l=0 slice [:, 0, :] of the backbone's node_embedding (last layer)"

    def __init__(self, *, checkpoint=None, task: str = "omat", num_layers: int = 4,
                 channels: int = 128, lmax: int = 2, **kw: Any) -> None:
        self.task = task
        self._arch = dict(num_layers=int(num_layers), channels=int(channels), lmax=int(lmax))
        super().__init__(checkpoint=checkpoint, **kw)

    def _build_random(self) -> None:
        from fairchem.core.models.uma.escn_md import eSCNMDBackbone

        a = self._arch
        self._backbone = eSCNMDBackbone(
            max_num_elements=100, sphere_channels=a["channels"], lmax=a["lmax"],
            mmax=min(2, a["lmax"]), otf_graph=True, max_neighbors=300, cutoff=6.0,
            edge_channels=a["channels"], num_distance_basis=64, num_layers=a["num_layers"],
            hidden_channels=a["channels"], direct_forces=True, regress_forces=False,
            dataset_list=[self.task], use_dataset_embedding=True)
        self._unit = None
        self._radius, self._max_neigh = 6.0, 300
        self._setup()

    def _load(self, path: str) -> None:
        from fairchem.core.units.mlip_unit import load_predict_unit

        try:
            self._unit = load_predict_unit(path, device=self.device)
        except Exception as exc:  # noqa: BLE001  (any failure to load: not this model)
            raise _wrong_architecture(self.name, path, self.expected, exc) from None
        model = self._unit.model
        self._backbone = getattr(model, "module", model).backbone
        self._radius = float(getattr(self._backbone, "cutoff", 6.0))
        self._max_neigh = int(getattr(self._backbone, "max_neighbors", 300))
        self._setup()

    def _download(self) -> None:
        from fairchem.core.calculate import pretrained_mlip

        self._unit = pretrained_mlip.get_predict_unit("uma-s-1p1", device=self.device)
        model = self._unit.model
        self._backbone = getattr(model, "module", model).backbone
        self._radius, self._max_neigh = 6.0, 300
        self._setup()

    def _setup(self) -> None:
        self._backbone = self._backbone.to(self.device).eval()
        for p in self._backbone.parameters():
            p.requires_grad_(False)

    def _check(self, structure: Structure, atoms) -> None:
        check_elements(structure, atoms.numbers, range(1, 100), self.name, what="Z 1-99")

    def _extra_metadata(self) -> dict[str, Any]:
        meta = {**super()._extra_metadata(), "task": self.task,
                "structures_per_forward_pass": 1, "edge_rotation_seed": self.seed}
        if self.random_init:
            meta["architecture"] = self._arch
        return meta

    def _grad_mode(self):
        return self._torch.no_grad()

    def _batch(self, atoms_list):
        from fairchem.core.datasets.atomic_data import AtomicData, atomicdata_list_to_batch

        data = [AtomicData.from_ase(a, task_name=self.task, r_edges=False,
                                    radius=self._radius, max_neigh=self._max_neigh)
                for a in atoms_list]
        return atomicdata_list_to_batch(data).to(self.device)

    def energies(self, atoms_list: list) -> np.ndarray:
        """The package's energy-only prediction of a batch (for the benchmark): the backbone
        and an eSEN MLP energy head (``MLP_Energy_Head``; random weights from ``seed`` with a
        random backbone, the checkpoint's own head otherwise)."""
        if getattr(self, "_head", None) is None:
            if self._unit is not None:
                model = getattr(self._unit.model, "module", self._unit.model)
                self._head = next(iter(model.output_heads.values()))
            else:
                from fairchem.core.models.uma.escn_md import MLP_Energy_Head

                with seeded(self.seed + 1):
                    self._head = MLP_Energy_Head(self._backbone).to(self.device).eval()
        data = self._batch(atoms_list)
        with self._torch.no_grad():
            out = self._head(data, self._backbone(data))
        e = out["energy"]
        return (e["energy"] if isinstance(e, dict) else e).detach().cpu().numpy()

    def _forward(self, atoms_list: list) -> np.ndarray:
        # The eSEN/UMA backbone rotates every edge's frame by a random angle about the edge
        # (``torch.rand_like`` in its Wigner-matrix set-up): exact arithmetic is invariant to
        # it, float32 is not (rows differ by ~1e-7 from run to run and with the batch). One
        # structure per forward pass under a fixed seed makes each row a function of its
        # structure alone: bitwise the same in any batch, chunk or run.
        out = []
        for atoms in atoms_list:
            with seeded(self.seed):
                emb = self._backbone(self._batch([atoms]))["node_embedding"]
            emb = emb[:, 0, :] if emb.ndim == 3 else emb
            out.append(emb.detach().to("cpu", self._torch.float64).numpy())
        return np.concatenate(out)


def mace(adapter_name: str | None = None, **options: Any) -> MACEAdapter:
    """Factory used by the registry (``mace``, ``mace-mp-0-small``, ``random-mace``)."""
    if adapter_name is not None and not options.get("random_init"):
        options.setdefault("name", adapter_name)
    return MACEAdapter(**options)


def orb(**options: Any) -> OrbAdapter:
    """Factory used by the registry (``orb``, ``random-orb``)."""
    return OrbAdapter(**options)


def mattersim(**options: Any) -> MatterSimAdapter:
    """Factory used by the registry (``mattersim``, ``random-mattersim``)."""
    return MatterSimAdapter(**options)


def fairchem(**options: Any) -> FairChemAdapter:
    """Factory used by the registry (``fairchem``, ``random-esen``)."""
    return FairChemAdapter(**options)


