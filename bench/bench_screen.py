#!/usr/bin/env python3
"""Thin wrapper: the benchmark lives in ``matalign.benchmarks.screen`` (``matalign bench screen``).

Run ``python bench/bench_screen.py --help`` (or ``matalign bench screen --help``) for its options;
``--plot DIR`` adds the scaling plot.
"""

import sys

from matalign.benchmarks import run

if __name__ == "__main__":
    sys.exit(run("screen", sys.argv[1:]))
