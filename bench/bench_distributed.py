#!/usr/bin/env python3
"""The Ray executor against the local path on one machine (docs/CLUSTER.md).

Two jobs, each run twice on the same bytes (``.npy`` files, read as memory maps):

1. **Exact kNN**, N = 100k (``--n``), D = 64, k = 10, l2, float32: ``ma.knn`` locally
   (all cores, one process) and inside ``matalign.executor.use("ray")`` on a Ray cluster of
   ``--workers`` CPUs (one engine thread per task; one task per block pair (I, J >= I) of
   blocks of ~4 × ``--block-rows`` rows, each pair computed once).
   Agreement: the two graphs are bitwise equal (indices and values).
2. **A 10-model matrix** (``--models``), N = 20k (``--matrix-n``), D from 64 to 128, metrics
   cknna, mutual_knn, linear CKA, dCor and information imbalance: ``ma.alignment_matrix``
   locally and on Ray. Agreement: the graph metrics and information imbalance bitwise, CKA
   and dCor to 1e-10 relative (their block sums are added in another order; the Ray result is
   bitwise the local blocked reference, see tests/test_cluster.py).

Printed per job: local and Ray wall time, overhead = Ray / local − 1 (Ray's start-up, paid
once per cluster, is reported apart), and the per-block rate of one task (rows × N / s per
worker core) that docs/CLUSTER.md's cost model uses. Ray runs with a temporary HOME and
``_temp_dir`` and ``RAY_AUTH_MODE=disabled`` (a throwaway local cluster).

Examples::

    python bench/bench_distributed.py                      # ~15 min on 2 cores
    python bench/bench_distributed.py --n 20000 --matrix-n 5000 --models 4   # ~1 min
    python bench/bench_distributed.py --knn-only           # the kNN case only, ~2 min
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

import numpy as np


def _models(n, m, seed):
    rng = np.random.default_rng(seed)
    Z = rng.normal(size=(n, 32))
    out = {}
    for i in range(m):
        d = int(rng.choice([64, 80, 96, 112, 128]))
        A = rng.normal(size=(32, d)) / np.sqrt(32)
        s = 0.25 + 1.25 * i / max(1, m - 1)
        out[f"m{i}"] = (Z @ A + s * rng.normal(size=(n, d))).astype(np.float32)
    return out


def _time(fn):
    t0 = time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--n", type=int, default=100_000)
    p.add_argument("--d", type=int, default=64)
    p.add_argument("--k", type=int, default=10)
    p.add_argument("--matrix-n", type=int, default=20_000)
    p.add_argument("--models", type=int, default=10)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--block-rows", type=int, default=8192)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--repeat", type=int, default=1,
                   help="kNN: run local and Ray this many times each, alternating (after "
                        "ray.init), and report the fastest of each (a shared machine's load "
                        "varies by tens of percent)")
    p.add_argument("--knn-only", action="store_true",
                   help="only the kNN case (skip the model matrix)")
    args = p.parse_args(argv)

    home = tempfile.mkdtemp(prefix="ma-bench-home-")
    os.environ.update(HOME=home, RAY_AUTH_MODE="disabled")
    import matalign as ma
    from matalign import executor

    try:
        import ray
    except ImportError:
        print(f"bench_distributed needs Ray: pip install '{executor.RAY_EXTRA}'",
              file=sys.stderr)
        return 2

    work = tempfile.mkdtemp(prefix="ma-bench-")
    rng = np.random.default_rng(args.seed)
    X = rng.normal(size=(args.n, args.d)).astype(np.float32)
    np.save(os.path.join(work, "x.npy"), X)
    del X
    X = np.load(os.path.join(work, "x.npy"), mmap_mode="r")
    spaces = {}
    for name, A in ({} if args.knn_only else
                    _models(args.matrix_n, args.models, args.seed + 1)).items():
        np.save(os.path.join(work, f"{name}.npy"), A)
        spaces[name] = np.load(os.path.join(work, f"{name}.npy"), mmap_mode="r")
    metrics = ["cknna", "mutual_knn", "cka", "dcor", "information_imbalance"]
    print(f"machine: {os.cpu_count()} cores; Ray {ray.__version__}, {args.workers} workers × 1 "
          f"engine thread; local: {os.cpu_count()} engine threads; block_rows = "
          f"{args.block_rows}")

    t_local_knn, g_local = _time(lambda: ma.knn(X, k=args.k, metric="l2"))
    t_local_mat, m_local = (None, None) if args.knn_only else _time(
        lambda: ma.alignment_matrix(spaces, metrics=metrics, k=args.k))

    t_init, _ = _time(lambda: ray.init(num_cpus=args.workers, include_dashboard=False,
                                       log_to_driver=False, _node_ip_address="127.0.0.1",
                                       _temp_dir=tempfile.mkdtemp(prefix="r", dir="/tmp")))
    ex = executor.Executor("ray", block_rows=args.block_rows, shared_dir=work)
    with executor.use(ex):
        with executor.use(executor.Executor("ray", block_rows=256, shared_dir=work)):
            # warm every worker (imports): 6 small block-pair tasks
            ma.knn(np.asarray(X[:3000]), k=args.k, metric="l2")
        t_ray_knn, g_ray = _time(lambda: ma.knn(X, k=args.k, metric="l2"))
        for _ in range(args.repeat - 1):
            with executor.use("local"):
                t_local_knn = min(t_local_knn, _time(lambda: ma.knn(X, k=args.k,
                                                                    metric="l2"))[0])
            t_ray_knn = min(t_ray_knn, _time(lambda: ma.knn(X, k=args.k, metric="l2"))[0])
        t_ray_mat, m_ray = (None, None) if args.knn_only else _time(
            lambda: ma.alignment_matrix(spaces, metrics=metrics, k=args.k))

    # per-block rates: one task's engine call, one thread, in this process
    b = min(args.block_rows, args.n)
    t_blk, _ = _time(lambda: ma._engine.knn_exact(
        X, None, args.k, metric="l2", n_threads=1, rows=(0, b),
        screen=executor.self_screen(args.k, args.n, args.d)))
    # one block-pair task of the self kNN (the unit of the Ray kNN): two pair blocks, screened
    # as the local graph is
    (p0, p1), (q0, q1) = ex.pair_blocks(args.n)[:2]
    pair_local = np.ascontiguousarray(np.concatenate([X[p0:p1], X[q0:q1]]))
    screen = executor.self_screen(args.k, args.n, args.d)
    centre = ma._engine.knn_centre(X)
    if screen == "off":
        t_pair, _ = _time(lambda: ma._engine.knn_block_pair(
            pair_local, (0, p1 - p0), (p1 - p0, len(pair_local)), args.k, metric="l2",
            centre=centre, n_threads=1))
    else:
        t_pair, _ = _time(lambda: ma._engine.knn_block_pair_screened(
            pair_local, p1 - p0, args.k, metric="l2", centre=centre, screen=screen,
            n_threads=1))
    if args.knn_only:
        ray.shutdown()
        return _report_knn(args, t_init, t_local_knn, t_ray_knn, g_local, g_ray, b, t_blk,
                           (p1 - p0, q1 - q0, t_pair, screen))
    names = list(spaces)
    A, B = spaces[names[0]], spaces[names[1]]
    bm = min(args.block_rows, args.matrix_n)
    t_ps, _ = _time(lambda: ma._engine.pair_sums([A, B], "distance", n_threads=1,
                                                 rows=(0, bm)))
    tg = (np.arange(bm)[:, None] + 1 + rng.integers(0, args.matrix_n - 1, size=(bm, 1))) \
        % args.matrix_n  # one target per row, never the row itself
    t_rc, _ = _time(lambda: ma._engine.rank_count(B, tg, n_threads=1, rows=(0, bm)))
    ray.shutdown()

    knn_equal = (np.array_equal(g_local.indices, g_ray.indices)
                 and np.array_equal(g_local.values, g_ray.values))
    bitwise = {m: bool(np.array_equal(m_local.metrics[m], m_ray.metrics[m]))
               for m in m_local.metrics}
    close = {m: float(np.max(np.abs(m_local.metrics[m] - m_ray.metrics[m])
                             / np.maximum(np.abs(m_local.metrics[m]), 1e-300)))
             for m in m_local.metrics}

    def row(job, tl, tr):
        return f"{job:<44} local {tl:8.1f} s   ray {tr:8.1f} s   overhead {100 * (tr / tl - 1):+6.1f} %"

    print(f"ray.init (once per cluster): {t_init:.1f} s")
    print(row(f"kNN N={args.n} D={args.d} k={args.k} l2 f32", t_local_knn, t_ray_knn))
    print(row(f"matrix {args.models} models N={args.matrix_n} ({', '.join(metrics)})",
              t_local_mat, t_ray_mat))
    print(f"agreement: kNN graph bitwise equal: {knn_equal}; matrix bitwise: {bitwise}; "
          f"max relative difference: { {m: f'{v:.1e}' for m, v in close.items()} }")
    print("per-block rates (one task, one engine thread, rows × N per second):")
    print(f"  kNN     block {b} × N={args.n}, D={args.d}, k={args.k}: {t_blk:6.2f} s = "
          f"{b * args.n / t_blk:.3g} pairs/s")
    pb = (p1 - p0, q1 - q0, t_pair, screen)
    print(f"  kNN block pair {pb[0]} × {pb[1]} (screen {pb[3]}): {pb[2]:6.2f} s = "
          f"{pb[0] * pb[1] / pb[2]:.3g} pairs/s (each pair once)")
    print(f"  PairSums (dCor, 2 spaces D={A.shape[1]}+{B.shape[1]}) block {bm} × "
          f"N={args.matrix_n}: {t_ps:6.2f} s = {bm * args.matrix_n / t_ps:.3g} pairs/s")
    print(f"  RankCount (inf. imbalance, D={B.shape[1]}, 1 target) block {bm} × "
          f"N={args.matrix_n}: {t_rc:6.2f} s = {bm * args.matrix_n / t_rc:.3g} pairs/s")
    ok = knn_equal and all(bitwise[m] for m in ("cknna", "mutual_knn",
                                                "information_imbalance"))
    ok = ok and all(close[m] < 1e-10 for m in ("cka", "dcor"))
    print("agreement check:", "PASS" if ok else "FAIL")
    return 0 if ok else 1


def _report_knn(args, t_init, tl, tr, g_local, g_ray, b, t_blk, pb) -> int:
    knn_equal = (np.array_equal(g_local.indices, g_ray.indices)
                 and np.array_equal(g_local.values, g_ray.values))
    print(f"ray.init (once per cluster): {t_init:.1f} s")
    print(f"{'kNN N=' + str(args.n) + ' D=' + str(args.d) + ' k=' + str(args.k) + ' l2 f32':<44} "
          f"local {tl:8.1f} s   ray {tr:8.1f} s   overhead {100 * (tr / tl - 1):+6.1f} %")
    print(f"agreement: kNN graph bitwise equal: {knn_equal}")
    print(f"  kNN row block {b} × N={args.n}: {t_blk:6.2f} s = {b * args.n / t_blk:.3g} pairs/s")
    print(f"  kNN block pair {pb[0]} × {pb[1]} (screen {pb[3]}): {pb[2]:6.2f} s = "
          f"{pb[0] * pb[1] / pb[2]:.3g} pairs/s (each pair once)")
    print("agreement check:", "PASS" if knn_equal else "FAIL")
    return 0 if knn_equal else 1


if __name__ == "__main__":
    sys.exit(main())
