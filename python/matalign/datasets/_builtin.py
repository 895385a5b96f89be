"""Built-in structure sets: what ships with matalign and with installed packages (offline)."""

from __future__ import annotations

import io
import os
import re
import tarfile
from importlib import resources
from pathlib import Path
from typing import Iterator

from ..structures import Structure
from ._base import Dataset
from ._chem import quiet_rdkit
from ._common import BadRecord, RecordDataset, json_scalars, require
from ._readers import CsvReader, ExtxyzReader, SmilesReader

__all__ = ["mptrj", "mattersim_full", "ccd", "rdkit_smiles", "ase_collection",
           "MATTERSIM_SUBSETS", "MATTERSIM_DOWNLOAD"]

MPTRJ_FILE = "mptrj_slice.extxyz.gz"
MPTRJ_N = 300
MPTRJ_ATTRIBUTION = (
    "300 crystals (150 MPtrj + 150 Alexandria, <= 64 atoms, seed 0) from the benchmark files of "
    "mattersim 1.2.3 (MIT, Microsoft). MPtrj: Deng et al., Nat. Mach. Intell. 5, 1031 (2023), "
    "CC-BY 4.0. Alexandria: Schmidt et al., Adv. Mater. 35, 2210788 (2023) and Mater. Today "
    "Phys. 48, 101560 (2024), CC-BY 4.0. See matalign/data/README.md.")

MATTERSIM_SUBSETS = {"mptrj-random-1k": 1000, "mptrj-highest-stress-1k": 1000,
                     "alexandria-random-1k": 1000, "mpf-TP": 1069, "mpf-alkali-TP": 460,
                     "random-TP": 693}
MATTERSIM_DOWNLOAD = ("pip download --no-deps --no-binary mattersim mattersim==1.2.3 -d DIR "
                      "&& tar xzf DIR/mattersim-1.2.3.tar.gz -C DIR")


def _data_path(name: str) -> Path:
    ref = resources.files("matalign") / "data" / name
    with resources.as_file(ref) as p:
        path = Path(p)
    if not path.exists():
        raise FileNotFoundError(f"matalign data file {name!r} is missing from the installation "
                                f"(expected at {path})")
    return path


class _Extxyz(ExtxyzReader):
    """Extxyz reader with a fixed name, known length and extra metadata (built-ins)."""

    def __init__(self, path, *, name, n, meta, **kw):
        super().__init__(path, **kw)
        self.name, self._n, self._meta = name, n, meta

    def __len__(self):
        return self._n

    @property
    def metadata(self):
        meta = super().metadata
        meta.update(self._meta)
        return meta


def mptrj() -> Dataset:
    path = _data_path(MPTRJ_FILE)
    meta = {"source": "matalign/data/" + MPTRJ_FILE, "attribution": MPTRJ_ATTRIBUTION,
            "licence": "CC-BY-4.0 (data)", "id_scheme": "mptrj:<index>"}
    return _Extxyz(path, id_prefix="mptrj", name="mptrj", n=MPTRJ_N, meta=meta)


