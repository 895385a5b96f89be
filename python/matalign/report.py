"""Run directories and the self-contained HTML report (``matalign report RUN_DIR``).

A **run directory** holds the results of comparing M models on one or more structure sets
(e.g. in-distribution ``id`` and an OOD ladder ``ood-strain-0.05``). Format, version 1::

    RUN_DIR/
      run.json                                  the index (below)
      sets/<set>/matrix.json                    AlignmentMatrix.save(): model × model metrics
                                                (cknna, mutual_knn, cka, dcor,
                                                information_imbalance) and per_model
                                                intrinsic_dimension
      sets/<set>/intrinsic_dimension.json       optional {model: dimension}; overrides the
                                                matrix's per_model values
      sets/<set>/scores.parquet | scores.csv    optional: matalign.score.score() table
      errors.json                               optional: {"label": "energy MAE (meV/atom)",
                                                "values": {model: error}}
      report.html, plots/*.png                  written by render()

``run.json``::

    {"format": "matalign.run", "version": 1,
     "title": "...", "description": "...",
     "models": ["chgnet", "sevennet", ...],      # display order; every set's matrix has them
     "reference": "sevennet" | null,             # the model of "alignment vs reference"
     "sets": [{"name": "id", "label": "in-distribution",
               "matrix": "sets/id/matrix.json",
               "intrinsic_dimension": null | "sets/id/intrinsic_dimension.json",
               "scores": null | "sets/id/scores.parquet"}, ...],
     "errors": null | "errors.json",
     "created": "2025-01-01T00:00:00+00:00", "matalign_version": "0.1.0"}

Paths are relative to ``RUN_DIR``. :func:`write_run` writes this layout from Python objects;
:func:`load_run` reads and checks it; :func:`render` draws the figures and writes the page.

**Version 2** (written by ``matalign study``) adds, per set, ``kind`` ("id" | "ood" | "ladder"),
``level``, ``ladder``, ``n``, ``structures`` (``[{"id", "formula", "smiles"}]`` in row order),
``stats`` (per metric and ordered pair ``"a|b"``: value, low, high, CI method, null mean,
p-value, null method; per model ``intrinsic_dimension`` with its interval), ``ksweep`` and
``matrices_by_k``; and at the top ``families``, ``random`` (random-init baselines),
``near_duplicates``, ``preprocessing``, ``knn``, ``tree`` (tree.json: Newick and leaf order),
``errors`` (errors.json, with each model's training ``functional``) and ``findings``
(findings.json). :func:`load_run` checks every file it reads and names the file and the key of
any problem.

The page embeds every PNG as a base64 ``data:`` URI (each figure is also saved as SVG in
``plots/``), has no scripts and loads nothing from the network. Every panel uses one model
order (:func:`model_order`: tree.json's order, else average linkage on the in-distribution
CKNNA) and fixed colour ranges per metric (:mod:`matalign.plots`). Figures: a heatmap per set
and metric titled with N, k and the preprocessing; for version 2, OOD − ID difference maps per
metric and OOD set and trend lines per perturbation ladder (mean over trained-model pairs and
intrinsic dimension against the level, with the intervals of stats.json); the model tree
(tree.json's Newick, leaves coloured by family, random-init models marked; without tree.json,
average linkage on 1 − CKNNA); the information-imbalance plane (both directions, every point
labelled, the reference model's pairs outlined); alignment to the reference model against each
model's error, grouped by functional; intrinsic dimension with intervals; all sets' CKNNA side by
side; per-structure disagreement with structure ids and formulas or SMILES for every pair; and
(version 2) the findings table with verdicts and flagged near-duplicates.
"""

from __future__ import annotations

import base64
import csv
import datetime as _dt
import html
import json
import re
import shutil
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from . import _engine
from ._io import atomic_json, atomic_write_text
from .result import AlignmentMatrix

__all__ = ["write_run", "load_run", "render", "model_order", "RUN_FORMAT", "RUN_VERSION",
           "READ_VERSIONS"]

RUN_FORMAT = "matalign.run"
RUN_VERSION = 1
READ_VERSIONS = (1, 2)
_SET_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]*$")
_TOP_ROWS = 20


def _atomic_json(path: Path, data) -> None:
    # A failed write leaves its hidden ".<name>.partial-<pid>" file behind, as it always has.
    atomic_json(path, data, indent=2, hidden=True, cleanup=False)


