"""ma.information_imbalance against the dense rank matrices of reference_global.py, the
RankCount reducer with forced tiny tiles, the subsampled estimator, and DADApy where it can be
imported."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import warnings

import numpy as np
import pytest

import matalign as ma
import reference_global as ref
from matalign import _core

DTYPES = (np.float64, np.float32)


def continuous(seed: int, n: int, d1: int, d2: int, dtype=np.float64):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d1))
    Y = np.concatenate([X[:, :1], rng.normal(size=(n, d2 - 1))], axis=1) if d2 > 1 else \
        X[:, :1] + 0.5 * rng.normal(size=(n, 1))
    return X.astype(dtype), Y.astype(dtype)


def grid(seed: int, n: int, d1: int, d2: int, dtype=np.float64):
    """Small integers: distances are exact in float32 and float64, with many exact ties."""
    rng = np.random.default_rng(seed)
    X = rng.integers(-3, 4, size=(n, d1)).astype(dtype)
    Y = rng.integers(-3, 4, size=(n, d2)).astype(dtype)
    return X, Y


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n,d1,d2,k", [(2, 1, 1, 1), (4, 1, 2, 1), (4, 1, 2, 3), (37, 33, 5, 1),
                                       (37, 33, 5, 4), (37, 2, 3, 36), (80, 3, 7, 2)])
def test_exact_matches_dense_reference_with_ties(n, d1, d2, k, dtype):
    X, Y = grid(n + k, n, d1, d2, dtype)
    got = ma.information_imbalance(X, Y, k=k)
    want = ref.information_imbalance(X, Y, k=k)
    assert isinstance(got, tuple) and len(got) == 2
    assert all(isinstance(v, float) for v in got)
    # Integer-valued data: every distance is exact, so the ranks (and Δ) match exactly.
    assert got == pytest.approx(want, rel=1e-14, abs=0)


@pytest.mark.parametrize("k", [1, 3])
def test_exact_matches_dense_reference_continuous(k):
    X, Y = continuous(1, 60, 4, 6)
    assert ma.information_imbalance(X, Y, k=k) == pytest.approx(
        ref.information_imbalance(X, Y, k=k), rel=1e-14, abs=0)


@pytest.mark.parametrize("dtype", DTYPES)
def test_self_imbalance_is_minimal(dtype):
    X, _ = continuous(2, 50, 5, 2, dtype)
    for k in (1, 4, 49):
        d_xy, d_yx = ma.information_imbalance(X, X, k=k)
        assert d_xy == d_yx == pytest.approx((k + 1) / 50, rel=1e-14)


def test_asymmetry_subspace():
    # Y contains X's coordinates plus noise columns: Y predicts X better than X predicts Y.
    rng = np.random.default_rng(3)
    X = rng.normal(size=(300, 2))
    Y = np.concatenate([X, 0.5 * rng.normal(size=(300, 2))], axis=1)
    d_xy, d_yx = ma.information_imbalance(X, Y)
    assert d_yx < d_xy < 1.0


def test_duplicates_in_both_spaces():
    X, Y = continuous(4, 40, 3, 4)
    X[9] = X[3]
    X[20] = X[3]
    Y[9] = Y[3]
    Y[31] = Y[30]
    for k in (1, 2, 5):
        assert ma.information_imbalance(X, Y, k=k) == pytest.approx(
            ref.information_imbalance(X, Y, k=k), rel=1e-14, abs=0)


def test_layouts_f_order_memmap_and_mixed_dtypes(tmp_path):
    X, Y = grid(5, 50, 3, 4)
    base = ma.information_imbalance(X, Y, k=2)
    assert ma.information_imbalance(np.asfortranarray(X), Y, k=2) == base
    path = tmp_path / "x.dat"
    mm = np.memmap(path, dtype=np.float64, mode="w+", shape=X.shape)
    mm[:] = X
    mm.flush()
    mm = np.memmap(path, dtype=np.float64, mode="r", shape=X.shape)
    assert ma.information_imbalance(mm, Y, k=2) == base
    # Each space runs in its own dtype; integer data is exact in both.
    assert ma.information_imbalance(X.astype(np.float32), Y, k=2) == base


def test_thread_count_invariance():
    X, Y = continuous(6, 200, 6, 3)
    one = ma.information_imbalance(X, Y, k=3, n_threads=1)
    two = ma.information_imbalance(X, Y, k=3, n_threads=2)
    assert one == two


def test_progress_callback_is_called():
    X, Y = continuous(7, 40, 3, 3)
    calls = []
    ma.information_imbalance(X, Y, progress=lambda done, total: calls.append((done, total)))
    assert calls and calls[-1][0] == calls[-1][1] > 0


@pytest.mark.parametrize("tile_rows", [0, 5, 7, 13])
@pytest.mark.parametrize("dtype", DTYPES)
def test_core_rank_count_tiles(tile_rows, dtype):
    X, Y = grid(8, 31, 2, 33, dtype)
    Y[4] = Y[12]
    targets = np.ascontiguousarray(ref.knn_order(X)[:, [0, 1, 29]])
    fn = _core.rank_count_f32 if dtype == np.float32 else _core.rank_count_f64
    got = fn(Y, targets, tile_rows=tile_rows)
    np.testing.assert_array_equal(got, ref.rank_count(Y, targets))
    assert got.dtype == np.int64 and got.shape == targets.shape
    one = fn(np.asfortranarray(Y), targets, tile_rows=tile_rows, n_threads=1)
    two = fn(Y, targets, tile_rows=tile_rows, n_threads=2)
    np.testing.assert_array_equal(one, got)
    np.testing.assert_array_equal(two, got)


# ---- method="subset" ----------------------------------------------------------------------

def _subset_reference(X, Y, k, subset_size, seed):
    n = X.shape[0]
    perm = np.random.default_rng(seed).permutation(n)
    chunks = [np.sort(c) for c in np.array_split(perm, max(1, n // subset_size))]
    pairs = [ref.information_imbalance(X[c], Y[c], k=k) for c in chunks]
    return tuple(float(np.mean([p[i] for p in pairs])) for i in (0, 1))


def test_subset_warns_and_matches_its_definition():
    X, Y = continuous(9, 130, 3, 4)
    with pytest.warns(UserWarning, match=r"method='subset'\) is approximate.*6 random chunks"):
        got = ma.information_imbalance(X, Y, k=2, method="subset", subset_size=20, seed=5)
    assert got == pytest.approx(_subset_reference(X, Y, 2, 20, 5), rel=1e-14)
    with pytest.warns(UserWarning, match="approximate"):
        other = ma.information_imbalance(X, Y, k=2, method="subset", subset_size=20, seed=6)
    assert other != got


def test_subset_with_one_chunk_is_exact_and_silent():
    X, Y = continuous(10, 50, 3, 4)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        got = ma.information_imbalance(X, Y, method="subset", subset_size=30)
    assert got == ma.information_imbalance(X, Y)


_DADAPY_SCRIPT = textwrap.dedent(
    """
    import json, sys
    import numpy as np
    from dadapy import MetricComparisons

    X, Y, k = np.load(sys.argv[1]), np.load(sys.argv[2]), int(sys.argv[3])
    n, d1 = X.shape
    mc = MetricComparisons(coordinates=np.concatenate([X, Y], axis=1), maxk=n - 1,
                           verbose=False)
    d = mc.return_inf_imb_two_selected_coords(list(range(d1)),
                                              list(range(d1, d1 + Y.shape[1])), k=k)
    print(json.dumps([float(v) for v in d]))
    """
)


@pytest.mark.parametrize("k", [1, 3])
def test_dadapy_full_ranks_agree(tmp_path, k):
    # With maxk = N - 1 DADApy keeps every rank (no random substitution): the exact value.
    X, Y = continuous(11, 200, 4, 3)
    ours = ma.information_imbalance(X, Y, k=k)
    try:
        from dadapy import MetricComparisons  # noqa: F401  (needs numpy<2)
    except ImportError:
        python = os.environ.get("MATALIGN_DADAPY_PYTHON")
        if not python:
            pytest.skip(f"DADApy is not importable (it needs numpy<2; this environment has "
                        f"numpy {np.__version__}); set MATALIGN_DADAPY_PYTHON to an "
                        f"interpreter with dadapy to run this cross-check")
    else:
        python = sys.executable
    np.save(tmp_path / "x.npy", X)
    np.save(tmp_path / "y.npy", Y)
    script = tmp_path / "dadapy_ii.py"
    script.write_text(_DADAPY_SCRIPT)
    proc = subprocess.run([python, str(script), str(tmp_path / "x.npy"),
                           str(tmp_path / "y.npy"), str(k)],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    theirs = json.loads(proc.stdout.strip().splitlines()[-1])
    assert ours == pytest.approx(tuple(theirs), rel=1e-12)


# ---- errors -------------------------------------------------------------------------------

def test_error_k_out_of_range_and_type():
    X, Y = continuous(0, 10, 2, 2)
    with pytest.raises(ValueError, match=r"k must be between 1 and N - 1 = 9.*got k=10"):
        ma.information_imbalance(X, Y, k=10)
    with pytest.raises(ValueError, match=r"k must be between 1 and N - 1 = 9.*got k=0"):
        ma.information_imbalance(X, Y, k=0)
    with pytest.raises(TypeError, match="k must be an integer; got float 1.0"):
        ma.information_imbalance(X, Y, k=1.0)
    with pytest.raises(TypeError, match="k must be an integer; got the bool True"):
        ma.information_imbalance(X, Y, k=True)


def test_error_inputs():
    X, Y = continuous(0, 10, 2, 2)
    with pytest.raises(ValueError, match="same number of rows.*N=10.*N=9"):
        ma.information_imbalance(X, Y[:9])
    with pytest.raises(ValueError, match="information_imbalance needs at least 2 rows.*N=1"):
        ma.information_imbalance(X[:1], Y[:1])
    bad = X.copy()
    bad[7, 0] = np.nan
    with pytest.raises(ValueError, match=r"X has a non-finite value in row 7"):
        ma.information_imbalance(bad, Y)
    with pytest.raises(TypeError, match="Y has dtype int32"):
        ma.information_imbalance(X, Y.astype(np.int32))


def test_error_options():
    X, Y = continuous(0, 10, 2, 2)
    with pytest.raises(ValueError, match="method must be one of 'exact', 'subset'; got 'dadapy'"):
        ma.information_imbalance(X, Y, method="dadapy")
    with pytest.raises(ValueError, match=r"subset_size must be at least k \+ 1 = 4.*got "
                                         r"subset_size=3"):
        ma.information_imbalance(X, Y, k=3, method="subset", subset_size=3)
    with pytest.raises(ValueError, match="subset_size must be >= 2"):
        ma.information_imbalance(X, Y, method="subset", subset_size=1)
    with pytest.raises(ValueError, match="seed must be >= 0"):
        ma.information_imbalance(X, Y, seed=-1)
