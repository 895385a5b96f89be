"""The built-in entries of the dataset catalogue and ``open()``, the file entry point."""

from __future__ import annotations

from typing import Any

from . import _builtin, _generators, _peptides
from ._base import Dataset
from ._catalog import DatasetInfo, get, list
from ._catalog import register as _register
from ._readers import FORMATS, open_file

__all__ = ["DatasetInfo", "list", "get", "open"]


_register(DatasetInfo(
    "mptrj", ("atoms",), _builtin.MPTRJ_N, "matalign/data (slice of mattersim 1.2.3 benchmarks)",
    "300 real crystals: 150 MPtrj + 150 Alexandria (<= 64 atoms) with DFT energy, forces, "
    "stress; committed to matalign", "CC-BY-4.0 (MPtrj, Alexandria)"), _builtin.mptrj)
_register(DatasetInfo(
    "mattersim-full", ("atoms",), 5222, "mattersim 1.2.3 sdist data/benchmarks (local copy)",
    "All 5,222 benchmark crystals (MPtrj, Alexandria, mpf); options path= (or env "
    "MATALIGN_MATTERSIM_DIR), subsets=; get it with: " + _builtin.MATTERSIM_DOWNLOAD,
    "CC-BY-4.0 (data), MIT (mattersim)"), _builtin.mattersim_full)
_register(DatasetInfo(
    "ccd", ("atoms", "smiles"), None, "biotite (PDB Chemical Component Dictionary)",
    "Up to 49,196 PDB components with ideal 3D coordinates incl. H and SMILES; options "
    "elements= (e.g. 'HCNO'), max_atoms=, min_atoms=, n=, hydrogens=",
    "public domain (wwPDB)"), _builtin.ccd)
for _name, (_a, _rel, _kw, _n, _desc, _lic) in _builtin._RDKIT_SETS.items():
    _register(DatasetInfo(_name, ("smiles",), _n, f"rdkit {_rel}",
                          _desc + "; options conformers=True (adds ETKDGv3+MMFF atoms), seed=",
                          _lic),
              lambda _name=_name, **kw: _builtin.rdkit_smiles(_name, **kw))
_register(DatasetInfo("g2", ("atoms",), 162, "ase.collections.g2",
                      "G2 molecules (1-14 atoms)", "LGPL-2.1 (ASE)"),
          lambda: _builtin.ase_collection("g2"))
_register(DatasetInfo("s22", ("atoms",), 22, "ase.collections.s22",
                      "S22 non-covalent dimers", "LGPL-2.1 (ASE)"),
          lambda: _builtin.ase_collection("s22"))
_register(DatasetInfo(
    "mptrj-ladder", ("atoms",), None, "generator over mptrj",
    "crystal_ladder over the mptrj slice; options kind= ('strain', 'rattle', 'vacancy', "
    "'substitution'), levels=, n_per_level=, seed=", "CC-BY-4.0 (MPtrj, Alexandria)"),
    lambda **kw: _generators.crystal_ladder(_builtin.mptrj(), **kw))
_register(DatasetInfo(
    "synthetic-crystals", ("atoms",), None, "generator",
    "synthetic_crystals: fast seeded prototype crystals; options n= (default 10000), seed=, "
    "max_strain=, max_rattle=, start=", "MIT (generated)"),
    lambda n=10000, **kw: _generators.synthetic_crystals(n, **kw))
_register(DatasetInfo(
    "nci-brics", ("smiles",), None, "generator over nci",
    "brics: BRICS recombination of NCI fragments; options n= (default 10000), seed=, "
    "max_depth=, n_seeds=", "generated from NCI (public)"),
    lambda n=10000, **kw: _generators.brics(_builtin.rdkit_smiles("nci"), n, **kw))


_register(DatasetInfo(
    "peptides", ("atoms", "sequence"), None, "generator (PeptideBuilder)",
    "peptides built offline by PeptideBuilder from seeded sequences (Swiss-Prot composition) "
    "and helix/strand/PPII backbone angles; atom names and residue numbers for structure "
    "models; options n= (default 200), min_length=, max_length=, kind=, seed=",
    "MIT (generated)"), _peptides.peptides)


def open(path, *, format=None, skip_bad=False, **options: Any) -> Dataset:  # noqa: A001
    """Stream structures from a file; the reader is chosen by extension or ``format=``.

    Parameters
    ----------
    path : str or os.PathLike
        The file (``.gz``, ``.bz2``, ``.xz`` compression is handled for text formats).
    format : str, optional
        ``extxyz`` (.xyz, .extxyz), ``asedb`` (.db), ``aselmdb`` (.aselmdb, .lmdb),
        ``smi`` (.smi), ``csv`` (.csv, .tsv), ``sdf`` (.sdf, .mol), ``pdb``/``cif``/``bcif``
        (.pdb, .cif, .bcif), ``fasta`` (.fasta, .fa, .faa), or ``ase`` (anything
        ``ase.io.iread`` reads, the fallback for other extensions); any other ASE format name
        also works and is passed to ASE.
    skip_bad : bool
        Skip unreadable records instead of raising ``ValueError`` (which names the file, the
        record index and the line when known). The count is ``dataset.n_skipped`` after an
        iteration, and a ``SkippedRecordsWarning`` reports it.
    **options
        Reader options: ``id_prefix`` (default: the file stem); SMILES/CSV: ``conformers``,
        ``seed``, ``validate``; CSV: ``smiles_column``, ``header``, ``delimiter``;
        PDB/mmCIF: ``per`` ('chain' or 'file'); ASE db: ``select``.

    Returns
    -------
    Dataset
        Ids ``"<stem>:<index>"`` (ASE db / LMDB: ``"<stem>:<row id>"``; PDB: ``"<stem>:<chain>"``).

    Examples
    --------
    >>> import pathlib, tempfile
    >>> import matalign.datasets as mds
    >>> tmp = tempfile.TemporaryDirectory()
    >>> path = pathlib.Path(tmp.name) / "mols.smi"
    >>> _ = path.write_text("CCO ethanol\\nc1ccccc1 benzene\\n")
    >>> [(s.id, s.smiles, s.info["name"]) for s in mds.open(path)]
    [('mols:0', 'CCO', 'ethanol'), ('mols:1', 'c1ccccc1', 'benzene')]
    >>> tmp.cleanup()
    """
    if format is not None:
        fmt = format.lower() if isinstance(format, str) else format
        if fmt not in FORMATS:
            try:
                from ase.io.formats import ioformats
            except ImportError:
                ioformats = {}
            if fmt in ioformats:
                options["ase_format"] = fmt
                format = "ase"
    return open_file(path, format=format, skip_bad=skip_bad, **options)
