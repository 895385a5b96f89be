#!/usr/bin/env python3
"""Coverage of ma.confidence_interval (subsampling without replacement) per metric.

Synthetic population (the same family as tests/test_statistics.py): latent z ~ N(0, I_4);
X = [z, tanh z]·A + 0.6·noise, Y = z·B + Σ sin z + 0.6·noise (8 columns each; for the
intrinsic dimension X = [z, sin z] + 0.05·noise with z ~ N(0, I_3)). The population value at
sample size N is E[metric on N draws], estimated by the mean over --population independent
draws (its Monte-Carlo standard error is printed); then --reps further independent draws each
give a nominal 95 % interval (n_subsamples=--subsamples, b = the default for N), and the table
prints the fraction that contain the population value. Target: 90-98 %; a row outside prints
FAIL and the script exits 1.

Examples::

    python bench/bench_coverage.py                       # N = 200 and 500, 200 reps
    python bench/bench_coverage.py --n 1000 --reps 100 --metrics cknna mutual_knn
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

import matalign as ma  # noqa: E402
from matalign import statistics as st  # noqa: E402


def population(rng, n, d=4, noise=0.6):
    z = rng.normal(size=(n, d))
    A = np.linspace(-1.0, 1.0, d * 8).reshape(d, 8)
    X = np.concatenate([z, np.tanh(z)], axis=1) @ np.vstack([A, A[::-1]]) \
        + noise * rng.normal(size=(n, 8))
    Y = z @ A[:, ::-1] + np.sin(z).sum(axis=1, keepdims=True) + noise * rng.normal(size=(n, 8))
    return X, Y


def id_population(rng, n):
    z = rng.normal(size=(n, 3))
    return np.concatenate([z, np.sin(z)], axis=1) + 0.05 * rng.normal(size=(n, 6))


CASES = {
    "cknna": ({"k": 10}, population),
    "mutual_knn": ({"k": 10}, population),
    "cka": ({}, population),
    "cka_rbf": ({"kernel": "rbf", "sigma": 4.0}, population),
    "distance_correlation": ({}, population),
    "information_imbalance[x->y]": ({"direction": "x->y"}, population),
    "information_imbalance[y->x]": ({"direction": "y->x"}, population),
    "intrinsic_dimension": ({}, id_population),
}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--n", type=int, nargs="+", default=[200, 500])
    p.add_argument("--reps", type=int, default=200)
    p.add_argument("--population", type=int, default=1000)
    p.add_argument("--subsamples", type=int, default=20)
    p.add_argument("--metrics", nargs="+", default=list(CASES), choices=list(CASES))
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args(argv)
    print(f"matalign {ma.__version__}; nominal level 0.95; reps {a.reps}; population draws "
          f"{a.population}; subsamples {a.subsamples}; seed {a.seed}")
    print(f"{'metric':30s} {'N':>5} {'b':>5} {'population':>11} {'±MC':>8} {'coverage':>9} "
          f"{'width':>8} {'s':>7}  verdict")
    bad = 0
    for name in a.metrics:
        kw, sampler = CASES[name]
        metric = name.split("[")[0].replace("_rbf", "")
        for n in a.n:
            t0 = time.perf_counter()
            r = st.coverage(metric, sampler, n, n_reps=a.reps, n_population=a.population,
                            seed=a.seed, n_subsamples=a.subsamples, **kw)
            ok = 0.90 <= r.coverage <= 0.98
            bad += not ok
            print(f"{name:30s} {n:5d} {st.default_subsample_size(n):5d} "
                  f"{r.population_value:11.5f} {r.population_se:8.5f} {r.coverage:9.3f} "
                  f"{r.mean_width:8.4f} {time.perf_counter() - t0:7.1f}  "
                  f"{'ok' if ok else 'FAIL'}", flush=True)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
