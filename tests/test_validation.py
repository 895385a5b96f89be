"""Input validation of every public function: dtypes, non-finite values,
shapes, k, option names. Every error is checked for its type AND its message."""

from __future__ import annotations

import re

import numpy as np
import pytest

import matalign as ma

N, D = 30, 4


def _base(dtype=np.float64, seed=0, n=N, d=D):
    return np.random.default_rng(seed).standard_normal((n, d)).astype(dtype)


# Every public function that takes data, once per data argument: the call puts
# `A` in that position and a valid array `other` everywhere else.
POSITIONS = {
    "knn-X": ("X", lambda A, other: ma.knn(A, k=3)),
    "knn-queries": ("queries", lambda A, other: ma.knn(other, k=3, queries=A)),
    "mutual_knn-X": ("X", lambda A, other: ma.mutual_knn(A, other, k=3)),
    "mutual_knn-Y": ("Y", lambda A, other: ma.mutual_knn(other, A, k=3)),
    "local_agreement-X": ("X", lambda A, other: ma.local_agreement(A, other, k=3)),
    "local_agreement-Y": ("Y", lambda A, other: ma.local_agreement(other, A, k=3)),
    "cknna-X": ("X", lambda A, other: ma.cknna(A, other, k=3)),
    "cknna-Y": ("Y", lambda A, other: ma.cknna(other, A, k=3)),
    "intrinsic_dimension-X": ("X", lambda A, other: ma.intrinsic_dimension(A)),
    "preprocess-X": ("X", lambda A, other: ma.preprocess(A, clip_quantile=0.95, l2=True)),
}
PAIR_FUNCTIONS = {
    "mutual_knn": ma.mutual_knn,
    "local_agreement": ma.local_agreement,
    "cknna": ma.cknna,
}
K_FUNCTIONS = {
    "knn": lambda X, k: ma.knn(X, k=k),
    "mutual_knn": lambda X, k: ma.mutual_knn(X, X[:, ::-1].copy(), k=k),
    "local_agreement": lambda X, k: ma.local_agreement(X, X[:, ::-1].copy(), k=k),
    "cknna": lambda X, k: ma.cknna(X, X[:, ::-1].copy(), k=k),
}


def _named(argname):
    """Regex: the argument's name as a word."""
    return rf"\b{re.escape(argname)}\b"


def _as_dtype(X, dtype):
    """X converted to any NumPy dtype, with values that make sense for it."""
    dt = np.dtype(dtype)
    if dt.kind == "b":
        return X > 0
    if dt.kind == "u":
        return np.abs(X * 10).astype(dt)
    if dt.kind == "i":
        return (X * 10).astype(dt)
    if dt.kind in "Mm":
        return (X * 10).astype(np.int64).astype(dt)
    if dt.kind in "SU":
        return X.astype(dt)
    if dt.kind == "O":
        return X.astype(object)
    return X.astype(dt)


ALL_DTYPES = list(
    dict.fromkeys(  # deduplicated by dtype (e.g. 'l' and 'q' are both int64 here)
        np.dtype(c)
        for c in [
            *np.typecodes["AllInteger"],
            *np.typecodes["AllFloat"],  # half, single, double, longdouble, and the complex ones
            "?",
            "O",
            "M8[s]",
            "m8[s]",
            "U16",
            "S16",
        ]
    )
)
ACCEPTED = {np.dtype(np.float32), np.dtype(np.float64)}


@pytest.mark.parametrize("dtype", ALL_DTYPES, ids=lambda dt: dt.str if dt.kind in "MmSU" else dt.name)
@pytest.mark.parametrize("position", list(POSITIONS))
def test_every_dtype_through_every_function(position, dtype):
    argname, call = POSITIONS[position]
    dt = np.dtype(dtype)
    A = _as_dtype(_base(seed=1), dt)
    assert A.dtype == dt
    if dt in ACCEPTED:
        other = _base(dt, seed=2)
        call(A, other)  # accepted, computed in that dtype
        return
    other = _base(np.float64, seed=2)
    with pytest.raises(TypeError, match=_named(argname)) as info:
        call(A, other)
    message = str(info.value)
    assert "float32" in message and "float64" in message, message
    assert re.search(r"(?i)astype|convert|cast", message), f"no conversion hint in: {message}"


