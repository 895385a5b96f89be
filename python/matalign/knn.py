"""Exact k-nearest-neighbour graphs (definitions and tie rule: docs/METRICS.md).

A :class:`KnnGraph` is computed once per embedding matrix and reused by every local metric
(``mutual_knn``, ``cknna``, ``local_agreement``), so an M-model comparison costs M kNN searches.
"""

from __future__ import annotations

import os
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from . import _engine
from . import executor as _executor
from . import _device
from . import _memory
from . import approx as _approx
from ._io import atomic_open
from ._progress import progress_callback
from ._rows import l2_normalize
from ._validate import (as_matrix, check_bool, check_values, check_choice, check_int, check_k, check_threads,
                        check_progress, check_same_dtype, describe)

__all__ = ["KnnGraph", "knn", "self_graph"]

METRICS = ("ip", "l2", "cosine")
METHODS = ("exact", "ivf", "hnsw", "ivfpq")
SIMD_LEVELS = ("auto", "avx512", "avx2", "scalar")
_FILE_FORMAT = "matalign.KnnGraph"
_FILE_VERSION = 1
_REQUIRED_KEYS = ("format", "version", "indices", "values", "metric", "self_excluded", "recall")


@dataclass(frozen=True, eq=False, repr=False)
class KnnGraph:
    """A kNN graph: for each of N rows, its k neighbours best first.

    Parameters
    ----------
    indices : numpy.ndarray, shape (N, k), int64
        Neighbour row indices, best first; ties in value are ordered by lower index.
    values : numpy.ndarray, shape (N, k), float32 or float64
        Inner products (``metric="ip"``), cosines (``"cosine"``) or squared Euclidean
        distances (``"l2"``) of those neighbours.
    metric : {"ip", "l2", "cosine"}
        The metric the graph was built with.
    self_excluded : bool
        True for a self graph (queries = database, each row's own index excluded); False for a
        graph of separate queries against a database.
    recall : float or None, default None
        Measured recall against exact search for approximate graphs; None for exact graphs.
    method : {"exact", "ivf", "hnsw", "ivfpq"}, default "exact"
        How the graph was searched. Metrics computed from a graph whose method is not
        "exact" warn that they are approximate.

    Attributes
    ----------
    n : int
        Number of rows N.
    k : int
        Number of neighbours per row.

    Raises
    ------
    TypeError
        If ``indices`` is not an int64 array or ``values`` not a float32/float64 array.
    ValueError
        If the arrays are not 2-D, their shapes differ, or ``metric``/``recall`` are invalid.

    Examples
    --------
    >>> import os, tempfile
    >>> import numpy as np
    >>> import matalign as ma
    >>> X = np.array([[0.0, 0.0], [1.0, 0.0], [0.0, 2.0], [3.0, 3.0]])
    >>> g = ma.knn(X, k=2, metric="l2")
    >>> g
    KnnGraph(n=4, k=2, metric='l2', self_excluded=True, values=float64)
    >>> g.head(1).indices.ravel()
    array([1, 0, 0, 2])
    >>> with tempfile.TemporaryDirectory() as folder:
    ...     path = g.save(os.path.join(folder, "graph.npz"))
    ...     h = ma.KnnGraph.load(path)
    >>> bool(np.array_equal(h.indices, g.indices)), h.metric, h.k
    (True, 'l2', 2)
    """

    indices: np.ndarray
    values: np.ndarray
    metric: str
    self_excluded: bool
    recall: float | None = None
    method: str = "exact"

    def __post_init__(self) -> None:
        indices, values = self.indices, self.values
        if not isinstance(indices, np.ndarray):
            raise TypeError(f"KnnGraph indices must be a NumPy array; got {describe(indices)}")
        if not isinstance(values, np.ndarray):
            raise TypeError(f"KnnGraph values must be a NumPy array; got {describe(values)}")
        if indices.ndim != 2:
            raise ValueError(
                f"KnnGraph indices must be 2-D (N, k); got shape {tuple(indices.shape)}")
        if indices.dtype != np.int64:
            raise TypeError(
                f"KnnGraph indices must have dtype int64; got {indices.dtype.name}: pass "
                "indices.astype(np.int64)")
        if values.shape != indices.shape:
            raise ValueError(
                f"KnnGraph values must have the shape of indices {tuple(indices.shape)}; got "
                f"{tuple(values.shape)}")
        if values.dtype not in (np.float32, np.float64):
            raise TypeError(
                f"KnnGraph values must have dtype float32 or float64; got {values.dtype.name}")
        if indices.shape[1] == 0:
            raise ValueError("KnnGraph must have k >= 1 neighbours per row; got k=0")
        check_choice(self.metric, "KnnGraph metric", METRICS)
        object.__setattr__(self, "metric", str(self.metric))
        check_choice(self.method, "KnnGraph method", METHODS)
        object.__setattr__(self, "method", str(self.method))
        object.__setattr__(self, "self_excluded", check_bool(self.self_excluded,
                                                             "KnnGraph self_excluded"))
        if self.recall is not None:
            r = self.recall
            if isinstance(r, (bool, np.bool_)) or not isinstance(r, (int, float, np.floating)):
                raise TypeError(f"KnnGraph recall must be a float or None; got {describe(r)}")
            if not 0.0 <= float(r) <= 1.0:
                raise ValueError(f"KnnGraph recall must be in [0, 1]; got {r!r}")
            object.__setattr__(self, "recall", float(r))

    @property
    def n(self) -> int:
        """Number of rows N."""
        return int(self.indices.shape[0])

    @property
    def k(self) -> int:
        """Number of neighbours per row."""
        return int(self.indices.shape[1])

    def __repr__(self) -> str:
        method = "" if self.method == "exact" else f", method={self.method!r}"
        recall = "" if self.recall is None else f", recall={self.recall:.4f}"
        return (f"KnnGraph(n={self.n}, k={self.k}, metric={self.metric!r}, "
                f"self_excluded={self.self_excluded}, values={self.values.dtype.name}{method}"
                f"{recall})")

    def head(self, k: int) -> "KnnGraph":
        """The graph restricted to each row's first (best) ``k`` neighbours.

        Parameters
        ----------
        k : int
            1 <= k <= self.k.

        Returns
        -------
        KnnGraph
            A graph whose arrays are views of this one's first k columns (no copy).

        Raises
        ------
        TypeError
            If ``k`` is not an integer.
        ValueError
            If ``k`` is outside 1..self.k.

        Examples
        --------
        >>> import numpy as np
        >>> import matalign as ma
        >>> g = ma.knn(np.random.default_rng(0).normal(size=(20, 3)), k=5)
        >>> g.head(2).k
        2
        """
        k = check_int(k, "k", 1, self.k)
        return KnnGraph(self.indices[:, :k], self.values[:, :k], self.metric,
                        self.self_excluded, self.recall, self.method)

    def save(self, path) -> Path:
        """Write the graph to a ``.npz`` file (no pickles), atomically.

        Parameters
        ----------
        path : str or os.PathLike
            Destination; ``.npz`` is appended when missing, as ``np.savez`` does.

        Returns
        -------
        pathlib.Path
            The file written.

        Raises
        ------
        OSError
            If the file cannot be written.

        Examples
        --------
        >>> import os, tempfile
        >>> import numpy as np
        >>> import matalign as ma
        >>> g = ma.knn(np.random.default_rng(0).normal(size=(20, 3)), k=3)
        >>> with tempfile.TemporaryDirectory() as folder:
        ...     print(g.save(os.path.join(folder, "graph")).name)
        graph.npz
        """
        path = Path(os.fspath(path))
        if path.suffix != ".npz":
            path = path.with_name(path.name + ".npz")
        arrays = {
            "format": np.array(_FILE_FORMAT),
            "version": np.array(_FILE_VERSION, dtype=np.int64),
            "indices": np.ascontiguousarray(self.indices),
            "values": np.ascontiguousarray(self.values),
            "metric": np.array(self.metric),
            "self_excluded": np.array(self.self_excluded),
            "recall": np.array(np.nan if self.recall is None else self.recall, dtype=np.float64),
            "method": np.array(self.method),
        }
        with atomic_open(path, "wb") as f:
            np.savez(f, **arrays)
        return path

    @classmethod
    def load(cls, path) -> "KnnGraph":
        """Read a graph written by :meth:`save` and check its contents.

        Parameters
        ----------
        path : str or os.PathLike
            A ``.npz`` file from :meth:`save` (``.npz`` may be omitted).

        Returns
        -------
        KnnGraph

        Raises
        ------
        FileNotFoundError
            If the file does not exist.
        ValueError
            If the file is not a valid matalign graph (corrupt, missing keys, wrong dtypes or
            shapes, indices out of range); the message names the file.

        Examples
        --------
        >>> import os, tempfile
        >>> import numpy as np
        >>> import matalign as ma
        >>> g = ma.knn(np.random.default_rng(0).normal(size=(20, 3)), k=3, metric="cosine")
        >>> with tempfile.TemporaryDirectory() as folder:
        ...     h = ma.KnnGraph.load(g.save(os.path.join(folder, "graph.npz")))
        >>> h
        KnnGraph(n=20, k=3, metric='cosine', self_excluded=True, values=float64)
        """
        path = Path(os.fspath(path))
        if not path.exists() and path.suffix != ".npz" and path.with_name(path.name + ".npz").exists():
            path = path.with_name(path.name + ".npz")
        if not path.exists():
            raise FileNotFoundError(f"KnnGraph file not found: {str(path)!r}")

        def bad(why: str) -> ValueError:
            return ValueError(f"{str(path)!r} is not a valid matalign KnnGraph file: {why}")

        try:
            if not zipfile.is_zipfile(path):
                raise bad("it is not a .npz (zip) archive; was it written by KnnGraph.save?")
            with np.load(path, allow_pickle=False) as data:
                missing = [key for key in _REQUIRED_KEYS if key not in data.files]
                if missing:
                    raise bad(f"missing keys {missing}")
                arrays = {key: data[key] for key in _REQUIRED_KEYS}
                # Optional: files written before approximate search existed have no method.
                arrays["method"] = data["method"] if "method" in data.files else np.array("exact")
        except ValueError as exc:
            if str(exc).startswith(repr(str(path))):
                raise
            raise bad(str(exc)) from exc
        except (OSError, EOFError, zipfile.BadZipFile, KeyError) as exc:
            raise bad(f"{type(exc).__name__}: {exc}") from exc

        for key in ("format", "metric", "method"):
            if arrays[key].dtype.kind != "U" or arrays[key].ndim != 0:
                raise bad(f"{key!r} must be a string")
        if str(arrays["format"]) != _FILE_FORMAT:
            raise bad(f"format is {str(arrays['format'])!r}, expected {_FILE_FORMAT!r}")
        version = arrays["version"]
        if version.ndim != 0 or version.dtype.kind not in "iu" or int(version) > _FILE_VERSION:
            raise bad(f"unsupported version {version!r} (this matalign reads <= {_FILE_VERSION})")
        flag = arrays["self_excluded"]
        if flag.ndim != 0 or flag.dtype != np.bool_:
            raise bad("'self_excluded' must be a boolean")
        recall = arrays["recall"]
        if recall.ndim != 0 or recall.dtype.kind != "f":
            raise bad("'recall' must be a float")
        try:
            graph = cls(arrays["indices"], arrays["values"], str(arrays["metric"]), bool(flag),
                        None if np.isnan(recall) else float(recall), str(arrays["method"]))
        except (TypeError, ValueError) as exc:
            raise bad(str(exc)) from exc
        _check_graph_contents(graph, bad)
        return graph


