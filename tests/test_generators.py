"""Seeded generators of ``matalign.datasets``: determinism, ids, stated perturbation sizes,
and streaming rate / constant memory for the million-structure OOD job."""

from __future__ import annotations

import itertools
import time
import tracemalloc

import numpy as np
import pytest

import matalign.datasets as mds
from matalign.structures import Structure

ase = pytest.importorskip("ase")
from ase.build import bulk  # noqa: E402


def _base():
    return [bulk("NaCl", "rocksalt", a=5.64, cubic=True).repeat((2, 2, 2)),
            bulk("Cu", cubic=True).repeat((2, 2, 2))]


def _snapshot(ds, n=None):
    return [(s.id, s.atoms.numbers.tolist(), s.atoms.positions.round(10).tolist(),
             np.asarray(s.atoms.cell).round(10).tolist()) for s in itertools.islice(ds, n)]


@pytest.mark.parametrize("kind", ["strain", "rattle", "vacancy", "substitution"])
def test_ladder_deterministic_and_seed_dependent(kind):
    a = mds.crystal_ladder(_base(), kind=kind, n_per_level=2, seed=0)
    b = mds.crystal_ladder(_base(), kind=kind, n_per_level=2, seed=0)
    c = mds.crystal_ladder(_base(), kind=kind, n_per_level=2, seed=1)
    sa, sb, sc = _snapshot(a), _snapshot(b), _snapshot(c)
    assert sa == sb and sa == _snapshot(a)
    assert [x[0] for x in sa] == [x[0] for x in sc] and sa != sc
    ids = [x[0] for x in sa]
    assert len(ids) == len(set(ids)) == len(a)
    assert ids[0] == "base:0/" + kind + "=0/s0"
    first = next(iter(a))
    assert first.info["kind"] == kind and first.info["level"] == 0.0


@pytest.mark.parametrize("level", [0.01, 0.05, 0.2])
def test_strain_amount(level):
    base = _base()[0]
    for s in mds.crystal_ladder([base], kind="strain", levels=(level,), n_per_level=3, seed=7):
        deform = np.linalg.solve(np.asarray(base.cell), np.asarray(s.atoms.cell))
        eps = deform - np.eye(3)
        np.testing.assert_allclose(eps, eps.T, atol=1e-12)
        assert np.abs(np.linalg.eigvalsh(eps)).max() == pytest.approx(level, rel=1e-9)
        np.testing.assert_allclose(s.atoms.get_scaled_positions(wrap=False),
                                   base.get_scaled_positions(wrap=False), atol=1e-9)


@pytest.mark.parametrize("sigma", [0.01, 0.1, 0.3])
def test_rattle_amount(sigma):
    base = bulk("Cu", cubic=True).repeat((4, 4, 4))  # 256 atoms, 768 displacements
    (s,) = mds.crystal_ladder([base], kind="rattle", levels=(sigma,), seed=3)
    d = s.atoms.positions - base.positions
    assert d.std() == pytest.approx(sigma, rel=0.1)
    assert abs(d.mean()) < 4 * sigma / np.sqrt(d.size)
    np.testing.assert_array_equal(s.atoms.cell, base.cell)


def test_vacancy_and_substitution_amount():
    base = _base()[0]  # 64 atoms
    n = len(base)
    for s in mds.crystal_ladder([base], kind="vacancy", levels=(0, 0.1, 0.5), seed=0):
        assert len(s.atoms) == n - round(s.info["level"] * n)
    for s in mds.crystal_ladder([base], kind="substitution", levels=(0.25,), seed=0):
        changed = np.flatnonzero(s.atoms.numbers != base.numbers)
        assert len(changed) == s.info["n_changed"] == round(0.25 * n)
        for i in changed:
            assert s.atoms.numbers[i] in mds.similar_elements(base.numbers[i])


def test_ladder_errors():
    with pytest.raises(ValueError, match="kind must be one of"):
        mds.crystal_ladder(_base(), kind="shear")
    with pytest.raises(ValueError, match="levels must be"):
        mds.crystal_ladder(_base(), kind="rattle", levels=(-0.1,))
    with pytest.raises(ValueError, match="fractions of atoms"):
        mds.crystal_ladder(_base(), kind="vacancy", levels=(2,))
    with pytest.raises(ValueError, match="seed must be"):
        mds.crystal_ladder(_base(), seed=-1)
    with pytest.raises(ValueError, match="has no atoms"):
        list(mds.crystal_ladder(["CCO"]))


def test_mptrj_ladder_via_get():
    ds = mds.get("mptrj-ladder", kind="strain", levels=(0.0, 0.05), seed=0)
    assert len(ds) == 600
    got = list(itertools.islice(ds, 4))
    assert [s.id for s in got] == ["mptrj:0/strain=0/s0", "mptrj:0/strain=0.05/s0",
                                   "mptrj:1/strain=0/s0", "mptrj:1/strain=0.05/s0"]
    assert ds.metadata["base"]["name"] == "mptrj"


