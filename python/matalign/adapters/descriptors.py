"""Physics descriptor baselines on 3D atoms: SOAP and ACSF (dscribe) and element composition.

These need no weights. SOAP and ACSF give one vector per atom, pooled into one vector per
structure (mean by default). ``composition`` is the element-count vector over Z = 1..118; it is
vectorised NumPy and fast enough to embed millions of structures.

Species
-------
SOAP and ACSF have one block of features per element, so the element list is fixed when the
adapter is built (``species=``). The default, :data:`DEFAULT_SPECIES`, holds 32 common elements
(H, Li–F, Na–Cl without noble gases, K, Ca, the 3d metals Ti–Zn, Ga–Br and I); it covers organic
molecules, ASE's g2 set and common inorganic crystals. A structure with an element outside the
list raises ``ValueError`` naming the structure and the element: pass ``species=`` with the
elements of your data set (the dimension grows with it).

Examples
--------
>>> from matalign.adapters.descriptors import Composition
>>> from ase.build import molecule
>>> from matalign.structures import Structure
>>> comp = Composition()
>>> x = comp.embed([Structure("h2o", atoms=molecule("H2O"))])
>>> x.shape, round(float(x[0, 0]), 3), round(float(x[0, 7]), 3)   # H and O fractions
((1, 118), 0.667, 0.333)
"""

from __future__ import annotations

import warnings
from typing import Any, Sequence

import numpy as np

from ..structures import Structure
from ._base import Adapter, pool, require

__all__ = ["SOAP", "ACSF", "Composition", "DEFAULT_SPECIES"]

#: Default element list of SOAP and ACSF (32 elements, in order of Z).
DEFAULT_SPECIES: tuple[str, ...] = (
    "H", "Li", "Be", "B", "C", "N", "O", "F", "Na", "Mg", "Al", "Si", "P", "S", "Cl",
    "K", "Ca", "Ti", "V", "Cr", "Mn", "Fe", "Co", "Ni", "Cu", "Zn", "Ga", "Ge", "As", "Se",
    "Br", "I",
)

_MAX_Z = 118


def _import_dscribe():
    require("dscribe", "dscribe", extra="chem")
    with warnings.catch_warnings():
        # dscribe imports sparse/numba helpers that may warn on new NumPy versions
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        warnings.filterwarnings("ignore", category=FutureWarning)
        from dscribe import descriptors
    return descriptors


def _symbols_to_numbers(species: Sequence[str | int]) -> np.ndarray:
    from ase.data import atomic_numbers

    if isinstance(species, str) or not len(species):
        raise ValueError(f"species must be a non-empty list of element symbols, got {species!r}")
    out = []
    for s in species:
        if isinstance(s, (int, np.integer)) and 1 <= int(s) <= _MAX_Z:
            out.append(int(s))
        elif isinstance(s, str) and s in atomic_numbers and atomic_numbers[s] > 0:
            out.append(atomic_numbers[s])
        else:
            raise ValueError(f"species: {s!r} is not an element symbol")
    return np.unique(np.asarray(out, dtype=np.int64))


class _PerAtomDescriptor(Adapter):
    """Common part of SOAP and ACSF: species check, periodic/non-periodic, pooling."""

    modality = "atoms"
    package = "dscribe"

    def __init__(self, *, species: Sequence[str | int] | None, pooling: str) -> None:
        super().__init__(pooling=pooling)
        from ase.data import chemical_symbols

        self._z = _symbols_to_numbers(DEFAULT_SPECIES if species is None else species)
        self.species = tuple(chemical_symbols[z] for z in self._z)
        self._allowed = np.zeros(_MAX_Z + 1, dtype=bool)
        self._allowed[self._z] = True
        self._descriptors: dict[bool, Any] = {}
        self.dim = int(self._make(False).get_number_of_features())

    def _make(self, periodic: bool):  # pragma: no cover - subclasses
        raise NotImplementedError

    def _descriptor(self, periodic: bool):
        if periodic not in self._descriptors:
            self._descriptors[periodic] = self._make(periodic)
        return self._descriptors[periodic]

    def _check(self, s: Structure) -> None:
        z = np.asarray(s.atoms.numbers)
        if z.size == 0:
            raise ValueError(f"adapter {self.name!r}: structure {s.id!r} has no atoms")
        bad = (z < 1) | (z > _MAX_Z)
        if not bad.any():
            bad = ~self._allowed[z]
        if bad.any():
            from ase.data import chemical_symbols

            zb = int(z[np.flatnonzero(bad)[0]])
            el = chemical_symbols[zb] if 0 <= zb <= _MAX_Z else f"Z={zb}"
            raise ValueError(f"adapter {self.name!r}: structure {s.id!r} contains element "
                             f"{el!r}, which is not in species={list(self.species)}; pass "
                             f"species= with every element of the data set")

    def _embed_batch(self, batch: list[Structure]) -> np.ndarray:
        feats, sizes = [], []
        for s in batch:
            self._check(s)
            periodic = bool(np.any(s.atoms.pbc))
            f = self._descriptor(periodic).create(s.atoms)
            feats.append(np.asarray(f, dtype=np.float64).reshape(len(s.atoms), self.dim))
            sizes.append(len(s.atoms))
        return pool(np.concatenate(feats), sizes, self.pooling)


