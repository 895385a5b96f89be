"""The one door to the compiled engine: the only module that imports ``matalign._core``.

Every engine operation is one typed Python function here. Each call

- picks the device once: CPU (the C++/OpenMP engine) when ``device`` is None or a CPU
  :class:`~matalign._device.Device`, the CUDA engine for a CUDA one;
- picks the precision once, from the inputs' dtype (float32 or float64; the inputs of one call
  share a dtype: callers widen visibly before they get here);
- takes and returns the same shapes on both devices (NumPy arrays out; inputs are NumPy arrays
  or, on CUDA, validated device matrices from :func:`matalign._device.matrix`).

Validation (dtypes, NaN/Inf, shapes, k ranges, memory budget) happens above this module, in
the public functions; the engine re-checks what is cheap and raises ``ValueError`` for the
rest. Nothing here prints, allocates N × N, or holds state.

Rows [r0, r1)
-------------
An operation "over rows [r0, r1)" is the unit a distributed executor hands to a worker. The
kNN search and the graph metrics take ``rows=(r0, r1)`` here and return exactly the rows
the full call returns there (the same values, bit for bit: see :func:`knn_exact`). PairSums
and RankCount take ``rows`` too (CPU engine): RankCount's counts are those rows' counts
exactly; PairSums visits every pair of those rows and returns their float64 sums, which equal
the full call's up to the order of the additions (see :func:`pair_sums`).

Examples
--------
>>> import numpy as np
>>> from matalign import _engine
>>> X = np.random.default_rng(0).normal(size=(50, 8))
>>> values, indices = _engine.knn_exact(X, None, 3, metric="l2")
>>> v, i = _engine.knn_exact(X, None, 3, metric="l2", rows=(10, 20))
>>> bool(np.array_equal(i, indices[10:20]) and np.array_equal(v, values[10:20]))
True
"""

from __future__ import annotations

import numpy as np

from . import _core

__all__ = ["build_info", "cuda_device_count", "version", "first_nonfinite_row", "scan_rows",
           "call_streams",
           "knn_exact", "knn_screen_cuda", "knn_block_pair", "knn_block_pair_screened",
           "knn_centre", "knn_screen_auto", "pair_sums", "pair_sums_block", "shifted_gram",
           "rank_count",
           "mutual_knn", "local_agreement", "cknna", "knn_workspace_bytes",
           "pair_sums_workspace_bytes", "rank_count_workspace_bytes", "gram_workspace_bytes",
           "cknna_workspace_bytes"]


# ----------------------------------------------------------------------------- dispatch


def _suffix(dtype) -> str:
    dtype = np.dtype(dtype)
    if dtype == np.float32:
        return "f32"
    if dtype == np.float64:
        return "f64"
    raise TypeError(f"the engine computes in float32 or float64, not {dtype.name}")


def _is_cuda(device) -> bool:
    return device is not None and getattr(device, "is_cuda", False)


def _op(name: str, dtype=None, device=None):
    """The binding of one operation: ``{name}[_cuda][_{f32|f64}]``."""
    full = name + ("_cuda" if _is_cuda(device) else "")
    if dtype is not None:
        full += "_" + _suffix(dtype)
    return getattr(_core, full)


def _arg(m):
    """What a binding takes for a validated matrix: the NumPy array itself, or (CUDA) the
    device descriptor tuple of a DeviceMatrix."""
    descriptor = getattr(m, "descriptor", None)
    return descriptor() if callable(descriptor) else m