def _check_graph_contents(graph: KnnGraph, bad) -> None:
    """O(N·k) checks of a loaded graph: indices in range, no self loops, finite values."""
    idx = graph.indices
    if idx.size and int(idx.min()) < 0:
        raise bad("negative neighbour indices")
    if graph.self_excluded:
        if idx.size and int(idx.max()) >= graph.n:
            raise bad(f"neighbour index {int(idx.max())} is out of range for N={graph.n}")
        rows = np.arange(graph.n, dtype=np.int64)[:, None]
        hit = np.flatnonzero((idx == rows).any(axis=1))
        if hit.size:
            raise bad(f"row {int(hit[0])} lists itself although self_excluded is True")
    if not np.isfinite(graph.values).all():
        raise bad("non-finite neighbour values")


def knn(X, *, k, metric="ip", queries=None, method="exact", n_threads=0, progress=False,
        tile_rows=0, tile_cols=0, rescore=False, simd="auto", screen="auto", nlist=None,
        nprobe=None, M=None,
        ef_search=None, pq_m=None, recall_sample=1000, seed=0, device="auto") -> KnnGraph:
    """k-nearest neighbours of every row of X (or of every query row) among X's rows.

    ``method="exact"`` (default) searches exhaustively on matalign's engine. ``"ivf"``,
    ``"hnsw"`` and ``"ivfpq"`` search approximately with FAISS (an optional dependency) and
    measure their recall against exact search on a seeded sample of rows; the graph carries
    it in ``recall`` and metrics computed from it warn that they are approximate.

    Self mode (``queries=None``) excludes each row's own index (by index, not by value: a
    duplicate row is still its twin's nearest neighbour). Rows are ordered best first, ties by
    lower index. The computation runs in X's dtype with the GIL released.

    Approximate methods (FAISS indexes; what each parameter trades is explained in
    ``docs/KNN_PARAMETERS.md``). None selects the default, computed from N (database rows),
    D and k_search = k+1 in self mode (k with ``queries``):

    =========  ===============  ==============  ======================================
    method     FAISS index      option          default
    =========  ===============  ==============  ======================================
    "ivf"      IndexIVFFlat     ``nlist``       round(4·√N), at most N // 39
    "ivf"      IndexIVFFlat     ``nprobe``      min(nlist, max(16, ⌈nlist / 64⌉))
    "hnsw"     IndexHNSWFlat    ``M``           32
    "hnsw"     IndexHNSWFlat    ``ef_search``   max(128, 2·k_search)
    "ivfpq"    IndexIVFPQ       ``nlist``       as for "ivf"
    "ivfpq"    IndexIVFPQ       ``nprobe``      as for "ivf"
    "ivfpq"    IndexIVFPQ       ``pq_m``        largest divisor of D that is <= D // 8
    =========  ===============  ==============  ======================================

    IVF k-means is trained on a seeded sample of min(N, 64·nlist) rows; HNSW is built with
    efConstruction = max(40, M); IVF-PQ uses 8-bit codes (fewer bits when N < 9 984) and its
    values are recomputed exactly from the rows. With faiss-gpu and a visible GPU, ivf and
    ivfpq run on GPU 0.

    Parameters
    ----------
    X : array_like, shape (N, D), float32 or float64
        The database. NumPy arrays in any order, ``np.memmap`` and CPU DLPack tensors are read
        without a copy (``metric="cosine"`` makes one normalised copy). Approximate methods
        need float32 (FAISS computes in float32; float64 raises TypeError, never a silent
        cast) and copy X into the FAISS index.
    k : int
        Neighbours per row: 1..N−1 in self mode, 1..N with ``queries``.
    metric : {"ip", "l2", "cosine"}, default "ip"
        Largest inner product, smallest squared Euclidean distance, or largest cosine (rows
        L2-normalised, then inner product).
    queries : array_like, shape (M, D), same dtype as X, optional
        Query rows searched against X; nothing is excluded.
    method : {"exact", "ivf", "hnsw", "ivfpq"}, default "exact"
        Exhaustive search, or a FAISS approximate index (see the table above).
    n_threads : int, default 0
        Threads; 0 = all cores (``OMP_NUM_THREADS`` respected). For approximate methods FAISS's
        thread count is set for the call and restored afterwards.
    progress : bool or callable(done, total), default False
        True shows a progress bar (rich if installed, else stderr); a callable is called
        between tiles (exact) or between blocks of rows added and searched (approximate).
        Ctrl-C interrupts the search either way.
    tile_rows, tile_cols : int, default 0
        Tile sizes of the pairwise loop; 0 = automatic (for approximate methods: of the exact
        search that measures recall).
    rescore : bool, default False
        Recompute the candidates' scores exactly in float64 and re-rank them (removes the
        ‖x‖² + ‖y‖² − 2x·y cancellation error of ``"l2"`` in float32; no effect where the
        integer screen runs, whose values are already the float64 ones). For approximate
        methods: recompute the neighbours' values from the rows (always done for ivfpq).
    simd : {"auto", "avx512", "avx2", "scalar"}, default "auto"
        Kernel level of exact search; a level this CPU cannot run raises ValueError.
    screen : {"auto", "int8", "int16", "off"}, default "auto"
        Exact search through an integer screen: rows are centred on the database mean and
        quantised to int8 (or int16), an integer GEMM (AVX-512 VNNI: 64 int8 or 32 int16
        products per instruction, 4× or 2× the float32 FMA rate) bounds every score from above
        and below with a provable margin, and only the pairs whose bounds can reach a row's
        top-k are re-scored in float64. The result is **exact**: indices and values are bit
        for bit those of the float64 computation (``X.astype(float64)`` with
        ``screen="off"``), also for float32 X. ``"auto"`` uses them where they are faster on
        a CPU with AVX-512 VNNI: their range of k grows with N·D (at N = 20k, D = 256: int8
        for k <= 24, or 48 with ``queries``; int16 up to k = 512; at N = 1k int16 up to
        k = 166 for self graphs; the rule is
        ``matalign._engine.knn_screen_auto(k, self_mode, N, D)``), and not where
        the screen's int8/int16 copy and candidate lists would not fit in memory but the
        float GEMM's would;
        ``"int8"``/``"int16"`` always (portable kernels elsewhere;
        ValueError for rows they cannot bound: a nonzero centred norm outside [1e-12, 1e12]);
        ``"off"`` computes in X's dtype with the float GEMM. Rows whose candidates the bound
        cannot separate (many duplicates) grow their candidate lists, then fall back to the
        float64 kernel. On the CPU the screen's graph is the float64 one; the GPU engine
        and FAISS compute in X's dtype (``screen="off"`` gives the CPU graph that the GPU
        engine reproduces bit for bit). With ``device="cuda"``, ``"int8"`` runs the int8
        tensor-core screen (sm_75+; rows copied to the host once and quantised there),
        designed to give the GPU's exact graph in X's dtype bit for bit (the bounds are
        widened by the dtype's rounding); it has been compiled and its plan emulated on the
        host, but **not yet run on a GPU**, so ``"auto"`` keeps the GPU's exact path until
        ``scripts/gpu_check.sh`` has verified it on one; ``"int16"``/``"off"``/``"auto"`` and
        cosine on GPU rows run the GPU's exact path.
    nlist : int, optional
        ivf, ivfpq: number of inverted lists (k-means cells), 1..N.
    nprobe : int, optional
        ivf, ivfpq: lists visited per query, 1..nlist. Higher: better recall, slower search.
    M : int, optional
        hnsw: graph degree (neighbours per node), 1..1024. Higher: better recall, more
        memory, slower build.
    ef_search : int, optional
        hnsw: search beam width, >= k_search. Higher: better recall, slower search.
    pq_m : int, optional
        ivfpq: product-quantiser sub-vectors (bytes per stored vector), a divisor of D.
        Higher: better recall, more memory.
    recall_sample : int, default 1000
        Approximate methods: rows (queries) on which recall is measured against exact search,
        ``np.sort(np.random.default_rng(seed).choice(M, min(recall_sample, M),
        replace=False))`` with M the number of query rows (N in self mode).
    seed : int, default 0
        Approximate methods: seed of the recall sample, the k-means training sample and
        FAISS's k-means.
    device : {"auto", "cpu", "cuda", "cuda:N"}, default "auto"
        Where exact search runs (rules in ``matalign._device``): "auto" picks the GPU for GPU
        input (CuPy, torch CUDA tensors; read zero-copy) or for N >= 50 000 when a GPU is
        visible, else the CPU. The GPU gives the same graph as the CPU (same FMA order, same
        tie rule); it supports ``method="exact"`` without ``rescore``, and ignores ``simd``
        and ``n_threads``.

    Returns
    -------
    KnnGraph
        ``indices`` (N or M, k) int64 and ``values`` (N or M, k) in X's dtype: inner products,
        cosines or squared distances. Approximate graphs also carry ``method`` and ``recall``.

    Raises
    ------
    TypeError
        For a dtype other than float32/float64, queries whose dtype differs from X's, float64
        with an approximate method, or a non-integer option.
    ValueError
        For a bad shape, NaN/Inf (naming the first bad row), k out of range, an unknown
        metric/method/simd, zero rows with ``metric="cosine"``, a queries column count that
        differs from X's, or an approximate option out of range or given to a method that
        does not use it (e.g. ``M`` with ``method="ivf"``).
    ImportError
        For an approximate method without FAISS installed (``pip install faiss-cpu``).
    RuntimeError
        For ``device="cuda"`` without CUDA ("matalign was built without CUDA" or "no CUDA
        device visible"), or GPU input with ``device="cpu"``.
    MemoryError
        When the call's estimated peak allocation (outputs, the engine's per-row state and
        tile scratch, the FAISS index) exceeds the available memory (MemAvailable, or the
        cgroup limit), checked before anything is allocated; or when the GPU cannot hold the
        input or the tiles. The message gives the size.
    matalign.CudaError
        When a CUDA call fails (the message names the call and the CUDA error).

    Examples
    --------
    >>> import numpy as np
    >>> import matalign as ma
    >>> X = np.array([[0.0, 0.0], [1.0, 0.0], [0.0, 2.0], [3.0, 3.0]])
    >>> g = ma.knn(X, k=2, metric="l2")
    >>> g.indices
    array([[1, 2],
           [0, 2],
           [0, 1],
           [2, 1]])
    >>> g.values
    array([[ 1.,  4.],
           [ 1.,  5.],
           [ 4.,  5.],
           [10., 13.]])
    >>> ma.knn(X, k=1, metric="l2", queries=np.array([[2.5, 2.5]])).indices
    array([[3]])
    >>> Z = np.random.default_rng(0).normal(size=(2000, 16)).astype(np.float32)
    >>> h = ma.knn(Z, k=10, method="hnsw")
    >>> h.method, h.recall > 0.9
    ('hnsw', True)
    """
    metric = check_choice(metric, "metric", METRICS)
    method = check_choice(method, "method", METHODS)
    options = _approx.check_options(method, nlist=nlist, nprobe=nprobe, M=M,
                                    ef_search=ef_search, pq_m=pq_m)
    recall_sample = check_int(recall_sample, "recall_sample", 1)
    seed = check_int(seed, "seed", 0)
    dev = _device.resolve(device, X, queries)
    if dev.is_cuda:
        return _knn_cuda(X, queries, k=k, metric=metric, method=method, rescore=rescore,
                         tile_rows=tile_rows, tile_cols=tile_cols, progress=progress, dev=dev,
                         screen=screen)
    # Shapes and dtypes first: the memory check below reads no data, so a call too large for
    # memory is refused before a (possibly huge, cold) memmap is scanned for NaN/Inf.
    X = as_matrix(X, "X", scan=False)
    n, d = X.shape
    Q = None
    if queries is not None:
        Q = as_matrix(queries, "queries", scan=False)
        check_same_dtype(X, Q)
        if Q.shape[1] != d:
            raise ValueError(
                f"queries must have as many columns as X: X has D={d}, queries has "
                f"D={Q.shape[1]}")
    k = check_k(k, n, exclude_self=Q is None)
    n_threads = check_threads(n_threads)
    tile_rows = check_int(tile_rows, "tile_rows", 0)
    tile_cols = check_int(tile_cols, "tile_cols", 0)
    rescore = check_bool(rescore, "rescore")
    simd = check_choice(simd, "simd", SIMD_LEVELS)
    screen = check_choice(screen, "screen", ("auto", "int8", "int16", "off"))
    progress = check_progress(progress)
    params = faiss = None
    if method != "exact":
        _approx.check_dtype(X, method)
        params = _approx.resolve_params(method, n, d, k + 1 if Q is None else k, **options)
        faiss = _approx.import_faiss(method)

    m = n if Q is None else Q.shape[0]

    def _need(scr):
        return _memory.knn_bytes(n, m, d, k, X.itemsize, method=method, metric=metric,
                                 self_mode=Q is None, rescore=rescore,
                                 n_threads=_memory.threads(n_threads), tile_rows=tile_rows,
                                 tile_cols=tile_cols, params=params, screen=scr)

    need = _need(screen)
    if method == "exact" and screen == "auto":
        # The screen's int8/int16 copy and candidate lists are a speed-up, not a requirement:
        # where they would not fit but the float GEMM does, "auto" takes the float GEMM.
        # (The engine's own rule; on CPUs without VNNI "auto" never screens and this estimate
        # is merely conservative.)
        bits = _engine.knn_screen_auto(k, Q is None, n, d)
        if bits != "off":
            need_screen = _need(bits)
            avail, _ = _memory.available_memory()
            if avail is None or need_screen <= avail:
                need = max(need, need_screen)
            else:
                screen = "off"
    what = f"knn(N={n}, D={d}, k={k}, method={method!r}" + ("" if Q is None else f", M={m}") + ")"
    _memory.check_memory(need, what, advice=(
        "pass a smaller k, search the queries in batches (queries=X[a:b]), or fewer n_threads"
        if method == "exact" else
        "the FAISS index holds a copy of X: use method='ivfpq' (compressed codes), "
        "method='exact' (no index), or a smaller k"))
    check_values(X, "X")
    if Q is not None and Q is not X:
        check_values(Q, "queries")

    core_metric = metric
    if metric == "cosine":
        core_metric = "ip"
        same = Q is not None and Q is X
        X = l2_normalize(X, "X", 'metric="cosine" normalises rows')
        if Q is not None:
            Q = X if same else l2_normalize(Q, "queries", 'metric="cosine" normalises rows')

    label = f"kNN {metric} k={k} N={n}" + ("" if Q is None else f" M={Q.shape[0]}")
    if method != "exact":
        with progress_callback(progress, f"{label} {method}") as callback, \
                _memory.reraise(what, need):
            values, indices = _approx.search(X, Q, k=k, metric=core_metric, params=params,
                                             n_threads=n_threads, progress=callback,
                                             rescore=rescore, seed=seed, faiss=faiss)
        recall = _approx.measure_recall(X, Q, indices, k=k, metric=core_metric,
                                        recall_sample=recall_sample, seed=seed,
                                        n_threads=n_threads, tile_rows=tile_rows,
                                        tile_cols=tile_cols, simd=simd)
        return KnnGraph(indices, values, metric, Q is None, recall, method)
    ex = _executor.current()
    with progress_callback(progress, label) as callback, _memory.reraise(what, need):
        if ex is not None and Q is None and not rescore:
            # row blocks on the active executor: the same graph bit for bit
            values, indices = _executor.knn_self(ex, X, k, metric=core_metric, screen=screen,
                                                 progress=callback)
        else:
            values, indices = _engine.knn_exact(X, Q, k, metric=core_metric,
                                                exclude_self=Q is None, tile_rows=tile_rows,
                                                tile_cols=tile_cols, n_threads=n_threads,
                                                rescore=rescore, simd=simd, screen=screen,
                                                progress=callback)
    return KnnGraph(indices, values, metric, Q is None)


