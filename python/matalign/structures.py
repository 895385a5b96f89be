"""The one record type that flows from datasets through adapters into the store.

A :class:`Structure` carries a stable string id and whichever representations its source
has: 3D atoms (``ase.Atoms``), a SMILES string, a protein sequence. Adapters declare which
one they consume (``Adapter.modality``) and raise a clear error when it is missing.

Examples
--------
>>> from matalign.structures import Structure
>>> s = Structure("nci:00017", smiles="CCO")
>>> s.id, s.smiles, s.atoms is None
('nci:00017', 'CCO', True)
"""

from __future__ import annotations

import importlib
import math
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping

__all__ = ["Structure", "MODALITIES", "MAX_COORDINATE", "check_atoms", "as_structures",
           "iter_structures", "is_structure_like"]

#: What an adapter can consume from a :class:`Structure`.
MODALITIES = ("atoms", "smiles", "sequence")

#: Largest accepted absolute value of a Cartesian coordinate or cell-vector component, in Å.
#: Real structures stay far below it (a 1 µm box is 1e4 Å); larger values are corrupt input
#: (e.g. a 1e30 written for a missing value) and make native descriptor code misbehave.
MAX_COORDINATE = 1e6


@dataclass(frozen=True)
class Structure:
    """One structure with a stable id.

    Parameters
    ----------
    id : str
        Stable identifier, unique within its dataset (e.g. ``"mptrj-random-1k:17"``); the
        store records it and a resumed run checks it.
    atoms : ase.Atoms or None
        3D structure. Periodic crystals have ``pbc=True`` and a cell; molecules have
        ``pbc=False`` (adapters of periodic models put them in a box themselves).
    smiles : str or None
        SMILES string for molecules.
    sequence : str or None
        One-letter amino-acid sequence for proteins.
    info : Mapping
        Free metadata from the source (energies, formula, perturbation level, ...). Values
        must be JSON-serialisable scalars or strings.
    """

    id: str
    atoms: Any = None
    smiles: str | None = None
    sequence: str | None = None
    info: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not isinstance(self.id, str) or not self.id:
            raise ValueError(f"Structure.id must be a non-empty string, got {self.id!r}")
        if self.atoms is None and self.smiles is None and self.sequence is None:
            raise ValueError(f"Structure {self.id!r} has no atoms, smiles or sequence")
        if self.atoms is not None:
            check_atoms(self.atoms, f"structure {self.id!r}")

    def has(self, modality: str) -> bool:
        """True when this structure carries ``modality`` ('atoms', 'smiles' or 'sequence')."""
        if modality not in MODALITIES:
            raise ValueError(f"modality must be one of {MODALITIES}, got {modality!r}")
        return getattr(self, modality) is not None

    @property
    def kind(self) -> str:
        """'crystal' (periodic atoms), 'molecule' (non-periodic atoms or SMILES) or 'protein'."""
        if self.atoms is not None:
            return "crystal" if any(getattr(self.atoms, "pbc", (False,))) else "molecule"
        if self.smiles is not None:
            return "molecule"
        return "protein"


def _first_bad(values, limit: float) -> tuple[tuple[int, ...], float] | None:
    """Index and value of the first non-finite or too-large entry of an array, else None."""
    import numpy as np

    a = np.asarray(values, dtype=np.float64)
    if a.size == 0 or np.abs(a).max() <= limit:  # fast path; NaN compares False
        return None
    bad = ~np.isfinite(a) | (np.abs(np.nan_to_num(a, nan=0.0, posinf=0.0, neginf=0.0)) > limit)
    if not bad.any():
        return None
    idx = tuple(int(i) for i in np.argwhere(bad)[0])
    return idx, float(a[idx])


def check_atoms(atoms, where: str = "atoms") -> None:
    """Reject atoms that native descriptor or model code must never see.

    Positions and cell must be finite and no component may exceed :data:`MAX_COORDINATE`
    (1e6 Å) in absolute value. Called by :class:`Structure` on construction, by every file
    reader (which adds the file and record index) and by every adapter before a batch reaches
    third-party code (atoms can be changed in place after construction).

    Parameters
    ----------
    atoms : ase.Atoms-like
        Anything with ``get_positions()`` (and optionally ``cell``).
    where : str
        What to call it in the message (e.g. ``"structure 'x:3'"``).

    Raises
    ------
    ValueError
        Naming ``where``, the atom (or cell vector) and the value.

    Examples
    --------
    >>> from ase import Atoms
    >>> from matalign.structures import check_atoms
    >>> check_atoms(Atoms("H2", positions=[[0, 0, 0], [0, 0, float("nan")]]), "h2")
    Traceback (most recent call last):
    ...
    ValueError: h2: position of atom 1 is nan; positions must be finite
    """
    get_positions = getattr(atoms, "get_positions", None)
    if get_positions is None:
        raise TypeError(f"{where}: atoms must be an ase.Atoms, got {type(atoms).__name__}")
    positions = getattr(atoms, "positions", None)          # ase.Atoms: no copy
    checks = [("position of atom", get_positions() if positions is None else positions,
               "positions")]
    cell = getattr(atoms, "cell", None)
    if cell is not None:
        checks.append(("cell vector", getattr(cell, "array", cell), "cell"))
    for label, values, name in checks:
        hit = _first_bad(values, MAX_COORDINATE)
        if hit is None:
            continue
        (row, *_), value = hit
        if not math.isfinite(value):
            raise ValueError(f"{where}: {label} {row} is {value}; {name} must be finite")
        raise ValueError(f"{where}: {label} {row} has a component {value:.6g} Å; |{name}| above "
                         f"{MAX_COORDINATE:.0e} Å is not a structure (corrupt input?)")


