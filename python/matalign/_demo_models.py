"""The real ``matalign demo``: offline models on shipped structures, in and out of distribution.

Two studies, each a run directory with its own report:

- **crystals**: a slice of the MPtrj/Alexandria crystals that ship with matalign, embedded by
  the offline MLIPs (three CHGNet checkpoints, SevenNet, DIEP), a SOAP descriptor baseline
  and random-init networks of real architectures; then an out-of-distribution ladder of the
  same crystals (strain, rattle, substitution).
- **molecules**: PDB Chemical Component Dictionary molecules (H, C, N, O; biotite ships
  them), embedded by ANI-1x, SevenNet, Morgan fingerprints, RDKit descriptors, SOAP and a
  text encoder reading SMILES (a non-science control).

Every metric runs on every set (CKNNA, mutual-kNN, CKA, distance correlation, information
imbalance, intrinsic dimension); each OOD set is scored structure by structure. The demo then
states the paper's two findings as checks on its own data and says whether they hold here.
Embeddings go to crash-safe stores under ``OUT/<study>/embeddings``: re-running the same
command resumes instead of starting over.
"""

from __future__ import annotations

import itertools
import json
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

__all__ = ["DemoPlan", "plan", "run", "FAMILY", "RANDOM"]

#: Checkpoints of one family: the paper's "same family aligns far above random" check.
FAMILY = ("chgnet-0.3.0", "chgnet-0.2.0", "chgnet-r2scan")
#: Random-init networks of real architectures (the paper's random baseline).
RANDOM = ("random-chgnet", "random-sevennet")
#: Metrics of every set's matrix (intrinsic dimension is per model).
METRICS = ("cknna", "mutual_knn", "cka", "dcor", "information_imbalance", "intrinsic_dimension")


@dataclass
class DemoPlan:
    """What one demo run does (see :func:`plan`)."""

    n_crystals: int
    n_molecules: int
    crystal_models: list
    molecule_models: list
    ladder: list            # (kind, level) pairs of the crystals' OOD sets
    k: int = 10
    seed: int = 0
    notes: list = field(default_factory=list)


def plan(quick: bool = False, n: int | None = None, k: int = 10, seed: int = 0) -> DemoPlan:
    """The default demo (``quick=True``: the CI-sized one, under 150 s on 2 cores).

    Examples
    --------
    >>> from matalign._demo_models import plan
    >>> p = plan(quick=True)
    >>> p.n_crystals, "chgnet-0.3.0" in p.crystal_models, len(p.ladder)
    (32, True, 3)
    """
    if quick:
        return DemoPlan(
            n_crystals=n or 32, n_molecules=n or 32,
            crystal_models=["chgnet-0.3.0", "chgnet-0.2.0", "chgnet-r2scan", "sevennet-0",
                            "diep", "soap", "random-chgnet"],
            molecule_models=["ani-1x", "sevennet-0", "morgan", "rdkit-descriptors",
                             "minilm-smiles", "soap"],
            ladder=[("strain", 0.1), ("rattle", 0.2), ("substitution", 0.5)], k=k, seed=seed)
    return DemoPlan(
        n_crystals=n or 150, n_molecules=n or 150,
        crystal_models=["chgnet-0.3.0", "chgnet-0.2.0", "chgnet-r2scan", "sevennet-0",
                        "sevennet-mf-0", "diep", "soap", "random-chgnet", "random-sevennet"],
        molecule_models=["ani-1x", "sevennet-0", "chgnet-0.3.0", "morgan", "rdkit-descriptors",
                         "minilm-smiles", "soap", "random-chgnet"],
        ladder=[("strain", 0.05), ("strain", 0.2), ("rattle", 0.1), ("rattle", 0.5),
                ("substitution", 0.25), ("substitution", 0.5)], k=k, seed=seed)


# -- structures ---------------------------------------------------------------------------------