class _MattersimFull(Dataset):
    """The 5,222 benchmark crystals of the mattersim 1.2.3 sdist, read from a local copy."""

    modality = ("atoms",)

    def __init__(self, path=None, subsets=None):
        env = os.environ.get("MATALIGN_MATTERSIM_DIR")
        if path is None and not env:
            raise FileNotFoundError(
                "mattersim-full reads the mattersim 1.2.3 source distribution from disk and never "
                "downloads it. Get it with:\n    " + MATTERSIM_DOWNLOAD + "\nthen pass "
                "path='DIR/mattersim-1.2.3' (or the .tar.gz) or set MATALIGN_MATTERSIM_DIR.")
        src = Path(path if path is not None else env).expanduser()
        if not src.exists():
            origin = "path" if path is not None else "MATALIGN_MATTERSIM_DIR"
            raise FileNotFoundError(f"{origin}: no such file or directory: {str(src)!r}. Get "
                                    f"the data with:\n    {MATTERSIM_DOWNLOAD}")
        if subsets is None:
            subsets = list(MATTERSIM_SUBSETS)
        elif isinstance(subsets, str):
            subsets = [subsets]
        bad = [s for s in subsets if s not in MATTERSIM_SUBSETS]
        if bad or not subsets:
            raise ValueError(f"subsets must name some of {list(MATTERSIM_SUBSETS)}, got {bad}")
        self.source, self.subsets = src, list(subsets)
        self.name = "mattersim-full"
        if src.is_dir():
            self._files = {}
            for s in self.subsets:
                cands = [src / f"{s}.xyz", src / "data" / "benchmarks" / f"{s}.xyz",
                         src / "mattersim-1.2.3" / "data" / "benchmarks" / f"{s}.xyz"]
                hit = next((c for c in cands if c.exists()), None)
                if hit is None:
                    raise FileNotFoundError(
                        f"path: {s}.xyz not found under {str(src)!r} (looked in "
                        f"{[str(c.parent) for c in cands]}). Get the data with:\n    "
                        f"{MATTERSIM_DOWNLOAD}")
                self._files[s] = hit
        elif tarfile.is_tarfile(src):
            self._files = None
        else:
            raise ValueError(f"path must be the mattersim sdist directory or .tar.gz, got "
                             f"{str(src)!r}")

    def __len__(self):
        return sum(MATTERSIM_SUBSETS[s] for s in self.subsets)

    def __iter__(self) -> Iterator[Structure]:
        if self._files is not None:
            for s in self.subsets:
                yield from ExtxyzReader(self._files[s], id_prefix=s)
            return
        with tarfile.open(self.source) as tar:
            members = {Path(m.name).stem: m for m in tar.getmembers()
                       if "/data/benchmarks/" in m.name and m.name.endswith(".xyz")}
            for s in self.subsets:
                if s not in members:
                    raise FileNotFoundError(f"path: {s}.xyz not in {str(self.source)!r}")
                reader = _TarExtxyz(self.source, tar, members[s], id_prefix=s)
                yield from reader

    @property
    def metadata(self):
        return {"name": self.name, "modality": list(self.modality),
                "source": "mattersim 1.2.3 sdist data/benchmarks", "file": str(self.source),
                "options": {"subsets": self.subsets}, "id_scheme": "<subset>:<index>",
                "attribution": "mattersim (MIT, Microsoft); MPtrj (Deng et al. 2023) and "
                               "Alexandria (Schmidt et al.) data, CC-BY 4.0",
                "licence": "CC-BY-4.0 (data)"}


class _TarExtxyz(ExtxyzReader):
    """Extxyz reader over one member of an open tar archive."""

    def __init__(self, path, tar, member, **kw):
        super().__init__(path, **kw)
        self._tar, self._member = tar, member

    def _open(self):
        return io.TextIOWrapper(self._tar.extractfile(self._member), encoding="utf-8")


def mattersim_full(path=None, *, subsets=None) -> Dataset:
    return _MattersimFull(path, subsets)


# --------------------------------------------------------------------------------- CCD (biotite)

#: One token of a chem_comp formula: an element symbol and its count ("C6", "H", "Cl2").
_FORMULA_TOKEN = re.compile(r"([A-Z][a-z]?)(\d*)")


