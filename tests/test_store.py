"""Embedding store: layout, resume (bitwise identical), crash leftovers, corruption, inputs.

The subprocess kill -9 / Ctrl-C tests are in test_embed_resume.py.
"""

from __future__ import annotations

import io
import json
import math
import os
import zlib
from pathlib import Path

import numpy as np
import pytest

import matalign as ma
import matalign.store as store_mod
from matalign._validate import as_matrix
from matalign.adapters import Adapter
from matalign.datasets import Dataset
from matalign.embed import run_embed
from matalign.structures import Structure


class HashAdapter(Adapter):
    """Deterministic per structure: rows drawn from a generator seeded by crc32(id)."""

    name = "hash-test"
    modality = "smiles"
    layer = "none"

    def __init__(self, *, dim=7, fail_ids=(), interrupt_after=None, pooling="mean"):
        super().__init__(pooling=pooling)
        self.dim = dim
        self.fail_ids = set(fail_ids)
        self.interrupt_after = interrupt_after
        self.calls = 0

    def _embed_batch(self, batch):
        self.calls += 1
        if self.interrupt_after is not None and self.calls > self.interrupt_after:
            raise KeyboardInterrupt
        rows = []
        for s in batch:
            if s.id in self.fail_ids:
                raise ValueError(f"cannot embed {s.id}")
            rng = np.random.default_rng(zlib.crc32(s.id.encode()))
            rows.append(rng.standard_normal(self.dim))
        return np.asarray(rows, dtype=np.float32).reshape(len(batch), self.dim)


class Mols(Dataset):
    name = "test-mols"
    modality = ("smiles",)

    def __init__(self, n, prefix="m"):
        self.n = n
        self.prefix = prefix

    def __iter__(self):
        for i in range(self.n):
            yield Structure(f"{self.prefix}{i}", smiles="C" * (i % 7 + 1))

    def __len__(self):
        return self.n

    @property
    def metadata(self):
        return {"name": self.name, "n": self.n}


def _files(root: Path) -> dict[str, bytes]:
    return {os.fspath(p.relative_to(root)): p.read_bytes()
            for p in sorted(root.rglob("*")) if p.is_file()}


def _reference(tmp_path, n, chunk, batch=3, **kw):
    out = tmp_path / "reference"
    ma.embed(Mols(n), HashAdapter(**kw), out, chunk_size=chunk, batch_size=batch)
    return _files(out)


@pytest.mark.parametrize("n, chunk", [(1, 4), (10, 4), (12, 4), (33, 5), (5, 1), (3, 100)])
def test_roundtrip_layout_and_values(tmp_path, n, chunk):
    out = tmp_path / "s"
    adapter = HashAdapter()
    store = ma.embed(Mols(n), adapter, out, chunk_size=chunk, batch_size=3)
    expected = adapter.embed(list(Mols(n)))
    assert store.complete
    assert sorted(_files(out)) == ["embeddings.npy", "ids.txt", "manifest.json"]
    np.testing.assert_array_equal(store.embeddings, expected)
    assert isinstance(store.embeddings, np.memmap)
    np.testing.assert_array_equal(np.load(out / "embeddings.npy", allow_pickle=False), expected)
    buf = io.BytesIO()
    np.save(buf, expected)
    assert (out / "embeddings.npy").read_bytes() == buf.getvalue()  # a plain .npy file
    assert store.ids == tuple(f"m{i}" for i in range(n))
    assert len(store) == n and store.shape == (n, 7) and store.dtype == np.float32
    assert store.n_chunks == math.ceil(n / chunk)
    meta = store.metadata
    assert meta["adapter"]["adapter"] == "hash-test" and meta["dataset"] == {"name": "test-mols",
                                                                             "n": n}
    assert (meta["dim"], meta["dtype"], meta["chunk_size"]) == (7, "float32", chunk)
    assert meta["matalign_version"] == ma.__version__
    assert repr(store) == f"<EmbeddingStore {os.fspath(out)!r} N={n} D=7 float32 " \
                          f"model='hash-test' {math.ceil(n / chunk)} chunks>"
    again = ma.open_store(out)
    np.testing.assert_array_equal(again.embeddings, expected)
    np.testing.assert_array_equal(np.asarray(again), expected)
    # Deterministic: a second run into another directory writes the same bytes.
    ma.embed(Mols(n), HashAdapter(), tmp_path / "t", chunk_size=chunk, batch_size=3)
    assert _files(tmp_path / "t") == _files(out)


