"""A synthetic, well-formed version-2 run directory (the layout ``matalign study`` writes), for
the report tests.

The matrices are real: seeded random embeddings through ``ma.alignment_matrix`` at each k of a
small k sweep. Everything a study computes on top (intervals, nulls, the tree, model errors,
findings) is made up here but has the documented shape and consistent values: each interval
contains its value, the tree's Newick holds exactly the run's models, every ordered pair is in
stats.json.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np

import matalign as ma

MODELS = ["alpha-1", "alpha-2", "beta-1", "gamma-1", "alpha-rand"]
FAMILIES = {"alpha-1": "Alpha", "alpha-2": "Alpha", "beta-1": "Beta", "gamma-1": "Gamma",
            "alpha-rand": "Alpha"}
RANDOM = ["alpha-rand"]
NEAR_DUPLICATES = [["alpha-1", "alpha-2"]]
FUNCTIONAL = {"alpha-1": "PBE", "alpha-2": "r2SCAN", "beta-1": "PBE", "gamma-1": "PBE"}
NEWICK = "((alpha-1:0.05,alpha-2:0.02):0.1,(beta-1:0.2,gamma-1:0.25):0.05,alpha-rand:0.4);"
TREE_ORDER = ["alpha-1", "alpha-2", "beta-1", "gamma-1", "alpha-rand"]
PREPROCESSING = {"center": True, "l2": True, "clip_quantile": None}
METRICS = ["cknna", "mutual_knn", "cka", "information_imbalance", "intrinsic_dimension"]
PAIR_METRICS = ["cknna", "mutual_knn", "cka", "information_imbalance"]
K_SWEEP = [5, 10]
DEFAULT_K = 10
# name, label, kind, level, ladder
SETS = [("id", "in-distribution crystals", "id", None, None),
        ("molecules", "molecules (far OOD)", "ood", None, None),
        ("rattle-0.1", "rattle 0.1 Å", "ladder", 0.1, "rattle"),
        ("rattle-0.3", "rattle 0.3 Å", "ladder", 0.3, "rattle")]
_FORMULAS = ["NaCl", "SiO2", "Fe2O3", "LiFePO4", "GaAs", "TiO2", "MgO", "Al2O3"]
_SMILES = ["CCO", "c1ccccc1", "CC(=O)O", "O", "CN", "C1CC1"]


def _embeddings(latent, rng, shift):
    d = latent.shape[1]
    out = {}
    for i, (name, sigma) in enumerate(zip(MODELS[:4], (0.0, 0.05, 0.3, 0.6))):
        w = np.random.default_rng(100 + i).normal(size=(d, 12)) / np.sqrt(d)
        noise = (sigma + shift) * rng.normal(size=latent.shape)
        out[name] = np.tanh((latent + noise) @ w)
    out["alpha-rand"] = np.tanh(latent @ rng.normal(size=(d, 12)) * 0.1
                                + rng.normal(size=(latent.shape[0], 12)))
    return out


def _write(path: Path, data) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=1), encoding="utf-8")
    return path.as_posix()


def _save_matrix(m, path: Path) -> None:
    m.save(path)
    data = json.loads(path.read_text(encoding="utf-8"))
    data["params"]["preprocessing"] = dict(PREPROCESSING)
    path.write_text(json.dumps(data), encoding="utf-8")


def make_run_v2(root, *, n=120, seed=0, with_optional=True, sets=None) -> Path:
    """Write a version-2 run directory under ``root`` and return its path.

    ``with_optional=False`` leaves out tree.json, errors.json, findings.json and scores;
    ``sets`` (set names) writes only those of :data:`SETS`.
    """
    root = Path(root)
    rng = np.random.default_rng(seed)
    base = rng.normal(size=(n, 4))
    entries = []
    for name, label, kind, level, ladder in SETS:
        if sets is not None and name not in sets:
            continue
        folder = root / "sets" / name
        folder.mkdir(parents=True, exist_ok=True)
        if kind == "ood":
            latent, shift = 2.0 + 1.5 * rng.normal(size=(n, 4)), 0.4
        else:
            latent, shift = base + (level or 0.0) * rng.normal(size=base.shape), level or 0.0
        spaces = _embeddings(latent, rng, shift)
        matrices = {k: ma.alignment_matrix(spaces, metrics=METRICS, k=k) for k in K_SWEEP}
        by_k = {}
        for k, m in matrices.items():
            _save_matrix(m, folder / f"matrix-k{k}.json")
            by_k[str(k)] = f"sets/{name}/matrix-k{k}.json"
        _save_matrix(matrices[DEFAULT_K], folder / "matrix.json")
        m = matrices[DEFAULT_K]
        ids = [f"{name}-{i:04d}" for i in range(n)]
        if kind == "ood":
            structures = [{"id": i, "formula": None, "smiles": _SMILES[j % len(_SMILES)]}
                          for j, i in enumerate(ids)]
        else:
            structures = [{"id": i, "formula": _FORMULAS[j % len(_FORMULAS)], "smiles": None}
                          for j, i in enumerate(ids)]
        _write(folder / "structures.json", structures)
        stats = {}
        for metric in PAIR_METRICS:
            stats[metric] = {}
            for a in MODELS:
                for b in MODELS:
                    if a == b:
                        continue
                    v = m.value(metric, a, b)
                    half = float(rng.uniform(0.01, 0.05))
                    stats[metric][f"{a}|{b}"] = {
                        "value": v, "low": v - half, "high": v + half, "level": 0.95,
                        "ci_method": "subsampling", "n": n, "k": DEFAULT_K,
                        "null_mean": 0.1 if metric != "information_imbalance" else 1.0,
                        "p_value": float(rng.uniform(0.001, 0.2)), "null_method": "permutation",
                        "n_permutations": 200}
        idv = dict(zip(m.names, m.per_model["intrinsic_dimension"].tolist()))
        stats["intrinsic_dimension"] = {
            model: {"value": v, "low": v - 0.4, "high": v + 0.5, "level": 0.95,
                    "ci_method": "subsampling", "n": n} for model, v in idv.items()}
        _write(folder / "stats.json", stats)
        ksweep = {metric: {f"{a}|{b}": [[k, matrices[k].value(metric, a, b),
                                         matrices[k].value(metric, a, b) - 0.03,
                                         matrices[k].value(metric, a, b) + 0.03]
                                        for k in K_SWEEP]
                           for a in MODELS for b in MODELS if a != b}
                  for metric in PAIR_METRICS}
        _write(folder / "ksweep.json", ksweep)
        scores_rel = None
        if with_optional and kind != "id":
            pairs = [(a, b) for i, a in enumerate(MODELS) for b in MODELS[i + 1:]]
            agree = {p: ma.local_agreement(spaces[p[0]], spaces[p[1]], k=DEFAULT_K)
                     for p in pairs}
            mean = np.mean([agree[p] for p in pairs], axis=0)
            rank = np.empty(n, dtype=np.int64)
            rank[np.argsort(mean, kind="stable")] = np.arange(1, n + 1)
            with open(folder / "scores.csv", "w", newline="", encoding="utf-8") as f:
                w = csv.writer(f)
                w.writerow(["row", "id", "formula"] + [f"local_agreement:{a}:{b}"
                                                       for a, b in pairs]
                           + ["mean_local_agreement", "rank"])
                for i in range(n):
                    st = structures[i]
                    w.writerow([i, st["id"], st["formula"] or st["smiles"]]
                               + [f"{agree[p][i]:.6g}" for p in pairs]
                               + [f"{mean[i]:.6g}", int(rank[i])])
            scores_rel = f"sets/{name}/scores.csv"
        entries.append({"name": name, "label": label, "kind": kind, "level": level,
                        "ladder": ladder, "n": n, "matrix": f"sets/{name}/matrix.json",
                        "intrinsic_dimension": None, "scores": scores_rel,
                        "structures": f"sets/{name}/structures.json",
                        "stats": f"sets/{name}/stats.json",
                        "ksweep": f"sets/{name}/ksweep.json", "matrices_by_k": by_k})
    index = {"format": "matalign.run", "version": 2, "title": "synthetic study",
             "description": "made-up run for the report tests", "models": list(MODELS),
             "reference": "alpha-1", "families": dict(FAMILIES), "random": list(RANDOM),
             "near_duplicates": [list(p) for p in NEAR_DUPLICATES],
             "preprocessing": dict(PREPROCESSING),
             "knn": {"k": DEFAULT_K, "metric": "ip", "k_sweep": list(K_SWEEP)},
             "sets": entries, "tree": None, "findings": None, "errors": None,
             "created": "2026-01-01T00:00:00+00:00", "matalign_version": "test"}
    if with_optional:
        _write(root / "tree.json", {"set": "id", "k": 25, "metric": "cknna",
                                    "method": "nj-sqrt-jsd", "newick": NEWICK,
                                    "order": list(TREE_ORDER)})
        _write(root / "errors.json", {
            "label": "force MAE (eV/Å)",
            "values": {"alpha-1": 0.03, "alpha-2": 0.05, "beta-1": 0.07, "gamma-1": 0.11},
            "energy_label": "energy MAE (eV/atom)",
            "energy": {"alpha-1": 0.01, "alpha-2": 0.02, "beta-1": 0.03, "gamma-1": 0.05},
            "functional": dict(FUNCTIONAL), "note": "synthetic"})
        _write(root / "findings.json", [
            {"finding": "Trained models align in distribution", "question": "alignment",
             "test": "CKNNA vs permutation null", "statistic": "mean CKNNA",
             "null": "permutation", "n": n, "k": DEFAULT_K, "preprocessing": "center+l2",
             "value": 0.61, "ci": [0.55, 0.67], "p_value": 0.001, "verdict": "holds",
             "detail": "all trained pairs above the null",
             "near_duplicates": [list(p) for p in NEAR_DUPLICATES]},
            {"finding": "Alignment collapses on molecules", "question": "ood",
             "test": "ID − OOD difference of mean CKNNA", "statistic": "difference",
             "null": "subsampling interval", "n": n, "k": DEFAULT_K,
             "preprocessing": "center+l2", "value": 0.02, "ci": [-0.04, 0.08],
             "p_value": None, "verdict": "inconclusive", "detail": "intervals overlap",
             "near_duplicates": []}])
        index.update(tree="tree.json", errors="errors.json", findings="findings.json")
    _write(root / "run.json", index)
    return root
