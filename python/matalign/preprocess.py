"""Explicit preprocessing of embeddings (docs/METRICS.md): no metric preprocesses silently."""

from __future__ import annotations

import numbers

import numpy as np

from ._rows import row_norms, zero_rows_error
from ._validate import as_matrix, check_bool, describe

__all__ = ["preprocess"]


def _clip_threshold(A: np.ndarray, q: float):
    """The global clipping threshold: the q-quantile of |A| over all elements.

    ``np.quantile``'s default (linear interpolation between order statistics). Huh et al.'s
    ``remove_outliers(feats, q, exact=True)`` takes the order statistic
    ``sorted(|A|)[int(q * A.size)]`` instead, which differs from this by at most the gap
    between two adjacent sorted values. Returns the threshold in A's dtype.
    """
    flat = np.abs(A).reshape(-1)  # a new array, so np.quantile may partition it in place
    return A.dtype.type(np.quantile(flat, q, overwrite_input=True))


def preprocess(X, *, center=False, l2=False, clip_quantile=None) -> np.ndarray:
    """Center, clip and L2-normalise embeddings, in that order, into a new array.

    The reference pipeline of Huh et al. (2024) is ``preprocess(X, clip_quantile=0.95,
    l2=True)``. Every step works in X's dtype (sums and norms accumulate in float64).

    - ``center``: subtract each column's mean.
    - ``clip_quantile=q``: clamp every element to [−t, t], where t = ``np.quantile(|X|, q)``
      is one quantile over all N·D elements (global, as the reference code's exact mode, not
      per row; linear interpolation, whereas the reference code takes the order statistic
      ``sorted(|X|)[int(q·N·D)]`` — at most one gap between adjacent values apart).
      ``q = 1`` clips nothing.
    - ``l2``: divide each row by its Euclidean norm.

    Parameters
    ----------
    X : array_like, shape (N, D), float32 or float64
        Embeddings; never modified.
    center : bool, default False
        Center the columns.
    l2 : bool, default False
        L2-normalise the rows.
    clip_quantile : float in (0, 1] or None, default None
        Clip ``|X|`` at this global quantile; None clips nothing.

    Returns
    -------
    numpy.ndarray, shape (N, D), X's dtype
        A new C-ordered array (a copy even when no step is requested).

    Raises
    ------
    TypeError
        For unsupported dtypes, non-bool flags or a non-numeric ``clip_quantile``.
    ValueError
        For NaN/Inf, ``clip_quantile`` outside (0, 1], or (with ``l2=True``) rows that are zero
        after centering and clipping; the message names the first rows and their count.

    Examples
    --------
    >>> import numpy as np
    >>> import matalign as ma
    >>> X = np.array([[3.0, 4.0], [1.0, 0.0], [-10.0, 0.0]])
    >>> ma.preprocess(X, l2=True)
    array([[ 0.6,  0.8],
           [ 1. ,  0. ],
           [-1. ,  0. ]])
    >>> ma.preprocess(X, clip_quantile=0.5)  # |X| sorted: 0 0 1 3 4 10; median 2
    array([[ 2.,  2.],
           [ 1.,  0.],
           [-2.,  0.]])
    >>> bool(np.abs(ma.preprocess(X, center=True).mean(axis=0)).max() < 1e-12)
    True
    """
    center = check_bool(center, "center")
    l2 = check_bool(l2, "l2")
    if clip_quantile is not None:
        if (isinstance(clip_quantile, (bool, np.bool_))
                or not isinstance(clip_quantile, numbers.Real)):
            raise TypeError(
                f"clip_quantile must be a number in (0, 1] or None; got "
                f"{describe(clip_quantile)} {clip_quantile!r}")
        clip_quantile = float(clip_quantile)
        if not 0.0 < clip_quantile <= 1.0:
            raise ValueError(f"clip_quantile must be in (0, 1]; got {clip_quantile!r}")
    X = as_matrix(X, "X")
    dtype = X.dtype

    out = np.array(X, dtype=dtype, order="C", copy=True)
    if center:
        mean = out.mean(axis=0, dtype=np.float64)
        np.subtract(out, mean, out=out)  # in float64, one rounding per element to X's dtype
    if clip_quantile is not None:
        t = _clip_threshold(out, clip_quantile)
        np.clip(out, -t, t, out=out)
    if l2:
        norms = row_norms(out)
        zero = np.flatnonzero(norms == 0.0)
        if zero.size:
            steps = " after centering" if center else ""
            steps += (" and clipping" if center else " after clipping") if clip_quantile else ""
            raise zero_rows_error("X", zero, f"l2=True{steps}",
                                  "drop those rows or preprocess without l2=True")
        np.divide(out, norms[:, None], out=out)  # in float64, one rounding per element
    return out