def test_plain_list_and_progress_callback(tmp_path):
    seen = []
    mols = list(Mols(9))
    store = ma.embed(mols, HashAdapter(dim=1), tmp_path / "s", chunk_size=4, batch_size=2,
                     progress=lambda done, total: seen.append((done, total)))
    assert seen[-1] == (9, 9)
    assert store.metadata["dataset"] == {"name": None, "source": "python list"}
    store = ma.embed(iter(mols), HashAdapter(dim=1), tmp_path / "g", progress=True)
    assert store.shape == (9, 1) and store.metadata["chunk_size"] == 1024


@pytest.mark.parametrize("interrupt_after", [0, 1, 4, 6, 7])
def test_interrupted_then_resumed_is_bitwise_identical(tmp_path, interrupt_after):
    n, chunk, batch = 23, 6, 3  # 4 chunks (6, 6, 6, 5), each 2 batches: 8 batches
    reference = _reference(tmp_path, n, chunk, batch)
    out = tmp_path / "s"
    with pytest.raises(KeyboardInterrupt, match="--resume") as info:
        ma.embed(Mols(n), HashAdapter(interrupt_after=interrupt_after), out, chunk_size=chunk,
                 batch_size=batch)
    done = interrupt_after // 2
    assert f"{done} chunk(s) ({done * chunk} structures) are committed" in str(info.value)
    partial = ma.open_store(out)
    assert not partial.complete and partial.n_chunks == done and len(partial) == done * chunk
    assert partial.ids == tuple(f"m{i}" for i in range(done * chunk))
    assert "incomplete" in repr(partial)
    with pytest.raises(ValueError, match=rf"is incomplete: {done} chunk\(s\) of about 4 "
                                         rf"\({done * chunk} structures\).*--resume"):
        partial.embeddings
    with pytest.raises(ValueError, match="incomplete"):
        as_matrix(partial)
    with pytest.raises(FileExistsError, match="unfinished embedding store.*--resume"):
        ma.embed(Mols(n), HashAdapter(), out, chunk_size=chunk, batch_size=batch)
    adapter = HashAdapter()
    store = ma.embed(Mols(n), adapter, out, resume=True)  # chunk and batch size: the stored
    assert adapter.calls == 8 - 2 * done  # finished chunks are not embedded again
    assert store.complete and _files(out) == reference


def test_crash_leftovers_are_ignored(tmp_path):
    """What a kill -9 can leave: a torn journal line, a temporary file, rows written past the
    last journalled chunk. Resume ignores them and still matches bitwise."""
    n, chunk = 20, 4
    reference = _reference(tmp_path, n, chunk)
    out = tmp_path / "s"
    with pytest.raises(KeyboardInterrupt):
        ma.embed(Mols(n), HashAdapter(interrupt_after=4), out, chunk_size=chunk, batch_size=3)
    pending = out / "pending"
    with open(pending / "embeddings.npy", "ab") as f:
        f.write(b"rows of the chunk in flight, cut short")
    (pending / "header.json.tmp").write_bytes(b"half a file")
    with open(pending / "journal.jsonl", "ab") as f:
        f.write(b'{"chunk":2,"ids":["m8","m9"')
    assert ma.open_store(out).n_chunks == 2  # the torn line does not count
    store = ma.embed(Mols(n), HashAdapter(), out, resume=True)
    assert store.complete and _files(out) == reference


