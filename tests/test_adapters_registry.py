"""The adapter registry: listing, filters, unknown names, option overrides, sane entries."""

from __future__ import annotations

import importlib.util
import json
import re
from pathlib import Path

import pytest

import matalign.adapters as adapters
from matalign.adapters import Adapter, AdapterInfo
from matalign.structures import MODALITIES

FAMILIES = {"mlip", "descriptor", "language", "protein", "random"}
BASELINES = ["soap", "acsf", "composition", "morgan", "rdkit-descriptors", "minilm-smiles",
             "hf-encoder", "esm2-random", "esm2"]
_PYPROJECT = Path(__file__).resolve().parents[1] / "pyproject.toml"


def _extras():
    """Extras named in pyproject.toml (a regex, so Python 3.10 without tomllib works)."""
    text = _PYPROJECT.read_text()
    block = text.split("[project.optional-dependencies]", 1)[1].split("\n[", 1)[0]
    return set(re.findall(r"^([A-Za-z0-9_-]+)\s*=", block, flags=re.M))


def test_list_sorted_and_complete():
    entries = adapters.list()
    names = [a.name for a in entries]
    assert names == sorted(names) and len(set(names)) == len(names)
    assert all(isinstance(a, AdapterInfo) for a in entries)
    assert set(BASELINES) <= set(names)


def test_list_filters():
    everything = adapters.list()
    offline = adapters.list(offline=True)
    byo = adapters.list(offline=False)
    assert {a.name for a in offline} | {a.name for a in byo} == {a.name for a in everything}
    assert all(a.offline for a in offline) and not any(a.offline for a in byo)
    assert {"hf-encoder", "esm2"} <= {a.name for a in byo}
    assert {"soap", "morgan", "minilm-smiles", "esm2-random"} <= {a.name for a in offline}
    for modality in MODALITIES:
        assert all(a.modality == modality for a in adapters.list(modality=modality))
    assert sum(len(adapters.list(modality=m)) for m in MODALITIES) == len(everything)
    smiles_offline = adapters.list(offline=True, modality="smiles")
    assert {"morgan", "rdkit-descriptors", "minilm-smiles"} <= {a.name for a in smiles_offline}
    assert "hf-encoder" not in {a.name for a in smiles_offline}
    assert adapters.list(modality="nothing") == []


def test_info_unknown_name():
    with pytest.raises(ValueError, match=r"unknown adapter 'no-such-model'; "
                                         r"matalign\.adapters\.list\(\) shows the \d+ available"):
        adapters.info("no-such-model")
    with pytest.raises(ValueError, match=r"unknown adapter 'esm2-huge'.*Did you mean one of "
                                         r"\[.*'esm2'.*\]"):
        adapters.info("esm2-huge")
    with pytest.raises(ValueError, match="unknown adapter 'nope'"):
        adapters.get("nope")


def test_register_duplicate_and_plugin(monkeypatch):
    monkeypatch.setattr(adapters, "_REGISTRY", dict(adapters._REGISTRY))
    with pytest.raises(ValueError, match="adapter 'morgan' is already registered"):
        adapters.register("morgan", modality="smiles", dim=1, offline=True, family="descriptor",
                          package="rdkit", extra="chem", target="fingerprints:Morgan")
    entry = adapters.register("morgan-r1", modality="smiles", dim=256, offline=True,
                              family="descriptor", package="rdkit", extra="chem",
                              target="fingerprints:Morgan", radius=1, n_bits=256)
    assert adapters.info("morgan-r1") is entry and entry.to_dict()["options"] == {
        "n_bits": 256, "radius": 1}
    pytest.importorskip("rdkit")
    assert adapters.get("morgan-r1").radius == 1


def test_get_option_override():
    pytest.importorskip("rdkit")
    default = adapters.get("morgan")
    assert isinstance(default, Adapter) and (default.radius, default.dim) == (2, 2048)
    custom = adapters.get("morgan", radius=3, n_bits=512, counts=True)
    assert (custom.radius, custom.dim, custom.counts) == (3, 512, True)
    assert dict(adapters.info("morgan").options)["radius"] == 2     # registry unchanged
    with pytest.raises(ValueError, match=r"adapter 'morgan' takes no option\(s\) \['bogus'\]"):
        adapters.get("morgan", bogus=1)


@pytest.mark.parametrize("name", [a.name for a in adapters.list()])
def test_info_fields_sane(name):
    a = adapters.info(name)
    assert a.name == name and re.fullmatch(r"[a-z0-9][a-z0-9.\-]*", name)
    assert a.modality in MODALITIES
    assert a.dim is None or (isinstance(a.dim, int) and a.dim > 0)
    assert isinstance(a.offline, bool) and a.family in FAMILIES
    assert a.package and a.extra in _extras()
    module, _, factory = a.target.partition(":")
    assert module and factory.isidentifier()
    assert importlib.util.find_spec(f"matalign.adapters.{module}") is not None
    assert isinstance(a.description, str) and a.description
    json.dumps(a.to_dict())                     # JSON-serialisable, options included
    assert a.options == tuple(sorted(a.options))


_CHEAP = {"soap": "dscribe", "acsf": "dscribe", "composition": "ase", "morgan": "rdkit",
          "rdkit-descriptors": "rdkit", "esm2-random": "esm"}


@pytest.mark.parametrize("name", sorted(_CHEAP))
def test_offline_baselines_build_as_registered(name):
    pytest.importorskip(_CHEAP[name])
    a = adapters.info(name)
    built = adapters.get(name)
    assert built.name == a.name and built.modality == a.modality
    assert a.dim is None or built.dim == a.dim
    meta = built.metadata
    assert meta["adapter"] == name and meta["package"] == a.package
    assert meta["package_version"] is not None
    json.dumps(meta)
