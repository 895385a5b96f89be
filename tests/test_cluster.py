"""The executor (matalign.executor): row blocks of the engine operations, locally (the local
blocked reference) and on a local 2-CPU Ray cluster; distributed embedding; a killed worker;
Ctrl-C on the driver. docs/CLUSTER.md defines what "equal" means for each metric.

Ray is started ONCE for this module (``ray.init`` costs 7-13 s here) with: a temporary HOME
(Ray 2.60 keeps its token and session files under ``~/.ray``), a temporary ``_temp_dir``,
``RAY_AUTH_MODE=disabled`` (a throwaway cluster on this machine, reachable only locally) and
node address 127.0.0.1. The session's no-network guard stays on for every other address:
only loopback and Unix-socket connections are let through while Ray runs.
"""

from __future__ import annotations

import _socket
import math
import os
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
import zlib
from pathlib import Path

import numpy as np
import pytest

import matalign as ma
from matalign import _engine, executor
from matalign.executor import Executor

RNG = np.random.default_rng(20261203)


def _data(n, d, dtype, seed):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d)).astype(dtype)
    Y = (np.tanh(X[:, : max(1, d // 2)]) + 0.3 * rng.normal(size=(n, max(1, d // 2))))
    return X, Y.astype(dtype)


def _pairwise(A):
    A = np.asarray(A, dtype=np.float64)
    return np.sqrt(np.maximum(((A[:, None, :] - A[None, :, :]) ** 2).sum(-1), 0.0))


# ----------------------------------------------------------------------------- no Ray needed


def test_missing_ray_is_one_clear_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray -> ImportError
    with pytest.raises(ImportError, match=r"executor='ray' needs Ray, which is not installed: "
                                          r"pip install 'matalign\[ray\]'"):
        with executor.use("ray"):
            pass
    X = RNG.normal(size=(20, 3))
    with pytest.raises(ImportError, match=r"matalign\[ray\]"):
        ma.embed([ma.structures.Structure("a", smiles="C")], _hash_adapter(), tempfile.mkdtemp(),
                 executor="ray")
    assert ma.knn(X, k=2).indices.shape == (20, 2)  # nothing else changes


def test_resolve_errors():
    with pytest.raises(ValueError, match=r"executor must be 'local', 'ray', 'auto' or "
                                         r"'ray://host:port'; got 'spark'"):
        executor.resolve("spark")
    with pytest.raises(TypeError, match=r"executor must be a str .* or an Executor; got int"):
        executor.resolve(3)
    with pytest.raises(ValueError, match=r"needs a host and port"):
        executor.resolve("ray://")
    with pytest.raises(ValueError, match=r"block_rows must be"):
        executor.resolve("local", block_rows=0)
    assert executor.resolve("auto").address == "auto"
    assert executor.current() is None
    with executor.use("local"):  # unblocked local: today's path
        assert executor.current() is None


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_engine_row_forms_against_float64_reference(dtype):
    """pair_sums(rows=) against the float64 NumPy sums written from the definition;
    rank_count(rows=) equal to the full counts and to a NumPy count; awkward blocks."""
    n = 203
    X, Y = _data(n, 11, dtype, 1)
    X[7] = X[3]  # a duplicate: a zero distance and a tie
    A, B = _pairwise(X), _pairwise(Y)
    for r0, r1 in [(0, 1), (0, 97), (97, 203), (150, 151), (0, 203)]:
        rows, cross = _engine.pair_sums([X, Y], "distance", rows=(r0, r1))
        ref_rows = np.stack([A[r0:r1].sum(1), B[r0:r1].sum(1)])
        np.testing.assert_allclose(rows, ref_rows, rtol=2e-5 if dtype == np.float32 else 1e-12)
        ref_cross = np.array([[(A[r0:r1] * A[r0:r1]).sum(), (A[r0:r1] * B[r0:r1]).sum()],
                              [(B[r0:r1] * A[r0:r1]).sum(), (B[r0:r1] * B[r0:r1]).sum()]])
        np.testing.assert_allclose(cross, ref_cross, rtol=2e-5 if dtype == np.float32 else 1e-12)
    targets = np.argsort(A + np.diag(np.full(n, np.inf)), axis=1, kind="stable")[:, :3]
    full = _engine.rank_count(Y, targets)
    # float64 reference count for float64 rows (float32: the engine's own full call)
    if dtype == np.float64:
        D2 = ((Y[:, None, :] - Y[None, :, :]) ** 2).sum(-1)
        for i in (0, 3, 7, 150):
            for t in range(3):
                j = targets[i, t]
                others = np.arange(n) != i
                expect = np.sum(others & (D2[i] < D2[i, j])) + np.sum(
                    others & (D2[i] == D2[i, j]) & (np.arange(n) < j))
                assert abs(full[i, t] - expect) <= 1  # rounding of d² near a tie
    parts = [_engine.rank_count(Y, targets[a:b], rows=(a, b))
             for a, b in [(0, 50), (50, 51), (51, 203)]]
    assert np.array_equal(np.concatenate(parts), full)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_engine_pair_sums_block_against_float64_reference(dtype):
    """pair_sums_block (rows I × columns J, the block-pair unit) against float64 NumPy sums
    written from the definitions (distance and RBF; diagonal, off-diagonal, overlapping and
    one-row blocks; a duplicate row); thread-count independent; with all columns, bitwise
    the row form; and the local blocked reference's merge against the full definitions."""
    n = 203
    X, Y = _data(n, 11, dtype, 8)
    X[7] = X[3]  # a zero distance
    D2 = [np.square(_pairwise(A)) for A in (X, Y)]
    gamma = [0.05, 0.2]
    rtol = 2e-5 if dtype == np.float32 else 1e-12
    for fn in ("distance", "rbf"):
        F = [np.sqrt(d) if fn == "distance" else np.exp(-g * d) for d, g in zip(D2, gamma)]
        for Fm in F:
            np.fill_diagonal(Fm, 0.0)  # j != i
        g = gamma if fn == "rbf" else ()
        for (r0, r1), (c0, c1) in [((0, 97), (97, 203)), ((97, 203), (97, 203)),
                                   ((0, 1), (0, 203)), ((50, 120), (100, 160)),
                                   ((202, 203), (0, 5))]:
            rows, cols, cross = _engine.pair_sums_block([X, Y], fn, g, (r0, r1), (c0, c1))
            sub = [Fm[r0:r1, c0:c1] for Fm in F]
            np.testing.assert_allclose(rows, np.stack([f.sum(1) for f in sub]), rtol=rtol,
                                       atol=1e-300)
            np.testing.assert_allclose(cols, np.stack([f.sum(0) for f in sub]), rtol=rtol,
                                       atol=1e-300)
            np.testing.assert_allclose(cross, [[(a * b).sum() for b in sub] for a in sub],
                                       rtol=rtol)
            one = _engine.pair_sums_block([X, Y], fn, g, (r0, r1), (c0, c1), n_threads=1,
                                          tile_rows=48)
            two = _engine.pair_sums_block([X, Y], fn, g, (r0, r1), (c0, c1), n_threads=2,
                                          tile_rows=48)
            assert all(np.array_equal(a, b) for a, b in zip(one, two))  # threads: bitwise
        for r0, r1 in [(0, 97), (150, 151)]:
            rows, _, cross = _engine.pair_sums_block([X, Y], fn, g, (r0, r1), (0, n))
            ref_rows, ref_cross = _engine.pair_sums([X, Y], fn, g, rows=(r0, r1))
            assert np.array_equal(rows, ref_rows) and np.array_equal(cross, ref_cross)
        with executor.use("local", block_rows=45) as ex:  # 5 blocks, 15 block pairs
            rows, cross = executor.pair_sums(ex, [X, Y], fn, g)
        np.testing.assert_allclose(rows, np.stack([f.sum(1) for f in F]), rtol=rtol)
        np.testing.assert_allclose(cross, [[(a * b).sum() for b in F] for a in F], rtol=rtol)


def test_engine_pair_sums_block_errors():
    X = RNG.normal(size=(10, 3))
    with pytest.raises(ValueError, match=r"cols=\(4, 11\) must satisfy 0 <= c0 < c1 <= N=10"):
        _engine.pair_sums_block([X], "distance", (), (0, 5), (4, 11))
    with pytest.raises(ValueError, match=r"rows=\(6, 6\) must satisfy 0 <= r0 < r1 <= N=10"):
        _engine.pair_sums_block([X], "distance", (), (6, 6), (0, 10))
    with pytest.raises(TypeError, match=r"cols must be a pair \(c0, c1\) of ints; got 3"):
        _engine.pair_sums_block([X], "distance", (), (0, 5), 3)
    with pytest.raises(ValueError, match=r"fn must be 'distance' or 'rbf'; got 'cos'"):
        _engine.pair_sums_block([X], "cos", (), (0, 5), (0, 10))


def test_engine_row_form_errors():
    X = RNG.normal(size=(10, 3))
    with pytest.raises(ValueError, match=r"rows=\(5, 11\) must satisfy 0 <= r0 < r1 <= N=10"):
        _engine.pair_sums([X], "distance", rows=(5, 11))
    with pytest.raises(ValueError, match=r"must be in \[0, 10\) and != 2"):
        _engine.rank_count(X, np.array([[2]]), rows=(2, 3))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_local_blocked_reference(dtype):
    """The local blocked reference: kNN and information imbalance bitwise the unblocked call;
    dCor and linear CKA equal to the float64 definitions (to rounding)."""
    X, Y = _data(301, 9, dtype, 2)
    with executor.use("local", block_rows=64):
        g = ma.knn(X, k=6, metric="l2")
        gc = ma.knn(X, k=6, metric="cosine")
        ii = ma.information_imbalance(X, Y, k=2)
        dc = ma.distance_correlation(X, Y)
        ck = ma.cka(X, Y)
        ckn = ma.cknna(X, Y, k=5)
    ref = ma.knn(X, k=6, metric="l2")
    assert np.array_equal(g.indices, ref.indices) and np.array_equal(g.values, ref.values)
    refc = ma.knn(X, k=6, metric="cosine")
    assert np.array_equal(gc.indices, refc.indices) and np.array_equal(gc.values, refc.values)
    assert ii == ma.information_imbalance(X, Y, k=2)
    assert ckn == ma.cknna(X, Y, k=5)
    A, B = _pairwise(X), _pairwise(Y)

    def centred(M):
        return M - M.mean(0) - M.mean(1)[:, None] + M.mean()

    a, b = centred(A), centred(B)
    dcor_ref = np.sqrt((a * b).mean() / np.sqrt((a * a).mean() * (b * b).mean()))
    tol = 1e-5 if dtype == np.float32 else 1e-12
    assert dc == pytest.approx(dcor_ref, rel=tol)
    Xc = X.astype(np.float64) - X.astype(np.float64).mean(0)
    Yc = Y.astype(np.float64) - Y.astype(np.float64).mean(0)
    hxy = np.linalg.norm(Xc.T @ Yc) ** 2
    cka_ref = hxy / (np.linalg.norm(Xc.T @ Xc) * np.linalg.norm(Yc.T @ Yc))
    assert ck == pytest.approx(cka_ref, rel=1e-10)


def _knn_cases():
    """(X, k, metric) covering float32/float64, ip/l2, N not a multiple of the blocks, k = 1
    and k larger than a block, and duplicate rows (ties broken by the lower index)."""
    out = []
    for dtype in (np.float32, np.float64):
        for metric in ("ip", "l2"):
            X = np.random.default_rng(11).normal(size=(1003, 12)).astype(dtype)
            X[[5, 400, 999]] = X[17]  # a row with three twins: ties at distance 0
            X[600:640] = X[600]       # a block of 40 duplicates
            for k in (1, 7, 90):
                out.append((X, k, metric))
    return out


def _top_k_reference(X, rows, cols, k, metric, exclude):
    """Best-k (score, index) per row of ``rows`` among ``cols`` from float64 scores written
    from the definitions: ip = x·y, l2 = -|x - y|²; ties to the lower index."""
    A = X[rows].astype(np.float64)
    B = X[cols].astype(np.float64)
    s = A @ B.T if metric == "ip" else -((A[:, None, :] - B[None, :, :]) ** 2).sum(-1)
    idx = np.broadcast_to(np.asarray(cols, dtype=np.int64), s.shape)
    if exclude:
        s = np.where(np.asarray(rows)[:, None] == idx, -np.inf, s)
    order = np.lexsort((idx, -s), axis=-1)[:, :k]
    return np.take_along_axis(s, order, 1), np.take_along_axis(idx, order, 1)


@pytest.mark.parametrize("metric", ["ip", "l2"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_engine_block_pair_against_float64_reference(dtype, metric):
    """knn_block_pair (float GEMM) and knn_block_pair_screened against float64 NumPy top-k
    lists of both blocks; the same block excludes self by index."""
    X = np.random.default_rng(12).normal(size=(230, 10)).astype(dtype)
    mu = _engine.knn_centre(X)
    tol = 1e-4 if dtype == np.float32 else 1e-10
    for bi, bj, k in (((0, 100), (100, 230), 9), ((100, 230), (100, 230), 12),
                      ((0, 100), (150, 230), 100)):
        same = bi == bj
        si, ii, sj, ij = _engine.knn_block_pair(X, bi, bj, k, metric=metric,
                                                centre=mu if metric == "l2" else None)
        ri = _top_k_reference(X, np.arange(*bi), np.arange(*bj), k, metric, same)
        assert np.array_equal(ii, ri[1]) and np.allclose(si, ri[0], rtol=tol, atol=tol)
        if same:
            assert sj.shape[0] == 0
        else:
            rj = _top_k_reference(X, np.arange(*bj), np.arange(*bi), k, metric, False)
            assert np.array_equal(ij, rj[1]) and np.allclose(sj, rj[0], rtol=tol, atol=tol)
        kk = min(k, bi[1] - bi[0] - 1) if same else min(k, bi[1] - bi[0], bj[1] - bj[0])
        local = np.ascontiguousarray(X[bi[0]:bi[1]] if same
                                     else np.concatenate([X[bi[0]:bi[1]], X[bj[0]:bj[1]]]))
        qi, qii, qj, qij, _ = _engine.knn_block_pair_screened(
            local, bi[1] - bi[0], kk, metric=metric, centre=mu, screen="int16")
        to_rows = np.where(qii < bi[1] - bi[0], qii + bi[0], qii - (bi[1] - bi[0]) + bj[0])
        assert np.array_equal(to_rows, ri[1][:, :kk])
        assert np.allclose(qi, ri[0][:, :kk], rtol=1e-10, atol=1e-10)  # the float64 graph's


def test_engine_block_pair_errors():
    X = np.zeros((10, 3), dtype=np.float32)
    with pytest.raises(ValueError, match=r"block_j=\(2, 6\) must be block_i=\(0, 5\) or lie"):
        _engine.knn_block_pair(X, (0, 5), (2, 6), 3)
    with pytest.raises(ValueError, match=r"rows=\(5, 11\) must satisfy 0 <= r0 < r1 <= N=10"):
        _engine.knn_block_pair(X, (0, 5), (5, 11), 3)
    with pytest.raises(ValueError, match="metric 'l2' needs centre"):
        _engine.knn_block_pair(X, (0, 5), (5, 10), 3, metric="l2")
    with pytest.raises(ValueError, match="k must be in 1..min"):
        _engine.knn_block_pair_screened(X, 5, 6, metric="ip", screen="int8")
    with pytest.raises(ValueError, match="screen must be 'int8' or 'int16'; got 'off'"):
        _engine.knn_block_pair_screened(X, 5, 2, metric="ip", screen="off")


def test_block_pair_knn_local_is_bitwise_plain_knn():
    """The block-pair self kNN (local blocked reference, 11 blocks) is bitwise ma.knn, with
    the screen the local call picks (int16 here) and without it (k = 90: the float GEMM)."""
    assert executor.KNN_PAIR_FACTOR == 8  # the block counts below
    for X, k, metric in _knn_cases():
        ref = ma.knn(X, k=k, metric=metric)
        with executor.use("local", block_rows=12):  # pair blocks of 8 × 12: 11 blocks
            got = ma.knn(X, k=k, metric=metric)
        assert _same(got, ref), (X.dtype, k, metric)


def _pair_block_count(n, block_rows, workers):
    """The documented rule of Executor.pair_blocks, written out: at most
    ceil(N / (KNN_PAIR_FACTOR · block_rows)) blocks; with W workers, the smallest B with
    B² >= 2W (1 for W = 1), at least ceil(N / (KNN_PAIR_MAX_FACTOR · block_rows))."""
    most = math.ceil(n / (executor.KNN_PAIR_FACTOR * block_rows))
    if workers is None:
        return most
    want = 1
    while workers > 1 and want * want < 2 * workers:
        want += 1
    return min(most, max(want, math.ceil(n / (executor.KNN_PAIR_MAX_FACTOR * block_rows))))


def test_pair_blocks_rule():
    """Equal contiguous blocks covering [0, N), as many as the rule says, for local (no
    workers) and cluster (workers) executors; fewer, larger blocks on few workers."""
    for n, brs in [(n, (1, 4, 12, 8192)) for n in (1, 7, 95, 96, 97, 1003, 100_000)] + \
            [(400_000, (12, 8192)), (10_000_003, (8192,))]:
        for block_rows in brs:
            ex = Executor("local", block_rows=block_rows)
            for workers in (None, 1, 2, 3, 4, 16, 256):
                blocks = ex.pair_blocks(n, workers)
                assert len(blocks) == _pair_block_count(n, block_rows, workers)
                assert blocks[0][0] == 0 and blocks[-1][1] == n
                assert all(a[1] == b[0] for a, b in zip(blocks, blocks[1:]))
                sizes = [r1 - r0 for r0, r1 in blocks]
                assert max(sizes) - min(sizes) <= 1 and sizes == sorted(sizes, reverse=True)
    ex = Executor("local")  # the default block_rows: N = 100k on 2 workers: 2 blocks
    assert ex.pair_blocks(100_000, 2) == [(0, 50_000), (50_000, 100_000)]
    assert len(ex.pair_blocks(400_000, 2)) == 2 and len(ex.pair_blocks(400_000)) == 7
    assert ex.pair_blocks(400_000, 1) == [(0, 400_000)]  # at most 64 × 8192 rows a block
    assert len(ex.pair_blocks(600_000, 1)) == 2
    with pytest.raises(ValueError, match=r"workers must be >= 1"):
        ex.pair_blocks(10, 0)
    with pytest.raises(TypeError, match=r"workers must be an integer"):
        ex.pair_blocks(10, 1.5)


def test_fold_equals_one_sort_of_all_candidates():
    """Folding partner blocks' lists in ascending order (knn_self's merge) gives the best k
    by (score desc, index asc) of all candidates at once, with many tied scores."""
    rng = np.random.default_rng(7)
    rows, k = 300, 6
    parts, lo = [], 0
    for width in (3, 9, 6, 1, 12):  # partner blocks [lo, lo + 40) in ascending order
        s = rng.integers(-4, 4, size=(rows, width)).astype(np.float32)  # many ties
        i = np.stack([rng.choice(np.arange(lo, lo + 40), size=width, replace=False)
                      for _ in range(rows)])
        order = np.lexsort((i, -s), axis=-1)  # as the engine returns a pair's lists
        parts.append((np.take_along_axis(s, order, 1), np.take_along_axis(i, order, 1)))
        lo += 40
    best = (None, None)
    for s, i in parts:
        best = executor._fold(*best, s, i, k)
    all_s = np.concatenate([p[0] for p in parts], axis=1)
    all_i = np.concatenate([p[1] for p in parts], axis=1)
    order = np.lexsort((all_i, -all_s), axis=-1)[:, :k]
    assert np.array_equal(best[0], np.take_along_axis(all_s, order, 1))
    assert np.array_equal(best[1], np.take_along_axis(all_i, order, 1))


def test_resolve_cpus_per_task():
    assert executor.resolve("ray", cpus_per_task=2).cpus_per_task == 2
    assert executor.resolve("auto").cpus_per_task == 1
    assert executor.resolve(Executor("ray", cpus_per_task=2), block_rows=5).cpus_per_task == 2
    assert executor.resolve(Executor("ray"), cpus_per_task=3).threads == 3
    with pytest.raises(ValueError, match=r"cpus_per_task must be >= 1"):
        executor.resolve("ray", cpus_per_task=0)
    with pytest.raises(TypeError, match=r"cpus_per_task must be an integer"):
        executor.use("ray", cpus_per_task="2").__enter__()


# ----------------------------------------------------------------------------- Ray cluster


def _local_only(original):
    def connect(self, address, *args):
        if self.family == socket.AF_UNIX or (isinstance(address, tuple) and address[0] in
                                             ("127.0.0.1", "localhost", "::1")):
            return original(self, address, *args)
        raise RuntimeError("network access attempted in tests")
    return connect


@pytest.fixture(scope="module")
def ray_cluster():
    ray = pytest.importorskip("ray")
    home = tempfile.mkdtemp(prefix="ma-home-")
    temp = tempfile.mkdtemp(prefix="ma-ray-", dir="/tmp")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HOME", home)
        mp.setenv("RAY_AUTH_MODE", "disabled")
        mp.setattr(socket.socket, "connect", _local_only(_socket.socket.connect))
        mp.setattr(socket.socket, "connect_ex", _local_only(_socket.socket.connect_ex))
        mp.setattr(socket, "create_connection", socket.create_connection)
        mp.setattr(socket, "getaddrinfo", socket.getaddrinfo)
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
                 _temp_dir=temp, _node_ip_address="127.0.0.1")
        try:
            yield ray
        finally:
            ray.shutdown()


@pytest.fixture
def fault(monkeypatch, tmp_path):
    """Arm the fault hook for one block; yields the marker path (exists once it fired)."""
    marker = tmp_path / "fired"

    def arm(block):
        monkeypatch.setenv(executor.FAULT_ENV, str(block))
        monkeypatch.setenv(executor.FAULT_MARKER_ENV, str(marker))
        return marker
    return arm


def _all_metrics(X, Y, Z):
    out = {
        "knn": ma.knn(X, k=5, metric="l2"),
        "knn_ip": ma.knn(Y, k=4),
        "cknna": ma.cknna(X, Y, k=5),
        "mutual_knn": ma.mutual_knn(X, Y, k=5),
        "dcor": ma.distance_correlation(X, Y),
        "ii": ma.information_imbalance(X, Y, k=2),
        "cka": ma.cka(X, Y),
        "matrix": ma.alignment_matrix({"x": X, "y": Y, "z": Z},
                                      metrics=["cknna", "mutual_knn", "cka", "dcor",
                                               "information_imbalance"], k=5),
    }
    return out


def _same(a, b):
    if isinstance(a, ma.KnnGraph):
        return np.array_equal(a.indices, b.indices) and np.array_equal(a.values, b.values)
    if isinstance(a, ma.AlignmentMatrix):
        return a.metrics.keys() == b.metrics.keys() and all(
            np.array_equal(a.metrics[m], b.metrics[m]) for m in a.metrics)
    return a == b


def test_ray_equals_local_references(ray_cluster, tmp_path):
    X, Y = _data(257, 7, np.float32, 3)
    Z = _data(257, 5, np.float32, 4)[0]
    np.save(tmp_path / "x.npy", X)
    Xm = np.load(tmp_path / "x.npy", mmap_mode="r")  # read in place by the workers
    plain = _all_metrics(X, Y, Z)
    with executor.use("local", block_rows=50):
        blocked = _all_metrics(X, Y, Z)
    with executor.use(Executor("ray", block_rows=50, shared_dir=str(tmp_path / "shared"))):
        on_ray = _all_metrics(Xm, Y, Z)
    for key in plain:
        assert _same(on_ray[key], blocked[key]), key  # bitwise the local blocked reference
    for key in ("knn", "knn_ip", "cknna", "mutual_knn", "ii"):
        assert _same(on_ray[key], plain[key]), key  # and bitwise the unblocked local call
    assert on_ray["dcor"] == pytest.approx(plain["dcor"], rel=1e-12)
    assert on_ray["cka"] == pytest.approx(plain["cka"], rel=1e-12)
    assert not any((tmp_path / "shared").iterdir())  # the job directory is removed


def test_killed_worker_is_retried(ray_cluster, fault):
    X, Y = _data(200, 6, np.float64, 5)
    with executor.use("local", block_rows=40):
        ref = (ma.knn(X, k=4, metric="l2"), ma.distance_correlation(X, Y),
               ma.information_imbalance(X, Y))
    marker = fault(2)
    with executor.use("ray", block_rows=40):
        got = (ma.knn(X, k=4, metric="l2"), ma.distance_correlation(X, Y),
               ma.information_imbalance(X, Y))
    assert marker.exists()  # block 2's worker died once (os._exit) and Ray re-ran it
    assert _same(got[0], ref[0]) and got[1] == ref[1] and got[2] == ref[2]


def test_block_pair_knn_on_ray_is_bitwise_plain_knn(ray_cluster, fault):
    """Ray's block-pair self kNN equals plain local ma.knn bitwise (ip, l2, float32,
    float64, k = 1 / 7 / 90, duplicate rows), also when the worker of pair task 3 dies."""
    cases = _knn_cases()
    refs = [ma.knn(X, k=k, metric=metric) for X, k, metric in cases]
    with executor.use("ray", block_rows=2) as ex:
        # 2 workers want 2 blocks, but blocks are at most 64 × 2 rows: 8 blocks, 36 tasks
        assert ex.workers() == 2 and len(ex.pair_blocks(1003, ex.workers())) == 8
        got = [ma.knn(X, k=k, metric=metric) for X, k, metric in cases]
    for (X, k, metric), g, r in zip(cases, got, refs):
        assert _same(g, r), (X.dtype, k, metric)
    X, k, metric = cases[4]
    marker = fault(3)
    with executor.use("ray", block_rows=2):
        g = ma.knn(X, k=k, metric=metric)
    assert marker.exists()  # pair task 3's worker died once and Ray re-ran it
    assert _same(g, refs[4])


def test_block_pair_knn_two_cpus_per_task(ray_cluster):
    """cpus_per_task=2 on the 2-CPU cluster: one task at a time with 2 engine threads; one
    block (the whole graph in one task) at the default block_rows, 8 blocks at
    block_rows=2; bitwise plain ma.knn either way."""
    cases = [c for c in _knn_cases() if c[1] != 90]
    refs = [ma.knn(X, k=k, metric=metric) for X, k, metric in cases]
    for block_rows, blocks in ((None, 1), (2, 8)):
        with executor.use("ray", block_rows=block_rows, cpus_per_task=2) as ex:
            assert ex.workers() == 1 and ex.threads == 2
            assert len(ex.pair_blocks(1003, ex.workers())) == blocks
            got = [ma.knn(X, k=k, metric=metric) for X, k, metric in cases]
        for (X, k, metric), g, r in zip(cases, got, refs):
            assert _same(g, r), (block_rows, X.dtype, k, metric)


# ----------------------------------------------------------------------------- embedding


def _hash_adapter(log=None, delay=0.0):
    """A cheap offline model (rows from a hash of the id), defined in a function so that Ray
    ships it to the workers by value; ``log`` records every structure embedded."""
    from matalign.adapters import Adapter

    class HashAdapter(Adapter):
        name, modality, dim, layer = "hash-test", "smiles", 9, "none"

        def _embed_batch(self, batch):
            if log is not None:
                with open(log, "a") as f:
                    f.write("".join(s.id + "\n" for s in batch))
            time.sleep(delay * len(batch))
            return np.stack([np.random.default_rng(zlib.crc32(s.id.encode()))
                             .standard_normal(self.dim) for s in batch]).astype(np.float32)
    return HashAdapter()


def _mols(n):
    return [ma.structures.Structure(f"mol-{i}", smiles="C" * (i % 5 + 1)) for i in range(n)]


def _files(path: Path) -> dict:
    return {p.relative_to(path).as_posix(): p.read_bytes()
            for p in sorted(path.rglob("*")) if p.is_file()}


def test_embed_on_ray_is_bitwise_local(ray_cluster, tmp_path, fault):
    mols = _mols(53)
    local = ma.embed(mols, _hash_adapter(), tmp_path / "local", chunk_size=8, batch_size=4)
    log = tmp_path / "log.txt"
    marker = fault(3)
    dist = ma.embed(mols, _hash_adapter(log), tmp_path / "ray", chunk_size=8, batch_size=4,
                    executor="ray")
    assert marker.exists()  # the actor embedding chunk 3 died with half a file written
    assert local.n_chunks == dist.n_chunks == 7
    assert _files(tmp_path / "local") == _files(tmp_path / "ray")
    # every structure embedded once, except chunk 3 (the actor died in it: twice)
    counts = {}
    for line in log.read_text().splitlines():
        counts[line] = counts.get(line, 0) + 1
    again = {m.id for m in mols[24:32]}
    assert {i for i, c in counts.items() if c != 1} == again
    assert all(counts[i] == 2 for i in again) and len(counts) == 53


_CHILD = textwrap.dedent(
    """
    import sys, time, zlib
    import numpy as np
    import matalign as ma
    from matalign.adapters import Adapter
    from matalign.structures import Structure

    out, n, delay, where, resume = sys.argv[1:6]
    n, delay, resume = int(n), float(delay), resume == "1"

    class SlowHash(Adapter):
        name, modality, dim, layer = "slow-hash", "smiles", 9, "none"

        def _embed_batch(self, batch):
            time.sleep(delay * len(batch))
            return np.stack([np.random.default_rng(zlib.crc32(s.id.encode()))
                             .standard_normal(self.dim) for s in batch]).astype(np.float32)

    mols = [Structure(f"mol-{i}", smiles="C" * (i % 5 + 1)) for i in range(n)]
    try:
        ma.embed(mols, SlowHash(), out, chunk_size=4, batch_size=2, executor=where,
                 resume=resume)
    except KeyboardInterrupt as exc:
        print(f"interrupted: {exc}", file=sys.stderr, flush=True)
        sys.exit(130)
    print("done", flush=True)
    """
)


def test_ctrl_c_cancels_and_store_resumes(ray_cluster, tmp_path):
    out = tmp_path / "store"
    script = tmp_path / "child.py"
    script.write_text(_CHILD)
    env = dict(os.environ, RAY_ADDRESS=ray_cluster.get_runtime_context().gcs_address,
               RAY_AUTH_MODE="disabled")
    proc = subprocess.Popen([sys.executable, str(script), str(out), "40", "0.25", "auto", "0"],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    journal = out / "pending" / "journal.jsonl"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if journal.exists() and len(journal.read_text().splitlines()) >= 2:
            break
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.1)
    t0 = time.monotonic()
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    stopped = time.monotonic() - t0
    assert proc.returncode == 130, err
    assert stopped < 10, f"the driver took {stopped:.1f} s to stop after Ctrl-C"
    assert "continue with --resume" in err
    committed = len(journal.read_text().splitlines())
    assert 2 <= committed < 10
    # the actors were killed: nothing more is committed after the driver stopped
    time.sleep(1.0)
    assert len(journal.read_text().splitlines()) == committed
    # resume on the cluster: bitwise the uninterrupted local store
    done = subprocess.run([sys.executable, str(script), str(out), "40", "0", "auto", "1"],
                          env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    ref = tmp_path / "ref"
    done = subprocess.run([sys.executable, str(script), str(ref), "40", "0", "local", "0"],
                          env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert _files(out) == _files(ref)


# ----------------------------------------------------------------------------- CLI


def test_cli_cluster_bad_address(tmp_path, capsys):
    from matalign.cli import main

    np.save(tmp_path / "x.npy", RNG.normal(size=(30, 4)).astype(np.float32))
    status = main(["knn", str(tmp_path / "x.npy"), "--k", "3", "--out", str(tmp_path / "g.npz"),
                   "--cluster", "spark"])
    err = capsys.readouterr().err
    assert status == 2
    assert "--cluster: executor must be 'local', 'ray', 'auto' or 'ray://host:port'; got " \
           "'spark'" in err
    # --cpus-per-task needs a Ray cluster: said, not ignored
    status = main(["knn", str(tmp_path / "x.npy"), "--k", "3", "--out", str(tmp_path / "g.npz"),
                   "--cpus-per-task", "2"])
    err = capsys.readouterr().err
    assert status == 2 and "--cpus-per-task applies to a Ray --cluster" in err
    assert not (tmp_path / "g.npz").exists()


def test_cli_cluster_ray(ray_cluster, tmp_path, capsys, monkeypatch):
    from matalign.cli import main

    X, Y = _data(120, 6, np.float32, 7)
    np.save(tmp_path / "x.npy", X)
    np.save(tmp_path / "y.npy", Y)
    for where in ("local", "ray"):
        assert main(["knn", str(tmp_path / "x.npy"), "--k", "4", "--metric", "l2", "--cluster",
                     where, "--out", str(tmp_path / f"g-{where}.npz")]) == 0
        assert main(["matrix", str(tmp_path / "x.npy"), str(tmp_path / "y.npy"), "--metrics",
                     "cknna,information_imbalance", "--k", "5", "--cluster", where, "--out",
                     str(tmp_path / f"m-{where}.json")]) == 0
    capsys.readouterr()
    a, b = np.load(tmp_path / "g-local.npz"), np.load(tmp_path / "g-ray.npz")
    assert all(np.array_equal(a[key], b[key], equal_nan=a[key].dtype.kind == "f")
               for key in a.files)  # (an exact graph's recall is NaN)
    assert (tmp_path / "m-local.json").read_text() == (tmp_path / "m-ray.json").read_text()
    # --cpus-per-task reaches the executor (each Ray task reserves 2 CPUs, runs 2 threads)
    import matalign.executor as executor_mod
    seen = []
    real_use = executor_mod.use

    def spy(ex, **kw):
        seen.append((ex.kind, ex.cpus_per_task))
        return real_use(ex, **kw)
    monkeypatch.setattr(executor_mod, "use", spy)
    assert main(["knn", str(tmp_path / "x.npy"), "--k", "4", "--metric", "l2", "--cluster",
                 "ray", "--cpus-per-task", "2", "--out", str(tmp_path / "g-ray2.npz")]) == 0
    assert seen == [("ray", 2)]
    a2 = np.load(tmp_path / "g-ray2.npz")
    assert np.array_equal(a2["indices"], np.load(tmp_path / "g-local.npz")["indices"])
