"""`matalign models`: family, environment, weights, layer, pooling, near-duplicates, and
whether an adapter ran in this installation; the SevenNet-0 replicate checkpoint."""

from __future__ import annotations

import importlib.util
import json

import numpy as np
import pytest

import matalign as ma
from matalign.adapters import _status


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("MATALIGN_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(_status, "_seen", set())
    return tmp_path


def _row(name):
    return next(r for r in _status.models_table() if r["name"] == name)


def test_table_columns_and_weights(cache):
    rows = _status.models_table()
    assert {r["name"] for r in rows} == {a.name for a in ma.adapters.list()}
    for r in rows:
        assert {"family", "environment", "weights", "layer", "pooling", "status",
                "near_duplicate_of"} <= set(r)
        assert r["environment"] == ma.adapters.info(r["name"]).environment
        assert r["layer"] and r["pooling"] in ma.adapters.POOLINGS
    assert _row("sevennet-0")["weights"] == "shipped"
    assert _row("random-chgnet")["weights"] == "random-init"
    assert _row("mace")["weights"] == "local checkpoint"
    assert _row("sevennet-0-22may2024")["near_duplicate_of"] == "sevennet-0"
    assert _row("sevennet-0")["near_duplicate_of"] == ""


def test_a_successful_embed_is_recorded(cache):
    from ase.build import bulk

    from matalign.structures import Structure

    assert _row("composition")["status"] == "importable"
    ad = ma.adapters.get("composition")
    ad.embed([Structure("si", atoms=bulk("Si"))])
    assert _row("composition")["status"].startswith("ran 20")
    data = json.loads((cache / "adapters_ran.json").read_text())
    assert data["composition"]["version"] == ma.adapters._base.package_version("ase")
    (cache / "adapters_ran.json").write_text("{not json")      # a broken record is ignored
    assert _status.runs() == {} and _row("composition")["status"] == "importable"


def test_a_failed_embed_is_not_recorded(cache):
    from matalign.structures import Structure

    ad = ma.adapters.get("composition")
    with pytest.raises(ValueError, match="reads 'atoms' but structure 'x' has none"):
        ad.embed([Structure("x", smiles="CCO")])
    assert "composition" not in _status.runs()


def test_register_checks_the_parent():
    with pytest.raises(ValueError, match="parent 'no-such-model' is not registered"):
        ma.adapters.register("x-test", modality="atoms", dim=1, offline=True, family="mlip",
                             package="ase", extra="chem", target="descriptors:Composition",
                             parent="no-such-model")


def test_study_inherits_registered_parent():
    cfg = ma.study_config({"models": [{"name": "sevennet-0"},
                                      {"name": "sevennet-0-22may2024"},
                                      {"name": "chgnet-r2scan", "parent": ""}],
                           "sets": [{"name": "id", "dataset": "mptrj", "n": 10}]})
    parents = {m["name"]: m["parent"] for m in cfg["models"]}
    assert parents == {"sevennet-0": "", "sevennet-0-22may2024": "sevennet-0",
                       "chgnet-r2scan": ""}           # an explicit parent wins


def test_sevennet_replicate_embeds_offline():
    if importlib.util.find_spec("sevenn") is None:
        pytest.skip("sevenn is not installed")
    from ase.build import bulk, molecule

    from matalign.structures import Structure

    s = [Structure("si", atoms=bulk("Si")), Structure("h2o", atoms=molecule("H2O"))]
    rep = ma.adapters.get("sevennet-0-22may2024")
    assert rep.name == "sevennet-0-22may2024"
    assert "SevenNet_0__22May2024" in rep.metadata["checkpoint"]
    e = rep.embed(s)
    e0 = ma.adapters.get("sevennet-0").embed(s)
    assert e.shape == e0.shape == (2, 128) and np.isfinite(e).all()
    assert rep.metadata["checkpoint_sha256"] != ma.adapters.get("sevennet-0") \
        .metadata["checkpoint_sha256"]
    assert not np.allclose(e, e0, atol=1e-3)            # a different training run


def test_environment_adapters_report_their_environment_state(cache, monkeypatch, tmp_path):
    """An adapter of an isolated environment that has not run says whether that environment
    is ready, missing or broken (and 'ran ...' once it has run)."""
    import matalign.envs as envs

    monkeypatch.setenv("MATALIGN_ENV_DIR", str(tmp_path / "envs"))
    for family, name in (("mace", "random-mace"), ("fairchem", "random-esen")):
        if importlib.util.find_spec(envs.spec(family).module.split(".")[0]) is not None:
            assert _row(name)["status"] == f"environment {family} ready (in process)"
            continue
        assert _row(name)["status"] == f"environment {family} missing"
        envs.env_dir(family).mkdir(parents=True)          # a directory without its marker
        assert _row(name)["status"] == f"environment {family} broken"
    _status.record_run(type("A", (), {"name": "random-mace", "package": "mace-torch",
                                      "checkpoint": None})())
    assert _row("random-mace")["status"].startswith("ran 20")
