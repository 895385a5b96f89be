"""Store edges: every corrupted header or manifest is a ValueError naming the file; the
manifest's fields are covered by its checksum; resume starts reading the data at the first
unfinished chunk (counted by records read) and says what it skipped."""

from __future__ import annotations

import json
import time
import zlib

import numpy as np
import pytest
from ase.build import bulk
from ase.io import write

import matalign as ma
import matalign.datasets as mds
import matalign.store as store_mod
from matalign.adapters import Adapter
from matalign.datasets import Dataset
from matalign.structures import Structure


class Rows(Adapter):
    """Deterministic rows from crc32(id); works on atoms or SMILES."""

    name, dim, layer = "rows-test", 5, "none"

    def __init__(self, modality="smiles", fail_after=None):
        super().__init__()
        self.modality = modality
        self.fail_after = fail_after
        self.seen = 0

    def _embed_batch(self, batch):
        self.seen += len(batch)
        if self.fail_after is not None and self.seen > self.fail_after:
            raise KeyboardInterrupt
        return np.stack([np.random.default_rng(zlib.crc32(s.id.encode())).standard_normal(5)
                         for s in batch]).astype(np.float32)


def _mols(n):
    return [Structure(f"m{i}", smiles="C" * (i % 5 + 1)) for i in range(n)]


@pytest.fixture()
def finished(tmp_path):
    out = tmp_path / "s"
    ma.embed(_mols(11), Rows(), out, chunk_size=4)
    return out


# ------------------------------------------------------------------------- the .npy header

