"""The GPU check: build matalign with CUDA, run its GPU tests (a subset under compute-sanitizer
memcheck and racecheck) and the GPU benchmark, and print pass/fail and the figures.

Made for a bare GPU machine without a package registry (Python 3.12, CUDA, CMake, torch and
CuPy present): the pure-Python wheels it may lack (pybind11 for the build, pytest and its
dependencies for the tests) travel with the repository in a folder filled beforehand, on a
machine with a registry, by ``bundle``. Standard library only.

    python scripts/gpu_check.py bundle                 # here: fetch the wheels (gitignored)
    bash scripts/gpu_check.sh                          # there: the whole check, < 8 minutes
    python scripts/gpu_check.py run --dry-run          # the plan, without running anything

Results go to ``--out`` (default ``gpu_check_out/``): ``summary.json`` (every step's status,
seconds and figures), ``summary.md`` (the table for bench/README.md), one log per step and the
benchmark's JSON. The exit code is 0 when every step that ran passed and none was skipped
for want of time, 1 otherwise, 2 for a usage error.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from dataclasses import asdict, dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_WHEELS = ROOT / "scripts" / "gpu_wheels"
DEFAULT_OUT = ROOT / "gpu_check_out"
BUILD_DIR = "build/gpu-check"

# Wheels the check may need where no registry is reachable: (import name, requirement).
# pybind11 builds the binding; pytest (with its dependencies) runs the tests. numpy is a
# dependency of CuPy, so it is there; it travels too, for a machine with torch only.
WHEELS = (
    ("pybind11", "pybind11>=2.13"),
    ("pytest", "pytest>=8"),
    ("pluggy", "pluggy>=1.5"),
    ("iniconfig", "iniconfig"),
    ("packaging", "packaging"),
    ("pygments", "pygments>=2.15"),
    ("numpy", "numpy>=1.23"),
)
PYTEST_DEPS = ("pluggy", "iniconfig", "packaging", "pygments")
WHEELS_LIMIT_BYTES = 64 << 20

# The tests run again under compute-sanitizer: small cases of every kernel family (kNN with
# ragged tiles, queries, the int8 screen with overflowing lines, PairSums, RankCount, CKNNA /
# mutual kNN; 15 cases), host input only (torch's and CuPy's start-up under the sanitizer
# would cost minutes).
SANITIZER_SUBSET = ("(test_knn_matches_cpu and 97) or test_knn_queries_and_layouts or "
                    "test_screen_small_cases or test_pair_sums_deterministic_and_tiled or "
                    "(test_information_imbalance_matches_cpu and float64) or "
                    "test_cknna_and_mutual_knn_match_cpu")
SANITIZER_TOOLS = ("memcheck", "racecheck")


# ------------------------------------------------------------------------------ arguments


def parse_args(argv=None) -> argparse.Namespace:
    """The command line: ``run`` (default) or ``bundle``."""
    p = argparse.ArgumentParser(prog="gpu_check.py", description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="command")
    run = sub.add_parser("run", help="build, test and benchmark on this machine's GPU")
    run.add_argument("--out", type=Path, default=DEFAULT_OUT, help="results folder")
    run.add_argument("--wheels", type=Path, default=DEFAULT_WHEELS,
                     help="bundled wheels (from 'bundle')")
    run.add_argument("--budget", type=float, default=470.0,
                     help="seconds for the whole check; a step that cannot fit is skipped")
    run.add_argument("--archs", default="90",
                     help="CMAKE_CUDA_ARCHITECTURES of the check's build (H100/H200: 90)")
    run.add_argument("--jobs", type=int, default=os.cpu_count() or 4, help="build jobs")
    run.add_argument("--knn-n", type=int, default=1_000_000, help="rows of the kNN benchmark")
    run.add_argument("--metric-n", type=int, default=100_000,
                     help="rows of the CKNNA, dCor and information imbalance benchmark")
    run.add_argument("--skip", action="append", default=[], metavar="STEP",
                     help="skip a step (env, deps, build, tests, bench, memcheck, racecheck)")
    run.add_argument("--dry-run", action="store_true",
                     help="print the steps and their commands, run nothing")
    bundle = sub.add_parser("bundle", help="download the wheels the check may need (here)")
    bundle.add_argument("--dest", type=Path, default=DEFAULT_WHEELS)
    bundle.add_argument("--python-version", default="3.12")
    bundle.add_argument("--dry-run", action="store_true", help="print the pip command only")
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] not in ("run", "bundle", "-h", "--help"):
        argv = ["run", *argv]
    args = p.parse_args(argv)
    if args.command == "run":
        if args.budget <= 0:
            p.error(f"--budget must be > 0 seconds, got {args.budget}")
        if args.jobs < 1:
            p.error(f"--jobs must be >= 1, got {args.jobs}")
        if args.knn_n < 100 or args.metric_n < 100:
            p.error("--knn-n and --metric-n must be >= 100")
        bad = sorted(set(args.skip) - set(STEP_NAMES))
        if bad:
            p.error(f"--skip: unknown step(s) {bad}; steps are {list(STEP_NAMES)}")
    return args


# ------------------------------------------------------------------------------ wheels


def bundle_command(dest: Path, python_version: str) -> list[str]:
    """The pip command that downloads every bundled wheel for CPython ``python_version`` on
    x86-64 Linux (binary wheels only, no dependency resolution beyond the listed ones)."""
    tag = python_version.replace(".", "")
    return [sys.executable, "-m", "pip", "download", "--only-binary=:all:", "--no-deps",
            "--python-version", python_version, "--implementation", "cp", "--abi", f"cp{tag}",
            "--platform", "manylinux2014_x86_64", "--platform", "manylinux_2_17_x86_64",
            "--platform", "manylinux_2_28_x86_64", "-d", str(dest),
            *(req for _, req in WHEELS)]


def check_bundle(dest: Path, limit: int = WHEELS_LIMIT_BYTES) -> tuple[int, list[str]]:
    """(total bytes, problems) of a wheel folder: every listed package present once, the total
    within ``limit``."""
    wheels = sorted(dest.glob("*.whl")) if dest.is_dir() else []
    total = sum(w.stat().st_size for w in wheels)
    problems = []
    for name, _ in WHEELS:
        found = [w for w in wheels if w.name.lower().startswith(name.lower() + "-")]
        if not found:
            problems.append(f"no wheel for {name} in {dest}")
        elif len(found) > 1:
            problems.append(f"{len(found)} wheels for {name}: {[w.name for w in found]}")
    if total > limit:
        problems.append(f"wheels take {total / 2**20:.1f} MiB, more than {limit / 2**20:.0f} MiB")
    return total, problems


def missing_modules(names, find=None) -> list[str]:
    """The import names among ``names`` that this Python cannot import."""
    import importlib.util

    find = find or importlib.util.find_spec
    return [n for n in names if find(n) is None]


# ------------------------------------------------------------------------------ steps


STEP_NAMES = ("env", "deps", "build", "tests", "bench", "memcheck", "racecheck")


@dataclass
class Step:
    """One step of the check: a command (or a Python function), with a share of the budget."""

    name: str
    argv: list[str]
    timeout: float
    env: dict = field(default_factory=dict)
    required: bool = True  # a failure stops the steps after it (the build, for instance)


@dataclass
class Outcome:
    name: str
    status: str  # "passed" | "failed" | "skipped"
    seconds: float = 0.0
    detail: str = ""
    figures: dict = field(default_factory=dict)


def find_sanitizer() -> str | None:
    """compute-sanitizer on PATH or beside nvcc, or None."""
    found = shutil.which("compute-sanitizer")
    if found:
        return found
    for base in (os.environ.get("CUDA_HOME"), "/usr/local/cuda"):
        if base and Path(base, "bin", "compute-sanitizer").exists():
            return str(Path(base, "bin", "compute-sanitizer"))
    nvcc = shutil.which("nvcc")
    if nvcc and Path(nvcc).with_name("compute-sanitizer").exists():
        return str(Path(nvcc).with_name("compute-sanitizer"))
    return None


def plan(args: argparse.Namespace, python: str = sys.executable) -> list[Step]:
    """The steps of ``run``, in order, with their commands and time limits."""
    out = Path(args.out)
    pydeps = out / "pydeps"
    pythonpath = os.pathsep.join([str(ROOT / "python"), str(pydeps)])
    env = {"PYTHONPATH": pythonpath}
    pytest = [python, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/test_cuda.py"]
    steps = [
        Step("env", [python, str(Path(__file__)), "_env"], 60, required=False),
        Step("deps", [python, str(Path(__file__)), "_deps", str(args.wheels), str(pydeps)], 60),
        Step("build", ["bash", "-c", build_script(args, python, pydeps)], 240),
        Step("tests", [*pytest, f"--junitxml={out / 'tests.xml'}"], 150, env),
    ]
    # The figures before the sanitizers: they take what time is left.
    steps.append(Step("bench", [python, "bench/bench_gpu.py", "--n", str(args.knn_n),
                                "--metric-n", str(args.metric_n),
                                "--screen-n", str(min(args.knn_n, 200_000)),
                                "--json", str(out / "bench.json")], 240, env, required=False))
    sanitizer = find_sanitizer() or "compute-sanitizer"
    for tool in SANITIZER_TOOLS:
        steps.append(Step(tool, [sanitizer, "--tool", tool, "--error-exitcode", "99",
                                 "--target-processes", "all", *pytest, "-m", "cuda",
                                 "-k", SANITIZER_SUBSET, f"--junitxml={out / (tool + '.xml')}"],
                          120, env, required=False))
    return [s for s in steps if s.name not in set(args.skip)]


def pybind11_dir_command(python: str, pydeps: Path) -> str:
    """Shell command printing pybind11's CMake folder (the bundled copy in ``pydeps`` first)."""
    return f"PYTHONPATH={shlex.quote(str(pydeps))} {shlex.quote(python)} -m pybind11 --cmakedir"


