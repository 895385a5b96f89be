"""File readers: each streams Structures from one file with stable ids ``"<stem>:<index>"``."""

from __future__ import annotations

import csv
from builtins import list as builtins_list
import io
import json
import zlib
from pathlib import Path
from typing import Any, Iterator

from ..structures import Structure
from ._chem import embed_conformers, mol_to_atoms, parse_smiles, quiet_rdkit
from ._common import (BadRecord, RecordDataset, check_file, file_error, is_file_error,
                      json_scalars, open_text, require, stem_of, strip_compression)

__all__ = ["FORMATS", "format_for", "open_file", "ExtxyzReader", "AseReader", "AseDbReader",
           "AseLmdbReader", "SmilesReader", "CsvReader", "SdfReader", "BiotiteReader",
           "FastaReader"]


class _FileDataset(RecordDataset):
    format = "?"

    def __init__(self, path, *, skip_bad=False, id_prefix=None, warn_skips=True, **options):
        super().__init__(path, skip_bad=skip_bad, warn_skips=warn_skips)
        self.id_prefix = id_prefix if id_prefix is not None else stem_of(self.path)
        self.name = self.id_prefix
        self.options = options

    def _id(self, key) -> str:
        return f"{self.id_prefix}:{key}"

    @property
    def metadata(self) -> dict[str, Any]:
        return {"name": self.name, "modality": list(self.modality), "source": "file",
                "file": str(self.path), "format": self.format,
                "options": json_scalars({**self.options, "skip_bad": self.skip_bad}),
                "id_scheme": f"{self.id_prefix}:<index>"}


# --------------------------------------------------------------------------- atoms formats

class ExtxyzReader(_FileDataset):
    """Extended XYZ (also plain XYZ), optionally gz/bz2/xz-compressed; frames split lazily.

    Each frame is parsed on its own, so a bad frame can be skipped with ``skip_bad=True``
    (a bad atom-count line cannot be resynchronised and always raises).
    """

    format = "extxyz"
    modality = ("atoms",)
    _seekable = True

    def _open(self):
        return open_text(self.path)

    def _records(self, start=0):
        extxyz = require("ase.io.extxyz", "reading extxyz files")
        with self._open() as fh:
            index = 0
            lineno = 0
            while index < start:  # skip whole frames by their atom-count lines, unparsed
                first = fh.readline()
                if not first:
                    return
                lineno += 1
                if not first.strip():
                    continue
                try:
                    natoms = int(first.split()[0])
                except ValueError:
                    raise ValueError(
                        f"{self.path}: cannot read record {index} (line {lineno}): expected an "
                        f"atom count, got {first.strip()[:60]!r}; cannot resynchronise") from None
                for _ in range(natoms + 1):
                    if not fh.readline():
                        return
                    lineno += 1
                index += 1
            while True:
                first = fh.readline()
                if not first:
                    return
                lineno += 1
                if not first.strip():
                    continue
                start = lineno
                try:
                    natoms = int(first.split()[0])
                    if natoms < 0:
                        raise ValueError
                except ValueError:
                    raise ValueError(
                        f"{self.path}: cannot read record {index} (line {start}): expected an "
                        f"atom count, got {first.strip()[:60]!r}; cannot resynchronise") from None
                lines = [first]
                for _ in range(natoms + 1):
                    ln = fh.readline()
                    if not ln:
                        break
                    lineno += 1
                    lines.append(ln)
                if len(lines) < natoms + 2:
                    yield BadRecord(index, start, f"truncated frame: expected {natoms} atoms")
                    return
                try:
                    atoms = next(extxyz.read_xyz(io.StringIO("".join(lines)), 0))
                    info = json_scalars(atoms.info)
                    calc = atoms.calc
                    if calc is not None and "energy" in getattr(calc, "results", {}):
                        info.setdefault("energy", float(calc.results["energy"]))
                    yield Structure(self._id(index), atoms=atoms, info=info)
                except Exception as exc:  # noqa: BLE001 - reported with file and record
                    yield BadRecord(index, start, f"{type(exc).__name__}: {exc}")
                index += 1


