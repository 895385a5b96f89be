"""Row-wise helpers shared by ``knn(metric="cosine")`` and ``preprocess(l2=True)``.

Both work block by block (a few MB at a time) and accumulate in float64, so a float32 or
memory-mapped input never needs a float64 copy of the whole matrix.
"""

from __future__ import annotations

import numpy as np

__all__ = ["row_norms", "l2_normalize", "zero_rows_error"]

_BLOCK_ELEMENTS = 1 << 21  # elements per block: 16 MB as float64


def _block_rows(d: int) -> int:
    return max(1, _BLOCK_ELEMENTS // max(1, d))


def _squares_in_order(xb: np.ndarray) -> np.ndarray:
    """Σ_j x_ij² per row in float64, in column order: ((x_0² + x_1²) + x_2²) + …, each square
    and each sum rounded once (one vector add per column over the block's rows). ``einsum`` and
    ``sum`` do not fix an order (it depends on NumPy's build and SIMD level); the CUDA engine's
    normalisation sums in exactly this one (cuda/src/knn.cu, ``normalize_kernel``), so cosine
    graphs agree on both."""
    sq = np.ascontiguousarray((xb * xb).T)
    if sq.shape[0] == 0:
        return np.zeros(sq.shape[1])
    acc = sq[0].copy()
    for j in range(1, sq.shape[0]):
        acc += sq[j]
    return acc


def row_norms(X: np.ndarray) -> np.ndarray:
    """Euclidean norm of every row of X, accumulated in float64 (overflow-safe).

    The squares are summed in column order (one rounding per square and per sum), the order
    the CUDA engine uses for device input, so host and device rows normalise bit for bit alike.

    Returns
    -------
    numpy.ndarray, shape (N,), float64

    Examples
    --------
    >>> import numpy as np
    >>> from matalign._rows import row_norms
    >>> row_norms(np.array([[3.0, 4.0], [0.0, 0.0]]))
    array([5., 0.])
    """
    n, d = X.shape
    out = np.empty(n, dtype=np.float64)
    step = _block_rows(d)
    for start in range(0, n, step):
        xb = np.asarray(X[start:start + step], dtype=np.float64)
        sq = _squares_in_order(xb)
        nb = np.sqrt(sq)
        big = ~np.isfinite(nb)
        if big.any():  # squares overflowed float64: rescale those rows by their largest |x|
            rows = xb[big]
            scale = np.max(np.abs(rows), axis=1)
            scaled = rows / scale[:, None]
            nb[big] = scale * np.sqrt(_squares_in_order(scaled))
        out[start:start + step] = nb
    return out


def zero_rows_error(name: str, zero: np.ndarray, why: str,
                    fix: str = "drop them or pick a metric that does not normalise") -> ValueError:
    """ValueError naming the first few zero rows and their count."""
    count = int(zero.size)
    first = ", ".join(str(int(i)) for i in zero[:5])
    more = ", ..." if count > 5 else ""
    noun = "row" if count == 1 else "rows"
    return ValueError(
        f"{name} has {count} zero {noun} ({first}{more}), which cannot be L2-normalised "
        f"({why}); {fix}"
    )


def l2_normalize(X: np.ndarray, name: str, why: str) -> np.ndarray:
    """A new C-ordered array of X's dtype whose rows are X's rows divided by their norms.

    The division is done in float64 and rounded once to X's dtype.

    Raises
    ------
    ValueError
        If a row is all zeros (its norm is 0); the message names the first rows and the count.
    """
    norms = row_norms(X)
    zero = np.flatnonzero(norms == 0.0)
    if zero.size:
        raise zero_rows_error(name, zero, why)
    n, d = X.shape
    out = np.empty((n, d), dtype=X.dtype)
    step = _block_rows(d)
    for start in range(0, n, step):
        xb = np.asarray(X[start:start + step], dtype=np.float64)
        out[start:start + step] = xb / norms[start:start + step, None]
    return out