def build_script(args: argparse.Namespace, python: str, pydeps: Path) -> str:
    """Configure and build the CUDA module with CMake, then place it in python/matalign/."""
    q = shlex.quote
    return " && ".join([
        f"cmake -S {q(str(ROOT))} -B {q(str(ROOT / BUILD_DIR))} -DCMAKE_BUILD_TYPE=Release "
        f"-DMATALIGN_BUILD_PYTHON=ON -DMATALIGN_ENABLE_CUDA=ON "
        f"-DCMAKE_CUDA_ARCHITECTURES={q(args.archs)} "
        f"-DPython_EXECUTABLE={q(python)} "
        f"-Dpybind11_DIR=$({pybind11_dir_command(python, pydeps)})",
        f"cmake --build {q(str(ROOT / BUILD_DIR))} -j {int(args.jobs)}",
        f"cp \"$(find {q(str(ROOT / BUILD_DIR))} -name '_core*.so' | head -n1)\" "
        f"{q(str(ROOT / 'python' / 'matalign'))}/",
    ])


# ------------------------------------------------------------------------------ results


def junit_counts(path: Path) -> dict:
    """{"passed", "failed", "skipped"} counts of a pytest JUnit XML file (empty if absent)."""
    if not Path(path).exists():
        return {}
    root = ET.parse(path).getroot()
    suites = [root] if root.tag == "testsuite" else list(root.iter("testsuite"))
    total = failed = skipped = 0
    for s in suites:
        total += int(s.get("tests", 0))
        failed += int(s.get("failures", 0)) + int(s.get("errors", 0))
        skipped += int(s.get("skipped", 0))
    return {"passed": total - failed - skipped, "failed": failed, "skipped": skipped}


