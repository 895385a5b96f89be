"""ma.distance_correlation against the dense double-/U-centred references, against the dcor
package where installed, and the PairSums reducer's distance mode with forced tiny tiles.

dcor 0.7 with array-api-compat >= 1.16 never takes its compiled pdist path for NumPy input
(``_can_be_numpy_double`` compares the namespace with ``numpy`` itself and gets
``array_api_compat.numpy``) and builds an N×N×D difference instead (the anchor measurements, bench/README.md): keep
N <= 300 in the comparisons with it.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

import matalign as ma
import reference_global as ref
from matalign import _core

DTYPES = (np.float64, np.float32)


def tol(dtype, d: int) -> float:
    """float64: 1e-10; float32: 32·eps·√D (distances are computed in float32)."""
    if np.dtype(dtype) == np.float64:
        return 1e-10
    return 32.0 * float(np.finfo(np.float32).eps) * math.sqrt(d)


def related(seed: int, n: int, d1: int, d2: int, dtype=np.float64):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d1))
    Y = np.sin(X[:, :1]) @ rng.normal(size=(1, d2)) + 0.5 * rng.normal(size=(n, d2))
    return X.astype(dtype), Y.astype(dtype)


def reference(X, Y, unbiased):
    return ref.u_dcor_sqr(X, Y) if unbiased else ref.dcor(X, Y)


SHAPES = [(4, 1, 1), (4, 2, 3), (5, 1, 4), (37, 33, 5), (120, 3, 7)]


@pytest.mark.parametrize("unbiased", [False, True])
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("dtype", DTYPES)
def test_matches_dense_reference(shape, unbiased, dtype):
    n, d1, d2 = shape
    X, Y = related(n * 3 + d1, n, d1, d2, dtype)
    got = ma.distance_correlation(X, Y, unbiased=unbiased)
    assert got == pytest.approx(reference(X, Y, unbiased), abs=tol(dtype, max(d1, d2)))


def test_biased_with_two_rows():
    X = np.array([[0.0], [1.0]])
    Y = np.array([[2.0, 0.0], [0.0, 5.0]])
    assert ma.distance_correlation(X, Y) == pytest.approx(ref.dcor(X, Y), abs=1e-12)


@pytest.mark.parametrize("unbiased", [False, True])
@pytest.mark.parametrize("shape", [(4, 1, 1), (50, 1, 1), (60, 3, 5), (300, 16, 8)])
def test_matches_dcor_package(shape, unbiased):
    dcor = pytest.importorskip("dcor", reason="the dcor package is not installed")
    n, d1, d2 = shape
    X, Y = related(n + d2, n, d1, d2)
    got = ma.distance_correlation(X, Y, unbiased=unbiased)
    if unbiased:
        want = dcor.u_distance_correlation_sqr(X, Y, method="naive")
    else:
        want = dcor.distance_correlation(X, Y, method="naive")
    assert got == pytest.approx(float(want), abs=1e-10)


def test_invariances_and_identical_spaces():
    X, Y = related(2, 70, 4, 6)
    Q, _ = np.linalg.qr(np.random.default_rng(3).normal(size=(6, 6)))
    for unbiased in (False, True):
        base = ma.distance_correlation(X, Y, unbiased=unbiased)
        moved = ma.distance_correlation(X - 4.0, 3.0 * Y @ Q + 1.0, unbiased=unbiased)
        assert moved == pytest.approx(base, abs=1e-10)
        assert ma.distance_correlation(Y, X, unbiased=unbiased) == pytest.approx(base, abs=1e-12)
        assert ma.distance_correlation(X, X, unbiased=unbiased) == pytest.approx(1.0, abs=1e-12)
    assert ma.distance_correlation(X, X) <= 1.0


def test_independent_unbiased_is_near_zero_and_can_be_negative():
    rng = np.random.default_rng(4)
    values = [ma.distance_correlation(rng.normal(size=(60, 3)), rng.normal(size=(60, 3)),
                                      unbiased=True) for _ in range(8)]
    assert min(values) < 0.0
    assert max(abs(v) for v in values) < 0.1


def test_duplicate_rows():
    X, Y = related(5, 40, 3, 4)
    X[7] = X[2]
    X[30] = X[2]
    Y[11] = Y[12]
    for unbiased in (False, True):
        assert ma.distance_correlation(X, Y, unbiased=unbiased) == pytest.approx(
            reference(X, Y, unbiased), abs=1e-10)


def test_layouts_f_order_memmap_mixed_dtypes(tmp_path):
    X, Y = related(6, 45, 5, 3)
    base = ma.distance_correlation(X, Y, unbiased=True)
    assert ma.distance_correlation(np.asfortranarray(X), Y, unbiased=True) == pytest.approx(
        base, abs=1e-12)
    path = tmp_path / "y.dat"
    mm = np.memmap(path, dtype=np.float64, mode="w+", shape=Y.shape)
    mm[:] = Y
    mm.flush()
    mm = np.memmap(path, dtype=np.float64, mode="r", shape=Y.shape)
    assert ma.distance_correlation(X, mm, unbiased=True) == pytest.approx(base, abs=1e-12)
    X32 = X.astype(np.float32)  # float32 with float64: the float32 one is widened exactly
    assert ma.distance_correlation(X32, Y) == ma.distance_correlation(X32.astype(np.float64), Y)


@pytest.mark.parametrize("unbiased", [False, True])
def test_thread_count_invariance(unbiased):
    X, Y = related(7, 160, 9, 4)
    one = ma.distance_correlation(X, Y, unbiased=unbiased, n_threads=1)
    two = ma.distance_correlation(X, Y, unbiased=unbiased, n_threads=2)
    assert one == two


def test_progress_callback_is_called():
    X, Y = related(8, 50, 3, 3)
    calls = []
    ma.distance_correlation(X, Y, progress=lambda done, total: calls.append((done, total)))
    assert calls and calls[-1][0] == calls[-1][1] > 0


@pytest.mark.parametrize("tile_rows", [0, 5, 7, 13])
@pytest.mark.parametrize("dtype", DTYPES)
def test_core_pair_sums_distance_tiles(tile_rows, dtype):
    X, Y = related(9, 29, 33, 1, dtype)
    X[3] = X[17]  # a duplicate: distance exactly 0
    Z = np.asfortranarray(related(10, 29, 2, 2, dtype)[0])
    fn = _core.pair_sums_f32 if dtype == np.float32 else _core.pair_sums_f64
    spaces = [X, Y, Z]
    rows, cross = fn(spaces, "distance", tile_rows=tile_rows)
    want_rows, want_cross = ref.pair_sums(spaces, "distance")
    rtol = 1e-12 if dtype == np.float64 else 32.0 * float(np.finfo(np.float32).eps) * math.sqrt(33)
    np.testing.assert_allclose(rows, want_rows, rtol=rtol)
    np.testing.assert_allclose(cross, want_cross, rtol=rtol)
    r1, c1 = fn(spaces, "distance", tile_rows=tile_rows, n_threads=1)
    r2, c2 = fn(spaces, "distance", tile_rows=tile_rows, n_threads=2)
    assert np.array_equal(r1, r2) and np.array_equal(c1, c2)


def test_core_pair_sums_single_row_tile_edge():
    # N smaller than one tile, and N = 2.
    X = np.array([[0.0, 0.0], [3.0, 4.0]])
    rows, cross = _core.pair_sums_f64([X], "distance", tile_rows=64)
    np.testing.assert_array_equal(rows, [[5.0, 5.0]])
    np.testing.assert_array_equal(cross, [[50.0]])


# ---- errors -------------------------------------------------------------------------------

def test_error_n_mismatch():
    with pytest.raises(ValueError, match="same number of rows.*N=6.*N=5"):
        ma.distance_correlation(np.ones((6, 2)), np.ones((5, 2)))


def test_error_too_few_rows():
    X, Y = related(0, 3, 2, 2)
    with pytest.raises(ValueError, match=r"distance_correlation\(unbiased=True\) needs at least "
                                         r"4 rows.*N=3"):
        ma.distance_correlation(X, Y, unbiased=True)
    with pytest.raises(ValueError, match="distance_correlation needs at least 2 rows.*N=1"):
        ma.distance_correlation(X[:1], Y[:1])


@pytest.mark.parametrize("unbiased", [False, True])
@pytest.mark.parametrize("which", ["X", "Y"])
def test_error_zero_variance(which, unbiased):
    X, Y = related(0, 12, 3, 2)
    const = np.full((12, 2), 0.3)
    args = (const, Y) if which == "X" else (X, const)
    with pytest.raises(ValueError, match=f"{which} has zero variance: all its N=12 rows"):
        ma.distance_correlation(*args, unbiased=unbiased)


def test_error_numerically_zero_distance_variance():
    # Equidistant rows (a regular simplex) have an exactly zero U-centred distance matrix.
    Y = np.random.default_rng(0).normal(size=(4, 2))
    with pytest.raises(ValueError, match="X has zero distance variance"):
        ma.distance_correlation(np.eye(4), Y, unbiased=True)
    assert ma.distance_correlation(np.eye(4), Y) == pytest.approx(
        ref.dcor(np.eye(4), Y), abs=1e-12)


def test_error_nan_dtype_options():
    X, Y = related(0, 10, 3, 2)
    Y[6, 0] = np.inf
    with pytest.raises(ValueError, match=r"Y has a non-finite value in row 6"):
        ma.distance_correlation(X, Y)
    with pytest.raises(TypeError, match="X has dtype float16"):
        ma.distance_correlation(X.astype(np.float16), X)
    with pytest.raises(TypeError, match="unbiased must be True or False"):
        ma.distance_correlation(X, X, unbiased="yes")
    with pytest.raises(TypeError, match="n_threads must be an integer"):
        ma.distance_correlation(X, X, n_threads=1.5)