def _crystals(n: int):
    """The first n shipped crystals whose elements SOAP's default species cover."""
    import matalign as ma
    from matalign.adapters.descriptors import DEFAULT_SPECIES

    allowed = set(DEFAULT_SPECIES)
    out = []
    for s in ma.datasets.get("mptrj"):
        if set(s.atoms.get_chemical_symbols()) <= allowed and len(s.atoms) <= 24:
            out.append(s)
            if len(out) == n:
                break
    return out


def _molecules(n: int):
    import matalign as ma

    return list(itertools.islice(ma.datasets.get("ccd", elements="HCNO", max_atoms=40,
                                                 min_atoms=4), n))


def _ladder(base, kind: str, level: float, seed: int):
    import matalign as ma

    return list(ma.datasets.crystal_ladder(base, kind=kind, levels=(level,), seed=seed))


# -- one study ------------------------------------------------------------------------------------

def _adapter(name: str, cache: dict, species):
    """Each model is loaded once per study (loading costs more than a small set's forward)."""
    import matalign as ma

    if name not in cache:
        options = {"species": species} if name == "soap" and species else {}
        cache[name] = ma.adapters.get(name, **options)
    return cache[name]


def _embed_all(structures, models, out: Path, echo, progress, cache, species):
    """Embed one set with every model into resumable stores; {model: (N, D) array}."""
    import matalign as ma

    embeddings = {}
    for name in models:
        t0 = time.perf_counter()
        adapter = _adapter(name, cache, species)
        store = ma.embed(structures, adapter, out / name, resume=True, progress=progress)
        embeddings[name] = ma.preprocess(np.asarray(store.embeddings), center=True, l2=True)
        echo(f"    {name:<18} {embeddings[name].shape[1]:>5}-d  {time.perf_counter() - t0:6.1f} s")
    return embeddings


def _study(name: str, sets: dict, models: list, out: Path, p: DemoPlan, echo, progress,
           labels: dict) -> dict:
    """Embed, compare and score every set of one study; write its run directory."""
    import matalign as ma
    from matalign import report
    from matalign.score import score

    root = out / name
    matrices, scores = {}, {}
    cache: dict = {}
    # SOAP's species: every element of every set (substitution brings in new ones).
    species = sorted({sym for structures in sets.values() for s in structures
                      if s.atoms is not None for sym in s.atoms.get_chemical_symbols()})
    for set_name, structures in sets.items():
        echo(f"  [{name}] {set_name}: {len(structures)} structures × {len(models)} models")
        emb = _embed_all(structures, models, root / "embeddings" / set_name, echo, progress,
                         cache, species)
        k = min(p.k, len(structures) - 1)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            matrices[set_name] = ma.alignment_matrix(emb, metrics=list(METRICS), k=k)
        for w in caught:   # e.g. duplicate fingerprints left out of the TwoNN estimate
            echo(f"    note: {w.message}")
        if set_name != "id":
            path = root / "sets" / set_name / "scores.csv"
            path.parent.mkdir(parents=True, exist_ok=True)
            score(emb, path, k=k, overwrite=True)
            scores[set_name] = path
    report.write_run(root, matrices, scores=scores, labels=labels, overwrite=True,
                     title=f"matalign demo: {name}",
                     description=_DESCRIPTIONS[name])
    return matrices


_DESCRIPTIONS = {
    "crystals": "Crystals shipped with matalign (MPtrj and Alexandria, CC-BY 4.0), embedded by "
                "offline MLIPs (CHGNet 0.3.0/0.2.0/r2SCAN, SevenNet, DIEP), a SOAP baseline "
                "and random-init networks, in distribution and on an OOD ladder of the same "
                "crystals (strain, rattle, substitution). Embeddings are mean-pooled atom "
                "features, centred and L2-normalised.",
    "molecules": "Molecules of the PDB Chemical Component Dictionary (H, C, N, O), embedded by "
                 "ANI-1x, SevenNet, Morgan fingerprints, RDKit descriptors, SOAP and the "
                 "MiniLM text encoder reading SMILES (a non-science control).",
}


