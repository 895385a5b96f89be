"""Readers, registry and built-in sets of ``matalign.datasets`` (all offline)."""

from __future__ import annotations

import gzip
import itertools
import json
import zlib

import numpy as np
import pytest

import matalign.datasets as mds
from matalign.structures import Structure

ase = pytest.importorskip("ase")
from ase.build import bulk, molecule  # noqa: E402
from ase.io import write  # noqa: E402


def _ids(ds):
    return [s.id for s in ds]


def _check_stable(ds, n=None):
    first = list(itertools.islice(ds, n)) if n else list(ds)
    again = list(itertools.islice(ds, n)) if n else list(ds)
    assert [s.id for s in first] == [s.id for s in again]
    assert len({s.id for s in first}) == len(first)
    json.dumps(ds.metadata)
    return first


# ------------------------------------------------------------------------------- registry

def test_list_names_and_fields():
    infos = mds.list()
    names = [d.name for d in infos]
    for want in ("mptrj", "mattersim-full", "ccd", "nci", "wehi", "chembl", "g2", "s22",
                 "mptrj-ladder", "synthetic-crystals", "nci-brics"):
        assert want in names
    for d in infos:
        assert d.modality and d.source and d.description and d.licence


def test_get_unknown_name_and_option():
    with pytest.raises(ValueError, match="name must be one of"):
        mds.get("nope")
    with pytest.raises(TypeError, match="does not accept options"):
        mds.get("g2", bogus=1)


# ------------------------------------------------------------------------------- readers

def _frames():
    a = bulk("NaCl", "rocksalt", a=5.64)
    a.info["tag"] = "x"
    return [a, bulk("Cu", cubic=True), molecule("H2O")]


@pytest.mark.parametrize("name", ["set.extxyz", "set.xyz.gz"])
def test_extxyz_reader(tmp_path, name):
    frames = _frames()
    path = tmp_path / name
    if name.endswith(".gz"):
        with gzip.open(path, "wt") as fh:
            write(fh, frames, format="extxyz")
    else:
        write(path, frames, format="extxyz")
    ds = mds.open(path)
    got = _check_stable(ds)
    assert _ids(got) == ["set:0", "set:1", "set:2"]
    assert got[0].info["tag"] == "x"
    for s, a in zip(got, frames):
        np.testing.assert_allclose(s.atoms.positions, a.positions, atol=1e-6)
        assert list(s.atoms.numbers) == list(a.numbers)
    assert ds.metadata["format"] == "extxyz"


def test_extxyz_bad_record(tmp_path):
    path = tmp_path / "bad.xyz"
    write(path, _frames(), format="extxyz")
    lines = path.read_text().splitlines(keepends=True)
    n0 = int(lines[0])
    lines[n0 + 2 + 2] = "Cu not-a-number 0.0 0.0\n"  # an atom line of record 1
    path.write_text("".join(lines))
    with pytest.raises(ValueError, match=r"bad\.xyz: cannot read record 1 \(line 5\)"):
        list(mds.open(path))
    ds = mds.open(path, skip_bad=True)
    with pytest.warns(mds.SkippedRecordsWarning, match="skipped 1 unreadable"):
        got = list(ds)
    assert _ids(got) == ["bad:0", "bad:2"] and ds.n_skipped == 1


def test_extxyz_truncated(tmp_path):
    path = tmp_path / "cut.xyz"
    path.write_text("3\n\nH 0 0 0\n")
    with pytest.raises(ValueError, match=r"cut\.xyz: cannot read record 0 \(line 1\).*truncated"):
        list(mds.open(path))


def test_missing_file_and_bad_format(tmp_path):
    with pytest.raises(FileNotFoundError, match="nothere.xyz"):
        mds.open(tmp_path / "nothere.xyz")
    (tmp_path / "a.smi").write_text("C\n")
    with pytest.raises(ValueError, match="format must be one of"):
        mds.open(tmp_path / "a.smi", format="nonsense")


def test_generic_ase_format(tmp_path):
    path = tmp_path / "cu.cif"
    write(path, bulk("Cu", cubic=True))
    got = list(mds.open(path, format="ase"))
    assert _ids(got) == ["cu:0"] and len(got[0].atoms) == 4
    path2 = tmp_path / "POSCAR"
    write(path2, bulk("Si"), format="vasp")
    got = list(mds.open(path2, format="vasp"))
    assert len(got) == 1 and got[0].atoms.get_chemical_formula() == "Si2"


