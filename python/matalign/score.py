"""Per-structure disagreement between models on one structure set (OOD scoring).

:func:`score` takes several models' embeddings of the **same** N structures (row i is the same
structure in every model), builds one kNN graph per model (exact, or approximate with
``method="ivf"`` for very large N), and writes one row per structure to a CSV or Parquet file
(chosen by the extension). For every model pair (a, b), in the order the models were given:

- ``local_agreement:a:b``: |knn_a(i) ∩ knn_b(i)| / k, exactly ``ma.local_agreement(A, B, k=k)``;
- ``cknna_row:a:b``: row i's share of CKNNA(a, b), the per-structure contribution to the
  numerator HSIC₁(M∘K, M∘L) over the denominator, so that the column sums to ``ma.cknna(A, B)``
  (docs/METRICS.md; only for inner-product graphs, ``metric`` "ip" or "cosine");

and over all pairs:

- ``mean_local_agreement``: the mean of the pairs' local agreements;
- ``mean_cknna_row``: the mean of the pairs' CKNNA contributions (when computed);
- ``rank``: 1 for the most disagreed structure (lowest ``mean_local_agreement``; ties broken by
  the lower ``mean_cknna_row``, then by the lower row), N for the most agreed one.

With ``reference=`` (an in-distribution reference set embedded by the same models), the
validated OOD columns follow (docs/STATISTICS.md, section 6): ``ood_knn_distance:<model>``,
``ood_percentile:<model>``, ``ood_score`` (the default combination), ``ood_agreement``, and
``within_set_disagreement`` (1 − ``mean_local_agreement``, the within-set score by name).

The first columns are ``row`` (0-based position in the inputs) and, when the inputs carry
structure ids (an embedding store), ``id``.

Memory stays bounded at any N: the embeddings are read in place (``np.memmap`` of a ``.npy``
file or a store), only the M kNN graphs (O(N·k) each) and O(N) per-pair columns are resident,
and the file is written in blocks of ``block_rows`` rows (Parquet row groups, CSV chunks).
The file is written to a temporary name and renamed when complete, so a killed run never
leaves a truncated table behind.
"""

from __future__ import annotations

import csv
import importlib
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from itertools import combinations
from pathlib import Path

import numpy as np

from . import _engine
from . import _memory
from ._io import check_npy, temp_path
from ._progress import progress_callback
from ._validate import (as_matrix, check_bool, check_choice, check_int, check_k, check_progress,
                        check_threads, describe)
from .knn import METHODS, METRICS, knn
from .metrics.graph import IP_METRICS

__all__ = ["score", "ScoreResult", "load_embeddings", "read_scores", "FORMATS"]

FORMATS = (".csv", ".parquet")


@dataclass(frozen=True)
class ScoreResult:
    """Summary of a :func:`score` run (the per-structure table itself is in ``path``).

    Attributes
    ----------
    path : pathlib.Path
        The CSV or Parquet file written.
    n : int
        Structures (rows of the table).
    models : tuple of str
        Model names, in input order.
    pairs : tuple of (str, str)
        Model pairs, in column order.
    k : int
        Neighbours per structure.
    metric, method : str
        kNN metric and search method.
    mutual_knn : dict
        ``"a:b"`` -> mean local agreement of the pair (== ``ma.mutual_knn``).
    cknna : dict
        ``"a:b"`` -> CKNNA of the pair (== ``ma.cknna`` with eps=0); empty for an l2 metric.
    recall : dict
        Model -> measured kNN recall (approximate methods only; None for exact graphs).
    columns : tuple of str
        Columns of the table, in order.
    seconds : float
        Wall time of the run.
    """

    path: Path
    n: int
    models: tuple
    pairs: tuple
    k: int
    metric: str
    method: str
    mutual_knn: dict = field(default_factory=dict)
    cknna: dict = field(default_factory=dict)
    recall: dict = field(default_factory=dict)
    columns: tuple = ()
    seconds: float = 0.0


