#!/usr/bin/env bash
# The GPU check in one command (see scripts/gpu_check.py and bench/README.md, "GPU check"):
# builds matalign with CUDA, runs tests/test_cuda.py (a subset under compute-sanitizer memcheck
# and racecheck) and bench/bench_gpu.py, prints pass/fail and the figures; results in
# gpu_check_out/. Options are passed on (e.g. --dry-run, --budget 470, --skip bench).
# On a machine without a package registry, the wheels it may lack come from scripts/gpu_wheels/
# (fill it beforehand with: python3 scripts/gpu_check.py bundle).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
exec "${PYTHON:-python3}" scripts/gpu_check.py run "$@"