_AMINO = frozenset("ACDEFGHIKLMNPQRSTVWYBXZUO")


def _import(module: str):
    try:
        return importlib.import_module(module)
    except ImportError as exc:  # pragma: no cover - optional dependency missing
        top = module.split(".")[0]
        raise ImportError(f"converting this object needs the {top!r} package: "
                          f"pip install {top}") from exc


def _from_rdkit(mol, sid: str) -> Structure:
    Chem = _import("rdkit.Chem")
    smiles = Chem.MolToSmiles(Chem.RemoveHs(mol)) or None
    atoms = None
    if mol.GetNumConformers() > 0 and mol.GetConformer().Is3D():
        ase = _import("ase")
        conf = mol.GetConformer()
        atoms = ase.Atoms(symbols=[a.GetSymbol() for a in mol.GetAtoms()],
                          positions=conf.GetPositions(), pbc=False)
    if atoms is None and smiles is None:
        raise ValueError(f"{sid}: the RDKit Mol has neither 3D coordinates nor a SMILES")
    name = mol.GetProp("_Name") if mol.HasProp("_Name") else ""
    return Structure(sid, atoms=atoms, smiles=smiles, info={"name": name} if name else {})


def _one(obj, sid: str, kind: str | None, where: str | None = None) -> Structure:
    if isinstance(obj, Structure):
        return obj
    if isinstance(obj, str):
        text = obj.strip()
        if not text:
            raise ValueError(f"{sid}: empty string (expected a SMILES or a protein sequence)")
        if kind == "sequence":
            if not set(text.upper()) <= _AMINO:
                raise ValueError(f"{sid}: {text[:40]!r} is not a one-letter amino-acid "
                                 f"sequence")
            return Structure(sid, sequence=text.upper())
        return Structure(sid, smiles=text)
    mod = type(obj).__module__ or ""
    if hasattr(obj, "get_positions") and hasattr(obj, "pbc"):          # ase.Atoms
        return Structure(sid, atoms=obj)
    if mod.startswith("pymatgen"):                                      # Structure/Molecule
        adaptor = _import("pymatgen.io.ase").AseAtomsAdaptor
        if type(obj).__name__ in ("Structure", "IStructure"):
            return Structure(sid, atoms=adaptor.get_atoms(obj),
                             info={"formula": obj.composition.reduced_formula})
        if type(obj).__name__ in ("Molecule", "IMolecule"):
            atoms = adaptor.get_atoms(obj)
            atoms.pbc = False
            return Structure(sid, atoms=atoms, info={"formula": obj.composition.formula})
    if mod.startswith("rdkit") and hasattr(obj, "GetAtoms"):            # RDKit Mol
        return _from_rdkit(obj, sid)
    if type(obj).__name__ == "ProteinSequence" or (mod.startswith("Bio") and
                                                   type(obj).__name__ == "Seq"):
        return _one(str(obj), sid, "sequence")
    raise TypeError(f"{where or sid} is a {type(obj).__name__}; expected a matalign Structure, "
                    f"ase.Atoms, pymatgen Structure/Molecule, RDKit Mol, a SMILES string or "
                    f"(kind='sequence') a protein sequence")


def as_structures(obj, *, kind: str | None = None, id_prefix: str = "input") -> list[Structure]:
    """Structures from what users hold: one object or a list of them.

    Accepted: :class:`Structure`; ``ase.Atoms`` (crystal when periodic, else molecule);
    pymatgen ``Structure`` (crystal) and ``Molecule``; RDKit ``Mol`` (3D coordinates when it
    has a 3D conformer, and its SMILES); strings, read as SMILES, or as one-letter protein
    sequences with ``kind='sequence'``; biotite ``ProteinSequence`` / Biopython ``Seq``.
    Atoms are checked with :func:`check_atoms`.

    Parameters
    ----------
    obj : object or iterable of objects
    kind : {None, 'smiles', 'sequence'}
        How to read strings (default: SMILES).
    id_prefix : str
        Ids are ``"<id_prefix>:<index>"`` (a Structure keeps its own id).

    Returns
    -------
    list of Structure

    Examples
    --------
    >>> from ase.build import bulk
    >>> from matalign.structures import as_structures
    >>> [s.kind for s in as_structures([bulk("Cu"), "CCO"])]
    ['crystal', 'molecule']
    >>> as_structures("MKTAYIAK", kind="sequence")[0].sequence
    'MKTAYIAK'
    """
    return list(iter_structures(obj, kind=kind, id_prefix=id_prefix))


def is_structure_like(obj) -> bool:
    """True for one structure as users hold it (not a collection of them)."""
    return (isinstance(obj, (str, Structure)) or hasattr(obj, "get_positions")
            or (type(obj).__module__ or "").startswith(("pymatgen", "rdkit", "biotite", "Bio")))


def iter_structures(obj, *, kind: str | None = None, id_prefix: str = "input"):
    """Lazy :func:`as_structures`: converts one item at a time (for long iterables)."""
    if kind not in (None, "smiles", "sequence"):
        raise ValueError(f"kind must be None, 'smiles' or 'sequence', got {kind!r}")
    if not isinstance(id_prefix, str) or not id_prefix:
        raise ValueError(f"id_prefix must be a non-empty string, got {id_prefix!r}")
    if is_structure_like(obj):
        yield _one(obj, f"{id_prefix}:0", kind)
        return
    if not isinstance(obj, Iterable):
        raise TypeError(f"structures must be a structure-like object or an iterable of them, "
                        f"got {type(obj).__name__}")
    for i, o in enumerate(obj):
        yield _one(o, f"{id_prefix}:{i}", kind, f"structures[{i}]")
