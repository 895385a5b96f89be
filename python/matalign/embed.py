"""The embed pipeline: a dataset through an adapter into a crash-safe, resumable store.

The dataset is read in chunks of ``chunk_size`` records; each chunk is embedded in batches of
``batch_size`` (a batch never straddles two chunks, so a resumed run forms exactly the same
batches as an uninterrupted one) and committed to the store atomically before the next chunk
starts. A run killed at any moment loses at most the chunk in flight; ``resume=True``
(``matalign embed --resume``) re-reads the dataset, checks the ids of the finished chunks
against the store's journal, skips them without embedding, and continues. The finished store
is bitwise identical to the one an uninterrupted run writes. See :mod:`matalign.store` for the
layout and the verify policy.

Examples
--------
>>> import tempfile, numpy as np
>>> import matalign as ma
>>> from matalign.structures import Structure
>>> from matalign.adapters import Adapter
>>> class Atoms(Adapter):              # a toy adapter: heavy-atom count of a SMILES string
...     name, modality, dim = "count", "smiles", 1
...     def _embed_batch(self, batch):
...         return np.array([[sum(c.isupper() for c in s.smiles)] for s in batch],
...                         dtype=np.float32)
>>> out = tempfile.mkdtemp()
>>> store = ma.embed([Structure("ethanol", smiles="CCO"), Structure("water", smiles="O")],
...                  Atoms(), out)
>>> store.embeddings[:, 0].tolist()
[3.0, 1.0]
"""

from __future__ import annotations

import os
import sys
from itertools import chain, islice
from pathlib import Path
from typing import Any

import numpy as np

from . import _engine
from . import executor as _executor
from ._progress import progress_bar
from ._validate import check_bool, check_int, check_progress, describe
from .adapters import Adapter
from .store import EmbeddingStore, _check_out, _rows_sha256, _StoreWriter, open_store
from .datasets import Dataset
from .structures import Structure, as_structures, is_structure_like, iter_structures

__all__ = ["embed", "run_embed", "resolve_model_name", "DEFAULT_CHUNK_SIZE",
           "DEFAULT_BATCH_SIZE", "DEFAULT_CHECKPOINTS"]

#: Records per chunk when ``chunk_size`` is not given (rounded up to a multiple of the batch).
DEFAULT_CHUNK_SIZE = 1024
#: Structures per forward pass when ``batch_size`` is not given.
DEFAULT_BATCH_SIZE = 32


def _check_out_path(out, name: str = "out") -> Path:
    if not isinstance(out, (str, os.PathLike)):
        raise TypeError(f"{name} must be a str or path-like naming the store directory; got "
                        f"{describe(out)}")
    return Path(out)


#: Short family names and the checkpoint they stand for (``matalign embed --model chgnet``).
DEFAULT_CHECKPOINTS = {"chgnet": "chgnet-0.3.0", "sevennet": "sevennet-0",
                       "7net": "sevennet-0"}


def resolve_model_name(name: str) -> tuple[str, str | None]:
    """``(registered name, note)``: a short family name (``chgnet``) becomes its default
    checkpoint (``chgnet-0.3.0``) with a one-line note saying so; other names pass unchanged
    with note None.

    Examples
    --------
    >>> from matalign.embed import resolve_model_name
    >>> resolve_model_name("chgnet")
    ('chgnet-0.3.0', "model 'chgnet' is the default checkpoint chgnet-0.3.0 (name it exactly to choose another)")
    >>> resolve_model_name("sevennet-0")
    ('sevennet-0', None)
    """
    from . import adapters

    known = {a.name for a in adapters.list()}
    if name in known or name not in DEFAULT_CHECKPOINTS:
        return name, None
    full = DEFAULT_CHECKPOINTS[name]
    return full, (f"model {name!r} is the default checkpoint {full} (name it exactly to "
                  f"choose another)")