class AseReader(_FileDataset):
    """Any format ``ase.io.iread`` reads (CIF, POSCAR, traj, ...).

    ASE's reader cannot resume after a bad frame, so an unreadable frame raises even with
    ``skip_bad=True``.
    """

    format = "ase"
    modality = ("atoms",)

    def _records(self):
        aseio = require("ase.io", "reading structure files")
        fmt = self.options.get("ase_format")
        it = aseio.iread(str(self.path), index=":", format=fmt)
        index = 0
        while True:
            try:
                atoms = next(it)
            except StopIteration:
                return
            except Exception as exc:  # noqa: BLE001
                raise ValueError(f"{self.path}: cannot read record {index}: "
                                 f"{type(exc).__name__}: {exc} (ASE cannot resume after it)"
                                 ) from exc
            try:
                yield Structure(self._id(index), atoms=atoms, info=json_scalars(atoms.info))
            except ValueError as exc:  # parsed, but not a usable structure (check_atoms)
                yield BadRecord(index, None, str(exc))
            index += 1


class AseDbReader(_FileDataset):
    """ASE database (``.db`` SQLite); ids ``"<stem>:<row id>"``; ``select=`` passes a query."""

    format = "asedb"
    modality = ("atoms",)

    def _connect(self):
        db = require("ase.db", "reading ASE databases")
        return db.connect(str(self.path), type="db", create_indices=False)

    def __len__(self):
        try:
            return self._connect().count(self.options.get("select"))
        except Exception as exc:
            if is_file_error(exc):
                raise file_error(self.path, exc) from exc
            raise

    _seekable = True

    def _records(self, start=0):
        con = self._connect()
        rows = con.select(self.options.get("select"), offset=start) if start else \
            con.select(self.options.get("select"))
        for index, row in enumerate(rows, start):
            try:
                atoms = row.toatoms()
                info = json_scalars(row.get("key_value_pairs", {}))
                if row.get("energy") is not None:
                    info.setdefault("energy", float(row.energy))
                yield Structure(self._id(row.id), atoms=atoms, info=info)
            except Exception as exc:  # noqa: BLE001
                yield BadRecord(index, None, f"row id {row.id}: {type(exc).__name__}: {exc}")


class AseLmdbReader(_FileDataset):
    """ASE-LMDB (``.aselmdb``), the OMat24 / OMol25 / sAlex layout used by fairchem.

    One LMDB file (no sub-directory) whose keys are ASCII row ids ``b"1"``, ``b"2"``, ...
    holding zlib-compressed JSON row dicts (numbers, positions, cell, pbc, energy, forces,
    key_value_pairs, ...), plus the metadata keys ``nextid``, ``deleted_ids`` and ``metadata``.
    Rows are read in increasing id order; ids are ``"<stem>:<row id>"``.
    """

    format = "aselmdb"
    modality = ("atoms",)
    _RESERVED = (b"nextid", b"deleted_ids", b"metadata")

    def _env(self):
        lmdb = require("lmdb", "reading ASE-LMDB (.aselmdb) files")
        return lmdb.open(str(self.path), subdir=self.path.is_dir(), readonly=True, lock=False,
                         readahead=False, meminit=False)

    @staticmethod
    def _load(raw: bytes):
        return json.loads(zlib.decompress(raw))

    def _ids(self, txn) -> Iterator[int]:
        raw = txn.get(b"nextid")
        deleted = set()
        if txn.get(b"deleted_ids") is not None:
            deleted = set(self._load(txn.get(b"deleted_ids")))
        if raw is not None:
            for i in range(1, int(self._load(raw))):
                if i not in deleted:
                    yield i
            return
        keys = []  # no nextid: collect the integer keys (ids only, not the rows)
        with txn.cursor() as cur:
            for k in cur.iternext(keys=True, values=False):
                if k.isdigit():
                    keys.append(int(k))
        yield from sorted(set(keys) - deleted)

    def __len__(self):
        try:
            env = self._env()
        except Exception as exc:
            if is_file_error(exc):
                raise file_error(self.path, exc) from exc
            raise
        try:
            with env.begin() as txn:
                n = txn.stat()["entries"]
                return n - sum(txn.get(k) is not None for k in self._RESERVED)
        finally:
            env.close()

    _seekable = True

    def _records(self, start=0):
        ase_row = require("ase.db.row", "reading ASE-LMDB (.aselmdb) files")
        env = self._env()
        try:
            with env.begin() as txn:
                present = (rid for rid in self._ids(txn)
                           if txn.get(str(rid).encode("ascii")) is not None)
                for index, rid in enumerate(present):
                    if index < start:  # skipped without decoding (resume)
                        continue
                    raw = txn.get(str(rid).encode("ascii"))
                    try:
                        dct = self._load(raw)
                        dct["id"] = rid
                        row = ase_row.AtomsRow(dct)
                        atoms = row.toatoms()
                        info = json_scalars(dct.get("key_value_pairs", {}))
                        if dct.get("energy") is not None:
                            info.setdefault("energy", float(dct["energy"]))
                        yield Structure(self._id(rid), atoms=atoms, info=info)
                    except Exception as exc:  # noqa: BLE001
                        yield BadRecord(index, None,
                                        f"row id {rid}: {type(exc).__name__}: {exc}")
        finally:
            env.close()


