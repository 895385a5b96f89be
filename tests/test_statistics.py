"""ma.confidence_interval, ma.null_test, ma.sweep and the coverage simulation
(matalign.statistics), checked against float64 NumPy references written from the math
(tests/reference.py, tests/reference_global.py) and against the dcor package's t-test."""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy import stats

import matalign as ma
import reference as ref
import reference_global as refg
from matalign import statistics as st


def population(rng, n, d=4, noise=0.6):
    """Two non-degenerate, nonlinearly related spaces of the same latent structures."""
    z = rng.normal(size=(n, d))
    A = np.linspace(-1.0, 1.0, d * 8).reshape(d, 8)
    X = np.concatenate([z, np.tanh(z)], axis=1) @ np.vstack([A, A[::-1]]) \
        + noise * rng.normal(size=(n, 8))
    Y = z @ A[:, ::-1] + np.sin(z).sum(axis=1, keepdims=True) + noise * rng.normal(size=(n, 8))
    return X, Y


def pair(seed, n=160):
    return population(np.random.default_rng(seed), n)


# ---- confidence_interval: definition against a reference ----------------------------------

def _reference_subsamples(X, Y, b, count, seed, metric):
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(count):
        idx = np.sort(rng.choice(X.shape[0], size=b, replace=False))
        out.append(metric(X[idx], Y[idx]))
    return np.array(out)


def test_ci_is_the_rate_corrected_subsampling_interval_of_the_reference_metric():
    X, Y = pair(0, n=120)
    ci = ma.confidence_interval("cknna", X, Y, k=7, n_subsamples=6, subsample_size=60, seed=3)
    metric = lambda a, b: ref.cknna(a, b, 7)   # noqa: E731
    big = _reference_subsamples(X, Y, 60, 6, [3, 0], metric)
    small = _reference_subsamples(X, Y, 15, 6, [3, 1], metric)
    np.testing.assert_allclose(ci.subsample_values, big, rtol=1e-9, atol=1e-12)
    # rate r from the spread at b1 = 15 and b = 60 (finite-population factor removed)
    v1 = np.var(small, ddof=1) / (1 - 15 / 120)
    v2 = np.var(big, ddof=1) / (1 - 60 / 120)
    r = np.clip(0.5 * np.log(v1 / v2) / np.log(60 / 15), 0.05, 2.0)
    se = np.sqrt(v2 * (60 / 120) ** (2 * r))
    value = ref.cknna(X, Y, 7)
    t = stats.t.ppf(0.975, 5)
    assert ci.rate == pytest.approx(r, rel=1e-9)
    assert ci.value == pytest.approx(value, rel=1e-9, abs=1e-12)
    assert ci.se == pytest.approx(se, rel=1e-7)
    assert (ci.low, ci.high) == pytest.approx((value - t * se, value + t * se), rel=1e-7)
    assert (ci.n, ci.b, ci.n_subsamples, ci.seed, ci.k, ci.method, ci.level) == \
        (120, 60, 6, 3, 7, "subsample", 0.95)
    assert ci.metric == "cknna" and "cknna = " in repr(ci)
    json.dumps(ci.as_dict())
    # a given rate of 1/2 is the delete-d jackknife: se^2 = b/(N - b) * var
    half = ma.confidence_interval("cknna", X, Y, k=7, n_subsamples=6, subsample_size=50,
                                  seed=3, rate=0.5)
    big = _reference_subsamples(X, Y, 50, 6, [3, 0], metric)
    assert half.se == pytest.approx(np.sqrt(50 / 70 * np.var(big, ddof=1)), rel=1e-7)
    with pytest.raises(ValueError, match=r"rate must be a number in \(0, 2\]"):
        ma.confidence_interval("cknna", X, Y, rate=0)


