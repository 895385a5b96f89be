"""The one input-validation helper of matalign.

Every public function passes its data through :func:`as_matrix` and its options through the
``check_*`` helpers, so that every error names the argument and states what was expected and
what was received. Nothing here casts a dtype: the only copies made are lossless layout fixes
(negative strides, misaligned or byte-swapped buffers) that the compiled engine cannot read.
"""

from __future__ import annotations

import math
import numbers
import operator

import numpy as np

from . import _engine
from ._json import describe

__all__ = [
    "as_matrix",
    "check_same_n",
    "check_same_dtype",
    "check_k",
    "check_choice",
    "check_int",
    "check_bool",
    "check_fraction",
    "check_progress",
    "describe",
]

_FLOAT_DTYPES = (np.float32, np.float64)
_DLPACK_CPU = 1  # kDLCPU
_DLPACK_CUDA_HOST = 3  # kDLCUDAHost: pinned host memory, readable by the CPU
_DLPACK_DEVICE_NAMES = {2: "CUDA", 4: "OpenCL", 7: "Vulkan", 8: "Metal", 9: "VPI", 10: "ROCm",
                        13: "CUDA managed", 14: "oneAPI"}




def _dtype_names(dtypes) -> str:
    names = [np.dtype(d).name for d in dtypes]
    if len(names) == 1:
        return names[0]
    return " or ".join([", ".join(names[:-1]), names[-1]])


def _convert_hint(name: str, original, dtypes) -> str:
    """How to convert ``original`` to the first accepted dtype, in the caller's own library."""
    target = np.dtype(dtypes[0]).name
    if isinstance(original, np.ndarray):
        return f"{name}.astype(np.{target})"
    if type(original).__module__.split(".")[0] == "torch":
        return f"{name}.{'float' if target == 'float32' else 'double'}()"
    if hasattr(original, "astype"):
        return f"{name}.astype(np.{target})"
    return f"np.asarray({name}, dtype=np.{target})"


def _dtype_error(name: str, dtype: np.dtype, dtypes, original=None) -> TypeError:
    wanted = _dtype_names(dtypes)
    target = f"np.{np.dtype(dtypes[0]).name}"
    convert = _convert_hint(name, original if original is not None else np.empty(0), dtypes)
    if dtype.kind == "c":
        fix = (f"matalign needs real values: pass {name}.real.astype({target}) if the imaginary "
               "part carries nothing")
    elif dtype.kind == "O":
        fix = (f"an object array usually comes from a ragged or mixed list: build a numeric "
               f"array, e.g. np.asarray({name}, dtype={target})")
    elif dtype.kind in "USV":
        fix = f"pass the numbers as a numeric array, e.g. np.asarray({name}, dtype={target})"
    elif dtype.kind in "mM":
        fix = f"convert the timestamps to numbers first, e.g. {name}.astype(np.int64).astype({target})"
    else:  # b, i, u, f (float16, longdouble)
        fix = f"pass {convert}"
    return TypeError(
        f"{name} has dtype {dtype.name}; matalign computes in {wanted} and never casts "
        f"silently: {fix}"
    )


def _from_device_object(X, name: str):
    """Read a non-NumPy array-like (DLPack / __array__ / sequence) as a NumPy array, zero-copy
    where the producer allows it. GPU-resident objects are rejected with a fix-it message."""
    device = None
    if hasattr(X, "__dlpack_device__"):
        try:
            device = tuple(X.__dlpack_device__())
        except Exception:  # a producer without a usable device query: fall through
            device = None
    if device is None and hasattr(X, "__cuda_array_interface__"):
        device = (2, -1)
    if device is not None and device[0] not in (_DLPACK_CPU, _DLPACK_CUDA_HOST):
        kind = _DLPACK_DEVICE_NAMES.get(device[0], f"DLPack device type {device[0]}")
        where = f"{kind} device {device[1]}" if device[1] >= 0 else f"a {kind} device"
        raise RuntimeError(
            f"{name} is a {describe(X)} on {where}; this version of matalign reads arrays in "
            f"host (CPU) memory only (GPU input comes with the CUDA support): move it to the "
            f"host first, e.g. {name}.cpu() for torch or cupy.asnumpy({name}) for CuPy"
        )
    fix = (f"pass a float32/float64 NumPy array, e.g. {name}.detach().cpu().float().numpy() "
           "for torch")
    dlpack_error = None
    if hasattr(X, "__dlpack__"):
        try:
            return np.from_dlpack(X)
        except (BufferError, RuntimeError, TypeError, ValueError) as exc:
            dlpack_error = exc
            if not hasattr(X, "__array__"):
                raise TypeError(
                    f"{name} ({describe(X)}) could not be read through DLPack ({exc}): {fix}"
                ) from exc
    if hasattr(X, "__array__"):
        try:
            return np.asarray(X)
        except Exception as exc:
            raise TypeError(
                f"{name} ({describe(X)}) could not be read as a NumPy array ({exc}): {fix}"
            ) from (dlpack_error or exc)
    if isinstance(X, (list, tuple)):
        try:
            return np.asarray(X)
        except ValueError as exc:
            raise TypeError(
                f"{name} is a {describe(X)} that is not a rectangular array of numbers ({exc}); "
                "pass an (N, D) NumPy array"
            ) from exc
    raise TypeError(
        f"{name} must be an (N, D) array (NumPy array, np.memmap, or a CPU torch/CuPy tensor "
        f"through DLPack); got {describe(X)}"
    )


