"""Bad input files at the edges: every one gives one clear line naming the file and exit 2
through the command line (run in a subprocess, so a segfault or an abort fails the test), and
a clear ValueError through the Python API. Non-finite and absurd coordinates never reach
native descriptor code."""

from __future__ import annotations

import gzip
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from ase.build import bulk, molecule
from ase.io import write

import matalign as ma
import matalign.datasets as mds
from matalign.structures import MAX_COORDINATE, Structure, check_atoms

pytest.importorskip("dscribe")


def _cli(*args, cwd=None):
    """Run ``python -m matalign ARGS`` in a subprocess; (status, stdout, stderr)."""
    env = dict(os.environ, MATALIGN_DEBUG="0", NO_COLOR="1", COLUMNS="400")
    p = subprocess.run([sys.executable, "-m", "matalign", *map(str, args)], capture_output=True,
                       text=True, timeout=300, env=env, cwd=cwd)
    return p.returncode, p.stdout, p.stderr


def _assert_one_line(status, err, command, *needles):
    assert status == 2, (status, err)
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert lines[0].startswith(f"matalign {command}: error: "), err
    assert "Traceback" not in err and "interrupted" not in err
    for needle in needles:
        assert str(needle) in lines[0], (needle, lines[0])
    return lines[0]


def _extxyz_with(path: Path, value: float, where: str = "position", n: int = 3, bad: int = 1):
    """``n`` rocksalt frames; frame ``bad`` gets ``value`` in one coordinate (or cell entry)."""
    frames = []
    for i in range(n):
        a = bulk("NaCl", "rocksalt", a=5.6 + 0.01 * i)
        frames.append(a)
    write(path, frames, format="extxyz")
    if not np.isfinite(value) or abs(value) > MAX_COORDINATE:
        lines = path.read_text().splitlines(keepends=True)
        starts = []
        i = 0
        while i < len(lines):
            starts.append(i)
            i += int(lines[i].split()[0]) + 2
        s = starts[bad]
        text = repr(float(value)) if np.isfinite(value) else ("nan" if np.isnan(value)
                                                              else ("inf" if value > 0 else "-inf"))
        if where == "position":
            parts = lines[s + 2].split()
            parts[2] = text
            lines[s + 2] = " ".join(parts) + "\n"
        else:
            lines[s + 1] = re.sub(r'Lattice="(\S+)', f'Lattice="{text}', lines[s + 1], count=1)
        path.write_text("".join(lines))
    return path


BAD_VALUES = [float("nan"), float("inf"), -float("inf"), 1e30]


# ------------------------------------------------------------------ the shared validation helper

@pytest.mark.parametrize("value", BAD_VALUES + [-2e6])
def test_check_atoms_rejects_bad_positions_and_cells(value):
    a = molecule("H2O")
    pos = a.get_positions()
    pos[2, 1] = value
    a.set_positions(pos)
    with pytest.raises(ValueError, match=r"^w: position of atom 2 "):
        check_atoms(a, "w")
    c = bulk("Cu")
    cell = c.cell.array.copy()
    cell[1, 0] = value
    c.cell = cell
    with pytest.raises(ValueError, match=r"^w: cell vector 1 "):
        check_atoms(c, "w")
    with pytest.raises(ValueError, match=r"structure 'x': position of atom 2"):
        Structure("x", atoms=a)


def test_check_atoms_accepts_the_bound_itself():
    a = molecule("H2")
    pos = a.get_positions()
    pos[0, 0] = MAX_COORDINATE          # on the bound: accepted
    a.set_positions(pos)
    check_atoms(a, "h2")
    pos[0, 0] = np.nextafter(MAX_COORDINATE, np.inf)
    a.set_positions(pos)
    with pytest.raises(ValueError, match=r"has a component 1e\+06 Å; \|positions\| above 1e\+06"):
        check_atoms(a, "h2")


def test_adapters_check_atoms_changed_after_construction():
    # Atoms can be edited in place after the Structure was built: the adapter checks again
    # before dscribe (native code) sees them.
    s = Structure("nacl", atoms=bulk("NaCl", "rocksalt", a=5.64))
    pos = s.atoms.get_positions()
    pos[0, 0] = np.nan
    s.atoms.set_positions(pos)
    for name in ("soap", "acsf", "composition", "element-stats"):
        adapter = ma.adapters.get(name)
        with pytest.raises(ValueError, match=rf"adapter '{name}': structure 'nacl': position "
                                             rf"of atom 0 is nan"):
            adapter.embed([s])


