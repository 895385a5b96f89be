"""End to end on shipped structures: every offline adapter embeds structures that ship with
matalign or its packages (MPtrj/Alexandria crystals, CCD molecules, RDKit's NCI SMILES, a
mutant scan of a sequence) into a crash-safe store, and the engine compares the stores.

The adapter tests (test_adapters_*.py) check each model's numerics on hand-built structures;
this file checks that the pieces fit: datasets -> adapters -> store -> metrics.
"""

from __future__ import annotations

import itertools
import os

import numpy as np
import pytest

import matalign as ma

N = 6  # structures per adapter: enough for k = 2 neighbourhoods, cheap for every model


def _shipped(modality: str, name: str):
    if modality == "smiles":
        return list(itertools.islice(ma.datasets.get("nci"), N))
    if modality == "sequence":
        seq = "MKTAYIAKQRQISFVKSHFSRQ"
        return list(itertools.islice(ma.datasets.mutant_scan([seq], seed=0), N))
    if name.startswith("ani"):   # ANI-1x knows H, C, N, O only
        return list(itertools.islice(ma.datasets.get("ccd", elements="HCNO", max_atoms=30,
                                                     min_atoms=3), N))
    return list(itertools.islice(ma.datasets.get("mptrj"), N))


def _options(name: str, structures) -> dict:
    if name in ("soap", "acsf"):  # species: every element of these crystals
        return {"species": sorted({e for s in structures for e in s.atoms.get_chemical_symbols()})}
    return {}


# Protein structure models (ProteinMPNN, LigandMPNN) need residues with atom names: they are
# run on the offline peptides in tests/test_adapters_protein_structure.py, not on crystals.
OFFLINE = [a.name for a in ma.adapters.list(offline=True)
           if not a.target.startswith(("proteinmpnn:", "ligandmpnn:"))]


@pytest.mark.parametrize("name", OFFLINE)
def test_offline_adapter_on_shipped_structures_into_a_store(name, tmp_path):
    if name == "ani-1ccx" and not os.environ.get("MATALIGN_TORCHANI_WHEEL"):
        pytest.skip("ani-1ccx reads a torchani 0.3-2.0 wheel file: MATALIGN_TORCHANI_WHEEL is "
                    "not set (.ci/run downloads one; tests/test_ani1ccx.py says how)")
    info = ma.adapters.info(name)
    structures = _shipped(info.modality, name)
    assert len(structures) == N
    adapter = ma.adapters.get(name, **_options(name, structures))
    store = ma.embed(structures, adapter, tmp_path / name, chunk_size=4, batch_size=2)
    assert store.ids == tuple(s.id for s in structures)
    emb = np.asarray(store.embeddings)
    assert emb.shape == (N, adapter.dim) and emb.dtype == np.float32
    assert np.isfinite(emb).all()
    # The store holds exactly what a direct call returns (batching fixed by the store).
    direct = adapter.embed(structures, batch_size=2)
    np.testing.assert_array_equal(emb, direct)
    if name == "random-esen":
        # eSEN draws random edge rotations in its forward pass; the adapter runs one
        # structure per pass under a fixed seed, so any other batching is bitwise the same.
        # structures 1 and 2, in one batch here, were in different batches in the store
        np.testing.assert_array_equal(emb[1:3], adapter.embed(structures[1:3], batch_size=2))
    meta = ma.open_store(tmp_path / name).metadata
    assert meta["adapter"]["adapter"] == adapter.name
    assert meta["adapter"]["pooling"] == "mean"


def test_stores_of_two_models_compare_like_arrays(tmp_path):
    crystals = list(itertools.islice(ma.datasets.get("mptrj"), 24))
    a = ma.embed(crystals, "chgnet-0.3.0", tmp_path / "a", batch_size=8)
    b = ma.embed(crystals, "chgnet-0.2.0", tmp_path / "b", batch_size=8)
    A, B = np.asarray(a.embeddings), np.asarray(b.embeddings)
    assert ma.cknna(a, b, k=4) == ma.cknna(A, B, k=4)
    m = ma.alignment_matrix({"0.3.0": a, "0.2.0": b}, metrics=["cknna", "cka"], k=4)
    assert m.value("cka", "0.3.0", "0.2.0") == pytest.approx(ma.cka(A, B), abs=1e-12)
    # Two checkpoints of one model family see these crystals alike.
    assert m.value("cka", "0.3.0", "0.2.0") > 0.5
