"""Long engine calls stay interruptible (Ctrl-C) and report progress."""

from __future__ import annotations

import selectors
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

import matalign as ma

_CHILD = textwrap.dedent(
    """
    import sys
    import numpy as np
    import matalign as ma

    n, d, dtype, threads, mode = sys.argv[1:6]
    n, d, threads = int(n), int(d), int(threads)
    X = np.random.default_rng(0).standard_normal((n, d), dtype=np.dtype(dtype))
    queries = X[: n // 2].copy() if mode == "queries" else None
    print("started", flush=True)
    ma.knn(X, k=10, queries=queries, n_threads=threads)
    print("finished", flush=True)
    """
)


def _readline(proc, timeout):
    """One line of the child's stdout, or None after ``timeout`` seconds."""
    sel = selectors.DefaultSelector()
    sel.register(proc.stdout, selectors.EVENT_READ)
    try:
        if not sel.select(timeout):
            return None
        return proc.stdout.readline()
    finally:
        sel.close()


@pytest.mark.parametrize(
    "n, d, dtype, threads, mode",
    [
        (200_000, 256, "float32", 1, "self"),
        (100_000, 256, "float64", 2, "queries"),
    ],
    ids=["self-f32-1thread", "queries-f64-2threads"],
)
def test_sigint_stops_long_knn(n, d, dtype, threads, mode):
    """A knn that would run for tens of seconds exits with KeyboardInterrupt
    within a few seconds of SIGINT (the engine polls between tiles)."""
    proc = subprocess.Popen(
        [sys.executable, "-c", _CHILD, str(n), str(d), dtype, str(threads), mode],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        line = _readline(proc, timeout=120)
        if line is None or line.strip() != "started":
            proc.kill()
            _, err = proc.communicate()
            pytest.fail(f"child did not start the computation (got {line!r}); stderr:\n{err}")
        time.sleep(1.5)  # well inside ma.knn by now
        assert proc.poll() is None, "knn finished before it could be interrupted; the job is too small"
        sent = time.monotonic()
        proc.send_signal(signal.SIGINT)
        try:
            out, err = proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()
            pytest.fail("knn ignored SIGINT for 30 s")
        elapsed = time.monotonic() - sent
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert "KeyboardInterrupt" in err, err
    assert "finished" not in out
    assert proc.returncode != 0
    assert elapsed < 5.0, f"took {elapsed:.1f} s to stop after SIGINT"


def _progress_job(seed, mode):
    """A job long enough (a few hundred ms) for several progress polls: the
    engine polls its callback between tiles, at most every ~50 ms."""
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((16_000, 64)).astype(np.float32)
    Q = rng.standard_normal((8_000, 64)).astype(np.float32) if mode == "queries" else None
    return X, Q


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("mode", ["self", "queries"])
def test_progress_callback(mode, threads):
    X, Q = _progress_job(1, mode)
    calls = []
    g = ma.knn(X, k=5, queries=Q, n_threads=threads, progress=lambda d, t: calls.append((d, t)))
    assert len(calls) >= 2, f"progress called {len(calls)} times"
    dones = [d for d, _ in calls]
    totals = {t for _, t in calls}
    assert all(isinstance(d, int) and isinstance(t, int) for d, t in calls)
    assert len(totals) == 1, f"total changed during the run: {sorted(totals)}"
    total = totals.pop()
    assert total > 0
    assert all(a <= b for a, b in zip(dones, dones[1:])), f"not monotone: {dones}"
    assert 0 <= dones[0] < total and dones[-1] == total
    h = ma.knn(X, k=5, queries=Q, n_threads=threads)
    np.testing.assert_array_equal(g.indices, h.indices)
    np.testing.assert_array_equal(g.values, h.values)


@pytest.mark.parametrize("mode", ["self", "queries"])
def test_progress_callback_exception_propagates_and_stops(mode):
    X, Q = _progress_job(2, mode)
    calls = []

    def callback(done, total):
        calls.append((done, total))
        raise ValueError("stop requested by test")

    with pytest.raises(ValueError, match="stop requested by test"):
        ma.knn(X, k=5, queries=Q, n_threads=2, progress=callback)
    assert len(calls) == 1, f"engine kept calling progress after it raised: {len(calls)} calls"
    done, total = calls[0]
    assert done < total, "the first poll was the final one; the job is too small to test stopping"
    # the library still works afterwards
    small = X[:500]
    assert ma.knn(small, k=5).indices.shape == (500, 5)


def test_progress_true_runs():
    X = np.random.default_rng(3).standard_normal((300, 8)).astype(np.float32)
    g = ma.knn(X, k=4, progress=True)
    h = ma.knn(X, k=4, progress=False)
    np.testing.assert_array_equal(g.indices, h.indices)
