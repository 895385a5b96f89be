"""MACE, Orb, MatterSim and eSEN embed for real, each in its own environment.

The environments are built once per machine (``matalign env create``, cached under
``$MATALIGN_ENV_DIR`` or ``~/.cache/matalign/envs`` by spec hash; CI starts the build in the
background before the tests) and reused by every test here. The models are the real
architectures built through each package's own constructors with random weights (no
download: the packages' weights live on hubs), run through the worker protocol and the
crash-safe store by the CLI and the Python API, on a few structures.
"""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import matalign as ma
import matalign.envs as envs
from matalign.structures import Structure

# Small random configurations: the real architecture, fewer channels, so CI stays short.
SMALL = {
    "mace": ("random-mace", ["hidden_irreps=\"16x0e+16x1o\"", "max_ell=2", "correlation=2"]),
    "orb": ("random-orb", []),
    "mattersim": ("random-mattersim", []),
    "fairchem": ("random-esen", ["num_layers=2", "channels=32"]),
}


@pytest.fixture(scope="session")
def family_envs():
    """Build (or reuse) the four family environments, in parallel."""
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(4) as ex:
        states = dict(zip(envs.families(), ex.map(envs.create, envs.families())))
    bad = {f: s for f, s in states.items() if s.state != "ready"}
    assert not bad, bad
    return states


def _structures_file(path: Path) -> Path:
    """12 small structures (molecules, crystals, rattled crystals) and, at record 5 (id
    'set:5'), one of oganesson, an element MACE, MatterSim and eSEN do not know."""
    import ase.io
    from ase import Atoms
    from ase.build import bulk, molecule

    frames = [molecule("H2O"), bulk("Si"), bulk("NaCl", "rocksalt", a=5.64).repeat((2, 1, 1)),
              bulk("Cu", cubic=True), molecule("CH4")]
    frames.append(Atoms("Og2", positions=[[0, 0, 0], [0, 0, 2.6]], cell=[7.0] * 3, pbc=True))
    for i, el in enumerate(["Si", "Al", "C", "Fe", "MgO", "LiF", "Cu"]):
        a = bulk(el, "rocksalt", a=4.3) if el in ("MgO", "LiF") else bulk(el, cubic=True)
        a.rattle(0.03, seed=i)
        frames.append(a)
    out = path / "set.extxyz"
    ase.io.write(out, frames, format="extxyz")
    return out


BASE_ARGS = ["--batch-size", "2", "--chunk-size", "2", "--skip-bad"]


def _cli(*args: str, timeout: int = 600) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "matalign", *args], capture_output=True,
                          text=True, timeout=timeout)


@pytest.fixture(scope="module")
def cli_runs(family_envs, tmp_path_factory):
    """``matalign embed`` of every family on the same four structures, run concurrently."""
    tmp = tmp_path_factory.mktemp("families")
    data = _structures_file(tmp)
    procs = {}
    for family, (name, options) in SMALL.items():
        args = ["embed", "--model", name, "--data", str(data), "--out", str(tmp / family),
                *BASE_ARGS]
        for o in options:
            args += ["-O", o]
        procs[family] = subprocess.Popen([sys.executable, "-m", "matalign", *args],
                                         stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                         text=True)
    results = {}
    for family, p in procs.items():
        out, err = p.communicate(timeout=900)
        results[family] = (p.returncode, err, tmp / family)
    return results, data


@pytest.mark.parametrize("family", sorted(SMALL))
def test_family_embeds_through_cli_in_its_environment(family, cli_runs):
    name = SMALL[family][0]
    code, err, out = cli_runs[0][family]
    assert code == 0, err[-3000:]
    store = ma.open_store(out)
    x = np.asarray(store.embeddings)
    heavy = [s for s in store.skipped if s["record"] == 5]
    if family != "orb":   # Orb knows every element up to Z=118
        # the structure the model cannot handle is one clear error, and nothing else is lost
        assert len(heavy) == 1 and heavy[0]["id"] == "set:5", store.skipped
        assert re.search(r"structure 'set:5' contains element\(s\) Og", heavy[0]["error"])
    assert x.shape[0] == 13 - len(heavy) and x.shape[1] == store.metadata["adapter"]["dim"] > 0
    assert np.isfinite(x).all() and np.abs(x).max() > 0
    # different structures, different vectors
    assert len({row.tobytes() for row in x}) == x.shape[0]
    meta = store.metadata["adapter"]
    assert meta["adapter"] == name and meta["random_init"] is True and meta["seed"] == 0
    assert meta["environment"] == family
    assert meta["environment_spec_sha256"] == envs.spec(family).sha256
    assert meta["package_version"] is not None
    assert store.n_chunks == 7


