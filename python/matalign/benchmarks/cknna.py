"""CKNNA and mutual-kNN from arrays: matalign against the dense reference algorithm (targets: bench/README.md).

The anchor is the algorithm of the platonic-rep reference code (Huh et al. 2024), written
here from its description in ``bench/README.md`` §1.2 and run with torch on the CPU
in float32, as the anchor measurements were:

* ``cknna``: dense Gram matrices K = XXᵀ and L = YYᵀ, −inf on the diagonal of a copy for the
  top-k, one-hot N×N row masks, unbiased HSIC with the transposed term Σ K̃∘L̃ᵀ and the
  N×N×N product ``mm(K̃, L̃)``, and ``+1e-6`` in the denominator.
* ``mutual_knn``: dense Gram, diagonal set to −1e8, full descending argsort, dense N×N masks.

matalign computes the same quantities from its exact kNN graphs (``eps=1e-6`` on our side to
reproduce the reference's epsilon). The data follow the anchor measurements, bench/README.md: X ~ N(0, I), Y = tanh(XW)
+ 0.5·noise with W ~ N(0, 1/D), both N×D float32 with L2-normalised rows (the reference
pipeline normalises rows).

Agreement is checked before a row is printed: |Δ| ≤ ``--tol``. Defaults: 1e-6 for CKNNA
(the float32 reference and matalign agree to ~1e-8 at N = 1k–8k; one neighbour flipped by a
float32 near-tie would move CKNNA by roughly 1e-7, an estimate; the reference's epsilon alone
moves it by ~1e-3 at N = 20k), 1e-4 for mutual-kNN (a few near-tie flips at N = 20k).

Each side runs in its own process. The reference gets a warm-up at N = 512 (a full-size
warm-up would double a run of minutes) and ``--ref-repeat`` timed calls (default 1);
matalign gets a full-size warm-up and ``--repeat`` timed calls.

Targets: time ratio ≥ 100×, added-memory ratio ≤ 1/20.

Examples::

    matalign bench cknna                        # N = 10k and 20k, both metrics
    matalign bench cknna --n 8000 --quick        # N = 8k, one timed repeat per side
"""

from __future__ import annotations

import argparse
import json
import math
import sys

import numpy as np

from . import _common as C

SCRIPT = "matalign.benchmarks.cknna"  # workers run as python -m SCRIPT

# Peak added memory of the dense reference per N², in bytes (measured here: cknna 40 B/N² at
# N = 5k; peak RSS 5.0 GB at N = 10k and mutual_knn 11.1 GB at N = 20k in the anchor measurements, bench/README.md).
# Used only to skip a reference that cannot fit, instead of letting the kernel kill it
# after minutes; --force overrides.
REF_BYTES_PER_N2 = {"cknna": 45.0, "mutual_knn": 30.0}
DEFAULT_TOL = {"cknna": 1e-6, "mutual_knn": 1e-4}


# ----------------------------------------------------------------------------- reference


def ref_hsic_unbiased(K, L):
    """Unbiased HSIC (Song et al. 2012) as the reference computes it: dense, with the
    transposed pairing Σ K̃ᵢⱼ L̃ⱼᵢ and the full N×N×N product for 1ᵀK̃L̃1."""
    import torch

    m = K.shape[0]
    Kt = K.clone().fill_diagonal_(0)
    Lt = L.clone().fill_diagonal_(0)
    value = (
        (Kt * Lt.T).sum()
        + Kt.sum() * Lt.sum() / ((m - 1) * (m - 2))
        - 2 * torch.mm(Kt, Lt).sum() / (m - 2)
    )
    return value / (m * (m - 3))


def ref_cknna(A, B, topk: int) -> float:
    """Reference CKNNA (unbiased=True): row-wise top-k masks of the raw Gram matrices."""
    import torch

    n = A.shape[0]
    K = A @ A.T
    L = B @ B.T

    def similarity(K, L):
        K_hat = K.clone().fill_diagonal_(float("-inf"))
        L_hat = L.clone().fill_diagonal_(float("-inf"))
        idx_K = torch.topk(K_hat, topk, dim=1).indices
        idx_L = torch.topk(L_hat, topk, dim=1).indices
        del K_hat, L_hat
        mask_K = torch.zeros(n, n, dtype=K.dtype).scatter_(1, idx_K, 1)
        mask_L = torch.zeros(n, n, dtype=L.dtype).scatter_(1, idx_L, 1)
        mask = mask_K * mask_L
        return ref_hsic_unbiased(mask * K, mask * L)

    sim_kl = similarity(K, L)
    sim_kk = similarity(K, K)
    sim_ll = similarity(L, L)
    return sim_kl.item() / (torch.sqrt(sim_kk * sim_ll) + 1e-6).item()


