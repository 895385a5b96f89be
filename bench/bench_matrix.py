#!/usr/bin/env python3
"""Thin wrapper: the benchmark lives in ``matalign.benchmarks.matrix`` (``matalign bench matrix``).

Run ``python bench/bench_matrix.py --help`` (or ``matalign bench matrix --help``) for its options;
``--plot DIR`` adds the scaling plot.
"""

import sys

from matalign.benchmarks import run

if __name__ == "__main__":
    sys.exit(run("matrix", sys.argv[1:]))
