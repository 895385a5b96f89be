"""CHGNet adapters (weights ship in the ``chgnet`` wheel; offline).

Features are the per-atom outputs of an atom-convolution layer, read with a forward hook on
``model.atom_conv_layers[layer]``; the default ``layer=-1`` is the **last** atom-conv layer
(the final 64-d atom features, before ``readout_norm`` and the energy MLP). ``layer=-2`` gives
the penultimate layer (CHGNet's own ``return_atom_feas``, the layer read by the magmom head).
Per-atom rows are pooled per structure (mean by default).

Layers for sweeps (``layers()``, ``matalign layer-sweep``): ``conv0`` .. ``conv3``. The default
(last layer, mean) is what a layer sweep on the first 150 shipped crystals supports (centred,
l2 rows, CKNNA, k = 10): against CHGNet 0.2.0's default, conv0-conv3 mean-pooled give 0.71,
0.75, 0.78, 0.79 and sum-pooled 0.57, 0.59, 0.60, 0.50; against SevenNet-0's block1 (its block
best aligned with CHGNet) 0.70, 0.75, 0.76, 0.77 mean and 0.56-0.62 sum. The last layer,
mean-pooled, is the best or level with the best in both comparisons.

Molecules (``pbc=False``) are put in a periodic orthorhombic box, each side the molecule's
extent plus ``vacuum`` (default 6 Å, above CHGNet's 5 Å atom-graph cutoff, so no atom sees a
periodic image). An atom with no neighbour within 5 Å makes CHGNet's graph builder fail; the
ValueError names the structure.

Examples
--------
>>> import matalign as ma
>>> ma.adapters.info("chgnet-0.3.0").dim
64
>>> from ase.build import bulk
>>> from matalign.structures import Structure
>>> ad = ma.adapters.get("chgnet-0.3.0")   # doctest: +SKIP
>>> ad.embed([Structure("si", atoms=bulk("Si"))]).shape   # doctest: +SKIP
(1, 64)
"""

from __future__ import annotations

import contextlib
import io
from typing import Any

import numpy as np

from ..structures import Structure
from ._base import Adapter, pool, require
from ._mlip_common import atoms_of, boxed, package_file, quiet, seeded

__all__ = ["CHGNetAdapter", "CHECKPOINTS"]

#: Checkpoints inside the chgnet wheel, relative to the ``chgnet`` package.
CHECKPOINTS = {
    "0.3.0": ("pretrained", "0.3.0", "chgnet_0.3.0_e29f68s314m37.pth.tar"),
    "0.2.0": ("pretrained", "0.2.0", "chgnet_0.2.0_e30f77s348m32.pth.tar"),
    "r2scan": ("pretrained", "r2scan", "chgnet_r2scan_transfer_learning_e15f36s161m23.pth.tar"),
}


