"""Shared helpers for the benchmarks in :mod:`matalign.benchmarks` (``matalign bench``).

Every benchmark module follows the same protocol:

1. The driver process generates the data once, from a seed, and saves it to ``.npy`` files in
   a temporary folder. Every side therefore reads the very same bytes.
2. Each side (matalign, its anchor, the numpy sgemm reference) runs in a **fresh worker
   subprocess** of the same script (``--_worker``), one side at a time, never two at once.
   A separate process per side means the allocator state, thread pools and peak RSS of one
   side cannot pollute the other's measurement, and a reference that runs out of memory
   kills only its worker.
3. In the worker, the data is loaded, the side gets a warm-up call, then ``repeat`` timed
   calls; the best time is kept. *Peak added memory* = peak RSS during the call minus RSS
   just before it, from the kernel's peak-RSS counter reset before the call (``VmHWM``,
   exact), backed by a thread sampling ``/proc/self/statm`` (see :class:`PeakSampler`;
   tracemalloc would not see C/C++/BLAS allocations).
4. The driver checks agreement between the sides' results, and only then prints a result row.

Nothing here changes the environment of the caller. ``--unset-openblas-env`` (see
:func:`add_common_args`) removes ``OPENBLAS_CORETYPE`` / ``OPENBLAS_L2_SIZE`` from the
*workers'* environment only, so that BLAS-based anchors run their best kernel.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import resource
import shlex
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

__all__ = [
    "PeakSampler",
    "Measurement",
    "measure",
    "add_common_args",
    "worker_main",
    "run_side",
    "header_lines",
    "fmt_bytes",
    "fmt_s",
    "cpu_model",
    "mem_available_bytes",
    "Workspace",
    "Table",
    "resolve_threads",
    "command_line",
    "machine_record",
    "gpu_names",
    "isa_flags",
]

_PAGE = os.sysconf("SC_PAGE_SIZE")
OPENBLAS_VARS = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")


# ----------------------------------------------------------------------------- memory


def rss_bytes() -> int:
    """Current resident set size of this process, in bytes (``/proc/self/statm``)."""
    with open("/proc/self/statm", "rb") as f:
        return int(f.read().split()[1]) * _PAGE


def maxrss_bytes() -> int:
    """High-water mark of this process's RSS so far (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def _vm_hwm_bytes() -> int | None:
    """Peak RSS of this process since the last reset (``VmHWM`` in ``/proc/self/status``)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def _reset_hwm() -> bool:
    """Reset the kernel's peak-RSS counter (Linux ≥ 4.0: write 5 to ``clear_refs``)."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