# -------------------------------------------------------------------------------- the readers

@pytest.mark.parametrize("where", ["position", "cell"])
@pytest.mark.parametrize("value", BAD_VALUES)
def test_extxyz_reader_rejects_and_skips_non_finite(tmp_path, value, where):
    path = _extxyz_with(tmp_path / "bad.extxyz", value, where)
    label = "position of atom 0" if where == "position" else "cell vector 0"
    with pytest.raises(ValueError, match=rf"bad\.extxyz: cannot read record 1 \(line \d+\): "
                                         rf"(ValueError: )?structure 'bad:1': {label}"):
        list(mds.open(path))
    ds = mds.open(path, skip_bad=True)
    with pytest.warns(mds.SkippedRecordsWarning, match="skipped 1 unreadable"):
        got = list(ds)
    assert [s.id for s in got] == ["bad:0", "bad:2"] and ds.n_skipped == 1


def test_ase_db_and_generic_ase_readers_reject_non_finite(tmp_path):
    from ase.db import connect

    bad = bulk("Cu")
    pos = bad.get_positions()
    pos[0, 2] = np.inf
    bad.set_positions(pos)
    db = tmp_path / "s.db"
    con = connect(str(db))
    con.write(bulk("Cu"))
    con.write(bad)
    with pytest.raises(ValueError, match=r"s\.db: cannot read record 1: row id 2: .*position "
                                         r"of atom 0 is inf"):
        list(mds.open(db))
    ds = mds.open(db, skip_bad=True)
    with pytest.warns(mds.SkippedRecordsWarning):
        assert [s.id for s in ds] == ["s:1"]
    traj = tmp_path / "t.traj"
    write(traj, [bulk("Cu"), bad])
    with pytest.raises(ValueError, match=r"t\.traj: cannot read record 1: .*position of atom 0 "
                                         r"is inf"):
        list(mds.open(traj))


