"""matalign.findings.compare_groups on statistics computed by ma.confidence_interval and
ma.null_test from constructed model spaces: a positive, a counter-example, two random subsets
of one set, and near-duplicate checkpoints."""

from __future__ import annotations

import json

import numpy as np
import pytest

import matalign as ma
from matalign.findings import PairStatistic, compare_groups, near_duplicate

N, K = 200, 10


def spaces(noises, seed):
    """Views of one latent set of N structures; a model's noise sets how well it aligns."""
    rng = np.random.default_rng(seed)
    z = rng.normal(size=(N, 5))
    out = {}
    for name, s in noises.items():
        W = rng.normal(size=(5, 12))
        out[name] = np.tanh(z @ W) + s * rng.normal(size=(N, 12))
    return out


def stat(S, a, b, seed=0):
    ci = ma.confidence_interval("cknna", S[a], S[b], k=K, n_subsamples=10, seed=seed,
                                n_threads=1)
    null = ma.null_test("cknna", S[a], S[b], k=K, n_permutations=199, seed=seed, n_threads=1)
    return PairStatistic.from_results(a, b, ci, null)


@pytest.fixture(scope="module")
def models():
    noises = {**{f"good{i}": 0.15 for i in range(4)}, **{f"weak{i}": 1.2 for i in range(4)},
              **{f"same{i}": 0.6 for i in range(8)}}
    S = spaces(noises, seed=1)
    S["good0-ft"] = S["good0"] + 0.02 * np.random.default_rng(3).normal(size=(N, 12))
    return S


def pairs(S, names):
    return [stat(S, a, b) for i, a in enumerate(names) for b in names[i + 1:]]


def test_holds_on_a_constructed_positive(models):
    good = pairs(models, [f"good{i}" for i in range(4)])
    weak = pairs(models, [f"weak{i}" for i in range(4)])
    v = compare_groups(good, weak)
    assert v.verdict == "holds", v
    assert v.low > 0 and v.chance_ok and (v.n, v.k, v.n_pairs_a) == (N, K, 6)
    json.dumps(v.as_dict())


def test_does_not_hold_on_a_counter_example(models):
    good = pairs(models, [f"good{i}" for i in range(4)])
    weak = pairs(models, [f"weak{i}" for i in range(4)])
    v = compare_groups(weak, good)
    assert v.verdict == "does not hold", v
    assert v.high < 0


def test_inconclusive_on_two_random_subsets_of_one_set(models):
    names = [f"same{i}" for i in range(8)]
    allp = pairs(models, names)
    order = np.random.default_rng(7).permutation(len(allp))
    a = [allp[i] for i in order[:14]]
    b = [allp[i] for i in order[14:]]
    v = compare_groups(a, b)
    assert v.verdict == "inconclusive", v
    assert v.low < 0 < v.high


def test_near_duplicates_are_excluded_from_the_evidence(models):
    names = [f"same{i}" for i in range(8)]
    allp = pairs(models, names)
    a, b = allp[:3], allp[3:9]
    dup = stat(models, "good0", "good0-ft")
    with_dup = compare_groups(a + [dup, dup], b)
    assert with_dup.verdict == "holds"            # one model seen twice makes A look better
    v = compare_groups(a + [dup, dup], b, parents={"good0-ft": "good0"})
    assert v.verdict == "inconclusive" and v.excluded == [("good0", "good0-ft")] * 2
    assert v.n_pairs_a == 3
    assert near_duplicate("r2scan", "mf", {"r2scan": "base", "mf": "base"})
    assert not near_duplicate("a", "b", {"a": "base"})


def test_chance_and_direction_rules():
    hi = [PairStatistic("a", "b", 0.8, 0.78, 0.82, 100, 10, 0.5)]
    lo = [PairStatistic("c", "d", 0.5, 0.48, 0.52, 100, 10, None)]
    assert compare_groups(hi, lo).verdict == "inconclusive"          # A not beyond chance
    assert compare_groups(hi, lo, require_chance=False).verdict == "holds"
    assert compare_groups(hi, lo, direction="less", require_chance=False).verdict == \
        "does not hold"
    with pytest.raises(ValueError, match="missing for"):
        compare_groups(lo, hi)
    with pytest.raises(ValueError, match="share one N and one k"):
        compare_groups(hi, [PairStatistic("c", "d", 0.5, 0.4, 0.6, 200, 10)],
                       require_chance=False)
    with pytest.raises(ValueError, match="is not inside"):
        compare_groups([PairStatistic("a", "b", 0.9, 0.1, 0.2, 1, 1, 0.1)], lo)
    with pytest.raises(TypeError, match="group_a must be a list"):
        compare_groups("ab", lo)
    with pytest.raises(ValueError, match="group_b has no independent pair left"):
        compare_groups(hi, lo, parents={"c": "d"})
