"""The CUDA engine: the same test bodies on every backend, and the device= error paths.

Each test that computes takes the ``backend`` fixture ("cpu", "cuda"); the cuda case carries
the ``cuda`` marker and skips with the reason ("matalign was built without CUDA" or "no CUDA
device visible") where it cannot run. The GPU results are compared with the CPU engine's:
bitwise where the design promises it (kNN graphs, RankCount counts, CKNNA), to rounding where
the summation order differs (PairSums: distance correlation, RBF CKA). On a machine with a
visible GPU, a session in which every cuda case skipped fails (conftest.py).
"""

from __future__ import annotations

import importlib
from pathlib import Path

import numpy as np
import pytest

import matalign as ma
from matalign import _core, _device, _engine

CUDA_REASON = _device.cuda_unavailable_reason()


@pytest.fixture(params=["cpu", pytest.param("cuda", marks=pytest.mark.cuda)])
def backend(request):
    """A device string; the cuda case skips with the reason CUDA cannot run here."""
    if request.param == "cuda" and CUDA_REASON is not None:
        pytest.skip(CUDA_REASON)
    return request.param


def _data(seed, n, d, dtype):
    return np.random.default_rng(seed).normal(size=(n, d)).astype(dtype)


def _same_graph(a, b):
    """Graphs equal: values bitwise, indices exactly (both engines share FMA order and ties)."""
    np.testing.assert_array_equal(a.values, b.values)
    np.testing.assert_array_equal(a.indices, b.indices)


# --- device= resolution and errors (testable without a GPU) --------------------------------

def test_cuda_error_is_a_runtime_error():
    assert issubclass(ma.CudaError, RuntimeError)
    e = ma.CudaError("cudaMemcpyAsync(...) failed: cudaErrorInvalidValue: invalid argument",
                     "cudaMemcpyAsync(...)", 1, "invalid argument")
    assert (e.call, e.code, e.error_string) == ("cudaMemcpyAsync(...)", 1, "invalid argument")
    assert "cudaErrorInvalidValue" in str(e)


@pytest.mark.parametrize("bad", ["bogus", "gpu", "cuda:", "cuda:-1", "cuda:x", "CUDA", 0, None])
def test_bad_device_is_a_value_error(bad):
    X = _data(0, 20, 3, np.float64)
    with pytest.raises(ValueError, match="device must be 'auto', 'cpu', 'cuda' or 'cuda:N'"):
        ma.knn(X, k=2, device=bad)


def _unavailable_message() -> str:
    if not ma.build_info()["cuda"]:
        return "matalign was built without CUDA"
    return "no CUDA device visible"


@pytest.mark.skipif(CUDA_REASON is None, reason="a CUDA device is visible")
@pytest.mark.parametrize("device", ["cuda", "cuda:0", "cuda:3"])
@pytest.mark.parametrize("call", ["knn", "cka_rbf", "dcor", "imbalance", "cknna", "mutual_knn",
                                  "local_agreement"])
def test_cuda_unavailable_is_a_runtime_error(call, device):
    X = _data(1, 30, 4, np.float64)
    Y = _data(2, 30, 4, np.float64)
    calls = {
        "knn": lambda: ma.knn(X, k=3, device=device),
        "cka_rbf": lambda: ma.cka(X, Y, kernel="rbf", device=device),
        "dcor": lambda: ma.distance_correlation(X, Y, device=device),
        "imbalance": lambda: ma.information_imbalance(X, Y, device=device),
        "cknna": lambda: ma.cknna(X, Y, k=3, device=device),
        "mutual_knn": lambda: ma.mutual_knn(X, Y, k=3, device=device),
        "local_agreement": lambda: ma.local_agreement(X, Y, k=3, device=device),
    }
    with pytest.raises(RuntimeError, match=_unavailable_message()) as info:
        calls[call]()
    assert not isinstance(info.value, ma.CudaError)


def test_unavailable_reasons_are_distinct():
    assert _device.cuda_unavailable_reason() in (None,) or (
        _device.cuda_unavailable_reason().startswith(_unavailable_message()))


def test_auto_stays_on_cpu_for_small_host_input():
    X = _data(3, 40, 3, np.float32)
    assert str(_device.resolve("auto", X)) == "cpu"
    _same_graph(ma.knn(X, k=4, device="auto"), ma.knn(X, k=4, device="cpu"))


class _FakeGpuArray:
    """Looks like a CuPy array on cuda:0 (no memory behind it: only for resolution errors)."""

    shape = (10, 3)
    dtype = np.dtype(np.float32)

    def __dlpack_device__(self):
        return (2, 0)

    @property
    def __cuda_array_interface__(self):
        return {"shape": (10, 3), "typestr": "<f4", "data": (0, False), "version": 3}


def test_gpu_input_with_device_cpu_is_a_runtime_error():
    with pytest.raises(RuntimeError, match="device='cpu' but input 0 lives on cuda:0"):
        _device.resolve("cpu", _FakeGpuArray())


@pytest.mark.skipif(CUDA_REASON is None, reason="a CUDA device is visible")
def test_gpu_input_without_cuda_says_why():
    with pytest.raises(RuntimeError, match=_unavailable_message()):
        ma.knn(_FakeGpuArray(), k=2)