def _pairs_mean(m, metric: str, a_set, b_set=None) -> float:
    names = m.names
    vals = []
    for a, b in itertools.combinations(names, 2):
        if b_set is None:
            if a in a_set and b in a_set:
                vals.append(m.value(metric, a, b))
        elif (a in a_set and b in b_set) or (b in a_set and a in b_set):
            vals.append(m.value(metric, a, b))
    return float(np.mean(vals)) if vals else float("nan")


def _dim(m, model: str) -> float:
    return float(np.asarray(m.per_model["intrinsic_dimension"])[list(m.names).index(model)])


def findings(matrices: dict, models: list) -> list[dict]:
    """The paper's two findings as checks on the crystals study's matrices.

    1. Same-family checkpoints align far above random-init models (CKNNA in distribution).
    2. Out of distribution, the trained models' representations change: the paper reports
       that they collapse onto a shared, low-information representation (higher mutual
       alignment, lower intrinsic dimension, information-imbalance points towards 0).
    """
    out = []
    m_id = matrices["id"]
    family = [f for f in FAMILY if f in models]
    randoms = [r for r in RANDOM if r in models]
    if len(family) >= 2 and randoms:
        fam = _pairs_mean(m_id, "cknna", family)
        rnd = _pairs_mean(m_id, "cknna", randoms, [x for x in models if x not in randoms])
        out.append({"finding": "same-family checkpoints align far above random-init models",
                    "measure": "mean CKNNA within CHGNet checkpoints vs random-init vs trained",
                    "values": {"family": fam, "random": rnd},
                    "holds": bool(fam > rnd + 0.1)})
    trained = [x for x in models if x not in RANDOM and x != "soap"]
    if len(trained) >= 2:
        base = _pairs_mean(m_id, "cknna", trained)
        id_dim = np.nanmean([_dim(m_id, x) for x in trained])
        ii_id = _pairs_mean(m_id, "information_imbalance", trained)
        base_mk = _pairs_mean(m_id, "mutual_knn", trained)
        rows = {}
        for set_name, m in matrices.items():
            if set_name == "id":
                continue
            rows[set_name] = {
                "cknna": _pairs_mean(m, "cknna", trained),
                "mutual_knn": _pairs_mean(m, "mutual_knn", trained),
                "intrinsic_dimension": float(np.nanmean([_dim(m, x) for x in trained])),
                "information_imbalance": _pairs_mean(m, "information_imbalance", trained)}
        up = [r["cknna"] > base for r in rows.values()]
        up_mk = [r["mutual_knn"] > base_mk for r in rows.values()]
        out.append({"finding": "out of distribution, trained models collapse onto a shared "
                               "representation (mutual alignment rises)",
                    "measure": "mean CKNNA over trained-model pairs, OOD set vs in-distribution",
                    "values": {"id": {"cknna": base, "mutual_knn": base_mk,
                                      "intrinsic_dimension": float(id_dim),
                                      "information_imbalance": ii_id}, **rows},
                    "holds": bool(sum(up) > len(up) / 2),
                    "detail": f"CKNNA higher in {sum(up)} of {len(up)} OOD sets, mutual kNN "
                              f"in {sum(up_mk)} of {len(up_mk)} (mean over "
                              f"{len(trained)} trained models; small sets are noisy)"})
    return out


