"""ma.preprocess: centring, global-quantile clamping and row L2 normalisation."""

from __future__ import annotations

import re

import numpy as np
import pytest
import reference as ref

import matalign as ma

OPTIONS = [
    {},
    {"center": True},
    {"l2": True},
    {"clip_quantile": 0.95},
    {"clip_quantile": 0.95, "l2": True},  # the Huh et al. pipeline
    {"clip_quantile": 0.5, "l2": True},
    {"center": True, "l2": True},
]


def _data(seed, n, d, dtype):
    rng = np.random.default_rng(seed)
    # heavy-ish tails so that clamping matters, rows on different scales
    X = rng.standard_t(3, size=(n, d)) * rng.uniform(0.2, 5.0, size=(n, 1)) + 0.7
    return X.astype(dtype)


def _tolerance(dtype, d):
    eps = float(np.finfo(dtype).eps)
    return 4.0 * (d + 2) * eps, 4.0 * (d + 2) * eps


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("options", OPTIONS, ids=lambda o: "-".join(f"{k}={v}" for k, v in o.items()) or "none")
@pytest.mark.parametrize("shape", [(200, 16), (37, 1), (5, 33)], ids=str)
def test_preprocess_matches_reference(shape, options, dtype):
    X = _data(sum(shape), *shape, dtype)
    before = X.copy()
    out = ma.preprocess(X, **options)
    np.testing.assert_array_equal(X, before, err_msg="preprocess modified its input")
    assert isinstance(out, np.ndarray)
    assert out.shape == X.shape
    assert out.dtype == X.dtype
    want = ref.preprocess(X, **options)
    rtol, atol = _tolerance(dtype, shape[1])
    scale = 1.0 if options.get("l2") else float(np.abs(want).max())
    np.testing.assert_allclose(out.astype(np.float64), want, rtol=rtol, atol=atol * scale)
    if options.get("l2"):
        norms = np.sqrt((out.astype(np.float64) ** 2).sum(axis=1))
        np.testing.assert_allclose(norms, 1.0, rtol=0, atol=atol)


def test_clip_quantile_is_global_not_per_row():
    """The threshold is one quantile of |x| over ALL entries (platonic-rep's
    exact mode), not a per-sample quantile."""
    X = _data(1, 300, 24, np.float64)
    q = np.quantile(np.abs(X), 0.95)
    out = ma.preprocess(X, clip_quantile=0.95)
    assert np.abs(out).max() == pytest.approx(q, rel=1e-15, abs=0)
    np.testing.assert_array_equal(out, np.clip(X, -q, q))
    # the data is such that a per-row threshold gives something else
    per_row = np.quantile(np.abs(X), 0.95, axis=1, keepdims=True)
    assert not np.allclose(out, np.clip(X, -per_row, per_row))
    # about 5 % of the entries are clamped
    clamped = np.mean(np.abs(X) > q)
    assert 0.04 <= clamped <= 0.06


def test_center_then_l2_order():
    X = _data(2, 120, 8, np.float64)
    out = ma.preprocess(X, center=True, l2=True)
    Xc = X - X.mean(axis=0)
    np.testing.assert_allclose(out, Xc / np.linalg.norm(Xc, axis=1, keepdims=True), rtol=1e-13, atol=1e-15)


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("options", [{"l2": True}, {"clip_quantile": 0.95, "l2": True}], ids=["l2", "clip-l2"])
def test_zero_rows_raise_naming_rows(options, dtype):
    X = _data(3, 20, 5, dtype)
    X[3] = 0.0
    X[7] = 0.0
    with pytest.raises(ValueError, match=r"\b3\b.*\b7\b") as info:
        ma.preprocess(X, **options)
    assert re.search(r"(?i)zero|norm", str(info.value)), str(info.value)


def test_zero_rows_fine_without_l2():
    X = _data(4, 20, 5, np.float64)
    X[3] = 0.0
    out = ma.preprocess(X, clip_quantile=0.9)
    assert np.all(out[3] == 0.0)
    np.testing.assert_allclose(ma.preprocess(X, center=True), X - X.mean(0), rtol=1e-14, atol=1e-14)


def test_preprocess_layouts():
    """F order and strided views give the C-order result (to rounding)."""
    X = _data(5, 90, 12, np.float32)
    want = ma.preprocess(np.ascontiguousarray(X), clip_quantile=0.95, l2=True)
    rtol, atol = _tolerance(np.float32, 12)
    strided = np.repeat(X, 2, axis=0)[::2]
    assert not strided.flags.c_contiguous
    for V in (np.asfortranarray(X), strided):
        got = ma.preprocess(V, clip_quantile=0.95, l2=True)
        assert got.dtype == np.float32
        np.testing.assert_allclose(got, want, rtol=rtol, atol=atol)
