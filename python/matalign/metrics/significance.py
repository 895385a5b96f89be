"""Significance of an alignment value: permutation null and bootstrap intervals.

- :func:`permutation_test` recomputes a metric with the rows of Y shuffled, which destroys the
  pairing of structures while keeping each space's own geometry. For graph metrics
  (``mutual_knn``, ``cknna``, ``local_agreement``) pass :class:`~matalign.KnnGraph` inputs:
  shuffling the rows of a graph is a relabelling (O(N·k)), so no kNN search is repeated.
- :func:`bootstrap_ci` resamples per-structure terms (``local_agreement``) to put a confidence
  interval on their mean. It treats the terms as fixed: it does not redo the kNN graphs, so
  it is not an interval for a graph statistic at sample size N. For that use
  ``ma.confidence_interval`` (subsampling without replacement; docs/STATISTICS.md).

Both record their seed, and give the same result for the same seed.
"""

from __future__ import annotations

import numbers
from dataclasses import dataclass

import numpy as np

from .._validate import check_same_structures
from .._validate import as_matrix, check_choice, check_int, check_same_n, describe
from ..knn import KnnGraph

__all__ = ["SignificanceResult", "permutation_test", "bootstrap_ci", "permute_rows"]

ALTERNATIVES = ("greater", "less", "two-sided")


@dataclass(frozen=True, eq=False)
class SignificanceResult:
    """Outcome of :func:`permutation_test`.

    Attributes
    ----------
    value : float
        The metric on the real pairing, ``metric_fn(X, Y, **kw)``.
    p_value : float
        (1 + #{null values at least as extreme as ``value``}) / (1 + n_permutations): the
        permutation p-value, never 0.
    null : numpy.ndarray, shape (n_permutations,), float64
        The metric on each shuffled pairing, in the order drawn.
    seed : int
        Seed of ``np.random.default_rng`` that drew the permutations.
    n_permutations : int
        Number of permutations.
    alternative : {"greater", "less", "two-sided"}
        Which tail counts as extreme: "greater" for similarities (CKA, dCor, CKNNA, mutual
        kNN), "less" for the information imbalance (smaller means more informative).
    """

    value: float
    p_value: float
    null: np.ndarray
    seed: int
    n_permutations: int
    alternative: str = "greater"

    def __repr__(self) -> str:
        return (f"SignificanceResult(value={self.value:.6g}, p_value={self.p_value:.6g}, "
                f"null=<{self.null.size} values, mean {float(np.mean(self.null)):.6g}>, "
                f"seed={self.seed}, n_permutations={self.n_permutations}, "
                f"alternative={self.alternative!r})")


def _permute_graph(g: KnnGraph, perm: np.ndarray) -> KnnGraph:
    """The self graph of the rows Y[perm], from the graph of Y, by relabelling (O(N·k))."""
    inv = np.empty_like(perm)
    inv[perm] = np.arange(perm.size, dtype=perm.dtype)
    indices = inv[g.indices[perm]]
    values = g.values[perm]
    # Restore the documented order (best value first, ties by lower index) in the new labels.
    key = values if g.metric == "l2" else -values
    order = np.lexsort((indices, key), axis=-1)
    indices = np.take_along_axis(indices, order, axis=1)
    values = np.take_along_axis(values, order, axis=1)
    return KnnGraph(indices, values, g.metric, g.self_excluded, g.recall, g.method)


def permute_rows(Y, perm):
    """Y with its rows reordered as Y[perm], for an array or a self KnnGraph.

    For a graph, row i of the result is the neighbour list of Y's row perm[i], relabelled to
    the new row numbers (new_indices = inv_perm[indices[perm]]) and re-sorted so that ties stay
    ordered by lower index: O(N·k), no search. It equals ``ma.knn(Y_array[perm], ...)``
    except where a tie straddles the k-th neighbour (the tie-break picks by index).

    Parameters
    ----------
    Y : array_like (N, D) or KnnGraph
        Rows to reorder (an array is validated and copied as ``Y[perm]``).
    perm : array_like of int, shape (N,)
        A permutation of 0..N−1.

    Returns
    -------
    numpy.ndarray or KnnGraph
        Of the same kind as ``Y``.

    Raises
    ------
    ValueError
        If ``perm`` is not a permutation of 0..N−1, or Y is a graph of separate queries.

    Examples
    --------
    >>> import numpy as np
    >>> import matalign as ma
    >>> from matalign.metrics.significance import permute_rows
    >>> Y = np.array([[0.0], [1.0], [3.0], [7.0]])
    >>> perm = np.array([2, 0, 3, 1])
    >>> g = permute_rows(ma.knn(Y, k=2, metric="l2"), perm)
    >>> bool(np.array_equal(g.indices, ma.knn(Y[perm], k=2, metric="l2").indices))
    True
    """
    perm = np.asarray(perm)
    if isinstance(Y, KnnGraph):
        if not Y.self_excluded:
            raise ValueError("Y is a KnnGraph of separate queries (self_excluded=False); only a "
                             "self graph can be permuted")
        n = Y.n
    else:
        Y = as_matrix(Y, "Y")
        n = Y.shape[0]
    if (perm.ndim != 1 or perm.size != n or perm.dtype.kind not in "iu"
            or not np.array_equal(np.sort(perm), np.arange(n))):
        raise ValueError(f"perm must be a permutation of 0..N-1 with N={n}; got an array of "
                         f"shape {perm.shape} and dtype {perm.dtype.name}")
    perm = perm.astype(np.int64, copy=False)
    if isinstance(Y, KnnGraph):
        return _permute_graph(Y, perm)
    return np.asarray(Y[perm])


