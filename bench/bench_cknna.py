#!/usr/bin/env python3
"""Thin wrapper: the benchmark lives in ``matalign.benchmarks.cknna`` (``matalign bench cknna``).

Run ``python bench/bench_cknna.py --help`` (or ``matalign bench cknna --help``) for its options;
``--plot DIR`` adds the scaling plot.
"""

import sys

from matalign.benchmarks import run

if __name__ == "__main__":
    sys.exit(run("cknna", sys.argv[1:]))