class _Ccd(RecordDataset):
    """biotite's Chemical Component Dictionary as 3D molecules with SMILES."""

    modality = ("atoms", "smiles")

    def __init__(self, elements=None, max_atoms=None, n=None, min_atoms=1, hydrogens=True):
        super().__init__("biotite:components.bcif", skip_bad=True, warn_skips=False)
        ase = require("ase", "the ccd dataset")
        from ase.data import chemical_symbols

        if elements is not None:
            if isinstance(elements, str):
                elements = re.findall(r"[A-Z][a-z]?", elements)
            elements = set(elements)
            bad = sorted(e for e in elements if e not in chemical_symbols[1:])
            if bad or not elements:
                raise ValueError(f"elements must be element symbols like 'HCNO' or "
                                 f"['H', 'C'], got unknown {bad}")
        for nm, v in (("max_atoms", max_atoms), ("n", n), ("min_atoms", min_atoms)):
            if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < 1):
                raise ValueError(f"{nm} must be an int >= 1 or None, got {v!r}")
        self.elements = None if elements is None else sorted(elements)
        self.max_atoms, self.n, self.min_atoms = max_atoms, n, min_atoms
        self.hydrogens = bool(hydrogens)
        self.name = "ccd"
        self.n_filtered = 0
        self._ase = ase

    def __len__(self):
        raise TypeError("dataset 'ccd' does not know its length without reading it "
                        "(components without coordinates are skipped)")

    def length_hint(self):
        return self.n if self.n is not None else (None if self.elements or self.max_atoms
                                                  else 49196)

    def _records(self):
        info = require("biotite.structure.info", "the ccd dataset")
        bio_rdkit = require("biotite.interface.rdkit", "the ccd dataset")
        Chem = require("rdkit.Chem", "the ccd dataset")
        import numpy as np

        allowed = set(self.elements) if self.elements else None
        formulas = self._formulas()
        yielded = filtered = 0
        for index, code in enumerate(sorted(info.all_residues())):
            if self.n is not None and yielded >= self.n:
                break
            if self._fails_by_formula(formulas.get(code), allowed):
                # the same verdict as the atoms' below, without building the component
                # (biotite's residue() costs ~35 ms: the demo's 200 molecules took 35 s)
                filtered += 1
                self.n_filtered = filtered
                continue
            try:
                arr = info.residue(code)
            except Exception as exc:  # noqa: BLE001 - missing coordinates
                yield BadRecord(index, None, f"{code}: {exc}")
                continue
            if not self.hydrogens:
                arr = arr[arr.element != "H"]
            symbols = [e.capitalize() for e in arr.element]
            natoms = len(symbols)
            if (allowed is not None and not set(symbols) <= allowed) or natoms < self.min_atoms \
                    or (self.max_atoms is not None and natoms > self.max_atoms):
                filtered += 1
                self.n_filtered = filtered
                continue
            try:
                if np.isnan(arr.coord).any():
                    raise ValueError("missing coordinates")
                with quiet_rdkit():
                    mol = bio_rdkit.to_mol(arr, explicit_hydrogen=self.hydrogens)
                    Chem.AssignStereochemistryFrom3D(mol)
                    smiles = Chem.MolToSmiles(Chem.RemoveHs(mol))
                if not smiles:
                    raise ValueError("empty SMILES")
            except Exception as exc:  # noqa: BLE001
                yield BadRecord(index, None, f"{code}: {type(exc).__name__}: {exc}")
                continue
            atoms = self._ase.Atoms(symbols=symbols, positions=arr.coord.astype(float),
                                    pbc=False)
            yielded += 1
            yield Structure(f"ccd:{code}", atoms=atoms, smiles=smiles,
                            info={"code": code, "n_atoms": natoms})
        self.n_filtered = filtered

    @staticmethod
    def _formulas() -> dict:
        """{component code: its chem_comp formula} (e.g. "C2 H6 O"), or {} if biotite's
        CCD does not expose it (then every component is built and checked)."""
        try:
            from biotite.structure.info.ccd import get_ccd

            table = get_ccd()["chem_comp"]
            return dict(zip(table["id"].as_array().tolist(),
                            table["formula"].as_array().tolist()))
        except Exception:  # noqa: BLE001 - an older or newer biotite: no shortcut
            return {}

    def _fails_by_formula(self, formula, allowed) -> bool:
        """True when the component's formula alone shows it fails the element or atom-count
        filter (what the atoms would show: the formula lists every atom of the component,
        hydrogens included). A formula with anything but element tokens (a charge, a
        placeholder) decides nothing: the component is built and checked as usual."""
        if not formula:
            return False
        counts = {}
        for token in str(formula).split():
            m = _FORMULA_TOKEN.fullmatch(token)
            if m is None:
                return False
            counts[m.group(1)] = counts.get(m.group(1), 0) + int(m.group(2) or 1)
        if not self.hydrogens:
            counts.pop("H", None)
        natoms = sum(counts.values())
        return (allowed is not None and not set(counts) <= allowed) \
            or natoms < self.min_atoms \
            or (self.max_atoms is not None and natoms > self.max_atoms)

    @property
    def metadata(self):
        return {"name": "ccd", "modality": list(self.modality),
                "source": "biotite.structure.info (PDB Chemical Component Dictionary)",
                "options": {"elements": self.elements, "max_atoms": self.max_atoms, "n": self.n,
                            "min_atoms": self.min_atoms, "hydrogens": self.hydrogens},
                "id_scheme": "ccd:<component code>",
                "attribution": "wwPDB Chemical Component Dictionary via biotite",
                "licence": "public domain (wwPDB CCD)"}


