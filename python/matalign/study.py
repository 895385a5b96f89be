"""``matalign study CONFIG``: models × structure sets × metrics × k in one resumable run.

A study is one TOML file (or the same dict in Python) and one run directory that every stage
fills. Each finished stage leaves a marker in ``RUN_DIR/stages/`` written after its outputs
(atomically), so a rerun skips it and ``kill -9`` at any point loses only the stage in flight;
the embeddings go through the crash-safe store (:func:`matalign.embed`, resumed chunk by
chunk). ``matalign report RUN_DIR`` renders the result. The directory layout is documented in
docs/STUDY.md.

The config (every key but ``models`` and ``sets`` has a default)::

    title = "crystals in and out of distribution"
    seed = 0                         # structure samples, ladders, statistics
    metrics = ["cknna", "mutual_knn", "cka", "dcor", "information_imbalance",
               "intrinsic_dimension"]

    [preprocess]                     # the same for every model, recorded in every result
    center = true
    l2 = true
    clip_quantile = 0.0              # 0: no clipping

    [knn]
    k = 10                           # the matrices' k
    k_sweep = [5, 10, 25, 50]        # cknna and mutual_knn at each k (first-class output)
    metric = "ip"

    [statistics]
    level = 0.95
    n_permutations = 200             # permutation nulls (graph metrics: O(N·k) each)
    n_subsamples = 30                # subsampling confidence intervals

    [tree]
    set = "id"
    k = 25

    [errors]                         # force/energy errors vs the set's DFT labels
    set = "id"
    n = 20                           # structures (0: no errors)

    [[models]]
    name = "chgnet-0.3.0"            # a registered adapter (`matalign models`)
    family = "CHGNet"                # for the tree's colours and the findings' groups
    random = false                   # a random-init architecture baseline
    parent = ""                      # models with one parent are near-duplicates
    options = {}                     # adapter options

    [[sets]]
    name = "id"
    kind = "id"                      # "id", "ood" (another domain) or "ladder"
    dataset = "mptrj"                # ma.datasets.get(dataset, **options)
    n = 200                          # a seeded sample of n structures (all if fewer)
    options = {}

    [[sets]]
    name = "rattle-0.5"
    kind = "ladder"
    from = "id"                      # a perturbation ladder of another set
    ladder = "rattle"                # strain | rattle | vacancy | substitution
    level = 0.5

Examples
--------
>>> import matalign as ma
>>> cfg = ma.study_config({"models": [{"name": "element-stats"}],
...                        "sets": [{"name": "id", "dataset": "mptrj", "n": 20}]})
>>> cfg["knn"]["k"], cfg["preprocess"]["l2"], cfg["sets"][0]["kind"]
(10, True, 'id')
"""

from __future__ import annotations

import copy
import json
import os
import random
import time
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from ._io import atomic_write_text
from ._json import describe, jsonable

__all__ = ["study", "study_config", "load_study_config", "StudyError", "SHIPPED_STUDIES",
           "fetch_mattersim"]

#: Study configs that ship with matalign (``matalign study demo-quick``).
SHIPPED_STUDIES = ("demo", "demo-quick")

_DEFAULTS = {
    "title": "matalign study",
    "description": "",
    "seed": 0,
    "metrics": ["cknna", "mutual_knn", "cka", "dcor", "information_imbalance",
                "intrinsic_dimension"],
    "preprocess": {"center": True, "l2": True, "clip_quantile": 0.0},
    "knn": {"k": 10, "k_sweep": [5, 10, 25, 50], "metric": "ip"},
    "statistics": {"level": 0.95, "n_permutations": 200, "n_subsamples": 30},
    "tree": {"set": "id", "k": 25},
    "report": {"reference": ""},
    "errors": {"set": "id", "n": 20},
}
_SET_KINDS = ("id", "ood", "ladder")
_LADDERS = ("strain", "rattle", "vacancy", "substitution")
_NAME_CHARS = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._+-")


class StudyError(ValueError):
    """A study config that cannot run: the message names the key and what is wrong."""


# ----------------------------------------------------------------------------- config