def sanitizer_errors(log: str) -> int | None:
    """The error count compute-sanitizer reports ("ERROR SUMMARY: N errors"), summed over the
    processes it watched; None when no summary line is in the log."""
    found = re.findall(r"^=+ ERROR SUMMARY: (\d+) error", log, flags=re.M)
    return sum(int(n) for n in found) if found else None


def _fmt_seconds(s) -> str:
    return "-" if s is None else f"{s:.2f} s"


def summary_markdown(outcomes: list[Outcome], bench: dict | None) -> str:
    """The check's result as Markdown: a step table and, when the benchmark ran, its figures
    (each with N, D, k and dtype), ready for bench/README.md."""
    lines = ["| step | result | seconds | detail |", "|---|---|---|---|"]
    for o in outcomes:
        lines.append(f"| {o.name} | {o.status} | {o.seconds:.0f} | {o.detail} |")
    if bench:
        lines += ["", f"GPU: {bench.get('device', '?')}; matalign {bench.get('version', '?')}, "
                      f"torch {bench.get('torch', '?')}", "",
                  "| what | data | matalign GPU | anchor | anchor time | speed-up | agreement |",
                  "|---|---|---|---|---|---|---|"]
        for r in bench.get("rows", []):
            anchor_t = r.get("anchor_seconds")
            ratio = "-" if not anchor_t else f"{anchor_t / r['seconds']:.2f}×"
            lines.append(f"| {r['what']} | {r['data']} | {_fmt_seconds(r['seconds'])} | "
                         f"{r.get('anchor') or '-'} | {_fmt_seconds(anchor_t)} | {ratio} | "
                         f"{r.get('agreement', '')} |")
    return "\n".join(lines) + "\n"