class SOAP(_PerAtomDescriptor):
    """Smooth overlap of atomic positions (dscribe), per atom, pooled per structure.

    Parameters
    ----------
    species : list of str, optional
        Elements the descriptor knows (default :data:`DEFAULT_SPECIES`, 32 elements). Other
        elements raise ``ValueError``.
    r_cut : float
        Cutoff radius in Å (default 5).
    n_max, l_max : int
        Radial and angular basis sizes. The defaults (4, 3) are smaller than the usual 8, 6 so
        the vector stays around 2k dimensions with 32 species.
    sigma : float
        Gaussian width in Å (default 1).
    compression : {'mu1nu1', 'off', 'crossover', 'mu2'}
        dscribe's power-spectrum compression. The default ``'mu1nu1'`` keeps the dimension
        linear in the number of species: ``len(species) * n_max**2 * (l_max + 1)`` (2,048 with
        the defaults). ``'off'`` is the full SOAP, quadratic in species.
    pooling : {'mean', 'sum', 'max'}
        How per-atom vectors become one per structure (default mean).

    Notes
    -----
    Periodicity is read from each structure: ``periodic=True`` when any of ``atoms.pbc`` is
    set. ``layer`` is ``'descriptor'`` (no network). The features are invariant to rotation,
    translation and atom order up to floating-point rounding.

    Examples
    --------
    >>> from matalign.adapters.descriptors import SOAP
    >>> from ase.build import molecule
    >>> from matalign.structures import Structure
    >>> soap = SOAP(species=["H", "O"])
    >>> soap.dim
    128
    >>> soap.embed([Structure("h2o", atoms=molecule("H2O"))]).shape
    (1, 128)
    """

    name = "soap"
    layer = "descriptor"

    def __init__(self, *, species: Sequence[str] | None = None, r_cut: float = 5.0,
                 n_max: int = 4, l_max: int = 3, sigma: float = 1.0,
                 compression: str = "mu1nu1", pooling: str = "mean") -> None:
        if compression not in ("off", "mu1nu1", "mu2", "crossover"):
            raise ValueError(f"compression must be one of 'off', 'mu1nu1', 'mu2', 'crossover', "
                             f"got {compression!r}")
        self.r_cut, self.n_max, self.l_max, self.sigma = float(r_cut), int(n_max), int(l_max), float(sigma)
        self.compression = compression
        super().__init__(species=species, pooling=pooling)

    def _make(self, periodic: bool):
        d = _import_dscribe()
        return d.SOAP(species=list(self.species), r_cut=self.r_cut, n_max=self.n_max,
                      l_max=self.l_max, sigma=self.sigma, periodic=periodic,
                      compression={"mode": self.compression}, dtype="float64")

    def _extra_metadata(self) -> dict[str, Any]:
        return {"species": list(self.species), "r_cut": self.r_cut, "n_max": self.n_max,
                "l_max": self.l_max, "sigma": self.sigma, "compression": self.compression}


#: Default ACSF radial (G2: eta in 1/Å², R_s in Å) and angular (G4: eta, zeta, lambda) terms.
DEFAULT_G2 = ((0.05, 0.0), (0.5, 0.0), (1.0, 1.0), (1.0, 2.0))
DEFAULT_G4 = ((0.005, 1.0, 1.0), (0.005, 1.0, -1.0))