def ccd(*, elements=None, max_atoms=None, n=None, min_atoms=1, hydrogens=True) -> Dataset:
    return _Ccd(elements=elements, max_atoms=max_atoms, n=n, min_atoms=min_atoms,
                hydrogens=hydrogens)


# ------------------------------------------------------------------------ RDKit SMILES sets

_RDKIT_SETS = {
    # name: (directory attr, relative path, reader kwargs, n lines, description, licence)
    "nci": ("RDDataDir", "NCI/first_5K.smi", {}, 4999,
            "NCI open database, first 5,000 SMILES (RDKit Data/NCI/first_5K.smi)",
            "public (NCI/DTP); shipped under RDKit's BSD licence"),
    "wehi": ("RDDataDir", "Pains/test_data/wehi_mols.csv",
             {"header": False, "smiles_column": 0, "name_column": 1}, 10000,
             "10,000 WEHI screening SMILES (RDKit Data/Pains/test_data/wehi_mols.csv)",
             "RDKit BSD-3-Clause (test data)"),
    "chembl": ("RDContribDir", "FreeWilson/data/CHEMBL2321810.smi", {}, 1017,
               "ChEMBL assay CHEMBL2321810 compounds (RDKit Contrib/FreeWilson)",
               "ChEMBL CC-BY-SA 3.0"),
}


class _Named:
    """Mixin: a fixed name, length and extra metadata for a built-in reader."""

    def _setup(self, name, n, meta):
        self.name, self._n, self._meta = name, n, meta

    def __len__(self):
        if self._n is None or self.skip_bad or self.conformers:
            raise TypeError(f"dataset {self.name!r} does not know its length without reading "
                            "it (unparsable or unembeddable SMILES are skipped)")
        return self._n

    def length_hint(self):
        return self._n

    @property
    def metadata(self):
        meta = super().metadata
        meta.update(self._meta)
        meta["name"] = self.name
        return meta


class _NamedSmi(_Named, SmilesReader):
    pass


class _NamedCsv(_Named, CsvReader):
    pass


def rdkit_smiles(name: str, *, conformers=False, seed=0, skip_bad=True) -> Dataset:
    RDConfig = require("rdkit.RDConfig", f"the {name} dataset")
    attr, rel, kw, n, desc, licence = _RDKIT_SETS[name]
    path = Path(getattr(RDConfig, attr)) / rel
    if not path.exists():
        raise FileNotFoundError(f"{name}: {path} is not in this RDKit installation")
    cls = _NamedCsv if path.suffix == ".csv" else _NamedSmi
    ds = cls(path, id_prefix=name, skip_bad=skip_bad, warn_skips=False, conformers=conformers,
             seed=seed, **kw)
    ds._setup(name, n, {"source": f"rdkit {attr}/{rel}", "description": desc,
                        "licence": licence, "attribution": desc,
                        "id_scheme": f"{name}:<record index>"})
    return ds


# ------------------------------------------------------------------------- ASE collections

class _AseCollection(Dataset):
    modality = ("atoms",)

    def __init__(self, name: str):
        require("ase.collections", f"the {name} dataset")
        self.name = name

    def _coll(self):
        import ase.collections

        return getattr(ase.collections, self.name)

    def __len__(self):
        return len(self._coll())

    def __iter__(self):
        coll = self._coll()
        for key in coll.names:
            atoms = coll[key]
            yield Structure(f"{self.name}:{key}", atoms=atoms,
                            info={"name": key, **json_scalars(atoms.info)})

    @property
    def metadata(self):
        return {"name": self.name, "modality": list(self.modality),
                "source": f"ase.collections.{self.name}", "id_scheme": f"{self.name}:<name>",
                "licence": "LGPL-2.1 (ASE)",
                "attribution": {"g2": "G2 test set (Curtiss et al. 1997) via ASE",
                                "s22": "S22 dimers (Jurecka et al. 2006) via ASE"
                                }.get(self.name, "ASE")}


def ase_collection(name: str) -> Dataset:
    return _AseCollection(name)