class PeakSampler:
    """Context manager measuring the peak RSS *added* while its block runs.

    Three sources, the largest wins:

    - the kernel's peak-RSS counter ``VmHWM``, reset just before the block (exact, for every
      thread of the process; used where ``/proc/self/clear_refs`` is writable);
    - ``getrusage``'s ``ru_maxrss`` when it rose during the block (exact, but only if the
      block set a new lifetime high);
    - a daemon thread sampling ``/proc/self/statm`` every ``interval`` seconds (the
      libraries measured here release the GIL, so it keeps running during their calls).

    ``added`` is ``peak - baseline`` with the baseline read just before the block.
    tracemalloc would not do: it does not see C/C++/BLAS allocations.
    """

    def __init__(self, interval: float = 0.002) -> None:
        self.interval = interval
        self.baseline = 0
        self.peak = 0
        self.exact = False
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _sample(self) -> None:
        fd = os.open("/proc/self/statm", os.O_RDONLY)
        try:
            while not self._stop.wait(self.interval):
                value = int(os.pread(fd, 128, 0).split()[1]) * _PAGE
                if value > self.peak:
                    self.peak = value
        finally:
            os.close(fd)

    def __enter__(self) -> "PeakSampler":
        gc.collect()
        self._maxrss_before = maxrss_bytes()
        self._hwm_reset = _reset_hwm()
        self.baseline = rss_bytes()
        self.peak = self.baseline
        self._stop.clear()
        self._thread = threading.Thread(target=self._sample, name="rss-sampler", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is None:
            raise RuntimeError("PeakSampler.__exit__ without __enter__: use it as a "
                               "context manager (with PeakSampler() as p: ...)")
        self._thread.join()
        self.peak = max(self.peak, rss_bytes())
        hwm = _vm_hwm_bytes() if self._hwm_reset else None
        if hwm is not None:
            self.peak = max(self.peak, hwm)
            self.exact = True
        maxrss_after = maxrss_bytes()
        if maxrss_after > self._maxrss_before:
            self.peak = max(self.peak, maxrss_after)
            self.exact = True

    @property
    def added(self) -> int:
        return max(0, self.peak - self.baseline)


# ----------------------------------------------------------------------------- timing


@dataclass
class Measurement:
    times: list[float]
    peak_added: int  # bytes, max over the timed calls
    result: Any = None

    @property
    def best(self) -> float:
        return min(self.times)


def measure(
    fn: Callable[[], Any],
    *,
    repeat: int,
    warmup: int = 1,
    warmup_fn: Callable[[], Any] | None = None,
) -> Measurement:
    """Warm up, then time ``repeat`` calls of ``fn``; keep every time and the peak memory.

    ``warmup_fn`` replaces ``fn`` for the warm-up calls: used for references whose full-size
    call takes minutes, where a small call loads the same kernels and thread pools.
    """
    if repeat < 1:
        raise ValueError(f"repeat must be >= 1, got {repeat}")
    for _ in range(warmup):
        (warmup_fn or fn)()
    times: list[float] = []
    peak = 0
    result = None
    for _ in range(repeat):
        result = None  # do not hold the previous result during the next call
        with PeakSampler() as sampler:
            t0 = time.perf_counter()
            result = fn()
            elapsed = time.perf_counter() - t0
        times.append(elapsed)
        peak = max(peak, sampler.added)
    return Measurement(times=times, peak_added=peak, result=result)


# ----------------------------------------------------------------------------- formatting


def fmt_bytes(n: float | None) -> str:
    if n is None:
        return "—"
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= scale:
            return f"{n / scale:.3g} {unit}"
    return f"{int(n)} B"


def fmt_s(t: float | None) -> str:
    if t is None:
        return "—"
    return f"{t:.3g}" if t < 100 else f"{t:.0f}"


# ----------------------------------------------------------------------------- machine


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _meminfo(key: str) -> int | None:
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def mem_available_bytes() -> int | None:
    return _meminfo("MemAvailable")


def _cpu_flags() -> set[str]:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def _version(module: str) -> str | None:
    try:
        from importlib.metadata import version

        return version(module)
    except Exception:
        return None


ISA_FLAGS = ("sse4_2", "avx", "avx2", "fma", "f16c", "avx512f", "avx512bw", "avx512vl",
             "avx512_vnni", "avx512_bf16", "avx_vnni", "amx_tile", "asimd", "sve")


def isa_flags() -> list[str]:
    """The vector-ISA flags of this CPU that matter to matalign's kernels (``/proc/cpuinfo``)."""
    flags = _cpu_flags()
    return [f for f in ISA_FLAGS if f in flags]


def gpu_names() -> list[str]:
    """Names of the visible CUDA devices, from ``nvidia-smi`` (or from torch, when it is
    already imported); empty when there is none."""
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"],
                             stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                             timeout=20)
        if out.returncode == 0:
            return [line.strip() for line in out.stdout.splitlines() if line.strip()]
    except (OSError, subprocess.TimeoutExpired):
        pass
    torch = sys.modules.get("torch")  # only if already imported: importing it costs seconds
    try:
        if torch is not None and torch.cuda.is_available():
            return [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    except Exception:  # a broken CUDA runtime: report none
        pass
    return []


ANCHOR_PACKAGES = ("numpy", "scipy", "faiss-cpu", "faiss-gpu", "dcor", "torch", "dadapy",
                   "threadpoolctl")


def machine_record() -> dict:
    """The machine and library versions a benchmark ran on, as a JSON-ready dict.

    Keys: ``cpu`` (model), ``isa`` (vector flags, :func:`isa_flags`), ``logical_cores``,
    ``memory_bytes``, ``gpus`` (:func:`gpu_names`), ``os``, ``python``, ``matalign`` (its
    ``build_info()``) and ``packages`` (installed versions of the anchors, None if absent).
    """
    import matalign as ma

    return {
        "cpu": cpu_model(),
        "isa": isa_flags(),
        "logical_cores": os.cpu_count(),
        "memory_bytes": _meminfo("MemTotal"),
        "gpus": gpu_names(),
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "matalign": ma.build_info(),
        "packages": {p: _version(p) for p in ANCHOR_PACKAGES},
    }


def header_lines(extra_packages: tuple[str, ...] = ()) -> list[str]:
    """Header for a result table: matalign's ``build_info()`` and the machine.

    Imports matalign (the benchmark is meaningless without it) and reports, for the
    packages named, their versions; the BLAS libraries loaded in this process and the
    kernel each selected come from threadpoolctl when it is installed.
    """
    import matalign as ma

    info = ma.build_info()
    simd = info.get("simd_selected")
    archs = ",".join(map(str, info.get("cuda_architectures") or []))
    cuda = f"CUDA {info.get('cuda_version')} ({archs})" if info.get("cuda") else "no CUDA"
    omp = f"OpenMP {info.get('openmp_version')}" if info.get("openmp") else "no OpenMP"
    flags = _cpu_flags()
    isa = "AVX-512" if "avx512f" in flags else ("AVX2" if "avx2" in flags else "no AVX2")
    total = _meminfo("MemTotal")
    lines = [
        f"matalign {info.get('version')} | {info.get('compiler')} | {omp} | "
        f"SIMD {simd} (compiled {','.join(info.get('simd_compiled') or [])}; "
        f"available {','.join(info.get('simd_available') or [])}) | "
        f"kNN screen {info.get('knn_screen', 'n/a')} | {cuda}",
        f"machine: {cpu_model()} ({isa}), {os.cpu_count()} logical cores, "
        f"{fmt_bytes(total)} RAM | ISA {' '.join(isa_flags()) or 'n/a'} | "
        f"GPU {', '.join(gpu_names()) or 'none'} | {platform.system()} {platform.release()} | "
        f"Python {platform.python_version()}, "
        + ", ".join(f"{p} {_version(p)}" for p in ("numpy", *extra_packages)),
    ]
    env = {v: os.environ.get(v) for v in (*OPENBLAS_VARS, "OMP_NUM_THREADS")}
    if any(env.values()):
        lines.append("environment: " + ", ".join(f"{k}={v}" for k, v in env.items() if v))
    try:
        from threadpoolctl import threadpool_info

        blas = [
            f"{os.path.basename(p.get('filepath', '?'))} {p.get('version')} "
            f"[{p.get('architecture')}, {p.get('num_threads')} threads]"
            for p in threadpool_info()
            if p.get("user_api") == "blas"
        ]
        if blas:
            lines.append("BLAS loaded by the driver: " + "; ".join(blas))
    except ImportError:
        pass
    return lines


# ----------------------------------------------------------------------------- workers


def add_common_args(parser) -> None:
    """Options every benchmark takes."""
    parser.add_argument("--seed", type=int, default=0, help="data seed (default 0)")
    parser.add_argument(
        "--threads",
        type=int,
        default=0,
        help="threads for every side; 0 = all cores (default), OMP_NUM_THREADS respected",
    )
    parser.add_argument("--json", metavar="PATH", help="also write all results as JSON")
    parser.add_argument(
        "--unset-openblas-env",
        action="store_true",
        help="remove OPENBLAS_CORETYPE/OPENBLAS_L2_SIZE from the workers' environment so "
        "BLAS-based anchors use their best kernel (check the BLAS line of the header)",
    )
    parser.add_argument(
        "--timeout", type=float, default=3600.0, help="seconds allowed per worker (default 3600)"
    )
    parser.add_argument("--_worker", help=argparse.SUPPRESS)


def resolve_threads(threads: int) -> int:
    if threads > 0:
        return threads
    env = os.environ.get("OMP_NUM_THREADS")
    if env and env.isdigit() and int(env) > 0:
        return int(env)
    return os.cpu_count() or 1


def worker_main(payload_json: str, sides: dict[str, Callable[[dict], dict]]) -> None:
    """Entry point of a worker subprocess: run one side, write its results, exit.

    ``sides[name](payload)`` returns a dict; numpy arrays in it go to ``<out>.npz`` and the
    rest (times, peak memory, scalars) to ``<out>.json``.
    """
    payload = json.loads(payload_json)
    result = sides[payload["side"]](payload)
    arrays = {k: v for k, v in result.items() if isinstance(v, np.ndarray)}
    scalars = {k: v for k, v in result.items() if not isinstance(v, np.ndarray)}
    out = payload["out"]
    if arrays:
        np.savez(out + ".npz", **arrays)
    with open(out + ".json", "w") as f:
        json.dump(scalars, f)


def run_side(script: str, payload: dict, *, unset_openblas: bool, timeout: float) -> dict:
    """Run one side in a fresh worker subprocess and return its results.

    ``script`` is a module name (``matalign.benchmarks.knn``, run with ``python -m``) or the
    path of a ``.py`` file.

    On failure the returned dict has ``error`` (with the worker's last stderr lines) instead
    of raising, so that one side running out of memory does not end the whole benchmark.
    """
    out = payload["out"]
    env = dict(os.environ)
    if unset_openblas:
        for var in OPENBLAS_VARS:
            env.pop(var, None)
    # a module name runs as ``python -m``; a path to a .py file runs as a script
    head = [script] if script.endswith(".py") else ["-m", script]
    cmd = [sys.executable, *head, "--_worker", json.dumps(payload)]
    try:
        proc = subprocess.run(
            cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            timeout=timeout,
        )
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout:.0f} s"}
    if proc.returncode != 0:
        tail = "\n".join(proc.stderr.strip().splitlines()[-6:])
        why = (
            "killed by SIGKILL (out of memory?)"
            if proc.returncode in (-9, 137)
            else f"exit code {proc.returncode}"
        )
        return {"error": f"{payload['side']} worker {why}: {tail}"}
    with open(out + ".json") as f:
        result = json.load(f)
    if os.path.exists(out + ".npz"):
        with np.load(out + ".npz") as z:
            result.update({k: z[k] for k in z.files})
    return result