def load_embeddings(source, name: str = "embeddings"):
    """Open one model's embeddings without reading them into memory.

    Parameters
    ----------
    source : array_like, str or os.PathLike, or a store object
        An (N, D) array (returned as is); a ``.npy`` file (opened with ``mmap_mode="r"``); a
        directory holding an embedding store (opened with ``matalign.open_store``); or an
        object with an ``embeddings`` attribute (an open store).
    name : str
        Used in error messages.

    Returns
    -------
    (array, ids)
        The (N, D) array (a memmap for files) and the structure ids (a sequence of N strings)
        or None when the source has none.

    Raises
    ------
    FileNotFoundError
        If a path does not exist.
    ValueError
        If a path is neither a ``.npy`` file nor a directory, or a ``.npy`` file is empty,
        truncated, damaged, of an object or non-numeric dtype, or not 2-D
        (``matalign._io.check_npy``; the message names the file).
    ImportError
        If a store directory is given but ``matalign.store`` is unavailable.

    Examples
    --------
    >>> import os, tempfile
    >>> import numpy as np
    >>> from matalign.score import load_embeddings
    >>> with tempfile.TemporaryDirectory() as folder:
    ...     path = os.path.join(folder, "chgnet.npy")
    ...     np.save(path, np.ones((4, 3), dtype=np.float32))
    ...     A, ids = load_embeddings(path)
    ...     print(A.shape, A.dtype, type(A).__name__, ids)
    ...     del A
    (4, 3) float32 memmap None
    """
    if hasattr(source, "embeddings") and not isinstance(source, (str, os.PathLike)):
        return source.embeddings, getattr(source, "ids", None)
    if not isinstance(source, (str, os.PathLike)):
        return source, None
    path = Path(source)
    if not path.exists():
        raise FileNotFoundError(f"{name}: {path} does not exist")
    if path.is_dir():
        try:
            store_mod = importlib.import_module("matalign.store")
        except ImportError as exc:
            raise ImportError(f"{name}: {path} is a directory, read as an embedding store, but "
                              f"matalign.store is not available ({exc})") from None
        store = store_mod.open_store(path)
        return store.embeddings, getattr(store, "ids", None)
    if path.suffix == ".npy":
        check_npy(path, name)     # a clear ValueError naming the file for a bad .npy
        return np.load(path, mmap_mode="r", allow_pickle=False), None
    raise ValueError(f"{name}: {path} is not a .npy file or an embedding-store directory; "
                     f"save embeddings with np.save(path, X) or `matalign embed`")


def _approx_params(method: str, n: int, d: int, k: int, nlist, nprobe):
    """The resolved FAISS parameters (for the memory estimate), None for exact search or
    options that ma.knn will reject with its own message."""
    if method == "exact":
        return None
    from . import approx  # noqa: PLC0415

    try:
        options = approx.check_options(method, nlist=nlist, nprobe=nprobe)
        return approx.resolve_params(method, n, d, k + 1, **options)
    except (TypeError, ValueError):
        return None


def _ids_equal(a, b) -> bool:
    if len(a) != len(b):
        return False
    return all(x == y for x, y in zip(a, b))


def _pair_key(a: str, b: str) -> str:
    return f"{a}:{b}"


class _Writer:
    """Block writer for one table: Parquet (pyarrow) or CSV, to a temporary file."""

    def __init__(self, path: Path, columns: list, kinds: dict):
        self.path = path
        self.tmp = temp_path(path, hidden=True)
        self.columns = columns
        self.kinds = kinds  # column -> "int" | "float" | "str"
        self.suffix = path.suffix.lower()
        if self.suffix == ".parquet":
            try:
                import pyarrow as pa
                import pyarrow.parquet as pq
            except ImportError:
                raise ImportError("writing Parquet needs pyarrow: pip install pyarrow (or "
                                  "'matalign[data]'), or write .csv instead") from None
            types = {"int": pa.int64(), "float": pa.float64(), "str": pa.string()}
            self._pa = pa
            self.schema = pa.schema([(c, types[kinds[c]]) for c in columns])
            self._writer = pq.ParquetWriter(str(self.tmp), self.schema)
        else:
            self._file = open(self.tmp, "w", newline="", encoding="utf-8")
            self._csv = csv.writer(self._file)
            self._csv.writerow(columns)

    def write(self, block: dict) -> None:
        if self.suffix == ".parquet":
            arrays = [self._pa.array(block[c], type=self.schema.field(c).type)
                      for c in self.columns]
            self._writer.write_table(self._pa.Table.from_arrays(arrays, schema=self.schema))
            return
        cols = []
        for c in self.columns:
            v = block[c]
            if self.kinds[c] == "float":
                # repr: the shortest text that reads back to the same float64
                cols.append(list(map(repr, np.asarray(v, dtype=np.float64).tolist())))
            elif self.kinds[c] == "int":
                cols.append(np.char.mod("%d", np.asarray(v, dtype=np.int64)))
            else:
                cols.append([str(x) for x in v])
        self._csv.writerows(zip(*cols))

    def close(self) -> None:
        if self.suffix == ".parquet":
            self._writer.close()
        else:
            self._file.close()
        os.replace(self.tmp, self.path)

    def abort(self) -> None:
        try:
            if self.suffix == ".parquet":
                self._writer.close()
            else:
                self._file.close()
        finally:
            if self.tmp.exists():
                self.tmp.unlink()


