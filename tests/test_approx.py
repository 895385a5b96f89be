"""Approximate kNN through FAISS (``ma.knn(method="ivf" | "hnsw" | "ivfpq")``), judged by recall.

Data: a seeded mixture of 64 overlapping Gaussian clusters, N = 5000, D = 32 (float32), on
which the default parameters give ivf ≈ 0.99, hnsw ≈ 0.999 and ivfpq (8 bytes per vector)
≈ 0.6-0.7 recall at k = 10. Every reported recall is re-measured here from a dense float64
reference on the same seeded rows, and must match.
"""

from __future__ import annotations

import sys

import numpy as np
import pytest
import reference as ref

import matalign as ma
from matalign import approx

pytest.importorskip("faiss", reason="faiss-cpu is a test dependency (pip install faiss-cpu)")

N, D, K = 5000, 32, 10
METRICS = ("ip", "l2", "cosine")
# Stated recall thresholds (k = 10, N = 5000, D = 32, overlapping clusters). IVF-PQ runs on
# one thread here: its PQ k-means on 5000 rows is made of tiny OpenMP regions, which run up to
# 10x slower with two threads on a busy 2-core machine.
CASES = {
    "ivf": ({}, 0.9),                                  # default nlist=128, nprobe=16
    "hnsw": ({"M": 16, "ef_search": 64}, 0.9),
    "ivfpq": ({"pq_m": 8, "n_threads": 1}, 0.5),       # 8 bytes/vector, 7-bit codes
}


def _clustered(seed=0, n=N, d=D, clusters=64, sep=1.0, dtype=np.float32, centres_seed=None):
    """Rows around seeded cluster centres (the centres come from ``centres_seed``, default
    ``seed``; queries share the database's centres)."""
    crng = np.random.default_rng(seed if centres_seed is None else centres_seed)
    centres = sep * crng.standard_normal((clusters, d))
    rng = np.random.default_rng(seed if centres_seed is None else (seed, 1))
    labels = rng.integers(0, clusters, n)
    return (centres[labels] + rng.standard_normal((n, d))).astype(dtype)


@pytest.fixture(scope="module")
def X():
    return _clustered(0)


def _reference_recall(X, indices, k, metric, *, recall_sample=1000, seed=0, queries=None):
    """Recall on the documented seeded rows, from the dense float64 reference (self by index)."""
    m = X.shape[0] if queries is None else queries.shape[0]
    rows = np.sort(np.random.default_rng(seed).choice(m, size=min(recall_sample, m),
                                                      replace=False))
    source = X if queries is None else queries
    S = ref.pairwise_scores(X, metric, source[rows])
    key = -S if metric in ("ip", "cosine") else S.copy()
    if queries is None:
        key[np.arange(rows.size), rows] = np.inf          # exclude self by index
    col = np.broadcast_to(np.arange(X.shape[0]), key.shape)
    exact = np.lexsort((col, key), axis=-1)[:, :k]
    hits = sum(len(set(a) & set(b)) for a, b in zip(indices[rows].tolist(), exact.tolist()))
    return hits / (rows.size * k)


def _check_rows(g, X, metric, queries=None):
    """Shapes, dtypes, no self, valid indices, best first with ties by index, true values."""
    m = X.shape[0] if queries is None else queries.shape[0]
    assert g.indices.shape == g.values.shape == (m, g.k)
    assert g.indices.dtype == np.int64 and g.values.dtype == np.float32
    assert g.indices.min() >= 0 and g.indices.max() < X.shape[0]
    assert all(len(set(r)) == g.k for r in g.indices[:200].tolist()), "duplicate neighbours"
    if queries is None:
        assert g.self_excluded
        assert not (g.indices == np.arange(m)[:, None]).any(), "self among the neighbours"
    key = g.values if metric == "l2" else -g.values
    dk = np.diff(key, axis=1)
    assert (dk >= 0).all(), "rows not ordered best first"
    assert (np.diff(g.indices, axis=1)[dk == 0] > 0).all(), "ties not ordered by index"
    # values are the metric's values of the listed neighbours (float32 rounding only)
    source = X if queries is None else queries
    S = ref.pairwise_scores(X, metric, source[:300])
    want = np.take_along_axis(S, g.indices[:300], axis=1)
    scale = np.abs(S).max()
    np.testing.assert_allclose(g.values[:300], want, rtol=1e-5, atol=1e-5 * scale)


