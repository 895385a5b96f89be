"""Seeded structure generators: perturbation ladders, synthetic crystals, BRICS molecules,
conformers and mutant scans.

Every item draws from its own random stream ``default_rng([seed, key...])``, so a generator
yields the same structures in the same order on every iteration, any item can be regenerated
alone, and memory stays constant however many items are streamed.
"""

from __future__ import annotations

import math
import warnings
from typing import Any, Iterator

import numpy as np

from ..structures import Structure
from ._base import Dataset
from ._chem import embed_conformers, mol_to_atoms, parse_smiles, quiet_rdkit
from ._common import SkippedRecordsWarning, as_dataset, item_rng, require

__all__ = ["crystal_ladder", "synthetic_crystals", "brics", "conformers", "mutant_scan",
           "similar_elements"]


def _check_seed(seed) -> int:
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative int, got {seed!r}")
    return int(seed)


def _check_count(value, name: str, *, allow_none: bool = False, minimum: int = 1):
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}, got {value!r}")
    return int(value)


# ------------------------------------------------------------------ chemically similar elements

# Groups of the periodic table (radioactive Tc, Pm, Po and heavier left out), top to bottom.
_GROUPS = [
    [3, 11, 19, 37, 55], [4, 12, 20, 38, 56], [21, 39], [22, 40, 72], [23, 41, 73],
    [24, 42, 74], [25, 75], [26, 44, 76], [27, 45, 77], [28, 46, 78], [29, 47, 79],
    [30, 48, 80], [5, 13, 31, 49, 81], [6, 14, 32, 50, 82], [7, 15, 33, 51, 83],
    [8, 16, 34, 52], [9, 17, 35, 53], [2, 10, 18, 36, 54],
]
_LANTHANIDES = [57, 58, 59, 60, 62, 63, 64, 65, 66, 67, 68, 69, 70, 71]
_ACTINIDES = [89, 90, 91, 92, 93, 94]
_SIMILAR: dict[int, tuple[int, ...]] = {}
for _col in _GROUPS + [_LANTHANIDES, _ACTINIDES]:
    for _i, _z in enumerate(_col):
        _SIMILAR[_z] = tuple(_col[j] for j in (_i - 1, _i + 1) if 0 <= j < len(_col))
_SIMILAR[39] += (57,)
_SIMILAR[57] += (39,)


def similar_elements(z: int) -> tuple[int, ...]:
    """Atomic numbers of the chemically similar elements used for substitution.

    The neighbours above and below in the same group (lanthanides and actinides: the
    neighbours in the series). Elements without one (H, radioactive ones) give ``()``.

    Examples
    --------
    >>> from matalign.datasets import similar_elements
    >>> similar_elements(11)   # Na -> Li, K
    (3, 19)
    >>> similar_elements(1)
    ()
    """
    return _SIMILAR.get(int(z), ())


# ------------------------------------------------------------------------------- perturbations

def _symmetric_strain(rng, level: float) -> np.ndarray:
    """Random symmetric 3x3 strain whose largest principal strain magnitude is ``level``."""
    a = rng.normal(size=(3, 3))
    a = 0.5 * (a + a.T)
    top = np.abs(np.linalg.eigvalsh(a)).max()
    return a * (level / top) if level > 0 and top > 0 else np.zeros((3, 3))


def _perturb(atoms, kind: str, level: float, rng):
    """Apply one perturbation to a copy of ``atoms``; returns (atoms, info)."""
    out = atoms.copy()
    out.calc = None
    n = len(out)
    info: dict[str, Any] = {"kind": kind, "level": float(level)}
    if kind == "strain":
        if not out.cell.rank == 3:
            raise ValueError("strain needs a structure with a full 3D cell")
        eps = _symmetric_strain(rng, level)
        out.set_cell(np.asarray(out.cell) @ (np.eye(3) + eps), scale_atoms=True)
    elif kind == "rattle":
        out.positions = out.positions + rng.normal(scale=level, size=(n, 3)) if level > 0 \
            else out.positions
    elif kind == "vacancy":
        k = min(int(round(level * n)), n - 1)
        if k > 0:
            del out[sorted(rng.choice(n, size=k, replace=False).tolist())]
        info["n_changed"] = k
    elif kind == "substitution":
        k = min(int(round(level * n)), n)
        numbers = out.numbers.copy()
        changed = 0
        if k > 0:
            for i in rng.permutation(n)[:k]:
                options = similar_elements(numbers[i])
                if options:
                    numbers[i] = options[int(rng.integers(len(options)))]
                    changed += 1
        out.numbers = numbers
        info["n_changed"] = changed
    return out, info


