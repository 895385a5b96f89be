"""The CPU-side parts of the GPU check (scripts/gpu_check.py): argument parsing, the dry run,
wheel bundling rules, the result parsing and summary, and the step runner end to end on
stand-in commands. The check itself needs a GPU; everything around it is tested here."""

from __future__ import annotations

import importlib.util
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
_spec = importlib.util.spec_from_file_location("gpu_check", ROOT / "scripts" / "gpu_check.py")
gc = importlib.util.module_from_spec(_spec)
sys.modules["gpu_check"] = gc  # dataclasses look their module up by name
_spec.loader.exec_module(gc)


def test_defaults_and_run_is_the_default_command():
    a = gc.parse_args([])
    assert a.command == "run" and not a.dry_run
    assert (a.budget, a.archs, a.knn_n, a.metric_n) == (470.0, "90", 1_000_000, 100_000)
    assert a.budget < 8 * 60  # the check must finish in under 8 minutes
    b = gc.parse_args(["--dry-run", "--skip", "bench", "--knn-n", "5000"])
    assert b.command == "run" and b.dry_run and b.skip == ["bench"] and b.knn_n == 5000
    c = gc.parse_args(["bundle", "--dest", "/tmp/w"])
    assert c.command == "bundle" and c.dest == Path("/tmp/w")


@pytest.mark.parametrize("argv, message", [
    (["--budget", "0"], "--budget must be > 0 seconds, got 0.0"),
    (["--jobs", "0"], "--jobs must be >= 1, got 0"),
    (["--metric-n", "5"], "--knn-n and --metric-n must be >= 100"),
    (["--skip", "lunch"], "--skip: unknown step(s) ['lunch']"),
])
def test_bad_arguments_are_usage_errors(argv, message, capsys):
    with pytest.raises(SystemExit) as info:
        gc.parse_args(argv)
    assert info.value.code == 2
    assert message in capsys.readouterr().err


def test_dry_run_prints_every_step_and_runs_nothing(tmp_path):
    out = tmp_path / "out"
    r = subprocess.run([sys.executable, str(ROOT / "scripts" / "gpu_check.py"), "--dry-run",
                        "--out", str(out)], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0].startswith("gpu_check: dry run, budget 470 s")
    steps = [line.split("]")[0].lstrip("[") for line in lines[1:]]
    assert steps == ["env", "deps", "build", "tests", "bench", "memcheck", "racecheck"]
    text = r.stdout
    assert ("-DMATALIGN_BUILD_PYTHON=ON -DMATALIGN_ENABLE_CUDA=ON "
            "-DCMAKE_CUDA_ARCHITECTURES=90") in text
    assert "--tool memcheck --error-exitcode 99" in text and "--tool racecheck" in text
    assert "bench/bench_gpu.py --n 1000000 --metric-n 100000 --screen-n 200000 --json" in text
    assert not out.exists()  # nothing ran, nothing written


def test_shell_wrapper_passes_options_on(tmp_path):
    r = subprocess.run(["bash", str(ROOT / "scripts" / "gpu_check.sh"), "--dry-run", "--skip",
                        "racecheck", "--out", str(tmp_path / "o")],
                       capture_output=True, text=True, timeout=60,
                       env={"PYTHON": sys.executable, "PATH": "/usr/bin:/bin"})
    assert r.returncode == 0, r.stderr
    assert "[memcheck]" in r.stdout and "[racecheck]" not in r.stdout


