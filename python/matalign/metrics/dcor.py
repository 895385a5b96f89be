"""Distance correlation, biased (V-statistic) and bias-corrected (U-statistic) (DESIGN.md §2).

Both estimators reduce to three sums over the pairwise Euclidean distances a_ij, b_ij
(ANCHORS.md §3): S1 = Σ_ij a_ij b_ij, S2 = Σ_i a_i· b_i· (row sums), S3 = a_·· b_··. One
streaming pass of the engine's PairSums reducer over [X, Y] gives them for the pairs (X, Y),
(X, X) and (Y, Y) at once: O(N²·(D1+D2)) time, O(N) memory, no N×N matrix.
"""

from __future__ import annotations

import numpy as np

from .. import _device
from .. import _memory
from .._validate import check_same_structures
from .._validate import check_threads, as_matrix, check_bool, check_int, check_progress, check_same_n
from ._global import constant_error, is_constant, pair_sums, pair_sums_memory, too_few_rows

__all__ = ["distance_correlation"]


# A variance whose value is below this fraction of its terms' magnitude is rounding noise
# (its rows are equidistant to ~1e-6 relative, e.g. a regular simplex): treated as zero.
ZERO_VARIANCE_RTOL = 1e-12


def _dcov2_v(s1: float, s2: float, s3: float, n: int):
    """Biased dCov²ₙ = mean(A∘B) with A, B the double-centred distance matrices, and the
    magnitude of its three terms."""
    t = (s1 / n**2, 2.0 * s2 / n**3, s3 / n**4)
    return t[0] - t[1] + t[2], abs(t[0]) + abs(t[1]) + abs(t[2])


def _dcov2_u(s1: float, s2: float, s3: float, n: int):
    """Bias-corrected dCov² (Székely & Rizzo 2014): ⟨Ã, B̃⟩/(N(N−3)) with U-centred Ã, B̃, and
    the magnitude of its three terms."""
    t = (s1 / (n * (n - 3)), 2.0 * s2 / (n * (n - 2) * (n - 3)),
         s3 / (n * (n - 1) * (n - 2) * (n - 3)))
    return t[0] - t[1] + t[2], abs(t[0]) + abs(t[1]) + abs(t[2])


