#!/usr/bin/env python3
"""Thin wrapper: the benchmark lives in ``matalign.benchmarks.dcor`` (``matalign bench dcor``).

Run ``python bench/bench_dcor.py --help`` (or ``matalign bench dcor --help``) for its options;
``--plot DIR`` adds the scaling plot.
"""

import sys

from matalign.benchmarks import run

if __name__ == "__main__":
    sys.exit(run("dcor", sys.argv[1:]))
