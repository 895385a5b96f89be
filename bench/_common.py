"""Shared helpers for the scripts in ``bench/``: a re-export of ``matalign.benchmarks._common``.

The benchmark suite ships inside the package (``matalign.benchmarks``); the scripts here that
are not yet part of it (``bench_embed.py``, ``bench_gpu.py``, ...) keep importing
``_common`` from this folder, and get the very same helpers.
"""

from matalign.benchmarks import _common as _impl

globals().update({k: v for k, v in vars(_impl).items() if not k.startswith("__")})
__all__ = list(_impl.__all__)
__doc__ = _impl.__doc__
