"""The benchmark suite: matalign against its anchors, side by side, on the same data.

Each module runs matalign and whichever reference implementation (*anchor*) is installed
on data generated from a seed, checks that the two agree, and only then prints a ratio; see
``bench/README.md`` for the method and the targets. ``matalign bench NAME [options]`` runs
one from an installed package; ``python bench/bench_NAME.py`` (a thin wrapper) runs the same
code from a checkout.

- ``knn``: exact kNN (``matalign.knn``) against faiss-cpu on the CPU, torch on the GPU;
- ``cknna``: CKNNA and mutual kNN from arrays against the dense reference algorithm;
- ``dcor``: distance correlation and RBF CKA against the ``dcor`` package;
- ``information_imbalance``: against DADApy with full ranks, run in its own interpreter
  (``MATALIGN_DADAPY_PYTHON`` or ``--dadapy-python``);
- ``cka``: linear CKA against the dense reference algorithm, and N = 1M alone;
- ``matrix``: the model × model matrix against its parts;
- ``screen``: the int8/int16 kNN screen against matalign's float GEMM;
- ``approx``: approximate kNN (IVF, HNSW, IVF-PQ), error against recall;
- ``outofcore``: the metrics on stores larger than memory.

Examples
--------
>>> from matalign import benchmarks
>>> sorted(benchmarks.BENCHMARKS)[:3]
['approx', 'cka', 'cknna']
"""

from __future__ import annotations

import importlib
import json
import os
import sys
import tempfile

__all__ = ["BENCHMARKS", "run", "plot_scaling"]

#: name -> (one-line description, whether ``--device cuda`` is supported)
BENCHMARKS: dict[str, tuple[str, bool]] = {
    "knn": ("exact kNN graph: matalign vs faiss-cpu (CPU) or torch (GPU)", True),
    "cknna": ("CKNNA and mutual kNN from arrays vs the dense reference algorithm", False),
    "dcor": ("distance correlation and RBF CKA vs dcor", False),
    "information_imbalance": ("exact information imbalance vs DADApy (full ranks)", False),
    "cka": ("linear CKA vs the dense reference algorithm; N = 1M alone", False),
    "matrix": ("the model x model matrix vs its parts", False),
    "screen": ("the int8/int16 kNN screen vs matalign's float GEMM", False),
    "approx": ("approximate kNN (IVF, HNSW, IVF-PQ): error vs recall", False),
    "outofcore": ("metrics on stores larger than memory (memmap, streamed)", False),
}


def _take_option(argv: list[str], name: str) -> tuple[list[str], str | None]:
    """Remove ``name VALUE`` / ``name=VALUE`` from ``argv``; return the rest and VALUE."""
    out, value, i = [], None, 0
    while i < len(argv):
        a = argv[i]
        if a == name:
            if i + 1 >= len(argv):
                raise ValueError(f"{name} needs a value")
            value = argv[i + 1]
            i += 2
            continue
        if a.startswith(name + "="):
            value = a.split("=", 1)[1]
        else:
            out.append(a)
        i += 1
    return out, value


def run(name: str, argv: list[str] | None = None) -> int:
    """Run benchmark ``name`` with command-line arguments ``argv``; return its exit status.

    Besides the benchmark's own options (``--help`` lists them), ``--plot DIR`` writes the
    scaling plot (time and peak added memory against N, one line per side and case) to
    ``DIR/<name>_scaling.png`` and ``.svg``; the JSON results (``--json PATH``) always carry
    the machine record (``machine_record()`` of ``matalign.benchmarks._common``).

    Parameters
    ----------
    name : str
        One of the keys of ``BENCHMARKS``.
    argv : list of str, optional
        The benchmark's arguments (default: none, the benchmark's defaults).

    Returns
    -------
    int
        0 when every case ran and agreed with its anchor, 1 otherwise.

    Raises
    ------
    ValueError
        If ``name`` is unknown, or ``--device cuda`` is asked of a CPU-only benchmark.

    Examples
    --------
    >>> from matalign.benchmarks import run
    >>> run("nope")
    Traceback (most recent call last):
    ...
    ValueError: name: no benchmark 'nope'; available: knn, cknna, dcor, information_imbalance, cka, matrix, screen, approx, outofcore
    """
    if name not in BENCHMARKS:
        raise ValueError(f"name: no benchmark {name!r}; available: {', '.join(BENCHMARKS)}")
    argv = list(argv or [])
    argv, plot_dir = _take_option(argv, "--plot")
    if not BENCHMARKS[name][1]:
        rest, device = _take_option(argv, "--device")
        if device not in (None, "cpu"):
            cuda = [n for n, (_, gpu) in BENCHMARKS.items() if gpu]
            raise ValueError(f"--device {device}: benchmark {name!r} runs on the CPU only "
                             f"(--device cuda: {', '.join(cuda)})")
        argv = rest
    _, json_path = _take_option(argv, "--json")
    tmp = None
    if plot_dir is not None and json_path is None:
        tmp = tempfile.TemporaryDirectory(prefix="matalign-bench-")
        json_path = os.path.join(tmp.name, "results.json")
        argv += ["--json", json_path]
    module = importlib.import_module(f"{__name__}.{name}")
    old_argv = sys.argv
    # argv[0] is the program name of the benchmark's usage line and its header's command line
    sys.argv = [f"matalign bench {name}", *argv]
    try:
        status = module.main(argv)
    finally:
        sys.argv = old_argv
    try:
        if json_path and os.path.exists(json_path) and not any(a in ("-h", "--help")
                                                               for a in argv):
            with open(json_path) as f:
                doc = json.load(f)
            if isinstance(doc, dict) and "machine" not in doc:
                from ._common import machine_record

                doc["machine"] = machine_record()
                with open(json_path, "w") as f:
                    json.dump(doc, f, indent=1, default=str)
            if plot_dir is not None:
                rows = doc.get("results", []) if isinstance(doc, dict) else []
                for path in plot_scaling(rows, plot_dir, name):
                    print(f"# wrote {path}")
    finally:
        if tmp is not None:
            tmp.cleanup()
    return int(status or 0)