def ref_mutual_knn(A, B, topk: int) -> float:
    """Reference mutual-kNN: full descending argsort of the Gram matrix, dense masks."""
    import torch

    def nearest(F):
        return (F @ F.T).fill_diagonal_(-1e8).argsort(dim=1, descending=True)[:, :topk]

    knn_A = nearest(A)
    knn_B = nearest(B)
    n = knn_A.shape[0]
    rows = torch.arange(n).unsqueeze(1)
    mask_A = torch.zeros(n, n, dtype=A.dtype)
    mask_B = torch.zeros(n, n, dtype=B.dtype)
    mask_A[rows, knn_A] = 1.0
    mask_B[rows, knn_B] = 1.0
    return ((mask_A * mask_B).sum(dim=1) / topk).mean().item()


# ----------------------------------------------------------------------------- sides


def side_matalign(p: dict) -> dict:
    import matalign as ma

    x, y = np.load(p["x"]), np.load(p["y"])
    k, metric = p["k"], p["metric"]
    if metric == "cknna":
        fn = lambda: float(ma.cknna(x, y, k=k, eps=p["eps"]))  # noqa: E731
    else:
        fn = lambda: float(ma.mutual_knn(x, y, k=k))  # noqa: E731
    m = C.measure(fn, repeat=p["repeat"])
    return {"times": m.times, "peak_added": m.peak_added, "value": m.result}


def side_reference(p: dict) -> dict:
    import torch

    torch.set_num_threads(p["threads"])
    a = torch.from_numpy(np.load(p["x"]))
    b = torch.from_numpy(np.load(p["y"]))
    k = p["k"]
    f = ref_cknna if p["metric"] == "cknna" else ref_mutual_knn
    small = min(512, a.shape[0])
    m = C.measure(
        lambda: f(a, b, k), repeat=p["repeat"], warmup_fn=lambda: f(a[:small], b[:small], k)
    )
    return {"times": m.times, "peak_added": m.peak_added, "value": m.result}


SIDES = {"matalign": side_matalign, "reference": side_reference}


# ----------------------------------------------------------------------------- driver


