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
    n = 200                          # a seeded sample of n structures (all if fewer; sets
                                     # over 20,000 or of unknown size: the first n)
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
import itertools
import json
import os
import random
import time
import warnings
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from . import adapters as _adapters
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
# Sets up to this size are sampled uniformly (seeded); larger or unbounded ones give their
# first n structures (reading all of CCD's 49k components to sample 200 would dominate a run).
_POOL_LIMIT = 20_000
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
    """The config with defaults filled in, checked (StudyError naming the key).

    Examples
    --------
    >>> from matalign.study import study_config
    >>> cfg = study_config({"models": ["element-stats", "composition"],
    ...                     "sets": [{"name": "id", "dataset": "mptrj", "n": 20}]})
    >>> cfg["knn"]["k_sweep"], cfg["models"][1]["label"]
    ([5, 10, 25, 50], 'composition')
    >>> study_config({"models": ["soap"], "sets": [{"name": "id"}]})
    Traceback (most recent call last):
    ...
    matalign.study.StudyError: study config: sets[0] needs dataset = NAME (a shipped set, `matalign datasets`) or from = SET with ladder and level
    """
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
    # A model without an explicit parent inherits its registered one (e.g. a same-architecture
    # replicate), when that parent is in the study too: near-duplicates are flagged either way.
    by_name = {m["name"]: m["label"] for m in cfg["models"]}
    for m, entry in zip(models, cfg["models"]):
        if isinstance(m, Mapping) and "parent" in m:
            continue
        try:
            registered = _adapters.info(entry["name"]).parent
        except ValueError:
            continue
        if registered in by_name:
            entry["parent"] = by_name[registered]
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
        with warnings.catch_warnings(record=True) as caught:
            # e.g. duplicate rows left out of a TwoNN estimate: recorded, not raised
            warnings.simplefilter("always")
            result = fn()
        notes = sorted({f"{w.category.__name__}: {w.message}" for w in caught})
        for note in notes:
            self.echo(f"    note ({stage}): {note}")
        record = {"stage": stage, "outputs": list(outputs),
                  "seconds": round(time.perf_counter() - t0, 3),
                  "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "result": result,
                  "notes": notes}
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
        n = s["n"]
        if key not in cache:
            size = next((d.n for d in ma.datasets.list() if d.name == s["dataset"]), None)
            data = ma.datasets.get(s["dataset"], **options)
            if n is not None and (size is None or size > _POOL_LIMIT):
                # large or unbounded sets (CCD's 49k components, generators): the first n
                data = itertools.islice(data, n)
            cache[key] = list(data)
        pool = cache[key]
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
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", "mattersim",
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


class _SetCache:
    """The preprocessed embeddings of one set at a time, read from the stores once for all the
    stages of that set (matrix, k sweep, statistics, tree)."""

    def __init__(self, root: Path, labels: list, pp: dict):
        self.root, self.labels, self.pp = root, labels, pp
        self.name, self.spaces = None, None

    def __call__(self, name: str) -> dict:
        if name != self.name:
            self.spaces = None  # release the previous set first
            self.spaces = {lab: _preprocessed(self.root / f"embeddings/{name}/{lab}", self.pp)
                           for lab in self.labels}
            self.name = name
        return self.spaces


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


