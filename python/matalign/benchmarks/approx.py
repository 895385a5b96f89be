"""Approximate kNN (FAISS IVF-Flat, HNSW, IVF-PQ through ``ma.knn``): recall and CKNNA error
against time, beside exact matalign and faiss ``IndexFlatIP`` (docs/ARCHITECTURE.md).

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

    matalign bench approx --quick            # N = 20 000 (about 2 min on 2 cores)
    matalign bench approx                    # N = 100 000 (about 10-15 min)
    matalign bench approx --n 1000000 --no-exact --defaults-only --x-only
                                                    # N = 1M, X graphs only, no exact graphs
                                                    # (~25 min each on 2 cores); ~30 min
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

DEFAULT_PNG = "approx_error_vs_recall.png"  # in the working directory
FLAT_RECALL_MIN = 0.999

# (method, options) per setting; None values take matalign's defaults (printed in the table).
SETTINGS = [
    ("ivf", {"nprobe": 1}),
    ("ivf", {"nprobe": 4}),
    ("ivf", {}),
    ("hnsw", {"M": 8, "ef_search": 16}),
    ("hnsw", {"M": 16, "ef_search": 32}),
    ("hnsw", {}),
    ("ivfpq", {"pq_m": 16, "nprobe": 8}),
    ("ivfpq", {"nprobe": 8}),
    ("ivfpq", {}),
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
        from . import _common as C

        lines += C.header_lines(("faiss",))
    except Exception as exc:  # the shared helper is optional for this script
        lines.append(f"(benchmark header unavailable: {exc})")
    try:
        import faiss

        lines.append(f"faiss {faiss.__version__} (GPUs visible to faiss: "
                     f"{faiss.get_num_gpus() if hasattr(faiss, 'get_num_gpus') else 0})")
    except ImportError:
        lines.append("faiss not installed: pip install faiss-cpu")
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
    parser.add_argument("--no-exact", action="store_true",
                        help="skip the exact graphs (for N = 1M on 2 cores): no all-rows recall "
                             "and no CKNNA error, exact time estimated from the recall check")
    parser.add_argument("--defaults-only", action="store_true",
                        help="only the default setting of each method")
    parser.add_argument("--x-only", action="store_true",
                        help="with --no-exact: build only the X graphs (no Y graph, no CKNNA)")
    parser.add_argument("--png", default=DEFAULT_PNG, help="plot path ('' to skip)")
    parser.add_argument("--json", default="", help="write the results to this JSON file")
    parser.add_argument("--plot-only", default="",
                        help="redraw the plot from a --json file and exit")
    args = parser.parse_args(argv)
    if args.plot_only:
        with open(args.plot_only) as f:
            plot(json.load(f), args.png)
        return 0
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

    rows = np.sort(np.random.default_rng(0).choice(n, size=min(1000, n), replace=False))
    _, t_rc = timed(lambda: ma.knn(X, k=k + 1, metric="ip", queries=X[rows],
                                   n_threads=threads, rescore=True))
    print(f"recall check alone (exact search of 1000 rows, included in every approximate "
          f"time): {t_rc:.2f} s")
    exact = not args.no_exact
    if args.x_only and exact:
        parser.error("--x-only needs --no-exact (the errors need both exact graphs)")
    if exact:
        (ex, t_ex) = timed(lambda: ma.knn(X, k=k, metric="ip", n_threads=threads))
        (ey, t_ey) = timed(lambda: ma.knn(Y, k=k, metric="ip", n_threads=threads))
        cknna_exact = ma.cknna(ex, ey, k=k, n_threads=threads)
        mknn_exact = ma.mutual_knn(ex, ey, k=k, n_threads=threads)
        print(f"exact matalign: X graph {t_ex:.2f} s, Y graph {t_ey:.2f} s; CKNNA = "
              f"{cknna_exact:.5f}, mutual_knn = {mknn_exact:.5f}")
    else:
        ex = ey = cknna_exact = mknn_exact = t_ey = None
        # The self graph does half the pairs' work (symmetric tiles): N/1000 · t_rc / 2.
        t_ex = t_rc * n / len(rows) / 2
        print(f"exact matalign: not run (--no-exact); estimated X graph time "
              f"{t_ex:.0f} s = recall-check time x N/1000 / 2")

    t_flat = None
    if not args.no_flat and exact:
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
    print(fmt.format("exact", "matalign (tile loop)" + ("" if exact else " ESTIMATED"),
                     f"{t_ex:.2f}", "1.00", "-" if t_flat is None else f"{t_flat / t_ex:.2f}",
                     "1", "1", "1", "-" if not exact else f"{cknna_exact:.4f}", "0", "0"))
    if t_flat is not None:
        print(fmt.format("flat", "faiss IndexFlatIP", f"{t_flat:.2f}", f"{t_ex / t_flat:.2f}",
                         "1.00", "-", "≥0.999", "-", "-", "-", "-"))
    for method, options in SETTINGS:
        if method not in methods or (args.defaults_only and options):
            continue
        label = describe_params(method, options, n, d, k)
        (gx, t_x) = timed(lambda: ma.knn(X, k=k, metric="ip", method=method,
                                         n_threads=threads, **options))
        if args.x_only:
            gy, t_y = None, None
        else:
            (gy, t_y) = timed(lambda: ma.knn(Y, k=k, metric="ip", method=method,
                                             n_threads=threads, **options))
        rx_all = full_recall(gx.indices, ex.indices) if exact else None
        ry_all = full_recall(gy.indices, ey.indices) if exact else None
        for g, r_all in ((gx, rx_all), (gy, ry_all)):
            if r_all is None:
                continue
            se = math.sqrt(max(r_all * (1 - r_all), 1e-12) / min(1000, n))  # rows as trials
            if abs(g.recall - r_all) > 4 * se + 0.005:
                print(f"FAILED: {method} {label}: sampled recall {g.recall:.4f} is not within "
                      f"4 s.e. of the all-rows recall {r_all:.4f}")
                failed = True
        c = mk = None
        if gy is not None:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UserWarning)  # "from an approximate graph"
                c = ma.cknna(gx, gy, k=k, n_threads=threads)
                mk = ma.mutual_knn(gx, gy, k=k, n_threads=threads)
        row = {
            "method": method, "options": options, "parameters": label,
            "time_x_s": t_x, "time_y_s": t_y,
            "recall_x_sampled": gx.recall, "recall_x_all": rx_all,
            "recall_y_sampled": None if gy is None else gy.recall, "recall_y_all": ry_all,
            "cknna": c, "cknna_error": None if not exact else abs(c - cknna_exact),
            "mutual_knn": mk, "mutual_knn_error": None if not exact else abs(mk - mknn_exact),
        }
        results.append(row)

        def num(v, spec):
            return "-" if v is None else format(v, spec)

        print(fmt.format(method, label, f"{t_x:.2f}", f"{t_ex / t_x:.2f}",
                         "-" if t_flat is None else f"{t_flat / t_x:.2f}",
                         f"{gx.recall:.4f}", num(rx_all, ".4f"),
                         num(row["recall_y_sampled"], ".4f"), num(c, ".4f"),
                         num(row["cknna_error"], ".2e"), num(row["mutual_knn_error"], ".2e")))
        sys.stdout.flush()

    summary = {
        "n": n, "d": d, "k": k, "threads": threads, "seed": args.seed,
        "exact": {"time_x_s": t_ex, "time_y_s": t_ey, "cknna": cknna_exact,
                  "mutual_knn": mknn_exact, "recall_check_s": t_rc, "estimated": not exact},
        "faiss_flat": None if t_flat is None else {"time_x_s": t_flat},
        "approximate": results,
    }
    if args.json:
        with open(args.json, "w") as f:
            json.dump(summary, f, indent=1)
    if args.png and results and exact:
        plot(summary, args.png)
    return 1 if failed else 0


def short_label(row: dict) -> str:
    """e.g. "np4" (ivf), "M16/ef32" (hnsw), "pq32/np8" (ivfpq); * marks the defaults."""
    p = {k: v for k, v in (t.split("=") for t in row["parameters"].split() if "=" in t)}
    if row["method"] == "hnsw":
        text = f"M{p['M']}/ef{p['ef_search']}"
    elif row["method"] == "ivf":
        text = f"np{p['nprobe']}"
    else:
        text = f"pq{p['pq_m']}/np{p['nprobe']}"
    return text + ("*" if not row["options"] else "")


def plot(summary: dict, path: str) -> None:
    """Left: |ΔCKNNA| against 1 − recall (log-log); right: seconds per graph against recall."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("(matplotlib not installed: no plot; pip install matplotlib)")
        return
    floor = 1e-5
    markers = {"ivf": "o", "hnsw": "s", "ivfpq": "^"}
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4.4))
    for method in ("ivf", "hnsw", "ivfpq"):
        rows = [r for r in summary["approximate"] if r["method"] == method]
        if not rows:
            continue
        recall = [0.5 * (r["recall_x_all"] + r["recall_y_all"]) for r in rows]
        miss = [max(1.0 - x, floor) for x in recall]
        err = [max(r["cknna_error"], floor * 0.1) for r in rows]
        ax1.scatter(miss, err, marker=markers[method], s=50, label=method)
        ax2.scatter(recall, [r["time_x_s"] for r in rows], marker=markers[method], s=50,
                    label=method)
        for x, y, r in zip(miss, err, rows):
            ax1.annotate(short_label(r), (x, y), fontsize=7, xytext=(4, -3),
                         textcoords="offset points")
        for x, t, r in zip(recall, [r["time_x_s"] for r in rows], rows):
            ax2.annotate(short_label(r), (x, t), fontsize=7, xytext=(4, -3),
                         textcoords="offset points")
    guide = np.logspace(-5, 0, 20)
    ax1.plot(guide, summary["exact"]["cknna"] * guide, "k:", lw=1,
             label="CKNNA·(1 − recall)")
    ax1.set_xscale("log")
    ax1.set_yscale("log")
    ax1.set_xlabel(f"1 − recall (all rows, mean of X and Y graphs; floor {floor:g})")
    ax1.set_ylabel("|CKNNA(approx) − CKNNA(exact)|")
    ax1.set_title(f"CKNNA error vs recall (N={summary['n']}, D={summary['d']}, "
                  f"k={summary['k']}; CKNNA={summary['exact']['cknna']:.3f})", fontsize=9)
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
    ax2.set_title(f"time vs recall ({summary['threads']} threads; * = defaults)", fontsize=9)
    ax2.grid(True, which="both", alpha=0.3)
    ax2.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=130)
    print(f"plot written to {path}")


if __name__ == "__main__":
    sys.exit(main())
