"""Shared helpers for datasets: optional imports, skip counting, ids, conversions."""

from __future__ import annotations

import bz2
import gzip
import importlib
import io
import lzma
import math
import os
import warnings
import zlib
from pathlib import Path
from typing import Any, Iterable, Iterator

from ..structures import Structure
from ._base import Dataset
from ._catalog import get

__all__ = ["SkippedRecordsWarning", "require", "open_text", "strip_compression", "stem_of",
           "json_scalars", "BadRecord", "RecordDataset", "item_rng", "as_dataset", "check_file", "file_error", "is_file_error"]

_COMPRESSED = {".gz": gzip.open, ".bz2": bz2.open, ".xz": lzma.open}

_PIP_NAMES = {"ase": "ase", "rdkit": "rdkit", "biotite": "biotite", "lmdb": "lmdb",
              "pymatgen": "pymatgen", "PeptideBuilder": "PeptideBuilder"}


class SkippedRecordsWarning(UserWarning):
    """Emitted once per iteration when ``skip_bad=True`` skipped unreadable records."""


def require(module: str, what: str, extra: str = "data"):
    """Import ``module`` or raise ImportError naming the pip package that provides it."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        top = module.split(".")[0]
        pkg = _PIP_NAMES.get(top, top)
        raise ImportError(
            f"{what} needs the {pkg!r} package, which is not installed: "
            f"pip install {pkg}  (or pip install 'matalign[{extra}]')") from exc


def strip_compression(path: Path) -> tuple[str, str]:
    """Return (name without a compression suffix, compression suffix or '')."""
    name = path.name
    for suf in _COMPRESSED:
        if name.lower().endswith(suf):
            return name[: -len(suf)], suf
    return name, ""


def stem_of(path: Path) -> str:
    """File name without compression and format suffixes: ``a/b.extxyz.gz`` -> ``b``."""
    name, _ = strip_compression(path)
    stem = Path(name).stem
    return stem or name


def open_text(path: Path) -> io.TextIOBase:
    """Open a (possibly gz/bz2/xz-compressed) text file for streaming."""
    _, comp = strip_compression(path)
    if comp:
        return _COMPRESSED[comp](path, "rt", encoding="utf-8", errors="replace")
    return open(path, "rt", encoding="utf-8", errors="replace")


def check_file(path, name: str = "path") -> Path:
    """Return ``path`` as a Path, raising FileNotFoundError naming it when absent."""
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"{name} must be a str or os.PathLike, got {type(path).__name__}")
    p = Path(path).expanduser()
    if not p.exists():
        raise FileNotFoundError(f"{name}: no such file: {str(p)!r}")
    return p


def json_scalars(d: Any) -> dict[str, Any]:
    """Keep the JSON-serialisable scalar/string entries of a mapping (numpy scalars converted)."""
    out: dict[str, Any] = {}
    if not d:
        return out
    for k, v in dict(d).items():
        if hasattr(v, "item") and getattr(v, "ndim", 1) == 0:
            v = v.item()
        if isinstance(v, bool) or v is None or isinstance(v, (int, str)):
            out[str(k)] = v
        elif isinstance(v, float):
            out[str(k)] = v if math.isfinite(v) else None
    return out


def item_rng(seed: int, *keys):
    """A numpy Generator that depends only on ``seed`` and ``keys`` (ints or strings).

    Each generated item gets its own stream, so any item can be regenerated alone (resume,
    sharding) and the result does not depend on what was generated before it.
    """
    import numpy as np

    words = [int(seed) & 0xFFFFFFFFFFFFFFFF]
    for k in keys:
        if isinstance(k, str):
            words.append(zlib.crc32(k.encode("utf-8")))
        else:
            words.append(int(k) & 0xFFFFFFFFFFFFFFFF)
    return np.random.default_rng(words)


class BadRecord:
    """Marker yielded by a reader for a record it could not parse."""

    __slots__ = ("index", "line", "error")

    def __init__(self, index: int, line: int | None, error: BaseException | str):
        self.index, self.line, self.error = index, line, error


class RecordDataset(Dataset):
    """Base of the readers: turns :class:`BadRecord` markers into errors or counted skips.

    Subclasses implement ``_records()`` yielding Structures or BadRecords.
    """

    def __init__(self, path: Path | str, *, skip_bad: bool = False, warn_skips: bool = True):
        self.path = Path(path)
        self.skip_bad = bool(skip_bad)
        self._warn_skips = warn_skips
        self.n_skipped: int = 0

    def _records(self, start: int = 0) -> Iterator[Structure | BadRecord]:  # pragma: no cover
        """Yield Structures or BadRecords from record ``start`` on; subclasses implement it
        (readers that can skip records without parsing them do so)."""
        raise NotImplementedError

    def __iter__(self) -> Iterator[Structure]:
        return self._iterate(0)

    #: True when ``_records(start)`` skips the first records without parsing them.
    _seekable = False

    @property
    def seekable(self) -> bool:
        return self._seekable and not self.skip_bad

    def iter_from(self, start: int) -> Iterator[Structure]:
        """Iterate from the ``start``-th structure (0-based); readers that can skip records
        without parsing them (extxyz, SMILES, ASE db, ASE-LMDB) do so unless ``skip_bad`` is
        set (then skipped bad records shift the count, so the records before are read)."""
        start = int(start)
        if start < 0:
            raise ValueError(f"start must be >= 0, got {start}")
        if start and self.seekable:
            return self._iterate(start)
        return super().iter_from(start)

    def _iterate(self, start: int) -> Iterator[Structure]:
        skipped = 0
        self.n_skipped = 0
        try:
            for rec in (self._records(start) if start else self._records()):
                if isinstance(rec, BadRecord):
                    if not self.skip_bad:
                        where = f"record {rec.index}" + (f" (line {rec.line})" if rec.line else "")
                        raise ValueError(f"{self.path}: cannot read {where}: {rec.error}"
                                         " (pass skip_bad=True to skip unreadable records)")
                    skipped += 1
                    self.n_skipped = skipped
                    continue
                yield rec
        except Exception as exc:
            if is_file_error(exc):
                raise file_error(self.path, exc) from exc
            raise
        self.n_skipped = skipped
        if skipped and self._warn_skips:
            warnings.warn(f"{self.path}: skipped {skipped} unreadable record(s)",
                          SkippedRecordsWarning, stacklevel=2)


def is_file_error(exc: BaseException) -> bool:
    """True for the errors of a file that cannot be decoded (truncated or fake compression,
    a binary file read as text, a file that is not an SQLite database or LMDB environment)."""
    if isinstance(exc, (EOFError, zlib.error, lzma.LZMAError, UnicodeDecodeError)):
        return True
    if isinstance(exc, OSError) and not isinstance(exc, (FileNotFoundError, PermissionError,
                                                         IsADirectoryError)):
        return True
    return (type(exc).__module__ or "").split(".")[0] in ("sqlite3", "lmdb")


def file_error(path: Path, exc: BaseException) -> ValueError:
    """A ValueError naming ``path`` for a file that cannot be decoded at all (truncated or
    fake compression, not a database, ...): no record after it can be read, so it is raised
    even with ``skip_bad=True``."""
    _, comp = strip_compression(Path(path))
    if isinstance(exc, EOFError):
        what = (f"the {comp} stream is truncated" if comp else "the file is truncated")
    elif isinstance(exc, gzip.BadGzipFile) or (comp and isinstance(exc, (OSError, zlib.error,
                                                                         lzma.LZMAError))):
        what = f"not a valid {comp} file"
    elif type(exc).__module__ == "sqlite3":
        what = "not a readable SQLite (ASE) database"
    elif (type(exc).__module__ or "").startswith("lmdb"):
        what = "not a readable LMDB file"
    elif isinstance(exc, UnicodeDecodeError):
        what = "not a text file"
    else:
        what = "cannot read the file"
    return ValueError(f"{path}: {what} ({type(exc).__name__}: {exc})")


def as_dataset(obj, name: str = "base") -> Dataset:
    """Accept a Dataset, a built-in name, or an iterable of Structures / ase.Atoms / strings."""
    if isinstance(obj, Dataset):
        return obj
    if isinstance(obj, str):
        return get(obj)
    if isinstance(obj, Iterable):
        return _ListDataset(list(obj), name)
    raise TypeError(f"{name} must be a Dataset, a built-in dataset name or an iterable of "
                    f"Structures, got {type(obj).__name__}")


class _ListDataset(Dataset):
    """Small in-memory dataset from a list (for seeds given inline)."""

    def __init__(self, items: list, name: str):
        self.name = f"{name}-list"
        self._items = []
        mods = set()
        for i, it in enumerate(items):
            if isinstance(it, Structure):
                s = it
            elif isinstance(it, str):
                # A bare string is a SMILES (mutant_scan wraps its sequence strings itself).
                s = Structure(f"{name}:{i}", smiles=it)
            elif hasattr(it, "get_positions"):
                s = Structure(f"{name}:{i}", atoms=it)
            else:
                raise TypeError(f"{name}[{i}] must be a Structure, ase.Atoms or str, "
                                f"got {type(it).__name__}")
            mods.update(m for m in ("atoms", "smiles", "sequence") if s.has(m))
            self._items.append(s)
        self.modality = tuple(sorted(mods))

    def __iter__(self):
        return iter(self._items)

    def __len__(self):
        return len(self._items)

    @property
    def metadata(self):
        return {"name": self.name, "modality": list(self.modality), "source": "in-memory list",
                "n": len(self._items)}
