#!/usr/bin/env python3
"""Thin wrapper: the benchmark lives in ``matalign.benchmarks.outofcore`` (``matalign bench outofcore``).

Run ``python bench/bench_outofcore.py --help`` (or ``matalign bench outofcore --help``) for its options;
``--plot DIR`` adds the scaling plot.
"""

import sys

from matalign.benchmarks import run

if __name__ == "__main__":
    sys.exit(run("outofcore", sys.argv[1:]))