def _resolve_adapter(adapter, options: dict | None = None) -> Adapter:
    if isinstance(adapter, Adapter):
        if options:
            raise ValueError("adapter options (checkpoint, adapter_options) apply to an adapter "
                             "given by name; this one is already built")
        a = adapter
    elif isinstance(adapter, str):
        from . import adapters
        a = adapters.get(resolve_model_name(adapter)[0], **(options or {}))
    else:
        raise TypeError(f"adapter must be a matalign Adapter or a registered adapter name "
                        f"(see matalign.adapters.list()); got {describe(adapter)}")
    dim = getattr(a, "dim", None)
    if isinstance(dim, bool) or not isinstance(dim, (int, np.integer)) or dim < 1:
        raise ValueError(f"adapter {a.name!r} has dim={dim!r}; an adapter must declare its "
                         f"embedding dimension (a positive int) before embedding")
    return a


def _names_a_file(text: str) -> bool:
    """True when a string is a path rather than a SMILES/sequence: it exists, or it ends in a
    structure-file extension (``.xyz``, ``.cif``, ``.smi``, ``.db``..., compressed or not)."""
    from .datasets._readers import FORMATS, format_for

    if os.path.exists(text):
        return True
    p = Path(text)
    name = p.name.lower()
    for comp in (".gz", ".bz2", ".xz"):
        if name.endswith(comp):
            return True
    return p.suffix.lower().lstrip(".") in FORMATS or (format_for(p) != "ase")


def _as_source(source, adapter: Adapter):
    """Structures as users hold them -> a Dataset or an iterable of Structure.

    One object or a list/iterable of ASE Atoms, pymatgen Structure/Molecule, RDKit Mol,
    SMILES strings or (for a sequence adapter) protein sequences goes through
    :func:`matalign.structures.iter_structures`; Datasets and Structures pass unchanged.
    """
    if isinstance(source, (bytes, os.PathLike)) or (isinstance(source, str)
                                                    and _names_a_file(source)):
        raise TypeError(f"structures must be a Dataset, structures or an iterable of them; got "
                        f"the {describe(source)} {source!r}, which names a file (use run_embed "
                        f"or matalign.datasets.open to read a file, or a built-in set by name)")
    if isinstance(source, Structure):
        raise TypeError("structures must be a Dataset or an iterable of Structure; got a "
                        "single Structure: pass [structure]")
    if isinstance(source, Dataset):
        return source
    kind = "sequence" if adapter.modality == "sequence" else None
    if is_structure_like(source):
        return as_structures(source, kind=kind)
    if isinstance(source, (list, tuple)):
        if all(isinstance(s, Structure) for s in source):
            return source
        return as_structures(source, kind=kind)
    if hasattr(source, "__iter__"):
        return iter_structures(source, kind=kind)
    return source


def _source_info(source) -> tuple[dict[str, Any], int | None]:
    """(dataset metadata, length hint) of a Dataset or a plain iterable of Structures."""
    if isinstance(source, Dataset):
        return dict(source.metadata), source.length_hint()
    if not hasattr(source, "__iter__"):
        raise TypeError(f"structures must be a Dataset or an iterable of Structure; got "
                        f"{describe(source)}")
    try:
        hint = len(source)
    except TypeError:
        hint = None
    return {"name": None, "source": f"python {describe(source)}"}, hint


def _check_record(rec, index: int) -> Structure:
    if not isinstance(rec, Structure):
        raise TypeError(f"structures[{index}] is a {describe(rec)}; expected a "
                        f"matalign.structures.Structure")
    if "\n" in rec.id or "\r" in rec.id:
        raise ValueError(f"structure id {rec.id!r} (record {index}) contains a line break; "
                         f"store ids must be single-line strings")
    return rec


def _record_ids(entry: dict) -> list[str]:
    """All record ids of a journal entry in dataset order (skipped ones included)."""
    r0, r1 = entry["records"]
    out: list[str | None] = [None] * (r1 - r0)
    for s in entry["skipped"]:
        out[s["record"] - r0] = s["id"]
    kept = iter(entry["ids"])
    return [sid if sid is not None else next(kept) for sid in out]