_DEFAULT_LEVELS = {
    "strain": (0.0, 0.01, 0.02, 0.05, 0.1, 0.2),
    "rattle": (0.0, 0.01, 0.05, 0.1, 0.2, 0.5),
    "vacancy": (0.0, 0.05, 0.1, 0.2),
    "substitution": (0.0, 0.1, 0.25, 0.5),
}


class CrystalLadder(Dataset):
    """Perturbation ladder over a base set; see :func:`crystal_ladder`."""

    modality = ("atoms",)

    def __init__(self, base, kind, levels, n_per_level, seed):
        if kind not in _DEFAULT_LEVELS:
            raise ValueError(f"kind must be one of {tuple(_DEFAULT_LEVELS)}, got {kind!r}")
        levels = _DEFAULT_LEVELS[kind] if levels is None else levels
        try:
            levels = tuple(float(x) for x in levels)
        except (TypeError, ValueError):
            raise ValueError(f"levels must be a sequence of numbers, got {levels!r}") from None
        if not levels or any(not math.isfinite(x) or x < 0 for x in levels):
            raise ValueError(f"levels must be a non-empty sequence of finite values >= 0, "
                             f"got {levels!r}")
        if kind in ("vacancy", "substitution") and any(x > 1 for x in levels):
            raise ValueError(f"levels for kind={kind!r} are fractions of atoms in [0, 1], "
                             f"got {levels!r}")
        self.base = as_dataset(base, "base")
        self.kind, self.levels = kind, levels
        self.n_per_level = _check_count(n_per_level, "n_per_level")
        self.seed = _check_seed(seed)
        self.name = f"{self.base.name}-{kind}-ladder"

    def __len__(self):
        return len(self.base) * len(self.levels) * self.n_per_level

    def __iter__(self) -> Iterator[Structure]:
        return self.iter_from(0)

    @property
    def seekable(self) -> bool:
        return self.base.seekable

    def iter_from(self, start: int) -> Iterator[Structure]:
        """Start at the ``start``-th item: whole base structures before it are skipped
        (through the base's own ``iter_from``), and each item has its own seeded stream, so
        nothing before ``start`` is generated."""
        start = int(start)
        if start < 0:
            raise ValueError(f"start must be >= 0, got {start}")
        per_base = len(self.levels) * self.n_per_level
        first, offset = divmod(start, per_base)
        for s in self.base.iter_from(first):
            if s.atoms is None:
                raise ValueError(f"crystal_ladder: base structure {s.id!r} has no atoms")
            for j, level in enumerate(self.levels):
                for r in range(self.n_per_level):
                    if offset:
                        if j * self.n_per_level + r < offset:
                            continue
                    rng = item_rng(self.seed, s.id, int(round(level * 1e6)), r)
                    atoms, info = _perturb(s.atoms, self.kind, level, rng)
                    info.update(parent=s.id, replica=r)
                    yield Structure(f"{s.id}/{self.kind}={level:g}/s{r}", atoms=atoms,
                                    info=info)
            offset = 0

    @property
    def metadata(self):
        return {"name": self.name, "modality": list(self.modality), "source": "generator",
                "generator": "crystal_ladder", "base": self.base.metadata,
                "options": {"kind": self.kind, "levels": list(self.levels),
                            "n_per_level": self.n_per_level},
                "seed": self.seed, "id_scheme": "<parent id>/<kind>=<level>/s<replica>"}