def write_run(run_dir, sets, *, scores=None, intrinsic_dimension=None, errors=None,
              error_label="error", reference=None, labels=None, title="matalign run",
              description="", overwrite=False) -> Path:
    """Write a run directory (format in the module docstring) that :func:`render` can draw.

    Parameters
    ----------
    run_dir : str or os.PathLike
        The directory (created if needed).
    sets : dict of str -> AlignmentMatrix or path
        Structure-set name (letters, digits, ``._+-``) -> its model × model matrix, in display
        order (e.g. ``{"id": m_id, "ood-strain-0.05": m_ood}``). Every matrix must hold the
        same models.
    scores : dict of str -> path, optional
        Set name -> a table written by :func:`matalign.score.score` (``.csv``/``.parquet``);
        copied to ``sets/<set>/scores.<ext>`` unless it is already there.
    intrinsic_dimension : dict of str -> dict of str -> float, optional
        Set name -> {model: dimension}, when not already in the matrices' ``per_model``.
    errors : dict of str -> float, optional
        Model -> its error on some task (any subset of the models), for the plot of alignment
        to ``reference`` against error.
    error_label : str, default "error"
        Axis label of the errors, with units (e.g. "energy MAE (meV/atom)").
    reference : str, optional
        Reference model; default: the model with the lowest error when errors are given.
    labels : dict of str -> str, optional
        Set name -> readable label (default the name).
    title, description : str
        Shown at the top of the report.
    overwrite : bool, default False
        Replace an existing ``run.json`` (otherwise FileExistsError).

    Returns
    -------
    pathlib.Path
        The path of ``run.json``.

    Raises
    ------
    ValueError
        For no sets, a bad set name, matrices with different models, an unknown reference or
        a model in ``errors`` that is not in the run.
    FileExistsError
        If ``run.json`` exists and ``overwrite`` is False.

    Examples
    --------
    >>> import os, tempfile
    >>> import numpy as np
    >>> import matalign as ma
    >>> from matalign.report import write_run, load_run
    >>> rng = np.random.default_rng(0)
    >>> X = rng.normal(size=(200, 8))
    >>> spaces = {"a": X, "b": X + 0.1 * rng.normal(size=X.shape), "c": rng.normal(size=(200, 8))}
    >>> m = ma.alignment_matrix(spaces, metrics=["cknna", "intrinsic_dimension"], k=10)
    >>> with tempfile.TemporaryDirectory() as run:
    ...     path = write_run(run, {"id": m}, errors={"a": 0.1, "b": 0.2})
    ...     info = load_run(run)
    >>> path.name, info["models"], info["reference"], [s["name"] for s in info["sets"]]
    ('run.json', ['a', 'b', 'c'], 'a', ['id'])
    """
    run_dir = Path(run_dir)
    if not isinstance(sets, Mapping) or not sets:
        raise ValueError("sets must be a non-empty dict of set name -> AlignmentMatrix")
    index_path = run_dir / "run.json"
    if index_path.exists() and not overwrite:
        raise FileExistsError(f"{index_path} exists; pass overwrite=True to replace it")
    labels = dict(labels or {})
    scores = dict(scores or {})
    intrinsic_dimension = dict(intrinsic_dimension or {})
    matrices = {}
    for name, m in sets.items():
        if not isinstance(name, str) or not _SET_NAME.match(name):
            raise ValueError(f"set name {name!r} must be letters, digits and . _ + - (it "
                             f"becomes a folder name)")
        matrices[name] = m if isinstance(m, AlignmentMatrix) else AlignmentMatrix.load(m)
    for where, d in (("scores", scores), ("intrinsic_dimension", intrinsic_dimension),
                     ("labels", labels)):
        unknown = [s for s in d if s not in matrices]
        if unknown:
            raise ValueError(f"{where} names sets that are not in sets: {unknown}")
    first = next(iter(matrices))
    models = list(matrices[first].names)
    for name, m in matrices.items():
        if sorted(m.names) != sorted(models):
            raise ValueError(f"every set must compare the same models: set {first!r} has "
                             f"{models} but set {name!r} has {list(m.names)}")
    errors = {str(k): float(v) for k, v in (errors or {}).items()}
    unknown = [m for m in errors if m not in models]
    if unknown:
        raise ValueError(f"errors names models that are not in the run: {unknown}; models: "
                         f"{models}")
    if reference is None and errors:
        reference = min(errors, key=errors.get)
    if reference is not None and reference not in models:
        raise ValueError(f"reference {reference!r} is not one of the models {models}")

    run_dir.mkdir(parents=True, exist_ok=True)
    entries = []
    for name, m in matrices.items():
        folder = run_dir / "sets" / name
        folder.mkdir(parents=True, exist_ok=True)
        m.save(folder / "matrix.json")
        entry = {"name": name, "label": str(labels.get(name, name)),
                 "matrix": f"sets/{name}/matrix.json", "intrinsic_dimension": None,
                 "scores": None}
        if name in intrinsic_dimension:
            ids = {str(k): float(v) for k, v in intrinsic_dimension[name].items()}
            _atomic_json(folder / "intrinsic_dimension.json", ids)
            entry["intrinsic_dimension"] = f"sets/{name}/intrinsic_dimension.json"
        if name in scores:
            src = Path(scores[name])
            if not src.is_file():
                raise FileNotFoundError(f"scores[{name!r}]: {src} does not exist")
            ext = src.suffix.lower()
            if ext not in (".csv", ".parquet"):
                raise ValueError(f"scores[{name!r}] must be a .csv or .parquet table; got "
                                 f"{src.name}")
            dest = folder / f"scores{ext}"
            if src.resolve() != dest.resolve():
                shutil.copyfile(src, dest)
            entry["scores"] = f"sets/{name}/scores{ext}"
        entries.append(entry)
    errors_rel = None
    if errors:
        _atomic_json(run_dir / "errors.json", {"label": str(error_label), "values": errors})
        errors_rel = "errors.json"
    index = {"format": RUN_FORMAT, "version": RUN_VERSION, "title": str(title),
             "description": str(description), "models": models, "reference": reference,
             "sets": entries, "errors": errors_rel,
             "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
             "matalign_version": _engine.version()}
    _atomic_json(index_path, index)
    return index_path


_KINDS = ("id", "ood", "ladder")
_VERDICTS = ("holds", "does not hold", "inconclusive")
_FINDING_KEYS = ("finding", "test", "n", "k", "value", "ci", "p_value", "verdict")


def _is_num(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def _bad(path, key, what):
    return ValueError(f"{path}: {key}: {what}")


def _read_json(root: Path, rel, key: str):
    if not isinstance(rel, str) or not rel:
        raise ValueError(f"{root / 'run.json'}: {key}: must be a path relative to the run "
                         f"directory; got {rel!r}")
    path = root / rel
    if not path.is_file():
        raise FileNotFoundError(f"{path} (named in run.json at {key}) not found")
    try:
        return path, json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path} (named in run.json at {key}) is not valid JSON ({exc})") from None


def _check_stats(path, data, models) -> None:
    if not isinstance(data, dict):
        raise _bad(path, "(top level)", "must be an object of metric -> pairs")
    for metric, entries in data.items():
        if not isinstance(entries, dict):
            raise _bad(path, metric, "must be an object")
        for key, rec in entries.items():
            where = f"{metric}.{key}"
            if metric == "intrinsic_dimension":
                if key not in models:
                    raise _bad(path, where, f"is not a model of the run {models}")
            else:
                parts = key.split("|")
                if len(parts) != 2 or parts[0] not in models or parts[1] not in models:
                    raise _bad(path, where, f"pair keys must be 'a|b' with a and b models of "
                                            f"the run {models}")
            if not isinstance(rec, dict) or not _is_num(rec.get("value")):
                raise _bad(path, where, "must be an object with a numeric 'value'")
            for bound in ("low", "high", "p_value", "null_mean"):
                if rec.get(bound) is not None and not _is_num(rec[bound]):
                    raise _bad(path, f"{where}.{bound}", f"must be a number or null; got "
                                                         f"{rec[bound]!r}")


def _check_ksweep(path, data, models) -> None:
    if not isinstance(data, dict):
        raise _bad(path, "(top level)", "must be an object of metric -> pairs")
    for metric, entries in data.items():
        if not isinstance(entries, dict):
            raise _bad(path, metric, "must be an object")
        for key, rows in entries.items():
            where = f"{metric}.{key}"
            parts = key.split("|")
            if len(parts) != 2 or parts[0] not in models or parts[1] not in models:
                raise _bad(path, where, f"pair keys must be 'a|b' with a and b models of the "
                                        f"run {models}")
            if not isinstance(rows, list) or not all(
                    isinstance(r, list) and len(r) == 4 and _is_num(r[0]) and _is_num(r[1])
                    and all(x is None or _is_num(x) for x in r[2:]) for r in rows):
                raise _bad(path, where, "must be a list of [k, value, low, high] rows")


def _check_v2_index(index_path, index) -> None:
    models = index["models"]
    if not all(isinstance(m, str) for m in models) or len(set(models)) != len(models):
        raise _bad(index_path, "models", "must be distinct model names")
    fam = index.setdefault("families", {})
    if not isinstance(fam, dict) or not all(isinstance(v, str) or v is None
                                            for v in fam.values()):
        raise _bad(index_path, "families", "must be an object of model -> family name")
    for key in ("random",):
        val = index.setdefault(key, [])
        if not isinstance(val, list) or any(m not in models for m in val):
            raise _bad(index_path, key, f"must be a list of models of the run {models}; got "
                                        f"{val!r}")
    dups = index.setdefault("near_duplicates", [])
    if not isinstance(dups, list) or not all(
            isinstance(p, list) and len(p) == 2 and all(m in models for m in p) for p in dups):
        raise _bad(index_path, "near_duplicates", f"must be a list of [a, b] pairs of models "
                                                  f"of the run {models}")
    if not isinstance(index.get("preprocessing"), dict):
        raise _bad(index_path, "preprocessing", "must be an object (e.g. {\"center\": true, "
                                                "\"l2\": true, \"clip_quantile\": null})")
    knn = index.get("knn")
    if not isinstance(knn, dict) or not isinstance(knn.get("k"), int):
        raise _bad(index_path, "knn", "must be an object with an integer 'k'")
    for i, entry in enumerate(index["sets"]):
        where = f"sets[{i}]"
        if not isinstance(entry, dict):
            raise _bad(index_path, where, "must be an object")
        for key in ("name", "matrix", "kind", "n"):
            if key not in entry:
                raise _bad(index_path, f"{where}.{key}", "is missing")
        if entry["kind"] not in _KINDS:
            raise _bad(index_path, f"{where}.kind", f"must be one of {list(_KINDS)}; got "
                                                    f"{entry['kind']!r}")
        if not isinstance(entry["n"], int) or isinstance(entry["n"], bool) or entry["n"] < 1:
            raise _bad(index_path, f"{where}.n", f"must be a positive integer; got "
                                                 f"{entry['n']!r}")
        if entry["kind"] == "ladder":
            if not _is_num(entry.get("level")):
                raise _bad(index_path, f"{where}.level", "a ladder set needs a numeric level")
            if not isinstance(entry.get("ladder"), str) or not entry["ladder"]:
                raise _bad(index_path, f"{where}.ladder", "a ladder set needs its ladder name")
        by_k = entry.setdefault("matrices_by_k", {})
        if not isinstance(by_k, dict):
            raise _bad(index_path, f"{where}.matrices_by_k", "must be an object k -> path")
        entry.setdefault("label", entry["name"])


