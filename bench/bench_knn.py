#!/usr/bin/env python3
"""Thin wrapper: the benchmark lives in ``matalign.benchmarks.knn`` (``matalign bench knn``).

Run ``python bench/bench_knn.py --help`` (or ``matalign bench knn --help``) for its options;
``--plot DIR`` adds the scaling plot.
"""

import sys

from matalign.benchmarks import run

if __name__ == "__main__":
    sys.exit(run("knn", sys.argv[1:]))