def as_matrix(X, name: str = "X", dtypes=_FLOAT_DTYPES, allow_device: bool = False,
              scan: bool = True) -> np.ndarray:
    """Validate an (N, D) embedding matrix and return it as a NumPy array.

    No dtype is ever changed and no copy is made for NumPy input in C or Fortran order,
    ``np.memmap`` or positively strided views (the engine reads any strides). CPU tensors that
    export DLPack (torch, CuPy host arrays, JAX) are wrapped zero-copy with ``np.from_dlpack``.
    The only copies are lossless layout fixes the engine cannot read directly: negative
    strides, misaligned buffers and non-native byte order.

    Parameters
    ----------
    X : array_like, shape (N, D)
        The matrix: a NumPy array, an :class:`~matalign.store.EmbeddingStore` (its memmap is
        used, nothing is loaded), an object with ``__dlpack__`` or ``__array__``, or a
        (nested) list.
    name : str, default "X"
        The argument name used in error messages.
    dtypes : tuple of dtypes, default (np.float32, np.float64)
        Accepted dtypes.
    allow_device : bool, default False
        Reserved for GPU input: GPU-resident arrays are rejected with RuntimeError in this
        version whatever the value.
    scan : bool, default True
        Read the values (NaN/Inf, overflowing magnitudes: :func:`check_values`). False checks
        only what the shape and dtype tell, without reading any data, so that an entry point
        can refuse a call for memory before it reads a large memmap; it must then call
        :func:`check_values` itself.

    Returns
    -------
    numpy.ndarray, shape (N, D)
        ``X`` itself, or a zero-copy view of it.

    Raises
    ------
    TypeError
        If ``X`` is not array-like or its dtype is not one of ``dtypes`` (int, uint, bool,
        float16, complex, object, strings...). The message says how to convert.
    ValueError
        If ``X`` is not 2-D, has no rows or no columns, or holds NaN or ±Inf (the message names
        the first offending row).
    RuntimeError
        If ``X`` lives on a GPU.

    Examples
    --------
    >>> import numpy as np
    >>> from matalign._validate import as_matrix
    >>> X = np.zeros((3, 2), dtype=np.float32)
    >>> as_matrix(X) is X
    True
    >>> as_matrix(np.zeros((3, 2), dtype=np.int64))
    Traceback (most recent call last):
    ...
    TypeError: X has dtype int64; matalign computes in float32 or float64 and never casts silently: pass X.astype(np.float32)
    """
    del allow_device  # no device path yet; see _from_device_object
    if not isinstance(X, np.ndarray):
        from .store import EmbeddingStore  # local import: no cycle if store uses _validate
        if isinstance(X, EmbeddingStore):
            # Its read-only memmap: the engine reads it out of core. An unfinished store
            # raises here with how to resume it.
            X = X.embeddings
    if isinstance(X, np.ma.MaskedArray):
        raise TypeError(
            f"{name} is a masked array; matalign would ignore the mask: drop the masked rows "
            f"or fill them first, e.g. {name}.filled(0.0) or {name}.data[~{name}.mask.any(axis=1)]")
    if isinstance(X, np.ndarray):
        arr = X
    else:
        arr = _from_device_object(X, name)
    if arr.ndim != 2:
        hint = ""
        if arr.ndim == 1:
            hint = f"; for one feature per row pass {name}.reshape(-1, 1)"
        elif arr.ndim > 2:
            hint = f"; flatten or pool the extra axes first, e.g. {name}.reshape(len({name}), -1)"
        raise ValueError(
            f"{name} must be a 2-D (N, D) array; got {arr.ndim}-D with shape {tuple(arr.shape)}"
            f"{hint}"
        )
    n, d = arr.shape
    if n == 0:
        raise ValueError(f"{name} is empty: expected at least 1 row, got shape {(n, d)}")
    if d == 0:
        raise ValueError(f"{name} has no features: expected D >= 1 columns, got shape {(n, d)}")
    dtype = arr.dtype
    wanted = tuple(np.dtype(t) for t in dtypes)
    if not any(dtype.type is w.type for w in wanted):
        raise _dtype_error(name, dtype, wanted, X)
    # Lossless layout fixes only (values and dtype unchanged).
    if not dtype.isnative:
        arr = arr.astype(dtype.newbyteorder("="))
    elif (not arr.flags.aligned or any(s < 0 for s in arr.strides)
          or any(s % arr.itemsize for s in arr.strides)):
        arr = np.ascontiguousarray(arr)
    if scan:
        check_values(arr, name)
    return arr


