"""alignment_matrix / AlignmentMatrix: every entry equals the pairwise call, the global metrics
run as one fused engine pass, and the result round-trips through JSON."""

from __future__ import annotations

import json
import sys
import types

import numpy as np
import pytest

import matalign as ma
from matalign import _core

TOL = 1e-12
ALL = ["cknna", "mutual_knn", "cka", "dcor", "information_imbalance", "intrinsic_dimension"]


def _spaces(seed, n=200, dims=(1, 5, 33), dtype=np.float64):
    """Three related, tie-free models of different D over the same n structures."""
    rng = np.random.default_rng(seed)
    base = rng.standard_normal((n, 4))
    out = {}
    for i, d in enumerate(dims):
        W = rng.standard_normal((4, d))
        X = np.tanh(base @ W) + (0.3 + 0.2 * i) * rng.standard_normal((n, d))
        out[f"m{i}_d{d}"] = X.astype(dtype)
    return out


def _pairwise(metric, X, Y, *, k=10, eps=0.0, unbiased=False, cka_kernel="linear", sigma=None,
              knn_metric="ip", imbalance_k=1, seed=0):
    if metric == "cknna":
        return ma.cknna(X, Y, k=k, eps=eps)
    if metric == "mutual_knn":
        return ma.mutual_knn(X, Y, k=k, metric=knn_metric)
    if metric == "cka":
        return ma.cka(X, Y, kernel=cka_kernel, sigma=sigma, unbiased=unbiased, seed=seed)
    if metric == "dcor":
        return ma.distance_correlation(X, Y, unbiased=unbiased)
    if metric == "information_imbalance":
        return ma.information_imbalance(X, Y, k=imbalance_k)[0]
    raise AssertionError(metric)


def _assert_matches_pairwise(m, spaces, tol=TOL, **options):
    names = list(spaces)
    assert m.names == names
    for metric, arr in m.metrics.items():
        assert arr.shape == (len(names), len(names)) and arr.dtype == np.float64
        for i, a in enumerate(names):
            for j, b in enumerate(names):
                want = _pairwise(metric, spaces[a], spaces[b], **options)
                got = m.value(metric, a, b)
                assert got == arr[i, j]
                assert abs(got - want) <= tol, (metric, a, b, got, want)


# ---------------------------------------------------------------------------------------------
# every entry equals the pairwise call
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("unbiased", [False, True])
@pytest.mark.parametrize("seed", [0, 1])
def test_every_entry_equals_pairwise_call(seed, unbiased):
    spaces = _spaces(seed)
    m = ma.alignment_matrix(spaces, metrics=ALL, k=10, unbiased=unbiased)
    assert m.metric_names == ALL
    _assert_matches_pairwise(m, spaces, unbiased=unbiased)
    for name, X in spaces.items():
        assert m.value("intrinsic_dimension", name) == ma.intrinsic_dimension(X)
        assert m.value("intrinsic_dimension", name, name) == ma.intrinsic_dimension(X)
    # diagonals: self-similarity 1, and Δ(a→a) = (k+1)/N
    for metric in ("cknna", "mutual_knn", "cka", "dcor"):
        np.testing.assert_allclose(np.diag(m.metrics[metric]), 1.0, rtol=0, atol=1e-12)
    np.testing.assert_allclose(np.diag(m.metrics["information_imbalance"]), 2 / 200, atol=1e-15)
    # the data are neither identical nor unrelated, and cknna / II are not symmetric
    off = ~np.eye(3, dtype=bool)
    assert (m.metrics["cknna"][off] < 0.9).all()
    assert not np.array_equal(m.metrics["cknna"], m.metrics["cknna"].T)
    assert not np.array_equal(m.metrics["information_imbalance"],
                              m.metrics["information_imbalance"].T)