@pytest.mark.parametrize("metric", METRICS)
@pytest.mark.parametrize("method", sorted(CASES))
def test_recall_threshold_and_independent_recall(X, method, metric):
    options, threshold = CASES[method]
    g = ma.knn(X, k=K, metric=metric, method=method, **options)
    assert g.method == method and g.metric == metric
    assert isinstance(g.recall, float)
    assert g.recall >= threshold, f"{method}/{metric}: recall {g.recall:.4f} < {threshold}"
    assert g.recall == pytest.approx(_reference_recall(X, g.indices, K, metric), abs=1e-12)
    _check_rows(g, X, metric)


def test_low_recall_is_reported_exactly(X):
    """nprobe=1 misses many neighbours: the recall must say so, to the neighbour."""
    g = ma.knn(X, k=K, metric="l2", method="ivf", nprobe=1, recall_sample=700, seed=3)
    assert 0.3 < g.recall < 0.9
    want = _reference_recall(X, g.indices, K, "l2", recall_sample=700, seed=3)
    assert g.recall == pytest.approx(want, abs=1e-12)
    # more lists visited -> better recall
    assert ma.knn(X, k=K, metric="l2", method="ivf", nprobe=8).recall > g.recall


def test_recall_sample_larger_than_n_uses_every_row():
    X = _clustered(4, n=600, d=16)
    g = ma.knn(X, k=5, metric="l2", method="hnsw", M=4, ef_search=6, recall_sample=10**6)
    rv, ri = ref.knn(X, 5, "l2")
    full = sum(len(set(a) & set(b)) for a, b in zip(g.indices.tolist(), ri.tolist())) / (600 * 5)
    assert g.recall == pytest.approx(full, abs=1e-12)
    assert g.recall < 1.0, "test data too easy to tell recalls apart"


