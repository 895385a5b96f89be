"""Centred kernel alignment (CKA), linear and RBF, biased and unbiased (DESIGN.md §2).

(The module is not called ``cka`` so that it does not clash with the function
``matalign.metrics.cka``.)

Linear CKA runs in feature space over streamed row blocks: O(N·(D1+D2)²) time, O((D1+D2)²)
memory, never an N×N matrix, so a ``np.memmap`` larger than RAM works. RBF CKA is one pass of
the engine's PairSums reducer over all pairs: O(N) memory.
"""

from __future__ import annotations

import numbers

import numpy as np

from .. import _core
from .. import _device
from .. import _memory
from .._progress import progress_callback
from .._validate import check_same_structures
from .._validate import (check_threads, as_matrix, check_bool, check_choice, check_int, check_progress,
                         check_same_n, describe)
from ._global import (block_rows, column_stats, constant_error, is_constant, pair_sums,
                      pair_sums_memory, too_few_rows)

__all__ = ["cka", "median_distance"]

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


def _ratio(h_xy, h_xx, h_yy, what: str) -> float:
    """CKA from (value, magnitude) pairs; a self-HSIC that is not clearly positive raises."""
    for (h, scale), name in ((h_xx, "X"), (h_yy, "Y")):
        if not h > ZERO_HSIC_RTOL * scale:
            raise ValueError(
                f"cka is undefined: the {what} HSIC of {name} with itself is {h:.3g} (zero or "
                f"negative next to its terms of size {scale:.3g}), so the denominator "
                f"sqrt(HSIC(K,K)·HSIC(L,L)) is not positive; {name} carries no usable "
                f"variance for this estimator")
    return float(h_xy[0] / np.sqrt(h_xx[0] * h_yy[0]))


SHIFT_ROWS = 4096  # rows whose mean shifts the data before the engine's Gram pass


def _linear_biased_engine(X, Y, n_threads: int, progress) -> float:
    """Biased linear CKA from the engine's one-pass float64 Gram of [X | Y] (gram.cpp).

    The rows are shifted by the mean of the first ``SHIFT_ROWS`` rows, so the centred Gram
    G − s·sᵀ/N (s the shifted column sums) is free of cancellation; the exact constancy test
    comes out of the same pass.
    """
    n, d1 = X.shape
    head = slice(0, min(n, SHIFT_ROWS))
    shift = np.concatenate([np.asarray(X[head]).mean(axis=0, dtype=np.float64),
                            np.asarray(Y[head]).mean(axis=0, dtype=np.float64)])
    fn = _core.shifted_gram_f32 if X.dtype == np.float32 else _core.shifted_gram_f64
    with progress_callback(progress, f"linear CKA N={n}") as callback:
        gram, colsum, constant = fn([X, Y], np.ascontiguousarray(shift), n_threads=n_threads,
                                    progress=callback)
    if constant[:d1].all():
        raise constant_error("X", n, "CKA")
    if constant[d1:].all():
        raise constant_error("Y", n, "CKA")
    C = gram - np.outer(colsum, colsum) / n
    h_xy = float(np.sum(C[:d1, d1:] ** 2))
    h_xx = float(np.sum(C[:d1, :d1] ** 2))
    h_yy = float(np.sum(C[d1:, d1:] ** 2))
    return _ratio((h_xy, h_xy), (h_xx, h_xx), (h_yy, h_yy), "biased")


