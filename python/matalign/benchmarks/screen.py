"""Exact kNN: the integer screens against matalign's own float GEMM (``screen=`` forced).

This is the table behind ``screen="auto"``'s rule (cpp/src/knn.cpp ``screen_auto``):
for each k, the self graph of X (N × D, float32, Gaussian) and Q ≠ X (``--queries`` rows),
timed with ``screen="int8"``, ``"int16"`` and ``"off"`` in one process, best of ``--repeat``
after a warm-up. Agreement first: the int8 and int16 graphs must be identical bit for bit
(both are the float64 graph), and each must match the float32 graph of ``"off"`` tie-aware
(index-set recall ≥ 0.999, best-first values within the float32 tolerance). The anchor of
these paths against faiss is ``bench/bench_knn.py``.

Examples::

    matalign bench screen                         # N = 20k, k = 10 32 64 100 128 200 256 512
    matalign bench screen --n 5000 --k 10 100 --repeat 1
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np

from . import _common as C

SCREENS = ("int8", "int16", "off")


def _best(fn, repeat: int) -> float:
    fn()  # warm-up
    best = float("inf")
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def _agree(g, ref, d: int) -> tuple[bool, float]:
    """Tie-aware: recall of index sets and best-first values within a float32 tolerance."""
    recall = np.mean([len(set(a) & set(b)) / len(a) for a, b in zip(g.indices, ref.indices)])
    scale = float(np.abs(ref.values).max()) or 1.0
    close = np.allclose(g.values, ref.values, rtol=0, atol=4 * np.sqrt(d) * 2 ** -23 * scale)
    return bool(recall >= 0.999 and close), float(recall)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n", type=int, default=20000, help="database rows (default 20000)")
    p.add_argument("--d", type=int, default=256, help="dimension (default 256)")
    p.add_argument("--k", type=int, nargs="+", default=[10, 32, 64, 100, 128, 200, 256, 512])
    p.add_argument("--queries", type=int, default=10000, help="Q ≠ X rows (default 10000)")
    p.add_argument("--metric", choices=("ip", "l2"), default="ip")
    p.add_argument("--repeat", type=int, default=2, help="timed calls per path (default 2)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=0, help="0 = all cores")
    args = p.parse_args(argv)

    import matalign as ma

    for line in C.header_lines():
        print("# " + line)
    print("# python " + " ".join(sys.argv))
    rng = np.random.default_rng(args.seed)
    X = rng.standard_normal((args.n, args.d)).astype(np.float32)
    Q = np.random.default_rng(args.seed + 1).standard_normal((args.queries, args.d)).astype(np.float32)
    print("| k | case | int8 s | int16 s | off s | int8 / off | int16 / off | auto picks | agreement |")
    print("|---|---|---|---|---|---|---|---|---|")
    failed = False
    for k in args.k:
        for case, queries in (("self", None), ("Q≠X", Q)):
            graphs, times = {}, {}
            for screen in SCREENS:
                def run(screen=screen):
                    graphs[screen] = ma.knn(X, k=k, metric=args.metric, queries=queries,
                                            screen=screen, n_threads=args.threads)
                times[screen] = _best(run, args.repeat)
            same = (np.array_equal(graphs["int8"].indices, graphs["int16"].indices)
                    and np.array_equal(graphs["int8"].values, graphs["int16"].values))
            ok8, r8 = _agree(graphs["int8"], graphs["off"], args.d)
            ok16, r16 = _agree(graphs["int16"], graphs["off"], args.d)
            ok = same and ok8 and ok16
            failed |= not ok
            picks = ma._core.knn_screen_auto(k, queries is None, args.n, args.d)
            agreement = (f"ok: int8 = int16 bitwise, recall vs off {min(r8, r16):.5f}" if ok else
                         f"**FAIL** (int8 = int16: {same}, recall {r8:.5f} / {r16:.5f})")
            if ok:
                print(f"| {k} | {case} | {times['int8']:.3f} | {times['int16']:.3f} | "
                      f"{times['off']:.3f} | {times['int8'] / times['off']:.2f} | "
                      f"{times['int16'] / times['off']:.2f} | {picks} | {agreement} |", flush=True)
            else:
                print(f"| {k} | {case} | — | — | — | — | — | {picks} | {agreement} |", flush=True)
    print("# times: best of --repeat after a warm-up, one process; ratios < 1 mean faster than "
          "the float GEMM")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