# ------------------------------------------------------------------------ molecule formats

class _SmilesBase(_FileDataset):
    """Shared SMILES handling: validation with RDKit and optional 3D conformers."""

    def __init__(self, path, *, conformers=False, seed=0, validate=True, **kw):
        super().__init__(path, **kw)
        self.conformers = bool(conformers)
        self.seed = int(seed)
        self.validate = bool(validate)
        self.options.update(conformers=self.conformers, seed=self.seed, validate=validate)
        self.modality = ("atoms", "smiles") if self.conformers else ("smiles",)

    def _make(self, sid: str, smiles: str, info: dict) -> Structure:
        if not smiles:
            raise ValueError("empty SMILES")
        if not (self.validate or self.conformers):
            return Structure(sid, smiles=smiles, info=info)
        mol = parse_smiles(smiles)
        atoms = None
        if self.conformers:
            molh, ids = embed_conformers(mol, 1, self.seed, sid)
            atoms = mol_to_atoms(molh, ids[0])
        return Structure(sid, atoms=atoms, smiles=smiles, info=info)


class SmilesReader(_SmilesBase):
    """``.smi``: one SMILES per line, optional name column (whitespace-separated).

    Blank lines and ``#`` comments are not records; a first line starting with ``smiles``
    (any case) is a header. ``info["name"]`` holds the name column.
    """

    format = "smi"
    _seekable = True

    def _records(self, start=0):
        with open_text(self.path) as fh:
            index = 0
            header = True
            for lineno, line in enumerate(fh, 1):
                text = line.strip()
                if not text or text.startswith("#"):
                    continue
                parts = text.split(None, 1)
                if header:
                    header = False
                    if parts[0].lower() == "smiles":
                        continue
                if index < start:  # skipped unparsed (resume)
                    index += 1
                    continue
                info = {"name": parts[1].strip()} if len(parts) > 1 else {}
                try:
                    yield self._make(self._id(index), parts[0], info)
                except Exception as exc:  # noqa: BLE001
                    yield BadRecord(index, lineno, str(exc))
                index += 1