def test_device_of_gpu_input_is_read_not_assumed():
    class OnOne(_FakeGpuArray):
        def __dlpack_device__(self):
            return (2, 1)

    assert _device.is_device_array(OnOne())
    assert _device._device_id(OnOne()) == 1
    assert not _device.is_device_array(np.zeros((2, 2)))


# --- one body, every backend ----------------------------------------------------------------

@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("metric", ["ip", "l2", "cosine"])
@pytest.mark.parametrize("n,d,k,tiles", [(97, 33, 5, (13, 7)), (64, 1, 1, (0, 0)),
                                          (50, 16, 49, (7, 5)), (300, 8, 40, (64, 64)),
                                          (40, 5, 10, (100, 3))])
def test_knn_matches_cpu(backend, dtype, metric, n, d, k, tiles):
    X = _data(10 + n, n, d, dtype)
    X[7] = X[3]  # duplicate rows: ties by lower index, self excluded by index
    # screen="off": the CPU's float GEMM in X's dtype, the computation the GPU engine mirrors
    # (the CPU's default int8 screen returns the float64 graph for float32 X, k <= 32)
    ref = ma.knn(X, k=k, metric=metric, device="cpu", screen="off")
    g = ma.knn(X, k=k, metric=metric, device=backend, tile_rows=tiles[0], tile_cols=tiles[1],
               screen="off")
    _same_graph(g, ref)


@pytest.mark.parametrize("order", ["C", "F"])
def test_knn_queries_and_layouts(backend, order):
    X = np.asarray(_data(5, 120, 17, np.float32), order=order)
    Q = np.asarray(_data(6, 33, 17, np.float32), order=order)
    for metric in ("ip", "l2"):
        ref = ma.knn(X, k=120, metric=metric, queries=Q, device="cpu")
        _same_graph(ma.knn(X, k=120, metric=metric, queries=Q, device=backend, tile_rows=8,
                           tile_cols=16), ref)


def test_knn_large_k(backend):
    # k beyond faiss-gpu's 2048 limit; small tiles so the list spans many column tiles.
    X = _data(7, 2600, 4, np.float32)
    ref = ma.knn(X, k=2100, metric="l2", device="cpu")
    _same_graph(ma.knn(X, k=2100, metric="l2", device=backend, tile_rows=512, tile_cols=700), ref)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("unbiased", [False, True])
def test_distance_correlation_matches_cpu(backend, dtype, unbiased):
    X = _data(20, 211, 9, dtype)
    Y = np.sin(X[:, :5]) + 0.1 * _data(21, 211, 5, dtype)
    ref = ma.distance_correlation(X, Y, unbiased=unbiased, device="cpu")
    got = ma.distance_correlation(X, Y, unbiased=unbiased, device=backend)
    tol = 1e-5 if dtype == np.float32 else 1e-12
    assert got == pytest.approx(ref, rel=tol, abs=tol)


@pytest.mark.parametrize("unbiased", [False, True])
def test_rbf_cka_matches_cpu(backend, unbiased):
    X = _data(30, 150, 6, np.float64)
    Y = X + 0.3 * _data(31, 150, 6, np.float64)
    ref = ma.cka(X, Y, kernel="rbf", unbiased=unbiased, device="cpu")
    assert ma.cka(X, Y, kernel="rbf", unbiased=unbiased, device=backend) == pytest.approx(
        ref, rel=1e-12, abs=1e-12)


def test_pair_sums_deterministic_and_tiled(backend):
    if backend == "cpu":
        pytest.skip("the CPU engine's tiling is tested in test_dcor.py")
    X = _data(40, 203, 7, np.float32)
    Y = _data(41, 203, 3, np.float32)
    a = _core.pair_sums_cuda_f32([X, Y], "distance", tile_rows=17)
    b = _core.pair_sums_cuda_f32([X, Y], "distance", tile_rows=17)
    c = _core.pair_sums_cuda_f32([X, Y], "distance", tile_rows=64)
    ref = _core.pair_sums_f32([X, Y], "distance")
    for other in (b, c):  # run to run and across row tiles: the same bits
        np.testing.assert_array_equal(a[0], other[0])
        np.testing.assert_array_equal(a[1], other[1])
    np.testing.assert_allclose(a[0], ref[0], rtol=1e-12)
    np.testing.assert_allclose(c[1], ref[1], rtol=1e-12)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("k", [1, 3])
def test_information_imbalance_matches_cpu(backend, dtype, k):
    X = _data(50, 180, 4, dtype)
    Y = np.concatenate([X[:, :2], _data(51, 180, 2, dtype)], axis=1)
    Y[11] = Y[12]  # ties in Y: ranks by lower index
    ref = ma.information_imbalance(X, Y, k=k, device="cpu")
    assert ma.information_imbalance(X, Y, k=k, device=backend) == ref


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_cknna_and_mutual_knn_match_cpu(backend, dtype):
    X = _data(60, 400, 12, dtype)
    Y = X + 0.5 * _data(61, 400, 12, dtype)
    gx, gy = ma.knn(X, k=10), ma.knn(Y, k=10)
    assert ma.cknna(gx, gy, k=10, device=backend) == ma.cknna(gx, gy, k=10, device="cpu")
    assert ma.cknna(X, Y, k=7, device=backend) == ma.cknna(X, Y, k=7, device="cpu")
    assert ma.mutual_knn(X, Y, k=10, device=backend) == ma.mutual_knn(X, Y, k=10, device="cpu")
    np.testing.assert_array_equal(ma.local_agreement(gx, gy, k=10, device=backend),
                                  ma.local_agreement(gx, gy, k=10, device="cpu"))