def verdict(outcomes: list[Outcome]) -> bool:
    """True when no step failed and none was skipped for want of time."""
    return all(o.status == "passed" or (o.status == "skipped" and "time" not in o.detail
                                        and "failed" not in o.detail) for o in outcomes)


# ------------------------------------------------------------------------------ run


def _run_step(step: Step, out: Path, timeout: float) -> Outcome:
    env = dict(os.environ)
    for key, value in step.env.items():
        env[key] = value + (os.pathsep + env[key] if key == "PYTHONPATH" and env.get(key) else "")
    log = out / f"{step.name}.log"
    t0 = time.monotonic()
    with open(log, "w") as f:
        f.write("$ " + shlex.join(step.argv) + "\n")
        f.flush()
        try:
            rc = subprocess.run(step.argv, cwd=ROOT, env=env, stdout=f, stderr=subprocess.STDOUT,
                                timeout=timeout, check=False).returncode
        except subprocess.TimeoutExpired:
            rc = None
        except FileNotFoundError as e:
            f.write(f"\n{e}\n")
            rc = 127
    seconds = time.monotonic() - t0
    text = log.read_text(errors="replace")
    o = Outcome(step.name, "passed" if rc == 0 else "failed", seconds)
    if rc is None:
        o.detail = f"timed out after {timeout:.0f} s (log: {log.name})"
    elif rc != 0:
        o.detail = f"exit code {rc} (log: {log.name})"
    counts = junit_counts(out / f"{step.name}.xml")
    if counts:
        o.figures.update(counts)
        o.detail = (f"{counts['passed']} passed, {counts['failed']} failed, "
                    f"{counts['skipped']} skipped" + (f"; {o.detail}" if o.detail else ""))
    if step.name in SANITIZER_TOOLS:
        errors = sanitizer_errors(text)
        o.figures["sanitizer_errors"] = errors
        note = f"{tool_label(step.name)} errors: {'?' if errors is None else errors}"
        o.detail = f"{o.detail}; {note}" if o.detail else note
        if errors:
            o.status = "failed"
    if step.name == "tests" and counts.get("passed", 0) == 0 and o.status == "passed":
        o.status, o.detail = "failed", "no GPU test passed (every cuda case skipped?)"
    return o


def tool_label(tool: str) -> str:
    return f"compute-sanitizer {tool}"


