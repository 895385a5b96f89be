"""AntiBERTy adapters (weights in the antiberty 0.1.3 wheel, installed with --no-deps).

Everything runs offline (tests/conftest.py refuses any connection). The independent path is
the package's own code: its ``AntiBERTy`` model class (heads and all) loaded with the whole
shipped state dict, and its ``AntiBERTyRunner.embed`` (tokenising, padding, hidden-state
gathering), given a transformers ``BertTokenizer`` built from the shipped vocabulary (the
runner's own ``BertTokenizer(vocab_file=...)`` gets an empty vocabulary in transformers 5).
"""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest

import matalign as ma
from matalign.adapters import _status
from matalign.structures import Structure

HAVE = importlib.util.find_spec("antiberty") is not None
needs = pytest.mark.skipif(not HAVE, reason="antiberty is not installed "
                                            "(pip install --no-deps antiberty==0.1.3)")

# Antibody fragments (heavy and light framework/CDR stretches) of different lengths, and a
# mutant of the first: lengths 9..30, so batches are padded.
SEQS = {"vh": "EVQLVESGGGLVQPGGSLRLSCAASGFTFS", "vl": "DIQMTQSPSSLSASVGDRVTITC",
        "cdrh3": "ARDRGYSSGWYFDV", "short": "QVQLQQSGA", "vh-m": "EVQLVESGGGLVQPGGSLKLSCAASGFTFS",
        "fw3": "RFTISRDNSKNTLYLQMNSLRAEDTAVYYC"}


def _structs(names=None):
    return [Structure(k, sequence=v) for k, v in SEQS.items() if names is None or k in names]


@pytest.fixture(scope="module")
def ab():
    torch = pytest.importorskip("torch")
    if not HAVE:
        pytest.skip("antiberty is not installed (pip install --no-deps antiberty==0.1.3)")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield {n: ma.adapters.get(n) for n in ("antiberty", "random-antiberty")}
    torch.set_num_threads(threads)


@needs
def test_shape_dtype_finite_deterministic_and_metadata(ab):
    ad = ab["antiberty"]
    e = ad.embed(_structs())
    assert e.shape == (6, 512) and e.dtype == np.float32 and np.isfinite(e).all()
    np.testing.assert_array_equal(e, ad.embed(_structs()))
    np.testing.assert_array_equal(e, ma.adapters.get("antiberty").embed(_structs()))  # rebuilt
    meta = ad.metadata
    assert meta["checkpoint"].endswith("AntiBERTy_md_smooth/pytorch_model.bin")
    assert len(meta["checkpoint_sha256"]) == 64 and meta["package_version"] == "0.1.3"
    assert meta["layer_name"] == "hidden8" and meta["num_layers"] == 8
    assert ad.layers() == [f"hidden{i}" for i in range(9)] and ad.default_layer == "hidden8"


def _package_runner(monkeypatch):
    """The package's AntiBERTyRunner around its own AntiBERTy class, built by hand: its
    ``from_pretrained`` path fails in transformers 5, so the class is constructed with its
    ``init_weights`` a no-op (every weight is then loaded, strictly) and the tokenizer is
    transformers' BertTokenizer over the shipped vocabulary."""
    import torch
    import transformers
    from antiberty import AntiBERTyRunner
    from antiberty.AntiBERTyRunner import CHECKPOINT_PATH, VOCAB_FILE
    from antiberty.model.AntiBERTy import AntiBERTy

    monkeypatch.setattr(AntiBERTy, "init_weights", lambda self: None)
    cfg = transformers.BertConfig.from_json_file(f"{CHECKPOINT_PATH}/config.json")
    model = AntiBERTy(cfg)
    state = torch.load(f"{CHECKPOINT_PATH}/pytorch_model.bin", map_location="cpu",
                       weights_only=True)
    model.load_state_dict({k: v for k, v in state.items() if not k.endswith("position_ids")},
                          strict=True)
    runner = object.__new__(AntiBERTyRunner)
    runner.model, runner.device = model.eval(), torch.device("cpu")
    with open(VOCAB_FILE) as f:
        vocab = {t.strip(): i for i, t in enumerate(f) if t.strip()}
    runner.tokenizer = transformers.BertTokenizer(vocab=vocab, do_lower_case=False)
    ids = runner.tokenizer(" ".join("ACDY"))["input_ids"]
    assert ids == [vocab["[CLS]"], vocab["A"], vocab["C"], vocab["D"], vocab["Y"],
                   vocab["[SEP]"]]
    return runner


@needs
def test_equals_the_packages_own_runner_at_every_layer(ab, monkeypatch):
    """Every layer, mean over residues, equals the package runner's hidden states (its
    [CLS]/[SEP] rows dropped) averaged in float64; one padded batch on both sides."""
    import warnings

    runner = _package_runner(monkeypatch)
    ad = ab["antiberty"]
    structs = _structs()
    out = ad.embed_layers(structs, batch_size=len(structs))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")      # "use_return_dict is deprecated" (transformers 5)
        hs = runner.embed([s.sequence for s in structs], hidden_layer=None)
    for i in range(9):
        ref = np.stack([h[i][1:-1].numpy().astype(np.float64).mean(0) for h in hs])
        np.testing.assert_allclose(out[(f"hidden{i}", "mean")], ref, rtol=1e-6, atol=1e-6,
                                   err_msg=f"hidden{i}")
        assert hs[0].shape == (9, len(SEQS["vh"]) + 2, 512)
    np.testing.assert_array_equal(out[("hidden8", "mean")], ad.embed(structs, batch_size=6))
    for how in ("sum", "max"):   # the other poolings, on the same residues
        got = ma.adapters.get("antiberty", pooling=how, layer="hidden4").embed(structs,
                                                                               batch_size=6)
        rows = [h[4][1:-1].numpy().astype(np.float64) for h in hs]
        ref = np.stack([r.sum(0) if how == "sum" else r.max(0) for r in rows])
        np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-4)


