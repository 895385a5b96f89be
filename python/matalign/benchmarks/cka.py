"""Linear CKA: matalign against the dense reference algorithm, and N = 1M alone (targets: bench/README.md).

The anchor is the algorithm of platonic-rep's ``cka(A, B, kernel_metric="ip")`` (Huh et al.
2024), written here from its description in ``bench/README.md`` §1.2 and run with
torch on the CPU: K = AAᵀ, L = BBᵀ, biased HSIC(K, L) = tr(K·H·L·H) with a dense centring
matrix H = I − 11ᵀ/N (three N×N×N products per HSIC, nine in all), and
CKA = HSIC(K, L) / (√(HSIC(K, K)·HSIC(L, L)) + 1e-6). It runs in float64 by default
(``--ref-dtype``): agreement to 1e-8 needs it, a float32 N³ product is good to ~1e-6 only
(platonic-rep itself runs float32; the anchor measurements, bench/README.md timed that: 10.7 s at N = 5k, 85.8 s at 10k).
matalign computes ``ma.cka(X, Y)`` (linear, biased) in feature space from the float32 arrays,
accumulating in float64; the reference widens the same float32 values to float64 exactly.

Data (the anchor measurements, bench/README.md): X ~ N(0, I), Y = tanh(XW) + 0.5·noise, W ~ N(0, 1/D), N×D float32 with
L2-normalised rows (the reference pipeline normalises rows). Agreement first: |Δ| <= ``--tol``
(1e-8; 1e-5 with ``--ref-dtype float32``); a failing row prints **FAIL** and no ratio, and the
script exits 1. Each side runs in its own process; matalign gets a full-size warm-up and
``--repeat`` timed calls, the reference an N = 512 warm-up and ``--ref-repeat`` timed calls.

``--big`` adds matalign alone at N = 1,000,000, D = 256, float32 (no reference can run there:
its K alone would be 8 TB): biased and unbiased linear CKA, time and peak added memory. The
worker generates the data itself, seeded, in chunks of 65,536 rows (same generator as above;
generation is not timed).

Targets: time ratio >= 100× at N = 10k; N = 1M, D = 256 in <= 5 s on 2 cores.

Examples::

    matalign bench cka                  # N = 5k and 10k against the reference (~5 min)
    matalign bench cka --n 10000 --big  # 10k, then N = 1M alone
    matalign bench cka --quick          # N = 2000, one timed call per side
"""

from __future__ import annotations

import argparse
import json
import math
import sys

import numpy as np

from . import _common as C

SCRIPT = "matalign.benchmarks.cka"  # workers run as python -m SCRIPT
# Peak added memory of the float64 reference per N², bytes, with margin: K, L, H and the
# products K·H, (K·H)·L, ((K·H)·L)·H alive at once (~6–7 N² float64).
REF_BYTES_PER_N2 = {"float64": 64.0, "float32": 32.0}
DEFAULT_TOL = {"float64": 1e-8, "float32": 1e-5}
BIG_CHUNK = 65536


# ----------------------------------------------------------------------------- reference


def ref_hsic_biased(K, L):
    """Biased HSIC as the reference computes it: tr(K·H·L·H), dense H, no 1/(N−1)²."""
    import torch

    n = K.shape[0]
    H = torch.eye(n, dtype=K.dtype) - torch.ones(n, n, dtype=K.dtype) / n
    return torch.trace(K @ H @ L @ H)


def ref_cka(A, B) -> float:
    """Reference linear CKA (kernel_metric='ip', unbiased=False)."""
    import torch

    K = torch.mm(A, A.T)
    L = torch.mm(B, B.T)
    hsic_kk = ref_hsic_biased(K, K)
    hsic_ll = ref_hsic_biased(L, L)
    hsic_kl = ref_hsic_biased(K, L)
    return (hsic_kl / (torch.sqrt(hsic_kk * hsic_ll) + 1e-6)).item()


# ----------------------------------------------------------------------------- data


def normalise_rows(a: np.ndarray) -> np.ndarray:
    a /= np.linalg.norm(a, axis=1, keepdims=True)
    return a


def make_data(n: int, d: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, d), dtype=np.float32)
    w = rng.standard_normal((d, d), dtype=np.float32) / np.float32(math.sqrt(d))
    y = np.tanh(x @ w) + np.float32(0.5) * rng.standard_normal((n, d), dtype=np.float32)
    return (np.ascontiguousarray(normalise_rows(x), np.float32),
            np.ascontiguousarray(normalise_rows(y), np.float32))


