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

from dataclasses import dataclass, field
from typing import Any, Mapping

__all__ = ["Structure", "MODALITIES"]

#: What an adapter can consume from a :class:`Structure`.
MODALITIES = ("atoms", "smiles", "sequence")


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
