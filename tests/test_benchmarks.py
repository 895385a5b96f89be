"""The benchmark suite that ships in the package (matalign.benchmarks, ``matalign bench``).

Runs the kNN benchmark end to end on a small N from a directory outside the checkout, with
faiss (a ratio, printed only after the agreement check) and with faiss hidden (matalign's own
throughput, no ratio); checks the agreement check itself on planted disagreements, the
machine record, the scaling plot, and the errors.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from matalign import benchmarks
from matalign.benchmarks import _common as C
from matalign.benchmarks import knn as bknn

ROOT = Path(__file__).resolve().parents[1]


def _bench(tmp_path, *args, env_extra=None):
    env = dict(os.environ)
    env.update(env_extra or {})
    cmd = [sys.executable, "-m", "matalign", "bench", *args]
    return subprocess.run(cmd, cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True, timeout=600)


def _table_rows(out: str) -> list[list[str]]:
    rows = [line.strip("|").split("|") for line in out.splitlines() if line.startswith("| ")]
    return [[c.strip() for c in r] for r in rows]


def test_knn_against_faiss_prints_a_ratio_after_agreement(tmp_path):
    pytest.importorskip("faiss")
    res = _bench(tmp_path, "knn", "--n", "1500", "--quick", "--metric", "ip", "--queries", "0",
                 "--json", "out.json", "--plot", "plots")
    assert res.returncode == 0, res.stderr
    header, *rows = _table_rows(res.stdout)
    assert header[:8] == ["case", "N", "D", "k", "metric", "matalign s", "faiss s", "ratio"]
    assert len(rows) == 1 and rows[0][7].endswith("×") and rows[0][13].startswith("ok: recall")
    assert "# anchor: faiss" in res.stdout
    assert "# matalign bench knn --n 1500 --quick" in res.stdout  # the header's command line
    doc = json.loads((tmp_path / "out.json").read_text())
    row = doc["results"][0]
    assert row["agreement"]["ok"] and row["ratio"] == pytest.approx(row["faiss_s"] / row["matalign_s"])
    machine = doc["machine"]
    assert machine["cpu"] and machine["logical_cores"] == os.cpu_count()
    assert machine["matalign"]["version"] and "numpy" in machine["packages"]
    assert isinstance(machine["isa"], list) and isinstance(machine["gpus"], list)
    for ext in ("png", "svg"):
        assert (tmp_path / "plots" / f"knn_scaling.{ext}").stat().st_size > 1000


def test_knn_without_faiss_reports_throughput(tmp_path):
    # A package named faiss that fails to import hides the real one, in the driver and the
    # workers alike.
    hide = tmp_path / "hide"
    (hide / "faiss").mkdir(parents=True)
    (hide / "faiss" / "__init__.py").write_text("raise ImportError('faiss hidden by the test')\n")
    res = _bench(tmp_path, "knn", "--n", "1500", "--quick", "--metric", "l2", "--queries", "0",
                 "--json", "out.json",
                 env_extra={"PYTHONPATH": os.pathsep.join(
                     [str(hide), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep)})
    assert res.returncode == 0, res.stderr
    assert "faiss is not installed" in res.stdout and "ratio" not in _table_rows(res.stdout)[0]
    header, row = _table_rows(res.stdout)
    assert header[5:8] == ["matalign s", "pairs/s", "matalign GFLOP/s"]
    assert row[-1].startswith("ok: graph well formed")
    r = json.loads((tmp_path / "out.json").read_text())["results"][0]
    assert r["anchor"] is None and "ratio" not in r
    assert r["matalign_pairs_per_s"] == pytest.approx(1500 * 1500 / r["matalign_s"])
    assert r["matalign_gflops"] == pytest.approx(2 * 1500 * 1500 * 256 / r["matalign_s"] / 1e9)


def _graph(seed=0, n=300, d=16, k=5):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, d)).astype(np.float32)
    s = x.astype(np.float64) @ x.T.astype(np.float64)
    np.fill_diagonal(s, -np.inf)
    idx = np.argsort(-s, axis=1, kind="stable")[:, :k]
    vals = np.take_along_axis(s, idx, axis=1)
    return x, {"values": vals, "indices": idx}


def test_agreement_accepts_the_same_graph_and_refuses_a_wrong_one():
    x, ref = _graph()
    ok = bknn.knn_agreement(ref, ref, x, x, self_knn=True)
    assert ok["ok"] and ok["recall"] == 1.0
    bad = {"values": ref["values"].copy(), "indices": ref["indices"].copy()}
    bad["indices"][:50, 0] = (bad["indices"][:50, 0] + 7) % 300   # not a tie: wrong neighbours
    bad["values"][:50, 0] += 1.0
    res = bknn.knn_agreement(bad, ref, x, x, self_knn=True)
    assert not res["ok"] and "values differ" in res["why"]
    selfish = {"values": ref["values"], "indices": ref["indices"].copy()}
    selfish["indices"][3, 2] = 3
    res = bknn.knn_agreement(selfish, ref, x, x, self_knn=True)
    assert not res["ok"] and "self in 1 rows" in res["why"]


def test_self_check_without_anchor():
    x, ref = _graph()
    assert bknn.self_check(ref, 300, 5, self_knn=True)["ok"]
    wrong = {"values": ref["values"][:, ::-1].copy() * np.array([1, -1, 1, -1, 1]),
             "indices": ref["indices"].copy()}
    assert "not sorted" in bknn.self_check(wrong, 300, 5, self_knn=True)["why"]
    wrong = {"values": ref["values"], "indices": ref["indices"].copy()}
    wrong["indices"][0, 1] = wrong["indices"][0, 0]
    assert "repeated neighbour" in bknn.self_check(wrong, 300, 5, self_knn=True)["why"]
    wrong["indices"][0, 1] = 300
    assert "out of range" in bknn.self_check(wrong, 300, 5, self_knn=True)["why"]


def test_find_anchor_none():
    assert bknn.find_anchor("cpu", "none") == (None, "no anchor (--anchor none)")


def test_run_refuses_unknown_names_and_cuda_on_cpu_only_benchmarks():
    with pytest.raises(ValueError, match="name: no benchmark 'nope'; available: knn, cknna"):
        benchmarks.run("nope")
    with pytest.raises(ValueError, match=r"--device cuda: benchmark 'cknna' runs on the CPU "
                                         r"only \(--device cuda: knn\)"):
        benchmarks.run("cknna", ["--device", "cuda"])


def test_plot_scaling_lines_per_side(tmp_path):
    rows = [{"N": n, "metric": "ip", "k": 10, "matalign_s": 1e-9 * n * n,
             "matalign_times": [1.0], "matalign_peak_added": 40 * n,
             "faiss_s": 2e-9 * n * n, "faiss_peak_added": 400 * n,
             "matalign_pairs_per_s": 1e9, "time_ratio": 2.0} for n in (1000, 2000, 4000)]
    paths = benchmarks.plot_scaling(rows, str(tmp_path), "x")
    assert sorted(os.path.basename(p) for p in paths) == ["x_scaling.png", "x_scaling.svg"]
    svg = (tmp_path / "x_scaling.svg").read_text()
    assert "matalign ip k=10" in svg and "faiss ip k=10" in svg and "pairs_per" not in svg
    assert benchmarks.plot_scaling([{"case": "no N"}], str(tmp_path), "y") == []


def test_machine_record_and_isa():
    rec = C.machine_record()
    flags = set()
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("flags"):
                flags = set(line.split(":", 1)[1].split())
                break
    assert set(rec["isa"]) == flags & set(C.ISA_FLAGS)
    assert rec["packages"]["numpy"] == np.__version__
    json.dumps(rec)  # JSON-ready


@pytest.mark.parametrize("name", sorted(benchmarks.BENCHMARKS))
def test_every_benchmark_parses_its_help(name, capsys):
    with pytest.raises(SystemExit) as exc:
        benchmarks.run(name, ["--help"])
    assert exc.value.code == 0
    assert "usage: matalign bench " + name in capsys.readouterr().out


def test_the_bench_script_is_a_wrapper_and_the_cli_passes_options_through(tmp_path):
    for cmd in ([sys.executable, str(ROOT / "bench" / "bench_knn.py"), "--help"],
                [sys.executable, "-m", "matalign", "bench", "knn", "--", "--help"]):
        res = subprocess.run(cmd, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True, timeout=120)
        assert res.returncode == 0, res.stderr
        assert "usage: matalign bench knn" in res.stdout and "--anchor" in res.stdout
    res = _bench(tmp_path, "dcor", "--device", "cuda")
    assert res.returncode == 2
    assert "benchmark 'dcor' runs on the CPU only" in res.stderr