CASES = [
    ("cknna", {}, lambda X, Y: ref.cknna(X, Y, 10)),
    ("mutual_knn", {}, lambda X, Y: ref.mutual_knn(X, Y, 10)),
    ("cka", {}, lambda X, Y: refg.cka(X, Y)),
    ("cka", {"kernel": "rbf", "sigma": 3.0}, lambda X, Y: refg.cka(X, Y, kernel="rbf", sigma=3.0)),
    ("distance_correlation", {}, lambda X, Y: refg.dcor(X, Y)),
    ("information_imbalance", {"direction": "x->y"},
     lambda X, Y: refg.information_imbalance(X, Y, 1)[0]),
    ("information_imbalance", {"direction": "y->x"},
     lambda X, Y: refg.information_imbalance(X, Y, 1)[1]),
]


@pytest.mark.parametrize("name,kw,reference", CASES)
def test_ci_every_pairwise_metric(name, kw, reference):
    X, Y = pair(1, n=90)
    k = {"cknna": 10, "mutual_knn": 10}.get(name)
    ci = ma.confidence_interval(name, X, Y, k=k, n_subsamples=5, seed=0, **kw)
    assert ci.value == pytest.approx(reference(X, Y), rel=1e-9, abs=1e-12)
    rng = np.random.default_rng([0, 0])
    if name == "cka" and not kw:
        # linear CKA: a subsample is a union of half the groups of one seeded partition
        half = st.CKA_GROUPS // 2
        perm = np.random.default_rng([0, 2]).permutation(90)
        edges = np.linspace(0, 90, st.CKA_GROUPS + 1).round().astype(int)
        chosen = np.sort(rng.choice(st.CKA_GROUPS, size=half, replace=False))
        idx = np.concatenate([perm[edges[g]:edges[g + 1]] for g in chosen])
        sizes = np.diff(edges)
        assert half * sizes.min() <= idx.size <= half * sizes.max()  # b = 45 on average
    else:
        idx = np.sort(rng.choice(90, size=45, replace=False))
    assert ci.subsample_values[0] == pytest.approx(reference(X[idx], Y[idx]), rel=1e-9,
                                                   abs=1e-12)
    assert ci.low < ci.value < ci.high and ci.b == 45


def test_ci_intrinsic_dimension_and_function_objects():
    X, Y = pair(2, n=200)
    ci = ma.confidence_interval(ma.intrinsic_dimension, X, seed=1)
    assert ci.value == pytest.approx(ref.twonn_id(X), rel=1e-9)
    assert ci.low < ci.value < ci.high and ci.metric == "intrinsic_dimension"
    a = ma.confidence_interval(ma.cknna, X, Y, k=5)
    b = ma.confidence_interval("cknna", X, Y, k=5)
    assert (a.low, a.high) == (b.low, b.high)


def test_ci_is_seeded_and_rejects_bad_input():
    X, Y = pair(3, n=60)
    a = ma.confidence_interval("cka", X, Y, seed=1)
    b = ma.confidence_interval("cka", X, Y, seed=1)
    c = ma.confidence_interval("cka", X, Y, seed=2)
    assert (a.low, a.high) == (b.low, b.high) != (c.low, c.high)
    with pytest.raises(ValueError, match="metric must be one of"):
        ma.confidence_interval("ckna", X, Y)
    with pytest.raises(TypeError, match="metric must be one of cknna"):
        ma.confidence_interval(np.mean, X, Y)
    with pytest.raises(TypeError, match="X is a KnnGraph; the statistics resample"):
        ma.confidence_interval("cknna", ma.knn(X, k=5), Y)
    with pytest.raises(ValueError, match="k does not apply to cka"):
        ma.confidence_interval("cka", X, Y, k=5)
    with pytest.raises(ValueError, match="cknna compares two spaces: pass Y"):
        ma.confidence_interval("cknna", X)
    with pytest.raises(ValueError, match="intrinsic_dimension takes one space"):
        ma.confidence_interval("intrinsic_dimension", X, Y)
    with pytest.raises(ValueError, match=r"subsample_size must be in 12\.\.59"):
        ma.confidence_interval("cknna", X, Y, k=10, subsample_size=60)
    with pytest.raises(ValueError, match="level must be in"):
        ma.confidence_interval("cka", X, Y, level=1.5)
    with pytest.raises(ValueError, match="n_subsamples"):
        ma.confidence_interval("cka", X, Y, n_subsamples=1)
    with pytest.raises(ValueError, match="same N structures"):
        ma.confidence_interval("cka", X, Y[:-1])
    with pytest.raises(ValueError, match="direction applies only to information_imbalance"):
        ma.confidence_interval("cka", X, Y, direction="x->y")
    with pytest.raises(ValueError, match="direction must be one of"):
        ma.confidence_interval("information_imbalance", X, Y, direction="xy")
    with pytest.raises(ValueError, match="method must be one of"):
        ma.confidence_interval("cka", X, Y, method="bootstrap")