def run(args: argparse.Namespace) -> int:
    steps = plan(args)
    if args.dry_run:
        print(f"gpu_check: dry run, budget {args.budget:.0f} s, results in {args.out}")
        for s in steps:
            env = " ".join(f"{k}={shlex.quote(v)}" for k, v in s.env.items())
            print(f"[{s.name}] (<= {s.timeout:.0f} s{'' if s.required else ', optional'}) "
                  f"{env + ' ' if env else ''}{shlex.join(s.argv)}")
        return 0
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.monotonic()
    outcomes: list[Outcome] = []
    stopped = None
    for s in steps:
        left = args.budget - (time.monotonic() - t0)
        if stopped:
            outcomes.append(Outcome(s.name, "skipped", detail=f"{stopped} failed"))
            continue
        if left < min(30.0, s.timeout):
            outcomes.append(Outcome(s.name, "skipped", detail=f"no time left ({left:.0f} s)"))
            continue
        print(f"gpu_check: {s.name} ...", flush=True)
        o = _run_step(s, out, min(s.timeout, left))
        outcomes.append(o)
        print(f"gpu_check: {s.name} {o.status} in {o.seconds:.0f} s {o.detail}", flush=True)
        if o.status == "failed" and s.required:
            stopped = s.name
    bench = None
    if (out / "bench.json").exists():
        bench = json.loads((out / "bench.json").read_text())
    md = summary_markdown(outcomes, bench)
    ok = verdict(outcomes)
    (out / "summary.md").write_text(md)
    (out / "summary.json").write_text(json.dumps(
        {"passed": ok, "seconds": time.monotonic() - t0,
         "steps": [asdict(o) for o in outcomes], "bench": bench}, indent=1))
    print("\n" + md)
    print(f"gpu_check: {'PASS' if ok else 'FAIL'} in {time.monotonic() - t0:.0f} s; "
          f"results in {out}")
    return 0 if ok else 1


def _env() -> int:
    """Print the machine's facts (the 'env' step)."""
    print(f"python {sys.version.split()[0]} at {sys.executable}")
    for tool in (["nvidia-smi", "-L"], ["nvcc", "--version"], ["cmake", "--version"]):
        try:
            print(subprocess.run(tool, capture_output=True, text=True, timeout=30).stdout.strip())
        except (OSError, subprocess.TimeoutExpired) as e:
            print(f"{tool[0]}: {e}")
    for mod in ("torch", "cupy", "numpy", "faiss"):
        try:
            m = __import__(mod)
            print(f"{mod} {getattr(m, '__version__', '?')}")
        except Exception as e:  # noqa: BLE001 - report whatever stops the import
            print(f"{mod}: not importable ({type(e).__name__})")
    print(f"compute-sanitizer: {find_sanitizer()}")
    return 0


def _deps(wheels: Path, target: Path) -> int:
    """Install the bundled wheels of the modules this Python lacks into ``target``."""
    need = missing_modules([name for name, _ in WHEELS])
    if not need:
        print("every module is importable; nothing to install")
        return 0
    total, _ = check_bundle(wheels)
    print(f"missing: {need}; bundle {wheels} ({total / 2**20:.1f} MiB)")
    if not (wheels.is_dir() and any(wheels.glob("*.whl"))):
        print(f"no wheels in {wheels}: run 'python scripts/gpu_check.py bundle' on a machine "
              "with a package registry first, and carry scripts/gpu_wheels along", file=sys.stderr)
        return 1
    reqs = [req for name, req in WHEELS if name in need]
    # pytest needs its dependencies next to it
    if "pytest" in need:
        reqs += [req for name, req in WHEELS if name in PYTEST_DEPS and req not in reqs]
    cmd = [sys.executable, "-m", "pip", "install", "--no-index", "--find-links", str(wheels),
           "--target", str(target), "--no-deps", *reqs]
    print("$ " + shlex.join(cmd), flush=True)
    return subprocess.run(cmd, check=False).returncode


def bundle(args: argparse.Namespace) -> int:
    cmd = bundle_command(args.dest, args.python_version)
    print("$ " + shlex.join(cmd))
    if args.dry_run:
        return 0
    args.dest.mkdir(parents=True, exist_ok=True)
    rc = subprocess.run(cmd, check=False).returncode
    if rc != 0:
        return rc
    total, problems = check_bundle(args.dest)
    for p in problems:
        print(f"gpu_check bundle: {p}", file=sys.stderr)
    print(f"gpu_check bundle: {total / 2**20:.1f} MiB in {args.dest}")
    return 1 if problems else 0


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["_env"]:
        return _env()
    if argv[:1] == ["_deps"] and len(argv) == 3:
        return _deps(Path(argv[1]), Path(argv[2]))
    args = parse_args(argv)
    return bundle(args) if args.command == "bundle" else run(args)


if __name__ == "__main__":
    sys.exit(main())
