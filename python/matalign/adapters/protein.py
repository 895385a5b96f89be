"""Protein language models on sequences (fair-esm): random-init ESM-2 and bring-your-own ESM-2.

- ``esm2-random``: the ESM-2 architecture with seeded random weights (default 6 layers, 320-d,
  the shape of ``esm2_t6_8M_UR50D``): the paper's random baseline, and the only ESM-2 that runs
  offline, since no PyPI package ships ESM weights.
- ``esm2``: a pretrained ESM-2 ``.pt`` file you downloaded yourself, e.g.
  ``esm2_t33_650M_UR50D.pt`` (``checkpoint=PATH``; a sibling
  ``esm2_t33_650M_UR50D-contact-regression.pt`` is used when present, but embeddings do not
  need it).

Both return the per-residue features of one layer (``layer=-1``, the last, by default) pooled
over the residues only: the BOS/EOS tokens and the padding are left out. Sequences use the
one-letter code; the 20 standard amino acids and X, B, U, Z, O are accepted, anything else
raises ``ValueError`` naming the structure and the letter. Attention is quadratic in length;
ESM-2 was trained on up to 1,022 residues.

Examples
--------
>>> from matalign.adapters.protein import ESM2Random
>>> from matalign.structures import Structure
>>> m = ESM2Random(num_layers=1, embed_dim=32, attention_heads=4)
>>> m.embed([Structure("p", sequence="MKTAYIAKQR")]).shape
(1, 32)
"""

from __future__ import annotations

import argparse
import os
import re
import warnings
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from ..structures import Structure
from ._base import Adapter, checkpoint_path, require

__all__ = ["ESM2", "ESM2Random", "AMINO_ACIDS"]

#: Letters accepted in a sequence: the 20 standard amino acids and X, B, U, Z, O.
AMINO_ACIDS = "ACDEFGHIKLMNPQRSTVWYXBUZO"
_VALID = re.compile(f"[^{AMINO_ACIDS}]")

_EXPECTED = ("a fair-esm ESM-2 checkpoint file such as esm2_t33_650M_UR50D.pt (from "
             "https://dl.fbaipublicfiles.com/fair-esm/models/), optionally with "
             "esm2_t33_650M_UR50D-contact-regression.pt beside it")


@contextmanager
def _quiet() -> Iterator[None]:
    with warnings.catch_warnings():
        for cat in (FutureWarning, DeprecationWarning, UserWarning):
            warnings.filterwarnings("ignore", category=cat, module="esm")
            warnings.filterwarnings("ignore", category=cat, module="torch")
        warnings.filterwarnings("ignore", message="Regression weights not found")
        yield


def _import_esm():
    torch = require("torch", "torch")
    require("esm", "fair-esm", extra="protein")
    with _quiet():
        import esm
    return torch, esm


class _ESMBase(Adapter):
    modality = "sequence"
    package = "fair-esm"

    def _setup(self, model, alphabet, layer: int) -> None:
        self._model = model.eval()
        self._alphabet = alphabet
        n = int(model.num_layers)
        if isinstance(layer, bool) or not isinstance(layer, (int, np.integer)) \
                or not -(n + 1) <= layer <= n:
            raise ValueError(f"adapter {self.name!r}: layer must be an integer in "
                             f"{-(n + 1)}..{n} for this {n}-layer model, got {layer!r}")
        self.layer_index = int(layer) % (n + 1)
        self.layer = f"representations[{self.layer_index}] of {n}"
        self.dim = int(model.embed_dim)
        self.num_layers = n
        self._lut = np.full(128, -1, dtype=np.int64)
        for ch in AMINO_ACIDS:
            self._lut[ord(ch)] = alphabet.get_idx(ch)

    def _tokens(self, batch: list[Structure]):
        torch = self._torch
        a = self._alphabet
        seqs = []
        for s in batch:
            seq = s.sequence
            bad = _VALID.search(seq) if isinstance(seq, str) else None
            if not isinstance(seq, str) or not seq:
                raise ValueError(f"adapter {self.name!r}: structure {s.id!r} has an empty or "
                                 f"non-string sequence")
            if bad:
                raise ValueError(f"adapter {self.name!r}: structure {s.id!r} has {bad.group()!r} "
                                 f"at position {bad.start() + 1} of its sequence; expected "
                                 f"one-letter amino-acid codes ({AMINO_ACIDS})")
            seqs.append(self._lut[np.frombuffer(seq.encode("ascii"), dtype=np.uint8)])
        lengths = [len(q) for q in seqs]
        toks = np.full((len(seqs), max(lengths) + 2), a.padding_idx, dtype=np.int64)
        for i, q in enumerate(seqs):
            toks[i, 0] = a.cls_idx
            toks[i, 1:len(q) + 1] = q
            toks[i, len(q) + 1] = a.eos_idx
        return torch.from_numpy(toks), lengths

    def _embed_batch(self, batch: list[Structure]) -> np.ndarray:
        torch = self._torch
        toks, lengths = self._tokens(batch)
        with _quiet(), torch.inference_mode():
            rep = self._model(toks, repr_layers=[self.layer_index])["representations"]
            h = rep[self.layer_index].to(torch.float64).numpy()
        out = np.empty((len(batch), self.dim), dtype=np.float64)
        for i, n in enumerate(lengths):
            r = h[i, 1:n + 1]                       # residues only: no BOS, EOS, padding
            out[i] = r.mean(0) if self.pooling == "mean" else \
                r.sum(0) if self.pooling == "sum" else r.max(0)
        return out.astype(np.float32)

    def _extra_metadata(self) -> dict[str, Any]:
        return {"layer_index": self.layer_index, "num_layers": self.num_layers,
                "tokens_pooled": "residues (BOS/EOS/padding excluded)",
                "torch_version": self._torch.__version__}


