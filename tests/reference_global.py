"""Dense float64 references of the global metrics, written from docs/METRICS.md.

CKA (linear and RBF, HSIC0 and HSIC1), distance correlation (double-centred and U-centred),
information imbalance (full rank matrices) and the PairSums / RankCount reducers. Every
function builds the N x N matrices explicitly and states the math; nothing is taken from the
package under test or from another library. For float32 inputs pass the float32 array itself:
everything is upcast to float64 first.
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "as_f64",
    "sq_distances",
    "distances",
    "linear_kernel",
    "rbf_kernel",
    "hsic0",
    "hsic1",
    "cka",
    "median_distance_all_pairs",
    "double_centre",
    "u_centre",
    "dcor",
    "u_dcor_sqr",
    "knn_order",
    "rank_matrix",
    "information_imbalance",
    "pair_sums",
    "rank_count",
]


def as_f64(X) -> np.ndarray:
    """C-ordered float64 copy (exact for float32 input)."""
    return np.array(X, dtype=np.float64, order="C", copy=True)


def sq_distances(X) -> np.ndarray:
    """N x N squared Euclidean distances from explicit differences (no norm expansion)."""
    X = as_f64(X)
    diff = X[:, None, :] - X[None, :, :]
    return np.einsum("ijk,ijk->ij", diff, diff)


def distances(X) -> np.ndarray:
    """N x N Euclidean distances."""
    return np.sqrt(sq_distances(X))


def linear_kernel(X) -> np.ndarray:
    """K = X Xᵀ."""
    X = as_f64(X)
    return X @ X.T


def rbf_kernel(X, sigma: float) -> np.ndarray:
    """K_ij = exp(−‖x_i − x_j‖² / (2σ²))."""
    return np.exp(-sq_distances(X) / (2.0 * sigma * sigma))


def hsic0(K, L) -> float:
    """Biased HSIC: tr(K H L H) / (N − 1)², H = I − 11ᵀ/N."""
    n = K.shape[0]
    H = np.eye(n) - np.ones((n, n)) / n
    return float(np.trace(K @ H @ L @ H)) / (n - 1) ** 2


def hsic1(A, B) -> float:
    """Unbiased HSIC (Song et al. 2012), docs/METRICS.md, with the transposed first term:
    [Σ_ij Ã_ij B̃_ji + (ΣÃ)(ΣB̃)/((N−1)(N−2)) − 2·Σ(ÃB̃)/(N−2)] / (N(N−3))."""
    n = A.shape[0]
    At = np.array(A, dtype=np.float64)
    Bt = np.array(B, dtype=np.float64)
    np.fill_diagonal(At, 0.0)
    np.fill_diagonal(Bt, 0.0)
    term1 = float(np.sum(At * Bt.T))
    term2 = float(At.sum() * Bt.sum()) / ((n - 1) * (n - 2))
    term3 = 2.0 * float(np.sum(At @ Bt)) / (n - 2)
    return (term1 + term2 - term3) / (n * (n - 3))


def cka(X, Y, *, kernel="linear", sigma=None, unbiased=False) -> float:
    """CKA = HSIC(K,L)/√(HSIC(K,K)·HSIC(L,L)); sigma: a number or a pair (σ_X, σ_Y)."""
    if kernel == "linear":
        K, L = linear_kernel(X), linear_kernel(Y)
    else:
        sx, sy = sigma if isinstance(sigma, (tuple, list)) else (sigma, sigma)
        K, L = rbf_kernel(X, sx), rbf_kernel(Y, sy)
    h = hsic1 if unbiased else hsic0
    return h(K, L) / np.sqrt(h(K, K) * h(L, L))


def median_distance_all_pairs(X) -> float:
    """Median of ‖x_i − x_j‖ over all pairs i < j."""
    D = distances(X)
    i, j = np.triu_indices(D.shape[0], 1)
    return float(np.median(D[i, j]))


def double_centre(a) -> np.ndarray:
    """A_ij = a_ij − ā_i· − ā_·j + ā_·· (Székely et al. 2007)."""
    return a - a.mean(axis=0, keepdims=True) - a.mean(axis=1, keepdims=True) + a.mean()


def u_centre(a) -> np.ndarray:
    """Ã_ij = a_ij − a_i·/(N−2) − a_·j/(N−2) + a_··/((N−1)(N−2)) for i ≠ j, Ã_ii = 0
    (Székely & Rizzo 2014)."""
    n = a.shape[0]
    u = (a - a.sum(axis=0, keepdims=True) / (n - 2) - a.sum(axis=1, keepdims=True) / (n - 2)
         + a.sum() / ((n - 1) * (n - 2)))
    np.fill_diagonal(u, 0.0)
    return u


def dcor(X, Y) -> float:
    """Biased distance correlation, not squared: √(dCov²(X,Y)/√(dCov²(X,X)·dCov²(Y,Y))) with
    dCov²ₙ = mean(A∘B) of the double-centred distance matrices."""
    A, B = double_centre(distances(X)), double_centre(distances(Y))
    v_xy, v_xx, v_yy = np.mean(A * B), np.mean(A * A), np.mean(B * B)
    return float(np.sqrt(max(v_xy / np.sqrt(v_xx * v_yy), 0.0)))


def u_dcor_sqr(X, Y) -> float:
    """Bias-corrected dCor² with dCov²_U = Σ_{i≠j} Ã_ij B̃_ij / (N(N−3))."""
    n = np.shape(X)[0]
    A, B = u_centre(distances(X)), u_centre(distances(Y))
    c = n * (n - 3)
    v_xy, v_xx, v_yy = np.sum(A * B) / c, np.sum(A * A) / c, np.sum(B * B) / c
    return float(v_xy / np.sqrt(v_xx * v_yy))


def knn_order(X) -> np.ndarray:
    """N x (N−1): for each i, the other rows ordered by (Euclidean distance, index)."""
    D = sq_distances(X)
    n = D.shape[0]
    out = np.empty((n, n - 1), dtype=np.int64)
    idx = np.arange(n)
    for i in range(n):
        others = idx[idx != i]
        order = np.lexsort((others, D[i, others]))
        out[i] = others[order]
    return out


def rank_matrix(Y) -> np.ndarray:
    """R[i, j] = rank_Y(i, j) = 1 + #{l ≠ i: d(i,l) < d(i,j)} + #{l ≠ i: d(i,l) = d(i,j), l < j};
    R[i, i] = 0."""
    order = knn_order(Y)
    n = order.shape[0]
    R = np.zeros((n, n), dtype=np.int64)
    rows = np.repeat(np.arange(n), n - 1)
    R[rows, order.ravel()] = np.tile(np.arange(1, n), n)
    return R


def information_imbalance(X, Y, k: int = 1):
    """(Δ(X→Y), Δ(Y→X)), Δ(A→B) = (2/N)·mean over i and the k nearest j of i in A of
    rank_B(i, j)."""
    n = np.shape(X)[0]

    def delta(A, B):
        nn = knn_order(A)[:, :k]
        R = rank_matrix(B)
        return 2.0 * float(np.mean(np.take_along_axis(R, nn, axis=1))) / n

    return delta(X, Y), delta(Y, X)


def pair_sums(spaces, fn: str, gamma=None):
    """(rowsums (M, N), cross (M, M)) over the pairs i ≠ j of f_m = distance or
    exp(−γ_m d²)."""
    mats = []
    for m, S in enumerate(spaces):
        d2 = sq_distances(S)
        F = np.sqrt(d2) if fn == "distance" else np.exp(-gamma[m] * d2)
        np.fill_diagonal(F, 0.0)
        mats.append(F)
    rowsums = np.stack([F.sum(axis=1) for F in mats])
    cross = np.array([[float(np.sum(Fa * Fb)) for Fb in mats] for Fa in mats])
    return rowsums, cross


def rank_count(y, targets) -> np.ndarray:
    """counts[i, t] = rank_y(i, targets[i, t]) − 1."""
    R = rank_matrix(y)
    return np.take_along_axis(R, np.asarray(targets), axis=1) - 1