def crystal_ladder(base, *, kind="strain", levels=None, n_per_level=1, seed=0) -> Dataset:
    """Ladder of increasingly perturbed copies of each base structure (seeded, streamed).

    Parameters
    ----------
    base : Dataset, str or iterable
        Structures with atoms (a Dataset, a built-in name such as ``"mptrj"``, or a list of
        Structures / ``ase.Atoms``).
    kind : {'strain', 'rattle', 'vacancy', 'substitution'}
        ``strain``: cell ``@ (I + eps)`` with a random symmetric ``eps`` whose largest
        principal strain magnitude is the level (fractional positions kept). ``rattle``:
        Gaussian displacements with standard deviation level (Å) per Cartesian component.
        ``vacancy``: removes ``round(level * N)`` random atoms (at least one is kept).
        ``substitution``: ``round(level * N)`` random atoms are replaced by a chemically
        similar element (:func:`similar_elements`).
    levels : sequence of float, optional
        Perturbation strengths; level 0 yields an unperturbed copy. Defaults per kind:
        strain (0, .01, .02, .05, .1, .2), rattle (0, .01, .05, .1, .2, .5) Å,
        vacancy (0, .05, .1, .2), substitution (0, .1, .25, .5).
    n_per_level : int
        Independent random replicas per level.
    seed : int
        Each item uses ``default_rng([seed, crc32(parent id), level * 1e6, replica])``.

    Returns
    -------
    Dataset
        Ids ``"<parent id>/<kind>=<level>/s<replica>"``; ``info`` holds kind, level, parent,
        replica (and ``n_changed`` for vacancy/substitution).

    Examples
    --------
    >>> from ase.build import bulk
    >>> import matalign as ma
    >>> from matalign.datasets import crystal_ladder
    >>> ds = crystal_ladder([bulk("Cu", cubic=True)], kind="strain", levels=(0, 0.05), seed=1)
    >>> [s.id for s in ds]
    ['base:0/strain=0/s0', 'base:0/strain=0.05/s0']
    >>> len(ds)
    2
    """
    return CrystalLadder(base, kind, levels, n_per_level, seed)


# --------------------------------------------------------------------------- synthetic crystals

_S3 = math.sqrt(3.0)
_FCC = np.array([[0.0, 0.5, 0.5], [0.5, 0.0, 0.5], [0.5, 0.5, 0.0]])
_BCC = np.array([[-0.5, 0.5, 0.5], [0.5, -0.5, 0.5], [0.5, 0.5, -0.5]])
_SC = np.eye(3)
_HEX = np.array([[1.0, 0.0, 0.0], [-0.5, _S3 / 2, 0.0], [0.0, 0.0, math.sqrt(8.0 / 3.0)]])
_U = 3.0 / 8.0
# name: (cell in units of a, fractional basis, species slot per site, nn distance / a)
_PROTOTYPES = {
    "fcc": (_FCC, [[0, 0, 0]], [0], 1 / math.sqrt(2)),
    "bcc": (_BCC, [[0, 0, 0]], [0], _S3 / 2),
    "sc": (_SC, [[0, 0, 0]], [0], 1.0),
    "hcp": (_HEX, [[1 / 3, 2 / 3, 0.25], [2 / 3, 1 / 3, 0.75]], [0, 0], 1.0),
    "diamond": (_FCC, [[0, 0, 0], [0.25, 0.25, 0.25]], [0, 0], _S3 / 4),
    "rocksalt": (_FCC, [[0, 0, 0], [0.5, 0.5, 0.5]], [0, 1], 0.5),
    "zincblende": (_FCC, [[0, 0, 0], [0.25, 0.25, 0.25]], [0, 1], _S3 / 4),
    "cesiumchloride": (_SC, [[0, 0, 0], [0.5, 0.5, 0.5]], [0, 1], _S3 / 2),
    "fluorite": (_FCC, [[0, 0, 0], [0.25, 0.25, 0.25], [0.75, 0.75, 0.75]], [0, 1, 1],
                 _S3 / 4),
    "wurtzite": (_HEX, [[1 / 3, 2 / 3, 0], [2 / 3, 1 / 3, 0.5], [1 / 3, 2 / 3, _U],
                        [2 / 3, 1 / 3, 0.5 + _U]], [0, 0, 1, 1], _U * math.sqrt(8.0 / 3.0)),
    "perovskite": (_SC, [[0, 0, 0], [0.5, 0.5, 0.5], [0.5, 0.5, 0], [0.5, 0, 0.5],
                         [0, 0.5, 0.5]], [0, 1, 2, 2, 2], 0.5),
}
_PROTO_NAMES = tuple(_PROTOTYPES)
# Stable elements Li..Bi without noble gases, Tc and Pm.
_POOL = np.array([z for z in range(3, 84) if z not in (10, 18, 36, 54, 43, 61)])
_ANIONS = np.array([7, 8, 9, 15, 16, 17, 33, 34, 35, 52, 53])
_REPEATS = ((1, 1, 1), (2, 1, 1), (1, 2, 1), (1, 1, 2), (2, 2, 1), (2, 2, 2))