# ---- coverage: the fast version of bench/bench_coverage.py --------------------------------

def _id_population(rng, n):
    z = rng.normal(size=(n, 3))
    return np.concatenate([z, np.sin(z)], axis=1) + 0.05 * rng.normal(size=(n, 6))


COVERAGE = [
    ("cknna", {"k": 10}, population),
    ("distance_correlation", {}, population),
    ("information_imbalance", {"direction": "y->x"}, population),
    ("intrinsic_dimension", {}, _id_population),
]


@pytest.mark.parametrize("name,kw,sampler", COVERAGE, ids=[c[0] for c in COVERAGE])
def test_coverage_of_the_95_interval(name, kw, sampler):
    # 60 intervals at N = 100: the binomial sd of the coverage is 2.8 points at 95 %; the
    # bench (bench/bench_coverage.py) runs more and larger cases and states the 90-98 % target.
    res = st.coverage(name, sampler, 100, n_reps=60, n_population=150, seed=11,
                      n_subsamples=8, n_threads=1, **kw)
    assert 0.85 <= res.coverage <= 1.0, (res.coverage, res.population_value)
    assert res.mean_width > 0


@pytest.fixture(scope="module")
def cka_good_coverage():
    return st.coverage("cka", population, 100, n_reps=60, n_population=150, seed=5,
                       n_subsamples=8, subsample_size=25, n_threads=1)


@pytest.mark.parametrize("rate,side", [(0.1, "wide"), (1.5, "narrow")])
def test_coverage_catches_a_wrong_rate(cka_good_coverage, rate, side):
    # A rate far too slow (sd ~ N^-0.1: intervals too wide) or far too fast (sd ~ N^-1.5,
    # too narrow) in place of the estimated one: the coverage check must fail.
    good = cka_good_coverage
    bad = st.coverage("cka", population, 100, n_reps=60, n_population=150, seed=5,
                      n_subsamples=8, subsample_size=25, n_threads=1, rate=rate)
    assert 0.85 <= good.coverage
    assert bad.population_value == good.population_value
    if side == "wide":
        assert bad.coverage > 0.98 and bad.mean_width > good.mean_width
    else:
        assert bad.coverage < 0.85          # the bound test_coverage_of_the_95_interval uses


# ---- null_test ------------------------------------------------------------------------------

def test_null_permutation_graph_metrics_relabel_the_graph():
    X, Y = pair(4, n=100)
    r = ma.null_test("cknna", X, Y, k=8, n_permutations=30, seed=2)
    p = ma.permutation_test(ma.cknna, ma.knn(X, k=8), ma.knn(Y, k=8), n_permutations=30,
                            seed=2, k=8)
    np.testing.assert_array_equal(r.null, p.null)
    assert r.p_value == p.p_value == 1 / 31
    assert r.null_mean == pytest.approx(np.mean(p.null))
    assert r.value == pytest.approx(ref.cknna(X, Y, 8), rel=1e-9)
    assert (r.method, r.n, r.k, r.n_permutations, r.seed, r.alternative) == \
        ("permutation", 100, 8, 30, 2, "greater")
    json.dumps(r.as_dict())


@pytest.mark.parametrize("name,kw", [("mutual_knn", {}), ("cka", {}),
                                     ("distance_correlation", {}),
                                     ("information_imbalance", {"direction": "x->y"})])
