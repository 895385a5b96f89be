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

The page embeds every PNG as a base64 ``data:`` URI, has no scripts and loads nothing from
the network. Figures: a heatmap per set and metric (models ordered by average linkage), the
model tree (average linkage, UPGMA, on d = 1 − CKNNA of the symmetrised matrix), the
information-imbalance plane (Δ(A→B) against Δ(B→A) per pair, every set), alignment to the
reference model against each model's error (when errors are known), intrinsic dimension per
model, all sets' CKNNA side by side, and per-structure disagreement histograms with the most
disagreed structures listed.
"""

from __future__ import annotations

import base64
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

__all__ = ["write_run", "load_run", "render", "RUN_FORMAT", "RUN_VERSION"]

RUN_FORMAT = "matalign.run"
RUN_VERSION = 1
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


def load_run(run_dir) -> dict:
    """Read and check ``RUN_DIR/run.json``.

    Returns
    -------
    dict
        run.json's content, plus per set ``"matrix_obj"`` (the loaded AlignmentMatrix) and
        ``"id_values"`` ({model: dimension}, possibly empty); ``"error_values"`` and
        ``"error_label"`` (empty dict / None without errors); ``"root"`` (the directory).

    Raises
    ------
    FileNotFoundError
        If the directory or ``run.json`` or a file it names is missing.
    ValueError
        If ``run.json`` is not a matalign run of a supported version.

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
    if index.get("version") != RUN_VERSION:
        raise ValueError(f"{index_path} has version {index.get('version')!r}; this matalign "
                         f"reads version {RUN_VERSION}")
    for key in ("models", "sets"):
        if not isinstance(index.get(key), list) or not index[key]:
            raise ValueError(f"{index_path}: {key!r} must be a non-empty list")
    index["root"] = root
    for entry in index["sets"]:
        m = AlignmentMatrix.load(root / entry["matrix"])
        entry["matrix_obj"] = m
        values = {}
        if "intrinsic_dimension" in m.per_model:
            values = dict(zip(m.names, m.per_model["intrinsic_dimension"].tolist()))
        if entry.get("intrinsic_dimension"):
            path = root / entry["intrinsic_dimension"]
            if not path.is_file():
                raise FileNotFoundError(f"{path} (named in run.json) not found")
            values.update(json.loads(path.read_text(encoding="utf-8")))
        entry["id_values"] = values
        if entry.get("scores") and not (root / entry["scores"]).is_file():
            raise FileNotFoundError(f"{root / entry['scores']} (named in run.json) not found")
    index["error_values"], index["error_label"] = {}, None
    if index.get("errors"):
        path = root / index["errors"]
        if not path.is_file():
            raise FileNotFoundError(f"{path} (named in run.json) not found")
        data = json.loads(path.read_text(encoding="utf-8"))
        index["error_values"] = {k: float(v) for k, v in data.get("values", {}).items()}
        index["error_label"] = data.get("label", "error")
    return index


# ---------------------------------------------------------------------------------------------
# Rendering
# ---------------------------------------------------------------------------------------------

