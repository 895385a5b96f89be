"""mutual_knn, local_agreement and CKNNA against the dense references."""

from __future__ import annotations

import numpy as np
import pytest
import reference as ref

import matalign as ma

DTYPES = (np.float32, np.float64)


def _pair(seed, n, dx=12, dy=9, dtype=np.float64, normalize=True):
    """Two related, tie-free embeddings of the same n structures."""
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, dx))
    Y = np.tanh(X @ rng.standard_normal((dx, dy)) / np.sqrt(dx)) + 0.3 * rng.standard_normal((n, dy))
    if normalize:
        X = ref.l2_normalize(X)
        Y = ref.l2_normalize(Y)
    return X.astype(dtype), Y.astype(dtype)


def _checked_graph(X, k, metric):
    """ma.knn graph, verified tie-aware against the reference first."""
    g = ma.knn(X, k=k, metric=metric)
    rv, ri = ref.knn(X, X.shape[0] - 1, metric)
    rtol, atol = ref.knn_tolerance(X, metric)
    ref.assert_knn_equal(g.values, g.indices, rv, ri, rtol, atol)
    return g


# ---------------------------------------------------------------------------
# mutual_knn / local_agreement
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("metric", ("ip", "l2", "cosine"))
@pytest.mark.parametrize("k", [1, 7, 30])
@pytest.mark.parametrize("seed", [0, 1])
def test_mutual_knn_local_agreement_float64(seed, k, metric):
    X, Y = _pair(seed, 257, normalize=False)
    want_rows = ref.local_agreement(X, Y, k, metric)
    got_rows = ma.local_agreement(X, Y, k=k, metric=metric)
    assert isinstance(got_rows, np.ndarray)
    assert got_rows.shape == (257,) and got_rows.dtype == np.float64
    np.testing.assert_allclose(got_rows, want_rows, rtol=1e-14, atol=0)
    got = ma.mutual_knn(X, Y, k=k, metric=metric)
    assert isinstance(got, float)
    np.testing.assert_allclose(got, ref.mutual_knn(X, Y, k, metric), rtol=1e-12, atol=0)
    np.testing.assert_allclose(got, float(np.mean(got_rows)), rtol=1e-12, atol=0)
    # the data is neither trivially aligned nor unrelated
    assert 0.0 < got < 1.0


@pytest.mark.parametrize("metric", ("ip", "l2", "cosine"))
def test_mutual_knn_local_agreement_float32(metric):
    X, Y = _pair(3, 311, dtype=np.float32, normalize=False)
    k = 10
    gx = _checked_graph(X, k, metric)
    gy = _checked_graph(Y, k, metric)
    want_rows = ref.local_agreement(X, Y, k, idx_x=gx.indices, idx_y=gy.indices)
    np.testing.assert_allclose(ma.local_agreement(X, Y, k=k, metric=metric), want_rows, rtol=1e-14, atol=0)
    np.testing.assert_allclose(ma.mutual_knn(X, Y, k=k, metric=metric), np.mean(want_rows), rtol=1e-12, atol=0)
    # float32 and float64 of the same data agree up to neighbours that swap
    # inside the float32 tolerance: at most a few rows change
    diff = np.abs(ma.local_agreement(X, Y, k=k, metric=metric) - ref.local_agreement(X, Y, k, metric))
    assert np.count_nonzero(diff) <= 0.05 * X.shape[0]


def test_mutual_knn_default_metric_is_ip():
    X, Y = _pair(4, 150, normalize=False)
    assert ma.mutual_knn(X, Y, k=5) == ma.mutual_knn(X, Y, k=5, metric="ip")
    assert ma.mutual_knn(X, Y, k=5) != ma.mutual_knn(X, Y, k=5, metric="l2")  # data chosen so they differ


@pytest.mark.parametrize("metric", ("ip", "l2", "cosine"))
def test_graph_inputs_equal_array_path(metric):
    """A KnnGraph passed in is used as is: a larger-k graph is sliced to k."""
    X, Y = _pair(5, 203, normalize=False)
    k = 8
    gx = ma.knn(X, k=15, metric=metric)
    gy = ma.knn(Y, k=15, metric=metric)
    assert ma.mutual_knn(gx, gy, k=k) == ma.mutual_knn(X, Y, k=k, metric=metric)
    np.testing.assert_array_equal(ma.local_agreement(gx, gy, k=k), ma.local_agreement(X, Y, k=k, metric=metric))
    # slicing is by position: the first k of a 15-graph are the 8-graph
    np.testing.assert_allclose(
        ma.local_agreement(gx, gy, k=k), ref.local_agreement(X, Y, k, metric), rtol=1e-14, atol=0
    )
    # exact-k graphs as well
    g8x, g8y = ma.knn(X, k=k, metric=metric), ma.knn(Y, k=k, metric=metric)
    assert ma.mutual_knn(g8x, g8y, k=k) == ma.mutual_knn(X, Y, k=k, metric=metric)


