"""Structure sets: file readers, built-in sets from what packages ship, seeded generators.

Every dataset streams :class:`~matalign.structures.Structure` records with stable ids and
never holds the whole set in RAM; iterating twice gives the same ids in the same order.

- :func:`list` / :func:`get`: registered sets (``mptrj``, ``mattersim-full``, ``ccd``,
  ``nci``, ``wehi``, ``chembl``, ``g2``, ``s22``) and named generators (``mptrj-ladder``,
  ``synthetic-crystals``, ``nci-brics``, ``peptides``: PeptideBuilder peptides).
- :func:`open`: a file (extxyz and any ASE format, ASE db, ASE-LMDB, SMILES, CSV, SDF,
  PDB/mmCIF, FASTA).
- Generators: :func:`crystal_ladder`, :func:`synthetic_crystals`, :func:`brics`,
  :func:`conformers`, :func:`mutant_scan`.

ase, RDKit, biotite and lmdb are imported only when a dataset needs them; a missing one
raises ImportError naming the pip package (``pip install 'matalign[data]'``).

Examples
--------
>>> import matalign.datasets as mds
>>> ds = mds.get("mptrj")
>>> s = next(iter(ds))
>>> s.id, s.kind, ds.metadata["licence"]
('mptrj:0', 'crystal', 'CC-BY-4.0 (data)')
"""

from __future__ import annotations

from ._base import Dataset
from ._common import SkippedRecordsWarning
from ._generators import (brics, conformers, crystal_ladder, mutant_scan, similar_elements,
                          synthetic_crystals)
from ._registry import DatasetInfo, get, list, open

__all__ = ["Dataset", "DatasetInfo", "SkippedRecordsWarning", "list", "get", "open",
           "crystal_ladder", "synthetic_crystals", "brics", "conformers", "mutant_scan",
           "similar_elements"]