class SyntheticCrystals(Dataset):
    """Fast synthetic crystals; see :func:`synthetic_crystals`."""

    modality = ("atoms",)

    def __init__(self, n, seed, max_strain, max_rattle, start):
        self.n = _check_count(n, "n")
        self.seed = _check_seed(seed)
        self.start = _check_count(start, "start", minimum=0)
        if self.start > self.n:
            raise ValueError(f"start must be <= n={self.n}, got {start!r}")
        for name, v in (("max_strain", max_strain), ("max_rattle", max_rattle)):
            if not (isinstance(v, (int, float)) and math.isfinite(v) and v >= 0):
                raise ValueError(f"{name} must be a finite number >= 0, got {v!r}")
        self.max_strain, self.max_rattle = float(max_strain), float(max_rattle)
        self.name = f"synthetic-crystals-s{self.seed}"
        ase = require("ase", "synthetic_crystals")
        from ase.data import covalent_radii

        self._Atoms = ase.Atoms
        self._radii = np.asarray(covalent_radii)

    def __len__(self):
        return self.n - self.start

    def _one(self, i: int) -> Structure:
        rng = np.random.default_rng([self.seed, i])
        u = rng.random(8)
        proto = _PROTO_NAMES[int(u[0] * len(_PROTO_NAMES))]
        cell0, basis, slots, nn = _PROTOTYPES[proto]
        nspecies = max(slots) + 1
        species = rng.choice(_POOL, size=nspecies, replace=False)
        if nspecies > 1:  # last species an anion, for plausibility
            species[-1] = _ANIONS[int(u[1] * len(_ANIONS))]
            if species[-1] in species[:-1]:
                species[0] = _POOL[(np.searchsorted(_POOL, species[0]) + 1) % len(_POOL)]
        # nearest neighbours are slots (0, last): their covalent radii set the lattice constant
        d = (self._radii[species[0]] + self._radii[species[-1]]) * (0.95 + 0.15 * u[2])
        a = d / nn
        rep = _REPEATS[int(u[3] * len(_REPEATS))]
        basis = np.asarray(basis, dtype=float)
        numbers = species[slots]
        if rep != (1, 1, 1):
            shifts = np.array([[x, y, z] for x in range(rep[0]) for y in range(rep[1])
                               for z in range(rep[2])], dtype=float)
            basis = ((basis[None, :, :] + shifts[:, None, :]) / np.array(rep)).reshape(-1, 3)
            numbers = np.tile(numbers, len(shifts))
        cell = a * cell0 * np.array(rep, dtype=float)[:, None]
        strain = self.max_strain * u[4]
        eps = _symmetric_strain(rng, strain)
        cell = cell @ (np.eye(3) + eps)
        sigma = self.max_rattle * u[5]
        pos = basis @ cell + rng.normal(scale=sigma, size=basis.shape) if sigma > 0 \
            else basis @ cell
        atoms = self._Atoms(numbers=numbers, positions=pos, cell=cell, pbc=True)
        return Structure(f"synthetic:{i}", atoms=atoms,
                         info={"prototype": proto, "strain": float(strain),
                               "rattle": float(sigma), "supercell": "x".join(map(str, rep))})

    def __iter__(self) -> Iterator[Structure]:
        return self.iter_from(0)

    @property
    def seekable(self) -> bool:
        return True

    def iter_from(self, start: int) -> Iterator[Structure]:
        """Start at the ``start``-th item without generating the ones before it."""
        start = int(start)
        if start < 0:
            raise ValueError(f"start must be >= 0, got {start}")
        return (self._one(i) for i in range(self.start + start, self.n))

    def __getitem__(self, i: int) -> Structure:
        if not -len(self) <= i < len(self):
            raise IndexError(f"index {i} out of range for {len(self)} structures")
        return self._one(self.start + (i % len(self)))

    @property
    def metadata(self):
        return {"name": self.name, "modality": list(self.modality), "source": "generator",
                "generator": "synthetic_crystals", "n": self.n, "seed": self.seed,
                "options": {"max_strain": self.max_strain, "max_rattle": self.max_rattle,
                            "start": self.start, "prototypes": list(_PROTO_NAMES)},
                "id_scheme": "synthetic:<index>"}


