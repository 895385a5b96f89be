"""Information imbalance (Glielmo et al. 2022), exact over all N (definitions: docs/METRICS.md).

Δ(X→Y) asks how well the neighbourhoods of X predict those of Y: for each i and each of its k
nearest neighbours j in X, the rank of j among i's neighbours in Y. The exact computation is
one kNN search in X and one RankCount pass in Y (O(N²·D) time, O(N·k) memory, no neighbour cap).

:func:`information_imbalance` (two spaces) and :func:`imbalance_matrix` (M spaces: one l2
search per model, then one RankCount pass per target space over the neighbours of all M
sources) share their kernels (:func:`_targets`, :func:`_ranks`, :func:`_delta`): the ranks are
integers, so every matrix entry equals the pairwise call bit for bit.
"""

from __future__ import annotations

import warnings

import numpy as np

from .. import _engine
from .. import executor as _executor
from .. import _device
from .. import _memory
from .._progress import progress_callback
from .._validate import check_same_structures
from .._validate import (check_threads, check_values, as_matrix, check_choice, check_int, check_k, check_progress,
                         check_same_n)
from ..knn import knn
from ._global import MatrixStage, no_progress, too_few_rows

__all__ = ["information_imbalance", "imbalance_matrix", "MATRIX_STAGE"]

METHODS = ("exact", "subset")


def _ranks(A: np.ndarray, targets: np.ndarray, n_threads: int, callback, dev=None) -> np.ndarray:
    """rank_A(i, targets[i, t]) = 1 + count (Euclidean, ties by lower index), int64."""
    ex = _executor.current()
    if ex is not None and not getattr(dev, "is_cuda", False):
        # row blocks on the active executor: the same integers
        return _executor.rank_count(ex, A, targets, progress=callback) + 1
    counts = _engine.rank_count(A, targets, n_threads=n_threads, progress=callback, device=dev)
    return counts + 1


def _targets(A, k: int, n_threads: int, dev=None, progress=None) -> np.ndarray:
    """The k nearest neighbours of every row of A (Euclidean, self excluded), (N, k) int64."""
    where = "cpu" if dev is None else str(dev)
    return knn(A, k=k, metric="l2", n_threads=n_threads, device=where,
               progress=progress if progress is not None else False).indices


def _delta(ranks: np.ndarray, n: int) -> float:
    """Δ = (2/N)·mean of the (N, k) ranks."""
    return 2.0 * float(np.ascontiguousarray(ranks).mean(dtype=np.float64)) / n


def _directional(A: np.ndarray, B: np.ndarray, k: int, n_threads: int, callback,
                 dev=None) -> float:
    """Δ(A→B) = (2/N)·mean of rank_B(i, j) over i and over the k nearest j of i in A."""
    return _delta(_ranks(B, _targets(A, k, n_threads, dev), n_threads, callback, dev),
                  A.shape[0])


def imbalance_matrix(spaces, *, k=1, n_threads=0, stage=None) -> np.ndarray:
    """Δ(a → b) for every ordered pair of M validated host spaces: one l2 kNN search per
    model, then one RankCount pass per target space b over the concatenated neighbours of all
    M source models. Entry (a, b) equals ``information_imbalance(spaces[a], spaces[b], k=k)[0]``
    bit for bit. ``stage(work)``: a context manager yielding a progress callback per step."""
    stage = stage or no_progress
    n = spaces[0].shape[0]
    m = len(spaces)
    targets = []
    for A in spaces:
        with stage(float(n) * n * A.shape[1]) as cb:
            targets.append(_targets(A, k, n_threads, progress=cb))
    columns = np.concatenate(targets, axis=1)  # (N, M·k): model a's neighbours in block a
    out = np.empty((m, m))
    for b, B in enumerate(spaces):
        with stage(float(n) * n * (B.shape[1] + m * k)) as cb:
            ranks = _ranks(B, columns, n_threads, cb)
        for a in range(m):
            out[a, b] = _delta(ranks[:, a * k:(a + 1) * k], n)
    return out


def _min_rows(req):
    return (2, "information_imbalance", "each row needs a neighbour besides itself")


