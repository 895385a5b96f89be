"""The model × model result type, :class:`AlignmentMatrix`, and its JSON file format."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ._io import atomic_write_text
from ._json import jsonable as _jsonable
from ._validate import check_choice, describe
from .metrics import ALIASES as _ALIASES
from .metrics import MODEL_METRICS, PAIR_METRICS

__all__ = ["AlignmentMatrix"]

_FILE_FORMAT = "matalign.AlignmentMatrix"
_FILE_VERSION = 1
_REQUIRED_KEYS = ("format", "version", "names", "metrics", "per_model", "params", "metadata")


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
