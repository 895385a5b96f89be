"""Every entry of alignment_matrix equals the pairwise call bit for bit, for every metric.

Both forms call one kernel per metric with one blocking (metrics/<metric>.py), so the
equality is exact, not approximate: a fused pass whose tile, block partition or summation
order depended on the number of models would fail here. N exceeds every tile and block
(PairSums tiles of 336/480 rows, Gram blocks of 512, NumPy blocks of 2048 only above N) so
partial sums are combined across blocks; the dims differ between models.
"""

from __future__ import annotations

import numpy as np
import pytest

import matalign as ma

N = 1100
DIMS = (5, 17, 33, 8)


def _spaces(dtype, seed=0, dims=DIMS):
    rng = np.random.default_rng(seed)
    latent = rng.normal(size=(N, 4))
    out = {}
    for i, d in enumerate(dims):
        A = latent @ rng.normal(size=(4, d)) + (0.2 + 0.3 * i) * rng.normal(size=(N, d))
        out[f"m{i}"] = (A + 2.0 * i).astype(dtype)
    return out


def _pairwise(metric, X, Y, opts):
    if metric == "cknna":
        return ma.cknna(X, Y, k=opts["k"], eps=opts.get("eps", 0.0))
    if metric == "mutual_knn":
        return ma.mutual_knn(X, Y, k=opts["k"], metric=opts.get("knn_metric", "ip"))
    if metric == "cka":
        return ma.cka(X, Y, kernel=opts.get("cka_kernel", "linear"), unbiased=opts["unbiased"],
                      seed=opts.get("seed", 0))
    if metric == "dcor":
        return ma.distance_correlation(X, Y, unbiased=opts["unbiased"])
    if metric == "information_imbalance":
        return ma.information_imbalance(X, Y, k=opts["imbalance_k"])[0]
    raise AssertionError(metric)


CASES = [
    (["cknna", "mutual_knn"], dict(k=7, eps=1e-6, unbiased=False)),
    (["mutual_knn"], dict(k=4, knn_metric="l2", unbiased=False)),
    (["mutual_knn"], dict(k=5, knn_metric="cosine", unbiased=False)),
    (["cka", "dcor"], dict(unbiased=False)),
    (["cka", "dcor"], dict(unbiased=True)),
    (["cka"], dict(cka_kernel="rbf", unbiased=False, seed=3)),
    (["cka"], dict(cka_kernel="rbf", unbiased=True)),
    (["information_imbalance"], dict(imbalance_k=3, unbiased=False)),
]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("metrics,opts", CASES)
def test_every_entry_equals_the_pairwise_call_bitwise(dtype, metrics, opts):
    spaces = _spaces(dtype)
    names = list(spaces)
    m = ma.alignment_matrix(spaces, metrics=metrics, **opts)
    for metric in metrics:
        for a in names:
            for b in names:
                if a == b and metric == "information_imbalance":
                    continue  # Δ(a→a) is not a pairwise call of interest; off-diagonal are
                got = m.value(metric, a, b)
                want = _pairwise(metric, spaces[a], spaces[b], opts)
                assert got == want, (metric, a, b, got, want, float(got) - float(want))


@pytest.mark.parametrize("unbiased", [False, True])
def test_equal_dimensions_and_both_argument_orders(unbiased):
    """Models of one D (the orientation of a pair is then decided by the data): the matrix
    entry equals the pairwise call in both argument orders."""
    spaces = _spaces(np.float64, seed=2, dims=(8, 8, 8))
    m = ma.alignment_matrix(spaces, metrics=["cka"], unbiased=unbiased)
    for a in spaces:
        for b in spaces:
            assert m.value("cka", a, b) == ma.cka(spaces[a], spaces[b], unbiased=unbiased)


def test_intrinsic_dimension_per_model_equals_the_single_call():
    spaces = _spaces(np.float32, seed=4)
    m = ma.alignment_matrix(spaces, metrics=["intrinsic_dimension", "cka"])
    for name, X in spaces.items():
        assert m.value("intrinsic_dimension", name) == ma.intrinsic_dimension(X)


def test_a_model_dependent_blocking_would_be_caught(monkeypatch):
    """The test above can fail: a PairSums tile that depends on M breaks bitwise equality."""
    import matalign.metrics._global as shared

    spaces = _spaces(np.float64)
    original = shared.pair_sums

    def m_dependent(spaces_, fn, gamma, n_threads, callback, device=None):
        tiles = {2: 336, 4: 96}
        from matalign import _engine
        spaces_ = shared.one_dtype(spaces_)
        return _engine.pair_sums(spaces_, fn, [] if gamma is None else gamma,
                                 tile_rows=tiles.get(len(spaces_), 336), n_threads=n_threads)

    monkeypatch.setattr(shared, "pair_sums", m_dependent)
    import matalign.metrics.dcor as dcor_module
    monkeypatch.setattr(dcor_module, "pair_sums", m_dependent)
    m = ma.alignment_matrix(spaces, metrics=["dcor"])
    pairwise = ma.distance_correlation(spaces["m0"], spaces["m1"])
    monkeypatch.setattr(dcor_module, "pair_sums", original)
    assert m.value("dcor", "m0", "m1") != pairwise