@needs
def test_batching_invariant(ab):
    """Padding changes only the last bits: one sequence alone, in a padded batch, or in any
    order gives the same row to float32 rounding."""
    ad = ab["antiberty"]
    structs = _structs()
    whole = ad.embed(structs, batch_size=6)
    alone = ad.embed(structs, batch_size=1)
    np.testing.assert_allclose(whole, alone, rtol=1e-5, atol=1e-5)
    perm = [3, 0, 5, 1, 4, 2]
    np.testing.assert_allclose(ad.embed([structs[i] for i in perm], batch_size=4), whole[perm],
                               rtol=1e-5, atol=1e-5)


@needs
def test_random_differs_from_trained_and_is_seeded(ab):
    import torch

    structs = _structs()
    trained, rnd = ab["antiberty"].embed(structs), ab["random-antiberty"].embed(structs)
    assert not np.allclose(trained, rnd, atol=1e-2)
    # Residue order matters to the trained model: a point mutant is closer to its parent
    # than an unrelated chain is.
    d = {k: np.linalg.norm(trained[0] - trained[i]) for k, i in (("mutant", 4), ("vl", 1))}
    assert d["mutant"] < d["vl"]
    state = torch.random.get_rng_state()
    again = ma.adapters.get("random-antiberty")
    assert torch.equal(state, torch.random.get_rng_state())      # caller's RNG untouched
    np.testing.assert_array_equal(again.embed(structs), rnd)
    other = ma.adapters.get("random-antiberty", seed=1).embed(structs)
    assert not np.allclose(other, rnd, atol=1e-3)
    meta = ab["random-antiberty"].metadata
    assert meta["random_init"] is True and meta["seed"] == 0 and meta["checkpoint"] is None
    assert meta["architecture_from"].endswith("AntiBERTy_md_smooth/config.json")


@needs
@pytest.mark.parametrize("seq,msg", [
    ("DIQXTQ", r"structure 'bad' has 'X' at position 4 of its sequence; AntiBERTy's "
               r"vocabulary holds the 20 standard amino acids"),
    ("diqmtq", r"structure 'bad' has 'd' at position 1 of its sequence"),
    ("EVQLÉ", r"structure 'bad' has 'É' at position 5 of its sequence"),
    ("", r"structure 'bad' has an empty or non-string sequence"),
    ("A" * 511, r"structure 'bad' has 511 residues; AntiBERTy reads at most 510"),
])
def test_bad_sequences_raise_naming_the_structure(ab, seq, msg):
    with pytest.raises(ValueError, match=f"adapter 'antiberty': {msg}"):
        ab["antiberty"].embed([Structure("ok", sequence="EVQL"), Structure("bad", sequence=seq)])


@needs
def test_longest_sequence_and_bad_options(ab):
    assert ab["antiberty"].embed([Structure("long", sequence="EVQL" * 127 + "EV")]).shape \
        == (1, 512)
    with pytest.raises(ValueError, match=r"adapter 'antiberty': layer must be one of "
                                         r"hidden0..hidden8 or an integer in -9..8, got 9"):
        ma.adapters.get("antiberty", layer=9)
    with pytest.raises(ValueError, match=r"layer must be one of hidden0..hidden8 .*got 'last'"):
        ma.adapters.get("random-antiberty", layer="last")
    with pytest.raises(ValueError, match="pooling must be one of"):
        ma.adapters.get("antiberty", pooling="median")
    with pytest.raises(ValueError, match="reads 'sequence' but structure 'm' has none"):
        ab["antiberty"].embed([Structure("m", smiles="CCO")])


def test_not_installed_names_the_pip_command(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "antiberty" else real(name, *a))
    with pytest.raises(ImportError, match=r"need the package 'antiberty' 0.1.3, which is not "
                                          r"installed: pip install --no-deps antiberty==0.1.3"):
        ma.adapters.get("antiberty")


@needs
def test_a_release_without_the_weights_says_to_pin(monkeypatch):
    from matalign.adapters import antiberty as mod

    monkeypatch.setattr(mod, "_MODEL_DIR", ("trained_models", "no-such-folder"))
    with pytest.raises(FileNotFoundError, match=r"the installed antiberty is not 0.1.3 \(1.x "
                                                r"does not ship its weights\); pip install "
                                                r"--no-deps antiberty==0.1.3"):
        ma.adapters.get("random-antiberty")


def test_models_table_rows(tmp_path, monkeypatch):
    monkeypatch.setenv("MATALIGN_CACHE_DIR", str(tmp_path))
    rows = {r["name"]: r for r in _status.models_table()}
    assert rows["antiberty"]["weights"] == "shipped"
    assert rows["random-antiberty"]["weights"] == "random-init"
    for name in ("antiberty", "random-antiberty"):
        r = rows[name]
        assert r["modality"] == "sequence" and r["dim"] == 512 and r["pooling"] == "mean"
        assert r["layer"].startswith("hidden8") and r["environment"] == "main"
        assert r["status"] == ("importable" if HAVE else "not installed")