def test_interrupted_finalize_resumes(tmp_path, monkeypatch):
    n, chunk = 10, 4
    reference = _reference(tmp_path, n, chunk)
    out = tmp_path / "s"

    def killed(*args, **kwargs):
        raise KeyboardInterrupt

    with monkeypatch.context() as m:  # all chunks committed, consolidation never ran
        m.setattr(store_mod._StoreWriter, "finalize", killed)
        with pytest.raises(KeyboardInterrupt, match="3 chunk"):
            ma.embed(Mols(n), HashAdapter(), out, chunk_size=chunk, batch_size=3)
    adapter = HashAdapter()
    ma.embed(Mols(n), adapter, out, resume=True)
    assert adapter.calls == 0 and _files(out) == reference
    # Killed after the manifest, before pending/ was removed: the store is complete and a
    # resume tidies up.
    out2 = tmp_path / "s2"
    with monkeypatch.context() as m:
        m.setattr(store_mod.shutil, "rmtree", killed)
        with pytest.raises(KeyboardInterrupt):
            ma.embed(Mols(n), HashAdapter(), out2, chunk_size=chunk, batch_size=3)
    assert (out2 / "pending").is_dir() and ma.open_store(out2).complete
    ma.embed(Mols(n), HashAdapter(), out2, resume=True)
    assert _files(out2) == reference
    # Killed after the data moved into place, before ids.txt and the manifest.
    out3 = tmp_path / "s3"
    real = store_mod._atomic_write

    def killed_at_ids(path, write):
        if path.name == "ids.txt":
            raise KeyboardInterrupt
        real(path, write)

    with monkeypatch.context() as m:
        m.setattr(store_mod, "_atomic_write", killed_at_ids)
        with pytest.raises(KeyboardInterrupt):
            ma.embed(Mols(n), HashAdapter(), out3, chunk_size=chunk, batch_size=3)
    assert (out3 / "embeddings.npy").is_file() and not ma.open_store(out3).complete
    ma.embed(Mols(n), HashAdapter(), out3, resume=True)
    assert _files(out3) == reference


def test_existing_directories_are_never_overwritten(tmp_path):
    out = tmp_path / "s"
    ma.embed(Mols(5), HashAdapter(), out)
    with pytest.raises(FileExistsError, match="already holds a finished embedding store.*"
                                              "--resume"):
        ma.embed(Mols(5), HashAdapter(), out)
    other = tmp_path / "other"
    other.mkdir()
    (other / "notes.txt").write_text("keep me")
    for resume in (False, True):
        with pytest.raises(FileExistsError, match="non-empty directory that is not an "
                                                  "embedding store"):
            ma.embed(Mols(5), HashAdapter(), other, resume=resume)
    (tmp_path / "file").write_text("x")
    with pytest.raises(FileExistsError, match="is not a directory"):
        ma.embed(Mols(5), HashAdapter(), tmp_path / "file")
    empty = tmp_path / "empty"
    empty.mkdir()
    assert ma.embed(Mols(5), HashAdapter(), empty, resume=True).complete


@pytest.mark.parametrize("change, match", [
    (dict(adapter=HashAdapter(dim=5)), r"different settings \(dim: stored 7, now 5\)"),
    (dict(adapter=HashAdapter(pooling="max")),
     r"different settings \(adapter\.pooling: stored 'mean', now 'max'\)"),
    (dict(chunk_size=5), r"chunk_size: stored 4, now 5"),
    (dict(batch_size=2), r"batch_size: stored 3, now 2"),
    (dict(data=Mols(11)), r"dataset\.n: stored 10, now 11"),
])
def test_resume_with_other_settings_is_refused(tmp_path, change, match):
    out = tmp_path / "s"
    with pytest.raises(KeyboardInterrupt):
        ma.embed(Mols(10), HashAdapter(interrupt_after=2), out, chunk_size=4, batch_size=3)
    args = dict(data=Mols(10), adapter=HashAdapter(), chunk_size=4, batch_size=3)
    args.update(change)
    with pytest.raises(ValueError, match=f"cannot resume .*{match}.*new directory"):
        ma.embed(args.pop("data"), args.pop("adapter"), out, resume=True, **args)


def test_resume_with_changed_dataset_ids(tmp_path):
    out = tmp_path / "s"
    with pytest.raises(KeyboardInterrupt):
        ma.embed(Mols(10), HashAdapter(interrupt_after=4), out, chunk_size=4, batch_size=2)
    with pytest.raises(ValueError, match=r"dataset changed .*record 0 \(chunk 0\) has id 'x0' "
                                         r"but the store recorded 'm0'"):
        ma.embed(Mols(10, prefix="x"), HashAdapter(), out, resume=True)

    class Short(Mols):
        def __iter__(self):
            yield from list(super().__iter__())[:5]

    with pytest.raises(ValueError, match="dataset changed .*ends after 5 structures, but the "
                                         "store has 8 committed"):
        ma.embed(Short(10), HashAdapter(), out, resume=True)
    ma.embed(Mols(10), HashAdapter(), out, resume=True)
    with pytest.raises(ValueError, match="record 0 .*has id 'x0'"):
        ma.embed(Mols(10, prefix="x"), HashAdapter(), out, resume=True)  # finished store too