class CsvReader(_SmilesBase):
    """CSV/TSV with a SMILES column: ``smiles_column=`` (name or 0-based index; default: the
    column named 'smiles' in any case), ``header=True``, ``delimiter=`` (``,``; tab for .tsv).
    Other columns go to ``info`` (as strings); ``name_column=`` (name or index) is stored as
    ``info["name"]``.
    """

    format = "csv"

    def __init__(self, path, *, smiles_column=None, name_column=None, header=True,
                 delimiter=None, **kw):
        super().__init__(path, **kw)
        self.smiles_column = smiles_column
        self.name_column = name_column
        self.header = bool(header)
        if delimiter is None:
            delimiter = "\t" if strip_compression(self.path)[0].lower().endswith(".tsv") else ","
        self.delimiter = delimiter
        self.options.update(smiles_column=smiles_column, name_column=name_column, header=header,
                            delimiter=delimiter)

    def _column(self, names: list[str] | None) -> int:
        col = self.smiles_column
        if isinstance(col, int):
            return col
        if names is None:
            if col is None:
                return 0
            raise ValueError(f"smiles_column={col!r} names a column but header=False; "
                             "pass a 0-based column index")
        if col is None:
            for i, n in enumerate(names):
                if n.strip().lower() == "smiles":
                    return i
            raise ValueError(f"{self.path}: no SMILES column among {names}; "
                             "pass smiles_column=<name or index>")
        if col not in names:
            raise ValueError(f"{self.path}: smiles_column={col!r} not among columns {names}")
        return names.index(col)

    def _records(self):
        with open_text(self.path) as fh:
            reader = csv.reader(fh, delimiter=self.delimiter)
            names = None
            if self.header:
                try:
                    names = next(reader)
                except StopIteration:
                    return
            ci = self._column(names)
            if (self.name_column is not None and not isinstance(self.name_column, int)
                    and (names is None or self.name_column not in names)):
                raise ValueError(f"{self.path}: name_column={self.name_column!r} not among "
                                 f"columns {names}")
            index = 0
            for row in reader:
                if not row or not any(c.strip() for c in row):
                    continue
                lineno = reader.line_num
                try:
                    if ci >= len(row):
                        raise ValueError(f"row has {len(row)} columns, SMILES column is {ci}")
                    keys = names if names is not None else [f"col{i}" for i in range(len(row))]
                    if self.name_column is not None:
                        keys = builtins_list(keys)
                        ni = (self.name_column if isinstance(self.name_column, int)
                              else keys.index(self.name_column))
                        if ni < len(keys):
                            keys[ni] = "name"
                    info = {k: v for i, (k, v) in enumerate(zip(keys, row)) if i != ci}
                    yield self._make(self._id(index), row[ci].strip(), info)
                except Exception as exc:  # noqa: BLE001
                    yield BadRecord(index, lineno, str(exc))
                index += 1


class SdfReader(_FileDataset):
    """SDF (RDKit): SMILES for every record, plus ``ase.Atoms`` when the record has 3D
    coordinates; the molecule name and SD properties go to ``info``."""

    format = "sdf"
    modality = ("atoms", "smiles")

    def _records(self):
        Chem = require("rdkit.Chem", "reading SDF files")
        _, comp = strip_compression(self.path)
        raw = open(self.path, "rb") if not comp else _binary(self.path, comp)
        with raw:
            with quiet_rdkit():
                supplier = Chem.ForwardSDMolSupplier(raw, removeHs=False)
                for index, mol in enumerate(supplier):
                    if mol is None:
                        yield BadRecord(index, None, "RDKit cannot parse this SDF record")
                        continue
                    try:
                        info = json_scalars(mol.GetPropsAsDict())
                        name = mol.GetProp("_Name") if mol.HasProp("_Name") else ""
                        if name:
                            info["name"] = name
                        smiles = Chem.MolToSmiles(Chem.RemoveHs(mol))
                        atoms = None
                        if mol.GetNumConformers() and mol.GetConformer().Is3D():
                            atoms = mol_to_atoms(mol)
                        yield Structure(self._id(index), atoms=atoms, smiles=smiles, info=info)
                    except Exception as exc:  # noqa: BLE001
                        yield BadRecord(index, None, f"{type(exc).__name__}: {exc}")


def _binary(path: Path, comp: str):
    import bz2
    import gzip
    import lzma

    return {".gz": gzip.open, ".bz2": bz2.open, ".xz": lzma.open}[comp](path, "rb")


# ------------------------------------------------------------------------- protein formats

_AA3 = None


def _three_to_one(name: str) -> str:
    global _AA3
    if _AA3 is None:
        seq = require("biotite.sequence", "reading protein structures")
        _AA3 = seq.ProteinSequence.convert_letter_3to1
    try:
        return _AA3(name)
    except Exception:  # noqa: BLE001 - non-standard residue
        return "X"


