"""Exact kNN (``ma.knn``) against the dense float64 reference, tie-aware."""

from __future__ import annotations

import numpy as np
import pytest
import reference as ref

import matalign as ma

METRICS = ("ip", "l2", "cosine")
DTYPES = (np.float32, np.float64)
SIMD_LEVELS = tuple(ma.build_info()["simd_available"])


def _data(seed, n, d, dtype, *, loc=0.0):
    rng = np.random.default_rng(seed)
    return (loc + rng.standard_normal((n, d))).astype(dtype)


def _check_graph(g, X, k, metric, queries=None):
    """Shape, dtype and tie-aware comparison with the full reference ranking."""
    m = X.shape[0] if queries is None else queries.shape[0]
    assert isinstance(g, ma.KnnGraph)
    assert g.indices.shape == (m, k)
    assert g.values.shape == (m, k)
    assert g.indices.dtype == np.int64
    assert g.values.dtype == X.dtype
    assert g.k == k
    assert g.metric == metric
    assert bool(g.self_excluded) == (queries is None)
    n_ref = X.shape[0] - 1 if queries is None else X.shape[0]
    ref_values, ref_indices = ref.knn(X, n_ref, metric, queries)  # every candidate
    rtol, atol = ref.knn_tolerance(X, metric, queries)
    ref.assert_knn_equal(g.values, g.indices, ref_values, ref_indices, rtol, atol)
    if queries is None:
        assert not np.any(g.indices == np.arange(m)[:, None]), "self present in a self graph"


# (N, D, k, tile_rows, tile_cols): tiles forced tiny and ragged, N below one
# tile, N not a multiple of the tile, k = 1, k = N - 1, tiles narrower than k,
# D = 1 and odd D = 33.
SHAPES = [
    (4, 3, 1, 0, 0),
    (5, 8, 4, 0, 0),
    (6, 2, 5, 5, 7),
    (97, 33, 10, 5, 7),
    (128, 1, 3, 13, 13),
    (200, 17, 199, 13, 7),
    (301, 64, 25, 64, 32),
    (150, 33, 12, 0, 0),
    (77, 5, 1, 7, 5),
    (211, 300, 7, 0, 0),
    (64, 257, 63, 16, 16),
]


@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
@pytest.mark.parametrize("metric", METRICS)
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "N{}-D{}-k{}-t{}x{}".format(*s))
def test_knn_matches_reference(shape, metric, dtype):
    n, d, k, tr, tc = shape
    X = _data(n * 1000 + d, n, d, dtype)
    g = ma.knn(X, k=k, metric=metric, tile_rows=tr, tile_cols=tc)
    _check_graph(g, X, k, metric)
    assert g.n == n


@pytest.mark.parametrize(
    "metric, dtype", [("l2", np.float32), ("ip", np.float64), ("cosine", np.float32)], ids=["l2-f32", "ip-f64", "cos-f32"]
)
def test_knn_several_automatic_tiles(metric, dtype):
    """N large enough for several automatic tiles plus a ragged remainder."""
    n, d, k = 2500, 40, 10
    X = _data(7, n, d, dtype)
    g = ma.knn(X, k=k, metric=metric)
    _check_graph(g, X, k, metric)


@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
@pytest.mark.parametrize("metric", ("ip", "l2"))
@pytest.mark.parametrize("seed", [0, 1])
def test_knn_exact_ties_lower_index_first(seed, metric, dtype):
    """Small integers: every product and distance is exact in float32 and
    float64, so ties are real and the result must equal the reference EXACTLY,
    ties ordered by the lower index."""
    rng = np.random.default_rng(seed)
    X = rng.integers(-2, 3, size=(157, 3)).astype(dtype)
    k = 20
    ref_values, ref_indices = ref.knn(X, k, metric)
    # the data really has ties at the cut (otherwise this test proves nothing)
    assert np.any(ref_values[:, :-1] == ref_values[:, 1:])
    for tiles in [(0, 0), (5, 7), (13, 5)]:
        g = ma.knn(X, k=k, metric=metric, tile_rows=tiles[0], tile_cols=tiles[1])
        np.testing.assert_array_equal(g.indices, ref_indices, err_msg=f"tiles {tiles}")
        np.testing.assert_array_equal(g.values.astype(np.float64), ref_values, err_msg=f"tiles {tiles}")
    Q = rng.integers(-2, 3, size=(23, 3)).astype(dtype)
    qv, qi = ref.knn(X, k, metric, queries=Q)
    g = ma.knn(X, k=k, metric=metric, queries=Q, tile_rows=5, tile_cols=7)
    np.testing.assert_array_equal(g.indices, qi)
    np.testing.assert_array_equal(g.values.astype(np.float64), qv)


