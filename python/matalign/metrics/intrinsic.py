"""Intrinsic dimension from the two nearest neighbours (TwoNN, Facco et al. 2017; definitions: docs/METRICS.md)."""

from __future__ import annotations

import warnings

import numpy as np

from .._validate import check_threads, as_matrix, check_choice, check_fraction
from ..knn import knn
from ._global import MatrixStage, no_progress

__all__ = ["intrinsic_dimension", "intrinsic_dimension_per_model", "MATRIX_STAGE"]

METHODS = ("twonn", "mle")


def intrinsic_dimension(X, *, method="twonn", fraction=0.9, n_threads=0) -> float:
    """Intrinsic dimension of the manifold the rows of X lie on, from their 2 nearest neighbours.

    For each row, μᵢ = r₂/r₁ is the ratio of the Euclidean distances to its second and first
    nearest neighbours (self excluded; exact search with exact float64 rescoring).

    - ``method="twonn"`` (as DADApy ``compute_id_2NN``): sort log μ ascending, keep the first
      n = ⌊fraction·N⌋ values xᵢ, set yᵢ = −log(1 − i/N) for i = 1..n, and return the
      least-squares slope through the origin d = Σxy / Σx².
    - ``method="mle"``: d = (N − 1) / Σ log μᵢ over all rows (``fraction`` unused).

    Rows with r₁ = 0 (an exact duplicate elsewhere in X) have no finite μ; they are excluded
    with a ``UserWarning`` giving their count, and N above is the number of rows kept.

    Parameters
    ----------
    X : array_like, shape (N, D), float32 or float64
        Embeddings (N >= 3).
    method : {"twonn", "mle"}, default "twonn"
        Estimator.
    fraction : float in (0, 1], default 0.9
        Share of the smallest μ used by the TwoNN fit (the largest are the noisiest). With
        ``fraction=1`` the largest μ would get y = −log(0) = ∞, so TwoNN then raises.
    n_threads : int, default 0
        Threads; 0 = all cores.

    Returns
    -------
    float
        The estimated dimension.

    Raises
    ------
    TypeError
        For unsupported dtypes.
    ValueError
        For NaN/Inf, N < 3 (also after excluding duplicates), ``fraction`` outside (0, 1], a
        fit that keeps no point or the point with y = ∞, or all μ = 1 (zero denominator).

    Warns
    -----
    UserWarning
        When rows with a duplicate (r₁ = 0) are excluded.

    Examples
    --------
    >>> import numpy as np
    >>> import matalign as ma
    >>> rng = np.random.default_rng(0)
    >>> X = rng.normal(size=(4000, 3)) @ rng.normal(size=(3, 32))  # a 3-D subspace of R^32
    >>> print(round(ma.intrinsic_dimension(X)))
    3
    >>> print(round(ma.intrinsic_dimension(X, method="mle")))
    3
    """
    method = check_choice(method, "method", METHODS)
    fraction = check_fraction(fraction, "fraction")
    n_threads = check_threads(n_threads)
    X = as_matrix(X, "X")
    n_rows = X.shape[0]
    if n_rows < 3:
        raise ValueError(f"intrinsic_dimension needs at least 3 rows; got N={n_rows}")

    graph = knn(X, k=2, metric="l2", n_threads=n_threads, rescore=True)
    d2 = graph.values.astype(np.float64)  # squared distances to the 1st and 2nd neighbours
    d1, d2 = np.maximum(d2[:, 0], 0.0), np.maximum(d2[:, 1], 0.0)
    duplicate = d1 <= 0.0
    n_dup = int(np.count_nonzero(duplicate))
    if n_dup:
        verbs = ("row has", "was") if n_dup == 1 else ("rows have", "were")
        warnings.warn(
            f"intrinsic_dimension: {n_dup} {verbs[0]} a duplicate (r1 = 0) and {verbs[1]} "
            "excluded",
            UserWarning, stacklevel=2)
        d1, d2 = d1[~duplicate], d2[~duplicate]
    n = d1.size
    if n < 3:
        raise ValueError(
            f"intrinsic_dimension needs at least 3 rows without a duplicate; got {n} of "
            f"N={n_rows} ({n_dup} excluded with r1 = 0)")
    log_mu = 0.5 * np.log(d2 / d1)  # log(r2/r1) = ½ log(d2/d1)

    if method == "mle":
        total = float(np.sum(log_mu))
        if total <= 0.0:
            raise ValueError(
                "intrinsic_dimension (mle): every row has r2 == r1, so Σ log μ = 0 and the "
                "estimate is undefined")
        return (n - 1) / total

    n_fit = int(n * fraction)
    if n_fit < 1:
        raise ValueError(
            f"intrinsic_dimension (twonn): fraction={fraction} keeps floor({fraction}·{n}) = 0 "
            f"points; use a larger fraction")
    if n_fit >= n:
        raise ValueError(
            f"intrinsic_dimension (twonn): fraction={fraction} keeps all {n} points, and the "
            f"largest μ has empirical CDF 1 and y = −log(0) = ∞; use fraction < 1 (default 0.9)")
    x = np.sort(log_mu)[:n_fit]
    y = -np.log(1.0 - np.arange(1, n_fit + 1, dtype=np.float64) / n)
    sxx = float(np.dot(x, x))
    if sxx <= 0.0:
        raise ValueError(
            f"intrinsic_dimension (twonn): the {n_fit} smallest μ are all 1 (r2 == r1), so the "
            "fit through the origin is undefined")
    return float(np.dot(x, y)) / sxx


def intrinsic_dimension_per_model(spaces, *, method="twonn", fraction=0.9, n_threads=0,
                                  stage=None) -> np.ndarray:
    """:func:`intrinsic_dimension` of each of M validated spaces, (M,) float64 (the per-model
    form :func:`matalign.alignment_matrix` runs). ``stage(work)``: a context manager per
    model."""
    stage = stage or no_progress
    values = []
    for A in spaces:
        with stage(float(A.shape[0]) ** 2 * A.shape[1]):
            values.append(intrinsic_dimension(A, method=method, fraction=fraction,
                                              n_threads=n_threads))
    return np.array(values, dtype=np.float64)


def _min_rows(req):
    return (3, "intrinsic_dimension", "TwoNN needs two neighbours per row")


def _plan(req):
    from .. import _memory

    need = max(_memory.knn_bytes(req.n, req.n, A.shape[1], 2, A.dtype.itemsize, metric="l2",
                                 rescore=True, n_threads=req.threads)
               for A in req.arrays) + req.n * 2 * 8
    return need, sum(float(req.n) ** 2 * d for d in req.dims)


def _run(req, job):
    return {"intrinsic_dimension": intrinsic_dimension_per_model(
        req.arrays, method=req.id_method, fraction=req.id_fraction, n_threads=req.n_threads,
        stage=job.stage)}


MATRIX_STAGE = MatrixStage(metrics=("intrinsic_dimension",), per_model=True, graph_input=False,
                           min_rows=_min_rows, plan=_plan, run=_run)
