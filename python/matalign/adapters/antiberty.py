"""AntiBERTy, an antibody language model (weights ship in the ``antiberty`` 0.1.3 wheel; offline).

AntiBERTy (Ruffolo et al., 2021) is a BERT encoder (8 layers, 512-d, 8 heads, 26 M
parameters) trained by masked-language modelling on 558 M natural antibody sequences (heavy
and light chains from the Observed Antibody Space). The ``antiberty`` 0.1.3 wheel ships the
trained weights, ``antiberty/trained_models/AntiBERTy_md_smooth/pytorch_model.bin``, its
``config.json`` and the 25-token ``vocab.txt``, so this adapter runs offline. Pin 0.1.3:
``antiberty`` 1.0 fetches the weights from the Hugging Face Hub instead of shipping them.
Install it without its dependencies (it needs only torch and transformers):
``pip install --no-deps antiberty==0.1.3``.

The package's own runner (``AntiBERTyRunner``) does not work with transformers 5: loading
fails (``AntiBERTy`` calls ``init_weights`` where transformers 5 expects ``post_init``), and
its tokenizer, ``BertTokenizer(vocab_file=...)``, silently gets an empty vocabulary, so every
residue becomes ``[UNK]``. matalign therefore builds the network with transformers' own
``BertModel`` from the shipped ``config.json``, loads the shipped state dict into it (every
encoder weight must match: a missing or unexpected key is an error; the pooler and the
masked-LM/species/chain heads are not used), and tokenizes from the shipped ``vocab.txt``
itself: ``[CLS]``, one token per residue, ``[SEP]``, padding ``[PAD]``.

Features: the hidden states of one layer (``hidden0``, the embedding output, .. ``hidden8``,
the last block; ``layer=`` takes the name or an index, negative from the end), pooled over the
**residues only** ([CLS], [SEP] and padding are left out), mean by default: the rule of every
sequence model here (``esm2``, ``esm2-random``: the last layer, mean over residues).
``random-antiberty`` is the same architecture with transformers' BERT initialiser
(normal, σ = 0.02) under ``torch.manual_seed(seed)``: the trained-vs-random control.

Default layer and pooling, checked with ``ma.layer_sweep`` on 100 ``peptides`` (seed 0, 20-40
residues; centred, l2 rows; CKNNA, k = 10; 95 % subsampling intervals). Against the
random-init model (its default layer), the trained model's mean-pooled layers move away from
random weights with depth: hidden0 0.72 [0.69, 0.76] (token + position embeddings), hidden1-4
0.43-0.45, hidden8 0.30 [0.26, 0.35], the lowest; sum pooling gives the same profile
(0.68 ... 0.32). Against each sequence's amino-acid composition (a 20-d array), the random
model sits at 0.77-0.80 at every layer (a random BERT, mean-pooled, is a bag of residues),
while the trained model falls from 0.54 (hidden0) to 0.28 [0.23, 0.33] (hidden8). Across its
own layers (mean) neighbouring layers agree at 0.47-0.86 and hidden8 with hidden0 at 0.33.
So the last layer is where training has changed the representation most, away from both
composition and random weights; the rule stands (last layer, mean over residues). These
peptides are random Swiss-Prot-composition sequences, not antibodies; on antibody
repertoires ``matalign layer-sweep antiberty --data YOUR.fasta`` measures the same on your set.

Sequences use the 20 standard one-letter amino-acid codes (AntiBERTy's vocabulary has no X,
B, U, Z or O); anything else, an empty sequence, or more than 510 residues (512 positions
with [CLS] and [SEP]) raises ``ValueError`` naming the structure.

Examples
--------
>>> import matalign as ma
>>> ma.adapters.info("antiberty").dim
512
>>> from matalign.structures import Structure
>>> heavy = Structure("h", sequence="EVQLVESGGGLVQPGGSLRLSCAASGFTFS")
>>> ma.adapters.get("antiberty").embed([heavy]).shape   # doctest: +SKIP
(1, 512)
"""

