#!/usr/bin/env python3
"""The Ray executor against the local path on one machine (docs/CLUSTER.md).

Two jobs on the same bytes (``.npy`` files, read as memory maps):

1. **Exact kNN**, N = 100k (``--n``), D = 64, k = 10, l2, float32: ``ma.knn`` locally (all
   cores, one process) and inside ``matalign.executor.use(...)`` on a Ray cluster of
   ``--workers`` CPUs (one task per block pair (I, J >= I), each pair computed once, of as
   few blocks as keep the workers busy: ``Executor.pair_blocks``).
   Agreement: the graphs are bitwise equal (indices and values).
2. **A model matrix** (``--models``, N = ``--matrix-n``, D from 64 to 128; metrics cknna,
   mutual_knn, linear CKA, dCor, information imbalance): ``ma.alignment_matrix`` locally and
   on Ray (PairSums, i.e. dCor, by block pairs of ``--block-rows`` blocks, each pair once;
   RankCount by row blocks). Agreement: the graph metrics and information imbalance bitwise,
   CKA and dCor to 1e-10 relative (the Ray result is bitwise the local blocked reference,
   tests/test_cluster.py).

Each job runs in these configurations, **paired**: every repeat runs all of them one after
another (``--repeat`` rounds), so a shared machine's load hits them alike:

- ``local``: the local path (one process, all cores as engine threads);
- ``ray``: Ray, ``--workers`` tasks at a time × 1 engine thread (``cpus_per_task=1``);
- ``ray2``: Ray, one task at a time × ``--workers`` engine threads (``cpus_per_task`` =
  ``--workers``);
- ``pool``: the very same block tasks and merge as ``ray``, but in ``--workers`` plain
  processes (a ``multiprocessing`` pool, no Ray): what the decomposition costs without Ray.

Printed per run: wall time, **CPU time** (this process + every process it started: Ray's
workers and daemons, the pool's processes) and the 1-minute load average when it started;
per configuration the median and the fastest, and the overheads against ``local`` (wall and
CPU). Then the per-block rates of one task (rows × N / s per core) that docs/CLUSTER.md's
cost model uses. Ray runs with a temporary HOME and ``_temp_dir`` and
``RAY_AUTH_MODE=disabled`` (a throwaway local cluster). ``ray.init`` (once per cluster) is
reported apart.

Examples::

    python bench/bench_distributed.py --knn-only --repeat 3             # N = 100k, ~2 min
    python bench/bench_distributed.py --knn-only --n 400000 --repeat 3  # > 1 min per job
    python bench/bench_distributed.py --matrix-only --matrix-n 6000 --block-rows 1536 \\
        --repeat 3 --configs local,ray,ray2                             # > 1 min per job
    python bench/bench_distributed.py --n 20000 --matrix-n 3000 --models 4   # ~1 min
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import resource
import statistics
import sys
import tempfile
import time

import numpy as np

CONFIGS = ("local", "ray", "ray2", "pool")


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


def _star(args):
    fn, item = args
    return fn(*item)


def _pool_executor(executor_mod, workers, block_rows, shared_dir):
    """The Ray executor's blocks, tasks and merge, run in a plain process pool (no Ray)."""

    class PoolExecutor(executor_mod.Executor):
        @property
        def threads(self):
            return 1

        def workers(self):  # the block-pair kNN's blocks as on a cluster of `workers` CPUs
            return workers

        def map(self, fn, items, *, progress=None):
            return list(self.imap(fn, items, progress=progress))

        def imap(self, fn, items, *, progress=None):
            with multiprocessing.get_context("fork").Pool(workers) as pool:
                yield from pool.imap(_star, [(fn, it) for it in items])

    return PoolExecutor("local", block_rows=block_rows, shared_dir=shared_dir)