def test_null_permutation_array_metrics(name, kw):
    X, Y = pair(5, n=80)
    Z = np.random.default_rng(9).normal(size=(80, 8))
    aligned = ma.null_test(name, X, Y, n_permutations=40, seed=1, **kw)
    indep = ma.null_test(name, X, Z, n_permutations=40, seed=1, **kw)
    assert aligned.p_value == 1 / 41
    assert indep.p_value > 0.01
    # the chance level: the permutation null of unrelated spaces sits around the value
    assert abs(indep.null_mean - indep.value) < 4 * indep.null_sd


def test_dcor_t_test_against_its_formula():
    # Székely & Rizzo (2013): T = sqrt(v - 1) R / sqrt(1 - R^2), v = N(N - 3)/2, R the
    # U-centred dCor^2 (reference_global.u_dcor_sqr), Student t with v - 1 dof, upper tail.
    for seed, rel in ((6, True), (7, False)):
        rng = np.random.default_rng(seed)
        X = rng.normal(size=(70, 30))
        Y = (X[:, :20] + rng.normal(size=(70, 20))) if rel else rng.normal(size=(70, 20))
        r = ma.null_test("distance_correlation", X, Y, method="t-test")
        R = refg.u_dcor_sqr(X, Y)
        v = 70 * 67 / 2
        T = np.sqrt(v - 1) * R / np.sqrt(1 - R * R)
        assert r.value == pytest.approx(R, rel=1e-9, abs=1e-12)
        assert r.statistic == pytest.approx(T, rel=1e-8, abs=1e-10)
        assert r.p_value == pytest.approx(stats.t.sf(T, v - 1), rel=1e-7)
        assert (r.p_value < 1e-6) == rel and r.null_mean == 0.0
    with pytest.raises(ValueError, match="t-test' applies to distance_correlation only"):
        ma.null_test("cka", X, Y, method="t-test")


def test_imbalance_asymptotic_null_agrees_with_permutation():
    rng = np.random.default_rng(8)
    X, Z = rng.normal(size=(200, 5)), rng.normal(size=(200, 5))
    a = ma.null_test("information_imbalance", X, Z, method="asymptotic", k=3)
    p = ma.null_test("information_imbalance", X, Z, n_permutations=100, k=3, n_threads=1)
    assert a.null_mean == 1.0 and abs(p.null_mean - 1.0) < 4 * a.null_sd / np.sqrt(100)
    assert a.null_sd == pytest.approx(np.std(p.null, ddof=1), rel=0.25)
    assert a.p_value > 0.01
    X2, Y2 = pair(8, n=200)
    assert ma.null_test("information_imbalance", X2, Y2, method="asymptotic").p_value < 1e-10
    with pytest.raises(ValueError, match="asymptotic' applies to information_imbalance only"):
        ma.null_test("cknna", X, Z, method="asymptotic")
    with pytest.raises(ValueError, match="a null test needs a pairwise metric"):
        ma.null_test("intrinsic_dimension", X, Z)


# ---- sweeps ---------------------------------------------------------------------------------

def test_sweep_k_and_n():
    X, Y = pair(10, n=150)
    s = ma.sweep("cknna", X, Y, k=[5, 15], n=[80, 150], ci=False, seed=4)
    order = np.random.default_rng(4).permutation(150)
    assert [(r["k"], r["n"]) for r in s.rows] == [(5, 80), (15, 80), (5, 150), (15, 150)]
    for r in s.rows:
        idx = np.sort(order[:r["n"]])
        assert r["value"] == pytest.approx(ref.cknna(X[idx], Y[idx], r["k"]), rel=1e-9)
    assert "cknna" in s.table() and s.column("value").shape == (4,)
    c = ma.sweep("mutual_knn", X, Y, k=[5, 10], seed=1)
    for r in c.rows:
        want = ma.confidence_interval("mutual_knn", X, Y, k=r["k"], seed=1)
        assert (r["low"], r["high"]) == (want.low, want.high)
    with pytest.raises(ValueError, match="n values must be <= N=150"):
        ma.sweep("cka", X, Y, n=[200])
    with pytest.raises(ValueError, match="k does not apply to cka"):
        ma.sweep("cka", X, Y, k=[5])


# ---- bootstrap_ci at the float64 limit ----------------------------------------------------

