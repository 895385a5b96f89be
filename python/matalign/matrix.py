"""The model × model alignment matrix of M embedding spaces (DESIGN.md §1.1, §1.2, §3).

:func:`alignment_matrix` compares every pair of M models over the same N structures and returns
an :class:`AlignmentMatrix`. It never loops over pairs where that would repeat work:

- **graph metrics** (``cknna``, ``mutual_knn``): one kNN graph per model, then every pair from
  the graphs in O(N·k) each (M searches plus M² cheap comparisons);
- **global metrics** (``dcor`` and RBF ``cka``): one fused pass of the engine's PairSums reducer
  over the M spaces; each tile computes the M models' tiles once and all M(M+1)/2 products.
  Linear ``cka`` runs in feature space with one streaming pass over the rows of all M models;
- **information imbalance**: one kNN search per model, then one RankCount pass per target
  space b that ranks the nearest neighbours of *every* source model a at once;
- **intrinsic dimension**: one TwoNN estimate per model.

Every entry equals the corresponding pairwise call (``ma.cknna``, ``ma.mutual_knn``,
``ma.cka``, ``ma.distance_correlation``, ``ma.information_imbalance``) up to floating-point
summation order, with one documented exception: the fused global pass needs one dtype, so when
the models mix float32 and float64 the float32 ones are widened to float64 for ``dcor`` and
RBF ``cka`` (exact, a copy); an entry between two float32 models is then computed in float64.
"""

from __future__ import annotations

import contextlib
import json
import math
import numbers
import os
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from . import _core
from . import _memory
from ._io import atomic_write_text
from ._progress import progress_callback
from ._validate import check_same_structures
from ._validate import (check_threads, as_matrix, check_bool, check_choice, check_fraction, check_int,
                        check_k, check_progress, describe)
from .knn import METRICS as KNN_METRICS
from .knn import KnnGraph, _self_graph, knn
from .metrics._global import block_rows, column_stats, constant_error, is_constant, too_few_rows
from .metrics.dcor import ZERO_VARIANCE_RTOL, _dcov2_u, _dcov2_v
from .metrics.imbalance import _ranks
from .metrics.intrinsic import METHODS as ID_METHODS
from .metrics.intrinsic import intrinsic_dimension
from .metrics.kernel_alignment import (KERNELS, MEDIAN_PAIRS, _check_sigma_value, _hsic0,
                                       _hsic1, _pair_distances, _ratio, _sample_pairs)

__all__ = ["alignment_matrix", "AlignmentMatrix"]

PAIR_METRICS = ("cknna", "mutual_knn", "cka", "dcor", "information_imbalance")
MODEL_METRICS = ("intrinsic_dimension",)
ALL_METRICS = PAIR_METRICS + MODEL_METRICS
DEFAULT_METRICS = ("cknna", "mutual_knn", "cka", "dcor")
GRAPH_METRICS = ("cknna", "mutual_knn")
_ALIASES = {"distance_correlation": "dcor", "ii": "information_imbalance",
            "imbalance": "information_imbalance", "id": "intrinsic_dimension",
            "mknn": "mutual_knn", "mutual_knn_overlap": "mutual_knn"}
_IP_METRICS = ("ip", "cosine")

_FILE_FORMAT = "matalign.AlignmentMatrix"
_FILE_VERSION = 1
_REQUIRED_KEYS = ("format", "version", "names", "metrics", "per_model", "params", "metadata")
_PROGRESS_UNITS = 1_000_000
# Float64 accumulators of the linear-CKA pass (the D_a×D_b cross products of the models): above
# this many bytes the model pairs are split into groups, each group one more pass over the rows.
LINEAR_CKA_BYTES = 1 << 30


# ---------------------------------------------------------------------------------------------
# JSON-safe values
# ---------------------------------------------------------------------------------------------


def _jsonable(value, where: str):
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
        return _jsonable(value.tolist(), where)
    if isinstance(value, Mapping):
        out = {}
        for key, item in value.items():
            if not isinstance(key, str):
                raise TypeError(f"{where} has the key {key!r} ({describe(key)}); JSON keys must "
                                f"be strings")
            out[key] = _jsonable(item, f"{where}[{key!r}]")
        return out
    if isinstance(value, (list, tuple)):
        return [_jsonable(item, f"{where}[{i}]") for i, item in enumerate(value)]
    raise TypeError(
        f"{where} ({describe(value)}) cannot be stored in JSON; use str, int, float, bool, "
        f"None, lists and dicts with string keys")


