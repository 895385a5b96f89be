"""Exact kNN through the int8 screen (cpp/src/knn_screen.cpp).

The screen only decides which pairs are re-scored; the graph it returns must be, bit for
bit, the float64 engine's graph of the same rows (``X.astype(float64)``, ``screen="off"``),
whatever the kernel (VNNI or portable), tiles, threads, memory layout, and including the
rows whose candidates the bound cannot separate (re-searched by the float64 kernel)."""
import numpy as np
import pytest

import matalign as ma
import reference as ref

SIMD_LEVELS = tuple(ma.build_info()["simd_available"])


def _core_bits(k, self_mode, n, d):
    from matalign import _core
    return {"int8": 8, "int16": 16, "off": 0}[_core.knn_screen_auto(k, self_mode, n, d)]


def _data(seed, n, d, dtype, *, scale=1.0):
    rng = np.random.default_rng(seed)
    return (scale * rng.standard_normal((n, d))).astype(dtype)


def _float64_graph(X, k, metric, queries=None, **kw):
    Q = None if queries is None else np.asarray(queries, dtype=np.float64)
    return ma.knn(np.asarray(X, dtype=np.float64), k=k, metric=metric, queries=Q, screen="off", **kw)


def _assert_same_as_float64(g, X, k, metric, queries=None):
    if metric == "cosine":  # rows are normalised in X's dtype first, then searched by ip
        X = ma.preprocess(X, l2=True)
        queries = None if queries is None else ma.preprocess(queries, l2=True)
        metric = "ip"
    g64 = _float64_graph(X, k, metric, queries)
    np.testing.assert_array_equal(g.indices, g64.indices)
    np.testing.assert_array_equal(g.values, g64.values.astype(g.values.dtype))


@pytest.mark.parametrize("screen", ("int8", "int16"))
@pytest.mark.parametrize("dtype", (np.float32, np.float64), ids=["f32", "f64"])
@pytest.mark.parametrize("metric", ("ip", "l2", "cosine"))
@pytest.mark.parametrize("n,d,k,tr,tc", [
    (50, 1, 1, 0, 0),          # D = 1, k = 1
    (97, 33, 96, 13, 11),      # k = N - 1, ragged tiles
    (300, 256, 10, 0, 0),
    (513, 7, 5, 64, 100),      # N not a multiple of the tile
    (40, 301, 3, 5, 5),        # N smaller than one tile... of many tiny ones; D > 256
])
def test_screen_is_the_float64_graph(dtype, metric, n, d, k, tr, tc, screen):
    X = _data(n * 7 + d, n, d, dtype)
    X[3] = X[11 % n]  # a duplicate row
    g = ma.knn(X, k=k, metric=metric, screen=screen, tile_rows=tr, tile_cols=tc)
    assert g.values.dtype == X.dtype
    _assert_same_as_float64(g, X, k, metric)
    # and the tie-aware reference from the math
    rv, ri = ref.knn(X, k, metric)
    ref.assert_knn_equal(g.values, g.indices, rv, ri, 1e-6 if dtype == np.float32 else 1e-12, 1e-6)
    Q = _data(5 + d, 23, d, dtype)
    gq = ma.knn(X, k=min(k, n), metric=metric, queries=Q, screen=screen, tile_rows=tr,
                tile_cols=tc)
    _assert_same_as_float64(gq, X, min(k, n), metric, Q)


@pytest.mark.parametrize("screen", ("int8", "int16"))
@pytest.mark.parametrize("simd", SIMD_LEVELS)
def test_screen_kernels_threads_and_layouts_agree(simd, tmp_path, screen):
    X = _data(3, 700, 64, np.float32)
    base = ma.knn(X, k=7, metric="l2", screen=screen, simd="scalar", n_threads=1)
    for kw in ({"simd": simd}, {"simd": simd, "n_threads": 2}, {"simd": simd, "tile_rows": 29, "tile_cols": 31}):
        g = ma.knn(X, k=7, metric="l2", screen=screen, **kw)
        np.testing.assert_array_equal(g.indices, base.indices)
        np.testing.assert_array_equal(g.values, base.values)
    F = np.asfortranarray(X)
    path = tmp_path / "x.npy"
    np.save(path, X)
    mm = np.load(path, mmap_mode="r")
    for Xv in (F, mm, X[::1, :]):
        g = ma.knn(Xv, k=7, metric="l2", screen=screen, simd=simd)
        np.testing.assert_array_equal(g.indices, base.indices)
        np.testing.assert_array_equal(g.values, base.values)
    strided = np.ascontiguousarray(np.repeat(X, 2, axis=1))[:, ::2]
    g = ma.knn(strided, k=7, metric="l2", screen=screen, simd=simd)
    np.testing.assert_array_equal(g.indices, base.indices)


