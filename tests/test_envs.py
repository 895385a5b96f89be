"""Model-family environments (matalign.envs) and the worker protocol (adapters._worker).

Fast tests only: a toy family whose spec installs nothing (so no package index is needed),
and workers started with this interpreter running adapters of the main environment. The real
families (MACE, Orb, MatterSim, fairchem) are in test_envs_families.py.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

import matalign as ma
import matalign.envs as envs
from matalign.adapters._worker import (WorkerAdapter, WorkerDied, structure_from_json,
                                       structure_to_json)
from matalign.envs import _manage
from matalign.structures import Structure

PY = Path(sys.executable)


@pytest.fixture
def toy_specs(tmp_path, monkeypatch):
    """A spec directory holding only 'toy' (installs nothing) and an empty env root."""
    specs = tmp_path / "specs"
    specs.mkdir()
    (specs / "toy.toml").write_text(textwrap.dedent("""\
        family = "toy"
        version = 3
        description = "test family"
        module = "json"
        imports = ["json", "matalign"]
        check = "import os"
        """))
    monkeypatch.setattr(_manage, "_SPECS", specs)
    monkeypatch.setenv("MATALIGN_ENV_DIR", str(tmp_path / "envs"))
    return specs


def test_shipped_specs_pin_every_package_and_never_torch():
    assert envs.families() == ["fairchem", "mace", "mattersim", "orb"]
    for fam in envs.families():
        sp = envs.spec(fam)
        assert sp.family == fam and sp.version >= 1 and sp.packages
        for pkg in sp.packages:
            name, _, version = pkg.partition("==")
            assert version and name.lower() not in ("torch", "numpy", "torchvision",
                                                     "torchaudio"), pkg
            assert not name.lower().startswith("nvidia-"), pkg
        assert all(no_deps for _, no_deps in sp.steps), f"{fam}: every step is --no-deps"


def test_every_environment_adapter_has_a_spec():
    fams = {a.environment for a in ma.adapters.list()}
    assert fams - {"main"} == set(envs.families())
    assert ma.adapters.info("random-mace").environment == "mace"
    assert ma.adapters.info("random-esen").environment == "fairchem"
    assert ma.adapters.info("chgnet-0.3.0").environment == "main"


def test_unknown_family_and_unpinned_spec(toy_specs):
    with pytest.raises(ValueError, match=r"unknown model environment 'nope'; families with an "
                                         r"environment spec: toy"):
        envs.spec("nope")
    (toy_specs / "bad.toml").write_text('family = "bad"\nversion = 1\nmodule = "x"\n'
                                        '[[steps]]\npackages = ["e3nn"]\n')
    with pytest.raises(ValueError, match=r"package 'e3nn' is not pinned"):
        envs.spec("bad")
    (toy_specs / "bad.toml").write_text('family = "bad"\nversion = 1\nmodule = "x"\n'
                                        '[[steps]]\npackages = ["torch==2.0.0"]\n')
    with pytest.raises(ValueError, match=r"torch must come from the main environment"):
        envs.spec("bad")


def test_missing_environment_gives_one_clear_error(toy_specs):
    st = envs.status("toy")
    assert st.state == "missing" and st.spec_version == 3
    with pytest.raises(envs.ModelEnvironmentError,
                       match=r"the 'toy' model environment does not exist at .*: run "
                             r"`matalign env create toy`"):
        envs.find("toy")


def test_missing_family_environment_through_get(tmp_path, monkeypatch):
    monkeypatch.setenv("MATALIGN_ENV_DIR", str(tmp_path / "none"))
    if envs.status("mattersim").state == "ready":  # pragma: no cover - root is empty
        pytest.skip("environment unexpectedly present")
    with pytest.raises(envs.ModelEnvironmentError,
                       match=r"'mattersim' model environment does not exist .*`matalign env "
                             r"create mattersim`"):
        ma.adapters.get("random-mattersim")
    # argument errors come first, in this process, before any environment is needed
    with pytest.raises(ValueError, match=r"adapter 'orb' needs checkpoint=PATH"):
        ma.adapters.get("orb")
    with pytest.raises(FileNotFoundError, match=r"checkpoint '/no/such.model' does not exist"):
        ma.adapters.get("mace", checkpoint="/no/such.model")


def test_create_list_remove(toy_specs):
    lines: list[str] = []
    st = envs.create("toy", say=lines.append)
    assert st.state == "ready", st
    d = Path(st.path)
    assert d.name.startswith("toy-") and d.parent == Path(os.environ["MATALIGN_ENV_DIR"])
    marker = json.loads((d / "matalign-env.json").read_text())
    assert marker["spec_version"] == 3 and marker["spec_sha256"] == envs.spec("toy").sha256
    assert marker["installed"] == []
    # the environment's Python shares the main environment's packages (torch is not copied)
    out = subprocess.run([str(d / "bin" / "python"), "-c",
                          "import numpy, matalign; print(numpy.__version__)"],
                         capture_output=True, text=True, check=True).stdout.strip()
    assert out == np.__version__
    assert any("ready at" in line for line in lines)
    # a second create is a no-op; a changed spec is a different directory
    assert envs.create("toy").path == st.path
    (toy_specs / "toy.toml").write_text((toy_specs / "toy.toml").read_text()
                                        .replace("version = 3", "version = 4"))
    assert envs.env_dir("toy") != d and envs.status("toy").state == "missing"
    removed = envs.remove("toy")
    assert removed == [str(d)] and not d.exists()


def test_broken_environment(toy_specs):
    d = envs.env_dir("toy")
    d.mkdir(parents=True)
    st = envs.status("toy")
    assert st.state == "broken"
    with pytest.raises(envs.ModelEnvironmentError,
                       match=r"is broken \(half-built or damaged\).*`matalign env remove toy` "
                             r"then `matalign env create toy`"):
        envs.find("toy")


def test_failed_build_leaves_nothing(toy_specs):
    (toy_specs / "toy.toml").write_text((toy_specs / "toy.toml").read_text()
                                        .replace('check = "import os"',
                                                 'check = "raise SystemExit(3)"'))
    with pytest.raises(envs.ModelEnvironmentError, match=r"toy: import check failed \(exit "
                                                         r"code 3\); see the log"):
        envs.create("toy")
    root = Path(os.environ["MATALIGN_ENV_DIR"])
    assert [p.name for p in root.iterdir() if p.is_dir()] == []
    assert envs.status("toy").state == "missing"


def test_cli_env_list_and_errors(toy_specs, capsys):
    from matalign.cli import main

    assert main(["env", "list", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [(r["family"], r["status"], r["spec_version"]) for r in rows] == [("toy", "missing", 3)]
    assert main(["env", "create", "nope"]) == 2
    assert "unknown model environment 'nope'" in capsys.readouterr().err
    assert main(["env", "create", "toy"]) == 0
    assert main(["env", "list", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)[0]["status"] == "ready"
    assert main(["env", "remove", "all"]) == 0
    assert "toy: removed 1 environment(s)" in capsys.readouterr().out


# -- the worker protocol -------------------------------------------------------------------

def _crystals(n: int) -> list[Structure]:
    from ase.build import bulk

    out = []
    rng = np.random.default_rng(7)
    for i in range(n):
        a = bulk(["Si", "Cu", "NaCl"][i % 3] if i % 3 < 2 else "NaCl",
                 "rocksalt" if i % 3 == 2 else None, a=5.0 + 0.5 * rng.random())
        a.rattle(0.05, seed=i)
        out.append(Structure(f"x{i}", atoms=a))
    return out


def test_structures_round_trip_exactly():
    from ase.build import molecule

    s = _crystals(2)[1]
    m = molecule("CH3CH2OH")
    m.info["charge"] = 1
    for orig in (s, Structure("m", atoms=m), Structure("p", sequence="MKV"),
                 Structure("c", smiles="CCO")):
        back = structure_from_json(json.loads(json.dumps(structure_to_json(orig))))
        assert back.id == orig.id and back.smiles == orig.smiles
        if orig.atoms is not None:
            assert np.array_equal(back.atoms.positions, orig.atoms.positions)
            assert np.array_equal(back.atoms.cell[:], orig.atoms.cell[:])
            assert (back.atoms.numbers == orig.atoms.numbers).all()
            assert (back.atoms.pbc == orig.atoms.pbc).all()
    assert back.sequence is None
    assert structure_from_json(structure_to_json(Structure("m", atoms=m))).atoms.info == \
        {"charge": 1}


def test_worker_matches_in_process_bitwise():
    ss = _crystals(7)
    ref = ma.adapters.get("element-stats").embed(ss, batch_size=3)
    w = WorkerAdapter("element-stats", "mace", PY, {})
    try:
        assert (w.name, w.dim, w.modality) == ("element-stats", 23, "atoms")
        got = w.embed(ss, batch_size=3)
        assert got.dtype == np.float32 and np.array_equal(got, ref)
        meta = w.metadata
        assert meta["adapter"] == "element-stats" and meta["environment"] == "mace"
        assert meta["environment_spec_sha256"] == envs.spec("mace").sha256
    finally:
        w.close()


def test_worker_error_names_family_environment_and_structure():
    w = WorkerAdapter("morgan", "orb", PY, {})
    try:
        batch = [Structure("fine", smiles="CCO"), Structure("broken-ring", smiles="C1CC"),
                 Structure("also-fine", smiles="O")]
        with pytest.raises(ValueError, match=r"model environment 'orb' \(.*\): ValueError on "
                                             r"structure 'broken-ring': .*C1CC"):
            w.embed_batch(batch)
        assert w.embed_batch(batch[:1]).shape == (1, 2048)   # the worker is still alive
    finally:
        w.close()
    with pytest.raises(ValueError, match=r"model environment 'orb' .*unknown adapter 'nope'"):
        WorkerAdapter("nope", "orb", PY, {})


def test_worker_death_is_a_clear_error():
    w = WorkerAdapter("element-stats", "mattersim", PY, {})
    pid = w._proc.pid
    os.kill(pid, signal.SIGKILL)
    w._proc.wait()
    with pytest.raises(WorkerDied, match=r"the worker of model environment 'mattersim' .* "
                                         r"exited with code -9 while embedding structure\(s\) "
                                         r"'x0', 'x1'; committed chunks are kept"):
        w.embed_batch(_crystals(2))
    w.close()
    with pytest.raises(WorkerDied, match=r"could not start the 'fairchem' environment's "
                                         r"Python /no/python"):
        WorkerAdapter("element-stats", "fairchem", Path("/no/python"), {})


_DRIVER = """
import os, sys, time
import matalign as ma
from matalign.adapters._worker import WorkerAdapter
from matalign.datasets import get
w = WorkerAdapter("element-stats", "mace", sys.executable, {})
print(w._proc.pid, flush=True)
data = get("synthetic-crystals", n=int(sys.argv[2]), seed=3)
ma.embed(data, w, sys.argv[1], chunk_size=40, batch_size=20, resume=sys.argv[3] == "1")
print("done", flush=True)
"""


def test_kill_9_of_a_worker_run_embedding_then_resume_is_bitwise_identical(tmp_path):
    n = 4000
    ref_dir, dir_ = tmp_path / "ref", tmp_path / "run"
    env = dict(os.environ)
    r = subprocess.run([sys.executable, "-c", _DRIVER, str(ref_dir), str(n), "0"],
                       capture_output=True, text=True, env=env, timeout=600)
    assert r.returncode == 0, r.stderr
    p = subprocess.Popen([sys.executable, "-c", _DRIVER, str(dir_), str(n), "0"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    worker_pid = int(p.stdout.readline())
    journal = dir_ / "pending" / "journal.jsonl"
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        if journal.exists() and journal.read_text().count("\n") >= 2:
            break
        time.sleep(0.01)
    p.send_signal(signal.SIGKILL)
    p.wait()
    p.stdout.close()
    p.stderr.close()
    assert p.returncode == -signal.SIGKILL
    assert not (dir_ / "manifest.json").exists(), "the run finished before the kill"
    for _ in range(500):   # the worker dies with its parent
        try:
            os.kill(worker_pid, 0)
        except ProcessLookupError:
            break
        time.sleep(0.01)
    else:
        pytest.fail("the worker outlived its killed parent")
    committed = journal.read_text().count("\n")
    r = subprocess.run([sys.executable, "-c", _DRIVER, str(dir_), str(n), "1"],
                       capture_output=True, text=True, env=env, timeout=600)
    assert r.returncode == 0, r.stderr
    assert committed >= 2
    for name in ("embeddings.npy", "ids.txt", "manifest.json"):
        assert (dir_ / name).read_bytes() == (ref_dir / name).read_bytes(), name


@pytest.mark.cuda
def test_bench_vs_package_runs_on_the_gpu():
    """bench/bench_embed.py --device cuda (part 3) on the main-environment family."""
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device here")
    bench = Path(__file__).resolve().parent.parent / "bench" / "bench_embed.py"
    r = subprocess.run([sys.executable, str(bench), "--skip-store", "--vs-package", "chgnet",
                        "--device", "cuda", "--adapter-n", "8", "--repeat", "1"],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    row = [line for line in r.stdout.splitlines() if line.startswith("| chgnet |")]
    assert row and "skipped" not in row[0], r.stdout