def test_mace_invariant_and_equivariant_features(family_envs):
    from ase.build import bulk, molecule

    from concurrent.futures import ThreadPoolExecutor

    ss = [Structure("w", atoms=molecule("H2O")), Structure("si", atoms=bulk("Si"))]
    opts = dict(hidden_irreps="8x0e+8x1o", max_ell=1, correlation=2, num_interactions=2)
    with ThreadPoolExecutor(2) as ex:   # two workers start side by side
        inv, eqv = ex.map(lambda kw: ma.adapters.get("random-mace", **opts, **kw),
                          [{}, {"features": "equivariant"}])
    try:
        # layer 1 carries 8 scalars + 8 vectors (8 + 24 numbers), the last layer 8 scalars
        assert (inv.dim, eqv.dim) == (16, 40)
        a, b = inv.embed(ss), eqv.embed(ss)
        # the invariant features are the l=0 columns of the equivariant ones (same seed)
        assert np.array_equal(a[:, :8], b[:, :8]) and np.array_equal(a[:, 8:], b[:, 32:])
        assert not np.array_equal(b[:, 8:32], np.zeros_like(b[:, 8:32]))
        assert "equivariant" in eqv.layer and "invariant" in inv.layer
    finally:
        inv.close()
        eqv.close()


def test_wrong_checkpoint_is_one_clear_error(family_envs, tmp_path):
    import torch
    from concurrent.futures import ThreadPoolExecutor

    bogus = tmp_path / "not-a-model.pt"
    torch.save({"weights": torch.zeros(3)}, bogus)

    def load(family):
        try:
            ma.adapters.get(family, checkpoint=bogus)
        except ValueError as exc:
            return str(exc)
        return None

    with ThreadPoolExecutor(4) as ex:
        messages = dict(zip(SMALL, ex.map(load, SMALL)))
    for family, msg in messages.items():   # the adapter names equal the family names
        assert msg is not None, family
        assert re.search(rf"model environment '{family}' .*adapter '{family}': checkpoint "
                         rf"'.*not-a-model.pt' is not ", msg), msg


def test_kill_9_and_resume_of_a_family_embedding(cli_runs, tmp_path):
    """matalign embed --model random-mattersim, killed after its first committed chunk, then
    --resume: the store equals the uninterrupted run's (cli_runs) byte for byte."""
    ref = cli_runs[0]["mattersim"][2]
    data = cli_runs[1]
    base = ["embed", "--model", "random-mattersim", "--data", str(data), *BASE_ARGS]
    run = tmp_path / "run"
    p = subprocess.Popen([sys.executable, "-m", "matalign", *base, "--out", str(run)],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    journal = run / "pending" / "journal.jsonl"
    deadline = time.monotonic() + 500
    while time.monotonic() < deadline and p.poll() is None:
        if journal.exists() and journal.read_text().count("\n") >= 1:
            break
        time.sleep(0.005)
    p.send_signal(signal.SIGKILL)
    p.wait()
    assert p.returncode == -signal.SIGKILL
    assert not (run / "manifest.json").exists(), "finished before the kill"
    done = journal.read_text().count("\n")
    assert 1 <= done < 7
    r = _cli(*base, "--out", str(run), "--resume")
    assert r.returncode == 0, r.stderr[-3000:]
    assert f"skipped {done} finished chunk(s)" in r.stderr
    for name in ("embeddings.npy", "ids.txt", "manifest.json"):
        assert (run / name).read_bytes() == (ref / name).read_bytes(), name
