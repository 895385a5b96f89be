"""Local (neighbourhood) alignment metrics computed on kNN graphs (DESIGN.md §1.2, §2).

Each input may be an embedding matrix or a :class:`~matalign.KnnGraph`. A matrix is turned into
its kNN graph once (exact search); a graph is reused as is (truncated to its first k columns
when it has more). The metric itself then costs O(N·k) time and memory.
"""

from __future__ import annotations

import functools
import numbers
import warnings

import numpy as np

from .. import _core
from .. import _device
from .. import _memory
from .._validate import check_same_structures
from .._validate import check_threads, as_matrix, check_choice, check_int, check_k, check_same_n, describe
from ..knn import METRICS, KnnGraph, _self_graph

__all__ = ["mutual_knn", "local_agreement", "cknna"]

_IP_METRICS = ("ip", "cosine")


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
    return as_matrix(obj, name)


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
        raise ValueError(f"need at least {min_n} rows ({why}); got N={n}")
    k = check_k(k, n)
    n_threads = check_threads(n_threads)
    if ip_only:
        for r, name in zip((rx, ry), names):
            if isinstance(r, KnnGraph) and r.metric not in _IP_METRICS:
                raise ValueError(
                    f"cknna needs inner-product graphs (metric 'ip' or 'cosine'), because its "
                    f"kernel values are the inner products K_ij; {name} is a KnnGraph with "
                    f"metric={r.metric!r}")
    _check_memory(rx, ry, n, k, metric, n_threads, fn, dev)
    device = "cpu" if dev is None else str(dev)
    gx = _self_graph(rx, "X", k, metric, n_threads, device=device)
    gy = _self_graph(ry, "Y", k, metric, n_threads, device=device)
    _warn_if_approximate(gx, "X", fn)
    _warn_if_approximate(gy, "Y", fn)
    return gx, gy, n_threads


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


def mutual_knn(X, Y, *, k=10, metric="ip", n_threads=0, device="auto") -> float:
    """Mutual k-nearest-neighbour overlap of two embedding spaces of the same N structures.

    mutual_knn = (1/N) Σ_i |knn_X(i) ∩ knn_Y(i)| / k, self excluded (Huh et al. 2024).

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
    if dev.is_cuda:
        return float(_core.mutual_knn_cuda(_indices(gx), _indices(gy), per_row=False,
                                           device=dev.index))
    return float(_core.mutual_knn(_indices(gx), _indices(gy), n_threads=n_threads))


def local_agreement(X, Y, *, k=10, metric="ip", n_threads=0, device="auto") -> np.ndarray:
    """Per-structure neighbourhood agreement |knn_X(i) ∩ knn_Y(i)| / k.

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
    if dev.is_cuda:
        return np.asarray(_core.mutual_knn_cuda(_indices(gx), _indices(gy), per_row=True,
                                                device=dev.index), dtype=np.float64)
    return np.asarray(_core.local_agreement(_indices(gx), _indices(gy), n_threads=n_threads),
                      dtype=np.float64)


def cknna(X, Y, *, k=10, eps=0.0, n_threads=0, device="auto") -> float:
    """CKNNA: centred kernel nearest-neighbour alignment (Huh et al. 2024), exact, O(N·k).

    With K = XXᵀ, L = YYᵀ and the kNN masks Mᴷ, Mᴸ (largest inner product, self excluded),
    M = Mᴷ∘Mᴸ: CKNNA = HSIC₁(M∘K, M∘L) / (√(HSIC₁(Mᴷ∘K, Mᴷ∘K)·HSIC₁(Mᴸ∘L, Mᴸ∘L)) + eps), with
    the unbiased HSIC estimator exactly as the reference code computes it (DESIGN.md §2).

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
    if isinstance(eps, (bool, np.bool_)) or not isinstance(eps, numbers.Real):
        raise TypeError(f"eps must be a real number; got {describe(eps)} {eps!r}")
    eps = float(eps)
    if not (np.isfinite(eps) and eps >= 0.0):
        raise ValueError(f"eps must be a finite number >= 0; got {eps!r}")
    dev = _device.resolve(device, _array_of(X), _array_of(Y), n=_n_hint(X))
    gx, gy, n_threads = _prepare(X, Y, k, "ip", n_threads, ip_only=True, min_n=4,
                              why="cknna's unbiased HSIC estimator divides by N - 3", fn="cknna",
                              dev=_cuda_or_none(dev))
    vx, vy = gx.values, gy.values
    if vx.dtype == np.float32 and vy.dtype == np.float32:
        fn = _core.cknna_f32
        if dev.is_cuda:
            fn = functools.partial(_core.cknna_cuda_f32, device=dev.index)
    else:
        # Graph values are outputs of matalign, not user data: widening float32 values to
        # float64 so that two graphs of different dtypes can be combined loses nothing.
        fn = _core.cknna_f64
        if dev.is_cuda:
            fn = functools.partial(_core.cknna_cuda_f64, device=dev.index)
        vx, vy = vx.astype(np.float64, copy=False), vy.astype(np.float64, copy=False)
    # The binding returns (value, per_row, hsic_xy, hsic_xx, hsic_yy); only value is public.
    threads = {} if dev.is_cuda else {"n_threads": n_threads}
    with _memory.reraise(f"cknna(N={gx.n}, k={gx.k})", _memory.cknna_bytes(gx.n, gx.k)):
        result = fn(_indices(gx), np.ascontiguousarray(vx), _indices(gy),
                    np.ascontiguousarray(vy), eps, **threads)
    return float(result[0])