def test_graph_errors_match_cpu(backend):
    X = _data(70, 30, 3, np.float64)
    g = ma.knn(X, k=3)
    bad = g.indices.copy()
    bad[4, 1] = 4  # the row itself
    h = ma.KnnGraph(bad, g.values, "ip", True)
    with pytest.raises(ValueError, match="graph x row 4 lists the row itself"):
        ma.cknna(h, g, k=3, device=backend)


# --- GPU-resident input (CuPy, torch CUDA tensors) ------------------------------------------

def _gpu_libraries():
    libs = []
    try:
        import cupy  # noqa: F401
        libs.append("cupy")
    except ImportError:
        pass
    try:
        import torch
        if torch.cuda.is_available():
            libs.append("torch")
    except ImportError:
        pass
    return libs


def _need_gpu_lib(lib):
    if CUDA_REASON is not None:
        pytest.skip(CUDA_REASON)
    if lib not in _gpu_libraries():
        pytest.skip(f"{lib} with CUDA is not installed")


def _to_device(lib):
    if lib == "cupy":
        import cupy
        return cupy.asarray
    import torch
    return lambda a: torch.as_tensor(a, device="cuda")


def _near_ties(seed, n, d, dtype):
    """Rows on a coarse grid (many exact ties) plus rows that differ from others in the last
    bits (near-ties): a graph computed in another precision or order differs on such data."""
    rng = np.random.default_rng(seed)
    X = np.round(rng.normal(size=(n, d)) * 2.0) / 2.0
    eps = np.finfo(dtype).eps
    X[n // 2:] = X[: n - n // 2] * (1.0 + eps * rng.integers(1, 4, size=(n - n // 2, 1)))
    return X.astype(dtype)


@pytest.mark.cuda
@pytest.mark.parametrize("lib", ["cupy", "torch"])
def test_device_arrays_zero_copy(lib):
    _need_gpu_lib(lib)
    to = _to_device(lib)
    X = _data(80, 257, 19, np.float32)
    Y = _data(81, 257, 5, np.float32)
    Xd, Yd = to(X), to(Y)
    for metric in ("ip", "l2"):
        _same_graph(ma.knn(Xd, k=9, metric=metric), ma.knn(X, k=9, metric=metric, screen="off"))
    # A non-contiguous (transposed-layout) view is read in place too.
    Xf = to(np.asfortranarray(X))
    _same_graph(ma.knn(Xf, k=9, metric="l2", device="cuda"),
                ma.knn(X, k=9, metric="l2", screen="off"))
    assert ma.distance_correlation(Xd, Yd) == pytest.approx(ma.distance_correlation(X, Y),
                                                            rel=1e-5)
    bad = X.copy()
    bad[42, 3] = np.nan
    with pytest.raises(ValueError, match="non-finite value in row 42"):
        ma.knn(to(bad), k=3)
    with pytest.raises(RuntimeError, match="device='cpu'"):
        ma.knn(Xd, k=3, device="cpu")


@pytest.mark.cuda
@pytest.mark.parametrize("lib", ["cupy", "torch"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_zero_copy_near_ties_match_cpu(lib, dtype):
    # The device graph against the CPU graph of the same precision (float32: the CPU's float32
    # GEMM, screen="off"; float64: the CPU's float64 graph), on data full of ties and
    # near-ties; and the metrics built on those graphs.
    _need_gpu_lib(lib)
    to = _to_device(lib)
    X = _near_ties(82, 600, 12, dtype)
    Y = _near_ties(83, 600, 7, dtype)
    Xd, Yd = to(X), to(Y)
    for metric in ("ip", "l2", "cosine"):
        _same_graph(ma.knn(Xd, k=8, metric=metric),
                    ma.knn(X, k=8, metric=metric, device="cpu", screen="off"))
    gx = ma.knn(X, k=5, device="cpu", screen="off")
    gy = ma.knn(Y, k=5, device="cpu", screen="off")
    assert ma.cknna(Xd, Yd, k=5) == ma.cknna(gx, gy, k=5, device="cpu")
    if dtype == np.float64:  # the CPU's float64 graph is the float64 GEMM's, screened or not
        assert ma.information_imbalance(Xd, Yd) == ma.information_imbalance(X, Y, device="cpu")


# --- producer streams (defect: the legacy default stream does not wait for side streams) ----

def _torch_delay(torch, stream):
    """Queue ~100 ms of GPU work on `stream` (so a reader that does not wait sees old data)."""
    sleep = getattr(torch.cuda, "_sleep", None)
    with torch.cuda.stream(stream):
        if sleep is not None:
            sleep(200_000_000)
        else:
            a = torch.ones((4096, 4096), device="cuda")
            for _ in range(40):
                a = (a @ a) * 1e-4


def _cupy_delay(cupy):
    a = cupy.ones((4096, 4096), dtype=cupy.float32)
    for _ in range(40):
        a = (a @ a) * 1e-4


@pytest.mark.cuda
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_torch_side_stream_input_is_waited_for(dtype):
    _need_gpu_lib("torch")
    import torch

    X = _data(84, 3000, 16, dtype)
    Q = _data(85, 200, 16, dtype)
    src, qsrc = torch.as_tensor(X, device="cuda"), torch.as_tensor(Q, device="cuda")
    dst, qdst = torch.zeros_like(src), torch.zeros_like(qsrc)
    torch.cuda.synchronize()
    side = torch.cuda.Stream()  # torch's pool streams are non-blocking
    _torch_delay(torch, side)
    with torch.cuda.stream(side):
        dst.copy_(src)
        qdst.copy_(qsrc)
        g = ma.knn(dst, k=7, metric="l2")
        q = ma.knn(dst, k=7, metric="ip", queries=qdst)
    _same_graph(g, ma.knn(X, k=7, metric="l2", device="cpu", screen="off"))
    _same_graph(q, ma.knn(X, k=7, metric="ip", queries=Q, device="cpu", screen="off"))


@pytest.mark.cuda
def test_cupy_nonblocking_stream_input_is_waited_for():
    _need_gpu_lib("cupy")
    import cupy

    X = _data(86, 3000, 16, np.float32)
    src = cupy.asarray(X)
    dst = cupy.zeros_like(src)
    cupy.cuda.Device().synchronize()
    side = cupy.cuda.Stream(non_blocking=True)
    with side:
        _cupy_delay(cupy)
        dst[...] = src
        g = ma.knn(dst, k=7, metric="l2")
    _same_graph(g, ma.knn(X, k=7, metric="l2", device="cpu", screen="off"))


@pytest.mark.cuda
def test_inputs_from_two_producers_are_both_waited_for():
    # X from torch on a side stream, Y from CuPy on a non-blocking stream, both written behind
    # queued work: the call runs on X's stream and waits for Y's. (Before the fix, torch's
    # stream was never read: X's NaN scan and the engine ran on the legacy default stream.)
    _need_gpu_lib("torch")
    _need_gpu_lib("cupy")
    import cupy
    import torch

    X = _data(87, 2000, 9, np.float64)
    Y = np.sin(X[:, :4]) + 0.1 * _data(88, 2000, 4, np.float64)
    xd = torch.zeros((2000, 9), dtype=torch.float64, device="cuda")
    yd = cupy.zeros((2000, 4), dtype=cupy.float64)
    xs, ys = torch.as_tensor(X, device="cuda"), cupy.asarray(Y)
    torch.cuda.synchronize()
    cupy.cuda.Device().synchronize()
    side_y = cupy.cuda.Stream(non_blocking=True)
    with side_y:
        _cupy_delay(cupy)
        yd[...] = ys
    side_x = torch.cuda.Stream()
    _torch_delay(torch, side_x)
    with torch.cuda.stream(side_x):
        xd.copy_(xs)
        with side_y:
            dc = ma.distance_correlation(xd, yd)
            got = ma.information_imbalance(xd, yd)
    assert got == ma.information_imbalance(X, Y, device="cpu")
    assert dc == pytest.approx(ma.distance_correlation(X, Y, device="cpu"), rel=1e-12)


# --- cosine, PairSums tiles, production sizes, errors --------------------------------------

@pytest.mark.cuda
@pytest.mark.parametrize("lib", ["cupy", "torch"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_cosine_on_device_input_is_the_cpu_graph(lib, dtype):
    # 2,000 × 64 float64: with einsum-ordered host norms, ~1,500 norms differed in the last bit
    # from the device's; both now sum the squares in column order.
    _need_gpu_lib(lib)
    X = _data(89, 2000, 64, dtype)
    Q = _data(90, 100, 64, dtype)
    to = _to_device(lib)
    ref = ma.knn(X, k=10, metric="cosine", device="cpu", screen="off")
    _same_graph(ma.knn(to(X), k=10, metric="cosine"), ref)
    _same_graph(ma.knn(X, k=10, metric="cosine", device="cuda"), ref)
    _same_graph(ma.knn(to(X), k=10, metric="cosine", queries=to(Q)),
                ma.knn(X, k=10, metric="cosine", queries=Q, device="cpu", screen="off"))


@pytest.mark.cuda
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_pair_sums_bitwise_across_tile_sizes(dtype):
    # n = 5000: three 2048-column tiles; row tiles 17, 512 and automatic (free memory).
    if CUDA_REASON is not None:
        pytest.skip(CUDA_REASON)
    X = _data(91, 5000, 7, dtype)
    Y = _data(92, 5000, 3, dtype)
    op = _core.pair_sums_cuda_f32 if dtype == np.float32 else _core.pair_sums_cuda_f64
    for fn, gamma in (("distance", []), ("rbf", [0.3, 0.7])):
        runs = [op([X, Y], fn, gamma, tile_rows=t) for t in (0, 17, 512, 0)]
        for r in runs[1:]:
            np.testing.assert_array_equal(r[0], runs[0][0])
            np.testing.assert_array_equal(r[1], runs[0][1])
        ref = (_core.pair_sums_f32 if dtype == np.float32 else _core.pair_sums_f64)(
            [X, Y], fn, gamma)
        np.testing.assert_allclose(runs[0][0], ref[0], rtol=1e-10)
        np.testing.assert_allclose(runs[0][1], ref[1], rtol=1e-10)


@pytest.mark.cuda
@pytest.mark.parametrize("metric", ["ip", "l2"])
def test_production_size_default_tiles(metric):
    # N = 20,000 with the automatic 8192-wide tiles: the first column tile appends 8192
    # candidates per row, which CUB's segmented sort orders on its large-segment path.
    if CUDA_REASON is not None:
        pytest.skip(CUDA_REASON)
    X = _data(93, 20000, 48, np.float32)
    X[100:200] = X[:100]  # exact duplicates: ties across tiles
    for k in (10, 600):
        _same_graph(ma.knn(X, k=k, metric=metric, device="cuda"),
                    ma.knn(X, k=k, metric=metric, device="cpu", screen="off"))
    X64 = X.astype(np.float64)
    _same_graph(ma.knn(X64, k=10, metric=metric, device="cuda"),
                ma.knn(X64, k=10, metric=metric, device="cpu"))
    Y = _data(94, 20000, 8, np.float64)
    assert ma.information_imbalance(X64, Y, device="cuda") == ma.information_imbalance(
        X64, Y, device="cpu")


@pytest.mark.cuda
def test_out_of_device_memory_is_a_memory_error():
    _need_gpu_lib("torch")
    import torch

    X = _data(95, 20000, 32, np.float32)
    free, _ = torch.cuda.mem_get_info()
    hog = torch.empty(max(0, free - (128 << 20)), dtype=torch.uint8, device="cuda")
    try:
        with pytest.raises(MemoryError, match="CUDA out of memory"):
            ma.knn(X, k=10, device="cuda", tile_rows=8192, tile_cols=8192)
    finally:
        del hog
        torch.cuda.empty_cache()
    # the device is usable afterwards
    _same_graph(ma.knn(X[:500], k=3, device="cuda"),
                ma.knn(X[:500], k=3, device="cpu", screen="off"))


# --- host-side logic of the CUDA path (runs without a GPU) ---------------------------------

_NO_CUDA_BUILD = not ma.build_info()["cuda"]


@pytest.mark.skipif(_NO_CUDA_BUILD, reason="matalign was built without CUDA")
def test_cuda_errors_translate_to_python():
    # The engine's one error path (throw_cuda + the binding's translator); no device needed.
    with pytest.raises(MemoryError, match="CUDA out of memory allocating 1048576 bytes") as info:
        _core.cuda_raise_error(2, 1 << 20)
    assert not isinstance(info.value, ma.CudaError)
    with pytest.raises(ma.CudaError, match="cudaErrorInvalidValue") as info:
        _core.cuda_raise_error(1)
    assert info.value.code == 1
    assert info.value.call == "raise_cuda_error(code)"
    assert "invalid argument" in info.value.error_string
    assert isinstance(info.value, RuntimeError)
    with pytest.raises(ValueError, match="code 0 is cudaSuccess"):
        _core.cuda_raise_error(0)


@pytest.mark.skipif(_NO_CUDA_BUILD, reason="matalign was built without CUDA")
@pytest.mark.parametrize("call", ["knn", "pair_sums", "rank_count"])
def test_tile_above_the_grid_limit_is_a_value_error(call):
    # 2^22 rows passed the old check and then failed inside the GEMM launch; now every entry
    # refuses it before touching a device (also where none is visible).
    X = _data(96, 30, 3, np.float32)
    big = 1 << 22
    calls = {
        "knn": lambda: _core.knn_exact_cuda_f32(X, None, 3, tile_rows=big),
        "pair_sums": lambda: _core.pair_sums_cuda_f32([X], "distance", tile_rows=big),
        "rank_count": lambda: _core.rank_count_cuda_f32(
            X, np.ones((30, 1), dtype=np.int64), tile_rows=big),
    }
    with pytest.raises(ValueError, match=r"tile_rows must be in 0\.\.4194240 \(0 = automatic\), "
                                         r"got 4194304"):
        calls[call]()


class _FakeDeviceMatrix:
    """A validated device matrix as _engine sees it: a descriptor and a producer stream."""

    def __init__(self, stream, dtype=np.float32, shape=(10, 3)):
        self.stream = stream
        self.dtype = np.dtype(dtype)
        self.shape = shape

    def descriptor(self):
        return (0xABC, *self.shape, self.shape[1], 1)


def test_call_streams_waits_for_every_producer():
    A, B, C = _FakeDeviceMatrix(11), _FakeDeviceMatrix(22), _FakeDeviceMatrix(11)
    host = np.zeros((10, 3), dtype=np.float32)
    assert _engine.call_streams(A, B, C) == (11, [11, 22])
    assert _engine.call_streams(host, None, B, A) == (22, [22, 11])
    assert _engine.call_streams(host) == (0, [])
    assert _engine.call_streams() == (0, [])


class _RecordingCore:
    """Stands for matalign._core: records the keyword arguments of each *_cuda_* call."""

    def __init__(self):
        self.calls = []

    def __getattr__(self, name):
        def binding(*args, **kwargs):
            self.calls.append((name, kwargs))
            if name.startswith("knn_exact"):
                return np.zeros((1, 1)), np.zeros((1, 1), dtype=np.int64)
            if name.startswith("pair_sums"):
                return np.zeros((2, 10)), np.zeros((2, 2))
            return np.zeros((10, 1), dtype=np.int64)
        return binding


def test_engine_passes_every_producer_stream(monkeypatch):
    rec = _RecordingCore()
    monkeypatch.setattr(_engine, "_core", rec)
    dev = _device.Device("cuda", 0)
    X, Q, Y = _FakeDeviceMatrix(5), _FakeDeviceMatrix(7), _FakeDeviceMatrix(9)
    _engine.knn_exact(X, Q, 1, device=dev)
    _engine.pair_sums([X, Y], "distance", device=dev)
    _engine.rank_count(Y, np.zeros((10, 1), dtype=np.int64), device=dev)
    _engine.knn_exact(np.zeros((10, 3), dtype=np.float32), Q, 1, device=dev)
    got = [(name, kw["stream"], kw["wait_streams"]) for name, kw in rec.calls]
    assert got == [("knn_exact_cuda_f32", 5, [5, 7]), ("pair_sums_cuda_f32", 5, [5, 9]),
                   ("rank_count_cuda_f32", 9, [9]), ("knn_exact_cuda_f32", 7, [7])]


class _TorchLikeTensor(_FakeGpuArray):
    """A torch CUDA tensor as matalign sees it: __cuda_array_interface__ version 2 (no
    stream), type from the torch package."""

    __module__ = "torch"

    @property
    def __cuda_array_interface__(self):
        return {"shape": (10, 3), "typestr": "<f4", "data": (0x1000, False), "version": 2}


class _CupyLikeArray(_FakeGpuArray):
    __module__ = "cupy._core.core"

    def __init__(self, cai_stream):
        self._stream = cai_stream

    @property
    def __cuda_array_interface__(self):
        cai = {"shape": (10, 3), "typestr": "<f4", "data": (0x2000, False), "version": 3}
        if self._stream != "absent":
            cai["stream"] = self._stream
        return cai


def test_producer_stream_reads_the_library_stream(monkeypatch):
    asked = []
    monkeypatch.setattr(_device, "_CURRENT_STREAM", {
        "torch": lambda index: asked.append(("torch", index)) or 0x7F00,
        "cupy": lambda index: asked.append(("cupy", index)) or 0x7E00})
    t = _TorchLikeTensor()
    # torch: version 2, no stream key; the current torch stream of the tensor's device
    assert _device.producer_stream(t, t.__cuda_array_interface__, 3) == 0x7F00
    assert asked == [("torch", 3)]
    # CuPy version 3 names its stream (1 = legacy default); no library query then
    c = _CupyLikeArray(0x5500)
    assert _device.producer_stream(c, c.__cuda_array_interface__, 0) == 0x5500
    c1 = _CupyLikeArray(1)
    assert _device.producer_stream(c1, c1.__cuda_array_interface__, 0) == 1
    assert asked == [("torch", 3)]
    # stream None or absent: CuPy's current stream
    for cai_stream in (None, "absent"):
        c = _CupyLikeArray(cai_stream)
        assert _device.producer_stream(c, c.__cuda_array_interface__, 1) == 0x7E00
    assert asked[1:] == [("cupy", 1), ("cupy", 1)]
    # anything else without a stream: the legacy default stream
    f = _FakeGpuArray()
    assert _device.producer_stream(f, f.__cuda_array_interface__, 0) == 0


def test_device_matrix_carries_the_producer_stream(monkeypatch):
    # Intake of a torch tensor on a side stream: the DeviceMatrix (and so the call) carries
    # torch's current stream; before, CAI version 2 gave stream 0 and the call did not wait.
    monkeypatch.setattr(_device, "_CURRENT_STREAM", {"torch": lambda index: 0x7F00})
    scanned = []
    monkeypatch.setattr(_engine, "scan_rows",
                        lambda m, dev: scanned.append(m.stream) or (-1, 1.0))
    m = _device.matrix(_TorchLikeTensor(), "X", _device.Device("cuda", 0))
    assert m.stream == 0x7F00
    assert scanned == [0x7F00]  # the NaN/Inf scan runs on the producer's stream too
    assert m.descriptor() == (0x1000, 10, 3, 3, 1)


def _sequential_norms(X):
    out = []
    for row in np.asarray(X, dtype=np.float64):
        acc = 0.0
        for v in row:
            acc = acc + v * v
        out.append(np.sqrt(acc))
    return np.array(out)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_host_cosine_norms_use_the_device_order(dtype):
    # The CUDA engine normalises device rows with squares summed in column order, one rounding
    # each (cuda/src/knn.cu); the host path must give the same bits, so both engines build the
    # same cosine graph.
    from matalign._rows import l2_normalize, row_norms

    X = _data(97, 300, 64, dtype)
    np.testing.assert_array_equal(row_norms(X), _sequential_norms(X))
    ref = (X.astype(np.float64) / _sequential_norms(X)[:, None]).astype(dtype)
    np.testing.assert_array_equal(l2_normalize(X, "X", "test"), ref)
    # an order-free sum (einsum) differs in the last bits on this data: the test can fail
    x64 = X.astype(np.float64)
    assert not np.array_equal(np.sqrt(np.einsum("ij,ij->i", x64, x64)), _sequential_norms(X))


# --- the int8 tensor-core screen (docs/ARCHITECTURE.md, "GPU int8 screen") ------------------
# Its host side (quantisation shared with the CPU, pair bounds bitwise the CPU's, the re-scoring
# slack, and an emulation of the kernel's algorithm built from the same screen_plan.h functions
# the kernels call) is tested without a GPU in tests/cpp/test_cuda_screen.cpp; the routing of
# ma.knn(device="cuda", screen=...) below runs without a GPU too; the kernel runs on a GPU only.


def _near_tie_rows(seed, n, d, dtype):
    """Offset clusters with exact duplicates and rows one ulp from another (near-ties)."""
    X = _data(seed, n, d, np.float64) + 3.0
    X[1::7] = X[0:-1:7][: len(X[1::7])]
    near = X[2::11][: len(X[3::11])].copy()
    near[:, 0] = np.nextafter(near[:, 0].astype(dtype), np.inf).astype(np.float64)
    X[3::11] = near
    return X.astype(dtype)


def _screen(X, Q, k, metric, **kw):
    """The screen binding directly: (values, indices, info), on device 0."""
    dev = _device.Device("cuda", 0)
    return _engine.knn_screen_cuda(X, Q, X, Q, k, metric=metric, exclude_self=kw.pop(
        "exclude_self", Q is None), device=dev, **kw)


def _exact(X, Q, k, metric, **kw):
    dev = _device.Device("cuda", 0)
    return _engine.knn_exact(X, Q, k, metric=metric, exclude_self=kw.pop(
        "exclude_self", Q is None), device=dev, **kw)


@pytest.mark.cuda
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("metric", ["ip", "l2"])
def test_screen_on_equals_off_production_size(dtype, metric):
    # N = 20,000 (default 4096-wide screen tiles, 8192-wide seed tiles): screen="int8" on the
    # GPU returns screen="off"'s graph bit for bit (and the CPU's exact graph of the same
    # dtype), k = 1, 10 and 100, self and Q != X, with duplicates and near-ties.
    if CUDA_REASON is not None:
        pytest.skip(CUDA_REASON)
    X = _near_tie_rows(95, 20000, 64, dtype)
    Q = np.concatenate([X[:1500], _near_tie_rows(96, 1500, 64, dtype)])  # copies of X rows too
    for k in (1, 10, 100):
        off = ma.knn(X, k=k, metric=metric, device="cuda", screen="off")
        _same_graph(ma.knn(X, k=k, metric=metric, device="cuda", screen="int8"), off)
        _same_graph(ma.knn(X, k=k, metric=metric, device="cuda", screen="auto"), off)
        _same_graph(off, ma.knn(X, k=k, metric=metric, device="cpu", screen="off"))
        qoff = ma.knn(X, k=k, metric=metric, queries=Q, device="cpu", screen="off")
        _same_graph(ma.knn(X, k=k, metric=metric, queries=Q, device="cuda", screen="int8"), qoff)
        _, _, info = _screen(X, None, k, metric)
        assert info["screened"] and info["seed_columns"] == 1024 and info["tiles"] == 15
        assert info["merged"] > 0


@pytest.mark.cuda
@pytest.mark.parametrize("metric", ["ip", "l2"])
def test_screen_overflow_and_small_tiles(metric):
    # 700 exact copies of one row, 1.5x longer than the rest (so for ip too they are each
    # other's and every row's best neighbours): their pairs tie, a tile's survivors overflow
    # the line's slots and the line is re-scored against all of the tile's columns; small and
    # ragged tiles (250 rows, 300 columns); exclude_self=False keeps each row's own pair.
    if CUDA_REASON is not None:
        pytest.skip(CUDA_REASON)
    X = _near_tie_rows(97, 5000, 24, np.float32)
    X[1000:1700] = X[5] * np.float32(1.5)
    Q = X[::3].copy()
    for k in (1, 5, 40):
        v, i, info = _screen(X, None, k, metric, tile_rows=250)
        rv, ri = _exact(X, None, k, metric)
        np.testing.assert_array_equal(v, rv)
        np.testing.assert_array_equal(i, ri)
        assert info["screened"] and info["overflow_lines"] > 0
        v, i, _ = _screen(X, None, k, metric, exclude_self=False, tile_rows=250)
        rv, ri = _exact(X, None, k, metric, exclude_self=False)
        np.testing.assert_array_equal(v, rv)
        np.testing.assert_array_equal(i, ri)
        v, i, info = _screen(X, Q, k, metric, tile_rows=250, tile_cols=300)
        rv, ri = _exact(X, Q, k, metric)
        np.testing.assert_array_equal(v, rv)
        np.testing.assert_array_equal(i, ri)
        assert info["tiles"] == 7 * 14  # ceil(1667 / 250) x ceil((5000 - 1024) / 300)


@pytest.mark.cuda
@pytest.mark.parametrize("metric", ["ip", "l2"])
def test_screen_small_cases(metric):
    # Small enough for compute-sanitizer (scripts/gpu_check.py runs it under memcheck and
    # racecheck): N = 1500 > the 1024 seed columns, ragged 200-row tiles, 300 copies of one row
    # (overflowing lines), self and Q != X, float32 and float64.
    if CUDA_REASON is not None:
        pytest.skip(CUDA_REASON)
    for dtype in (np.float32, np.float64):
        X = _near_tie_rows(101, 1500, 20, dtype)
        X[1100:1400] = X[3] * dtype(1.5)
        Q = X[::4].copy()
        for Qm in (None, Q):
            v, i, info = _screen(X, Qm, 3, metric, tile_rows=200, tile_cols=150)
            rv, ri = _exact(X, Qm, 3, metric)
            np.testing.assert_array_equal(v, rv)
            np.testing.assert_array_equal(i, ri)
            assert info["screened"] and info["tiles"] > 0
            if Qm is None:
                assert info["overflow_lines"] > 0


@pytest.mark.cuda
def test_screen_on_torch_input_is_the_cpu_graph():
    _need_gpu_lib("torch")
    import torch

    X = _near_tie_rows(98, 6000, 40, np.float32)
    Xt = torch.as_tensor(X, device="cuda")
    for metric in ("ip", "l2", "cosine"):
        _same_graph(ma.knn(Xt, k=10, metric=metric, screen="int8"),
                    ma.knn(X, k=10, metric=metric, device="cpu", screen="off"))


class _RecordingEngine:
    """Stands for the two kNN doors of _engine on a CUDA device: records which one ran."""

    def __init__(self, monkeypatch):
        self.calls = []

        def screen(X, Q, X_host, Q_host, k, **kw):
            self.calls.append(("screen", X_host, Q_host, kw))
            m = X.shape[0] if Q is None else Q.shape[0]
            return np.zeros((m, k)), np.zeros((m, k), dtype=np.int64), {"screened": True}

        def exact(X, Q, k, **kw):
            self.calls.append(("exact", X, Q, kw))
            m = X.shape[0] if Q is None else Q.shape[0]
            return np.zeros((m, k)), np.zeros((m, k), dtype=np.int64)

        monkeypatch.setattr(_engine, "knn_screen_cuda", screen)
        monkeypatch.setattr(_engine, "knn_exact", exact)


@pytest.mark.parametrize("screen,metric,route", [
    ("int8", "ip", "screen"), ("int8", "l2", "screen"), ("int8", "cosine", "screen"),
    ("auto", "ip", "exact"), ("off", "ip", "exact"), ("int16", "l2", "exact")])
def test_device_knn_routes_the_screen(monkeypatch, screen, metric, route):
    # Runs without a GPU: which door ma.knn's CUDA path takes for each screen= value. Host
    # rows go to the screen as they are (cosine: normalised on the host first, as the CPU).
    knn_mod = importlib.import_module("matalign.knn")  # (matalign.knn is also the function)

    rec = _RecordingEngine(monkeypatch)
    X = _data(99, 50, 6, np.float32)
    Q = _data(100, 7, 6, np.float32)
    knn_mod._knn_cuda(X, None, k=3, metric=metric, method="exact", rescore=False, tile_rows=0,
                      tile_cols=0, progress=False, dev=_device.Device("cuda", 0), screen=screen)
    knn_mod._knn_cuda(X, Q, k=3, metric=metric, method="exact", rescore=False, tile_rows=5,
                      tile_cols=6, progress=False, dev=_device.Device("cuda", 0), screen=screen)
    assert [c[0] for c in rec.calls] == [route, route]
    if route == "screen":
        (_, xh, qh, kw), (_, xh2, qh2, kw2) = rec.calls
        want = X / np.linalg.norm(X.astype(np.float64), axis=1)[:, None] if metric == "cosine" else X
        np.testing.assert_allclose(xh, want, rtol=1e-6)
        assert qh is None and qh2 is not None and qh2.shape == (7, 6)
        assert kw["metric"] == ("l2" if metric == "l2" else "ip") and kw["exclude_self"]
        assert (kw2["tile_rows"], kw2["tile_cols"], kw2["exclude_self"]) == (5, 6, False)
    else:
        assert not rec.calls[0][3]["normalize"]


def test_device_cosine_on_device_rows_takes_the_exact_path(monkeypatch):
    # Device rows are normalised on the device (normalize=True), which only the exact path does.
    knn_mod = importlib.import_module("matalign.knn")  # (matalign.knn is also the function)

    rec = _RecordingEngine(monkeypatch)
    monkeypatch.setattr(_device, "matrix", lambda X, name, dev: _FakeDeviceMatrix(0, shape=(10, 3)))
    knn_mod._knn_cuda(object(), None, k=2, metric="cosine", method="exact", rescore=False,
                      tile_rows=0, tile_cols=0, progress=False, dev=_device.Device("cuda", 0),
                      screen="int8")
    assert [c[0] for c in rec.calls] == ["exact"] and rec.calls[0][3]["normalize"]


def test_device_knn_bad_screen_is_a_value_error():
    knn_mod = importlib.import_module("matalign.knn")  # (matalign.knn is also the function)

    with pytest.raises(ValueError, match="screen must be one of 'auto', 'int8', 'int16', 'off'; got 'int4'"):
        knn_mod._knn_cuda(_data(1, 10, 2, np.float32), None, k=2, metric="ip", method="exact",
                          rescore=False, tile_rows=0, tile_cols=0, progress=False,
                          dev=_device.Device("cuda", 0), screen="int4")


@pytest.mark.skipif(_NO_CUDA_BUILD, reason="matalign was built without CUDA")
def test_screen_binding_is_built_with_cuda():
    for name in ("knn_screen_cuda_f32", "knn_screen_cuda_f64"):
        assert "int8 tensor-core screen" in getattr(_core, name).__doc__
