"""intrinsic_dimension (TwoNN and its maximum-likelihood form) against the reference."""

from __future__ import annotations

import json
import os
import subprocess
import textwrap

import numpy as np
import pytest
import reference as ref

import matalign as ma


def _subspace(seed, n, d, D=50, dtype=np.float64):
    """n Gaussian points on a random d-dimensional linear subspace of R^D."""
    rng = np.random.default_rng(seed)
    Z = rng.standard_normal((n, d))
    A = rng.standard_normal((d, D))
    return (Z @ A).astype(dtype)


def _log_mu_deltas(X):
    """Per-row first-order bound on |Δ log μ_i| when every squared distance is
    off by at most the float32 l2 tolerance; and the kept log μ values."""
    _, atol = ref.knn_tolerance(X, "l2")
    r1, r2 = ref.two_nn_ratios(X)
    keep = r1 > 0
    delta = 0.5 * (atol / r1[keep] ** 2 + atol / r2[keep] ** 2)
    return delta, np.log(r2[keep] / r1[keep])


def _twonn_tolerance(X, fraction):
    """|Δd| bound for d = Σxy/Σx² (first order, factor 2 for safety).

    Sorting and taking a prefix are non-expansive in both the max and the l1
    norm, so the sorted x move by at most max δ each and by at most Σδ in
    total; Δd = Σ (y_i - 2 d x_i) Δx_i / Σx². Take the smaller of the two bounds.
    """
    delta, log_mu = _log_mu_deltas(X)
    n_rows = log_mu.size
    n = int(np.floor(fraction * n_rows))
    x = np.sort(log_mu)[:n]
    y = -np.log(1.0 - np.arange(1, n + 1) / n_rows)
    d = np.dot(x, y) / np.dot(x, x)
    w = np.abs(y - 2.0 * d * x)
    by_max = delta.max() * w.sum()
    by_sum = w.max() * delta.sum()
    return 2.0 * min(by_max, by_sum) / np.dot(x, x)


def _mle_tolerance(X):
    """|Δd| bound for d = (N-1)/Σ log μ (first order, factor 2 for safety)."""
    delta, log_mu = _log_mu_deltas(X)
    d = (log_mu.size - 1) / log_mu.sum()
    return 2.0 * d * delta.sum() / log_mu.sum()


@pytest.mark.parametrize("fraction", [0.9, 0.5, 0.99])
@pytest.mark.parametrize("d", [2, 5])
@pytest.mark.parametrize("seed", [0, 1])
def test_twonn_float64_vs_reference(seed, d, fraction):
    X = _subspace(seed, 700, d)
    got = ma.intrinsic_dimension(X, method="twonn", fraction=fraction)
    assert isinstance(got, float)
    np.testing.assert_allclose(got, ref.twonn_id(X, fraction), rtol=1e-9)


@pytest.mark.parametrize("d", [2, 5])
@pytest.mark.parametrize("seed", [0, 1])
def test_mle_float64_vs_reference(seed, d):
    X = _subspace(seed, 700, d)
    got = ma.intrinsic_dimension(X, method="mle")
    assert isinstance(got, float)
    np.testing.assert_allclose(got, ref.mle_id(X), rtol=1e-9)


def test_defaults_are_twonn_fraction_09():
    X = _subspace(2, 500, 3)
    assert ma.intrinsic_dimension(X) == ma.intrinsic_dimension(X, method="twonn", fraction=0.9)
    assert ma.intrinsic_dimension(X) != ma.intrinsic_dimension(X, method="mle")


@pytest.mark.parametrize("method", ["twonn", "mle"])
@pytest.mark.parametrize("case", [(0, 8, 300, 10), (0, 8, 200, 8), (1, 5, 150, 5)], ids=str)
def test_float32_vs_reference(case, method):
    """float32: reference on the float32-rounded data; the tolerance is the
    worst-case effect of float32 squared-distance errors on the estimator (the
    data is chosen so that this bound stays below 5 %)."""
    seed, d, n, D = case
    X = _subspace(seed + d, n, d, D=D, dtype=np.float32)
    got = ma.intrinsic_dimension(X, method=method)
    if method == "twonn":
        want, tol = ref.twonn_id(X, 0.9), _twonn_tolerance(X, 0.9)
    else:
        want, tol = ref.mle_id(X), _mle_tolerance(X)
    assert tol < 0.05 * want, f"derived tolerance {tol} too loose to mean anything"
    assert abs(got - want) <= tol, (got, want, tol)