def call_streams(*mats) -> tuple[int, list[int]]:
    """(the stream a CUDA call runs on, the producer streams it first waits on).

    The producer streams are those of the device matrices among ``mats`` (objects with a
    ``descriptor()`` and a ``stream``; host arrays and None are ignored), each once, in order.
    The call runs on the first of them (0, the legacy default stream, when there is none)
    and the engine makes it wait on an event recorded on each of the others, so an input
    written on another stream is complete before it is read.

    Examples
    --------
    >>> import numpy as np
    >>> from matalign._engine import call_streams
    >>> class Dev:  # stands for a matalign._device.DeviceMatrix
    ...     def __init__(self, stream):
    ...         self.stream = stream
    ...     def descriptor(self):
    ...         return ()
    >>> call_streams(np.zeros((2, 2)), Dev(7), None, Dev(9), Dev(7))
    (7, [7, 9])
    >>> call_streams(np.zeros((2, 2)))
    (0, [])
    """
    streams: list[int] = []
    for m in mats:
        stream = getattr(m, "stream", None)
        if stream is not None and callable(getattr(m, "descriptor", None)):
            stream = int(stream)
            if stream not in streams:
                streams.append(stream)
    return (streams[0] if streams else 0), streams


def _cuda_kw(device, *mats) -> dict:
    stream, waits = call_streams(*mats)
    return {"device": device.index, "stream": stream, "wait_streams": waits}


# ----------------------------------------------------------------------------- build facts


def build_info() -> dict:
    """The engine's build facts (version, compiler, OpenMP, SIMD, CUDA); a new dict."""
    return dict(_core.build_info())


def version() -> str:
    """matalign's version, as compiled into the engine."""
    return str(_core.build_info()["version"])


def cuda_device_count() -> int:
    """CUDA devices visible to the engine (0 without CUDA or without a device)."""
    return int(_core.cuda_device_count())


# ----------------------------------------------------------------------------- scans


def first_nonfinite_row(X: np.ndarray, n_threads: int = 0) -> int:
    """Index of the first host row holding a NaN/Inf, or -1 (any strides, no copy)."""
    return int(_op("first_nonfinite_row", X.dtype)(X, n_threads=n_threads))


def scan_rows(m, device) -> tuple[int, float]:
    """(first row with NaN/Inf or -1, max |x|) of a device matrix, on the device."""
    return _op("scan_rows", m.dtype, device)(m.descriptor(), device=device.index,
                                             stream=m.stream)


# ----------------------------------------------------------------------------- kNN


def knn_exact(X, queries, k: int, *, metric: str = "ip", exclude_self: bool = True,
              tile_rows: int = 0, tile_cols: int = 0, n_threads: int = 0,
              rescore: bool = False, simd: str = "auto", screen: str = "auto",
              normalize: bool = False, progress=None, device=None, rows=None):
    """Exact kNN: (values (m, k), indices (m, k) int64), best first, ties by lower index.

    ``metric`` is the engine's: "ip" or "l2" (cosine is ip on normalised rows; on CUDA
    ``normalize=True`` normalises device rows on the device). ``queries=None`` is the self
    graph (own index excluded when ``exclude_self``). ``rows=(r0, r1)`` returns rows
    [r0, r1) of the self graph only: those rows are searched as queries for k + 1 neighbours
    and each row's own index is dropped (or, where it is not among them, the last one), which
    is exactly the self graph's row: the same inner products (every SIMD level computes one
    FMA chain in dimension order, symmetric in i and j) and the same tie rule.
    """
    if rows is not None:
        if queries is not None:
            raise ValueError("rows=(r0, r1) selects rows of the self graph; pass queries=None")
        r0, r1 = _check_rows(rows, X.shape[0])
        values, indices = knn_exact(X, X[r0:r1], min(k + 1, X.shape[0]), metric=metric,
                                    exclude_self=False, tile_rows=tile_rows,
                                    tile_cols=tile_cols, n_threads=n_threads, rescore=rescore,
                                    simd=simd, screen=screen, normalize=normalize,
                                    progress=progress, device=device)
        return _drop_self(values, indices, r0, k)
    if _is_cuda(device):
        return _op("knn_exact", X.dtype, device)(
            _arg(X), None if queries is None else _arg(queries), k, metric, exclude_self,
            normalize, tile_rows=tile_rows, tile_cols=tile_cols, progress=progress,
            **_cuda_kw(device, X, queries))
    return _op("knn_exact", X.dtype)(X, queries, k, metric, exclude_self, tile_rows, tile_cols,
                                     n_threads, rescore, simd, progress, screen)


