"""Graph metrics: alignment of two spaces' kNN graphs (mutual kNN, local agreement, CKNNA).

Definitions and tie rules: docs/METRICS.md. Each input may be an embedding matrix or a
:class:`~matalign.KnnGraph`. A matrix is turned into its kNN graph once (exact search); a
graph is reused as is (truncated to its first k columns when it has more). The metric itself
then costs O(N·k) time and memory.

With ``k=None`` the graphs define k: the k of the KnnGraph inputs (two graphs of different k
are an error), or 10 when both inputs are embeddings.

The pairwise functions and :func:`graph_matrices` (M spaces: one graph per model, then every
pair in O(N·k), as :func:`matalign.alignment_matrix` runs it) call the same engine
operations on the same graphs, so every matrix entry equals the pairwise call bit for bit.
"""

from __future__ import annotations

import warnings

import numpy as np

from .. import _engine
from .. import _device
from .. import _memory
from .._validate import check_same_structures
from .._validate import (as_matrix, check_choice, check_eps, check_k, check_same_n,
                         check_threads, check_values)
from ..knn import METRICS, KnnGraph, self_graph
from ._global import MatrixStage, no_progress

__all__ = ["mutual_knn", "local_agreement", "cknna", "graph_matrices", "IP_METRICS", "DEFAULT_K",
           "MATRIX_STAGE"]

IP_METRICS = ("ip", "cosine")
DEFAULT_K = 10  # k when no input is a KnnGraph and k=None


def _resolve(obj, name: str, dev=None):
    """Validate one input: a KnnGraph is checked for being a self graph, an array goes through
    as_matrix (or, on a CUDA device, _device.matrix). Nothing expensive happens here, so all
    inputs are checked before any search."""
    if isinstance(obj, KnnGraph):
        if not obj.self_excluded:
            raise ValueError(
                f"{name} is a KnnGraph of separate queries (self_excluded=False); graph metrics "
                f"need a self graph: build it with ma.knn({name}, k=...) without queries")
        return obj
    if dev is not None and dev.is_cuda:
        return _device.matrix(obj, name, dev)
    return as_matrix(obj, name, scan=False)  # values are read after the memory check


def _warn_if_approximate(g: KnnGraph, name: str, fn: str) -> None:
    """A metric from an approximate graph is approximate too: say so (method and recall)."""
    if g.method == "exact" and g.recall is None:
        return
    recall = "unknown" if g.recall is None else f"{g.recall:.4f}"
    warnings.warn(
        f"{fn}: {name} was computed from an approximate kNN graph (method={g.method!r}, "
        f"recall={recall}), so the result is approximate too; docs/KNN_PARAMETERS.md gives "
        f"the metric error that a recall implies, and method='exact' removes it",
        UserWarning, stacklevel=4)


def _prepare(X, Y, k, metric, n_threads, *, ip_only: bool = False, min_n: int = 2,
             why: str = "self-kNN needs a neighbour besides the row itself",
             fn: str = "mutual_knn", dev=None):
    names = ("X", "Y")
    check_same_structures(((names[0], X), (names[1], Y)))
    rx, ry = _resolve(X, "X", dev), _resolve(Y, "Y", dev)
    n = check_same_n(rx, ry, names)
    if n < min_n:
        raise ValueError(f"{fn} needs at least {min_n} rows ({why}); got N={n} rows in X "
                         f"and Y")
    k = check_k(resolve_k(k, (rx, ry), names), n)
    n_threads = check_threads(n_threads)
    if ip_only:
        for r, name in zip((rx, ry), names):
            if isinstance(r, KnnGraph) and r.metric not in IP_METRICS:
                raise ValueError(
                    f"cknna needs inner-product graphs (metric 'ip' or 'cosine'), because its "
                    f"kernel values are the inner products K_ij; {name} is a KnnGraph with "
                    f"metric={r.metric!r}")
    _check_memory(rx, ry, n, k, metric, n_threads, fn, dev)
    for r, name in zip((rx, ry), names):
        if isinstance(r, np.ndarray):
            check_values(r, name)
    device = "cpu" if dev is None else str(dev)
    gx = self_graph(rx, "X", k, metric, n_threads, device=device)
    gy = self_graph(ry, "Y", k, metric, n_threads, device=device)
    _warn_if_approximate(gx, "X", fn)
    _warn_if_approximate(gy, "Y", fn)
    return gx, gy, n_threads


