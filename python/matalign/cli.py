"""The ``matalign`` command line (also ``python -m matalign``).

Subcommands: ``info`` (how matalign was built) and ``demo`` (alignment of synthetic models).
A user mistake prints one line to stderr and exits with status 2, without a traceback.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import numpy as np

__all__ = ["main"]

_EXIT_USAGE = 2
_EXIT_INTERRUPTED = 130


class _UsageError(Exception):
    """A mistake in the command line that argparse cannot see."""


def _format_value(value) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, (list, tuple)):
        return ", ".join(str(v) for v in value) if value else "none"
    return str(value)


def _cmd_info(args) -> int:
    import matalign as ma

    info = ma.build_info()
    info["cuda_device_count"] = ma.cuda_device_count()
    if args.json:
        print(json.dumps(info, indent=2, sort_keys=True))
        return 0
    print(f"matalign {info.get('version', '?')}")
    width = max(len(key) for key in info)
    for key, value in info.items():
        if key == "version":
            continue
        text = _format_value(value)
        if key == "blas" and value is None:
            text = "none (matalign's own SIMD kernels)"
        print(f"  {key:<{width}}  {text}")
    return 0


def _synthetic_model(latent: np.ndarray, d: int, rng: np.random.Generator,
                     noise: float) -> np.ndarray:
    """A 'model': a random nonlinear map of the structures' latent coordinates, plus noise."""
    w = rng.normal(size=(latent.shape[1], d)) / np.sqrt(latent.shape[1])
    b = rng.normal(size=d)
    emb = np.tanh(latent @ w + b) + noise * rng.normal(size=(latent.shape[0], d))
    return emb.astype(np.float32)


def _cmd_demo(args) -> int:
    import matalign as ma

    n, k, seed, latent_dim = args.n, args.k, args.seed, 6
    if n < 20:
        raise _UsageError(f"--n must be at least 20; got {n}")
    if not 1 <= k < n:
        raise _UsageError(f"--k must be between 1 and N - 1 = {n - 1}; got {k}")
    rng = np.random.default_rng(seed)
    timings = []

    def timed(label, fn, *a, **kw):
        t0 = time.perf_counter()
        result = fn(*a, **kw)
        timings.append((label, time.perf_counter() - t0))
        return result

    print(f"matalign {ma.__version__} demo: N={n} synthetic structures, seed={seed}, k={k}")
    print(f"  X (64-d) and Y (48-d): two different nonlinear 'models' of the same {latent_dim}-d"
          f" structure coordinates")
    print("  Z (64-d): a model of unrelated coordinates (the random baseline)")
    print()
    t_start = time.perf_counter()
    shared = rng.normal(size=(n, latent_dim))
    other = rng.normal(size=(n, latent_dim))
    X, Y, Z = timed("generate X, Y, Z", lambda: (_synthetic_model(shared, 64, rng, 0.02),
                                                 _synthetic_model(shared, 48, rng, 0.02),
                                                 _synthetic_model(other, 64, rng, 0.02)))

    spaces = {"X": X, "Y": Y, "Z": Z}
    prepared = {name: timed(f"preprocess {name} (clip 0.95, l2)", ma.preprocess, A,
                            clip_quantile=0.95, l2=True)
                for name, A in spaces.items()}
    graphs = {name: timed(f"knn {name} (exact, ip, k={k})", ma.knn, A, k=k)
              for name, A in prepared.items()}
    rows = []
    for a, b in (("X", "Y"), ("X", "Z"), ("Y", "Z")):
        m = timed(f"mutual_knn {a},{b} (from graphs)", ma.mutual_knn, graphs[a], graphs[b], k=k)
        c = timed(f"cknna {a},{b} (from graphs)", ma.cknna, graphs[a], graphs[b], k=k)
        rows.append((f"{a} vs {b}", m, c))
    ids = {name: timed(f"intrinsic_dimension {name} (twonn)", ma.intrinsic_dimension, A)
           for name, A in spaces.items()}
    total = time.perf_counter() - t_start

    print(f"{'pair':<8} {'mutual_knn':>10} {'cknna':>8}")
    for label, m, c in rows:
        print(f"{label:<8} {m:>10.3f} {c:>8.3f}")
    print(f"(chance level of mutual_knn: k/(N-1) = {k / (n - 1):.3f})")
    print()
    print("intrinsic dimension (TwoNN): " + ", ".join(f"{name} {d:.1f}" for name, d in ids.items())
          + f"  (true latent dimension {latent_dim})")
    print()
    print(f"{'step':<40} {'time':>9}")
    for label, seconds in timings:
        print(f"{label:<40} {seconds * 1e3:>7.1f}ms")
    print(f"{'total':<40} {total:>8.2f}s")
    verdict = rows[0][1] > 3 * max(rows[1][1], rows[2][1]) and rows[0][2] > max(rows[1][2], rows[2][2])
    print()
    print("alignment(X, Y) >> alignment(X, Z): " + ("yes" if verdict else "NO (unexpected)"))
    return 0


def _build_parser() -> argparse.ArgumentParser:
    from ._info import build_info

    parser = argparse.ArgumentParser(
        prog="matalign",
        description="Exact, fast alignment metrics between embedding spaces of scientific "
                    "foundation models.")
    parser.add_argument("--version", action="version",
                        version=f"matalign {build_info()['version']}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    info = sub.add_parser("info", help="show how matalign was built (SIMD, OpenMP, CUDA)",
                          description="Show how matalign was built and what it uses here.")
    info.add_argument("--json", action="store_true", help="print machine-readable JSON")
    info.set_defaults(func=_cmd_info)

    demo = sub.add_parser(
        "demo", help="align synthetic models and print a table",
        description="Generate three synthetic embedding sets (two models of the same "
                    "structures and one unrelated), compute kNN graphs, mutual_knn, CKNNA and "
                    "the intrinsic dimension, and print the results with timings.")
    demo.add_argument("--quick", action="store_true", help="small run (N=2000), a few seconds")
    demo.add_argument("--n", type=int, default=None, metavar="N",
                      help="number of structures (default 20000, or 2000 with --quick)")
    demo.add_argument("--k", type=int, default=10, metavar="K", help="neighbours (default 10)")
    demo.add_argument("--seed", type=int, default=0, metavar="S", help="random seed (default 0)")
    demo.set_defaults(func=_cmd_demo)
    return parser


def main(argv=None) -> int:
    """Run the ``matalign`` command line.

    Parameters
    ----------
    argv : list of str, optional
        Arguments without the program name; default ``sys.argv[1:]``.

    Returns
    -------
    int
        The exit status: 0 on success, 2 for a usage error or a rejected input (one line on
        stderr, no traceback), 130 when interrupted.

    Examples
    --------
    >>> from matalign.cli import main
    >>> main(["demo", "--n", "5"])
    2
    """
    parser = _build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "command", None) == "demo" and args.n is None:
        args.n = 2000 if args.quick else 20000
    try:
        status = int(args.func(args))
        sys.stdout.flush()
        return status
    except BrokenPipeError:
        # The reader went away (`matalign info | head`): stop quietly, as Python's docs advise.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 1
    except _UsageError as exc:
        print(f"matalign {args.command}: error: {exc}", file=sys.stderr)
    except (ValueError, TypeError, OSError) as exc:
        print(f"matalign {args.command}: error: {exc}", file=sys.stderr)
    except KeyboardInterrupt:
        print(f"matalign {args.command}: interrupted", file=sys.stderr)
        return _EXIT_INTERRUPTED
    return _EXIT_USAGE