def score(embeddings, out, *, k=10, metric="ip", method="exact", block_rows=65536,
          overwrite=False, n_threads=0, progress=False, seed=0, nlist=None, nprobe=None,
          recall_sample=1000, reference=None, ood_k=5) -> ScoreResult:
    """Score every structure of a set by how much the models disagree on its neighbourhood.

    Writes one row per structure (see the module docstring for the columns) to ``out``, a
    ``.csv`` or ``.parquet`` file, in blocks, with bounded memory at any N.

    Parameters
    ----------
    embeddings : dict of str -> array_like, path or store
        At least 2 models' embeddings of the same N structures: (N, D_m) float32/float64
        arrays (memmaps are read in place), ``.npy`` paths, embedding-store directories or
        open stores. Insertion order fixes the column order.
    out : str or os.PathLike
        Output file; the extension picks the format (``.csv`` or ``.parquet``).
    k : int, default 10
        Neighbours per structure, 1..N−1.
    metric : {"ip", "l2", "cosine"}, default "ip"
        kNN metric (inner product, as ``ma.local_agreement``; "cosine" for raw, unnormalised
        embeddings). The CKNNA columns need "ip" or "cosine" and are omitted for "l2".
    method : {"exact", "ivf", "hnsw", "ivfpq"}, default "exact"
        kNN search; "ivf" (faiss) for very large N. Approximate graphs' recall is measured on
        ``recall_sample`` rows and returned in ``ScoreResult.recall``.
    block_rows : int, default 65536
        Rows per written block (Parquet row group / CSV chunk).
    overwrite : bool, default False
        Replace ``out`` if it exists (otherwise FileExistsError).
    n_threads : int, default 0
        Threads; 0 = all cores.
    progress : bool or callable(done, total), default False
        True shows a progress bar per kNN search.
    seed, nlist, nprobe, recall_sample
        Passed to :func:`matalign.knn` for approximate methods.
    reference : dict of str -> array_like, path or store, optional
        The same models' embeddings of an in-distribution reference set (same keys as
        ``embeddings``). Adds the reference-set OOD columns (:func:`matalign.ood.reference_scores`,
        docs/STATISTICS.md): ``ood_knn_distance:<model>`` (Euclidean distance to the
        ``ood_k``-th nearest reference row in that model's space, the deep-nearest-neighbour
        score), ``ood_percentile:<model>`` (the fraction of the reference's own leave-one-out
        distances it exceeds), ``ood_score`` (the default combination,
        ``matalign.ood.DEFAULT_SCORE`` of the percentiles, chosen by bench/bench_ood.py; high =
        out of distribution) and ``ood_agreement`` (1 − the spread of the models'
        percentiles: the models' agreement on it). The within-set score stays as the named
        column ``within_set_disagreement`` = 1 − ``mean_local_agreement``.
    ood_k : int, default 5
        Neighbour rank of the reference distance.

    Returns
    -------
    ScoreResult
        The path written, N, the pairs, per-pair mutual_knn and CKNNA, recall, columns, time.

    Raises
    ------
    TypeError
        If ``embeddings`` is not a dict or a dtype is unsupported.
    ValueError
        For fewer than 2 models, N differing between models, structure ids differing between
        stores, an unknown extension, metric or method, NaN/Inf, or k out of range.
    FileExistsError
        If ``out`` exists and ``overwrite`` is False.
    ImportError
        For ``.parquet`` without pyarrow, or an approximate method without faiss.

    Examples
    --------
    >>> import os, tempfile
    >>> import numpy as np
    >>> import matalign as ma
    >>> from matalign.score import score, read_scores
    >>> rng = np.random.default_rng(0)
    >>> X = rng.normal(size=(300, 8))
    >>> spaces = {"a": X, "b": X + 0.05 * rng.normal(size=X.shape), "c": rng.normal(size=(300, 8))}
    >>> with tempfile.TemporaryDirectory() as folder:
    ...     res = score(spaces, os.path.join(folder, "scores.csv"), k=10)
    ...     table = read_scores(res.path)
    >>> res.n, res.pairs
    (300, (('a', 'b'), ('a', 'c'), ('b', 'c')))
    >>> bool(np.allclose(table["local_agreement:a:b"], ma.local_agreement(X, spaces["b"], k=10)))
    True
    >>> sorted(table["rank"].tolist())[:3]
    [1, 2, 3]
    >>> most = table["rank"] == 1   # the most disagreed structure has the lowest mean agreement
    >>> bool(table["mean_local_agreement"][most][0] == table["mean_local_agreement"].min())
    True
    """
    t0 = time.perf_counter()
    if not isinstance(embeddings, Mapping):
        raise TypeError(f"embeddings must be a dict of model name -> embeddings (array, .npy "
                        f"path or store); got {describe(embeddings)}")
    names = list(embeddings)
    for name in names:
        if not isinstance(name, str) or not name:
            raise TypeError(f"model names must be non-empty strings; got {name!r}")
        if ":" in name:
            raise ValueError(f"model name {name!r} contains ':', which separates the names in "
                             f"the column headers; rename it")
    if len(names) < 2:
        raise ValueError(f"score needs at least 2 models to compare; got {len(names)}")
    out = Path(out)
    if out.suffix.lower() not in FORMATS:
        raise ValueError(f"out must end in {' or '.join(FORMATS)} (the format is chosen by the "
                         f"extension); got {out.name!r}")
    overwrite = check_bool(overwrite, "overwrite")
    if out.exists() and not overwrite:
        raise FileExistsError(f"{out} exists; pass overwrite=True (--overwrite) to replace it")
    if not out.parent.is_dir():
        raise FileNotFoundError(f"the folder of out does not exist: {out.parent}")
    metric = check_choice(metric, "metric", METRICS)
    method = check_choice(method, "method", METHODS)
    block_rows = check_int(block_rows, "block_rows", 1)
    n_threads = check_threads(n_threads)
    progress = check_progress(progress)

    arrays, ids = [], None
    for name in names:
        A, these_ids = load_embeddings(embeddings[name], name=f"embeddings[{name!r}]")
        A = as_matrix(A, f"embeddings[{name!r}]")
        if arrays and A.shape[0] != arrays[0].shape[0]:
            raise ValueError(
                f"every model must embed the same N structures (row i is the same structure in "
                f"all): embeddings[{names[0]!r}] has N={arrays[0].shape[0]} rows but "
                f"embeddings[{name!r}] has N={A.shape[0]}")
        if these_ids is not None:
            if len(these_ids) != A.shape[0]:
                raise ValueError(f"embeddings[{name!r}] has {A.shape[0]} rows but "
                                 f"{len(these_ids)} structure ids")
            if ids is None:
                ids = these_ids
            elif not _ids_equal(ids, these_ids):
                raise ValueError(f"embeddings[{name!r}] holds other structures (or another "
                                 f"order) than the earlier models: their structure ids differ")
        arrays.append(A)
    n = arrays[0].shape[0]
    k = check_k(k, n)
    ood = None
    if reference is not None:
        ood = _reference_columns(reference, names, arrays, ood_k)
    with_cknna = metric in IP_METRICS and n >= 4
    npairs = len(names) * (len(names) - 1) // 2
    nt = _memory.threads(n_threads)
    # Resident: the M graphs, the per-pair columns (2 per pair) and ~6 per-row arrays; on top
    # of them the larger of one search and one CKNNA.
    need = (sum(_memory.graph_bytes(n, k, A.dtype.itemsize) for A in arrays)
            + npairs * 2 * n * 8 + 6 * n * 8
            + max([_memory.cknna_bytes(n, k) if with_cknna else 2 * n * k * 8]
                  + [_memory.knn_bytes(n, n, A.shape[1], k, A.dtype.itemsize, method=method,
                                       metric=metric, n_threads=nt,
                                       params=_approx_params(method, n, A.shape[1], k,
                                                             nlist, nprobe))
                     for A in arrays]))
    what = f"score(M={len(names)}, N={n}, k={k}, method={method!r})"
    _memory.check_memory(need, what, advice=(
        "pass a smaller k, fewer models per call, or method='ivfpq' for a smaller index"))

    # One graph per model; only its int64 indices and values stay (O(N·k)).
    graphs, recall = [], {}
    for name, A in zip(names, arrays):
        options = {}
        if method != "exact":
            options = dict(nlist=nlist, nprobe=nprobe, recall_sample=recall_sample, seed=seed)
        g = knn(A, k=k, metric=metric, method=method, n_threads=n_threads,
                progress=progress, **options)
        recall[name] = g.recall
        graphs.append((np.ascontiguousarray(g.indices), np.ascontiguousarray(g.values)))
        del g

    pairs = list(combinations(range(len(names)), 2))
    agree, contrib = {}, {}
    mutual, cknna_values = {}, {}
    for a, b in pairs:
        key = _pair_key(names[a], names[b])
        (ia, va), (ib, vb) = graphs[a], graphs[b]
        la = _engine.local_agreement(ia, ib, n_threads=n_threads)
        agree[key] = la
        mutual[key] = float(la.mean())
        if with_cknna:
            res = _engine.cknna(ia, va, ib, vb, eps=0.0, n_threads=n_threads)
            cknna_values[key] = float(res[0])
            contrib[key] = np.asarray(res[1], dtype=np.float64)
    del graphs

    npairs = len(pairs)
    mean_agree = np.zeros(n, dtype=np.float64)
    for v in agree.values():
        mean_agree += v
    mean_agree /= npairs
    mean_contrib = None
    if with_cknna:
        mean_contrib = np.zeros(n, dtype=np.float64)
        for v in contrib.values():
            mean_contrib += v
        mean_contrib /= npairs
    rows = np.arange(n, dtype=np.int64)
    keys = (rows, mean_contrib, mean_agree) if with_cknna else (rows, mean_agree)
    order = np.lexsort(keys)
    rank = np.empty(n, dtype=np.int64)
    rank[order] = np.arange(1, n + 1, dtype=np.int64)
    del order

    columns, kinds = ["row"], {"row": "int"}
    if ids is not None:
        columns.append("id")
        kinds["id"] = "str"
    for a, b in pairs:
        key = _pair_key(names[a], names[b])
        columns.append(f"local_agreement:{key}")
        kinds[columns[-1]] = "float"
        if with_cknna:
            columns.append(f"cknna_row:{key}")
            kinds[columns[-1]] = "float"
    columns += ["mean_local_agreement"] + (["mean_cknna_row"] if with_cknna else []) + ["rank"]
    kinds.update(mean_local_agreement="float", mean_cknna_row="float", rank="int")
    if ood is not None:
        ood["within_set_disagreement"] = 1.0 - mean_agree
        columns += list(ood)
        kinds.update({c: "float" for c in ood})

    writer = _Writer(out, columns, kinds)
    try:
        with progress_callback(progress, f"write {out.name}") as callback:
            for start in range(0, n, block_rows):
                stop = min(n, start + block_rows)
                block = {"row": rows[start:stop], "mean_local_agreement": mean_agree[start:stop],
                         "rank": rank[start:stop]}
                if ids is not None:
                    block["id"] = [str(x) for x in ids[start:stop]]
                for key in agree:
                    block[f"local_agreement:{key}"] = agree[key][start:stop]
                    if with_cknna:
                        block[f"cknna_row:{key}"] = contrib[key][start:stop]
                if with_cknna:
                    block["mean_cknna_row"] = mean_contrib[start:stop]
                if ood is not None:
                    for c, v in ood.items():
                        block[c] = v[start:stop]
                writer.write(block)
                if callback is not None:
                    callback(stop, n)
        writer.close()
    except BaseException:
        writer.abort()
        raise
    return ScoreResult(
        path=out, n=n, models=tuple(names),
        pairs=tuple((names[a], names[b]) for a, b in pairs), k=k, metric=metric,
        method=method, mutual_knn=mutual, cknna=cknna_values, recall=recall,
        columns=tuple(columns), seconds=time.perf_counter() - t0)