class CHGNetAdapter(Adapter):
    """CHGNet per-atom features of one atom-conv layer, pooled per structure.

    Parameters
    ----------
    model : {'0.3.0', '0.2.0', 'r2scan'}
        Which shipped checkpoint.
    layer : int
        Index into ``atom_conv_layers`` (-1: last, the default; -2: penultimate).
    pooling : {'mean', 'sum', 'max'}
    vacuum : float
        Padding (Å) added to a molecule's extent on each box side.
    random_init : bool
        Build the same architecture with fresh weights from ``seed`` instead of loading the
        trained ones (the random-init baseline; see ``random-chgnet``).
    seed : int
        Seed of the random initialisation (only with ``random_init=True``).
    device : str
        Torch device.
    name : str or None
        Registry name to report (defaults to ``chgnet-<model>`` or ``random-chgnet``).
    """

    modality = "atoms"
    dim = 64
    package = "chgnet"

    def __init__(self, model: str = "0.3.0", *, layer: int = -1, pooling: str = "mean",
                 vacuum: float = 6.0, random_init: bool = False, seed: int = 0,
                 device: str = "cpu", name: str | None = None) -> None:
        super().__init__(pooling=pooling)
        if model not in CHECKPOINTS:
            raise ValueError(f"CHGNet model must be one of {sorted(CHECKPOINTS)}, got {model!r}")
        if not float(vacuum) > 0:
            raise ValueError(f"vacuum must be positive (Å), got {vacuum!r}")
        with quiet():
            require("chgnet", extra="mlip")
        import torch
        with quiet():
            from chgnet.model import CHGNet

        self.model_name = model
        self.random_init = bool(random_init)
        self.seed = int(seed)
        self.vacuum = float(vacuum)
        self.device = device
        path = package_file("chgnet", *CHECKPOINTS[model])
        with quiet(), contextlib.redirect_stdout(io.StringIO()):  # "CHGNet initialized..."
            state = torch.load(path, map_location="cpu", weights_only=False)["model"]
            kwargs = {"mlp_out_bias": model == "0.2.0", "version": model}
            if self.random_init:
                with seeded(self.seed):
                    net = CHGNet(**state["model_args"], **kwargs)
            else:
                net = CHGNet.from_dict(state, **kwargs)
        self._model = net.to(device).eval()
        n_conv = len(self._model.atom_conv_layers)
        if isinstance(layer, bool) or not isinstance(layer, (int, np.integer)) \
                or not -n_conv <= layer < n_conv:
            raise ValueError(f"layer must be an integer index into the {n_conv} CHGNet "
                             f"atom_conv_layers (-{n_conv}..{n_conv - 1}), got {layer!r}")
        self.layer_index = int(layer) % n_conv
        self.name = name or ("random-chgnet" if self.random_init else f"chgnet-{model}")
        self.layer = (f"atom_conv_layers[{self.layer_index}] output"
                      + (" (final atom features, before readout_norm)"
                         if self.layer_index == n_conv - 1 else ""))
        # Random init records the architecture's source file but not a checkpoint SHA: the
        # weights did not come from it.
        self.checkpoint = None if self.random_init else path
        self._architecture_from = path

    def _extra_metadata(self) -> dict[str, Any]:
        meta: dict[str, Any] = {"model": self.model_name, "random_init": self.random_init,
                                "box_vacuum_A": self.vacuum}
        if self.random_init:
            meta["seed"] = self.seed
            meta["architecture_from"] = self._architecture_from
        return meta

    def _graphs(self, batch: list[Structure]) -> list:
        from pymatgen.io.ase import AseAtomsAdaptor

        graphs = []
        for s in batch:
            atoms = boxed(atoms_of(s, self.name), self.vacuum)
            struct = AseAtomsAdaptor.get_structure(atoms)
            try:
                g = self._model.graph_converter(struct, graph_id=s.id)
                # CHGNet.forward does not move graphs (predict_graph does): on a GPU, here
                graphs.append(g if str(self.device) == "cpu" else g.to(self.device))
            except Exception as exc:  # noqa: BLE001  (re-raised with the structure's id)
                raise ValueError(f"adapter {self.name!r}: CHGNet could not build the graph of "
                                 f"structure {s.id!r}: {exc}") from exc
        return graphs

    def atom_features(self, batch: list[Structure]) -> tuple[np.ndarray, list[int]]:
        """Per-atom features of a batch (all atoms concatenated) and the atoms per structure."""
        import torch

        graphs = self._graphs(batch)
        captured: list = []
        hook = self._model.atom_conv_layers[self.layer_index].register_forward_hook(
            lambda _m, _i, out: captured.append(out.detach()))
        try:
            with torch.no_grad():
                self._model(graphs, task="e")
        finally:
            hook.remove()
        feats = captured[-1].cpu().numpy()
        return feats, [len(g.atomic_number) for g in graphs]

    def layers(self) -> list[str]:
        """``conv0`` .. ``conv{n-1}``: the 64-d atom features after each atom-conv layer
        (``atom_conv_layers[i]`` output); the default is the layer chosen by ``layer=``."""
        return [f"conv{i}" for i in range(len(self._model.atom_conv_layers))]

    @property
    def default_layer(self) -> str:
        return f"conv{self.layer_index}"

    def layer_atom_features(self, batch: list[Structure]
                            ) -> tuple[dict[str, np.ndarray], list[int]]:
        """Per-atom features of every atom-conv layer from one forward pass (forward hooks)."""
        import torch

        graphs = self._graphs(batch)
        captured: dict[str, np.ndarray] = {}
        hooks = [conv.register_forward_hook(
            lambda _m, _i, out, key=f"conv{i}": captured.__setitem__(key, out.detach()))
            for i, conv in enumerate(self._model.atom_conv_layers)]
        try:
            with torch.no_grad():
                self._model(graphs, task="e")
        finally:
            for h in hooks:
                h.remove()
        feats = {k: v.cpu().numpy() for k, v in captured.items()}
        return feats, [len(g.atomic_number) for g in graphs]

    def _embed_batch(self, batch: list[Structure]) -> np.ndarray:
        feats, counts = self.atom_features(batch)
        return pool(feats, counts, self.pooling)


def chgnet(model: str = "0.3.0", **options: Any) -> CHGNetAdapter:
    """Factory used by the registry (``chgnet-0.3.0``, ``chgnet-0.2.0``, ``chgnet-r2scan``)."""
    return CHGNetAdapter(model, **options)