def test_default_metrics_and_options_equal_pairwise():
    spaces = _spaces(2)
    m = ma.alignment_matrix(spaces, k=7, eps=1e-6, imbalance_k=3)
    assert list(m.metrics) == ["cknna", "mutual_knn", "cka", "dcor"]
    assert m.per_model == {}
    _assert_matches_pairwise(m, spaces, k=7, eps=1e-6)
    m = ma.alignment_matrix(spaces, metrics=["information_imbalance"], imbalance_k=3)
    _assert_matches_pairwise(m, spaces, imbalance_k=3)
    np.testing.assert_allclose(np.diag(m.metrics["information_imbalance"]), 4 / 200, atol=1e-15)


@pytest.mark.parametrize("knn_metric", ["l2", "cosine"])
def test_mutual_knn_metric_option(knn_metric):
    spaces = _spaces(3)
    m = ma.alignment_matrix(spaces, metrics=["mutual_knn", "cknna"], k=5, knn_metric=knn_metric)
    _assert_matches_pairwise(m, spaces, k=5, knn_metric=knn_metric)


@pytest.mark.parametrize("unbiased", [False, True])
@pytest.mark.parametrize("sigma", [None, 1.5, "per-model"])
def test_rbf_cka_equals_pairwise(sigma, unbiased):
    spaces = _spaces(4)
    names = list(spaces)
    if sigma == "per-model":
        sigma = {names[0]: 0.7, names[2]: "median"}  # names[1] defaults to "median"
        m = ma.alignment_matrix(spaces, metrics=["cka"], cka_kernel="rbf", sigma=sigma,
                                unbiased=unbiased, seed=5)
        for i, a in enumerate(names):
            for j, b in enumerate(names):
                pair = (sigma.get(a, "median"), sigma.get(b, "median"))
                want = ma.cka(spaces[a], spaces[b], kernel="rbf", sigma=pair, unbiased=unbiased,
                              seed=5)
                assert abs(m.metrics["cka"][i, j] - want) <= TOL
        assert m.params["sigma"][names[0]] == 0.7
        assert m.params["sigma"][names[1]] == ma.metrics.median_distance(spaces[names[1]], seed=5)
    else:
        m = ma.alignment_matrix(spaces, metrics=["cka"], cka_kernel="rbf", sigma=sigma,
                                unbiased=unbiased, seed=5)
        _assert_matches_pairwise(m, spaces, cka_kernel="rbf", sigma=sigma, unbiased=unbiased,
                                 seed=5)
    assert m.params["cka_kernel"] == "rbf" and m.params["seed"] == 5


def test_float32_models_equal_pairwise_float32_calls():
    spaces = _spaces(5, n=333, dtype=np.float32)
    m = ma.alignment_matrix(spaces, metrics=ALL[:-1])
    _assert_matches_pairwise(m, spaces)
    assert m.params["global_dtype"] == "float32"
    assert {v["dtype"] for v in m.params["inputs"].values()} == {"float32"}


def test_mixed_dtypes_widen_float32_for_the_fused_pass():
    spaces = _spaces(6)
    names = list(spaces)
    spaces[names[0]] = spaces[names[0]].astype(np.float32)
    spaces[names[1]] = spaces[names[1]].astype(np.float32)
    m = ma.alignment_matrix(spaces, metrics=["dcor", "cknna", "information_imbalance"])
    assert m.params["global_dtype"] == "float64"
    # local and II entries: exactly the pairwise calls (each space in its own dtype)
    for metric in ("cknna", "information_imbalance"):
        for i, a in enumerate(names):
            for j, b in enumerate(names):
                want = _pairwise(metric, spaces[a], spaces[b])
                assert abs(m.metrics[metric][i, j] - want) <= TOL
    # dcor: pairs with a float64 model equal the pairwise call (which widens too); the pair of
    # float32 models is computed on the widened (exact) float64 copies, as documented
    wide = {name: X.astype(np.float64) for name, X in spaces.items()}
    for i, a in enumerate(names):
        for j, b in enumerate(names):
            want = ma.distance_correlation(wide[a], wide[b])
            assert abs(m.metrics["dcor"][i, j] - want) <= TOL
            if np.float64 in (spaces[a].dtype, spaces[b].dtype):
                assert abs(m.metrics["dcor"][i, j]
                           - ma.distance_correlation(spaces[a], spaces[b])) <= TOL