def test_every_single_bit_flip_of_the_npy_header_is_a_value_error(finished):
    emb = finished / "embeddings.npy"
    good = emb.read_bytes()
    header_len = 128
    assert good[:6] == b"\x93NUMPY" and good[header_len - 1:header_len] == b"\n"
    kinds = {}
    for bit in range(8 * header_len):
        raw = bytearray(good)
        raw[bit // 8] ^= 1 << (bit % 8)
        emb.write_bytes(bytes(raw))
        with pytest.raises(ValueError) as info:
            ma.open_store(finished, verify=False)
        msg = str(info.value)
        assert "embeddings.npy" in msg, (bit, msg)
        kinds[msg.split("embeddings.npy")[1][:30]] = bit
    emb.write_bytes(good)
    ma.open_store(finished)                          # the original still opens
    assert len(kinds) >= 3                           # several distinct diagnoses


def test_every_single_bit_flip_of_the_pending_header_is_a_value_error(tmp_path):
    out = tmp_path / "p"
    with pytest.raises(KeyboardInterrupt):
        ma.embed(_mols(11), Rows(fail_after=8), out, chunk_size=4)
    data = out / "pending" / "embeddings.npy"
    good = data.read_bytes()
    # The two headers an unfinished store can hold: (0, D) while embedding, (n, D) once
    # finishing has started; a flip that turns one into the other ('0' -> '8' with 8 rows
    # committed) is a valid state, not damage.
    n = ma.open_store(out).shape[0]
    valid = {store_mod._npy_header(0, 5), store_mod._npy_header(n, 5)}
    passed = 0
    for bit in range(8 * 128):
        raw = bytearray(good)
        raw[bit // 8] ^= 1 << (bit % 8)
        data.write_bytes(bytes(raw))
        if bytes(raw[:128]) in valid:
            ma.open_store(out).verify()
            passed += 1
            continue
        with pytest.raises(ValueError, match=r"pending/embeddings\.npy"):
            ma.open_store(out).verify()
    assert passed <= 1
    data.write_bytes(good)
    assert ma.embed(_mols(11), Rows(), out, chunk_size=4, resume=True).shape == (11, 5)


@pytest.mark.parametrize("keep", [0, 1, 5, 9, 64, 127, 128, 129, -1])
def test_truncations_are_value_errors(finished, keep):
    for name in ("embeddings.npy", "manifest.json", "ids.txt"):
        path = finished / name
        good = path.read_bytes()
        cut = good[:keep] if keep >= 0 else good[:-1]
        if cut == good:
            continue
        path.write_bytes(cut)
        with pytest.raises(ValueError, match=rf"{name.replace('.', '[.]')}"):
            ma.open_store(finished, verify=False)
        path.write_bytes(good)


# ------------------------------------------------------------------------------ the manifest

def test_deeply_nested_manifest_is_a_value_error_not_recursion(finished):
    path = finished / "manifest.json"
    for depth in (65, 10_000, 1_000_000):
        path.write_text("[" * depth + "]" * depth)
        with pytest.raises(ValueError, match=r"manifest\.json' is not valid JSON "
                                             r"\(ValueError: nested deeper than 64"):
            ma.open_store(finished)
    # brackets inside strings do not count
    assert store_mod._json_depth('{"a": "[[[[[[[["}') == 1


@pytest.mark.parametrize("field, value", [
    ("model", "chgnet-0.3.0"), ("dtype", "float64"), ("pooling", "max"), ("layer", "-2"),
    ("adapter", {"adapter": "other"}), ("dataset", {"name": "else"}), ("batch_size", 99),
    ("matalign_version", "0.0.1"), ("device", "cuda"), ("n_records_hint", 7)])
def test_every_descriptive_field_is_covered_by_the_checksum(finished, field, value):
    path = finished / "manifest.json"
    manifest = json.loads(path.read_text())
    assert manifest["checksum"].startswith("sha256:")
    manifest[field] = value
    path.write_bytes(store_mod._json_bytes(manifest))        # the canonical form, edited
    with pytest.raises(ValueError, match=r"manifest\.json' fails its checksum \(a SHA-256 over "
                                         r"all its fields\): the file is corrupt or was edited"):
        ma.open_store(finished, verify=False)


def test_removed_checksum_and_every_bit_flip_of_the_manifest(finished):
    path = finished / "manifest.json"
    good = path.read_bytes()
    manifest = json.loads(good)
    del manifest["checksum"]
    path.write_bytes(store_mod._json_bytes(manifest))
    with pytest.raises(ValueError, match=r"manifest\.json' has no checksum"):
        ma.open_store(finished, verify=False)
    step = max(1, len(good) * 8 // 1500)                 # about 1500 flips spread over it
    for bit in range(0, 8 * len(good), step):
        raw = bytearray(good)
        raw[bit // 8] ^= 1 << (bit % 8)
        path.write_bytes(bytes(raw))
        with pytest.raises(ValueError, match=r"manifest\.json'"):
            ma.open_store(finished, verify=False)
    path.write_bytes(good.replace(b"\n", b"\r\n", 1))      # even whitespace is checked
    with pytest.raises(ValueError, match=r"manifest\.json' is not byte for byte the JSON a "
                                         r"store writes"):
        ma.open_store(finished, verify=False)
    path.write_bytes(good)


def test_pending_header_is_checksummed(tmp_path):
    out = tmp_path / "p"
    with pytest.raises(KeyboardInterrupt):
        ma.embed(_mols(11), Rows(fail_after=8), out, chunk_size=4)
    path = out / "pending" / "header.json"
    header = json.loads(path.read_text())
    header["pooling"] = "sum"
    path.write_bytes(store_mod._json_bytes(header))
    with pytest.raises(ValueError, match=r"header\.json' fails its checksum"):
        ma.embed(_mols(11), Rows(), out, chunk_size=4, resume=True)
    path.write_text("[" * 5000 + "]" * 5000)
    with pytest.raises(ValueError, match=r"header\.json' is not valid JSON"):
        ma.embed(_mols(11), Rows(), out, chunk_size=4, resume=True)


def test_version_1_stores_still_open(finished):
    path = finished / "manifest.json"
    manifest = json.loads(path.read_text())
    del manifest["checksum"]
    manifest["format_version"] = 1
    path.write_bytes(store_mod._json_bytes(manifest))
    s = ma.open_store(finished)
    assert s.shape == (11, 5) and "checksum" not in s.metadata


# ------------------------------------------------------------- resume reads only what is left

class Counting(Dataset):
    """A seekable generator that counts the records it builds."""

    name = "counting"
    modality = ("smiles",)

    def __init__(self, n):
        self.n = n
        self.built = 0

    @property
    def seekable(self):
        return True

    def _one(self, i):
        self.built += 1
        return Structure(f"c{i}", smiles="C" * (i % 5 + 1))

    def __iter__(self):
        return self.iter_from(0)

    def iter_from(self, start):
        return (self._one(i) for i in range(start, self.n))

    def __len__(self):
        return self.n

    @property
    def metadata(self):
        return {"name": self.name, "n": self.n}


def _interrupted(out, data, n_done_chunks, chunk, modality="smiles"):
    with pytest.raises(KeyboardInterrupt):
        ma.embed(data, Rows(modality, fail_after=n_done_chunks * chunk), out, chunk_size=chunk,
                 batch_size=chunk)
    return ma.open_store(out).n_chunks


def test_resume_reads_only_the_remaining_records(tmp_path, capsys):
    chunk, n = 10, 600
    data = Counting(n)
    assert _interrupted(tmp_path / "s", data, 46, chunk) == 46
    data.built = 0
    store = ma.embed(data, Rows(), tmp_path / "s", chunk_size=chunk, batch_size=chunk,
                     resume=True, progress=True)
    # 140 remaining records + the last finished one, whose id is checked
    assert data.built == n - 46 * chunk + 1
    assert store.resumed_chunks == 46
    err = capsys.readouterr().err
    assert "skipped 46 finished chunk(s) (460 structures) without reading them" in err
    ref = ma.embed(Counting(n), Rows(), tmp_path / "ref", chunk_size=chunk, batch_size=chunk)
    assert np.array_equal(store.embeddings, ref.embeddings) and store.ids == ref.ids
    # a finished store: resume reads one record (and checks none follow)
    data.built = 0
    again = ma.embed(data, Rows(), tmp_path / "s", chunk_size=chunk, batch_size=chunk,
                     resume=True)
    assert data.built == 1 and again.shape == (n, 5)


def test_resume_notices_a_changed_dataset_at_the_seam(tmp_path):
    _interrupted(tmp_path / "s", Counting(100), 3, 10)

    class Renamed(Counting):
        def _one(self, i):
            s = super()._one(i)
            return Structure(f"z{i}", smiles=s.smiles)

    with pytest.raises(ValueError, match=r"the dataset changed since .*: record 29 \(chunk 2\) "
                                         r"has id 'z29' but the store recorded 'c29'"):
        ma.embed(Renamed(100), Rows(), tmp_path / "s", chunk_size=10, batch_size=10,
                 resume=True)
    class Shorter(Counting):
        def iter_from(self, start):
            return (self._one(i) for i in range(start, 20))

    with pytest.raises(ValueError, match=r"it now ends before structure 29, but the store has "
                                         r"30 committed"):
        ma.embed(Shorter(100), Rows(), tmp_path / "s", chunk_size=10, batch_size=10,
                 resume=True)


def test_resume_seeks_in_files_and_generators(tmp_path, monkeypatch):
    # extxyz: frames before the seam are skipped unparsed; the built Structures are counted.
    frames = [bulk("Cu", a=3.6 + 0.001 * i) for i in range(200)]
    path = tmp_path / "big.extxyz"
    write(path, frames, format="extxyz")
    built = []
    real_init = Structure.__init__

    def counting_init(self, *a, **k):
        built.append(a[0] if a else k.get("id"))
        real_init(self, *a, **k)

    for data, out in ((lambda: mds.open(path), "x"),
                      (lambda: mds.synthetic_crystals(200, seed=1), "g")):
        _interrupted(tmp_path / out, data(), 15, 10, modality="atoms")
        monkeypatch.setattr(Structure, "__init__", counting_init)
        built.clear()
        store = ma.embed(data(), Rows("atoms"), tmp_path / out, chunk_size=10, batch_size=10,
                         resume=True)
        monkeypatch.setattr(Structure, "__init__", real_init)
        assert len(built) == 200 - 150 + 1, (out, len(built))
        ref = ma.embed(data(), Rows("atoms"), tmp_path / f"{out}-ref", chunk_size=10,
                       batch_size=10)
        assert store.ids == ref.ids and np.array_equal(store.embeddings, ref.embeddings)


@pytest.mark.parametrize("start", [0, 1, 7, 19, 20, 25])
def test_iter_from_equals_islice(tmp_path, start):
    from itertools import islice
    from ase.db import connect

    xyz = tmp_path / "a.extxyz"
    write(xyz, [bulk("Cu", a=3.6 + 0.01 * i) for i in range(20)], format="extxyz")
    smi = tmp_path / "m.smi"
    smi.write_text("smiles name\n" + "".join(f"{'C' * (i % 4 + 1)} n{i}\n# c\n\n"
                                              for i in range(20)))
    db = tmp_path / "d.db"
    con = connect(str(db))
    for i in range(20):
        con.write(bulk("Cu", a=3.6 + 0.01 * i))
    sources = [mds.open(xyz), mds.open(smi), mds.open(db),
               mds.synthetic_crystals(20, seed=3),
               mds.crystal_ladder(mds.open(xyz), kind="rattle", levels=(0, 0.1),
                                  n_per_level=2)]
    for ds in sources:
        assert ds.seekable
        want = [s.id for s in islice(iter(ds), start, None)]
        got = [s.id for s in ds.iter_from(start)]
        assert got == want, (ds, start)
    with pytest.raises(ValueError, match="start must be >= 0"):
        list(mds.open(xyz).iter_from(-1))


def test_resume_timing(tmp_path):
    """Resume after 46 of 60 chunks takes a fraction of a full run (printed for the report)."""
    slow = 0.002

    class Slow(Counting):
        def _one(self, i):
            time.sleep(slow)          # stands for parsing a record
            return super()._one(i)

    chunk = 20
    t0 = time.perf_counter()
    ma.embed(Slow(60 * chunk), Rows(), tmp_path / "full", chunk_size=chunk, batch_size=chunk)
    full = time.perf_counter() - t0
    _interrupted(tmp_path / "s", Slow(60 * chunk), 46, chunk)
    t0 = time.perf_counter()
    ma.embed(Slow(60 * chunk), Rows(), tmp_path / "s", chunk_size=chunk, batch_size=chunk,
             resume=True)
    resumed = time.perf_counter() - t0
    print(f"full {full:.3f}s, resume after 46/60 chunks {resumed:.3f}s "
          f"({resumed / full:.2f} of full)")
    assert resumed < 0.5 * full