def test_dtypes_computed_in_that_dtype():
    for dt in (np.float32, np.float64):
        g = ma.knn(_base(dt), k=3)
        assert g.values.dtype == dt
        assert ma.preprocess(_base(dt), l2=True).dtype == dt


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf], ids=["nan", "inf", "-inf"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("position", list(POSITIONS))
def test_non_finite_values_name_argument_and_first_row(position, dtype, bad):
    argname, call = POSITIONS[position]
    A = _base(dtype, seed=3)
    A[9, 0] = bad
    A[5, 2] = bad
    A[17, 3] = np.nan
    other = _base(dtype, seed=4)
    with pytest.raises(ValueError, match=_named(argname)) as info:
        call(A, other)
    message = str(info.value)
    assert re.search(r"(?i)nan|inf|finite", message), message
    assert re.search(r"(?i)(\brow\b.{0,30}\b5\b|\[5\s*[\],])", message), f"first bad row 5 not named in: {message}"


@pytest.mark.parametrize("position", list(POSITIONS))
def test_wrong_ndim(position):
    argname, call = POSITIONS[position]
    other = _base(seed=5)
    for A in (_base(seed=6)[:, 0], _base(seed=6)[None], np.float64(1.0) * np.ones(())):
        with pytest.raises(ValueError, match=_named(argname)) as info:
            call(A, other)
        assert re.search(r"(?i)2-?d|ndim|dimension", str(info.value)), str(info.value)


@pytest.mark.parametrize("position", [p for p in POSITIONS if p != "knn-queries"])
def test_empty_input(position):
    argname, call = POSITIONS[position]
    other = _base(seed=7)
    with pytest.raises(ValueError, match=_named(argname)):
        call(_base(seed=8)[:0], other)


@pytest.mark.parametrize("position", list(POSITIONS))
def test_zero_columns(position):
    argname, call = POSITIONS[position]
    other = _base(seed=9)
    with pytest.raises(ValueError, match=_named(argname)):
        call(_base(seed=10)[:, :0], other)


def test_queries_dimension_mismatch():
    X = _base(seed=11)
    Q = _base(seed=12, n=7, d=D + 1)
    with pytest.raises(ValueError, match=_named("queries")) as info:
        ma.knn(X, k=3, queries=Q)
    assert re.search(rf"\b{D}\b", str(info.value)) and re.search(rf"\b{D + 1}\b", str(info.value))


@pytest.mark.parametrize("name", list(PAIR_FUNCTIONS))
def test_n_mismatch_between_x_and_y(name):
    fn = PAIR_FUNCTIONS[name]
    X = _base(seed=13)
    Y = _base(seed=14, n=N + 1, d=D + 2)
    for a, b in ((X, Y), (Y, X)):
        with pytest.raises(ValueError, match=rf"\b{N}\b") as info:
            fn(a, b, k=3)
        assert re.search(rf"\b{N + 1}\b", str(info.value)), str(info.value)
        assert re.search(r"\bX\b", str(info.value)) and re.search(r"\bY\b", str(info.value)), str(info.value)


def test_different_feature_dimensions_are_fine():
    X = _base(seed=15)
    Y = _base(seed=16, d=D + 5)
    assert 0.0 <= ma.mutual_knn(X, Y, k=3) <= 1.0
    assert np.isfinite(ma.cknna(X, Y, k=3))


@pytest.mark.parametrize("name", list(K_FUNCTIONS))
def test_k_out_of_range(name):
    fn = K_FUNCTIONS[name]
    X = _base(seed=17)
    for k in (0, -1, N, N + 5):
        with pytest.raises(ValueError, match=r"\bk\b") as info:
            fn(X, k)
        assert re.search(rf"\b{N - 1}\b|\b{N}\b", str(info.value)), f"k={k}: range not stated in {info.value}"
    # k=None means "the graphs' k" for the graph metrics (10 for two embedding arrays):
    # test_graph_k_none covers it; for knn it is invalid.
    for k in (2.5, "3", 3.0) + ((None,) if name == "knn" else ()):
        with pytest.raises((TypeError, ValueError), match=r"\bk\b"):
            fn(X, k)
    # numpy integers and the extremes 1 and N-1 are valid
    fn(X, np.int64(3))
    fn(X, 1)
    fn(X, N - 1)


@pytest.mark.parametrize("name", list(PAIR_FUNCTIONS))
def test_graph_inputs_validated(name):
    fn = PAIR_FUNCTIONS[name]
    X, Y = _base(seed=18), _base(seed=19)
    gx, gy = ma.knn(X, k=5), ma.knn(Y, k=5)
    with pytest.raises(ValueError, match=r"\bk\b"):
        fn(gx, gy, k=6)
    g_short = ma.knn(Y[:-2], k=5)
    with pytest.raises(ValueError, match=rf"\b{N}\b") as info:
        fn(gx, g_short, k=5)
    assert re.search(rf"\b{N - 2}\b", str(info.value)), str(info.value)


def test_cknna_rejects_distance_graphs():
    """CKNNA's kernel values are inner products: an l2 graph (squared
    distances) must not be used silently."""
    X, Y = _base(seed=30), _base(seed=31)
    with pytest.raises(ValueError, match="metric") as info:
        ma.cknna(ma.knn(X, k=5, metric="l2"), ma.knn(Y, k=5, metric="l2"), k=5)
    assert "l2" in str(info.value)


@pytest.mark.parametrize("name", list(PAIR_FUNCTIONS))
def test_queries_graphs_rejected_by_graph_metrics(name):
    fn = PAIR_FUNCTIONS[name]
    X, Y = _base(seed=32), _base(seed=33)
    gq = ma.knn(X, k=5, queries=X)  # self NOT excluded
    with pytest.raises(ValueError, match=r"(?i)self"):
        fn(gq, ma.knn(Y, k=5), k=5)


def test_cknna_needs_n_at_least_4():
    for n in (2, 3):
        X, Y = _base(seed=20, n=n), _base(seed=21, n=n)
        with pytest.raises(ValueError, match=rf"\b{n}\b") as info:
            ma.cknna(X, Y, k=1)
        assert re.search(r"(?i)\bN\b|unbiased|at least|too small", str(info.value)), str(info.value)
    assert np.isfinite(ma.cknna(_base(seed=20, n=5), _base(seed=21, n=5), k=2))


def test_intrinsic_dimension_needs_three_rows_and_valid_fraction():
    with pytest.raises(ValueError, match=r"\b2\b"):
        ma.intrinsic_dimension(_base(seed=22, n=2))
    X = _base(seed=23, n=100)
    for fraction in (0.0, -0.5, 1.5):
        with pytest.raises(ValueError, match="fraction"):
            ma.intrinsic_dimension(X, fraction=fraction)


def test_preprocess_clip_quantile_range():
    X = _base(seed=24)
    for q in (-0.1, 1.5):
        with pytest.raises(ValueError, match="clip_quantile"):
            ma.preprocess(X, clip_quantile=q)


@pytest.mark.parametrize(
    "call",
    [
        lambda X, m: ma.knn(X, k=3, metric=m),
        lambda X, m: ma.mutual_knn(X, X + 1.0, k=3, metric=m),
        lambda X, m: ma.local_agreement(X, X + 1.0, k=3, metric=m),
    ],
    ids=["knn", "mutual_knn", "local_agreement"],
)
def test_metric_typo_lists_choices(call):
    X = _base(seed=25)
    for bad in ("cosin", "euclidean", ""):
        with pytest.raises(ValueError, match=re.escape(repr(bad)) + "|" + re.escape(bad or "''")) as info:
            call(X, bad)
        message = str(info.value)
        for choice in ("ip", "l2", "cosine"):
            assert re.search(rf"\b{choice}\b", message), f"{choice!r} not listed in: {message}"


def test_method_typo_lists_choices():
    with pytest.raises(ValueError, match="brute") as info:
        ma.knn(_base(seed=26), k=3, method="brute")
    assert "exact" in str(info.value)


def test_unknown_or_unavailable_simd_level():
    X = _base(np.float32, seed=27)
    with pytest.raises(ValueError, match="avx1024") as info:
        ma.knn(X, k=3, simd="avx1024")
    assert "scalar" in str(info.value), "valid levels not listed"
    available = ma.build_info()["simd_available"]
    for level in ("scalar", "avx2", "avx512"):
        if level in available:
            ma.knn(X, k=3, simd=level)
        else:
            with pytest.raises(ValueError, match=level):
                ma.knn(X, k=3, simd=level)


def test_options_are_keyword_only():
    X = _base(seed=28)
    with pytest.raises(TypeError, match="positional"):
        ma.knn(X, 3)
    with pytest.raises(TypeError, match="positional"):
        ma.mutual_knn(X, X, 3)
    with pytest.raises(TypeError, match="positional"):
        ma.cknna(X, X, 3)
