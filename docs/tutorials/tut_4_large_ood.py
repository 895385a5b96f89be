"""
Scoring a very large OOD set
============================

Scoring millions of structures is a stream: structures are generated or read as they are
embedded, each model's store is one ``embeddings.npy`` read as a memory map (out of core),
and the scores are written block by block, so memory stays bounded at any N. This tutorial
runs the whole path on 3,000 structures; the same calls handle millions (``bench/score_1m.sh``
in the source repository scores a million).

On the command line:

.. code-block:: bash

   matalign embed --model composition --data synthetic-crystals --data-option n=1000000 \
       --chunk-size 65536 --out emb/synthetic/composition --resume
   matalign score emb/synthetic/* --out scores.parquet          # streamed, out of core

and ``matalign score --cluster`` spreads the scoring over several machines where that
option is available (see ``matalign score --help``).
"""

# %%
# A streamed set of structures
# ----------------------------
# ``synthetic_crystals`` generates strained and rattled crystals from a seed, lazily: the
# set is never held in memory.
import os
import tempfile

import numpy as np

import matalign as ma
from matalign.score import read_scores, score

work = tempfile.mkdtemp(prefix="matalign-tutorial-")
big = ma.datasets.synthetic_crystals(3000, seed=0)
print(big)

# %%
# Embed into stores, chunk by chunk
# ---------------------------------
# Each committed chunk survives a crash (``resume=True`` continues); the finished store is
# read as a memory map.
models = ["element-stats", "composition"]
stores = {m: ma.embed(big, m, os.path.join(work, m), chunk_size=1024) for m in models}
for m, s in stores.items():
    print(m, s.shape, s.dtype)

# %%
# Per-structure disagreement, streamed to a file
# ----------------------------------------------
# One row per structure: each model pair's local agreement and CKNNA share; written in
# blocks of ``block_rows`` (Parquet row groups or CSV chunks).
res = score(stores, os.path.join(work, "scores.csv"), k=10, block_rows=1000)
print(res.n, "structures scored;", "columns:", res.columns[:4], "...")
table = read_scores(res.path)
col = [c for c in table if c.startswith("local_agreement")][0]
worst = np.argsort(np.asarray(table[col], dtype=float))[:5]
print("most disagreed rows:", worst.tolist())

# %%
# Out of distribution against a reference set
# -------------------------------------------
# The shipped crystals are the reference (in distribution); every query gets its distance
# to its k-th reference neighbour in each model, read in blocks from the memory maps.
ref_set = ma.datasets.get("mptrj")
reference = {m: np.asarray(ma.embed(ref_set, m, os.path.join(work, "ref-" + m)))
             for m in models}
queries = {m: np.asarray(s) for m, s in stores.items()}
ood = ma.ood.reference_scores(reference, queries, k=5, block_rows=1024)
top = np.argsort(-ood.columns["consensus"])[:5]
print(f"N = {ood.columns['consensus'].size} queries, k = {ood.k}, "
      f"reference N = {ood.n_reference}; most out-of-distribution rows: {top.tolist()}")