_LABEL_KEYS = ("case", "comparison", "metric", "estimator", "k", "device")


def plot_scaling(rows: list[dict], out_dir: str, name: str) -> list[str]:
    """Draw time and peak added memory against N for every side of every case.

    Each row with an ``N`` contributes, for each side ``S`` with a number under ``S_s``
    (seconds) and an ``S_times`` or ``S_peak_added`` (bytes) entry, one point; the rows of one case (same ``case``,
    ``comparison``, ``metric``, ``estimator``, ``k``) form one line per side. Log-log axes.

    Parameters
    ----------
    rows : list of dict
        A benchmark's ``results`` (its ``--json`` output).
    out_dir : str
        Folder for ``<name>_scaling.png`` and ``<name>_scaling.svg`` (created if missing).
    name : str
        The benchmark's name (title and file names).

    Returns
    -------
    list of str
        The paths written (empty if no row has an ``N`` and a time).

    Examples
    --------
    >>> import os, tempfile
    >>> from matalign.benchmarks import plot_scaling
    >>> rows = [{"N": n, "metric": "ip", "matalign_s": 1e-9 * n**2, "matalign_peak_added": 40 * n}
    ...         for n in (1000, 2000, 4000)]
    >>> paths = plot_scaling(rows, tempfile.mkdtemp(), "demo")
    >>> [os.path.basename(p) for p in paths]
    ['demo_scaling.png', 'demo_scaling.svg']
    """
    series: dict[tuple[str, str], list[tuple[float, float, float | None]]] = {}
    for row in rows:
        n = row.get("N")
        if not isinstance(n, (int, float)):
            continue
        label = " ".join(f"{row[k]}" if k in ("case", "comparison", "metric", "estimator")
                         else f"{k}={row[k]}" for k in _LABEL_KEYS
                         if isinstance(row.get(k), (str, int)) and row.get(k) != "")
        for key, t in row.items():
            side = key[:-2]
            if (not key.endswith("_s") or not isinstance(t, (int, float)) or t <= 0
                    or not (f"{side}_times" in row or f"{side}_peak_added" in row)):
                continue
            mem = row.get(f"{side}_peak_added")
            series.setdefault((side, label), []).append(
                (float(n), float(t), float(mem) if isinstance(mem, (int, float)) else None))
    if not series:
        return []
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    os.makedirs(out_dir, exist_ok=True)
    fig, (ax_t, ax_m) = plt.subplots(1, 2, figsize=(11, 4.2))
    for (side, label), pts in sorted(series.items()):
        pts.sort()
        ns = [p[0] for p in pts]
        ax_t.plot(ns, [p[1] for p in pts], marker="o", label=f"{side} {label}".strip())
        mem = [(p[0], p[2]) for p in pts if p[2] is not None and p[2] > 0]
        if mem:
            ax_m.plot([m[0] for m in mem], [m[1] / 1e6 for m in mem], marker="o",
                      label=f"{side} {label}".strip())
    for ax, ylabel in ((ax_t, "time (s, best of the repeats)"),
                       (ax_m, "peak added memory (MB)")):
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("N (rows)")
        ax.set_ylabel(ylabel)
        ax.grid(True, which="both", alpha=0.3)
    ax_t.legend(fontsize=7)
    fig.suptitle(f"matalign bench {name}: scaling with N")
    fig.tight_layout()
    paths = []
    for ext in ("png", "svg"):
        path = os.path.join(out_dir, f"{name}_scaling.{ext}")
        fig.savefig(path, dpi=120)
        paths.append(path)
    plt.close(fig)
    return paths
