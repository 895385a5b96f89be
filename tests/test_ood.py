"""matalign.ood: k-th nearest reference neighbour distances against a NumPy reference, the
percentile, consensus and agreement columns, and AUROC / FPR against sklearn-free
references written from their definitions."""

from __future__ import annotations

import numpy as np
import pytest

import matalign as ma
from matalign.ood import auroc, fpr_at_tpr, reference_scores


def kth_distance_ref(R, Q, k):
    d = np.sqrt(((Q[:, None, :] - R[None, :, :]) ** 2).sum(-1))
    return np.sort(d, axis=1)[:, k - 1]


def test_columns_against_reference():
    rng = np.random.default_rng(0)
    R = {"a": rng.normal(size=(120, 4)), "b": rng.normal(size=(120, 7))}
    Q = {"a": rng.normal(size=(45, 4)) * 1.5, "b": rng.normal(size=(45, 7))}
    s = reference_scores(R, Q, k=3, block_rows=7, agreement_k=5)
    pct = []
    for m in ("a", "b"):
        d = kth_distance_ref(R[m], Q[m], 3)
        np.testing.assert_allclose(s[f"knn_distance[{m}]"], d, rtol=1e-9)
        dr = np.sqrt(((R[m][:, None] - R[m][None]) ** 2).sum(-1))
        np.fill_diagonal(dr, np.inf)
        loo = np.sort(dr, axis=1)[:, 2]
        p = np.array([(loo < x).mean() for x in d])
        np.testing.assert_allclose(s[f"percentile[{m}]"], p)
        pct.append(p)
    np.testing.assert_allclose(s["consensus"], np.mean(pct, axis=0))
    np.testing.assert_allclose(s["agreement"], 1 - np.abs(pct[0] - pct[1]))
    la = ma.local_agreement(Q["a"], Q["b"], k=5, metric="l2")
    np.testing.assert_allclose(s["within_set_disagreement"], 1 - la)
    np.testing.assert_allclose(s["max_percentile"], np.max(pct, axis=0))
    np.testing.assert_allclose(s["disagreement"], np.abs(pct[0] - pct[1]))
    # the default score is the one bench/bench_ood.py chose (highest mean AUROC)
    assert (s.default, s.params["preprocess"]) == ("max_percentile", "none")
    np.testing.assert_array_equal(s.score, s["max_percentile"])
    assert reference_scores(R, Q, k=3, default="consensus").default == "consensus"


@pytest.mark.parametrize("how", ["l2", "standardize"])
def test_preprocessing_is_applied_to_reference_and_queries_alike(how):
    rng = np.random.default_rng(5)
    R = {"a": rng.normal(size=(80, 4)) * [1, 5, 0.2, 3] + 2.0}
    Q = {"a": rng.normal(size=(30, 4)) * [1, 5, 0.2, 3] + 2.5}
    if how == "l2":
        f = lambda A: A / np.linalg.norm(A, axis=1, keepdims=True)          # noqa: E731
        Rp, Qp = f(R["a"]), f(Q["a"])
    else:
        mu, sd = R["a"].mean(0), R["a"].std(0)
        Rp, Qp = (R["a"] - mu) / sd, (Q["a"] - mu) / sd
    s = reference_scores(R, Q, k=4, preprocess=how)
    np.testing.assert_allclose(s["knn_distance[a]"], kth_distance_ref(Rp, Qp, 4), rtol=1e-9)
    with pytest.raises(ValueError, match="preprocess"):
        reference_scores(R, Q, preprocess="zscore")


def test_reference_score_finds_shifted_structures_where_disagreement_does_not():
    # OOD rows are a shifted copy of in-distribution rows, shifted alike in both models: the
    # models agree on their neighbourhoods (within-set disagreement is blind) but both see
    # them far from the reference.
    rng = np.random.default_rng(1)
    z_ref, z_in = rng.normal(size=(400, 3)), rng.normal(size=(100, 3))
    z_out = z_in + np.array([4.0, 0, 0])
    A, B = rng.normal(size=(3, 8)), rng.normal(size=(3, 6))
    R = {"a": z_ref @ A, "b": z_ref @ B}
    Q = {"a": np.r_[z_in, z_out] @ A, "b": np.r_[z_in, z_out] @ B}
    y = np.r_[np.zeros(100), np.ones(100)]
    s = reference_scores(R, Q, k=5)
    assert auroc(s.score, y) > 0.9
    assert auroc(s["within_set_disagreement"], y) < 0.7
    assert fpr_at_tpr(s.score, y) < fpr_at_tpr(s["within_set_disagreement"], y)


def test_auroc_and_fpr_definitions():
    rng = np.random.default_rng(2)
    s = rng.integers(0, 5, size=60).astype(float)      # ties on purpose
    y = rng.integers(0, 2, size=60)
    pos, neg = s[y == 1], s[y == 0]
    want = np.mean([(p > q) + 0.5 * (p == q) for p in pos for q in neg])
    assert auroc(s, y) == pytest.approx(want, rel=1e-12)
    assert auroc(-s, y) == pytest.approx(1 - want, rel=1e-12)
    thr = np.sort(pos)[int(np.floor(0.05 * (pos.size - 1)))]
    assert fpr_at_tpr(s, y) == pytest.approx(np.mean(neg >= thr))
    with pytest.raises(ValueError, match="both classes"):
        auroc(s, np.ones(60))


def test_ood_errors():
    R = {"a": np.zeros((10, 2)) + np.arange(10)[:, None]}
    with pytest.raises(TypeError, match="reference must be a non-empty dict"):
        reference_scores([], R)
    with pytest.raises(ValueError, match="same models"):
        reference_scores(R, {"b": np.ones((3, 2))})
    with pytest.raises(ValueError, match="reference has D=2 but queries have D=3"):
        reference_scores(R, {"a": np.ones((3, 3))})
    with pytest.raises(ValueError, match="k"):
        reference_scores(R, {"a": np.ones((3, 2))}, k=10)