def _reference_columns(reference, names, arrays, ood_k) -> dict:
    """The reference-set OOD columns of :func:`score` (``reference=``), one array per column."""
    from .ood import reference_scores
    if not isinstance(reference, Mapping):
        raise TypeError(f"reference must be a dict of model name -> embeddings (array, .npy "
                        f"path or store) of the reference set; got {describe(reference)}")
    if set(reference) != set(names):
        raise ValueError(f"reference must hold the same models as embeddings: got "
                         f"{sorted(map(str, reference))} for {sorted(names)}")
    ref = {}
    for name in names:
        R, _ = load_embeddings(reference[name], name=f"reference[{name!r}]")
        ref[name] = as_matrix(R, f"reference[{name!r}]")
    nr = ref[names[0]].shape[0]
    ood_k = check_int(ood_k, "ood_k", 1, max(1, nr - 1))
    s = reference_scores(ref, dict(zip(names, arrays)), k=ood_k, within_set=False)
    cols = {}
    for name in names:
        cols[f"ood_knn_distance:{name}"] = s[f"knn_distance[{name}]"]
    for name in names:
        cols[f"ood_percentile:{name}"] = s[f"percentile[{name}]"]
    cols["ood_score"] = s.score
    cols["ood_agreement"] = s["agreement"]
    return cols