def _plan(req):
    n, k, m, nt = req.n, req.imbalance_k, len(req.inputs), req.threads
    held = 2 * m * n * k * 8           # the M targets and their concatenation
    engine = [_memory.knn_bytes(n, n, A.shape[1], k, A.dtype.itemsize, metric="l2",
                                n_threads=nt) for A in req.arrays]
    engine += [_memory.rank_count_bytes(n, A.shape[1], m * k, A.dtype.itemsize, n_threads=nt)
               for A in req.arrays]
    work = sum(float(n) * n * (2 * d + m * k) for d in req.dims)
    return held + max(engine), work


def _run(req, job):
    return {"information_imbalance": imbalance_matrix(req.arrays, k=req.imbalance_k,
                                                      n_threads=req.n_threads,
                                                      stage=job.stage)}


MATRIX_STAGE = MatrixStage(metrics=("information_imbalance",), per_model=False,
                           graph_input=False, min_rows=_min_rows, plan=_plan, run=_run)


def _exact_memory(X, Y, k: int, n_threads: int, dev) -> int:
    """Host bytes of one direction (they run one after the other): the l2 graph of the source,
    then its int64 targets and the RankCount pass in the target space."""
    n = X.shape[0]
    nt = _memory.threads(n_threads)
    need = 0
    for A, B in ((X, Y), (Y, X)):
        graph = _memory.graph_bytes(n, k, A.dtype.itemsize)
        if dev is not None and dev.is_cuda:
            step = graph + 3 * n * k * 8
        else:
            step = graph + max(_memory.knn_bytes(n, n, A.shape[1], k, A.dtype.itemsize,
                                                 metric="l2", n_threads=nt),
                               _memory.rank_count_bytes(n, B.shape[1], k, B.dtype.itemsize,
                                                        n_threads=nt))
        need = max(need, step)
    return need


def _exact(X, Y, k: int, n_threads: int, progress, dev=None) -> tuple[float, float]:
    n = X.shape[0]
    with progress_callback(progress, f"information imbalance N={n}") as callback:
        def phase(p: int):
            """Report the two RankCount passes as halves of one bar."""
            if callback is None:
                return None
            return lambda done, total: callback(p * total + done, 2 * total)

        d_xy = _directional(X, Y, k, n_threads, phase(0), dev)
        d_yx = _directional(Y, X, k, n_threads, phase(1), dev)
    return d_xy, d_yx


