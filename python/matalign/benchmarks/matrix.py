"""The model × model matrix: ``ma.alignment_matrix`` against its parts, 10 models (targets: bench/README.md).

Two comparisons on the same 10 models (one process per side):

1. **CKNNA matrix vs the 10 kNN graphs alone** (N = 100k by default; ``--quick`` 10k). Side
   "matrix" times ``ma.alignment_matrix(spaces, metrics=["cknna"], k=10)``. Side "graphs"
   times ``ma.knn(X_m, k=10)`` for each of the 10 models (the floor: a matrix cannot be built
   without these graphs), then, untimed in the ratio but reported, the 90 ordered pairs
   ``ma.cknna(g_a, g_b, k=10)`` from those graphs. Agreement: every off-diagonal entry (a, b)
   of the matrix equals ``ma.cknna(g_a, g_b)`` to ``--tol`` (CKNNA is not symmetric, as in the
   reference code, so all 90 are checked). Target: matrix time <= 2× the graphs' time.

2. **dCor matrix vs 45 pairwise calls** at ``--dcor-n`` (default 10k, whatever ``--n`` is: 45
   pairwise calls at N = 100k cost ~100× those at 10k (N²): about an hour on 2 cores, and
   the fused pass too would take several minutes of O(N²) work at 100k).
   Side "matrix" times ``ma.alignment_matrix(spaces, metrics=["dcor"])``, side "pairwise" the
   45 calls ``ma.distance_correlation(X_a, X_b)`` for a < b. Agreement: the 45 entries equal
   to ``--tol`` (absolute) and the diagonal is 1.

Data: a shared latent Z ~ N(0, I), N×32, and 10 models X_m = Z·A_m + s_m·E_m, float32, with
A_m ~ N(0, 1/32) of shape 32×D_m, D_m drawn from {64, 96, ..., 256}, E_m ~ N(0, I) and noise
scales s_m spread over [0.25, 1.5], so that the pairs range from strongly to weakly aligned.
Seeded (``--seed``). Each side gets a warm-up on the first 2000 rows (a full-size warm-up
would double runs of minutes) and ``--repeat`` timed calls (default 1 at 100k, 3 at 10k).

Examples::

    matalign bench matrix              # CKNNA at N = 100k (~10 min), dCor at 10k (~3 min)
    matalign bench matrix --quick      # both at N = 10k
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time

import numpy as np

from . import _common as C

SCRIPT = "matalign.benchmarks.matrix"  # workers run as python -m SCRIPT
LATENT = 32
WARMUP_ROWS = 2000


# ----------------------------------------------------------------------------- data


def make_models(n: int, m: int, seed: int) -> tuple[list[str], list[np.ndarray]]:
    rng = np.random.default_rng(seed)
    dims = rng.choice(np.arange(64, 257, 32), size=m)
    noise = np.linspace(0.25, 1.5, m)
    z = rng.standard_normal((n, LATENT), dtype=np.float32)
    names, arrays = [], []
    for i in range(m):
        a = rng.standard_normal((LATENT, int(dims[i])), dtype=np.float32) / np.float32(
            math.sqrt(LATENT))
        x = z @ a + np.float32(noise[i]) * rng.standard_normal((n, int(dims[i])),
                                                               dtype=np.float32)
        names.append(f"m{i}_d{int(dims[i])}")
        arrays.append(np.ascontiguousarray(x, dtype=np.float32))
    return names, arrays


# ----------------------------------------------------------------------------- sides


def _load(p: dict) -> dict:
    return {name: np.load(path) for name, path in zip(p["names"], p["paths"])}


def side_matrix(p: dict) -> dict:
    import matalign as ma

    spaces = _load(p)
    metric, t = p["metric"], p["threads"]
    small = {name: x[:WARMUP_ROWS] for name, x in spaces.items()}
    run = lambda s: ma.alignment_matrix(s, metrics=[metric], k=p["k"], n_threads=t)  # noqa: E731
    m = C.measure(lambda: run(spaces), repeat=p["repeat"], warmup_fn=lambda: run(small))
    return {"times": m.times, "peak_added": m.peak_added,
            "matrix": np.asarray(m.result.metrics[metric], dtype=np.float64)}


def side_graphs(p: dict) -> dict:
    """The 10 kNN graphs alone (timed), then the 90 ordered CKNNA pairs from them."""
    import matalign as ma

    spaces = _load(p)
    names, t, k = p["names"], p["threads"], p["k"]
    small = {name: x[:WARMUP_ROWS] for name, x in spaces.items()}
    run = lambda s: [ma.knn(s[name], k=k, n_threads=t) for name in names]  # noqa: E731
    m = C.measure(lambda: run(spaces), repeat=p["repeat"], warmup_fn=lambda: run(small))
    graphs = m.result
    mat = np.eye(len(names))
    t0 = time.perf_counter()
    for a in range(len(names)):
        for b in range(len(names)):
            if a != b:
                mat[a, b] = ma.cknna(graphs[a], graphs[b], k=k, n_threads=t)
    pairs_s = time.perf_counter() - t0
    return {"times": m.times, "peak_added": m.peak_added, "pairs_s": pairs_s, "matrix": mat}


def side_pairwise_dcor(p: dict) -> dict:
    import matalign as ma

    spaces = _load(p)
    names, t = p["names"], p["threads"]
    arrays = [spaces[n] for n in names]

    def run(arrs):
        mat = np.eye(len(arrs))
        for a in range(len(arrs)):
            for b in range(a + 1, len(arrs)):
                mat[a, b] = mat[b, a] = ma.distance_correlation(arrs[a], arrs[b], n_threads=t)
        return mat

    m = C.measure(lambda: run(arrays), repeat=p["repeat"],
                  warmup_fn=lambda: run([x[:WARMUP_ROWS] for x in arrays]))
    return {"times": m.times, "peak_added": m.peak_added, "matrix": m.result}


SIDES = {"matrix": side_matrix, "graphs": side_graphs, "pairwise_dcor": side_pairwise_dcor}


# ----------------------------------------------------------------------------- driver


def save_models(ws: C.Workspace, n: int, m: int, seed: int) -> tuple[list[str], list[str], list]:
    names, arrays = make_models(n, m, seed)
    paths = [ws.save(f"n{n}_{name}", x) for name, x in zip(names, arrays)]
    dims = [x.shape[1] for x in arrays]
    return names, paths, dims


def compare(mine: dict, ref: dict, tol: float, what: str):
    """(ok, max |Δ| off-diagonal, why)."""
    errors = [r["error"] for r in (mine, ref) if "error" in r]
    if errors:
        return False, None, " | ".join(errors).replace("\n", " ⏎ ")
    a, b = np.asarray(mine["matrix"]), np.asarray(ref["matrix"])
    if a.shape != b.shape:
        return False, None, f"{what}: shapes {a.shape} vs {b.shape}"
    if not (np.all(np.isfinite(a)) and np.all(np.isfinite(b))):
        return False, None, f"{what}: non-finite entries"
    off = ~np.eye(a.shape[0], dtype=bool)
    delta = float(np.max(np.abs(a[off] - b[off])))
    diag = float(np.max(np.abs(np.diag(a) - 1.0)))
    if delta > tol:
        i, j = np.unravel_index(np.argmax(np.where(off, np.abs(a - b), -1.0)), a.shape)
        return False, delta, (f"{what}: max |Δ| {delta:.2g} > tol {tol:g} at ({i}, {j}): "
                              f"{a[i, j]!r} vs {b[i, j]!r}")
    if diag > tol:
        return False, delta, f"{what}: diagonal differs from 1 by {diag:.2g}"
    return True, delta, None


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=None,
                    help="N of the CKNNA comparison (default 100000; --quick 10000)")
    ap.add_argument("--dcor-n", type=int, default=10000,
                    help="N of the dCor comparison (default 10000; 0 skips it)")
    ap.add_argument("--models", type=int, default=10, help="number of models (default 10)")
    ap.add_argument("--k", type=int, default=10, help="neighbours (default 10)")
    ap.add_argument("--part", nargs="+", default=["cknna", "dcor"], choices=["cknna", "dcor"])
    ap.add_argument("--tol", type=float, default=1e-9,
                    help="max |Δ| between matrix entries and pairwise calls (default 1e-9)")
    ap.add_argument("--repeat", type=int, default=None,
                    help="timed repeats per side (default 1 for N >= 50k, else 3)")
    ap.add_argument("--quick", action="store_true", help="N = 10000, one timed call per side")
    C.add_common_args(ap)
    args = ap.parse_args(argv)
    if args._worker:
        C.worker_main(args._worker, SIDES)
        return 0

    n_cknna = args.n or (10000 if args.quick else 100000)
    threads = C.resolve_threads(args.threads)

    def repeats(n: int) -> int:
        return args.repeat or (1 if (args.quick or n >= 50000) else 3)

    header = C.header_lines()
    print("\n".join("# " + line for line in header))
    print(f"# {C.command_line()}  (threads {threads}; warm-up on the first {WARMUP_ROWS} rows, "
          f"then best of the timed calls; seed {args.seed}; {args.models} models, float32, "
          f"shared latent of dimension {LATENT}, k = {args.k})")
    table = C.Table(["comparison", "N", "models (D)", "matrix s", "baseline", "baseline s",
                     "ratio", "matrix mem", "baseline mem", "agreement"])
    table.print_header()
    results, failures = [], 0

    def run(payload: dict) -> dict:
        return C.run_side(SCRIPT, payload, unset_openblas=args.unset_openblas_env,
                          timeout=args.timeout)

    with C.Workspace() as ws:
        if "cknna" in args.part:
            n = n_cknna
            names, paths, dims = save_models(ws, n, args.models, args.seed)
            base = {"names": names, "paths": paths, "threads": threads, "k": args.k,
                    "repeat": repeats(n)}
            mine = run({**base, "side": "matrix", "metric": "cknna", "out": ws.out("matrix")})
            ref = run({**base, "side": "graphs", "out": ws.out("graphs")})
            ok, delta, why = compare(mine, ref, args.tol, "cknna")
            tm = min(mine["times"]) if "times" in mine else None
            tr = min(ref["times"]) if "times" in ref else None
            ratio = tm / tr if (ok and tm and tr) else None
            results.append({"comparison": "cknna matrix / 10 kNN graphs", "N": n, "dims": dims,
                            "matrix_s": tm, "graphs_s": tr, "pairs_from_graphs_s":
                            ref.get("pairs_s"), "ratio_matrix_over_graphs": ratio,
                            "matrix_times": mine.get("times"), "graphs_times": ref.get("times"),
                            "matrix_peak_added": mine.get("peak_added"),
                            "graphs_peak_added": ref.get("peak_added"), "max_delta": delta,
                            "ok": ok, "why": why})
            if not ok:
                failures += 1
            dims_s = f"{args.models} ({min(dims)}–{max(dims)})"
            pairs = ref.get("pairs_s")
            table.add(["CKNNA matrix vs the 10 kNN graphs alone", str(n), dims_s, C.fmt_s(tm),
                       f"{args.models}× ma.knn(k={args.k})" + (
                           f" (+{pairs:.2f} s for the 90 pairwise cknna)" if pairs else ""),
                       C.fmt_s(tr), f"{ratio:.2f}× (target ≤ 2×)" if ok else "—",
                       C.fmt_bytes(mine.get("peak_added")), C.fmt_bytes(ref.get("peak_added")),
                       f"ok: max |Δ| {delta:.2g} over 90 entries" if ok else f"**FAIL**: {why}"])
        if "dcor" in args.part and args.dcor_n > 0:
            n = args.dcor_n
            names, paths, dims = save_models(ws, n, args.models, args.seed)
            base = {"names": names, "paths": paths, "threads": threads, "k": args.k,
                    "repeat": repeats(n)}
            mine = run({**base, "side": "matrix", "metric": "dcor", "out": ws.out("matrix")})
            ref = run({**base, "side": "pairwise_dcor", "out": ws.out("pairwise")})
            ok, delta, why = compare(mine, ref, args.tol, "dcor")
            tm = min(mine["times"]) if "times" in mine else None
            tr = min(ref["times"]) if "times" in ref else None
            ratio = tr / tm if (ok and tm and tr) else None
            npairs = args.models * (args.models - 1) // 2
            results.append({"comparison": "dcor matrix / pairwise calls", "N": n, "dims": dims,
                            "matrix_s": tm, "pairwise_s": tr, "speedup": ratio,
                            "matrix_times": mine.get("times"), "pairwise_times": ref.get("times"),
                            "matrix_peak_added": mine.get("peak_added"),
                            "pairwise_peak_added": ref.get("peak_added"), "max_delta": delta,
                            "ok": ok, "why": why})
            if not ok:
                failures += 1
            table.add(["dCor matrix vs pairwise calls", str(n),
                       f"{args.models} ({min(dims)}–{max(dims)})", C.fmt_s(tm),
                       f"{npairs}× ma.distance_correlation", C.fmt_s(tr),
                       f"{ratio:.1f}× faster" if ok else "—",
                       C.fmt_bytes(mine.get("peak_added")), C.fmt_bytes(ref.get("peak_added")),
                       f"ok: max |Δ| {delta:.2g} over {npairs} pairs" if ok
                       else f"**FAIL**: {why}"])
    print("# memory: peak RSS added during the timed call, each side in its own process. "
          "CKNNA ratio = matrix time / graphs time; dCor: pairwise time / matrix time.")
    if "dcor" in args.part and args.dcor_n > 0 and n_cknna > args.dcor_n:
        print(f"# dCor compared at N = {args.dcor_n} only: 45 pairwise calls at N = {n_cknna} "
              f"would cost ~{(n_cknna / args.dcor_n) ** 2:.0f}× those at N = {args.dcor_n} "
              f"(O(N²) each), too long for this benchmark.")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"header": header, "command": C.command_line(), "results": results},
                      f, indent=1, default=str)
    if failures:
        print(f"# {failures} case(s) FAILED", file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