def synthetic_crystals(n, *, seed=0, max_strain=0.05, max_rattle=0.05, start=0) -> Dataset:
    """Fast stream of ``n`` synthetic crystals, deterministic per seed (for million-scale OOD).

    Item ``i`` uses its own stream ``default_rng([seed, i])``: a prototype (fcc, bcc, sc, hcp,
    diamond, rocksalt, zincblende, CsCl, fluorite, wurtzite, cubic perovskite), random
    elements (the last species an anion for compounds), a lattice constant from covalent
    radii (x 0.95-1.10), a supercell up to 2x2x2 (1-40 atoms), a symmetric strain up to
    ``max_strain`` and a rattle up to ``max_rattle`` Å. About 0.3 ms per structure on one
    (shared) core, so 1,000,000 stream in about 5 minutes, in constant memory.

    Parameters
    ----------
    n : int
        Number of structures (ids ``"synthetic:0"`` ... ``"synthetic:<n-1>"``).
    seed : int
    max_strain, max_rattle : float
        Upper bounds of the per-structure strain (largest principal strain) and rattle (Å).
    start : int
        First index to yield (resume or shard: items do not depend on earlier ones).

    Examples
    --------
    >>> from matalign.datasets import synthetic_crystals
    >>> ds = synthetic_crystals(1000, seed=0)
    >>> len(ds), next(iter(ds)).id
    (1000, 'synthetic:0')
    >>> bool(ds[5].atoms == synthetic_crystals(1000, seed=0)[5].atoms)
    True
    """
    return SyntheticCrystals(n, seed, max_strain, max_rattle, start)


# ----------------------------------------------------------------------------------- molecules

class _SkipCounting(Dataset):
    n_skipped = 0

    def _finish(self, skipped: int, what: str):
        self.n_skipped = skipped
        if skipped:
            warnings.warn(f"{self.name}: {skipped} input structure(s) skipped ({what})",
                          SkippedRecordsWarning, stacklevel=3)


class Conformers(_SkipCounting):
    """3D conformers of SMILES structures; see :func:`conformers`."""

    modality = ("atoms", "smiles")

    def __init__(self, base, n_conformers, seed, mmff):
        self.base = as_dataset(base, "smiles")
        self.n_conformers = _check_count(n_conformers, "n_conformers")
        self.seed = _check_seed(seed)
        self.mmff = bool(mmff)
        self.name = f"{self.base.name}-conformers"

    def __len__(self):
        raise TypeError(f"dataset {self.name!r} does not know its length (embedding can fail)")

    def length_hint(self):
        n = self.base.length_hint()
        return None if n is None else n * self.n_conformers

    def __iter__(self):
        skipped = 0
        for s in self.base:
            if s.smiles is None:
                raise ValueError(f"conformers: structure {s.id!r} has no SMILES")
            try:
                molh, ids = embed_conformers(parse_smiles(s.smiles), self.n_conformers,
                                             self.seed, s.id, mmff=self.mmff)
            except ValueError:
                skipped += 1
                continue
            for j, cid in enumerate(ids):
                info = dict(s.info)
                info.update(parent=s.id, conformer=j)
                yield Structure(f"{s.id}/etkdg/s{j}", atoms=mol_to_atoms(molh, cid),
                                smiles=s.smiles, info=info)
        self._finish(skipped, "RDKit could not embed them")

    @property
    def metadata(self):
        return {"name": self.name, "modality": list(self.modality), "source": "generator",
                "generator": "conformers (RDKit ETKDGv3" + (" + MMFF94)" if self.mmff else ")"),
                "base": self.base.metadata, "seed": self.seed,
                "options": {"n_conformers": self.n_conformers, "mmff": self.mmff},
                "id_scheme": "<parent id>/etkdg/s<conformer>"}