def _linear(X, Y, unbiased: bool, progress) -> float:
    n, d1 = X.shape
    d2 = Y.shape[1]
    step = block_rows(d1, d2)
    total_work = 2 * n
    with progress_callback(progress, f"linear CKA N={n}") as callback:
        # Pass 1: column means and exact constancy test.
        sx, const_x = column_stats(X, step)
        if callback is not None:
            callback(n // 2, total_work)
        sy, const_y = column_stats(Y, step)
        if callback is not None:
            callback(n, total_work)
        if const_x:
            raise constant_error("X", n, "CKA")
        if const_y:
            raise constant_error("Y", n, "CKA")
        mx, my = sx / n, sy / n
        # Pass 2: products of the centred blocks (float64). Centring first keeps the sums free
        # of the cancellation that ‖XᵀY‖² − ... would suffer on uncentred data; HSIC₁ is
        # unchanged by it (U-centring removes every additive row/column effect of the kernel).
        cxy = np.zeros((d1, d2))
        cxx = np.zeros((d1, d1))
        cyy = np.zeros((d2, d2))
        if unbiased:
            sxc, syc = np.zeros(d1), np.zeros(d2)
            u_x, u_y = np.zeros(d1), np.zeros(d2)   # Σ x_i‖y_i‖², Σ y_i‖x_i‖²
            w_x, w_y = np.zeros(d1), np.zeros(d2)   # Σ x_i‖x_i‖², Σ y_i‖y_i‖²
            nx_sum = ny_sum = nxy = nxx = nyy = 0.0
        for start in range(0, n, step):
            xb = X[start:start + step].astype(np.float64)  # always a copy: centred in place
            yb = Y[start:start + step].astype(np.float64)
            xb -= mx
            yb -= my
            cxy += xb.T @ yb
            cxx += xb.T @ xb
            cyy += yb.T @ yb
            if unbiased:
                nx = np.einsum("ij,ij->i", xb, xb)
                ny = np.einsum("ij,ij->i", yb, yb)
                sxc += xb.sum(axis=0)
                syc += yb.sum(axis=0)
                u_x += ny @ xb
                u_y += nx @ yb
                w_x += nx @ xb
                w_y += ny @ yb
                nx_sum += float(nx.sum())
                ny_sum += float(ny.sum())
                nxy += float(nx @ ny)
                nxx += float(nx @ nx)
                nyy += float(ny @ ny)
            if callback is not None:
                callback(n + min(n, start + step), total_work)

    if not unbiased:
        # HSIC₀ ∝ ‖X̄ᵀȲ‖²_F; the common factor 1/(N−1)² cancels in the ratio.
        h_xy = float(np.sum(cxy * cxy))
        h_xx = float(np.sum(cxx * cxx))
        h_yy = float(np.sum(cyy * cyy))
        return _ratio((h_xy, h_xy), (h_xx, h_xx), (h_yy, h_yy), "biased")

    # K̃ = XXᵀ with zeroed diagonal: Σ K̃∘L̃ = ‖XᵀY‖² − Σ‖x_i‖²‖y_i‖², ΣK̃ = ‖Σx‖² − Σ‖x_i‖²,
    # rowsum_i(K̃) = x_i·Σx − ‖x_i‖², hence Σ_i rowsum_i(K̃)·rowsum_i(L̃) below.
    s_k = float(sxc @ sxc) - nx_sum
    s_l = float(syc @ syc) - ny_sum
    fxy, fxx, fyy = float(np.sum(cxy * cxy)), float(np.sum(cxx * cxx)), float(np.sum(cyy * cyy))
    q_xy = (float(sxc @ cxy @ syc), float(sxc @ u_x), float(syc @ u_y))
    q_xx = (float(sxc @ cxx @ sxc), 2.0 * float(sxc @ w_x))
    q_yy = (float(syc @ cyy @ syc), 2.0 * float(syc @ w_y))
    h_xy = _hsic1(fxy - nxy, s_k, s_l, q_xy[0] - q_xy[1] - q_xy[2] + nxy, n)
    h_xx = _hsic1(fxx - nxx, s_k, s_k, q_xx[0] - q_xx[1] + nxx, n,
                  mag1=fxx + nxx, mag3=abs(q_xx[0]) + abs(q_xx[1]) + nxx)
    h_yy = _hsic1(fyy - nyy, s_l, s_l, q_yy[0] - q_yy[1] + nyy, n,
                  mag1=fyy + nyy, mag3=abs(q_yy[0]) + abs(q_yy[1]) + nyy)
    return _ratio(h_xy, h_xx, h_yy, "unbiased")


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
        raise too_few_rows("median_distance", n, 2, "a pair of rows")
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


def _rbf(X, Y, unbiased: bool, sigma, n_threads: int, progress, seed: int, dev=None) -> float:
    n = X.shape[0]
    for A, name in ((X, "X"), (Y, "Y")):
        # (GPU input: a constant matrix is caught by the self-HSIC test of _ratio.)
        if isinstance(A, np.ndarray) and is_constant(A):
            raise constant_error(name, n, "RBF CKA")
    s_x, s_y = _parse_sigma(sigma)
    if "median" in (s_x, s_y):
        i, j = _sample_pairs(n, MEDIAN_PAIRS, seed)
    sigmas = []
    for s, A, name in ((s_x, X, "X"), (s_y, Y, "Y")):
        if s == "median":
            rows = _device.HostRows(A) if isinstance(A, _device.DeviceMatrix) else A
            s = float(np.median(_pair_distances(rows, i, j)))
            if not s > 0.0:
                raise ValueError(
                    f"sigma='median' gives 0 for {name}: more than half of the sampled pairs of "
                    f"rows are duplicates; pass sigma explicitly")
        sigmas.append(s)
    gamma = [1.0 / (2.0 * s * s) for s in sigmas]
    r, c = pair_sums(X, Y, "rbf", gamma, n_threads, progress, f"RBF CKA N={n}", device=dev)
    if unbiased:
        # Zero-diagonal kernels: exactly what the reducer sums (i != j).
        s_k, s_l = float(r[0].sum()), float(r[1].sum())
        h_xy = _hsic1(c[0, 1], s_k, s_l, float(r[0] @ r[1]), n)
        h_xx = _hsic1(c[0, 0], s_k, s_k, float(r[0] @ r[0]), n)
        h_yy = _hsic1(c[1, 1], s_l, s_l, float(r[1] @ r[1]), n)
        return _ratio(h_xy, h_xx, h_yy, "unbiased")
    # Full kernels: the diagonal k(x_i, x_i) = 1 is added back to every sum.
    rk, rl = r[0] + 1.0, r[1] + 1.0
    s_k, s_l = float(rk.sum()), float(rl.sum())
    h_xy = _hsic0(c[0, 1] + n, s_k, s_l, float(rk @ rl), n)
    h_xx = _hsic0(c[0, 0] + n, s_k, s_k, float(rk @ rk), n)
    h_yy = _hsic0(c[1, 1] + n, s_l, s_l, float(rl @ rl), n)
    return _ratio(h_xy, h_xx, h_yy, "biased")


def cka(X, Y, *, kernel="linear", sigma=None, unbiased=False, n_threads=0, progress=False,
        seed=0, device="auto") -> float:
    """Centred kernel alignment between two embedding spaces of the same N structures.

    CKA = HSIC(K, L) / √(HSIC(K, K)·HSIC(L, L)) with K, L the kernels of X and Y (DESIGN.md §2):

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
    X = _device.matrix(X, "X", dev) if dev.is_cuda else as_matrix(X, "X")
    Y = _device.matrix(Y, "Y", dev) if dev.is_cuda else as_matrix(Y, "Y")
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
        need = pair_sums_memory(X, Y, n_threads, dev) + 2 * MEDIAN_PAIRS * 8
        advice = ("pass X and Y in one dtype (a float32 input is widened to a float64 copy "
                  "otherwise), or fewer n_threads")
    _memory.check_memory(need, what, advice=advice)
    with _memory.reraise(what, need):
        if kernel == "linear":
            if not unbiased and X.dtype == Y.dtype:
                return _linear_biased_engine(X, Y, n_threads, progress)
            return _linear(X, Y, unbiased, progress)
        return _rbf(X, Y, unbiased, sigma, n_threads, progress, seed, dev)
