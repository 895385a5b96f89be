"""Distance correlation and RBF CKA: matalign against dcor's fastest multivariate path (targets: bench/README.md).

**Which dcor path is timed.** Stock dcor 0.7 with array-api-compat >= 1.x cannot take its
``scipy.spatial.distance`` path: ``dcor._utils._can_be_numpy_double`` compares the array
namespace with ``numpy``, array-api-compat returns ``array_api_compat.numpy``, the test fails
for every NumPy array, and dcor falls back to an N×N×D broadcast difference (8·N²·D bytes:
47.7 GiB at N = 5000, D = 256; the anchor measurements, bench/README.md). The dcor side here therefore replaces
``dcor.distances._can_be_numpy_double`` (the name ``dcor.distances`` imported) with a dtype-only
test (a float NumPy array of itemsize <= 8, or a signed-integer one), as the anchor measurements, bench/README.md did,
and guards ``dcor.distances._cdist_naive`` so that the run fails if the broadcast path is
taken anyway. With the patch dcor builds two dense N×N float64 distance matrices with scipy
(pdist + squareform) and computes the double-centred mean products: its fastest path for
multivariate data (the O(N log N) algorithms apply only to 1-D x and y). The worker checks
and reports whether the stock test fails on the data, and every row says "dcor (patched
namespace check, scipy pdist)".

* ``dcor``     biased: ``ma.distance_correlation(X, Y)`` vs ``dcor.distance_correlation``
               (dCor, not squared).
* ``dcor_u``   bias-corrected: ``ma.distance_correlation(X, Y, unbiased=True)`` vs
               ``dcor.u_distance_correlation_sqr`` (dCor², can be negative).
* ``rbf_cka``  biased RBF CKA, ``ma.cka(X, Y, kernel="rbf")`` (σ = median rule) vs a dense NumPy
               RBF-HSIC written here: squared distances by the GEMM identity, K = exp(−d²/2σ²)
               with the same σ (``matalign.metrics.median_distance(·, seed=0)``, which is the
               median rule ``cka`` applies), centred by row/column means (HKH without H), and
               Σ K̃∘L̃ / √(Σ K̃∘K̃ · Σ L̃∘L̃). dcor has no RBF CKA; above ``--rbf-ref-max-n`` only
               matalign runs (time and memory, no ratio).

Data (the anchor measurements, bench/README.md): X ~ N(0, I), Y = tanh(XW) + 0.5·noise, W ~ N(0, 1/D), N×D float64 (dcor
computes in float64; matalign gets the same float64 arrays). Agreement first: relative
|Δ|/|anchor| <= ``--tol`` (1e-9); a row that fails prints **FAIL** and no ratio, and the script
exits 1. Each side runs in its own process (``_common.run_side``); matalign gets a full-size
warm-up and ``--repeat`` timed calls; dcor and the dense reference get a warm-up at N = 500
(a full-size one would double runs of minutes) and ``--ref-repeat`` timed calls.

Target: time ratio >= 30× at N = 20k; matalign's peak added memory O(N).

Examples::

    matalign bench dcor                 # N = 10k and 20k (dcor: ~25 s and ~100 s a call)
    matalign bench dcor --quick         # N = 3000, one timed call per side
"""

from __future__ import annotations

import argparse
import json
import math
import sys

import numpy as np

from . import _common as C

SCRIPT = "matalign.benchmarks.dcor"  # workers run as python -m SCRIPT
ANCHOR_PATH = "dcor (patched namespace check, scipy pdist)"

# Peak added memory per N², bytes, with margin: patched dcor measured 6.5 GB at N = 20k
# (two N×N float64 distance matrices plus centring temporaries); the dense RBF reference holds
# about four N×N float64 arrays. Used only to skip a side that cannot fit.
REF_BYTES_PER_N2 = {"dcor": 24.0, "dcor_u": 24.0, "rbf_cka": 48.0}
METRICS = ("dcor", "dcor_u", "rbf_cka")
LABEL = {"dcor": "dCor (biased)", "dcor_u": "dCor² (bias-corrected)",
         "rbf_cka": "RBF CKA (biased, σ median)"}