def conformers(smiles_dataset, *, n_conformers=1, seed=0, mmff=True) -> Dataset:
    """3D conformers (RDKit ETKDGv3, seeded, then MMFF94) of each SMILES structure.

    Parameters
    ----------
    smiles_dataset : Dataset, str or iterable
        Structures with ``smiles`` (a Dataset, built-in name like ``"nci"``, or SMILES list).
    n_conformers : int
        Conformers per molecule (``EmbedMultipleConfs``); ids ``"<parent>/etkdg/s<j>"``.
    seed : int
        The RDKit ``randomSeed`` of each molecule is derived from ``seed`` and its id.
    mmff : bool
        Optimise with MMFF94 when the molecule has MMFF parameters.

    Molecules RDKit cannot embed are skipped; ``n_skipped`` counts them after iteration and
    a :class:`SkippedRecordsWarning` reports the count.

    Examples
    --------
    >>> from matalign.datasets import conformers
    >>> [ (s.id, len(s.atoms)) for s in conformers(["CCO"], seed=0)]
    [('smiles:0/etkdg/s0', 9)]
    """
    return Conformers(smiles_dataset, n_conformers, seed, mmff)


class Brics(_SkipCounting):
    """BRICS recombination; see :func:`brics`."""

    modality = ("smiles",)

    def __init__(self, seeds, n, seed, max_depth, n_seeds, per_fragment, n_partners):
        self.base = as_dataset(seeds, "seeds")
        self.n = _check_count(n, "n")
        self.seed = _check_seed(seed)
        self.max_depth = _check_count(max_depth, "max_depth")
        self.n_seeds = _check_count(n_seeds, "n_seeds")
        self.per_fragment = _check_count(per_fragment, "per_fragment")
        self.n_partners = _check_count(n_partners, "n_partners")
        self.name = f"{self.base.name}-brics"

    def __len__(self):
        raise TypeError(f"dataset {self.name!r} does not know its length (at most n={self.n})")

    def length_hint(self):
        return self.n

    def _fragments(self, Chem, BRICS):
        frags: set[str] = set()
        for k, s in enumerate(self.base):
            if k >= self.n_seeds:
                break
            if s.smiles is None:
                raise ValueError(f"brics: seed structure {s.id!r} has no SMILES")
            try:
                frags.update(BRICS.BRICSDecompose(parse_smiles(s.smiles)))
            except ValueError:
                continue
        with quiet_rdkit():
            mols = [(f, Chem.MolFromSmiles(f)) for f in sorted(frags)]
        return [(f, m) for f, m in mols if m is not None]

    def __iter__(self):
        Chem = require("rdkit.Chem", "BRICS generation")
        BRICS = require("rdkit.Chem.BRICS", "BRICS generation")
        frags = self._fragments(Chem, BRICS)
        ports = [f.count("*") for f, _ in frags]
        # Cores: fragments that can be completed within max_depth joins; partners: caps (one
        # attachment point) and linkers (two).
        cores = [i for i, k in enumerate(ports) if 1 <= k <= self.max_depth + 1]
        partners = [i for i, k in enumerate(ports) if 1 <= k <= 2]
        if not cores or not partners:
            raise ValueError(f"brics: the first {self.n_seeds} seed molecules gave no "
                             "combinable BRICS fragments")
        seen: set[str] = set()
        produced, rnd = 0, 0
        while produced < self.n:
            rng = item_rng(self.seed, rnd)
            new_in_round = 0
            for ci in rng.permutation(len(cores)):
                core = frags[cores[ci]]
                pick = rng.choice(len(partners), size=min(self.n_partners, len(partners)),
                                  replace=False)
                taken = 0
                with quiet_rdkit():
                    gen = BRICS.BRICSBuild([frags[partners[p]][1] for p in pick],
                                           seeds=[core[1]], scrambleReagents=False,
                                           maxDepth=self.max_depth, uniquify=True)
                    for m in gen:
                        try:
                            m.UpdatePropertyCache(strict=False)
                            Chem.SanitizeMol(m)
                            smi = Chem.MolToSmiles(m)
                        except Exception:  # noqa: BLE001 - unsanitizable product
                            continue
                        if smi in seen:
                            continue
                        seen.add(smi)
                        yield Structure(f"brics:{produced}", smiles=smi,
                                        info={"core": core[0], "round": rnd})
                        produced += 1
                        new_in_round += 1
                        taken += 1
                        if produced >= self.n or taken >= self.per_fragment:
                            break
                if produced >= self.n:
                    return
            rnd += 1
            if new_in_round == 0:
                warnings.warn(f"{self.name}: BRICS space exhausted after {produced} of "
                              f"{self.n} molecules", SkippedRecordsWarning, stacklevel=2)
                return

    @property
    def metadata(self):
        return {"name": self.name, "modality": list(self.modality), "source": "generator",
                "generator": "brics (RDKit BRICSDecompose + BRICSBuild)",
                "base": self.base.metadata, "seed": self.seed, "n": self.n,
                "options": {"max_depth": self.max_depth, "n_seeds": self.n_seeds,
                            "per_fragment": self.per_fragment, "n_partners": self.n_partners},
                "id_scheme": "brics:<index>"}


