#!/usr/bin/env python3
"""Cost of the statistics against the point estimates they accompany, at N = 5,000.

For each metric: the point estimate alone (one call of the ma.* function on the arrays, kNN
searches included), then ``ma.statistics.assess`` (the same value computed once, plus the
subsampling interval and the null), and the ratio (assess − point) / point: the statistics'
overhead in units of the point estimate. Target <= 3x. Settings (printed): n_subsamples
subsets of b = N/4 rows and as many of b/4 (the rate estimate); cknna and mutual_knn: each
subset's graphs searched anew, the permutation-normal null with P relabellings of the kNN
graph (O(N·k) each); linear CKA: subsets as unions of groups of one partition, evaluated from
one pass of per-group sums, and the exact permutation-moments null (no permutations); RBF CKA:
subsets evaluated anew, the moments null from one pair-sums pass; the t-test for dCor and the
asymptotic null for the imbalance (no resampling).

Data: X ~ N(0, I_D), Y = tanh(X·W) + 0.5·noise, float32, D = 128, seeded. Best of --repeat.

Examples::

    OMP_NUM_THREADS=1 python bench/bench_stats_cost.py   # N = 5000; one thread on a busy machine
    python bench/bench_stats_cost.py --n 2000 --repeat 1
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np

import matalign as ma
from matalign import statistics as st

CASES = [
    ("cknna", {"k": 10}),
    ("mutual_knn", {"k": 10}),
    ("cka", {}),
    ("cka", {"kernel": "rbf", "sigma": 10.0}),
    ("distance_correlation", {}),
    ("information_imbalance", {"direction": "x->y"}),
    ("intrinsic_dimension", {}),
]


def best(fn, repeat):
    out = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return min(out)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--n", type=int, default=5000)
    p.add_argument("--d", type=int, default=128)
    p.add_argument("--subsamples", type=int, default=10)
    p.add_argument("--permutations", type=int, default=10)
    p.add_argument("--cka-permutations", type=int, default=3)
    p.add_argument("--repeat", type=int, default=2)
    a = p.parse_args(argv)
    rng = np.random.default_rng(0)
    X = rng.normal(size=(a.n, a.d)).astype(np.float32)
    W = (rng.normal(size=(a.d, a.d)) / np.sqrt(a.d)).astype(np.float32)
    Y = (np.tanh(X @ W) + 0.5 * rng.normal(size=(a.n, a.d))).astype(np.float32)
    b = st.default_subsample_size(a.n)
    st.assess("cknna", X[:200], Y[:200], n_subsamples=3, n_permutations=3)   # imports scipy
    print(f"matalign {ma.__version__}; N={a.n} D={a.d} float32; cores={os.cpu_count()}; "
          f"subsamples={a.subsamples} of b={b} and {a.subsamples} of b/4 (rate); "
          f"permutations={a.permutations} (graph metrics; cka: exact moments, none drawn); "
          f"best of {a.repeat}")
    print(f"{'metric':38s} {'null':>22} {'point s':>9} {'assess s':>9} {'overhead':>9}  target")
    bad = 0
    for name, kw in CASES:
        m = st._resolve(name, kw.get("k"), {x: y for x, y in kw.items() if x != "k"})
        Yn = None if name == "intrinsic_dimension" else Y
        point = best(lambda: m(X, Yn), a.repeat)
        perms = a.cka_permutations if name == "cka" else a.permutations
        null = st.AUTO_NULL.get(name)
        t = best(lambda: st.assess(name, X, Yn, n_subsamples=a.subsamples,
                                   n_permutations=perms, **kw), a.repeat)
        ratio = (t - point) / point
        ok = ratio <= 3.0
        bad += not ok
        label = m.label + (f" k={m.k}" if m.k else "")
        nl = f"{null}" + (f"({perms})" if null.startswith("permutation") else "") \
            if null else "none"
        print(f"{label:38s} {nl:>22} {point:9.3f} {t:9.3f} {ratio:8.2f}x  "
              f"{'ok' if ok else 'OVER'}", flush=True)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