@pytest.mark.parametrize("method", ["twonn", "mle"])
@pytest.mark.parametrize("d", [2, 4, 6])
def test_recovers_dimension_of_linear_subspace(d, method):
    X = _subspace(10 + d, 2000, d, D=50)
    est = ma.intrinsic_dimension(X, method=method)
    assert abs(est - d) <= 0.1 * d, f"estimated {est} for a {d}-dimensional subspace"


def test_invariances():
    X = _subspace(20, 800, 4)
    base = ma.intrinsic_dimension(X)
    assert ma.intrinsic_dimension(4.0 * X) == pytest.approx(base, rel=1e-14, abs=0)
    assert ma.intrinsic_dimension(X + 0.5) == pytest.approx(base, rel=1e-8, abs=0)
    Q, _ = np.linalg.qr(np.random.default_rng(21).standard_normal((50, 50)))
    assert ma.intrinsic_dimension(X @ Q) == pytest.approx(base, rel=1e-8, abs=0)
    perm = np.random.default_rng(22).permutation(800)
    assert ma.intrinsic_dimension(X[perm]) == pytest.approx(base, rel=1e-12, abs=0)


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("method", ["twonn", "mle"])
def test_duplicates_warn_with_count_and_are_excluded(method, dtype):
    X = _subspace(30, 400, 3, D=10, dtype=dtype)
    X[1] = X[0]  # a triple: rows 0, 1, 2
    X[2] = X[0]
    X[200] = X[100]  # a pair: rows 100, 200
    n_dup = 5
    with pytest.warns(Warning, match=rf"\b{n_dup}\b") as record:
        got = ma.intrinsic_dimension(X, method=method)
    message = " ".join(str(w.message) for w in record)
    assert any(word in message.lower() for word in ("duplicat", "identical", "zero")), message
    assert np.isfinite(got)
    want = ref.twonn_id(X) if method == "twonn" else ref.mle_id(X)
    if dtype == np.float64:
        np.testing.assert_allclose(got, want, rtol=1e-9)
    else:
        tol = _twonn_tolerance(X, 0.9) if method == "twonn" else _mle_tolerance(X)
        assert abs(got - want) <= tol, (got, want, tol)


def test_no_warning_without_duplicates():
    import warnings

    X = _subspace(31, 300, 3)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ma.intrinsic_dimension(X)
        ma.intrinsic_dimension(X, method="mle")


def test_unknown_method_lists_choices():
    X = _subspace(32, 50, 2)
    with pytest.raises(ValueError, match="twonn") as info:
        ma.intrinsic_dimension(X, method="two_nn")
    assert "mle" in str(info.value)


_DADAPY_SCRIPT = textwrap.dedent(
    """
    import json, sys
    import numpy as np
    from dadapy import Data

    X = np.load(sys.argv[1])
    out = {}
    for name, algorithm in (("twonn", "base"), ("mle", "ml")):
        data = Data(coordinates=X, verbose=False)
        out[name] = float(data.compute_id_2NN(algorithm=algorithm, mu_fraction=0.9)[0])
    print(json.dumps(out))
    """
)


def test_dadapy_cross_check(tmp_path):
    python = os.environ.get("MATALIGN_DADAPY_PYTHON")
    if not python:
        pytest.skip(
            "DADApy needs numpy<2; set MATALIGN_DADAPY_PYTHON to an interpreter with dadapy to run this cross-check"
        )
    X = _subspace(40, 1500, 5, D=30)
    path = tmp_path / "x.npy"
    np.save(path, X)
    script = tmp_path / "dadapy_id.py"
    script.write_text(_DADAPY_SCRIPT)
    proc = subprocess.run([python, str(script), str(path)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    theirs = json.loads(proc.stdout.strip().splitlines()[-1])
    np.testing.assert_allclose(ma.intrinsic_dimension(X, method="twonn"), theirs["twonn"], rtol=1e-6)
    np.testing.assert_allclose(ma.intrinsic_dimension(X, method="mle"), theirs["mle"], rtol=1e-9)