def test_exhaustive_ivf_equals_exact(X):
    """nprobe = nlist visits every list: the graph is the exact graph."""
    g = ma.knn(X, k=K, metric="l2", method="ivf", nlist=16, nprobe=16)
    e = ma.knn(X, k=K, metric="l2", rescore=True)
    assert g.recall == 1.0
    np.testing.assert_array_equal(g.indices, e.indices)
    np.testing.assert_allclose(g.values, e.values, rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("method", sorted(CASES))
def test_queries(X, method):
    Q = _clustered(9, n=300, centres_seed=0)
    options, threshold = CASES[method]
    g = ma.knn(X, k=K, metric="cosine", method=method, queries=Q, **options)
    assert not g.self_excluded and g.method == method
    assert g.recall >= threshold
    want = _reference_recall(X, g.indices, K, "cosine", queries=Q)
    assert g.recall == pytest.approx(want, abs=1e-12)
    _check_rows(g, X, "cosine", queries=Q)
    # k = N is allowed with queries (nothing excluded)
    small = X[:50]
    h = ma.knn(small, k=50, metric="l2", method="hnsw", queries=Q[:5])
    assert h.indices.shape == (5, 50) and h.recall == 1.0


def test_duplicates_are_neighbours_and_self_is_excluded_by_index():
    A = _clustered(5, n=1000, d=16)
    X = np.vstack([A, A])
    for method in ("ivf", "hnsw"):
        g = ma.knn(X, k=3, metric="l2", method=method)
        twin = (np.arange(2000) + 1000) % 2000
        assert not (g.indices == np.arange(2000)[:, None]).any()
        found = g.indices[:, 0] == twin
        assert found.mean() > 0.95, method
        assert (g.values[found, 0] == 0.0).all()


def test_rows_with_missing_results_are_filled_exactly():
    """With many tiny lists and nprobe=1, IVF finds fewer than k+1 vectors for some rows;
    those rows are searched exactly, so no -1 index is ever returned."""
    X = _clustered(6, n=400, d=8, clusters=8)
    g = ma.knn(X, k=20, metric="l2", method="ivf", nlist=100, nprobe=1)
    assert g.indices.min() >= 0
    assert not (g.indices == np.arange(400)[:, None]).any()
    _check_rows(g, X, "l2")
    e = ma.knn(X, k=20, metric="l2", rescore=True)
    sizes = np.bincount(approx_assignments(X, 100), minlength=100)
    assert sizes.min() < 21, "test setup: some list must be smaller than k+1"
    # at least the rows that were re-searched are exact
    exact_rows = (g.indices == e.indices).all(axis=1)
    assert exact_rows.sum() > 0


def approx_assignments(X, nlist):
    import faiss

    q = faiss.IndexFlatL2(X.shape[1])
    index = faiss.IndexIVFFlat(q, X.shape[1], nlist)
    index.cp.seed = 0
    index.train(X)
    return q.search(X, 1)[1].ravel()


def test_same_seed_same_graph_and_seed_moves_the_sample(X):
    a = ma.knn(X, k=K, method="ivf", nprobe=4, seed=7)
    b = ma.knn(X, k=K, method="ivf", nprobe=4, seed=7)
    np.testing.assert_array_equal(a.indices, b.indices)
    assert a.recall == b.recall
    c = ma.knn(X, k=K, method="ivf", nprobe=4, seed=8, recall_sample=50)
    assert c.recall == pytest.approx(
        _reference_recall(X, c.indices, K, "ip", recall_sample=50, seed=8), abs=1e-12)


def test_rescore_and_ivfpq_values_are_exact(X):
    g = ma.knn(X, k=K, metric="ip", method="ivfpq", n_threads=1)
    S = ref.pairwise_scores(X, "ip", X[:100])
    np.testing.assert_allclose(g.values[:100], np.take_along_axis(S, g.indices[:100], 1),
                               rtol=1e-6, atol=1e-5)
    h = ma.knn(X, k=K, metric="l2", method="hnsw", rescore=True)
    S = ref.pairwise_scores(X, "l2", X[:100])
    np.testing.assert_allclose(h.values[:100], np.take_along_axis(S, h.indices[:100], 1),
                               rtol=1e-6, atol=1e-5)


def test_threads_are_restored_and_progress_is_reported(X):
    import faiss

    before = faiss.omp_get_max_threads()
    calls = []
    g = ma.knn(X[:2000], k=5, method="hnsw", n_threads=1,
               progress=lambda done, total: calls.append((done, total)))
    assert faiss.omp_get_max_threads() == before
    assert calls[0] == (0, 4000) and calls[-1] == (4000, 4000)
    assert all(a[0] <= b[0] for a, b in zip(calls, calls[1:]))
    assert g.recall > 0.9


def test_default_parameters_table():
    p = approx.resolve_params("ivf", 100_000, 256, 11)
    assert (p.nlist, p.nprobe, p.n_train) == (1265, 20, 80960)
    p = approx.resolve_params("ivf", 1_000_000, 256, 11)
    assert (p.nlist, p.nprobe, p.n_train) == (4000, 63, 256000)
    p = approx.resolve_params("ivf", 5000, 32, 11)
    assert (p.nlist, p.nprobe) == (128, 16)
    assert approx.resolve_params("ivf", 100, 32, 11).nprobe == 2  # nlist = 100 // 39
    p = approx.resolve_params("hnsw", 100_000, 256, 11)
    assert (p.M, p.ef_search, p.ef_construction) == (32, 128, 40)
    assert approx.resolve_params("hnsw", 1000, 8, 101).ef_search == 202
    assert approx.resolve_params("hnsw", 1000, 8, 11, M=64).ef_construction == 64
    p = approx.resolve_params("ivfpq", 100_000, 256, 11)
    assert (p.pq_m, p.pq_nbits) == (32, 8)
    assert approx.resolve_params("ivfpq", 5000, 33, 11).pq_m == 3
    assert approx.resolve_params("ivfpq", 5000, 32, 11).pq_m == 4
    assert approx.resolve_params("ivfpq", 5000, 7, 11).pq_m == 1
    assert approx.resolve_params("ivfpq", 5000, 32, 11).pq_nbits == 7


# ---- errors ------------------------------------------------------------------------------


def test_float64_is_rejected_not_cast(X):
    with pytest.raises(TypeError, match=r"float32.*X\.astype\(np\.float32\).*method='exact'"):
        ma.knn(X.astype(np.float64), k=K, method="hnsw")
    with pytest.raises(TypeError, match="queries has dtype float64"):
        ma.knn(X, k=K, method="ivf", queries=X[:5].astype(np.float64))


def test_missing_faiss_names_the_pip_package(X, monkeypatch):
    monkeypatch.setitem(sys.modules, "faiss", None)  # makes `import faiss` raise ImportError
    with pytest.raises(ImportError, match=r"method='ivf' needs FAISS.*pip install faiss-cpu"):
        ma.knn(X, k=K, method="ivf")
    ma.knn(X[:100], k=3)  # exact search does not need FAISS


@pytest.mark.parametrize("kwargs, error, match", [
    ({"method": "ivf", "nlist": 0}, ValueError, "nlist must be >= 1; got 0"),
    ({"method": "ivf", "nlist": 5001}, ValueError, "nlist must be between 1 and N = 5000"),
    ({"method": "ivf", "nlist": 64, "nprobe": 65}, ValueError,
     "nprobe must be between 1 and nlist = 64"),
    ({"method": "ivf", "nprobe": 0}, ValueError, "nprobe must be >= 1"),
    ({"method": "ivf", "M": 16}, ValueError, r"M applies to method='hnsw' only"),
    ({"method": "hnsw", "nlist": 16}, ValueError, r"nlist applies to method='ivf' or 'ivfpq'"),
    ({"method": "exact", "ef_search": 16}, ValueError, r"ef_search applies to method='hnsw'"),
    ({"method": "ivf", "pq_m": 8}, ValueError, r"pq_m applies to method='ivfpq' only"),
    ({"method": "hnsw", "ef_search": 10}, ValueError, r"ef_search must be >= .*\(11"),
    ({"method": "hnsw", "M": 2000}, ValueError, "M must be between 2 and 1024"),
    ({"method": "ivfpq", "pq_m": 5}, ValueError, "pq_m must divide D = 32"),
    ({"method": "ivf", "recall_sample": 0}, ValueError, "recall_sample must be >= 1"),
    ({"method": "ivf", "seed": -1}, ValueError, "seed must be >= 0"),
    ({"method": "ivf", "nlist": 2.5}, TypeError, "nlist must be an integer"),
    ({"method": "hnsw", "M": True}, TypeError, "M must be an integer; got the bool"),
    ({"method": "HNSW"}, ValueError, r"method must be one of .*did you mean 'hnsw'"),
])
def test_bad_options(X, kwargs, error, match):
    with pytest.raises(error, match=match):
        ma.knn(X, k=K, **kwargs)


# ---- graphs: metrics warn, save/load keeps method and recall ----------------------------


def test_metrics_from_approximate_graphs_warn(X):
    R = np.random.default_rng(1).standard_normal((D, D)) / np.sqrt(D)
    Y = X @ R.astype(np.float32)
    gx = ma.knn(X, k=K, method="hnsw", M=16)
    gy = ma.knn(Y, k=K, method="ivf")
    ex, ey = ma.knn(X, k=K), ma.knn(Y, k=K)
    pattern = (r"cknna: X was computed from an approximate kNN graph "
               r"\(method='hnsw', recall=0\.\d{4}\)")
    with pytest.warns(UserWarning, match=pattern):
        approx_value = ma.cknna(gx, ey, k=K)
    assert abs(approx_value - ma.cknna(ex, ey, k=K)) < 0.05
    with pytest.warns(UserWarning, match=r"mutual_knn: Y .*method='ivf'"):
        ma.mutual_knn(ex, gy, k=5)
    with pytest.warns(UserWarning, match=r"local_agreement: X .*method='hnsw'"):
        ma.local_agreement(gx, ex, k=K)
    ma.cknna(ex, ey, k=K)  # exact graphs: no warning (warnings are errors in this suite)


def test_save_load_keeps_method_and_recall(X, tmp_path):
    g = ma.knn(X, k=K, metric="cosine", method="ivfpq", n_threads=1)
    h = ma.KnnGraph.load(g.save(tmp_path / "g.npz"))
    assert (h.method, h.recall, h.metric) == ("ivfpq", g.recall, "cosine")
    np.testing.assert_array_equal(h.indices, g.indices)
    assert "method='ivfpq'" in repr(h) and f"recall={g.recall:.4f}" in repr(h)
    assert g.head(3).method == "ivfpq" and g.head(3).recall == g.recall
    # a file written before approximate search existed (no "method" key) loads as exact
    e = ma.knn(X[:100], k=3)
    with np.load(e.save(tmp_path / "e.npz")) as data:
        arrays = {key: data[key] for key in data.files if key != "method"}
    np.savez(tmp_path / "old.npz", **arrays)
    old = ma.KnnGraph.load(tmp_path / "old.npz")
    assert old.method == "exact" and old.recall is None


def test_knngraph_method_is_validated():
    idx = np.array([[1], [0]], dtype=np.int64)
    val = np.zeros((2, 1), dtype=np.float32)
    assert ma.KnnGraph(idx, val, "ip", True).method == "exact"
    with pytest.raises(ValueError, match="KnnGraph method must be one of"):
        ma.KnnGraph(idx, val, "ip", True, 0.5, "annoy")


# ---- GPU plumbing (no GPU here: FAISS's GPU entry points are stood in for) ----------------


def _fake_gpu(monkeypatch, calls, fail=False):
    """Make the installed faiss look like a GPU build whose 'GPU index' is the CPU index."""
    import faiss

    class Options:
        useFloat16 = False

    class ParameterSpace:
        def set_index_parameter(self, index, name, value):
            calls.append((name, value))
            setattr(index, name, value)

    def to_gpu(res, device, index, options):
        if fail:
            raise RuntimeError("unsupported on GPU")
        calls.append(("index_cpu_to_gpu", device, index.is_trained, options.useFloat16))
        return index

    monkeypatch.setattr(faiss, "StandardGpuResources", object, raising=False)
    monkeypatch.setattr(faiss, "get_num_gpus", lambda: 1, raising=False)
    monkeypatch.setattr(faiss, "GpuClonerOptions", Options, raising=False)
    monkeypatch.setattr(faiss, "GpuParameterSpace", ParameterSpace, raising=False)
    monkeypatch.setattr(faiss, "index_cpu_to_gpu", to_gpu, raising=False)


def test_gpu_plumbing_for_ivf_methods(X, monkeypatch):
    calls = []
    _fake_gpu(monkeypatch, calls)
    g = ma.knn(X, k=K, method="ivf", nprobe=8)
    # cloned before training, to device 0, nprobe set on the clone
    assert calls == [("index_cpu_to_gpu", 0, False, False), ("nprobe", 8)]
    assert g.recall > 0.9
    calls.clear()
    ma.knn(X[:3000], k=K, method="ivfpq", pq_m=8, n_threads=1)
    assert calls == []  # 6-bit codes (3000 training rows): FAISS GPU IVF-PQ needs 8 bits
    ma.knn(_clustered(2, n=10_000, d=16), k=K, method="ivfpq", nlist=16, n_threads=1)
    assert calls[0][0] == "index_cpu_to_gpu" and calls[0][3] is True  # float16 lookup tables
    calls.clear()
    ma.knn(X[:2000], k=K, method="hnsw")
    assert calls == []  # no FAISS GPU HNSW


def test_gpu_refusal_falls_back_on_auto_and_raises_on_cuda(X, monkeypatch):
    calls = []
    _fake_gpu(monkeypatch, calls, fail=True)
    assert ma.knn(X[:2000], k=K, method="ivf").recall > 0.9  # auto: CPU fallback
    params = approx.resolve_params("ivf", 2000, D, K + 1)
    with pytest.raises(RuntimeError, match="could not build method='ivf' on the GPU"):
        approx.search(X[:2000], None, k=K, metric="l2", params=params, device="cuda")


def test_device_cuda_without_gpu_support_says_why(X):
    import faiss

    if hasattr(faiss, "StandardGpuResources") and faiss.get_num_gpus() > 0:
        pytest.skip("a GPU is visible to faiss here")
    params = approx.resolve_params("ivf", 2000, D, K + 1)
    with pytest.raises(RuntimeError, match="device='cuda' was requested for method='ivf' but"):
        approx.search(X[:2000], None, k=K, metric="l2", params=params, device="cuda")
    hp = approx.resolve_params("hnsw", 2000, D, K + 1)
    with pytest.raises(RuntimeError, match="(no GPU support|no CUDA device|no GPU HNSW)"):
        approx.search(X[:2000], None, k=K, metric="l2", params=hp, device="cuda")
