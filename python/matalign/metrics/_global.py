"""Shared plumbing of the metric modules: block streaming, the fused PairSums pass, and the
two types every metric's all-models form speaks (:class:`MatrixRequest`, :class:`MatrixStage`).

Not a metric module: every ``metrics/<metric>.py`` may import from here, none imports another
metric module's private helpers.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import contextlib

import numpy as np

from .. import _engine
from .. import executor as _executor
from .. import _memory

__all__ = ["block_rows", "column_stats", "is_constant", "pair_sums", "pair_sums_memory",
           "constant_error", "too_few_rows", "one_dtype", "MatrixRequest", "MatrixStage",
           "PAIR_TILE_ROWS", "no_progress"]

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


def too_few_rows(func: str, n: int, minimum: int, why: str,
                 names: str = "X and Y") -> ValueError:
    """The error for too few rows, naming the arguments that have them."""
    return ValueError(f"{func} needs at least {minimum} rows ({why}); got N={n} rows in "
                      f"{names}")


# The tile of every PairSums pass (dCor, RBF CKA), pairwise or fused: the float64 sums a pair
# gets depend on the tile, so one tile per dtype, independent of M and of D, makes every entry
# of alignment_matrix equal the pairwise call bit for bit.
PAIR_TILE_ROWS = {4: 480, 8: 336}


def one_dtype(arrays):
    """The spaces in one dtype for one engine pass: as they are when they share one, otherwise
    float32 ones widened to float64 (exact; a copy each). GPU arrays are never widened."""
    if len({A.dtype for A in arrays}) <= 1:
        return list(arrays)
    if any(not isinstance(A, np.ndarray) for A in arrays):
        names = ", ".join(A.dtype.name for A in arrays)
        raise TypeError(f"the inputs have dtypes {names}; GPU arrays are not widened silently: "
                        "pass them in one dtype (e.g. Y.astype(X.dtype))")
    return [A.astype(np.float64) if A.dtype == np.float32 else A for A in arrays]


def pair_sums_memory(spaces, n_threads: int, device=None) -> int:
    """Host bytes :func:`pair_sums` allocates over ``spaces``: float64 copies of float32 inputs
    when the dtypes differ, the row sums, and (CPU) the engine's workspace."""
    n = spaces[0].shape[0]
    mixed = len({A.dtype for A in spaces}) > 1
    widened = sum(A.shape[0] * A.shape[1] * 8 for A in spaces if mixed and A.dtype == np.float32)
    if device is not None and device.is_cuda:
        return widened + len(spaces) * n * 8
    itemsize = 8 if mixed else spaces[0].dtype.itemsize
    return _memory.pair_sums_bytes(n, [A.shape[1] for A in spaces], itemsize,
                                   n_threads=_memory.threads(n_threads), widened=widened,
                                   tile_rows=PAIR_TILE_ROWS[itemsize])


def pair_sums(spaces, fn: str, gamma, n_threads: int, callback, device=None):
    """ONE engine pass over all pairs of rows of the M spaces: (rowsums (M, N), cross (M, M)),
    float64, pairs i != j (see :func:`matalign._engine.pair_sums`). Mixed dtypes are widened
    (:func:`one_dtype`); the tile is :data:`PAIR_TILE_ROWS` of the dtype."""
    spaces = one_dtype(spaces)
    itemsize = spaces[0].dtype.itemsize
    ex = _executor.current()
    if ex is not None and not getattr(device, "is_cuda", False):
        # row blocks on the active executor (float64 block sums added in block order)
        return _executor.pair_sums(ex, spaces, fn, gamma, tile_rows=PAIR_TILE_ROWS[itemsize],
                                   progress=callback)
    return _engine.pair_sums(spaces, fn, [] if gamma is None else gamma,
                             tile_rows=PAIR_TILE_ROWS[itemsize], n_threads=n_threads,
                             progress=callback, device=device)


@dataclass
class MatrixRequest:
    """One :func:`matalign.alignment_matrix` call, validated: what every metric's all-models
    form reads. ``inputs[i]`` is an embedding array or a KnnGraph; ``arrays[i]`` the array
    (None for a graph)."""

    names: list
    labels: list
    inputs: list
    n: int
    wanted: list
    k: int = 10
    knn_metric: str = "ip"
    eps: float = 0.0
    cka_kernel: str = "linear"
    sigmas: list | None = None
    unbiased: bool = False
    imbalance_k: int = 1
    id_method: str = "twonn"
    id_fraction: float = 0.9
    n_threads: int = 0
    seed: int = 0
    params: dict = field(default_factory=dict)  # what the stages resolved (sigmas, dtypes)

    @property
    def arrays(self) -> list:
        return [None if self.is_graph(i) else obj for i, obj in enumerate(self.inputs)]

    @property
    def dims(self) -> list:
        return [obj.k if self.is_graph(i) else obj.shape[1] for i, obj in enumerate(self.inputs)]

    def is_graph(self, i: int) -> bool:
        return not hasattr(self.inputs[i], "dtype") or hasattr(self.inputs[i], "self_excluded")

    @property
    def threads(self) -> int:
        return _memory.threads(self.n_threads)


@dataclass(frozen=True)
class MatrixStage:
    """A metric module's all-models form, as :func:`matalign.alignment_matrix` runs it.

    metrics: the metric names it computes; per_model: one value per model (else M × M);
    graph_input: it accepts KnnGraph inputs; min_rows(req) -> (N, name, why) the fewest rows it
    needs; plan(req) -> (peak bytes, work units for the progress bar); run(req, job) -> dict of
    metric -> values, with job.stage(work) yielding each sub-stage's progress callback.
    """

    metrics: tuple
    per_model: bool
    graph_input: bool
    min_rows: Callable
    plan: Callable
    run: Callable


def no_progress(_work):
    """The ``stage(work)`` of an all-models form called without a progress bar."""
    return contextlib.nullcontext(None)