# ---------------------------------------------------------------------------------------------
# one fused engine pass, one graph per model
# ---------------------------------------------------------------------------------------------


def _counting(monkeypatch, attr):
    calls = []
    original = getattr(_core, attr)

    def wrapper(*args, **kwargs):
        calls.append((args, kwargs))
        return original(*args, **kwargs)

    monkeypatch.setattr(_core, attr, wrapper)
    return calls


def _refuse(monkeypatch, attr):
    def refuse(*args, **kwargs):
        raise AssertionError(f"_core.{attr} must not be called here")

    monkeypatch.setattr(_core, attr, refuse)


def test_global_metrics_use_one_fused_engine_call(monkeypatch):
    spaces = _spaces(7)
    calls = _counting(monkeypatch, "pair_sums_f64")
    _refuse(monkeypatch, "pair_sums_f32")
    m = ma.alignment_matrix(spaces, metrics=["cka", "dcor"])  # linear CKA: no N×N pass
    assert len(calls) == 1
    args, kwargs = calls[0]
    assert len(args[0]) == 3 and args[1] == "distance"  # all M spaces in ONE call
    assert m.metrics["dcor"].shape == (3, 3)

    calls.clear()
    ma.alignment_matrix(spaces, metrics=["dcor", "cka"], cka_kernel="rbf", unbiased=True)
    assert sorted(args[1] for args, _ in calls) == ["distance", "rbf"]  # one pass per kernel
    assert all(len(args[0]) == 3 for args, _ in calls)
    rbf = [args for args, _ in calls if args[1] == "rbf"][0]
    assert len(rbf[2]) == 3  # one gamma per model

    calls.clear()
    ma.alignment_matrix(spaces, metrics=["cknna", "mutual_knn", "information_imbalance"])
    assert calls == []


def test_float32_fused_pass_uses_float32_engine(monkeypatch):
    spaces = _spaces(8, dtype=np.float32)
    calls = _counting(monkeypatch, "pair_sums_f32")
    _refuse(monkeypatch, "pair_sums_f64")
    ma.alignment_matrix(spaces, metrics=["dcor"])
    assert len(calls) == 1 and len(calls[0][0][0]) == 3


def test_one_knn_graph_and_one_rank_pass_per_model(monkeypatch):
    spaces = _spaces(9)
    knn_calls = _counting(monkeypatch, "knn_exact_f64")
    rank_calls = _counting(monkeypatch, "rank_count_f64")
    ma.alignment_matrix(spaces, metrics=["cknna", "mutual_knn"], k=6)
    assert len(knn_calls) == 3  # cknna and mutual_knn share the inner-product graph
    knn_calls.clear()
    ma.alignment_matrix(spaces, metrics=["information_imbalance"], imbalance_k=2)
    assert len(knn_calls) == 3
    assert len(rank_calls) == 3  # one pass per target space, all sources' neighbours at once
    assert all(args[1].shape == (200, 3 * 2) for args, _ in rank_calls)


# ---------------------------------------------------------------------------------------------
# inputs: memmap, store-like handles, KnnGraphs
# ---------------------------------------------------------------------------------------------


def test_memmap_input(tmp_path):
    spaces = _spaces(10)
    names = list(spaces)
    path = tmp_path / "emb.dat"
    X = spaces[names[2]]
    mm = np.memmap(path, dtype=X.dtype, mode="w+", shape=X.shape)
    mm[:] = X
    mm.flush()
    ro = np.memmap(path, dtype=X.dtype, mode="r", shape=X.shape)
    mixed = {names[0]: spaces[names[0]], names[1]: spaces[names[1]], names[2]: ro}
    got = ma.alignment_matrix(mixed, metrics=ALL)
    want = ma.alignment_matrix(spaces, metrics=ALL)
    for metric in got.metrics:
        np.testing.assert_array_equal(got.metrics[metric], want.metrics[metric])
    np.testing.assert_array_equal(got.per_model["intrinsic_dimension"],
                                  want.per_model["intrinsic_dimension"])