def test_build_script_finds_the_bundled_pybind11(tmp_path):
    # The command substitution inside the build script, run by bash as the build step runs it,
    # with a stand-in pybind11 in the bundled-modules folder.
    fake = tmp_path / "pydeps" / "pybind11"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text("")
    (fake / "__main__.py").write_text("print('/bundled/pybind11/share/cmake/pybind11')\n")
    script = gc.build_script(gc.parse_args([]), sys.executable, tmp_path / "pydeps")
    configure = script.split(" && ")[0]
    assert configure.startswith("cmake -S ")
    sub = configure[configure.index("-Dpybind11_DIR=$(") + len("-Dpybind11_DIR=$("):-1]
    r = subprocess.run(["bash", "-c", f"echo \"$({sub})\""], capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "/bundled/pybind11/share/cmake/pybind11"
    assert script.count(" && ") == 2  # configure, build, copy the module


def test_steps_fit_the_budget_and_the_sanitizers_run_a_cuda_subset():
    steps = gc.plan(gc.parse_args(["--out", "/tmp/x"]))
    by_name = {s.name: s for s in steps}
    assert by_name["build"].required and by_name["tests"].required
    assert not by_name["bench"].required and not by_name["memcheck"].required
    for tool in ("memcheck", "racecheck"):
        argv = by_name[tool].argv
        assert argv[len(argv) - 1 - argv[::-1].index("-m") + 1] == "cuda"  # pytest's -m
        assert argv[argv.index("-k") + 1] == gc.SANITIZER_SUBSET
    # every name in the subset is a test of tests/test_cuda.py
    source = (ROOT / "tests" / "test_cuda.py").read_text()
    names = re.findall(r"test_\w+", gc.SANITIZER_SUBSET)
    assert len(names) == 6
    for name in names:
        assert f"def {name}(" in source


def test_bundle_command_targets_cpython_312_linux():
    cmd = gc.bundle_command(Path("/tmp/w"), "3.12")
    assert cmd[1:4] == ["-m", "pip", "download"]
    assert "--only-binary=:all:" in cmd and "--no-deps" in cmd
    assert cmd[cmd.index("--abi") + 1] == "cp312"
    assert cmd[cmd.index("--python-version") + 1] == "3.12"
    for _, req in gc.WHEELS:
        assert req in cmd
    # pytest's own dependencies travel with it
    names = {name for name, _ in gc.WHEELS}
    assert set(gc.PYTEST_DEPS) <= names and "pybind11" in names


def _fake_wheel(folder: Path, name: str, size: int) -> None:
    (folder / f"{name}-1.0-py3-none-any.whl").write_bytes(b"\0" * size)


def test_check_bundle_counts_and_limits(tmp_path):
    total, problems = gc.check_bundle(tmp_path / "missing")
    assert total == 0 and len(problems) == len(gc.WHEELS)
    for name, _ in gc.WHEELS:
        _fake_wheel(tmp_path, name, 1000)
    assert gc.check_bundle(tmp_path) == (1000 * len(gc.WHEELS), [])
    _fake_wheel(tmp_path, "numpy", 10)  # same name, same version: overwritten
    (tmp_path / "numpy-2.0-cp312-cp312-linux_x86_64.whl").write_bytes(b"1")
    total, problems = gc.check_bundle(tmp_path, limit=500)
    assert any("2 wheels for numpy" in p for p in problems)
    assert any("more than 0 MiB" in p for p in problems)


def test_missing_modules_asks_the_finder():
    present = {"numpy", "pytest"}
    assert gc.missing_modules(["numpy", "pybind11", "pytest", "pluggy"],
                              find=lambda n: object() if n in present else None) == [
        "pybind11", "pluggy"]


def test_deps_without_wheels_says_how_to_get_them(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(gc, "missing_modules", lambda names: ["pybind11"])
    assert gc._deps(tmp_path / "none", tmp_path / "target") == 1
    assert "run 'python scripts/gpu_check.py bundle'" in capsys.readouterr().err
    monkeypatch.setattr(gc, "missing_modules", lambda names: [])
    assert gc._deps(tmp_path / "none", tmp_path / "target") == 0


def test_junit_and_sanitizer_parsing(tmp_path):
    xml = tmp_path / "t.xml"
    xml.write_text('<?xml version="1.0"?><testsuites><testsuite name="pytest" errors="1" '
                   'failures="2" skipped="3" tests="20"></testsuite></testsuites>')
    assert gc.junit_counts(xml) == {"passed": 14, "failed": 3, "skipped": 3}
    assert gc.junit_counts(tmp_path / "absent.xml") == {}
    log = ("========= COMPUTE-SANITIZER\n... \n========= ERROR SUMMARY: 0 errors\n"
           "========= ERROR SUMMARY: 2 errors\n")
    assert gc.sanitizer_errors(log) == 2
    assert gc.sanitizer_errors("========= ERROR SUMMARY: 1 error\n") == 1
    assert gc.sanitizer_errors("no summary") is None


def test_summary_markdown_and_verdict():
    outcomes = [gc.Outcome("build", "passed", 95.2, "built"),
                gc.Outcome("tests", "passed", 40.0, "60 passed, 0 failed, 3 skipped"),
                gc.Outcome("racecheck", "skipped", 0.0, "no time left (12 s)")]
    bench = {"device": "NVIDIA H200", "version": "0.1.0", "torch": "2.13.0",
             "rows": [{"what": "exact self-kNN", "data": "N=1000000, D=256, k=10, float32, ip",
                       "seconds": 2.5, "anchor": "torch GEMM + topk", "anchor_seconds": 10.0,
                       "agreement": "rows agreeing 1.000000"},
                      {"what": "dCor", "data": "N=100000, D=256, float32", "seconds": 1.25,
                       "anchor": None, "anchor_seconds": None, "agreement": "dCor 0.5"}]}
    md = gc.summary_markdown(outcomes, bench)
    assert "| build | passed | 95 | built |" in md
    assert "| racecheck | skipped | 0 | no time left (12 s) |" in md
    assert "GPU: NVIDIA H200; matalign 0.1.0, torch 2.13.0" in md
    assert ("| exact self-kNN | N=1000000, D=256, k=10, float32, ip | 2.50 s | torch GEMM + topk "
            "| 10.00 s | 4.00× | rows agreeing 1.000000 |") in md
    assert "| dCor | N=100000, D=256, float32 | 1.25 s | - | - | - | dCor 0.5 |" in md
    # a step skipped for want of time fails the check; one skipped on request does not
    assert not gc.verdict(outcomes)
    assert gc.verdict(outcomes[:2] + [gc.Outcome("bench", "skipped", 0, "")])
    assert not gc.verdict([gc.Outcome("tests", "failed", 1.0, "exit code 1")])
    assert not gc.verdict([gc.Outcome("tests", "skipped", 0, "build failed")])


def test_run_executes_steps_and_writes_the_summary(tmp_path, monkeypatch, capsys):
    py = sys.executable
    junit = ('<testsuite name="pytest" errors="0" failures="0" skipped="1" tests="4">'
             '</testsuite>')
    bench = {"device": "stand-in", "version": "0", "torch": "0",
             "rows": [{"what": "exact self-kNN", "data": "N=100", "seconds": 1.0,
                       "anchor": "torch", "anchor_seconds": 3.0, "agreement": "ok"}]}
    out = tmp_path / "out"

    def fake_plan(args, python=py):
        return [
            gc.Step("build", [py, "-c", "print('built')"], 30),
            gc.Step("tests", [py, "-c", f"open({str(out / 'tests.xml')!r}, 'w').write({junit!r})"],
                    30),
            gc.Step("bench", [py, "-c", f"import json; json.dump({bench!r}, "
                                        f"open({str(out / 'bench.json')!r}, 'w'))"], 30,
                    required=False),
            gc.Step("memcheck", [py, "-c", "print('========= ERROR SUMMARY: 3 errors')"], 30,
                    required=False),
        ]

    monkeypatch.setattr(gc, "plan", fake_plan)
    rc = gc.run(gc.parse_args(["--out", str(out)]))
    assert rc == 1  # the sanitizer found errors
    summary = json.loads((out / "summary.json").read_text())
    status = {s["name"]: s["status"] for s in summary["steps"]}
    assert status == {"build": "passed", "tests": "passed", "bench": "passed",
                      "memcheck": "failed"}
    steps = {s["name"]: s for s in summary["steps"]}
    assert steps["tests"]["figures"] == {"passed": 3, "failed": 0, "skipped": 1}
    assert steps["memcheck"]["figures"]["sanitizer_errors"] == 3
    assert summary["bench"]["rows"][0]["anchor_seconds"] == 3.0
    md = (out / "summary.md").read_text()
    assert "| exact self-kNN | N=100 | 1.00 s | torch | 3.00 s | 3.00× | ok |" in md
    assert (out / "build.log").read_text().startswith("$ ")
    assert "gpu_check: FAIL" in capsys.readouterr().out


def test_run_stops_after_a_failed_build_and_skips_what_does_not_fit(tmp_path, monkeypatch):
    py = sys.executable

    def fake_plan(args, python=py):
        return [gc.Step("build", [py, "-c", "raise SystemExit(3)"], 30),
                gc.Step("tests", [py, "-c", "print(1)"], 30)]

    monkeypatch.setattr(gc, "plan", fake_plan)
    assert gc.run(gc.parse_args(["--out", str(tmp_path / "a")])) == 1
    steps = json.loads((tmp_path / "a" / "summary.json").read_text())["steps"]
    assert [(s["name"], s["status"]) for s in steps] == [("build", "failed"), ("tests", "skipped")]
    assert steps[0]["detail"].startswith("exit code 3") and steps[1]["detail"] == "build failed"

    def slow_plan(args, python=py):
        return [gc.Step("build", [py, "-c", "import time; time.sleep(0.5)"], 30),
                gc.Step("tests", [py, "-c", "print(1)"], 60)]

    monkeypatch.setattr(gc, "plan", slow_plan)
    assert gc.run(gc.parse_args(["--out", str(tmp_path / "b"), "--budget", "20"])) == 1
    steps = json.loads((tmp_path / "b" / "summary.json").read_text())["steps"]
    assert steps[1]["status"] == "skipped" and steps[1]["detail"].startswith("no time left")