class BiotiteReader(_FileDataset):
    """PDB / mmCIF / BinaryCIF via biotite (first model).

    ``per="chain"`` (default) yields one Structure per chain, id ``"<stem>:<chain>"``;
    ``per="file"`` yields one for the whole file, id ``"<stem>"``. Atoms exclude water;
    ``sequence`` is the one-letter sequence of the amino-acid residues (``X`` for
    non-standard ones), or None for a chain without any.
    """

    format = "pdb"
    modality = ("atoms", "sequence")

    def __init__(self, path, *, per="chain", **kw):
        if per not in ("chain", "file"):
            raise ValueError(f"per must be 'chain' or 'file', got {per!r}")
        super().__init__(path, **kw)
        self.per = per
        self.options["per"] = per

    def __len__(self):
        if self.per == "file":
            return 1
        raise TypeError(f"dataset {self.name!r} does not know its length without reading it")

    def _load(self):
        struc = require("biotite.structure", "reading protein structures")
        bio_io = require("biotite.structure.io", "reading protein structures")
        name, comp = strip_compression(self.path)
        ext = Path(name).suffix.lower()
        if comp:
            import tempfile

            # biotite picks the parser from the suffix: decompress to a temporary file.
            with _binary(self.path, comp) as src, tempfile.NamedTemporaryFile(
                    suffix=ext, delete=False) as dst:
                dst.write(src.read())
            try:
                arr = bio_io.load_structure(dst.name, model=1)
            finally:
                Path(dst.name).unlink(missing_ok=True)
        else:
            arr = bio_io.load_structure(str(self.path), model=1)
        return struc, arr[~struc.filter_solvent(arr)]

    def _make(self, struc, arr, sid):
        ase = require("ase", "building ase.Atoms")
        symbols = [e.capitalize() if e else "X" for e in arr.element]
        atoms = ase.Atoms(symbols=symbols, positions=arr.coord.astype(float), pbc=False)
        aa = arr[struc.filter_amino_acids(arr)]
        seq = None
        if aa.array_length():
            _, names = struc.get_residues(aa)
            seq = "".join(_three_to_one(n) for n in names)
        info = {"chain": ",".join(sorted(set(arr.chain_id.tolist())))}
        return Structure(sid, atoms=atoms, sequence=seq, info=info)

    def _records(self):
        try:
            struc, arr = self._load()
        except Exception as exc:  # noqa: BLE001
            yield BadRecord(0, None, f"{type(exc).__name__}: {exc}")
            return
        if self.per == "file":
            try:
                yield self._make(struc, arr, self.id_prefix)
            except Exception as exc:  # noqa: BLE001
                yield BadRecord(0, None, f"{type(exc).__name__}: {exc}")
            return
        seen: dict[str, int] = {}
        chains = list(dict.fromkeys(arr.chain_id.tolist()))
        for index, chain in enumerate(chains):
            key = chain or "_"
            seen[key] = seen.get(key, 0) + 1
            sid = self._id(key if seen[key] == 1 else f"{key}#{seen[key]}")
            try:
                yield self._make(struc, arr[arr.chain_id == chain], sid)
            except Exception as exc:  # noqa: BLE001
                yield BadRecord(index, None, f"chain {chain!r}: {type(exc).__name__}: {exc}")


_SEQ_OK = set("ACDEFGHIKLMNPQRSTVWYBZXUOJ*-")