def knn_screen_cuda(X, queries, X_host, queries_host, k: int, *, metric: str = "ip",
                    exclude_self: bool = True, tile_rows: int = 0, tile_cols: int = 0,
                    progress=None, device=None):
    """Exact kNN on a CUDA device through the int8 tensor-core screen: (values, indices,
    info), the graph of :func:`knn_exact` on the same device bit for bit (no cosine
    normalisation: pass normalised rows). ``X_host`` / ``queries_host`` are host (NumPy)
    copies of ``X`` / ``queries``, quantised by the CPU screen's own function. ``info``:
    ``screened`` (False where the screen did not apply and the exact path ran),
    ``seed_columns``, ``tiles``, ``survivors``, ``overflow_lines``, ``merged``.
    """
    return _op("knn_screen", X.dtype, device)(
        _arg(X), None if queries is None else _arg(queries), X_host, queries_host, k, metric,
        exclude_self, tile_rows=tile_rows, tile_cols=tile_cols, progress=progress,
        **_cuda_kw(device, X, queries))


def _check_rows(rows, n: int) -> tuple[int, int]:
    try:
        r0, r1 = (int(r) for r in rows)
    except (TypeError, ValueError):
        raise TypeError(f"rows must be a pair (r0, r1) of ints; got {rows!r}") from None
    if not 0 <= r0 < r1 <= n:
        raise ValueError(f"rows=({r0}, {r1}) must satisfy 0 <= r0 < r1 <= N={n}")
    return r0, r1


def _drop_self(values, indices, r0: int, k: int):
    """Rows of a (k + 1)-neighbour query search without each row's own index."""
    m = indices.shape[0]
    own = np.arange(r0, r0 + m, dtype=np.int64)[:, None]
    keep = indices != own
    # rows where the own index is absent keep their first k entries
    absent = keep.all(axis=1)
    keep[absent, -1] = False
    out_i = indices[keep].reshape(m, -1)[:, :k]
    out_v = values[keep].reshape(m, -1)[:, :k]
    return np.ascontiguousarray(out_v), np.ascontiguousarray(out_i)


def knn_centre(X, *, n_threads: int = 0) -> np.ndarray:
    """The l2 centre (D float64) :func:`knn_exact` centres both sides on, for database X."""
    return _op("knn_centre", X.dtype)(X, n_threads)


def knn_block_pair(X, block_i, block_j, k: int, *, metric: str = "ip", centre=None,
                   n_threads: int = 0):
    """One block pair (I, J >= I) of the symmetric self graph, each pair computed once.

    Returns (scores_I, indices_I, scores_J, indices_J): the partial top lists of the rows of
    block I over the columns of block J (k_I = min(k, |J|), or min(k, |I| - 1) for I == J with
    the own index excluded) and of the rows of J over the columns of I (k_J = min(k, |I|);
    empty for I == J). Scores are raw (inner products, or squared L2 negated and not clipped),
    best first, ties by the lower index; the per-pair arithmetic is that of
    :func:`knn_exact` with ``screen="off"`` (l2: pass ``centre=knn_centre(X)``), so merging a
    row's lists by (score desc, index asc) gives its row of the self graph bit for bit.
    """
    i0, i1 = _check_rows(block_i, X.shape[0])
    j0, j1 = _check_rows(block_j, X.shape[0])
    if (i0, i1) != (j0, j1) and j0 < i1:
        raise ValueError(f"block_j=({j0}, {j1}) must be block_i=({i0}, {i1}) or lie after it")
    return _op("knn_block_pair", X.dtype)(X, i0, i1, j0, j1, k, metric, centre, n_threads)