def test_ase_db_reader(tmp_path):
    from ase.db import connect

    path = tmp_path / "s.db"
    con = connect(str(path))
    for a in _frames():
        con.write(a, tag="t")
    ds = mds.open(path)
    assert len(ds) == 3
    got = _check_stable(ds)
    assert _ids(got) == ["s:1", "s:2", "s:3"] and got[0].info["tag"] == "t"
    with pytest.raises(FileNotFoundError, match="missing.db"):
        mds.open(tmp_path / "missing.db")


def _write_aselmdb(path, rows, *, deleted=(), garbage=()):
    lmdb = pytest.importorskip("lmdb")
    env = lmdb.open(str(path), subdir=False, map_size=1 << 24)
    with env.begin(write=True) as txn:
        rid = 1
        for a in rows:
            dct = {"numbers": a.numbers.tolist(), "positions": a.positions.tolist(),
                   "cell": np.asarray(a.cell).tolist(), "pbc": a.pbc.tolist(),
                   "energy": -1.5 * rid, "key_value_pairs": {"sid": f"r{rid}"}}
            value = b"\x00not zlib" if rid in garbage else zlib.compress(
                json.dumps(dct).encode())
            txn.put(str(rid).encode("ascii"), value)
            rid += 1
        txn.put(b"nextid", zlib.compress(json.dumps(rid).encode()))
        if deleted:
            for d in deleted:
                txn.delete(str(d).encode("ascii"))
            txn.put(b"deleted_ids", zlib.compress(json.dumps(list(deleted)).encode()))
    env.close()


def test_aselmdb_reader(tmp_path):
    path = tmp_path / "omat.aselmdb"
    frames = _frames() + [bulk("Si")]
    _write_aselmdb(path, frames, deleted=(2,))
    ds = mds.open(path)
    assert len(ds) == 3
    got = _check_stable(ds)
    assert _ids(got) == ["omat:1", "omat:3", "omat:4"]
    assert got[0].info == {"sid": "r1", "energy": -1.5}
    np.testing.assert_allclose(got[1].atoms.positions, frames[2].positions)
    assert got[2].atoms.pbc.all()


def test_aselmdb_bad_record(tmp_path):
    path = tmp_path / "bad.aselmdb"
    _write_aselmdb(path, _frames(), garbage=(2,))
    with pytest.raises(ValueError, match=r"bad\.aselmdb: cannot read record 1.*row id 2"):
        list(mds.open(path))
    ds = mds.open(path, skip_bad=True)
    with pytest.warns(mds.SkippedRecordsWarning, match="skipped 1"):
        assert _ids(ds) == ["bad:1", "bad:3"]
    assert ds.n_skipped == 1


def test_smiles_reader(tmp_path):
    path = tmp_path / "m.smi"
    path.write_text("SMILES Name\nCCO ethanol\n\n# comment\nc1ccccc1 benzene ring\nC(C\nO\n")
    with pytest.raises(ValueError, match=r"m\.smi: cannot read record 2 \(line 6\)"):
        list(mds.open(path))
    ds = mds.open(path, skip_bad=True)
    with pytest.warns(mds.SkippedRecordsWarning, match="skipped 1"):
        got = list(ds)
    assert _ids(got) == ["m:0", "m:1", "m:3"] and ds.n_skipped == 1
    assert got[1].info["name"] == "benzene ring" and got[0].smiles == "CCO"


def test_smiles_reader_conformers(tmp_path):
    path = tmp_path / "c.smi"
    path.write_text("CCO\nCN\n")
    a = list(mds.open(path, conformers=True, seed=3))
    b = list(mds.open(path, conformers=True, seed=3))
    assert len(a[0].atoms) == 9 and a[0].smiles == "CCO"
    np.testing.assert_array_equal(a[0].atoms.positions, b[0].atoms.positions)


def test_csv_reader(tmp_path):
    path = tmp_path / "d.csv"
    path.write_text("id,SMILES,y\na,CCO,1.0\nb,not_a_smiles,2\nc,CC(=O)O,3\n")
    with pytest.raises(ValueError, match=r"d\.csv: cannot read record 1 \(line 3\)"):
        list(mds.open(path))
    ds = mds.open(path, skip_bad=True, name_column="id")
    with pytest.warns(mds.SkippedRecordsWarning):
        got = list(ds)
    assert _ids(got) == ["d:0", "d:2"] and got[1].info == {"name": "c", "y": "3"}
    other = tmp_path / "e.csv"
    other.write_text("mol,y\nCCO,1\n")
    with pytest.raises(ValueError, match="no SMILES column"):
        list(mds.open(other))
    assert [s.smiles for s in mds.open(other, smiles_column="mol")] == ["CCO"]
    tsv = tmp_path / "f.tsv"
    tsv.write_text("CCO\tx\n")
    assert [s.smiles for s in mds.open(tsv, header=False, smiles_column=0)] == ["CCO"]