class _Handle:
    """A stand-in for an embedding-store handle: ``.embeddings`` plus ``.metadata``."""

    def __init__(self, embeddings, metadata=None):
        self.embeddings = embeddings
        if metadata is not None:
            self.metadata = metadata


def test_store_like_handles_accepted_and_metadata_recorded():
    spaces = _spaces(11)
    names = list(spaces)
    meta = {"model": "chgnet", "version": np.str_("0.3.0"), "layer": np.int64(3),
            "checkpoint": {"sha256": "ab" * 32, "size": 1234}, "dims": (1, 2)}
    handles = {names[0]: _Handle(spaces[names[0]], meta),
               names[1]: _Handle(spaces[names[1]]),
               names[2]: spaces[names[2]]}
    m = ma.alignment_matrix(handles, metrics=["cka", "mutual_knn"])
    want = ma.alignment_matrix(spaces, metrics=["cka", "mutual_knn"])
    for metric in m.metrics:
        np.testing.assert_array_equal(m.metrics[metric], want.metrics[metric])
    assert m.metadata[names[0]] == {"model": "chgnet", "version": "0.3.0", "layer": 3,
                                    "checkpoint": {"sha256": "ab" * 32, "size": 1234},
                                    "dims": [1, 2]}
    assert m.metadata[names[1]] == {} and m.metadata[names[2]] == {}
    assert type(m.metadata[names[0]]["layer"]) is int


def test_knn_graph_inputs_for_graph_metrics():
    spaces = _spaces(12)
    names = list(spaces)
    graphs = {name: ma.knn(X, k=15) for name, X in spaces.items()}
    inputs = {names[0]: graphs[names[0]], names[1]: spaces[names[1]],
              names[2]: graphs[names[2]]}
    m = ma.alignment_matrix(inputs, metrics=["cknna", "mutual_knn"], k=10)
    _assert_matches_pairwise(m, spaces, k=10)
    assert m.params["inputs"][names[0]] == {"kind": "knn_graph", "k": 15, "metric": "ip",
                                            "method": "exact", "recall": None}


def test_approximate_graph_input_warns():
    spaces = _spaces(12)
    names = list(spaces)
    g = ma.knn(spaces[names[0]], k=10)
    approx = ma.KnnGraph(g.indices, g.values, g.metric, True, recall=0.95)
    with pytest.warns(UserWarning, match=r"spaces\['m0_d1'\] is an approximate kNN graph "
                                         r"\(method=.*, recall=0\.9500\), so its mutual_knn "
                                         r"values are approximate too"):
        m = ma.alignment_matrix({**spaces, names[0]: approx}, metrics=["mutual_knn"])
    assert m.params["inputs"][names[0]]["recall"] == 0.95


def test_knn_graph_input_errors():
    spaces = _spaces(13)
    names = list(spaces)
    g = ma.knn(spaces[names[0]], k=5)
    with pytest.raises(ValueError, match=r"spaces\['m0_d1'\] is a KnnGraph, but metrics "
                                         r"\['cka'\] need the embeddings"):
        ma.alignment_matrix({**spaces, names[0]: g}, metrics=["cknna", "cka"], k=5)
    with pytest.raises(ValueError, match=r"spaces\['m0_d1'\] is a KnnGraph with k=5 neighbours "
                                         r"per row but k=10 was requested"):
        ma.alignment_matrix({**spaces, names[0]: g}, metrics=["cknna"], k=10)
    l2 = ma.knn(spaces[names[0]], k=5, metric="l2")
    with pytest.raises(ValueError, match=r"cknna needs inner-product graphs .* spaces\['m0_d1'\] "
                                         r"is a KnnGraph with metric='l2'"):
        ma.alignment_matrix({**spaces, names[0]: l2}, metrics=["cknna"], k=5)
    queries = ma.knn(spaces[names[0]], k=5, queries=spaces[names[0]][:200])
    with pytest.raises(ValueError, match=r"spaces\['m0_d1'\] is a KnnGraph of separate queries"):
        ma.alignment_matrix({**spaces, names[0]: queries}, metrics=["mutual_knn"], k=5)