@pytest.mark.parametrize("simd", SIMD_LEVELS)
@pytest.mark.parametrize("metric", ("ip", "l2"))
@pytest.mark.parametrize("k,tile", [(48, 0), (64, 200), (64, 61), (150, 0), (150, 97)])
def test_screen_batched_first_tiles(simd, metric, k, tile):
    """k >= 48: each row's first tile (self: its own block; queries: the first column tile)
    is merged as a batch by selection (AVX-512: a bit-pattern search for the k-th largest
    lower bound) instead of one heap update per column. Ties at the k-th value (a group of
    70 twins), tiles smaller than k (the held + new selection), the spill lists and both
    kernels must still give the float64 graph bit for bit."""
    X = _data(k + tile, 600, 24, np.float32)
    X[100:170] = X[100]  # 70 twins: equal bounds straddle the k-th value
    Q = np.vstack([_data(9, 40, 24, np.float32), X[100:103]])
    for screen in ("int8", "int16"):
        g = ma.knn(X, k=k, metric=metric, screen=screen, simd=simd, tile_rows=tile, tile_cols=tile)
        _assert_same_as_float64(g, X, k, metric)
        assert not (g.indices == np.arange(len(X))[:, None]).any(), "self must be excluded"
        gq = ma.knn(X, k=k, metric=metric, queries=Q, screen=screen, simd=simd,
                    tile_rows=tile, tile_cols=tile)
        _assert_same_as_float64(gq, X, k, metric, Q)


@pytest.mark.parametrize("metric", ("ip", "l2"))
def test_screen_histogram_thresholds_on_ties(metric):
    """k >= 48 on rows whose scores tie massively: sparse one-hot-like rows (many exact
    zeros, every score an integer) and rows on a coarse grid. The histogram thresholds'
    bins then hold many equal bounds, and the ranking must still break every tie by index,
    exactly as the float64 engine does."""
    rng = np.random.default_rng(17)
    onehot = np.zeros((900, 40), np.float32)
    onehot[np.arange(900), rng.integers(0, 40, 900)] = 1.0
    onehot[::3, 5] += 1.0
    grid = np.round(rng.standard_normal((900, 12)) * 2).astype(np.float32) / 2
    for X, Q in ((onehot, onehot[:50] * 2.0), (grid, grid[:50] + 0.5)):
        for k in (48, 100, 200):
            for screen in ("int8", "int16"):
                g = ma.knn(X, k=k, metric=metric, screen=screen)
                _assert_same_as_float64(g, X, k, metric)
                gq = ma.knn(X, k=k, metric=metric, queries=Q, screen=screen)
                _assert_same_as_float64(gq, X, k, metric, Q)


@pytest.mark.parametrize("metric", ("ip", "l2"))
@pytest.mark.parametrize("tc", (0, 17))
def test_screen_rows_the_bound_cannot_separate(metric, tc):
    """Identical rows, groups of duplicates and a collapsed embedding: candidate lists
    outgrow their inline buffers and spill to growable lists; the same exact graph."""
    const = np.ones((200, 12), np.float32)
    groups = np.repeat(_data(1, 8, 12, np.float32), 40, axis=0)  # 8 groups of 40 twins
    mixed = np.vstack([groups, _data(2, 100, 12, np.float32)])
    for X in (const, groups, mixed):
        for k in (1, 5, 16, 60):
            g = ma.knn(X, k=k, metric=metric, screen="int8", tile_rows=tc, tile_cols=tc)
            _assert_same_as_float64(g, X, k, metric)
            assert not (g.indices == np.arange(len(X))[:, None]).any(), "self must be excluded"


