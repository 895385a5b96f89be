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
           "atomic_json", "check_npy"]


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


def check_npy(path: str | os.PathLike, name: str = "input") -> tuple[tuple[int, ...], Any]:
    """Check that ``path`` is a readable .npy file of a numeric 2-D array, reading only its
    header; return ``(shape, dtype)``.

    Raises ValueError naming the file for: an empty or truncated file, a damaged header (any
    parser error, including the ``tokenize``/``SyntaxError`` ones a flipped bit gives), an
    object (pickled) or non-numeric dtype, a shape that is not 2-D or has no rows, and a
    file shorter than its header promises; FileNotFoundError when it does not exist.

    Examples
    --------
    >>> import tempfile, numpy as np
    >>> from pathlib import Path
    >>> from matalign._io import check_npy
    >>> with tempfile.TemporaryDirectory() as folder:
    ...     p = Path(folder) / "x.npy"
    ...     np.save(p, np.ones((3, 2), np.float32))
    ...     print(check_npy(p))
    ...     _ = p.write_bytes(b"")
    ...     check_npy(p)
    Traceback (most recent call last):
    ...
    ValueError: input: .../x.npy is empty (0 bytes): not a .npy file
    """
    import numpy as np

    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"{name}: {p} does not exist")
    size = p.stat().st_size
    if size == 0:
        raise ValueError(f"{name}: {p} is empty (0 bytes): not a .npy file")
    with open(p, "rb") as f:
        try:
            version = np.lib.format.read_magic(f)
            if version == (1, 0):
                shape, fortran, dtype = np.lib.format.read_array_header_1_0(f)
            elif version in ((2, 0), (3, 0)):
                shape, fortran, dtype = np.lib.format.read_array_header_2_0(f)
            else:
                raise ValueError(f"unsupported .npy version {version}")
        except Exception as exc:  # noqa: BLE001 - every header parser error means damage
            raise ValueError(f"{name}: {p} is not a readable .npy file "
                             f"({type(exc).__name__}: {str(exc)[:160]})") from None
        offset = f.tell()
    dtype = np.dtype(dtype)
    if dtype.hasobject or dtype.kind not in "biuf":
        raise ValueError(f"{name}: {p} holds a {dtype} array; embeddings must be a numeric "
                         f"(float) array saved with np.save (object arrays are not read)")
    if len(shape) != 2:
        raise ValueError(f"{name}: {p} holds an array of shape {tuple(shape)}; embeddings must "
                         f"be 2-D (N structures x D features)")
    if shape[0] < 1 or shape[1] < 1:
        raise ValueError(f"{name}: {p} holds an empty array of shape {tuple(shape)}")
    expected = offset + int(shape[0]) * int(shape[1]) * dtype.itemsize
    if size < expected:
        raise ValueError(f"{name}: {p} is truncated: {size} bytes, its header promises "
                         f"{expected} ({shape[0]} x {shape[1]} {dtype})")
    return tuple(shape), dtype