def brics(seeds_smiles_dataset, n, *, seed=0, max_depth=2, n_seeds=500, per_fragment=5,
          n_partners=12) -> Dataset:
    """Novel molecules by BRICS recombination of fragments of real molecules (seeded).

    The first ``n_seeds`` seed molecules are decomposed (``BRICS.BRICSDecompose``). In each
    round every core fragment (1 to ``max_depth + 1`` attachment points), in a seeded random
    order, is grown with ``BRICS.BRICSBuild(maxDepth=max_depth)`` against ``n_partners``
    randomly chosen caps and linkers (1 or 2 attachment points), taking at most
    ``per_fragment`` new products, so consecutive molecules come from different cores.
    Products are sanitised and de-duplicated by canonical SMILES (the set of seen SMILES is
    the only state that grows, ~100 B per molecule). About 6 ms per molecule on one core
    after a one-off decomposition (~1.5 s for 500 seeds); shard large runs over seeds.

    Parameters
    ----------
    seeds_smiles_dataset : Dataset, str or iterable
        Seed molecules with SMILES (e.g. ``"nci"`` or a list of SMILES).
    n : int
        Number of molecules to yield (ids ``"brics:<i>"``); fewer, with a warning, when the
        BRICS space is exhausted.
    seed : int
    max_depth : int
        ``maxDepth`` of ``BRICSBuild``.

    Examples
    --------
    >>> from matalign.datasets import brics
    >>> ds = brics(["CCOC(=O)c1ccccc1", "CN1CCN(CC1)c1ccccc1", "Oc1ccc(cc1)C(=O)NC"], 5, seed=0)
    >>> mols = [s.smiles for s in ds]
    >>> len(mols), len(set(mols)), mols == [s.smiles for s in ds]
    (5, 5, True)
    """
    return Brics(seeds_smiles_dataset, n, seed, max_depth, n_seeds, per_fragment, n_partners)


# ------------------------------------------------------------------------------------ proteins

_AMINO = "ACDEFGHIKLMNPQRSTVWY"