# ---------------------------------------------------------------------------------------------
# bad inputs
# ---------------------------------------------------------------------------------------------


def test_fewer_than_two_models():
    X = np.random.default_rng(0).standard_normal((20, 3))
    with pytest.raises(ValueError, match=r"at least 2 models to compare; got 1: 'a'"):
        ma.alignment_matrix({"a": X})
    with pytest.raises(ValueError, match=r"at least 2 models to compare; got 0"):
        ma.alignment_matrix({})


def test_spaces_must_be_a_dict_of_named_models():
    X = np.random.default_rng(0).standard_normal((20, 3))
    with pytest.raises(TypeError, match=r"spaces must be a dict of model name -> embeddings.*"
                                        r"got list"):
        ma.alignment_matrix([X, X])
    with pytest.raises(TypeError, match=r"spaces keys must be model names \(str\); got int 0"):
        ma.alignment_matrix({0: X, 1: X})
    with pytest.raises(ValueError, match=r"non-empty model names"):
        ma.alignment_matrix({"": X, "b": X})


def test_n_mismatch_names_the_model():
    rng = np.random.default_rng(1)
    spaces = {"a": rng.standard_normal((50, 3)), "b": rng.standard_normal((50, 2)),
              "c": rng.standard_normal((49, 4))}
    with pytest.raises(ValueError, match=r"spaces\['a'\] has N=50 rows but spaces\['c'\] has "
                                         r"N=49"):
        ma.alignment_matrix(spaces)


def test_unknown_metric_lists_valid_ones():
    spaces = _spaces(14, n=30)
    with pytest.raises(ValueError, match=r"unknown metric 'rsa': metrics must be among 'cknna', "
                                         r"'mutual_knn', 'cka', 'dcor', 'information_imbalance', "
                                         r"'intrinsic_dimension'$"):
        ma.alignment_matrix(spaces, metrics=["cka", "rsa"])
    with pytest.raises(ValueError, match=r"unknown metric 'distance_correlation'.*"
                                         r"\(did you mean 'dcor'\?\)"):
        ma.alignment_matrix(spaces, metrics=["distance_correlation"])
    with pytest.raises(ValueError, match=r"metrics is empty"):
        ma.alignment_matrix(spaces, metrics=[])


def test_non_float_dtypes_raise_type_error_naming_the_model():
    rng = np.random.default_rng(2)
    spaces = {"a": rng.standard_normal((30, 3)), "b": rng.integers(0, 5, (30, 2))}
    with pytest.raises(TypeError, match=r"spaces\['b'\] has dtype int64; matalign computes in "
                                        r"float32 or float64 and never casts silently"):
        ma.alignment_matrix(spaces)
    spaces = {"a": rng.standard_normal((30, 3)).astype(np.float16),
              "b": rng.integers(0, 5, (30, 2))}
    with pytest.raises(TypeError, match=r"spaces\['a'\] has dtype float16"):
        ma.alignment_matrix(spaces)
    with pytest.raises(TypeError, match=r"spaces\['h'\]\.embeddings has dtype bool"):
        ma.alignment_matrix({"a": spaces["b"].astype(np.float64),
                             "h": _Handle(np.ones((30, 2), dtype=bool))})