def load_study_config(path) -> dict:
    """Read a study TOML file (or a shipped study by name) into a checked config dict."""
    name = os.fspath(path)
    if name in SHIPPED_STUDIES:
        from importlib import resources

        text = resources.files("matalign").joinpath("studies", f"{name}.toml").read_text(
            encoding="utf-8")
        where = f"the shipped study {name!r}"
    else:
        p = Path(name)
        if not p.is_file():
            raise FileNotFoundError(f"study config {p} does not exist (shipped studies: "
                                    f"{', '.join(SHIPPED_STUDIES)})")
        text = p.read_text(encoding="utf-8")
        where = str(p)
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        import tomli as tomllib
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise StudyError(f"{where}: not valid TOML ({exc})") from None
    cfg = study_config(raw, where=where)
    cfg["_source"] = where
    cfg["_text"] = text
    return cfg


def _fail(where: str, key: str, problem: str):
    raise StudyError(f"{where}: {key} {problem}")


def _name_ok(value) -> bool:
    return isinstance(value, str) and value != "" and set(value) <= _NAME_CHARS


def study_config(raw: Mapping, *, where: str = "study config") -> dict:
    """The config with defaults filled in, checked (StudyError naming the key)."""
    if not isinstance(raw, Mapping):
        raise StudyError(f"{where} must be a table (dict); got {describe(raw)}")
    known = set(_DEFAULTS) | {"models", "sets"}
    unknown = sorted(set(raw) - known)
    if unknown:
        _fail(where, f"key(s) {unknown}", f"are unknown; the keys are {sorted(known)}")
    cfg = copy.deepcopy(_DEFAULTS)
    for key, value in raw.items():
        if key in ("models", "sets"):
            continue
        if isinstance(_DEFAULTS[key], dict):
            if not isinstance(value, Mapping):
                _fail(where, f"[{key}]", f"must be a table; got {describe(value)}")
            extra = sorted(set(value) - set(_DEFAULTS[key]))
            if extra:
                _fail(where, f"[{key}] key(s) {extra}",
                      f"are unknown; the keys are {sorted(_DEFAULTS[key])}")
            cfg[key].update(value)
        else:
            cfg[key] = value
    from .metrics import ALL_METRICS

    bad = [m for m in cfg["metrics"] if m not in ALL_METRICS]
    if bad or not cfg["metrics"]:
        _fail(where, "metrics", f"must be a non-empty list among {list(ALL_METRICS)}; got {bad}")
    knn = cfg["knn"]
    if not (isinstance(knn["k"], int) and knn["k"] >= 1):
        _fail(where, "knn.k", f"must be an integer >= 1; got {knn['k']!r}")
    sweep = knn["k_sweep"]
    if not (isinstance(sweep, list) and all(isinstance(x, int) and x >= 1 for x in sweep)):
        _fail(where, "knn.k_sweep", f"must be a list of integers >= 1; got {sweep!r}")
    knn["k_sweep"] = sorted(set(sweep) | {knn["k"]})
    stats = cfg["statistics"]
    if not (0.5 <= float(stats["level"]) < 1.0):
        _fail(where, "statistics.level", f"must be in [0.5, 1); got {stats['level']!r}")
    for key in ("n_permutations", "n_subsamples"):
        if not (isinstance(stats[key], int) and stats[key] >= 0):
            _fail(where, f"statistics.{key}", f"must be an integer >= 0; got {stats[key]!r}")

    models = raw.get("models")
    if not isinstance(models, list) or not models:
        _fail(where, "[[models]]", "must list at least one model")
    cfg["models"] = []
    for i, m in enumerate(models):
        if isinstance(m, str):
            m = {"name": m}
        if not isinstance(m, Mapping) or not isinstance(m.get("name"), str):
            _fail(where, f"models[{i}]", "must be a table with a name (a registered adapter)")
        extra = sorted(set(m) - {"name", "family", "random", "parent", "options", "label"})
        if extra:
            _fail(where, f"models[{i}] key(s) {extra}", "are unknown")
        entry = {"name": m["name"], "family": m.get("family") or m["name"].split("-")[0],
                 "random": bool(m.get("random", m["name"].startswith("random-"))),
                 "parent": m.get("parent", ""), "options": dict(m.get("options", {})),
                 "label": m.get("label") or m["name"]}
        if not _name_ok(entry["label"]):
            _fail(where, f"models[{i}].label", f"{entry['label']!r} must use letters, digits "
                  "and ._+- only (it names a folder)")
        cfg["models"].append(entry)
    labels = [m["label"] for m in cfg["models"]]
    if len(set(labels)) != len(labels):
        _fail(where, "[[models]]", f"has duplicate names/labels: {labels}")

    sets = raw.get("sets")
    if not isinstance(sets, list) or not sets:
        _fail(where, "[[sets]]", "must list at least one structure set")
    cfg["sets"] = []
    names = []
    for i, s in enumerate(sets):
        if not isinstance(s, Mapping) or not _name_ok(s.get("name")):
            _fail(where, f"sets[{i}]", "must be a table with a name (letters, digits, ._+-)")
        extra = sorted(set(s) - {"name", "kind", "dataset", "n", "options", "from", "ladder",
                                 "level", "label"})
        if extra:
            _fail(where, f"sets[{i}] key(s) {extra}", "are unknown")
        entry = {"name": s["name"], "label": s.get("label") or s["name"],
                 "kind": s.get("kind", "ladder" if "from" in s else "id"),
                 "dataset": s.get("dataset"), "n": s.get("n"),
                 "options": dict(s.get("options", {})), "from": s.get("from"),
                 "ladder": s.get("ladder"), "level": s.get("level")}
        if entry["kind"] not in _SET_KINDS:
            _fail(where, f"sets[{i}].kind", f"must be one of {_SET_KINDS}; got {entry['kind']!r}")
        if entry["from"] is not None:
            if entry["from"] not in names:
                _fail(where, f"sets[{i}].from", f"names {entry['from']!r}, which is not a set "
                      f"defined before it ({names})")
            if entry["ladder"] not in _LADDERS:
                _fail(where, f"sets[{i}].ladder", f"must be one of {_LADDERS}")
            if not isinstance(entry["level"], (int, float)) or entry["level"] <= 0:
                _fail(where, f"sets[{i}].level", "must be a number > 0")
        elif not isinstance(entry["dataset"], str):
            _fail(where, f"sets[{i}]", "needs dataset = NAME (a shipped set, `matalign "
                  "datasets`) or from = SET with ladder and level")
        if entry["n"] is not None and not (isinstance(entry["n"], int) and entry["n"] >= 4):
            _fail(where, f"sets[{i}].n", f"must be an integer >= 4; got {entry['n']!r}")
        if entry["name"] in names:
            _fail(where, f"sets[{i}].name", f"{entry['name']!r} is used twice")
        names.append(entry["name"])
        cfg["sets"].append(entry)
    if cfg["tree"]["set"] not in names:
        cfg["tree"]["set"] = names[0]
    return cfg