def test_bootstrap_ci_does_not_overflow():
    assert ma.bootstrap_ci(np.full(50, 1e308)) == (1e308, 1e308)
    v = np.r_[np.full(25, -1.5e308), np.full(25, 1.5e308)]
    low, high = ma.bootstrap_ci(v, seed=1)
    assert np.isfinite(low) and np.isfinite(high) and -1.5e308 < low < 0 < high < 1.5e308
    w = np.random.default_rng(0).normal(size=40)
    scaled = ma.bootstrap_ci(w * 2.0 ** 1000, seed=2)
    assert scaled == tuple(x * 2.0 ** 1000 for x in ma.bootstrap_ci(w, seed=2))


# ---- assess: one value shared by the interval and the null --------------------------------

@pytest.mark.parametrize("name,method", [("cknna", "permutation-normal"),
                                         ("mutual_knn", "permutation-normal"),
                                         ("cka", "moments"),
                                         ("distance_correlation", "t-test"),
                                         ("information_imbalance", "asymptotic"),
                                         ("intrinsic_dimension", None)])
def test_assess_equals_the_separate_calls(name, method):
    X, Y = pair(12, n=100)
    Y = None if name == "intrinsic_dimension" else Y
    ci, null = st.assess(name, X, Y, n_subsamples=5, n_permutations=20, seed=3, n_threads=1)
    want = ma.confidence_interval(name, X, Y, n_subsamples=5, seed=3, n_threads=1)
    assert (ci.value, ci.low, ci.high) == pytest.approx((want.value, want.low, want.high),
                                                        rel=1e-12)
    if method is None:
        assert null is None
        return
    wn = ma.null_test(name, X, Y, method=method, n_permutations=20, seed=3, n_threads=1)
    assert (null.method, null.p_value, null.null_mean) == (wn.method, wn.p_value, wn.null_mean)


def test_permutation_normal_null():
    X, Y = pair(13, n=150)
    Z = np.random.default_rng(14).normal(size=(150, 8))
    a = ma.null_test("cknna", X, Y, method="permutation-normal", n_permutations=15, seed=2)
    p = ma.null_test("cknna", X, Y, method="permutation", n_permutations=15, seed=2)
    np.testing.assert_array_equal(a.null, p.null)
    sd = np.std(p.null, ddof=1)
    t = (p.value - np.mean(p.null)) / (sd * np.sqrt(1 + 1 / 15))
    assert a.statistic == pytest.approx(t) and a.p_value == pytest.approx(stats.t.sf(t, 14))
    assert a.p_value < 1e-6 < p.p_value         # far below the 1/16 floor of the plain test
    # unrelated spaces: the normal p-value agrees with the plain permutation p-value
    b = ma.null_test("cka", X, Z, method="permutation-normal", n_permutations=40, seed=3)
    c = ma.null_test("cka", X, Z, method="permutation", n_permutations=40, seed=3)
    assert b.p_value > 0.01 and abs(b.p_value - c.p_value) < 0.25
    il = ma.null_test("information_imbalance", X, Y, method="permutation-normal",
                      n_permutations=10)
    assert il.alternative == "less" and il.p_value < 0.01
    with pytest.raises(ValueError, match="needs n_permutations >= 3"):
        ma.null_test("cka", X, Y, method="permutation-normal", n_permutations=2)


# ---- the cheap exact forms of the statistics (docs/STATISTICS.md, "Cost") -------------------

@pytest.mark.parametrize("kw", [{}, {"kernel": "rbf", "sigma": 1.5}])
def test_cka_moments_null_equals_the_enumerated_permutation_distribution(kw):
    # All 7! relabellings of Y, each scored by the float64 reference CKA: the moments null's
    # mean and sd are those of the full permutation distribution.
    import itertools
    rng = np.random.default_rng(21)
    X = rng.normal(size=(7, 3)) ** 3
    Y = rng.normal(size=(7, 2))
    Y[0] *= 4.0
    vals = np.array([refg.cka(X, Y[list(p)], **kw) for p in itertools.permutations(range(7))])
    r = ma.null_test("cka", X, Y, method="moments", **kw)
    assert r.value == pytest.approx(refg.cka(X, Y, **kw), rel=1e-9)
    assert r.null_mean == pytest.approx(vals.mean(), rel=1e-9)
    assert r.null_sd == pytest.approx(vals.std(), rel=1e-7)
    z = (r.value - vals.mean()) / vals.std()
    assert r.statistic == pytest.approx(z, rel=1e-6) and r.p_value == pytest.approx(stats.norm.sf(z))
    assert (r.method, r.alternative, r.n_permutations) == ("moments", "greater", None)


