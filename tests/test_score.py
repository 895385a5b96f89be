"""Per-structure disagreement scores (matalign.score): columns, ranks, agreement with the
direct metric calls, streaming output, inputs from files and stores, and input errors."""

from __future__ import annotations

import numpy as np
import pytest

import matalign as ma
from matalign.score import load_embeddings, read_scores, score


def _models(n, d=8, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d)).astype(np.float32)
    return {
        "a": X,
        "b": (X + 0.3 * rng.normal(size=X.shape)).astype(np.float32),
        "c": rng.normal(size=(n, d)).astype(np.float32),
    }


def _check_ranks(table):
    rank = table["rank"]
    n = len(rank)
    assert sorted(rank.tolist()) == list(range(1, n + 1))
    order = np.argsort(rank)
    mean = table["mean_local_agreement"][order]
    assert np.all(np.diff(mean) >= 0), "rank 1 must be the lowest mean agreement"
    if "mean_cknna_row" in table:
        tie = np.diff(mean) == 0
        c = table["mean_cknna_row"][order]
        assert np.all(np.diff(c)[tie] >= 0), "ties are broken by the lower CKNNA contribution"


@pytest.mark.parametrize("ext", [".csv", ".parquet"])
def test_columns_match_direct_calls(tmp_path, ext):
    if ext == ".parquet":
        pytest.importorskip("pyarrow")
    spaces = _models(400)
    res = score(spaces, tmp_path / f"s{ext}", k=10, block_rows=97)
    t = read_scores(res.path)
    assert res.n == 400 and list(t) == list(res.columns)
    assert res.pairs == (("a", "b"), ("a", "c"), ("b", "c"))
    np.testing.assert_array_equal(t["row"], np.arange(400))
    means = []
    for a, b in res.pairs:
        direct = ma.local_agreement(spaces[a], spaces[b], k=10)
        np.testing.assert_allclose(t[f"local_agreement:{a}:{b}"], direct, rtol=0, atol=1e-12)
        assert res.mutual_knn[f"{a}:{b}"] == pytest.approx(ma.mutual_knn(spaces[a], spaces[b],
                                                                         k=10), abs=1e-12)
        contrib = t[f"cknna_row:{a}:{b}"]
        value = ma.cknna(spaces[a], spaces[b], k=10)
        assert contrib.sum() == pytest.approx(value, abs=1e-6)
        assert res.cknna[f"{a}:{b}"] == pytest.approx(value, abs=1e-9)
        means.append(direct)
    np.testing.assert_allclose(t["mean_local_agreement"], np.mean(means, axis=0), atol=1e-12)
    _check_ranks(t)
    # The related pair agrees more than the unrelated ones.
    assert res.mutual_knn["a:b"] > 5 * res.mutual_knn["a:c"]


def test_twenty_thousand_rows_streamed(tmp_path):
    pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    spaces = _models(20_000, d=16, seed=3)
    res = score(spaces, tmp_path / "big.parquet", k=10, block_rows=4096)
    meta = pq.ParquetFile(res.path).metadata
    assert meta.num_rows == 20_000
    assert meta.num_row_groups == 5  # 4096-row blocks
    t = read_scores(res.path)
    _check_ranks(t)
    direct = ma.local_agreement(spaces["b"], spaces["c"], k=10)
    np.testing.assert_array_equal(t["local_agreement:b:c"], direct)
    worst = t["row"][t["rank"] == 1][0]
    assert t["mean_local_agreement"][worst] == t["mean_local_agreement"].min()


def test_npy_files_and_stores(tmp_path):
    spaces = _models(120)
    paths = {}
    for name, A in spaces.items():
        paths[name] = tmp_path / f"{name}.npy"
        np.save(paths[name], A)
    A, ids = load_embeddings(paths["a"])
    assert isinstance(A, np.memmap) and ids is None
    del A
    res = score({k: str(v) for k, v in paths.items()}, tmp_path / "s.csv", k=5)
    direct = score(spaces, tmp_path / "d.csv", k=5)
    t1, t2 = read_scores(res.path), read_scores(direct.path)
    for col in t1:
        np.testing.assert_array_equal(t1[col], t2[col])

    class Store:  # what ma.open_store returns: .embeddings and .ids
        def __init__(self, emb):
            self.embeddings = emb
            self.ids = [f"mp-{i}" for i in range(len(emb))]

    res = score({k: Store(v) for k, v in spaces.items()}, tmp_path / "ids.csv", k=5)
    t = read_scores(res.path)
    assert res.columns[:2] == ("row", "id")
    assert t["id"][7] == "mp-7"


def test_store_ids_must_match(tmp_path):
    spaces = _models(50)

    class Store:
        def __init__(self, emb, prefix):
            self.embeddings = emb
            self.ids = [f"{prefix}{i}" for i in range(len(emb))]

    with pytest.raises(ValueError, match="structure ids differ"):
        score({"a": Store(spaces["a"], "x"), "b": Store(spaces["b"], "y")}, tmp_path / "s.csv")


def test_l2_metric_has_no_cknna_columns(tmp_path):
    res = score(_models(100), tmp_path / "s.csv", k=5, metric="l2")
    assert not any(c.startswith("cknna_row") for c in res.columns)
    assert res.cknna == {}
    _check_ranks(read_scores(res.path))