# ----------------------------------------------------------------------------- stages


class _Run:
    """The run directory and its stage markers."""

    def __init__(self, root: Path, echo):
        self.root = root
        self.echo = echo
        (root / "stages").mkdir(parents=True, exist_ok=True)

    def marker(self, stage: str) -> Path:
        return self.root / "stages" / (stage.replace("/", "__") + ".json")

    def stage(self, stage: str, outputs, fn):
        """Run ``fn()`` unless the stage's marker and outputs exist; return its JSON result."""
        marker = self.marker(stage)
        if marker.exists() and all((self.root / o).exists() for o in outputs):
            try:
                record = json.loads(marker.read_text(encoding="utf-8"))
                self.echo(f"  [done] {stage}")
                return record.get("result")
            except (OSError, ValueError):
                pass  # an unreadable marker: run the stage again
        t0 = time.perf_counter()
        result = fn()
        record = {"stage": stage, "outputs": list(outputs),
                  "seconds": round(time.perf_counter() - t0, 3),
                  "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "result": result}
        atomic_write_text(marker, json.dumps(jsonable(record, stage), indent=1) + "\n")
        self.echo(f"  [{record['seconds']:7.1f} s] {stage}")
        return result

    def write_json(self, rel: str, data) -> None:
        path = self.root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(path, json.dumps(jsonable(data, rel), indent=1) + "\n")


def _formula(s) -> dict:
    atoms = getattr(s, "atoms", None)
    return {"id": s.id,
            "formula": atoms.get_chemical_formula() if atoms is not None else None,
            "smiles": getattr(s, "smiles", None)}


def _structures(cfg: dict, cache: dict) -> dict:
    """Every set's structures, in config order (seeded, so a rerun rebuilds the same ones)."""
    import matalign as ma

    out = {}
    for s in cfg["sets"]:
        if s["from"] is not None:
            base = out[s["from"]]
            out[s["name"]] = list(ma.datasets.crystal_ladder(
                base, kind=s["ladder"], levels=(float(s["level"]),), seed=cfg["seed"]))
            continue
        options = dict(s["options"])
        if s["dataset"] == "mattersim-full" and "path" not in options \
                and not os.environ.get("MATALIGN_MATTERSIM_DIR"):
            options["path"] = str(fetch_mattersim())
        key = (s["dataset"], json.dumps(options, sort_keys=True))
        if key not in cache:
            cache[key] = list(ma.datasets.get(s["dataset"], **options))
        pool = cache[key]
        n = s["n"]
        if n is None or n >= len(pool):
            chosen = list(pool)
        else:  # a seeded sample without replacement, in the dataset's order
            rows = sorted(random.Random(f"{cfg['seed']}:{s['name']}").sample(range(len(pool)),
                                                                              n))
            chosen = [pool[i] for i in rows]
        out[s["name"]] = chosen
    return out


def fetch_mattersim(cache_dir=None) -> Path:
    """The mattersim 1.2.3 source distribution (its 5,222 benchmark crystals), from the
    package registry with pip on first use, then from ``cache_dir`` (default
    ``~/.cache/matalign``). Returns the path of the ``.tar.gz``."""
    import subprocess
    import sys

    folder = Path(cache_dir or Path.home() / ".cache" / "matalign").expanduser()
    target = folder / "mattersim-1.2.3.tar.gz"
    if target.is_file():
        return target
    folder.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:",
           "--quiet", "mattersim==1.2.3", "-d", str(folder)]
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0 or not target.is_file():
        raise StudyError(f"could not fetch mattersim 1.2.3's source distribution with pip "
                         f"({' '.join(cmd)}): {done.stderr.strip()[-400:]}; download it by "
                         f"hand and set MATALIGN_MATTERSIM_DIR to the .tar.gz")
    return target