def check_values(arr: np.ndarray, name: str = "X") -> np.ndarray:
    """The value checks of :func:`as_matrix` (one pass over the data): no NaN/Inf (the message
    names the first offending row and column) and no magnitude whose squares overflow."""
    bad = _engine.first_nonfinite_row(arr)
    if bad >= 0:
        row = np.asarray(arr[bad])
        col = int(np.flatnonzero(~np.isfinite(row))[0])
        raise ValueError(
            f"{name} has a non-finite value in row {bad} (the first such row): {name}[{bad}, {col}] "
            f"= {row[col]}; matalign needs finite values: drop or impute that row"
        )
    _check_magnitude(arr, name)
    return arr


def _check_magnitude(arr: np.ndarray, name: str) -> None:
    """Reject values so large that inner products or squared distances overflow the dtype
    (they would turn into inf/NaN inside the engine and give a wrong answer, not an error)."""
    big = max(abs(float(arr.max())), abs(float(arr.min())))
    limit = float(np.finfo(arr.dtype).max) / (8.0 * arr.shape[1])
    if big * big > limit:
        raise ValueError(
            f"{name} has values up to {big:.3g} in magnitude: with D={arr.shape[1]} its inner "
            f"products and squared distances would overflow {arr.dtype}; rescale it first "
            f"(e.g. ma.preprocess({name}, l2=True), or divide by a constant)"
        )


def _n_of(obj) -> int:
    n = getattr(obj, "n", None)
    if n is not None and not isinstance(obj, np.ndarray):
        return int(n)
    return int(obj.shape[0])


def check_same_structures(named) -> None:
    """Check that embedding stores compared with each other hold the same structures in the
    same order (row i of every store is one structure), by their ids.

    ``named`` is a sequence of (name, object) pairs; objects that are not stores (arrays,
    graphs) carry no ids and are skipped.

    Raises
    ------
    ValueError
        Naming the first row whose ids differ, or the differing counts.
    """
    from .store import EmbeddingStore  # local import: no cycle

    stores = [(name, obj) for name, obj in named if isinstance(obj, EmbeddingStore)]
    if len(stores) < 2:
        return
    first_name, first = stores[0]
    ref = first.ids
    for name, other in stores[1:]:
        ids = other.ids
        if len(ids) != len(ref):
            continue  # the row-count check that follows names both N
        if ids != ref:
            row = next(i for i, (a, b) in enumerate(zip(ref, ids)) if a != b)
            raise ValueError(
                f"{first_name} and {name} are stores of different structures: row {row} is "
                f"{ref[row]!r} in {first_name} but {ids[row]!r} in {name}; embed the same "
                f"dataset, in the same order, with each model")


def check_same_n(X, Y, names=("X", "Y")) -> int:
    """Check that X and Y (arrays or KnnGraphs) describe the same N structures; return N.

    Raises
    ------
    ValueError
        If the row counts differ.
    """
    nx, ny = _n_of(X), _n_of(Y)
    if nx != ny:
        raise ValueError(
            f"{names[0]} and {names[1]} must have the same number of rows (row i of both is the "
            f"same structure); got {names[0]} with N={nx} and {names[1]} with N={ny}"
        )
    return nx


def check_same_dtype(X: np.ndarray, Q: np.ndarray, names=("X", "queries")) -> None:
    """Raise TypeError if two arrays that are computed together have different dtypes."""
    if X.dtype != Q.dtype:
        raise TypeError(
            f"{names[1]} has dtype {Q.dtype.name} but {names[0]} has dtype {X.dtype.name}; both "
            f"must have the same dtype and matalign never casts silently: pass "
            f"{names[1]}.astype(np.{X.dtype.name})"
        )


MAX_THREADS = 1024  # the engine's bound (kMaxThreads): a typo must not abort the process


def check_threads(n_threads) -> int:
    """Validate ``n_threads`` (0 = all cores) and return it as an int."""
    return check_int(n_threads, "n_threads", 0, MAX_THREADS)


