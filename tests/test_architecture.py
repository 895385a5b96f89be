"""The package's structure, checked: one door to the compiled engine, the layering contract,
and a repository that cites nothing outside itself."""

from __future__ import annotations

import ast
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "python" / "matalign"
CONFIG = ROOT / ".importlinter"


def _imports_core(path: Path) -> bool:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            module = node.module or ""
            if module.endswith("_core") or any(a.name == "_core" for a in node.names):
                return True
        elif isinstance(node, ast.Import):
            if any(a.name.split(".")[-1] == "_core" for a in node.names):
                return True
    return False


def test_only_the_engine_door_imports_core():
    importers = sorted(str(p.relative_to(PACKAGE)) for p in PACKAGE.rglob("*.py")
                       if _imports_core(p))
    assert importers == ["_engine.py"], importers


def _lint(package_parent: Path, config: Path = CONFIG) -> subprocess.CompletedProcess:
    pytest.importorskip("importlinter", reason="import-linter is a test dependency "
                        "(requirements-test.txt)")
    exe = shutil.which("lint-imports") or str(Path(sys.executable).parent / "lint-imports")
    env = dict(os.environ, PYTHONPATH=str(package_parent))
    return subprocess.run([exe, str(config)], capture_output=True, text=True, env=env,
                          cwd=str(package_parent), timeout=300)


def test_layering_contract_is_kept():
    result = _lint(PACKAGE.parent)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 kept, 0 broken" in result.stdout


def test_layering_contract_fails_on_a_planted_upward_import(tmp_path):
    """The contract can fail: the metrics layer importing the CLI is reported as broken.

    The copy gets another name (an installed matalign would shadow a copy of the same name)."""
    copy = tmp_path / "mlplanted"
    shutil.copytree(PACKAGE, copy, ignore=shutil.ignore_patterns("*.so", "__pycache__", "data"))
    config = tmp_path / "planted.importlinter"
    config.write_text(CONFIG.read_text(encoding="utf-8").replace("matalign", "mlplanted"),
                      encoding="utf-8")
    result = _lint(tmp_path, config)
    assert result.returncode == 0, result.stdout + result.stderr  # the copy is clean
    target = copy / "metrics" / "dcor.py"
    target.write_text(target.read_text(encoding="utf-8") + "\nfrom .. import cli  # planted\n",
                      encoding="utf-8")
    result = _lint(tmp_path, config)
    assert result.returncode != 0
    assert "BROKEN" in result.stdout and "mlplanted.metrics.dcor -> mlplanted.cli" in result.stdout


def test_the_repository_cites_no_file_outside_it():
    """Code, docstrings and docs cite the project's own docs/, never design notes that a user
    of the project does not have."""
    banned = ("DESIGN.md", "STYLE.md", "STYLE rule", "ANCHORS.md", "PAPER.md",
              "MODELS_AND_DATA.md", "DISTRIBUTED.md", "shared/notes")
    hits = []
    for folder in ("python", "cpp", "cuda", "tests", "bench", "docs", ".ci"):
        for path in (ROOT / folder).rglob("*"):
            if path.is_dir() or path.suffix in (".so", ".png", ".gz", ".npz", ".pyc"):
                continue
            if path == Path(__file__).resolve():
                continue
            try:
                text = path.read_text(encoding="utf-8")
            except (UnicodeDecodeError, OSError):
                continue
            hits += [f"{path.relative_to(ROOT)}: {b}" for b in banned if b in text]
    for name in ("README.md", "CMakeLists.txt", "pyproject.toml"):
        text = (ROOT / name).read_text(encoding="utf-8")
        hits += [f"{name}: {b}" for b in banned if b in text]
    assert not hits, "\n".join(hits)


def test_docs_hold_the_metric_definitions():
    text = (ROOT / "docs" / "METRICS.md").read_text(encoding="utf-8")
    for heading in ("kNN", "mutual kNN", "CKNNA", "CKA", "Distance correlation",
                    "Information imbalance", "Intrinsic dimension", "Ties"):
        assert heading in text, heading