def _species(sets: dict) -> list:
    """Every element of every set: the species of SOAP-like descriptors come from the data,
    so no structure is dropped for its elements."""
    found = set()
    for structures in sets.values():
        for s in structures:
            atoms = getattr(s, "atoms", None)
            if atoms is not None:
                found.update(atoms.get_chemical_symbols())
    return sorted(found)


def _adapter(model: dict, species: list, cache: dict):
    """The model's adapter, built once per study; descriptors that take ``species`` get every
    element of the study's sets."""
    import importlib
    import inspect

    import matalign as ma

    if model["label"] not in cache:
        options = dict(model["options"])
        entry = ma.adapters.info(model["name"])
        module_name, factory_name = entry.target.split(":")
        factory = getattr(importlib.import_module(f"matalign.adapters.{module_name}"),
                          factory_name)
        if species and "species" not in options and \
                "species" in inspect.signature(factory).parameters:
            options["species"] = species
        cache[model["label"]] = ma.adapters.get(model["name"], **options)
    return cache[model["label"]]


def _preprocessed(store_dir: Path, pp: dict) -> np.ndarray:
    import matalign as ma

    store = ma.open_store(store_dir)
    X = np.asarray(store.embeddings)
    clip = pp.get("clip_quantile") or None
    return ma.preprocess(X, center=bool(pp["center"]), l2=bool(pp["l2"]), clip_quantile=clip)


def _pp_text(pp: dict) -> str:
    parts = []
    if pp.get("center"):
        parts.append("centred")
    if pp.get("clip_quantile"):
        parts.append(f"clipped at the {pp['clip_quantile']} quantile")
    if pp.get("l2"):
        parts.append("L2-normalised rows")
    return ", ".join(parts) or "raw embeddings"


def _with_pp(m, pp: dict):
    from .result import AlignmentMatrix

    params = dict(m.params)
    params["preprocessing"] = dict(pp)
    return AlignmentMatrix(list(m.names), dict(m.metrics), dict(m.per_model), params,
                           dict(m.metadata))