def knn_block_pair_screened(X, ni: int, k: int, *, metric: str = "ip", centre=None,
                            screen: str = "int8", n_threads: int = 0):
    """The screened (int8 | int16) form of :func:`knn_block_pair` on a pair's local matrix:
    X's rows [0, ni) are block I and [ni, N) block J (``ni == N``: one block, self excluded);
    ``k`` at most both blocks' sizes (N - 1 for one block). Returns (scores_I, indices_I,
    scores_J, indices_J, screened): float64 raw scores of the float64 graph (the graph the
    screen computes, knn.h), local indices; ``screened`` is False where the screen did not
    apply and the float64 GEMM pair gave the same scores. ``centre``: :func:`knn_centre` of
    the whole database (both metrics: the screen centres its quantisation on it).
    """
    return _op("knn_block_pair_screened", X.dtype)(X, int(ni), int(k), metric, centre, screen,
                                                   n_threads)


def knn_screen_auto(k: int, self_mode: bool, n: int, d: int) -> str:
    """The precision ``screen="auto"`` picks on a VNNI CPU: "int8", "int16" or "off"."""
    return str(_core.knn_screen_auto(k, self_mode, n, d))


# ----------------------------------------------------------------------------- tile reducers


def pair_sums(spaces, fn: str, gamma=(), *, tile_rows: int = 0, n_threads: int = 0,
              progress=None, device=None, rows=None):
    """One fused pass over all pairs i != j of M spaces of one dtype.

    Returns (rowsums (M, N) float64, cross (M, M) float64): rowsums[m, i] = Σ_{j≠i} f_m(i, j),
    cross[a, b] = Σ_{i≠j} f_a(i, j)·f_b(i, j); f = "distance" (Euclidean) or "rbf"
    (exp(−gamma_m·squared distance)).

    ``rows=(r0, r1)`` (CPU): rowsums (M, r1 − r0) of rows [r0, r1) and cross summed over
    i in [r0, r1), j ≠ i: every pair of those rows is visited (no symmetric half) with the
    same centre, norms and per-pair values; the sums are added in another, fixed order, so
    they equal the full call's to rounding, not bit for bit.
    """
    gamma = [float(g) for g in gamma]
    if rows is not None:
        if _is_cuda(device):
            raise NotImplementedError("pair_sums over a row range runs on the CPU engine only")
        r0, r1 = _check_rows(rows, spaces[0].shape[0])
        rowsums, cross = _op("pair_sums_rows", spaces[0].dtype)(
            list(spaces), fn, gamma, r0, r1, tile_rows=tile_rows, n_threads=n_threads,
            progress=progress)
        return np.asarray(rowsums, dtype=np.float64), np.asarray(cross, dtype=np.float64)
    if _is_cuda(device):
        rowsums, cross = _op("pair_sums", spaces[0].dtype, device)(
            [_arg(s) for s in spaces], fn, gamma, tile_rows=tile_rows, progress=progress,
            **_cuda_kw(device, *spaces))
    else:
        rowsums, cross = _op("pair_sums", spaces[0].dtype)(
            list(spaces), fn, gamma, tile_rows=tile_rows, n_threads=n_threads,
            progress=progress)
    return np.asarray(rowsums, dtype=np.float64), np.asarray(cross, dtype=np.float64)


