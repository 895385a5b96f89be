"""The random-init transformers SMILES encoder (RoBERTa, ChemBERTa architecture)."""

from __future__ import annotations

import numpy as np
import pytest

import matalign as ma
from matalign.structures import Structure

pytest.importorskip("transformers")
SMALL = dict(num_layers=2, hidden_size=32, heads=4, intermediate_size=64)


def _mols():
    return [Structure("ethanol", smiles="CCO"), Structure("ethanol-2", smiles="OCC"),
            Structure("bromobenzene", smiles="c1ccccc1Br"),
            Structure("alanine", smiles="C[C@@H](C(=O)O)N")]


def test_tokenizer_splits_smiles_symbols():
    from matalign.adapters.text import smiles_tokenizer

    tok = smiles_tokenizer()
    ids = tok(["C[C@@H](Cl)c1ccccc1", "[Xe]O%12"])["input_ids"]
    assert tok.convert_ids_to_tokens(ids[0]) == ["<s>", "C", "[C@@H]", "(", "Cl", ")", "c", "1",
                                                 "c", "c", "c", "c", "c", "1", "</s>"]
    assert tok.convert_ids_to_tokens(ids[1]) == ["<s>", "<unk>", "O", "%12", "</s>"]


def test_random_chemberta_forward_layer_and_pooling():
    info = ma.adapters.info("random-chemberta")
    assert (info.family, info.offline, info.dim, info.environment) == ("random", True, 768,
                                                                        "main")
    a = ma.adapters.get("random-chemberta", **SMALL)
    x = a.embed(_mols(), batch_size=3)
    assert x.shape == (4, 32) and x.dtype == np.float32 and np.isfinite(x).all()
    assert np.array_equal(x[0], x[1])             # canonical SMILES: one molecule, one vector
    assert not np.array_equal(x[0], x[2])
    # same seed, same weights; another seed, other weights
    assert np.array_equal(ma.adapters.get("random-chemberta", **SMALL).embed(_mols()), x)
    assert not np.allclose(ma.adapters.get("random-chemberta", seed=1, **SMALL).embed(_mols()), x)
    # layer choice and pooling, against the model's own hidden states (float64 reference)
    import torch

    first = ma.adapters.get("random-chemberta", layer=0, pooling="max", **SMALL)
    enc = first._tokenizer(["CCO"], return_tensors="pt")
    with torch.no_grad():
        h = first._model(**enc, output_hidden_states=True).hidden_states[0][0].double()
    assert np.allclose(first.embed(_mols()[:1])[0], h.max(dim=0).values.numpy(), atol=1e-6)
    assert a.metadata["random_init"] is True and a.layer == "hidden_states[2] of 2"
    with pytest.raises(ValueError, match=r"layer must be an integer in -3..2 for this 2-layer "
                                         r"model, got 5"):
        ma.adapters.get("random-chemberta", layer=5, **SMALL)
    with pytest.raises(ValueError, match=r"structure 'bad'"):
        a.embed([Structure("bad", smiles="C1CC")])