def test_cka_moments_null_agrees_with_drawn_permutations_and_rejects_other_metrics():
    X, Y = pair(22, n=150)
    Z = np.random.default_rng(23).normal(size=(150, 5))
    for kw in ({}, {"kernel": "rbf"}):
        a = ma.null_test("cka", X, Z, method="moments", **kw)
        p = ma.null_test("cka", X, Z, method="permutation", n_permutations=400, seed=1, **kw)
        assert abs(a.null_mean - np.mean(p.null)) < 4 * a.null_sd / np.sqrt(400)
        assert a.null_sd == pytest.approx(np.std(p.null, ddof=1), rel=0.15)
        assert abs(a.p_value - p.p_value) < 0.1
        assert ma.null_test("cka", X, Y, method="moments", **kw).p_value < 1e-6
    with pytest.raises(ValueError, match="method='moments' applies to cka with the biased"):
        ma.null_test("cka", X, Y, method="moments", unbiased=True)
    with pytest.raises(ValueError, match="method='moments' applies to cka"):
        ma.null_test("cknna", X, Y, method="moments")
    # auto: the moments null, and the permutation-normal one for the unbiased estimator
    assert st.assess("cka", X, Y, n_subsamples=3)[1].method == "moments"
    assert st.assess("cka", X, Y, n_subsamples=3, n_permutations=5,
                     unbiased=True)[1].method == "permutation-normal"


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_linear_cka_group_sums_give_the_metric_of_each_union(dtype):
    X, Y = pair(24, n=300)
    X, Y = (X * 3.0 + 50.0).astype(dtype), Y.astype(dtype)       # a large shift: centring
    g = st._LinearCkaGroups(X, Y, st.CKA_GROUPS, [5, 2])
    perm = np.random.default_rng([5, 2]).permutation(300)
    edges = np.linspace(0, 300, st.CKA_GROUPS + 1).round().astype(int)
    tol = 1e-9 if dtype == np.float64 else 2e-5
    for sel in (np.arange(st.CKA_GROUPS), np.array([0, 3, 7, 14]), np.array([11])):
        rows = np.concatenate([perm[edges[i]:edges[i + 1]] for i in sel])
        want = refg.cka(X[rows].astype(np.float64), Y[rows].astype(np.float64))
        assert g.value(sel, 0.0) == pytest.approx(want, rel=tol)
    Xc = X.astype(np.float64) - X.astype(np.float64).mean(axis=0)
    K = Xc @ Xc.T
    tx, _ = g.full_terms()
    assert tx == pytest.approx((np.trace(K), np.sum(K * K), np.sum(np.diag(K) ** 2)), rel=tol)


def test_graph_relabelling_equals_permute_rows_with_ties():
    # integer rows: many equal inner products, so many rows hold ties that must be re-sorted
    rng = np.random.default_rng(25)
    Y = rng.integers(-2, 3, size=(80, 3)).astype(np.float64)
    gy = ma.knn(Y, k=6)
    tied = np.any(gy.values[:, 1:] == gy.values[:, :-1], axis=1)
    assert tied.mean() > 0.5
    from matalign.metrics.significance import permute_rows
    for s in range(5):
        perm = np.random.default_rng(s).permutation(80)
        a, b = st._relabel(gy, perm, tied), permute_rows(gy, perm)
        np.testing.assert_array_equal(a.indices, b.indices)
        np.testing.assert_array_equal(a.values, b.values)
    X = Y + rng.normal(size=Y.shape)
    r = ma.null_test("mutual_knn", X, Y, k=6, n_permutations=20, seed=3)
    p = ma.permutation_test(ma.mutual_knn, ma.knn(X, k=6), gy, n_permutations=20, seed=3, k=6)
    np.testing.assert_array_equal(r.null, p.null)