@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
@pytest.mark.parametrize("metric", ("ip", "l2"))
def test_knn_all_rows_identical(metric, dtype):
    """Every row equal: all values tie, so row i is exactly the other indices in
    increasing order (self excluded by index, not by value or position)."""
    n = 9
    X = np.tile(_data(3, 1, 4, dtype), (n, 1))
    g = ma.knn(X, k=n - 1, metric=metric, tile_rows=2, tile_cols=3)
    expected = np.array([[j for j in range(n) if j != i] for i in range(n)], dtype=np.int64)
    np.testing.assert_array_equal(g.indices, expected)
    assert np.all(g.values == g.values[:, :1]), "identical pairs in one row gave different values"


@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
@pytest.mark.parametrize("metric", ("l2", "cosine"))
def test_knn_duplicate_rows_are_neighbours(metric, dtype):
    X = _data(11, 90, 6, dtype)
    X[37] = X[10]  # a pair
    X[50] = X[3]  # a triple
    X[51] = X[3]
    g = ma.knn(X, k=4, metric=metric, tile_rows=7, tile_cols=5)
    _check_graph(g, X, 4, metric)
    best = 0.0 if metric == "l2" else 1.0
    _, atol = ref.knn_tolerance(X, metric)
    assert g.indices[10, 0] == 37 and g.indices[37, 0] == 10
    # exact ties between twins: lower index first
    assert g.indices[3, :2].tolist() == [50, 51]
    assert g.indices[50, :2].tolist() == [3, 51]
    assert g.indices[51, :2].tolist() == [3, 50]
    for row in (10, 37, 3, 50, 51):
        assert abs(float(g.values[row, 0]) - best) <= atol, (row, g.values[row, 0])
    assert g.values[3, 0] == g.values[3, 1], "twins of row 3 were scored differently"


@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
@pytest.mark.parametrize("metric", ("ip", "l2"))
def test_knn_layouts_bitwise_identical(metric, dtype, tmp_path):
    """C order, F order, a read-only np.memmap, strided slices and negative
    strides all give bitwise the result of the C-contiguous copy."""
    rng = np.random.default_rng(5)
    big = rng.standard_normal((2 * 131 + 1, 2 * 19 + 3)).astype(dtype)
    views = {
        "slice": big[::2, 1::2][:131, :19],
        "reversed": big[::-1, ::-1][:131, :19],
        "fortran": np.asfortranarray(big[:131, :19]),
    }
    path = tmp_path / "x.dat"
    mm = np.memmap(path, dtype=dtype, mode="w+", shape=(131, 19))
    mm[:] = big[5:136, 2:21]
    mm.flush()
    del mm
    views["memmap"] = np.memmap(path, dtype=dtype, mode="r", shape=(131, 19))
    for name, V in views.items():
        assert V.shape == (131, 19)
        C = np.ascontiguousarray(V)
        g_view = ma.knn(V, k=7, metric=metric, tile_rows=13, tile_cols=5)
        g_c = ma.knn(C, k=7, metric=metric, tile_rows=13, tile_cols=5)
        np.testing.assert_array_equal(g_view.indices, g_c.indices, err_msg=name)
        np.testing.assert_array_equal(g_view.values, g_c.values, err_msg=name)
        _check_graph(g_view, C, 7, metric)


@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
@pytest.mark.parametrize("metric", METRICS)
def test_knn_queries_against_database(metric, dtype):
    X = _data(21, 120, 9, dtype)
    Q = _data(22, 37, 9, dtype)
    for tiles, k in [((0, 0), 11), ((5, 13), 11), ((7, 3), 1), ((0, 0), 119)]:
        g = ma.knn(X, k=k, metric=metric, queries=Q, tile_rows=tiles[0], tile_cols=tiles[1])
        _check_graph(g, X, k, metric, queries=Q)


@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
def test_knn_queries_equal_to_x_keep_self(dtype):
    """With explicit queries nothing is excluded: each row's nearest (l2) is itself."""
    X = _data(23, 64, 5, dtype)
    g = ma.knn(X, k=3, metric="l2", queries=X, tile_rows=5, tile_cols=7)
    np.testing.assert_array_equal(g.indices[:, 0], np.arange(64))
    _, atol = ref.knn_tolerance(X, "l2")
    assert np.all(np.abs(g.values[:, 0].astype(np.float64)) <= atol)
    assert not g.self_excluded
    g_self = ma.knn(X, k=3, metric="l2")
    assert g_self.self_excluded
    np.testing.assert_array_equal(g_self.indices[:, :2], g.indices[:, 1:])


