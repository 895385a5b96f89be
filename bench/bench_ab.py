#!/usr/bin/env python3
"""Two builds of matalign, side by side: is a refactor free of speed and result changes?

A refactor that must leave behaviour unchanged (same results, same speed) is checked by
running the *same* public calls on the *same* data through two importable copies of the
package, e.g. a build of the commit before the change and today's::

    python bench/bench_ab.py --before /path/to/old/python --after /path/to/new/python

Each path is a folder that holds an importable ``matalign`` package (with its compiled
``_core``); an empty ``--after`` means the ``matalign`` this interpreter imports. The
driver writes the data once (seeded) to ``.npy`` files; every timing runs in a fresh
subprocess with that folder first on ``sys.path``, one side at a time, and the sides
alternate (before, after, before, after, ...) so that a change in machine load hits both.
Each case reports the best time of each side over all rounds, the ratio after/before, and
whether the two sides' results are **bitwise equal** (a refactor must not change a bit).

Cases (all on the public API): exact self-kNN (k = 10 and 100, N = 20k, D = 256, float32),
CKNNA from arrays (N = 10k, k = 10), distance correlation (N = 10k, float64), information
imbalance (N = 5k, float64, k = 1), and the 10-model matrix for CKNNA and dCor (N = 10k,
D 64-224). ``--quick`` shrinks every N by 4.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

import numpy as np

CASES = ("knn_k10", "knn_k100", "cknna", "dcor", "information_imbalance", "matrix_cknna",
         "matrix_dcor")


def _data(folder: str, scale: int, seed: int) -> dict:
    rng = np.random.default_rng(seed)
    n_knn, n_pair, n_ii = 20000 // scale, 10000 // scale, 5000 // scale
    X = rng.standard_normal((n_knn, 256)).astype(np.float32)
    W = rng.standard_normal((256, 256)) / 16.0
    Xp = rng.standard_normal((n_pair, 256))
    Yp = np.tanh(Xp @ W) + 0.5 * rng.standard_normal((n_pair, 256))
    Z = rng.standard_normal((n_pair, 32))
    dims = rng.integers(64, 225, size=10)
    files = {"X": X, "Xp": Xp, "Yp": Yp}
    for m, d in enumerate(dims):
        A = rng.standard_normal((32, int(d)))
        s = 0.25 + 1.25 * m / 9
        files[f"M{m}"] = (Z @ A + s * rng.standard_normal((n_pair, int(d)))).astype(np.float32)
    for name, arr in files.items():
        np.save(os.path.join(folder, name + ".npy"), arr)
    return {"n_knn": n_knn, "n_pair": n_pair, "n_ii": n_ii}


def _sha(a) -> str:
    import hashlib

    return hashlib.sha256(np.ascontiguousarray(np.asarray(a)).tobytes()).hexdigest()[:16]


def _worker(folder: str, case: str, repeat: int) -> None:
    import matalign as ma

    load = lambda name: np.load(os.path.join(folder, name + ".npy"))  # noqa: E731
    if case.startswith("knn"):
        X, k = load("X"), (10 if case == "knn_k10" else 100)
        call = lambda: ma.knn(X, k=k)  # noqa: E731
        digest = lambda g: [_sha(g.indices), _sha(g.values)]  # noqa: E731
    elif case == "cknna":
        X, Y = load("Xp").astype(np.float32), load("Yp").astype(np.float32)
        call = lambda: ma.cknna(X, Y, k=10)  # noqa: E731
        digest = lambda v: [float(v).hex()]  # noqa: E731
    elif case == "dcor":
        X, Y = load("Xp"), load("Yp")
        call = lambda: ma.distance_correlation(X, Y)  # noqa: E731
        digest = lambda v: [float(v).hex()]  # noqa: E731
    elif case == "information_imbalance":
        n = len(load("Xp")) // 2
        X, Y = load("Xp")[:n], load("Yp")[:n]
        call = lambda: ma.information_imbalance(X, Y, k=1)  # noqa: E731
        digest = lambda v: [float(x).hex() for x in v]  # noqa: E731
    else:
        spaces = {f"m{m}": load(f"M{m}") for m in range(10)}
        metric = case.split("_", 1)[1]
        call = lambda: ma.alignment_matrix(spaces, metrics=(metric,), k=10)  # noqa: E731
        digest = lambda r: [_sha(r.metrics[metric])]  # noqa: E731
    out = call()  # warm-up
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = call()
        best = min(best, time.perf_counter() - t0)
    print(json.dumps({"time": best, "digest": digest(out), "file": ma.__file__}))


def _run(path: str, folder: str, case: str, repeat: int, timeout: float) -> dict:
    env = dict(os.environ)
    env.pop("PYTHONPATH", None)
    if path:
        env["PYTHONPATH"] = path
    cmd = [sys.executable, os.path.abspath(__file__), "--_worker", folder, case, str(repeat)]
    res = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=timeout)
    if res.returncode != 0:
        raise SystemExit(f"worker failed ({path or 'this interpreter'}, {case}):\n{res.stderr}")
    out = json.loads(res.stdout.strip().splitlines()[-1])
    if path and not os.path.realpath(out["file"]).startswith(os.path.realpath(path)):
        raise SystemExit(f"{path!r} did not take effect: the worker imported {out['file']}")
    return out


def main(argv=None) -> int:
    if argv is None and len(sys.argv) > 1 and sys.argv[1] == "--_worker":
        _worker(sys.argv[2], sys.argv[3], int(sys.argv[4]))
        return 0
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--before", required=True, help="folder holding the old matalign package")
    p.add_argument("--after", default="", help="folder holding the new one (default: this "
                   "interpreter's matalign)")
    p.add_argument("--cases", nargs="+", choices=CASES, default=list(CASES))
    p.add_argument("--rounds", type=int, default=2, help="alternating rounds per side")
    p.add_argument("--repeat", type=int, default=3, help="timed calls per worker (best kept)")
    p.add_argument("--quick", action="store_true", help="every N divided by 4")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--timeout", type=float, default=1800.0)
    a = p.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="matalign-ab-") as folder:
        sizes = _data(folder, 4 if a.quick else 1, a.seed)
        print(f"# python bench/bench_ab.py {' '.join(sys.argv[1:])}")
        print(f"# sizes: kNN N={sizes['n_knn']}, pairs N={sizes['n_pair']}, "
              f"information imbalance N={sizes['n_pair'] // 2}; "
              f"{a.rounds} alternating rounds x best of {a.repeat} per side; "
              f"load average {os.getloadavg()[0]:.1f} at start")
        print("| case | before s | after s | after/before | results |")
        print("|---|---|---|---|---|")
        worst = 0
        for case in a.cases:
            t = {"before": [], "after": []}
            d = {}
            for _ in range(a.rounds):
                for side, path in (("before", a.before), ("after", a.after)):
                    r = _run(path, folder, case, a.repeat, a.timeout)
                    t[side].append(r["time"])
                    d[side] = r["digest"]
            same = d["before"] == d["after"]
            worst = max(worst, 0 if same else 1)
            b, f = min(t["before"]), min(t["after"])
            print(f"| {case} | {b:.3g} | {f:.3g} | {f / b:.2f} | "
                  f"{'bitwise equal' if same else '**DIFFER**'} |", flush=True)
        print(f"# load average {os.getloadavg()[0]:.1f} at end")
    return worst


if __name__ == "__main__":
    sys.exit(main())