def _subset(X, Y, k: int, n_threads: int, progress, subset_size: int, seed: int):
    n = X.shape[0]
    repeats = max(1, n // subset_size)
    perm = np.random.default_rng(seed).permutation(n)
    chunks = [np.sort(c) for c in np.array_split(perm, repeats)]
    d_xy, d_yx = [], []
    with progress_callback(progress, f"information imbalance (subset) N={n}") as callback:
        for done, rows in enumerate(chunks):
            xc = np.asarray(X[rows])
            yc = np.asarray(Y[rows])
            d_xy.append(_directional(xc, yc, k, n_threads, None))
            d_yx.append(_directional(yc, xc, k, n_threads, None))
            if callback is not None:
                callback(done + 1, len(chunks))
    return float(np.mean(d_xy)), float(np.mean(d_yx))


def information_imbalance(X, Y, *, k=1, method="exact", n_threads=0, progress=False,
                          subset_size=2000, seed=0, device="auto") -> tuple[float, float]:
    """Information imbalances (Δ(X→Y), Δ(Y→X)) between two spaces of the same N structures.

    rank_Y(i, j) = 1 + #{l ≠ i : d_Y(i,l) < d_Y(i,j)} + #{l ≠ i : d_Y(i,l) = d_Y(i,j), l < j}
    with Euclidean distances (ties by lower index, as in kNN), and
    Δ(X→Y) = (2/N)·mean over i and over the k nearest neighbours j of i in X (self excluded,
    ties by lower index) of rank_Y(i, j). Δ near 0: X's neighbourhoods predict Y's; Δ near 1: X
    carries no information on Y. Δ(X→X) = (k+1)/N, the smallest possible value.

    Parameters
    ----------
    X, Y : array_like (N, D1) and (N, D2), float32 or float64
        Embeddings; row i of both is the same structure. Each space is searched in its own
        dtype.
    k : int, default 1
        Neighbours per row in the source space, 1..N−1.
    method : {"exact", "subset"}, default "exact"
        ``"exact"``: ranks over all N rows (no neighbour cap, no subsampling). ``"subset"``:
        DADApy's subsampled estimator (``return_information_imbalace``), for comparison only:
        the rows are shuffled with ``np.random.default_rng(seed)`` and split into
        max(1, N // subset_size) chunks of nearly equal size (each between subset_size and
        2·subset_size − 1 rows when N >= subset_size; nothing is dropped), the exact imbalance
        of each chunk is computed within that chunk (normalised by the chunk size), and the
        mean over chunks is returned. That estimates Δ at sample size ≈ subset_size, not at N,
        so it differs from the exact value; a ``UserWarning`` says so. With
        N < 2·subset_size there is one chunk, all rows, and the result is the exact value
        (no warning).
    n_threads : int, default 0
        Engine threads; 0 = all cores.
    progress : bool or callable(done, total), default False
        True shows a progress bar; a callable is called between tiles (between chunks for
        ``"subset"``).
    subset_size : int, default 2000
        Chunk size of ``method="subset"`` (at least k + 1); unused by ``"exact"``.
    seed : int, default 0
        Seed of the shuffle of ``method="subset"``; unused by ``"exact"``.
    device : {"auto", "cpu", "cuda", "cuda:N"}, default "auto"
        Where ``method="exact"`` runs its kNN searches and RankCount passes (rules in
        ``matalign._device``; GPU input is read in place). The GPU gives the same ranks as the
        CPU. ``method="subset"`` runs on the CPU.

    Returns
    -------
    tuple of two floats
        (Δ(X→Y), Δ(Y→X)).

    Raises
    ------
    TypeError
        For a dtype other than float32/float64, or a non-integer option.
    ValueError
        For NaN/Inf (naming the first bad row), N mismatch, N < 2, k outside 1..N−1, an
        unknown method, or subset_size < k + 1.

    Warns
    -----
    UserWarning
        With ``method="subset"`` and N >= 2·subset_size: the estimate is approximate.

    Examples
    --------
    >>> import numpy as np
    >>> import matalign as ma
    >>> rng = np.random.default_rng(0)
    >>> X = rng.normal(size=(1000, 3))
    >>> Y = np.concatenate([X, rng.normal(size=(1000, 3))], axis=1)  # Y holds X and noise
    >>> d_xy, d_yx = ma.information_imbalance(X, Y)
    >>> print(f"{d_xy:.3f} {d_yx:.3f}")                              # Y predicts X better
    0.419 0.049
    >>> ma.information_imbalance(X, X)                                # (k + 1)/N
    (0.002, 0.002)
    """
    method = check_choice(method, "method", METHODS)
    n_threads = check_threads(n_threads)
    progress = check_progress(progress)
    seed = check_int(seed, "seed", 0)
    check_same_structures((("X", X), ("Y", Y)))
    dev = _device.resolve(device, X, Y) if method == "exact" else _device.resolve("cpu", X, Y)
    X = _device.matrix(X, "X", dev) if dev.is_cuda else as_matrix(X, "X", scan=False)
    Y = _device.matrix(Y, "Y", dev) if dev.is_cuda else as_matrix(Y, "Y", scan=False)
    n = check_same_n(X, Y)
    if n < 2:
        raise too_few_rows("information_imbalance", n, 2, "each row needs a neighbour besides "
                           "itself")
    k = check_k(k, n)
    if method == "exact":
        what = f"information_imbalance(N={n}, k={k})"
        need = _exact_memory(X, Y, k, n_threads, dev)
        _memory.check_memory(need, what, advice="pass a smaller k (the ranks are (N, k) int64)")
        for A, name in ((X, "X"), (Y, "Y")):
            if isinstance(A, np.ndarray):
                check_values(A, name)  # after the memory check: it reads the data
        with _memory.reraise(what, need):
            return _exact(X, Y, k, n_threads, progress, dev if dev.is_cuda else None)
    for A, name in ((X, "X"), (Y, "Y")):
        if isinstance(A, np.ndarray):
            check_values(A, name)
    subset_size = check_int(subset_size, "subset_size", 2)
    if subset_size < k + 1:
        raise ValueError(
            f"subset_size must be at least k + 1 = {k + 1} (each chunk needs k neighbours "
            f"besides the row itself); got subset_size={subset_size}")
    if n // subset_size > 1:
        warnings.warn(
            f"information_imbalance(method='subset') is approximate: it averages the exact "
            f"imbalance of {n // subset_size} random chunks of about {subset_size} rows (as "
            f"DADApy does), which estimates the imbalance at that sample size, not at N={n}; "
            f"use method='exact' for the exact value",
            UserWarning, stacklevel=2)
    return _subset(X, Y, k, n_threads, progress, subset_size, seed)