# ----------------------------------------------------------------------------- the study


def study(config, *, out=None, echo=print, progress=False, report=True) -> dict:
    """Run a study into its run directory, resuming every finished stage.

    Parameters
    ----------
    config : str, os.PathLike or dict
        A study TOML file, the name of a shipped study (``"demo"``, ``"demo-quick"``), or
        the config as a dict (module docstring).
    out : str or os.PathLike, optional
        The run directory (default ``matalign-study`` in the working directory). Rerunning
        into the same directory skips every finished stage.
    echo : callable(str), default print
        Where progress lines go.
    progress : bool, default False
        Progress bars for embeddings.
    report : bool, default True
        Render ``report.html`` at the end.

    Returns
    -------
    dict
        ``run_dir``, ``sets`` (name -> N), ``matrices`` (name -> path), ``findings`` (list)
        and ``report`` (path or None).

    Raises
    ------
    StudyError
        For a config that cannot run (the message names the key).
    FileNotFoundError
        For a missing config file.
    """
    cfg = (load_study_config(config) if isinstance(config, (str, os.PathLike))
           else study_config(config))
    root = Path(out) if out is not None else Path("matalign-study")
    run = _Run(root, echo)
    text = cfg.pop("_text", None)
    cfg.pop("_source", None)
    if text is not None:
        atomic_write_text(root / "study.toml", text)
    else:
        run.write_json("study.json", cfg)
    t0 = time.perf_counter()
    pp, knn = cfg["preprocess"], cfg["knn"]
    echo(f"matalign study: {cfg['title']} -> {root}")

    cache: dict = {}
    sets = _structures(cfg, cache)
    cache.clear()
    for s in cfg["sets"]:
        name = s["name"]
        run.stage(f"structures/{name}", [f"sets/{name}/structures.json"],
                  lambda name=name: run.write_json(f"sets/{name}/structures.json",
                                                   [_formula(x) for x in sets[name]]))
        echo(f"  set {name}: N = {len(sets[name])} ({s['kind']})")

    species = _species(sets)
    adapters: dict = {}
    import matalign as ma

    for s in cfg["sets"]:
        for model in cfg["models"]:
            rel = f"embeddings/{s['name']}/{model['label']}"

            def embed(s=s, model=model, rel=rel):
                store = ma.embed(sets[s["name"]], _adapter(model, species, adapters),
                                 root / rel, resume=True, progress=progress)
                return {"n": int(store.embeddings.shape[0]),
                        "d": int(store.embeddings.shape[1])}

            run.stage(f"embed/{s['name']}/{model['label']}", [rel + "/embeddings.npy"], embed)
    adapters.clear()

    labels = [m["label"] for m in cfg["models"]]
    graph_metrics = [m for m in ("cknna", "mutual_knn") if m in cfg["metrics"]]
    matrices = {}
    for s in cfg["sets"]:
        name = s["name"]
        n = len(sets[name])

        def load(name=name):
            return {lab: _preprocessed(root / f"embeddings/{name}/{lab}", pp) for lab in labels}

        ks = [k for k in knn["k_sweep"] if k <= n - 1]
        k_main = min(knn["k"], n - 1)

        def matrix(name=name, k=k_main):
            m = ma.alignment_matrix(load(), metrics=cfg["metrics"], k=k,
                                    knn_metric=knn["metric"], seed=cfg["seed"])
            _with_pp(m, pp).save(root / f"sets/{name}/matrix.json")
            return {"k": k, "n": n}

        run.stage(f"matrix/{name}", [f"sets/{name}/matrix.json"], matrix)
        matrices[name] = f"sets/{name}/matrix.json"
        if graph_metrics and len(cfg["models"]) >= 2:
            for k in ks:
                def sweep(name=name, k=k):
                    m = ma.alignment_matrix(load(), metrics=graph_metrics, k=k,
                                            knn_metric=knn["metric"])
                    _with_pp(m, pp).save(root / f"sets/{name}/matrix-k{k}.json")
                    return {"k": k}

                run.stage(f"ksweep/{name}/k{k}", [f"sets/{name}/matrix-k{k}.json"], sweep)

    _errors_stage(run, cfg, sets)
    seconds = time.perf_counter() - t0
    run_json = _write_run_json(root, cfg, sets, matrices)
    page = None
    if report:
        from . import report as report_mod

        try:
            page = report_mod.render(root)
        except (ValueError, KeyError) as exc:  # an older report module: say so, keep results
            echo(f"  report not rendered: {exc}")
    echo(f"done in {seconds:.0f} s: {run_json}")
    return {"run_dir": root, "sets": {k: len(v) for k, v in sets.items()},
            "matrices": matrices, "findings": [], "report": page}