def test_handmade_graph_is_used():
    """A graph built by hand (not by ma.knn) drives the result: nothing is
    recomputed from data, which the graph does not even carry."""
    rng = np.random.default_rng(6)
    n, k = 120, 6
    X, Y = _pair(6, n)
    vx, ix = ref.knn(X, k, "ip")
    vy, iy = ref.knn(Y, k, "ip")
    iy_shuffled = iy.copy()
    rows = rng.choice(n, size=40, replace=False)
    iy_shuffled[rows] = ix[rows]  # force agreement on 40 rows
    gx = ma.KnnGraph(ix, vx, "ip", True)
    gy = ma.KnnGraph(iy_shuffled, vy, "ip", True)
    want = ref.local_agreement(None, None, k, idx_x=ix, idx_y=iy_shuffled)
    np.testing.assert_allclose(ma.local_agreement(gx, gy, k=k), want, rtol=1e-14, atol=0)
    assert np.all(ma.local_agreement(gx, gy, k=k)[rows] == 1.0)


def test_mutual_knn_invariances():
    X, Y = _pair(7, 240, normalize=False)
    k = 9
    base = ma.mutual_knn(X, Y, k=k)
    rows = ma.local_agreement(X, Y, k=k)
    assert ma.mutual_knn(Y, X, k=k) == pytest.approx(base, rel=1e-15, abs=0)
    perm = np.random.default_rng(8).permutation(240)
    np.testing.assert_array_equal(ma.local_agreement(X[perm], Y[perm], k=k), rows[perm])
    assert ma.mutual_knn(X[perm], Y[perm], k=k) == pytest.approx(base, rel=1e-13, abs=0)
    assert ma.mutual_knn(3.0 * X, 0.5 * Y, k=k) == base
    Q, _ = np.linalg.qr(np.random.default_rng(9).standard_normal((12, 12)))
    np.testing.assert_array_equal(ma.local_agreement(X @ Q, Y, k=k), rows)


# ---------------------------------------------------------------------------
# CKNNA
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("normalize", [True, False], ids=["unit-rows", "raw"])
@pytest.mark.parametrize("k", [1, 5, 10, 25])
@pytest.mark.parametrize("seed", [0, 1])
def test_cknna_float64_vs_reference(seed, k, normalize):
    X, Y = _pair(seed, 300, normalize=normalize)
    got = ma.cknna(X, Y, k=k)
    assert isinstance(got, float)
    want = ref.cknna(X, Y, k)
    np.testing.assert_allclose(got, want, rtol=1e-11, atol=1e-14)
    np.testing.assert_allclose(ma.cknna(X, Y, k=k, eps=1e-6), ref.cknna(X, Y, k, eps=1e-6), rtol=1e-11, atol=1e-14)


def _hsic_abs(A, B) -> float:
    """HSIC1 with every term taken in absolute value (a bound on its size)."""
    A = np.abs(ref.as_f64(A))
    B = np.abs(ref.as_f64(B))
    n = A.shape[0]
    np.fill_diagonal(A, 0.0)
    np.fill_diagonal(B, 0.0)
    s = np.sum(A * B.T) + A.sum() * B.sum() / ((n - 1) * (n - 2)) + 2 * np.dot(A.sum(0), B.sum(1)) / (n - 2)
    return float(s / (n * (n - 3)))