def _flip_byte(path: Path, offset: int) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x01
    path.write_bytes(bytes(data))


def test_corrupt_byte_names_chunk_and_file(tmp_path):
    out = tmp_path / "s"
    ma.embed(Mols(15), HashAdapter(), out, chunk_size=4)
    emb = out / "embeddings.npy"
    header = emb.stat().st_size - 15 * 7 * 4
    _flip_byte(emb, header + (9 * 7 + 3) * 4)  # row 9 is in chunk 2 (rows 8..11)
    match = r"chunk 2 \(rows 8\.\.11\) of '.*embeddings\.npy' fails its SHA-256 check"
    with pytest.raises(ValueError, match=match):
        ma.open_store(out)
    store = ma.open_store(out, verify=False)  # the cheap checks pass
    with pytest.raises(ValueError, match=match):
        store.verify()
    with pytest.raises(ValueError, match=match):
        ma.embed(Mols(15), HashAdapter(), out, resume=True)


def test_truncated_and_missing_files(tmp_path):
    out = tmp_path / "s"
    ma.embed(Mols(6), HashAdapter(), out, chunk_size=4)
    emb = out / "embeddings.npy"
    good = emb.read_bytes()
    emb.write_bytes(good[:-4])
    for verify in (True, False):
        with pytest.raises(ValueError, match=r"embeddings\.npy' is truncated: \d+ bytes, "
                                             r"expected \d+ \(6 x 7 float32"):
            ma.open_store(out, verify=verify)
    emb.write_bytes(good + b"\0")
    with pytest.raises(ValueError, match="longer than expected"):
        ma.open_store(out)
    emb.write_bytes(good[:20])
    with pytest.raises(ValueError, match=r"embeddings\.npy' is not a readable \.npy file"):
        ma.open_store(out)
    emb.write_bytes(good)
    ids = out / "ids.txt"
    ids.write_text(ids.read_text().replace("m3", "m8"))
    with pytest.raises(ValueError, match=r"ids\.txt' fails its SHA-256 check"):
        ma.open_store(out, verify=False)
    ids.unlink()
    with pytest.raises(ValueError, match=r"missing ids\.txt"):
        ma.open_store(out)
    (out / "manifest.json").write_text("{not json")
    with pytest.raises(ValueError, match=r"manifest\.json' is not valid JSON"):
        ma.open_store(out)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        ma.open_store(tmp_path / "nowhere")
    with pytest.raises(FileNotFoundError, match="is not a matalign embedding store"):
        ma.open_store(tmp_path)
    with pytest.raises(TypeError, match="verify must be True or False"):
        ma.open_store(out, verify="yes")


@pytest.mark.parametrize("damage, match", [
    ("flip", r"chunk 1 \(rows 4\.\.7\) of '.*pending/embeddings\.npy' fails its SHA-256 "
             r"check"),
    ("truncate", r"pending/embeddings\.npy' is truncated: \d+ bytes, the journal needs \d+; "
                 r"chunk 2 \(rows 8\.\.11\) and later are lost"),
    ("delete", r"pending/embeddings\.npy' is missing"),
    ("journal", r"journal\.jsonl' line 1 is not a valid journal entry for chunk 0"),
])
def test_damaged_unfinished_store(tmp_path, damage, match):
    out = tmp_path / "s"
    with pytest.raises(KeyboardInterrupt):
        ma.embed(Mols(14), HashAdapter(interrupt_after=6), out, chunk_size=4, batch_size=2)
    chunk = out / "pending" / "embeddings.npy"
    if damage == "flip":
        _flip_byte(chunk, 128 + 5 * 7 * 4 + 2)  # row 5
    elif damage == "truncate":
        chunk.write_bytes(chunk.read_bytes()[:-8])
    elif damage == "delete":
        chunk.unlink()
    else:
        journal = out / "pending" / "journal.jsonl"
        journal.write_bytes(b"{}\n" + journal.read_bytes())
    adapter = HashAdapter()
    with pytest.raises(ValueError, match=match):
        ma.embed(Mols(14), adapter, out, resume=True)
    assert adapter.calls == 0  # reported before any new work
    if damage == "flip":
        with pytest.raises(ValueError, match=match):
            ma.open_store(out).verify()