@pytest.mark.parametrize("name,kw", [("cknna", {}), ("mutual_knn", {}),
                                     ("mutual_knn", {"metric": "l2"})])
def test_graph_subsamples_searched_directly_equal_the_generic_path(name, kw):
    X, Y = pair(26, n=200)
    m = st._resolve(name, 9, kw)
    assert st._subsample_fn(m) is st._graph_subsample_values
    for dt in (np.float64, np.float32):
        a = st._graph_subsample_values(m, X.astype(dt), Y.astype(dt), 80, 4, [2, 0])
        b = st._subsample_values(m, X.astype(dt), Y.astype(dt), 80, 4, [2, 0])
        np.testing.assert_array_equal(a, b)
    assert st._subsample_fn(st._resolve("mutual_knn", 9, {"metric": "cosine"})) \
        is st._subsample_values


# ---- work shared across the pairs of a matrix (WorkCache, value=) -------------------------

def _three_spaces(seed=3, n=160):
    rng = np.random.default_rng(seed)
    Z = rng.normal(size=(n, 4))
    return [Z @ rng.normal(size=(4, d)) + s * rng.normal(size=(n, d))
            for d, s in ((6, 0.3), (9, 0.8), (12, 1.5))]


@pytest.mark.parametrize("name", ["cknna", "mutual_knn"])
def test_work_cache_reuses_graphs_and_changes_no_result(name, monkeypatch):
    from matalign import _engine
    spaces = _three_spaces()
    pairs = [(0, 1), (0, 2), (1, 2)]
    plain = [st.assess(name, spaces[a], spaces[b], k=5, n_subsamples=6, n_permutations=7)
             for a, b in pairs]
    calls = []
    real = _engine.knn_exact
    monkeypatch.setattr(_engine, "knn_exact", lambda *a, **k: calls.append(1) or real(*a, **k))
    cache = st.WorkCache()
    cached = [st.assess(name, spaces[a], spaces[b], k=5, n_subsamples=6, n_permutations=7,
                        cache=cache) for a, b in pairs]
    for (ci0, nu0), (ci1, nu1) in zip(plain, cached):
        assert (ci0.value, ci0.low, ci0.high, ci0.rate) == (ci1.value, ci1.low, ci1.high, ci1.rate)
        np.testing.assert_array_equal(ci0.subsample_values, ci1.subsample_values)
        assert (nu0.p_value, nu0.null_mean) == (nu1.p_value, nu1.null_mean)
    # each of the 3 spaces searched once per subsample (2 sizes × 6) and once in full (ma.knn
    # calls the same engine function); without the cache every pair searches both its spaces
    assert len(calls) == 3 * (2 * 6 + 1)
    assert len(cache) == 3 * (2 * 6 + 1)