def study(config, *, out=None, echo=print, progress=False, report=True,
          executor=None) -> dict:
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
    executor : {"local", "ray", "auto", "ray://host:port"}, optional
        Where the embeddings and the engine's metric passes run (:mod:`matalign.executor`,
        docs/CLUSTER.md); default local. A config key ``executor`` is used when this is None.

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

    Examples
    --------
    >>> import tempfile
    >>> import matalign as ma
    >>> cfg = {"models": ["element-stats", "composition"], "metrics": ["cknna", "cka"],
    ...        "knn": {"k": 5, "k_sweep": [5]}, "statistics": {"n_subsamples": 5,
    ...        "n_permutations": 5}, "sets": [{"name": "id", "dataset": "mptrj", "n": 24}]}
    >>> with tempfile.TemporaryDirectory() as out:
    ...     result = ma.study(cfg, out=out, report=False, echo=lambda line: None)
    ...     print(result["sets"], result["findings"][0]["verdict"])
    {'id': 24} inconclusive
    """
    if isinstance(config, dict) and "executor" in config:
        config = dict(config)
        executor = config.pop("executor") if executor is None else executor
        config.pop("executor", None)
    if executor is not None:
        from .executor import use

        with use(executor):
            return study(config, out=out, echo=echo, progress=progress, report=report)
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
    spaces = _SetCache(root, labels, pp)
    for s in cfg["sets"]:
        name = s["name"]
        n = len(sets[name])

        def load(name=name):
            return spaces(name)

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

    for s in cfg["sets"]:
        name = s["name"]
        run.stage(f"stats/{name}", [f"sets/{name}/stats.json"],
                  lambda name=name: _stats(root, name, cfg, labels, min(knn["k"],
                                                                       len(sets[name]) - 1),
                                           spaces(name)))
        if graph_metrics and len(labels) >= 2:
            run.stage(f"ksweep-table/{name}", [f"sets/{name}/ksweep.json"],
                      lambda name=name: _ksweep_table(root, name, cfg))
    _errors_stage(run, cfg, sets)
    _tree_stage(run, cfg, sets, labels, spaces)
    _ood_stage(run, cfg, sets, labels)
    found = run.stage("findings", ["findings.json"], lambda: _findings(root, cfg, sets))
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
            "matrices": matrices, "findings": found or [], "report": page}


# ----------------------------------------------------------------------------- statistics

_DESCRIPTORS = ("soap", "acsf", "composition", "element-stats", "morgan", "rdkit-descriptors",
                "minilm-smiles")
#: Metrics whose pairs get a CI and a null in stats.json (name in statistics, extra options).
_STAT_METRICS = {"cknna": ("cknna", {}), "mutual_knn": ("mutual_knn", {}),
                 "cka": ("cka", {}), "dcor": ("distance_correlation", {}),
                 "information_imbalance": ("information_imbalance", {"direction": "x->y"})}


def _role(model: dict) -> str:
    if model["random"]:
        return "random"
    if model["name"] in _DESCRIPTORS:
        return "descriptor"
    return "trained"


def _stats(root: Path, name: str, cfg: dict, labels: list, k: int, X: dict) -> dict:
    """stats.json of one set: every pair's value, subsampling CI and null at the study's k,
    and each model's intrinsic dimension with its CI (module statistics)."""
    from . import statistics

    spec = cfg["statistics"]
    n = next(iter(X.values())).shape[0]
    out: dict = {}
    skipped = []
    kw = dict(level=spec["level"], n_subsamples=spec["n_subsamples"],
              n_permutations=spec["n_permutations"], seed=cfg["seed"])
    # shared across the pairs: each model's kNN graphs (full sample and subsamples) and the
    # point estimates the matrix stage already computed (its entries equal the pairwise calls
    # bit for bit), so no pair recomputes what another pair or the matrix did
    cache = statistics.WorkCache([X[a] for a in labels])
    known = _matrix_values(root / f"sets/{name}/matrix.json", labels)
    for metric in cfg["metrics"]:
        if metric not in _STAT_METRICS or len(labels) < 2:
            continue
        stat_name, extra = _STAT_METRICS[metric]
        table = {}
        for i, a in enumerate(labels):
            for b in labels[i + 1:]:
                mk = {"k": k} if metric in ("cknna", "mutual_knn") else (
                    {"k": 1} if metric == "information_imbalance" else {})
                try:
                    ci, null = statistics.assess(stat_name, X[a], X[b], **mk, **kw, **extra,
                                                 value=known.get((metric, a, b)), cache=cache)
                except ValueError as exc:  # e.g. a set too small for subsampling
                    skipped.append(f"{metric} {a}|{b}: {exc}")
                    continue
                table[f"{a}|{b}"] = {
                    "value": ci.value, "low": ci.low, "high": ci.high, "level": ci.level,
                    "ci_method": f"{ci.method} (b={ci.b}, {ci.n_subsamples} subsamples, "
                                 f"rate {ci.rate:.2f})",
                    "n": ci.n, "k": ci.k,
                    "null_mean": None if null is None else null.null_mean,
                    "p_value": None if null is None else null.p_value,
                    "null_method": None if null is None else null.method,
                    "n_permutations": None if null is None else null.n_permutations}
        out[metric] = table
    if "intrinsic_dimension" in cfg["metrics"]:
        table = {}
        for a in labels:
            try:
                ci = statistics.confidence_interval("intrinsic_dimension", X[a],
                                                    level=spec["level"],
                                                    n_subsamples=spec["n_subsamples"],
                                                    seed=cfg["seed"])
                table[a] = {"value": ci.value, "low": ci.low, "high": ci.high,
                            "level": ci.level, "ci_method": ci.method, "n": ci.n}
            except ValueError as exc:  # e.g. too many duplicate rows for TwoNN
                skipped.append(f"intrinsic_dimension {a}: {exc}")
        out["intrinsic_dimension"] = table
    _Run(root, lambda *_: None).write_json(f"sets/{name}/stats.json", out)
    # pairs without an interval (e.g. a set too small to subsample) are left out of
    # stats.json and listed here, in the stage's marker
    return {"n": n, "k": k, "level": spec["level"], "skipped": skipped}


