"""Crash-safe, resumable embedding store: one directory per (dataset, model, layer, pooling).

Layout
------
A **finished** store is three files, all written atomically (write a temporary file, fsync,
``os.replace``, fsync the directory)::

    DIR/embeddings.npy   (N, D) little-endian float32, one contiguous standard .npy file:
                         np.load(..., mmap_mode="r") gives an out-of-core memmap that the
                         engine reads directly
    DIR/ids.txt          the N structure ids, UTF-8, one per line (row i <-> line i)
    DIR/manifest.json    format version, matalign version, N, D, dtype, chunk and batch size,
                         adapter metadata (model, package version, checkpoint SHA-256, layer,
                         pooling), dataset metadata, SHA-256 of ids.txt, and one entry per
                         chunk: its rows [a, b), its dataset records and the SHA-256 of its
                         row bytes; structures skipped with ``skip_bad`` and why; and
                         ``checksum``, the SHA-256 of all the other fields (so model, dtype,
                         adapter, dataset... cannot change unnoticed)

``manifest.json`` is written last, so its presence means "complete". It holds no timestamps
and is serialised deterministically, so an interrupted-and-resumed run produces a store that
is bitwise identical, file by file, to an uninterrupted one. No file is ever pickled.

While **writing**, ``DIR/pending/`` holds ``header.json`` (the metadata a resumed run must
match, with its own ``checksum``), ``embeddings.npy`` (a fixed 128-byte ``.npy`` header,
then the committed rows, which each chunk writes in place after the previous one and
fsyncs) and ``journal.jsonl``, an
append-only, fsync'd log with one line per committed chunk (its rows, records, ids and the
SHA-256 of its row bytes). A chunk counts as committed once its journal line is on disk,
which happens only after its rows are on disk. A torn last line (no newline: the process died
while appending) is the chunk in flight and is ignored, and so are rows past the last
journalled chunk (a resumed run truncates them away). A kill at any moment therefore loses at
most the chunk in flight. Finishing checks every chunk's hash, writes the final ``.npy``
header in place (same 128 bytes) and renames the file into ``DIR``: the data is never copied,
so a store needs no scratch space beyond its own size. Then ``ids.txt`` and
``manifest.json`` are written and ``pending/`` is deleted.

Verify policy
-------------
``open_store(path)`` always checks, cheaply: the manifest (its checksum, format, chunk rows
contiguous and covering 0..N; JSON nested deeper than 64 levels is rejected before parsing),
the ``.npy`` header of ``embeddings.npy`` (byte for byte the header a store writes) and its
exact size
(a truncated or extended file is an error), and the ids (count and SHA-256: ids are small).
With ``verify=True`` (the default) it also hashes all row data chunk by chunk (one sequential
read, about 1 s/GB, less than any metric spends reading the same data) and names the first
corrupt chunk and its rows. ``verify=False`` skips that read, for quick inspection
(``len``, ``ids``, ``metadata``) of large stores; :meth:`EmbeddingStore.verify` runs it later.

Examples
--------
>>> import tempfile, numpy as np
>>> import matalign as ma
>>> from matalign.structures import Structure
>>> from matalign.adapters import Adapter
>>> class Length(Adapter):             # a toy adapter: length of the SMILES string
...     name, modality, dim = "length", "smiles", 2
...     def _embed_batch(self, batch):
...         return np.array([[len(s.smiles), 1.0] for s in batch], dtype=np.float32)
>>> structures = [Structure(f"m{i}", smiles="C" * (i + 1)) for i in range(5)]
>>> out = tempfile.mkdtemp() + "/store"
>>> store = ma.embed(structures, Length(), out, chunk_size=2)
>>> store
<EmbeddingStore '...store' N=5 D=2 float32 model='length' 3 chunks>
>>> store.ids[:2], store.embeddings[:2, 0].tolist()
(('m0', 'm1'), [1.0, 2.0])
>>> same = ma.open_store(out)        # verifies the checksums on open
>>> np.array_equal(same.embeddings, store.embeddings)
True
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from ._io import atomic_open
from ._json import jsonable as _jsonable
from ._io import fsync_dir as _fsync_dir

__all__ = ["EmbeddingStore", "open_store", "FORMAT", "FORMAT_VERSION"]

FORMAT = "matalign-embedding-store"
#: Version 2 adds ``checksum`` to manifest.json and pending/header.json (version-1 stores,
#: which have none, are still read).
FORMAT_VERSION = 2
_READABLE_VERSIONS = (1, 2)
#: Key of the SHA-256 that covers every other field of manifest.json / header.json.
CHECKSUM = "checksum"
#: Deepest nesting accepted in a store's JSON (metadata of real adapters and datasets stays
#: below 10); deeper files are corrupt and are rejected before Python's parser recurses.
_MAX_JSON_DEPTH = 64

MANIFEST = "manifest.json"
EMBEDDINGS = "embeddings.npy"
IDS = "ids.txt"
PENDING = "pending"
HEADER = "header.json"
JOURNAL = "journal.jsonl"

_DTYPE = np.dtype("<f4")
_BLOCK = 1 << 24  # bytes per read when hashing
#: Header keys a resumed run must reproduce exactly.
_RESUME_KEYS = ("format", "format_version", "matalign_version", "dtype", "dim", "chunk_size",
                "batch_size", "skip_bad", "adapter", "dataset")


# -- small file helpers ---------------------------------------------------------------------------
def _atomic_write(path: Path, write) -> None:
    """Write ``path`` atomically: ``write(f)`` into ``path.tmp``, fsync, replace, fsync dir.

    A write that fails leaves ``path.tmp`` behind; a resumed run deletes it."""
    with atomic_open(path, "wb", fsync=True, cleanup=False) as f:
        write(f)


def _json_bytes(obj: Any) -> bytes:
    """Deterministic JSON (sorted keys, no NaN), newline-terminated."""
    return (json.dumps(obj, sort_keys=True, indent=1, ensure_ascii=False, allow_nan=False)
            + "\n").encode("utf-8")


def _json_depth(raw: str) -> int:
    """Deepest bracket nesting of a JSON text (brackets inside strings ignored)."""
    depth = deepest = 0
    in_str = escaped = False
    for ch in raw:
        if in_str:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_str = False
        elif ch == '"':
            in_str = True
        elif ch in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif ch in "]}":
            depth -= 1
    return deepest


def _load_json(path: Path, fix: str) -> Any:
    """Parse a store JSON file; any damage is a ValueError naming ``path`` and ending with
    ``fix`` (never a RecursionError or UnicodeDecodeError)."""
    try:
        data = path.read_bytes()
        raw = data.decode("utf-8")
        if _json_depth(raw) > _MAX_JSON_DEPTH:
            raise ValueError(f"nested deeper than {_MAX_JSON_DEPTH} levels")
        obj = json.loads(raw)
    except (ValueError, UnicodeDecodeError, RecursionError, MemoryError) as exc:
        raise ValueError(f"{os.fspath(path)!r} is not valid JSON ({type(exc).__name__}: "
                         f"{str(exc)[:200]}); {fix}") from None
    if isinstance(obj, dict) and CHECKSUM in obj:
        # Files with a checksum (format 2) are written in one canonical form: any other
        # bytes (even whitespace) mean the file was edited or damaged.
        try:
            canonical = _json_bytes(obj) == data
        except (ValueError, TypeError):
            canonical = False
        if not canonical:
            raise ValueError(f"{os.fspath(path)!r} is not byte for byte the JSON a store writes: "
                             f"the file is corrupt or was edited; {fix}")
    return obj


def _checksum(obj: Mapping) -> str:
    """SHA-256 of the deterministic JSON of ``obj`` without its own checksum field."""
    body = {k: v for k, v in obj.items() if k != CHECKSUM}
    return "sha256:" + hashlib.sha256(_json_bytes(body)).hexdigest()


def _sealed(obj: Mapping) -> dict:
    """``obj`` with its checksum field set (what manifest.json and header.json hold)."""
    out = {k: v for k, v in obj.items() if k != CHECKSUM}
    out[CHECKSUM] = _checksum(out)
    return out


def _rows_sha256(arr: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(arr, dtype=_DTYPE).data).hexdigest()


def _rows_label(i: int, a: int, b: int) -> str:
    return f"chunk {i} (rows {a}..{b - 1})" if b > a else f"chunk {i} (no rows)"


def _first_difference(stored: Any, now: Any, path: str = "") -> str:
    """Where two JSON values first differ, as 'key: stored X, now Y'."""
    if isinstance(stored, dict) and isinstance(now, dict):
        for key in sorted(set(stored) | set(now)):
            if stored.get(key, "<absent>") != now.get(key, "<absent>"):
                return _first_difference(stored.get(key, "<absent>"), now.get(key, "<absent>"),
                                         f"{path}.{key}" if path else key)
    return f"{path or 'value'}: stored {stored!r}, now {now!r}"


def _read_npy_header(f, what: str) -> tuple[tuple[int, ...], np.dtype, int]:
    """(shape, dtype, data offset) of an open .npy file; ValueError naming ``what``."""
    try:
        version = np.lib.format.read_magic(f)
        if version == (1, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_1_0(f)
        elif version == (2, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_2_0(f)
        else:
            raise ValueError(f"unsupported .npy version {version}")
    except Exception as exc:  # noqa: BLE001 - numpy's header parser raises many kinds
        # (ValueError, SyntaxError, tokenize.TokenError, RecursionError, ...): all mean damage.
        raise ValueError(f"{what} is not a readable .npy file ({type(exc).__name__}: "
                         f"{str(exc)[:200]}); the file is corrupt") from None
    if fortran:
        raise ValueError(f"{what} is Fortran-ordered; a store's arrays are C-ordered: the file "
                         f"is corrupt")
    return tuple(shape), np.dtype(dtype), f.tell()


_HEADER_BYTES = 128  # fixed .npy header size of a store's embeddings.npy (np.save's for 2-D)


def _npy_header(n: int, dim: int) -> bytes:
    """The .npy v1.0 header of an (n, dim) C-ordered '<f4' array, padded to 128 bytes exactly
    as ``np.save`` pads it (so a store's file is byte-identical to ``np.save``'s)."""
    text = "{'descr': '<f4', 'fortran_order': False, 'shape': (%d, %d), }" % (n, dim)
    pad = _HEADER_BYTES - 10 - len(text) - 1
    if pad < 0:  # pragma: no cover - needs N or D beyond 10**30
        raise ValueError(f"shape ({n}, {dim}) does not fit a {_HEADER_BYTES}-byte .npy header")
    return (b"\x93NUMPY\x01\x00" + (len(text) + pad + 1).to_bytes(2, "little")
            + (text + " " * pad + "\n").encode("latin1"))


def _verify_rows(path: Path, offset: int, dim: int, chunks, *, fix: str) -> None:
    """Hash the row bytes of each (a, b, sha256) chunk in one sequential read; ValueError
    naming the first bad chunk, its rows and the file, ending with ``fix``."""
    row_bytes = dim * _DTYPE.itemsize
    with open(path, "rb") as f:
        f.seek(offset)
        for i, (a, b, digest) in enumerate(chunks):
            h = hashlib.sha256()
            remaining = (b - a) * row_bytes
            while remaining:
                block = f.read(min(remaining, _BLOCK))
                if not block:
                    raise ValueError(f"{os.fspath(path)!r} ends inside "
                                     f"{_rows_label(i, a, b)}: the file is truncated; {fix}")
                h.update(block)
                remaining -= len(block)
            if h.hexdigest() != digest:
                raise ValueError(
                    f"{_rows_label(i, a, b)} of {os.fspath(path)!r} fails its SHA-256 check "
                    f"(recorded {digest[:12]}..., file {h.hexdigest()[:12]}...): the data is "
                    f"corrupt; {fix}")


# -- the read side --------------------------------------------------------------------------------
class EmbeddingStore:
    """A handle on an embedding store directory (use :func:`open_store` or :func:`matalign.embed`).

    Attributes
    ----------
    path : pathlib.Path
        The store directory.
    complete : bool
        False while an embed run has not finished (then :attr:`embeddings` raises).
    ids : tuple of str
        Structure ids; ``ids[i]`` is the structure of row ``i``.
    metadata : dict
        Adapter and dataset metadata, dtype, dim, chunk size, matalign version (the manifest
        without the per-chunk list).
    skipped : list of dict
        Structures left out by ``skip_bad=True``: their id, dataset record and error.
    shape : tuple of int
        ``(N, D)``; while incomplete, N counts the committed rows.
    dtype : numpy.dtype
        float32.

    Examples
    --------
    >>> import tempfile, numpy as np
    >>> import matalign as ma
    >>> from matalign.structures import Structure
    >>> from matalign.adapters import Adapter
    >>> class Ones(Adapter):
    ...     name, modality, dim = "ones", "smiles", 3
    ...     def _embed_batch(self, batch):
    ...         return np.ones((len(batch), 3), dtype=np.float32)
    >>> out = tempfile.mkdtemp()
    >>> store = ma.embed([Structure("a", smiles="C"), Structure("b", smiles="N")], Ones(), out)
    >>> len(store), store.shape, store.dtype, store.metadata["adapter"]["adapter"]
    (2, (2, 3), dtype('float32'), 'ones')
    """

    def __init__(self, path: str | os.PathLike, *, _verify: bool = True) -> None:
        self.path = Path(path)
        self._memmap = None
        manifest_path = self.path / MANIFEST
        if manifest_path.is_file():
            self.complete = True
            self._load_manifest(manifest_path)
            self._check_files()
            if _verify:
                self.verify()
        elif (self.path / PENDING / HEADER).is_file():
            self.complete = False
            self._load_pending()
        elif not self.path.exists():
            raise FileNotFoundError(f"no embedding store at {os.fspath(self.path)!r}: the "
                                    f"directory does not exist")
        else:
            raise FileNotFoundError(f"{os.fspath(self.path)!r} is not a matalign embedding "
                                    f"store: it has no {MANIFEST} (finished store) and no "
                                    f"{PENDING}/{HEADER} (store being written)")

    # -- loading ----------------------------------------------------------------------------------
    def _load_manifest(self, manifest_path: Path) -> None:
        manifest = _load_json(manifest_path, "the store's manifest is corrupt")
        _check_header(manifest, manifest_path)
        try:
            n = manifest["n"]
            chunks = manifest["chunks"]
            for key in ("ids_sha256", "skipped"):
                manifest[key]
            expected = 0
            for i, chunk in enumerate(chunks):
                a, b = chunk["rows"]
                if a != expected or b < a or not isinstance(chunk["sha256"], str):
                    raise ValueError(f"chunk {i} has rows {a}..{b} after row {expected}")
                expected = b
            if expected != n:
                raise ValueError(f"chunks cover {expected} rows, not n={n}")
            int(manifest["dim"])
            if not isinstance(manifest["skipped"], list):
                raise ValueError("skipped is not a list")
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"{os.fspath(manifest_path)!r} is malformed ({exc!r}); the store's "
                             f"manifest is corrupt") from None
        self._manifest = manifest
        self._chunks = [(int(c["rows"][0]), int(c["rows"][1]), c["sha256"]) for c in chunks]
        self._n = int(n)
        self._dim = int(manifest["dim"])
        self.skipped = list(manifest["skipped"])
        self.metadata = {k: v for k, v in manifest.items()
                         if k not in ("chunks", "skipped", CHECKSUM)}
        self.metadata["n_skipped"] = len(self.skipped)

    def _check_files(self) -> None:
        """Cheap checks on every open: ids (count and hash), .npy header and exact size."""
        ids_path = self.path / IDS
        if not ids_path.is_file():
            raise ValueError(f"store {os.fspath(self.path)!r} is missing {IDS} (listed in its "
                             f"manifest); the store is damaged: re-embed into a new directory")
        raw = ids_path.read_bytes()
        if hashlib.sha256(raw).hexdigest() != self._manifest["ids_sha256"]:
            raise ValueError(f"{os.fspath(ids_path)!r} fails its SHA-256 check against "
                             f"{MANIFEST}: the ids file is corrupt or was edited")
        ids = raw.decode("utf-8").split("\n")
        if ids[-1] != "" or len(ids) - 1 != self._n:
            raise ValueError(f"{os.fspath(ids_path)!r} holds {len(ids) - 1} ids but the manifest "
                             f"says N={self._n}: the ids file is corrupt")
        self._ids = tuple(ids[:-1])
        emb_path = self.path / EMBEDDINGS
        if not emb_path.is_file():
            raise ValueError(f"store {os.fspath(self.path)!r} is missing {EMBEDDINGS} (listed in "
                             f"its manifest); the store is damaged: re-embed into a new "
                             f"directory")
        with open(emb_path, "rb") as f:
            shape, dtype, offset = _read_npy_header(f, repr(os.fspath(emb_path)))
        if dtype != _DTYPE or shape != (self._n, self._dim):
            raise ValueError(f"{os.fspath(emb_path)!r} holds a {dtype} array of shape {shape}, "
                             f"but the manifest says float32 {(self._n, self._dim)}: the file "
                             f"is corrupt or was replaced")
        expected = offset + self._n * self._dim * _DTYPE.itemsize
        size = emb_path.stat().st_size
        if size != expected:
            word = "truncated" if size < expected else "longer than expected"
            raise ValueError(f"{os.fspath(emb_path)!r} is {word}: {size} bytes, expected "
                             f"{expected} ({self._n} x {self._dim} float32 after a {offset}-byte "
                             f"header); the store is damaged: re-embed into a new directory")
        if offset == _HEADER_BYTES:
            with open(emb_path, "rb") as f:
                head = f.read(_HEADER_BYTES)
            if head != _npy_header(self._n, self._dim):
                raise ValueError(f"{os.fspath(emb_path)!r} has a damaged .npy header (it differs "
                                 f"from the one a store writes for {(self._n, self._dim)}): "
                                 f"the file is corrupt; re-embed into a new directory")
        self._offset = offset

    def _load_pending(self) -> None:
        header_path = self.path / PENDING / HEADER
        header = _load_json(header_path, "the unfinished store is corrupt: delete the "
                                         "directory and start again")
        _check_header(header, header_path)
        entries, _ = _read_journal(self.path / PENDING / JOURNAL, header)
        self._manifest = header
        self._entries = entries
        self._chunks = [(e["rows"][0], e["rows"][1], e["sha256"]) for e in entries]
        self._n = entries[-1]["rows"][1] if entries else 0
        self._dim = int(header["dim"])
        self._ids = tuple(i for e in entries for i in e["ids"])
        self.skipped = [s for e in entries for s in e["skipped"]]
        self.metadata = {k: v for k, v in header.items() if k != CHECKSUM}
        self.metadata["n_skipped"] = len(self.skipped)

    # -- public API -------------------------------------------------------------------------------
    @property
    def ids(self) -> tuple[str, ...]:
        """Structure ids, row order."""
        return self._ids

    @property
    def shape(self) -> tuple[int, int]:
        """``(N, D)``."""
        return (self._n, self._dim)

    @property
    def dtype(self) -> np.dtype:
        """float32."""
        return np.dtype(np.float32)

    @property
    def n_chunks(self) -> int:
        """Number of committed chunks."""
        return len(self._chunks)

    def __len__(self) -> int:
        return self._n

    @property
    def embeddings(self) -> np.memmap:
        """The (N, D) float32 embeddings as a read-only memmap (nothing is loaded up front).

        Raises
        ------
        ValueError
            If the store is incomplete (an embed run was interrupted).
        """
        if not self.complete:
            total = self._manifest.get("n_records_hint")
            of = ""
            if total:
                of = f" of about {math.ceil(total / self._manifest['chunk_size'])}"
            raise ValueError(
                f"store {os.fspath(self.path)!r} is incomplete: {self.n_chunks} chunk(s){of} "
                f"({self._n} structures) are committed; finish it by running the same "
                f"command with --resume (matalign embed ... --resume, or "
                f"ma.embed(..., resume=True))")
        if self._memmap is None:
            self._memmap = np.load(self.path / EMBEDDINGS, mmap_mode="r", allow_pickle=False)
        return self._memmap

    def __array__(self, dtype=None, copy=None):
        arr = self.embeddings
        if copy:
            arr = np.array(arr)
        return arr if dtype is None else arr.astype(dtype, copy=bool(copy))

    def verify(self) -> None:
        """Hash every chunk's rows and compare with the manifest (about 1 s/GB).

        Raises
        ------
        ValueError
            Naming the first corrupt chunk, its rows and the file.
        """
        if not self.complete:
            _check_pending_data(self.path / PENDING, self._dim, self._entries)
            _verify_rows(self.path / PENDING / EMBEDDINGS, _HEADER_BYTES, self._dim,
                         self._chunks, fix=_FIX_PENDING)
            return
        _verify_rows(self.path / EMBEDDINGS, self._offset, self._dim, self._chunks,
                     fix="re-embed into a new directory")

    def __repr__(self) -> str:
        model = self._manifest.get("adapter", {}).get("adapter")
        state = "" if self.complete else " incomplete:"
        return (f"<EmbeddingStore {os.fspath(self.path)!r}{state} N={self._n} D={self._dim} "
                f"float32 model={model!r} {self.n_chunks} chunks>")


def open_store(path: str | os.PathLike, *, verify: bool = True) -> EmbeddingStore:
    """Open an embedding store written by :func:`matalign.embed` or ``matalign embed``.

    Parameters
    ----------
    path : str or path-like
        The store directory.
    verify : bool, default True
        Hash all embedding data against the per-chunk SHA-256 in the manifest (one
        sequential read, about 1 s/GB). With False only the cheap checks run (manifest,
        ids, ``.npy`` header and exact file size); call ``store.verify()`` later.

    Returns
    -------
    EmbeddingStore
        Also for an unfinished store (``store.complete`` is False; its ``embeddings`` raise
        and say how to resume).

    Raises
    ------
    FileNotFoundError
        If ``path`` is not a store.
    ValueError
        If a file is missing, truncated or corrupt; the message names the file (and for data,
        the chunk and its rows).

    Examples
    --------
    >>> import tempfile, numpy as np
    >>> import matalign as ma
    >>> from matalign.structures import Structure
    >>> from matalign.adapters import Adapter
    >>> class Twos(Adapter):
    ...     name, modality, dim = "twos", "smiles", 2
    ...     def _embed_batch(self, batch):
    ...         return np.full((len(batch), 2), 2.0, dtype=np.float32)
    >>> out = tempfile.mkdtemp()
    >>> _ = ma.embed([Structure("x", smiles="O"), Structure("y", smiles="S")], Twos(), out)
    >>> store = ma.open_store(out)
    >>> store.ids, float(store.embeddings.sum())
    (('x', 'y'), 8.0)
    """
    if not isinstance(verify, (bool, np.bool_)):
        raise TypeError(f"verify must be True or False; got {type(verify).__name__} {verify!r}")
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"path must be a str or path-like naming a store directory; got "
                        f"{type(path).__name__}")
    return EmbeddingStore(path, _verify=bool(verify))


def _check_header(header: Any, where: Path) -> None:
    if not isinstance(header, dict) or header.get("format") != FORMAT:
        raise ValueError(f"{os.fspath(where)!r} is not a matalign embedding store file "
                         f"(format is not {FORMAT!r})")
    version = header.get("format_version")
    if isinstance(version, bool) or version not in _READABLE_VERSIONS:
        raise ValueError(f"{os.fspath(where)!r} has store format version {version!r}; this "
                         f"matalign reads versions {list(_READABLE_VERSIONS)}")
    if version >= 2:
        stored = header.get(CHECKSUM)
        if stored != _checksum(header):
            what = "has no checksum" if stored is None else "fails its checksum"
            raise ValueError(f"{os.fspath(where)!r} {what} (a SHA-256 over all its fields): the "
                             f"file is corrupt or was edited")
    for key in ("dim", "chunk_size", "adapter", "dataset"):
        if key not in header:
            raise ValueError(f"{os.fspath(where)!r} lacks {key!r}; the file is corrupt")
    for key in ("dim", "chunk_size"):
        value = header[key]
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{os.fspath(where)!r} has {key}={value!r}, not a positive "
                             f"integer; the file is corrupt")


# -- the journal ----------------------------------------------------------------------------------
def _read_journal(path: Path, header: dict) -> tuple[list[dict], int]:
    """Committed journal entries and the byte length of the valid prefix.

    A last line without its newline is a torn append (the chunk in flight) and is ignored;
    anything else malformed is corruption.
    """
    if not path.is_file():
        raise ValueError(f"{os.fspath(path)!r} is missing: the unfinished store is damaged; "
                         f"delete its directory and start again")
    raw = path.read_bytes()
    entries: list[dict] = []
    good = 0
    row = 0
    record = 0
    chunk_size = header["chunk_size"]
    lines = raw.split(b"\n")
    for lineno, line in enumerate(lines[:-1], start=1):  # lines[-1]: '' or the torn tail
        try:
            entry = json.loads(line.decode("utf-8"))
            i, (a, b), (r0, r1) = entry["chunk"], entry["rows"], entry["records"]
            ok = (i == len(entries) and a == row and b - a == len(entry["ids"])
                  and r0 == record and r0 == i * chunk_size and 0 < r1 - r0 <= chunk_size
                  and (r1 - r0) - (b - a) == len(entry["skipped"])
                  and isinstance(entry["sha256"], str))
            if entries and entries[-1]["records"][1] - entries[-1]["records"][0] < chunk_size:
                ok = False  # a short chunk can only be the last one
        except (ValueError, KeyError, TypeError, UnicodeDecodeError):
            ok = False
        if not ok:
            raise ValueError(f"{os.fspath(path)!r} line {lineno} is not a valid journal entry "
                             f"for chunk {len(entries)}: the unfinished store is corrupt; delete "
                             f"its directory and start again")
        entries.append(entry)
        row, record = b, r1
        good += len(line) + 1
    return entries, good


_FIX_PENDING = "delete the store's directory and start again"


def _check_pending_data(pending: Path, dim: int, entries: list[dict]) -> int:
    """Check the header and size of an unfinished store's data file; return its size.

    Rows past the last journalled chunk (the chunk in flight) are allowed; fewer bytes than
    the journal needs mean damage, and the message names the first chunk affected.
    """
    path = pending / EMBEDDINGS
    if not path.is_file():
        raise ValueError(f"{os.fspath(path)!r} is missing: the unfinished store is damaged; "
                         f"{_FIX_PENDING}")
    with open(path, "rb") as f:
        shape, dtype, offset = _read_npy_header(f, repr(os.fspath(path)))
        f.seek(0)
        head = f.read(_HEADER_BYTES)
    if dtype != _DTYPE or len(shape) != 2 or shape[1] != dim or offset != _HEADER_BYTES:
        raise ValueError(f"{os.fspath(path)!r} has a header for {dtype} {shape}, expected "
                         f"float32 (n, {dim}): the unfinished store is corrupt; {_FIX_PENDING}")
    n_rows = entries[-1]["rows"][1] if entries else 0
    # While embedding the header is the (0, dim) one; finishing writes the (n, dim) one in
    # place before moving the file, so an interrupted finish leaves that one.
    if head not in (_npy_header(0, dim), _npy_header(n_rows, dim)):
        raise ValueError(f"{os.fspath(path)!r} has a damaged .npy header (it differs from the "
                         f"ones a store writes): the unfinished store is corrupt; "
                         f"{_FIX_PENDING}")
    size = path.stat().st_size
    n = entries[-1]["rows"][1] if entries else 0
    expected = _HEADER_BYTES + n * dim * _DTYPE.itemsize
    if size < expected:
        row = (size - _HEADER_BYTES) // (dim * _DTYPE.itemsize)
        i = next(j for j, e in enumerate(entries) if e["rows"][1] > row)
        a, b = entries[i]["rows"]
        raise ValueError(f"{os.fspath(path)!r} is truncated: {size} bytes, the journal needs "
                         f"{expected}; {_rows_label(i, a, b)} and later are lost: "
                         f"{_FIX_PENDING}")
    return size


# -- the write side (used by matalign.embed) -----------------------------------------------------
def _check_out(path: Path, resume: bool) -> str:
    """State of an output directory: 'new', 'pending' or 'complete'; refuse to overwrite."""
    if path.exists() and not path.is_dir():
        raise FileExistsError(f"out {os.fspath(path)!r} exists and is not a directory")
    if (path / MANIFEST).is_file():
        if not resume:
            raise FileExistsError(
                f"{os.fspath(path)!r} already holds a finished embedding store; it is never "
                f"overwritten: pass --resume (resume=True) to reuse it, or choose a new "
                f"directory")
        return "complete"
    if (path / PENDING / HEADER).is_file():
        if not resume:
            raise FileExistsError(
                f"{os.fspath(path)!r} holds an unfinished embedding store; continue it with "
                f"--resume (resume=True), or choose a new directory")
        return "pending"
    if (path / PENDING).is_dir() and {p.name for p in path.iterdir()} == {PENDING} and \
            {p.name for p in (path / PENDING).iterdir()} <= {EMBEDDINGS, JOURNAL,
                                                             EMBEDDINGS + ".tmp",
                                                             JOURNAL + ".tmp", HEADER + ".tmp"}:
        # A store killed while it was being created, before its header: the header is
        # written before any chunk, so nothing was committed; start it afresh.
        shutil.rmtree(path / PENDING)
        _fsync_dir(path)
        return "new"
    if path.is_dir() and any(path.iterdir()):
        raise FileExistsError(f"out {os.fspath(path)!r} is a non-empty directory that is not "
                              f"an embedding store; choose a new or empty directory")
    return "new"


def _compare_headers(stored: Mapping, now: Mapping, path: Path) -> None:
    for key in _RESUME_KEYS:
        if stored.get(key) != now.get(key):
            what = _first_difference(stored.get(key), now.get(key), key)
            raise ValueError(
                f"cannot resume {os.fspath(path)!r}: it was written with different settings "
                f"({what}); a store holds one (dataset, model, layer, pooling, chunk size): "
                f"use the original settings or a new directory")


class _StoreWriter:
    """Creates or resumes a store directory, commits chunks, seals the store at the end."""

    def __init__(self, path: str | os.PathLike, header: dict, *, resume: bool) -> None:
        self.path = Path(path)
        self.pending = self.path / PENDING
        self.header = _jsonable(dict(header), "metadata")
        self.header.update(format=FORMAT, format_version=FORMAT_VERSION)
        state = _check_out(self.path, resume)
        self.entries: list[dict] = []
        self.complete = state == "complete"
        if state == "complete":
            manifest = EmbeddingStore(self.path, _verify=False)._manifest
            _compare_headers(manifest, self.header, self.path)
            if self.pending.exists():  # finishing was interrupted after the manifest
                shutil.rmtree(self.pending)
                _fsync_dir(self.path)
        elif state == "pending":
            stored = _load_json(self.pending / HEADER, "the unfinished store is corrupt: "
                                                       "delete the directory and start again")
            _check_header(stored, self.pending / HEADER)
            _compare_headers(stored, self.header, self.path)
            self.header = stored  # n_records_hint and all: keep what the first run wrote
            journal = self.pending / JOURNAL
            self.entries, good = _read_journal(journal, stored)
            if good != journal.stat().st_size:  # drop the torn tail before appending
                with open(journal, "r+b") as f:
                    f.truncate(good)
                    os.fsync(f.fileno())
            for leftover in self.pending.iterdir():
                if leftover.name.endswith(".tmp"):
                    leftover.unlink()
            data = self.pending / EMBEDDINGS
            if not data.exists() and (self.path / EMBEDDINGS).is_file():
                # finishing was interrupted between moving the data and the manifest
                os.replace(self.path / EMBEDDINGS, data)
                _fsync_dir(self.pending)
                _fsync_dir(self.path)
            dim = int(stored["dim"])
            size = _check_pending_data(self.pending, dim, self.entries)
            self._truncate_data(size)
            # One read of what is committed (about 1 s/GB): damage is reported before any
            # new work, naming the chunk.
            _verify_rows(data, _HEADER_BYTES, dim,
                         [(e["rows"][0], e["rows"][1], e["sha256"]) for e in self.entries],
                         fix=_FIX_PENDING)
        else:
            self.pending.mkdir(parents=True, exist_ok=True)
            _fsync_dir(self.path)
            _fsync_dir(self.path.parent)
            dim = int(self.header["dim"])
            _atomic_write(self.pending / EMBEDDINGS, lambda f: f.write(_npy_header(0, dim)))
            _atomic_write(self.pending / JOURNAL, lambda f: None)
            _atomic_write(self.pending / HEADER,
                          lambda f: f.write(_json_bytes(_sealed(self.header))))
        self.dim = int(self.header["dim"])
        self.chunk_size = int(self.header["chunk_size"])

    @property
    def n_rows(self) -> int:
        return self.entries[-1]["rows"][1] if self.entries else 0

    def _truncate_data(self, size: int) -> None:
        """Drop rows past the last committed chunk (the chunk in flight of a killed run)."""
        keep = _HEADER_BYTES + self.n_rows * int(self.header["dim"]) * _DTYPE.itemsize
        if size > keep:
            with open(self.pending / EMBEDDINGS, "r+b") as f:
                f.truncate(keep)
                os.fsync(f.fileno())

    @property
    def n_records(self) -> int:
        return self.entries[-1]["records"][1] if self.entries else 0

    @property
    def reached_end(self) -> bool:
        """True when the last committed chunk was short (the dataset ended there)."""
        if not self.entries:
            return False
        r0, r1 = self.entries[-1]["records"]
        return r1 - r0 < self.chunk_size

    def commit(self, rows: np.ndarray, ids: list[str], skipped: list[dict],
               n_records: int) -> None:
        """Commit one chunk: its rows in place (fsync'd), then its journal line (fsync'd)."""
        i = len(self.entries)
        rows = np.ascontiguousarray(rows, dtype=_DTYPE)
        if rows.shape != (len(ids), self.dim):
            raise RuntimeError(f"internal error: chunk {i} has shape {rows.shape} for "
                               f"{len(ids)} ids and D={self.dim}")
        a = self.n_rows
        fd = os.open(self.pending / EMBEDDINGS, os.O_WRONLY)
        try:
            view = memoryview(rows).cast("B")
            offset = _HEADER_BYTES + a * self.dim * _DTYPE.itemsize
            while view:
                written = os.pwrite(fd, view, offset)
                view, offset = view[written:], offset + written
            os.fsync(fd)
        finally:
            os.close(fd)
        r0 = self.n_records
        entry = {"chunk": i, "rows": [a, a + len(ids)], "records": [r0, r0 + n_records],
                 "sha256": _rows_sha256(rows), "ids": list(ids), "skipped": skipped}
        line = json.dumps(entry, sort_keys=True, ensure_ascii=False,
                          separators=(",", ":")).encode("utf-8") + b"\n"
        fd = os.open(self.pending / JOURNAL, os.O_WRONLY | os.O_APPEND)
        try:
            view = memoryview(line)
            while view:
                view = view[os.write(fd, view):]
            os.fsync(fd)
        finally:
            os.close(fd)
        self.entries.append(entry)

    def check_ids(self) -> None:
        """Ids must be unique within a store (row i of two stores is matched by id)."""
        ids = [i for e in self.entries for i in e["ids"]]
        seen: dict[str, int] = {}
        for row, sid in enumerate(ids):
            first = seen.setdefault(sid, row)
            if first != row:
                raise ValueError(f"structure id {sid!r} occurs twice (rows {first} and {row}); "
                                 f"a store needs unique ids: fix the dataset's ids")

    def finalize(self) -> EmbeddingStore:
        """Verify all chunks, write the final header, move the data into place, write ids.txt
        and manifest.json, drop pending/."""
        if not self.entries or self.n_rows == 0:
            raise ValueError("nothing to store: the dataset yielded no structures that could "
                             "be embedded")
        self.check_ids()
        n = self.n_rows

        data = self.pending / EMBEDDINGS
        size = _check_pending_data(self.pending, self.dim, self.entries)
        self._truncate_data(size)
        _verify_rows(data, _HEADER_BYTES, self.dim,
                     [(e["rows"][0], e["rows"][1], e["sha256"]) for e in self.entries],
                     fix=_FIX_PENDING)
        with open(data, "r+b") as f:  # the final header, in place: same 128 bytes
            f.write(_npy_header(n, self.dim))
            f.flush()
            os.fsync(f.fileno())
        os.replace(data, self.path / EMBEDDINGS)
        _fsync_dir(self.pending)
        _fsync_dir(self.path)
        ids_bytes = "".join(sid + "\n" for e in self.entries for sid in e["ids"]).encode("utf-8")
        _atomic_write(self.path / IDS, lambda f: f.write(ids_bytes))
        manifest = {k: v for k, v in self.header.items() if k != CHECKSUM}
        manifest.update(
            n=n, ids_sha256=hashlib.sha256(ids_bytes).hexdigest(),
            files={"embeddings": EMBEDDINGS, "ids": IDS},
            chunks=[{"rows": e["rows"], "records": e["records"], "sha256": e["sha256"]}
                    for e in self.entries],
            skipped=[s for e in self.entries for s in e["skipped"]])
        manifest["format_version"] = FORMAT_VERSION
        _atomic_write(self.path / MANIFEST, lambda f: f.write(_json_bytes(_sealed(manifest))))
        shutil.rmtree(self.pending)
        _fsync_dir(self.path)
        self.complete = True
        return EmbeddingStore(self.path, _verify=False)
