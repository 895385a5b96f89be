"""Dense float64 reference implementations, written from docs/METRICS.md.

Every function here is deliberately small, dense (N x N) and slow: it states the
math and nothing else. The tests compare the engine against these. Nothing here
is taken from another library; ``cknna_platonic`` is a second, independent
restatement (in torch) of the platonic-rep algorithm described in
bench/README.md section 1.2, used to cross-check the CKNNA definition.

For float32 inputs, callers pass the float32 array itself: every function here
upcasts to float64 first, so the reference is built from the float32-rounded
values.
"""

from __future__ import annotations

import warnings

import numpy as np

__all__ = [
    "as_f64",
    "l2_normalize",
    "pairwise_scores",
    "knn",
    "mutual_knn",
    "local_agreement",
    "knn_masks",
    "hsic1",
    "cknna",
    "cknna_platonic",
    "two_nn_ratios",
    "twonn_id",
    "mle_id",
    "preprocess",
    "knn_tolerance",
    "assert_knn_equal",
]

_METRICS = ("ip", "l2", "cosine")


def as_f64(X) -> np.ndarray:
    """Upcast to a C-ordered float64 copy (exact for float32 input)."""
    return np.array(X, dtype=np.float64, order="C", copy=True)


def l2_normalize(X) -> np.ndarray:
    """Rows divided by their Euclidean norm, in float64."""
    X = as_f64(X)
    return X / np.sqrt((X * X).sum(axis=1, keepdims=True))