def make_big(n: int, d: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """The same generator in chunks of BIG_CHUNK rows (a chunk-wise seeded stream: the values
    differ from make_data's, the distribution does not)."""
    rng = np.random.default_rng(seed)
    w = rng.standard_normal((d, d), dtype=np.float32) / np.float32(math.sqrt(d))
    x = np.empty((n, d), dtype=np.float32)
    y = np.empty((n, d), dtype=np.float32)
    for s in range(0, n, BIG_CHUNK):
        e = min(n, s + BIG_CHUNK)
        xb = rng.standard_normal((e - s, d), dtype=np.float32)
        yb = np.tanh(xb @ w) + np.float32(0.5) * rng.standard_normal((e - s, d),
                                                                     dtype=np.float32)
        x[s:e] = normalise_rows(xb)
        y[s:e] = normalise_rows(yb)
    return x, y


# ----------------------------------------------------------------------------- sides


def side_matalign(p: dict) -> dict:
    import matalign as ma

    if p.get("big"):
        x, y = make_big(p["n"], p["d"], p["seed"])
    else:
        x, y = np.load(p["x"]), np.load(p["y"])
    unbiased = p.get("unbiased", False)
    t = p["threads"]
    m = C.measure(lambda: float(ma.cka(x, y, unbiased=unbiased, n_threads=t)),
                  repeat=p["repeat"])
    return {"times": m.times, "peak_added": m.peak_added, "value": m.result,
            "input_bytes": int(x.nbytes + y.nbytes)}


def side_reference(p: dict) -> dict:
    import torch

    torch.set_num_threads(p["threads"])
    dtype = torch.float64 if p["ref_dtype"] == "float64" else torch.float32
    a = torch.from_numpy(np.load(p["x"])).to(dtype)
    b = torch.from_numpy(np.load(p["y"])).to(dtype)
    small = min(512, a.shape[0])
    m = C.measure(lambda: ref_cka(a, b), repeat=p["repeat"],
                  warmup_fn=lambda: ref_cka(a[:small], b[:small]))
    return {"times": m.times, "peak_added": m.peak_added, "value": m.result}


SIDES = {"matalign": side_matalign, "reference": side_reference}


# ----------------------------------------------------------------------------- driver


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, nargs="*", default=None,
                    help="sizes against the reference (default 5000 10000; --quick 2000; "
                    "give --n with no value to run only --big)")
    ap.add_argument("--d", type=int, default=256, help="dimension of X and Y (default 256)")
    ap.add_argument("--ref-dtype", choices=("float64", "float32"), default="float64",
                    help="dtype of the reference's torch tensors (default float64)")
    ap.add_argument("--tol", type=float, default=None,
                    help="max |Δ| for agreement (default 1e-8; 1e-5 with --ref-dtype float32)")
    ap.add_argument("--repeat", type=int, default=None,
                    help="matalign timed repeats (default 5; --quick 1)")
    ap.add_argument("--ref-repeat", type=int, default=1, help="reference timed repeats (default 1)")
    ap.add_argument("--big", action="store_true",
                    help="also run matalign alone at N = --big-n (default 1,000,000), D = --d")
    ap.add_argument("--big-n", type=int, default=1_000_000, help="N of --big (default 1e6)")
    ap.add_argument("--force", action="store_true",
                    help="run the reference even where it probably does not fit in memory")
    ap.add_argument("--quick", action="store_true", help="N = 2000 and one timed call per side")
    C.add_common_args(ap)
    args = ap.parse_args(argv)
    if args._worker:
        C.worker_main(args._worker, SIDES)
        return 0

    sizes = args.n if args.n is not None else ([2000] if args.quick else [5000, 10000])
    repeat = args.repeat or (1 if args.quick else 5)
    tol = args.tol if args.tol is not None else DEFAULT_TOL[args.ref_dtype]
    threads = C.resolve_threads(args.threads)
    header = C.header_lines(("torch",))
    print("\n".join("# " + line for line in header))
    print(f"# {C.command_line()}  (threads {threads}; matalign best of {repeat} after a "
          f"full-size warm-up; reference best of {args.ref_repeat} after an N = 512 warm-up; "
          f"seed {args.seed}; float32 inputs, L2-normalised rows, D = {args.d})")
    print(f"# reference: platonic-rep cka(kernel_metric='ip') algorithm, torch CPU "
          f"{args.ref_dtype}: tr(K·H·L·H) with dense H, + 1e-6 in the denominator")

    table = C.Table(["N", "D", "matalign s", f"reference ({args.ref_dtype}) s", "time ratio",
                     "matalign mem", "reference mem", "mem ratio", "matalign value",
                     "reference value", "agreement"])
    results, failures = [], 0
    with C.Workspace() as ws:
        if sizes:
            table.print_header()
        for n in sizes:
            x, y = make_data(n, args.d, args.seed)
            base = {"x": ws.save(f"x{n}", x), "y": ws.save(f"y{n}", y), "threads": threads,
                    "ref_dtype": args.ref_dtype}
            del x, y
            mine = C.run_side(SCRIPT, {**base, "side": "matalign", "repeat": repeat,
                                       "out": ws.out("matalign")},
                              unset_openblas=args.unset_openblas_env, timeout=args.timeout)
            need = REF_BYTES_PER_N2[args.ref_dtype] * n * n
            avail = C.mem_available_bytes()
            if avail is not None and need > 0.9 * avail and not args.force:
                ref = {"error": f"reference skipped: needs ~{C.fmt_bytes(need)}, "
                       f"{C.fmt_bytes(avail)} available (--force to try)"}
            else:
                ref = C.run_side(SCRIPT, {**base, "side": "reference", "repeat": args.ref_repeat,
                                          "out": ws.out("reference")},
                                 unset_openblas=args.unset_openblas_env, timeout=args.timeout)
            tm = min(mine["times"]) if "times" in mine else None
            tr = min(ref["times"]) if "times" in ref else None
            mm, mr = mine.get("peak_added"), ref.get("peak_added")
            vm, vr = mine.get("value"), ref.get("value")
            errors = [r["error"] for r in (mine, ref) if "error" in r]
            delta = None
            if errors:
                ok, why = False, " | ".join(errors).replace("\n", " ⏎ ")
            elif not (math.isfinite(vm) and math.isfinite(vr)):
                ok, why = False, f"non-finite value ({vm}, {vr})"
            else:
                delta = abs(vm - vr)
                ok, why = delta <= tol, f"|Δ| {delta:.2g} > tol {tol:g}"
            row = {"N": n, "D": args.d, "threads": threads, "ref_dtype": args.ref_dtype,
                   "matalign_s": tm, "reference_s": tr,
                   "matalign_times": mine.get("times"), "reference_times": ref.get("times"),
                   "time_ratio": tr / tm if (ok and tm and tr) else None,
                   "matalign_peak_added": mm, "reference_peak_added": mr,
                   "mem_ratio": (mm / mr) if (ok and mm is not None and mr) else None,
                   "matalign_value": vm, "reference_value": vr, "delta": delta, "ok": ok,
                   "why": None if ok else why}
            results.append(row)
            if ok:
                agree = f"ok: |Δ| {delta:.2g}"
                ratio = f"{row['time_ratio']:.0f}×"
                mratio = f"1/{1 / row['mem_ratio']:.0f}" if row["mem_ratio"] else "—"
            else:
                failures += 1
                agree, ratio, mratio = f"**FAIL**: {why}", "—", "—"
            fv = lambda v: f"{v:.10f}" if v is not None else "—"  # noqa: E731
            table.add([str(n), str(args.d), C.fmt_s(tm), C.fmt_s(tr), ratio, C.fmt_bytes(mm),
                       C.fmt_bytes(mr), mratio, fv(vm), fv(vr), agree])
        if sizes:
            print("# memory: peak RSS added during the call, each side in its own process; "
                  "mem ratio = matalign / reference.")

        big_rows = []
        if args.big:
            print()
            print(f"# matalign alone, N = {args.big_n}, D = {args.d}, float32 (no reference: "
                  f"K alone would be {C.fmt_bytes(8.0 * args.big_n ** 2)} in float64); "
                  f"best of {repeat} after a full-size warm-up; target <= 5 s on 2 cores")
            big = C.Table(["N", "D", "estimator", "matalign s", "all times s", "input",
                           "peak added mem", "value"])
            big.print_header()
            for unbiased in (False, True):
                r = C.run_side(SCRIPT, {"side": "matalign", "big": True, "n": args.big_n,
                                        "d": args.d, "seed": args.seed, "threads": threads,
                                        "unbiased": unbiased, "repeat": repeat,
                                        "out": ws.out("big")},
                               unset_openblas=args.unset_openblas_env, timeout=args.timeout)
                label = "unbiased" if unbiased else "biased"
                if "error" in r:
                    failures += 1
                    why = r["error"].replace("\n", " ⏎ ")
                    big.add([str(args.big_n), str(args.d), label, "**FAIL**", why, "—", "—",
                             "—"])
                    big_rows.append({"estimator": label, "error": r["error"]})
                    continue
                ok = math.isfinite(r["value"])
                if not ok:
                    failures += 1
                big.add([str(args.big_n), str(args.d), label, C.fmt_s(min(r["times"])),
                         ", ".join(f"{t:.2f}" for t in r["times"]),
                         C.fmt_bytes(r["input_bytes"]), C.fmt_bytes(r["peak_added"]),
                         f"{r['value']:.6f}" if ok else f"**FAIL**: {r['value']}"])
                big_rows.append({"estimator": label, "N": args.big_n, "D": args.d,
                                 "matalign_s": min(r["times"]), "times": r["times"],
                                 "peak_added": r["peak_added"], "input_bytes": r["input_bytes"],
                                 "value": r["value"], "ok": ok})
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"header": header, "command": C.command_line(), "results": results,
                       "big": big_rows}, f, indent=1, default=str)
    if failures:
        print(f"# {failures} case(s) FAILED", file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