def resolve_k(k, inputs, names):
    """k=None: the k of the KnnGraph inputs (all equal), else DEFAULT_K; an int is kept."""
    if k is not None:
        return k
    graph_ks = [(name, g.k) for g, name in zip(inputs, names) if isinstance(g, KnnGraph)]
    if not graph_ks:
        return DEFAULT_K
    if len({gk for _, gk in graph_ks}) > 1:
        shown = ", ".join(f"{name} has k={gk}" for name, gk in graph_ks)
        raise ValueError(f"k=None takes the graphs' k, but the KnnGraphs differ: {shown}; pass "
                         f"k explicitly (at most the smallest) to compare their first k columns")
    return graph_ks[0][1]


def _check_memory(rx, ry, n: int, k: int, metric: str, n_threads: int, fn: str, dev) -> None:
    """Before any search: the graphs searched for array inputs (held together), the larger of
    one search's engine state and the graph comparison."""
    arrays = [r for r in (rx, ry) if not isinstance(r, KnnGraph)]
    held = sum(_memory.graph_bytes(n, k, r.dtype.itemsize) for r in arrays)
    final = (_memory.cknna_bytes(n, k) if fn == "cknna" else 2 * n * k * 8 + 2 * n * 8)
    steps = [final]
    if dev is None or not dev.is_cuda:
        steps += [_memory.knn_bytes(n, n, r.shape[1], k, r.dtype.itemsize, metric=metric,
                                    n_threads=_memory.threads(n_threads)) for r in arrays]
    _memory.check_memory(held + max(steps), f"{fn}(N={n}, k={k})", advice=(
        "pass a smaller k, or build the graphs one at a time with ma.knn and pass them"))


def _array_of(obj):
    """The array behind an input (None for a KnnGraph: graphs are host data)."""
    return None if isinstance(obj, KnnGraph) else obj


def _n_hint(obj):
    shape = getattr(obj, "shape", None)
    return obj.n if isinstance(obj, KnnGraph) else (int(shape[0]) if shape else 0)


def _cuda_or_none(dev):
    return dev if dev.is_cuda else None


def _indices(g: KnnGraph) -> np.ndarray:
    return np.ascontiguousarray(g.indices)


