"""Regression tests for inputs that once aborted, hung or silently overflowed."""

import multiprocessing as mp
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import matalign as ma


def test_forked_child_does_not_hang_after_parent_used_openmp():
    # libgomp's pool does not survive fork(); the engine runs single-threaded after a fork.
    script = textwrap.dedent("""
        import multiprocessing as mp, numpy as np, matalign as ma
        X = np.random.default_rng(0).normal(size=(500, 8))
        def f(_):
            return int(ma.knn(X, k=3).indices.sum())
        if __name__ == "__main__":
            ref = int(ma.knn(X, k=3).indices.sum())
            with mp.get_context("fork").Pool(2) as pool:
                out = pool.map(f, range(2))
            assert out == [ref, ref], (out, ref)
            print("ok")
    """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "ok"


@pytest.mark.parametrize("n_threads", [1025, 60000, 2**31, 2**40])
def test_absurd_thread_counts_are_value_errors(n_threads):
    X = np.random.default_rng(0).normal(size=(50, 4))
    for call in (lambda: ma.knn(X, k=3, n_threads=n_threads),
                 lambda: ma.mutual_knn(X, X, k=3, n_threads=n_threads),
                 lambda: ma.distance_correlation(X, X, n_threads=n_threads)):
        with pytest.raises(ValueError, match="n_threads must be between 0 and 1024"):
            call()


@pytest.mark.parametrize("dtype, scale", [(np.float32, 1e30), (np.float64, 1e200)])
def test_values_whose_products_overflow_are_rejected(dtype, scale):
    Z = (np.random.default_rng(0).normal(size=(20, 4)) * scale).astype(dtype)
    Y = np.random.default_rng(1).normal(size=(20, 4)).astype(dtype)
    for call in (lambda: ma.knn(Z, k=3, metric="l2"), lambda: ma.mutual_knn(Z, Y, k=3),
                 lambda: ma.information_imbalance(Z, Y), lambda: ma.intrinsic_dimension(Z),
                 lambda: ma.distance_correlation(Y, Z)):
        with pytest.raises(ValueError, match="would overflow"):
            call()


def test_large_but_safe_values_are_accepted():
    Z = np.random.default_rng(0).normal(size=(30, 4)) * 1e100
    g = ma.knn(Z, k=3, metric="l2")
    assert np.isfinite(g.values).all()


def test_tiles_larger_than_the_data_are_clamped():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(40, 6))
    ref = ma.knn(X, k=5)
    for tile in (2**20, 2**30):
        g = ma.knn(X, k=5, tile_rows=tile, tile_cols=tile)
        np.testing.assert_array_equal(g.indices, ref.indices)


def test_tiny_n_huge_d_does_not_allocate_per_missing_row():
    # 3 rows of 200k dims: scratch must be sized by the 3 rows, not a 96-row floor.
    X = np.random.default_rng(0).normal(size=(3, 200_000)).astype(np.float32)
    g = ma.knn(X, k=2, n_threads=1)
    assert g.indices.shape == (3, 2)


def test_rbf_sigma_too_small_is_a_value_error():
    X = np.random.default_rng(0).normal(size=(30, 3))
    with pytest.raises(ValueError, match="too small"):
        ma.cka(X, X, kernel="rbf", sigma=1e-300)


def test_private_reducer_rejects_non_arrays():
    from matalign import _core
    with pytest.raises(ValueError, match=r"spaces\[0\] must be a NumPy array"):
        _core.pair_sums_f64([[[1.0, 2.0]]], "distance")


def test_hnsw_options_that_crash_faiss_are_rejected():
    pytest.importorskip("faiss")
    X = np.random.default_rng(0).normal(size=(200, 8)).astype(np.float32)
    with pytest.raises(ValueError, match="M must be between 2 and 1024"):
        ma.knn(X, k=3, method="hnsw", M=1)
    with pytest.raises(ValueError, match="ef_search must be <= N"):
        ma.knn(X, k=3, method="hnsw", ef_search=2**31 - 1)