def test_input_errors(tmp_path):
    spaces = _models(60)
    with pytest.raises(ValueError, match="at least 2 models"):
        score({"a": spaces["a"]}, tmp_path / "s.csv")
    with pytest.raises(TypeError, match="dict"):
        score([spaces["a"], spaces["b"]], tmp_path / "s.csv")
    with pytest.raises(ValueError, match="N=59"):
        score({"a": spaces["a"], "b": spaces["b"][:59]}, tmp_path / "s.csv")
    with pytest.raises(ValueError, match=r"\.csv or \.parquet"):
        score(spaces, tmp_path / "s.txt")
    with pytest.raises(ValueError, match="':'"):
        score({"a:1": spaces["a"], "b": spaces["b"]}, tmp_path / "s.csv")
    with pytest.raises(ValueError, match="k"):
        score(spaces, tmp_path / "s.csv", k=60)
    with pytest.raises(FileNotFoundError):
        score({"a": tmp_path / "missing.npy", "b": spaces["b"]}, tmp_path / "s.csv")
    with pytest.raises(FileNotFoundError, match="folder"):
        score(spaces, tmp_path / "no" / "s.csv")
    score(spaces, tmp_path / "s.csv", k=5)
    with pytest.raises(FileExistsError, match="overwrite"):
        score(spaces, tmp_path / "s.csv", k=5)
    score(spaces, tmp_path / "s.csv", k=7, overwrite=True)
    assert read_scores(tmp_path / "s.csv", ["rank"])["rank"].shape == (60,)
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_approximate_method_reports_recall(tmp_path):
    pytest.importorskip("faiss")
    spaces = _models(3000, d=16)
    res = score(spaces, tmp_path / "s.csv", k=10, method="ivf", nlist=16, nprobe=16)
    assert set(res.recall) == {"a", "b", "c"}
    assert all(r is not None and r > 0.99 for r in res.recall.values())
    _check_ranks(read_scores(res.path))


def _ood_reference(R, Q, k):
    """The deep-nearest-neighbour score from the math, in float64: distance to the k-th
    nearest reference row, and the fraction of the reference's own leave-one-out k-th
    distances strictly below it."""
    R, Q = np.asarray(R, np.float64), np.asarray(Q, np.float64)
    dq = np.sort(np.sqrt(((Q[:, None, :] - R[None]) ** 2).sum(-1)), axis=1)[:, k - 1]
    dr = np.sqrt(((R[:, None, :] - R[None]) ** 2).sum(-1))
    np.fill_diagonal(dr, np.inf)
    loo = np.sort(dr, axis=1)[:, k - 1]
    pct = (loo[None, :] < dq[:, None]).mean(axis=1)
    return dq, pct


@pytest.mark.parametrize("ext", [".csv", ".parquet"])
def test_reference_ood_columns(tmp_path, ext):
    if ext == ".parquet":
        pytest.importorskip("pyarrow")
    from matalign.ood import DEFAULT_SCORE
    rng = np.random.default_rng(7)
    ref = _models(120, seed=1)
    q = _models(60, seed=2)
    q = {m: np.concatenate([v[:30], v[30:] + 2.5]) for m, v in q.items()}   # half far away
    res = score(q, tmp_path / f"s{ext}", k=6, reference=ref, ood_k=4)
    t = read_scores(res.path)
    pcts = []
    for m in q:
        d, p = _ood_reference(ref[m], q[m], 4)
        np.testing.assert_allclose(t[f"ood_knn_distance:{m}"], d, rtol=1e-5)
        np.testing.assert_allclose(t[f"ood_percentile:{m}"], p, atol=1e-12)
        pcts.append(p)
    P = np.vstack(pcts)
    want = {"max_percentile": P.max(0), "consensus": P.mean(0)}[DEFAULT_SCORE]
    np.testing.assert_allclose(t["ood_score"], want, atol=1e-12)
    np.testing.assert_allclose(t["ood_agreement"], 1 - (P.max(0) - P.min(0)), atol=1e-12)
    np.testing.assert_allclose(t["within_set_disagreement"], 1 - t["mean_local_agreement"])
    assert t["ood_score"][30:].min() > t["ood_score"][:30].mean()     # the far half scores high
    assert rng is not None and "ood_score" in res.columns and "rank" in res.columns
    with pytest.raises(ValueError, match="reference must hold the same models as embeddings"):
        score(q, tmp_path / "x.csv", reference={"a": ref["a"]})
    with pytest.raises(TypeError, match="reference must be a dict"):
        score(q, tmp_path / "y.csv", reference=[ref["a"]])


@pytest.mark.parametrize("content,message", [
    (b"", "is empty"),
    (b"\x93NUMPY\x01\x00garbage", "x.npy"),
])
def test_load_embeddings_checks_npy_files(tmp_path, content, message):
    p = tmp_path / "x.npy"
    p.write_bytes(content)
    with pytest.raises(ValueError, match=message) as info:
        load_embeddings(p, name="embeddings['a']")
    assert "embeddings['a']" in str(info.value)
    np.save(p, np.ones(5))                                  # 1-D: not an (N, D) matrix
    with pytest.raises(ValueError, match="2-D|shape"):
        load_embeddings(p)
    np.save(p, np.array([[object()]], dtype=object), allow_pickle=True)
    with pytest.raises(ValueError, match="object|dtype|pickle"):
        load_embeddings(p)
    np.save(p, np.ones((4, 3), dtype=np.float32))
    A, ids = load_embeddings(p)
    assert A.shape == (4, 3) and ids is None
    del A