def check_int(value, name: str, minimum: int | None = None, maximum: int | None = None) -> int:
    """Return ``value`` as an int, rejecting bools, floats and out-of-range values.

    Raises
    ------
    TypeError
        If ``value`` is not an integer (a bool is not accepted).
    ValueError
        If ``value`` is outside ``[minimum, maximum]``.
    """
    if isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be an integer; got the bool {value!r}")
    try:
        ivalue = operator.index(value)
    except TypeError:
        raise TypeError(f"{name} must be an integer; got {describe(value)} {value!r}") from None
    if minimum is not None and ivalue < minimum:
        if maximum is not None:
            raise ValueError(f"{name} must be between {minimum} and {maximum}; got {ivalue}")
        raise ValueError(f"{name} must be >= {minimum}; got {ivalue}")
    if maximum is not None and ivalue > maximum:
        if minimum is not None:
            raise ValueError(f"{name} must be between {minimum} and {maximum}; got {ivalue}")
        raise ValueError(f"{name} must be <= {maximum}; got {ivalue}")
    return int(ivalue)


def check_k(k, n: int, name: str = "k", exclude_self: bool = True) -> int:
    """Validate a neighbour count against N rows; return it as an int.

    With ``exclude_self`` (self-kNN) k must be in 1..N−1, otherwise in 1..N.

    Raises
    ------
    TypeError
        If ``k`` is not an integer (bool and float are rejected).
    ValueError
        If ``k`` is out of range; the message gives the valid range.

    Examples
    --------
    >>> from matalign._validate import check_k
    >>> check_k(3, 10)
    3
    >>> check_k(10, 10)
    Traceback (most recent call last):
    ...
    ValueError: k must be between 1 and N - 1 = 9 (each row's own index is excluded); got k=10
    """
    if isinstance(k, (bool, np.bool_)):
        raise TypeError(f"{name} must be an integer; got the bool {k!r}")
    try:
        ik = operator.index(k)
    except TypeError:
        raise TypeError(f"{name} must be an integer; got {describe(k)} {k!r}") from None
    hi = n - 1 if exclude_self else n
    if hi < 1:
        raise ValueError(
            f"{name}: need at least {2 if exclude_self else 1} rows for a kNN graph"
            f"{' (each row excludes itself)' if exclude_self else ''}; got N={n}"
        )
    if not 1 <= ik <= hi:
        if exclude_self:
            raise ValueError(
                f"{name} must be between 1 and N - 1 = {hi} (each row's own index is excluded); "
                f"got {name}={ik}"
            )
        raise ValueError(f"{name} must be between 1 and N = {hi}; got {name}={ik}")
    return int(ik)


def check_choice(value, name: str, choices) -> str:
    """Return ``value`` if it is one of ``choices`` (strings), else raise ValueError listing them.

    Examples
    --------
    >>> from matalign._validate import check_choice
    >>> check_choice("l2", "metric", ("ip", "l2", "cosine"))
    'l2'
    >>> check_choice("L1", "metric", ("ip", "l2", "cosine"))
    Traceback (most recent call last):
    ...
    ValueError: metric must be one of 'ip', 'l2', 'cosine'; got 'L1'
    """
    valid = ", ".join(repr(c) for c in choices)
    if not isinstance(value, str) or value not in choices:
        hint = ""
        if isinstance(value, str) and value.lower() in choices:
            hint = f" (did you mean {value.lower()!r}?)"
        raise ValueError(f"{name} must be one of {valid}; got {value!r}{hint}")
    return value


def check_bool(value, name: str) -> bool:
    """Return ``value`` as a bool; raise TypeError for anything but True/False."""
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    raise TypeError(f"{name} must be True or False; got {describe(value)} {value!r}")


def check_fraction(value, name: str, *, low_open: bool = True, high_closed: bool = True) -> float:
    """Return ``value`` as a float in (0, 1] (by default); raise TypeError/ValueError otherwise."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number; got {describe(value)} {value!r}")
    f = float(value)
    lo_ok = f > 0.0 if low_open else f >= 0.0
    hi_ok = f <= 1.0 if high_closed else f < 1.0
    if not (lo_ok and hi_ok and np.isfinite(f)):
        interval = f"{'(' if low_open else '['}0, 1{']' if high_closed else ')'}"
        raise ValueError(f"{name} must be in {interval}; got {value!r}")
    return f


def check_progress(progress, name: str = "progress"):
    """Validate a ``progress`` option: False/None, True, or a callable(done, total)."""
    if progress is None or isinstance(progress, (bool, np.bool_)) or callable(progress):
        return progress
    raise TypeError(
        f"{name} must be False, True or a callable(done, total); got {describe(progress)}"
    )


def check_eps(eps) -> float:
    """A CKNNA denominator epsilon: a finite real number >= 0, as a float."""
    if isinstance(eps, (bool, np.bool_)) or not isinstance(eps, numbers.Real):
        raise TypeError(f"eps must be a real number; got {describe(eps)} {eps!r}")
    eps = float(eps)
    if not (math.isfinite(eps) and eps >= 0.0):
        raise ValueError(f"eps must be a finite number >= 0; got {eps!r}")
    return eps