def mutual_knn(X, Y, *, k=None, metric="ip", n_threads=0, device="auto") -> float:
    """Mutual k-nearest-neighbour overlap of two embedding spaces of the same N structures.

    ``mutual_knn = (1/N) Σ_i |knn_X(i) ∩ knn_Y(i)| / k``, self excluded (Huh et al. 2024).

    Parameters
    ----------
    X, Y : array_like (N, D1) and (N, D2), float32 or float64, or KnnGraph
        Embeddings (row i of both is the same structure) or their self kNN graphs. A graph is
        reused, truncated to its first k columns if it has more.
    k : int, default 10
        Neighbours per row, 1..N−1.
    metric : {"ip", "l2", "cosine"}, default "ip"
        Metric of the kNN searches run for array inputs (inner product, as the reference
        code; on L2-normalised rows that is cosine). Graph inputs keep their own metric.
    n_threads : int, default 0
        Threads; 0 = all cores.
    device : {"auto", "cpu", "cuda", "cuda:N"}, default "auto"
        Where the kNN searches of array inputs and the graph comparison run (rules in
        ``matalign._device``; "auto" counts GPU input and N as for ``knn``). Same result on
        both.

    Returns
    -------
    float
        In [0, 1]; 1 when every neighbourhood agrees.

    Raises
    ------
    TypeError
        For unsupported dtypes.
    ValueError
        For NaN/Inf, N mismatch, k outside 1..N−1, an unknown metric, a graph with fewer than
        k columns or a graph of separate queries.

    Warns
    -----
    UserWarning
        If X or Y is an approximate KnnGraph (``method`` other than "exact"): the result is
        approximate; the warning gives the graph's method and recall.

    Examples
    --------
    >>> import numpy as np
    >>> import matalign as ma
    >>> rng = np.random.default_rng(0)
    >>> X = rng.normal(size=(500, 16))
    >>> Z = rng.normal(size=(500, 16))
    >>> ma.mutual_knn(X, X, k=10)
    1.0
    >>> print(f"{ma.mutual_knn(X, Z, k=10):.2f}")
    0.02
    >>> g = ma.knn(X, k=20)
    >>> ma.mutual_knn(g, X, k=10)
    1.0
    """
    metric = check_choice(metric, "metric", METRICS)
    dev = _device.resolve(device, _array_of(X), _array_of(Y), n=_n_hint(X))
    gx, gy, n_threads = _prepare(X, Y, k, metric, n_threads, dev=_cuda_or_none(dev))
    return _engine.mutual_knn(gx.indices, gy.indices, n_threads=n_threads,
                              device=_cuda_or_none(dev))


def local_agreement(X, Y, *, k=None, metric="ip", n_threads=0, device="auto") -> np.ndarray:
    """Per-structure neighbourhood agreement ``|knn_X(i) ∩ knn_Y(i)| / k``.

    Its mean is :func:`mutual_knn`; low values point at the structures on which two models
    disagree.

    Parameters
    ----------
    X, Y : array_like (N, D1) and (N, D2), float32 or float64, or KnnGraph
        Embeddings of the same N structures, or their self kNN graphs.
    k : int, default 10
        Neighbours per row, 1..N−1.
    metric : {"ip", "l2", "cosine"}, default "ip"
        Metric of the kNN searches run for array inputs; graphs keep their own.
    n_threads : int, default 0
        Threads; 0 = all cores.
    device : {"auto", "cpu", "cuda", "cuda:N"}, default "auto"
        Where the kNN searches of array inputs and the graph comparison run (rules in
        ``matalign._device``; "auto" counts GPU input and N as for ``knn``). Same result on
        both.

    Returns
    -------
    numpy.ndarray, shape (N,), float64
        Values in {0, 1/k, ..., 1}.

    Raises
    ------
    TypeError
        For unsupported dtypes.
    ValueError
        As :func:`mutual_knn`.

    Warns
    -----
    UserWarning
        If X or Y is an approximate KnnGraph (``method`` other than "exact"): the result is
        approximate; the warning gives the graph's method and recall.

    Examples
    --------
    >>> import numpy as np
    >>> import matalign as ma
    >>> rng = np.random.default_rng(0)
    >>> X = rng.normal(size=(200, 8))
    >>> a = ma.local_agreement(X, X, k=5)
    >>> a.shape, a.dtype, float(a.min())
    ((200,), dtype('float64'), 1.0)
    """
    metric = check_choice(metric, "metric", METRICS)
    dev = _device.resolve(device, _array_of(X), _array_of(Y), n=_n_hint(X))
    gx, gy, n_threads = _prepare(X, Y, k, metric, n_threads, fn="local_agreement",
                                 dev=_cuda_or_none(dev))
    return _engine.local_agreement(gx.indices, gy.indices, n_threads=n_threads,
                                   device=_cuda_or_none(dev))