def _as_float(value, what: str) -> float:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (numbers.Real, np.floating)):
        raise TypeError(
            f"metric_fn must return a real number; {what} returned {describe(value)} {value!r} "
            f"(for information_imbalance, which returns two values, pass e.g. "
            f"lambda X, Y: ma.information_imbalance(X, Y)[0] with alternative='less')")
    v = float(value)
    if not np.isfinite(v):
        raise ValueError(f"metric_fn returned {v!r} on {what}; the test needs finite values")
    return v


def permutation_test(metric_fn, X, Y, *, n_permutations=100, alternative="greater", seed=0,
                     **kw) -> SignificanceResult:
    """Permutation test of an alignment metric: is X paired with Y better than at random?

    Computes ``value = metric_fn(X, Y, **kw)``, then the null distribution
    ``metric_fn(X, permute_rows(Y, perm), **kw)`` for ``n_permutations`` permutations drawn
    with ``np.random.default_rng(seed)``, and the p-value
    (1 + #{null at least as extreme}) / (1 + n_permutations).

    How to use it with each metric:

    - ``ma.cka``, ``ma.distance_correlation``: pass arrays. Each permutation costs one metric
      evaluation (O(N·D²) for linear CKA, O(N²·D) for RBF CKA and dCor). With
      ``sigma="median"`` the RBF bandwidth of Y is re-estimated on each permutation's pair
      sample; pass a fixed ``sigma`` for a strictly exchangeable null.
    - ``ma.mutual_knn``, ``ma.cknna``: pass the KnnGraphs (``ma.knn(X, k=...)``); Y's graph is
      relabelled per permutation in O(N·k), so the test costs about n_permutations × O(N·k).
      For ``cknna`` build the graphs with an inner-product metric (``"ip"`` or ``"cosine"``).
    - ``ma.information_imbalance``: it returns two values; test one direction with
      ``lambda X, Y: ma.information_imbalance(X, Y)[0]`` and ``alternative="less"``.

    Parameters
    ----------
    metric_fn : callable ``(X, Y, **kw) -> float``
        The metric.
    X : array_like (N, D1) or KnnGraph
        First space, passed unchanged.
    Y : array_like (N, D2) or KnnGraph
        Second space, whose rows are shuffled (an array is copied per permutation).
    n_permutations : int, default 100
        Number of permutations (>= 1); the smallest attainable p-value is 1/(n_permutations+1).
    alternative : {"greater", "less", "two-sided"}, default "greater"
        "greater": large values are significant (similarities); "less": small values are
        (information imbalance); "two-sided": 2·min of the two one-sided p-values, capped at 1.
    seed : int, default 0
        Seed of the permutations; recorded in the result.
    **kw
        Keyword options of ``metric_fn`` (``k=10``, ``unbiased=True``...).

    Returns
    -------
    SignificanceResult

    Raises
    ------
    TypeError
        If ``metric_fn`` is not callable or does not return a real number.
    ValueError
        For N mismatch, ``n_permutations < 1``, an unknown alternative, a non-finite metric
        value, or anything ``metric_fn`` raises for its inputs.

    Examples
    --------
    >>> import numpy as np
    >>> import matalign as ma
    >>> rng = np.random.default_rng(0)
    >>> X = rng.normal(size=(200, 8))
    >>> Y = X + 0.5 * rng.normal(size=(200, 8))
    >>> res = ma.permutation_test(ma.cka, X, Y, n_permutations=50, seed=1)
    >>> print(f"{res.value:.3f} {res.p_value:.4f} {res.null.max() < res.value}")
    0.792 0.0196 True
    >>> gx, gy = ma.knn(X, k=10), ma.knn(Y, k=10)   # graphs: each permutation is O(N·k)
    >>> res = ma.permutation_test(ma.mutual_knn, gx, gy, n_permutations=50, k=10)
    >>> print(f"{res.p_value:.4f}")
    0.0196
    """
    if not callable(metric_fn):
        raise TypeError(f"metric_fn must be callable(X, Y, **kw); got {describe(metric_fn)}")
    n_permutations = check_int(n_permutations, "n_permutations", 1)
    alternative = check_choice(alternative, "alternative", ALTERNATIVES)
    seed = check_int(seed, "seed", 0)
    for obj, name in ((X, "X"), (Y, "Y")):
        if isinstance(obj, KnnGraph) and not obj.self_excluded:
            raise ValueError(f"{name} is a KnnGraph of separate queries (self_excluded=False); "
                             f"the permutation test needs self graphs")
    check_same_structures((("X", X), ("Y", Y)))
    if not isinstance(X, KnnGraph):
        X = as_matrix(X, "X")
    if not isinstance(Y, KnnGraph):
        Y = as_matrix(Y, "Y")
    n = check_same_n(X, Y)

    value = _as_float(metric_fn(X, Y, **kw), "the real pairing")
    rng = np.random.default_rng(seed)
    null = np.empty(n_permutations, dtype=np.float64)
    for b in range(n_permutations):
        perm = rng.permutation(n)
        null[b] = _as_float(metric_fn(X, permute_rows(Y, perm), **kw), f"permutation {b}")
    b1 = n_permutations + 1
    p_greater = (1 + int(np.count_nonzero(null >= value))) / b1
    p_less = (1 + int(np.count_nonzero(null <= value))) / b1
    if alternative == "greater":
        p = p_greater
    elif alternative == "less":
        p = p_less
    else:
        p = min(1.0, 2.0 * min(p_greater, p_less))
    null.flags.writeable = False
    return SignificanceResult(value, float(p), null, seed, n_permutations, alternative)


