"""The CUDA engine: the same test bodies on every backend, and the device= error paths.

Each test that computes takes the ``backend`` fixture ("cpu", "cuda"); the cuda case carries
the ``cuda`` marker and skips with the reason ("matalign was built without CUDA" or "no CUDA
device visible") where it cannot run. The GPU results are compared with the CPU engine's:
bitwise where the design promises it (kNN graphs, RankCount counts, CKNNA), to rounding where
the summation order differs (PairSums: distance correlation, RBF CKA). On a machine with a
visible GPU, a session in which every cuda case skipped fails (conftest.py).
"""

from __future__ import annotations

import numpy as np
import pytest

import matalign as ma
from matalign import _core, _device

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
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
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


@pytest.mark.cuda
@pytest.mark.parametrize("lib", ["cupy", "torch"])
def test_device_arrays_zero_copy(lib):
    if CUDA_REASON is not None:
        pytest.skip(CUDA_REASON)
    if lib not in _gpu_libraries():
        pytest.skip(f"{lib} with CUDA is not installed")
    X = _data(80, 257, 19, np.float32)
    Y = _data(81, 257, 5, np.float32)
    if lib == "cupy":
        import cupy
        to = cupy.asarray
    else:
        import torch
        to = lambda a: torch.as_tensor(a, device="cuda")  # noqa: E731
    Xd, Yd = to(X), to(Y)
    for metric in ("ip", "l2"):
        _same_graph(ma.knn(Xd, k=9, metric=metric), ma.knn(X, k=9, metric=metric, screen="off"))
    # A non-contiguous (transposed-layout) view is read in place too.
    Xf = to(np.asfortranarray(X))
    _same_graph(ma.knn(Xf, k=9, metric="l2", device="cuda"),
                ma.knn(X, k=9, metric="l2", screen="off"))
    assert ma.information_imbalance(Xd, Yd) == ma.information_imbalance(X, Y)
    assert ma.distance_correlation(Xd, Yd) == pytest.approx(ma.distance_correlation(X, Y),
                                                            rel=1e-5)
    assert ma.cknna(Xd, Yd, k=5) == ma.cknna(X, Y, k=5)
    bad = X.copy()
    bad[42, 3] = np.nan
    with pytest.raises(ValueError, match="non-finite value in row 42"):
        ma.knn(to(bad), k=3)
    with pytest.raises(RuntimeError, match="device='cpu'"):
        ma.knn(Xd, k=3, device="cpu")
