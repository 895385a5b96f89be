"""Offline protein structures: peptides built from sequences and backbone angles by PeptideBuilder.

No PyPI wheel ships real protein structures (biopython's and MDAnalysisTests' PDB files are in
their sdists only; biotite's wheel ships the Chemical Component Dictionary, single residues),
so the offline protein set is **built**: PeptideBuilder (PyPI ``PeptideBuilder``, on
Biopython) places every heavy atom of a sequence from its backbone dihedrals with ideal bond
geometry. Each peptide is a seeded draw:

- its sequence: residues drawn from the UniProtKB/Swiss-Prot amino-acid composition;
- its secondary structure: segments of 4-12 residues, each an α-helix (φ, ψ = −57°, −47°),
  a β-strand (−119°, 113°) or a polyproline-II stretch (−75°, 145°), with N(0, 8°) noise per
  angle; ``kind='helix'``/``'strand'`` build one type throughout.

The structures are physically plausible backbones with known secondary structure
(``info["ss"]``: H, E, P per residue; ``info["helix_fraction"]``) but they are not folded
proteins: there are no tertiary contacts beyond what the segments give. Each atom carries
its PDB name and residue number (``atoms.arrays["atom_name"]``, ``["res_id"]``), which the
structure models (ProteinMPNN) read; ``sequence`` holds the one-letter sequence.
"""

from __future__ import annotations

from typing import Iterator

import numpy as np

from ..structures import Structure
from ._base import Dataset
from ._common import require

__all__ = ["Peptides", "peptides", "SS_ANGLES", "AA_FREQUENCIES"]

#: Backbone dihedrals (φ, ψ) in degrees of each secondary-structure type.
SS_ANGLES = {"H": (-57.0, -47.0), "E": (-119.0, 113.0), "P": (-75.0, 145.0)}

#: UniProtKB/Swiss-Prot amino-acid composition (percent; release statistics, rounded).
AA_FREQUENCIES = {"A": 8.25, "R": 5.53, "N": 4.06, "D": 5.45, "C": 1.37, "Q": 3.93,
                  "E": 6.75, "G": 7.07, "H": 2.27, "I": 5.96, "L": 9.66, "K": 5.84,
                  "M": 2.42, "F": 3.86, "P": 4.70, "S": 6.56, "T": 5.34, "W": 1.08,
                  "Y": 2.92, "V": 6.87}

_KINDS = ("mixed", "helix", "strand")
_NOISE_DEG = 8.0


class Peptides(Dataset):
    """Seeded peptides built by PeptideBuilder (see the module docstring)."""

    modality = ("atoms", "sequence")

    def __init__(self, n: int, min_length: int, max_length: int, kind: str, seed: int):
        for name, v, lo in (("n", n, 1), ("min_length", min_length, 8),
                            ("max_length", max_length, 8), ("seed", seed, 0)):
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < lo:
                raise ValueError(f"{name} must be an integer >= {lo}, got {v!r}")
        if max_length < min_length:
            raise ValueError(f"max_length ({max_length}) must be >= min_length ({min_length})")
        if max_length > 500:
            raise ValueError(f"max_length must be <= 500 residues, got {max_length}")
        if kind not in _KINDS:
            raise ValueError(f"kind must be one of {_KINDS}, got {kind!r}")
        self.n, self.min_length, self.max_length = int(n), int(min_length), int(max_length)
        self.kind, self.seed = kind, int(seed)
        self.name = "peptides"

    def __len__(self) -> int:
        return self.n

    @property
    def metadata(self) -> dict:
        return {"name": self.name, "n": self.n, "min_length": self.min_length,
                "max_length": self.max_length, "kind": self.kind, "seed": self.seed,
                "builder": "PeptideBuilder (ideal geometry from phi/psi)",
                "licence": "MIT (generated)"}

    def _plan(self, i: int) -> tuple[str, str, np.ndarray, np.ndarray]:
        rng = np.random.default_rng([self.seed, i])
        length = int(rng.integers(self.min_length, self.max_length + 1))
        letters = list(AA_FREQUENCIES)
        p = np.array([AA_FREQUENCIES[a] for a in letters])
        seq = "".join(rng.choice(letters, size=length, p=p / p.sum()))
        if self.kind == "mixed":
            ss = []
            while len(ss) < length:
                ss += [str(rng.choice(["H", "E", "P"]))] * int(rng.integers(4, 13))
            ss = "".join(ss[:length])
        else:
            ss = ("H" if self.kind == "helix" else "E") * length
        phi = np.array([SS_ANGLES[c][0] for c in ss]) + rng.normal(0, _NOISE_DEG, length)
        psi = np.array([SS_ANGLES[c][1] for c in ss]) + rng.normal(0, _NOISE_DEG, length)
        return seq, ss, phi, psi

    def __iter__(self) -> Iterator[Structure]:
        for i in range(self.n):
            yield self.build(i)

    def build(self, i: int) -> Structure:
        """The ``i``-th peptide (id ``peptides:<i>``)."""
        pb = require("PeptideBuilder", "building peptides", extra="protein")
        ase = require("ase", "building ase.Atoms")
        seq, ss, phi, psi = self._plan(i)
        # PeptideBuilder: phi of residue j and psi of residue j-1, for j = 2..L.
        chain = pb.make_structure(seq, phi[1:].tolist(), psi[:-1].tolist())
        symbols, pos, names, res = [], [], [], []
        for atom in chain.get_atoms():
            symbols.append(atom.element.capitalize())
            pos.append(atom.coord)
            names.append(atom.get_id())
            res.append(atom.get_parent().id[1])
        atoms = ase.Atoms(symbols=symbols, positions=np.asarray(pos, dtype=np.float64),
                          pbc=False)
        atoms.new_array("atom_name", np.array(names, dtype="<U4"))
        atoms.new_array("res_id", np.array(res, dtype=np.int64))
        info = {"ss": ss, "helix_fraction": ss.count("H") / len(ss), "length": len(seq)}
        return Structure(f"peptides:{i}", atoms=atoms, sequence=seq, info=info)


def peptides(n: int = 200, *, min_length: int = 20, max_length: int = 60, kind: str = "mixed",
             seed: int = 0) -> Peptides:
    """Seeded peptides with known secondary structure, built offline by PeptideBuilder.

    Parameters
    ----------
    n : int
        Number of peptides.
    min_length, max_length : int
        Residues per peptide (uniform, inclusive; 8..500).
    kind : {'mixed', 'helix', 'strand'}
        Segments of helix/strand/PPII, or one type throughout.
    seed : int

    Returns
    -------
    Dataset
        Ids ``peptides:<i>``; ``atoms`` (every heavy atom, with ``arrays["atom_name"]`` and
        ``arrays["res_id"]``), ``sequence``, ``info`` with ``ss``, ``helix_fraction``,
        ``length``.

    Examples
    --------
    >>> import matalign.datasets as mds
    >>> s = next(iter(mds.get("peptides", n=2, min_length=10, max_length=10)))
    >>> s.id, len(s.sequence), [str(a) for a in s.atoms.arrays["atom_name"][:4]]
    ('peptides:0', 10, ['N', 'CA', 'C', 'O'])
    """
    return Peptides(n, min_length, max_length, kind, seed)
