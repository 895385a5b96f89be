"""Centred kernel alignment (CKA), linear and RBF, biased and unbiased (definitions: docs/METRICS.md).

(The module is not called ``cka`` so that it does not clash with the function
``matalign.metrics.cka``.)

Linear CKA runs in feature space over streamed row blocks: O(N·(D1+D2)²) time, O((D1+D2)²)
memory, never an N×N matrix, so a ``np.memmap`` larger than RAM works. RBF CKA is one pass of
the engine's PairSums reducer over all pairs: O(N) memory.

:func:`cka` (two spaces) and :func:`cka_matrix` (M spaces, as
:func:`matalign.alignment_matrix` runs it) share their kernels (:func:`_rbf_values`,
:func:`_linear_gram_values`, :func:`_linear_streamed_values`), whose blockings do not depend on
M, so every matrix entry equals the pairwise call bit for bit.
"""

from __future__ import annotations

import math
import numbers

import numpy as np

from .. import _engine
from .. import executor as _executor
from .. import _device
from .. import _memory
from .._progress import progress_callback
from .._validate import check_same_structures
from .._validate import (check_eps, check_threads, check_values, as_matrix, check_bool, check_choice, check_int, check_progress,
                         check_same_n, describe)
from ._global import (MatrixStage, column_stats, constant_error, is_constant, one_dtype,
                      pair_sums, pair_sums_memory, too_few_rows)

__all__ = ["cka", "cka_matrix", "median_distance", "parse_sigmas", "MATRIX_STAGE"]

KERNELS = ("linear", "rbf")
MEDIAN_PAIRS = 100_000  # pairs sampled for sigma="median"
# A self-HSIC below this fraction of the magnitude of its terms is rounding noise: treated as 0.
ZERO_HSIC_RTOL = 1e-12


def _hsic1(t1: float, s_a: float, s_b: float, t3: float, n: int, mag1=None, mag3=None):
    """Song et al. (2012) unbiased HSIC from its sums over zero-diagonal kernels Ã, B̃:
    t1 = Σ Ã∘B̃, s_a = ΣÃ, s_b = ΣB̃, t3 = Σ_i rowsum(Ã)_i·rowsum(B̃)_i. Returns (value,
    magnitude of its terms); mag1, mag3 are the magnitudes of t1, t3 when they are themselves
    differences."""
    a, b, c = t1, s_a * s_b / ((n - 1) * (n - 2)), 2.0 * t3 / (n - 2)
    mag1 = abs(t1) if mag1 is None else mag1
    mag3 = abs(t3) if mag3 is None else mag3
    scale = (mag1 + abs(b) + 2.0 * mag3 / (n - 2)) / (n * (n - 3))
    return (a + b - c) / (n * (n - 3)), scale


def _hsic0(t1: float, s_a: float, s_b: float, t3: float, n: int):
    """Biased HSIC tr(AHBH)/(N−1)² from the full-kernel sums (diagonal included), and the
    magnitude of its terms."""
    a, b, c = t1, 2.0 * t3 / n, s_a * s_b / (n * n)
    return (a - b + c) / ((n - 1) ** 2), (abs(a) + abs(b) + abs(c)) / ((n - 1) ** 2)


def _check_self(h, name: str, what: str) -> None:
    value, scale = h
    if not value > ZERO_HSIC_RTOL * scale:
        raise ValueError(
            f"cka is undefined: the {what} HSIC of {name} with itself is {value:.3g} (zero or "
            f"negative next to its terms of size {scale:.3g}), so the denominator "
            f"sqrt(HSIC(K,K)·HSIC(L,L)) is not positive; {name} carries no usable "
            f"variance for this estimator")


def _cka_from_hsic(h, labels, what: str, eps: float = 0.0) -> np.ndarray:
    """CKA matrix from the (value, magnitude) HSIC pairs h[a][b] (a <= b filled):
    h[a][b] / (√(h[a][a]·h[b][b]) + eps)."""
    m = len(labels)
    for a in range(m):
        _check_self(h[a][a], labels[a], what)
    out = np.empty((m, m))
    for a in range(m):
        for b in range(a, m):
            out[a, b] = out[b, a] = float(h[a][b][0] / (np.sqrt(h[a][a][0] * h[b][b][0]) + eps))
    return out