def _changed(out: Path, detail: str) -> ValueError:
    return ValueError(f"the dataset changed since {os.fspath(out)!r} was written: {detail}; "
                      f"resume needs the same structures in the same order: use a new "
                      f"directory")


def _skip_finished(it, entries: list[dict], out: Path) -> None:
    """Consume the records of finished chunks, checking their ids against the journal."""
    for i, entry in enumerate(entries):
        r0, r1 = entry["records"]
        expected = _record_ids(entry)
        got = list(islice(it, r1 - r0))
        for j, rec in enumerate(got):
            rec = _check_record(rec, r0 + j)
            if rec.id != expected[j]:
                raise _changed(out, f"record {r0 + j} (chunk {i}) has id {rec.id!r} but the "
                                    f"store recorded {expected[j]!r}")
        if len(got) < r1 - r0:
            raise _changed(out, f"it now ends after {r0 + len(got)} structures, but the store "
                                f"has {entries[-1]['records'][1]} committed")


def _seek_finished(dataset, entries: list[dict], out: Path):
    """Iterator over ``dataset`` from the first record after the finished chunks.

    The finished records are not read: the dataset starts at the last finished record
    (``Dataset.iter_from``: a seek or line skip for files, an offset for generators), whose id
    is checked against the journal, so a changed dataset is still caught at the seam.
    """
    if not entries:
        it = iter(dataset)
        if (first := next(it, None)) is None:
            raise ValueError("structures is empty: nothing to embed")
        return chain([first], it)
    n_done = entries[-1]["records"][1]
    it = dataset.iter_from(n_done - 1)
    last = next(it, None)
    if last is None:
        raise _changed(out, f"it now ends before structure {n_done - 1}, but the store has "
                            f"{n_done} committed")
    last = _check_record(last, n_done - 1)
    expected = _record_ids(entries[-1])[-1]
    if last.id != expected:
        raise _changed(out, f"record {n_done - 1} (chunk {len(entries) - 1}) has id "
                            f"{last.id!r} but the store recorded {expected!r}")
    return it


def _say_resumed(progress, out: Path, n_chunks: int, n_records: int, *, finished: bool,
                 seeked: bool) -> None:
    """One line on stderr (when ``progress`` is True) saying what resume skipped."""
    if progress is not True:
        return
    how = " without reading them (started at the last one, its id checked)" if seeked else ""
    tail = ("the store is finished" if finished
            else f"embedding continues at structure {n_records}")
    print(f"resume {os.fspath(out)!r}: skipped {n_chunks} finished chunk(s) ({n_records} "
          f"structures){how}; {tail}", file=sys.stderr, flush=True)


def _embed_chunk(adapter: Adapter, recs: list[Structure], r0: int, batch_size: int,
                 skip_bad: bool, bar) -> tuple[np.ndarray, list[str], list[dict]]:
    parts: list[np.ndarray] = []
    ids: list[str] = []
    skipped: list[dict] = []
    for s in range(0, len(recs), batch_size):
        batch = recs[s:s + batch_size]
        try:
            feats = adapter.embed_batch(batch)
        except Exception:
            if not skip_bad:
                raise
            good = []
            for j, rec in enumerate(batch):  # find the bad ones, then embed the rest together
                try:
                    adapter.embed_batch([rec])
                except Exception as exc:
                    skipped.append({"record": r0 + s + j, "id": rec.id,
                                    "error": f"{type(exc).__name__}: {exc}"})
                else:
                    good.append(rec)
            feats = (adapter.embed_batch(good) if good
                     else np.empty((0, adapter.dim), dtype=np.float32))
            batch = good
        parts.append(feats)
        ids.extend(rec.id for rec in batch)
        bar.update(min(batch_size, len(recs) - s))
    return np.concatenate(parts, axis=0), ids, skipped