def test_knn_rescore_float32_l2():
    """Rows far from the origin: the norm expansion loses digits in float32;
    rescore=True must return each pair's exact distance (to float32 rounding of
    a D-term sum) and still the right neighbours."""
    n, d, k = 400, 16, 8
    X = _data(31, n, d, np.float32, loc=300.0)
    g = ma.knn(X, k=k, metric="l2", rescore=True, tile_rows=29, tile_cols=37)
    X64 = ref.as_f64(X)
    exact = np.einsum("ijk,ijk->ij", X64[:, None, :] - X64[g.indices], X64[:, None, :] - X64[g.indices])
    eps32 = float(np.finfo(np.float32).eps)
    np.testing.assert_allclose(g.values.astype(np.float64), exact, rtol=4 * (d + 2) * eps32, atol=0)
    assert np.all(np.diff(g.values.astype(np.float64), axis=1) >= 0), "rows not sorted best first"
    # and they are the TRUE k nearest: the sorted values match the reference's
    # first k within the rescored tolerance (a missed neighbour would show up
    # as a too-large value), index sets compared tie-aware
    ref_values, ref_indices = ref.knn(X, n - 1, "l2")
    ref.assert_knn_equal(g.values, g.indices, ref_values, ref_indices, 4 * (d + 2) * eps32, 0.0)
    assert g.values.dtype == np.float32
    # the data really needs rescoring: one float32 rounding of ‖x‖² alone is
    # far larger than the rescored tolerance on the distances
    norm2 = float((X64 * X64).sum(axis=1).max())
    assert eps32 * norm2 > 100 * 4 * (d + 2) * eps32 * ref_values[:, :k].max()


@pytest.mark.parametrize("screen", ("off", "int8"))
@pytest.mark.parametrize("simd", SIMD_LEVELS)
@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
@pytest.mark.parametrize("metric", ("ip", "l2"))
def test_knn_simd_levels_bitwise_identical(simd, metric, dtype, screen):
    """Every SIMD level the CPU has gives bitwise the scalar result (same FMA
    order everywhere; the int8 screen's VNNI and portable kernels pick the same
    exact float64 graph), and that result is right."""
    for n, d, k, tr, tc in [
        (173, 33, 9, 0, 0),
        (61, 1, 5, 5, 7),
        (90, 7, 89, 13, 11),
        (129, 64, 16, 32, 17),
        (150, 301, 6, 0, 0),
    ]:
        X = _data(41 + d, n, d, dtype)
        g = ma.knn(X, k=k, metric=metric, simd=simd, tile_rows=tr, tile_cols=tc, screen=screen)
        g_scalar = ma.knn(X, k=k, metric=metric, simd="scalar", tile_rows=tr, tile_cols=tc,
                          screen=screen)
        np.testing.assert_array_equal(g.indices, g_scalar.indices, err_msg=f"{simd} N={n} D={d}")
        np.testing.assert_array_equal(g.values, g_scalar.values, err_msg=f"{simd} N={n} D={d}")
        _check_graph(g, X, k, metric)
        Q = _data(43 + d, 19, d, dtype)
        gq = ma.knn(X, k=min(k, n), metric=metric, queries=Q, simd=simd, tile_rows=tr,
                    tile_cols=tc, screen=screen)
        gq_scalar = ma.knn(X, k=min(k, n), metric=metric, queries=Q, simd="scalar",
                           tile_rows=tr, tile_cols=tc, screen=screen)
        np.testing.assert_array_equal(gq.indices, gq_scalar.indices)
        np.testing.assert_array_equal(gq.values, gq_scalar.values)


def test_simd_auto_is_listed_level():
    info = ma.build_info()
    assert "scalar" in info["simd_available"]
    X = _data(44, 50, 10, np.float32)
    g_auto = ma.knn(X, k=4, simd="auto")
    g_sel = ma.knn(X, k=4, simd=info["simd_selected"])
    np.testing.assert_array_equal(g_auto.values, g_sel.values)
    np.testing.assert_array_equal(g_auto.indices, g_sel.indices)