def run(out, *, quick: bool = False, n: int | None = None, k: int = 10, seed: int = 0,
        report: bool = True, echo=print, progress: bool = True) -> dict:
    """Run the demo into ``out``; returns matrices, findings and report paths."""
    from matalign import report as report_mod

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    p = plan(quick=quick, n=n, k=k, seed=seed)
    t0 = time.perf_counter()
    echo(f"matalign demo{' --quick' if quick else ''}: {p.n_crystals} crystals, "
         f"{p.n_molecules} molecules -> {out}")

    crystals = _crystals(p.n_crystals)
    crystal_sets = {"id": crystals}
    labels = {"id": "in distribution (MPtrj/Alexandria)"}
    for kind, level in p.ladder:
        set_name = f"ood-{kind}-{level:g}"
        crystal_sets[set_name] = _ladder(crystals, kind, level, seed)
        unit = " Å" if kind == "rattle" else ""
        labels[set_name] = f"OOD {kind} {level:g}{unit}"
    cm = _study("crystals", crystal_sets, p.crystal_models, out, p, echo, progress, labels)

    molecules = _molecules(p.n_molecules)
    mm = _study("molecules", {"id": molecules}, p.molecule_models, out, p, echo, progress,
                {"id": "PDB CCD molecules (H, C, N, O)"})

    checks = findings(cm, p.crystal_models)
    echo(_summary({"crystals": cm, "molecules": mm}, p, checks))
    pages = {}
    if report:
        for study in ("crystals", "molecules"):
            pages[study] = report_mod.render(out / study)
    (out / "findings.json").write_text(json.dumps(checks, indent=2) + "\n")
    _index(out, pages, checks)
    seconds = time.perf_counter() - t0
    for study, page in pages.items():
        echo(f"report ({study}): {page}")
    echo(f"index: {out / 'index.html'}   ({seconds:.0f} s)")
    return {"crystals": cm, "molecules": mm, "findings": checks, "reports": pages,
            "index": out / "index.html", "seconds": seconds}


def _summary(studies: dict, p: DemoPlan, checks: list) -> str:
    """The terminal summary: mean alignment of the trained models per set, and the findings."""
    from rich.console import Console
    from rich.table import Table

    import io

    console = Console(file=io.StringIO(), record=True, width=100, force_terminal=False)
    table = Table(title="alignment across trained models (mean over pairs)", title_justify="left")
    for col in ("study / set", "models", "CKNNA", "mutual kNN", "CKA", "dCor", "II Δ", "ID"):
        table.add_column(col, justify="left" if col == "study / set" else "right")
    for study, matrices in studies.items():
        for set_name, m in matrices.items():
            trained = [x for x in m.names if x not in RANDOM and x != "soap"]
            cells = [_pairs_mean(m, metric, trained) for metric in
                     ("cknna", "mutual_knn", "cka", "dcor", "information_imbalance")]
            dim = float(np.nanmean([_dim(m, x) for x in trained]))
            table.add_row(f"{study} / {set_name}", str(len(trained)),
                          *[f"{v:.3f}" for v in cells], f"{dim:.1f}")
    console.print(table)
    checks_table = Table(title="the paper's findings, checked on this data", title_justify="left")
    for col in ("finding", "here", "evidence"):
        checks_table.add_column(col)
    for c in checks:
        v = c["values"]
        if "family" in v:
            evidence = f"CKNNA within family {v['family']:.3f} vs random {v['random']:.3f}"
        else:
            evidence = c.get("detail", "")
        checks_table.add_row(c["finding"], "holds" if c["holds"] else "does not hold",
                             evidence)
    console.print(checks_table)
    return console.export_text().rstrip()


def _index(out: Path, pages: dict, checks: list) -> None:
    import html

    items = "".join(f'<li><a href="{html.escape(str(p.relative_to(out)))}">{html.escape(s)}</a>'
                    f"</li>" for s, p in pages.items())
    rows = "".join(f"<tr><td>{html.escape(c['finding'])}</td><td>{'holds' if c['holds'] else 'does not hold'}"
                   f"</td><td>{html.escape(c.get('detail', json.dumps(c['values'], default=float)[:200]))}</td></tr>"
                   for c in checks)
    (out / "index.html").write_text(
        "<!doctype html><html><head><meta charset='utf-8'><title>matalign demo</title></head>"
        f"<body><h1>matalign demo</h1><ul>{items}</ul><h2>The paper's findings, checked here"
        f"</h2><table border='1'><tr><th>finding</th><th>here</th><th>detail</th></tr>{rows}"
        "</table></body></html>\n", encoding="utf-8")
