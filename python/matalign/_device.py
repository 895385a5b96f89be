"""Where an engine call runs (``device=``) and GPU array intake, in one place.

Every engine call (``knn``, ``cka``, ``distance_correlation``, ``information_imbalance``,
``mutual_knn``, ``local_agreement``, ``cknna``) takes ``device="auto" | "cpu" | "cuda" |
"cuda:N"`` and resolves it here with :func:`resolve`:

- ``"cpu"``: the C++/OpenMP engine. GPU-resident input raises RuntimeError (move it first).
- ``"cuda"`` / ``"cuda:N"``: the CUDA engine on device N (``"cuda"``: the device that holds
  the input, else 0). Without CUDA it raises RuntimeError saying which of two things is
  missing: "matalign was built without CUDA" or "no CUDA device visible". A device index that
  does not exist, or one that differs from the device holding the input, is a ValueError.
- ``"auto"`` (default): CUDA when the input already lives on a GPU (on that GPU); else CUDA
  device 0 when this build has CUDA, a device is visible and N >= ``AUTO_MIN_ROWS`` (50 000
  rows, where the GPU wins clearly over a few CPU cores); else the CPU. So on a machine
  without a GPU "auto" is always the CPU, and small problems stay on the CPU everywhere.

GPU input: CuPy arrays and torch CUDA tensors (anything exporting
``__cuda_array_interface__``) are read in place, zero-copy. Each input's *producer stream* is
read when it is handed over (:func:`producer_stream`: the interface's ``stream`` where it has
one (version 3, CuPy), else torch's or CuPy's current stream on the array's device; torch's
interface is version 2, without ``stream``). A call runs on the first device input's stream
and first makes it wait on every other input's stream (an event recorded there), so ``X``
written on one side stream and ``Y`` or ``queries`` on another are both complete before the
engine reads them. Their dtype, shape, strides and
device id are checked here, NaN/Inf and overflowing magnitudes on the device, with the same
messages as :func:`matalign._validate.as_matrix` gives for host arrays. Results come back as
NumPy arrays (a ``KnnGraph`` is host data).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from . import _engine

__all__ = ["CudaError", "Device", "DeviceMatrix", "AUTO_MIN_ROWS", "resolve", "parse_device",
           "cuda_unavailable_reason", "is_device_array", "matrix", "core_arg", "to_host",
           "producer_stream"]

AUTO_MIN_ROWS = 50_000
_CUDA_DLPACK_TYPES = (2, 13)  # kDLCUDA, kDLCUDAManaged


class CudaError(RuntimeError):
    """A CUDA runtime call inside matalign failed.

    Attributes
    ----------
    call : str or None
        The failing call as written in matalign's source (e.g. ``"cudaMemcpyAsync(...)"``).
    code : int or None
        The ``cudaError_t`` value.
    error_string : str or None
        ``cudaGetErrorString`` of that code.

    Examples
    --------
    >>> import matalign as ma
    >>> issubclass(ma.CudaError, RuntimeError)
    True
    """

    def __init__(self, message: str, call: str | None = None, code: int | None = None,
                 error_string: str | None = None) -> None:
        super().__init__(message)
        self.call = call
        self.code = code
        self.error_string = error_string


@dataclass(frozen=True)
class Device:
    """A resolved device: ``kind`` "cpu" or "cuda", ``index`` the CUDA device id (None on CPU)."""

    kind: str
    index: int | None = None

    @property
    def is_cuda(self) -> bool:
        return self.kind == "cuda"

    def __str__(self) -> str:
        return "cpu" if self.kind == "cpu" else f"cuda:{self.index}"


def parse_device(device) -> tuple[str, int | None]:
    """("auto" | "cpu" | "cuda", index or None) from a ``device=`` value.

    Raises
    ------
    ValueError
        For anything but "auto", "cpu", "cuda" and "cuda:N" with N >= 0.

    Examples
    --------
    >>> from matalign._device import parse_device
    >>> parse_device("cuda:1")
    ('cuda', 1)
    >>> parse_device("gpu")
    Traceback (most recent call last):
    ...
    ValueError: device must be 'auto', 'cpu', 'cuda' or 'cuda:N' (N >= 0); got 'gpu'
    """
    if isinstance(device, str):
        if device in ("auto", "cpu", "cuda"):
            return device, None
        if device.startswith("cuda:"):
            tail = device[5:]
            if tail.isdigit() and tail.isascii():
                return "cuda", int(tail)
    raise ValueError(f"device must be 'auto', 'cpu', 'cuda' or 'cuda:N' (N >= 0); got {device!r}")


def cuda_unavailable_reason() -> str | None:
    """Why the CUDA engine cannot run here, or None when it can.

    The two reasons are distinct: "matalign was built without CUDA" (this build has no CUDA
    kernels) and "no CUDA device visible" (the kernels exist, but the driver sees no device).
    """
    info = _engine.build_info()
    if not info.get("cuda"):
        return ("matalign was built without CUDA (reinstall with "
                "pip install . -Ccmake.define.MATALIGN_ENABLE_CUDA=ON on a machine with nvcc)")
    if _engine.cuda_device_count() == 0:
        detail = info.get("cuda_runtime_error") or ""
        return "no CUDA device visible" + (f" ({detail})" if detail and "no CUDA device" not in detail else "")
    return None


def _cai(X):
    try:
        return X.__cuda_array_interface__
    except (AttributeError, RuntimeError, TypeError):
        return None


def is_device_array(X) -> bool:
    """Whether X lives in GPU memory (a CuPy array, a torch CUDA tensor, a DeviceMatrix)."""
    if isinstance(X, DeviceMatrix):
        return True
    if isinstance(X, np.ndarray) or X is None:
        return False
    if hasattr(X, "__dlpack_device__"):
        try:
            kind = int(X.__dlpack_device__()[0])
        except Exception:  # noqa: BLE001 - a producer without a usable device query
            kind = None
        if kind is not None:
            return kind in _CUDA_DLPACK_TYPES
    return _cai(X) is not None


def _device_id(X) -> int:
    """CUDA device id of a device array (from DLPack, then the producer's own attributes)."""
    if isinstance(X, DeviceMatrix):
        return X.device
    if hasattr(X, "__dlpack_device__"):
        try:
            kind, index = X.__dlpack_device__()
            if int(kind) in _CUDA_DLPACK_TYPES:
                return int(index)
        except Exception:  # noqa: BLE001
            pass
    dev = getattr(X, "device", None)
    for attr in ("index", "id"):
        value = getattr(dev, attr, None)
        if isinstance(value, int):
            return value
    raise TypeError(f"cannot tell which CUDA device holds {type(X).__name__}; pass a CuPy array "
                    "or a torch CUDA tensor")


def resolve(device, *arrays, n: int | None = None) -> Device:
    """Resolve ``device=`` for a call on ``arrays`` (None entries and KnnGraphs are ignored).

    ``n``: the number of rows, for the "auto" rule; by default the first array's ``shape[0]``.

    Raises
    ------
    ValueError
        For an invalid ``device`` string, a device index that does not exist, or inputs on
        another device than the one asked for (or on different devices).
    RuntimeError
        For "cuda"/"cuda:N" without CUDA ("built without CUDA" or "no CUDA device visible"),
        or GPU input with ``device="cpu"``.

    Examples
    --------
    >>> import numpy as np
    >>> from matalign._device import resolve
    >>> str(resolve("auto", np.zeros((10, 3))))
    'cpu'
    """
    kind, index = parse_device(device)
    gpu = [(i, _device_id(a)) for i, a in enumerate(arrays) if a is not None and is_device_array(a)]
    if kind == "cpu":
        if gpu:
            raise RuntimeError(
                f"device='cpu' but input {gpu[0][0]} lives on cuda:{gpu[0][1]}; pass "
                "device='cuda' (or 'auto'), or move it to the host first (x.cpu() for torch, "
                "cupy.asnumpy(x) for CuPy)")
        return Device("cpu")
    if kind == "auto":
        if not gpu:
            if n is None:
                shape = next((getattr(a, "shape", None) for a in arrays if a is not None), None)
                n = int(shape[0]) if shape is not None and len(shape) >= 1 else 0
            if n >= AUTO_MIN_ROWS and cuda_unavailable_reason() is None:
                return Device("cuda", 0)
            return Device("cpu")
    reason = cuda_unavailable_reason()
    if reason is not None:
        raise RuntimeError(f"device={device!r}: {reason}")
    held = sorted({g for _, g in gpu})
    if len(held) > 1:
        raise ValueError(f"inputs live on different CUDA devices {['cuda:%d' % g for g in held]}; "
                         "move them to one device")
    if index is None:
        index = held[0] if held else 0
    count = _engine.cuda_device_count()
    if index >= count:
        raise ValueError(f"device='cuda:{index}' does not exist: {count} CUDA device"
                         f"{'' if count == 1 else 's'} visible (cuda:0..cuda:{count - 1})")
    if held and held[0] != index:
        raise ValueError(f"device='cuda:{index}' but the input lives on cuda:{held[0]}; pass "
                         f"device='cuda:{held[0]}' or move the input")
    return Device("cuda", index)


@dataclass(frozen=True, eq=False)
class DeviceMatrix:
    """A validated (N, D) float32/float64 matrix in GPU memory, read in place.

    ``obj`` keeps the producer's array alive; strides are in elements.
    """

    obj: object
    ptr: int
    shape: tuple
    strides: tuple
    dtype: np.dtype
    device: int
    stream: int

    @property
    def ndim(self) -> int:
        return 2

    @property
    def __cuda_array_interface__(self):
        return _cai(self.obj)

    def descriptor(self) -> tuple:
        """(data_ptr, rows, cols, row_stride, col_stride) for the ``_cuda`` bindings."""
        return (self.ptr, self.shape[0], self.shape[1], self.strides[0], self.strides[1])


def _device_matrix(X, name: str, dev: Device) -> DeviceMatrix:
    from ._validate import _dtype_error  # the one dtype message of matalign

    cai = _cai(X)
    if cai is None:
        raise TypeError(
            f"{name} ({type(X).__name__}) lives on a GPU but does not export "
            "__cuda_array_interface__; pass a CuPy array or a torch CUDA tensor")
    shape = tuple(int(s) for s in cai["shape"])
    if len(shape) != 2:
        raise ValueError(f"{name} must be a 2-D (N, D) array; got {len(shape)}-D with shape {shape}")
    n, d = shape
    if n == 0:
        raise ValueError(f"{name} is empty: expected at least 1 row, got shape {(n, d)}")
    if d == 0:
        raise ValueError(f"{name} has no features: expected D >= 1 columns, got shape {(n, d)}")
    dtype = np.dtype(cai["typestr"])
    if dtype.type not in (np.float32, np.float64) or not dtype.isnative:
        raise _dtype_error(name, dtype, (np.float32, np.float64), X)
    item = dtype.itemsize
    strides = cai.get("strides")
    strides = (d * item, item) if strides is None else tuple(int(s) for s in strides)
    if any(s < 0 or s % item for s in strides):
        raise ValueError(f"{name} has strides {strides} (bytes) that are negative or not a "
                         f"multiple of its item size; pass a contiguous copy")
    holder = _device_id(X)
    if holder != dev.index:
        raise ValueError(f"{name} lives on cuda:{holder} but the call runs on {dev}")
    stream = producer_stream(X, cai, holder)
    m = DeviceMatrix(X, int(cai["data"][0]), (n, d), (strides[0] // item, strides[1] // item),
                     dtype, holder, stream)
    bad, big = _engine.scan_rows(m, dev)
    if bad >= 0:
        raise ValueError(
            f"{name} has a non-finite value in row {bad} (the first such row); matalign needs "
            f"finite values: drop or impute that row")
    limit = float(np.finfo(dtype).max) / (8.0 * d)
    if big * big > limit:
        raise ValueError(
            f"{name} has values up to {big:.3g} in magnitude: with D={d} its inner products and "
            f"squared distances would overflow {dtype.name}; rescale it first")
    return m


def _torch_stream(index: int) -> int:
    import torch

    return int(torch.cuda.current_stream(index).cuda_stream)


def _cupy_stream(index: int) -> int:
    import cupy

    with cupy.cuda.Device(index):
        return int(cupy.cuda.get_current_stream().ptr)


# The current stream of each producer library whose interface may lack ``stream``, by the
# top-level module of the array's type (replaceable in tests).
_CURRENT_STREAM = {"torch": _torch_stream, "cupy": _cupy_stream}


def producer_stream(X, cai: dict, index: int) -> int:
    """The stream on which X's producer writes it, as a ``cudaStream_t`` integer.

    The ``__cuda_array_interface__``'s ``stream`` when it names one (version 3: 1 is the legacy
    default stream, 2 the per-thread default stream, anything else a stream handle); else, for
    a torch tensor or a CuPy array, that library's current stream on device ``index`` (torch
    exports version 2, without ``stream``; a CuPy export may say None); else 0, the legacy
    default stream.

    Examples
    --------
    >>> from matalign._device import producer_stream
    >>> class Exported:  # a producer that names its stream
    ...     pass
    >>> producer_stream(Exported(), {"stream": 1234, "version": 3}, 0)
    1234
    >>> producer_stream(Exported(), {"version": 2}, 0)
    0
    """
    stream = cai.get("stream")
    if stream is not None:
        return int(stream)
    current = _CURRENT_STREAM.get(type(X).__module__.split(".")[0])
    return 0 if current is None else int(current(index))


def matrix(X, name: str, dev: Device):
    """Validate X for a call on ``dev``: a NumPy array (``as_matrix``, host memory) or, for GPU
    input on a CUDA device, a :class:`DeviceMatrix`. Idempotent."""
    if isinstance(X, DeviceMatrix):
        return X
    if dev.is_cuda and is_device_array(X):
        return _device_matrix(X, name, dev)
    from ._validate import as_matrix

    return as_matrix(X, name)


def core_arg(m):
    """What a ``*_cuda_*`` binding takes for a validated matrix: the NumPy array itself (copied
    to the device in row blocks) or the device descriptor tuple."""
    return m.descriptor() if isinstance(m, DeviceMatrix) else m


def to_host(X) -> np.ndarray:
    """A NumPy copy of a device array (or X itself for host arrays)."""
    if isinstance(X, DeviceMatrix):
        X = X.obj
    if isinstance(X, np.ndarray):
        return X
    if hasattr(X, "get") and type(X).__module__.split(".")[0] == "cupy":
        return X.get()
    if hasattr(X, "detach") and hasattr(X, "cpu"):
        return X.detach().cpu().numpy()
    raise TypeError(f"cannot copy {type(X).__name__} to the host; pass a NumPy array")


class HostRows:
    """Row access to a device matrix that copies only the rows asked for to the host (for the
    sampled pairs of ``sigma="median"``)."""

    def __init__(self, m: DeviceMatrix) -> None:
        self._m = m
        self.shape = m.shape
        self.dtype = m.dtype

    def __getitem__(self, rows) -> np.ndarray:
        obj = self._m.obj
        if type(obj).__module__.split(".")[0] == "torch":
            import torch

            rows = torch.as_tensor(np.asarray(rows), device=obj.device)
        return to_host(obj[rows])