def test_sdf_reader(tmp_path):
    Chem = pytest.importorskip("rdkit.Chem")
    from rdkit.Chem import AllChem

    path = tmp_path / "s.sdf"
    w = Chem.SDWriter(str(path))
    m3 = Chem.AddHs(Chem.MolFromSmiles("CCO"))
    AllChem.EmbedMolecule(m3, randomSeed=1)
    m3.SetProp("_Name", "ethanol")
    m3.SetProp("pIC50", "5.5")
    w.write(m3)
    m2 = Chem.MolFromSmiles("c1ccccc1")
    AllChem.Compute2DCoords(m2)
    w.write(m2)
    w.close()
    text = path.read_text()
    path.write_text(text + "garbage\n  broken\n\nM  END\n$$$$\n")
    with pytest.raises(ValueError, match=r"s\.sdf: cannot read record 2"):
        list(mds.open(path))
    ds = mds.open(path, skip_bad=True)
    with pytest.warns(mds.SkippedRecordsWarning):
        got = list(ds)
    assert _ids(got) == ["s:0", "s:1"]
    assert got[0].smiles == "CCO" and len(got[0].atoms) == 9
    assert got[0].info["name"] == "ethanol"
    assert got[1].atoms is None and got[1].smiles == "c1ccccc1"


_PDB = """\
ATOM      1  N   ALA A   1      11.104   6.134  -6.504  1.00  0.00           N
ATOM      2  CA  ALA A   1      11.639   6.071  -5.147  1.00  0.00           C
ATOM      3  C   ALA A   1      13.149   5.836  -5.168  1.00  0.00           C
ATOM      4  O   ALA A   1      13.707   5.352  -6.150  1.00  0.00           O
ATOM      5  N   GLY A   2      13.800   6.180  -4.060  1.00  0.00           N
ATOM      6  CA  GLY A   2      15.245   6.001  -3.961  1.00  0.00           C
ATOM      7  C   GLY A   2      15.700   4.600  -3.600  1.00  0.00           C
ATOM      8  O   GLY A   2      16.800   4.300  -3.100  1.00  0.00           O
TER
ATOM      9  N   TRP B   1       1.104   6.134  -6.504  1.00  0.00           N
ATOM     10  CA  TRP B   1       1.639   6.071  -5.147  1.00  0.00           C
HETATM   11  O   HOH B  10       5.000   5.000   5.000  1.00  0.00           O
END
"""


def test_pdb_reader(tmp_path):
    pytest.importorskip("biotite")
    path = tmp_path / "prot.pdb"
    path.write_text(_PDB)
    got = _check_stable(mds.open(path))
    assert _ids(got) == ["prot:A", "prot:B"]
    assert [s.sequence for s in got] == ["AG", "W"]
    assert len(got[0].atoms) == 8 and len(got[1].atoms) == 2  # water removed
    whole = list(mds.open(path, per="file"))
    assert _ids(whole) == ["prot"] and whole[0].sequence == "AGW"
    with pytest.raises(ValueError, match="per must be"):
        mds.open(path, per="residue")
    bad = tmp_path / "junk.cif"
    bad.write_text("this is not a cif file\n")
    with pytest.raises(ValueError, match=r"junk\.cif: cannot read record 0"):
        list(mds.open(bad))


def test_fasta_reader(tmp_path):
    path = tmp_path / "p.fasta"
    path.write_text(">sp|P1 first protein\nMKT\nAYI\n>two\nMK1V\n>three\nGGG\n")
    with pytest.raises(ValueError, match=r"p\.fasta: cannot read record 1 \(line 4\)"):
        list(mds.open(path))
    ds = mds.open(path, skip_bad=True)
    with pytest.warns(mds.SkippedRecordsWarning):
        got = list(ds)
    assert [(s.id, s.sequence) for s in got] == [("p:0", "MKTAYI"), ("p:2", "GGG")]
    assert got[0].info == {"name": "sp|P1", "description": "first protein"}


# ------------------------------------------------------------------------------ built-ins

