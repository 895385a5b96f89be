"""RDKit / biotite / ASE conversions shared by readers, built-ins and generators."""

from __future__ import annotations

import contextlib
import zlib

from ._common import require

__all__ = ["parse_smiles", "mol_to_atoms", "embed_conformers", "quiet_rdkit"]


@contextlib.contextmanager
def quiet_rdkit():
    """Silence RDKit's C++ logging (parse errors are reported by us, with file and index)."""
    rdBase = require("rdkit.rdBase", "reading molecules")
    blocker = rdBase.BlockLogs()
    try:
        yield
    finally:
        del blocker


def parse_smiles(smiles: str):
    """RDKit Mol from a SMILES string; ValueError when RDKit cannot parse or sanitize it."""
    Chem = require("rdkit.Chem", "parsing SMILES")
    with quiet_rdkit():
        mol = Chem.MolFromSmiles(smiles)
    if mol is None:
        raise ValueError(f"RDKit cannot parse SMILES {smiles!r}")
    return mol


def mol_to_atoms(mol, conf_id: int = -1):
    """ase.Atoms (non-periodic) from an RDKit Mol's conformer."""
    ase = require("ase", "building ase.Atoms")
    conf = mol.GetConformer(conf_id)
    symbols = [a.GetSymbol() for a in mol.GetAtoms()]
    return ase.Atoms(symbols=symbols, positions=conf.GetPositions(), pbc=False)


def conformer_seed(seed: int, key: str, j: int = 0) -> int:
    """A 31-bit RDKit randomSeed derived from the dataset seed and the structure id."""
    return (zlib.crc32(f"{int(seed)}|{key}|{j}".encode("utf-8")) & 0x7FFFFFFF) or 1


def embed_conformers(mol, n_conformers: int, seed: int, key: str, *, mmff: bool = True):
    """AddHs, ETKDGv3 embed ``n_conformers`` (seeded), MMFF-optimise; returns (molH, conf ids).

    Raises ValueError when RDKit cannot embed the molecule.
    """
    Chem = require("rdkit.Chem", "generating conformers")
    AllChem = require("rdkit.Chem.AllChem", "generating conformers")
    molh = Chem.AddHs(mol)
    params = AllChem.ETKDGv3()
    params.randomSeed = conformer_seed(seed, key)
    params.numThreads = 1
    with quiet_rdkit():
        if n_conformers == 1:
            cid = AllChem.EmbedMolecule(molh, params)
            ids = [] if cid < 0 else [cid]
        else:
            ids = list(AllChem.EmbedMultipleConfs(molh, numConfs=n_conformers, params=params))
        if not ids:
            raise ValueError("RDKit ETKDGv3 could not embed the molecule in 3D")
        if mmff and AllChem.MMFFHasAllMoleculeParams(molh):
            AllChem.MMFFOptimizeMoleculeConfs(molh, numThreads=1, maxIters=500)
    return molh, ids
