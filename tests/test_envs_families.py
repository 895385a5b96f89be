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
    import ase.io
    from ase.build import bulk, molecule

    water = molecule("H2O")
    si = bulk("Si")
    nacl = bulk("NaCl", "rocksalt", a=5.64).repeat((2, 1, 1))
    nacl.rattle(0.02, seed=1)
    cu = bulk("Cu", cubic=True)
    frames = [water, si, nacl, cu]
    for i, a in enumerate(frames):
        a.info["id"] = f"s{i}"
    out = path / "set.extxyz"
    ase.io.write(out, frames, format="extxyz")
    return out


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
                "--batch-size", "2", "--chunk-size", "2"]
        for o in options:
            args += ["-O", o]
        procs[family] = subprocess.Popen([sys.executable, "-m", "matalign", *args],
                                         stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                         text=True)
    results = {}
    for family, p in procs.items():
        out, err = p.communicate(timeout=900)
        results[family] = (p.returncode, err, tmp / family)
    return results


@pytest.mark.parametrize("family", sorted(SMALL))
def test_family_embeds_through_cli_in_its_environment(family, cli_runs):
    name = SMALL[family][0]
    code, err, out = cli_runs[family]
    assert code == 0, err[-3000:]
    store = ma.open_store(out)
    x = np.asarray(store.embeddings)
    assert x.shape[0] == 4 and x.shape[1] == store.metadata["adapter"]["dim"] > 0
    assert np.isfinite(x).all() and np.abs(x).max() > 0
    # four different structures, four different vectors
    assert len({row.tobytes() for row in x}) == 4
    meta = store.metadata["adapter"]
    assert meta["adapter"] == name and meta["random_init"] is True and meta["seed"] == 0
    assert meta["environment"] == family
    assert meta["environment_spec_sha256"] == envs.spec(family).sha256
    assert meta["package_version"] is not None
    assert store.n_chunks == 2


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


def test_unknown_element_names_the_structure(family_envs):
    from ase import Atoms

    ad = ma.adapters.get("random-mattersim")
    try:
        bad = Atoms("Og2", positions=[[0, 0, 0], [0, 0, 2.5]], cell=[6, 6, 6], pbc=True)
        with pytest.raises(ValueError, match=r"model environment 'mattersim' .*structure "
                                             r"'heavy' contains element\(s\) Og"):
            ad.embed([Structure("fine", atoms=Atoms("Si2", positions=[[0, 0, 0], [1.4, 1.4, 1.4]],
                                                    cell=[5.4] * 3, pbc=True)),
                      Structure("heavy", atoms=bad)])
    finally:
        ad.close()


def test_kill_9_and_resume_of_a_family_embedding(family_envs, tmp_path):
    """matalign embed --model random-mattersim, killed after its first committed chunk, then
    --resume: the store equals an uninterrupted run's byte for byte."""
    import ase.io
    from ase.build import bulk

    frames = []
    for i in range(24):
        a = bulk(["Si", "Cu", "Al", "C"][i % 4], cubic=True)
        a.rattle(0.03, seed=i)
        a.info["id"] = f"c{i}"
        frames.append(a)
    data = tmp_path / "c.extxyz"
    ase.io.write(data, frames, format="extxyz")
    base = ["embed", "--model", "random-mattersim", "--data", str(data), "--batch-size", "2",
            "--chunk-size", "4"]
    ref = tmp_path / "ref"
    r = _cli(*base, "--out", str(ref))
    assert r.returncode == 0, r.stderr[-3000:]

    run = tmp_path / "run"
    p = subprocess.Popen([sys.executable, "-m", "matalign", *base, "--out", str(run)],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    journal = run / "pending" / "journal.jsonl"
    deadline = time.monotonic() + 500
    while time.monotonic() < deadline and p.poll() is None:
        if journal.exists() and journal.read_text().count("\n") >= 1:
            break
        time.sleep(0.02)
    p.send_signal(signal.SIGKILL)
    p.wait()
    assert p.returncode == -signal.SIGKILL
    assert not (run / "manifest.json").exists(), "finished before the kill"
    done = journal.read_text().count("\n")
    assert 1 <= done < 6
    r = _cli(*base, "--out", str(run), "--resume")
    assert r.returncode == 0, r.stderr[-3000:]
    assert f"skipped {done} finished chunk(s)" in r.stderr
    for name in ("embeddings.npy", "ids.txt", "manifest.json"):
        assert (run / name).read_bytes() == (ref / name).read_bytes(), name
    assert len(ma.open_store(run)) == 24
