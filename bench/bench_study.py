#!/usr/bin/env python3
"""What a study costs beyond embedding and the metric engine (issue: a trustworthy instrument).

Runs ``ma.study`` on one in-distribution set of N generated crystals (``synthetic-crystals``,
seeded) with six offline models (five cheap descriptors and a random-init CHGNet, so the embedding
does not swamp the rest; SOAP is left out: its width grows with the square of the species count),
then reads the seconds every stage recorded in its marker (``stages/*.json``) and splits the
wall time into:

- **embedding**: the ``embed/*`` stages (excluded from the overhead: the models' own cost);
- **engine**: the point estimates, ``matrix/*`` (every metric at the study's k) and
  ``ksweep/*/k*`` (graph metrics at every k of the sweep);
- **statistics**: ``stats/*`` (a confidence interval and a null for every pair and metric,
  intrinsic dimension with its interval), reported also as a multiple of the engine time it
  accompanies;
- **rest**: everything else the study does (structures, tables, tree, findings, the report and
  the time no stage accounts for).

    python bench/bench_study.py                 # N = 5000, six models
    python bench/bench_study.py --n 1000 --keep runs/bench-study

With ``--keep DIR`` naming a finished run of the same configuration, the embeddings are
reused (their seconds are read from their markers) and every engine and statistics stage
(``matrix``, ``ksweep``, ``stats``) is deleted and rerun, so the split can be re-measured
without re-embedding.

The numbers of permutations and subsamples are the study's defaults unless given, and are
printed with the result.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

MODELS = [
    {"name": "composition", "family": "descriptor"},
    {"name": "composition", "family": "descriptor", "label": "composition-sum",
     "options": {"pooling": "sum"}},
    {"name": "element-stats", "family": "descriptor"},
    {"name": "element-stats", "family": "descriptor", "label": "element-stats-max",
     "options": {"pooling": "max"}},
    {"name": "acsf", "family": "descriptor"},
    {"name": "random-chgnet", "family": "CHGNet", "random": True},
]


def _group(stage: str) -> str:
    if stage.startswith("embed/"):
        return "embedding"
    if stage.startswith("matrix/") or (stage.startswith("ksweep/") and "/k" in stage):
        return "engine"
    if stage.startswith("stats/"):
        return "statistics"
    return "rest"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--n", type=int, default=5000, help="structures (default 5000)")
    p.add_argument("--n-permutations", type=int, default=None)
    p.add_argument("--n-subsamples", type=int, default=None)
    p.add_argument("--keep", default=None, help="keep the run directory here")
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args(argv)

    import matalign as ma

    stats = {}
    if a.n_permutations is not None:
        stats["n_permutations"] = a.n_permutations
    if a.n_subsamples is not None:
        stats["n_subsamples"] = a.n_subsamples
    config = {"title": f"study overhead, N = {a.n}, six descriptor models", "seed": a.seed,
              "models": MODELS,
              "sets": [{"name": "id", "dataset": "synthetic-crystals", "n": a.n}],
              "statistics": stats}
    cfg = ma.study_config(config)
    out = Path(a.keep) if a.keep else Path(tempfile.mkdtemp(prefix="matalign-bench-study-"))
    reused = 0
    for marker in sorted((out / "stages").glob("*.json")) if a.keep else []:
        stage = json.loads(marker.read_text()).get("stage", "")
        if _group(stage) in ("engine", "statistics"):
            marker.unlink()        # rerun: the engine and statistics stages are re-measured
        else:
            reused += 1
    try:
        t0 = time.perf_counter()
        ma.study(config, out=out, echo=lambda *_a, **_k: None, progress=False)
        wall = time.perf_counter() - t0
        seconds = {"embedding": 0.0, "engine": 0.0, "statistics": 0.0, "rest": 0.0}
        ran_now = 0.0
        for marker in sorted((out / "stages").rglob("*.json")):
            rec = json.loads(marker.read_text())
            stage = rec.get("stage") or str(marker.relative_to(out / "stages"))[:-5]
            sec = float(rec.get("seconds", 0.0))
            seconds[_group(stage)] += sec
            if marker.stat().st_mtime >= time.time() - wall - 1.0:
                ran_now += sec                 # a stage of this invocation
        # the time no stage of this invocation accounts for (a reused stage's seconds come
        # from its marker, and this invocation did not spend them)
        seconds["rest"] += max(wall - ran_now, 0.0)
        total = sum(seconds.values())
    finally:
        if not a.keep:
            shutil.rmtree(out, ignore_errors=True)

    st = cfg["statistics"]
    print(f"# python bench/bench_study.py {' '.join(sys.argv[1:])}")
    print(f"# N = {a.n} synthetic crystals (seed {a.seed}), {len(MODELS)} models "
          f"({', '.join(m.get('label', m['name']) for m in MODELS)}); metrics "
          f"{', '.join(cfg['metrics'])}; k = {cfg['knn']['k']}, k sweep {cfg['knn']['k_sweep']}; "
          f"{st['n_permutations']} permutations, {st['n_subsamples']} subsamples; "
          f"{os.cpu_count()} cores, load {os.getloadavg()[0]:.1f}"
          + (f"; {reused} stages reused from {out}" if reused else ""))
    print("| part | seconds | share of non-embedding time |")
    print("|---|---|---|")
    rest_total = total - seconds["embedding"]
    for part in ("embedding", "engine", "statistics", "rest"):
        share = "-" if part == "embedding" else f"{seconds[part] / rest_total:.0%}"
        print(f"| {part} | {seconds[part]:.1f} | {share} |")
    print(f"| total | {total:.1f} | |")
    eng = seconds["engine"]
    print(f"# statistics / engine = {seconds['statistics'] / eng:.2f}x; everything beyond "
          f"embedding and engine / engine = {(seconds['statistics'] + seconds['rest']) / eng:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
