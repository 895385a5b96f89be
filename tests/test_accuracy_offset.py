"""Accuracy on data far from the origin: float32 (and float64) input with a large common offset.

Every translation-invariant computation of the engine (kNN and mutual kNN with metric l2,
distance correlation, RBF CKA, information imbalance, intrinsic dimension) must agree with the
float64 reference of the same (float32-rounded) values, whatever the offset: the engine
computes on rows centred near their column mean, so the ‖x‖² + ‖y‖² − 2⟨x, y⟩ cancellation
scales with the spread of the rows and not with their distance from the origin.

The references are the dense float64 ones of tests/reference.py and tests/reference_global.py
(explicit differences, no norm expansion). Tolerances come from the dtype and the *centred*
rows (tests/reference.py ``knn_tolerance``); the continuous metrics must be within 1e-5
relative for float32 (1e-9 for float64). The discrete ones (kNN sets, mutual kNN, information
imbalance) are compared tie-aware: where the reference has distances within the tolerance of
each other, any choice among them is accepted, and the value must lie between the smallest and
largest value those choices give (with no near-ties that interval is a single value).

Property tests run with hypothesis (derandomized, so CI is deterministic) across dtype ×
offset (0, 1e3, 1e6) × scale × duplicated rows × N × D × k.
"""

from __future__ import annotations

import itertools
import math
import warnings

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import matalign as ma
import reference as ref
import reference_global as gref

OFFSETS = (0.0, 1e3, 1e6)
SETTINGS = settings(max_examples=25, deadline=None, derandomize=True, database=None,
                    suppress_health_check=[HealthCheck.too_slow])
# Relative agreement of the continuous metrics with the float64 reference.
RTOL = {np.dtype(np.float32): 1e-5, np.dtype(np.float64): 1e-9}


# ---------------------------------------------------------------------------
# data
# ---------------------------------------------------------------------------