class ACSF(_PerAtomDescriptor):
    """Atom-centred symmetry functions (dscribe), per atom, pooled per structure.

    Parameters
    ----------
    species : list of str, optional
        Elements the descriptor knows (default :data:`DEFAULT_SPECIES`).
    r_cut : float
        Cutoff radius in Å (default 6).
    g2_params : sequence of (eta, R_s)
        Radial terms (default :data:`DEFAULT_G2`, four terms).
    g4_params : sequence of (eta, zeta, lambda)
        Angular terms (default :data:`DEFAULT_G4`, two terms).
    pooling : {'mean', 'sum', 'max'}

    Notes
    -----
    Dimension: ``S * (1 + len(g2)) + S * (S + 1) / 2 * len(g4)`` for ``S`` species
    (1,216 with the defaults). Periodicity comes from ``atoms.pbc``.

    Examples
    --------
    >>> from matalign.adapters.descriptors import ACSF
    >>> from ase.build import molecule
    >>> from matalign.structures import Structure
    >>> acsf = ACSF(species=["H", "O"])
    >>> acsf.dim
    16
    >>> acsf.embed([Structure("h2o", atoms=molecule("H2O"))]).shape
    (1, 16)
    """

    name = "acsf"
    layer = "descriptor"

    def __init__(self, *, species: Sequence[str] | None = None, r_cut: float = 6.0,
                 g2_params: Sequence[Sequence[float]] = DEFAULT_G2,
                 g4_params: Sequence[Sequence[float]] = DEFAULT_G4,
                 pooling: str = "mean") -> None:
        self.r_cut = float(r_cut)
        self.g2_params = [list(map(float, p)) for p in g2_params]
        self.g4_params = [list(map(float, p)) for p in g4_params]
        super().__init__(species=species, pooling=pooling)

    def _make(self, periodic: bool):
        d = _import_dscribe()
        return d.ACSF(species=list(self.species), r_cut=self.r_cut,
                      g2_params=self.g2_params or None, g4_params=self.g4_params or None,
                      periodic=periodic, dtype="float64")

    def _extra_metadata(self) -> dict[str, Any]:
        return {"species": list(self.species), "r_cut": self.r_cut,
                "g2_params": self.g2_params, "g4_params": self.g4_params}


class Composition(Adapter):
    """Element composition over Z = 1..118: the fastest 3D-free baseline.

    Each atom is a one-hot vector over the 118 elements and ``pooling`` combines them, so

    - ``'mean'`` (default): element fractions (each row sums to 1),
    - ``'sum'``: element counts,
    - ``'max'``: element presence (0/1).

    Column ``Z - 1`` holds element ``Z``. Positions, cell and periodicity are ignored. The
    work is a single ``np.bincount`` per batch (use a large ``batch_size``, e.g. 4096, for
    millions of structures).

    Parameters
    ----------
    pooling : {'mean', 'sum', 'max'}

    Examples
    --------
    >>> from matalign.adapters.descriptors import Composition
    >>> from ase.build import bulk
    >>> from matalign.structures import Structure
    >>> x = Composition(pooling="sum").embed([Structure("nacl", atoms=bulk("NaCl", "rocksalt", a=5.64))])
    >>> x[0, [10, 16]].tolist()    # one Na (Z=11), one Cl (Z=17)
    [1.0, 1.0]
    """

    name = "composition"
    modality = "atoms"
    dim = _MAX_Z
    layer = "element one-hot"
    package = "ase"

    def __init__(self, *, pooling: str = "mean") -> None:
        super().__init__(pooling=pooling)

    def _embed_batch(self, batch: list[Structure]) -> np.ndarray:
        numbers = [s.atoms.numbers for s in batch]
        sizes = np.fromiter((len(z) for z in numbers), dtype=np.int64, count=len(numbers))
        z = np.concatenate(numbers).astype(np.int64, copy=False) if len(numbers) else \
            np.empty(0, np.int64)
        if (sizes == 0).any():
            sid = batch[int(np.flatnonzero(sizes == 0)[0])].id
            raise ValueError(f"adapter {self.name!r}: structure {sid!r} has no atoms")
        bad = (z < 1) | (z > _MAX_Z)
        if bad.any():
            seg = np.searchsorted(np.cumsum(sizes), np.flatnonzero(bad)[0], side="right")
            raise ValueError(f"adapter {self.name!r}: structure {batch[int(seg)].id!r} has "
                             f"atomic number {int(z[bad][0])}, outside 1..{_MAX_Z}")
        n = len(batch)
        seg = np.repeat(np.arange(n, dtype=np.int64), sizes)
        counts = np.bincount(seg * _MAX_Z + (z - 1), minlength=n * _MAX_Z)
        counts = counts.reshape(n, _MAX_Z).astype(np.float64)
        if self.pooling == "mean":
            counts /= sizes[:, None]
        elif self.pooling == "max":
            counts = (counts > 0).astype(np.float64)
        return counts.astype(np.float32)

    def _extra_metadata(self) -> dict[str, Any]:
        meaning = {"mean": "element fractions", "sum": "element counts",
                   "max": "element presence"}[self.pooling]
        return {"columns": "Z-1 for Z in 1..118", "values": meaning}
