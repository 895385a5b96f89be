"""A real kill -9 (and a real Ctrl-C) of an embed process loses at most the chunk in flight,
and the resumed store is bitwise identical, file by file, to an uninterrupted run."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

import matalign as ma

# One script for every run (reference, killed, resumed), so the adapter's recorded class
# path is the same in all of them.
_CHILD = textwrap.dedent(
    """
    import sys, time, zlib
    import numpy as np
    import matalign as ma
    from matalign.adapters import Adapter
    from matalign.datasets import Dataset
    from matalign.structures import Structure

    out, n, chunk, batch, delay, resume = sys.argv[1:7]
    n, chunk, batch, delay, resume = int(n), int(chunk), int(batch), float(delay), resume == "1"

    class SlowAdapter(Adapter):
        name, modality, dim, layer = "slow-hash", "smiles", 33, "none"

        def _embed_batch(self, batch):
            time.sleep(delay * len(batch))
            return np.stack([np.random.default_rng(zlib.crc32(s.id.encode()))
                             .standard_normal(self.dim) for s in batch]).astype(np.float32)

    class Mols(Dataset):
        name, modality = "resume-mols", ("smiles",)

        def __iter__(self):
            for i in range(n):
                yield Structure(f"mol-{i}", smiles="C" * (i % 5 + 1))

        def __len__(self):
            return n

    try:
        store = ma.embed(Mols(), SlowAdapter(), out, chunk_size=chunk, batch_size=batch,
                         resume=resume)
    except KeyboardInterrupt as exc:   # what the CLI does with Ctrl-C
        print(f"matalign embed: {exc}", file=sys.stderr, flush=True)
        sys.exit(130)
    print("done", len(store), flush=True)
    """
)


def _run(out, n, chunk, batch, delay, resume):
    args = [sys.executable, "-c", _CHILD, os.fspath(out), str(n), str(chunk), str(batch),
            str(delay), "1" if resume else "0"]
    return subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _finish(proc, timeout=120):
    stdout, stderr = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, stderr
    return stdout


def _committed(out: Path) -> int:
    """Complete journal lines so far."""
    try:
        return (out / "pending" / "journal.jsonl").read_bytes().count(b"\n")
    except FileNotFoundError:
        return 0


def _wait_for_chunks(proc, out, count, timeout=60.0):
    deadline = time.monotonic() + timeout
    while _committed(out) < count:
        if proc.poll() is not None:
            pytest.fail(f"embed finished before {count} chunks were seen: "
                        f"{proc.communicate()[1]}")
        if time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"no {count} committed chunks after {timeout} s")
        time.sleep(0.002)


def _files(root: Path) -> dict[str, bytes]:
    return {os.fspath(p.relative_to(root)): p.read_bytes()
            for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("n, chunk, batch, delay, kill_after", [
    (120, 16, 4, 0.01, 2),    # killed while a model is computing
    (100, 1, 1, 0.0, 30),     # I/O bound: the kill lands inside chunk commits
    (100, 2, 1, 0.0, 20),
], ids=["compute-bound", "commit-bound-1", "commit-bound-2"])
def test_sigkill_then_resume_is_bitwise_identical(tmp_path, n, chunk, batch, delay,
                                                  kill_after):
    reference = tmp_path / "reference"
    _finish(_run(reference, n, chunk, batch, 0.0, False))
    out = tmp_path / "killed"
    proc = _run(out, n, chunk, batch, delay, False)
    _wait_for_chunks(proc, out, kill_after)
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    partial = ma.open_store(out)
    assert not partial.complete, "the run finished before the kill: make it slower"
    assert partial.n_chunks >= kill_after
    with pytest.raises(ValueError, match="incomplete.*--resume"):
        partial.embeddings
    assert "done" in _finish(_run(out, n, chunk, batch, 0.0, True))
    assert _files(out) == _files(reference)
    assert ma.open_store(out).shape == (n, 33)


def test_sigint_leaves_a_resumable_store(tmp_path):
    n, chunk, batch = 80, 8, 4
    reference = tmp_path / "reference"
    _finish(_run(reference, n, chunk, batch, 0.0, False))
    out = tmp_path / "interrupted"
    proc = _run(out, n, chunk, batch, 0.02, False)
    _wait_for_chunks(proc, out, 2)
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=30)
    assert proc.returncode == 130, stderr
    assert "matalign embed: interrupted: " in stderr and "--resume" in stderr
    partial = ma.open_store(out)
    assert not partial.complete and partial.n_chunks >= 2
    _finish(_run(out, n, chunk, batch, 0.0, True))
    assert _files(out) == _files(reference)