def load_run(run_dir) -> dict:
    """Read and check ``RUN_DIR/run.json`` (version 1, or version 2 as ``matalign study``
    writes it: docs/ of the repository and the module docstring describe both).

    Returns
    -------
    dict
        run.json's content, plus per set ``"matrix_obj"`` (the loaded AlignmentMatrix) and
        ``"id_values"`` ({model: dimension}, possibly empty), and in version 2
        ``"stats_obj"``, ``"ksweep_obj"``, ``"structures_obj"`` (None when absent) and
        ``"id_intervals"`` ({model: (low, high)}); ``"error_values"``, ``"error_label"`` and
        ``"error_functional"`` (empty / None without errors); ``"tree_obj"`` and
        ``"findings_obj"`` (None when absent); ``"root"`` (the directory).

    Raises
    ------
    FileNotFoundError
        If the directory or ``run.json`` or a file it names is missing.
    ValueError
        If ``run.json`` is not a matalign run of a supported version, or a file is malformed
        (the message names the file and the key).

    Examples
    --------
    >>> from matalign.report import load_run
    >>> load_run("/nonexistent/run")
    Traceback (most recent call last):
    ...
    FileNotFoundError: /nonexistent/run/run.json not found: a run directory needs run.json (matalign.report.write_run writes one)
    """
    root = Path(run_dir)
    index_path = root / "run.json"
    if not index_path.is_file():
        raise FileNotFoundError(f"{index_path} not found: a run directory needs run.json "
                                f"(matalign.report.write_run writes one)")
    try:
        index = json.loads(index_path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ValueError(f"{index_path} is not valid JSON ({exc})") from None
    if not isinstance(index, dict) or index.get("format") != RUN_FORMAT:
        raise ValueError(f"{index_path} is not a matalign run (format must be {RUN_FORMAT!r})")
    if index.get("version") not in READ_VERSIONS:
        raise ValueError(f"{index_path} has version {index.get('version')!r}; this matalign "
                         f"reads versions {list(READ_VERSIONS)}")
    for key in ("models", "sets"):
        if not isinstance(index.get(key), list) or not index[key]:
            raise ValueError(f"{index_path}: {key!r} must be a non-empty list")
    v2 = index["version"] == 2
    if v2:
        _check_v2_index(index_path, index)
    models = list(index["models"])
    index["root"] = root
    for i, entry in enumerate(index["sets"]):
        if not isinstance(entry, dict) or not isinstance(entry.get("matrix"), str):
            raise _bad(index_path, f"sets[{i}].matrix", "every set needs a 'matrix' path")
        entry.setdefault("label", entry.get("name", f"set {i}"))
        mpath = root / entry["matrix"]
        if not mpath.is_file():
            raise FileNotFoundError(f"{mpath} (named in run.json at sets[{i}].matrix) not found")
        m = AlignmentMatrix.load(mpath)
        if v2 and sorted(m.names) != sorted(models):
            raise _bad(mpath, "names", f"holds models {list(m.names)}; run.json lists "
                                       f"{models}")
        entry["matrix_obj"] = m
        values = {}
        if "intrinsic_dimension" in m.per_model:
            values = dict(zip(m.names, m.per_model["intrinsic_dimension"].tolist()))
        if entry.get("intrinsic_dimension"):
            _, extra = _read_json(root, entry["intrinsic_dimension"],
                                  f"sets[{i}].intrinsic_dimension")
            values.update(extra)
        entry["id_values"] = values
        if entry.get("scores") and not (root / entry["scores"]).is_file():
            raise FileNotFoundError(f"{root / entry['scores']} (named in run.json at "
                                    f"sets[{i}].scores) not found")
        entry["stats_obj"] = entry["ksweep_obj"] = entry["structures_obj"] = None
        entry["id_intervals"] = {}
        if not v2:
            continue
        if entry.get("stats"):
            path, stats = _read_json(root, entry["stats"], f"sets[{i}].stats")
            _check_stats(path, stats, models)
            entry["stats_obj"] = stats
            for model, rec in stats.get("intrinsic_dimension", {}).items():
                entry["id_values"].setdefault(model, float(rec["value"]))
                if _is_num(rec.get("low")) and _is_num(rec.get("high")):
                    entry["id_intervals"][model] = (float(rec["low"]), float(rec["high"]))
        if entry.get("ksweep"):
            path, ks = _read_json(root, entry["ksweep"], f"sets[{i}].ksweep")
            _check_ksweep(path, ks, models)
            entry["ksweep_obj"] = ks
        if entry.get("structures"):
            path, st = _read_json(root, entry["structures"], f"sets[{i}].structures")
            if not isinstance(st, list) or not all(isinstance(r, dict) and isinstance(
                    r.get("id"), str) for r in st):
                raise _bad(path, "(top level)", "must be a list of {\"id\": str, \"formula\", "
                                                "\"smiles\"} objects")
            if len(st) != entry["n"]:
                raise _bad(path, "(top level)", f"holds {len(st)} structures; run.json "
                                                f"sets[{i}].n says {entry['n']}")
            entry["structures_obj"] = st
        for k, rel in entry["matrices_by_k"].items():
            if not (root / rel).is_file():
                raise FileNotFoundError(f"{root / rel} (named in run.json at "
                                        f"sets[{i}].matrices_by_k.{k}) not found")
    index["error_values"], index["error_label"], index["error_functional"] = {}, None, {}
    if index.get("errors"):
        path, data = _read_json(root, index["errors"], "errors")
        if not isinstance(data, dict) or not isinstance(data.get("values"), dict):
            raise _bad(path, "values", "must be an object of model -> error")
        for model, v in data["values"].items():
            if not _is_num(v):
                raise _bad(path, f"values.{model}", f"must be a number; got {v!r}")
            if v2 and model not in models:
                raise _bad(path, f"values.{model}", f"is not a model of the run {models}")
        functional = data.get("functional") or {}
        if not isinstance(functional, dict):
            raise _bad(path, "functional", "must be an object of model -> functional")
        index["error_values"] = {k: float(v) for k, v in data["values"].items()}
        index["error_label"] = data.get("label", "error")
        index["error_functional"] = {k: v for k, v in functional.items() if v}
    index["tree_obj"] = None
    if v2 and index.get("tree"):
        path, tree = _read_json(root, index["tree"], "tree")
        if not isinstance(tree, dict) or not isinstance(tree.get("newick"), str):
            raise _bad(path, "newick", "must be a Newick string")
        from .plots import newick_leaves, parse_newick

        try:
            leaves = newick_leaves(parse_newick(tree["newick"]))
        except ValueError as exc:
            raise _bad(path, "newick", str(exc)) from None
        unknown = [x for x in leaves if x not in models]
        if unknown:
            raise _bad(path, "newick", f"names leaves that are not models of the run: "
                                       f"{unknown}")
        order = tree.get("order", leaves)
        if (not isinstance(order, list) or any(x not in models for x in order)
                or len(set(order)) != len(order)):
            raise _bad(path, "order", f"must be distinct models of the run {models}")
        index["tree_obj"] = tree
    index["findings_obj"] = None
    if v2 and index.get("findings"):
        path, findings = _read_json(root, index["findings"], "findings")
        if not isinstance(findings, list):
            raise _bad(path, "(top level)", "must be a list of findings")
        for j, f in enumerate(findings):
            if not isinstance(f, dict):
                raise _bad(path, f"[{j}]", "must be an object")
            for key in _FINDING_KEYS:
                if key not in f:
                    raise _bad(path, f"[{j}].{key}", "is missing")
            if f["verdict"] not in _VERDICTS:
                raise _bad(path, f"[{j}].verdict", f"must be one of {list(_VERDICTS)}; got "
                                                   f"{f['verdict']!r}")
            ci = f["ci"]
            if ci is not None and not (isinstance(ci, list) and len(ci) == 2
                                       and all(x is None or _is_num(x) for x in ci)):
                raise _bad(path, f"[{j}].ci", f"must be [low, high] or null; got {ci!r}")
        index["findings_obj"] = findings
    return index


# ---------------------------------------------------------------------------------------------
# Rendering
# ---------------------------------------------------------------------------------------------

_CSS = """
body { font-family: -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; margin: 2em auto;
       max-width: 1180px; color: #1b1b1b; line-height: 1.45; padding: 0 1em; }
h1 { font-size: 1.6em; margin-bottom: 0.2em; }
h2 { font-size: 1.25em; border-bottom: 1px solid #ddd; padding-bottom: 0.2em; margin-top: 2em; }
h3 { font-size: 1.05em; }
nav { background: #f6f8fa; border: 1px solid #e1e4e8; padding: 0.4em 0.8em; font-size: 0.9em; }
nav a { margin-right: 1em; color: #0b5394; text-decoration: none; }
figure { margin: 1em 0; }
figure img { max-width: 100%; height: auto; border: 1px solid #eee; }
figcaption, .note { color: #555; font-size: 0.9em; }
.note { background: #f6f6f6; border-left: 3px solid #bbb; padding: 0.4em 0.8em; }
table { border-collapse: collapse; font-size: 0.85em; margin: 0.6em 0; }
th, td { border: 1px solid #ddd; padding: 0.25em 0.6em; text-align: right; vertical-align: top; }
th { background: #f2f2f2; text-align: left; }
tbody tr:nth-child(even) { background: #fafafa; }
td.name { text-align: left; }
td.holds { background: #e3f4e3; }
td.does-not-hold { background: #fbe3e3; }
td.inconclusive { background: #fff4d6; }
details summary { cursor: pointer; color: #0b5394; }
.grid { display: flex; flex-wrap: wrap; gap: 1em; }
.grid figure { flex: 1 1 480px; }
"""


class _Page:
    def __init__(self, root: Path):
        self.root = root
        self.plots = root / "plots"
        self.plots.mkdir(parents=True, exist_ok=True)
        self.parts: list[str] = []
        self.files: list[Path] = []
        self.sections: list[tuple] = []

    def add(self, text: str) -> None:
        self.parts.append(text)

    def section(self, title: str) -> None:
        anchor = f"s{len(self.sections) + 1}"
        self.sections.append((anchor, title))
        self.add(f'<h2 id="{anchor}">{html.escape(title)}</h2>')

    def figure(self, fig, filename: str, caption: str) -> None:
        path = self.plots / filename
        fig.savefig(path, dpi=150)
        from matplotlib import rc_context

        # The layout is solved once, for the PNG; the SVG reuses it (half the drawing time).
        fig.set_layout_engine("none")
        with rc_context({"svg.fonttype": "none"}):  # text stays text: editable, searchable
            fig.savefig(path.with_suffix(".svg"))
        self.files += [path, path.with_suffix(".svg")]
        data = base64.b64encode(path.read_bytes()).decode("ascii")
        self.add(f'<figure><img src="data:image/png;base64,{data}" '
                 f'alt="{html.escape(caption)}"><figcaption>{html.escape(caption)} '
                 f'(vector: plots/{html.escape(path.with_suffix(".svg").name)})'
                 f'</figcaption></figure>')

    def note(self, text: str) -> None:
        self.add(f'<p class="note">{html.escape(text)}</p>')


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text)