class Workspace:
    """Temporary folder for the data files and worker outputs of one benchmark run."""

    def __init__(self) -> None:
        self._tmp = tempfile.TemporaryDirectory(prefix="matalign-bench-")
        self.path = self._tmp.name
        self._count = 0

    def save(self, name: str, array: np.ndarray) -> str:
        path = os.path.join(self.path, name + ".npy")
        np.save(path, array)
        return path

    def out(self, tag: str) -> str:
        self._count += 1
        return os.path.join(self.path, f"out{self._count:03d}-{tag}")

    def close(self) -> None:
        self._tmp.cleanup()

    def __enter__(self) -> "Workspace":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def command_line() -> str:
    """The command that started this run (``matalign bench ...`` or ``python SCRIPT ...``)."""
    if sys.argv and sys.argv[0].startswith("matalign bench "):
        return " ".join([sys.argv[0], *(shlex.quote(a) for a in sys.argv[1:])])
    return " ".join(shlex.quote(a) for a in ["python", *sys.argv])


@dataclass
class Table:
    """A markdown table printed row by row (so a long run shows progress)."""

    columns: list[str]
    rows: list[list[str]] = field(default_factory=list)

    def print_header(self) -> None:
        print("| " + " | ".join(self.columns) + " |")
        print("|" + "|".join("---" for _ in self.columns) + "|", flush=True)

    def add(self, row: list[str]) -> None:
        self.rows.append(row)
        print("| " + " | ".join(row) + " |", flush=True)