@pytest.mark.parametrize("metric", ("ip", "l2"))
@pytest.mark.parametrize("tc", (0, 700))
def test_screen_collapsed_embedding_goes_to_float64(metric, tc):
    """5000 identical rows with k = 1: every row's undecided list passes the per-row spill
    limit (64·(4k + 64) = 4352 < 4999), so every row is searched by the float64 kernel (over
    blocks of 700 database rows when tc = 700, merged by score and index)."""
    X = np.full((5000, 4), 0.25, np.float32)
    X[::1000] += 1.0  # a few distinct rows among the twins
    for k in (1, 3):
        g = ma.knn(X, k=k, metric=metric, screen="int8", tile_cols=tc)
        _assert_same_as_float64(g, X, k, metric)
        assert not (g.indices == np.arange(len(X))[:, None]).any()


def test_screen_zero_rows_and_range():
    X = _data(4, 120, 16, np.float64)
    X[7] = 0.0
    X[50] = 0.0
    for metric in ("ip", "l2"):
        _assert_same_as_float64(ma.knn(X, k=4, metric=metric, screen="int8"), X, 4, metric)
    # norms outside [1e-12, 1e12]: "int8" refuses, "auto" falls back to the float GEMM
    for scale in (1e13, 1e-14):
        Y = X * scale
        with pytest.raises(ValueError, match="screen='int8' does not apply"):
            ma.knn(Y, k=4, screen="int8")
        g = ma.knn(Y, k=4, screen="auto")
        _assert_same_as_float64(g, Y, 4, "ip")


def test_screen_auto_rule():
    """The rule of screen="auto" (cpp/src/knn.cpp screen_auto, from bench_screen.py's
    crossovers): the screens' range of k grows with N·D."""
    bits = _core_bits
    # N = 20k, D = 256 (bench/README.md's crossover table)
    assert [bits(k, True, 20000, 256) for k in (1, 24, 25, 512, 513)] == [8, 8, 16, 16, 0]
    assert [bits(k, False, 20000, 256) for k in (1, 48, 49, 512, 513)] == [8, 8, 16, 16, 0]
    # N = 5k: self int16 from k = 7 to 512, queries int8 to 12, int16 to 512
    assert [bits(k, True, 5000, 256) for k in (6, 7, 512, 513)] == [8, 16, 16, 0]
    assert [bits(k, False, 5000, 256) for k in (12, 13, 512, 513)] == [8, 16, 16, 0]
    # N = 1k: self int16 to k = 166; queries to 125 (their per-call quantisation of X)
    assert [bits(k, True, 1000, 256) for k in (2, 166, 167)] == [16, 16, 0]
    assert [bits(k, False, 1000, 256) for k in (2, 125, 126)] == [8, 16, 0]
    # the same work per row at lower D and higher N; hard caps at large N
    assert bits(20, True, 80000, 64) == bits(20, True, 20000, 256)
    assert bits(25, True, 10**7, 256) == 16 and bits(513, True, 10**7, 256) == 0
    assert bits(3, True, 100, 4) == 0  # tiny problems: the float GEMM
    assert bits(101, True, 600, 4096) == 0 and bits(100, True, 600, 4096) == 16  # k <= N/6


def test_screen_auto_takes_the_rule():
    """On a VNNI CPU auto runs the precision of the rule (the float64 graph bit for bit); on
    other CPUs always the float GEMM. Which path ran shows in the values: the screens return
    float64 values, the float GEMM float32 sums."""
    X = _data(6, 3000, 256, np.float32)
    Q = _data(7, 200, 256, np.float32)
    on_vnni = ma.build_info()["knn_screen"] == "vnni"
    for k, queries in ((3, None), (10, None), (17, None), (5, Q), (20, Q), (30, Q)):
        expect = {8: "int8", 16: "int16"}.get(_core_bits(k, queries is None, 3000, 256), "off")
        g = ma.knn(X, k=k, metric="l2", queries=queries)
        other = ma.knn(X, k=k, metric="l2", queries=queries, screen=expect if on_vnni else "off")
        np.testing.assert_array_equal(g.values, other.values)
        np.testing.assert_array_equal(g.indices, other.indices)


