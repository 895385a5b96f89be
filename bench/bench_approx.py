#!/usr/bin/env python3
"""Approximate kNN (FAISS IVF-Flat, HNSW, IVF-PQ through ``ma.knn``): recall and CKNNA error
against time, beside exact matalign and faiss ``IndexFlatIP`` (DESIGN §1.3).

Data (seeded, float32, D = 256 by default): a nonlinear embedding of a clustered
low-dimensional latent space, X = tanh(Z·A) + 0.1·noise with Z drawn around 100 cluster
centres in 32 dimensions, and a related space Y = X·R + 0.5·noise (R random D×D); both are
L2-normalised, so inner product = cosine and every graph is an ``"ip"`` graph as CKNNA needs.

For every method and parameter setting the script builds the approximate self-kNN graphs of X
and Y (``ma.knn(..., method=...)``, which includes the recall check on 1000 sampled rows), and
reports:

* the time of the X graph (build + search + recall check) and its speed-up over exact
  matalign and over faiss ``IndexFlatIP`` (k+1 searched, self dropped by index);
* the recall that the graph reports (1000 sampled rows) and the recall over **all** rows
  against the exact graph (the check that the sampled recall is honest);
* |CKNNA(approx graphs) − CKNNA(exact graphs)| and the same for mutual_knn.

Agreement checks before anything is printed: faiss ``IndexFlatIP`` must agree with matalign's
exact graph (recall ≥ 0.999), and every sampled recall must lie within 4 standard errors (plus
0.005) of the all-rows recall. A PNG of CKNNA error versus recall (and time versus recall) is
written when matplotlib is importable.

Examples::

    python bench/bench_approx.py --quick            # N = 20 000 (about 2 min on 2 cores)
    python bench/bench_approx.py                    # N = 100 000 (about 10-15 min)
    python bench/bench_approx.py --n 1000000 --no-flat   # N = 1M (exact graphs: ~30+ min)
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
import warnings

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_PNG = os.path.join(HERE, "approx_error_vs_recall.png")
FLAT_RECALL_MIN = 0.999

# (method, options) per setting; None values take matalign's defaults (printed in the table).
SETTINGS = [
    ("ivf", {"nprobe": 8}),
    ("ivf", {"nprobe": 32}),
    ("ivf", {}),
    ("hnsw", {"M": 16, "ef_search": 32}),
    ("hnsw", {}),
    ("hnsw", {"M": 32, "ef_search": 128}),
    ("ivfpq", {"pq_m": 32, "nprobe": 32}),
    ("ivfpq", {}),
    ("ivfpq", {"pq_m": 128}),
]


# ----------------------------------------------------------------------------- data


def make_data(n: int, d: int, seed: int, latent: int = 32, clusters: int = 100,
              noise_y: float = 0.5) -> tuple[np.ndarray, np.ndarray]:
    """Seeded X, Y (N, D) float32 with unit rows; generated in blocks (O(block·D) float64)."""
    rng = np.random.default_rng(seed)
    centres = 1.5 * rng.standard_normal((clusters, latent))
    A = rng.standard_normal((latent, d)) / math.sqrt(latent)
    R = rng.standard_normal((d, d)) / math.sqrt(d)
    X = np.empty((n, d), dtype=np.float32)
    Y = np.empty((n, d), dtype=np.float32)
    block = 65536
    for b, s in enumerate(range(0, n, block)):
        m = min(block, n - s)
        r = np.random.default_rng((seed, b + 1))
        Z = centres[r.integers(0, clusters, m)] + r.standard_normal((m, latent))
        x = np.tanh(Z @ A) + 0.1 * r.standard_normal((m, d))
        y = x @ R + noise_y * r.standard_normal((m, d))
        X[s:s + m] = x / np.linalg.norm(x, axis=1, keepdims=True)
        Y[s:s + m] = y / np.linalg.norm(y, axis=1, keepdims=True)
    return X, Y


# ----------------------------------------------------------------------------- sides


def timed(fn):
    t0 = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t0


def faiss_flat(X: np.ndarray, k: int, threads: int):
    """faiss IndexFlatIP self graph: add + search k+1 + drop self by index (all timed)."""
    import faiss

    before = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(threads)
    try:
        def run():
            index = faiss.IndexFlatIP(X.shape[1])
            index.add(X)
            _, idx = index.search(X, k + 1)
            rows = np.arange(X.shape[0])[:, None]
            is_self = idx == rows
            drop = np.where(is_self.any(1), is_self.argmax(1), k)
            keep = np.ones(idx.shape, bool)
            keep[np.arange(idx.shape[0]), drop] = False
            return idx[keep].reshape(-1, k)
        return timed(run)
    finally:
        faiss.omp_set_num_threads(before)


def full_recall(approx_idx: np.ndarray, exact_idx: np.ndarray) -> float:
    from matalign.approx import overlap_recall

    return overlap_recall(approx_idx, exact_idx)


def describe_params(method: str, options: dict, n: int, d: int, k: int) -> str:
    from matalign.approx import resolve_params

    p = resolve_params(method, n, d, k + 1, **options)
    if method == "ivf":
        text = f"nlist={p.nlist} nprobe={p.nprobe}"
    elif method == "hnsw":
        text = f"M={p.M} ef_search={p.ef_search}"
    else:
        text = f"nlist={p.nlist} nprobe={p.nprobe} pq_m={p.pq_m}"
    return text + ("" if options else " (default)")


# ----------------------------------------------------------------------------- driver


def header(threads: int) -> list[str]:
    lines = []
    try:
        import _common as C

        lines += C.header_lines(("faiss",))
    except Exception as exc:  # the shared helper is optional for this script
        lines.append(f"(bench/_common.py header unavailable: {exc})")
    try:
        load = ", ".join(f"{v:.2f}" for v in os.getloadavg())
        lines.append(f"threads: {threads} | load average before the run: {load}")
    except OSError:
        pass
    return lines


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=100_000, help="rows (default 100000)")
    parser.add_argument("--quick", action="store_true", help="N = 20000")
    parser.add_argument("--d", type=int, default=256)
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--methods", default="ivf,hnsw,ivfpq")
    parser.add_argument("--no-flat", action="store_true", help="skip faiss IndexFlatIP")
    parser.add_argument("--png", default=DEFAULT_PNG, help="plot path ('' to skip)")
    parser.add_argument("--json", default="", help="write the results to this JSON file")
    args = parser.parse_args(argv)
    n = 20_000 if args.quick else args.n
    d, k, threads = args.d, args.k, args.threads
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]

    import matalign as ma

    for line in header(threads):
        print(line)
    print(f"data: N={n} D={d} float32, clustered latent (32-D, 100 clusters) -> tanh -> "
          f"unit rows; Y = X·R + 0.5·noise; k={k}; seed={args.seed}")
    (X, Y), t_data = timed(lambda: make_data(n, d, args.seed))
    print(f"data generated in {t_data:.1f} s")

    (ex, t_ex) = timed(lambda: ma.knn(X, k=k, metric="ip", n_threads=threads))
    (ey, t_ey) = timed(lambda: ma.knn(Y, k=k, metric="ip", n_threads=threads))
    cknna_exact = ma.cknna(ex, ey, k=k, n_threads=threads)
    mknn_exact = ma.mutual_knn(ex, ey, k=k, n_threads=threads)
    print(f"exact matalign: X graph {t_ex:.2f} s, Y graph {t_ey:.2f} s; CKNNA = "
          f"{cknna_exact:.5f}, mutual_knn = {mknn_exact:.5f}")
    rows = np.sort(np.random.default_rng(0).choice(n, size=min(1000, n), replace=False))
    _, t_rc = timed(lambda: ma.knn(X, k=k + 1, metric="ip", queries=X[rows],
                                   n_threads=threads, rescore=True))
    print(f"recall check alone (exact search of 1000 rows, included in every approximate "
          f"time): {t_rc:.2f} s")

    t_flat = None
    if not args.no_flat:
        flat_idx, t_flat = faiss_flat(X, k, threads)
        r = full_recall(flat_idx, ex.indices)
        print(f"faiss IndexFlatIP: X graph {t_flat:.2f} s; agreement with matalign exact: "
              f"recall {r:.5f}")
        if r < FLAT_RECALL_MIN:
            print(f"FAILED: faiss IndexFlatIP and matalign exact disagree (recall {r:.5f} < "
                  f"{FLAT_RECALL_MIN})")
            return 1
        del flat_idx

    results = []
    failed = False
    cols = ("method", "parameters", "time X s", "vs exact", "vs flat", "recall (1000)",
            "recall (all)", "recall Y", "CKNNA", "|ΔCKNNA|", "|Δmutual_knn|")
    fmt = "{:<6} {:<34} {:>9} {:>8} {:>8} {:>13} {:>12} {:>9} {:>8} {:>9} {:>13}"
    print()
    print(fmt.format(*cols))
    print(fmt.format("exact", "matalign (tile loop)", f"{t_ex:.2f}", "1.00",
                     "-" if t_flat is None else f"{t_flat / t_ex:.2f}", "1", "1", "1",
                     f"{cknna_exact:.4f}", "0", "0"))
    if t_flat is not None:
        print(fmt.format("flat", "faiss IndexFlatIP", f"{t_flat:.2f}", f"{t_ex / t_flat:.2f}",
                         "1.00", "-", "≥0.999", "-", "-", "-", "-"))
    for method, options in SETTINGS:
        if method not in methods:
            continue
        label = describe_params(method, options, n, d, k)
        (gx, t_x) = timed(lambda: ma.knn(X, k=k, metric="ip", method=method,
                                         n_threads=threads, **options))
        (gy, t_y) = timed(lambda: ma.knn(Y, k=k, metric="ip", method=method,
                                         n_threads=threads, **options))
        rx_all = full_recall(gx.indices, ex.indices)
        ry_all = full_recall(gy.indices, ey.indices)
        for g, r_all in ((gx, rx_all), (gy, ry_all)):
            se = math.sqrt(max(r_all * (1 - r_all), 1e-12) / min(1000, n))  # rows as trials
            if abs(g.recall - r_all) > 4 * se + 0.005:
                print(f"FAILED: {method} {label}: sampled recall {g.recall:.4f} is not within "
                      f"4 s.e. of the all-rows recall {r_all:.4f}")
                failed = True
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # "computed from an approximate graph"
            c = ma.cknna(gx, gy, k=k, n_threads=threads)
            mk = ma.mutual_knn(gx, gy, k=k, n_threads=threads)
        row = {
            "method": method, "options": options, "parameters": label,
            "time_x_s": t_x, "time_y_s": t_y,
            "recall_x_sampled": gx.recall, "recall_x_all": rx_all,
            "recall_y_sampled": gy.recall, "recall_y_all": ry_all,
            "cknna": c, "cknna_error": abs(c - cknna_exact),
            "mutual_knn": mk, "mutual_knn_error": abs(mk - mknn_exact),
        }
        results.append(row)
        print(fmt.format(method, label, f"{t_x:.2f}", f"{t_ex / t_x:.2f}",
                         "-" if t_flat is None else f"{t_flat / t_x:.2f}",
                         f"{gx.recall:.4f}", f"{rx_all:.4f}", f"{gy.recall:.4f}", f"{c:.4f}",
                         f"{row['cknna_error']:.2e}", f"{row['mutual_knn_error']:.2e}"))
        sys.stdout.flush()

    summary = {
        "n": n, "d": d, "k": k, "threads": threads, "seed": args.seed,
        "exact": {"time_x_s": t_ex, "time_y_s": t_ey, "cknna": cknna_exact,
                  "mutual_knn": mknn_exact, "recall_check_s": t_rc},
        "faiss_flat": None if t_flat is None else {"time_x_s": t_flat},
        "approximate": results,
    }
    if args.json:
        with open(args.json, "w") as f:
            json.dump(summary, f, indent=1)
    if args.png and results:
        plot(summary, args.png)
    return 1 if failed else 0


def plot(summary: dict, path: str) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("(matplotlib not installed: no plot; pip install matplotlib)")
        return
    markers = {"ivf": "o", "hnsw": "s", "ivfpq": "^"}
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4.2))
    for method in ("ivf", "hnsw", "ivfpq"):
        rows = [r for r in summary["approximate"] if r["method"] == method]
        if not rows:
            continue
        recall = [0.5 * (r["recall_x_all"] + r["recall_y_all"]) for r in rows]
        err = [max(r["cknna_error"], 1e-6) for r in rows]
        ax1.scatter(recall, err, marker=markers[method], s=50, label=method)
        ax2.scatter(recall, [r["time_x_s"] for r in rows], marker=markers[method], s=50,
                    label=method)
        for x, y, r in zip(recall, err, rows):
            ax1.annotate(r["parameters"].replace(" (default)", "*"), (x, y), fontsize=6,
                         xytext=(3, 3), textcoords="offset points")
    ax1.set_xlabel("recall (all rows, mean of X and Y graphs)")
    ax1.set_ylabel("|CKNNA(approx) − CKNNA(exact)|")
    ax1.set_yscale("log")
    ax1.set_title(f"CKNNA error vs recall (N={summary['n']}, D={summary['d']}, "
                  f"k={summary['k']})", fontsize=10)
    ax1.grid(True, which="both", alpha=0.3)
    ax1.legend(fontsize=8)
    ax2.axhline(summary["exact"]["time_x_s"], color="k", ls="--", lw=1,
                label="exact matalign")
    if summary["faiss_flat"]:
        ax2.axhline(summary["faiss_flat"]["time_x_s"], color="grey", ls=":", lw=1,
                    label="faiss IndexFlatIP")
    ax2.set_xlabel("recall (all rows, mean of X and Y graphs)")
    ax2.set_ylabel("seconds per graph (build + search + recall check)")
    ax2.set_yscale("log")
    ax2.set_title(f"time vs recall ({summary['threads']} threads)", fontsize=10)
    ax2.grid(True, which="both", alpha=0.3)
    ax2.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=130)
    print(f"plot written to {path}")


if __name__ == "__main__":
    sys.exit(main())