def distance_correlation(X, Y, *, unbiased=False, n_threads=0, progress=False,
                         device="auto") -> float:
    """Distance correlation between two embedding spaces of the same N structures.

    With a_ij = ‖x_i − x_j‖ and b_ij = ‖y_i − y_j‖ (Euclidean), S1 = Σ_ij a_ij b_ij,
    S2 = Σ_i a_i· b_i· and S3 = a_·· b_·· (row sums and totals):

    - biased (Székely et al. 2007, the V-statistic): dCov²ₙ = S1/N² − 2·S2/N³ + S3/N⁴ (the mean
      of the product of the double-centred distance matrices), and the function returns
      dCor = √(dCov²ₙ(X,Y) / √(dCov²ₙ(X,X)·dCov²ₙ(Y,Y))), **not squared**, like
      ``dcor.distance_correlation`` (round-off outside [0, 1] is clamped);
    - ``unbiased=True`` (Székely & Rizzo 2014, U-centring):
      dCov²_U = S1/(N(N−3)) − 2·S2/(N(N−2)(N−3)) + S3/(N(N−1)(N−2)(N−3)), and the function
      returns the bias-corrected **squared** dCor² = dCov²_U(X,Y)/√(dCov²_U(X,X)·dCov²_U(Y,Y)),
      like ``dcor.u_distance_correlation_sqr``; it can be negative.

    All sums come from one streaming pass over the pairs (O(N) memory), accumulated in float64.

    Parameters
    ----------
    X, Y : array_like (N, D1) and (N, D2), float32 or float64
        Embeddings; row i of both is the same structure. Distances are computed in the input
        dtype; if one is float32 and the other float64 the float32 one is widened to float64
        (exact; a copy).
    unbiased : bool, default False
        Return the bias-corrected dCor² (needs N >= 4) instead of the biased dCor.
    n_threads : int, default 0
        Engine threads; 0 = all cores.
    progress : bool or callable(done, total), default False
        True shows a progress bar; a callable is called between tiles.
    device : {"auto", "cpu", "cuda", "cuda:N"}, default "auto"
        Where the pass over the pairs runs (rules in ``matalign._device``); GPU input (CuPy,
        torch CUDA tensors) is read in place. The GPU sums in another (fixed) order than the
        CPU, so the two agree to rounding, not bitwise.

    Returns
    -------
    float
        Biased: dCor in [0, 1]. Unbiased: dCor² in [−1, 1], about 0 for independent data.

    Raises
    ------
    TypeError
        For a dtype other than float32/float64, or a non-boolean ``unbiased``.
    ValueError
        For NaN/Inf (naming the first bad row), N mismatch, N < 2 (N < 4 with
        ``unbiased=True``), or zero distance variance of X or Y: all rows identical, or a
        variance below 1e-12 times the size of its terms (rounding noise, e.g. equidistant
        rows with ``unbiased=True``).

    Examples
    --------
    >>> import numpy as np
    >>> import matalign as ma
    >>> rng = np.random.default_rng(0)
    >>> X = rng.normal(size=(300, 4))
    >>> ma.distance_correlation(X, 3.0 * X + 1.0)
    1.0
    >>> Y = np.sin(X) + 0.1 * rng.normal(size=(300, 4))
    >>> print(f"{ma.distance_correlation(X, Y):.3f}")
    0.929
    >>> Z = rng.normal(size=(300, 4))
    >>> print(f"{ma.distance_correlation(X, Z, unbiased=True):.3f}")
    -0.001
    """
    unbiased = check_bool(unbiased, "unbiased")
    n_threads = check_threads(n_threads)
    progress = check_progress(progress)
    check_same_structures((("X", X), ("Y", Y)))
    dev = _device.resolve(device, X, Y)
    X = _device.matrix(X, "X", dev) if dev.is_cuda else as_matrix(X, "X")
    Y = _device.matrix(Y, "Y", dev) if dev.is_cuda else as_matrix(Y, "Y")
    n = check_same_n(X, Y)
    if unbiased and n < 4:
        raise too_few_rows("distance_correlation(unbiased=True)", n, 4,
                           "the bias-corrected estimator divides by N - 3")
    if n < 2:
        raise too_few_rows("distance_correlation", n, 2, "a pair of rows")
    what = f"distance_correlation(N={n})"
    need = pair_sums_memory(X, Y, n_threads, dev)
    _memory.check_memory(need, what, advice="pass X and Y in one dtype (a float32 input is "
                         "widened to a float64 copy otherwise), or fewer n_threads")
    for A, name in ((X, "X"), (Y, "Y")):
        # (GPU input: a constant matrix is caught by the zero-variance test below.)
        if isinstance(A, np.ndarray) and is_constant(A):
            raise constant_error(name, n, "the distance correlation")

    with _memory.reraise(what, need):
        r, c = pair_sums(X, Y, "distance", None, n_threads, progress,
                         f"distance correlation N={n}", device=dev)
    totals = r.sum(axis=1)
    dcov2 = _dcov2_u if unbiased else _dcov2_v

    def term(a: int, b: int) -> tuple[float, float]:
        return dcov2(float(c[a, b]), float(r[a] @ r[b]), float(totals[a] * totals[b]), n)

    (v_xy, _), (v_xx, scale_x), (v_yy, scale_y) = term(0, 1), term(0, 0), term(1, 1)
    for v, scale, name in ((v_xx, scale_x, "X"), (v_yy, scale_y, "Y")):
        if not v > ZERO_VARIANCE_RTOL * scale:
            raise ValueError(
                f"{name} has zero distance variance (dCov²({name},{name}) = {v:.3g}, "
                f"numerically 0 next to its terms of size {scale:.3g}), so the distance "
                f"correlation is undefined (0/0): its rows are (nearly) equidistant, e.g. the "
                f"vertices of a regular simplex")
    dcor2 = v_xy / np.sqrt(v_xx * v_yy)
    if unbiased:
        return float(dcor2)
    return float(np.sqrt(min(max(dcor2, 0.0), 1.0)))