from __future__ import annotations

import importlib.util
import json
import os
from typing import Any

import numpy as np

from ..structures import Structure
from ._base import Adapter, pool

__all__ = ["AntiBERTyAdapter", "antiberty", "RESIDUES", "MAX_RESIDUES"]

#: The residue letters AntiBERTy's vocabulary holds (the 20 standard amino acids).
RESIDUES = "ACDEFGHIKLMNPQRSTVWY"
#: Longest sequence: 512 positions less [CLS] and [SEP].
MAX_RESIDUES = 510
_INSTALL = "pip install --no-deps antiberty==0.1.3"
_MODEL_DIR = ("trained_models", "AntiBERTy_md_smooth")


def _files() -> tuple[str, str, str]:
    """Paths of the shipped config.json, pytorch_model.bin and vocab.txt."""
    spec = importlib.util.find_spec("antiberty")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError(f"the adapters 'antiberty' and 'random-antiberty' need the package "
                          f"'antiberty' 0.1.3, which is not installed: {_INSTALL} (0.1.3 ships "
                          f"the trained weights; 1.x downloads them)")
    root = list(spec.submodule_search_locations)[0]
    cfg = os.path.join(root, *_MODEL_DIR, "config.json")
    weights = os.path.join(root, *_MODEL_DIR, "pytorch_model.bin")
    vocab = os.path.join(root, "trained_models", "vocab.txt")
    for path in (cfg, weights, vocab):
        if not os.path.isfile(path) or os.path.getsize(path) == 0:
            raise FileNotFoundError(f"AntiBERTy file {path} is missing or empty: the installed "
                                    f"antiberty is not 0.1.3 (1.x does not ship its weights); "
                                    f"{_INSTALL}")
    return cfg, weights, vocab


def _import_transformers():
    from .text import _import_transformers as imp   # offline environment, quiet import

    return imp()


def _lookup(vocab_path: str) -> tuple[np.ndarray, int, int, int]:
    """Residue-letter → token-id table and the [CLS], [SEP], [PAD] ids from ``vocab.txt``."""
    with open(vocab_path, encoding="utf-8") as f:
        tokens = [line.rstrip("\n") for line in f]
    ids = {t: i for i, t in enumerate(tokens) if t}
    missing = [t for t in ("[CLS]", "[SEP]", "[PAD]", *RESIDUES) if t not in ids]
    if missing:
        raise ValueError(f"AntiBERTy vocabulary {vocab_path} lacks {missing}; {_INSTALL}")
    lut = np.full(128, -1, dtype=np.int64)
    for ch in RESIDUES:
        lut[ord(ch)] = ids[ch]
    return lut, ids["[CLS]"], ids["[SEP]"], ids["[PAD]"]