# ----------------------------------------------------------------------------- anchors


def patch_dcor():
    """Route dcor 0.7 to its scipy distance path; returns (dcor, whether the stock check failed
    on a float64 array, i.e. whether stock dcor would have taken the N×N×D path)."""
    import dcor
    import dcor.distances as dd

    probe = np.zeros((4, 2))
    stock_fails = not dd._can_be_numpy_double(probe)

    def can_be_numpy_double(x) -> bool:
        if not isinstance(x, np.ndarray):
            return False
        return (np.issubdtype(x.dtype, np.floating) and x.dtype.itemsize <= 8) or (
            np.issubdtype(x.dtype, np.signedinteger) and np.can_cast(x, float))

    def no_naive(*args, **kwargs):
        raise RuntimeError("dcor took its N×N×D broadcast path (_cdist_naive) despite the patch")

    dd._can_be_numpy_double = can_be_numpy_double
    dd._cdist_naive = no_naive
    return dcor, stock_fails


def ref_rbf_cka(x: np.ndarray, y: np.ndarray, sx: float, sy: float) -> float:
    """Biased RBF CKA from dense N×N float64 kernels (the straightforward NumPy code)."""

    def centred_kernel(a: np.ndarray, sigma: float) -> np.ndarray:
        sq = np.einsum("ij,ij->i", a, a)
        k = a @ a.T
        k *= -2.0
        k += sq[:, None]
        k += sq[None, :]
        np.maximum(k, 0.0, out=k)
        k *= -1.0 / (2.0 * sigma * sigma)
        np.exp(k, out=k)
        row = k.mean(axis=1)
        k -= row[:, None]
        k -= row[None, :]          # K is symmetric: column means = row means
        k += row.mean()
        return k

    kc = centred_kernel(x, sx)
    lc = centred_kernel(y, sy)
    hkl = float(np.vdot(kc, lc))
    hkk = float(np.vdot(kc, kc))
    hll = float(np.vdot(lc, lc))
    return hkl / math.sqrt(hkk * hll)


# ----------------------------------------------------------------------------- sides


def side_matalign(p: dict) -> dict:
    import matalign as ma

    x, y = np.load(p["x"]), np.load(p["y"])
    t = p["threads"]
    metric = p["metric"]
    if metric == "dcor":
        fn = lambda: float(ma.distance_correlation(x, y, n_threads=t))  # noqa: E731
    elif metric == "dcor_u":
        fn = lambda: float(ma.distance_correlation(x, y, unbiased=True, n_threads=t))  # noqa: E731
    else:
        fn = lambda: float(ma.cka(x, y, kernel="rbf", n_threads=t))  # noqa: E731
    m = C.measure(fn, repeat=p["repeat"])
    return {"times": m.times, "peak_added": m.peak_added, "value": m.result}


def side_anchor(p: dict) -> dict:
    x, y = np.load(p["x"]), np.load(p["y"])
    small = min(500, x.shape[0])
    metric = p["metric"]
    extra = {}
    if metric in ("dcor", "dcor_u"):
        dcor, stock_fails = patch_dcor()
        f = dcor.distance_correlation if metric == "dcor" else dcor.u_distance_correlation_sqr
        fn = lambda a, b: float(f(a, b))  # noqa: E731
        extra["stock_check_fails"] = stock_fails
        extra["dcor_version"] = dcor.__version__
    else:
        sx, sy = p["sigma"]
        fn = lambda a, b: ref_rbf_cka(a, b, sx, sy)  # noqa: E731
    m = C.measure(lambda: fn(x, y), repeat=p["repeat"],
                  warmup_fn=lambda: fn(x[:small], y[:small]))
    return {"times": m.times, "peak_added": m.peak_added, "value": m.result, **extra}