class MutantScan(Dataset):
    """Mutants of protein sequences; see :func:`mutant_scan`."""

    modality = ("sequence",)

    def __init__(self, sequences, n, double, seed, include_wildtype):
        if isinstance(sequences, dict):
            sequences = [Structure(f"{k}", sequence=v) for k, v in sequences.items()]
        elif isinstance(sequences, (list, tuple)) and sequences and isinstance(sequences[0], str):
            sequences = [Structure(f"seq:{i}", sequence=v) for i, v in enumerate(sequences)]
        self.base = as_dataset(sequences, "sequences")
        self.n = _check_count(n, "n", allow_none=True)
        self.double = bool(double)
        self.seed = _check_seed(seed)
        self.include_wildtype = bool(include_wildtype)
        self.name = f"{self.base.name}-{'double' if self.double else 'single'}-mutants"

    @staticmethod
    def _mut(seq: str, pos: int, k: int) -> tuple[str, str]:
        wt = seq[pos]
        options = [a for a in _AMINO if a != wt]
        mt = options[k]
        return f"{wt}{pos + 1}{mt}", mt

    def _singles(self, parent: Structure, rng) -> Iterator[tuple[str, str]]:
        seq = parent.sequence
        total = 19 * len(seq)
        idx = range(total) if self.n is None else rng.choice(total, size=min(self.n, total),
                                                              replace=False)
        for c in idx:
            pos, k = divmod(int(c), 19)
            label, mt = self._mut(seq, pos, k)
            yield label, seq[:pos] + mt + seq[pos + 1:]

    def _doubles(self, parent: Structure, rng) -> Iterator[tuple[str, str]]:
        seq = parent.sequence
        L = len(seq)
        total = (19 * 19) * (L * (L - 1) // 2)
        if self.n is None:
            pairs = ((p, q) for p in range(L) for q in range(p + 1, L))
            for p, q in pairs:
                for k1 in range(19):
                    for k2 in range(19):
                        yield self._double(seq, p, k1, q, k2)
            return
        want = min(self.n, total)
        seen: set[tuple[int, int, int, int]] = set()
        while len(seen) < want:
            p, q = sorted(rng.choice(L, size=2, replace=False).tolist())
            k1, k2 = (int(x) for x in rng.integers(19, size=2))
            if (p, k1, q, k2) in seen:
                continue
            seen.add((p, k1, q, k2))
            yield self._double(seq, p, k1, q, k2)

    def _double(self, seq, p, k1, q, k2):
        l1, m1 = self._mut(seq, p, k1)
        l2, m2 = self._mut(seq, q, k2)
        return f"{l1}+{l2}", seq[:p] + m1 + seq[p + 1:q] + m2 + seq[q + 1:]

    def __iter__(self):
        for parent in self.base:
            if parent.sequence is None:
                raise ValueError(f"mutant_scan: structure {parent.id!r} has no sequence")
            if self.double and len(parent.sequence) < 2:
                raise ValueError(f"mutant_scan: double=True needs sequences of length >= 2, "
                                 f"{parent.id!r} has {len(parent.sequence)}")
            if self.include_wildtype:
                yield Structure(f"{parent.id}/wt", sequence=parent.sequence,
                                info={"parent": parent.id, "mutation": "wt"})
            rng = item_rng(self.seed, parent.id)
            gen = self._doubles(parent, rng) if self.double else self._singles(parent, rng)
            for label, mutant in gen:
                yield Structure(f"{parent.id}/{label}", sequence=mutant,
                                info={"parent": parent.id, "mutation": label})

    @property
    def metadata(self):
        return {"name": self.name, "modality": list(self.modality), "source": "generator",
                "generator": "mutant_scan", "base": self.base.metadata, "seed": self.seed,
                "options": {"n": self.n, "double": self.double,
                            "include_wildtype": self.include_wildtype},
                "id_scheme": "<parent id>/<wt><pos><mut>[+<wt><pos><mut>] (1-based pos)"}


def mutant_scan(sequences, *, n=None, double=False, seed=0, include_wildtype=True) -> Dataset:
    """Single (or double) point mutants of protein sequences.

    Parameters
    ----------
    sequences : Dataset, list of str, dict or iterable of Structures
        Parent sequences (a dict maps ids to sequences; a list of str gets ids ``seq:<i>``).
    n : int, optional
        Mutants per parent, sampled without replacement (seeded). None: all of them, in scan
        order (19·L singles; 361·L(L-1)/2 doubles, streamed).
    double : bool
        Double mutants (two distinct positions) instead of single ones.
    seed : int
    include_wildtype : bool
        Yield the parent first, id ``"<parent>/wt"``.

    Returns
    -------
    Dataset
        Ids ``"<parent>/<wt><pos><mut>"`` (1-based, e.g. ``"seq:0/A1C"``), doubles joined by
        ``+``; ``info`` holds parent and mutation.

    Examples
    --------
    >>> from matalign.datasets import mutant_scan
    >>> ds = mutant_scan(["MKV"])
    >>> [s.id for s in ds][:3], sum(1 for _ in ds)
    (['seq:0/wt', 'seq:0/M1A', 'seq:0/M1C'], 58)
    """
    return MutantScan(sequences, n, double, seed, include_wildtype)
