"""Distance correlation, biased (V-statistic) and bias-corrected (U-statistic) (definitions: docs/METRICS.md).

Both estimators reduce to three sums over the pairwise Euclidean distances a_ij, b_ij
(docs/METRICS.md): S1 = Σ_ij a_ij b_ij, S2 = Σ_i a_i· b_i· (row sums), S3 = a_·· b_··. One
streaming pass of the engine's PairSums reducer over [X, Y] gives them for the pairs (X, Y),
(X, X) and (Y, Y) at once: O(N²·(D1+D2)) time, O(N) memory, no N×N matrix.

:func:`distance_correlation` (two spaces) and :func:`dcor_matrix` (M spaces, one fused pass
for all pairs, as :func:`matalign.alignment_matrix` runs it) share one kernel,
:func:`_dcor_values`, so every matrix entry equals the pairwise call bit for bit.
"""

from __future__ import annotations

import numpy as np

from .. import _device
from .. import _memory
from .._progress import progress_callback
from .._validate import check_same_structures
from .._validate import check_threads, check_values, as_matrix, check_bool, check_progress, check_same_n
from ._global import (MatrixStage, constant_error, is_constant, pair_sums, pair_sums_memory,
                      too_few_rows)

__all__ = ["distance_correlation", "dcor_matrix", "MATRIX_STAGE"]


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
    ``S2 = Σ_i a_i· b_i·`` and ``S3 = a_·· b_··`` (row sums and totals):

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
    X = _device.matrix(X, "X", dev) if dev.is_cuda else as_matrix(X, "X", scan=False)
    Y = _device.matrix(Y, "Y", dev) if dev.is_cuda else as_matrix(Y, "Y", scan=False)
    n = check_same_n(X, Y)
    if unbiased and n < 4:
        raise too_few_rows("distance_correlation(unbiased=True)", n, 4,
                           "the bias-corrected estimator divides by N - 3")
    if n < 2:
        raise too_few_rows("distance_correlation", n, 2, "a pair of rows")
    what = f"distance_correlation(N={n})"
    need = pair_sums_memory([X, Y], n_threads, dev)
    _memory.check_memory(need, what, advice="pass X and Y in one dtype (a float32 input is "
                         "widened to a float64 copy otherwise), or fewer n_threads")
    for A, name in ((X, "X"), (Y, "Y")):
        if isinstance(A, np.ndarray):
            check_values(A, name)  # after the memory check: it reads the data
    with _memory.reraise(what, need), \
            progress_callback(progress, f"distance correlation N={n}") as callback:
        return float(_dcor_values([X, Y], ["X", "Y"], unbiased, n_threads, callback, dev)[0, 1])


def _dcor_values(spaces, labels, unbiased: bool, n_threads: int, callback,
                 device=None) -> np.ndarray:
    """The (M, M) distance correlations of M spaces from ONE PairSums pass (the kernel of both
    forms). Constant spaces (host) fail before the pass; a zero distance variance after it."""
    n = spaces[0].shape[0]
    m = len(spaces)
    for A, label in zip(spaces, labels):
        # (GPU input: a constant matrix is caught by the zero-variance test below.)
        if isinstance(A, np.ndarray) and is_constant(A):
            raise constant_error(label, n, "the distance correlation")
    r, c = pair_sums(spaces, "distance", None, n_threads, callback, device)
    totals = r.sum(axis=1)
    dcov2 = _dcov2_u if unbiased else _dcov2_v
    v = np.empty((m, m))
    for a in range(m):
        for b in range(a, m):
            value, scale = dcov2(float(c[a, b]), float(r[a] @ r[b]),
                                 float(totals[a] * totals[b]), n)
            if a == b and not value > ZERO_VARIANCE_RTOL * scale:
                name = labels[a]
                raise ValueError(
                    f"{name} has zero distance variance (dCov²({name},{name}) = {value:.3g}, "
                    f"numerically 0 next to its terms of size {scale:.3g}), so the distance "
                    f"correlation is undefined (0/0): its rows are (nearly) equidistant, e.g. "
                    f"the vertices of a regular simplex")
            v[a, b] = v[b, a] = value
    out = np.empty((m, m))
    for a in range(m):
        for b in range(a, m):
            dcor2 = v[a, b] / np.sqrt(v[a, a] * v[b, b])
            value = float(dcor2) if unbiased else float(np.sqrt(min(max(dcor2, 0.0), 1.0)))
            out[a, b] = out[b, a] = value
    return out


def dcor_matrix(spaces, labels, *, unbiased=False, n_threads=0, progress=None,
                device=None) -> np.ndarray:
    """Distance correlation of every pair of M validated spaces in ONE fused engine pass.

    Entry (a, b) equals ``distance_correlation(spaces[a], spaces[b], unbiased=unbiased)`` bit
    for bit when all spaces share a dtype (mixed dtypes: float32 spaces are widened to float64
    for the pass). ``progress``: None or a callback(done, total).
    """
    return _dcor_values(list(spaces), list(labels), unbiased, n_threads, progress, device)


def _min_rows(req):
    if req.unbiased:
        return (4, "unbiased dcor", "the bias-corrected estimator divides by N - 3")
    return (2, "dcor", "a pair of rows")


def _plan(req):
    arrays = req.arrays
    work = float(req.n) ** 2 * (sum(req.dims) + len(arrays) ** 2) / 2
    return pair_sums_memory(arrays, req.n_threads), work


def _run(req, job):
    spaces = req.arrays
    req.params["global_dtype"] = np.result_type(*[A.dtype for A in spaces]).name
    with job.stage(_plan(req)[1]) as cb:
        return {"dcor": dcor_matrix(spaces, req.labels, unbiased=req.unbiased,
                                    n_threads=req.n_threads, progress=cb)}


MATRIX_STAGE = MatrixStage(metrics=("dcor",), per_model=False, graph_input=False,
                           min_rows=_min_rows, plan=_plan, run=_run)