def _matrix_values(path: Path, labels: list) -> dict:
    """{(metric, a, b): value} of the matrix stage's entries that equal what
    statistics.assess computes for that pair (linear biased CKA, biased dCor, the imbalance
    Δ(a → b) at k = 1); nothing when the matrix was made with other settings."""
    from .result import AlignmentMatrix

    if not path.exists():
        return {}
    m = AlignmentMatrix.load(path)
    p = m.params
    wanted = {"cka": p.get("cka_kernel") == "linear" and not p.get("unbiased"),
              "dcor": not p.get("unbiased"),
              "information_imbalance": p.get("imbalance_k") == 1}
    out = {}
    for metric, ok in wanted.items():
        if not ok or metric not in m.metrics:
            continue
        for a in labels:
            for b in labels:
                if a != b and a in m.names and b in m.names:
                    v = m.value(metric, a, b)
                    if np.isfinite(v):
                        out[(metric, a, b)] = v
    return out


def _ksweep_table(root: Path, name: str, cfg: dict) -> dict:
    """ksweep.json: cknna and mutual_knn of every pair at every k of the sweep."""
    from .result import AlignmentMatrix

    out: dict = {}
    for k in cfg["knn"]["k_sweep"]:
        path = root / f"sets/{name}/matrix-k{k}.json"
        if not path.exists():
            continue
        m = AlignmentMatrix.load(path)
        for metric in m.metric_names:
            rows = out.setdefault(metric, {})
            for a in m.names:
                for b in m.names:
                    if a != b:
                        rows.setdefault(f"{a}|{b}", []).append(
                            [k, m.value(metric, a, b), None, None])
    _Run(root, lambda *_: None).write_json(f"sets/{name}/ksweep.json", out)
    return {"ks": cfg["knn"]["k_sweep"]}


def _tree_stage(run: _Run, cfg: dict, sets: dict, labels: list, spaces) -> None:
    """tree.json: the paper's tree (neighbour joining on √JSD of CKNNA rows) at the tree's k."""
    name = cfg["tree"]["set"]
    if "cknna" not in cfg["metrics"] or name not in sets:
        return
    if len(labels) < 4:
        run.echo(f"  no model tree: neighbour joining needs at least 4 models ({len(labels)})")
        return
    k = min(int(cfg["tree"]["k"]), len(sets[name]) - 1)

    def build():
        import matalign as ma

        from .tree import model_tree

        swept = run.root / f"sets/{name}/matrix-k{k}.json"
        if swept.exists():  # the k sweep already has the CKNNA matrix at this k
            m = ma.AlignmentMatrix.load(swept)
        else:
            m = ma.alignment_matrix(spaces(name), metrics=["cknna"], k=k,
                                    knn_metric=cfg["knn"]["metric"])
        t = model_tree(m)
        order = _leaf_order(t.newick, labels)
        run.write_json("tree.json", {"set": name, "k": k, "n": len(sets[name]),
                                     "metric": "cknna", "method": "nj-sqrt-jsd",
                                     "newick": t.newick, "order": order,
                                     "preprocessing": _pp_text(cfg["preprocess"])})
        return {"k": k}

    run.stage("tree", ["tree.json"], build)


OOD_K = 5       # neighbour rank of the reference-set OOD score (bench/bench_ood.py)