class AntiBERTyAdapter(Adapter):
    """AntiBERTy hidden states of one layer, pooled over residues (trained or random-init).

    Parameters
    ----------
    layer : str or int
        ``'hidden0'`` (embedding output) .. ``'hidden8'`` (last block), or an index 0..8,
        negative from the end. Default -1: ``'hidden8'``.
    pooling : {'mean', 'sum', 'max'}
        Over residues ([CLS], [SEP] and padding excluded). Default mean.
    random_init : bool
        Same architecture (from the shipped config), weights from transformers' BERT
        initialiser under ``torch.manual_seed(seed)``; the caller's RNG is left as it was.
    seed : int
    device : str
        Torch device (default ``'cpu'``).

    Raises
    ------
    ImportError
        antiberty is not installed (the message gives ``pip install --no-deps
        antiberty==0.1.3``).
    FileNotFoundError
        The installed antiberty does not ship the weights (1.x).
    ValueError
        ``layer`` out of range; at embedding time, a sequence with a letter outside the 20
        standard amino acids, empty, or longer than 510 residues (the message names the
        structure).

    Examples
    --------
    >>> from matalign.adapters.antiberty import AntiBERTyAdapter
    >>> from matalign.structures import Structure
    >>> m = AntiBERTyAdapter(layer="hidden4")                 # doctest: +SKIP
    >>> m.embed([Structure("l", sequence="DIQMTQSPSSLSASVGDRVTITC")]).shape   # doctest: +SKIP
    (1, 512)
    >>> m.embed([Structure("bad", sequence="DIQXTQ")])        # doctest: +SKIP
    Traceback (most recent call last):
    ...
    ValueError: adapter 'antiberty': structure 'bad' has 'X' at position 4 of its sequence; ...
    """

    modality = "sequence"
    package = "antiberty"

    def __init__(self, *, layer: str | int = -1, pooling: str = "mean",
                 random_init: bool = False, seed: int = 0, device: str = "cpu") -> None:
        super().__init__(pooling=pooling)
        self.random_init = bool(random_init)
        self.name = "random-antiberty" if self.random_init else "antiberty"
        cfg_path, weights_path, vocab_path = _files()
        torch, transformers = _import_transformers()
        from ._mlip_common import seeded
        from .text import _quiet

        self._torch = torch
        with open(cfg_path, encoding="utf-8") as f:
            raw = json.load(f)
        n = int(raw["num_hidden_layers"])
        self.num_layers = n
        self._layer = self._layer_name(layer, n)
        self.seed = int(seed)
        with _quiet():
            cfg = transformers.BertConfig(**{k: raw[k] for k in (
                "vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads",
                "intermediate_size", "hidden_act", "hidden_dropout_prob",
                "attention_probs_dropout_prob", "max_position_embeddings", "type_vocab_size",
                "initializer_range", "layer_norm_eps", "pad_token_id")})
            if self.random_init:
                with seeded(self.seed):
                    net = transformers.BertModel(cfg, add_pooling_layer=False)
            else:
                net = transformers.BertModel(cfg, add_pooling_layer=False)
                self._load(torch, net, weights_path)
        self._model = net.to(device).eval()
        self.device = device
        self.dim = int(cfg.hidden_size)
        self.max_residues = int(cfg.max_position_embeddings) - 2
        self._lut, self._cls, self._sep, self._pad = _lookup(vocab_path)
        self.layer = (f"{self._layer}: hidden_states[{self._layer[6:]}] of {n} "
                      f"({'embedding output' if self._layer == 'hidden0' else 'block output'})"
                      f", {self.dim}-d")
        self.checkpoint = None if self.random_init else weights_path
        self._architecture_from = cfg_path

    def _layer_name(self, layer, n: int) -> str:
        names = [f"hidden{i}" for i in range(n + 1)]
        if isinstance(layer, str) and layer in names:
            return layer
        if not isinstance(layer, bool) and isinstance(layer, (int, np.integer)) \
                and -(n + 1) <= layer <= n:
            return names[int(layer) % (n + 1)]
        raise ValueError(f"adapter {self.name!r}: layer must be one of {names[0]}..{names[-1]} "
                         f"or an integer in {-(n + 1)}..{n}, got {layer!r}")

    def _load(self, torch, net, path: str) -> None:
        state = torch.load(path, map_location="cpu", weights_only=True)
        enc = {k[len("bert."):]: v for k, v in state.items()
               if k.startswith("bert.") and not k.startswith("bert.pooler.")}
        want = set(net.state_dict())
        buffers = {k for k in enc if k not in want and k.endswith("position_ids")}
        missing = sorted(want - set(enc))
        unexpected = sorted(set(enc) - want - buffers)
        if missing or unexpected:
            raise ValueError(f"adapter {self.name!r}: {path} does not fit the BERT built from "
                             f"its config (missing {missing[:5]}, unexpected {unexpected[:5]}); "
                             f"{_INSTALL}")
        net.load_state_dict({k: v for k, v in enc.items() if k not in buffers}, strict=True)

    def _extra_metadata(self) -> dict[str, Any]:
        meta: dict[str, Any] = {"layer_name": self._layer, "num_layers": self.num_layers,
                                "random_init": self.random_init,
                                "tokens_pooled": "residues ([CLS]/[SEP]/padding excluded)",
                                "torch_version": self._torch.__version__}
        if self.random_init:
            meta["seed"] = self.seed
            meta["architecture_from"] = self._architecture_from
        return meta

    def layers(self) -> list[str]:
        """``hidden0`` (embedding output) .. ``hidden8`` (the last block's output)."""
        return [f"hidden{i}" for i in range(self.num_layers + 1)]

    @property
    def default_layer(self) -> str:
        return self._layer

    def _tokens(self, batch: list[Structure]):
        seqs = []
        for s in batch:
            seq = s.sequence
            if not isinstance(seq, str) or not seq:
                raise ValueError(f"adapter {self.name!r}: structure {s.id!r} has an empty or "
                                 f"non-string sequence")
            if len(seq) > self.max_residues:
                raise ValueError(f"adapter {self.name!r}: structure {s.id!r} has {len(seq)} "
                                 f"residues; AntiBERTy reads at most {self.max_residues}")
            codes = np.frombuffer(seq.encode("utf-8", "replace"), dtype=np.uint8)
            ids = self._lut[np.minimum(codes, 127)]
            if not seq.isascii() or (ids < 0).any():
                pos = next(i for i, ch in enumerate(seq) if ch not in RESIDUES)
                raise ValueError(f"adapter {self.name!r}: structure {s.id!r} has {seq[pos]!r} "
                                 f"at position {pos + 1} of its sequence; AntiBERTy's "
                                 f"vocabulary holds the 20 standard amino acids ({RESIDUES})")
            seqs.append(ids)
        lengths = [len(q) for q in seqs]
        toks = np.full((len(seqs), max(lengths) + 2), self._pad, dtype=np.int64)
        mask = np.zeros(toks.shape, dtype=np.int64)
        for i, q in enumerate(seqs):
            toks[i, 0] = self._cls
            toks[i, 1:len(q) + 1] = q
            toks[i, len(q) + 1] = self._sep
            mask[i, :len(q) + 2] = 1
        return toks, mask, lengths

    def _hidden(self, batch: list[Structure], layers: list[str]):
        """Per-residue hidden states of ``layers`` for a batch: {layer: list of (L_i, D)}."""
        torch = self._torch
        toks, mask, lengths = self._tokens(batch)
        from .text import _quiet

        with _quiet(), torch.inference_mode():
            out = self._model(input_ids=torch.from_numpy(toks).to(self.device),
                              attention_mask=torch.from_numpy(mask).to(self.device),
                              output_hidden_states=True)
            hs = out.hidden_states
            got = {lay: hs[int(lay[6:])].float().cpu().numpy() for lay in layers}
        return {lay: [h[i, 1:n + 1] for i, n in enumerate(lengths)]   # residues only
                for lay, h in got.items()}, lengths

    def layer_atom_features(self, batch: list[Structure]
                            ) -> tuple[dict[str, np.ndarray], list[int]]:
        """Per-residue features of every layer (residues of the batch concatenated) and the
        residues per structure, from one forward pass."""
        feats, lengths = self._hidden(batch, self.layers())
        return {lay: np.concatenate(v) for lay, v in feats.items()}, lengths

    def _embed_batch(self, batch: list[Structure]) -> np.ndarray:
        feats, lengths = self._hidden(batch, [self._layer])
        return pool(np.concatenate(feats[self._layer]), lengths, self.pooling)


def antiberty(**options: Any) -> AntiBERTyAdapter:
    """Factory used by the registry (``antiberty``, ``random-antiberty``)."""
    return AntiBERTyAdapter(**options)
