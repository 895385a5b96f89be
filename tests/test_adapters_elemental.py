"""element-stats against a per-structure loop written from its definition."""

from __future__ import annotations

import numpy as np
import pytest
from ase import Atoms
from ase.build import bulk, molecule
from ase.data import atomic_masses, covalent_radii

import matalign as ma
from matalign.adapters.elemental import _period_group
from matalign.structures import Structure

# (Z, period, group) of elements chosen across the table, from the IUPAC table.
KNOWN = [(1, 1, 1), (2, 1, 18), (3, 2, 1), (5, 2, 13), (10, 2, 18), (11, 3, 1), (14, 3, 14),
         (18, 3, 18), (19, 4, 1), (21, 4, 3), (26, 4, 8), (30, 4, 12), (36, 4, 18),
         (55, 6, 1), (57, 6, 3), (64, 6, 3), (71, 6, 3), (72, 6, 4), (79, 6, 11),
         (86, 6, 18), (87, 7, 1), (92, 7, 3), (104, 7, 4), (118, 7, 18)]


def test_period_and_group():
    z = np.array([k[0] for k in KNOWN])
    period, group = _period_group(z)
    assert period.tolist() == [k[1] for k in KNOWN]
    assert group.tolist() == [k[2] for k in KNOWN]


def _reference(atoms) -> np.ndarray:
    z = atoms.numbers
    period, group = _period_group(z)
    props = np.stack([z, atomic_masses[z], covalent_radii[z], period, group], axis=1).astype(float)
    stats = np.stack([props.mean(0), props.std(0), props.min(0), props.max(0)], axis=1).ravel()
    if any(atoms.pbc):
        v = abs(np.linalg.det(atoms.cell[:]))
        geom = [np.log(len(z)), v / len(z), (4 / 3) * np.pi * np.sum(covalent_radii[z] ** 3) / v]
    else:
        geom = [np.log(len(z)), 0.0, 0.0]
    return np.concatenate([stats, geom])


def _structures():
    rng = np.random.default_rng(0)
    out = [bulk("NaCl", "rocksalt", a=5.64) * (2, 1, 1), bulk("Si", "diamond", a=5.43),
           bulk("Cu", "fcc", a=3.6), molecule("CH3CH2OH"), Atoms("Au", pbc=False)]
    gaas = bulk("GaAs", "zincblende", a=5.65) * (2, 2, 1)
    gaas.rattle(0.05, rng=rng)
    out.append(gaas)
    return [Structure(f"s{i}", atoms=a) for i, a in enumerate(out)]


def test_matches_reference_and_is_batch_invariant():
    xs = _structures()
    adapter = ma.adapters.get("element-stats")
    got = adapter.embed(xs, batch_size=4)
    assert got.shape == (len(xs), 23)
    ref = np.stack([_reference(s.atoms) for s in xs]).astype(np.float32)
    np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(got, adapter.embed(xs, batch_size=1))


def test_invariances_and_strain_sensitivity():
    s = _structures()[5]
    a = s.atoms.copy()
    perm = np.random.default_rng(1).permutation(len(a))
    rotated = a[perm]
    rotated.rotate(37, "x", rotate_cell=True)
    strained = a.copy()
    strained.set_cell(a.cell[:] * 1.05, scale_atoms=True)
    adapter = ma.adapters.get("element-stats")
    x, y, z = adapter.embed([s, Structure("r", atoms=rotated), Structure("e", atoms=strained)])
    np.testing.assert_allclose(x, y, rtol=1e-5)
    np.testing.assert_array_equal(x[:20], z[:20])          # chemistry unchanged by strain
    assert z[21] == pytest.approx(x[21] * 1.05 ** 3, rel=1e-5)   # volume per atom


def test_bad_atomic_number_names_the_structure():
    adapter = ma.adapters.get("element-stats")
    bad = Atoms(numbers=[0, 8], positions=[[0, 0, 0], [1, 0, 0]])
    with pytest.raises(ValueError, match="structure 'ghost' has atomic number 0"):
        adapter.embed([Structure("ok", atoms=molecule("H2O")), Structure("ghost", atoms=bad)])
