#!/usr/bin/env python3
"""Do the per-structure OOD scores find out-of-distribution structures? AUROC per model and
per score.

Data: the 300 shipped MPtrj crystals (``ma.datasets.get("mptrj")``), split by a seeded
shuffle into a reference half (in distribution) and a query half. Three constructed OOD
questions, each with the query half as negatives (label 0):

- rattle: the query crystals rattled by 0.5 Å (``crystal_ladder(kind="rattle")``);
- substitution: the query crystals with half their atoms substituted
  (``crystal_ladder(kind="substitution", levels=(0.5,))``);
- molecules: CCD molecules (``ma.datasets.get("ccd")``, the first --molecules with at most 40
  atoms), far out of distribution for crystal potentials.

Models (offline): CHGNet 0.3.0 and SevenNet-0, embedded with ``ma.embed`` into --store-dir
(reused when present). Scores (``matalign.ood.reference_scores``, k = --k): each model's
distance to its k-th nearest reference neighbour, its percentile, the consensus (mean
percentile, the default), 1 − agreement, and the within-set disagreement (1 − local kNN
agreement of the two models inside the query set, the older score). AUROC and FPR at 95 % TPR
(matalign.ood.auroc / fpr_at_tpr). The default score must beat within-set disagreement.

Examples::

    python bench/bench_ood.py                       # embeds once (minutes), then scores
    python bench/bench_ood.py --store-dir /tmp/ood --k 5
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

import matalign as ma
from matalign.datasets import crystal_ladder
from matalign.ood import auroc, fpr_at_tpr, reference_scores

MODELS = ("chgnet-0.3.0", "sevennet-0")


def embed(structures, model, path: Path) -> np.ndarray:
    if (path / "manifest.json").exists():
        store = ma.open_store(path)
    else:
        store = ma.embed(structures, model, path, resume=path.exists(), skip_bad=True)
    return np.asarray(store.embeddings, dtype=np.float64), list(store.ids)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--store-dir", default="/tmp/matalign-bench-ood")
    p.add_argument("--k", type=int, default=5)
    p.add_argument("--molecules", type=int, default=150)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--preprocess", choices=("none", "l2", "standardize"), default="none",
                   help="none: raw embeddings; l2: rows L2-normalised; standardize: columns "
                        "centred and scaled by the reference set's mean and sd")
    a = p.parse_args(argv)
    root = Path(a.store_dir)
    root.mkdir(parents=True, exist_ok=True)
    base = list(ma.datasets.get("mptrj"))
    order = np.random.default_rng(a.seed).permutation(len(base))
    ref_set = [base[i] for i in sorted(order[:len(base) // 2])]
    query = [base[i] for i in sorted(order[len(base) // 2:])]
    sets = {
        "reference": ref_set,
        "query": query,
        "rattle": list(crystal_ladder(query, kind="rattle", levels=(0.5,), seed=a.seed)),
        "substitution": list(crystal_ladder(query, kind="substitution", levels=(0.5,),
                                            seed=a.seed)),
        "molecules": list(ma.datasets.get("ccd", max_atoms=40, n=a.molecules)),
    }
    t0 = time.perf_counter()
    emb = {}
    for name, structs in sets.items():
        for m in MODELS:
            emb[name, m] = embed(structs, m, root / f"{name}-{m}")
    print(f"matalign {ma.__version__}; models {', '.join(MODELS)}; reference "
          f"{len(emb['reference', MODELS[0]][0])} crystals; k={a.k}; embedding/loading "
          f"{time.perf_counter() - t0:.0f} s")
    def prep(X, m):
        if a.preprocess == "l2":
            return X / np.maximum(np.linalg.norm(X, axis=1, keepdims=True), 1e-300)
        if a.preprocess == "standardize":
            R = emb["reference", m][0]
            return (X - R.mean(axis=0)) / np.maximum(R.std(axis=0), 1e-12)
        return X

    print(f"preprocessing: {a.preprocess}")
    ref = {m: prep(emb["reference", m][0], m) for m in MODELS}
    rows = []
    for question in ("rattle", "substitution", "molecules"):
        q = {}
        ok = True
        for m in MODELS:
            ids_q, ids_o = emb["query", m][1], emb[question, m][1]
            q[m] = prep(np.concatenate([emb["query", m][0], emb[question, m][0]]), m)
            if (len(ids_q), len(ids_o)) != (len(emb["query", MODELS[0]][1]),
                                            len(emb[question, MODELS[0]][1])):
                ok = False
        if not ok:
            print(f"{question}: the models embedded different numbers of structures; skipped")
            continue
        n0, n1 = len(emb["query", MODELS[0]][1]), len(emb[question, MODELS[0]][1])
        y = np.r_[np.zeros(n0), np.ones(n1)]
        s = reference_scores(ref, q, k=a.k)
        cols = dict(s.columns)
        cols["1 - agreement"] = 1.0 - cols.pop("agreement")
        for name, v in cols.items():
            rows.append((question, name, auroc(v, y), fpr_at_tpr(v, y), n0, n1))
    print(f"{'question':13s} {'score':34s} {'AUROC':>7} {'FPR@95':>7} {'n_in':>5} {'n_ood':>5}")
    for r in rows:
        print(f"{r[0]:13s} {r[1]:34s} {r[2]:7.3f} {r[3]:7.3f} {r[4]:5d} {r[5]:5d}")
    bad = 0
    for question in ("rattle", "substitution", "molecules"):
        d = {r[1]: r[2] for r in rows if r[0] == question}
        if d:
            beats = d["consensus"] > d["within_set_disagreement"]
            bad += not beats
            print(f"{question}: default (consensus) {d['consensus']:.3f} vs within-set "
                  f"disagreement {d['within_set_disagreement']:.3f}: "
                  f"{'beats it' if beats else 'DOES NOT beat it'}")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