def test_mptrj_builtin():
    ds = mds.get("mptrj")
    got = _check_stable(ds)
    assert len(got) == len(ds) == 300
    assert all(s.kind == "crystal" and len(s.atoms) <= 64 for s in got)
    sources = {s.info["source"] for s in got}
    assert sources == {"MPtrj", "Alexandria"}
    assert "CC-BY" in ds.metadata["attribution"]
    assert all(np.isfinite(s.info["energy"]) for s in got)


def test_mattersim_full_needs_local_copy(tmp_path, monkeypatch):
    monkeypatch.delenv("MATALIGN_MATTERSIM_DIR", raising=False)
    with pytest.raises(FileNotFoundError, match="pip download --no-deps --no-binary mattersim"):
        mds.get("mattersim-full")
    with pytest.raises(FileNotFoundError, match="mptrj-random-1k.xyz not found"):
        mds.get("mattersim-full", path=tmp_path)
    bench = tmp_path / "data" / "benchmarks"
    bench.mkdir(parents=True)
    write(bench / "random-TP.xyz", _frames(), format="extxyz")
    monkeypatch.setenv("MATALIGN_MATTERSIM_DIR", str(tmp_path))
    ds = mds.get("mattersim-full", subsets="random-TP")
    assert _ids(ds) == ["random-TP:0", "random-TP:1", "random-TP:2"]
    with pytest.raises(ValueError, match="subsets must name"):
        mds.get("mattersim-full", subsets="other")


@pytest.mark.parametrize("name,n,skipped", [("nci", 4999, 8), ("chembl", 1017, 0)])
def test_rdkit_smiles_builtins(name, n, skipped):
    ds = mds.get(name)
    got = _check_stable(ds)
    assert len(got) + ds.n_skipped == n and ds.n_skipped == skipped
    assert got[0].id == f"{name}:0" and got[0].smiles


def test_wehi_builtin():
    ds = mds.get("wehi")
    first = _check_stable(ds, 50)
    assert first[0].info["name"].startswith("WEHI-") and ds.length_hint() == 10000


def test_smiles_builtin_conformers():
    got = list(itertools.islice(mds.get("nci", conformers=True, seed=1), 3))
    assert all(s.atoms is not None and s.smiles for s in got)


@pytest.mark.parametrize("name,n", [("g2", 162), ("s22", 22)])
def test_ase_collections(name, n):
    ds = mds.get(name)
    got = _check_stable(ds)
    assert len(got) == len(ds) == n and all(s.kind == "molecule" for s in got)


def test_ccd_builtin():
    pytest.importorskip("biotite")
    ds = mds.get("ccd", elements="HCNO", max_atoms=30, n=4)
    got = _check_stable(ds)
    assert len(got) == 4 and all(s.id.startswith("ccd:") for s in got)
    for s in got:
        assert set(s.atoms.get_chemical_symbols()) <= set("HCNO") and len(s.atoms) <= 30
        assert "H" in s.atoms.get_chemical_symbols() and s.smiles
    assert ds.n_filtered > 0
    with pytest.raises(ValueError, match="elements must be"):
        mds.get("ccd", elements="HQ")
    with pytest.raises(ValueError, match="max_atoms must be"):
        mds.get("ccd", max_atoms=0)


@pytest.mark.parametrize("options", [
    {"elements": "HCNO", "max_atoms": 20, "min_atoms": 4, "n": 12},
    {"elements": "CNOS", "hydrogens": False, "max_atoms": 12, "n": 6},
])
def test_ccd_formula_shortcut_changes_nothing(monkeypatch, options):
    """Components rejected from their chem_comp formula alone are exactly those the atoms
    would reject: the same records, in the same order, as building every component. (A
    component that fails the filter and also has no coordinates counts as filtered on the
    shortcut and as a bad record without it, hence >= for the filtered count.)"""
    pytest.importorskip("biotite")
    from matalign.datasets import _builtin

    fast = mds.get("ccd", **options)
    got = [(s.id, s.smiles, s.atoms.get_positions().tobytes()) for s in fast]
    assert fast._formulas()                 # the shortcut is live in this biotite
    monkeypatch.setattr(_builtin._Ccd, "_formulas", staticmethod(lambda: {}))
    slow = mds.get("ccd", **options)
    want = [(s.id, s.smiles, s.atoms.get_positions().tobytes()) for s in slow]
    assert got == want and len(got) == options["n"]
    assert fast.n_filtered >= slow.n_filtered > 0


def test_structure_inputs_via_list():
    ds = mds.crystal_ladder([Structure("x", atoms=bulk("Cu"))], kind="rattle", levels=(0.1,))
    assert _ids(ds) == ["x/rattle=0.1/s0"]


