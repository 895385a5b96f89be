"""Exact kNN: matalign against faiss-cpu ``IndexFlatIP`` / ``IndexFlatL2`` (targets: bench/README.md).

Cases (float32, D = 256 by default, all cores):

* self-kNN graph of X for every N in ``--n``, metric in ``--metric`` and k in ``--k``.
  faiss searches k+1 neighbours and drops the query itself **by index** (if self is not
  among the k+1, the last column is dropped); the ``add`` and the drop are timed with it.
* queries Q ≠ X: ``--queries`` rows (default 10 000) against the largest N.

For each case the two graphs must agree before a row is printed: best-first values within
a float32 tolerance, and either index-set recall ≥ 0.999 or every differing index explained
by a tie at the k-th value (faiss ``check_ref_knn_with_draws``). matalign's graph must not
contain the query itself. The row gives both times (best of ``--repeat`` after a warm-up),
the ratio, each side's peak added memory, effective GFLOP/s (2·M·N·D / t, all M·N pairs
counted even where matalign uses symmetry) and numpy's sgemm rate on the same shape.

Targets: ratio ≥ 2.5 for self-kNN, ≥ 1.5 for Q ≠ X.

Examples::

    matalign bench knn                       # full run (about 15 min on 2 cores)
    matalign bench knn --n 20000 --quick     # one repeat, k = 10 only
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys

import numpy as np

from . import _common as C

SCRIPT = "matalign.benchmarks.knn"  # workers run as python -m SCRIPT
RECALL_MIN = 0.999


# ----------------------------------------------------------------------------- sides


def _load(payload: dict) -> tuple[np.ndarray, np.ndarray | None]:
    x = np.load(payload["x"])
    q = np.load(payload["q"]) if payload.get("q") else None
    return x, q


def side_matalign(p: dict) -> dict:
    import matalign as ma

    x, q = _load(p)
    kwargs = {"k": p["k"], "metric": p["metric"], "n_threads": p["threads"],
              "device": p.get("device", "cpu")}
    if q is not None:
        kwargs["queries"] = q

    m = C.measure(lambda: ma.knn(x, **kwargs), repeat=p["repeat"])
    g = m.result
    return {
        "times": m.times,
        "peak_added": m.peak_added,
        "values": np.asarray(g.values),
        "indices": np.asarray(g.indices),
    }


def drop_self(values: np.ndarray, indices: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """From a k+1 self-search, remove each row's own index (or, if absent, the last column).

    Self is removed by index, never by position: with the BLAS formula of IndexFlatL2 a
    duplicate can come before self, and with IndexFlatIP self is often not the best match.
    """
    n, k1 = indices.shape
    drop = indices == np.arange(n, dtype=indices.dtype)[:, None]
    drop[~drop.any(axis=1), k1 - 1] = True
    keep = ~drop
    return values[keep].reshape(n, k1 - 1), indices[keep].reshape(n, k1 - 1)


def side_faiss(p: dict) -> dict:
    import faiss

    faiss.omp_set_num_threads(p["threads"])
    x, q = _load(p)
    k, d = p["k"], x.shape[1]
    make = faiss.IndexFlatIP if p["metric"] == "ip" else faiss.IndexFlatL2

    def run():
        index = make(d)
        index.add(x)
        if q is None:
            return drop_self(*index.search(x, k + 1))
        return index.search(q, k)

    m = C.measure(run, repeat=p["repeat"])
    values, indices = m.result
    return {"times": m.times, "peak_added": m.peak_added, "values": values, "indices": indices}


def side_sgemm(p: dict) -> dict:
    """numpy (OpenBLAS) sgemm on the kNN's shape: row blocks of ≤ 4096 queries × all N rows.

    At most 3 blocks are timed (the rate is what matters; the full N×N product would not
    fit in memory at N = 100k); the output buffer is reused, as a tiled engine does.
    """
    x, q = _load(p)
    queries = x if q is None else q
    bm = min(4096, queries.shape[0])
    nblocks = min(3, math.ceil(queries.shape[0] / bm))
    blocks = [np.ascontiguousarray(queries[i * bm:(i + 1) * bm]) for i in range(nblocks)]
    blocks = [b for b in blocks if b.shape[0] == bm]
    out = np.empty((bm, x.shape[0]), dtype=np.float32)
    xt = x.T

    def run():
        for b in blocks:
            np.matmul(b, xt, out=out)

    m = C.measure(run, repeat=max(3, p["repeat"]))
    flops = 2.0 * bm * x.shape[0] * x.shape[1] * len(blocks)
    return {"times": m.times, "peak_added": m.peak_added, "gflops": flops / m.best / 1e9,
            "shape": [bm, x.shape[0], x.shape[1]]}


def side_torch(p: dict) -> dict:
    """Brute-force kNN in torch on the GPU: blocks of 4096 queries, one matmul and a topk each.

    Inner product: the k largest ⟨q, x⟩. L2: the k smallest ‖q‖² + ‖x‖² − 2⟨q, x⟩ (squared
    distances, as faiss and matalign report them). Self-kNN masks the diagonal to −∞. The
    time includes the host-to-device copy of the inputs and the copy of the graph back.
    """
    import torch

    x, q = _load(p)
    k, ip, dev = p["k"], p["metric"] == "ip", torch.device("cuda")

    def run():
        xt = torch.from_numpy(x).to(dev)
        qt = xt if q is None else torch.from_numpy(q).to(dev)
        xn = (xt * xt).sum(1)
        vals, idx = [], []
        for s in range(0, qt.shape[0], 4096):
            b = qt[s:s + 4096]
            sim = b @ xt.T
            if not ip:
                sim = 2.0 * sim - (b * b).sum(1, keepdim=True) - xn[None, :]
            if q is None:
                r = torch.arange(b.shape[0], device=dev)
                sim[r, s + r] = -torch.inf
            v, i = torch.topk(sim, k, dim=1)
            vals.append(v if ip else -v)
            idx.append(i)
        out = torch.cat(vals).cpu().numpy(), torch.cat(idx).cpu().numpy()
        torch.cuda.synchronize()
        return out

    m = C.measure(run, repeat=p["repeat"])
    values, indices = m.result
    return {"times": m.times, "peak_added": m.peak_added, "values": values, "indices": indices}


SIDES = {"matalign": side_matalign, "faiss": side_faiss, "torch": side_torch,
         "sgemm": side_sgemm}


def find_anchor(device: str, requested: str = "auto") -> tuple[str | None, str]:
    """The anchor to run next to matalign, and a sentence saying why.

    ``auto``: on ``cuda`` torch on the GPU when torch sees a CUDA device, else faiss (CPU);
    on ``cpu`` faiss. ``none`` (or nothing installed) returns ``(None, why)``: matalign's own
    throughput is then reported without a ratio.
    """
    def have_faiss() -> bool:
        try:
            import faiss  # noqa: F401
        except ImportError:
            return False
        return True

    def have_torch_cuda() -> bool:
        try:
            import torch
        except ImportError:
            return False
        return bool(torch.cuda.is_available())

    if requested == "none":
        return None, "no anchor (--anchor none)"
    if requested == "faiss" or (requested == "auto" and device == "cpu"):
        if have_faiss():
            return "faiss", "faiss (exact IndexFlat, CPU)"
        return None, "faiss is not installed (pip install faiss-cpu): matalign alone"
    if requested in ("torch", "auto"):
        if have_torch_cuda():
            return "torch", "torch on the GPU (matmul + topk)"
        if requested == "auto" and have_faiss():
            return "faiss", "faiss (exact IndexFlat, CPU): torch sees no CUDA device"
        return None, "torch with a CUDA device is not installed: matalign alone"
    raise ValueError(f"unknown anchor {requested!r}")


# ----------------------------------------------------------------------------- agreement


def knn_agreement(
    ours: dict, ref: dict, queries: np.ndarray, x: np.ndarray, *, self_knn: bool
) -> dict:
    """Tie-aware comparison of two kNN graphs.

    Tolerance per query row i: 4·√D·ε₃₂·(‖qᵢ‖ + maxⱼ‖xⱼ‖)², a bound on the float32 error of
    an inner product or of the BLAS ‖q‖²+‖x‖²−2⟨q,x⟩ formula, times a safety factor.
    """
    va, ia = ours["values"].astype(np.float64), ours["indices"].astype(np.int64)
    vb, ib = ref["values"].astype(np.float64), ref["indices"].astype(np.int64)
    n, k = ia.shape
    if ia.shape != ib.shape or va.shape != ia.shape:
        return {"ok": False, "why": f"shapes differ: {ia.shape} vs {ib.shape}"}
    d = x.shape[1]
    qn = np.linalg.norm(queries.astype(np.float64), axis=1)
    xmax = float(np.linalg.norm(x.astype(np.float64), axis=1).max())
    tol = 4.0 * math.sqrt(d) * float(np.finfo(np.float32).eps) * (qn + xmax) ** 2
    diff = np.abs(va - vb)
    max_diff = float(diff.max()) if diff.size else 0.0
    values_ok = bool((diff <= tol[:, None]).all())

    # |A ∩ B| per row: each row of A and B has distinct indices, so in the sorted
    # concatenation every common index appears exactly twice, side by side.
    both = np.sort(np.concatenate([ia, ib], axis=1), axis=1)
    common = (both[:, 1:] == both[:, :-1]).sum(axis=1)
    recall = float(common.mean() / k)

    unexplained = 0
    rows = np.flatnonzero(common < k)
    for i in rows[:20000]:
        kth = vb[i, -1]
        only_a = np.setdiff1d(ia[i], ib[i], assume_unique=True)
        only_b = np.setdiff1d(ib[i], ia[i], assume_unique=True)
        vals = np.concatenate(
            [va[i][np.isin(ia[i], only_a)], vb[i][np.isin(ib[i], only_b)]]
        )
        if np.any(np.abs(vals - kth) > tol[i]):
            unexplained += 1
    unexplained += max(0, rows.size - 20000)  # not examined: counted as unexplained

    self_in = 0
    if self_knn:
        self_in = int((ia == np.arange(n)[:, None]).any(axis=1).sum())
    ok = values_ok and (recall >= RECALL_MIN or unexplained == 0) and self_in == 0
    why = []
    if not values_ok:
        why.append(f"values differ by {max_diff:.3g} > tol")
    if recall < RECALL_MIN and unexplained:
        why.append(f"{unexplained} rows differ beyond ties")
    if self_in:
        why.append(f"self in {self_in} rows")
    return {
        "ok": ok,
        "max_abs_diff": max_diff,
        "tol_median": float(np.median(tol)),
        "recall": recall,
        "rows_differing": int(rows.size),
        "rows_unexplained": unexplained,
        "why": "; ".join(why),
    }


# ----------------------------------------------------------------------------- driver


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, nargs="+", default=[20000, 100000], help="database sizes")
    ap.add_argument("--d", type=int, default=256, help="dimension (default 256)")
    ap.add_argument("--k", type=int, nargs="+", default=None, help="neighbours (default 10 100)")
    ap.add_argument("--metric", nargs="+", default=["ip", "l2"], choices=["ip", "l2"])
    ap.add_argument("--queries", type=int, default=None,
                    help="Q≠X case: this many queries against the largest N "
                    "(default 10000, or N/10 with --quick; 0 = skip)")
    ap.add_argument("--repeat", type=int, default=None, help="timed repeats per side (default 3)")
    ap.add_argument("--quick", action="store_true",
                    help="one timed repeat, k = 10 only, Q = N/10 (unless given explicitly)")
    ap.add_argument("--device", choices=["cpu", "cuda"], default="cpu",
                    help="where matalign runs (default cpu); with cuda the anchor is torch "
                    "on the GPU when it sees one")
    ap.add_argument("--anchor", choices=["auto", "faiss", "torch", "none"], default="auto",
                    help="the reference side (default auto: faiss on cpu, torch on cuda; "
                    "matalign's own throughput alone when none is installed)")
    C.add_common_args(ap)
    args = ap.parse_args(argv)
    if args._worker:
        C.worker_main(args._worker, SIDES)
        return 0

    ks = args.k or ([10] if args.quick else [10, 100])
    repeat = args.repeat or (1 if args.quick else 3)
    nmax = max(args.n)
    nq = args.queries if args.queries is not None else (nmax // 10 if args.quick else 10000)
    threads = C.resolve_threads(args.threads)
    anchor, anchor_why = find_anchor(args.device, args.anchor)

    print("\n".join("# " + line for line in C.header_lines(("faiss-cpu", "torch"))))
    print(f"# {C.command_line()}  (threads {threads}, repeat {repeat} after 1 warm-up, "
          f"seed {args.seed}, float32, matalign on {args.device})")
    print(f"# anchor: {anchor_why}")
    if any(os.environ.get(v) for v in C.OPENBLAS_VARS) and not args.unset_openblas_env:
        print("# warning: OPENBLAS_CORETYPE/OPENBLAS_L2_SIZE are set and passed to the "
              "workers: faiss and numpy may run a slow BLAS kernel (--unset-openblas-env)")

    if anchor:
        table = C.Table(["case", "N", "D", "k", "metric", "matalign s", f"{anchor} s", "ratio",
                         "matalign mem", f"{anchor} mem", "matalign GFLOP/s",
                         f"{anchor} GFLOP/s", "sgemm GFLOP/s", "agreement"])
    else:
        table = C.Table(["case", "N", "D", "k", "metric", "matalign s", "pairs/s",
                         "matalign GFLOP/s", "matalign mem", "sgemm GFLOP/s", "check"])
    sides = ("matalign", anchor) if anchor else ("matalign",)
    results = []
    failures = 0
    with C.Workspace() as ws:
        rng = np.random.default_rng(args.seed)
        x_all = rng.standard_normal((nmax, args.d), dtype=np.float32)
        q_all = (np.random.default_rng(args.seed + 1)
                 .standard_normal((nq, args.d), dtype=np.float32) if nq > 0 else None)
        cases = [("self", n, None) for n in sorted(set(args.n))]
        if nq > 0:
            cases.append(("Q≠X", nmax, nq))
        table.print_header()
        for case, n, q in cases:
            x = np.ascontiguousarray(x_all[:n])
            x_path = ws.save(f"x{n}", x)
            q_path = ws.save(f"q{q}", q_all) if q else None
            queries = q_all if q else x
            base = {"x": x_path, "q": q_path, "threads": threads, "repeat": repeat,
                    "device": args.device}
            sgemm = C.run_side(SCRIPT, {**base, "side": "sgemm", "out": ws.out("sgemm")},
                               unset_openblas=args.unset_openblas_env, timeout=args.timeout)
            for metric in args.metric:
                for k in ks:
                    p = {**base, "k": k, "metric": metric}
                    res = {}
                    for side in sides:
                        res[side] = C.run_side(
                            SCRIPT, {**p, "side": side, "out": ws.out(side)},
                            unset_openblas=args.unset_openblas_env, timeout=args.timeout)
                    row = {"case": case, "N": n, "Q": q or n, "D": args.d, "k": k,
                           "metric": metric, "threads": threads, "device": args.device,
                           "anchor": anchor}
                    errors = [r["error"] for r in res.values() if "error" in r]
                    if errors:
                        agree = {"ok": False, "why": " | ".join(errors)}
                    elif anchor:
                        agree = knn_agreement(res["matalign"], res[anchor], queries, x,
                                              self_knn=q is None)
                    else:
                        agree = self_check(res["matalign"], n, k, self_knn=q is None)
                    pairs = float(q or n) * n
                    flops = 2.0 * pairs * args.d
                    tm = min(res["matalign"]["times"]) if "times" in res["matalign"] else None
                    ta = (min(res[anchor]["times"])
                          if anchor and "times" in res[anchor] else None)
                    row.update({
                        "matalign_s": tm,
                        "matalign_times": res["matalign"].get("times"),
                        "matalign_peak_added": res["matalign"].get("peak_added"),
                        "matalign_pairs_per_s": pairs / tm if tm else None,
                        "matalign_gflops": flops / tm / 1e9 if tm else None,
                        "sgemm_gflops": sgemm.get("gflops"),
                        "sgemm_shape": sgemm.get("shape"),
                        "agreement": agree,
                    })
                    if anchor:
                        row.update({
                            f"{anchor}_s": ta,
                            f"{anchor}_times": res[anchor].get("times"),
                            f"{anchor}_peak_added": res[anchor].get("peak_added"),
                            f"{anchor}_gflops": flops / ta / 1e9 if ta else None,
                            # the ratio exists only when the two graphs agree
                            "ratio": ta / tm if (tm and ta and agree["ok"]) else None,
                        })
                    results.append(row)
                    g = lambda v: f"{v:.0f}" if v else "—"  # noqa: E731
                    size = str(row["Q"]) + (f"×{n}" if q else "")
                    if not agree["ok"]:
                        failures += 1
                    if anchor:
                        if agree["ok"]:
                            agree_txt = (f"ok: recall {agree['recall']:.5f}, "
                                         f"max|Δv| {agree['max_abs_diff']:.2g}")
                            ratio_txt = f"{row['ratio']:.2f}×"
                        else:
                            agree_txt = f"**FAIL**: {agree['why']}"
                            ratio_txt = "—"
                        table.add([case, size, str(args.d), str(k), metric, C.fmt_s(tm),
                                   C.fmt_s(ta), ratio_txt,
                                   C.fmt_bytes(row["matalign_peak_added"]),
                                   C.fmt_bytes(row[f"{anchor}_peak_added"]),
                                   g(row["matalign_gflops"]), g(row[f"{anchor}_gflops"]),
                                   g(row["sgemm_gflops"]), agree_txt])
                    else:
                        pps = row["matalign_pairs_per_s"]
                        table.add([case, size, str(args.d), str(k), metric, C.fmt_s(tm),
                                   f"{pps:.3g}" if pps else "—", g(row["matalign_gflops"]),
                                   C.fmt_bytes(row["matalign_peak_added"]),
                                   g(row["sgemm_gflops"]),
                                   "ok: " + agree["why"] if agree["ok"]
                                   else f"**FAIL**: {agree['why']}"])
    print("# sgemm: numpy float32 matmul of row blocks of min(4096, M) queries by the N×D "
          "database, ≤3 blocks, best of ≥3; GFLOP/s = 2·M·N·D/t, all M·N pairs counted.")
    print("# memory: peak RSS added during the call, each side in its own process.")
    if not anchor:
        print("# no anchor ran, so no ratio: pairs/s = M·N / t (every query-row pair counted).")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"benchmark": "knn", "header": C.header_lines(("faiss-cpu", "torch")),
                       "command": C.command_line(), "machine": C.machine_record(),
                       "anchor": anchor, "results": results}, f, indent=1, default=str)
    if failures:
        print(f"# {failures} case(s) FAILED the agreement check", file=sys.stderr)
    return 1 if failures else 0


def self_check(ours: dict, n: int, k: int, *, self_knn: bool) -> dict:
    """Checks that need no anchor: the graph's shape, indices in range and distinct per row,
    values best-first, and (self-kNN) no row listing itself."""
    v, i = ours["values"], ours["indices"]
    why = []
    if i.shape != (v.shape[0], k) or v.shape != i.shape:
        return {"ok": False, "why": f"shape {i.shape}, expected (M, {k})"}
    if i.min() < 0 or i.max() >= n:
        why.append("index out of range")
    if (np.diff(np.sort(i, axis=1), axis=1) == 0).any():
        why.append("repeated neighbour in a row")
    d = np.diff(v.astype(np.float64), axis=1)
    if not ((d <= 0).all() or (d >= 0).all()):
        why.append("values not sorted best-first")
    if self_knn and (i == np.arange(i.shape[0])[:, None]).any():
        why.append("a row lists itself")
    return {"ok": not why, "why": "; ".join(why) or "graph well formed (no anchor to compare)"}


if __name__ == "__main__":
    sys.exit(main())
