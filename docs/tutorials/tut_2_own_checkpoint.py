"""
Bring your own checkpoint
=========================

matalign never downloads weights. Models whose weights live on hubs (MACE, Orb, MatterSim,
fairchem, ESM-2, a transformers encoder) take the file you fetched yourself; a model of your
own becomes an adapter in a few lines. Either way the store records the checkpoint's path and
SHA-256, so a result always says which weights made it.
"""

# %%
# The shipped bring-your-own adapters
# -----------------------------------
# Without ``checkpoint=`` they say which file they expect; with it, they load it (the
# package named by ``matalign models`` must be installed in the environment):
#
# .. code-block:: bash
#
#    matalign embed --model mace --checkpoint mace-mp-0-medium.model --data set.extxyz --out emb/mace
import os
import tempfile

import numpy as np
import torch

import matalign as ma

try:
    ma.adapters.get("mace")
except ValueError as exc:
    print(exc)

# %%
# A model of your own
# -------------------
# Here "your model" is a small torch network that embeds each atom from its atomic number and
# its distances to neighbours, pooled per structure. We save it as a checkpoint file, as
# training would.
work = tempfile.mkdtemp(prefix="matalign-tutorial-")


class AtomNet(torch.nn.Module):
    """Per-atom features: an element embedding plus a radial histogram, then an MLP."""

    def __init__(self, dim: int = 32, bins: int = 16, cutoff: float = 5.0):
        super().__init__()
        self.cutoff, self.bins = cutoff, bins
        self.element = torch.nn.Embedding(100, dim)
        self.mlp = torch.nn.Sequential(torch.nn.Linear(dim + bins, dim), torch.nn.SiLU(),
                                       torch.nn.Linear(dim, dim))

    def forward(self, numbers, distances):
        hist = torch.stack([torch.histc(d, bins=self.bins, min=0.0, max=self.cutoff)
                            for d in distances])
        return self.mlp(torch.cat([self.element(numbers), hist], dim=1))


torch.manual_seed(0)
checkpoint = os.path.join(work, "atomnet.pt")
torch.save(AtomNet().state_dict(), checkpoint)

# %%
# The adapter
# -----------
# Subclass :class:`matalign.adapters.Adapter`: set the name, modality and dimension, load the
# weights in ``__init__`` (set ``self.checkpoint`` so the store records the file and its
# SHA-256), and turn a batch of structures into a (batch, dim) array in ``_embed_batch``.
from ase.neighborlist import neighbor_list  # noqa: E402


class AtomNetAdapter(ma.adapters.Adapter):
    name = "atomnet"
    modality = "atoms"
    dim = 32
    layer = "mlp output, per atom"

    def __init__(self, checkpoint: str, *, pooling: str = "mean"):
        super().__init__(pooling=pooling)
        self.checkpoint = checkpoint
        self.model = AtomNet()
        self.model.load_state_dict(torch.load(checkpoint, weights_only=True))
        self.model.eval()

    def _embed_batch(self, batch):
        per_atom, counts = [], []
        with torch.no_grad():
            for s in batch:
                atoms = s.atoms
                i, d = neighbor_list("id", atoms, self.model.cutoff)
                dists = [torch.as_tensor(d[i == a], dtype=torch.float32)
                         for a in range(len(atoms))]
                numbers = torch.as_tensor(atoms.numbers, dtype=torch.long)
                per_atom.append(self.model(numbers, dists).numpy())
                counts.append(len(atoms))
        # one row per structure: the atoms' features pooled (mean by default)
        return ma.adapters.pool(np.concatenate(per_atom), counts, self.pooling)


mine = AtomNetAdapter(checkpoint)
crystals = ma.datasets.get("mptrj")      # 300 crystals that ship with matalign
store = ma.embed(crystals, mine, os.path.join(work, "atomnet"))
print(store.shape, store.metadata["adapter"]["checkpoint_sha256"][:16], "...")

# %%
# Compare it with a reference model
# ---------------------------------
# Against the element-statistics descriptor (a composition-only baseline): how much of what
# your model sees is composition?
ref = ma.embed(crystals, "element-stats", os.path.join(work, "element-stats"))
X = ma.preprocess(np.asarray(store), center=True, l2=True)
Y = ma.preprocess(np.asarray(ref), center=True, l2=True)
print(f"N = {len(X)}, k = 10: CKNNA = {ma.cknna(X, Y, k=10):.3f}, "
      f"mutual kNN = {ma.mutual_knn(X, Y, k=10):.3f}, linear CKA = {ma.cka(X, Y):.3f}")