def embed(structures, adapter, out, *, chunk_size: int | None = None, resume: bool = False,
          batch_size: int | None = None, progress=False,
          skip_bad: bool = False, executor=None) -> EmbeddingStore:
    """Embed structures with an adapter into a crash-safe, resumable store at ``out``.

    Parameters
    ----------
    structures : Dataset, structure(s) or iterable of them
        A Dataset, a list of :class:`~matalign.structures.Structure`, or structures as users
        hold them, one or a list: ``ase.Atoms``, pymatgen ``Structure``/``Molecule``, RDKit
        ``Mol``, SMILES strings (protein sequences for a sequence adapter), converted by
        :func:`matalign.structures.as_structures` (ids ``"input:<index>"``). Read once, in
        order, never held in RAM beyond one chunk. Resuming needs the same structures in the
        same order (a Dataset, a list; not a used-up generator).
    adapter : Adapter or str
        An adapter instance, or a registered name (``matalign.adapters.get(name)``).
    out : str or path-like
        Store directory; created if needed. An existing store is never overwritten.
    chunk_size : int, optional
        Records per committed chunk: what a crash can lose at most. Default: the resumed
        store's, else ``DEFAULT_CHUNK_SIZE`` (1024) rounded up to a multiple of
        ``batch_size``.
    resume : bool, default False
        Continue an unfinished store (or return a finished one) written with the same
        adapter, dataset, chunk and batch size; finished chunks are skipped, not re-embedded.
    batch_size : int, optional
        Structures per forward pass. Default: the resumed store's, else
        ``DEFAULT_BATCH_SIZE`` (32). Recorded: a resumed run must use the same, since a
        model's output may depend on how structures are batched.
    progress : bool or callable(done, total), default False
        Progress bar with rate and ETA.
    skip_bad : bool, default False
        Leave out structures the adapter fails on (recorded in ``store.skipped`` with the
        error) instead of stopping. :func:`run_embed` (``matalign embed --skip-bad``) also
        passes it to the file reader, which counts and skips unreadable records.
    executor : {"local", "ray", "auto", "ray://host:port"} or Executor, optional
        Where chunks are embedded (:mod:`matalign.executor`); default: the executor made
        active by ``matalign.executor.use`` (``matalign embed --cluster``), else local. On Ray each chunk (the same
        chunk boundaries) goes to an actor holding a copy of the adapter (built once per
        actor; one per GPU where the cluster has GPUs), which writes the chunk's rows to a
        file in the store's ``pending/`` directory (atomically) and returns its checksum; this
        process alone commits chunks to the store and its journal, in chunk order. ``out``
        must be on a filesystem the workers share. The finished store is bitwise the one a
        local run writes (docs/CLUSTER.md).

    Returns
    -------
    EmbeddingStore
        The finished store.

    Raises
    ------
    FileExistsError
        If ``out`` holds a store (finished or not) and ``resume`` is False, or is a non-empty
        directory that is not a store.
    ValueError
        If resuming with different settings or a changed dataset (the message names what
        differs), on corrupt or missing store files, duplicate ids, or bad options.
    KeyboardInterrupt
        On Ctrl-C, after which the committed chunks stay and ``resume=True`` continues; the
        message says how many chunks are done.

    Examples
    --------
    >>> import tempfile, numpy as np
    >>> import matalign as ma
    >>> from matalign.structures import Structure
    >>> from matalign.adapters import Adapter
    >>> class Length(Adapter):
    ...     name, modality, dim = "length", "smiles", 1
    ...     def _embed_batch(self, batch):
    ...         return np.array([[len(s.smiles)] for s in batch], dtype=np.float32)
    >>> mols = [Structure(f"m{i}", smiles="C" * (i + 1)) for i in range(10)]
    >>> out = tempfile.mkdtemp()
    >>> store = ma.embed(mols, Length(), out, chunk_size=4, batch_size=2)
    >>> store.shape, store.n_chunks
    ((10, 1), 3)
    >>> ma.embed(mols, Length(), out)
    Traceback (most recent call last):
    ...
    FileExistsError: '...' already holds a finished embedding store; it is never overwritten: pass --resume (resume=True) to reuse it, or choose a new directory
    >>> ma.embed(mols, Length(), out, resume=True).shape      # finished: checked and returned
    (10, 1)
    """
    if batch_size is not None:
        batch_size = check_int(batch_size, "batch_size", 1)
    if chunk_size is not None:
        chunk_size = check_int(chunk_size, "chunk_size", 1)
    resume = check_bool(resume, "resume")
    skip_bad = check_bool(skip_bad, "skip_bad")
    progress = check_progress(progress)
    out = _check_out_path(out)
    state = _check_out(out, resume)  # before any model or data work
    if executor is not None:
        _executor.resolve(executor).connect()  # a missing Ray fails before any work
    adapter = _resolve_adapter(adapter)
    structures = _as_source(structures, adapter)
    dataset_meta, hint = _source_info(structures)
    stored = open_store(out, verify=False).metadata if state != "new" else {}
    if batch_size is None:
        batch_size = int(stored.get("batch_size", DEFAULT_BATCH_SIZE))
    if chunk_size is None:
        chunk_size = int(stored.get("chunk_size",
                                    batch_size * -(-DEFAULT_CHUNK_SIZE // batch_size)))
    header = {
        "matalign_version": _engine.version(),
        "model": adapter.name, "layer": adapter.layer, "pooling": adapter.pooling,
        "dtype": "float32", "dim": int(adapter.dim), "chunk_size": chunk_size,
        "batch_size": batch_size, "skip_bad": skip_bad, "n_records_hint": hint,
        "adapter": adapter.metadata, "dataset": dataset_meta,
        "device": None if getattr(adapter, "device", None) is None else str(adapter.device),
    }
    seekable = isinstance(structures, Dataset) and structures.seekable
    if state == "new" or not seekable:
        it = iter(structures)
        first = next(it, None)
        if first is None:
            raise ValueError("structures is empty: nothing to embed")
        it = chain([first], it)
    writer = _StoreWriter(out, header, resume=resume)
    if writer.complete:
        store = open_store(out)
        done = [{"records": [0, len(store.ids) + len(store.skipped)], "ids": list(store.ids),
                 "skipped": store.skipped}]
        if seekable:
            it = _seek_finished(structures, done, out)
        else:
            _skip_finished(it, done, out)
        if next(it, None) is not None:
            raise _changed(out, f"it now has more than the {len(store) + len(store.skipped)} "
                                f"structures in the store")
        _say_resumed(progress, out, store.n_chunks, done[0]["records"][1], finished=True,
                     seeked=seekable)
        store.resumed_chunks = store.n_chunks
        return store
    entries = list(writer.entries)
    try:
        if seekable and state != "new":
            it = _seek_finished(structures, entries, out)
        else:
            _skip_finished(it, entries, out)
        if entries:
            _say_resumed(progress, out, len(entries), writer.n_records, finished=False,
                         seeked=seekable)
        if writer.reached_end:
            if next(it, None) is not None:
                raise _changed(out, f"it now has more than the {writer.n_records} structures "
                                    f"the store had reached the end with")
        else:
            total = None if hint is None else max(hint - writer.n_records, 0)
            ex = (_executor.current() or _executor.resolve("local") if executor is None
                  else _executor.resolve(executor))
            with progress_bar(total, f"embed {adapter.name}", enabled=progress) as bar:
                if ex.is_ray:
                    _embed_on_cluster(ex, it, writer, adapter, out, chunk_size, batch_size,
                                      skip_bad, bar)
                while not ex.is_ray:
                    r0 = writer.n_records
                    recs = [_check_record(rec, r0 + j)
                            for j, rec in enumerate(islice(it, chunk_size))]
                    if not recs:
                        break
                    rows, ids, skipped = _embed_chunk(adapter, recs, r0, batch_size, skip_bad,
                                                      bar)
                    writer.commit(rows, ids, skipped, len(recs))
                    if len(recs) < chunk_size:
                        break
        store = writer.finalize()
        store.resumed_chunks = len(entries) if resume else 0
        return store
    except KeyboardInterrupt:
        raise KeyboardInterrupt(
            f"interrupted: {len(writer.entries)} chunk(s) ({writer.n_rows} structures) are "
            f"committed in {os.fspath(out)!r} and the chunk in flight is lost; continue with "
            f"--resume (ma.embed(..., resume=True))") from None


class _NoBar:
    def update(self, n):
        pass


def _chunk_file(chunk_dir: str, chunk: int) -> Path:
    return Path(chunk_dir) / f"chunk-{chunk:09d}.npy"


def _embed_chunk_to_file(adapter: Adapter, chunk_dir: str, chunk: int, r0: int,
                         recs: list[Structure], batch_size: int, skip_bad: bool, fault):
    """On a worker: embed one chunk, write its rows to ``chunk_dir`` atomically (temporary
    file, fsync, rename) and return (chunk, sha256 of the rows, rows, ids, skipped)."""
    rows, ids, skipped = _embed_chunk(adapter, recs, r0, batch_size, skip_bad, _NoBar())
    rows = np.ascontiguousarray(rows, dtype=np.float32)
    final = _chunk_file(chunk_dir, chunk)
    tmp = final.with_name(final.name + f".{os.getpid()}.tmp")
    with open(tmp, "wb") as f:
        data = _npy_bytes(rows)
        f.write(data[:len(data) // 2])
        f.flush()
        _executor.fault_point(fault, chunk)  # test-only: die with half a file written
        f.write(data[len(data) // 2:])
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, final)
    return chunk, _rows_sha256(rows), int(rows.shape[0]), ids, skipped


def _npy_bytes(rows: np.ndarray) -> bytes:
    import io
    buf = io.BytesIO()
    np.save(buf, rows)
    return buf.getvalue()


def _embed_on_cluster(ex, it, writer, adapter: Adapter, out: Path, chunk_size: int,
                      batch_size: int, skip_bad: bool, bar) -> None:
    """The chunk loop of :func:`embed` on Ray actors: chunks are read here in order, embedded
    by the actors, and committed here (the store's one writer) in chunk order."""
    chunk_dir = writer.pending / "chunks"
    chunk_dir.mkdir(exist_ok=True)
    fault = _executor.Executor.fault(ex)
    first = len(writer.entries)

    def chunks():
        c = first
        r0 = writer.n_records
        while True:
            recs = [_check_record(rec, r0 + j) for j, rec in enumerate(islice(it, chunk_size))]
            if not recs:
                return
            yield (os.fspath(chunk_dir), c, r0, recs, batch_size, skip_bad, fault)
            c, r0 = c + 1, r0 + len(recs)
            if len(recs) < chunk_size:
                return

    for item, (chunk, sha, n_rows, ids, skipped) in _executor.on_replicas(
            ex, adapter, _embed_chunk_to_file, chunks()):
        path = _chunk_file(item[0], chunk)
        rows = np.load(path)
        if rows.shape != (n_rows, writer.dim) or _rows_sha256(rows) != sha:
            raise RuntimeError(f"chunk {chunk} of {os.fspath(out)!r}: the file a worker wrote "
                               f"does not match the checksum it returned; is the store on a "
                               f"filesystem every worker shares?")
        writer.commit(rows, ids, skipped, len(item[3]))
        path.unlink()
        bar.update(len(item[3]))
    ex.close()


def _resolve_dataset(data, options=None):
    from . import datasets
    options = dict(options or {})
    if isinstance(data, datasets.Dataset):
        if options:
            raise ValueError("data_options apply to a dataset name or file, not to a Dataset")
        return data
    if not isinstance(data, (str, os.PathLike)):
        raise TypeError(f"data must be a built-in dataset name, a file path or a Dataset; got "
                        f"{describe(data)}")
    if os.path.exists(data):
        opener = getattr(datasets, "open", None)
        if opener is None:
            raise RuntimeError("this matalign has no dataset file readers "
                               "(matalign.datasets.open is missing)")
        return opener(data, **options)
    getter = getattr(datasets, "get", None)
    if getter is None:
        raise FileNotFoundError(f"data {os.fspath(data)!r} is not an existing file (and this "
                                f"matalign has no built-in datasets)")
    try:
        return getter(os.fspath(data), **options)
    except ValueError as exc:
        raise ValueError(f"data {os.fspath(data)!r} is not an existing file; as a built-in "
                         f"dataset name: {exc}") from None


def run_embed(model, data, out, *, resume: bool = False, batch_size: int | None = None,
              chunk_size: int | None = None, checkpoint=None, adapter_options=None,
              data_options=None, device: str | None = None, progress=True,
              skip_bad: bool = False) -> EmbeddingStore:
    """What ``matalign embed --model NAME --data PATH --out DIR`` runs.

    Parameters
    ----------
    model : str or Adapter
        Registered adapter name (``matalign.adapters.list()``) or an adapter instance.
    data : str, path-like or Dataset
        An existing file (``matalign.datasets.open``), else a built-in dataset name
        (``matalign.datasets.get``), or a Dataset.
    out : str or path-like
        Store directory.
    resume, batch_size, chunk_size, progress, skip_bad
        As in :func:`matalign.embed`.
    checkpoint : path, optional
        Local checkpoint for hub-weight adapters (passed as ``checkpoint=``).
    adapter_options : dict, optional
        More keyword options for the adapter factory (``pooling``, ``layer``...).
    data_options : dict, optional
        Keyword options for the dataset (``n=``, ``seed=``, ``elements=``...), passed to
        ``matalign.datasets.get`` or ``open``.
    device : str, optional
        Torch device for model adapters (``"cpu"``, ``"cuda"``, ``"cuda:1"``), passed as
        ``device=``. Recorded in the store; resuming on another device is allowed, but then
        the result is only as reproducible as the model is across devices.

    Returns
    -------
    EmbeddingStore

    Raises
    ------
    FileExistsError
        ``out`` holds a store and ``resume`` is False (checked before the model loads).
    ValueError
        Unknown model or dataset, mismatched settings on resume, corrupt store files.

    Examples
    --------
    >>> import tempfile
    >>> from matalign.embed import run_embed
    >>> run_embed("no-such-model", "g2", tempfile.mkdtemp())
    Traceback (most recent call last):
    ...
    ValueError: unknown adapter 'no-such-model'; ...
    """
    if batch_size is not None:
        batch_size = check_int(batch_size, "batch_size", 1)
    if chunk_size is not None:
        chunk_size = check_int(chunk_size, "chunk_size", 1)
    resume = check_bool(resume, "resume")
    out = _check_out_path(out)
    _check_out(out, resume)
    if adapter_options is not None and not isinstance(adapter_options, dict):
        raise TypeError(f"adapter_options must be a dict; got {describe(adapter_options)}")
    options = dict(adapter_options or {})
    if checkpoint is not None:
        options["checkpoint"] = os.fspath(checkpoint)
    if device is not None:
        if not isinstance(device, str):
            raise TypeError(f"device must be a str such as 'cpu' or 'cuda:0'; got "
                            f"{describe(device)}")
        options["device"] = device
    if isinstance(model, str):
        model, note = resolve_model_name(model)
        if note and progress:
            print(f"info: {note}", file=sys.stderr, flush=True)
    adapter = _resolve_adapter(model, options)
    if data_options is not None and not isinstance(data_options, dict):
        raise TypeError(f"data_options must be a dict; got {describe(data_options)}")
    data_options = dict(data_options or {})
    if skip_bad and isinstance(data, (str, os.PathLike)) and os.path.exists(data):
        data_options.setdefault("skip_bad", True)  # unreadable records of a file, too
    dataset = _resolve_dataset(data, data_options)
    return embed(dataset, adapter, out, chunk_size=chunk_size, resume=resume,
                 batch_size=batch_size, progress=progress, skip_bad=skip_bad)


# ``matalign.embed`` is this module's function once the package is imported (the name is
# shared); keep ``matalign.embed.run_embed`` working through either object.
embed.run_embed = run_embed  # type: ignore[attr-defined]
