"""SevenNet adapters (weights ship in the ``sevenn`` wheel; offline).

Features are the invariant node features ``data["x"]`` **entering** the
``reduce_input_to_hidden`` module (irreps ``128x0e``): the output of the last interaction
block, just before the per-atom energy readout. They are computed by a truncated forward
pass under ``torch.no_grad``: the graph is built as ``SevenNetCalculator`` builds it, and the
model's modules run in order up to ``reduce_input_to_hidden``; no forces, no stress. This is
bit-identical to a forward pre-hook on that module in a full calculator call and about 15x
faster. Structures are batched with ``torch_geometric.data.Batch``.

Layers (``layers()``, ``layer=``, ``matalign layer-sweep``): ``embedding`` (atom-type
embedding), ``block0`` .. ``block4`` (invariant channels after each interaction block's
gate); the default is ``block4``, the input of the energy readout, and mean pooling.

**Why SevenNet-0 is the outgroup of the shipped-crystal trees: the layer, not the model.**
``matalign layer-sweep sevennet-0 --reference chgnet-0.3.0 --data mptrj --n 150`` (the first
150 shipped crystals; every space centred and l2-normalised; CKNNA, exact, inner-product kNN;
95 % subsampling intervals, 20 subsamples; reference CHGNet 0.3.0's default layer, last
atom-conv, mean-pooled) gives, for SevenNet-0 mean-pooled, at k = 10:
embedding 0.67 [0.61, 0.73], block0 0.75 [0.68, 0.82], block1 0.77 [0.70, 0.84],
block2 0.71 [0.65, 0.77], block3 0.60 [0.53, 0.67], block4 (default) 0.50 [0.43, 0.57];
a random-init CHGNet scores 0.55 [0.47, 0.63] (last layer) against the same reference, and
a random-init SevenNet 0.50 at block4 but 0.54 at block1: training lifts block1's alignment
with CHGNet by 0.23 and leaves block4's where a random network has it. At k = 25 the same
order: 0.75, 0.80, 0.81, 0.77, 0.68, 0.58 against 0.58 [0.54, 0.61] for the random CHGNet.
(CHGNet 0.2.0 against 0.3.0, for scale: 0.79 [0.72, 0.85] at k = 10.) The replicate
control says the same: the two SevenNet-0 releases (``sevennet-0-22may2024`` against
``sevennet-0``, same layer, k = 10) agree at 0.90 at the embedding, 0.74-0.79 over blocks
0-2, 0.67 at block3 and only 0.57 [0.48, 0.65] at block4: the last block is where two
training runs of one architecture differ most. Sum
pooling is lower at every layer (block4 0.41 at k = 10), so pooling is not the cause. The
alignment with CHGNet rises through the first two blocks and falls over the last two:
SevenNet-0's early and middle blocks are as close to CHGNet as CHGNet's own layers are to
each other (conv0-conv2 vs conv3: 0.75-0.83 at k = 10), and only the last block, which feeds
the per-atom energy readout, is far from it. The outgroup is a property of the layer the
adapter takes. The default stays the last block by one rule for every MLIP adapter (the
features the readout reads, never tuned on a reference, which would make alignment
circular); pass ``layer='block1'`` for the block best aligned with CHGNet, or run a layer
sweep and take the best layer pair (``LayerSweep.best()``), as the platonic-representation
protocol does.

Molecules need no box (SevenNet handles ``pbc=False``). ``sevennet-mf-0`` is multi-fidelity
and takes ``modal='PBE'`` (default) or ``'R2SCAN'``.

Examples
--------
>>> import matalign as ma
>>> ma.adapters.info("sevennet-0").dim
128
>>> from ase.build import molecule
>>> from matalign.structures import Structure
>>> ad = ma.adapters.get("sevennet-0")   # doctest: +SKIP
>>> ad.embed([Structure("h2o", atoms=molecule("H2O"))]).shape   # doctest: +SKIP
(1, 128)
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..structures import Structure
from ._base import Adapter, pool, require
from ._mlip_common import atoms_of, check_elements, package_file, quiet, seeded

__all__ = ["SevenNetAdapter", "CHECKPOINTS"]

#: Checkpoints inside the sevenn wheel, relative to the ``sevenn`` package.
CHECKPOINTS = {
    "7net-0": ("pretrained_potentials", "SevenNet_0__11Jul2024", "checkpoint_sevennet_0.pth"),
    "7net-0_22May2024": ("pretrained_potentials", "SevenNet_0__22May2024",
                         "checkpoint_sevennet_0.pth"),
    "7net-l3i5": ("pretrained_potentials", "SevenNet_l3i5", "checkpoint_l3i5.pth"),
    "7net-mf-0": ("pretrained_potentials", "SevenNet_MF_0", "checkpoint_sevennet_mf_0.pth"),
}

_STOP = "reduce_input_to_hidden"


class SevenNetAdapter(Adapter):
    """SevenNet invariant node features entering ``reduce_input_to_hidden``, pooled.

    Parameters
    ----------
    model : {'7net-0', '7net-0_22May2024', '7net-l3i5', '7net-mf-0'}
        Which shipped checkpoint.
    modal : str or None
        Fidelity of a multi-fidelity model (``7net-mf-0``: 'PBE' or 'R2SCAN'); must be None
        for single-fidelity models.
    pooling : {'mean', 'sum', 'max'}
    random_init : bool
        Same architecture, fresh weights from ``seed`` (the random-init baseline). The
        convolutions' neighbour-count normalisers (``denominator``, a dataset statistic, not a
        learned weight) are copied from the trained checkpoint.
    seed : int
    device : str
    name : str or None
        Registry name to report.
    layer : str or None
        One of :meth:`layers` (``'embedding'``, ``'block0'`` ...); default the last block,
        the input of ``reduce_input_to_hidden``.
    """

    modality = "atoms"
    package = "sevenn"
    layer = "input of reduce_input_to_hidden (last interaction block output, 128x0e)"

    def __init__(self, model: str = "7net-0", *, modal: str | None = None,
                 pooling: str = "mean", random_init: bool = False, seed: int = 0,
                 device: str = "cpu", name: str | None = None,
                 layer: str | None = None) -> None:
        super().__init__(pooling=pooling)
        if model not in CHECKPOINTS:
            raise ValueError(f"SevenNet model must be one of {sorted(CHECKPOINTS)}, "
                             f"got {model!r}")
        with quiet():
            require("sevenn", extra="mlip")
        with quiet():
            import sevenn._keys as KEY
            import sevenn.util as util
            from sevenn.model_build import build_E3_equivariant_model

        path = package_file("sevenn", *CHECKPOINTS[model])
        self.model_name = model
        self.random_init = bool(random_init)
        self.seed = int(seed)
        self.device = device
        with quiet():
            cp = util.load_checkpoint(path)
            if self.random_init:
                with seeded(self.seed):
                    net = build_E3_equivariant_model(cp.config)
                # The convolutions' ``denominator`` (average number of neighbours) is a
                # dataset statistic stored with the weights, 0 before loading: take it from
                # the trained checkpoint, as a fresh training run would compute it.
                trained = cp.model_state_dict
                stats = {k: trained[k] for k in net.state_dict()
                         if k.endswith("denominator") and k in trained}
                net.load_state_dict(stats, strict=False)
            else:
                net = cp.build_model()
        net.set_is_batch_data(True)
        self._model = net.to(device).eval()
        if _STOP not in self._model._modules:
            raise RuntimeError(f"SevenNet checkpoint {path} has no {_STOP!r} module")
        self._cutoff = float(cp.config[KEY.CUTOFF])
        self._type_map = dict(cp.config[KEY.TYPE_MAP])
        modal_map = self._model.modal_map or {}
        if modal_map:
            if modal is None:
                raise ValueError(f"SevenNet model {model!r} is multi-fidelity: pass modal= "
                                 f"one of {sorted(modal_map)}")
            if modal not in modal_map:
                raise ValueError(f"unknown modal {modal!r} for {model!r}; "
                                 f"available: {sorted(modal_map)}")
        elif modal is not None:
            raise ValueError(f"SevenNet model {model!r} has no modals; leave modal=None")
        self.modal = modal
        self.name = name or ("random-sevennet" if self.random_init
                             else "sevennet-" + model.removeprefix("7net-").replace("_", "-").lower())
        self.checkpoint = None if self.random_init else path
        self._architecture_from = path
        last = self.layers()[-1]
        if layer is not None and layer not in self.layers():
            raise ValueError(f"layer must be one of {self.layers()} for SevenNet model "
                             f"{model!r}, got {layer!r}")
        self._layer = layer or last
        if self._layer != last:
            self.layer = (f"{self._layer}: invariant (0e) node features "
                          + ("of the atom-type embedding" if self._layer == "embedding"
                             else f"after interaction block {self._layer[5:]}'s gate"))
            self.name = name or f"{self.name}-{self._layer}"
        self.dim = self._probe_dim()

    def _probe_dim(self) -> int:
        from ase import Atoms

        h2 = Structure("probe", atoms=Atoms("H2", positions=[[0, 0, 0], [0, 0, 0.74]]))
        return int(self.atom_features([h2])[0].shape[1])

    def _extra_metadata(self) -> dict[str, Any]:
        meta: dict[str, Any] = {"model": self.model_name, "modal": self.modal,
                                "random_init": self.random_init, "cutoff_A": self._cutoff}
        if self.random_init:
            meta["seed"] = self.seed
            meta["architecture_from"] = self._architecture_from
        return meta

    def layers(self) -> list[str]:
        """``embedding`` (the atom-type embedding, output of ``onehot_to_feature_x``), then
        ``block0`` .. ``block{n-1}``: the invariant (0e) channels of the node features after
        each interaction block's equivariant gate. The last block is the default layer (the
        input of ``reduce_input_to_hidden``)."""
        return ["embedding"] + [f"block{i}" for i in range(len(self._gates()))]

    @property
    def default_layer(self) -> str:
        return self._layer

    def _gates(self) -> list[str]:
        return [n for n in self._model._modules if n.endswith("_equivariant_gate")]

    def _n_scalars(self, gate: str) -> int:
        first = self._model._modules[gate].gate.irreps_out[0]
        if first.ir.l != 0 or first.ir.p != 1:
            raise RuntimeError(f"SevenNet gate {gate!r} output does not start with scalars "
                               f"({self._model._modules[gate].gate.irreps_out})")
        return int(first.mul)

    def layer_atom_features(self, batch: list[Structure]
                            ) -> tuple[dict[str, np.ndarray], list[int]]:
        """Per-atom invariant features of every layer in :meth:`layers` from one truncated
        forward pass (all atoms of the batch concatenated) and the atoms per structure."""
        import torch
        with quiet():
            import sevenn._keys as KEY
        captured: dict[str, np.ndarray] = {}
        gates = {g: f"block{i}" for i, g in enumerate(self._gates())}

        def take(name, data):
            x = data[KEY.NODE_FEATURE]
            if name == "onehot_to_feature_x":
                captured["embedding"] = x.detach().cpu().numpy()
            elif name in gates:
                captured[gates[name]] = x[:, :self._n_scalars(name)].detach().cpu().numpy()

        _, counts = self._forward(batch, take)
        return captured, counts

    def atom_features(self, batch: list[Structure]) -> tuple[np.ndarray, list[int]]:
        """Per-atom features of a batch (all atoms concatenated) and the atoms per structure."""
        if self._layer != self.layers()[-1]:
            feats, counts = self.layer_atom_features(batch)
            return feats[self._layer], counts
        with quiet():
            import sevenn._keys as KEY
        data, counts = self._forward(batch, None)
        return data[KEY.NODE_FEATURE].detach().cpu().numpy(), counts

    def _forward(self, batch: list[Structure], after) -> tuple[Any, list[int]]:
        """Run the modules up to ``reduce_input_to_hidden``; ``after(name, data)`` is called
        after each module when given."""
        import torch
        with quiet():
            import sevenn._keys as KEY
            from sevenn.atom_graph_data import AtomGraphData
            from sevenn.train.dataload import unlabeled_atoms_to_graph
            from torch_geometric.data import Batch

        graphs, counts = [], []
        for s in batch:
            atoms = atoms_of(s, self.name)
            check_elements(s, atoms.get_atomic_numbers(), self._type_map, self.name)
            g = AtomGraphData.from_numpy_dict(
                unlabeled_atoms_to_graph(atoms, self._cutoff, with_shift=False))
            if self.modal:
                g[KEY.DATA_MODALITY] = self.modal
            graphs.append(g)
            counts.append(len(atoms))
        data = Batch.from_data_list(graphs).to(self.device)
        with torch.no_grad():
            data = self._model._preprocess(data)
            for name, module in self._model._modules.items():
                if name == _STOP:
                    break
                data = module(data)
                if after is not None:
                    after(name, data)
        return data, counts

    def _embed_batch(self, batch: list[Structure]) -> np.ndarray:
        feats, counts = self.atom_features(batch)
        return pool(feats, counts, self.pooling)


def sevennet(model: str = "7net-0", **options: Any) -> SevenNetAdapter:
    """Factory used by the registry (``sevennet-0``, ``sevennet-l3i5``, ``sevennet-mf-0``)."""
    return SevenNetAdapter(model, **options)
