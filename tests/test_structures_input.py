"""Structures in as users hold them: ASE Atoms, pymatgen Structure/Molecule, RDKit Mol,
SMILES strings and protein sequences, one or a list, through ``as_structures`` and
``ma.embed``."""

from __future__ import annotations

import numpy as np
import pytest
from ase.build import bulk, molecule

import matalign as ma
from matalign.adapters import Adapter
from matalign.structures import Structure, as_structures


class Probe(Adapter):
    """Records what it was given; one row per structure."""

    name, dim, layer = "probe", 3, "none"

    def __init__(self, modality):
        super().__init__()
        self.modality = modality
        self.got = []

    def _embed_batch(self, batch):
        self.got.extend(batch)
        rows = []
        for s in batch:
            if self.modality == "atoms":
                rows.append([len(s.atoms), float(np.sum(s.atoms.numbers)),
                             float(any(s.atoms.pbc))])
            else:
                text = getattr(s, self.modality)
                rows.append([len(text), text.count("C"), 0.0])
        return np.asarray(rows, np.float32)


def test_ase_atoms_one_or_many():
    nacl = bulk("NaCl", "rocksalt", a=5.64)
    one = as_structures(nacl)
    assert [s.id for s in one] == ["input:0"] and one[0].kind == "crystal"
    assert one[0].atoms is nacl
    many = as_structures([nacl, molecule("H2O")], id_prefix="mine")
    assert [s.id for s in many] == ["mine:0", "mine:1"]
    assert [s.kind for s in many] == ["crystal", "molecule"]


def test_pymatgen_structure_and_molecule():
    mg = pytest.importorskip("pymatgen.core")
    s = mg.Structure(mg.Lattice.cubic(4.2), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    m = mg.Molecule(["O", "H", "H"], [[0, 0, 0], [0.96, 0, 0], [-0.24, 0.93, 0]])
    cs, ms = as_structures([s, m])
    assert cs.kind == "crystal" and ms.kind == "molecule"
    np.testing.assert_allclose(cs.atoms.cell.array, np.eye(3) * 4.2)
    np.testing.assert_allclose(cs.atoms.get_positions()[1], [2.1, 2.1, 2.1])
    assert cs.atoms.get_chemical_symbols() == ["Na", "Cl"]
    np.testing.assert_allclose(ms.atoms.get_positions(), m.cart_coords)
    assert cs.info["formula"] == "NaCl"


def test_rdkit_mol_with_and_without_3d():
    Chem = pytest.importorskip("rdkit.Chem")
    from rdkit.Chem import AllChem

    flat = Chem.MolFromSmiles("OCC")
    s = as_structures(flat)[0]
    assert s.smiles == "CCO" and s.atoms is None
    mol = Chem.AddHs(Chem.MolFromSmiles("CCO"))
    assert AllChem.EmbedMolecule(mol, randomSeed=7) == 0
    s = as_structures(mol)[0]
    assert s.smiles == "CCO" and len(s.atoms) == 9 and not any(s.atoms.pbc)
    np.testing.assert_allclose(s.atoms.get_positions(), mol.GetConformer().GetPositions())


def test_strings_are_smiles_or_sequences():
    a, b = as_structures(["CCO", "c1ccccc1"])
    assert (a.smiles, b.smiles) == ("CCO", "c1ccccc1") and a.kind == "molecule"
    p = as_structures("mktayiak", kind="sequence")[0]
    assert p.sequence == "MKTAYIAK" and p.kind == "protein"
    with pytest.raises(ValueError, match=r"input:0: 'MK1' is not a one-letter amino-acid"):
        as_structures("MK1", kind="sequence")
    with pytest.raises(ValueError, match="empty string"):
        as_structures(["  "])
    with pytest.raises(ValueError, match="kind must be None, 'smiles' or 'sequence'"):
        as_structures("C", kind="protein")
    with pytest.raises(TypeError, match=r"structures\[1\] is a int; expected a matalign "
                                        r"Structure, ase\.Atoms"):
        as_structures(["C", 5])
    s = Structure("keep", smiles="C")
    assert as_structures([s])[0] is s


def test_bad_atoms_rejected_on_conversion():
    a = molecule("H2O")
    pos = a.get_positions()
    pos[1, 0] = np.inf
    a.set_positions(pos)
    with pytest.raises(ValueError, match=r"structure 'input:0': position of atom 1 is inf"):
        as_structures([a])


def test_embed_takes_structures_as_users_hold_them(tmp_path):
    mg = pytest.importorskip("pymatgen.core")
    Chem = pytest.importorskip("rdkit.Chem")
    nacl = bulk("NaCl", "rocksalt", a=5.64)
    pmg = mg.Structure(mg.Lattice.cubic(3.6), ["Cu"], [[0, 0, 0]])
    probe = Probe("atoms")
    store = ma.embed([nacl, pmg, molecule("CH4")], probe, tmp_path / "atoms")
    assert store.ids == ("input:0", "input:1", "input:2")
    np.testing.assert_array_equal(store.embeddings, [[2, 28, 1], [1, 29, 1], [5, 10, 0]])
    one = ma.embed(nacl, Probe("atoms"), tmp_path / "one")                # a single Atoms
    assert one.shape == (1, 3)
    smiles = ma.embed(["CCO", Chem.MolFromSmiles("CCCC")], Probe("smiles"),
                      tmp_path / "smiles")
    np.testing.assert_array_equal(smiles.embeddings[:, :2], [[3, 2], [4, 4]])
    single = ma.embed("c1ccccc1", Probe("smiles"), tmp_path / "benzene")  # one SMILES
    assert single.ids == ("input:0",)
    seqs = Probe("sequence")
    prot = ma.embed(["MKTAYIAKQR", "GAVL"], seqs, tmp_path / "seq")
    assert [s.sequence for s in seqs.got] == ["MKTAYIAKQR", "GAVL"]
    np.testing.assert_array_equal(prot.embeddings[:, 0], [10, 4])
    lazy = ma.embed((m for m in ["C", "CC", "CCC"]), Probe("smiles"), tmp_path / "gen")
    np.testing.assert_array_equal(lazy.embeddings[:, 0], [1, 2, 3])
    with pytest.raises(TypeError, match="got the str 'mols.xyz'"):
        ma.embed("mols.xyz", Probe("smiles"), tmp_path / "file")
