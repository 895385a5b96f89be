"""Approximate k-nearest-neighbour search through FAISS (docs/ARCHITECTURE.md).

``ma.knn(X, k=..., method="ivf" | "hnsw" | "ivfpq")`` validates its input and then calls the
functions here, which build a FAISS index, search it, and bring the result into matalign's
conventions (the same as exact search):

- best value first, ties among equal values by lower index (a cheap per-row re-sort);
- in a self graph each row's own index is excluded **by index**: k+1 neighbours are searched
  and the query's own index is dropped wherever it appears; if it is absent (an approximate
  index can miss it) the last of the k+1 is dropped;
- ``values`` are inner products (``"ip"``, and ``"cosine"`` on L2-normalised rows) or squared
  Euclidean distances (``"l2"``), float32. IVF-Flat and HNSW-Flat compute them directly from
  the stored vectors; IVF-PQ only has compressed codes, so its values are recomputed from the
  rows (float64 accumulation, rounded to float32) before the re-sort;
- a row for which the index returned fewer than k neighbours (possible with IVF and a small
  ``nprobe``) is searched again exactly, so every row has k valid neighbours.

Every approximate graph carries its **recall**, measured against exact search
(:func:`measure_recall`). Which parameter trades what is explained in
``docs/KNN_PARAMETERS.md``; :func:`resolve_params` documents the defaults.

FAISS is an optional dependency (``pip install faiss-cpu``, or ``faiss-gpu`` for NVIDIA GPUs):
it is imported only when an approximate method is asked for. With a GPU build of FAISS and a
visible GPU, ``"ivf"`` and ``"ivfpq"`` run on GPU 0 (``device="auto"``); HNSW has no FAISS GPU
implementation and always runs on the CPU.
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass

import numpy as np

from . import _engine
from ._validate import check_choice, check_int

__all__ = [
    "APPROX_METHODS",
    "ApproxParams",
    "import_faiss",
    "check_options",
    "check_dtype",
    "resolve_params",
    "recall_rows",
    "search",
    "measure_recall",
]

APPROX_METHODS = ("ivf", "hnsw", "ivfpq")
DEVICES = ("auto", "cpu", "cuda")

#: Which options each method reads; any other non-None option is an error (no silent ignore).
_OPTIONS = {
    "ivf": ("nlist", "nprobe"),
    "hnsw": ("M", "ef_search"),
    "ivfpq": ("nlist", "nprobe", "pq_m"),
}
_OPTION_NAMES = ("nlist", "nprobe", "M", "ef_search", "pq_m")

HNSW_EF_CONSTRUCTION = 40        # faiss's default; see docs/KNN_PARAMETERS.md
HNSW_DEFAULT_M = 32
TRAIN_POINTS_PER_LIST = 64       # k-means training sample: 64 rows per inverted list
PQ_MIN_TRAIN = 39 * 256          # faiss warns below 39 training points per PQ centroid
_GPU_MAX_K = 2048                # faiss GPU k-selection limit (GPU_MAX_SELECTION_K)
_BLOCK_ROWS = 8192               # rows per add/search call: bounds temporaries, allows Ctrl-C


def import_faiss(method: str):
    """Import FAISS, or raise an ImportError naming the pip package.

    Raises
    ------
    ImportError
        If ``faiss`` cannot be imported.
    """
    try:
        import faiss  # noqa: PLC0415 (optional dependency, imported on use)
    except ImportError as exc:
        raise ImportError(
            f"method={method!r} needs FAISS, which is not installed: pip install faiss-cpu "
            f"(or faiss-gpu for NVIDIA GPUs), or use method='exact'") from exc
    return faiss


def check_options(method: str, **options) -> dict:
    """Validate the approximate-search options for ``method``; return them as ints or None.

    An option that ``method`` does not read must be None, so that e.g. ``M=16`` with
    ``method="ivf"`` is an error instead of being ignored.

    Raises
    ------
    TypeError
        If an option is not an integer (or None).
    ValueError
        If an option is < 1, or is given for a method that does not use it.
    """
    out = {}
    used = _OPTIONS.get(method, ())
    for name in _OPTION_NAMES:
        value = options.get(name)
        if value is None:
            out[name] = None
            continue
        if name not in used:
            users = [m for m, opts in _OPTIONS.items() if name in opts]
            which = " or ".join(repr(m) for m in users)
            raise ValueError(
                f"{name} applies to method={which} only; got {name}={value!r} with "
                f"method={method!r} (leave it None)")
        out[name] = check_int(value, name, 1)
    return out


def check_dtype(X: np.ndarray, method: str, name: str = "X") -> None:
    """FAISS computes in float32: reject float64 instead of casting it silently.

    Raises
    ------
    TypeError
        If ``X`` is not float32.
    """
    if X.dtype != np.float32:
        raise TypeError(
            f"method={method!r} searches with FAISS, which computes in float32, but {name} has "
            f"dtype {X.dtype.name} and matalign never casts silently: pass "
            f"{name}.astype(np.float32), or use method='exact' to compute in {X.dtype.name}")


@dataclass(frozen=True)
class ApproxParams:
    """The resolved parameters of one approximate search (defaults filled in).

    Attributes
    ----------
    method : {"ivf", "hnsw", "ivfpq"}
    nlist, nprobe : int or None
        Inverted lists and lists visited per query (IVF methods).
    M, ef_search, ef_construction : int or None
        HNSW graph degree, search beam width and construction beam width.
    pq_m, pq_nbits : int or None
        Product-quantiser sub-vectors and bits per sub-vector code (IVF-PQ).
    n_train : int or None
        Rows in the seeded k-means training sample (IVF methods).
    """

    method: str
    nlist: int | None = None
    nprobe: int | None = None
    M: int | None = None
    ef_search: int | None = None
    ef_construction: int | None = None
    pq_m: int | None = None
    pq_nbits: int | None = None
    n_train: int | None = None


def default_nlist(n: int) -> int:
    """round(4·√N), capped at N // 39 so that k-means gets >= 39 training rows per list."""
    return max(1, min(int(round(4.0 * math.sqrt(n))), n // 39))


def default_nprobe(nlist: int) -> int:
    """⌈nlist / 64⌉, at least 16, at most nlist.

    On the benchmark's data (N = 100 000, nlist = 1265) recall was 0.95 at nprobe = 8, 0.9994
    at 16 and 0.9999 at 24, with search time linear in nprobe; 1/64 of the lists keeps the
    scan at ~N/64 vectors per query (16 000 at N = 10⁶) where a fixed fraction such as 1/16
    would make the search grow as N² like exact search.
    """
    return min(nlist, max(16, -(-nlist // 64)))


def default_ef_search(k_search: int) -> int:
    """max(128, 2·k_search), k_search = k+1 in a self graph, k with queries.

    On the benchmark's data (N = 100 000, M = 32) recall was 0.977 at 32, 0.987 at 64, 0.993 at
    128 and 0.996 at 256, search time growing ~1.3x per doubling.
    """
    return max(128, 2 * k_search)


def default_pq_m(d: int) -> int:
    """The largest divisor of D that is <= max(1, D // 8): sub-vectors of >= 8 columns.

    D / 8 bytes per vector for D % 8 == 0 (32 bytes at D = 256, against 1 KiB of float32).
    Narrower sub-vectors encode better but train slowly: FAISS 1.15's k-means on 4-column
    sub-vectors takes ~10x longer per sub-quantiser than on 8-column ones.
    """
    target = max(1, d // 8)
    for m in range(target, 0, -1):
        if d % m == 0:
            return m
    return 1


def resolve_params(method: str, n: int, d: int, k_search: int, *, nlist=None, nprobe=None,
                   M=None, ef_search=None, pq_m=None) -> ApproxParams:
    """Fill in defaults from N, D and k, and check the options against them.

    Defaults (N database rows, D columns, k_search = k+1 for a self graph, k with queries):

    ======================  ==========  =====================================================
    parameter               methods     default
    ======================  ==========  =====================================================
    ``nlist``               ivf, ivfpq  round(4·√N), at most N // 39, at least 1
    ``nprobe``              ivf, ivfpq  min(nlist, max(16, ⌈nlist / 64⌉))
    ``M``                   hnsw        32
    ``ef_search``           hnsw        max(128, 2·k_search)
    ``pq_m``                ivfpq       largest divisor of D that is <= D // 8
    (ef_construction)       hnsw        max(40, M) (40 is faiss's default; not an option)
    (pq_nbits)              ivfpq       min(8, ⌊log2(n_train / 39)⌋), at least 1
    (n_train)               ivf, ivfpq  min(N, 64·nlist) rows; ivfpq: at least min(N, 9984)
    ======================  ==========  =====================================================

    Raises
    ------
    ValueError
        If ``nlist`` > N, ``nprobe`` > nlist, ``ef_search`` < k_search or > N, ``M`` outside
        2..1024 or
        ``pq_m`` does not divide D.
    """
    if method == "hnsw":
        M = HNSW_DEFAULT_M if M is None else M
        if not 2 <= M <= 1024:
            # M = 1 makes faiss's HNSW crash (a level multiplier of 1/log(1)): reject it here.
            raise ValueError(f"M must be between 2 and 1024 (HNSW graph degree); got M={M}")
        ef = min(default_ef_search(k_search), max(n, k_search)) if ef_search is None else ef_search
        if ef < k_search:
            raise ValueError(
                f"ef_search must be >= the number of neighbours searched ({k_search}: k, plus 1 "
                f"for the row itself in a self graph); got ef_search={ef}")
        if ef > max(n, k_search):
            # a candidate list longer than the database only costs memory (and OOM at 2**31)
            raise ValueError(
                f"ef_search must be <= N = {n} (the number of database rows); got ef_search={ef}")
        return ApproxParams(method, M=M, ef_search=ef,
                            ef_construction=max(HNSW_EF_CONSTRUCTION, M))
    nl = default_nlist(n) if nlist is None else nlist
    if nl > n:
        raise ValueError(
            f"nlist must be between 1 and N = {n} (k-means needs at least one row per list); "
            f"got nlist={nl}")
    npr = default_nprobe(nl) if nprobe is None else nprobe
    if npr > nl:
        raise ValueError(f"nprobe must be between 1 and nlist = {nl}; got nprobe={npr}")
    n_train = min(n, TRAIN_POINTS_PER_LIST * nl)
    if method == "ivf":
        return ApproxParams(method, nlist=nl, nprobe=npr, n_train=max(n_train, nl))
    pm = default_pq_m(d) if pq_m is None else pq_m
    if d % pm != 0:
        raise ValueError(
            f"pq_m must divide D = {d} (each sub-quantiser encodes D / pq_m columns); "
            f"got pq_m={pm}")
    n_train = max(n_train, min(n, PQ_MIN_TRAIN), nl)
    nbits = max(1, min(8, int(math.floor(math.log2(max(n_train / 39.0, 2.0))))))
    return ApproxParams(method, nlist=nl, nprobe=npr, pq_m=pm, pq_nbits=nbits, n_train=n_train)


def recall_rows(m: int, recall_sample: int, seed: int) -> np.ndarray:
    """The query rows on which recall is measured: a seeded sample, sorted.

    ``np.sort(np.random.default_rng(seed).choice(m, size=min(recall_sample, m),
    replace=False))`` — written out so that anyone can re-measure the same rows.
    """
    size = min(recall_sample, m)
    rows = np.random.default_rng(seed).choice(m, size=size, replace=False)
    return np.sort(rows).astype(np.int64)


# ----------------------------------------------------------------------------- FAISS plumbing


@contextlib.contextmanager
def _faiss_threads(faiss, n_threads: int):
    """Set FAISS's OpenMP thread count for the block and restore it afterwards."""
    if n_threads <= 0:
        yield
        return
    before = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(n_threads)
    try:
        yield
    finally:
        faiss.omp_set_num_threads(before)


def _gpu_count(faiss) -> int:
    if not hasattr(faiss, "StandardGpuResources") or not hasattr(faiss, "get_num_gpus"):
        return 0
    try:
        return int(faiss.get_num_gpus())
    except Exception:  # a GPU build on a machine without a driver
        return 0


def _use_gpu(faiss, device: str, params: ApproxParams, k_search: int) -> bool:
    """Whether to run on GPU 0; raise for device="cuda" when that is impossible."""
    if device == "cpu":
        return False
    why = None
    if not hasattr(faiss, "StandardGpuResources"):
        why = "the installed FAISS has no GPU support (pip install faiss-gpu)"
    elif _gpu_count(faiss) == 0:
        why = "FAISS sees no CUDA device"
    elif params.method == "hnsw":
        why = "FAISS has no GPU HNSW index"
    elif k_search > _GPU_MAX_K or (params.nprobe or 0) > _GPU_MAX_K:
        why = f"FAISS GPU indexes search at most k = nprobe = {_GPU_MAX_K}"
    elif params.method == "ivfpq" and params.pq_nbits != 8:
        why = "FAISS GPU IVF-PQ needs 8-bit codes (N too small for 256 PQ centroids)"
    if why is None:
        return True
    if device == "cuda":
        raise RuntimeError(f"device='cuda' was requested for method={params.method!r} but {why}")
    return False


def _make_index(faiss, params: ApproxParams, d: int, metric: str):
    fmetric = faiss.METRIC_INNER_PRODUCT if metric == "ip" else faiss.METRIC_L2
    if params.method == "hnsw":
        index = faiss.IndexHNSWFlat(d, params.M, fmetric)
        index.hnsw.efConstruction = params.ef_construction
        index.hnsw.efSearch = params.ef_search
        return index, None
    quantizer = faiss.IndexFlatIP(d) if metric == "ip" else faiss.IndexFlatL2(d)
    if params.method == "ivf":
        index = faiss.IndexIVFFlat(quantizer, d, params.nlist, fmetric)
    else:
        index = faiss.IndexIVFPQ(quantizer, d, params.nlist, params.pq_m, params.pq_nbits,
                                 fmetric)
    index.nprobe = params.nprobe
    return index, quantizer  # the quantizer must outlive the index (SWIG does not own it)


def _to_gpu(faiss, index, params: ApproxParams, seed: int, device: str):
    """The untrained CPU index cloned to GPU 0, or (None, None) where FAISS refuses it (e.g. an
    IVF-PQ code size its GPU kernels lack) and the device was "auto"."""
    try:
        res = faiss.StandardGpuResources()
        options = faiss.GpuClonerOptions()
        if params.method == "ivfpq":
            options.useFloat16 = True  # float16 lookup tables: needed for codes of > 48 bytes
        gindex = faiss.index_cpu_to_gpu(res, 0, index, options)
        faiss.GpuParameterSpace().set_index_parameter(gindex, "nprobe", params.nprobe)
        if hasattr(gindex, "cp"):
            gindex.cp.seed = int(seed)
    except RuntimeError as exc:
        if device == "cuda":
            raise RuntimeError(f"FAISS could not build method={params.method!r} on the GPU: "
                               f"{exc}") from exc
        return None, None
    return gindex, res  # the resources must outlive the index


def _contiguous_rows(A: np.ndarray, start: int, stop: int) -> np.ndarray:
    return np.ascontiguousarray(A[start:stop], dtype=np.float32)


def _drop_self(values: np.ndarray, indices: np.ndarray, rows: np.ndarray, k: int):
    """From k+1 results per row keep k: drop the row's own index, else the last column."""
    b = indices.shape[0]
    is_self = indices == rows[:, None]
    drop = np.where(is_self.any(axis=1), is_self.argmax(axis=1), k)
    keep = np.ones(indices.shape, dtype=bool)
    keep[np.arange(b), drop] = False
    return values[keep].reshape(b, k), indices[keep].reshape(b, k)


def _exact_rows(X, Q, rows, k, metric, self_mode, n_threads, tile_rows=0, tile_cols=0,
                simd="auto"):
    """Exact kNN (matalign's engine, rescored) of the query rows ``rows``; self dropped by index."""
    source = X if Q is None else Q
    queries = np.ascontiguousarray(source[rows])
    ks = k + 1 if self_mode else k
    values, indices = _engine.knn_exact(X, queries, ks, metric=metric, exclude_self=False,
                                        tile_rows=tile_rows, tile_cols=tile_cols,
                                        n_threads=n_threads, rescore=True, simd=simd)
    if self_mode:
        values, indices = _drop_self(values, indices, rows, k)
    return values, indices


def _recompute_values(X, Q, indices, metric):
    """Exact values of the given neighbours: float64 accumulation, rounded to float32."""
    m, k = indices.shape
    d = X.shape[1]
    source = X if Q is None else Q
    out = np.empty((m, k), dtype=np.float32)
    step = max(1, (1 << 22) // max(1, k * d))
    for s in range(0, m, step):
        q = np.asarray(source[s:s + step], dtype=np.float64)
        nb = np.asarray(X[indices[s:s + step]], dtype=np.float64)
        if metric == "ip":
            out[s:s + step] = np.einsum("bd,bkd->bk", q, nb)
        else:
            diff = nb - q[:, None, :]
            out[s:s + step] = np.einsum("bkd,bkd->bk", diff, diff)
    return out


def _sort_rows(values: np.ndarray, indices: np.ndarray, metric: str):
    """Best value first, ties by lower index."""
    key = values if metric == "l2" else -values
    order = np.lexsort((indices, key), axis=-1)
    return (np.take_along_axis(values, order, axis=1),
            np.take_along_axis(indices, order, axis=1))


def search(X: np.ndarray, Q: np.ndarray | None, *, k: int, metric: str, params: ApproxParams,
           n_threads: int = 0, progress=None, rescore: bool = False, seed: int = 0,
           device: str = "auto", faiss=None):
    """Build a FAISS index on X and search it; return ``(values, indices)``.

    Parameters
    ----------
    X : numpy.ndarray, shape (N, D), float32
        Database rows, already validated (and L2-normalised for cosine).
    Q : numpy.ndarray, shape (M, D), float32, or None
        Query rows; None for the self graph of X (self excluded by index).
    k : int
        Neighbours per row (already checked against N).
    metric : {"ip", "l2"}
        Engine metric (cosine arrives here as "ip" on normalised rows).
    params : ApproxParams
        From :func:`resolve_params`.
    n_threads : int, default 0
        FAISS OpenMP threads for this call (0: leave FAISS's setting); restored afterwards.
    progress : callable(done, total) or None
        Called between blocks of rows added and searched; total = N + M.
    rescore : bool, default False
        Recompute the values exactly from the rows (always done for ivfpq).
    seed : int, default 0
        Seed of the k-means training sample and of FAISS's k-means.
    device : {"auto", "cpu", "cuda"}, default "auto"
        "auto" uses GPU 0 for ivf/ivfpq when FAISS has GPU support and sees a device.

    Returns
    -------
    values : numpy.ndarray, shape (M or N, k), float32
    indices : numpy.ndarray, shape (M or N, k), int64
    """
    if faiss is None:
        faiss = import_faiss(params.method)
    device = check_choice(device, "device", DEVICES)
    n, d = X.shape
    self_mode = Q is None
    m = n if self_mode else Q.shape[0]
    ks = k + 1 if self_mode else k
    total = n + m
    done = 0

    def tick(step: int) -> None:
        nonlocal done
        done += step
        if progress is not None:
            progress(done, total)

    use_gpu = _use_gpu(faiss, device, params, ks)
    with _faiss_threads(faiss, n_threads):
        index, quantizer = _make_index(faiss, params, d, metric)
        keep_alive = [quantizer]
        if params.method != "hnsw":
            rng = np.random.default_rng((seed, 1))
            index.cp.seed = int(seed)
            if params.method == "ivfpq":
                index.pq.cp.seed = int(seed)
            if use_gpu:
                gindex, res = _to_gpu(faiss, index, params, seed, device)
                if gindex is not None:
                    keep_alive += [index, res]
                    index = gindex
            if params.n_train < n:
                train_rows = np.sort(rng.choice(n, size=params.n_train, replace=False))
                xt = np.ascontiguousarray(X[train_rows], dtype=np.float32)
            else:
                xt = np.ascontiguousarray(X, dtype=np.float32)
            index.train(xt)
            del xt
        if progress is not None:
            progress(0, total)
        for s in range(0, n, _BLOCK_ROWS):
            block = _contiguous_rows(X, s, min(n, s + _BLOCK_ROWS))
            index.add(block)
            tick(block.shape[0])
        values = np.empty((m, k), dtype=np.float32)
        indices = np.empty((m, k), dtype=np.int64)
        source = X if self_mode else Q
        for s in range(0, m, _BLOCK_ROWS):
            stop = min(m, s + _BLOCK_ROWS)
            dv, di = index.search(_contiguous_rows(source, s, stop), ks)
            if self_mode:
                dv, di = _drop_self(dv, di, np.arange(s, stop, dtype=np.int64), k)
            values[s:stop], indices[s:stop] = dv, di
            tick(stop - s)
        del index, keep_alive

        # Rows with missing results (-1: fewer than k vectors in the lists visited) are
        # searched exactly, so that every row has k valid neighbours.
        short = np.flatnonzero((indices < 0).any(axis=1))
        if short.size:
            ev, ei = _exact_rows(X, Q, short, k, metric, self_mode, n_threads)
            values[short], indices[short] = ev, ei
    if rescore or params.method == "ivfpq":
        values = _recompute_values(X, Q, indices, metric)
    return _sort_rows(values, indices, metric)


def overlap_recall(approx: np.ndarray, exact: np.ndarray) -> float:
    """mean over rows of |approx_i ∩ exact_i| / k for two (m, k) index arrays (unique per row)."""
    m, k = exact.shape
    hits = 0
    step = max(1, (1 << 24) // max(1, k * k))
    for s in range(0, m, step):
        a, e = approx[s:s + step], exact[s:s + step]
        hits += int((a[:, :, None] == e[:, None, :]).any(axis=2).sum())
    return hits / float(m * k)


def measure_recall(X: np.ndarray, Q: np.ndarray | None, indices: np.ndarray, *, k: int,
                   metric: str, recall_sample: int, seed: int, n_threads: int = 0,
                   tile_rows: int = 0, tile_cols: int = 0, simd: str = "auto") -> float:
    """Recall of an approximate graph against exact search on a seeded sample of query rows.

    recall = mean over the sampled rows i of |approx_i ∩ exact_i| / k, where exact_i comes from
    matalign's exact engine (float32 GEMM, candidates rescored in float64) on the same X (and
    queries), with the row's own index excluded in a self graph. The rows are
    :func:`recall_rows` ``(M, recall_sample, seed)``. Ties at the k-th value count against
    recall when the two searches keep different members of the tie.

    Returns
    -------
    float
        In [0, 1].
    """
    m = X.shape[0] if Q is None else Q.shape[0]
    rows = recall_rows(m, recall_sample, seed)
    _, exact = _exact_rows(X, Q, rows, k, metric, Q is None, n_threads, tile_rows, tile_cols,
                           simd)
    return overlap_recall(indices[rows], exact)
