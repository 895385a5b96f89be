"""Shared plumbing of the global metrics (CKA, distance correlation): block streaming and the
PairSums reducer call. Private to matalign.metrics."""

from __future__ import annotations

import numpy as np

from .. import _core
from .. import _memory
from .._progress import progress_callback

__all__ = ["block_rows", "column_stats", "is_constant", "pair_sums", "pair_sums_memory",
           "constant_error", "too_few_rows"]

BLOCK_ROWS = 65536          # rows per streamed block at most
_BLOCK_ELEMENTS = 1 << 23   # float64 elements per streamed block (64 MB) at most


def block_rows(*widths: int) -> int:
    """Rows per streamed block for matrices of the given column counts, read side by side."""
    return int(max(1, min(BLOCK_ROWS, _BLOCK_ELEMENTS // max(1, sum(widths)))))


def column_stats(X: np.ndarray, step: int):
    """(column sums in float64, whether all rows are identical) in one streaming pass.

    Constancy is tested exactly (per-column min == max in X's own dtype), never from a
    rounded variance.
    """
    n, d = X.shape
    total = np.zeros(d, dtype=np.float64)
    lo = hi = None
    for start in range(0, n, step):
        xb = np.asarray(X[start:start + step])
        total += xb.sum(axis=0, dtype=np.float64)
        bmin, bmax = xb.min(axis=0), xb.max(axis=0)
        lo = bmin if lo is None else np.minimum(lo, bmin)
        hi = bmax if hi is None else np.maximum(hi, bmax)
    return total, bool(np.array_equal(lo, hi))


def is_constant(X: np.ndarray) -> bool:
    """Whether all rows of X are identical (exact, one streaming pass)."""
    return column_stats(X, block_rows(X.shape[1]))[1]


def constant_error(name: str, n: int, what: str) -> ValueError:
    return ValueError(
        f"{name} has zero variance: all its N={n} rows are identical, so {what} is undefined "
        f"(0/0); drop constant embeddings before comparing them")


def too_few_rows(func: str, n: int, minimum: int, why: str) -> ValueError:
    return ValueError(f"{func} needs at least {minimum} rows ({why}); got N={n}")


def pair_sums_memory(X, Y, n_threads: int, device=None) -> int:
    """Host bytes :func:`pair_sums` allocates: the float64 copy of a float32 input when the
    dtypes differ, the row sums, and (CPU) the engine's norms and tile scratch."""
    n = X.shape[0]
    widened = sum(A.shape[0] * A.shape[1] * 8 for A in (X, Y)
                  if X.dtype != Y.dtype and A.dtype == np.float32)
    if device is not None and device.is_cuda:
        return widened + 2 * n * 8
    itemsize = max(X.dtype.itemsize, Y.dtype.itemsize)
    return _memory.pair_sums_bytes(n, [X.shape[1], Y.shape[1]], itemsize,
                                   n_threads=_memory.threads(n_threads), widened=widened)


def pair_sums(X: np.ndarray, Y: np.ndarray, fn: str, gamma, n_threads: int, progress, label: str,
              device=None):
    """One PairSums pass over the two spaces: (rowsums (2, N), cross (2, 2)), float64, diagonal
    excluded.

    Both spaces run in one engine call, so they must share a dtype; when one is float32 and the
    other float64, the float32 one is widened to float64 (exact: every float32 is a float64).
    ``device``: a resolved ``matalign._device.Device``; CUDA runs the pass on the GPU.
    """
    if device is not None and device.is_cuda:
        return _pair_sums_cuda(X, Y, fn, gamma, progress, label, device)
    if X.dtype != Y.dtype:
        X = X.astype(np.float64) if X.dtype == np.float32 else X
        Y = Y.astype(np.float64) if Y.dtype == np.float32 else Y
    core = _core.pair_sums_f32 if X.dtype == np.float32 else _core.pair_sums_f64
    gamma = [] if gamma is None else [float(g) for g in gamma]
    with progress_callback(progress, label) as callback:
        rowsums, cross = core([X, Y], fn, gamma, n_threads=n_threads, progress=callback)
    return np.asarray(rowsums, dtype=np.float64), np.asarray(cross, dtype=np.float64)


def _pair_sums_cuda(X, Y, fn: str, gamma, progress, label: str, device):
    from .. import _device

    if X.dtype != Y.dtype:
        if _device.is_device_array(X) or _device.is_device_array(Y):
            raise TypeError(
                f"X has dtype {X.dtype.name} and Y has dtype {Y.dtype.name}; GPU arrays are not "
                "widened silently: pass both in one dtype (e.g. Y.astype(X.dtype))")
        X = X.astype(np.float64) if X.dtype == np.float32 else X
        Y = Y.astype(np.float64) if Y.dtype == np.float32 else Y
    core = _core.pair_sums_cuda_f32 if X.dtype == np.float32 else _core.pair_sums_cuda_f64
    gamma = [] if gamma is None else [float(g) for g in gamma]
    with progress_callback(progress, f"{label} {device}") as callback:
        rowsums, cross = core([_device.core_arg(X), _device.core_arg(Y)], fn, gamma,
                              device=device.index, stream=_device.stream_of(X, Y),
                              progress=callback)
    return np.asarray(rowsums, dtype=np.float64), np.asarray(cross, dtype=np.float64)