def _ood_stage(run: _Run, cfg: dict, sets: dict, labels: list) -> None:
    """ood.json: how well the reference-set OOD scores (matalign.ood, docs/STATISTICS.md
    section 6) separate each other set from held-out in-distribution structures. The first
    in-distribution set is split by a seeded shuffle: one half is the reference, the other the
    in-distribution negatives; a ladder of that set contributes the copies of the held-out
    half only (a copy of a reference structure would sit next to its original), another
    domain all its rows. Raw embeddings, as the default score was chosen on them."""
    ids = [s["name"] for s in cfg["sets"] if s["kind"] == "id"]
    if not ids or len(cfg["sets"]) < 2 or not labels:
        return
    id_name = ids[0]
    n_id = len(sets[id_name])
    if n_id < 2 * (OOD_K + 2):
        return

    def build():
        import matalign as ma

        from .ood import DEFAULT_PREPROCESS, DEFAULT_SCORE, auroc, fpr_at_tpr, reference_scores

        def raw(name):
            return {m: np.asarray(ma.open_store(run.root / f"embeddings/{name}/{m}").embeddings)
                    for m in labels}

        order = np.random.default_rng([cfg["seed"], 7]).permutation(n_id)
        ref_rows, held = np.sort(order[: n_id // 2]), np.sort(order[n_id // 2:])
        E = raw(id_name)
        if any(v.shape[0] != n_id for v in E.values()):
            why = "the models embedded different numbers of structures"
            run.write_json("ood.json", {"skipped": why})
            return {"skipped": why}
        ref = {m: v[ref_rows] for m, v in E.items()}
        neg = {m: v[held] for m, v in E.items()}
        out = {"k": OOD_K, "reference_set": id_name, "n_reference": int(ref_rows.size),
               "default": DEFAULT_SCORE, "preprocessing": DEFAULT_PREPROCESS, "sets": {}}
        for s in cfg["sets"]:
            name = s["name"]
            if name == id_name or s["kind"] == "id":
                continue
            P = raw(name)
            rows = {v.shape[0] for v in P.values()}
            if len(rows) != 1:
                continue
            if s["from"] == id_name and rows == {n_id}:
                P = {m: v[held] for m, v in P.items()}
            q = {m: np.concatenate([neg[m], P[m]]) for m in labels}
            y = np.r_[np.zeros(held.size), np.ones(next(iter(P.values())).shape[0])]
            sc = reference_scores(ref, q, k=OOD_K)
            cols = {c: v for c, v in sc.columns.items() if c != "agreement"}
            out["sets"][name] = {
                "label": s.get("label", name), "n_in": int(held.size),
                "n_ood": int(y.sum()),
                "scores": {c: {"auroc": auroc(v, y), "fpr_at_95_tpr": fpr_at_tpr(v, y)}
                           for c, v in cols.items()}}
        run.write_json("ood.json", out)
        return {"sets": list(out["sets"])}

    run.stage("ood", ["ood.json"], build)


def _leaf_order(newick: str, labels: list) -> list:
    """The leaves in the order the Newick string lists them."""
    found = sorted((newick.find(lab), lab) for lab in labels if lab in newick)
    rest = [lab for lab in labels if lab not in newick]
    return [lab for _, lab in found] + rest


def _pairs(stats: dict, metric: str, models: list, roles: dict, want, parents) -> list:
    from .findings import PairStatistic

    out = []
    for key, v in stats.get(metric, {}).items():
        a, b = key.split("|")
        if v.get("value") is None or v.get("low") is None:
            continue  # no interval for this pair (see its note in stats.json)
        if a in models and b in models and want(roles[a], roles[b]):
            out.append(PairStatistic(a, b, v["value"], v["low"], v["high"], v["n"], v["k"],
                                     v["p_value"]))
    return out


class _Combined:
    """A CKNNA verdict whose overall verdict also depends on a second test."""

    def __init__(self, base, verdict: str, note: str):
        self.base, self.verdict, self.note = base, verdict, note

    def as_dict(self) -> dict:
        d = self.base.as_dict()
        d["verdict"] = self.verdict
        d["note"] = self.note
        return d


def _dimension_drop(stats: dict, ood: str, id_set: str, labels: list, roles: dict):
    """Verdict of "the trained models' intrinsic dimension is lower on ``ood``"."""
    from .findings import PairStatistic, compare_groups

    def group(set_name):
        rows = stats[set_name].get("intrinsic_dimension", {})
        out = []
        for a in labels:
            v = rows.get(a)
            if roles[a] == "trained" and v and v.get("value") is not None:
                out.append(PairStatistic(a, a, v["value"], v["low"], v["high"], v["n"], None))
        return out

    try:
        return compare_groups(group(ood), group(id_set), direction="less", require_chance=False)
    except (ValueError, KeyError) as exc:
        return f"not testable here: {exc}"


def _findings(root: Path, cfg: dict, sets: dict) -> list:
    """findings.json: the paper's two findings, each from a stated test (module findings),
    plus the perturbation ladders as a separate question."""
    from .findings import compare_groups

    labels = [m["label"] for m in cfg["models"]]
    roles = {m["label"]: _role(m) for m in cfg["models"]}
    parents = {m["label"]: m["parent"] for m in cfg["models"] if m["parent"]}
    stats = {}
    for s in cfg["sets"]:
        path = root / f"sets/{s['name']}/stats.json"
        if path.exists():
            stats[s["name"]] = json.loads(path.read_text(encoding="utf-8"))
    pp = _pp_text(cfg["preprocess"])
    id_set = next((s["name"] for s in cfg["sets"] if s["kind"] == "id"), None)
    out = []

    def record(finding, question, test, verdict_or_error, set_name):
        params = json.loads((root / f"sets/{set_name}/matrix.json").read_text(
            encoding="utf-8"))["params"]
        entry = {"finding": finding, "question": question, "test": test, "set": set_name,
                 "n": params["n"], "k": params["k"], "preprocessing": pp}
        if isinstance(verdict_or_error, str):
            entry.update({"verdict": "inconclusive", "detail": verdict_or_error,
                          "value": None, "ci": None, "p_value": None, "near_duplicates": []})
        else:
            v = verdict_or_error.as_dict()
            entry.update({"verdict": v["verdict"], "value": v["difference"],
                          "ci": [v["low"], v["high"]], "p_value": None,
                          "statistic": "difference of mean CKNNA (group A − group B)",
                          "null": ("each group-A pair beats its permutation null "
                                   f"(Bonferroni, alpha {v['alpha']})"
                                   if v["chance_ok"] is not None else "none"),
                          "detail": (f"mean A {v['mean_a']:.4f} over {v['n_pairs_a']} pairs, "
                                     f"mean B {v['mean_b']:.4f} over {v['n_pairs_b']} pairs; "
                                     f"chance beaten: {v['chance_ok']}"),
                          "near_duplicates": v["excluded_near_duplicates"]})
            if "note" in v:
                entry["detail"] += "; " + v["note"]
        out.append(entry)

    if id_set in stats:
        trained = lambda ra, rb: ra == "trained" and rb == "trained"  # noqa: E731
        randoms = lambda ra, rb: ra == "random" and rb == "random"  # noqa: E731
        A = _pairs(stats[id_set], "cknna", labels, roles, trained, parents)
        B = _pairs(stats[id_set], "cknna", labels, roles, randoms, parents)
        test = ("trained-model pairs (A) against random-init pairs of the same architectures "
                "(B, the architecture baseline), CKNNA in distribution: holds when the "
                "interval of mean(A) − mean(B) lies above 0 and every A pair beats its "
                "permutation null; does not hold when it lies below 0; inconclusive when it "
                "contains 0")
        try:
            verdict = compare_groups(A, B, direction="greater", parents=parents)
        except ValueError as exc:
            verdict = f"not testable here: {exc}"
        record("in distribution, trained models align beyond the architecture baseline "
               "and chance", "Do different trained models agree on the same structures?",
               test, verdict, id_set)
        for s in cfg["sets"]:
            if s["kind"] == "id" or s["name"] not in stats:
                continue
            A = _pairs(stats[s["name"]], "cknna", labels, roles, trained, parents)
            B = _pairs(stats[id_set], "cknna", labels, roles, trained, parents)
            far = s["kind"] == "ood"
            test = (f"the same trained-model pairs on {s['name']} (A) against in distribution "
                    f"(B), CKNNA at one N and k: holds when the interval of mean(A) − mean(B) "
                    f"lies above 0 (alignment rises: the models collapse onto a shared "
                    f"representation), does not hold below 0, inconclusive otherwise")
            try:
                verdict = compare_groups(A, B, direction="greater", parents=parents,
                                         require_chance=False)
            except ValueError as exc:
                verdict = f"not testable here: {exc}"
            if far:
                dim = _dimension_drop(stats, s["name"], id_set, labels, roles)
                test += ("; and their intrinsic dimension drops (interval of the mean "
                         "difference below 0). The finding holds when both hold, does not "
                         "hold when either does not, and is inconclusive otherwise")
                if not isinstance(verdict, str) and not isinstance(dim, str):
                    both = {verdict.verdict, dim.verdict}
                    combined = ("does not hold" if "does not hold" in both else
                                "holds" if both == {"holds"} else "inconclusive")
                    verdict = _Combined(verdict, combined,
                                        f"intrinsic dimension: {dim.verdict} (mean "
                                        f"{dim.mean_a:.2f} vs {dim.mean_b:.2f})")
                elif isinstance(dim, str) and not isinstance(verdict, str):
                    verdict = _Combined(verdict, "inconclusive" if verdict.verdict != "does not hold"
                                        else "does not hold", f"intrinsic dimension: {dim}")
                record("far out of distribution, trained models collapse onto a shared, "
                       "lower-dimensional representation",
                       "Do crystal potentials converge on molecules?", test, verdict,
                       s["name"])
            else:
                record(f"perturbation ladder {s['name']}: alignment rises under perturbation "
                       f"(a separate question from the paper's)",
                       "Do the models agree more on perturbed copies?", test, verdict,
                       s["name"])
    _Run(root, lambda *_: None).write_json("findings.json", out)
    return out


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