def test_screen_bad_value_and_progress():
    X = _data(8, 300, 16, np.float32)
    with pytest.raises(ValueError, match="screen"):
        ma.knn(X, k=3, screen="bf16")
    with pytest.raises(ValueError, match="screen='int16' does not apply"):
        ma.knn(X * 1e13, k=3, screen="int16")
    calls = []
    g = ma.knn(X, k=3, screen="int8", tile_rows=32, tile_cols=32,
               progress=lambda done, total: calls.append((done, total)))
    assert calls and calls[-1][0] == calls[-1][1]
    _assert_same_as_float64(g, X, 3, "ip")


@pytest.mark.parametrize("offset", (3.0, -50.0, 1e4))
def test_screen_offset_rows(offset):
    """A large common offset (all-positive activations, a shared mean): the rows are centred
    before quantisation (the bounds' c terms carry <μ, x>); the same exact graph, ip, l2 and
    cosine, self and queries."""
    X = offset + _data(10, 400, 24, np.float32)
    Q = offset + _data(11, 30, 24, np.float32)
    for metric in ("ip", "l2", "cosine"):
        _assert_same_as_float64(ma.knn(X, k=7, metric=metric, screen="int8"), X, 7, metric)
        _assert_same_as_float64(ma.knn(X, k=7, metric=metric, queries=Q, screen="int8"), X, 7,
                                metric, Q)
    R = np.maximum(_data(12, 500, 32, np.float32), 0.0)  # ReLU features
    for metric in ("ip", "l2", "cosine"):
        _assert_same_as_float64(ma.knn(R, k=5, metric=metric, screen="int8"), R, 5, metric)


def test_screen_heavy_tailed_rows():
    """One dominant coordinate makes the int8 step coarse for the other coordinates: more
    candidates per row, same exact graph."""
    X = _data(9, 600, 40, np.float32)
    X[:, 0] *= 300.0
    X[::7] *= 1e3  # rows of very different norms
    for metric in ("ip", "l2"):
        _assert_same_as_float64(ma.knn(X, k=9, metric=metric, screen="int8"), X, 9, metric)


@pytest.mark.parametrize("simd", SIMD_LEVELS)
@pytest.mark.parametrize("n,d,k,tile", [(50, 1, 1, 0), (97, 33, 3, 13), (300, 256, 1, 0),
                                        (513, 7, 5, 48), (200, 5, 1, 7)])
def test_rank_count_float32_screen_is_the_float64_count(simd, n, d, k, tile):
    """RankCount of float64 rows decides comparisons on float32 tiles where the error bound
    settles them and in float64 elsewhere: the counts equal the float64 pass exactly, with
    duplicate rows, exact ties (integer grids) and targets tied with their twins."""
    from matalign import _core
    rng = np.random.default_rng(n + d)
    for Y in (rng.standard_normal((n, d)), rng.integers(0, 3, (n, d)).astype(np.float64)):
        Y[3] = Y[8]
        Y[10 % n] = Y[8]
        T = np.stack([rng.choice(np.delete(np.arange(n), i), k, replace=False) for i in range(n)])
        T[8, 0] = 3
        a = _core.rank_count_f64(Y, T, tile_rows=tile, simd=simd, prefilter=True)
        b = _core.rank_count_f64(Y, T, tile_rows=tile, simd=simd, prefilter=False)
        np.testing.assert_array_equal(a, b)
        # and the definition, from the dense float64 distances
        D = ((Y[:, None, :] - Y[None, :, :]) ** 2).sum(-1)
        for i in (0, 8, n - 1):
            for t in range(k):
                j = T[i, t]
                others = np.delete(np.arange(n), i)
                dd = D[i, others]
                want = int((dd < D[i, j]).sum() + ((dd == D[i, j]) & (others < j)).sum())
                assert abs(int(a[i, t]) - want) <= (0 if Y.dtype == np.float64 and np.all(Y == np.round(Y)) else 1)


def test_rank_count_screen_range_fallback():
    """Entries float32 cannot hold with a relative bound (|y| > 1e15 or 0 < |y| < 1e-15):
    the float64 pass runs instead, same counts."""
    from matalign import _core
    rng = np.random.default_rng(1)
    Y = rng.standard_normal((60, 4))
    T = ((np.arange(60) + 1) % 60)[:, None].astype(np.int64)
    for scale in (1e16, 1e-16):
        Z = Y * scale
        np.testing.assert_array_equal(_core.rank_count_f64(Z, T, prefilter=True),
                                      _core.rank_count_f64(Z, T, prefilter=False))
