"""GPU benchmark ("GPU (H100), N = 1M, D = 256"): matalign's CUDA engine side by
side with the torch route (matmul + topk, cdist), agreement checked before a row is printed.

    python bench/bench_gpu.py                      # N = 1M, D = 256, k = 10 (needs ~6 GB GPU)
    python bench/bench_gpu.py --n 100000 --skip-anchor-dcor

Rows:
  exact self-kNN   matalign knn(device="cuda") on a torch CUDA tensor (zero-copy)  vs  torch
                   blocked X_b @ Xᵀ + topk (self masked); agreement: identical index sets per
                   row where values are not tied, max |Δvalue|.
  dCor             matalign distance_correlation(device="cuda")  vs  torch blocked cdist with
                   float64 sums (the same V-statistic); agreement: |Δ dCor|.
  CKNNA (graphs)   matalign cknna(gx, gy, device="cuda") from the two graphs  vs  the CPU engine
                   on the same graphs; agreement: equality (the GPU sums in the CPU's order).

Requires: a CUDA build of matalign (pip install . -Ccmake.define.MATALIGN_ENABLE_CUDA=ON) and
torch with CUDA. Written without a GPU at hand; the first run on one is its test.
"""

from __future__ import annotations

import argparse
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


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--n", type=int, default=1_000_000)
    p.add_argument("--d", type=int, default=256)
    p.add_argument("--k", type=int, default=10)
    p.add_argument("--repeat", type=int, default=1)
    p.add_argument("--block", type=int, default=8192, help="row block of the torch anchors")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--skip-anchor-dcor", action="store_true",
                   help="skip torch's O(N²) dCor anchor (then dCor is checked at N = 20 000)")
    args = p.parse_args(argv)

    import torch

    import matalign as ma

    info = ma.build_info()
    if not info.get("cuda") or ma.cuda_device_count() == 0 or not torch.cuda.is_available():
        print("bench_gpu: needs a CUDA build of matalign and a visible GPU "
              f"(cuda={info.get('cuda')}, devices={ma.cuda_device_count()}, "
              f"torch.cuda={torch.cuda.is_available()})", file=sys.stderr)
        return 2
    print(f"# matalign {info['version']} cuda {info['cuda_version']} archs "
          f"{','.join(info['cuda_architectures'])}; torch {torch.__version__}; "
          f"{torch.cuda.get_device_name(0)}")
    print(f"# N={args.n} D={args.d} k={args.k} float32 seed={args.seed} repeat={args.repeat}")

    gen = torch.Generator(device="cuda").manual_seed(args.seed)
    X = torch.randn((args.n, args.d), generator=gen, device="cuda", dtype=torch.float32)
    R = torch.randn((args.d, args.d), generator=gen, device="cuda", dtype=torch.float32)
    Y = X @ R / math.sqrt(args.d) + 0.5 * torch.randn((args.n, args.d), generator=gen,
                                                     device="cuda", dtype=torch.float32)
    rows = []

    # Warm-up of both sides on a small slice (CUDA context, kernels, cuBLAS handles).
    ma.knn(X[:20000], k=args.k, device="cuda")
    torch_knn(X[:20000], args.k, args.block)
    _sync()

    # exact self-kNN
    t_ma, gx = timed(lambda: ma.knn(X, k=args.k, device="cuda"), args.repeat)
    t_torch, (tv, ti) = timed(lambda: torch_knn(X, args.k, args.block), args.repeat)
    agree, dv = knn_agreement(gx, tv, ti)
    rows.append(("exact self-kNN (ip)", t_ma, t_torch, f"rows agreeing {agree:.6f}, max|Δv| {dv:.2e}"))
    gy = ma.knn(Y, k=args.k, device="cuda")

    # dCor
    t_ma, d_ma = timed(lambda: ma.distance_correlation(X, Y, device="cuda"), args.repeat)
    if args.skip_anchor_dcor:
        m = min(args.n, 20000)
        d_small = ma.distance_correlation(X[:m], Y[:m], device="cuda")
        d_ref = torch_dcor(X[:m], Y[:m], args.block)
        rows.append(("dCor", t_ma, None, f"dCor {d_ma:.6f}; at N={m}: |Δ| {abs(d_small - d_ref):.2e}"))
    else:
        t_torch, d_torch = timed(lambda: torch_dcor(X, Y, args.block), args.repeat)
        rows.append(("dCor", t_ma, t_torch, f"dCor {d_ma:.6f}, |Δ| {abs(d_ma - d_torch):.2e}"))

    # CKNNA from graphs (GPU vs the CPU engine on the same graphs)
    t_ma, c_ma = timed(lambda: ma.cknna(gx, gy, k=args.k, device="cuda"), args.repeat)
    t0 = time.perf_counter()
    c_cpu = ma.cknna(gx, gy, k=args.k, device="cpu")
    t_cpu = time.perf_counter() - t0
    rows.append(("CKNNA from graphs", t_ma, t_cpu,
                 f"CKNNA {c_ma:.6f}, {'identical to' if c_ma == c_cpu else 'DIFFERS from'} CPU"))

    print(f"{'what':<22} {'matalign GPU':>13} {'anchor':>10} {'ratio':>7}  agreement")
    for what, a, b, note in rows:
        ratio = "-" if b is None else f"{b / a:.2f}x"
        anchor = "-" if b is None else f"{b:.2f} s"
        print(f"{what:<22} {a:>11.2f} s {anchor:>10} {ratio:>7}  {note}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