def pairwise_scores(X, metric: str, queries=None) -> np.ndarray:
    """Dense (M, N) matrix of the kNN quantity between queries and rows of X.

    ip / cosine: inner products (bigger is better); l2: squared Euclidean
    distances computed from explicit differences (no norm-expansion
    cancellation), chunked so memory stays bounded.
    """
    if metric not in _METRICS:
        raise ValueError(f"unknown metric {metric!r}")
    X = l2_normalize(X) if metric == "cosine" else as_f64(X)
    if queries is None:
        Q = X
    else:
        Q = l2_normalize(queries) if metric == "cosine" else as_f64(queries)
    if metric in ("ip", "cosine"):
        return Q @ X.T
    n, d = X.shape
    out = np.empty((Q.shape[0], n))
    step = max(1, (1 << 22) // max(1, n * d))
    for s in range(0, Q.shape[0], step):
        diff = Q[s : s + step, None, :] - X[None, :, :]
        out[s : s + step] = np.einsum("ijk,ijk->ij", diff, diff)
    return out


def knn(X, k: int, metric: str = "ip", queries=None):
    """Exact kNN: (values (M, k) float64, indices (M, k) int64).

    Best value first (largest ip/cosine, smallest squared l2); ties broken by
    the lower index. Without ``queries`` this is the self graph, and row i's own
    index i is excluded (by index, not by value, so a duplicate row is still a
    neighbour). With ``queries`` nothing is excluded.
    """
    S = pairwise_scores(X, metric, queries)
    m, n = S.shape
    if not 1 <= k <= (n - 1 if queries is None else n):
        raise ValueError(f"k={k} outside the valid range for N={n}")
    key = -S if metric in ("ip", "cosine") else S.copy()  # smaller key = better
    col = np.broadcast_to(np.arange(n), (m, n))
    if queries is None:
        is_self = col == np.arange(m)[:, None]
    else:
        is_self = np.zeros((m, n), dtype=bool)
    # np.lexsort: the LAST key is the primary one. Stable, so the order is
    # (not-self first, then best key, then lower index).
    order = np.lexsort((col, key, is_self), axis=-1)
    idx = order[:, :k].astype(np.int64)
    vals = np.take_along_axis(S, idx, axis=1)
    return vals, idx


def _overlap(idx_a, idx_b) -> np.ndarray:
    """|row_a ∩ row_b| for every row."""
    return np.array(
        [len(set(a.tolist()) & set(b.tolist())) for a, b in zip(idx_a, idx_b, strict=True)],
        dtype=np.float64,
    )


def local_agreement(X, Y, k: int, metric: str = "ip", *, idx_x=None, idx_y=None):
    """Per-structure |knn_X(i) ∩ knn_Y(i)| / k, shape (N,) float64."""
    if idx_x is None:
        idx_x = knn(X, k, metric)[1]
    if idx_y is None:
        idx_y = knn(Y, k, metric)[1]
    idx_x, idx_y = np.asarray(idx_x)[:, :k], np.asarray(idx_y)[:, :k]
    return _overlap(idx_x, idx_y) / k


def mutual_knn(X, Y, k: int, metric: str = "ip", *, idx_x=None, idx_y=None) -> float:
    """(1/N) Σ_i |knn_X(i) ∩ knn_Y(i)| / k."""
    return float(np.mean(local_agreement(X, Y, k, metric, idx_x=idx_x, idx_y=idx_y)))


def knn_masks(idx: np.ndarray, n: int) -> np.ndarray:
    """Dense 0/1 row mask M[i, j] = 1[j in idx[i]] (not symmetric)."""
    M = np.zeros((n, n))
    M[np.arange(idx.shape[0])[:, None], idx] = 1.0
    return M


def hsic1(A, B) -> float:
    """Unbiased HSIC of Song et al. 2012, exactly as docs/METRICS.md writes it.

    HSIC1(A, B) = [ Σ_ij Ã_ij B̃_ji + (ΣÃ)(ΣB̃)/((N-1)(N-2)) - 2 Σ(ÃB̃)/(N-2) ] / (N(N-3))
    with Ã, B̃ the matrices with zeroed diagonal, Σ(ÃB̃) = Σ_j colsum(Ã)_j rowsum(B̃)_j.
    """
    A = as_f64(A)
    B = as_f64(B)
    n = A.shape[0]
    np.fill_diagonal(A, 0.0)
    np.fill_diagonal(B, 0.0)
    first = float(np.sum(A * B.T))
    second = float(A.sum() * B.sum() / ((n - 1) * (n - 2)))
    third = float(2.0 * np.dot(A.sum(axis=0), B.sum(axis=1)) / (n - 2))
    return (first + second - third) / (n * (n - 3))


def cknna(X, Y, k: int, eps: float = 0.0, *, idx_x=None, idx_y=None) -> float:
    """CKNNA with dense masks (docs/METRICS.md).

    K = XXᵀ, L = YYᵀ, Mᴷ / Mᴸ the row kNN masks (largest inner product, self
    excluded), M = Mᴷ∘Mᴸ, CKNNA = HSIC1(M∘K, M∘L) / (sqrt(HSIC1(Mᴷ∘K, Mᴷ∘K)
    HSIC1(Mᴸ∘L, Mᴸ∘L)) + eps). ``idx_x`` / ``idx_y`` let a caller supply
    the neighbour lists (e.g. a float32 graph already checked tie-aware).
    """
    X = as_f64(X)
    Y = as_f64(Y)
    n = X.shape[0]
    if idx_x is None:
        idx_x = knn(X, k, "ip")[1]
    if idx_y is None:
        idx_y = knn(Y, k, "ip")[1]
    MK = knn_masks(np.asarray(idx_x)[:, :k], n)
    ML = knn_masks(np.asarray(idx_y)[:, :k], n)
    K = X @ X.T
    L = Y @ Y.T
    M = MK * ML
    num = hsic1(M * K, M * L)
    den = np.sqrt(hsic1(MK * K, MK * K) * hsic1(ML * L, ML * L)) + eps
    return float(num / den)


def cknna_platonic(X, Y, k: int, eps: float = 1e-6) -> float:
    """Second, independent CKNNA: the platonic-rep algorithm restated in torch (CPU).

    Dense Gram matrices, diagonal set to -inf before ``torch.topk`` (self
    excluded), one-hot row masks built with ``scatter``, unbiased HSIC whose
    first term is ``trace(K̃ L̃)`` (= Σ K̃_ij L̃_ji) and whose cross term is
    a full dense matrix product, as the reference script computes it, and the
    denominator ``sqrt(sim(K,K) sim(L,L)) + eps``. torch's topk breaks ties
    its own way, so use tie-free data with this function.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import torch

    A = torch.from_numpy(as_f64(X))
    B = torch.from_numpy(as_f64(Y))
    K = A @ A.T
    L = B @ B.T

    def _topk_mask(G):
        Gh = G.clone()
        Gh.fill_diagonal_(float("-inf"))
        _, idx = torch.topk(Gh, k, dim=1)
        return torch.zeros_like(G).scatter_(1, idx, 1.0)

    def _hsic_unbiased(Kx, Lx):
        m = Kx.shape[0]
        Kt = Kx.clone().fill_diagonal_(0.0)
        Lt = Lx.clone().fill_diagonal_(0.0)
        t1 = torch.trace(Kt @ Lt)
        t2 = Kt.sum() * Lt.sum() / ((m - 1) * (m - 2))
        t3 = 2.0 * torch.sum(Kt @ Lt) / (m - 2)
        return (t1 + t2 - t3) / (m * (m - 3))

    def _sim(Kx, Lx):
        mask = _topk_mask(Kx) * _topk_mask(Lx)
        return _hsic_unbiased(mask * Kx, mask * Lx)

    s_kl = _sim(K, L)
    s_kk = _sim(K, K)
    s_ll = _sim(L, L)
    return float((s_kl / (torch.sqrt(s_kk * s_ll) + eps)).item())


def two_nn_ratios(X):
    """(r1, r2) per row: Euclidean distances to the 1st and 2nd neighbour, self excluded by index."""
    vals, _ = knn(X, 2, "l2")
    return np.sqrt(vals[:, 0]), np.sqrt(vals[:, 1])


def _log_mu(X):
    r1, r2 = two_nn_ratios(X)
    keep = r1 > 0  # rows with a duplicate (r1 == 0) are excluded
    return np.log(r2[keep] / r1[keep]), int((~keep).sum())


def twonn_id(X, fraction: float = 0.9) -> float:
    """TwoNN (Facco et al. 2017), as docs/METRICS.md and DADApy compute_id_2NN.

    μ_i = r2/r1; rows with r1 = 0 are dropped and N is the number kept; sort
    log μ ascending, keep the first n = floor(fraction N), y_i = -log(1 - i/N)
    (i = 1..n), d = Σxy / Σx² (least squares through the origin).
    """
    log_mu, _ = _log_mu(X)
    n_rows = log_mu.shape[0]
    n = int(np.floor(fraction * n_rows))
    x = np.sort(log_mu)[:n]
    i = np.arange(1, n + 1, dtype=np.float64)
    y = -np.log(1.0 - i / n_rows)
    return float(np.dot(x, y) / np.dot(x, x))


def mle_id(X) -> float:
    """Maximum-likelihood TwoNN: d = (N - 1) / Σ log μ_i (duplicates dropped)."""
    log_mu, _ = _log_mu(X)
    return float((log_mu.shape[0] - 1) / log_mu.sum())


def preprocess(X, center: bool = False, l2: bool = False, clip_quantile=None) -> np.ndarray:
    """Reference preprocessing, in this order: centre columns, clamp |x| at the
    global ``clip_quantile`` quantile of |x| (linear interpolation), L2-normalise rows."""
    X = as_f64(X)
    if center:
        X = X - X.mean(axis=0, keepdims=True)
    if clip_quantile is not None:
        q = np.quantile(np.abs(X), clip_quantile)
        X = np.clip(X, -q, q)
    if l2:
        norms = np.sqrt((X * X).sum(axis=1, keepdims=True))
        if np.any(norms == 0):
            raise ValueError(f"zero rows {np.flatnonzero(norms[:, 0] == 0).tolist()}")
        X = X / norms
    return X


# ---------------------------------------------------------------------------
# comparison helpers
# ---------------------------------------------------------------------------


def knn_tolerance(X, metric: str, queries=None):
    """(rtol, atol) for kNN values of ``X``'s dtype, derived from dtype and D.

    A length-D dot product carries an error of at most ~D eps |x||y|; a squared
    distance from the norm expansion ‖x‖²+‖y‖²-2x·y is bounded by a few times
    that with |x|² replaced by the largest squared row norm. A safety factor of 8
    covers summation-order differences.
    """
    X = np.asarray(X)
    eps = float(np.finfo(X.dtype).eps)
    d = X.shape[1]
    if metric == "cosine":
        scale = 1.0
    else:
        rows = as_f64(X)
        scale = float((rows * rows).sum(axis=1).max())
        if queries is not None:
            q = as_f64(queries)
            scale = max(scale, float((q * q).sum(axis=1).max()))
    atol = 8.0 * eps * (d + 2) * scale
    if metric == "l2":
        atol *= 4.0
    return 8.0 * eps, atol


def assert_knn_equal(values, indices, ref_values, ref_indices, rtol, atol) -> None:
    """Tie-aware comparison of a kNN result with a reference.

    ``values`` / ``indices`` are (M, k). The reference must be sorted best
    first and may carry MORE columns than k (ideally every candidate): the extra
    columns let the last group of tied values be checked properly.

    1. values match the reference's first k values within ``rtol``/``atol``;
    2. each row's indices are distinct;
    3. reference positions are split into groups whose consecutive values differ
       by at most twice the tolerance (two values each off by ``tol`` may swap);
       in every group that ends before position k the returned index set equals
       the reference's; in the group that straddles position k, the returned
       indices must all belong to that (whole) reference group.
    """
    values = np.asarray(values)
    indices = np.asarray(indices)
    ref_values = np.asarray(ref_values, dtype=np.float64)
    ref_indices = np.asarray(ref_indices)
    m, k = indices.shape
    assert values.shape == (m, k), f"values shape {values.shape} != indices shape {(m, k)}"
    assert ref_values.shape[0] == m and ref_values.shape[1] >= k, (
        f"reference shape {ref_values.shape} cannot check a result of shape {(m, k)}"
    )
    v64 = values.astype(np.float64)
    np.testing.assert_allclose(v64, ref_values[:, :k], rtol=rtol, atol=atol, err_msg="kNN values differ")
    for i in range(m):
        row = indices[i].tolist()
        assert len(set(row)) == k, f"row {i}: repeated indices {row}"
        rv = ref_values[i]
        ri = ref_indices[i]
        tol = 2.0 * (atol + rtol * np.abs(rv))
        start = 0
        kr = rv.shape[0]
        while start < k:
            end = start + 1
            while end < kr and abs(rv[end] - rv[end - 1]) <= max(tol[end], tol[end - 1]):
                end += 1
            got = set(row[start : min(end, k)])
            want = set(ri[start:end].tolist())
            if end <= k:
                assert got == want, (
                    f"row {i}, positions {start}..{end - 1}: indices {sorted(got)} != reference {sorted(want)}"
                )
            else:
                assert got <= want, (
                    f"row {i}, positions {start}..{k - 1} (tie group up to {end - 1}): "
                    f"indices {sorted(got - want)} are not among the tied reference candidates"
                )
            start = end