class FastaReader(_FileDataset):
    """FASTA: one Structure per record with ``sequence``; ``info["name"]`` is the header's
    first word and ``info["description"]`` the rest. Streamed line by line."""

    format = "fasta"
    modality = ("sequence",)

    def _records(self):
        with open_text(self.path) as fh:
            index, header, start, chunks = 0, None, None, []

            def emit():
                name, _, desc = header.partition(" ")
                seq = "".join(chunks).upper()
                bad = sorted(set(seq) - _SEQ_OK)
                if not seq:
                    return BadRecord(index, start, "empty sequence")
                if bad:
                    return BadRecord(index, start, f"invalid sequence characters {bad}")
                return Structure(self._id(index), sequence=seq.rstrip("*"),
                                 info={"name": name, "description": desc.strip()})

            for lineno, line in enumerate(fh, 1):
                text = line.strip()
                if not text or text.startswith(";"):
                    continue
                if text.startswith(">"):
                    if header is not None:
                        yield emit()
                        index += 1
                    header, start, chunks = text[1:].strip(), lineno, []
                elif header is None:
                    yield BadRecord(index, lineno, "sequence data before the first '>' header")
                    return
                else:
                    chunks.append(text.replace(" ", ""))
            if header is not None:
                yield emit()


# ------------------------------------------------------------------------------- dispatch

FORMATS = {
    "extxyz": ExtxyzReader, "xyz": ExtxyzReader, "ase": AseReader, "asedb": AseDbReader,
    "db": AseDbReader, "aselmdb": AseLmdbReader, "lmdb": AseLmdbReader, "smi": SmilesReader,
    "smiles": SmilesReader, "csv": CsvReader, "tsv": CsvReader, "sdf": SdfReader,
    "pdb": BiotiteReader, "cif": BiotiteReader, "mmcif": BiotiteReader,
    "bcif": BiotiteReader, "fasta": FastaReader,
}

_EXTENSIONS = {
    ".xyz": "extxyz", ".extxyz": "extxyz", ".db": "asedb", ".aselmdb": "aselmdb",
    ".lmdb": "aselmdb", ".smi": "smi", ".smiles": "smi", ".csv": "csv", ".tsv": "csv",
    ".sdf": "sdf", ".sd": "sdf", ".mol": "sdf", ".pdb": "pdb", ".ent": "pdb", ".cif": "cif",
    ".mmcif": "cif", ".pdbx": "cif", ".bcif": "bcif", ".fasta": "fasta", ".fa": "fasta",
    ".faa": "fasta", ".fas": "fasta",
}


def format_for(path: Path) -> str:
    """Format name chosen from the file extension (compression suffix ignored); 'ase' else."""
    name, _ = strip_compression(path)
    return _EXTENSIONS.get(Path(name).suffix.lower(), "ase")


_MMCIF_MARKERS = ("_atom_site.", "_entity_poly", "_struct_asym.", "_pdbx_")


def cif_kind(path: Path) -> str:
    """'mmcif' when a ``.cif`` file is a macromolecular mmCIF (PDBx: ``_atom_site.`` items),
    else 'crystal' (a small-molecule/crystal CIF: ``_cell_length_a``, ``_atom_site_fract_x``).

    Only the first 256 kB are read; a crystal CIF is read by ASE (periodic, with its cell),
    an mmCIF by biotite.
    """
    with open_text(path) as fh:
        head = fh.read(1 << 18)
    for line in head.splitlines():
        if line.lstrip().lower().startswith(_MMCIF_MARKERS):
            return "mmcif"
    return "crystal"


def open_file(path, *, format=None, skip_bad=False, **options):
    p = check_file(path, "path")
    fmt = format if format is not None else format_for(p)
    if isinstance(fmt, str) and fmt.lower() == "cif" and p.is_file():
        try:
            kind = cif_kind(p)
        except Exception as exc:
            if is_file_error(exc):
                raise file_error(p, exc) from exc
            raise
    if isinstance(fmt, str) and fmt.lower() == "cif" and p.is_file() and kind == "crystal":
        fmt = "ase"
        options.setdefault("ase_format", "cif")
    if not isinstance(fmt, str) or fmt.lower() not in FORMATS:
        raise ValueError(f"format must be one of {sorted(FORMATS)} or None, got {fmt!r}")
    cls = FORMATS[fmt.lower()]
    if cls is AseReader and format is not None and fmt.lower() != "ase":
        options.setdefault("ase_format", fmt)
    try:
        return cls(p, skip_bad=skip_bad, **options)
    except TypeError as exc:
        raise TypeError(f"{cls.__name__} (format {fmt!r}): {exc}") from None