def cknna(X, Y, *, k=None, eps=0.0, n_threads=0, device="auto") -> float:
    """CKNNA: centred kernel nearest-neighbour alignment (Huh et al. 2024), exact, O(N·k).

    With K = XXᵀ, L = YYᵀ and the kNN masks Mᴷ, Mᴸ (largest inner product, self excluded),
    M = Mᴷ∘Mᴸ: CKNNA = HSIC₁(M∘K, M∘L) / (√(HSIC₁(Mᴷ∘K, Mᴷ∘K)·HSIC₁(Mᴸ∘L, Mᴸ∘L)) + eps), with
    the unbiased HSIC estimator exactly as the reference code computes it (docs/METRICS.md).

    Parameters
    ----------
    X, Y : array_like (N, D1) and (N, D2), float32 or float64, or KnnGraph
        Embeddings of the same N structures (N >= 4), or their inner-product self kNN graphs
        (metric "ip" or "cosine"; their values are the kernel values). Arrays are searched by
        inner product, as the reference code. Preprocess first (``ma.preprocess``) to
        reproduce the reference pipeline.
    k : int, default 10
        Neighbours per row, 1..N−1.
    eps : float, default 0.0
        Added to the denominator. 0 is exact; 1e-6 reproduces the reference code.
    n_threads : int, default 0
        Threads; 0 = all cores.
    device : {"auto", "cpu", "cuda", "cuda:N"}, default "auto"
        Where the kNN searches of array inputs and the graph comparison run (rules in
        ``matalign._device``; "auto" counts GPU input and N as for ``knn``). Same result on
        both.

    Returns
    -------
    float
        The CKNNA value; 1.0 for identical spaces.

    Raises
    ------
    TypeError
        For unsupported dtypes or a non-numeric eps.
    ValueError
        For NaN/Inf, N mismatch, N < 4, k outside 1..N−1, an l2 graph, a graph with fewer than
        k columns, a negative eps, or an undefined ratio (zero self-HSIC with eps=0).

    Warns
    -----
    UserWarning
        If X or Y is an approximate KnnGraph (``method`` other than "exact"): the result is
        approximate; the warning gives the graph's method and recall.

    Examples
    --------
    >>> import numpy as np
    >>> import matalign as ma
    >>> rng = np.random.default_rng(0)
    >>> X = rng.normal(size=(500, 16))
    >>> Y = X + 0.1 * rng.normal(size=(500, 16))
    >>> Z = rng.normal(size=(500, 16))
    >>> print(f"{ma.cknna(X, X, k=10):.3f}")
    1.000
    >>> ma.cknna(X, Y, k=10) > 0.5 > ma.cknna(X, Z, k=10)
    True
    """
    eps = check_eps(eps)
    dev = _device.resolve(device, _array_of(X), _array_of(Y), n=_n_hint(X))
    gx, gy, n_threads = _prepare(X, Y, k, "ip", n_threads, ip_only=True, min_n=4,
                              why="cknna's unbiased HSIC estimator divides by N - 3", fn="cknna",
                              dev=_cuda_or_none(dev))
    with _memory.reraise(f"cknna(N={gx.n}, k={gx.k})", _memory.cknna_bytes(gx.n, gx.k)):
        return _cknna_pair(gx, gy, eps, n_threads, _cuda_or_none(dev))


def _cknna_pair(gx: KnnGraph, gy: KnnGraph, eps: float, n_threads: int, device=None) -> float:
    """CKNNA of two inner-product self graphs (the kernel of both forms)."""
    return float(_engine.cknna(gx.indices, gx.values, gy.indices, gy.values, eps=eps,
                               n_threads=n_threads, device=device)[0])


