"""JSON-safe copies of values: the one helper behind every JSON file matalign writes
(alignment matrices, embedding-store manifests, run records). Imports nothing of matalign, so
every layer may use it."""

from __future__ import annotations

import math
import numbers
import os
from collections.abc import Mapping

import numpy as np

__all__ = ["jsonable", "describe"]


def describe(value) -> str:
    """A short description of an object's type for error messages (``torch.Tensor``, ``list``)."""
    cls = type(value)
    module = cls.__module__
    if module in ("builtins", None):
        return cls.__name__
    return f"{module.split('.')[0]}.{cls.__qualname__}"


def jsonable(value, where: str):
    """A deep copy of ``value`` made of JSON types only (dict with str keys, list, str, int,
    finite float, bool, None). NumPy scalars and arrays become Python numbers and lists, paths
    become strings; anything else raises TypeError naming ``where``."""
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, np.bool_):
        return bool(value)
    if isinstance(value, (numbers.Integral, np.integer)):
        return int(value)
    if isinstance(value, (numbers.Real, np.floating)):
        f = float(value)
        if not math.isfinite(f):
            raise ValueError(f"{where} is {f!r}; only finite numbers can be stored in JSON")
        return f
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if isinstance(value, np.ndarray):
        return jsonable(value.tolist(), where)
    if isinstance(value, Mapping):
        out = {}
        for key, item in value.items():
            if not isinstance(key, str):
                raise TypeError(f"{where} has the key {key!r} ({describe(key)}); JSON keys must "
                                f"be strings")
            out[key] = jsonable(item, f"{where}[{key!r}]")
        return out
    if isinstance(value, (list, tuple)):
        return [jsonable(item, f"{where}[{i}]") for i, item in enumerate(value)]
    raise TypeError(
        f"{where} ({describe(value)}) cannot be stored in JSON; use str, int, float, bool, "
        f"None, lists and dicts with string keys")