def test_missing_optional_package_names_pip(tmp_path, monkeypatch):
    import sys

    path = tmp_path / "x.aselmdb"
    path.write_bytes(b"")
    monkeypatch.setitem(sys.modules, "lmdb", None)
    with pytest.raises(ImportError, match=r"'lmdb' package.*pip install lmdb"):
        list(mds.open(path))


def test_data_file_is_package_data():
    from importlib import resources

    ref = resources.files("matalign") / "data" / "mptrj_slice.extxyz.gz"
    assert ref.is_file() and len(ref.read_bytes()) < 1_500_000


def test_datasets_package_has_no_import_cycle():
    # Every relative import between the datasets modules (at module level or inside a
    # function) forms a graph without cycles, and none sits inside a function.
    import ast
    from pathlib import Path

    import matalign.datasets as pkg

    root = Path(pkg.__file__).parent
    graph, nested = {}, []
    for path in sorted(root.glob("*.py")):
        mod = path.stem
        tree = ast.parse(path.read_text())
        top = set(id(n) for n in tree.body)
        deps = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.level == 1:
                targets = [node.module] if node.module else [a.name for a in node.names]
                deps.update(t.split(".")[0] for t in targets)
                if id(node) not in top:
                    nested.append((mod, targets))
        graph[mod] = deps - {mod}
    assert not nested, nested
    state = {}

    def visit(m, stack):
        if state.get(m) == "done":
            return
        assert state.get(m) != "open", f"import cycle: {' -> '.join(stack + [m])}"
        state[m] = "open"
        for d in sorted(graph.get(m, ())):
            visit(d, stack + [m])
        state[m] = "done"

    for m in graph:
        visit(m, [])
    assert "_catalog" in graph["_common"] and "_registry" not in graph["_common"]


def test_mattersim_full_reads_the_sdist_tarball_and_fetch_uses_the_cache(tmp_path, monkeypatch):
    # A small local stand-in for the mattersim 1.2.3 sdist: the .tar.gz with
    # mattersim-1.2.3/data/benchmarks/<subset>.xyz members (plus a decoy .xyz elsewhere).
    import importlib
    import tarfile

    study = importlib.import_module("matalign.study")     # the module (ma.study is a function)

    src = tmp_path / "src" / "mattersim-1.2.3"
    bench = src / "data" / "benchmarks"
    bench.mkdir(parents=True)
    frames = _frames()
    write(bench / "random-TP.xyz", frames, format="extxyz")
    write(bench / "mpf-alkali-TP.xyz", frames[:2], format="extxyz")
    write(src / "decoy.xyz", frames[:1], format="extxyz")
    cache = tmp_path / "cache"
    cache.mkdir()
    target = cache / "mattersim-1.2.3.tar.gz"
    with tarfile.open(target, "w:gz") as tar:
        tar.add(src, arcname="mattersim-1.2.3")
    monkeypatch.delenv("MATALIGN_MATTERSIM_DIR", raising=False)
    ds = mds.get("mattersim-full", path=target, subsets=["random-TP", "mpf-alkali-TP"])
    got = list(ds)
    assert [s.id for s in got] == ["random-TP:0", "random-TP:1", "random-TP:2",
                                   "mpf-alkali-TP:0", "mpf-alkali-TP:1"]
    for s, f in zip(got, frames + frames[:2]):
        np.testing.assert_allclose(s.atoms.positions, f.positions)
        assert s.atoms.get_chemical_formula() == f.get_chemical_formula()
    with pytest.raises(FileNotFoundError, match="mptrj-random-1k.xyz not in"):
        list(mds.get("mattersim-full", path=target, subsets="mptrj-random-1k"))

    # fetch_mattersim: a cached archive is returned without running pip
    def no_pip(*a, **k):
        raise AssertionError("pip must not run when the archive is cached")
    monkeypatch.setattr("subprocess.run", no_pip)
    assert study.fetch_mattersim(cache) == target
    # a failed download is a StudyError that says how to get the data by hand
    import subprocess

    monkeypatch.setattr("subprocess.run", lambda cmd, **k: subprocess.CompletedProcess(
        cmd, 1, "", "ERROR: No matching distribution found for mattersim==1.2.3"))
    with pytest.raises(study.StudyError, match="MATALIGN_MATTERSIM_DIR.*|No matching"):
        study.fetch_mattersim(tmp_path / "empty")