@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
@pytest.mark.parametrize("metric", METRICS)
def test_knn_thread_count_invariance(metric, dtype):
    X = _data(51, 523, 24, dtype)
    Q = _data(52, 201, 24, dtype)
    runs = [ma.knn(X, k=10, metric=metric, n_threads=t, tile_rows=37, tile_cols=41) for t in (1, 2, 0)]
    qruns = [ma.knn(X, k=10, metric=metric, queries=Q, n_threads=t, tile_rows=37, tile_cols=41) for t in (1, 2, 0)]
    for other in runs[1:]:
        np.testing.assert_array_equal(runs[0].indices, other.indices)
        np.testing.assert_array_equal(runs[0].values, other.values)
    for other in qruns[1:]:
        np.testing.assert_array_equal(qruns[0].indices, other.indices)
        np.testing.assert_array_equal(qruns[0].values, other.values)
    _check_graph(runs[0], X, 10, metric)


@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
@pytest.mark.parametrize("metric", METRICS)
def test_knngraph_save_load_roundtrip(metric, dtype, tmp_path):
    X = _data(61, 80, 6, dtype)
    g = ma.knn(X, k=5, metric=metric)
    path = tmp_path / "graph.npz"
    g.save(path)
    assert path.exists()
    # a plain npz, no pickled objects
    with np.load(path, allow_pickle=False) as z:
        for name in z.files:
            assert z[name].dtype != object
    h = ma.KnnGraph.load(path)
    assert isinstance(h, ma.KnnGraph)
    np.testing.assert_array_equal(h.indices, g.indices)
    np.testing.assert_array_equal(h.values, g.values)
    assert h.indices.dtype == np.int64
    assert h.values.dtype == g.values.dtype == np.dtype(dtype)
    assert h.metric == metric
    assert h.self_excluded
    assert (h.k, h.n) == (5, 80)
    # and a queries graph keeps self_excluded=False
    gq = ma.knn(X, k=3, metric=metric, queries=X[:7])
    gq.save(tmp_path / "q.npz")
    hq = ma.KnnGraph.load(tmp_path / "q.npz")
    assert not hq.self_excluded
    np.testing.assert_array_equal(hq.indices, gq.indices)
    # str paths work as well as pathlib paths
    g.save(str(tmp_path / "graph2.npz"))
    np.testing.assert_array_equal(ma.KnnGraph.load(str(tmp_path / "graph2.npz")).indices, g.indices)


def test_knn_method_exact_is_default():
    X = _data(71, 60, 4, np.float64)
    a = ma.knn(X, k=5)
    b = ma.knn(X, k=5, method="exact", metric="ip")
    np.testing.assert_array_equal(a.indices, b.indices)
    np.testing.assert_array_equal(a.values, b.values)
    assert a.metric == "ip"


def test_knn_does_not_modify_input():
    X = _data(72, 40, 5, np.float32)
    before = X.copy()
    ma.knn(X, k=3, metric="cosine")
    ma.knn(X, k=3, metric="l2", rescore=True)
    np.testing.assert_array_equal(X, before)


def test_assert_knn_equal_detects_errors():
    """The tie-aware helper itself must be able to fail."""
    X = _data(81, 40, 3, np.float64)
    rv, ri = ref.knn(X, 39, "l2")
    v, i = rv[:, :5].copy(), ri[:, :5].copy()
    ref.assert_knn_equal(v, i, rv, ri, 1e-12, 1e-12)
    wrong = i.copy()
    wrong[0, 0] = ri[0, 20]  # a far candidate
    with pytest.raises(AssertionError):
        ref.assert_knn_equal(v, wrong, rv, ri, 1e-12, 1e-12)
    with pytest.raises(AssertionError):
        ref.assert_knn_equal(v + 1e-3, i, rv, ri, 1e-12, 1e-12)
    dup = i.copy()
    dup[1, 1] = dup[1, 0]
    with pytest.raises(AssertionError):
        ref.assert_knn_equal(v, dup, rv, ri, 1e-12, 1e-12)
    # swapping two exactly tied neighbours is accepted
    T = np.zeros((6, 2))
    T[1:] = [[1, 0], [0, 1], [-1, 0], [0, -1], [3, 3]]
    tv, ti = ref.knn(T, 5, "l2")
    assert ti[0, :4].tolist() == [1, 2, 3, 4]
    swapped = ti[:, :3].copy()
    swapped[0] = [2, 1, 4]
    ref.assert_knn_equal(tv[:, :3], swapped, tv, ti, 0, 0)