SHIFT_ROWS = 4096  # rows whose mean shifts the data before the engine's Gram pass
# One row blocking for every linear-CKA pass, pairwise or fused: a pair's float64 sums depend on
# the block boundaries, so they must not depend on the other models in the pass.
GRAM_BLOCK_ROWS = 512       # engine Gram (biased)
UNBIASED_BLOCK_ROWS = 2048  # NumPy blocks (unbiased)
# Largest (ΣD)² float64 Gram of one fused pass; beyond it, one Gram pass per pair of models.
FUSED_GRAM_BYTES = 1 << 30


def _comes_first(A, B) -> bool:
    """Whether A is the first space of the pair (A, B) in the one orientation every linear-CKA
    kernel uses, whatever order the caller passed them in: the larger D first, then the first
    differing row in byte order. Summing a pair's terms in that orientation makes
    cka(X, Y) == cka(Y, X) bit for bit, as the matrix needs (it computes each pair once)."""
    if A.shape[1] != B.shape[1]:
        return A.shape[1] > B.shape[1]
    step = 64
    for start in range(0, A.shape[0], step):
        a = np.ascontiguousarray(A[start:start + step]).tobytes()
        b = np.ascontiguousarray(B[start:start + step]).tobytes()
        if a != b:
            return a > b
    return True  # equal data: either orientation gives the same sums


def _oriented(arrays):
    """pair (a, b) -> (p, q), the pair in its one orientation (see _comes_first)."""
    m = len(arrays)
    out = {}
    for a in range(m):
        for b in range(a, m):
            out[(a, b)] = (a, b) if a == b or _comes_first(arrays[a], arrays[b]) else (b, a)
    return out


def _linear_gram_values(arrays, labels, n_threads: int, callback, eps: float = 0.0) -> np.ndarray:
    """Biased linear CKA of M spaces from the engine's float64 Gram of [X_1 | … | X_M].

    The rows of each space are shifted by the mean of its first ``SHIFT_ROWS`` rows, so the
    centred Gram G − s·sᵀ/N (s the shifted column sums) is free of cancellation; the exact
    constancy test comes out of the same pass. HSIC₀(a, b) = ‖X̄_aᵀX̄_b‖²_F / (N−1)².
    """
    n = arrays[0].shape[0]
    m = len(arrays)
    spaces = one_dtype(arrays)
    head = slice(0, min(n, SHIFT_ROWS))
    shifts = [np.asarray(A[head]).mean(axis=0, dtype=np.float64) for A in spaces]
    dims = [A.shape[1] for A in spaces]
    if 3 * 8 * sum(dims) ** 2 <= FUSED_GRAM_BYTES or m == 2:
        groups = [list(range(m))]
    else:
        groups = [[a, b] for a in range(m) for b in range(a + 1, m)]
    h = [[None] * m for _ in range(m)]
    orient = _oriented(spaces)
    for g, group in enumerate(groups):
        def report(done, total, g=g):
            if callback is not None:
                callback(g * total + done, len(groups) * total)
        gram_pass = _engine.shifted_gram
        if (ex := _executor.current()) is not None:
            # row blocks on the active executor (float64 partials added in block order)
            def gram_pass(parts, shift, *, block_rows, n_threads, progress, ex=ex):
                return _executor.shifted_gram(ex, parts, shift, block_rows=block_rows,
                                              progress=progress)
        gram, colsum, constant = gram_pass(
            [spaces[a] for a in group], np.concatenate([shifts[a] for a in group]),
            block_rows=GRAM_BLOCK_ROWS, n_threads=n_threads,
            progress=report if callback is not None else None)
        C = gram - np.outer(colsum, colsum) / n
        offsets = np.concatenate([[0], np.cumsum([dims[a] for a in group])])
        cols = {a: slice(offsets[i], offsets[i + 1]) for i, a in enumerate(group)}
        for a in group:
            if constant[cols[a]].all():
                raise constant_error(labels[a], n, "CKA")
        for i, a in enumerate(group):
            for b in group[i:]:
                if h[a][b] is None:
                    p, q = orient[(a, b)]
                    block = np.ascontiguousarray(C[cols[p], cols[q]])
                    f = float(np.sum(block * block)) / (n - 1) ** 2  # HSIC₀
                    h[a][b] = (f, f)
    return _cka_from_hsic(h, labels, "biased", eps)


