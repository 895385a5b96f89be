"""ma.cka (linear and RBF, biased and unbiased) against the dense references of
reference_global.py, plus the PairSums reducer's RBF mode with forced tiny tiles."""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import pytest

import matalign as ma
import reference_global as ref
from matalign import _core
from matalign.metrics import kernel_alignment as cka_module
from matalign.metrics import median_distance

DTYPES = (np.float64, np.float32)


def tol(dtype, d: int) -> float:
    """float64: 1e-10; float32: 32·eps·√D (kernel values are computed in float32)."""
    if np.dtype(dtype) == np.float64:
        return 1e-10
    return 32.0 * float(np.finfo(np.float32).eps) * math.sqrt(d)


def related(seed: int, n: int, d1: int, d2: int, dtype=np.float64):
    """X and a Y that depends on X plus noise, both zero-mean-ish."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d1))
    Y = X[:, :1] @ rng.normal(size=(1, d2)) + 0.7 * rng.normal(size=(n, d2))
    return X.astype(dtype), Y.astype(dtype)


SHAPES = [(4, 1, 1), (4, 3, 2), (5, 1, 4), (37, 33, 5), (101, 7, 12)]


@pytest.mark.parametrize("unbiased", [False, True])
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("dtype", DTYPES)
def test_linear_matches_dense_reference(shape, unbiased, dtype):
    n, d1, d2 = shape
    X, Y = related(n + d1, n, d1, d2, dtype)
    got = ma.cka(X, Y, unbiased=unbiased)
    # The linear path upcasts every block to float64: float64-accurate on float32 values too.
    assert got == pytest.approx(ref.cka(X, Y, unbiased=unbiased), abs=1e-10)


def _exact_hsic1(K, L):
    n = len(K)
    A = [[K[i][j] if i != j else Fraction(0) for j in range(n)] for i in range(n)]
    B = [[L[i][j] if i != j else Fraction(0) for j in range(n)] for i in range(n)]
    t1 = sum(A[i][j] * B[j][i] for i in range(n) for j in range(n))
    sa, sb = sum(map(sum, A)), sum(map(sum, B))
    ra = [sum(A[i]) for i in range(n)]
    rb = [sum(B[i]) for i in range(n)]
    t3 = sum(x * y for x, y in zip(ra, rb))
    return (t1 + sa * sb / ((n - 1) * (n - 2)) - Fraction(2, n - 2) * t3) / (n * (n - 3))


def test_linear_unbiased_exact_in_rationals_with_large_offset():
    # With a large common offset the uncentred N×N formula loses digits; matalign centres the
    # columns first (HSIC₁ is invariant to it), so it matches the exact rational value.
    X, Y = related(7, 6, 2, 3)
    X, Y = X + 1e3, Y - 5e2
    Xf = [[Fraction(float(v)) for v in row] for row in X]
    Yf = [[Fraction(float(v)) for v in row] for row in Y]
    K = [[sum(a * b for a, b in zip(p, q)) for q in Xf] for p in Xf]
    L = [[sum(a * b for a, b in zip(p, q)) for q in Yf] for p in Yf]
    exact = float(_exact_hsic1(K, L)) / math.sqrt(float(_exact_hsic1(K, K))
                                                   * float(_exact_hsic1(L, L)))
    assert ma.cka(X, Y, unbiased=True) == pytest.approx(exact, abs=1e-10)


@pytest.mark.parametrize("unbiased", [False, True])
def test_linear_invariances(unbiased):
    X, Y = related(1, 80, 6, 9)
    Q, _ = np.linalg.qr(np.random.default_rng(2).normal(size=(9, 9)))
    base = ma.cka(X, Y, unbiased=unbiased)
    assert ma.cka(X + 3.0, 2.5 * Y @ Q - 7.0, unbiased=unbiased) == pytest.approx(base, abs=1e-10)
    assert ma.cka(Y, X, unbiased=unbiased) == pytest.approx(base, abs=1e-12)
    assert ma.cka(X, X, unbiased=unbiased) == pytest.approx(1.0, abs=1e-12)


@pytest.mark.parametrize("unbiased", [False, True])
def test_linear_streams_row_blocks(monkeypatch, unbiased):
    # Force 7-row blocks: a ragged last block and many partial sums.
    X, Y = related(3, 53, 5, 4)
    monkeypatch.setattr(cka_module, "UNBIASED_BLOCK_ROWS", 7)
    monkeypatch.setattr(cka_module, "GRAM_BLOCK_ROWS", 7)
    assert ma.cka(X, Y, unbiased=unbiased) == pytest.approx(
        ref.cka(X, Y, unbiased=unbiased), abs=1e-10)


@pytest.mark.parametrize("kernel", ["linear", "rbf"])
def test_layouts_f_order_memmap_and_views(tmp_path, kernel):
    X, Y = related(4, 41, 6, 3)
    kw = dict(kernel=kernel, sigma=(1.7, 2.2), unbiased=True)
    base = ma.cka(X, Y, **kw)
    assert ma.cka(np.asfortranarray(X), np.asfortranarray(Y), **kw) == pytest.approx(base, abs=1e-12)
    path = tmp_path / "x.dat"
    mm = np.memmap(path, dtype=np.float64, mode="w+", shape=X.shape)
    mm[:] = X
    mm.flush()
    mm = np.memmap(path, dtype=np.float64, mode="r", shape=X.shape)
    assert ma.cka(mm, Y, **kw) == pytest.approx(base, abs=1e-12)
    Xs = np.zeros((X.shape[0], 2 * X.shape[1]))  # X as a strided view
    Xs[:, ::2] = X
    assert ma.cka(Xs[:, ::2], Y, **kw) == pytest.approx(base, abs=1e-12)


@pytest.mark.parametrize("unbiased", [False, True])
@pytest.mark.parametrize("shape", [(4, 1, 2), (37, 33, 5), (90, 3, 7)])
@pytest.mark.parametrize("dtype", DTYPES)
def test_rbf_matches_dense_reference(shape, unbiased, dtype):
    n, d1, d2 = shape
    X, Y = related(11 * n + d2, n, d1, d2, dtype)
    sigma = (1.3, 2.1)
    got = ma.cka(X, Y, kernel="rbf", sigma=sigma, unbiased=unbiased)
    want = ref.cka(X, Y, kernel="rbf", sigma=sigma, unbiased=unbiased)
    assert got == pytest.approx(want, abs=tol(dtype, max(d1, d2)))


def test_rbf_single_sigma_applies_to_both():
    X, Y = related(5, 30, 4, 4)
    assert ma.cka(X, Y, kernel="rbf", sigma=1.5) == pytest.approx(
        ref.cka(X, Y, kernel="rbf", sigma=1.5), abs=1e-10)


def test_rbf_median_sigma_is_exact_for_small_n():
    # N(N-1)/2 <= 100000: the median is over all pairs, per space.
    X, Y = related(6, 60, 5, 3)
    sx, sy = ref.median_distance_all_pairs(X), ref.median_distance_all_pairs(Y)
    assert median_distance(X) == pytest.approx(sx, rel=1e-14)
    want = ref.cka(X, Y, kernel="rbf", sigma=(sx, sy))
    assert ma.cka(X, Y, kernel="rbf", sigma="median") == pytest.approx(want, abs=1e-10)
    assert ma.cka(X, Y, kernel="rbf") == pytest.approx(want, abs=1e-10)  # None = "median"
    assert ma.cka(X, Y, kernel="rbf", sigma=("median", 0.8)) == pytest.approx(
        ref.cka(X, Y, kernel="rbf", sigma=(sx, 0.8)), abs=1e-10)


def test_median_distance_sampled_is_seeded_and_close():
    X = np.random.default_rng(8).normal(size=(700, 4))  # 244650 pairs > 100000: sampled
    exact = ref.median_distance_all_pairs(X)
    a, b = median_distance(X, seed=0), median_distance(X, seed=0)
    c = median_distance(X, seed=1)
    assert a == b
    assert a != c
    assert a == pytest.approx(exact, rel=0.02)
    assert median_distance(X, n_pairs=10**6) == pytest.approx(exact, rel=1e-14)


def test_median_distance_errors():
    with pytest.raises(ValueError, match="at least 2 rows"):
        median_distance(np.zeros((1, 3)))
    with pytest.raises(ValueError, match="n_pairs must be >= 1"):
        median_distance(np.zeros((3, 3)), n_pairs=0)


def test_rbf_mixed_dtypes_widen_float32_exactly():
    X, Y = related(9, 25, 3, 2)
    X32 = X.astype(np.float32)
    got = ma.cka(X32, Y, kernel="rbf", sigma=1.0)
    assert got == ma.cka(X32.astype(np.float64), Y, kernel="rbf", sigma=1.0)


def test_rbf_identical_and_permuted_spaces():
    X, _ = related(10, 40, 3, 3)
    assert ma.cka(X, X, kernel="rbf", sigma=1.0) == pytest.approx(1.0, abs=1e-12)
    assert ma.cka(X, X, kernel="rbf", sigma=1.0, unbiased=True) == pytest.approx(1.0, abs=1e-12)


def test_rbf_duplicate_rows():
    X, Y = related(12, 30, 3, 4)
    X[5] = X[3]
    X[17] = X[3]
    Y[8] = Y[9]
    for unbiased in (False, True):
        assert ma.cka(X, Y, kernel="rbf", sigma=1.1, unbiased=unbiased) == pytest.approx(
            ref.cka(X, Y, kernel="rbf", sigma=1.1, unbiased=unbiased), abs=1e-10)
        assert ma.cka(X, Y, unbiased=unbiased) == pytest.approx(
            ref.cka(X, Y, unbiased=unbiased), abs=1e-10)


@pytest.mark.parametrize("kernel", ["linear", "rbf"])
def test_thread_count_invariance(kernel):
    X, Y = related(13, 150, 9, 5)
    one = ma.cka(X, Y, kernel=kernel, sigma=1.0, unbiased=True, n_threads=1)
    two = ma.cka(X, Y, kernel=kernel, sigma=1.0, unbiased=True, n_threads=2)
    assert one == two


@pytest.mark.parametrize("kernel", ["linear", "rbf"])
def test_progress_callback_is_called(kernel):
    X, Y = related(14, 50, 3, 3)
    calls = []
    ma.cka(X, Y, kernel=kernel, sigma=1.0, progress=lambda done, total: calls.append((done, total)))
    assert calls
    done, total = calls[-1]
    assert done == total > 0


@pytest.mark.parametrize("tile_rows", [0, 5, 7, 13])
@pytest.mark.parametrize("dtype", DTYPES)
def test_core_pair_sums_rbf_tiles(tile_rows, dtype):
    X, Y = related(15, 31, 4, 33, dtype)
    gamma = [0.3, 0.05]
    fn = _core.pair_sums_f32 if dtype == np.float32 else _core.pair_sums_f64
    rows, cross = fn([X, Y], "rbf", gamma, tile_rows=tile_rows)
    want_rows, want_cross = ref.pair_sums([X, Y], "rbf", gamma)
    rtol = 1e-12 if dtype == np.float64 else 32.0 * float(np.finfo(np.float32).eps) * math.sqrt(33)
    np.testing.assert_allclose(rows, want_rows, rtol=rtol)
    np.testing.assert_allclose(cross, want_cross, rtol=rtol)
    r1, c1 = fn([X, Y], "rbf", gamma, tile_rows=tile_rows, n_threads=1)
    r2, c2 = fn([X, Y], "rbf", gamma, tile_rows=tile_rows, n_threads=2)
    assert np.array_equal(r1, r2) and np.array_equal(c1, c2)


# ---- errors -------------------------------------------------------------------------------

def test_error_n_mismatch():
    with pytest.raises(ValueError, match="same number of rows.*N=10.*N=9"):
        ma.cka(np.ones((10, 2)), np.ones((9, 2)))


def test_error_too_few_rows():
    X, Y = related(0, 3, 2, 2)
    with pytest.raises(ValueError, match=r"cka\(unbiased=True\) needs at least 4 rows.*N=3"):
        ma.cka(X, Y, unbiased=True)
    with pytest.raises(ValueError, match=r"needs at least 4 rows"):
        ma.cka(X, Y, unbiased=True, kernel="rbf", sigma=1.0)
    with pytest.raises(ValueError, match="cka needs at least 2 rows.*N=1"):
        ma.cka(X[:1], Y[:1])


@pytest.mark.parametrize("kernel", ["linear", "rbf"])
@pytest.mark.parametrize("which", ["X", "Y"])
def test_error_zero_variance(kernel, which):
    X, Y = related(0, 20, 3, 2)
    const = np.full((20, 3), 0.1)  # 0.1 is inexact: the check must not rely on a mean
    args = (const, Y) if which == "X" else (X, const[:, :2])
    with pytest.raises(ValueError, match=f"{which} has zero variance: all its N=20 rows are identical"):
        ma.cka(*args, kernel=kernel, sigma=1.0)


def test_error_numerically_zero_unbiased_hsic():
    # A regular simplex (equidistant rows): the U-centred kernel is exactly 0.
    Y = np.random.default_rng(0).normal(size=(4, 2))
    with pytest.raises(ValueError, match="unbiased HSIC of X with itself"):
        ma.cka(np.eye(4), Y, unbiased=True)


def test_error_nan_and_dtype():
    X, Y = related(0, 10, 3, 2)
    X[4, 1] = np.nan
    with pytest.raises(ValueError, match=r"X has a non-finite value in row 4"):
        ma.cka(X, Y)
    with pytest.raises(TypeError, match="Y has dtype int64"):
        ma.cka(np.ones((5, 2)), np.ones((5, 2), dtype=np.int64))
    with pytest.raises(ValueError, match="X must be a 2-D"):
        ma.cka(np.ones(5), np.ones((5, 2)))


def test_error_options():
    X, Y = related(0, 10, 3, 2)
    with pytest.raises(ValueError, match="kernel must be one of 'linear', 'rbf'; got 'RBF'"):
        ma.cka(X, Y, kernel="RBF")
    with pytest.raises(ValueError, match="sigma must be a finite number > 0"):
        ma.cka(X, Y, kernel="rbf", sigma=-1.0)
    with pytest.raises(ValueError, match="sigma must be one of 'median'; got 'mean'"):
        ma.cka(X, Y, kernel="rbf", sigma="mean")
    with pytest.raises(TypeError, match="sigma must be a positive number"):
        ma.cka(X, Y, kernel="rbf", sigma=True)
    with pytest.raises(ValueError, match="two values"):
        ma.cka(X, Y, kernel="rbf", sigma=(1.0, 2.0, 3.0))
    with pytest.raises(ValueError, match=r"sigma\[1\] must be a finite number > 0"):
        ma.cka(X, Y, kernel="rbf", sigma=(1.0, np.inf))
    with pytest.raises(TypeError, match="unbiased must be True or False"):
        ma.cka(X, Y, unbiased=1)
    with pytest.raises(ValueError, match="n_threads must be between 0 and 1024"):
        ma.cka(X, Y, n_threads=-1)
    with pytest.raises(TypeError, match="progress must be False, True or a callable"):
        ma.cka(X, Y, progress="yes")


def test_error_median_of_duplicates():
    X = np.zeros((10, 2))
    X[0, 0] = 1.0  # not constant, but most pairs are duplicates: median distance 0
    Y = np.random.default_rng(0).normal(size=(10, 2))
    with pytest.raises(ValueError, match="sigma='median' gives 0 for X"):
        ma.cka(X, Y, kernel="rbf")


# -- the engine's feature-space Gram (gram.cpp) behind biased linear CKA ---------------------

@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("n,dims,block_rows", [(1, (1,), 0), (5, (3, 2), 2), (1001, (33, 7), 64),
                                               (777, (1, 40, 5), 16), (300, (70,), 1)])
def test_core_shifted_gram_matches_float64_reference(dtype, n, dims, block_rows):
    rng = np.random.default_rng(n + sum(dims))
    spaces = [(rng.normal(size=(n, d)) + 5.0).astype(dtype) for d in dims]
    spaces[-1] = np.asfortranarray(spaces[-1])
    shift = np.concatenate([s[:7].mean(axis=0, dtype=np.float64) for s in spaces])
    fn = _core.shifted_gram_f32 if dtype == np.float32 else _core.shifted_gram_f64
    Z = np.hstack([s.astype(np.float64) for s in spaces]) - shift
    ref_gram = Z.T @ Z
    results = [fn(spaces, shift, block_rows=block_rows, n_threads=t) for t in (1, 2, 3)]
    gram, colsum, constant = results[0]
    scale = max(1.0, float(np.abs(ref_gram).max()))
    # float64 products of (float32-exact) inputs: only summation rounding, ~n·eps relative.
    assert np.abs(gram - ref_gram).max() <= 4 * n * np.finfo(np.float64).eps * scale
    np.testing.assert_allclose(colsum, Z.sum(axis=0), rtol=1e-12, atol=1e-9 * max(1, n))
    assert np.array_equal(gram, gram.T)
    assert constant.tolist() == [int(n == 1)] * Z.shape[1]
    for other in results[1:]:   # block partials are combined in block order
        assert np.array_equal(other[0], gram) and np.array_equal(other[1], colsum)


def test_core_shifted_gram_simd_levels_and_constant_columns():
    rng = np.random.default_rng(3)
    X = rng.normal(size=(500, 21)).astype(np.float32)
    X[:, 4] = 2.5                                   # one constant column
    levels = [lvl for lvl in ma.build_info()["simd_available"]]
    grams = [_core.shifted_gram_f32([X], np.zeros(21), simd=lvl)[0] for lvl in levels]
    assert all(np.array_equal(g, grams[0]) for g in grams)
    constant = _core.shifted_gram_f32([X], np.zeros(21))[2]
    assert constant.tolist() == [int(j == 4) for j in range(21)]


def test_core_shifted_gram_errors():
    X = np.zeros((4, 3), np.float32)
    with pytest.raises(ValueError, match="shift must have shape"):
        _core.shifted_gram_f32([X], np.zeros(2))
    with pytest.raises(ValueError, match="rows"):
        _core.shifted_gram_f32([X, np.zeros((5, 2), np.float32)], np.zeros(5))
    with pytest.raises(ValueError, match="empty"):
        _core.shifted_gram_f32([], np.zeros(0))


def test_linear_biased_engine_path_equals_streamed_path():
    # The engine path (biased, equal dtypes) and the Python block path agree to rounding.
    rng = np.random.default_rng(11)
    X = rng.normal(size=(2500, 17)) + 100.0
    Y = X[:, :5] @ rng.normal(size=(5, 9)) + 0.3 * rng.normal(size=(2500, 9))
    fast = ma.cka(X, Y)
    slow = cka_module._linear_streamed_values([X, Y], ["X", "Y"], False, None)[0, 1]
    assert abs(fast - slow) <= 1e-12


@pytest.mark.parametrize("kernel", ["linear", "rbf"])
@pytest.mark.parametrize("unbiased", [False, True])
def test_eps_reproduces_the_reference_denominator(kernel, unbiased):
    """eps is added to the denominator exactly as the reference code adds 1e-6."""
    X, Y = related(8, 60, 5, 4)
    sigma = 1.3 if kernel == "rbf" else None
    if kernel == "linear":
        K, L = ref.linear_kernel(X), ref.linear_kernel(Y)
    else:
        K, L = ref.rbf_kernel(X, sigma), ref.rbf_kernel(Y, sigma)
    hsic = ref.hsic1 if unbiased else ref.hsic0
    want = hsic(K, L) / (np.sqrt(hsic(K, K) * hsic(L, L)) + 1e-6)
    got = ma.cka(X, Y, kernel=kernel, sigma=sigma, unbiased=unbiased, eps=1e-6)
    assert got == pytest.approx(want, rel=1e-9)
    assert got != ma.cka(X, Y, kernel=kernel, sigma=sigma, unbiased=unbiased)
    with pytest.raises(ValueError, match="eps must be a finite number >= 0"):
        ma.cka(X, Y, eps=-1.0)
