"""Memory budget (issue 7): every engine entry point checks its estimated peak allocation
against the available memory *before* allocating, and raises MemoryError naming the call and
the size; a std::bad_alloc from the engine surfaces as a MemoryError that states the size."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import matalign as ma
from matalign import _core, _memory
from matalign import approx as _approx
from matalign.score import score

TINY = 100_000  # bytes "available" in the tests below: 0.1 MB


def _data(seed=0, n=5000, d=8):
    rng = np.random.default_rng(seed)
    return (rng.normal(size=(n, d)).astype(np.float32),
            rng.normal(size=(n, d)).astype(np.float32))


@pytest.fixture
def tiny_memory(monkeypatch):
    """0.1 MB available, and every engine routine replaced by one that fails the test if it is
    reached: the MemoryError must come before any allocation."""
    monkeypatch.setattr(_memory, "available_memory", lambda: (TINY, "test"))

    def reached(*args, **kwargs):
        raise AssertionError("the engine was called although the memory check should fail")

    for name in ("knn_exact_f32", "knn_exact_f64", "pair_sums_f32", "pair_sums_f64",
                 "rank_count_f32", "rank_count_f64", "shifted_gram_f32", "shifted_gram_f64",
                 "cknna_f32", "cknna_f64", "mutual_knn", "local_agreement"):
        monkeypatch.setattr(_core, name, reached)
    monkeypatch.setattr(_approx, "search", reached)


SIZE = r"needs about [0-9.]+ (MB|GB) of memory, but only 0\.1 MB is available \(test\)"


def test_check_memory_message_and_pass():
    _memory.check_memory(10, "small", available=100)
    with pytest.raises(MemoryError, match=r"^big call needs about 2\.5 GB of memory, but only "
                       r"1 GB is available \(given\); use less$"):
        _memory.check_memory(2.5e9, "big call", available=1e9, advice="use less")


def test_unknown_available_memory_skips_the_check(monkeypatch):
    monkeypatch.setattr(_memory, "available_memory", lambda: (None, "unknown"))
    _memory.check_memory(1e18, "anything")


def test_cgroup_limit_is_respected(monkeypatch, tmp_path):
    (tmp_path / "memory.max").write_text("2000000000\n")
    (tmp_path / "memory.current").write_text("500000000\n")
    monkeypatch.setattr(_memory, "_CGROUP_V2", str(tmp_path))
    monkeypatch.setattr(_memory, "_meminfo_available", lambda: 10**12)
    available, source = _memory.available_memory()
    assert available == 1_500_000_000
    assert source.startswith("cgroup limit 2 GB") and "memory.max" in source
    # "max" means no limit: MemAvailable (here 1 TB) decides
    (tmp_path / "memory.max").write_text("max\n")
    monkeypatch.setattr(_memory, "_CGROUP_V1", str(tmp_path / "none"))
    assert _memory.available_memory() == (10**12, "MemAvailable")


def test_real_available_memory_is_plausible():
    available, source = _memory.available_memory()
    assert available is None or 0 < available < 1 << 50, (available, source)


@pytest.mark.parametrize("method", ["exact", "ivf", "hnsw", "ivfpq"])
def test_knn_raises_before_allocating(tiny_memory, method):
    pytest.importorskip("faiss")
    X, _ = _data()
    with pytest.raises(MemoryError, match=rf"^knn\(N=5000, D=8, k=50, method='{method}'\) "
                       + SIZE):
        ma.knn(X, k=50, method=method, device="cpu")


def test_knn_cosine_and_queries_raise(tiny_memory):
    X, Y = _data()
    with pytest.raises(MemoryError, match=SIZE):
        ma.knn(X, k=50, metric="cosine", device="cpu")
    with pytest.raises(MemoryError, match=r"knn\(N=5000, D=8, k=50, method='exact', M=5000\) "):
        ma.knn(X, k=50, queries=Y, device="cpu")


def test_knn_size_in_gb_for_large_n(monkeypatch):
    """N = 10⁷ rows (a zero-stride view: 32 bytes of data) with k = 10 needs ~5.5 GB of
    candidate buffers and outputs (~13 GB with the int8 screen's buffers and its any-order tile
    schedule, 1.6 GB at this N): refused before the engine is reached."""
    monkeypatch.setattr(_memory, "available_memory", lambda: (10**9, "test"))
    monkeypatch.setattr(_core, "knn_exact_f32", lambda *a, **k: pytest.fail("engine reached"))
    X = np.lib.stride_tricks.as_strided(np.ones(8, dtype=np.float32), shape=(10**7, 8),
                                        strides=(0, 4))
    with pytest.raises(MemoryError, match=r"^knn\(N=10000000, D=8, k=10, method='exact'\) "
                       r"needs about 5\.\d+ GB of memory, but only 1 GB is available \(test\); "
                       r"pass a smaller k"):
        ma.knn(X, k=10, device="cpu", screen="off")
    with pytest.raises(MemoryError, match=r"needs about 13\.\d+ GB of memory"):
        ma.knn(X, k=10, device="cpu", screen="int8")


def test_graph_metrics_raise(tiny_memory):
    X, Y = _data()
    for fn in (ma.mutual_knn, ma.local_agreement, ma.cknna):
        with pytest.raises(MemoryError, match=rf"^{fn.__name__}\(N=5000, k=50\) " + SIZE):
            fn(X, Y, k=50, device="cpu")


def test_cknna_from_graphs_raises(monkeypatch):
    X, Y = _data()
    gx, gy = ma.knn(X, k=50), ma.knn(Y, k=50)
    monkeypatch.setattr(_memory, "available_memory", lambda: (TINY, "test"))
    monkeypatch.setattr(_core, "cknna_f32", lambda *a, **k: pytest.fail("engine reached"))
    with pytest.raises(MemoryError, match=r"^cknna\(N=5000, k=50\) " + SIZE):
        ma.cknna(gx, gy, k=50, device="cpu")


def test_global_metrics_raise(tiny_memory):
    X, Y = _data()
    with pytest.raises(MemoryError, match=r"^distance_correlation\(N=5000\) " + SIZE):
        ma.distance_correlation(X, Y, device="cpu")
    with pytest.raises(MemoryError, match=r"^cka\(N=5000, kernel='linear'\) " + SIZE):
        ma.cka(X, Y)
    with pytest.raises(MemoryError, match=r"^cka\(N=5000, kernel='rbf'\) " + SIZE):
        ma.cka(X, Y, kernel="rbf", sigma=1.0, device="cpu")
    with pytest.raises(MemoryError, match=r"^information_imbalance\(N=5000, k=50\) " + SIZE):
        ma.information_imbalance(X, Y, k=50, device="cpu")
    with pytest.raises(MemoryError, match=r"^knn\(N=5000, D=8, k=2, method='exact'\) " + SIZE):
        ma.intrinsic_dimension(X)


def test_mixed_dtypes_count_the_widened_copy(monkeypatch):
    """dCor of float32 with float64 widens the float32 input to a float64 copy: counted."""
    X, Y = _data(n=2000)
    from matalign.metrics._global import pair_sums_memory

    # (the same float64 computation without the copy: the engine's own tiles depend on the dtype)
    same = pair_sums_memory([X.astype(np.float64), Y.astype(np.float64)], 1)
    mixed = pair_sums_memory([X, Y.astype(np.float64)], 1)
    assert mixed - same >= 2000 * 8 * 8


def test_alignment_matrix_and_score_raise(tiny_memory, tmp_path):
    X, Y = _data()
    with pytest.raises(MemoryError, match=r"^alignment_matrix\(M=2, N=5000, metrics=" + ".*"
                       + SIZE):
        ma.alignment_matrix({"x": X, "y": Y}, k=50)
    with pytest.raises(MemoryError, match=r"^score\(M=2, N=5000, k=50, method='exact'\) "
                       + SIZE):
        score({"x": X, "y": Y}, tmp_path / "s.csv", k=50)
    assert not (tmp_path / "s.csv").exists()


def test_normal_calls_unaffected(tmp_path):
    """With the real budget nothing small is refused, and the results do not depend on it."""
    X, Y = _data(n=600)
    g = ma.knn(X, k=10, device="cpu")
    values = (ma.cknna(X, Y, k=10, device="cpu"), ma.distance_correlation(X, Y, device="cpu"),
              ma.cka(X, Y), ma.information_imbalance(X, Y, device="cpu"),
              ma.intrinsic_dimension(X))
    assert all(np.all(np.isfinite(v)) for v in values)
    ma.alignment_matrix({"x": X, "y": Y}, k=10)
    score({"x": X, "y": Y}, tmp_path / "s.csv", k=10)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(_memory, "available_memory", lambda: (None, "unknown"))
        h = ma.knn(X, k=10, device="cpu")
    assert np.array_equal(g.indices, h.indices)


def test_knn_auto_screen_gives_way_to_the_float_gemm_when_memory_is_short(monkeypatch):
    """screen="auto": where the integer screen's copies and candidate lists would not fit but
    the float GEMM does, the float GEMM runs (its float32 graph) instead of a MemoryError."""
    n, d = 12000, 256  # large enough for auto to pick the int8 screen on a VNNI CPU
    assert _core.knn_screen_auto(10, True, n, d) == "int8"
    X = np.random.default_rng(0).standard_normal((n, d)).astype(np.float32)
    direct = _memory.knn_bytes(n, n, d, 10, 4, n_threads=_memory.threads(0), screen="off")
    screened = _memory.knn_bytes(n, n, d, 10, 4, n_threads=_memory.threads(0), screen="int8")
    assert direct < screened
    monkeypatch.setattr(_memory, "available_memory", lambda: ((direct + screened) // 2, "test"))
    g = ma.knn(X, k=10, device="cpu")
    off = ma.knn(X, k=10, device="cpu", screen="off")
    np.testing.assert_array_equal(g.values, off.values)
    np.testing.assert_array_equal(g.indices, off.indices)
    with pytest.raises(MemoryError, match="needs about"):
        ma.knn(X, k=10, device="cpu", screen="int8")  # asked for explicitly: no silent change


def test_estimates_cover_the_outputs():
    n, d, k = 1_000_000, 256, 10
    exact = _memory.knn_bytes(n, n, d, k, 4, n_threads=2, screen="off")
    # outputs 0.12 GB + candidate buffers (k + 16 per row, 16 bytes each) 0.42 GB + tiles
    assert _memory.graph_bytes(n, k, 4) + n * 26 * 16 <= exact <= 0.7e9
    # the int8 screen (default for k <= 32 on VNNI CPUs): + the int8 copy (0.26 GB), 4k + 64
    # 8-byte candidates per row (0.83 GB) and the threshold heaps (0.04 GB)
    screened = _memory.knn_bytes(n, n, d, k, 4, n_threads=2, screen="int8")
    assert _memory.graph_bytes(n, k, 4) + n * (d + 104 * 8 + 40) <= screened <= 1.5e9
    params = _approx.resolve_params("ivf", n, d, k + 1)
    ivf = _memory.knn_bytes(n, n, d, k, 4, method="ivf", params=params)
    # the index holds a float32 copy of X (and FAISS's vectors grow by doubling): measured
    # 1.73 GB added at this size (bench/README.md, "Out of core")
    assert 1.73e9 <= ivf <= 3e9
    assert _memory.cknna_bytes(n, k) <= 1e9
    assert _memory.pair_sums_bytes(n, [d, d], 4, n_threads=2) <= 0.1e9  # O(N), not O(N²)
    # RankCount of float64 rows screens on a float32 copy of them (1.02 GB here)
    assert n * d * 4 <= _memory.rank_count_bytes(n, d, 1, 8, n_threads=2) <= 1.3e9
    assert _memory.rank_count_bytes(n, d, 1, 4, n_threads=2) <= 0.1e9


def test_bad_alloc_message_names_the_size():
    """A std::bad_alloc inside the engine (here: under an address-space limit that lets the
    (N, k) outputs through but not the candidate buffers) becomes a MemoryError with the
    estimated size, not pybind11's bare "std::bad_alloc"."""
    code = textwrap.dedent("""
        import resource, numpy as np, matalign as ma
        from matalign import _memory
        _memory.available_memory = lambda: (1 << 50, "test")  # let the call reach the engine
        X = np.random.default_rng(0).normal(size=(200_000, 8)).astype(np.float32)
        with open("/proc/self/status") as f:
            vm = int([l for l in f if l.startswith("VmSize")][0].split()[1]) * 1024
        resource.setrlimit(resource.RLIMIT_AS, (vm + 1_500_000_000, resource.RLIM_INFINITY))
        try:
            ma.knn(X, k=500, n_threads=1, device="cpu")
        except MemoryError as exc:
            print("MemoryError:", exc)
        """)
    if not os.path.exists("/proc/self/status"):
        pytest.skip("needs /proc/self/status (Linux)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    assert "MemoryError: knn(N=200000, D=8, k=500, method='exact') ran out of memory " \
           "(std::bad_alloc): it needs about 3.6 GB" in out.stdout, out.stdout + out.stderr


@pytest.mark.parametrize("call", [
    lambda X: ma.knn(X, k=50),
    lambda X: ma.cknna(X, X[:, ::-1], k=50),
    lambda X: ma.distance_correlation(X, X[:, ::-1]),
    lambda X: ma.cka(X, X[:, ::-1], kernel="rbf"),
    lambda X: ma.information_imbalance(X, X[:, ::-1], k=50),
    lambda X: ma.alignment_matrix({"a": X, "b": X[:, ::-1]}, metrics=["cknna", "dcor"], k=50),
])
def test_memory_is_decided_before_the_data_is_read(tiny_memory, tmp_path, call):
    """A call too large for memory is refused from shapes and dtypes alone: on a memmap whose
    last row holds a NaN, the MemoryError comes first (the NaN scan would read every row)."""
    X, _ = _data()
    path = tmp_path / "x.dat"
    mm = np.memmap(path, dtype=np.float64, mode="w+", shape=X.shape)
    mm[:] = X
    mm[-1, 0] = np.nan
    mm.flush()
    mm = np.memmap(path, dtype=np.float64, mode="r", shape=X.shape)
    with pytest.raises(MemoryError, match=SIZE):
        call(mm)