def pair_sums_block(spaces, fn: str, gamma, rows, cols, *, tile_rows: int = 0,
                    n_threads: int = 0):
    """PairSums over the pairs i in ``rows`` = (r0, r1), j in ``cols`` = (c0, c1), j != i (CPU).

    Returns (rowsums (M, r1 − r0), colsums (M, c1 − c0), cross (M, M)), float64:
    rowsums[m, i − r0] = Σ_j f_m(i, j), colsums[m, j − c0] = Σ_i f_m(i, j),
    cross[a, b] = Σ_{i, j} f_a(i, j)·f_b(i, j); every f_m(i, j) is the value of
    ``pair_sums(..., rows=...)`` bit for bit (the whole input's centre and norms), and the sums
    are added in a fixed order that does not depend on ``n_threads``. The unit of work of the
    block-pair PairSums of a distributed executor (each pair of blocks I < J computed once).

    Examples
    --------
    >>> import numpy as np
    >>> from matalign import _engine
    >>> X = np.random.default_rng(0).normal(size=(30, 3))
    >>> r, c, x = _engine.pair_sums_block([X], "distance", (), (0, 10), (10, 30))
    >>> r.shape, c.shape, bool(np.isclose(r.sum(), c.sum()))
    ((1, 10), (1, 20), True)
    """
    n = spaces[0].shape[0]
    r0, r1 = _check_rows(rows, n)
    try:
        c0, c1 = (int(c) for c in cols)
    except (TypeError, ValueError):
        raise TypeError(f"cols must be a pair (c0, c1) of ints; got {cols!r}") from None
    if not 0 <= c0 < c1 <= n:
        raise ValueError(f"cols=({c0}, {c1}) must satisfy 0 <= c0 < c1 <= N={n}")
    rowsums, colsums, cross = _op("pair_sums_block", spaces[0].dtype)(
        list(spaces), fn, [float(g) for g in gamma], r0, r1, c0, c1, tile_rows=tile_rows,
        n_threads=n_threads)
    return (np.asarray(rowsums, dtype=np.float64), np.asarray(colsums, dtype=np.float64),
            np.asarray(cross, dtype=np.float64))


def shifted_gram(spaces, shift: np.ndarray, *, block_rows: int = 0, n_threads: int = 0,
                 progress=None):
    """Feature-space Gram of [X_1 | … | X_M] − shift, in float64, in one pass over the rows.

    Returns (gram (ΣD, ΣD) float64, colsum (ΣD,) float64, constant (ΣD,) bool): the Gram of
    the shifted rows, their column sums, and per column whether all rows are equal (exact).
    """
    gram, colsum, constant = _op("shifted_gram", spaces[0].dtype)(
        list(spaces), np.ascontiguousarray(shift, dtype=np.float64), block_rows=block_rows,
        n_threads=n_threads, progress=progress)
    return np.asarray(gram), np.asarray(colsum), np.asarray(constant, dtype=bool)


def rank_count(Y, targets: np.ndarray, *, tile_rows: int = 0, n_threads: int = 0,
               progress=None, device=None, rows=None) -> np.ndarray:
    """counts (N, T) int64: counts[i, t] = #{l ≠ i : d(i, l) < d(i, j)} + #{l ≠ i : d(i, l) =
    d(i, j), l < j} with j = targets[i, t], d the squared Euclidean distance in Y.

    ``rows=(r0, r1)`` (CPU): ``targets`` holds the (r1 − r0, T) targets of those rows and the
    result is rows [r0, r1) of the full counts, the same integers."""
    targets = np.ascontiguousarray(targets, dtype=np.int64)
    if rows is not None:
        if _is_cuda(device):
            raise NotImplementedError("rank_count over a row range runs on the CPU engine only")
        r0, r1 = _check_rows(rows, Y.shape[0])
        counts = _op("rank_count_rows", Y.dtype)(Y, targets, r0, r1, tile_rows=tile_rows,
                                                 n_threads=n_threads, progress=progress)
        return np.asarray(counts, dtype=np.int64)
    if _is_cuda(device):
        counts = _op("rank_count", Y.dtype, device)(_arg(Y), targets, progress=progress,
                                                    **_cuda_kw(device, Y))
    else:
        counts = _op("rank_count", Y.dtype)(Y, targets, n_threads=n_threads, progress=progress)
    return np.asarray(counts, dtype=np.int64)


# ----------------------------------------------------------------------------- graph metrics


def _graph_rows(idx, rows):
    if rows is None:
        return idx
    r0, r1 = _check_rows(rows, idx.shape[0])
    return idx[r0:r1]