SIDES = {"matalign": side_matalign, "anchor": side_anchor}


# ----------------------------------------------------------------------------- driver


def make_data(n: int, d: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, d))
    w = rng.standard_normal((d, d)) / math.sqrt(d)
    y = np.tanh(x @ w) + 0.5 * rng.standard_normal((n, d))
    return np.ascontiguousarray(x), np.ascontiguousarray(y)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, nargs="+", default=None,
                    help="sizes (default 10000 20000; --quick: 3000)")
    ap.add_argument("--d", type=int, default=256, help="dimension of X and Y (default 256)")
    ap.add_argument("--metric", nargs="+", default=list(METRICS), choices=METRICS)
    ap.add_argument("--tol", type=float, default=1e-9,
                    help="max relative |Δ| for agreement (default 1e-9)")
    ap.add_argument("--repeat", type=int, default=None,
                    help="matalign timed repeats (default 3; --quick 1)")
    ap.add_argument("--ref-repeat", type=int, default=1,
                    help="dcor / dense-reference timed repeats (default 1)")
    ap.add_argument("--rbf-ref-max-n", type=int, default=10000,
                    help="largest N at which the dense RBF reference runs (default 10000)")
    ap.add_argument("--force", action="store_true",
                    help="run an anchor even where it probably does not fit in memory")
    ap.add_argument("--quick", action="store_true", help="N = 3000 and one timed call per side")
    C.add_common_args(ap)
    args = ap.parse_args(argv)
    if args._worker:
        C.worker_main(args._worker, SIDES)
        return 0

    sizes = args.n or ([3000] if args.quick else [10000, 20000])
    repeat = args.repeat or (1 if args.quick else 3)
    threads = C.resolve_threads(args.threads)
    header = C.header_lines(("scipy", "dcor", "array-api-compat"))
    print("\n".join("# " + line for line in header))
    print(f"# {C.command_line()}  (threads {threads}; matalign best of {repeat} after a "
          f"full-size warm-up; anchors best of {args.ref_repeat} after an N = 500 warm-up; "
          f"seed {args.seed}; float64, D = {args.d})")
    print(f"# dcor path timed: {ANCHOR_PATH}: dcor.distances._can_be_numpy_double replaced by a "
          f"dtype-only test so that dcor uses scipy pdist (two dense N×N float64 matrices); "
          f"_cdist_naive (N×N×D broadcast) guarded to fail if taken. RBF CKA anchor: dense "
          f"NumPy N×N float64 kernels, N <= {args.rbf_ref_max_n}.")

    table = C.Table(["metric", "N", "D", "matalign s", "anchor s", "anchor", "time ratio",
                     "matalign mem", "anchor mem", "mem ratio", "matalign value", "anchor value",
                     "agreement"])
    table.print_header()
    results, failures, notes = [], 0, set()
    with C.Workspace() as ws:
        for n in sizes:
            x, y = make_data(n, args.d, args.seed)
            sigma = None
            if "rbf_cka" in args.metric:
                from matalign.metrics import median_distance

                sigma = (median_distance(x, seed=0), median_distance(y, seed=0))
            base = {"x": ws.save(f"x{n}", x), "y": ws.save(f"y{n}", y), "threads": threads,
                    "sigma": sigma}
            del x, y
            for metric in args.metric:
                p = {**base, "metric": metric}
                mine = C.run_side(SCRIPT, {**p, "side": "matalign", "repeat": repeat,
                                           "out": ws.out("matalign")},
                                  unset_openblas=args.unset_openblas_env, timeout=args.timeout)
                anchor_name = ANCHOR_PATH if metric != "rbf_cka" else "dense NumPy N×N"
                need = REF_BYTES_PER_N2[metric] * n * n
                avail = C.mem_available_bytes()
                if metric == "rbf_cka" and n > args.rbf_ref_max_n:
                    ref = {"skipped": f"no dense reference above N = {args.rbf_ref_max_n}"}
                elif avail is not None and need > 0.9 * avail and not args.force:
                    ref = {"error": f"anchor skipped: needs ~{C.fmt_bytes(need)}, "
                           f"{C.fmt_bytes(avail)} available (--force to try)"}
                else:
                    ref = C.run_side(SCRIPT, {**p, "side": "anchor", "repeat": args.ref_repeat,
                                              "out": ws.out("anchor")},
                                     unset_openblas=args.unset_openblas_env,
                                     timeout=args.timeout)
                if ref.get("stock_check_fails"):
                    notes.add(f"stock dcor {ref.get('dcor_version')}: _can_be_numpy_double "
                              f"rejects float64 NumPy arrays here, so unpatched dcor would "
                              f"take the N×N×D path ({C.fmt_bytes(8.0 * n * n * args.d)} "
                              f"at N = {n})")
                tm = min(mine["times"]) if "times" in mine else None
                tr = min(ref["times"]) if "times" in ref else None
                mm, mr = mine.get("peak_added"), ref.get("peak_added")
                vm, vr = mine.get("value"), ref.get("value")
                errors = [r["error"] for r in (mine, ref) if "error" in r]
                only_ours = "skipped" in ref and not errors
                rel = None
                if errors:
                    ok, why = False, " | ".join(errors).replace("\n", " ⏎ ")
                elif only_ours:
                    ok = vm is not None and math.isfinite(vm)
                    why = ref["skipped"] if ok else f"non-finite value {vm}"
                elif not (math.isfinite(vm) and math.isfinite(vr)):
                    ok, why = False, f"non-finite value ({vm}, {vr})"
                else:
                    rel = abs(vm - vr) / max(abs(vr), 1e-300)
                    ok, why = rel <= args.tol, f"relative |Δ| {rel:.2g} > tol {args.tol:g}"
                row = {"metric": metric, "N": n, "D": args.d, "threads": threads,
                       "anchor": anchor_name if not only_ours else None,
                       "matalign_s": tm, "anchor_s": tr,
                       "matalign_times": mine.get("times"), "anchor_times": ref.get("times"),
                       "time_ratio": tr / tm if (ok and tm and tr) else None,
                       "matalign_peak_added": mm, "anchor_peak_added": mr,
                       "mem_ratio": (mm / mr) if (ok and mm is not None and mr) else None,
                       "matalign_value": vm, "anchor_value": vr, "relative_delta": rel,
                       "ok": ok, "why": None if ok and not only_ours else why}
                results.append(row)
                fv = lambda v: f"{v:.10f}" if v is not None else "—"  # noqa: E731
                if ok and only_ours:
                    agree, ratio, mratio = f"n/a: {why}", "—", "—"
                    anchor_name = "—"
                elif ok:
                    agree = f"ok: rel |Δ| {rel:.2g}"
                    ratio = f"{row['time_ratio']:.1f}×"
                    mratio = (f"1/{1 / row['mem_ratio']:.0f}" if row["mem_ratio"]
                              else "—")
                else:
                    failures += 1
                    agree, ratio, mratio = f"**FAIL**: {why}", "—", "—"
                table.add([LABEL[metric], str(n), str(args.d), C.fmt_s(tm), C.fmt_s(tr),
                           anchor_name, ratio, C.fmt_bytes(mm), C.fmt_bytes(mr), mratio,
                           fv(vm), fv(vr), agree])
    print("# memory: peak RSS added during the call, each side in its own process; "
          "mem ratio = matalign / anchor.")
    for note in sorted(notes):
        print("# " + note)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"header": header, "command": C.command_line(), "anchor_path": ANCHOR_PATH,
                       "results": results}, f, indent=1, default=str)
    if failures:
        print(f"# {failures} case(s) FAILED", file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