def test_synthetic_crystals_deterministic():
    a = _snapshot(mds.synthetic_crystals(300, seed=0))
    assert a == _snapshot(mds.synthetic_crystals(300, seed=0))
    b = _snapshot(mds.synthetic_crystals(300, seed=1))
    assert [x[0] for x in a] == [x[0] for x in b] and a != b
    ds = mds.synthetic_crystals(300, seed=0)
    assert _snapshot([ds[17]]) == [a[17]]
    assert _snapshot(mds.synthetic_crystals(300, seed=0, start=290)) == a[290:]
    for s in itertools.islice(ds, 300):
        assert s.atoms.pbc.all() and 1 <= len(s.atoms) <= 40
        assert abs(np.linalg.det(np.asarray(s.atoms.cell))) > 1.0
        d = s.atoms.get_all_distances(mic=True)[np.triu_indices(len(s.atoms), 1)]
        assert d.size == 0 or d.min() > 0.5
    with pytest.raises(ValueError, match="n must be"):
        mds.synthetic_crystals(0)


def test_synthetic_crystals_stream_rate_and_memory():
    """20k structures stream in constant memory; the rate extrapolates the 1M OOD job."""
    n = 20_000
    ds = mds.synthetic_crystals(1_000_000, seed=0)
    t0 = time.perf_counter()
    count = sum(1 for _ in itertools.islice(ds, n))
    dt = time.perf_counter() - t0
    rate = count / dt
    print(f"synthetic_crystals: {rate:.0f} structures/s, 1M in {1e6 / rate / 60:.1f} min")
    assert count == n and rate > 500  # lenient: 2 shared cores; ~3-5k/s measured
    tracemalloc.start()
    it = iter(ds)
    for _ in itertools.islice(it, 500):
        pass
    base, _ = tracemalloc.get_traced_memory()
    tracemalloc.reset_peak()
    for _ in itertools.islice(it, 4000):
        pass
    cur, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert cur - base < 200_000 and peak - base < 1_000_000


def test_conformers_generator():
    smiles = ["CCO", "c1ccccc1O", "CC(=O)N"]
    a = list(mds.conformers(smiles, n_conformers=2, seed=0))
    b = list(mds.conformers(smiles, n_conformers=2, seed=0))
    c = list(mds.conformers(smiles, n_conformers=2, seed=1))
    assert [s.id for s in a] == ["smiles:0/etkdg/s0", "smiles:0/etkdg/s1", "smiles:1/etkdg/s0",
                                 "smiles:1/etkdg/s1", "smiles:2/etkdg/s0", "smiles:2/etkdg/s1"]
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x.atoms.positions, y.atoms.positions)
    assert any(not np.allclose(x.atoms.positions, z.atoms.positions) for x, z in zip(a, c))
    assert len(a[0].atoms) == 9 and a[0].smiles == "CCO"
    with pytest.raises(ValueError, match="has no SMILES"):
        list(mds.conformers([bulk("Cu")]))


def test_brics_generator():
    seeds = ["CCOC(=O)c1ccccc1", "CN1CCN(CC1)c1ccccc1", "Oc1ccc(cc1)C(=O)NC",
             "c1ccc2[nH]ccc2c1CC(=O)OC", "CC(C)Oc1ccccc1S(=O)(=O)N"]
    a = [(s.id, s.smiles) for s in mds.brics(seeds, 30, seed=0)]
    assert a == [(s.id, s.smiles) for s in mds.brics(seeds, 30, seed=0)]
    b = [(s.id, s.smiles) for s in mds.brics(seeds, 30, seed=1)]
    assert a != b
    assert [x[0] for x in a] == [f"brics:{i}" for i in range(30)]
    assert len({x[1] for x in a}) == 30
    Chem = pytest.importorskip("rdkit.Chem")
    assert all(Chem.MolFromSmiles(smi) is not None for _, smi in a)


def test_nci_brics_via_get():
    got = [s.smiles for s in mds.get("nci-brics", n=20, seed=0, n_seeds=100)]
    assert len(set(got)) == 20


def test_mutant_scan():
    ds = mds.mutant_scan({"p": "MKV"})
    got = list(ds)
    assert len(got) == 1 + 19 * 3 and got[0].id == "p/wt"
    assert got[1].id == "p/M1A" and got[1].sequence == "AKV"
    assert len({s.id for s in got}) == len(got)
    for s in got[1:]:
        diff = [i for i, (x, y) in enumerate(zip(s.sequence, "MKV")) if x != y]
        assert len(diff) == 1
    d1 = [(s.id, s.sequence) for s in mds.mutant_scan(["MKTAYIAK"], n=10, double=True, seed=0)]
    d2 = [(s.id, s.sequence) for s in mds.mutant_scan(["MKTAYIAK"], n=10, double=True, seed=0)]
    d3 = [(s.id, s.sequence) for s in mds.mutant_scan(["MKTAYIAK"], n=10, double=True, seed=1)]
    assert d1 == d2 and d1 != d3 and len(d1) == 11 and len({x[0] for x in d1}) == 11
    for _, seq in d1[1:]:
        assert sum(x != y for x, y in zip(seq, "MKTAYIAK")) == 2
    single = list(mds.mutant_scan(["MKTAYIAK"], n=5, seed=0, include_wildtype=False))
    assert len(single) == 5
    with pytest.raises(ValueError, match="has no sequence"):
        list(mds.mutant_scan([Structure("x", atoms=bulk("Cu"))]))
    with pytest.raises(ValueError, match="n must be"):
        mds.mutant_scan(["MKV"], n=0)
