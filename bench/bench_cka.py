#!/usr/bin/env python3
"""Thin wrapper: the benchmark lives in ``matalign.benchmarks.cka`` (``matalign bench cka``).

Run ``python bench/bench_cka.py --help`` (or ``matalign bench cka --help``) for its options;
``--plot DIR`` adds the scaling plot.
"""

import sys

from matalign.benchmarks import run

if __name__ == "__main__":
    sys.exit(run("cka", sys.argv[1:]))