class CpuClock:
    """CPU seconds (user + system) of this process, its reaped children, and every live
    process below it (Ray's daemons and workers, pool processes)."""

    def __init__(self):
        import psutil
        self.psutil = psutil
        self.me = psutil.Process()

    def _tree(self):
        out = {}
        for p in self.me.children(recursive=True):
            try:
                t = p.cpu_times()
                out[(p.pid, p.create_time())] = (t.user + t.system, p.name())
            except self.psutil.Error:
                pass
        return out

    def snap(self):
        s = resource.getrusage(resource.RUSAGE_SELF)
        c = resource.getrusage(resource.RUSAGE_CHILDREN)
        return s.ru_utime + s.ru_stime, c.ru_utime + c.ru_stime, self._tree()

    @staticmethod
    def delta(a, b):
        """(driver, children, ray workers, ray daemons) CPU seconds between two snaps."""
        workers = daemons = 0.0
        for key, (t, name) in b[2].items():
            d = t - a[2].get(key, (0.0, name))[0]
            if name.startswith("ray::"):
                workers += d
            else:
                daemons += d
        return b[0] - a[0], b[1] - a[1], workers, daemons


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
                   help="rounds; each round runs every configuration once, one after another")
    p.add_argument("--configs", default=",".join(CONFIGS),
                   help=f"comma-separated subset of {','.join(CONFIGS)}")
    only = p.add_mutually_exclusive_group()
    only.add_argument("--knn-only", action="store_true", help="only the kNN job")
    only.add_argument("--matrix-only", action="store_true", help="only the matrix job")
    args = p.parse_args(argv)
    configs = [c for c in args.configs.split(",") if c]
    if "local" not in configs or any(c not in CONFIGS for c in configs):
        p.error(f"--configs must include 'local' and name only {', '.join(CONFIGS)}")

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
    X = None
    if not args.matrix_only:
        np.save(os.path.join(work, "x.npy"),
                rng.normal(size=(args.n, args.d)).astype(np.float32))
        X = np.load(os.path.join(work, "x.npy"), mmap_mode="r")
    spaces = {}
    if not args.knn_only:
        for name, A in _models(args.matrix_n, args.models, args.seed + 1).items():
            np.save(os.path.join(work, f"{name}.npy"), A)
            spaces[name] = np.load(os.path.join(work, f"{name}.npy"), mmap_mode="r")
    metrics = ["cknna", "mutual_knn", "cka", "dcor", "information_imbalance"]
    print(f"machine: {os.cpu_count()} cores; Ray {ray.__version__}; workers {args.workers}; "
          f"block_rows {args.block_rows}; KNN_PAIR_FACTOR {executor.KNN_PAIR_FACTOR}; "
          f"configs {configs}; repeat {args.repeat}", flush=True)

    t0 = time.perf_counter()
    ray.init(num_cpus=args.workers, include_dashboard=False, log_to_driver=False,
             _node_ip_address="127.0.0.1", _temp_dir=tempfile.mkdtemp(prefix="r", dir="/tmp"))
    t_init = time.perf_counter() - t0
    print(f"ray.init (once per cluster): {t_init:.1f} s", flush=True)
    execs = {
        "local": "local",
        "ray": executor.Executor("ray", block_rows=args.block_rows, shared_dir=work),
        "ray2": executor.Executor("ray", block_rows=args.block_rows, shared_dir=work,
                                  cpus_per_task=args.workers),
        "pool": _pool_executor(executor, args.workers, args.block_rows, work),
    }
    # warm every Ray worker (imports) with small block-pair tasks of both sizes
    Xw = np.random.default_rng(1).normal(size=(3000, 8)).astype(np.float32)
    for c in ("ray", "ray2"):
        if c in configs:
            with executor.use(executor.Executor("ray", block_rows=64, shared_dir=work,
                                                cpus_per_task=execs[c].cpus_per_task)):
                ma.knn(Xw, k=5, metric="l2")

    clock = CpuClock()
    jobs = []
    if X is not None:
        jobs.append((f"kNN N={args.n} D={args.d} k={args.k} l2 f32",
                     lambda: ma.knn(X, k=args.k, metric="l2")))
    if spaces:
        jobs.append((f"matrix {args.models} models N={args.matrix_n}",
                     lambda: ma.alignment_matrix(spaces, metrics=metrics, k=args.k)))
    ok = True
    for job, fn in jobs:
        runs = {c: [] for c in configs}
        results = {}
        for r in range(args.repeat):
            for c in configs:
                load = os.getloadavg()[0]
                a = clock.snap()
                t0 = time.perf_counter()
                with executor.use(execs[c]):
                    results[c] = fn()
                wall = time.perf_counter() - t0
                d = clock.delta(a, clock.snap())
                runs[c].append((wall, sum(d), load))
                print(f"  [{job}] round {r + 1} {c:<6} wall {wall:7.1f} s  cpu {sum(d):7.1f} s "
                      f"(driver {d[0]:.1f}, children {d[1]:.1f}, ray workers {d[2]:.1f}, "
                      f"ray daemons {d[3]:.1f})  load1 {load:.1f}", flush=True)
        ok = _agree(job, results) and ok
        med = {c: statistics.median(w for w, _, _ in runs[c]) for c in configs}
        best = {c: min(w for w, _, _ in runs[c]) for c in configs}
        cpu = {c: statistics.median(u for _, u, _ in runs[c]) for c in configs}
        loads = [ld for c in configs for _, _, ld in runs[c]]
        print(f"{job}: load1 {min(loads):.1f}-{max(loads):.1f}")
        for c in configs:
            print(f"  {c:<6} wall median {med[c]:7.1f} s (fastest {best[c]:7.1f})  "
                  f"overhead median {100 * (med[c] / med['local'] - 1):+6.1f} % "
                  f"(fastest {100 * (best[c] / best['local'] - 1):+6.1f} %)  cpu median "
                  f"{cpu[c]:7.1f} s ({100 * (cpu[c] / cpu['local'] - 1):+6.1f} %)", flush=True)

    _rates(ma, executor, args, X, spaces, rng)
    ray.shutdown()
    print("agreement check:", "PASS" if ok else "FAIL")
    return 0 if ok else 1