def test_truncated_and_fake_compression(tmp_path):
    good = tmp_path / "g.extxyz"
    write(good, [bulk("Cu")] * 50, format="extxyz")
    raw = gzip.compress(good.read_bytes())
    trunc = tmp_path / "t.extxyz.gz"
    trunc.write_bytes(raw[: len(raw) // 2])
    for skip in (False, True):
        with pytest.raises(ValueError, match=r"t\.extxyz\.gz: the \.gz stream is truncated "
                                             r"\(EOFError"):
            list(mds.open(trunc, skip_bad=skip))
    fake = tmp_path / "f.extxyz.gz"
    fake.write_bytes(good.read_bytes())
    with pytest.raises(ValueError, match=r"f\.extxyz\.gz: not a valid \.gz file "
                                         r"\(BadGzipFile"):
        list(mds.open(fake, skip_bad=True))
    garbage = tmp_path / "g.db"
    garbage.write_bytes(os.urandom(4096))
    with pytest.raises(ValueError, match=r"g\.db: not a readable SQLite \(ASE\) database"):
        list(mds.open(garbage))
    with pytest.raises(ValueError, match=r"g\.db: not a readable SQLite \(ASE\) database"):
        len(mds.open(garbage))


def test_crystal_cif_is_read_as_a_crystal_and_mmcif_by_biotite(tmp_path):
    cif = tmp_path / "nacl.cif"
    write(cif, bulk("NaCl", "rocksalt", a=5.64), format="cif")
    got = list(mds.open(cif))
    assert len(got) == 1 and got[0].kind == "crystal"
    assert got[0].atoms.get_chemical_formula() == "ClNa"
    np.testing.assert_allclose(got[0].atoms.cell.lengths(), bulk("NaCl", "rocksalt",
                                                                  a=5.64).cell.lengths())
    from matalign.datasets._readers import cif_kind

    assert cif_kind(cif) == "crystal"
    pytest.importorskip("biotite")
    import biotite.structure as struc
    import biotite.structure.io.pdbx as pdbx

    atoms = struc.array([
        struc.Atom([0, 0, 0], chain_id="A", res_id=1, res_name="GLY", atom_name="CA",
                   element="C", hetero=False),
        struc.Atom([1.5, 0, 0], chain_id="A", res_id=2, res_name="ALA", atom_name="CA",
                   element="C", hetero=False)])
    mm = tmp_path / "prot.cif"
    f = pdbx.CIFFile()
    pdbx.set_structure(f, atoms)
    f.write(str(mm))
    assert cif_kind(mm) == "mmcif"
    got = list(mds.open(mm))
    assert [s.id for s in got] == ["prot:A"] and got[0].sequence == "GA"
    assert got[0].kind == "molecule"


# ----------------------------------------------------------- the command line, in a subprocess

@pytest.mark.parametrize("model", ["soap", "acsf", "element-stats", "composition"])
def test_cli_embed_non_finite_extxyz_exits_2(tmp_path, model):
    for i, value in enumerate([float("nan"), float("inf"), 1e30]):
        path = _extxyz_with(tmp_path / f"bad{i}.extxyz", value)
        status, _, err = _cli("embed", "--model", model, "--data", path, "--out",
                              tmp_path / f"o{i}")
        _assert_one_line(status, err, "embed", f"bad{i}.extxyz", "record 1",
                         "position of atom 0")
    if model != "soap":
        return
    # with --skip-bad the record is counted and skipped; the others are embedded
    status, out, err = _cli("embed", "--model", model, "--data", tmp_path / "bad0.extxyz",
                            "--out", tmp_path / "s", "--skip-bad")
    assert status == 0, err
    assert "skipped 1 unreadable record" in err
    assert ma.open_store(tmp_path / "s").ids == ("bad0:0", "bad0:2")


@pytest.fixture()
def bad_files(tmp_path):
    files = {}
    files["empty.npy"] = tmp_path / "empty.npy"
    files["empty.npy"].write_bytes(b"")
    obj = tmp_path / "obj.npy"
    np.save(obj, np.array([[1, "a"], [2, "b"]], dtype=object), allow_pickle=True)
    files["obj.npy"] = obj
    trunc = tmp_path / "trunc.npy"
    np.save(trunc, np.ones((50, 4), np.float32))
    trunc.write_bytes(trunc.read_bytes()[:-40])
    files["trunc.npy"] = trunc
    hdr = tmp_path / "hdr.npy"
    np.save(hdr, np.ones((5, 4), np.float32))
    raw = bytearray(hdr.read_bytes())
    raw[raw.index(b"(")] = ord("[")              # a header numpy cannot parse
    hdr.write_bytes(bytes(raw))
    files["hdr.npy"] = hdr
    good = tmp_path / "good.npy"
    np.save(good, np.random.default_rng(0).normal(size=(40, 4)).astype(np.float32))
    files["good.npy"] = good
    return files


@pytest.mark.parametrize("bad", ["empty.npy", "obj.npy", "trunc.npy", "hdr.npy"])
@pytest.mark.parametrize("command", ["knn", "matrix", "score"])
def test_cli_bad_npy_exits_2_naming_the_file(tmp_path, bad_files, bad, command):
    path = bad_files[bad]
    good = bad_files["good.npy"]
    if command == "knn":
        args = ["knn", path, "--k", "3", "--out", tmp_path / "g.npz"]
    elif command == "matrix":
        args = ["matrix", good, path, "--out", tmp_path / "m.json"]
    else:
        args = ["score", good, path, "--k", "3", "--out", tmp_path / "s.csv", "--top", "0"]
    status, _, err = _cli(*args)
    _assert_one_line(status, err, command, path)


def test_cli_embed_bad_data_files_exit_2(tmp_path):
    good = tmp_path / "g.extxyz"
    write(good, [bulk("Cu")] * 40, format="extxyz")
    raw = gzip.compress(good.read_bytes())
    trunc = tmp_path / "t.extxyz.gz"
    trunc.write_bytes(raw[: len(raw) // 2])
    fake = tmp_path / "f.extxyz.gz"
    fake.write_bytes(good.read_bytes())
    garbage = tmp_path / "g.db"
    garbage.write_bytes(np.random.default_rng(1).bytes(8192))
    cases = [(trunc, "truncated", ()), (trunc, "truncated", ("--skip-bad",)),
             (fake, "not a valid .gz file", ()), (garbage, "not a readable SQLite", ())]
    for i, (path, what, extra) in enumerate(cases):
        status, _, err = _cli("embed", "--model", "composition", "--data", path, "--out",
                              tmp_path / f"o{i}", *extra)
        _assert_one_line(status, err, "embed", path, what)


def test_cli_debug_keeps_the_traceback(tmp_path, bad_files):
    status, _, err = _cli("--debug", "knn", bad_files["empty.npy"], "--out", tmp_path / "g")
    assert status != 0 and "Traceback" in err and "empty.npy" in err


def test_eof_is_a_user_error_not_an_interruption(capsys, monkeypatch):
    # A bare EOFError from inside a command (a reader we do not wrap) is exit 2, not 130.
    from matalign import cli

    def boom(*a, **k):
        raise EOFError("Compressed file ended before the end-of-stream marker was reached")

    monkeypatch.setattr(sys.modules["matalign.embed"], "run_embed", boom)
    status = cli.main(["embed", "--model", "composition", "--data", "x", "--out", "y"])
    err = capsys.readouterr().err
    assert status == 2
    _assert_one_line(status, err, "embed", "unexpected end of an input file")


# ------------------------------------------------------------------- several stores at once

class _Count(ma.adapters.Adapter):
    name, modality, dim = "count", "smiles", 2

    def _embed_batch(self, batch):
        return np.array([[len(s.smiles), s.smiles.count("C")] for s in batch], np.float32)


def _mols(ids):
    return [Structure(i, smiles="C" * (1 + n % 5) + "O" * (n % 3)) for n, i in enumerate(ids)]


def test_cli_matrix_refuses_stores_of_different_structures(tmp_path):
    ids = [f"m{i}" for i in range(30)]
    other = list(ids)
    other[17] = "x17"
    a = tmp_path / "chgnet-0.3.0"
    b = tmp_path / "sevennet-0"
    ma.embed(_mols(ids), _Count(), a)
    ma.embed(_mols(other), _Count(), b)
    status, _, err = _cli("matrix", f"p={a}", f"q={b}", "--out", tmp_path / "m.json")
    _assert_one_line(status, err, "matrix", "at index 17", "'m17'", "'x17'")
    status, _, err = _cli("score", f"p={a}", f"q={b}", "--out", tmp_path / "s.csv")
    _assert_one_line(status, err, "score", "at index 17", "'m17'", "'x17'")
    c = tmp_path / "short"
    ma.embed(_mols(ids[:20]), _Count(), c)
    status, _, err = _cli("matrix", f"p={a}", f"q={c}", "--out", tmp_path / "m.json")
    _assert_one_line(status, err, "matrix", "ends after 20 structures", "'m20'")


def test_cli_model_names_come_from_the_manifest(tmp_path):
    ids = [f"m{i}" for i in range(30)]

    class Other(_Count):
        name = "chgnet-0.3.0"

    class Another(_Count):
        name = "sevennet-0"

        def _embed_batch(self, batch):
            return np.array([[len(s.smiles) ** 2, s.smiles.count("O")] for s in batch],
                            np.float32)

    ma.embed(_mols(ids), Other(), tmp_path / "run-a")
    ma.embed(_mols(ids), Another(), tmp_path / "run-b")
    status, _, err = _cli("matrix", tmp_path / "run-a", tmp_path / "run-b", "--metrics", "cka",
                          "--out", tmp_path / "m.json")
    assert status == 0, err
    names = json.loads((tmp_path / "m.json").read_text())["names"]
    assert names == ["chgnet-0.3.0", "sevennet-0"]
    # a .npy loses only its '.npy' (Path.stem would cut 'chgnet-0.3.0' to 'chgnet-0.3')
    from matalign.cli import _npy_name

    assert _npy_name("emb/chgnet-0.3.0.npy") == "chgnet-0.3.0"
    assert _npy_name("emb/chgnet-0.3.0") == "chgnet-0.3.0"


def test_short_family_names_resolve_to_the_default_checkpoint(tmp_path):
    from matalign.embed import DEFAULT_CHECKPOINTS, resolve_model_name

    names = {a.name for a in ma.adapters.list()}
    for short, full in DEFAULT_CHECKPOINTS.items():
        assert full in names and short not in names
        got, note = resolve_model_name(short)
        assert got == full and f"default checkpoint {full}" in note
    assert resolve_model_name("chgnet-0.2.0") == ("chgnet-0.2.0", None)
    assert resolve_model_name("no-such") == ("no-such", None)