def bootstrap_ci(per_structure_values, *, n_boot=1000, level=0.95, seed=0) -> tuple[float, float]:
    """Percentile bootstrap confidence interval of the mean of per-structure terms.

    Draws ``n_boot`` resamples of the N values with replacement (``np.random.default_rng(seed)``),
    takes each resample's mean, and returns the (1 − level)/2 and (1 + level)/2 quantiles of
    those means. Typical input: ``ma.local_agreement(X, Y, k=10)``, whose mean is
    ``ma.mutual_knn``. Memory stays O(N) (resamples are drawn in blocks).

    Parameters
    ----------
    per_structure_values : array_like, shape (N,)
        Real, finite values, one per structure (N >= 2); computed in float64.
    n_boot : int, default 1000
        Number of bootstrap resamples (>= 1).
    level : float in (0, 1), default 0.95
        Confidence level.
    seed : int, default 0
        Seed of the resampling.

    Returns
    -------
    tuple of two floats
        (low, high).

    Raises
    ------
    TypeError
        For a non-numeric input or option.
    ValueError
        For an input that is not 1-D, has fewer than 2 values or holds NaN/Inf, or a level
        outside (0, 1).

    Examples
    --------
    >>> import numpy as np
    >>> import matalign as ma
    >>> rng = np.random.default_rng(0)
    >>> X = rng.normal(size=(500, 8))
    >>> Y = X + 0.5 * rng.normal(size=(500, 8))
    >>> a = ma.local_agreement(X, Y, k=10)
    >>> low, high = ma.bootstrap_ci(a, seed=0)
    >>> bool(low < a.mean() < high)
    True
    >>> print(f"{a.mean():.3f} [{low:.3f}, {high:.3f}]")
    0.422 [0.407, 0.436]
    """
    n_boot = check_int(n_boot, "n_boot", 1)
    seed = check_int(seed, "seed", 0)
    if isinstance(level, (bool, np.bool_)) or not isinstance(level, numbers.Real):
        raise TypeError(f"level must be a real number in (0, 1); got {describe(level)} {level!r}")
    level = float(level)
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must be in (0, 1), e.g. 0.95; got {level!r}")
    v = np.asarray(per_structure_values)
    if v.dtype.kind not in "iuf":
        raise TypeError(
            f"per_structure_values must be real numbers; got dtype {v.dtype.name}")
    if v.ndim != 1:
        raise ValueError(
            f"per_structure_values must be 1-D (one value per structure); got shape {v.shape}")
    if v.size < 2:
        raise ValueError(f"per_structure_values needs at least 2 values; got {v.size}")
    v = v.astype(np.float64, copy=False)
    bad = np.flatnonzero(~np.isfinite(v))
    if bad.size:
        raise ValueError(
            f"per_structure_values has a non-finite value at index {int(bad[0])}: "
            f"{v[bad[0]]!r}")
    n = v.size
    # Work on v / max|v| so that neither the sums nor the quantile interpolation overflow for
    # values near the float64 limit (e.g. 1e308); scaling by a power of two is exact.
    e = int(np.frexp(np.max(np.abs(v)))[1])
    u = np.ldexp(v, -e)
    rng = np.random.default_rng(seed)
    means = np.empty(n_boot, dtype=np.float64)
    step = max(1, (1 << 22) // n)
    for start in range(0, n_boot, step):
        c = min(step, n_boot - start)
        idx = rng.integers(0, n, size=(c, n))
        means[start:start + c] = u[idx].mean(axis=1)
    low, high = np.quantile(means, [(1.0 - level) / 2.0, (1.0 + level) / 2.0])
    return float(np.ldexp(low, e)), float(np.ldexp(high, e))