def graph_matrices(inputs, labels, wanted, *, k, knn_metric="ip", eps=0.0, n_threads=0,
                   stage=None) -> dict:
    """``cknna`` and/or ``mutual_knn`` (M, M) matrices of M validated inputs (arrays or self
    KnnGraphs), from one (or two) kNN graphs per model.

    cknna uses inner-product graphs, mutual_knn ``knn_metric`` graphs (one search when they
    agree). Entry (a, b) equals ``cknna(inputs[a], inputs[b], k=k, eps=eps)`` resp.
    ``mutual_knn(..., k=k, metric=knn_metric)`` bit for bit. ``stage(work)``: a context
    manager yielding each step's progress callback (None: no progress).
    """
    stage = stage or no_progress
    m = len(inputs)
    ip_graphs, mk_graphs = [None] * m, [None] * m
    for i, obj in enumerate(inputs):
        search = 0.0 if isinstance(obj, KnnGraph) else float(obj.shape[0]) ** 2 * obj.shape[1]
        if "cknna" in wanted:
            with stage(search) as cb:
                ip_graphs[i] = self_graph(obj, labels[i], k, "ip", n_threads, progress=cb)
        if "mutual_knn" in wanted:
            if ip_graphs[i] is not None and (isinstance(obj, KnnGraph) or knn_metric == "ip"):
                mk_graphs[i] = ip_graphs[i]  # the same graph: searched once
            else:
                with stage(search) as cb:
                    mk_graphs[i] = self_graph(obj, labels[i], k, knn_metric, n_threads,
                                              progress=cb)
    out = {}
    n = (ip_graphs[0] or mk_graphs[0]).n
    with stage(float(n) * k * m * m):
        if "mutual_knn" in wanted:
            mat = np.empty((m, m))
            for a in range(m):
                for b in range(a, m):
                    # |knn_a(i) ∩ knn_b(i)| is symmetric, so is the mean.
                    mat[a, b] = mat[b, a] = _engine.mutual_knn(
                        mk_graphs[a].indices, mk_graphs[b].indices, n_threads=n_threads)
            out["mutual_knn"] = mat
        if "cknna" in wanted:
            mat = np.empty((m, m))
            for a in range(m):
                for b in range(m):
                    # CKNNA is not symmetric (Σ(ÃB̃) pairs column sums of one masked kernel with
                    # row sums of the other), so both orders are computed: O(N·k) each.
                    try:
                        mat[a, b] = _cknna_pair(ip_graphs[a], ip_graphs[b], eps, n_threads)
                    except ValueError as exc:
                        raise ValueError(f"cknna of {labels[a]} with {labels[b]}: {exc}") \
                            from exc
            out["cknna"] = mat
    return out


def _searches(req) -> int:
    return ("cknna" in req.wanted) + ("mutual_knn" in req.wanted and
                                      ("cknna" not in req.wanted or req.knn_metric != "ip"))


def _min_rows(req):
    if "cknna" in req.wanted:
        return (4, "cknna", "its unbiased HSIC estimator divides by N - 3")
    return (2, "mutual_knn", "a pair of rows")


def _plan(req):
    n, k, m = req.n, req.k, len(req.inputs)
    arrays = [A for A in req.arrays if A is not None]
    held = _searches(req) * sum(_memory.graph_bytes(n, k, A.dtype.itemsize) for A in arrays)
    held += 2 * m * n * k * 8  # contiguous int64 / float64 copies of the graphs' arrays
    engine = [_memory.cknna_bytes(n, k)]
    engine += [_memory.knn_bytes(n, n, A.shape[1], k, A.dtype.itemsize, n_threads=req.threads)
               for A in arrays]
    work = float(n) * k * m * m + _searches(req) * sum(float(n) ** 2 * A.shape[1]
                                                        for A in arrays)
    return held + max(engine), work


def _run(req, job):
    return graph_matrices(req.inputs, req.labels, req.wanted, k=req.k,
                          knn_metric=req.knn_metric, eps=req.eps, n_threads=req.n_threads,
                          stage=job.stage)


MATRIX_STAGE = MatrixStage(metrics=("cknna", "mutual_knn"), per_model=False, graph_input=True,
                           min_rows=_min_rows, plan=_plan, run=_run)
