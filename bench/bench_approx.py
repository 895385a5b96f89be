#!/usr/bin/env python3
"""Thin wrapper: the benchmark lives in ``matalign.benchmarks.approx`` (``matalign bench approx``).

Run ``python bench/bench_approx.py --help`` (or ``matalign bench approx --help``) for its options;
``--plot DIR`` adds the scaling plot.
"""

import sys

from matalign.benchmarks import run

if __name__ == "__main__":
    sys.exit(run("approx", sys.argv[1:]))