def test_nonfinite_constant_and_bad_options():
    rng = np.random.default_rng(3)
    X = rng.standard_normal((40, 3))
    bad = X.copy()
    bad[7, 1] = np.nan
    with pytest.raises(ValueError, match=r"spaces\['b'\] has a non-finite value in row 7"):
        ma.alignment_matrix({"a": X, "b": bad})
    const = np.ones((40, 2))
    with pytest.raises(ValueError, match=r"spaces\['c'\] has zero variance: all its N=40 rows"):
        ma.alignment_matrix({"a": X, "c": const}, metrics=["dcor"])
    with pytest.raises(ValueError, match=r"spaces\['c'\] has zero variance"):
        ma.alignment_matrix({"a": X, "c": const}, metrics=["cka"])
    with pytest.raises(ValueError, match=r"k must be between 1 and N - 1 = 39"):
        ma.alignment_matrix({"a": X, "b": X}, k=40)
    with pytest.raises(ValueError, match=r"imbalance_k must be between 1 and N - 1 = 39"):
        ma.alignment_matrix({"a": X, "b": X}, metrics=["information_imbalance"], imbalance_k=0)
    with pytest.raises(ValueError, match=r"cka_kernel must be one of 'linear', 'rbf'"):
        ma.alignment_matrix({"a": X, "b": X}, cka_kernel="poly")
    with pytest.raises(ValueError, match=r"sigma names models that are not in spaces: \['z'\]"):
        ma.alignment_matrix({"a": X, "b": X}, metrics=["cka"], cka_kernel="rbf",
                            sigma={"z": 1.0})
    with pytest.raises(ValueError, match=r"eps must be a finite number >= 0"):
        ma.alignment_matrix({"a": X, "b": X}, eps=-1.0)
    with pytest.raises(TypeError, match=r"unbiased must be True or False"):
        ma.alignment_matrix({"a": X, "b": X}, unbiased=1)
    with pytest.raises(ValueError, match=r"cknna needs at least 4 rows"):
        ma.alignment_matrix({"a": X[:3], "b": X[:3]}, metrics=["cknna"], k=1)


def test_metadata_that_cannot_be_json_raises():
    rng = np.random.default_rng(4)
    X = rng.standard_normal((30, 3))
    with pytest.raises(TypeError, match=r"spaces\['b'\]\.metadata\['fn'\] \(object\) cannot be "
                                        r"stored in JSON"):
        ma.alignment_matrix({"a": X, "b": _Handle(X, {"fn": object()})}, metrics=["dcor"])
    with pytest.raises(TypeError, match=r"spaces\['b'\]\.metadata must be a dict"):
        ma.alignment_matrix({"a": X, "b": _Handle(X, ["not", "a", "dict"])}, metrics=["dcor"])


# ---------------------------------------------------------------------------------------------
# the result: value, to_pandas, save/load
# ---------------------------------------------------------------------------------------------


def test_value_errors_list_valid_names():
    m = ma.alignment_matrix(_spaces(15, n=40), metrics=["cka", "intrinsic_dimension"])
    with pytest.raises(ValueError, match=r"metric must be one of the metrics of this matrix: "
                                         r"'cka', 'intrinsic_dimension'; got 'dcor'"):
        m.value("dcor", "m0_d1", "m1_d5")
    with pytest.raises(ValueError, match=r"a must be one of the models 'm0_d1', 'm1_d5', "
                                         r"'m2_d33'; got 'x'"):
        m.value("cka", "x", "m1_d5")
    with pytest.raises(ValueError, match=r"b must be one of the models .*; got 3"):
        m.value("cka", "m0_d1", 3)
    with pytest.raises(ValueError, match=r"'cka' is a pairwise metric: pass two models"):
        m.value("cka", "m0_d1")
    with pytest.raises(ValueError, match=r"'intrinsic_dimension' is a per-model value"):
        m.value("intrinsic_dimension", "m0_d1", "m1_d5")


def test_result_arrays_are_read_only():
    m = ma.alignment_matrix(_spaces(16, n=40), metrics=["dcor", "intrinsic_dimension"])
    with pytest.raises(ValueError, match="read-only"):
        m.metrics["dcor"][0, 1] = 0.0
    with pytest.raises(ValueError, match="read-only"):
        m.per_model["intrinsic_dimension"][0] = 0.0
    with pytest.raises(AttributeError):
        m.names = ["x"]


