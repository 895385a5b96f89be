"""Layer sweeps (ma.layer_sweep, `matalign layer-sweep`) and the adapters' layer API.

The comparisons are checked against the float64 NumPy CKNNA of tests/reference.py on seeded
spaces; the adapters' declared layers are checked against their default embedding (the
default layer of a sweep must be the adapter's own output, bit for bit).
"""

from __future__ import annotations

import importlib.util
import json

import numpy as np
import pytest

import matalign as ma
from matalign.layers import sweep_spaces

import reference as ref


def _spaces(seed=0, n=50):
    rng = np.random.default_rng(seed)
    Z = rng.normal(size=(n, 3))
    return Z, {("l0", "mean"): np.tanh(Z @ rng.normal(size=(3, 6))),
               ("l1", "mean"): Z @ rng.normal(size=(3, 5)) + 0.3 * rng.normal(size=(n, 5)),
               ("l2", "mean"): rng.normal(size=(n, 4))}


def test_sweep_matches_reference_cknna():
    Z, spaces = _spaces()
    k = 6
    sw = sweep_spaces(spaces, reference=Z, reference_name="truth", model="toy", k=k,
                      ci=False)
    pp = {key: ma.preprocess(v.astype(np.float64), center=True, l2=True)
          for key, v in spaces.items()}
    zpp = ma.preprocess(Z, center=True, l2=True)
    layers = ["l0", "l1", "l2"]
    assert sw.layers == layers and sw.poolings == ["mean"]
    for i, a in enumerate(layers):
        for j, b in enumerate(layers):
            want = 1.0 if i == j else ref.cknna(pp[(a, "mean")], pp[(b, "mean")], k)
            assert sw.self_matrix["mean"][i, j] == pytest.approx(want, abs=1e-9)
        want = ref.cknna(pp[(a, "mean")], zpp, k)
        assert sw.cross["mean"][i, 0] == pytest.approx(want, abs=1e-9)
        assert sw.rows[i]["cknna"] == pytest.approx(want, abs=1e-9)
    # the planted structure: l2 is noise, so it is not the best layer
    assert sw.best()["layer"] in ("l0", "l1")
    assert sw.cross["mean"][2, 0] < sw.cross["mean"][0, 0]
    assert sw.params["n"] == 50 and sw.params["k"] == k
    assert sw.params["preprocessing"] == "centre + l2 rows"


def test_sweep_interval_and_reference_layers():
    Z, spaces = _spaces(1)
    sw = sweep_spaces(spaces, reference={"r0": Z, "r1": Z[:, :2]}, reference_name="ref",
                      k=5, n_subsamples=6)
    assert sw.reference_layers == ["r0", "r1"] and sw.cross["mean"].shape == (3, 2)
    for row in sw.rows:
        assert row["reference_layer"] == "r0"
        assert row["low"] <= row["cknna"] <= row["high"]
    best = sw.best()
    i, j = sw.layers.index(best["layer"]), sw.reference_layers.index(best["reference_layer"])
    assert best["cknna"] == sw.cross["mean"].max() == sw.cross["mean"][i, j]
    other = sweep_spaces(spaces, reference={"r0": Z, "r1": Z[:, :2]}, k=5, ci=False,
                         reference_default="r1")
    assert [r["cknna"] for r in other.rows] == other.cross["mean"][:, 1].tolist()
    with pytest.raises(ValueError, match="reference_default 'r9' is not among"):
        sweep_spaces(spaces, reference={"r0": Z}, k=5, ci=False, reference_default="r9")
    d = json.loads(json.dumps(sw.to_dict()))
    assert d["best"] == best and len(d["self_matrix"]["mean"]) == 3
    text = sw.table()
    assert "N=50" in text and "k=5" in text and "centre + l2 rows" in text


def test_sweep_errors():
    Z, spaces = _spaces()
    with pytest.raises(ValueError, match="spaces is empty"):
        sweep_spaces({})
    with pytest.raises(ValueError, match="same number of rows"):
        sweep_spaces({("a", "mean"): Z, ("b", "mean"): Z[:10]})
    with pytest.raises(ValueError, match="reference layer 'default' has 10 rows, the model 50"):
        sweep_spaces(spaces, reference=Z[:10])
    sw = sweep_spaces(spaces, k=5, ci=False)
    with pytest.raises(ValueError, match="this sweep has no reference"):
        sw.best()
    with pytest.raises(ValueError, match="pooling must be one of"):
        sw.figure("max")