def read_scores(path, columns=None) -> dict:
    """Read a table written by :func:`score` into a dict of column -> NumPy array.

    Parameters
    ----------
    path : str or os.PathLike
        A ``.csv`` or ``.parquet`` file.
    columns : list of str, optional
        Only these columns (default all).

    Returns
    -------
    dict
        Column name -> 1-D array (int64 for ``row``/``rank``, str for ``id``, float64 else).

    Examples
    --------
    >>> import os, tempfile
    >>> import numpy as np
    >>> from matalign.score import score, read_scores
    >>> rng = np.random.default_rng(1)
    >>> spaces = {"a": rng.normal(size=(50, 4)), "b": rng.normal(size=(50, 4))}
    >>> with tempfile.TemporaryDirectory() as folder:
    ...     t = read_scores(score(spaces, os.path.join(folder, "s.csv"), k=5).path, ["rank"])
    >>> list(t), t["rank"].dtype.name, len(t["rank"])
    (['rank'], 'int64', 50)
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"score table not found: {path}")
    if path.suffix.lower() == ".parquet":
        try:
            import pyarrow.parquet as pq
        except ImportError:
            raise ImportError("reading Parquet needs pyarrow: pip install pyarrow") from None
        table = pq.read_table(str(path), columns=columns)
        return {c: table.column(c).to_numpy(zero_copy_only=False) if c == "id"
                else np.asarray(table.column(c).to_numpy(), dtype=_dtype_of(c))
                for c in table.column_names}
    if path.suffix.lower() != ".csv":
        raise ValueError(f"{path.name}: expected a .csv or .parquet score table")
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.reader(f)
        header = next(reader)
        wanted = header if columns is None else list(columns)
        missing = [c for c in wanted if c not in header]
        if missing:
            raise ValueError(f"{path.name} has no column(s) {missing}; it has {header}")
        idx = [header.index(c) for c in wanted]
        data = [[] for _ in wanted]
        for line in reader:
            for slot, j in zip(data, idx):
                slot.append(line[j])
    return {c: (np.array(v, dtype=object) if c == "id" else np.array(v, dtype=_dtype_of(c)))
            for c, v in zip(wanted, data)}


def _dtype_of(column: str):
    return np.int64 if column in ("row", "rank") else np.float64