def test_save_load_round_trip(tmp_path):
    spaces = _spaces(17)
    names = list(spaces)
    handles = {names[0]: _Handle(spaces[names[0]], {"model": "a", "layer": 2}),
               names[1]: spaces[names[1]], names[2]: spaces[names[2]]}
    m = ma.alignment_matrix(handles, metrics=ALL, cka_kernel="rbf", seed=3)
    path = m.save(tmp_path / "matrix.json")
    assert path == tmp_path / "matrix.json"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["matrix.json"]  # no temporary left
    with open(path, encoding="utf-8") as f:
        raw = json.load(f)
    assert raw["format"] == "matalign.AlignmentMatrix" and raw["version"] == 1
    back = ma.AlignmentMatrix.load(path)
    assert back.names == m.names
    assert list(back.metrics) == list(m.metrics)
    for metric in m.metrics:
        np.testing.assert_array_equal(back.metrics[metric], m.metrics[metric])  # bit for bit
    np.testing.assert_array_equal(back.per_model["intrinsic_dimension"],
                                  m.per_model["intrinsic_dimension"])
    assert back.params == m.params
    assert back.params["seed"] == 3 and back.params["k"] == 10
    assert back.params["matalign_version"] == ma.__version__
    assert set(back.params["sigma"]) == set(names)
    assert back.metadata == {names[0]: {"model": "a", "layer": 2}, names[1]: {}, names[2]: {}}
    # overwrite in place, atomically
    m.save(path)
    assert ma.AlignmentMatrix.load(str(path)).to_dict() == m.to_dict()


def test_load_errors_name_the_file(tmp_path):
    missing = tmp_path / "missing.json"
    with pytest.raises(FileNotFoundError, match=r"AlignmentMatrix file not found: .*missing"):
        ma.AlignmentMatrix.load(missing)
    corrupt = tmp_path / "corrupt.json"
    corrupt.write_text('{"format": "matalign.AlignmentMatrix", "names": [', encoding="utf-8")
    with pytest.raises(ValueError, match=r"corrupt\.json' is not a valid matalign "
                                         r"AlignmentMatrix file: it is not valid JSON"):
        ma.AlignmentMatrix.load(corrupt)
    good = ma.AlignmentMatrix(["a", "b"], {"cka": [[1.0, 0.5], [0.5, 1.0]]}).to_dict()
    for key, message in [("metadata", r"missing keys \['metadata'\]"),
                         ("names", r"missing keys \['names'\]")]:
        data = dict(good)
        del data[key]
        path = tmp_path / f"no_{key}.json"
        path.write_text(json.dumps(data), encoding="utf-8")
        with pytest.raises(ValueError, match=rf"no_{key}\.json' is not a valid matalign "
                                             rf"AlignmentMatrix file: {message}"):
            ma.AlignmentMatrix.load(path)
    shape = dict(good, metrics={"cka": [[1.0, 0.5]]})
    path = tmp_path / "shape.json"
    path.write_text(json.dumps(shape), encoding="utf-8")
    with pytest.raises(ValueError, match=r"shape\.json' .*metric 'cka' must be an \(2, 2\) "
                                         r"matrix .*got shape \(1, 2\)"):
        ma.AlignmentMatrix.load(path)
    other = dict(good, format="something.else")
    path = tmp_path / "other.json"
    path.write_text(json.dumps(other), encoding="utf-8")
    with pytest.raises(ValueError, match=r"format is 'something\.else'"):
        ma.AlignmentMatrix.load(path)
    path = tmp_path / "list.json"
    path.write_text("[1, 2]", encoding="utf-8")
    with pytest.raises(ValueError, match=r"list\.json' .*expected a JSON object"):
        ma.AlignmentMatrix.load(path)


def test_constructor_validation():
    with pytest.raises(ValueError, match=r"names must be unique; repeated: \['a'\]"):
        ma.AlignmentMatrix(["a", "a"], {})
    with pytest.raises(ValueError, match=r"metrics key must be one of .*; got 'foo'"):
        ma.AlignmentMatrix(["a", "b"], {"foo": np.eye(2)})
    with pytest.raises(ValueError, match=r"metric 'cka' holds non-finite values"):
        ma.AlignmentMatrix(["a", "b"], {"cka": [[1.0, np.nan], [0.0, 1.0]]})
    with pytest.raises(ValueError, match=r"metadata names models that are not in names: \['c'\]"):
        ma.AlignmentMatrix(["a", "b"], {}, metadata={"c": {}})
    with pytest.raises(TypeError, match=r"names must be a list of str; got str"):
        ma.AlignmentMatrix("ab", {})