def _errors_stage(run: _Run, cfg: dict, sets: dict) -> None:
    """errors.json: each predicting model's force (and energy) error on the first n labelled
    structures of the errors set; nothing when no model of the study predicts."""
    from .errors import PREDICTORS, model_errors

    spec = cfg["errors"]
    n = int(spec.get("n") or 0)
    target = spec.get("set") or cfg["sets"][0]["name"]
    models = [m for m in cfg["models"] if m["name"] in PREDICTORS]
    if n <= 0 or target not in sets or not models:
        return
    structures = sets[target][:n]
    values = {}
    for m in models:
        values[m["label"]] = run.stage(f"errors/{target}/{m['label']}", [],
                                       lambda m=m: model_errors(structures, m["name"]))

    def write():
        used = {v["n"] for v in values.values()}
        run.write_json("errors.json", {
            "label": "force MAE (eV/Å)",
            "values": {k: v["force_mae"] for k, v in values.items()},
            "energy_label": "energy MAE (eV/atom)",
            "energy": {k: v["energy_mae"] for k, v in values.items()},
            "functional": {k: v["functional"] for k, v in values.items()},
            "set": target, "n": sorted(used),
            "note": ("forces need no reference-energy convention and are compared across all "
                     "models; energies only within one functional (the labels are PBE/PBE+U, "
                     "with the corrections of their source): an r2SCAN model's energy error "
                     "measures the functional gap, not its accuracy")})

    run.stage("errors", ["errors.json"], write)


def _write_run_json(root: Path, cfg: dict, sets: dict, matrices: dict) -> Path:
    from . import _engine

    entries = []
    for s in cfg["sets"]:
        name = s["name"]
        by_k = {str(k): f"sets/{name}/matrix-k{k}.json" for k in cfg["knn"]["k_sweep"]
                if (root / f"sets/{name}/matrix-k{k}.json").exists()}
        entries.append({
            "name": name, "label": s["label"], "kind": s["kind"],
            "level": s["level"], "ladder": s["ladder"], "n": len(sets[name]),
            "matrix": matrices[name], "intrinsic_dimension": None, "scores": None,
            "structures": f"sets/{name}/structures.json",
            "stats": (f"sets/{name}/stats.json"
                      if (root / f"sets/{name}/stats.json").exists() else None),
            "ksweep": None, "matrices_by_k": by_k})
    parents = {}
    for m in cfg["models"]:
        if m["parent"]:
            parents.setdefault(m["parent"], []).append(m["label"])
    near = [[a, b] for group in parents.values() for i, a in enumerate(group)
            for b in group[i + 1:]]
    doc = {
        "format": "matalign.run", "version": 2,
        "title": cfg["title"], "description": cfg["description"],
        "models": [m["label"] for m in cfg["models"]],
        "reference": cfg["report"]["reference"] or None,
        "families": {m["label"]: m["family"] for m in cfg["models"]},
        "random": [m["label"] for m in cfg["models"] if m["random"]],
        "near_duplicates": near,
        "preprocessing": {**cfg["preprocess"], "text": _pp_text(cfg["preprocess"])},
        "knn": dict(cfg["knn"]),
        "sets": entries,
        "errors": "errors.json" if (root / "errors.json").exists() else None,
        "tree": "tree.json" if (root / "tree.json").exists() else None,
        "findings": "findings.json" if (root / "findings.json").exists() else None,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "matalign_version": _engine.version(),
    }
    path = root / "run.json"
    atomic_write_text(path, json.dumps(jsonable(doc, "run.json"), indent=1) + "\n")
    return path

