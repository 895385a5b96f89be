"""GPU benchmark: matalign's CUDA engine side by side with the torch route (cuBLAS GEMM +
topk, cdist), faiss-gpu where installed; agreement checked before a figure is reported.

    python bench/bench_gpu.py                         # kNN N = 1M, metrics N = 100k, D = 256
    python bench/bench_gpu.py --n 200000 --metric-n 20000 --json out.json

Rows (all float32, D = 256, seeded torch data on the device, matalign reads it zero-copy):
  exact self-kNN (ip)  N = --n, k = 10: matalign knn(device="cuda") (screen="auto": the exact
                       GPU path until the int8 screen is verified)  vs  torch blocked
                       X_b @ Xᵀ + topk (self masked) in the same run, and faiss-gpu
                       GpuIndexFlatIP where importable; agreement: rows whose neighbour sets
                       (or, at ties, sorted values) agree, max |Δvalue|.
  int8 screen          N = --screen-n, k = 10: knn(screen="int8")  vs  knn(screen="off") (the
                       exact GPU path) on the same data: identical graphs required; the
                       screen's seed columns, tiles, survivors per row and overflowing lines.
  CKNNA                N = --metric-n, k = 10, from arrays (both graphs + the metric) on the GPU;
                       vs the CPU engine's CKNNA of the GPU graphs: equality.
  dCor                 N = --metric-n: matalign distance_correlation(device="cuda")  vs  torch
                       blocked cdist with float64 sums (the same V-statistic); |Δ dCor|.
  information imbalance N = --metric-n, k = 1: matalign (device="cuda")  vs  the CPU engine on
                       the same data: equality (bitwise graphs and counts).

The GPU check (scripts/gpu_check.py) runs this with --json; bench/README.md, "GPU check",
says where the figures go. Requires a CUDA build of matalign and torch with CUDA.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time

import numpy as np


def _sync():
    import torch

    torch.cuda.synchronize()


def timed(fn, repeat: int):
    """(best seconds, last result) over `repeat` runs, each synchronised."""
    best, out = math.inf, None
    for _ in range(repeat):
        _sync()
        t0 = time.perf_counter()
        out = fn()
        _sync()
        best = min(best, time.perf_counter() - t0)
    return best, out


def torch_knn(X, k: int, block: int):
    """Self-kNN by inner product: blocked X_b @ Xᵀ, own index masked, topk (the anchor)."""
    import torch

    n = X.shape[0]
    vals = torch.empty((n, k), dtype=X.dtype, device=X.device)
    idx = torch.empty((n, k), dtype=torch.int64, device=X.device)
    for r0 in range(0, n, block):
        r1 = min(n, r0 + block)
        s = X[r0:r1] @ X.T
        rows = torch.arange(r1 - r0, device=X.device)
        s[rows, rows + r0] = -math.inf
        v, i = torch.topk(s, k, dim=1)
        vals[r0:r1], idx[r0:r1] = v, i
    return vals, idx


def torch_dcor(X, Y, block: int) -> float:
    """Biased dCor from blocked cdist with float64 sums S1 = Σ a·b, row sums, totals."""
    import torch

    n = X.shape[0]
    s1 = torch.zeros((), dtype=torch.float64, device=X.device)
    ra = torch.zeros(n, dtype=torch.float64, device=X.device)
    rb = torch.zeros(n, dtype=torch.float64, device=X.device)
    saa = torch.zeros((), dtype=torch.float64, device=X.device)
    sbb = torch.zeros((), dtype=torch.float64, device=X.device)
    for r0 in range(0, n, block):
        r1 = min(n, r0 + block)
        a = torch.cdist(X[r0:r1], X).double()
        b = torch.cdist(Y[r0:r1], Y).double()
        s1 += (a * b).sum()
        saa += (a * a).sum()
        sbb += (b * b).sum()
        ra[r0:r1] = a.sum(dim=1)
        rb[r0:r1] = b.sum(dim=1)

    def dcov2(s, r1_, r2_):
        return float(s / n**2 - 2.0 * (r1_ @ r2_) / n**3 + r1_.sum() * r2_.sum() / n**4)

    v_xy, v_xx, v_yy = dcov2(s1, ra, rb), dcov2(saa, ra, ra), dcov2(sbb, rb, rb)
    return math.sqrt(max(0.0, min(1.0, v_xy / math.sqrt(v_xx * v_yy))))


def knn_agreement(g, vals, idx) -> tuple[float, float]:
    """(fraction of rows whose neighbour sets agree, max |Δvalue|); rows whose k-th value ties
    with the (k+1)-th may legitimately differ in the last index and are counted as agreeing
    when their sorted values agree."""
    tv = vals.cpu().numpy().astype(np.float64)
    ti = idx.cpu().numpy()
    dv = float(np.max(np.abs(np.sort(g.values.astype(np.float64), axis=1) - np.sort(tv, axis=1))))
    same = np.all(np.sort(g.indices, axis=1) == np.sort(ti, axis=1), axis=1)
    tol = 1e-4 * max(1.0, float(np.max(np.abs(tv))))
    close = np.all(np.abs(np.sort(g.values, axis=1) - np.sort(tv, axis=1)) <= tol, axis=1)
    return float(np.mean(same | close)), dv


def screen_info(X, k: int) -> dict:
    """What the int8 screen did on X (self graph, ip): seed columns, tiles, survivors, ..."""
    from matalign import _device, _engine

    dev = _device.resolve("cuda", X)
    m = _device.matrix(X, "X", dev)
    _, _, info = _engine.knn_screen_cuda(m, None, _device.to_host(m), None, k, metric="ip",
                                         exclude_self=True, device=dev)
    return info


def faiss_knn(X, k: int):
    """faiss-gpu exact inner-product search (GpuIndexFlatIP) of X against itself, k + 1
    neighbours with the own row dropped; None when faiss-gpu is not importable."""
    try:
        import faiss
    except ImportError:
        return None
    if not hasattr(faiss, "StandardGpuResources") or faiss.get_num_gpus() == 0:
        return None
    x = X.cpu().numpy()
    res = faiss.StandardGpuResources()
    index = faiss.GpuIndexFlatIP(res, x.shape[1])
    index.add(x)
    vals, idx = index.search(x, k + 1)
    return vals, idx


def _faiss_rows(vals, idx, k: int):
    """Drop each row's own index from a (k + 1)-neighbour self search."""
    n = idx.shape[0]
    own = idx == np.arange(n)[:, None]
    own[~own.any(axis=1), -1] = True
    keep = ~own
    return vals[keep].reshape(n, k), idx[keep].reshape(n, k)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--n", type=int, default=1_000_000, help="rows of the kNN benchmark")
    p.add_argument("--metric-n", type=int, default=100_000,
                   help="rows of the CKNNA, dCor and information imbalance benchmark")
    p.add_argument("--screen-n", type=int, default=200_000,
                   help="rows of the int8 screen vs exact path comparison")
    p.add_argument("--d", type=int, default=256)
    p.add_argument("--k", type=int, default=10)
    p.add_argument("--repeat", type=int, default=1)
    p.add_argument("--block", type=int, default=8192, help="row block of the torch anchors")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", default=None, help="also write the rows to this JSON file")
    args = p.parse_args(argv)

    import torch

    import matalign as ma

    info = ma.build_info()
    if not info.get("cuda") or ma.cuda_device_count() == 0 or not torch.cuda.is_available():
        print("bench_gpu: needs a CUDA build of matalign and a visible GPU "
              f"(cuda={info.get('cuda')}, devices={ma.cuda_device_count()}, "
              f"torch.cuda={torch.cuda.is_available()})", file=sys.stderr)
        return 2
    device_name = torch.cuda.get_device_name(0)
    print(f"# matalign {info['version']} cuda {info['cuda_version']} archs "
          f"{','.join(info['cuda_architectures'])}; torch {torch.__version__}; {device_name}")
    print(f"# kNN N={args.n}, metrics N={args.metric_n}, D={args.d}, k={args.k}, float32, "
          f"seed={args.seed}, repeat={args.repeat}")

    gen = torch.Generator(device="cuda").manual_seed(args.seed)
    X = torch.randn((args.n, args.d), generator=gen, device="cuda", dtype=torch.float32)
    m = min(args.metric_n, args.n)
    R = torch.randn((args.d, args.d), generator=gen, device="cuda", dtype=torch.float32)
    Y = X[:m] @ R / math.sqrt(args.d) + 0.5 * torch.randn((m, args.d), generator=gen,
                                                          device="cuda", dtype=torch.float32)
    Xm = X[:m]
    rows = []

    def row(what, data, seconds, anchor=None, anchor_seconds=None, agreement=""):
        rows.append({"what": what, "data": data, "seconds": seconds, "anchor": anchor,
                     "anchor_seconds": anchor_seconds, "agreement": agreement})

    # Warm-up of both sides on a small slice (CUDA context, kernels, cuBLAS handles).
    ma.knn(X[:20000], k=args.k, device="cuda")
    torch_knn(X[:20000], args.k, args.block)
    _sync()

    # exact self-kNN at N = --n
    data = f"N={args.n}, D={args.d}, k={args.k}, float32, ip"
    t_ma, gx = timed(lambda: ma.knn(X, k=args.k, device="cuda"), args.repeat)
    t_torch, (tv, ti) = timed(lambda: torch_knn(X, args.k, args.block), args.repeat)
    agree, dv = knn_agreement(gx, tv, ti)
    row("exact self-kNN", data, t_ma, "torch GEMM + topk", t_torch,
        f"rows agreeing {agree:.6f}, max|Δv| {dv:.2e}")
    t0 = time.perf_counter()
    fk = faiss_knn(X, args.k)
    if fk is not None:
        t_faiss = time.perf_counter() - t0
        fv, fi = _faiss_rows(*fk, args.k)
        agree, dv = knn_agreement(gx, torch.as_tensor(fv), torch.as_tensor(fi))
        row("exact self-kNN", data, t_ma, "faiss-gpu GpuIndexFlatIP", t_faiss,
            f"rows agreeing {agree:.6f}, max|Δv| {dv:.2e}")
    del tv, ti
    torch.cuda.empty_cache()  # the anchor's cached blocks are not free to matalign

    # the int8 screen against the exact GPU path at N = --screen-n: the same graph, faster
    ns = min(args.screen_n, args.n)
    Xs = X[:ns]
    data = f"N={ns}, D={args.d}, k={args.k}, float32, ip"
    t_off, g_off = timed(lambda: ma.knn(Xs, k=args.k, device="cuda", screen="off"), args.repeat)
    t_int8, g_int8 = timed(lambda: ma.knn(Xs, k=args.k, device="cuda", screen="int8"),
                           args.repeat)
    same = (np.array_equal(g_int8.indices, g_off.indices)
            and np.array_equal(g_int8.values, g_off.values))
    si = screen_info(Xs, args.k)
    row("exact self-kNN, int8 screen", data, t_int8, "matalign exact path (screen='off')", t_off,
        f"{'identical to' if same else 'DIFFERS from'} the exact path; seed columns "
        f"{si['seed_columns']}, {si['tiles']} tiles, {si['survivors'] / ns:.1f} survivors/row, "
        f"{si['overflow_lines']} overflowing lines")
    del g_off, g_int8

    # metrics at N = --metric-n
    data = f"N={m}, D={args.d}, k={args.k}, float32"
    t_ma, c_ma = timed(lambda: ma.cknna(Xm, Y, k=args.k, device="cuda"), args.repeat)
    gxm, gym = ma.knn(Xm, k=args.k, device="cuda"), ma.knn(Y, k=args.k, device="cuda")
    t0 = time.perf_counter()
    c_cpu = ma.cknna(gxm, gym, k=args.k, device="cpu")
    t_cpu = time.perf_counter() - t0
    row("CKNNA (graphs + metric)", data, t_ma, "CPU engine, metric from the same graphs", t_cpu,
        f"CKNNA {c_ma:.6f}, {'identical to' if c_ma == c_cpu else 'DIFFERS from'} CPU")

    data = f"N={m}, D={args.d}, float32"
    t_ma, d_ma = timed(lambda: ma.distance_correlation(Xm, Y, device="cuda"), args.repeat)
    t_torch, d_torch = timed(lambda: torch_dcor(Xm, Y, args.block), args.repeat)
    row("dCor", data, t_ma, "torch cdist, float64 sums", t_torch,
        f"dCor {d_ma:.6f}, |Δ| {abs(d_ma - d_torch):.2e}")

    data = f"N={m}, D={args.d}, k=1, float32"
    t_ma, ii_ma = timed(lambda: ma.information_imbalance(Xm, Y, device="cuda"), args.repeat)
    xh, yh = Xm.cpu().numpy(), Y.cpu().numpy()
    t0 = time.perf_counter()
    ii_cpu = ma.information_imbalance(xh, yh, device="cpu")
    t_cpu = time.perf_counter() - t0
    same = "identical to" if tuple(ii_ma) == tuple(ii_cpu) else "DIFFERS from"
    row("information imbalance", data, t_ma, "CPU engine", t_cpu,
        f"Δ(X→Y) {ii_ma[0]:.6f}, Δ(Y→X) {ii_ma[1]:.6f}, {same} CPU")

    print(f"{'what':<24} {'matalign GPU':>13} {'anchor time':>12} {'ratio':>7}  anchor; agreement")
    for r in rows:
        b = r["anchor_seconds"]
        ratio = "-" if not b else f"{b / r['seconds']:.2f}x"
        anchor = "-" if b is None else f"{b:.2f} s"
        print(f"{r['what']:<24} {r['seconds']:>11.2f} s {anchor:>12} {ratio:>7}  "
              f"{r['anchor']}; {r['agreement']}  [{r['data']}]")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"device": device_name, "version": info["version"],
                       "torch": torch.__version__, "cuda_version": info["cuda_version"],
                       "n": args.n, "metric_n": m, "d": args.d, "k": args.k, "rows": rows},
                      f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