def make_data(n: int, d: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, d), dtype=np.float32)
    w = rng.standard_normal((d, d), dtype=np.float32) / np.float32(math.sqrt(d))
    y = np.tanh(x @ w) + np.float32(0.5) * rng.standard_normal((n, d), dtype=np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    y /= np.linalg.norm(y, axis=1, keepdims=True)
    return np.ascontiguousarray(x, np.float32), np.ascontiguousarray(y, np.float32)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, nargs="+", default=[10000, 20000], help="sizes (8k..20k)")
    ap.add_argument("--d", type=int, default=256, help="dimension (default 256)")
    ap.add_argument("--k", type=int, default=10, help="neighbours (default 10)")
    ap.add_argument("--metric", nargs="+", default=["cknna", "mutual_knn"],
                    choices=["cknna", "mutual_knn"])
    ap.add_argument("--eps", type=float, default=1e-6,
                    help="matalign's CKNNA eps (default 1e-6 = the reference's)")
    ap.add_argument("--tol", type=float, default=None,
                    help="max |Δ| for agreement (default 1e-6 cknna, 1e-4 mutual_knn)")
    ap.add_argument("--repeat", type=int, default=None, help="matalign timed repeats (default 5)")
    ap.add_argument("--ref-repeat", type=int, default=1, help="reference timed repeats (default 1)")
    ap.add_argument("--force", action="store_true",
                    help="run the reference even where it probably does not fit in memory")
    ap.add_argument("--quick", action="store_true", help="one timed repeat per side")
    C.add_common_args(ap)
    args = ap.parse_args(argv)
    if args._worker:
        C.worker_main(args._worker, SIDES)
        return 0

    repeat = args.repeat or (1 if args.quick else 5)
    threads = C.resolve_threads(args.threads)
    print("\n".join("# " + line for line in C.header_lines(("torch",))))
    print(f"# {C.command_line()}  (threads {threads}; matalign best of {repeat} after a "
          f"full-size warm-up; reference best of {args.ref_repeat} after an N = 512 warm-up; "
          f"seed {args.seed}; float32, L2-normalised rows)")

    table = C.Table(["metric", "N", "D", "k", "matalign s", "reference s", "time ratio",
                     "matalign mem", "reference mem", "mem ratio", "matalign value",
                     "reference value", "agreement"])
    table.print_header()
    results, failures = [], 0
    with C.Workspace() as ws:
        for n in args.n:
            x, y = make_data(n, args.d, args.seed)
            base = {"x": ws.save(f"x{n}", x), "y": ws.save(f"y{n}", y), "k": args.k,
                    "threads": threads, "eps": args.eps}
            del x, y
            for metric in args.metric:
                p = {**base, "metric": metric}
                mine = C.run_side(SCRIPT, {**p, "side": "matalign", "repeat": repeat,
                                           "out": ws.out("matalign")},
                                  unset_openblas=args.unset_openblas_env, timeout=args.timeout)
                need = REF_BYTES_PER_N2[metric] * n * n
                avail = C.mem_available_bytes()
                if avail is not None and need > 0.9 * avail and not args.force:
                    ref = {"error": f"reference skipped: needs ~{C.fmt_bytes(need)}, "
                           f"{C.fmt_bytes(avail)} available (--force to try)"}
                else:
                    ref = C.run_side(SCRIPT, {**p, "side": "reference", "repeat": args.ref_repeat,
                                              "out": ws.out("reference")},
                                     unset_openblas=args.unset_openblas_env,
                                     timeout=args.timeout)
                tm = min(mine["times"]) if "times" in mine else None
                tr = min(ref["times"]) if "times" in ref else None
                mm, mr = mine.get("peak_added"), ref.get("peak_added")
                vm, vr = mine.get("value"), ref.get("value")
                errors = [r["error"] for r in (mine, ref) if "error" in r]
                if errors:
                    ok, why = False, " | ".join(errors)
                elif not (math.isfinite(vm) and math.isfinite(vr)):
                    ok, why = False, f"non-finite value ({vm}, {vr})"
                else:
                    delta = abs(vm - vr)
                    tol = args.tol if args.tol is not None else DEFAULT_TOL[metric]
                    ok, why = delta <= tol, f"|Δ| {delta:.2g} > tol {tol:g}"
                row = {"metric": metric, "N": n, "D": args.d, "k": args.k, "threads": threads,
                       "matalign_s": tm, "reference_s": tr,
                       "matalign_times": mine.get("times"), "reference_times": ref.get("times"),
                       "time_ratio": tr / tm if (tm and tr) else None,
                       "matalign_peak_added": mm, "reference_peak_added": mr,
                       "mem_ratio": (mm / mr) if (mm is not None and mr) else None,
                       "matalign_value": vm, "reference_value": vr, "ok": ok,
                       "why": None if ok else why}
                results.append(row)
                if ok:
                    agree = f"ok: |Δ| {abs(vm - vr):.2g}"
                    ratio = f"{row['time_ratio']:.0f}×"
                    mratio = f"1/{1 / row['mem_ratio']:.0f}" if row["mem_ratio"] else "—"
                else:
                    failures += 1
                    agree, ratio, mratio = f"**FAIL**: {why}", "—", "—"
                fv = lambda v: f"{v:.6f}" if v is not None else "—"  # noqa: E731
                table.add([metric, str(n), str(args.d), str(args.k), C.fmt_s(tm), C.fmt_s(tr),
                           ratio, C.fmt_bytes(mm), C.fmt_bytes(mr), mratio, fv(vm), fv(vr), agree])
    print("# memory: peak RSS added during the call, each side in its own process; "
          "mem ratio = matalign / reference.")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"header": C.header_lines(("torch",)), "command": C.command_line(),
                       "results": results}, f, indent=1, default=str)
    if failures:
        print(f"# {failures} case(s) FAILED", file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