def test_layer_sweep_argument_errors():
    from ase.build import bulk

    from matalign.structures import Structure

    s = [Structure(f"s{i}", atoms=bulk("Si", a=5.4 + 0.01 * i)) for i in range(6)]
    with pytest.raises(ValueError, match="reference_layers must be 'default' or 'all'"):
        ma.layer_sweep("composition", s, reference_layers="best")
    with pytest.raises(TypeError, match="model must be an adapter name or an Adapter"):
        ma.layer_sweep(3, s)
    with pytest.raises(ValueError, match="more than k=10 structures, got 6"):
        ma.layer_sweep("composition", s)
    with pytest.raises(ValueError, match="adapter 'composition' declares no layers"):
        ma.layer_sweep("composition", s, k=3)


def test_layer_heatmap_figure(tmp_path):
    Z, spaces = _spaces()
    sw = sweep_spaces(spaces, reference=Z, reference_name="truth", k=5, ci=False)
    fig = sw.figure()
    assert len(fig.axes) == 3                         # two panels and the colour bar
    assert [t.get_text() for t in fig.axes[0].get_yticklabels()] == ["l0", "l1", "l2"]
    assert "N=50, k=5" in fig._suptitle.get_text()
    fig.savefig(tmp_path / "f.png")
    from matalign.plots import layer_heatmap
    with pytest.raises(ValueError, match="do not match 2 row and 2 column names"):
        layer_heatmap([(np.eye(3), ["a", "b"], ["a", "b"], "bad")])


# -- real adapters --------------------------------------------------------------------------

def _needs(pkg):
    if importlib.util.find_spec(pkg) is None:
        pytest.skip(f"{pkg} is not installed")


@pytest.fixture(scope="module")
def crystals():
    pytest.importorskip("ase")
    import itertools
    return list(itertools.islice(iter(ma.datasets.get("mptrj")), 12))


@pytest.mark.parametrize("name,layers,default", [
    ("random-chgnet", ["conv0", "conv1", "conv2", "conv3"], "conv3"),
    ("sevennet-0", ["embedding", "block0", "block1", "block2", "block3", "block4"], "block4"),
])
def test_adapter_layers_default_is_embed(crystals, name, layers, default):
    _needs("chgnet" if "chgnet" in name else "sevenn")
    ad = ma.adapters.get(name)
    assert ad.layers() == layers and ad.default_layer == default
    few = crystals[:3]
    out = ad.embed_layers(few, poolings=["mean", "sum"], batch_size=2)
    emb = ad.embed(few, batch_size=3)
    assert np.array_equal(out[(default, "mean")], emb)       # bit for bit, other batching
    counts = np.array([len(s.atoms) for s in few], dtype=np.float32)[:, None]
    np.testing.assert_allclose(out[(default, "sum")], emb * counts, rtol=1e-5, atol=1e-5)
    assert not np.allclose(out[(layers[0], "mean")], emb)
    np.testing.assert_array_equal(ad.embed(few, layer=layers[1]), out[(layers[1], "mean")])
    with pytest.raises(ValueError, match=r"layers must be a non-empty subset of \["):
        ad.embed(few, layer="nope")
    with pytest.raises(ValueError, match="poolings must be among"):
        ad.embed_layers(few, poolings=["median"])


def test_cli_layer_sweep_writes_plots(crystals, tmp_path, capsys):
    _needs("chgnet")
    from matalign.cli import main

    out = tmp_path / "sweep"
    status = main(["layer-sweep", "random-chgnet", "--reference", "element-stats",
                   "--data", "mptrj", "--n", "12", "--k", "3", "--pooling", "mean",
                   "--no-ci", "--out", str(out)])
    text = capsys.readouterr().out
    assert status == 0, text
    assert "N=12, k=3" in text and "conv3" in text
    d = json.loads((out / "sweep.json").read_text())
    assert d["layers"] == ["conv0", "conv1", "conv2", "conv3"] and d["params"]["n"] == 12
    assert d["reference"] == "element-stats" and d["params"]["default_layer"] == "conv3"
    m = np.array(d["self_matrix"]["mean"])
    # CKNNA's kNN masks are per row, so the matrix need not be symmetric; its diagonal is 1
    assert m.shape == (4, 4) and np.allclose(np.diag(m), 1.0) and np.isfinite(m).all()
    for ext in ("png", "svg"):
        assert (out / f"layers-mean.{ext}").stat().st_size > 1000


def test_sevennet_layer_option(crystals):
    _needs("sevenn")
    ad = ma.adapters.get("sevennet-0", layer="block1")
    assert ad.name == "sevennet-0-block1" and ad.default_layer == "block1" and ad.dim == 128
    few = crystals[:2]
    np.testing.assert_array_equal(ad.embed(few),
                                  ad.embed_layers(few, layers=["block1"])[("block1", "mean")])
    assert "block1" in ad.metadata["layer"]
    with pytest.raises(ValueError, match=r"layer must be one of \['embedding', 'block0'"):
        ma.adapters.get("sevennet-0", layer="block9")
