"""matalign study: config checks, a resumable run directory, kill -9 and identical results."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import matalign as ma
from matalign.study import StudyError, study_config

CONFIG = """
title = "descriptors on shipped crystals"
seed = 3
metrics = ["cknna", "mutual_knn", "cka", "dcor", "information_imbalance", "intrinsic_dimension"]
[knn]
k = 5
k_sweep = [3, 5]
[statistics]
n_permutations = 10
n_subsamples = 8
[errors]
n = 0
[[models]]
name = "element-stats"
[[models]]
name = "composition"
[[models]]
name = "element-stats"
label = "element-stats-max"
options = { pooling = "max" }
[[models]]
name = "element-stats"
label = "element-stats-sum"
options = { pooling = "sum" }
[[sets]]
name = "id"
dataset = "mptrj"
n = 40
[[sets]]
name = "rattle-0.3"
from = "id"
ladder = "rattle"
level = 0.3
"""

OUTPUTS = ("sets/id/matrix.json", "sets/id/matrix-k3.json", "sets/id/stats.json",
           "sets/rattle-0.3/matrix.json", "sets/rattle-0.3/stats.json", "sets/id/ksweep.json",
           "tree.json", "findings.json")


def _run(config: Path, out: Path):
    code = (f"import matalign as ma; ma.study({str(config)!r}, out={str(out)!r}, "
            f"report=False, echo=lambda line: print(line, flush=True))")
    return subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    folder = tmp_path_factory.mktemp("study")
    config = folder / "study.toml"
    config.write_text(CONFIG)
    out = folder / "ref"
    proc = _run(config, out)
    text, _ = proc.communicate(timeout=900)
    assert proc.returncode == 0, text
    return config, out


def test_a_study_fills_its_run_directory(reference):
    _, out = reference
    for rel in OUTPUTS:
        assert (out / rel).is_file(), rel
    run = json.loads((out / "run.json").read_text())
    assert run["version"] == 2 and [s["n"] for s in run["sets"]] == [40, 40]
    stats = json.loads((out / "sets/id/stats.json").read_text())
    pair = stats["cknna"]["element-stats|composition"]
    assert pair["low"] <= pair["value"] <= pair["high"] and pair["n"] == 40 and pair["k"] == 5
    assert pair["p_value"] is not None and pair["null_method"]
    m = ma.AlignmentMatrix.load(out / "sets/id/matrix.json")
    assert m.value("cknna", "element-stats", "composition") == pair["value"]
    assert m.params["preprocessing"] == {"center": True, "l2": True, "clip_quantile": 0.0}


def test_the_ood_stage_measures_the_reference_scores(reference):
    # ood.json against a float64 recomputation from the stores: the seeded split of the ID set,
    # the ladder's copies of the held-out half, the k-th reference-neighbour distance, the
    # percentile, the default (max over models) and AUROC as the fraction of (ood, in) pairs
    # ordered correctly, ties half.
    import numpy as np

    _, out = reference
    data = json.loads((out / "ood.json").read_text())
    assert (data["k"], data["reference_set"], data["default"]) == (5, "id", "max_percentile")
    models = ["element-stats", "composition", "element-stats-max", "element-stats-sum"]
    order = np.random.default_rng([3, 7]).permutation(40)
    ref_rows, held = np.sort(order[:20]), np.sort(order[20:])

    def emb(name, m):
        return np.asarray(ma.open_store(out / f"embeddings/{name}/{m}").embeddings, np.float64)

    pcts = []
    for m in models:
        R, I, O = emb("id", m)[ref_rows], emb("id", m)[held], emb("rattle-0.3", m)[held]
        Q = np.concatenate([I, O])
        dq = np.sort(np.linalg.norm(Q[:, None] - R[None], axis=-1), axis=1)[:, 4]
        dr = np.linalg.norm(R[:, None] - R[None], axis=-1)
        np.fill_diagonal(dr, np.inf)
        loo = np.sort(dr, axis=1)[:, 4]
        pcts.append((loo[None] < dq[:, None]).mean(axis=1))
    score = np.max(pcts, axis=0)
    s_in, s_out = score[:20], score[20:]
    auc = (np.sum(s_out[:, None] > s_in[None]) + 0.5 * np.sum(s_out[:, None] == s_in[None])) \
        / (20 * 20)
    got = data["sets"]["rattle-0.3"]
    assert (got["n_in"], got["n_ood"]) == (20, 20)
    assert got["scores"]["max_percentile"]["auroc"] == pytest.approx(auc, abs=1e-12)
    assert set(got["scores"]) >= {"consensus", "disagreement", "within_set_disagreement"}


def test_kill_9_then_resume_gives_identical_results(reference, tmp_path):
    config, ref = reference
    out = tmp_path / "killed"
    proc = _run(config, out)
    marker = out / "stages" / "embed__id__composition.json"  # then matrices, stats, ...
    deadline = time.time() + 600
    while not marker.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    assert proc.poll() is None, "the study finished before it could be killed"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    proc.stdout.close()
    assert not (out / "findings.json").exists()
    proc = _run(config, out)
    text, _ = proc.communicate(timeout=900)
    assert proc.returncode == 0, text
    assert "[done] embed/id/composition" in text
    for rel in OUTPUTS:
        assert (out / rel).read_bytes() == (ref / rel).read_bytes(), rel


def test_a_rerun_skips_every_stage(reference, capsys):
    config, out = reference
    lines = []
    ma.study(str(config), out=out, report=False, echo=lines.append)
    stages = [line for line in lines if line.strip().startswith("[")]
    assert stages and all("[done]" in line for line in stages), stages


@pytest.mark.parametrize("bad,match", [
    ({"models": [], "sets": [{"name": "id", "dataset": "mptrj"}]}, r"\[\[models\]\]"),
    ({"models": ["soap"], "sets": [{"name": "id"}]}, r"sets\[0\] needs dataset"),
    ({"models": ["soap"], "sets": [{"name": "id", "dataset": "mptrj"}], "knn": {"k": 0}},
     r"knn.k must be an integer >= 1"),
    ({"models": ["soap"], "sets": [{"name": "id", "dataset": "mptrj"}], "colour": 1},
     r"key\(s\) \['colour'\] are unknown"),
    ({"models": ["soap"], "sets": [{"name": "a", "from": "b", "ladder": "rattle",
                                    "level": 0.1}]}, r"sets\[0\].from names 'b'"),
])
def test_bad_configs_name_the_key(bad, match):
    with pytest.raises(StudyError, match=match):
        study_config(bad)


def test_the_shipped_studies_load():
    from matalign.study import load_study_config

    quick = load_study_config("demo-quick")
    assert [s["n"] for s in quick["sets"] if s["from"] is None] == [200, 200]
    full = load_study_config("demo")
    assert next(s for s in full["sets"] if s["name"] == "id")["n"] == 1000