def _linear_groups(dims) -> list:
    """The model pairs (a <= b) split into groups whose D_a×D_b float64 accumulators fit in
    FUSED_GRAM_BYTES together (a pair larger than that alone is a group of its own)."""
    groups, current, size = [], [], 0
    m = len(dims)
    for a in range(m):
        for b in range(a, m):
            cost = 8 * dims[a] * dims[b]
            if current and size + cost > FUSED_GRAM_BYTES:
                groups.append(current)
                current, size = [], 0
            current.append((a, b))
            size += cost
    if current:
        groups.append(current)
    return groups


def _linear_streamed_values(arrays, labels, unbiased: bool, callback,
                            eps: float = 0.0) -> np.ndarray:
    """Linear CKA of M spaces in feature space, NumPy float64 (the unbiased HSIC₁ path; the
    biased one is the reference the engine's Gram path is tested against), in blocks of
    ``UNBIASED_BLOCK_ROWS`` rows: pass 1 (column means, exact constancy), pass 2 every pair's
    X̄_aᵀX̄_b, row norms and their products, in groups of pairs whose accumulators fit
    ``FUSED_GRAM_BYTES``. Centring first keeps the sums free of cancellation; HSIC₁ is unchanged
    by it (U-centring removes every additive row/column effect of the kernel)."""
    n = arrays[0].shape[0]
    m = len(arrays)
    dims = [A.shape[1] for A in arrays]
    step = UNBIASED_BLOCK_ROWS
    groups = _linear_groups(dims)
    total = n * (1 + len(groups))
    means = []
    for a, A in enumerate(arrays):
        sums, constant = column_stats(A, step)
        if constant:
            raise constant_error(labels[a], n, "CKA")
        means.append(sums / n)
    if callback is not None:
        callback(n, total)
    h = [[None] * m for _ in range(m)]
    orient = _oriented(arrays)
    for g, group in enumerate(groups):
        models = sorted({a for pair in group for a in pair})
        cross = {pair: np.zeros((dims[orient[pair][0]], dims[orient[pair][1]]))
                 for pair in group}
        sc = {a: np.zeros(dims[a]) for a in models}            # Σ x̄_i (centred)
        nsum = dict.fromkeys(models, 0.0)                      # Σ ‖x̄_i‖²
        u = {}                                                 # Σ_i x̄_a,i ‖x̄_b,i‖²
        for a, b in group:
            u[(a, b)] = np.zeros(dims[a])
            u[(b, a)] = np.zeros(dims[b])
        nn = dict.fromkeys(group, 0.0)                         # Σ_i ‖x̄_a,i‖² ‖x̄_b,i‖²
        for start in range(0, n, step):
            blocks = {a: np.asarray(arrays[a][start:start + step], dtype=np.float64) - means[a]
                      for a in models}
            norms = {a: np.einsum("ij,ij->i", blocks[a], blocks[a]) for a in models}
            for a, b in group:
                # In the pair's one orientation; a == b: a copy, so NumPy runs the same GEMM as
                # for two distinct models (it would take SYRK for X.T @ X, which rounds
                # differently).
                p, q = orient[(a, b)]
                cross[(a, b)] += blocks[p].T @ (blocks[q] if p != q else blocks[q].copy())
                nn[(a, b)] += float(norms[p] @ norms[q])
            for a in models:
                sc[a] += blocks[a].sum(axis=0)
                nsum[a] += float(norms[a].sum())
            for key in u:
                u[key] += norms[key[1]] @ blocks[key[0]]
            if callback is not None:
                callback(n * (1 + g) + min(n, start + step), total)
        for a, b in group:
            f = float(np.sum(cross[(a, b)] * cross[(a, b)]))
            if not unbiased:
                # HSIC₀ = ‖X̄_aᵀX̄_b‖²_F / (N−1)²
                h[a][b] = (f / (n - 1) ** 2, f / (n - 1) ** 2)
                continue
            # Zero-diagonal K̃ = X̄X̄ᵀ: Σ K̃∘L̃ = ‖X̄_aᵀX̄_b‖² − Σ‖x_i‖²‖y_i‖²,
            # ΣK̃ = ‖Σx̄‖² − Σ‖x̄_i‖², and Σ_i rowsum_i(K̃)·rowsum_i(L̃) from the products.
            s_a = float(sc[a] @ sc[a]) - nsum[a]
            s_b = float(sc[b] @ sc[b]) - nsum[b]
            p, q = orient[(a, b)]
            q0 = float(sc[p] @ cross[(a, b)] @ sc[q])
            q1, q2 = float(sc[a] @ u[(a, b)]), float(sc[b] @ u[(b, a)])
            # One correctly rounded sum for every pair, a == b included: the value of a pair
            # does not depend on the order of its models, nor on whether they are one model.
            t3 = math.fsum((q0, -q1, -q2, nn[(a, b)]))
            if a == b:
                h[a][b] = _hsic1(f - nn[(a, b)], s_a, s_b, t3, n, mag1=f + nn[(a, b)],
                                 mag3=abs(q0) + abs(q1) + abs(q2) + nn[(a, b)])
            else:
                h[a][b] = _hsic1(f - nn[(a, b)], s_a, s_b, t3, n)
        del cross
    return _cka_from_hsic(h, labels, "unbiased" if unbiased else "biased", eps)