def test_store_feeds_the_metrics(tmp_path):
    data = Mols(60)
    sa = ma.embed(data, HashAdapter(dim=8), tmp_path / "a", chunk_size=16)
    sb = ma.embed(data, HashAdapter(dim=5, pooling="sum"), tmp_path / "b", chunk_size=7)
    A, B = np.array(sa.embeddings), np.array(sb.embeddings)
    assert as_matrix(sa) is sa.embeddings
    g, ref = ma.knn(sa, k=5), ma.knn(A, k=5)
    np.testing.assert_array_equal(g.indices, ref.indices)
    np.testing.assert_array_equal(g.values, ref.values)
    assert ma.cknna(sa, sb, k=5) == ma.cknna(A, B, k=5)
    m = ma.alignment_matrix({"a": sa, "b": sb}, metrics=["cknna", "cka"], k=5)
    assert m.value("cknna", "a", "b") == ma.cknna(A, B, k=5)
    assert m.value("cka", "a", "b") == pytest.approx(ma.cka(A, B), rel=1e-6)


def test_skip_bad(tmp_path):
    n = 14
    with pytest.raises(ValueError, match="cannot embed m3"):
        ma.embed(Mols(n), HashAdapter(fail_ids={"m3"}), tmp_path / "fail", chunk_size=4)
    bad = {"m3", "m9", "m10", "m11"}  # chunk 2 (records 8..11) keeps only m8
    reference = tmp_path / "reference"
    store = ma.embed(Mols(n), HashAdapter(fail_ids=bad), reference, chunk_size=4,
                     batch_size=2, skip_bad=True)
    assert store.ids == tuple(f"m{i}" for i in range(n) if f"m{i}" not in bad)
    assert [(s["record"], s["id"], s["error"]) for s in store.skipped] == [
        (3, "m3", "ValueError: cannot embed m3"), (9, "m9", "ValueError: cannot embed m9"),
        (10, "m10", "ValueError: cannot embed m10"), (11, "m11", "ValueError: cannot embed m11")]
    assert store.metadata["n_skipped"] == 4
    np.testing.assert_array_equal(store.embeddings,
                                  HashAdapter().embed([s for s in Mols(n) if s.id not in bad]))
    out = tmp_path / "s"
    with pytest.raises(KeyboardInterrupt):
        ma.embed(Mols(n), HashAdapter(fail_ids=bad, interrupt_after=9), out, chunk_size=4,
                 batch_size=2, skip_bad=True)
    ma.embed(Mols(n), HashAdapter(fail_ids=bad), out, resume=True, skip_bad=True)
    assert _files(out) == _files(reference)


def test_bad_ids(tmp_path):
    dup = [Structure("a", smiles="C"), Structure("b", smiles="N"), Structure("a", smiles="O")]
    with pytest.raises(ValueError, match=r"structure id 'a' occurs twice \(rows 0 and 2\)"):
        ma.embed(dup, HashAdapter(), tmp_path / "dup")
    with pytest.raises(ValueError, match=r"structure id 'a\\nb' \(record 1\) contains a line "
                                         r"break"):
        ma.embed([Structure("x", smiles="C"), Structure("a\nb", smiles="C")], HashAdapter(),
                 tmp_path / "nl")


def test_bad_arguments(tmp_path):
    mols = list(Mols(3))
    with pytest.raises(ValueError, match="batch_size must be >= 1; got 0"):
        ma.embed(mols, HashAdapter(), tmp_path / "s", batch_size=0)
    with pytest.raises(TypeError, match="chunk_size must be an integer; got the bool True"):
        ma.embed(mols, HashAdapter(), tmp_path / "s", chunk_size=True)
    with pytest.raises(TypeError, match="resume must be True or False"):
        ma.embed(mols, HashAdapter(), tmp_path / "s", resume="yes")
    with pytest.raises(TypeError, match="out must be a str or path-like"):
        ma.embed(mols, HashAdapter(), 3)
    with pytest.raises(TypeError, match="got the str 'mols.xyz'"):
        ma.embed("mols.xyz", HashAdapter(), tmp_path / "s")
    with pytest.raises(TypeError, match="got a single Structure"):
        ma.embed(mols[0], HashAdapter(), tmp_path / "s")
    with pytest.raises(TypeError, match=r"structures\[1\] is a int"):
        ma.embed([mols[0], 5], HashAdapter(), tmp_path / "s")
    with pytest.raises(TypeError, match="adapter must be a matalign Adapter"):
        ma.embed(mols, object(), tmp_path / "s2")
    with pytest.raises(ValueError, match="structures is empty"):
        ma.embed([], HashAdapter(), tmp_path / "empty")
    assert not (tmp_path / "empty").exists()
    with pytest.raises(ValueError, match="has dim=0"):
        ma.embed(mols, HashAdapter(dim=0), tmp_path / "s3")


