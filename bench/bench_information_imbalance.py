#!/usr/bin/env python3
"""Thin wrapper: the benchmark lives in ``matalign.benchmarks.information_imbalance`` (``matalign bench information_imbalance``).

Run ``python bench/bench_information_imbalance.py --help`` (or ``matalign bench information_imbalance --help``) for its options;
``--plot DIR`` adds the scaling plot.
"""

import sys

from matalign.benchmarks import run

if __name__ == "__main__":
    sys.exit(run("information_imbalance", sys.argv[1:]))