def _square(values, name: str, m: int, where: str) -> np.ndarray:
    try:
        arr = np.array(values, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{where}: metric {name!r} is not a numeric matrix ({exc})") from None
    if arr.shape != (m, m):
        raise ValueError(f"{where}: metric {name!r} must be an ({m}, {m}) matrix (one row and "
                         f"column per model); got shape {arr.shape}")
    if not np.isfinite(arr).all():
        raise ValueError(f"{where}: metric {name!r} holds non-finite values")
    arr.setflags(write=False)
    return arr


def _vector(values, name: str, m: int, where: str) -> np.ndarray:
    try:
        arr = np.array(values, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{where}: per-model metric {name!r} is not numeric ({exc})") from None
    if arr.shape != (m,):
        raise ValueError(f"{where}: per-model metric {name!r} must have one value per model "
                         f"(shape ({m},)); got shape {arr.shape}")
    if not np.isfinite(arr).all():
        raise ValueError(f"{where}: per-model metric {name!r} holds non-finite values")
    arr.setflags(write=False)
    return arr


# ---------------------------------------------------------------------------------------------
# The result
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False, repr=False)
class AlignmentMatrix:
    """Model × model alignment values of M embedding spaces of the same N structures.

    Usually made by :func:`alignment_matrix` or :meth:`load`. The arrays are read-only.

    Parameters
    ----------
    names : list of str
        The M model names, in input order (unique, non-empty).
    metrics : dict of str to array_like, shape (M, M)
        For each pairwise metric, ``metrics[metric][i, j]`` is the value between model
        ``names[i]`` (first argument of the pairwise call) and ``names[j]`` (second). The
        diagonal holds each model compared with itself (1 for cknna, mutual_knn, cka, dcor;
        (k+1)/N for information_imbalance). ``information_imbalance`` and ``cknna`` are not
        symmetric: entry (i, j) is Δ(names[i] → names[j]), resp. ``cknna(X_i, X_j)``.
    per_model : dict of str to array_like, shape (M,), optional
        Per-model values (``intrinsic_dimension``).
    params : dict, optional
        The options of the run (k, eps, unbiased, sigma, seed, matalign version, ...); JSON
        types only.
    metadata : dict of str to dict, optional
        Metadata of each input model (from its ``.metadata`` attribute); JSON types only.
        Missing models get an empty dict.

    Raises
    ------
    TypeError
        If ``names`` are not strings or a parameter/metadata value cannot be stored in JSON.
    ValueError
        For duplicate or empty names, matrices of the wrong shape, non-finite values, unknown
        metric names, or metadata for a model not in ``names``.

    Examples
    --------
    >>> import numpy as np
    >>> import matalign as ma
    >>> m = ma.AlignmentMatrix(["a", "b"], {"cka": [[1.0, 0.25], [0.25, 1.0]]})
    >>> m
    AlignmentMatrix(names=['a', 'b'], metrics=['cka'])
    >>> m.value("cka", "a", "b")
    0.25
    """

    names: list
    metrics: dict
    per_model: dict | None = None
    params: dict | None = None
    metadata: dict | None = None

    def __post_init__(self) -> None:
        where = "AlignmentMatrix"
        names = self.names
        if isinstance(names, str) or not isinstance(names, (list, tuple)):
            raise TypeError(f"{where} names must be a list of str; got {describe(names)}")
        names = list(names)
        for name in names:
            if not isinstance(name, str):
                raise TypeError(f"{where} names must be strings; got {describe(name)} {name!r}")
            if not name:
                raise ValueError(f"{where} names must be non-empty strings; got {name!r}")
        if not names:
            raise ValueError(f"{where} needs at least one model name; got none")
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ValueError(f"{where} names must be unique; repeated: {dup}")
        m = len(names)
        if not isinstance(self.metrics, Mapping):
            raise TypeError(f"{where} metrics must be a dict metric -> (M, M) matrix; got "
                            f"{describe(self.metrics)}")
        per_model = {} if self.per_model is None else self.per_model
        if not isinstance(per_model, Mapping):
            raise TypeError(f"{where} per_model must be a dict metric -> (M,) values; got "
                            f"{describe(per_model)}")
        metrics = {}
        for key, values in self.metrics.items():
            check_choice(key, f"{where} metrics key", PAIR_METRICS)
            metrics[key] = _square(values, key, m, where)
        per = {}
        for key, values in per_model.items():
            check_choice(key, f"{where} per_model key", MODEL_METRICS)
            per[key] = _vector(values, key, m, where)
        params = _jsonable({} if self.params is None else self.params, f"{where} params")
        if not isinstance(params, dict):
            raise TypeError(f"{where} params must be a dict; got {describe(self.params)}")
        meta_in = {} if self.metadata is None else self.metadata
        if not isinstance(meta_in, Mapping):
            raise TypeError(f"{where} metadata must be a dict name -> dict; got "
                            f"{describe(meta_in)}")
        unknown = [key for key in meta_in if key not in names]
        if unknown:
            raise ValueError(f"{where} metadata names models that are not in names: {unknown}; "
                             f"models: {names}")
        metadata = {}
        for name in names:
            item = meta_in.get(name)
            item = {} if item is None else item
            if not isinstance(item, Mapping):
                raise TypeError(f"{where} metadata[{name!r}] must be a dict; got "
                                f"{describe(item)}")
            metadata[name] = _jsonable(item, f"{where} metadata[{name!r}]")
        object.__setattr__(self, "names", names)
        object.__setattr__(self, "metrics", metrics)
        object.__setattr__(self, "per_model", per)
        object.__setattr__(self, "params", params)
        object.__setattr__(self, "metadata", metadata)

    def __repr__(self) -> str:
        listed = list(self.metrics) + list(self.per_model)
        return f"AlignmentMatrix(names={self.names!r}, metrics={listed!r})"

    @property
    def metric_names(self) -> list:
        """All metrics held: the pairwise ones, then the per-model ones."""
        return list(self.metrics) + list(self.per_model)

    def _index(self, name, what: str) -> int:
        if not isinstance(name, str) or name not in self.names:
            valid = ", ".join(repr(n) for n in self.names)
            raise ValueError(f"{what} must be one of the models {valid}; got {name!r}")
        return self.names.index(name)

    def value(self, metric: str, a: str, b: str | None = None) -> float:
        """The value of ``metric`` between models ``a`` and ``b`` (or of model ``a`` alone).

        Parameters
        ----------
        metric : str
            A metric held by this matrix (see :attr:`metric_names`).
        a : str
            First model: the first argument of the pairwise call; the source of
            ``information_imbalance`` (the value is Δ(a → b)).
        b : str, optional
            Second model. Required for pairwise metrics; for a per-model metric
            (``intrinsic_dimension``) leave it out or pass ``b == a``.

        Returns
        -------
        float

        Raises
        ------
        ValueError
            For a metric or model this matrix does not hold (the message lists the valid
            ones), a missing ``b`` for a pairwise metric, or ``b != a`` for a per-model metric.

        Examples
        --------
        >>> import matalign as ma
        >>> m = ma.AlignmentMatrix(["a", "b"], {"information_imbalance": [[0.1, 0.2],
        ...                                                               [0.7, 0.1]]},
        ...                        per_model={"intrinsic_dimension": [2.0, 3.5]})
        >>> m.value("information_imbalance", "b", "a")   # Δ(b → a)
        0.7
        >>> m.value("intrinsic_dimension", "b")
        3.5
        """
        if not isinstance(metric, str) or metric not in self.metric_names:
            valid = ", ".join(repr(k) for k in self.metric_names)
            hint = ""
            if isinstance(metric, str) and _ALIASES.get(metric) in self.metric_names:
                hint = f" (did you mean {_ALIASES[metric]!r}?)"
            raise ValueError(f"metric must be one of the metrics of this matrix: {valid}; got "
                             f"{metric!r}{hint}")
        i = self._index(a, "a")
        if metric in self.per_model:
            if b is not None and self._index(b, "b") != i:
                raise ValueError(f"{metric!r} is a per-model value: pass one model (b=None) "
                                 f"or b == a; got a={a!r}, b={b!r}")
            return float(self.per_model[metric][i])
        if b is None:
            raise ValueError(f"{metric!r} is a pairwise metric: pass two models, "
                             f"value({metric!r}, a, b)")
        return float(self.metrics[metric][i, self._index(b, "b")])

    def _rows(self):
        for metric, arr in self.metrics.items():
            for i, a in enumerate(self.names):
                for j, b in enumerate(self.names):
                    yield metric, a, b, float(arr[i, j])
        for metric, arr in self.per_model.items():
            for i, a in enumerate(self.names):
                yield metric, a, a, float(arr[i])

    def to_pandas(self):
        """The values as a long table with columns ``metric``, ``a``, ``b``, ``value``.

        Pairwise metrics give M² rows each (diagonal included, row order: metric, then a, then
        b as in :attr:`names`); per-model metrics give M rows with ``b == a``.

        Returns
        -------
        pandas.DataFrame

        Raises
        ------
        ImportError
            If pandas is not installed (``pip install pandas``).

        Examples
        --------
        >>> import matalign as ma
        >>> m = ma.AlignmentMatrix(["a", "b"], {"cka": [[1.0, 0.25], [0.25, 1.0]]})
        >>> try:
        ...     table = m.to_pandas()
        ... except ImportError:
        ...     table = None
        >>> table is None or list(table.columns) == ["metric", "a", "b", "value"]
        True
        """
        try:
            import pandas as pd
        except ImportError as exc:
            raise ImportError(
                "AlignmentMatrix.to_pandas needs pandas, which is not installed: "
                "pip install pandas (or use AlignmentMatrix.to_dict())") from exc
        rows = list(self._rows())
        return pd.DataFrame({
            "metric": [r[0] for r in rows],
            "a": [r[1] for r in rows],
            "b": [r[2] for r in rows],
            "value": np.array([r[3] for r in rows], dtype=np.float64),
        })

    def to_dict(self) -> dict:
        """A JSON-ready dict of everything held (the content of :meth:`save`).

        Returns
        -------
        dict
            Keys ``format``, ``version``, ``names``, ``metrics`` (metric -> M×M nested lists),
            ``per_model`` (metric -> list of M), ``params`` and ``metadata``.

        Examples
        --------
        >>> import matalign as ma
        >>> m = ma.AlignmentMatrix(["a", "b"], {"cka": [[1.0, 0.25], [0.25, 1.0]]})
        >>> m.to_dict()["metrics"]
        {'cka': [[1.0, 0.25], [0.25, 1.0]]}
        >>> ma.AlignmentMatrix.from_dict(m.to_dict()).value("cka", "b", "a")
        0.25
        """
        return {
            "format": _FILE_FORMAT,
            "version": _FILE_VERSION,
            "names": list(self.names),
            "metrics": {key: arr.tolist() for key, arr in self.metrics.items()},
            "per_model": {key: arr.tolist() for key, arr in self.per_model.items()},
            "params": json.loads(json.dumps(self.params)),
            "metadata": json.loads(json.dumps(self.metadata)),
        }

    @classmethod
    def from_dict(cls, data) -> "AlignmentMatrix":
        """Rebuild a matrix from :meth:`to_dict` output, checking every field.

        Parameters
        ----------
        data : dict
            As returned by :meth:`to_dict` (or read from a file written by :meth:`save`).

        Returns
        -------
        AlignmentMatrix

        Raises
        ------
        ValueError
            If keys are missing, the format or version is not supported, or a field is
            invalid (the message says which).

        Examples
        --------
        >>> import matalign as ma
        >>> m = ma.AlignmentMatrix.from_dict({
        ...     "format": "matalign.AlignmentMatrix", "version": 1, "names": ["a", "b"],
        ...     "metrics": {"dcor": [[1.0, 0.5], [0.5, 1.0]]}, "per_model": {},
        ...     "params": {}, "metadata": {}})
        >>> m.value("dcor", "a", "b")
        0.5
        """
        return cls._from_dict(data, "AlignmentMatrix.from_dict")

    @classmethod
    def _from_dict(cls, data, where: str) -> "AlignmentMatrix":
        if not isinstance(data, Mapping):
            raise ValueError(f"{where}: expected a JSON object (dict); got {describe(data)}")
        missing = [key for key in _REQUIRED_KEYS if key not in data]
        if missing:
            raise ValueError(f"{where}: missing keys {missing}")
        if data["format"] != _FILE_FORMAT:
            raise ValueError(f"{where}: format is {data['format']!r}, expected {_FILE_FORMAT!r}")
        version = data["version"]
        if isinstance(version, bool) or not isinstance(version, int) or not \
                1 <= version <= _FILE_VERSION:
            raise ValueError(f"{where}: unsupported version {version!r} (this matalign reads "
                             f"1..{_FILE_VERSION})")
        for key in ("metrics", "per_model", "params", "metadata"):
            if not isinstance(data[key], Mapping):
                raise ValueError(f"{where}: {key!r} must be a JSON object; got "
                                 f"{describe(data[key])}")
        try:
            return cls(data["names"], data["metrics"], data["per_model"], data["params"],
                       data["metadata"])
        except (TypeError, ValueError) as exc:
            raise ValueError(f"{where}: {exc}") from exc

    def save(self, path) -> Path:
        """Write the matrix to a JSON file (no pickle), atomically.

        The file is written to ``<path>.tmp`` and then renamed over ``path`` (``os.replace``),
        so a crash never leaves a half-written file behind. Floats are written with full
        precision: :meth:`load` gives back the same values bit for bit.

        Parameters
        ----------
        path : str or os.PathLike
            Destination file (conventionally ``.json``); its folder must exist.

        Returns
        -------
        pathlib.Path
            The file written.

        Raises
        ------
        OSError
            If the file cannot be written.

        Examples
        --------
        >>> import os, tempfile
        >>> import matalign as ma
        >>> m = ma.AlignmentMatrix(["a", "b"], {"cka": [[1.0, 0.25], [0.25, 1.0]]})
        >>> with tempfile.TemporaryDirectory() as folder:
        ...     path = m.save(os.path.join(folder, "matrix.json"))
        ...     print(path.name, ma.AlignmentMatrix.load(path).value("cka", "a", "b"))
        matrix.json 0.25
        """
        path = Path(os.fspath(path))
        text = json.dumps(self.to_dict(), indent=1, allow_nan=False)
        atomic_write_text(path, text + "\n")
        return path

    @classmethod
    def load(cls, path) -> "AlignmentMatrix":
        """Read a matrix written by :meth:`save`.

        Parameters
        ----------
        path : str or os.PathLike
            A JSON file from :meth:`save`.

        Returns
        -------
        AlignmentMatrix

        Raises
        ------
        FileNotFoundError
            If the file does not exist.
        ValueError
            If the file is not valid JSON or not a valid matrix file (missing keys, wrong
            shapes, ...); the message names the file.

        Examples
        --------
        >>> import os, tempfile
        >>> import numpy as np
        >>> import matalign as ma
        >>> rng = np.random.default_rng(0)
        >>> spaces = {"a": rng.normal(size=(50, 3)), "b": rng.normal(size=(50, 4))}
        >>> m = ma.alignment_matrix(spaces, metrics=["dcor"])
        >>> with tempfile.TemporaryDirectory() as folder:
        ...     again = ma.AlignmentMatrix.load(m.save(os.path.join(folder, "m.json")))
        >>> again.value("dcor", "a", "b") == m.value("dcor", "a", "b")
        True
        """
        path = Path(os.fspath(path))
        if not path.exists():
            raise FileNotFoundError(f"AlignmentMatrix file not found: {str(path)!r}")
        where = f"{str(path)!r} is not a valid matalign AlignmentMatrix file"
        try:
            with open(path, encoding="utf-8") as f:
                data = json.load(f)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise ValueError(f"{where}: it is not valid JSON ({exc}); was it written by "
                             f"AlignmentMatrix.save?") from exc
        return cls._from_dict(data, where)


# ---------------------------------------------------------------------------------------------
# Inputs and options
# ---------------------------------------------------------------------------------------------


def _parse_metrics(metrics) -> list:
    if isinstance(metrics, str):
        metrics = [metrics]
    try:
        items = list(metrics)
    except TypeError:
        raise TypeError(f"metrics must be a list of metric names; got {describe(metrics)}") \
            from None
    if not items:
        raise ValueError(f"metrics is empty; pass at least one of "
                         f"{', '.join(repr(m) for m in ALL_METRICS)}")
    out = []
    valid = ", ".join(repr(m) for m in ALL_METRICS)
    for item in items:
        if not isinstance(item, str) or item not in ALL_METRICS:
            hint = ""
            if isinstance(item, str):
                alias = _ALIASES.get(item.lower(), item.lower() if item.lower() in ALL_METRICS
                                     else None)
                if alias is not None:
                    hint = f" (did you mean {alias!r}?)"
            raise ValueError(f"unknown metric {item!r}: metrics must be among {valid}{hint}")
        if item not in out:
            out.append(item)
    return out


def _resolve_input(name: str, obj):
    """(array or KnnGraph, metadata dict) of one input model."""
    label = f"spaces[{name!r}]"
    metadata = {}
    if isinstance(obj, KnnGraph):
        if not obj.self_excluded:
            raise ValueError(
                f"{label} is a KnnGraph of separate queries (self_excluded=False); graph "
                f"metrics need a self graph: build it with ma.knn(X, k=...) without queries")
        return obj, metadata
    if not isinstance(obj, np.ndarray) and hasattr(obj, "embeddings"):
        raw_meta = getattr(obj, "metadata", None)
        if raw_meta is not None:
            if not isinstance(raw_meta, Mapping):
                raise TypeError(f"{label}.metadata must be a dict (or None); got "
                                f"{describe(raw_meta)}")
            metadata = _jsonable(raw_meta, f"{label}.metadata")
        return as_matrix(obj.embeddings, f"{label}.embeddings"), metadata
    return as_matrix(obj, label), metadata


def _parse_sigmas(sigma, names):
    """Per-model RBF bandwidth: a number or "median" per model."""
    if sigma is None:
        return ["median"] * len(names)
    if isinstance(sigma, Mapping):
        unknown = [key for key in sigma if key not in names]
        if unknown:
            raise ValueError(f"sigma names models that are not in spaces: {unknown}; models: "
                             f"{list(names)}")
        out = []
        for name in names:
            value = sigma.get(name)
            out.append("median" if value is None
                       else _check_sigma_value(value, f"sigma[{name!r}]"))
        return out
    value = _check_sigma_value(sigma, "sigma")
    return [value] * len(names)


def _check_eps(eps) -> float:
    if isinstance(eps, (bool, np.bool_)) or not isinstance(eps, numbers.Real):
        raise TypeError(f"eps must be a real number; got {describe(eps)} {eps!r}")
    eps = float(eps)
    if not (math.isfinite(eps) and eps >= 0.0):
        raise ValueError(f"eps must be a finite number >= 0; got {eps!r}")
    return eps


# ---------------------------------------------------------------------------------------------
# Progress over the whole job
# ---------------------------------------------------------------------------------------------


class _Job:
    """Maps the stages of one run (each reporting its own (done, total)) onto one monotone
    progress callback over the whole job, in units of 1/1e6 of the estimated work."""

    def __init__(self, callback, total_work: float):
        self.callback = callback
        self.total = max(float(total_work), 1.0)
        self.done = 0.0
        self.last = -1

    def _emit(self, work: float) -> None:
        units = int(_PROGRESS_UNITS * min(max(work / self.total, 0.0), 1.0))
        if units > self.last:
            self.last = units
            self.callback(units, _PROGRESS_UNITS)

    @contextlib.contextmanager
    def stage(self, work: float):
        """Yield the callback for one stage of the given estimated work (None without a bar)."""
        start = self.done
        if self.callback is None:
            yield None
        else:
            def report(done, total):
                frac = done / total if total > 0 else 1.0
                self._emit(start + work * min(max(frac, 0.0), 1.0))
            yield report
        self.done = start + work
        if self.callback is not None:
            self._emit(self.done)


# ---------------------------------------------------------------------------------------------
# The computations
# ---------------------------------------------------------------------------------------------


def _graph_metrics(inputs, labels, wanted, k, knn_metric, eps, n_threads, job, work):
    """cknna and mutual_knn matrices from one (or two) kNN graphs per model."""
    m = len(inputs)
    ip_graphs, mk_graphs = [None] * m, [None] * m
    for i, obj in enumerate(inputs):
        search = 0.0 if isinstance(obj, KnnGraph) else work["knn"][i]
        if "cknna" in wanted:
            with job.stage(search) as cb:
                ip_graphs[i] = _self_graph(obj, labels[i], k, "ip", n_threads, progress=cb)
        if "mutual_knn" in wanted:
            if ip_graphs[i] is not None and (isinstance(obj, KnnGraph) or knn_metric == "ip"):
                mk_graphs[i] = ip_graphs[i]  # the same graph: searched once
            else:
                with job.stage(search) as cb:
                    mk_graphs[i] = _self_graph(obj, labels[i], k, knn_metric, n_threads,
                                                progress=cb)
    out = {}
    with job.stage(work["graph_pairs"]):
        if "mutual_knn" in wanted:
            idx = [np.ascontiguousarray(g.indices) for g in mk_graphs]
            mat = np.empty((m, m))
            for a in range(m):
                for b in range(a, m):
                    # |knn_a(i) ∩ knn_b(i)| is symmetric, so is the mean.
                    mat[a, b] = mat[b, a] = float(_core.mutual_knn(idx[a], idx[b],
                                                                   n_threads=n_threads))
            out["mutual_knn"] = mat
        if "cknna" in wanted:
            idx = [np.ascontiguousarray(g.indices) for g in ip_graphs]
            f32 = [np.ascontiguousarray(g.values) if g.values.dtype == np.float32 else None
                   for g in ip_graphs]
            f64 = [np.ascontiguousarray(g.values, dtype=np.float64) for g in ip_graphs]
            mat = np.empty((m, m))
            for a in range(m):
                for b in range(m):
                    # CKNNA is not symmetric (Σ(ÃB̃) pairs column sums of one masked kernel with
                    # row sums of the other), so both orders are computed: O(N·k) each.
                    try:
                        if f32[a] is not None and f32[b] is not None:
                            res = _core.cknna_f32(idx[a], f32[a], idx[b], f32[b], eps,
                                                  n_threads=n_threads)
                        else:
                            res = _core.cknna_f64(idx[a], f64[a], idx[b], f64[b], eps,
                                                  n_threads=n_threads)
                    except ValueError as exc:
                        raise ValueError(f"cknna of {labels[a]} with {labels[b]}: {exc}") \
                            from exc
                    mat[a, b] = float(res[0])
            out["cknna"] = mat
    return out


def _global_arrays(arrays):
    """The M spaces in one dtype for the fused engine pass: float32 when all are float32,
    otherwise float64 (float32 inputs widened, exactly)."""
    if all(A.dtype == np.float32 for A in arrays):
        return arrays, np.float32
    return [A if A.dtype == np.float64 else A.astype(np.float64) for A in arrays], np.float64


def _pair_sums_many(spaces, fn: str, gamma, n_threads: int, callback):
    """ONE engine pass over all M spaces (of one dtype, see _global_arrays): rowsums (M, N),
    cross (M, M), float64, pairs i != j."""
    core = _core.pair_sums_f32 if spaces[0].dtype == np.float32 else _core.pair_sums_f64
    gamma = [] if gamma is None else [float(g) for g in gamma]
    rowsums, cross = core(spaces, fn, gamma, n_threads=n_threads, progress=callback)
    return np.asarray(rowsums, dtype=np.float64), np.asarray(cross, dtype=np.float64)


def _dcor_matrix(spaces, labels, unbiased: bool, n_threads: int, callback) -> np.ndarray:
    n = spaces[0].shape[0]
    m = len(spaces)
    r, c = _pair_sums_many(spaces, "distance", None, n_threads, callback)
    totals = r.sum(axis=1)
    dcov2 = _dcov2_u if unbiased else _dcov2_v
    v = np.empty((m, m))
    for a in range(m):
        for b in range(a, m):
            value, scale = dcov2(float(c[a, b]), float(r[a] @ r[b]),
                                 float(totals[a] * totals[b]), n)
            if a == b and not value > ZERO_VARIANCE_RTOL * scale:
                raise ValueError(
                    f"{labels[a]} has zero distance variance (dCov² = {value:.3g}, numerically "
                    f"0 next to its terms of size {scale:.3g}), so its distance correlation "
                    f"with any model is undefined (0/0): its rows are (nearly) equidistant")
            v[a, b] = v[b, a] = value
    out = np.empty((m, m))
    for a in range(m):
        for b in range(a, m):
            dcor2 = v[a, b] / np.sqrt(v[a, a] * v[b, b])
            value = float(dcor2) if unbiased else float(np.sqrt(min(max(dcor2, 0.0), 1.0)))
            out[a, b] = out[b, a] = value
    return out


def _cka_from_hsic(h, labels, what: str) -> np.ndarray:
    """CKA matrix from the (value, magnitude) HSIC pairs h[a][b] (a <= b filled)."""
    m = len(labels)
    out = np.empty((m, m))
    for a in range(m):
        try:
            out[a, a] = _ratio(h[a][a], h[a][a], h[a][a], what)
        except ValueError as exc:
            raise ValueError(f"{labels[a]} cannot be compared by cka: {exc}") from exc
    for a in range(m):
        for b in range(a + 1, m):
            out[a, b] = out[b, a] = _ratio(h[a][b], h[a][a], h[b][b], what)
    return out


def _rbf_cka_matrix(arrays, spaces, labels, sigmas, unbiased: bool, n_threads: int, seed: int,
                    callback):
    n = arrays[0].shape[0]
    m = len(arrays)
    resolved = []
    pairs = None
    for A, s, label in zip(arrays, sigmas, labels):
        if s == "median":
            if pairs is None:
                pairs = _sample_pairs(n, MEDIAN_PAIRS, seed)
            s = float(np.median(_pair_distances(A, *pairs)))
            if not s > 0.0:
                raise ValueError(
                    f"sigma='median' gives 0 for {label}: more than half of the "
                    f"sampled pairs of rows are duplicates; pass sigma explicitly")
        resolved.append(float(s))
    gamma = [1.0 / (2.0 * s * s) for s in resolved]
    r, c = _pair_sums_many(spaces, "rbf", gamma, n_threads, callback)
    h = [[None] * m for _ in range(m)]
    if unbiased:
        # Zero-diagonal kernels: exactly what the reducer sums (i != j).
        s = r.sum(axis=1)
        for a in range(m):
            for b in range(a, m):
                h[a][b] = _hsic1(c[a, b], float(s[a]), float(s[b]), float(r[a] @ r[b]), n)
        return _cka_from_hsic(h, labels, "unbiased"), resolved
    # Full kernels: the diagonal k(x_i, x_i) = 1 is added back to every sum.
    rk = r + 1.0
    s = rk.sum(axis=1)
    for a in range(m):
        for b in range(a, m):
            h[a][b] = _hsic0(c[a, b] + n, float(s[a]), float(s[b]), float(rk[a] @ rk[b]), n)
    return _cka_from_hsic(h, labels, "biased"), resolved


def _linear_groups(dims) -> list:
    """The model pairs (a <= b) split into groups whose D_a×D_b float64 accumulators fit in
    LINEAR_CKA_BYTES together (a pair larger than that alone is a group of its own)."""
    groups, current, size = [], [], 0
    m = len(dims)
    for a in range(m):
        for b in range(a, m):
            cost = 8 * dims[a] * dims[b]
            if current and size + cost > LINEAR_CKA_BYTES:
                groups.append(current)
                current, size = [], 0
            current.append((a, b))
            size += cost
    if current:
        groups.append(current)
    return groups


def _linear_cka_matrix(arrays, labels, unbiased: bool, callback) -> np.ndarray:
    """Linear CKA of every pair in feature space, as ``cka(kernel="linear")`` computes it, with
    the rows of all models streamed together: pass 1 (column sums, constancy) once for all
    models, pass 2 accumulates every pair's X̄_aᵀX̄_b in one sweep over the rows (split into a
    few sweeps only when the accumulators exceed LINEAR_CKA_BYTES)."""
    n = arrays[0].shape[0]
    m = len(arrays)
    dims = [A.shape[1] for A in arrays]
    groups = _linear_groups(dims)
    total = n * (1 + len(groups))
    step_all = block_rows(*dims)
    means = []
    for a, A in enumerate(arrays):
        sums, constant = column_stats(A, step_all)
        if constant:
            raise constant_error(labels[a], n, "CKA")
        means.append(sums / n)
    if callback is not None:
        callback(n, total)
    h = [[None] * m for _ in range(m)]
    for g, group in enumerate(groups):
        models = sorted({a for pair in group for a in pair})
        step = block_rows(*(dims[a] for a in models))
        cross = {pair: np.zeros((dims[pair[0]], dims[pair[1]])) for pair in group}
        if unbiased:
            sc = {a: np.zeros(dims[a]) for a in models}            # Σ x̄_i (centred)
            nsum = dict.fromkeys(models, 0.0)                      # Σ ‖x̄_i‖²
            # u[(a, b)] = Σ_i x̄_a,i ‖x̄_b,i‖² for both orders of each pair (and a == b).
            u = {}
            for a, b in group:
                u[(a, b)] = np.zeros(dims[a])
                u[(b, a)] = np.zeros(dims[b])
            nn = dict.fromkeys(group, 0.0)                         # Σ_i ‖x̄_a,i‖² ‖x̄_b,i‖²
        for start in range(0, n, step):
            blocks = {a: np.asarray(arrays[a][start:start + step], dtype=np.float64) - means[a]
                      for a in models}
            for a, b in group:
                cross[(a, b)] += blocks[a].T @ blocks[b]
            if unbiased:
                norms = {a: np.einsum("ij,ij->i", blocks[a], blocks[a]) for a in models}
                for a in models:
                    sc[a] += blocks[a].sum(axis=0)
                    nsum[a] += float(norms[a].sum())
                for key in u:
                    a, b = key
                    u[key] += norms[b] @ blocks[a]
                for a, b in group:
                    nn[(a, b)] += float(norms[a] @ norms[b])
            if callback is not None:
                callback(n * (1 + g) + min(n, start + step), total)
        for a, b in group:
            f = float(np.sum(cross[(a, b)] * cross[(a, b)]))
            if not unbiased:
                # HSIC₀ ∝ ‖X̄_aᵀX̄_b‖²_F; the common factor 1/(N−1)² cancels in the ratio.
                h[a][b] = (f, f)
                continue
            # Zero-diagonal K̃ = X̄X̄ᵀ: Σ K̃∘L̃ = ‖X̄_aᵀX̄_b‖² − Σ‖x_i‖²‖y_i‖²,
            # ΣK̃ = ‖Σx̄‖² − Σ‖x̄_i‖², and Σ_i rowsum_i(K̃)·rowsum_i(L̃) from the products below
            # (the sums of kernel_alignment._linear, for every pair at once).
            s_a = float(sc[a] @ sc[a]) - nsum[a]
            s_b = float(sc[b] @ sc[b]) - nsum[b]
            q0 = float(sc[a] @ cross[(a, b)] @ sc[b])
            if a == b:
                q1 = 2.0 * float(sc[a] @ u[(a, a)])
                h[a][b] = _hsic1(f - nn[(a, b)], s_a, s_b, q0 - q1 + nn[(a, b)], n,
                                 mag1=f + nn[(a, b)], mag3=abs(q0) + abs(q1) + nn[(a, b)])
            else:
                q1, q2 = float(sc[a] @ u[(a, b)]), float(sc[b] @ u[(b, a)])
                h[a][b] = _hsic1(f - nn[(a, b)], s_a, s_b, q0 - q1 - q2 + nn[(a, b)], n)
        del cross
    return _cka_from_hsic(h, labels, "unbiased" if unbiased else "biased")


def _imbalance_matrix(arrays, k: int, n_threads: int, job, work) -> np.ndarray:
    """Δ(a → b) for every ordered pair: one l2 kNN search per model, then one RankCount pass
    per target space b over the concatenated neighbours of all M source models."""
    n = arrays[0].shape[0]
    m = len(arrays)
    targets = []
    for a, A in enumerate(arrays):
        with job.stage(work["ii_knn"][a]) as cb:
            targets.append(knn(A, k=k, metric="l2", n_threads=n_threads, progress=cb).indices)
    columns = np.concatenate(targets, axis=1)  # (N, M·k): model a's neighbours in block a
    out = np.empty((m, m))
    for b, B in enumerate(arrays):
        with job.stage(work["ii_rank"][b]) as cb:
            ranks = _ranks(B, columns, n_threads, cb)
        for a in range(m):
            block = np.ascontiguousarray(ranks[:, a * k:(a + 1) * k])
            out[a, b] = 2.0 * float(block.mean(dtype=np.float64)) / n
    return out


def _memory_need(inputs, n, dims, wanted, k, imbalance_k, cka_kernel, knn_metric,
                 n_threads) -> int:
    """Peak host bytes of the job: the largest of its stages (they run one after another)."""
    nt = _memory.threads(n_threads)
    arrays = [obj for obj in inputs if not isinstance(obj, KnnGraph)]
    m = len(inputs)
    stages = [0]
    if set(wanted) & set(GRAPH_METRICS):
        searches = ("cknna" in wanted) + ("mutual_knn" in wanted and
                                          ("cknna" not in wanted or knn_metric != "ip"))
        held = searches * sum(_memory.graph_bytes(n, k, A.dtype.itemsize) for A in arrays)
        held += 2 * m * n * k * 8  # contiguous int64 / float64 copies of the graphs' arrays
        engine = [_memory.cknna_bytes(n, k)]
        engine += [_memory.knn_bytes(n, n, A.shape[1], k, A.dtype.itemsize, n_threads=nt)
                   for A in arrays]
        stages.append(held + max(engine))
    if arrays and ("dcor" in wanted or ("cka" in wanted and cka_kernel == "rbf")):
        mixed = len({A.dtype for A in arrays}) > 1
        widened = sum(n * A.shape[1] * 8 for A in arrays if mixed and A.dtype == np.float32)
        itemsize = 8 if mixed else arrays[0].dtype.itemsize
        stages.append(_memory.pair_sums_bytes(n, dims, itemsize, n_threads=nt,
                                              widened=widened))
    if arrays and "cka" in wanted and cka_kernel == "linear":
        pairs = sum(8 * a * b for i, a in enumerate(dims) for b in dims[i:])
        blocks = 4 * min(n, block_rows(*dims)) * sum(dims) * 8
        stages.append(min(pairs, LINEAR_CKA_BYTES) + blocks)
    if arrays and "information_imbalance" in wanted:
        held = 2 * m * n * imbalance_k * 8           # the M targets and their concatenation
        engine = [_memory.knn_bytes(n, n, A.shape[1], imbalance_k, A.dtype.itemsize,
                                    metric="l2", n_threads=nt) for A in arrays]
        engine += [_memory.rank_count_bytes(n, A.shape[1], m * imbalance_k, A.dtype.itemsize,
                                            n_threads=nt) for A in arrays]
        stages.append(held + max(engine))
    if arrays and "intrinsic_dimension" in wanted:
        stages.append(max(_memory.knn_bytes(n, n, A.shape[1], 2, A.dtype.itemsize,
                                            metric="l2", rescore=True, n_threads=nt)
                          for A in arrays) + n * 2 * 8)
    return max(stages)


def _work_estimate(n, dims, wanted, k, imbalance_k, cka_kernel, knn_metric, graphs):
    """Rough operation counts of each stage (for the progress bar only) and their total."""
    m = len(dims)
    nn2 = float(n) * n
    searches = ("cknna" in wanted) + ("mutual_knn" in wanted
                                      and ("cknna" not in wanted or knn_metric != "ip"))
    work = {
        "knn": [nn2 * d for d in dims],
        "graph_pairs": float(n) * k * m * m if set(wanted) & set(GRAPH_METRICS) else 0.0,
        "dcor": nn2 * (sum(dims) + m * m) / 2 if "dcor" in wanted else 0.0,
        "cka": 0.0,
        "ii_knn": [nn2 * d for d in dims],
        "ii_rank": [nn2 * (d + m * imbalance_k) for d in dims],
        "id": [nn2 * d for d in dims],
    }
    if "cka" in wanted:
        if cka_kernel == "rbf":
            work["cka"] = nn2 * (sum(dims) + m * m) / 2
        else:
            work["cka"] = float(n) * sum(a * b for a in dims for b in dims)
    total = work["graph_pairs"] + work["dcor"] + work["cka"]
    total += searches * sum(w for w, g in zip(work["knn"], graphs) if not g)
    if "information_imbalance" in wanted:
        total += sum(work["ii_knn"]) + sum(work["ii_rank"])
    if "intrinsic_dimension" in wanted:
        total += sum(work["id"])
    return work, total


# ---------------------------------------------------------------------------------------------
# The public function
# ---------------------------------------------------------------------------------------------


def alignment_matrix(spaces, *, metrics=DEFAULT_METRICS, k=10, knn_metric="ip", eps=0.0,
                     cka_kernel="linear", sigma=None, unbiased=False, imbalance_k=1,
                     id_method="twonn", id_fraction=0.9, n_threads=0, progress=False,
                     seed=0) -> AlignmentMatrix:
    """Compare every pair of M models over the same N structures: the model × model matrix.

    Each entry equals the corresponding pairwise call on the two models' embeddings
    (``ma.cknna(X_a, X_b, k=k, eps=eps)``, ``ma.mutual_knn(X_a, X_b, k=k, metric=knn_metric)``,
    ``ma.cka(X_a, X_b, kernel=cka_kernel, sigma=..., unbiased=unbiased, seed=seed)``,
    ``ma.distance_correlation(X_a, X_b, unbiased=unbiased)``,
    ``ma.information_imbalance(X_a, X_b, k=imbalance_k)[0]``, and
    ``ma.intrinsic_dimension(X_a, method=id_method, fraction=id_fraction)`` per model), but the
    work is shared instead of repeated per pair:

    - ``cknna`` and ``mutual_knn``: one kNN graph per model (inner product for cknna,
      ``knn_metric`` for mutual_knn; one graph when they agree), then every pair from the
      graphs in O(N·k);
    - ``dcor`` and ``cka`` with ``cka_kernel="rbf"``: ONE fused engine pass over all pairs of
      rows for all M models (per tile: the M models' distance/kernel tiles once, then all
      M(M+1)/2 products), O(N·M) memory; the two are separate passes when both are asked for
      (different pairwise functions). The pass needs one dtype: if the models mix float32 and
      float64, the float32 ones are widened to float64 (exact; a copy of each), so an entry
      between two float32 models is then computed in float64 rather than float32;
    - ``cka`` (linear): in feature space, one streaming pass over the rows of all models that
      accumulates every pair's X̄_aᵀX̄_b, O(N·(ΣD)²) time and Σ_{a<=b} D_a·D_b float64 memory
      (split into several passes above 1 GiB);
    - ``information_imbalance``: one l2 kNN search per model, then one rank pass per target
      model b that ranks the neighbours of all M source models at once;
    - ``intrinsic_dimension``: TwoNN (or MLE) per model.

    Parameters
    ----------
    spaces : dict of str to array_like (N, D_m), float32 or float64
        The M >= 2 models, by name, in the order of the result. Each value is an embedding
        matrix (NumPy array in any order, ``np.memmap``, CPU DLPack tensor), an object with an
        ``.embeddings`` array-like attribute and optionally a ``.metadata`` dict (an embedding
        store handle), or a :class:`~matalign.KnnGraph` (self graph) for graph-only metrics
        (``cknna`` needs an "ip" or "cosine" graph). Row i of every model is the same
        structure. D may differ between models.
    metrics : list of str, default ("cknna", "mutual_knn", "cka", "dcor")
        Any of ``"cknna"``, ``"mutual_knn"``, ``"cka"``, ``"dcor"`` (distance correlation),
        ``"information_imbalance"`` (asymmetric: entry (a, b) is Δ(a → b)) and
        ``"intrinsic_dimension"`` (one value per model).
    k : int, default 10
        Neighbours per row of the graph metrics, 1..N−1.
    knn_metric : {"ip", "l2", "cosine"}, default "ip"
        kNN metric of ``mutual_knn`` (cknna always uses inner products).
    eps : float, default 0.0
        CKNNA denominator epsilon (1e-6 reproduces the reference code).
    cka_kernel : {"linear", "rbf"}, default "linear"
        CKA kernel.
    sigma : float, "median", None or dict of str to them, default None
        RBF bandwidth (``cka_kernel="rbf"`` only): one value for every model, or a dict
        name -> value (missing models: "median"). ``"median"``/None: the median pairwise
        distance of each model over the pairs sampled with ``seed``, as in :func:`matalign.cka`.
    unbiased : bool, default False
        Unbiased estimators for ``cka`` (HSIC₁) and ``dcor`` (bias-corrected dCor²).
    imbalance_k : int, default 1
        Neighbours per row of ``information_imbalance``, 1..N−1.
    id_method : {"twonn", "mle"}, default "twonn"
        Estimator of ``intrinsic_dimension``.
    id_fraction : float in (0, 1), default 0.9
        TwoNN fit fraction.
    n_threads : int, default 0
        Engine threads; 0 = all cores. (Linear CKA runs on NumPy's BLAS.)
    progress : bool or callable(done, total), default False
        True shows one progress bar over the whole job; a callable receives monotone
        (done, total) in units of 1/1,000,000 of the estimated work.
    seed : int, default 0
        Seed of the pair sample of ``sigma="median"`` (recorded in ``params``).

    Returns
    -------
    AlignmentMatrix
        ``names`` in input order, ``metrics`` (metric -> (M, M) float64; the diagonal is each
        model compared with itself), ``per_model`` (``intrinsic_dimension`` -> (M,)),
        ``params`` (every option, per-model dims and dtypes, N, resolved RBF sigmas, seed,
        matalign version) and ``metadata`` (name -> the input's ``.metadata``).

    Raises
    ------
    TypeError
        If ``spaces`` is not a dict, a name is not a string, a model's dtype is not
        float32/float64 (the message names the model), or an option has the wrong type.
    ValueError
        For fewer than 2 models, an unknown metric (the message lists the valid ones), N
        differing between models (naming the model), NaN/Inf, N too small for a metric, k out
        of range, a KnnGraph input for a metric that needs embeddings, a constant model, or an
        undefined value.

    Examples
    --------
    >>> import numpy as np
    >>> import matalign as ma
    >>> rng = np.random.default_rng(0)
    >>> X = rng.normal(size=(300, 8))
    >>> spaces = {"x": X, "rotated": X @ np.linalg.qr(rng.normal(size=(8, 8)))[0],
    ...           "noise": rng.normal(size=(300, 5))}
    >>> m = ma.alignment_matrix(spaces, metrics=["cka", "dcor", "mutual_knn"], k=10)
    >>> print(f"{m.value('cka', 'x', 'rotated'):.3f} {m.value('cka', 'x', 'noise'):.3f}")
    1.000 0.020
    >>> abs(m.value("dcor", "x", "noise") - ma.distance_correlation(X, spaces["noise"])) < 1e-12
    True
    >>> m.metrics["mutual_knn"].shape
    (3, 3)
    """
    if not isinstance(spaces, Mapping):
        raise TypeError(f"spaces must be a dict of model name -> embeddings, e.g. "
                        f"{{'chgnet': A, 'mace': B}}; got {describe(spaces)}")
    names = list(spaces.keys())
    for name in names:
        if not isinstance(name, str):
            raise TypeError(f"spaces keys must be model names (str); got {describe(name)} "
                            f"{name!r}")
        if not name:
            raise ValueError("spaces keys must be non-empty model names; got ''")
    check_same_structures(list(spaces.items()))
    if len(names) < 2:
        raise ValueError(f"alignment_matrix needs at least 2 models to compare; got "
                         f"{len(names)}{': ' + repr(names[0]) if names else ''}")
    wanted = _parse_metrics(metrics)
    knn_metric = check_choice(knn_metric, "knn_metric", KNN_METRICS)
    eps = _check_eps(eps)
    cka_kernel = check_choice(cka_kernel, "cka_kernel", KERNELS)
    sigmas = _parse_sigmas(sigma, names) if cka_kernel == "rbf" else None
    unbiased = check_bool(unbiased, "unbiased")
    id_method = check_choice(id_method, "id_method", ID_METHODS)
    id_fraction = check_fraction(id_fraction, "id_fraction")
    n_threads = check_threads(n_threads)
    progress = check_progress(progress)
    seed = check_int(seed, "seed", 0)

    labels = [f"spaces[{name!r}]" for name in names]
    inputs, metadata = [], {}
    for name, label in zip(names, labels):
        obj, meta = _resolve_input(name, spaces[name])
        inputs.append(obj)
        metadata[name] = meta
    graphs = [isinstance(obj, KnnGraph) for obj in inputs]
    ns = [obj.n if isinstance(obj, KnnGraph) else obj.shape[0] for obj in inputs]
    for name, label, n_m in zip(names, labels, ns):
        if n_m != ns[0]:
            raise ValueError(
                f"every model must embed the same N structures (row i is the same structure "
                f"in all): {labels[0]} has N={ns[0]} rows but {label} has N={n_m}")
    n = ns[0]

    embedding_metrics = [w for w in wanted if w not in GRAPH_METRICS]
    if embedding_metrics and any(graphs):
        which = [label for label, g in zip(labels, graphs) if g]
        raise ValueError(
            f"{', '.join(which)} {'is a KnnGraph' if len(which) == 1 else 'are KnnGraphs'}, "
            f"but metrics {embedding_metrics} need the embeddings themselves; pass the arrays, "
            f"or restrict metrics to {list(GRAPH_METRICS)}")
    if "cknna" in wanted:
        for label, obj in zip(labels, inputs):
            if isinstance(obj, KnnGraph) and obj.metric not in _IP_METRICS:
                raise ValueError(
                    f"cknna needs inner-product graphs (metric 'ip' or 'cosine'), because its "
                    f"kernel values are the inner products K_ij; {label} is a KnnGraph with "
                    f"metric={obj.metric!r}")

    for label, obj in zip(labels, inputs):
        method = getattr(obj, "method", "exact")
        if isinstance(obj, KnnGraph) and (method != "exact" or obj.recall is not None):
            recall = "unknown" if obj.recall is None else f"{obj.recall:.4f}"
            warnings.warn(
                f"alignment_matrix: {label} is an approximate kNN graph (method={method!r}, "
                f"recall={recall}), so its {', '.join(w for w in wanted)} values are "
                f"approximate too; pass an exact graph or the embeddings for exact values",
                UserWarning, stacklevel=2)

    needs = [(2, "alignment_matrix", "a pair of rows")]
    if "cknna" in wanted:
        needs.append((4, "cknna", "its unbiased HSIC estimator divides by N - 3"))
    if unbiased and ("cka" in wanted or "dcor" in wanted):
        needs.append((4, "unbiased cka/dcor", "the unbiased estimators divide by N - 3"))
    if "intrinsic_dimension" in wanted:
        needs.append((3, "intrinsic_dimension", "TwoNN needs two neighbours per row"))
    minimum, func, why = max(needs, key=lambda t: t[0])
    if n < minimum:
        raise too_few_rows(func, n, minimum, why)
    if set(wanted) & set(GRAPH_METRICS):
        k = check_k(k, n)
    else:
        k = check_int(k, "k", 1)
    if "information_imbalance" in wanted:
        imbalance_k = check_k(imbalance_k, n, name="imbalance_k")
    else:
        imbalance_k = check_int(imbalance_k, "imbalance_k", 1)

    arrays = [None if g else obj for obj, g in zip(inputs, graphs)]
    dims = [obj.shape[1] if not g else obj.k for obj, g in zip(inputs, graphs)]
    need = _memory_need(inputs, n, dims, wanted, k, imbalance_k, cka_kernel, knn_metric,
                        n_threads)
    what = f"alignment_matrix(M={len(names)}, N={n}, metrics={list(wanted)})"
    _memory.check_memory(need, what, advice=(
        "compute fewer metrics per call, pass a smaller k, pass all models in one dtype, or "
        "fewer n_threads"))
    # Constant models fail fast, before any expensive pass.
    if "dcor" in wanted or ("cka" in wanted and cka_kernel == "rbf"):
        for A, label in zip(arrays, labels):
            if is_constant(A):
                raise constant_error(label, n, "the distance correlation" if "dcor" in wanted
                                     else "RBF CKA")

    global_dtype, spaces_global = None, None
    if "dcor" in wanted or ("cka" in wanted and cka_kernel == "rbf"):
        spaces_global, dtype = _global_arrays(arrays)
        global_dtype = np.dtype(dtype).name

    work, total = _work_estimate(n, dims, wanted, k, imbalance_k, cka_kernel, knn_metric, graphs)
    results, per_model = {}, {}
    resolved_sigmas = None
    with progress_callback(progress, f"alignment matrix M={len(names)} N={n}") as callback, \
            _memory.reraise(what, need):
        job = _Job(callback, total)
        if set(wanted) & set(GRAPH_METRICS):
            results.update(_graph_metrics(inputs, labels, wanted, k, knn_metric, eps,
                                          n_threads, job, work))
        if "cka" in wanted:
            with job.stage(work["cka"]) as cb:
                if cka_kernel == "linear":
                    results["cka"] = _linear_cka_matrix(arrays, labels, unbiased, cb)
                else:
                    results["cka"], resolved_sigmas = _rbf_cka_matrix(
                        arrays, spaces_global, labels, sigmas, unbiased, n_threads, seed, cb)
        if "dcor" in wanted:
            with job.stage(work["dcor"]) as cb:
                results["dcor"] = _dcor_matrix(spaces_global, labels, unbiased, n_threads, cb)
        spaces_global = None  # free the widened copies (if any) before the other passes
        if "information_imbalance" in wanted:
            results["information_imbalance"] = _imbalance_matrix(arrays, imbalance_k,
                                                                 n_threads, job, work)
        if "intrinsic_dimension" in wanted:
            values = []
            for a, A in enumerate(arrays):
                with job.stage(work["id"][a]):
                    values.append(intrinsic_dimension(A, method=id_method,
                                                      fraction=id_fraction,
                                                      n_threads=n_threads))
            per_model["intrinsic_dimension"] = np.array(values, dtype=np.float64)

    params = {
        "metrics": list(wanted),
        "n": n,
        "k": k,
        "knn_metric": knn_metric,
        "eps": eps,
        "cka_kernel": cka_kernel,
        "sigma": (None if sigmas is None else
                  dict(zip(names, resolved_sigmas)) if resolved_sigmas is not None else
                  dict(zip(names, sigmas))),
        "unbiased": unbiased,
        "imbalance_k": imbalance_k,
        "id_method": id_method,
        "id_fraction": id_fraction,
        "seed": seed,
        "median_pairs": MEDIAN_PAIRS,
        "global_dtype": global_dtype,
        "inputs": {name: ({"kind": "knn_graph", "k": obj.k, "metric": obj.metric,
                           "method": getattr(obj, "method", "exact"), "recall": obj.recall}
                          if isinstance(obj, KnnGraph) else
                          {"kind": "embeddings", "d": int(obj.shape[1]),
                           "dtype": obj.dtype.name})
                   for name, obj in zip(names, inputs)},
        "matalign_version": _core.build_info()["version"],
    }
    ordered = {w: results[w] for w in wanted if w in results}
    return AlignmentMatrix(names, ordered, per_model, params, metadata)