def test_value_is_used_as_given_and_checked():
    X, Y, _ = _three_spaces()
    ci, null = st.assess("cka", X, Y, n_subsamples=5)
    ci2, null2 = st.assess("cka", X, Y, n_subsamples=5, value=ci.value)
    assert (ci2.value, ci2.low, ci2.high, null2.p_value) == (ci.value, ci.low, ci.high,
                                                              null.p_value)
    ci3, _ = st.assess("cka", X, Y, n_subsamples=5, value=0.25)   # used as given
    assert ci3.value == 0.25 and ci3.high - ci3.low == pytest.approx(ci.high - ci.low)
    with pytest.raises(ValueError, match="value= does not apply to cknna"):
        st.assess("cknna", X, Y, k=5, value=0.5)
    with pytest.raises(ValueError, match="value must be a finite number"):
        st.assess("cka", X, Y, value=float("nan"))
    with pytest.raises(TypeError, match="cache must be a matalign.statistics.WorkCache"):
        st.assess("cka", X, Y, cache={})


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_linear_cka_group_tables_row_form_equals_feature_form(monkeypatch, dtype):
    """The two exact forms of the per-group tables (feature blocks XᵀY per group, or row-Gram
    tiles) give the same interval and null; a space wider than N takes the row form by cost
    (no D × D block is built), and tiles smaller than a group change nothing."""
    rng = np.random.default_rng(8)
    n = 96
    Z = rng.normal(size=(n, 5))
    X = (Z @ rng.normal(size=(5, 400)) + rng.normal(size=(n, 400))).astype(dtype)
    Y = (Z @ rng.normal(size=(5, 30)) + 2.0 * rng.normal(size=(n, 30))).astype(dtype)
    forms = []
    real = st._group_inner

    def spy(Zs, V, edges, same):
        forms.append((Zs.shape[1], V.shape[1], same))
        return real(Zs, V, edges, same)
    monkeypatch.setattr(st, "_group_inner", spy)
    ci, null = st.assess("cka", X, Y, n_subsamples=8)
    assert sorted(forms) == [(30, 30, True), (400, 30, False), (400, 400, True)]
    tol = 1e-10 if dtype == np.float64 else 2e-5
    for form, tile in (("feature", 2048), ("row", 2048), ("row", 5)):
        monkeypatch.setattr(st, "_FORM", form)
        monkeypatch.setattr(st, "_ROW_TILE", tile)
        ci_f, null_f = st.assess("cka", X, Y, n_subsamples=8)
        assert ci.value == ci_f.value
        np.testing.assert_allclose(ci.subsample_values, ci_f.subsample_values, rtol=tol)
        assert ci.low == pytest.approx(ci_f.low, rel=tol)
        assert null.null_mean == pytest.approx(null_f.null_mean, rel=tol)
        assert null.p_value == pytest.approx(null_f.p_value, rel=1e-4, abs=1e-300)
    # and each form against the definition, on a union of groups
    g = st._LinearCkaGroups(X, Y, st.CKA_GROUPS, [1, 2])
    perm = np.random.default_rng([1, 2]).permutation(n)
    edges = np.linspace(0, n, st.CKA_GROUPS + 1).round().astype(int)
    sel = np.array([1, 2, 9, 15])
    rows = np.concatenate([perm[edges[i]:edges[i + 1]] for i in sel])
    want = refg.cka(X[rows].astype(np.float64), Y[rows].astype(np.float64))
    assert g.value(sel, 0.0) == pytest.approx(want, rel=tol)


@pytest.mark.parametrize("name,kw", [("cka", {}), ("cka", {"kernel": "rbf"}),
                                     ("cka", {"unbiased": True}),
                                     ("distance_correlation", {}),
                                     ("information_imbalance", {"direction": "x->y"}),
                                     ("information_imbalance", {"direction": "y->x"})])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_work_cache_with_spaces_fuses_and_changes_no_result(name, kw, dtype):
    """A WorkCache holding every space evaluates each subsample (and dCor's t-test) for all
    pairs in one fused pass: every pair's interval and null equal the plain per-pair call
    bit for bit."""
    spaces = [A.astype(dtype) for A in _three_spaces(seed=5, n=120)]
    cache = st.WorkCache(spaces)
    for a, b in [(0, 1), (2, 0), (1, 2)]:
        ci0, nu0 = st.assess(name, spaces[a], spaces[b], n_subsamples=5, **kw)
        ci1, nu1 = st.assess(name, spaces[a], spaces[b], n_subsamples=5, cache=cache, **kw)
        assert (ci0.value, ci0.low, ci0.high, ci0.rate) == (ci1.value, ci1.low, ci1.high,
                                                              ci1.rate)
        np.testing.assert_array_equal(ci0.subsample_values, ci1.subsample_values)
        assert (nu0.value, nu0.p_value, nu0.null_mean) == (nu1.value, nu1.p_value,
                                                            nu1.null_mean)
    assert len(cache) > 0


def test_work_cache_fuses_only_one_dtype():
    X, Y, Z = _three_spaces(seed=6, n=60)
    assert st.WorkCache([X, Y.astype(np.float32), Z]).fused_pair(X, Z) is None
    cache = st.WorkCache([X, Y, Z])
    assert cache.fused_pair(X, Z) == (0, 2)
    assert cache.fused_pair(X, X.copy()) is None and cache.fused_pair(X, X) is None