def _cknna_f32_tolerance(X, Y, idx_x, idx_y):
    """First-order bound on |Δ CKNNA| when every kernel entry is off by at most
    the float32 inner-product tolerance (ref.knn_tolerance) of its space."""
    n = X.shape[0]
    _, ax = ref.knn_tolerance(X, "ip")
    _, ay = ref.knn_tolerance(Y, "ip")
    X64, Y64 = ref.as_f64(X), ref.as_f64(Y)
    MK = ref.knn_masks(idx_x, n)
    ML = ref.knn_masks(idx_y, n)
    M = MK * ML
    K, L = X64 @ X64.T, Y64 @ Y64.T

    def delta(Mx, A, a, My, B, b):
        return _hsic_abs(Mx * (np.abs(A) + a), My * (np.abs(B) + b)) - _hsic_abs(Mx * A, My * B)

    num = ref.hsic1(M * K, M * L)
    hk = ref.hsic1(MK * K, MK * K)
    hl = ref.hsic1(ML * L, ML * L)
    rel = (
        delta(M, K, ax, M, L, ay) / abs(num)
        + 0.5 * delta(MK, K, ax, MK, K, ax) / abs(hk)
        + 0.5 * delta(ML, L, ay, ML, L, ay) / abs(hl)
    )
    return 2.0 * rel * abs(num / np.sqrt(hk * hl)) + 1e-12


@pytest.mark.parametrize("k", [3, 10])
@pytest.mark.parametrize("normalize", [True, False], ids=["unit-rows", "raw"])
def test_cknna_float32_vs_reference(normalize, k):
    X, Y = _pair(11, 280, dtype=np.float32, normalize=normalize)
    gx = _checked_graph(X, k, "ip")
    gy = _checked_graph(Y, k, "ip")
    got = ma.cknna(X, Y, k=k)
    # reference on the float32-rounded data, with the (tie-aware checked) float32 neighbour sets
    want = ref.cknna(X, Y, k, idx_x=gx.indices, idx_y=gy.indices)
    tol = _cknna_f32_tolerance(X, Y, gx.indices, gy.indices)
    assert abs(got - want) <= tol, (got, want, tol)
    assert tol < 1e-2 * abs(want), "derived tolerance too loose to mean anything"
    # the graph path gives the same number as the array path
    assert ma.cknna(gx, gy, k=k) == pytest.approx(got, rel=1e-14, abs=0)


def test_cknna_exact_on_integer_data_float32():
    """Small-integer data: float32 inner products are exact and ties are broken
    by the lower index on both sides, so float32 matches the float64 reference
    to float64 accumulation accuracy."""
    rng = np.random.default_rng(12)
    X = rng.integers(-3, 4, size=(150, 6)).astype(np.float32)
    Y = (X[:, :4] + rng.integers(-1, 2, size=(150, 4))).astype(np.float32)
    for k in (4, 12):
        want = ref.cknna(X, Y, k)
        np.testing.assert_allclose(ma.cknna(X, Y, k=k), want, rtol=1e-11, atol=1e-14)
        np.testing.assert_allclose(ma.cknna(X.astype(np.float64), Y.astype(np.float64), k=k), want, rtol=1e-11)


def test_cknna_matches_platonic_reference():
    """eps=1e-6 reproduces the platonic-rep algorithm (independent torch restatement)."""
    pytest.importorskip("torch", reason="torch is not installed; this cross-check needs torch (CPU)")
    for seed, n, k in [(0, 300, 10), (1, 211, 5), (2, 160, 25)]:
        X, Y = _pair(seed, n)
        want = ref.cknna_platonic(X, Y, k, eps=1e-6)
        np.testing.assert_allclose(ma.cknna(X, Y, k=k, eps=1e-6), want, rtol=1e-9, atol=1e-12)
        # and the two references agree with each other
        np.testing.assert_allclose(ref.cknna(X, Y, k, eps=1e-6), want, rtol=1e-9, atol=1e-12)


def test_cknna_eps_default_zero_and_compat_mode_lower():
    X, Y = _pair(13, 400)
    default = ma.cknna(X, Y, k=10)
    assert default == ma.cknna(X, Y, k=10, eps=0.0)
    compat = ma.cknna(X, Y, k=10, eps=1e-6)
    assert 0.0 < compat < default
    # the eps enters only the denominator
    X64, Y64 = ref.as_f64(X), ref.as_f64(Y)
    K, L = X64 @ X64.T, Y64 @ Y64.T
    MK = ref.knn_masks(ref.knn(X, 10)[1], 400)
    ML = ref.knn_masks(ref.knn(Y, 10)[1], 400)
    den = np.sqrt(ref.hsic1(MK * K, MK * K) * ref.hsic1(ML * L, ML * L))
    np.testing.assert_allclose(compat, default * den / (den + 1e-6), rtol=1e-10)