def mutual_knn(idx_x: np.ndarray, idx_y: np.ndarray, *, n_threads: int = 0,
               device=None) -> float:
    """(1/N) Σ_i |knn_X(i) ∩ knn_Y(i)| / k from two (N, k) int64 index arrays."""
    idx_x, idx_y = np.ascontiguousarray(idx_x), np.ascontiguousarray(idx_y)
    if _is_cuda(device):
        return float(_core.mutual_knn_cuda(idx_x, idx_y, per_row=False, **_cuda_kw(device)))
    return float(_core.mutual_knn(idx_x, idx_y, n_threads=n_threads))


def local_agreement(idx_x: np.ndarray, idx_y: np.ndarray, *, n_threads: int = 0,
                    device=None, rows=None) -> np.ndarray:
    """|knn_X(i) ∩ knn_Y(i)| / k per row, float64 (rows [r0, r1) with ``rows``)."""
    idx_x = np.ascontiguousarray(_graph_rows(idx_x, rows))
    idx_y = np.ascontiguousarray(_graph_rows(idx_y, rows))
    if _is_cuda(device):
        out = _core.mutual_knn_cuda(idx_x, idx_y, per_row=True, **_cuda_kw(device))
    else:
        out = _core.local_agreement(idx_x, idx_y, n_threads=n_threads)
    return np.asarray(out, dtype=np.float64)


def cknna(idx_x, val_x, idx_y, val_y, *, eps: float = 0.0, n_threads: int = 0, device=None):
    """CKNNA from two self graphs: (value, per_row (N,) float64 or None on CUDA, hsic_xy,
    hsic_xx, hsic_yy). float32 when both value arrays are float32, else float64 (graph values
    are matalign's outputs: widening them loses nothing)."""
    if val_x.dtype == np.float32 and val_y.dtype == np.float32:
        dtype = np.float32
    else:
        dtype = np.float64
        val_x = val_x.astype(np.float64, copy=False)
        val_y = val_y.astype(np.float64, copy=False)
    args = (np.ascontiguousarray(idx_x), np.ascontiguousarray(val_x),
            np.ascontiguousarray(idx_y), np.ascontiguousarray(val_y), float(eps))
    if _is_cuda(device):
        return _op("cknna", dtype, device)(*args, **_cuda_kw(device))
    return _op("cknna", dtype)(*args, n_threads=n_threads)


# ----------------------------------------------------------------------------- workspace


def _workspace(name: str, *args, **kwargs) -> int:
    return int(getattr(_core, name)(*args, **kwargs))


def knn_workspace_bytes(n: int, m: int, d: int, k: int, itemsize: int, *, l2: bool,
                        rescore: bool, n_threads: int, tile_rows: int, tile_cols: int,
                        screen: str, self_mode: bool) -> int:
    """Peak bytes the engine's exact kNN allocates (outputs, per-row state, scratch)."""
    return _workspace("knn_workspace_bytes", n, m, d, k, itemsize, l2=l2, rescore=rescore,
                      n_threads=n_threads, tile_rows=tile_rows, tile_cols=tile_cols,
                      screen=screen, self_mode=self_mode)


def pair_sums_workspace_bytes(n: int, dims, itemsize: int, *, n_threads: int,
                              tile_rows: int) -> int:
    """Peak bytes of the engine's PairSums pass over spaces of the given dims."""
    return _workspace("pair_sums_workspace_bytes", n, list(dims), itemsize,
                      n_threads=n_threads, tile_rows=tile_rows)


def rank_count_workspace_bytes(n: int, d: int, k: int, itemsize: int, *,
                               n_threads: int) -> int:
    """Peak bytes of the engine's RankCount pass."""
    return _workspace("rank_count_workspace_bytes", n, d, k, itemsize, n_threads=n_threads)


def gram_workspace_bytes(n: int, dims, *, n_threads: int) -> int:
    """Peak bytes of the engine's feature-space Gram pass."""
    return _workspace("gram_workspace_bytes", n, list(dims), n_threads=n_threads)


def cknna_workspace_bytes(n: int, k: int) -> int:
    """Peak bytes of the engine's CKNNA from two graphs."""
    return _workspace("cknna_workspace_bytes", n, k)