def _fmt(v) -> str:
    if v is None:
        return "—"
    if isinstance(v, float):
        return "nan" if not np.isfinite(v) else f"{v:.4g}"
    return str(v)


def _table(header, rows, name_cols=1, classes=None) -> str:
    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in header)
    body = []
    for r, row in enumerate(rows):
        cells = []
        for j, v in enumerate(row):
            cls = ["name"] if j < name_cols else []
            if classes and (r, j) in classes:
                cls.append(classes[(r, j)])
            attr = f' class="{" ".join(cls)}"' if cls else ""
            cells.append(f"<td{attr}>{html.escape(_fmt(v))}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def _reordered(m: AlignmentMatrix, metric: str, models: list) -> np.ndarray:
    pos = [m.names.index(n) for n in models]
    return np.asarray(m.metrics[metric])[np.ix_(pos, pos)]


def _tree_metric(sets) -> str | None:
    for metric in ("cknna", "mutual_knn", "cka", "dcor"):
        if all(metric in s["matrix_obj"].metrics for s in sets):
            return metric
    return None


def _prep_text(prep) -> str:
    if not isinstance(prep, dict) or not prep:
        return "preprocessing not recorded"
    if isinstance(prep.get("text"), str) and prep["text"]:
        return f"preprocessing: {prep['text']}"
    parts = []
    for key, val in prep.items():
        if val is True:
            parts.append(key)
        elif val in (False, None):
            parts.append(f"no {key}")
        else:
            parts.append(f"{key} {val}")
    return "preprocessing: " + ", ".join(parts)


def _id_set(run) -> dict:
    sets = run["sets"]
    if run["version"] == 2:
        return next((s for s in sets if s.get("kind") == "id"), sets[0])
    return next((s for s in sets if s.get("name") == "id"), sets[0])


def model_order(run) -> list:
    """The one model order of a loaded run (:func:`load_run`), used by every panel: tree.json's
    ``order`` when present (models it lacks appended in run order), else the average-linkage
    leaf order of the in-distribution set's CKNNA (or first shared similarity) matrix, else
    run.json's order.
    """
    models = list(run["models"])
    tree = run.get("tree_obj")
    if tree:
        order = [m for m in tree.get("order") or [] if m in models]
        return order + [m for m in models if m not in order]
    ref = _id_set(run)
    m = ref["matrix_obj"]
    metric = next((x for x in ("cknna", "mutual_knn", "cka", "dcor") if x in m.metrics), None)
    if metric is None or len(models) < 3:
        return models
    from .plots import distance_matrix, leaf_order

    return [models[i] for i in leaf_order(distance_matrix(_reordered(m, metric, models),
                                                          metric))]


def _read_table(path: Path) -> dict:
    """A score table: parquet through matalign.score.read_scores; CSV with text columns
    (id, formula, smiles) kept as text and the rest numeric."""
    if path.suffix.lower() == ".parquet":
        from .score import read_scores

        return read_scores(path)
    text_cols = {"id", "formula", "smiles"}
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.reader(f)
        try:
            header = next(reader)
        except StopIteration:
            raise ValueError(f"{path}: empty score table") from None
        cols = [[] for _ in header]
        for ln, line in enumerate(reader, start=2):
            if len(line) != len(header):
                raise ValueError(f"{path}: line {ln} has {len(line)} fields; the header has "
                                 f"{len(header)}")
            for slot, v in zip(cols, line):
                slot.append(v)
    out = {}
    for name, vals in zip(header, cols):
        if name in text_cols:
            out[name] = np.array(vals, dtype=object)
            continue
        try:
            out[name] = np.array([float(v) if v != "" else np.nan for v in vals],
                                 dtype=np.int64 if name in ("row", "rank") else np.float64)
        except ValueError:
            raise ValueError(f"{path}: column {name!r} is not numeric") from None
    for need in ("mean_local_agreement", "rank"):
        if need not in out:
            raise ValueError(f"{path}: score table has no column {need!r}; it has {header}")
    return out


def _stat(stats, metric, a, b):
    if not stats or metric not in stats:
        return None
    rec = stats[metric].get(f"{a}|{b}")
    if rec is None and metric != "information_imbalance":
        rec = stats[metric].get(f"{b}|{a}")
    return rec


def _set_prov(s, run) -> str:
    m = s["matrix_obj"]
    n = s.get("n", m.params.get("n", "?"))
    k = m.params.get("k", "?")
    prep = run.get("preprocessing") or m.params.get("preprocessing")
    return f"N = {n}, k = {k}, {_prep_text(prep)}"


def _trained_pairs(order, random, metric):
    trained = [x for x in order if x not in random]
    if metric == "information_imbalance":
        return [(a, b) for a in trained for b in trained if a != b]
    return [(a, b) for i, a in enumerate(trained) for b in trained[i + 1:]]


def render(run_dir, *, reference=None, top=_TOP_ROWS) -> Path:
    """Draw the figures of a run directory and write ``RUN_DIR/report.html``.

    Parameters
    ----------
    run_dir : str or os.PathLike
        A run directory (module docstring; version 1 or 2).
    reference : str, optional
        Reference model of the "alignment vs error" plot and the model whose pairs are
        highlighted in the information-imbalance plane (default: run.json's reference).
    top : int, default 20
        Most-disagreed structures listed per scored set (the page says when it truncates).

    Returns
    -------
    pathlib.Path
        The path of ``report.html``; every figure is in ``RUN_DIR/plots/`` as PNG and SVG.

    Examples
    --------
    >>> import os, tempfile
    >>> import numpy as np
    >>> import matalign as ma
    >>> from matalign.report import write_run, render
    >>> rng = np.random.default_rng(0)
    >>> X = rng.normal(size=(200, 8))
    >>> spaces = {"a": X, "b": X + 0.1 * rng.normal(size=X.shape), "c": rng.normal(size=(200, 8))}
    >>> m = ma.alignment_matrix(spaces, metrics=["cknna", "cka"], k=10)
    >>> with tempfile.TemporaryDirectory() as run:
    ...     _ = write_run(run, {"id": m})
    ...     page = render(run)
    ...     text = page.read_text()
    ...     pngs = sorted(f for f in os.listdir(os.path.join(run, "plots")) if f.endswith(".png"))
    >>> page.name, "data:image/png;base64," in text, "<script" in text
    ('report.html', True, False)
    >>> pngs[:2]
    ['heatmap_id_cka.png', 'heatmap_id_cknna.png']
    """
    if not isinstance(top, int) or isinstance(top, bool) or top < 1:
        raise ValueError(f"top must be a positive integer; got {top!r}")
    run = load_run(run_dir)
    root: Path = run["root"]
    models = list(run["models"])
    sets = run["sets"]
    v2 = run["version"] == 2
    reference = reference if reference is not None else run.get("reference")
    if reference is not None and reference not in models:
        raise ValueError(f"reference {reference!r} is not one of the models {models}")
    order = model_order(run)
    random = set(run.get("random") or [])
    families = run.get("families") or {}
    from . import plots  # matplotlib is imported only when rendering

    page = _Page(root)
    title = run.get("title") or "matalign run"
    page.add(f"<h1>{html.escape(title)}</h1>")
    if run.get("description"):
        page.add(f"<p>{html.escape(run['description'])}</p>")
    first_params = sets[0]["matrix_obj"].params
    prep = run.get("preprocessing") or first_params.get("preprocessing")
    knn = run.get("knn") or {}
    page.add(
        f"<p>{len(models)} models, {len(sets)} structure set(s): "
        + ", ".join(f"<b>{html.escape(s['label'])}</b> (N = "
                    f"{s.get('n', s['matrix_obj'].params.get('n', '?'))})" for s in sets)
        + f". k = {knn.get('k', first_params.get('k', '?'))}; "
        f"{html.escape(_prep_text(prep))}; matalign "
        f"{html.escape(str(run.get('matalign_version', '?')))}, created "
        f"{html.escape(str(run.get('created', '?')))}.</p>")
    header_rows = [["models (in the report's order)", ", ".join(order)],
                   ["preprocessing", _prep_text(prep).removeprefix("preprocessing: ")],
                   ["kNN", (f"k = {knn.get('k')}, metric {knn.get('metric', '?')}, k sweep "
                            f"{', '.join(str(x) for x in knn.get('k_sweep', [])) or 'none'}")
                    if knn else f"k = {first_params.get('k', '?')}, metric "
                                f"{first_params.get('knn_metric', '?')}"]]
    if families:
        header_rows.append(["families", "; ".join(f"{m}: {families.get(m) or 'unknown'}"
                                                  for m in order)])
    if v2:
        header_rows.append(["random-init baselines", ", ".join(sorted(random)) or "none"])
        header_rows.append(["near-duplicates", "; ".join(" ~ ".join(p) for p in
                                                         run.get("near_duplicates", []))
                            or "none"])
    page.add(_table(["setting", "value"], header_rows, name_cols=2))
    page.add(_table(["set", "label", "kind", "level", "N", "k"],
                    [[s["name"], s["label"], s.get("kind", "—"), s.get("level"),
                      s.get("n", s["matrix_obj"].params.get("n", "?")),
                      s["matrix_obj"].params.get("k", "?")] for s in sets], name_cols=3))
    toc_at = len(page.parts)

    # 1. Heatmaps per set and metric.
    page.section("Model × model alignment")
    page.add('<p class="note">Every heatmap uses one model order (' +
             ("the tree's leaf order" if run.get("tree_obj") else
              "average-linkage clustering of the in-distribution CKNNA matrix") +
             ") and a fixed colour range per metric (0–1 for CKNNA, mutual kNN, CKA and "
             "distance correlation; 0–1.2 for information imbalance), the same in every run. "
             "Information imbalance reads Δ(row → column): low means the row model predicts "
             "the column model's neighbourhoods.</p>")
    for s in sets:
        m = s["matrix_obj"]
        prov = _set_prov(s, run)
        page.add(f"<h3>{html.escape(s['label'])} ({html.escape(prov)})</h3>"
                 f"<div class=\"grid\">")
        for metric in m.metrics:
            label = plots.METRIC_LABELS.get(metric, metric)
            fig = plots.heatmap(_reordered(m, metric, models), models, metric, order=order,
                                title=f"{label} — {s['label']}\n{prov}")
            page.figure(fig, f"heatmap_{_slug(s['name'])}_{metric}.png",
                        f"{label} between every pair of models on {s['label']} ({prov}).")
        page.add("</div>")
        if s.get("stats_obj"):
            rows = []
            for metric in m.metrics:
                for a in order:
                    for b in order:
                        if a == b or (metric != "information_imbalance"
                                      and order.index(a) > order.index(b)):
                            continue
                        rec = _stat(s["stats_obj"], metric, a, b)
                        if rec is None:
                            continue
                        rows.append([metric, a, b, float(rec["value"]), rec.get("low"),
                                     rec.get("high"), rec.get("ci_method", "—"),
                                     rec.get("null_mean"), rec.get("p_value"),
                                     rec.get("null_method", "—"), rec.get("n", "—"),
                                     rec.get("k", "—")])
            page.add(f"<details><summary>Intervals and nulls for every pair on "
                     f"{html.escape(s['label'])} ({len(rows)} rows)</summary>"
                     + _table(["metric", "A", "B", "value", "CI low", "CI high", "CI method",
                               "null mean", "p-value", "null", "N", "k"], rows, name_cols=3)
                     + "</details>")

    # 2. OOD − ID differences and trends (version 2: sets know their kind).
    id_set = _id_set(run)
    others = [s for s in sets if v2 and s.get("kind") in ("ood", "ladder") and s is not id_set]
    if v2:
        page.section("Out of distribution vs in distribution")
        if not others:
            page.note("No OOD or ladder set in this run: no difference maps or trends.")
        mid = id_set["matrix_obj"]
        for s in others:
            m = s["matrix_obj"]
            prov = (f"N = {s.get('n')} vs {id_set.get('n')}, k = {m.params.get('k', '?')} vs "
                    f"{mid.params.get('k', '?')}, {_prep_text(prep)}")
            page.add(f"<h3>{html.escape(s['label'])} − {html.escape(id_set['label'])}</h3>"
                     f"<div class=\"grid\">")
            for metric in [x for x in m.metrics if x in mid.metrics]:
                diff = _reordered(m, metric, models) - _reordered(mid, metric, models)
                label = plots.METRIC_LABELS.get(metric, metric)
                fig = plots.difference_heatmap(diff, models, metric, order=order,
                                               title=f"{label}: {s['label']} − "
                                                     f"{id_set['label']}\n{prov}")
                page.figure(fig, f"diff_{_slug(s['name'])}_{metric}.png",
                            f"{label} on {s['label']} minus {label} on {id_set['label']} "
                            f"({prov}); purple: lower out of distribution, orange: higher.")
            page.add("</div>")
        ladders = {}
        for s in others:
            if s.get("kind") == "ladder":
                ladders.setdefault(s["ladder"], []).append(s)
        for name, steps in ladders.items():
            steps = sorted(steps, key=lambda s: s["level"])
            if all(s["level"] != 0 for s in steps):
                steps = [dict(id_set, level=0.0)] + steps
            panels = []
            for metric in [x for x in id_set["matrix_obj"].metrics
                           if all(x in s["matrix_obj"].metrics for s in steps)]:
                pairs = _trained_pairs(order, random, metric)
                if not pairs:
                    continue
                lv, val, lo, hi = [], [], [], []
                for s in steps:
                    m = s["matrix_obj"]
                    vals = [m.value(metric, a, b) for a, b in pairs]
                    recs = [_stat(s.get("stats_obj"), metric, a, b) for a, b in pairs]
                    lv.append(float(s["level"]))
                    val.append(float(np.mean(vals)))
                    ok = all(r is not None and _is_num(r.get("low")) and _is_num(r.get("high"))
                             for r in recs)
                    lo.append(float(np.mean([r["low"] for r in recs])) if ok else np.nan)
                    hi.append(float(np.mean([r["high"] for r in recs])) if ok else np.nan)
                short = plots.METRIC_LABELS.get(metric, metric).split(" Δ(")[0]
                panels.append((f"mean {short}\n({len(pairs)} trained-model pairs)",
                               {"mean": (lv, val, lo, hi)}))
            idl = {}
            for model in [x for x in order if x not in random]:
                lv, val, lo, hi = [], [], [], []
                for s in steps:
                    if model in s["id_values"]:
                        lv.append(float(s["level"]))
                        val.append(float(s["id_values"][model]))
                        lo.append(s["id_intervals"].get(model, (np.nan, np.nan))[0])
                        hi.append(s["id_intervals"].get(model, (np.nan, np.nan))[1])
                if lv:
                    idl[model] = (lv, val, lo, hi)
            if idl:
                panels.append(("intrinsic dimension (TwoNN)", idl))
            if not panels:
                continue
            ns = ", ".join(f"{s['level']:g}: N = {s.get('n')}" for s in steps)
            fig = plots.trend(panels, xlabel=f"{name} level",
                              title=f"ladder '{name}' (level 0 = {id_set['label']})\n"
                                    f"{ns}; k = {id_set['matrix_obj'].params.get('k', '?')}, "
                                    f"{_prep_text(prep)}")
            page.figure(fig, f"trend_{_slug(name)}.png",
                        f"Ladder '{name}': each metric's mean over the trained-model pairs "
                        f"(random-init models left out) and each trained model's intrinsic "
                        f"dimension against the OOD level ({ns}). Bars on the means are the "
                        f"mean of the pairs' interval endpoints from stats.json (not an "
                        f"interval of the mean); bars on the intrinsic dimensions are "
                        f"stats.json's intervals. No bar: no interval in stats.json.")

    # 2b. k sweep of the in-distribution set (version 2, when ksweep.json is there).
    if v2 and id_set.get("ksweep_obj"):
        ks = id_set["ksweep_obj"]
        panels = []
        for metric, entries in ks.items():
            pairs = _trained_pairs(order, random, metric)
            lines = {}
            for a, b in pairs:
                rows = entries.get(f"{a}|{b}")
                if rows is None and metric != "information_imbalance":
                    rows = entries.get(f"{b}|{a}")
                if not rows:
                    continue
                rows = sorted(rows, key=lambda r: r[0])
                nan = float("nan")
                lines[f"{a}, {b}" if metric != "information_imbalance" else f"{a}→{b}"] = (
                    [r[0] for r in rows], [r[1] for r in rows],
                    [nan if r[2] is None else r[2] for r in rows],
                    [nan if r[3] is None else r[3] for r in rows])
            if lines:
                short = plots.METRIC_LABELS.get(metric, metric).split(" Δ(")[0]
                panels.append((f"{short} ({len(lines)} of {len(pairs)} trained pairs)", lines))
        if panels:
            page.section("k sweep")
            fig = plots.trend(panels, xlabel="k (neighbours)",
                              title=f"k sweep on {id_set['label']} (N = {id_set.get('n')}, "
                                    f"{_prep_text(prep)})")
            page.figure(fig, f"ksweep_{_slug(id_set['name'])}.png",
                        f"Each trained-model pair's metric against k on {id_set['label']} "
                        f"(N = {id_set.get('n')}), with the intervals of ksweep.json: whether "
                        f"an ordering of pairs hinges on one k.")

    # 3. Model tree.
    page.section("Model tree")
    metric = _tree_metric(sets)
    tree = run.get("tree_obj")
    if tree:
        label = plots.METRIC_LABELS.get(tree.get("metric"), tree.get("metric", "?"))
        tset = next((s for s in sets if s["name"] == tree.get("set")), None)
        n_txt = f"N = {tset.get('n')}" if tset else "N of the set"
        page.note(f"Tree from tree.json: method {tree.get('method', '?')} on {label} of set "
                  f"'{tree.get('set', '?')}' ({n_txt}, k = {tree.get('k', '?')}, "
                  f"{_prep_text(prep)}). Leaves are coloured by family; random-init models "
                  f"have hollow markers and are marked (random).")
        fig = plots.newick_tree(tree["newick"], families=families, random=random,
                                title=f"model tree ({tree.get('method', '?')}, {label}, "
                                      f"k = {tree.get('k', '?')})",
                                xlabel=f"branch length ({tree.get('method', '?')})")
        page.figure(fig, "tree.png", f"Model tree ({tree.get('method', '?')} on {label}, "
                                     f"set {tree.get('set', '?')}, k = {tree.get('k', '?')}).")
    elif metric is None or len(models) < 2:
        page.note("No similarity metric (cknna, mutual_knn, cka, dcor) in every set: no tree.")
    else:
        label = plots.METRIC_LABELS[metric]
        page.note(f"Average linkage (UPGMA) on the distance d = 1 − {label}, with the "
                  f"{label} matrix symmetrised as (S + Sᵀ)/2 (scipy.cluster.hierarchy). "
                  f"Branch heights are the average distance between the merged groups."
                  + (" This run has no tree.json (the study's neighbour-joining tree)."
                     if v2 else ""))
        page.add('<div class="grid">')
        for s in sets:
            fig = plots.tree(_reordered(s["matrix_obj"], metric, models), models, metric,
                             title=f"model tree — {s['label']} ({_set_prov(s, run)})")
            page.figure(fig, f"tree_{_slug(s['name'])}.png",
                        f"Model tree from 1 − {label} on {s['label']} ({_set_prov(s, run)}).")
        page.add("</div>")

    # 4. Information-imbalance plane.
    page.section("Information-imbalance plane")
    ii_sets = [(s["label"], _reordered(s["matrix_obj"], "information_imbalance", models))
               for s in sets if "information_imbalance" in s["matrix_obj"].metrics]
    if not ii_sets:
        page.note("No set holds information_imbalance (compute it with "
                  "metrics=[..., 'information_imbalance']): plane skipped.")
    else:
        ii_models = list(order)
        ii_sets = [(lab, _reordered_names(v, models, ii_models)) for lab, v in ii_sets]
        fig = plots.imbalance_plane(ii_sets, ii_models, reference=reference)
        provs = "; ".join(f"{s['label']}: {_set_prov(s, run)}" for s in sets
                          if "information_imbalance" in s["matrix_obj"].metrics)
        page.figure(fig, "imbalance_plane.png",
                    "Each point is a pair of models A→B (A before B in the report's model "
                    "order): Δ(A→B) on x, Δ(B→A) on y. Near the origin the two spaces hold "
                    "the same information; near (1, 1) neither predicts the other."
                    + (f" Pairs with the reference model {reference} are outlined in red."
                       if reference else "") + f" ({provs})")

    # 5. Alignment to the reference vs error.
    page.section("Alignment to a reference model vs error")
    errors = run["error_values"]
    err_sets = ([s for s in sets if s.get("kind") == "id"] or [id_set]) if v2 else sets
    if not errors:
        page.note("No per-model errors in this run (errors.json): plot skipped.")
    elif reference is None:
        page.note("No reference model chosen (run.json 'reference'): plot skipped.")
    elif metric is None:
        page.note("No similarity metric in every set: plot skipped.")
    else:
        points = []
        for s in err_sets:
            m = s["matrix_obj"]
            pts = {n: (errors[n], m.value(metric, n, reference)) for n in order
                   if n in errors and n != reference}
            if pts:
                points.append((s["label"], pts))
        if not points:
            page.note(f"Errors are known only for the reference {reference}: plot skipped.")
        else:
            fig = plots.reference_vs_error(points, reference=reference, metric=metric,
                                           error_label=run["error_label"] or "error",
                                           functional=run["error_functional"])
            provs = "; ".join(f"{s['label']}: {_set_prov(s, run)}" for s in err_sets)
            page.figure(fig, "reference_vs_error.png",
                        f"{plots.METRIC_LABELS[metric]}(model, {reference}) against each "
                        f"model's {run['error_label']}; models without a known error are left "
                        f"out; grouped by training functional where errors.json gives it, with "
                        f"a trend only for groups of at least 3 models ({provs}).")

    # 6. Intrinsic dimension.
    page.section("Intrinsic dimension")
    id_values = [s["id_values"] for s in sets]
    if not any(id_values):
        page.note("No intrinsic dimensions in this run: plot skipped.")
    else:
        intervals = [s["id_intervals"] for s in sets]
        fig = plots.intrinsic_dimension_bars(id_values, order, [s["label"] for s in sets],
                                             intervals=intervals)
        page.figure(fig, "intrinsic_dimension.png",
                    "TwoNN intrinsic dimension of each model's embedding space, per set"
                    + (" (bars: the intervals in stats.json)" if any(intervals) else "")
                    + ". " + "; ".join(f"{s['label']}: N = "
                                       f"{s.get('n', s['matrix_obj'].params.get('n', '?'))}"
                                       for s in sets) + f"; {_prep_text(prep)}.")

    # 7. Sets side by side.
    if len(sets) > 1:
        page.section("Structure sets side by side")
        if metric is None:
            page.note("No similarity metric shared by every set: skipped.")
        else:
            fig = plots.heatmaps_side_by_side(
                [_reordered(s["matrix_obj"], metric, models) for s in sets], models, metric,
                set_labels=[f"{s['label']}\n{_set_prov(s, run)}" for s in sets], order=order)
            page.figure(fig, f"sets_{metric}.png",
                        f"{plots.METRIC_LABELS[metric]} on each set, one colour scale, one "
                        f"model order.")
            rows = []
            iu = np.triu_indices(len(models), 1)
            for s in sets:
                v = _reordered(s["matrix_obj"], metric, models)
                off = (v + v.T)[iu] / 2
                rows.append([s["label"], s.get("n", s["matrix_obj"].params.get("n", "?")),
                             s["matrix_obj"].params.get("k", "?"), float(off.mean()),
                             float(off.min()), float(off.max())])
            page.add(_table(["set", "N", "k", f"mean {metric}", "min", "max"], rows))

    # 8. Per-structure disagreement, and the validated reference-set OOD scores.
    scored = [s for s in sets if s.get("scores")]
    page.section("Per-structure disagreement")
    if not scored:
        page.note("No per-structure scores in this run (matalign score): skipped.")
    for s in scored:
        _disagreement(page, plots, root, s, top, run)
    _ood_scores(page, root)

    # 9. Findings.
    if v2:
        page.section("Findings")
        findings = run.get("findings_obj")
        if not findings:
            page.note("No findings.json in this run.")
        else:
            rows, classes = [], {}
            for r, f in enumerate(findings):
                ci = f.get("ci")
                ci_txt = (f"[{_fmt(ci[0])}, {_fmt(ci[1])}]" if ci else "—")
                dups = f.get("near_duplicates") or []
                rows.append([f["finding"], f["test"], f.get("statistic", "—"),
                             f.get("null", "—"), f["n"], f["k"],
                             f.get("preprocessing", "—"), f["value"], ci_txt, f["p_value"],
                             f["verdict"], "; ".join(" ~ ".join(p) for p in dups) or "none",
                             f.get("detail", "")])
                classes[(r, 10)] = _slug(f["verdict"]).replace("_", "-")
            page.add(_table(["finding", "test", "statistic", "null", "N", "k",
                             "preprocessing", "value", "CI", "p-value", "verdict",
                             "near-duplicates (not independent evidence)", "detail"], rows,
                            name_cols=4, classes=classes))
            page.note("Verdicts: holds / does not hold / inconclusive (overlapping intervals "
                      "give inconclusive). Near-duplicate checkpoints (fine-tunes of one "
                      "parent, replicates) are flagged and not counted as independent "
                      "evidence.")

    nav = "".join(f'<a href="#{a}">{html.escape(t)}</a>' for a, t in page.sections)
    page.parts.insert(toc_at, f"<nav>{nav}</nav>")
    body = "\n".join(page.parts)
    text = (f'<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">\n'
            f"<title>{html.escape(title)}</title>\n<style>{_CSS}</style>\n</head>\n<body>\n"
            f"{body}\n</body>\n</html>\n")
    out = root / "report.html"
    atomic_write_text(out, text, hidden=True, cleanup=False)
    return out


def _ood_scores(page, root: Path) -> None:
    """The study's ood.json: AUROC and FPR at 95 % TPR of every OOD score column per set."""
    path = root / "ood.json"
    if not path.is_file():
        return
    data = json.loads(path.read_text(encoding="utf-8"))
    page.section("OOD scores against a reference set")
    if data.get("skipped") or not data.get("sets"):
        page.note(f"OOD scores not measured: {data.get('skipped', 'no set to score')}.")
        return
    sets = data["sets"]
    names = list(sets)
    cols = list(next(iter(sets.values()))["scores"])
    rows = []
    for c in cols:
        label = c + (" (default)" if c == data.get("default") else "")
        rows.append([label] + [f"{sets[n]['scores'][c]['auroc']:.3f} "
                               f"({sets[n]['scores'][c]['fpr_at_95_tpr']:.2f})"
                               for n in names])
    header = ["score"] + [f"{sets[n]['label']} (N {sets[n]['n_in']} in / {sets[n]['n_ood']} "
                          f"out)" for n in names]
    page.add(_table(header, rows))
    page.note(f"AUROC (FPR at 95 % TPR) of each per-structure score for telling the set's "
              f"structures from held-out structures of {data['reference_set']}, against a "
              f"reference of {data['n_reference']} of its structures (k = {data['k']}, "
              f"preprocessing {data.get('preprocessing', 'none')}; 0.5 = chance). The default "
              f"score ({data.get('default')}) was chosen by bench/bench_ood.py's stated rule; "
              f"within_set_disagreement is the older within-set score (docs/STATISTICS.md).")


def _reordered_names(values, names, order) -> np.ndarray:
    pos = [names.index(n) for n in order]
    return np.asarray(values)[np.ix_(pos, pos)]


def _disagreement(page, plots, root, s, top, run) -> None:
    path = root / s["scores"]
    table = _read_table(path)
    pair_cols = [c for c in table if c.startswith("local_agreement:")]
    pair_names = {c: c.split(":", 1)[1].replace(":", " vs ") for c in pair_cols}
    n_rows = len(table["rank"])
    k = s["matrix_obj"].params.get("k")
    structures = s.get("structures_obj")
    by_id = {r["id"]: r for r in structures} if structures else {}

    def chem(i):
        for col in ("formula", "smiles"):
            if col in table and str(table[col][i]) not in ("", "None", "nan"):
                return str(table[col][i])
        rec = None
        if "id" in table:
            rec = by_id.get(str(table["id"][i]))
        elif structures and "row" in table and 0 <= int(table["row"][i]) < len(structures):
            rec = structures[int(table["row"][i])]
        if rec:
            return rec.get("formula") or rec.get("smiles") or "—"
        return "—"

    def ident(i):
        if "id" in table:
            return str(table["id"][i])
        row = int(table["row"][i]) if "row" in table else i
        if structures and 0 <= row < len(structures):
            return structures[row]["id"]
        return f"row {row}"

    prov = _set_prov(s, run)
    fig = plots.disagreement_histogram(
        table["mean_local_agreement"], {pair_names[c]: table[c] for c in pair_cols},
        k=k if isinstance(k, int) and len(pair_cols) == 1 else None,
        title=f"per-structure agreement — {s['label']} (N = {n_rows}, k = {k})")
    shown = min(len(pair_cols), 8)
    page.figure(fig, f"disagreement_{_slug(s['name'])}.png",
                f"Distribution of the per-structure local agreement on {s['label']} ({prov}): "
                f"the mean over all {len(pair_cols)} model pairs (filled) and "
                + ("each pair (outlines)" if shown == len(pair_cols) else
                   f"the first {shown} of {len(pair_cols)} pairs (outlines; every pair is in "
                   f"the tables below)")
                + ". Structures at the left are those the models embed most differently.")
    order_idx = np.argsort(table["rank"], kind="stable")[:top]
    has_chem = any(chem(i) != "—" for i in order_idx)
    header = ["rank", "id"] + (["formula / SMILES"] if has_chem else []) + ["mean agreement"]
    if "mean_cknna_row" in table:
        header.append("mean CKNNA contribution")
    header += [pair_names[c] for c in pair_cols]
    rows = []
    for i in order_idx:
        row = [int(table["rank"][i]), ident(i)] + ([chem(i)] if has_chem else [])
        row.append(float(table["mean_local_agreement"][i]))
        if "mean_cknna_row" in table:
            row.append(float(table["mean_cknna_row"][i]))
        row += [float(table[c][i]) for c in pair_cols]
        rows.append(row)
    page.add(f"<h3>Most disagreed structures — {html.escape(s['label'])} "
             f"(top {len(rows)} of {n_rows})</h3>")
    if len(rows) < n_rows:
        page.note(f"Table truncated to the top {len(rows)} of {n_rows} structures by mean "
                  f"agreement (render(top=...) shows more); every one of the "
                  f"{len(pair_cols)} pairs has a column.")
    page.add(_table(header, rows, name_cols=3 if has_chem else 2))
    if pair_cols:
        per = min(5, n_rows)
        prow = []
        for c in pair_cols:
            idx = np.argsort(table[c], kind="stable")[:per]
            cells = [f"{ident(i)} ({chem(i)}): {float(table[c][i]):.2f}" if has_chem else
                     f"{ident(i)}: {float(table[c][i]):.2f}" for i in idx]
            prow.append([pair_names[c], float(np.mean(table[c]))] + cells)
        page.add(f"<h3>Most disagreed structures per pair — {html.escape(s['label'])} "
                 f"(all {len(pair_cols)} pairs, top {per} each)</h3>")
        page.add(_table(["pair", "mean agreement"] + [f"#{j + 1}" for j in range(per)], prow,
                        name_cols=1))