def offset_rows(rng, n: int, d: int, offset: float, scale: float, n_dup: int, dtype):
    """(offset·o + N(0, 1))·scale in dtype, o a per-column factor in [0.5, 1.5]; n_dup rows
    overwritten with copies of other rows (exact duplicates after rounding)."""
    Z = rng.normal(size=(n, d))
    if n_dup:
        dst = rng.choice(n, size=min(n_dup, n // 2), replace=False)
        src = rng.choice(np.setdiff1d(np.arange(n), dst), size=dst.size)
        Z[dst] = Z[src]
    o = offset * rng.uniform(0.5, 1.5, size=d)
    return ((o + Z) * scale).astype(dtype)


def related_rows(rng, X, d2: int, offset: float, scale: float, dtype):
    """A second space of the same structures: a smooth function of X's centred rows plus noise,
    with its own offset (strongly related, so the metrics are far from 0)."""
    Z = np.asarray(X, dtype=np.float64)
    Z = (Z - Z.mean(axis=0)) / (Z.std(axis=0) + 1e-300)
    W = rng.normal(size=(Z.shape[1], d2)) / math.sqrt(Z.shape[1])
    Y = np.tanh(Z @ W) + 0.3 * rng.normal(size=(Z.shape[0], d2))
    o = offset * rng.uniform(0.5, 1.5, size=d2)
    return ((o + Y) * scale).astype(dtype)


@st.composite
def cases(draw, min_n: int = 8, max_n: int = 90, max_d: int = 24):
    return dict(
        seed=draw(st.integers(0, 2**32 - 1)),
        dtype=draw(st.sampled_from([np.float32, np.float64])),
        offset=draw(st.sampled_from(OFFSETS)),
        scale=draw(st.sampled_from([1e-2, 1.0, 1e2])),
        n_dup=draw(st.sampled_from([0, 0, 1, 5])),
        n=draw(st.integers(min_n, max_n)),
        d=draw(st.integers(1, max_d)),
    )


def draw_x(c):
    rng = np.random.default_rng(c["seed"])
    return rng, offset_rows(rng, c["n"], c["d"], c["offset"], c["scale"], c["n_dup"], c["dtype"])


# ---------------------------------------------------------------------------
# tie-aware bounds from the float64 reference
# ---------------------------------------------------------------------------


def engine_centre(X64):
    """The centre the engine subtracts from each column: the mean rounded to a multiple of
    2^⌊log2 sd⌋ (the mean itself where sd = 0), within sd/2 of the mean."""
    mean, sd = X64.mean(axis=0), X64.std(axis=0)
    safe = np.where(sd > 0, sd, 1.0)
    g = np.exp2(np.floor(np.log2(safe)))
    return np.where(sd > 0, g * np.round(mean / g), mean)


def centred_tolerance(X, queries=None):
    """(rtol, atol) of ``ref.knn_tolerance`` for l2, with the rows centred as the engine centres
    them (``engine_centre``) but in X's dtype."""
    X64 = ref.as_f64(X)
    mu = engine_centre(X64)
    Q = None if queries is None else (ref.as_f64(queries) - mu).astype(np.asarray(X).dtype)
    return ref.knn_tolerance((X64 - mu).astype(np.asarray(X).dtype), "l2", queries=Q)


def tie_band(values, rtol, atol):
    """Two squared distances closer than this may come out in either order."""
    return 2.0 * (atol + rtol * np.abs(values))


def tie_split(vals, idx, k: int, band):
    """Split a reference row (sorted best first) at k: (fixed, group, need) where every valid
    kNN set is fixed ∪ (need members of group)."""
    start = k - 1
    while start > 0 and vals[start] - vals[start - 1] <= max(band[start], band[start - 1]):
        start -= 1
    end = k
    while end < vals.size and vals[end] - vals[end - 1] <= max(band[end], band[end - 1]):
        end += 1
    return set(idx[:start].tolist()), idx[start:end].tolist(), k - start


def full_reference(X):
    """The reference self kNN of X over all N − 1 other rows and its tie bands."""
    n = X.shape[0]
    vals, idx = ref.knn(X, n - 1, "l2")
    rtol, atol = centred_tolerance(X)
    return vals, idx, tie_band(vals, rtol, atol)


def mutual_knn_bounds(X, Y, k: int):
    """(lo, hi) of (1/N) Σ_i |S_X(i) ∩ S_Y(i)| / k over every tie-valid choice of the sets."""
    vx, ix, bx = full_reference(X)
    vy, iy, by = full_reference(Y)
    lo = hi = 0
    for i in range(X.shape[0]):
        fx, gx, nx = tie_split(vx[i], ix[i], k, bx[i])
        fy, gy, ny = tie_split(vy[i], iy[i], k, by[i])
        if math.comb(len(gx), nx) * math.comb(len(gy), ny) > 5000:
            base = len(fx & fy)  # (too many choices to enumerate: the loose, valid bounds)
            lo, hi = lo + base, hi + min(k, base + nx + ny)
            continue
        overlaps = [len((fx | set(px)) & (fy | set(py)))
                    for px in itertools.combinations(gx, nx)
                    for py in itertools.combinations(gy, ny)]
        lo, hi = lo + min(overlaps), hi + max(overlaps)
    n = X.shape[0]
    return lo / (n * k), hi / (n * k)


def imbalance_bounds(A, B, k: int):
    """(lo, hi) of Δ(A→B) over tie-valid kNN sets in A and tie-valid ranks in B."""
    n = A.shape[0]
    va, ia, ba = full_reference(A)
    rtol, atol = centred_tolerance(B)
    Db = gref.sq_distances(B)
    lo = hi = 0
    others = ~np.eye(n, dtype=bool)
    for i in range(n):
        fixed, group, need = tie_split(va[i], ia[i], k, ba[i])
        band = tie_band(Db[i], rtol, atol)

        def rank_range(j):
            mask = others[i].copy()
            mask[j] = False
            row, wide = Db[i][mask], np.maximum(band[mask], band[j])
            return (1 + int(np.count_nonzero(row < Db[i, j] - wide)),
                    1 + int(np.count_nonzero(row <= Db[i, j] + wide)))

        fr = [rank_range(j) for j in fixed]
        gr = [rank_range(j) for j in group]
        lo += sum(r[0] for r in fr) + sum(sorted(r[0] for r in gr)[:need])
        hi += sum(r[1] for r in fr) + sum(sorted((r[1] for r in gr), reverse=True)[:need])
    return 2.0 * lo / (n * n * k), 2.0 * hi / (n * n * k)


def assert_within(got, lo, hi, rtol, what):
    slack = rtol * max(abs(lo), abs(hi))
    assert lo - slack <= got <= hi + slack, f"{what}: {got!r} outside the tie-aware range [{lo!r}, {hi!r}]"


def assert_close(got, want, dtype, what):
    rtol = RTOL[np.dtype(dtype)]
    assert abs(got - want) <= rtol * abs(want), (
        f"{what}: {got!r} vs float64 reference {want!r} (relative {abs(got - want) / abs(want):.2e}"
        f" > {rtol:g})")


# ---------------------------------------------------------------------------
# kNN graphs
# ---------------------------------------------------------------------------


def check_graph(X, k: int, queries=None, **kw):
    g = ma.knn(X, k=k, metric="l2", queries=queries, **kw)
    n = X.shape[0]
    kr = n - 1 if queries is None else n
    rv, ri = ref.knn(X, kr, "l2", queries=queries)
    rtol, atol = centred_tolerance(X, queries)
    ref.assert_knn_equal(g.values, g.indices, rv, ri, rtol, atol)
    return g


@SETTINGS
@given(c=cases(min_n=4), k_frac=st.floats(0.0, 1.0))
def test_knn_l2_self_graph_equals_float64_graph(c, k_frac):
    _, X = draw_x(c)
    k = 1 + int(k_frac * min(20, c["n"] - 2))
    check_graph(X, k, screen="off")


@SETTINGS
@given(c=cases(min_n=4), m=st.integers(1, 40), k_frac=st.floats(0.0, 1.0))
def test_knn_l2_queries_equal_float64_graph(c, m, k_frac):
    rng, X = draw_x(c)
    Q = offset_rows(rng, m, c["d"], c["offset"], c["scale"], 0, c["dtype"])
    k = 1 + int(k_frac * min(20, c["n"] - 1))
    check_graph(X, k, queries=Q, screen="off")


@SETTINGS
@given(c=cases(min_n=4), k_frac=st.floats(0.0, 1.0))
def test_knn_l2_rescore_equals_float64_graph(c, k_frac):
    _, X = draw_x(c)
    k = 1 + int(k_frac * min(20, c["n"] - 2))
    check_graph(X, k, screen="off", rescore=True)


@SETTINGS
@given(c=cases(min_n=4), k_frac=st.floats(0.0, 1.0), bits=st.sampled_from(["int8", "int16"]),
       use_queries=st.booleans())
def test_knn_screen_is_the_float64_graph_on_offset_data(c, k_frac, bits, use_queries):
    """The integer screen re-scores in float64 on the same centred rows as the float64 kernel:
    bit for bit the float64 graph, and that graph is the reference's at float64 precision."""
    rng, X = draw_x(c)
    Q = offset_rows(rng, 7, c["d"], c["offset"], c["scale"], 0, c["dtype"]) if use_queries else None
    k = 1 + int(k_frac * min(20, c["n"] - 2))
    g = ma.knn(X, k=k, metric="l2", queries=Q, screen=bits)
    X64 = X.astype(np.float64)
    Q64 = None if Q is None else Q.astype(np.float64)
    g64 = ma.knn(X64, k=k, metric="l2", queries=Q64, screen="off")
    np.testing.assert_array_equal(g.indices, g64.indices)
    np.testing.assert_array_equal(g.values, g64.values.astype(g.values.dtype))
    kr = X.shape[0] - 1 if Q is None else X.shape[0]
    rv, ri = ref.knn(X, kr, "l2", queries=Q)
    rtol, atol = centred_tolerance(X64, Q64)
    ref.assert_knn_equal(g64.values, g64.indices, rv, ri, rtol, atol)


# ---------------------------------------------------------------------------
# metrics
# ---------------------------------------------------------------------------


@SETTINGS
@given(c=cases(min_n=6, max_n=70), d2=st.integers(1, 12), k_frac=st.floats(0.0, 1.0))
def test_mutual_knn_l2(c, d2, k_frac):
    rng, X = draw_x(c)
    Y = related_rows(rng, X, d2, c["offset"], c["scale"], c["dtype"])
    k = 1 + int(k_frac * min(10, c["n"] - 2))
    got = ma.mutual_knn(X, Y, k=k, metric="l2")
    lo, hi = mutual_knn_bounds(X, Y, k)
    assert_within(got, lo, hi, RTOL[np.dtype(c["dtype"])], "mutual_knn")


@SETTINGS
@given(c=cases(min_n=8, max_n=90), d2=st.integers(1, 12), unbiased=st.booleans())
def test_distance_correlation(c, d2, unbiased):
    rng, X = draw_x(c)
    Y = related_rows(rng, X, d2, c["offset"], c["scale"], c["dtype"])
    got = ma.distance_correlation(X, Y, unbiased=unbiased)
    want = gref.u_dcor_sqr(X, Y) if unbiased else gref.dcor(X, Y)
    assert_close(got, want, c["dtype"], f"dCor (unbiased={unbiased})")


@SETTINGS
@given(c=cases(min_n=8, max_n=90), d2=st.integers(1, 12), unbiased=st.booleans())
def test_rbf_cka(c, d2, unbiased):
    rng, X = draw_x(c)
    Y = related_rows(rng, X, d2, c["offset"], c["scale"], c["dtype"])
    sx, sy = gref.median_distance_all_pairs(X), gref.median_distance_all_pairs(Y)
    got = ma.cka(X, Y, kernel="rbf", sigma=(sx, sy), unbiased=unbiased)
    want = gref.cka(X, Y, kernel="rbf", sigma=(sx, sy), unbiased=unbiased)
    assert_close(got, want, c["dtype"], f"RBF CKA (unbiased={unbiased})")


@SETTINGS
@given(c=cases(min_n=6, max_n=60), d2=st.integers(1, 12), k_frac=st.floats(0.0, 1.0),
       with_self=st.booleans())
def test_information_imbalance(c, d2, k_frac, with_self):
    rng, X = draw_x(c)
    Y = X if with_self else related_rows(rng, X, d2, c["offset"], c["scale"], c["dtype"])
    k = 1 + int(k_frac * min(5, c["n"] - 2))
    d_xy, d_yx = ma.information_imbalance(X, Y, k=k)
    rtol = RTOL[np.dtype(c["dtype"])]
    assert_within(d_xy, *imbalance_bounds(X, Y, k), rtol, "Δ(X→Y)")
    assert_within(d_yx, *imbalance_bounds(Y, X, k), rtol, "Δ(Y→X)")


@SETTINGS
@given(c=cases(min_n=12, max_n=90, max_d=12), method=st.sampled_from(["twonn", "mle"]))
def test_intrinsic_dimension(c, method):
    _, X = draw_x(c)
    r1, _ = ref.two_nn_ratios(X)
    with np.errstate(all="ignore"):  # 0/0 where every kept μ is 1 (data on a coarse grid)
        want = ref.twonn_id(X) if method == "twonn" else ref.mle_id(X)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "rows with a duplicate were excluded"
        if np.count_nonzero(r1 > 0) < 3 or not np.isfinite(want):
            # undefined in float64 too: the engine says so instead of returning a number
            with pytest.raises(ValueError, match="intrinsic_dimension"):
                ma.intrinsic_dimension(X, method=method)
            return
        got = ma.intrinsic_dimension(X, method=method)
    assert_close(got, want, c["dtype"], f"intrinsic dimension ({method})")


# ---------------------------------------------------------------------------
# the case of the report: N = 500, D = 16, spread 1, offset 1e3 and 1e6, float32
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("offset", [1e3, 1e6])
def test_offset_embeddings_float32_match_float64(offset):
    rng = np.random.default_rng(16)
    X = (offset + rng.normal(size=(500, 16))).astype(np.float32)
    Y = related_rows(rng, X, 8, offset, 1.0, np.float32)
    g = check_graph(X, 10)  # screen="auto": whichever path this CPU takes
    check_graph(X, 10, screen="off")
    assert g.indices.shape == (500, 10)
    lo, hi = mutual_knn_bounds(X, Y, 10)
    assert_within(ma.mutual_knn(X, Y, k=10, metric="l2"), lo, hi, 1e-5, "mutual_knn")
    for unbiased in (False, True):
        want = gref.u_dcor_sqr(X, Y) if unbiased else gref.dcor(X, Y)
        assert_close(ma.distance_correlation(X, Y, unbiased=unbiased), want, np.float32, "dCor")
        sx, sy = gref.median_distance_all_pairs(X), gref.median_distance_all_pairs(Y)
        want = gref.cka(X, Y, kernel="rbf", sigma=(sx, sy), unbiased=unbiased)
        assert_close(ma.cka(X, Y, kernel="rbf", sigma=(sx, sy), unbiased=unbiased), want,
                     np.float32, "RBF CKA")
    assert_within(ma.information_imbalance(X, X)[0], *imbalance_bounds(X, X, 1), 1e-5, "Δ(X→X)")
    assert_within(ma.information_imbalance(X, Y)[0], *imbalance_bounds(X, Y, 1), 1e-5, "Δ(X→Y)")
    assert_close(ma.intrinsic_dimension(X), ref.twonn_id(X), np.float32, "intrinsic dimension")
