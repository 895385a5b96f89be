"""The ``matalign`` command line: every command's help has examples, the commands write what
they say, and user mistakes give one red line and a non-zero status without a traceback."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys

import numpy as np
import pytest

import matalign as ma
from matalign.cli import main

COMMANDS = ["demo", "embed", "knn", "matrix", "score", "report", "bench", "info", "models",
            "datasets"]


def _run(capsys, *args):
    status = main(list(args))
    out, err = capsys.readouterr()
    return status, out, err


def _one_line_error(err, command):
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert lines[0].startswith(f"matalign {command}: error: ")
    assert "Traceback" not in err
    return lines[0]


@pytest.fixture()
def npy_models(tmp_path):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(300, 8)).astype(np.float32)
    arrays = {"a": X, "b": (X + 0.2 * rng.normal(size=X.shape)).astype(np.float32),
              "c": rng.normal(size=(300, 8)).astype(np.float32)}
    paths = {}
    for name, A in arrays.items():
        paths[name] = tmp_path / f"{name}.npy"
        np.save(paths[name], A)
    return arrays, paths


@pytest.mark.parametrize("command", COMMANDS)
def test_help_shows_examples(capsys, command):
    status, out, _ = _run(capsys, command, "--help")
    assert status == 0
    assert "Examples" in out and f"$ matalign {command}" in out


def test_top_level_help_lists_every_command(capsys):
    status, out, _ = _run(capsys, "--help")
    assert status == 0
    for command in COMMANDS:
        assert command in out


def test_info_json(capsys):
    status, out, _ = _run(capsys, "info", "--json")
    assert status == 0
    data = json.loads(out)
    assert data["version"] == ma.__version__ and "simd_selected" in data
    status, out, _ = _run(capsys, "info")
    assert status == 0 and "simd_selected" in out


def test_demo_quick_prints_the_table(capsys):
    status, out, _ = _run(capsys, "demo", "--synthetic", "--n", "400")
    assert status == 0
    assert "X vs Y" in out and "alignment(X, Y) >> alignment(X, Z): yes" in out


def test_demo_writes_a_run_dir_and_report(capsys, tmp_path):
    status, out, _ = _run(capsys, "demo", "--synthetic", "--n", "300", "--out",
                          str(tmp_path / "run"))
    assert status == 0, out
    assert (tmp_path / "run" / "run.json").is_file()
    assert (tmp_path / "run" / "report.html").is_file()
    status, _, err = _run(capsys, "demo", "--synthetic", "--n", "300", "--out",
                          str(tmp_path / "run"))
    assert status == 2 and "--overwrite" in _one_line_error(err, "demo")
    status, out, _ = _run(capsys, "report", str(tmp_path / "run"), "--reference", "Y")
    assert status == 0 and "report.html" in out


def test_demo_real_models_small(capsys, tmp_path):
    # The real demo (what README command 1 runs: the shipped quick study) on 12 structures per
    # set: findings with a stated test and a verdict, the report, resumable stores.
    out = tmp_path / "demo"
    status, text, err = _run(capsys, "demo", "--quick", "--n", "12", "--k", "3", "--out",
                             str(out))
    assert status == 0, err
    assert "the paper's findings, tested on this data" in text
    findings = json.loads((out / "findings.json").read_text())
    assert len(findings) == 3
    for f in findings:
        assert f["verdict"] in ("holds", "does not hold", "inconclusive")
        assert f["n"] == 12 and f["k"] == 3 and f["test"] and f["preprocessing"]
    run = json.loads((out / "run.json").read_text())
    assert run["version"] == 2 and [s["n"] for s in run["sets"]] == [12, 12, 12]
    assert (out / "report.html").is_file()
    store = ma.open_store(out / "embeddings" / "id" / "chgnet-0.3.0")
    assert store.shape == (12, 64)
    status, text, _ = _run(capsys, "demo", "--quick", "--n", "12", "--k", "3", "--out",
                           str(out))
    assert status == 0 and "[done] embed/id/chgnet-0.3.0" in text


def test_knn_writes_the_graph(capsys, npy_models, tmp_path):
    arrays, paths = npy_models
    status, out, _ = _run(capsys, "knn", str(paths["a"]), "--k", "7", "--metric", "cosine",
                          "--out", str(tmp_path / "g.npz"))
    assert status == 0, out
    g = ma.KnnGraph.load(tmp_path / "g.npz")
    ref = ma.knn(arrays["a"], k=7, metric="cosine")
    np.testing.assert_array_equal(g.indices, ref.indices)
    status, _, err = _run(capsys, "knn", str(paths["a"]), "--out", str(tmp_path / "g.npz"))
    assert status == 2 and "exists" in _one_line_error(err, "knn")


def test_matrix_from_named_inputs(capsys, npy_models, tmp_path):
    arrays, paths = npy_models
    out_path = tmp_path / "m.json"
    status, out, _ = _run(capsys, "matrix", f"first={paths['a']}", str(paths["b"]),
                          f"third={paths['c']}", "--metrics", "cknna,mutual_knn,intrinsic_dimension", "--k", "10",
                          "--out", str(out_path))
    assert status == 0, out
    m = ma.AlignmentMatrix.load(out_path)
    assert m.names == ["first", "b", "third"]
    assert m.value("cknna", "first", "b") == pytest.approx(
        ma.cknna(arrays["a"], arrays["b"], k=10), abs=1e-9)
    assert "intrinsic_dimension" in m.per_model
    status, _, err = _run(capsys, "matrix", str(paths["a"]), str(paths["b"]), "--metrics",
                          "bogus", "--out", str(tmp_path / "x.json"))
    assert status == 2 and "bogus" in _one_line_error(err, "matrix")


def test_score_writes_the_table(capsys, npy_models, tmp_path):
    from matalign.score import read_scores

    arrays, paths = npy_models
    status, out, _ = _run(capsys, "score", *map(str, paths.values()), "--k", "10", "--out",
                          str(tmp_path / "s.csv"), "--top", "5")
    assert status == 0, out
    assert "most disagreed 5" in out and "a vs b" in out
    t = read_scores(tmp_path / "s.csv")
    np.testing.assert_allclose(t["local_agreement:a:c"],
                               ma.local_agreement(arrays["a"], arrays["c"], k=10))


def test_score_with_a_reference_set(capsys, npy_models, tmp_path):
    # the OOD columns through the command line: the reference set is the same models'
    # embeddings of other structures, named NAME=PATH like the inputs
    from matalign.ood import reference_scores
    from matalign.score import read_scores

    arrays, paths = npy_models
    rng = np.random.default_rng(3)
    refs = {}
    for m, A in arrays.items():
        refs[m] = tmp_path / f"ref_{m}.npy"
        np.save(refs[m], (A[: len(A) // 2] + 0.1 * rng.normal(size=A[: len(A) // 2].shape))
                .astype(A.dtype))
    status, out, err = _run(capsys, "score", *map(str, paths.values()),
                            *[x for m in arrays for x in ("--reference", f"{m}={refs[m]}")],
                            "--ood-k", "3", "--out", str(tmp_path / "s.csv"))
    assert status == 0, err
    assert "OOD columns against the reference set (k=3)" in out
    t = read_scores(tmp_path / "s.csv")
    want = reference_scores({m: np.load(refs[m]) for m in arrays}, arrays, k=3,
                            within_set=False)
    for m in arrays:
        np.testing.assert_allclose(t[f"ood_knn_distance:{m}"], want[f"knn_distance[{m}]"])
    np.testing.assert_allclose(t["ood_score"], want.score)
    np.testing.assert_allclose(t["ood_agreement"], want["agreement"])
    np.testing.assert_allclose(t["within_set_disagreement"], 1 - t["mean_local_agreement"])
    status, _, err = _run(capsys, "score", *map(str, paths.values()), "--reference",
                          f"a={refs['a']}", "--out", str(tmp_path / "t.csv"))
    assert status == 2 and "--reference must name the same models" in \
        _one_line_error(err, "score")


def test_user_errors_are_one_red_line(capsys, tmp_path, npy_models):
    _, paths = npy_models
    status, _, err = _run(capsys, "score", str(paths["a"]), str(tmp_path / "nope.npy"),
                          "--out", str(tmp_path / "s.csv"))
    assert status == 2 and "nope.npy" in _one_line_error(err, "score")
    status, _, err = _run(capsys, "score", str(paths["a"]), str(paths["a"]), "--out",
                          str(tmp_path / "s.csv"))
    assert status == 2 and "given twice" in _one_line_error(err, "score")
    status, _, err = _run(capsys, "matrix", str(paths["a"]), str(paths["b"]), "--out",
                          str(tmp_path / "m.txt"))
    assert status == 2 and ".json" in _one_line_error(err, "matrix")
    status, _, err = _run(capsys, "report", str(tmp_path))
    assert status == 2 and "run.json" in _one_line_error(err, "report")
    status, _, err = _run(capsys, "bench", "nonexistent")
    assert status == 2 and "no benchmark 'nonexistent'" in _one_line_error(err, "bench")
    # Typer's own usage errors also exit 2.
    status, _, err = _run(capsys, "knn")
    assert status == 2 and "Traceback" not in err


def test_debug_shows_the_exception(capsys, tmp_path):
    with pytest.raises(FileNotFoundError, match="run.json"):
        main(["--debug", "report", str(tmp_path)])


def test_bench_lists_scripts(capsys):
    status, out, _ = _run(capsys, "bench", "--list")
    assert status == 0 and "knn" in out and "faiss" in out and "information_imbalance" in out


def test_models_lists_adapters(capsys):
    status, out, _ = _run(capsys, "models", "--json")
    assert status == 0
    rows = json.loads(out)
    assert {r["name"] for r in rows} == {a.name for a in ma.adapters.list()}
    assert {"modality", "dim", "offline", "package", "extra"} <= set(rows[0])
    status, out, _ = _run(capsys, "models")
    assert status == 0 and rows[0]["name"] in out


def test_datasets_command(capsys):
    import matalign.datasets as ds

    status, out, err = _run(capsys, "datasets", "--json")
    if hasattr(ds, "list"):
        assert status == 0
        assert len(json.loads(out)) == len(list(ds.list()))
    else:
        assert status == 2 and "dataset registry" in _one_line_error(err, "datasets")


def test_embed_wiring(capsys, tmp_path):
    status, out, err = _run(capsys, "embed", "--model", "no-such-model", "--data",
                            str(tmp_path / "missing.xyz"), "--out", str(tmp_path / "emb"))
    assert status == 2, out
    line = _one_line_error(err, "embed")
    if importlib.util.find_spec("matalign.embed") is None:
        assert "matalign.embed" in line


def test_python_dash_m_entry_point(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "matalign", "info", "--json"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["version"] == ma.__version__
    proc = subprocess.run([sys.executable, "-m", "matalign", "report", str(tmp_path)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert proc.stderr.strip().startswith("matalign report: error:")


def test_embed_then_score_stores(capsys, tmp_path):
    """End to end through the store: embed a built-in set, then score and knn on store dirs."""
    pytest.importorskip("ase")
    if importlib.util.find_spec("matalign.embed") is None:
        pytest.skip("matalign.embed is not available")
    from matalign.score import read_scores

    store = tmp_path / "comp"
    status, out, err = _run(capsys, "embed", "--model", "composition", "--data", "g2", "--out",
                            str(store))
    assert status == 0, err
    status, out, err = _run(capsys, "score", f"a={store}", f"b={store}", "--k", "5", "--out",
                            str(tmp_path / "s.csv"))
    assert status == 0, err
    t = read_scores(tmp_path / "s.csv")
    assert "id" in t and str(t["id"][0]).startswith("g2:")
    status, out, err = _run(capsys, "knn", str(store), "--k", "5", "--out",
                            str(tmp_path / "g.npz"))
    assert status == 0, err