def _sample_pairs(n: int, n_pairs: int, seed: int):
    """Index pairs for the median heuristic: all pairs i < j when there are at most n_pairs of
    them, else n_pairs pairs drawn uniformly (with replacement) among i != j."""
    if n * (n - 1) // 2 <= n_pairs:
        i, j = np.triu_indices(n, 1)
        return i.astype(np.int64), j.astype(np.int64)
    rng = np.random.default_rng(seed)
    i = rng.integers(0, n, size=n_pairs, dtype=np.int64)
    j = (i + rng.integers(1, n, size=n_pairs, dtype=np.int64)) % n
    return i, j


def _pair_distances(X: np.ndarray, i: np.ndarray, j: np.ndarray) -> np.ndarray:
    """Euclidean distances ‖x_i − x_j‖ of the given pairs, from explicit float64 differences."""
    d = X.shape[1]
    out = np.empty(i.size, dtype=np.float64)
    step = max(1, (1 << 21) // max(1, d))
    for start in range(0, i.size, step):
        ib, jb = i[start:start + step], j[start:start + step]
        diff = np.asarray(X[ib], dtype=np.float64) - np.asarray(X[jb], dtype=np.float64)
        out[start:start + step] = np.sqrt(np.einsum("ij,ij->i", diff, diff))
    return out


def median_distance(X, *, n_pairs=MEDIAN_PAIRS, seed=0) -> float:
    """Median Euclidean distance between rows of X, estimated on a seeded sample of pairs.

    When X has at most ``n_pairs`` distinct pairs (N(N−1)/2 <= n_pairs, i.e. N <= 447 by
    default) the median is exact over all pairs i < j. Otherwise ``n_pairs`` pairs (i, j) with
    i != j are drawn uniformly with replacement from ``np.random.default_rng(seed)`` (i uniform,
    then j = (i + u) mod N with u uniform in 1..N−1) and the median of their distances is
    returned. Distances are computed from explicit float64 differences. This is the
    ``sigma="median"`` rule of :func:`cka`.

    Parameters
    ----------
    X : array_like, shape (N, D), float32 or float64
        Embeddings (N >= 2).
    n_pairs : int, default 100000
        Pairs sampled when N(N−1)/2 exceeds it.
    seed : int, default 0
        Seed of the pair sample.

    Returns
    -------
    float
        The median distance (0 when more than half of the pairs are duplicates).

    Raises
    ------
    TypeError
        For unsupported dtypes or non-integer options.
    ValueError
        For NaN/Inf, N < 2 or n_pairs < 1.

    Examples
    --------
    >>> import numpy as np
    >>> from matalign.metrics import median_distance
    >>> median_distance(np.array([[0.0], [1.0], [3.0]]))  # pairs: 1, 3, 2
    2.0
    """
    X = as_matrix(X, "X")
    n_pairs = check_int(n_pairs, "n_pairs", 1)
    seed = check_int(seed, "seed", 0)
    n = X.shape[0]
    if n < 2:
        raise too_few_rows("median_distance", n, 2, "a pair of rows", names="X")
    i, j = _sample_pairs(n, n_pairs, seed)
    return float(np.median(_pair_distances(X, i, j)))


def _check_sigma_value(value, name: str):
    if isinstance(value, str):
        return check_choice(value, name, ("median",))
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise TypeError(
            f"{name} must be a positive number, 'median' or None; got {describe(value)} "
            f"{value!r}")
    s = float(value)
    if not (np.isfinite(s) and s > 0.0):
        raise ValueError(f"{name} must be a finite number > 0 (or 'median'); got {value!r}")
    if 2.0 * s * s == 0.0 or not np.isfinite(1.0 / (2.0 * s * s)):
        raise ValueError(f"{name}={value!r} is too small: the RBF width 1/(2·sigma²) overflows")
    return s


def _parse_sigma(sigma):
    if sigma is None:
        return "median", "median"
    if isinstance(sigma, (tuple, list)):
        if len(sigma) != 2:
            raise ValueError(
                f"sigma as a sequence must hold two values (sigma_X, sigma_Y); got {len(sigma)}")
        return (_check_sigma_value(sigma[0], "sigma[0]"), _check_sigma_value(sigma[1], "sigma[1]"))
    s = _check_sigma_value(sigma, "sigma")
    return s, s


def parse_sigmas(sigma, names):
    """Per-model RBF bandwidth of M models: a number, "median", or a dict name -> them."""
    from collections.abc import Mapping

    if sigma is None:
        return ["median"] * len(names)
    if isinstance(sigma, Mapping):
        unknown = [key for key in sigma if key not in names]
        if unknown:
            raise ValueError(f"sigma names models that are not in spaces: {unknown}; models: "
                             f"{list(names)}")
        return ["median" if sigma.get(name) is None
                else _check_sigma_value(sigma.get(name), f"sigma[{name!r}]") for name in names]
    value = _check_sigma_value(sigma, "sigma")
    return [value] * len(names)


def _rbf_values(spaces, labels, sigmas, unbiased: bool, n_threads: int, seed: int, callback,
                device=None, eps: float = 0.0):
    """RBF CKA of M spaces from ONE PairSums pass: ((M, M) values, the resolved sigmas)."""
    n = spaces[0].shape[0]
    m = len(spaces)
    for A, label in zip(spaces, labels):
        # (GPU input: a constant matrix is caught by the self-HSIC test.)
        if isinstance(A, np.ndarray) and is_constant(A):
            raise constant_error(label, n, "RBF CKA")
    pairs = None
    resolved = []
    for A, s, label in zip(spaces, sigmas, labels):
        if s == "median":
            if pairs is None:
                pairs = _sample_pairs(n, MEDIAN_PAIRS, seed)
            rows = _device.HostRows(A) if isinstance(A, _device.DeviceMatrix) else A
            s = float(np.median(_pair_distances(rows, *pairs)))
            if not s > 0.0:
                raise ValueError(
                    f"sigma='median' gives 0 for {label}: more than half of the sampled pairs "
                    f"of rows are duplicates; pass sigma explicitly")
        resolved.append(float(s))
    gamma = [1.0 / (2.0 * s * s) for s in resolved]
    r, c = pair_sums(spaces, "rbf", gamma, n_threads, callback, device)
    h = [[None] * m for _ in range(m)]
    if unbiased:
        # Zero-diagonal kernels: exactly what the reducer sums (i != j).
        s = r.sum(axis=1)
        for a in range(m):
            for b in range(a, m):
                h[a][b] = _hsic1(c[a, b], float(s[a]), float(s[b]), float(r[a] @ r[b]), n)
        return _cka_from_hsic(h, labels, "unbiased", eps), resolved
    # Full kernels: the diagonal k(x_i, x_i) = 1 is added back to every sum.
    rk = r + 1.0
    s = rk.sum(axis=1)
    for a in range(m):
        for b in range(a, m):
            h[a][b] = _hsic0(c[a, b] + n, float(s[a]), float(s[b]), float(rk[a] @ rk[b]), n)
    return _cka_from_hsic(h, labels, "biased", eps), resolved


def _linear_values(arrays, labels, unbiased: bool, n_threads: int, callback,
                   eps: float = 0.0) -> np.ndarray:
    if unbiased:
        return _linear_streamed_values(arrays, labels, True, callback, eps)
    return _linear_gram_values(arrays, labels, n_threads, callback, eps)


def cka_matrix(spaces, labels, *, kernel="linear", sigmas=None, unbiased=False, n_threads=0,
               seed=0, progress=None, device=None, eps=0.0):
    """CKA of every pair of M validated spaces: ((M, M) values, resolved RBF sigmas or None).

    The fused form of :func:`cka`: one engine pass for all pairs (RBF: PairSums; linear
    biased: the feature-space Gram; linear unbiased: one NumPy pass). Entry (a, b) equals
    ``cka(spaces[a], spaces[b], ...)`` bit for bit when the spaces share a dtype.
    ``sigmas``: one per space ("median" or a number), RBF only.
    """
    spaces, labels = list(spaces), list(labels)
    if kernel == "linear":
        return _linear_values(spaces, labels, unbiased, n_threads, progress, eps), None
    sigmas = ["median"] * len(spaces) if sigmas is None else list(sigmas)
    return _rbf_values(spaces, labels, sigmas, unbiased, n_threads, seed, progress, device, eps)


def _min_rows(req):
    if req.unbiased:
        return (4, "unbiased cka", "the unbiased estimators divide by N - 3")
    return (2, "cka", "the biased HSIC divides by (N - 1)^2")


def _plan(req):
    arrays, dims, n = req.arrays, req.dims, req.n
    if req.cka_kernel == "rbf":
        return (pair_sums_memory(arrays, req.n_threads) + 2 * MEDIAN_PAIRS * 8,
                float(n) ** 2 * (sum(dims) + len(dims) ** 2) / 2)
    work = float(n) * sum(a * b for a in dims for b in dims)
    if req.unbiased:
        pairs = sum(8 * a * b for i, a in enumerate(dims) for b in dims[i:])
        return min(pairs, FUSED_GRAM_BYTES) + 4 * UNBIASED_BLOCK_ROWS * sum(dims) * 8, work
    widened = sum(n * A.shape[1] * 8 for A in arrays
                  if A.dtype == np.float32 and len({B.dtype for B in arrays}) > 1)
    biggest = dims if 3 * 8 * sum(dims) ** 2 <= FUSED_GRAM_BYTES else sorted(dims)[-2:]
    return widened + _memory.gram_bytes(n, biggest, n_threads=req.threads), work


def _run(req, job):
    arrays = req.arrays
    if req.cka_kernel == "rbf":
        req.params["global_dtype"] = np.result_type(*[A.dtype for A in arrays]).name
    with job.stage(_plan(req)[1]) as cb:
        values, resolved = cka_matrix(arrays, req.labels, kernel=req.cka_kernel,
                                      sigmas=req.sigmas, unbiased=req.unbiased,
                                      n_threads=req.n_threads, seed=req.seed, progress=cb)
    if resolved is not None:
        req.params["sigma"] = dict(zip(req.names, resolved))
    return {"cka": values}


MATRIX_STAGE = MatrixStage(metrics=("cka",), per_model=False, graph_input=False,
                           min_rows=_min_rows, plan=_plan, run=_run)


def cka(X, Y, *, kernel="linear", sigma=None, unbiased=False, n_threads=0, progress=False,
        seed=0, device="auto", eps=0.0) -> float:
    """Centred kernel alignment between two embedding spaces of the same N structures.

    CKA = HSIC(K, L) / √(HSIC(K, K)·HSIC(L, L)) with K, L the kernels of X and Y (definitions: docs/METRICS.md):

    - biased (default): HSIC₀(K, L) = tr(KHLH)/(N−1)², H = I − 11ᵀ/N;
    - ``unbiased=True``: HSIC₁ of Song et al. (2012) on the kernels with zeroed diagonals,
      [Σ K̃∘L̃ + (ΣK̃)(ΣL̃)/((N−1)(N−2)) − 2·Σ_i rowsum(K̃)_i·rowsum(L̃)_i/(N−2)] / (N(N−3)).

    ``kernel="linear"`` (K = XXᵀ) is computed in feature space from the column-centred X̄, Ȳ:
    biased CKA = ‖X̄ᵀȲ‖²_F / (‖X̄ᵀX̄‖_F·‖ȲᵀȲ‖_F), and the unbiased one from ‖X̄ᵀȲ‖²_F, row norms
    and column sums. X and Y are read in row blocks (at most 65536 rows, upcast to float64), so
    ``np.memmap`` inputs larger than RAM work; time O(N·(D1+D2)²), memory O((D1+D2)²).

    ``kernel="rbf"``: K_ij = exp(−‖x_i − x_j‖²/(2σ_X²)), L likewise with σ_Y, summed over all
    pairs in one streaming pass of the engine (O(N²·(D1+D2)) time, O(N) memory).

    Parameters
    ----------
    X, Y : array_like (N, D1) and (N, D2), float32 or float64
        Embeddings; row i of both is the same structure. For the RBF kernel, if one is float32
        and the other float64 the float32 one is widened to float64 (exact; a copy).
    kernel : {"linear", "rbf"}, default "linear"
        The kernel.
    sigma : float, "median", None or a pair of them, default None
        RBF bandwidth; ignored by the linear kernel. A number applies to both spaces; a pair
        ``(sigma_X, sigma_Y)`` sets each. ``"median"`` (and None) picks, per space, the median
        Euclidean distance between rows: exact over all pairs when N(N−1)/2 <= 100000, else
        over 100000 pairs i != j drawn with ``np.random.default_rng(seed)`` (the same pairs for
        both spaces; see :func:`matalign.metrics.median_distance`).
    unbiased : bool, default False
        Use HSIC₁ (needs N >= 4) instead of HSIC₀. The unbiased CKA can be negative.
    n_threads : int, default 0
        Engine threads for the RBF kernel (0 = all cores). The linear kernel runs on NumPy's
        BLAS, whose thread count its own settings control.
    progress : bool or callable(done, total), default False
        True shows a progress bar; a callable is called between blocks/tiles.
    seed : int, default 0
        Seed of the pair sample of ``sigma="median"``.
    eps : float, default 0.0
        Added to the denominator: CKA = HSIC(K, L) / (√(HSIC(K, K)·HSIC(L, L)) + eps).
        ``eps=1e-6`` with ``unbiased=True`` reproduces the reference code's unbiased CKA
        (as ``cknna(eps=1e-6)`` does for CKNNA); 0 is the exact ratio.
    device : {"auto", "cpu", "cuda", "cuda:N"}, default "auto"
        Where the RBF kernel's pass over the pairs runs (rules in ``matalign._device``; GPU
        input is read in place). The linear kernel always runs on the CPU (it is O(N·D²) in
        feature space): GPU input is then copied to the host.

    Returns
    -------
    float
        The CKA value: 1 for spaces equal up to rotation and isotropic scaling (linear kernel).

    Raises
    ------
    TypeError
        For a dtype other than float32/float64, or a non-numeric option.
    ValueError
        For NaN/Inf (naming the first bad row), N mismatch, N < 2 (N < 4 with
        ``unbiased=True``), a constant X or Y (zero variance), a non-positive self-HSIC, an
        unknown kernel, or a sigma that is not positive.

    Examples
    --------
    >>> import numpy as np
    >>> import matalign as ma
    >>> rng = np.random.default_rng(0)
    >>> X = rng.normal(size=(300, 8))
    >>> Q, _ = np.linalg.qr(rng.normal(size=(8, 8)))
    >>> print(f"{ma.cka(X, 2.0 * X @ Q + 1.0):.6f}")     # rotation, scaling, shift
    1.000000
    >>> Z = rng.normal(size=(300, 8))
    >>> print(f"{ma.cka(X, Z, unbiased=True):.3f}")       # independent: about 0
    -0.006
    >>> print(f"{ma.cka(X, X + 0.1 * Z, kernel='rbf', sigma='median'):.3f}")
    0.990
    """
    kernel = check_choice(kernel, "kernel", KERNELS)
    unbiased = check_bool(unbiased, "unbiased")
    eps = check_eps(eps)
    n_threads = check_threads(n_threads)
    progress = check_progress(progress)
    seed = check_int(seed, "seed", 0)
    if kernel == "rbf":
        _parse_sigma(sigma)  # validate before any work
    check_same_structures((("X", X), ("Y", Y)))
    dev = _device.resolve(device, X, Y)
    if kernel == "linear" and dev.is_cuda:
        X = _device.to_host(_device.matrix(X, "X", dev))
        Y = _device.to_host(_device.matrix(Y, "Y", dev))
        dev = _device.Device("cpu")
    X = _device.matrix(X, "X", dev) if dev.is_cuda else as_matrix(X, "X", scan=False)
    Y = _device.matrix(Y, "Y", dev) if dev.is_cuda else as_matrix(Y, "Y", scan=False)
    n = check_same_n(X, Y)
    if unbiased and n < 4:
        raise too_few_rows("cka(unbiased=True)", n, 4, "the unbiased HSIC divides by N - 3")
    if n < 2:
        raise too_few_rows("cka", n, 2, "the biased HSIC divides by (N - 1)^2")
    what = f"cka(N={n}, kernel={kernel!r})"
    if kernel == "linear":
        need = _memory.gram_bytes(n, [X.shape[1], Y.shape[1]],
                                  n_threads=_memory.threads(n_threads))
        advice = ("it holds (D1+D2)² float64 sums and blocks of rows in float64: reduce the "
                  "dimensions (e.g. PCA) first")
    else:
        need = pair_sums_memory([X, Y], n_threads, dev) + 2 * MEDIAN_PAIRS * 8
        advice = ("pass X and Y in one dtype (a float32 input is widened to a float64 copy "
                  "otherwise), or fewer n_threads")
    _memory.check_memory(need, what, advice=advice)
    for A, name in ((X, "X"), (Y, "Y")):
        if isinstance(A, np.ndarray):
            check_values(A, name)  # after the memory check: it reads the data
    label = f"{'linear' if kernel == 'linear' else 'RBF'} CKA N={n}"
    with _memory.reraise(what, need), progress_callback(progress, label) as callback:
        if kernel == "linear":
            values = _linear_values([X, Y], ["X", "Y"], unbiased, n_threads, callback, eps)
        else:
            values, _ = _rbf_values([X, Y], ["X", "Y"], list(_parse_sigma(sigma)), unbiased,
                                    n_threads, seed, callback, dev, eps)
    return float(values[0, 1])