class ESM2Random(_ESMBase):
    """ESM-2 architecture with seeded random weights (the random baseline).

    Parameters
    ----------
    num_layers, embed_dim, attention_heads : int
        Architecture (default 6, 320, 20: the shape of ``esm2_t6_8M_UR50D``).
    seed : int
        Seed of the weight initialisation (default 0). The global torch RNG is left as it was.
    layer : int
        0 (token embeddings) .. num_layers, or negative from the end (default -1).
    pooling : {'mean', 'sum', 'max'}
        Over residues (default mean).

    Examples
    --------
    >>> from matalign.adapters.protein import ESM2Random
    >>> from matalign.structures import Structure
    >>> m = ESM2Random(num_layers=1, embed_dim=32, attention_heads=4, seed=1)
    >>> m.dim, m.layer
    (32, 'representations[1] of 1')
    """

    name = "esm2-random"

    def __init__(self, *, num_layers: int = 6, embed_dim: int = 320, attention_heads: int = 20,
                 seed: int = 0, layer: int = -1, pooling: str = "mean") -> None:
        super().__init__(pooling=pooling)
        torch, esm = _import_esm()
        self._torch = torch
        if embed_dim % attention_heads:
            raise ValueError(f"embed_dim ({embed_dim}) must be a multiple of attention_heads "
                             f"({attention_heads})")
        self.seed = int(seed)
        alphabet = esm.Alphabet.from_architecture("ESM-1b")
        with _quiet(), torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed)
            model = esm.ESM2(num_layers=int(num_layers), embed_dim=int(embed_dim),
                             attention_heads=int(attention_heads), alphabet=alphabet)
        self.attention_heads = int(attention_heads)
        self._setup(model, alphabet, layer)

    def _extra_metadata(self) -> dict[str, Any]:
        return {**super()._extra_metadata(), "seed": self.seed, "weights": "random init",
                "attention_heads": self.attention_heads}


def _torch_load(torch, path: str, trust: bool):
    """Load a fair-esm .pt; ``weights_only=True`` (allowing argparse.Namespace) unless trusted."""
    try:
        if trust:
            return torch.load(path, map_location="cpu", weights_only=False)
        with torch.serialization.safe_globals([argparse.Namespace]):
            return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unpickling failure: say which file
        hint = "" if trust else (" If the file comes from a source you trust, "
                                 "trust_checkpoint=True loads it with weights_only=False.")
        raise ValueError(f"adapter 'esm2': cannot read {path!r} as a fair-esm checkpoint "
                         f"({type(exc).__name__}: {exc}); expected {_EXPECTED}.{hint}") from exc


class ESM2(_ESMBase):
    """A pretrained ESM-2 from a local fair-esm ``.pt`` file (bring your own checkpoint).

    Parameters
    ----------
    checkpoint : path
        E.g. ``esm2_t33_650M_UR50D.pt`` (1280-d, 33 layers) or ``esm2_t6_8M_UR50D.pt``
        (320-d, 6 layers), as downloaded from ``dl.fbaipublicfiles.com/fair-esm/models``.
        The file is read with ``torch.load(weights_only=True)``.
    trust_checkpoint : bool
        Read it with ``weights_only=False`` instead (arbitrary code execution if the file is
        malicious; only for files from a source you trust). Default False.
    layer : int
        0 .. num_layers, or negative from the end (default -1, the last layer).
    pooling : {'mean', 'sum', 'max'}
        Over residues (default mean).

    Examples
    --------
    >>> from matalign.adapters.protein import ESM2
    >>> ESM2(checkpoint=None)
    Traceback (most recent call last):
    ...
    ValueError: adapter 'esm2' needs checkpoint=PATH: a fair-esm ESM-2 checkpoint file such as esm2_t33_650M_UR50D.pt ...
    """

    name = "esm2"

    def __init__(self, *, checkpoint: str | os.PathLike | None = None, layer: int = -1,
                 trust_checkpoint: bool = False, pooling: str = "mean") -> None:
        super().__init__(pooling=pooling)
        path = checkpoint_path(checkpoint, adapter=self.name, expected=_EXPECTED)
        if not os.path.isfile(path):
            raise ValueError(f"adapter {self.name!r}: checkpoint {path!r} is not a file; "
                             f"expected {_EXPECTED}")
        torch, esm = _import_esm()
        self._torch = torch
        data = _torch_load(torch, path, bool(trust_checkpoint))
        if not isinstance(data, dict) or "model" not in data or "cfg" not in data:
            raise ValueError(f"adapter {self.name!r}: {path!r} is not a fair-esm ESM-2 "
                             f"checkpoint (no 'model' and 'cfg' entries; ESM-1/1b/1v files "
                             f"carry 'args' and are not supported); expected {_EXPECTED}")
        stem = Path(path).stem
        model_name = stem if stem.startswith("esm2") else f"esm2_{stem}"  # selects ESM-2 loader
        regression = str(Path(path).with_suffix("")) + "-contact-regression.pt"
        reg_data = (_torch_load(torch, regression, bool(trust_checkpoint))
                    if os.path.isfile(regression) else None)
        with _quiet():
            model, alphabet = esm.pretrained.load_model_and_alphabet_core(model_name, data,
                                                                          reg_data)
        self.checkpoint = os.path.abspath(path)
        self._setup(model, alphabet, layer)