_CSS = """
body { font-family: -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; margin: 2em auto;
       max-width: 1150px; color: #1b1b1b; line-height: 1.45; padding: 0 1em; }
h1 { font-size: 1.6em; margin-bottom: 0.2em; }
h2 { font-size: 1.25em; border-bottom: 1px solid #ddd; padding-bottom: 0.2em; margin-top: 2em; }
h3 { font-size: 1.05em; }
figure { margin: 1em 0; }
figure img { max-width: 100%; height: auto; border: 1px solid #eee; }
figcaption, .note { color: #555; font-size: 0.9em; }
.note { background: #f6f6f6; border-left: 3px solid #bbb; padding: 0.4em 0.8em; }
table { border-collapse: collapse; font-size: 0.85em; margin: 0.6em 0; }
th, td { border: 1px solid #ddd; padding: 0.25em 0.6em; text-align: right; }
th { background: #f2f2f2; }
td.name { text-align: left; }
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

    def add(self, text: str) -> None:
        self.parts.append(text)

    def figure(self, fig, filename: str, caption: str) -> None:
        path = self.plots / filename
        fig.savefig(path, dpi=150)
        self.files.append(path)
        data = base64.b64encode(path.read_bytes()).decode("ascii")
        self.add(f'<figure><img src="data:image/png;base64,{data}" '
                 f'alt="{html.escape(caption)}"><figcaption>{html.escape(caption)}'
                 f'</figcaption></figure>')

    def note(self, text: str) -> None:
        self.add(f'<p class="note">{html.escape(text)}</p>')


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text)


def _table(header, rows, name_cols=1) -> str:
    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in header)
    body = []
    for row in rows:
        cells = []
        for j, v in enumerate(row):
            cls = ' class="name"' if j < name_cols else ""
            text = f"{v:.4g}" if isinstance(v, float) else str(v)
            cells.append(f"<td{cls}>{html.escape(text)}</td>")
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


def render(run_dir, *, reference=None, top=_TOP_ROWS) -> Path:
    """Draw the figures of a run directory and write ``RUN_DIR/report.html``.

    Parameters
    ----------
    run_dir : str or os.PathLike
        A run directory (module docstring).
    reference : str, optional
        Reference model of the "alignment vs error" plot (default: run.json's reference).
    top : int, default 20
        Most-disagreed structures listed per scored set.

    Returns
    -------
    pathlib.Path
        The path of ``report.html``; the PNGs are in ``RUN_DIR/plots/``.

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
    ...     pngs = sorted(os.listdir(os.path.join(run, "plots")))
    >>> page.name, "data:image/png;base64," in text, "<script" in text
    ('report.html', True, False)
    >>> pngs[:2]
    ['heatmap_id_cka.png', 'heatmap_id_cknna.png']
    """
    run = load_run(run_dir)
    root: Path = run["root"]
    models = list(run["models"])
    sets = run["sets"]
    reference = reference if reference is not None else run.get("reference")
    if reference is not None and reference not in models:
        raise ValueError(f"reference {reference!r} is not one of the models {models}")
    page = _Page(root)
    title = run.get("title") or "matalign run"
    page.add(f"<h1>{html.escape(title)}</h1>")
    if run.get("description"):
        page.add(f"<p>{html.escape(run['description'])}</p>")
    first_params = sets[0]["matrix_obj"].params
    page.add(
        f"<p>{len(models)} models, {len(sets)} structure set(s): "
        + ", ".join(f"<b>{html.escape(s['label'])}</b> (N = "
                    f"{s['matrix_obj'].params.get('n', '?')})" for s in sets)
        + f". k = {first_params.get('k', '?')}; matalign {html.escape(str(run.get('matalign_version', '?')))}"
        f", created {html.escape(str(run.get('created', '?')))}.</p>")

    # 1. Heatmaps per set and metric.
    page.add("<h2>Model × model alignment</h2>")
    page.add('<p class="note">Rows and columns of each heatmap are ordered by average-linkage '
             "clustering on 1 − similarity (for information imbalance: on the symmetrised Δ). "
             "Information imbalance reads Δ(row → column): low means the row model predicts "
             "the column model's neighbourhoods.</p>")
    from . import plots  # matplotlib is imported only when rendering

    for s in sets:
        m = s["matrix_obj"]
        page.add(f"<h3>{html.escape(s['label'])}</h3><div class=\"grid\">")
        for metric in m.metrics:
            fig = plots.heatmap(_reordered(m, metric, models), models, metric,
                                title=f"{plots.METRIC_LABELS.get(metric, metric)} — {s['label']}")
            page.figure(fig, f"heatmap_{_slug(s['name'])}_{metric}.png",
                        f"{plots.METRIC_LABELS.get(metric, metric)} between every pair of "
                        f"models on {s['label']}.")
        page.add("</div>")

    # 2. Model tree.
    page.add("<h2>Model tree</h2>")
    metric = _tree_metric(sets)
    if metric is None or len(models) < 2:
        page.note("No similarity metric (cknna, mutual_knn, cka, dcor) in every set: no tree.")
    else:
        label = plots.METRIC_LABELS[metric]
        page.note(f"Average linkage (UPGMA) on the distance d = 1 − {label}, with the "
                  f"{label} matrix symmetrised as (S + Sᵀ)/2. Branch heights are the average "
                  f"distance between the merged groups.")
        page.add('<div class="grid">')
        for s in sets:
            fig = plots.tree(_reordered(s["matrix_obj"], metric, models), models, metric,
                             title=f"model tree — {s['label']}")
            page.figure(fig, f"tree_{_slug(s['name'])}.png",
                        f"Model tree from 1 − {label} on {s['label']}.")
        page.add("</div>")

    # 3. Information-imbalance plane.
    page.add("<h2>Information-imbalance plane</h2>")
    ii_sets = [(s["label"], _reordered(s["matrix_obj"], "information_imbalance", models))
               for s in sets if "information_imbalance" in s["matrix_obj"].metrics]
    if not ii_sets:
        page.note("No set holds information_imbalance (compute it with "
                  "metrics=[..., 'information_imbalance']): plane skipped.")
    else:
        fig = plots.imbalance_plane(ii_sets, models, reference=reference)
        page.figure(fig, "imbalance_plane.png",
                    "Each point is a pair of models A, B (A before B in the run's model list): "
                    "Δ(A→B) on x, Δ(B→A) on y. Near the origin the two spaces hold the same "
                    "information; near (1, 1) neither predicts the other.")

    # 4. Alignment to the reference vs error.
    page.add("<h2>Alignment to a reference model vs error</h2>")
    errors = run["error_values"]
    if not errors:
        page.note("No per-model errors in this run (errors.json): plot skipped.")
    elif reference is None:
        page.note("No reference model chosen (run.json 'reference'): plot skipped.")
    elif metric is None:
        page.note("No similarity metric in every set: plot skipped.")
    else:
        points = []
        for s in sets:
            m = s["matrix_obj"]
            pts = {n: (errors[n], m.value(metric, n, reference)) for n in models
                   if n in errors and n != reference}
            if pts:
                points.append((s["label"], pts))
        if not points:
            page.note(f"Errors are known only for the reference {reference}: plot skipped.")
        else:
            fig = plots.reference_vs_error(points, reference=reference, metric=metric,
                                           error_label=run["error_label"] or "error")
            page.figure(fig, "reference_vs_error.png",
                        f"{plots.METRIC_LABELS[metric]}(model, {reference}) against each "
                        f"model's {run['error_label']}; models without a known error are left "
                        f"out.")

    # 5. Intrinsic dimension.
    page.add("<h2>Intrinsic dimension</h2>")
    id_values = [s["id_values"] for s in sets]
    if not any(id_values):
        page.note("No intrinsic dimensions in this run: plot skipped.")
    else:
        fig = plots.intrinsic_dimension_bars(id_values, models, [s["label"] for s in sets])
        page.figure(fig, "intrinsic_dimension.png",
                    "TwoNN intrinsic dimension of each model's embedding space, per set.")

    # 6. Sets side by side.
    if len(sets) > 1:
        page.add("<h2>Structure sets side by side</h2>")
        if metric is None:
            page.note("No similarity metric shared by every set: skipped.")
        else:
            fig = plots.heatmaps_side_by_side(
                [_reordered(s["matrix_obj"], metric, models) for s in sets], models, metric,
                set_labels=[s["label"] for s in sets])
            page.figure(fig, f"sets_{metric}.png",
                        f"{plots.METRIC_LABELS[metric]} on each set, one colour scale, models "
                        f"in the order of the first set.")
            rows = []
            iu = np.triu_indices(len(models), 1)
            for s in sets:
                v = _reordered(s["matrix_obj"], metric, models)
                off = (v + v.T)[iu] / 2
                rows.append([s["label"], float(off.mean()), float(off.min()), float(off.max())])
            page.add(_table(["set", f"mean {metric}", "min", "max"], rows))

    # 7. Per-structure disagreement.
    scored = [s for s in sets if s.get("scores")]
    page.add("<h2>Per-structure disagreement</h2>")
    if not scored:
        page.note("No per-structure scores in this run (matalign score): skipped.")
    from .score import read_scores

    for s in scored:
        path = root / s["scores"]
        table = read_scores(path)
        pair_cols = [c for c in table if c.startswith("local_agreement:")]
        k = s["matrix_obj"].params.get("k")
        fig = plots.disagreement_histogram(
            table["mean_local_agreement"],
            {c.split(":", 1)[1].replace(":", " vs "): table[c] for c in pair_cols},
            k=k if isinstance(k, int) and len(pair_cols) == 1 else None,
            title=f"per-structure agreement — {s['label']} (N = {len(table['rank'])})")
        page.figure(fig, f"disagreement_{_slug(s['name'])}.png",
                    f"Distribution of the per-structure local agreement on {s['label']}: the "
                    f"mean over model pairs (filled) and each pair (outlines). Structures at "
                    f"the left are those the models embed most differently.")
        order = np.argsort(table["rank"], kind="stable")[:top]
        header = ["rank", "row"] + (["id"] if "id" in table else []) + ["mean agreement"]
        if "mean_cknna_row" in table:
            header.append("mean CKNNA contribution")
        header += [c.split(":", 1)[1].replace(":", " vs ") for c in pair_cols]
        rows = []
        for i in order:
            row = [int(table["rank"][i]), int(table["row"][i])]
            if "id" in table:
                row.append(str(table["id"][i]))
            row.append(float(table["mean_local_agreement"][i]))
            if "mean_cknna_row" in table:
                row.append(float(table["mean_cknna_row"][i]))
            row += [float(table[c][i]) for c in pair_cols]
            rows.append(row)
        page.add(f"<h3>Most disagreed structures — {html.escape(s['label'])} "
                 f"(top {len(rows)})</h3>")
        page.add(_table(header, rows, name_cols=3 if "id" in table else 2))

    body = "\n".join(page.parts)
    text = (f'<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">\n'
            f"<title>{html.escape(title)}</title>\n<style>{_CSS}</style>\n</head>\n<body>\n"
            f"{body}\n</body>\n</html>\n")
    out = root / "report.html"
    atomic_write_text(out, text, hidden=True, cleanup=False)
    return out