def test_run_embed(tmp_path):
    out = tmp_path / "s"
    store = run_embed(HashAdapter(), Mols(5), out, progress=False)
    assert store.shape == (5, 7)
    with pytest.raises(FileExistsError, match="--resume"):  # before the model is looked up
        run_embed("no-such-model", Mols(5), out)
    assert run_embed(HashAdapter(), Mols(5), out, resume=True, progress=False).shape == (5, 7)
    with pytest.raises(ValueError, match="unknown adapter 'no-such-model'"):
        run_embed("no-such-model", Mols(5), tmp_path / "t")
    with pytest.raises(ValueError, match="apply to an adapter given by name"):
        run_embed(HashAdapter(), Mols(5), tmp_path / "t", checkpoint="x.ckpt")
    with pytest.raises(TypeError, match="adapter_options must be a dict"):
        run_embed("no-such-model", Mols(5), tmp_path / "t", adapter_options=["pooling"])
    with pytest.raises((ValueError, FileNotFoundError), match="'no-such-file.xyz' is not an "
                                                              "existing file"):
        run_embed(HashAdapter(), "no-such-file.xyz", tmp_path / "t")
    import matalign
    assert matalign.embed.run_embed is run_embed  # the package's name is the function


def test_manifest_is_deterministic_json(tmp_path):
    out = tmp_path / "s"
    ma.embed(Mols(9), HashAdapter(), out, chunk_size=4)
    manifest = json.loads((out / "manifest.json").read_text())
    assert [c["rows"] for c in manifest["chunks"]] == [[0, 4], [4, 8], [8, 9]]
    assert set(manifest) >= {"adapter", "dataset", "dim", "dtype", "chunk_size", "batch_size",
                             "matalign_version", "ids_sha256", "n", "model", "layer", "pooling"}
    text = (out / "manifest.json").read_text()
    assert "time" not in text and "date" not in text


def test_metrics_refuse_stores_of_different_structures(tmp_path):
    # Row i of every compared store must be the same structure: the ids are checked.
    from matalign.structures import Structure
    from matalign.adapters import Adapter

    class Hashy(Adapter):
        name, modality, dim = "hashy", "smiles", 3

        def _embed_batch(self, batch):
            return np.array([[len(s.smiles), s.smiles.count("C"), i % 3]
                             for i, s in enumerate(batch)], dtype=np.float32)

    mols = [Structure(f"m{i}", smiles="C" * (i + 1) + "O" * (i % 4)) for i in range(12)]
    shuffled = mols[1:] + mols[:1]
    a = ma.embed(mols, Hashy(), tmp_path / "a", batch_size=4)
    b = ma.embed(mols, Hashy(), tmp_path / "b", batch_size=4)
    c = ma.embed(shuffled, Hashy(), tmp_path / "c", batch_size=4)
    ma.cka(a, b)                                   # same ids: fine
    msg = r"X and Y are stores of different structures: row 0 is 'm0' in X but 'm1' in Y"
    for call in (lambda: ma.cka(a, c), lambda: ma.distance_correlation(a, c),
                 lambda: ma.information_imbalance(a, c), lambda: ma.cknna(a, c, k=3),
                 lambda: ma.mutual_knn(a, c, k=3), lambda: ma.local_agreement(a, c, k=3)):
        with pytest.raises(ValueError, match=msg):
            call()
    with pytest.raises(ValueError, match="first and third are stores of different structures"):
        ma.alignment_matrix({"first": a, "second": b, "third": c}, metrics=["cka"])
    # Arrays carry no ids: comparing a store with an array is the caller's responsibility.
    ma.cka(a, np.asarray(c.embeddings))
