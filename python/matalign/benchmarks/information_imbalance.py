"""Exact information imbalance: matalign against DADApy with full ranks (targets: bench/README.md).

The anchor is DADApy 0.3.4's ``MetricComparisons(coordinates=np.hstack([X, Y]), maxk=N−1)
.return_inf_imb_two_selected_coords(cols_X, cols_Y, k)``: sklearn brute-force neighbour lists
of length N in each space (float64), then its Python rank loop. With ``maxk = N − 1`` every
rank is found in the lists, so nothing is replaced by DADApy's random ranks and the value is
the exact imbalance (the anchor measurements, bench/README.md): the two sides must agree to ``--tol`` (1e-9,
absolute, both directions). That anchor holds two N×N float64 distance and int64 index
arrays (~60 bytes per N² measured); the script estimates its memory first and skips it where
it would not fit (N = 20k needs ~25 GB).

DADApy needs numpy < 2, so its side runs in another interpreter (``--dadapy-python``, e.g. a
virtualenv made with ``python3 -m venv /tmp/dadapy-venv && /tmp/dadapy-venv/bin/pip install
"numpy<2" dadapy``) on the same ``.npy`` files, on the same machine; that worker imports only
this script and ``_common.py`` (numpy), never matalign.

Also printed, for the bias they carry (the anchor measurements, bench/README.md), DADApy's default estimators next to
the exact value: ``maxk = 100`` (ranks beyond 100 replaced by uniform random ranks in
[101, N−1]) and ``return_information_imbalace(Y, subset_size=2000)`` (mean over random chunks
of ~2000 rows, i.e. Δ at sample size ~2000, not at N). These are timed once each (no ratio:
they compute a different quantity).

Data (the anchor measurements, bench/README.md): X ~ N(0, I), Y = tanh(XW) + 0.5·noise, W ~ N(0, 1/D), N×D float64 (DADApy
computes in float64; matalign gets the same float64 arrays). Each side runs in its own
process; matalign gets a full-size warm-up and ``--repeat`` timed calls, DADApy an N = 500
warm-up and ``--ref-repeat`` timed calls.

Target: time ratio >= 10× against DADApy with full ranks.

Examples::

    matalign bench information_imbalance --dadapy-python /tmp/dadapy-venv/bin/python
    matalign bench information_imbalance --quick --dadapy-python /tmp/dadapy-venv/bin/python
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys

import numpy as np

if __package__:
    from . import _common as C
else:  # run by path (a worker in another interpreter): _common.py sits next to it
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import _common as C  # noqa: E402

SCRIPT = "matalign.benchmarks.information_imbalance"  # workers run as python -m SCRIPT
SCRIPT_PATH = os.path.abspath(__file__)
DEFAULT_DADAPY_PYTHON = "/tmp/dadapy-venv/bin/python"
# Peak added memory of DADApy with maxk = N − 1 per N², bytes, with margin (measured 1.5 GB
# process RSS at N = 5000: two spaces × (N×N float64 distances + N×N int64 indices) plus the
# sklearn temporaries). Used only to skip a run that cannot fit.
DADAPY_FULL_BYTES_PER_N2 = 64.0


# ----------------------------------------------------------------------------- helpers


def run_side_with(python: str, payload: dict, *, unset_openblas: bool, timeout: float) -> dict:
    """``_common.run_side`` with another interpreter (DADApy's virtualenv)."""
    out = payload["out"]
    env = dict(os.environ)
    if unset_openblas:
        for var in C.OPENBLAS_VARS:
            env.pop(var, None)
    cmd = [python, SCRIPT_PATH, "--_worker", json.dumps(payload)]
    try:
        proc = subprocess.run(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout:.0f} s"}
    except OSError as exc:
        return {"error": f"cannot run {python}: {exc}"}
    if proc.returncode != 0:
        tail = "\n".join(proc.stderr.strip().splitlines()[-6:])
        why = ("killed by SIGKILL (out of memory?)" if proc.returncode in (-9, 137)
               else f"exit code {proc.returncode}")
        return {"error": f"{payload['side']} worker {why}: {tail}"}
    with open(out + ".json") as f:
        return json.load(f)


def dadapy_versions(python: str) -> str:
    code = ("import importlib.metadata as m, platform; print(f\"Python {platform.python_version()}"
            ", dadapy {m.version('dadapy')}, numpy {m.version('numpy')}, scikit-learn "
            "{m.version('scikit-learn')}\")")
    try:
        return subprocess.run([python, "-c", code], stdout=subprocess.PIPE, text=True,
                              stderr=subprocess.PIPE, timeout=120, check=True).stdout.strip()
    except Exception as exc:  # noqa: BLE001 - reported in the header
        return f"unavailable ({exc})"


# ----------------------------------------------------------------------------- sides


def side_matalign(p: dict) -> dict:
    import matalign as ma

    x, y = np.load(p["x"]), np.load(p["y"])
    k, t = p["k"], p["threads"]
    m = C.measure(lambda: ma.information_imbalance(x, y, k=k, n_threads=t), repeat=p["repeat"])
    return {"times": m.times, "peak_added": m.peak_added, "value": list(map(float, m.result))}


def side_dadapy(p: dict) -> dict:
    """Runs in DADApy's interpreter. estimator: full (maxk = N−1), maxk100, subset."""
    import warnings

    from dadapy import MetricComparisons

    warnings.simplefilter("ignore")
    x, y = np.load(p["x"]), np.load(p["y"])
    k, jobs, est = p["k"], p["threads"], p["estimator"]
    d1, d2 = x.shape[1], y.shape[1]
    cols_x, cols_y = list(range(d1)), list(range(d1, d1 + d2))

    def run(a: np.ndarray, b: np.ndarray):
        n = a.shape[0]
        if est == "subset":
            mc = MetricComparisons(coordinates=a, n_jobs=jobs)
            ixy, iyx = mc.return_information_imbalace(b, k=k, subset_size=p["subset_size"])
            return float(ixy[0]), float(iyx[0])
        maxk = n - 1 if est == "full" else min(100, n - 1)
        mc = MetricComparisons(coordinates=np.hstack([a, b]), maxk=maxk, n_jobs=jobs)
        ixy, iyx = mc.return_inf_imb_two_selected_coords(cols_x, cols_y, k=k)
        return float(ixy), float(iyx)

    small = min(500, x.shape[0])
    m = C.measure(lambda: run(x, y), repeat=p["repeat"],
                  warmup_fn=lambda: run(x[:small], y[:small]))
    return {"times": m.times, "peak_added": m.peak_added, "value": list(m.result)}


SIDES = {"matalign": side_matalign, "dadapy": side_dadapy}


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
                    help="sizes (default 5000 20000; DADApy full ranks skipped where it does "
                    "not fit; --quick: 5000)")
    ap.add_argument("--d", type=int, default=256, help="dimension of X and Y (default 256)")
    ap.add_argument("--k", type=int, default=1, help="neighbours in the source space (default 1)")
    ap.add_argument("--tol", type=float, default=1e-9,
                    help="max |Δ| for agreement, each direction (default 1e-9)")
    ap.add_argument("--repeat", type=int, default=None,
                    help="matalign timed repeats (default 3; --quick 1)")
    ap.add_argument("--ref-repeat", type=int, default=None,
                    help="DADApy full-rank timed repeats (default 3; --quick 1)")
    ap.add_argument("--subset-size", type=int, default=2000,
                    help="subset_size of DADApy's return_information_imbalace (default 2000)")
    ap.add_argument("--no-defaults", action="store_true",
                    help="skip DADApy's default (biased) estimators")
    ap.add_argument("--dadapy-python", default=None,
                    help="interpreter with dadapy installed (default: this one if it imports "
                    f"dadapy, else {DEFAULT_DADAPY_PYTHON})")
    ap.add_argument("--force", action="store_true",
                    help="run DADApy with full ranks even where it probably does not fit")
    ap.add_argument("--quick", action="store_true", help="N = 5000 and one timed call per side")
    C.add_common_args(ap)
    args = ap.parse_args(argv)
    if args._worker:
        C.worker_main(args._worker, SIDES)
        return 0

    python = args.dadapy_python
    if python is None:
        try:
            import dadapy  # noqa: F401

            python = sys.executable
        except ImportError:
            python = DEFAULT_DADAPY_PYTHON
    sizes = args.n or ([5000] if args.quick else [5000, 20000])
    repeat = args.repeat or (1 if args.quick else 3)
    ref_repeat = args.ref_repeat or (1 if args.quick else 3)
    threads = C.resolve_threads(args.threads)
    header = C.header_lines(("scipy",))
    header.append(f"DADApy side: {python}: {dadapy_versions(python)}")
    print("\n".join("# " + line for line in header))
    print(f"# {C.command_line()}  (threads {threads}; matalign best of {repeat} after a "
          f"full-size warm-up; DADApy full ranks best of {ref_repeat} after an N = 500 "
          f"warm-up, its default estimators once; seed {args.seed}; float64, D = {args.d}, "
          f"k = {args.k})")
    print("# anchor: DADApy MetricComparisons(coordinates=hstack([X, Y]), maxk=N-1)"
          ".return_inf_imb_two_selected_coords(cols X, cols Y, k) = exact ranks")

    table = C.Table(["N", "D", "k", "matalign s", "DADApy maxk=N−1 s", "time ratio",
                     "matalign mem", "DADApy mem", "mem ratio", "matalign Δ(X→Y), Δ(Y→X)",
                     "DADApy Δ(X→Y), Δ(Y→X)", "agreement"])
    bias = C.Table(["N", "estimator", "Δ(X→Y)", "Δ(Y→X)", "time s", "peak added mem"])
    results, bias_rows, failures = [], [], 0
    fv = lambda v: f"{v[0]:.9f}, {v[1]:.9f}" if v is not None else "—"  # noqa: E731
    table.print_header()
    with C.Workspace() as ws:
        for n in sizes:
            x, y = make_data(n, args.d, args.seed)
            base = {"x": ws.save(f"x{n}", x), "y": ws.save(f"y{n}", y), "k": args.k,
                    "threads": threads, "subset_size": args.subset_size}
            del x, y
            mine = C.run_side(SCRIPT, {**base, "side": "matalign", "repeat": repeat,
                                       "out": ws.out("matalign")},
                              unset_openblas=args.unset_openblas_env, timeout=args.timeout)
            need = DADAPY_FULL_BYTES_PER_N2 * n * n
            avail = C.mem_available_bytes()
            if avail is not None and need > 0.9 * avail and not args.force:
                ref = {"skipped": f"DADApy maxk=N−1 skipped: needs ~{C.fmt_bytes(need)}, "
                       f"{C.fmt_bytes(avail)} available (--force to try)"}
            else:
                ref = run_side_with(python, {**base, "side": "dadapy", "estimator": "full",
                                             "repeat": ref_repeat, "out": ws.out("dadapy")},
                                    unset_openblas=args.unset_openblas_env, timeout=args.timeout)
            tm = min(mine["times"]) if "times" in mine else None
            tr = min(ref["times"]) if "times" in ref else None
            mm, mr = mine.get("peak_added"), ref.get("peak_added")
            vm, vr = mine.get("value"), ref.get("value")
            errors = [r["error"] for r in (mine, ref) if "error" in r]
            only_ours = "skipped" in ref and not errors
            delta = None
            if errors:
                ok, why = False, " | ".join(errors).replace("\n", " ⏎ ")
            elif only_ours:
                ok = all(math.isfinite(v) for v in vm)
                why = ref["skipped"] if ok else f"non-finite value {vm}"
            else:
                delta = max(abs(a - b) for a, b in zip(vm, vr))
                ok, why = delta <= args.tol, f"max |Δ| {delta:.2g} > tol {args.tol:g}"
            row = {"N": n, "D": args.d, "k": args.k, "threads": threads,
                   "matalign_s": tm, "dadapy_full_s": tr,
                   "matalign_times": mine.get("times"), "dadapy_full_times": ref.get("times"),
                   "time_ratio": tr / tm if (ok and tm and tr) else None,
                   "matalign_peak_added": mm, "dadapy_full_peak_added": mr,
                   "mem_ratio": (mm / mr) if (ok and mm is not None and mr) else None,
                   "matalign_value": vm, "dadapy_full_value": vr, "max_delta": delta,
                   "ok": ok, "why": why if (not ok or only_ours) else None}
            results.append(row)
            if ok and only_ours:
                agree, ratio, mratio = f"n/a: {why}", "—", "—"
            elif ok:
                agree = f"ok: max |Δ| {delta:.2g}"
                ratio = f"{row['time_ratio']:.1f}×"
                mratio = f"1/{1 / row['mem_ratio']:.0f}" if row["mem_ratio"] else "—"
            else:
                failures += 1
                agree, ratio, mratio = f"**FAIL**: {why}", "—", "—"
            table.add([str(n), str(args.d), str(args.k), C.fmt_s(tm), C.fmt_s(tr), ratio,
                       C.fmt_bytes(mm), C.fmt_bytes(mr), mratio, fv(vm), fv(vr), agree])

            # DADApy's default estimators, next to the exact value (bias, the anchor measurements, bench/README.md).
            rows = [("exact (matalign)", mine), ("DADApy maxk = N−1 (exact)", ref)]
            if not args.no_defaults:
                for est, label in (("maxk100", "DADApy maxk = 100"),
                                   ("subset", f"DADApy subset_size = {args.subset_size}")):
                    r = run_side_with(python, {**base, "side": "dadapy", "estimator": est,
                                               "repeat": 1, "out": ws.out(est)},
                                      unset_openblas=args.unset_openblas_env,
                                      timeout=args.timeout)
                    rows.append((label, r))
            for label, r in rows:
                v = r.get("value")
                bias_rows.append({"N": n, "estimator": label, "value": v,
                                  "time_s": min(r["times"]) if "times" in r else None,
                                  "peak_added": r.get("peak_added"),
                                  "error": r.get("error") or r.get("skipped")})
    print()
    print("# DADApy's default estimators next to the exact imbalance (same data):")
    bias.print_header()
    for b in bias_rows:
        v = b["value"]
        if v is None:
            bias.add([str(b["N"]), b["estimator"], "—", "—", "—", "—"])
            continue
        bias.add([str(b["N"]), b["estimator"], f"{v[0]:.4f}", f"{v[1]:.4f}",
                  C.fmt_s(b["time_s"]), C.fmt_bytes(b["peak_added"])])
    print("# memory: peak RSS added during the call, each side in its own process; "
          "mem ratio = matalign / DADApy.")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"header": header, "command": C.command_line(), "results": results,
                       "estimators": bias_rows}, f, indent=1, default=str)
    if failures:
        print(f"# {failures} case(s) FAILED", file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