@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
@pytest.mark.parametrize("k", [1, 10, 40])
def test_cknna_self_is_one(k, dtype):
    X, _ = _pair(14, 233, dtype=dtype)
    assert abs(ma.cknna(X, X, k=k) - 1.0) <= 1e-12
    assert ma.cknna(X, X, k=k, eps=1e-6) < 1.0


def test_cknna_full_neighbourhood_is_unbiased_linear_cka():
    """k = N - 1 masks keep every off-diagonal pair: CKNNA = unbiased linear CKA."""
    X, Y = _pair(15, 60, normalize=False)
    X64, Y64 = ref.as_f64(X), ref.as_f64(Y)
    K, L = X64 @ X64.T, Y64 @ Y64.T
    cka_u = ref.hsic1(K, L) / np.sqrt(ref.hsic1(K, K) * ref.hsic1(L, L))
    np.testing.assert_allclose(ma.cknna(X, Y, k=59), cka_u, rtol=1e-10)


def test_cknna_graph_inputs():
    X, Y = _pair(16, 222, normalize=False)
    gx = ma.knn(X, k=20, metric="ip")
    gy = ma.knn(Y, k=20, metric="ip")
    for k in (5, 20):
        np.testing.assert_allclose(ma.cknna(gx, gy, k=k), ma.cknna(X, Y, k=k), rtol=1e-13, atol=0)
        np.testing.assert_allclose(ma.cknna(gx, gy, k=k), ref.cknna(X, Y, k), rtol=1e-11)
    # a hand-made graph with the reference's lists gives the reference value
    vx, ix = ref.knn(X, 7, "ip")
    vy, iy = ref.knn(Y, 7, "ip")
    hx, hy = ma.KnnGraph(ix, vx, "ip", True), ma.KnnGraph(iy, vy, "ip", True)
    np.testing.assert_allclose(ma.cknna(hx, hy, k=7), ref.cknna(X, Y, 7), rtol=1e-11)


def test_cknna_invariances():
    X, Y = _pair(17, 260, normalize=False)
    k = 10
    base = ma.cknna(X, Y, k=k)
    # power-of-two scaling is exact in floating point
    assert ma.cknna(2.0 * X, 0.25 * Y, k=k) == pytest.approx(base, rel=1e-14, abs=0)
    assert ma.cknna(3.7 * X, 0.3 * Y, k=k) == pytest.approx(base, rel=1e-10, abs=0)
    perm = np.random.default_rng(18).permutation(260)
    assert ma.cknna(X[perm], Y[perm], k=k) == pytest.approx(base, rel=1e-10, abs=0)
    Q, _ = np.linalg.qr(np.random.default_rng(19).standard_normal((12, 12)))
    assert ma.cknna(X @ Q, Y, k=k) == pytest.approx(base, rel=1e-9, abs=0)
    # an unrelated Y gives a clearly smaller value
    Z = np.random.default_rng(20).standard_normal(Y.shape)
    assert abs(ma.cknna(X, Z, k=k)) < 0.5 * base


@pytest.mark.parametrize("fn", [ma.mutual_knn, ma.cknna, ma.local_agreement])
def test_graph_k_none(fn):
    """k=None takes the graphs' k (not the default 10); graphs of different k are an error;
    two arrays use k=10."""
    rng = np.random.default_rng(5)
    X = rng.normal(size=(120, 6))
    Y = X + 0.3 * rng.normal(size=X.shape)
    gx, gy = ma.knn(X, k=25), ma.knn(Y, k=25)
    got = fn(gx, gy)
    want = fn(X, Y, k=25)
    np.testing.assert_array_equal(got, want)
    assert not np.array_equal(got, fn(X, Y, k=10))
    np.testing.assert_array_equal(fn(gx, Y), want)          # one graph defines k
    np.testing.assert_array_equal(fn(X, Y), fn(X, Y, k=10))  # arrays: the default 10
    with pytest.raises(ValueError, match=r"k=None takes the graphs' k.*X has k=25, Y has k=1"):
        fn(gx, ma.knn(Y, k=1))
    # graphs of k = 1 work with k=None (they used to fail against the default 10)
    g1x, g1y = ma.knn(X, k=1), ma.knn(Y, k=1)
    if fn is not ma.cknna:
        np.testing.assert_array_equal(fn(g1x, g1y), fn(X, Y, k=1))
