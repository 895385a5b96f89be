"""ma.permutation_test, ma.bootstrap_ci and permute_rows (graph relabelling). The docstring
examples of the modules run in tests/test_doctests.py."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

import matalign as ma
from matalign.metrics.significance import permute_rows


def pair(seed: int, n: int = 120, d: int = 6, noise: float = 0.5):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d))
    return X, X + noise * rng.normal(size=(n, d))


# ---- permute_rows -------------------------------------------------------------------------

@pytest.mark.parametrize("metric", ["ip", "l2", "cosine"])
def test_permuted_graph_equals_knn_of_permuted_rows(metric):
    _, Y = pair(0, n=90)
    perm = np.random.default_rng(1).permutation(90)
    g = permute_rows(ma.knn(Y, k=7, metric=metric), perm)
    h = ma.knn(Y[perm], k=7, metric=metric)
    np.testing.assert_array_equal(g.indices, h.indices)
    np.testing.assert_allclose(g.values, h.values, rtol=1e-12)
    assert (g.metric, g.self_excluded) == (metric, True)


def test_permuted_graph_keeps_tie_order():
    # Integer data: many exact ties; within equal values, indices must ascend after relabelling.
    Y = np.random.default_rng(2).integers(0, 3, size=(40, 2)).astype(np.float64)
    g = ma.knn(Y, k=6, metric="l2")
    p = permute_rows(g, np.random.default_rng(3).permutation(40))
    v, i = p.values, p.indices
    same = v[:, 1:] == v[:, :-1]
    assert np.all(v[:, 1:] >= v[:, :-1])
    assert np.all(i[:, 1:][same] > i[:, :-1][same])


def test_permute_rows_array_and_errors():
    X, _ = pair(0, n=5, d=2)
    perm = np.array([4, 0, 1, 3, 2])
    np.testing.assert_array_equal(permute_rows(X, perm), X[perm])
    with pytest.raises(ValueError, match="perm must be a permutation of 0..N-1 with N=5"):
        permute_rows(X, np.array([0, 0, 1, 2, 3]))
    with pytest.raises(ValueError, match="perm must be a permutation"):
        permute_rows(X, np.arange(4))
    g = ma.knn(X, k=1, queries=X[:2])
    with pytest.raises(ValueError, match="separate queries"):
        permute_rows(g, np.arange(2))


# ---- permutation_test ---------------------------------------------------------------------

def test_permutation_test_definition():
    X, Y = pair(4)
    res = ma.permutation_test(ma.cka, X, Y, n_permutations=20, seed=7)
    assert isinstance(res, ma.SignificanceResult)
    assert res.value == ma.cka(X, Y)
    rng = np.random.default_rng(7)
    null = [ma.cka(X, Y[rng.permutation(len(Y))]) for _ in range(20)]
    np.testing.assert_array_equal(res.null, null)
    assert res.p_value == (1 + sum(v >= res.value for v in null)) / 21
    assert (res.seed, res.n_permutations, res.alternative) == (7, 20, "greater")
    assert res.p_value == pytest.approx(1 / 21)
    assert "SignificanceResult(value=" in repr(res)


def test_permutation_test_is_seeded():
    X, Y = pair(5)
    a = ma.permutation_test(ma.distance_correlation, X, Y, n_permutations=5, seed=1)
    b = ma.permutation_test(ma.distance_correlation, X, Y, n_permutations=5, seed=1)
    c = ma.permutation_test(ma.distance_correlation, X, Y, n_permutations=5, seed=2)
    np.testing.assert_array_equal(a.null, b.null)
    assert not np.array_equal(a.null, c.null)


def test_permutation_test_independent_spaces_not_significant():
    rng = np.random.default_rng(6)
    X, Y = rng.normal(size=(80, 4)), rng.normal(size=(80, 4))
    res = ma.permutation_test(ma.distance_correlation, X, Y, n_permutations=40, seed=0,
                              unbiased=True)
    assert res.p_value > 0.05


def test_permutation_test_graphs_match_arrays():
    # Reusing graphs (O(N·k) per permutation) gives the same null as re-searching arrays.
    X, Y = pair(8, n=100)
    gx, gy = ma.knn(X, k=5), ma.knn(Y, k=5)
    for fn in (ma.mutual_knn, ma.cknna):
        from_graphs = ma.permutation_test(fn, gx, gy, n_permutations=10, seed=3, k=5)
        from_arrays = ma.permutation_test(fn, X, Y, n_permutations=10, seed=3, k=5)
        assert from_graphs.value == from_arrays.value
        np.testing.assert_allclose(from_graphs.null, from_arrays.null, rtol=1e-12, atol=1e-15)
        assert from_graphs.p_value == from_arrays.p_value == pytest.approx(1 / 11)


def test_permutation_test_alternatives_with_information_imbalance():
    X, Y = pair(9, n=80, noise=0.2)

    def delta(A, B):
        return ma.information_imbalance(A, B)[0]

    less = ma.permutation_test(delta, X, Y, n_permutations=15, alternative="less")
    greater = ma.permutation_test(delta, X, Y, n_permutations=15, alternative="greater")
    both = ma.permutation_test(delta, X, Y, n_permutations=15, alternative="two-sided")
    assert less.p_value == pytest.approx(1 / 16)
    assert greater.p_value == pytest.approx(1.0)
    assert both.p_value == pytest.approx(2 / 16)
    np.testing.assert_array_equal(less.null, greater.null)


def test_significance_result_is_frozen():
    X, Y = pair(10, n=30)
    res = ma.permutation_test(ma.cka, X, Y, n_permutations=3)
    with pytest.raises(dataclasses.FrozenInstanceError):
        res.value = 0.0
    with pytest.raises(ValueError, match="read-only"):
        res.null[0] = 0.0


def test_permutation_test_errors():
    X, Y = pair(11, n=20)
    with pytest.raises(TypeError, match="metric_fn must be callable"):
        ma.permutation_test("cka", X, Y)
    with pytest.raises(TypeError, match="metric_fn must return a real number.*tuple"):
        ma.permutation_test(ma.information_imbalance, X, Y, n_permutations=2)
    with pytest.raises(ValueError, match="n_permutations must be >= 1; got 0"):
        ma.permutation_test(ma.cka, X, Y, n_permutations=0)
    with pytest.raises(ValueError, match="alternative must be one of 'greater', 'less', "
                                         "'two-sided'; got 'both'"):
        ma.permutation_test(ma.cka, X, Y, alternative="both")
    with pytest.raises(ValueError, match="same number of rows"):
        ma.permutation_test(ma.cka, X, Y[:19])
    with pytest.raises(ValueError, match="metric_fn returned nan on the real pairing"):
        ma.permutation_test(lambda A, B: float("nan"), X, Y)
    with pytest.raises(ValueError, match="separate queries"):
        ma.permutation_test(ma.mutual_knn, ma.knn(X, k=2, queries=X), Y)
    with pytest.raises(ValueError, match=r"cka\(unbiased=True\) needs at least 4 rows"):
        ma.permutation_test(ma.cka, X[:3], Y[:3], unbiased=True)


# ---- bootstrap_ci -------------------------------------------------------------------------

def test_bootstrap_ci_definition_and_seed():
    a = np.random.default_rng(12).uniform(size=300)
    low, high = ma.bootstrap_ci(a, n_boot=400, level=0.9, seed=3)
    rng = np.random.default_rng(3)
    means = a[rng.integers(0, a.size, size=(400, a.size))].mean(axis=1)
    want = np.quantile(means, [0.05, 0.95])
    assert (low, high) == pytest.approx(tuple(want), rel=1e-14)
    assert (low, high) == ma.bootstrap_ci(a, n_boot=400, level=0.9, seed=3)
    assert (low, high) != ma.bootstrap_ci(a, n_boot=400, level=0.9, seed=4)


def test_bootstrap_ci_nesting_and_constant_values():
    a = ma.local_agreement(*pair(13, n=200), k=5)
    low95, high95 = ma.bootstrap_ci(a, level=0.95)
    low50, high50 = ma.bootstrap_ci(a, level=0.5)
    assert low95 <= low50 < a.mean() < high50 <= high95
    assert ma.bootstrap_ci(np.full(10, 0.25)) == (0.25, 0.25)
    assert ma.bootstrap_ci([0, 1, 1, 0], n_boot=1) == ma.bootstrap_ci([0, 1, 1, 0], n_boot=1)


def test_bootstrap_ci_large_n_uses_blocks():
    a = np.random.default_rng(14).normal(size=300_000)
    low, high = ma.bootstrap_ci(a, n_boot=30)
    assert low < 0.01 and high > -0.01 and high - low < 0.02


def test_bootstrap_ci_errors():
    with pytest.raises(ValueError, match=r"must be 1-D .*got shape \(3, 2\)"):
        ma.bootstrap_ci(np.ones((3, 2)))
    with pytest.raises(ValueError, match="needs at least 2 values; got 1"):
        ma.bootstrap_ci([0.5])
    with pytest.raises(ValueError, match="non-finite value at index 2"):
        ma.bootstrap_ci([0.1, 0.2, np.nan])
    with pytest.raises(TypeError, match="must be real numbers; got dtype <U1|must be real"):
        ma.bootstrap_ci(np.array(["a", "b"]))
    with pytest.raises(ValueError, match=r"level must be in \(0, 1\)"):
        ma.bootstrap_ci([0.1, 0.2], level=1.0)
    with pytest.raises(TypeError, match="level must be a real number"):
        ma.bootstrap_ci([0.1, 0.2], level="95%")
    with pytest.raises(ValueError, match="n_boot must be >= 1"):
        ma.bootstrap_ci([0.1, 0.2], n_boot=0)
