"""Helpers shared by the MLIP adapters: quiet imports, molecule boxes, element checks.

Nothing here imports torch or a model package at import time.

Examples
--------
>>> from ase.build import molecule
>>> from matalign.adapters._mlip_common import boxed
>>> box = boxed(molecule("H2O"), vacuum=6.0)
>>> bool(box.pbc.all()), [round(float(x), 2) for x in box.cell.lengths()]
(True, [6.0, 7.53, 6.6])
"""

from __future__ import annotations

import contextlib
import os
import warnings
from typing import Iterable, Iterator

import numpy as np

from ..structures import Structure

__all__ = ["quiet", "boxed", "atoms_of", "check_elements", "seeded", "package_file"]

# Warnings that model packages emit on import or load and that say nothing to our users:
# (category, message regex). Everything else still surfaces (pytest turns it into an error).
_KNOWN = (
    (UserWarning, r"cuaev not installed"),
    (UserWarning, r"pkg_resources is deprecated"),
    (UserWarning, r"Dependency not satisfied, torchani"),
    (UserWarning, r".*weights_only"),
    (UserWarning, r"TypedStorage is deprecated"),
    (UserWarning, r"Some keys are not used"),
    (UserWarning, r"An issue occurred while importing"),
    (FutureWarning, r".*"),
    (DeprecationWarning, r".*"),
    (PendingDeprecationWarning, r".*"),
)


@contextlib.contextmanager
def quiet() -> Iterator[None]:
    """Silence the known import/load-time warnings of model packages (deprecations of
    ``torch.jit.script``, ``pkg_resources``, ``sre_parse``, ``torch.load(weights_only=...)``,
    torchani's optional-extension notices). Other warnings pass through."""
    with warnings.catch_warnings():
        for category, message in _KNOWN:
            warnings.filterwarnings("ignore", message=message, category=category)
        yield


def boxed(atoms, vacuum: float):
    """Copy of a non-periodic ``ase.Atoms`` in an orthorhombic periodic box.

    Each box side is the molecule's extent along that axis plus ``vacuum`` (Å), with the
    molecule centred, so periodic images are at least ``vacuum`` apart: with ``vacuum`` above
    the model's cutoff no atom sees an image and the features equal those of the isolated
    molecule. Periodic input is returned unchanged (as a copy).
    """
    at = atoms.copy()
    if at.pbc.any():
        return at
    pos = at.get_positions()
    extent = pos.max(axis=0) - pos.min(axis=0) if len(at) else np.zeros(3)
    at.set_cell(np.diag(extent + float(vacuum)))
    at.center()
    at.pbc = True
    return at


def atoms_of(structure: Structure, adapter: str):
    """The structure's ``ase.Atoms``, or a ValueError naming the structure."""
    atoms = structure.atoms
    if atoms is None or not hasattr(atoms, "get_atomic_numbers"):
        raise ValueError(f"adapter {adapter!r} needs ase.Atoms, but structure "
                         f"{structure.id!r} has {type(atoms).__name__}")
    if len(atoms) == 0:
        raise ValueError(f"adapter {adapter!r}: structure {structure.id!r} has no atoms")
    return atoms


def check_elements(structure: Structure, numbers: Iterable[int], allowed: Iterable[int],
                   adapter: str, what: str = "") -> None:
    """ValueError naming the structure and the first element the model does not know."""
    from ase.data import chemical_symbols

    allowed = set(int(z) for z in allowed)
    bad = sorted(set(int(z) for z in numbers) - allowed)
    if bad:
        names = ", ".join(chemical_symbols[z] for z in bad)
        known = what or ", ".join(chemical_symbols[z] for z in sorted(allowed))
        raise ValueError(f"adapter {adapter!r}: structure {structure.id!r} contains "
                         f"element(s) {names} that the model does not know (it knows {known})")


@contextlib.contextmanager
def seeded(seed: int) -> Iterator[None]:
    """Run a block with torch's RNG seeded, leaving the caller's RNG state untouched."""
    import torch

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(seed))
        yield


def package_file(package: str, *parts: str) -> str:
    """Path of a file shipped inside an installed package (without importing it)."""
    import importlib.util

    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise ImportError(f"package {package!r} is not installed")
    path = os.path.join(list(spec.submodule_search_locations)[0], *parts)
    if not os.path.exists(path):
        raise FileNotFoundError(f"{path} is missing from the installed {package!r} package")
    return path
