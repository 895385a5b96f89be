"""Atomic file writes: write a temporary file next to the target, then ``os.replace`` it.

A reader of the target sees the old file or the new one, never half of one. Two temporary
names are in use: ``<name>.tmp`` (the default) and the hidden ``.<name>.partial-<pid>``
(``hidden=True``). With ``fsync=True`` the data is fsync'd before the rename and the folder
after it, so the new file also survives a power loss.

Examples
--------
>>> import os, tempfile
>>> from pathlib import Path
>>> from matalign._io import atomic_json, atomic_write_text
>>> with tempfile.TemporaryDirectory() as folder:
...     atomic_write_text(Path(folder) / "a.txt", "hello")
...     atomic_json(Path(folder) / "b.json", {"x": 1}, indent=None)
...     print(sorted(os.listdir(folder)), (Path(folder) / "b.json").read_text().strip())
['a.txt', 'b.json'] {"x": 1}
"""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path
from typing import Any, Iterator

__all__ = ["fsync_dir", "temp_path", "atomic_open", "atomic_write_bytes", "atomic_write_text",
           "atomic_json"]


def fsync_dir(path: str | os.PathLike) -> None:
    """Make a rename or unlink inside ``path`` durable (no-op where directories can't be opened)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # pragma: no cover - Windows
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover - file systems without directory fsync
        pass
    finally:
        os.close(fd)


def temp_path(path: Path, *, hidden: bool = False) -> Path:
    """The temporary file written before replacing ``path``: ``<name>.tmp``, or with
    ``hidden=True`` ``.<name>.partial-<pid>`` (one per process)."""
    if hidden:
        return path.with_name(f".{path.name}.partial-{os.getpid()}")
    return path.with_name(path.name + ".tmp")


@contextlib.contextmanager
def atomic_open(path: Path, mode: str = "wb", *, encoding: str | None = None,
                hidden: bool = False, fsync: bool = False,
                cleanup: bool = True) -> Iterator[Any]:
    """Open :func:`temp_path` of ``path`` for writing; on a normal exit rename it over ``path``.

    ``fsync=True`` flushes and fsyncs the file before the rename and the folder after it.
    If the block (or the rename) raises, the temporary file is deleted, unless
    ``cleanup=False`` leaves it for the caller (e.g. a store's resume) to find.
    """
    tmp = temp_path(path, hidden=hidden)
    try:
        with open(tmp, mode, encoding=encoding) as f:
            yield f
            if fsync:
                f.flush()
                os.fsync(f.fileno())
        os.replace(tmp, path)
        if fsync:
            fsync_dir(path.parent)
    finally:
        if cleanup and tmp.exists():
            tmp.unlink()


def atomic_write_bytes(path: Path, data: bytes, **options) -> None:
    """Write ``data`` to ``path`` atomically (``options`` as in :func:`atomic_open`)."""
    with atomic_open(path, "wb", **options) as f:
        f.write(data)


def atomic_write_text(path: Path, text: str, **options) -> None:
    """Write ``text`` to ``path`` atomically as UTF-8 (``options`` as in :func:`atomic_open`)."""
    with atomic_open(path, "w", encoding="utf-8", **options) as f:
        f.write(text)


def atomic_json(path: Path, data: Any, *, indent: int | None = 2, allow_nan: bool = True,
                **options) -> None:
    """Write ``data`` as newline-terminated JSON (UTF-8) to ``path`` atomically (``options``
    as in :func:`atomic_open`)."""
    with atomic_open(path, "w", encoding="utf-8", **options) as f:
        json.dump(data, f, indent=indent, allow_nan=allow_nan)
        f.write("\n")