def test_to_pandas_long_table(monkeypatch):
    """The table's content, with a minimal stand-in for pandas (pandas is optional)."""
    fake = types.ModuleType("pandas")

    class DataFrame:
        def __init__(self, columns):
            self.columns = list(columns)
            self.data = columns

    fake.DataFrame = DataFrame
    monkeypatch.setitem(sys.modules, "pandas", fake)
    m = ma.alignment_matrix(_spaces(18, n=40), metrics=["information_imbalance",
                                                         "intrinsic_dimension"])
    table = m.to_pandas()
    assert table.columns == ["metric", "a", "b", "value"]
    assert len(table.data["value"]) == 9 + 3
    rows = list(zip(table.data["metric"], table.data["a"], table.data["b"],
                    table.data["value"]))
    for metric, a, b, value in rows:
        assert value == (m.value(metric, a, b))
    assert rows[1][:3] == ("information_imbalance", "m0_d1", "m1_d5")
    assert rows[-1][:3] == ("intrinsic_dimension", "m2_d33", "m2_d33")


def test_to_pandas_real_pandas():
    pd = pytest.importorskip("pandas", reason="pandas is an optional dependency (pip install "
                                              "pandas); the stand-in test covers the content")
    m = ma.alignment_matrix(_spaces(18, n=40), metrics=["cka"])
    table = m.to_pandas()
    assert isinstance(table, pd.DataFrame) and len(table) == 9


def test_to_pandas_without_pandas_names_the_package(monkeypatch):
    monkeypatch.setitem(sys.modules, "pandas", None)
    m = ma.AlignmentMatrix(["a", "b"], {"cka": [[1.0, 0.5], [0.5, 1.0]]})
    with pytest.raises(ImportError, match=r"needs pandas, which is not installed: "
                                          r"pip install pandas"):
        m.to_pandas()


def test_progress_over_the_whole_job():
    seen = []
    ma.alignment_matrix(_spaces(19), metrics=ALL, progress=lambda d, t: seen.append((d, t)))
    assert len(seen) >= 5
    assert all(t == 1_000_000 for _, t in seen)
    done = [d for d, _ in seen]
    assert done == sorted(done) and len(set(done)) == len(done)  # strictly increasing
    assert done[-1] == 1_000_000


def test_progress_bar_true_runs(capsys):
    m = ma.alignment_matrix(_spaces(20, n=40), metrics=["dcor"], progress=True)
    assert m.metrics["dcor"].shape == (3, 3)
    try:
        import rich  # noqa: F401  (rich draws its own bar; its output depends on the terminal)
    except ImportError:
        assert "alignment matrix M=3 N=40" in capsys.readouterr().err


def test_n_threads_do_not_change_results():
    spaces = _spaces(21)
    one = ma.alignment_matrix(spaces, metrics=ALL[:-1], n_threads=1)
    many = ma.alignment_matrix(spaces, metrics=ALL[:-1], n_threads=2)  # (0 = auto: one
    # thread for a call this small, so the explicit 2 is what exercises two threads)
    for metric in one.metrics:
        np.testing.assert_array_equal(one.metrics[metric], many.metrics[metric])


def test_linear_cka_grouped_passes_match_single_pass(monkeypatch):
    """Above the accumulator budget the pairs are split into several passes: same values."""
    import matalign.metrics.kernel_alignment as mx

    spaces = _spaces(22)
    for unbiased in (False, True):
        single = ma.alignment_matrix(spaces, metrics=["cka"], unbiased=unbiased)
        monkeypatch.setattr(mx, "FUSED_GRAM_BYTES", 8 * 33 * 5)
        assert len(mx._linear_groups([1, 5, 33])) > 2
        grouped = ma.alignment_matrix(spaces, metrics=["cka"], unbiased=unbiased)
        monkeypatch.undo()
        np.testing.assert_allclose(grouped.metrics["cka"], single.metrics["cka"], rtol=0,
                                   atol=TOL)
