"""The documentation site's pieces that can be checked without building it.

The full build (``python -m sphinx -E -W --keep-going -n -b html docs OUT``, tutorials
executed) runs in ``.ci/run``'s docs step; here: the shipped intersphinx inventories are the
ones ``docs/_inv/make_inventories.py`` writes and Sphinx can read them, the CLI reference
covers every command, and every docs page is in a toctree.
"""

from __future__ import annotations

import importlib.util
import re
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"


def _load(path: Path, name: str):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_inventories_are_the_generated_ones(tmp_path):
    gen = _load(DOCS / "_inv" / "make_inventories.py", "make_inventories")
    for key, (project, version, objects) in gen.INVENTORIES.items():
        out = tmp_path / f"{key}.inv"
        gen.write(str(out), project, version, objects)
        shipped = DOCS / "_inv" / f"{key}.inv"
        assert shipped.read_bytes() == out.read_bytes(), (
            f"{shipped} is stale: run python docs/_inv/make_inventories.py")


def test_inventories_parse_and_map_to_real_urls():
    inventory = pytest.importorskip("sphinx.util.inventory")
    gen = _load(DOCS / "_inv" / "make_inventories.py", "make_inventories")
    conf = (DOCS / "conf.py").read_text(encoding="utf-8")
    for key, (_, _, objects) in gen.INVENTORIES.items():
        base = re.search(rf'"{key}": \("(https://[^"]+)"', conf).group(1)
        with open(DOCS / "_inv" / f"{key}.inv", "rb") as f:
            inv = inventory.InventoryFile.load(f, base, lambda a, b: a.rstrip("/") + "/" + b)
        names = {name for entries in inv.values() for name in entries}
        assert names == {o[0] for o in objects}
        for role, entries in inv.items():
            for name, item in entries.items():
                uri = item[2] if isinstance(item, tuple) else item.uri
                assert uri.startswith(base + "/") and "$" not in uri, (name, uri)


def test_cli_reference_covers_every_command():
    sys.path.insert(0, str(DOCS / "_ext"))
    try:
        clidoc = importlib.import_module("clidoc")
    finally:
        sys.path.remove(str(DOCS / "_ext"))
    from matalign.cli import app

    names = clidoc.command_names()
    assert set(names) == {c.name or c.callback.__name__ for c in app.registered_commands
                          if not c.hidden}
    text = clidoc._help(["bench"])
    assert "Usage: matalign bench" in text and "\x1b[" not in text


def test_every_page_and_tutorial_is_reachable():
    index = (DOCS / "index.md").read_text(encoding="utf-8")
    pages = {p.stem for p in DOCS.glob("*.md")} | {p.stem for p in DOCS.glob("*.rst")}
    pages -= {"index", "sg_execution_times"}
    assert {p for p in pages if p not in index} == set()
    tutorials = sorted(p.name for p in (DOCS / "tutorials").glob("tut_*.py"))
    assert len(tutorials) == 5
    for t in tutorials:
        first = (DOCS / "tutorials" / t).read_text(encoding="utf-8").split('"""')[1]
        assert re.search(r"\n=+\n", first), f"{t}: no title for sphinx-gallery"