def _agree(job, results) -> bool:
    ref = results["local"]
    ok = True
    for c, got in results.items():
        if c == "local":
            continue
        if hasattr(ref, "indices"):
            same = (np.array_equal(ref.indices, got.indices)
                    and np.array_equal(ref.values, got.values))
            print(f"  agreement {c}: kNN graph bitwise equal: {same}")
            ok = ok and same
            continue
        bitwise = {m: bool(np.array_equal(ref.metrics[m], got.metrics[m])) for m in ref.metrics}
        close = {m: float(np.max(np.abs(ref.metrics[m] - got.metrics[m])
                                 / np.maximum(np.abs(ref.metrics[m]), 1e-300)))
                 for m in ref.metrics}
        print(f"  agreement {c}: bitwise {bitwise}; max relative difference "
              f"{ {m: f'{v:.1e}' for m, v in close.items()} }")
        ok = ok and all(bitwise[m] for m in ("cknna", "mutual_knn", "information_imbalance"))
        ok = ok and all(close[m] < 1e-10 for m in ("cka", "dcor"))
    return ok


def _time(fn):
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def _rates(ma, executor, args, X, spaces, rng):
    """Per-block rates: one task's engine call, one thread, in this process."""
    print("per-block rates (one task, one engine thread, rows × N per second):")
    if X is not None:
        b = min(args.block_rows, args.n)
        screen = executor.self_screen(args.k, args.n, args.d)
        t = _time(lambda: ma._engine.knn_exact(X, None, args.k, metric="l2", n_threads=1,
                                                rows=(0, b), screen=screen))
        print(f"  kNN row block {b} × N={args.n}, D={args.d}, k={args.k}: {t:6.2f} s = "
              f"{b * args.n / t:.3g} pairs/s")
        blocks = executor.Executor("local", block_rows=args.block_rows).pair_blocks(args.n)
        if len(blocks) >= 2:
            (p0, p1), (q0, q1) = blocks[:2]
            local = np.ascontiguousarray(np.concatenate([X[p0:p1], X[q0:q1]]))
            centre = ma._engine.knn_centre(X)
            if screen == "off":
                t = _time(lambda: ma._engine.knn_block_pair(
                    local, (0, p1 - p0), (p1 - p0, len(local)), args.k, metric="l2",
                    centre=centre, n_threads=1))
            else:
                t = _time(lambda: ma._engine.knn_block_pair_screened(
                    local, p1 - p0, args.k, metric="l2", centre=centre, screen=screen,
                    n_threads=1))
            print(f"  kNN block pair {p1 - p0} × {q1 - q0} (screen {screen}): {t:6.2f} s = "
                  f"{(p1 - p0) * (q1 - q0) / t:.3g} pairs/s (each pair once)")
    if spaces:
        names = list(spaces)
        A, B = spaces[names[0]], spaces[names[1]]
        n = args.matrix_n
        bm = min(args.block_rows, n)
        t = _time(lambda: ma._engine.pair_sums([A, B], "distance", n_threads=1, rows=(0, bm)))
        print(f"  PairSums (dCor, 2 spaces D={A.shape[1]}+{B.shape[1]}) row block {bm} × N={n}: "
              f"{t:6.2f} s = {bm * n / t:.3g} pairs/s (each pair seen from both sides)")
        if n >= 2 * bm:
            t = _time(lambda: ma._engine.pair_sums_block([A, B], "distance", (), (0, bm),
                                                         (bm, 2 * bm), n_threads=1))
            print(f"  PairSums block pair {bm} × {bm} (the Ray unit): {t:6.2f} s = "
                  f"{bm * bm / t:.3g} pairs/s (each pair once)")
        tg = (np.arange(bm)[:, None] + 1 + rng.integers(0, n - 1, size=(bm, 1))) % n
        t = _time(lambda: ma._engine.rank_count(B, tg, n_threads=1, rows=(0, bm)))
        print(f"  RankCount (inf. imbalance, D={B.shape[1]}, 1 target) block {bm} × N={n}: "
              f"{t:6.2f} s = {bm * n / t:.3g} pairs/s")


if __name__ == "__main__":
    sys.exit(main())