def self_graph(obj, label: str, k: int, metric: str, n_threads: int, *, progress=False,
                device="auto") -> KnnGraph:
    """The k-column self graph of a resolved input: a KnnGraph is cut to k columns (it must
    have at least k), an array is searched with :func:`knn`."""
    if isinstance(obj, KnnGraph):
        if obj.k < k:
            raise ValueError(
                f"{label} is a KnnGraph with k={obj.k} neighbours per row but k={k} was "
                f"requested: pass k<={obj.k} or rebuild the graph with ma.knn(..., k={k})")
        return obj if obj.k == k else obj.head(k)
    return knn(obj, k=k, metric=metric, n_threads=n_threads, progress=progress, device=device)


def _knn_cuda(X, queries, *, k, metric, method, rescore, tile_rows, tile_cols, progress,
              dev, screen="auto") -> KnnGraph:
    """Exact kNN on the CUDA engine (``knn(..., device="cuda")``); same graph as the CPU.

    ``screen`` "int8": through the int8 tensor-core screen (the same graph bit for bit; rows
    are copied to the host once and quantised there by the CPU screen's function), except for
    cosine on device rows (normalised on the device: the exact path). "auto" (until a GPU run
    has verified the screen), "int16" and "off": the exact path (there is no int16 GPU
    screen).
    """
    screen = check_choice(screen, "screen", ("auto", "int8", "int16", "off"))
    if method != "exact":
        raise ValueError(
            f"method={method!r} runs on FAISS, not on matalign's CUDA engine: pass "
            "device='cpu' (FAISS uses its own GPU indexes when faiss-gpu is installed)")
    if check_bool(rescore, "rescore"):
        raise ValueError("rescore=True is not supported with device='cuda' (the GPU keeps no "
                         "candidate surplus); pass device='cpu' for re-scored graphs")
    tile_rows = check_int(tile_rows, "tile_rows", 0)
    tile_cols = check_int(tile_cols, "tile_cols", 0)
    progress = check_progress(progress)
    X = _device.matrix(X, "X", dev)
    n, d = X.shape
    Q = None
    if queries is not None:
        Q = _device.matrix(queries, "queries", dev)
        check_same_dtype(X, Q)
        if Q.shape[1] != d:
            raise ValueError(
                f"queries must have as many columns as X: X has D={d}, queries has "
                f"D={Q.shape[1]}")
    k = check_k(k, n, exclude_self=Q is None)
    m = n if Q is None else Q.shape[0]
    # Host memory: the (m, k) outputs (device memory is checked by the CUDA engine).
    _memory.check_memory(_memory.graph_bytes(m, k, X.dtype.itemsize),
                         f"knn(N={n}, k={k}, device={str(dev)!r}) outputs",
                         advice="pass a smaller k or search the queries in batches")
    normalize = False
    if metric == "cosine":
        # Host rows are normalised exactly as on the CPU path (the same graph); device rows on
        # the device (float64 norms, one rounding).
        if isinstance(X, np.ndarray):
            same = Q is X
            X = l2_normalize(X, "X", 'metric="cosine" normalises rows')
            if Q is not None:
                Q = X if same else l2_normalize(Q, "queries", 'metric="cosine" normalises rows')
        else:
            normalize = True  # applies to X and queries alike, on the device
    core_metric = "l2" if metric == "l2" else "ip"
    # "auto" stays on the exact path: the screen kernel has not run on a GPU yet
    use_screen = screen == "int8" and not normalize
    if use_screen:
        # the host copies and int8 codes the quantisation needs
        on_device = [M for M in (X, Q) if M is not None and not isinstance(M, np.ndarray)]
        _memory.check_memory(
            sum(M.shape[0] * M.shape[1] * (M.dtype.itemsize + 1) + 48 * M.shape[0]
                for M in (X, Q) if M is not None)
            + sum(M.shape[0] * M.shape[1] * M.dtype.itemsize for M in on_device),
            f"knn(N={n}, k={k}, device={str(dev)!r}, screen={screen!r}) host quantisation",
            advice="pass screen='off' (the exact GPU path, the same graph)")
    label = f"kNN {metric} k={k} N={n} {dev}" + ("" if Q is None else f" M={Q.shape[0]}")
    with progress_callback(progress, label) as callback:
        if use_screen:
            values, indices, _ = _engine.knn_screen_cuda(
                X, Q, _device.to_host(X), None if Q is None else _device.to_host(Q), k,
                metric=core_metric, exclude_self=Q is None, tile_rows=tile_rows,
                tile_cols=tile_cols, progress=callback, device=dev)
        else:
            values, indices = _engine.knn_exact(X, Q, k, metric=core_metric,
                                                exclude_self=Q is None, normalize=normalize,
                                                tile_rows=tile_rows, tile_cols=tile_cols,
                                                progress=callback, device=dev)
    return KnnGraph(indices, values, metric, Q is None)
