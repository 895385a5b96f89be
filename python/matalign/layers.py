"""Which layer, and why: embed every layer of a model once and compare them.

:func:`layer_sweep` runs one forward pass per batch through a model whose adapter declares its
layers (:meth:`matalign.adapters.Adapter.layers`: CHGNet's atom-conv layers, SevenNet's
interaction blocks, ProteinMPNN's encoder layers), pools every layer's per-atom features
under each requested pooling, preprocesses every space the same way (centring and l2 rows by
default, as the shipped studies do) and reports CKNNA (exact, k neighbours by inner product,
``ma.cknna``):

- **with itself across layers**: the layer × layer matrix of each pooling;
- **with a reference model**: each (layer, pooling) against the reference's default layer
  (or, with ``reference_layers="all"``, against every reference layer, and the best layer
  pair, as the reference alignment code takes the maximum over layer pairs), with a
  subsampling confidence interval (``ma.statistics.confidence_interval``) for the
  default-layer comparisons.

Every number carries N, k and the preprocessing (:attr:`LayerSweep.params`).

Examples
--------
>>> import numpy as np
>>> from matalign.layers import sweep_spaces
>>> rng = np.random.default_rng(0)
>>> Z = rng.normal(size=(60, 4))
>>> sw = sweep_spaces({("l0", "mean"): Z @ rng.normal(size=(4, 8)),
...                    ("l1", "mean"): rng.normal(size=(60, 8))},
...                   reference=Z, reference_name="truth", k=5, ci=False)
>>> sw.best()["layer"]
'l0'
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from . import adapters as _adapters
from ._io import atomic_json
from .matrix import alignment_matrix
from .preprocess import preprocess
from .statistics import confidence_interval

__all__ = ["LayerSweep", "layer_sweep", "sweep_spaces", "run_layer_sweep"]


@dataclass
class LayerSweep:
    """Result of :func:`layer_sweep`.

    Attributes
    ----------
    model : str
        The swept model.
    reference : str or None
    layers : list of str
        The model's layers, input to output.
    poolings : list of str
    reference_layers : list of str
        Reference layers compared ('default' for an array or a single layer).
    self_matrix : dict of str to (L, L) array
        CKNNA between every two layers of the model, per pooling.
    cross : dict of str to (L, R) array
        CKNNA of each model layer (rows) with each reference layer (columns), per pooling.
    rows : list of dict
        One per (layer, pooling): ``cknna`` with the reference's default layer and
        its interval ``low``/``high`` (NaN without ``ci``).
    params : dict
        N, k, preprocessing, interval level and subsamples, seed, default layer/pooling.
    """

    model: str
    reference: str | None
    layers: list
    poolings: list
    reference_layers: list
    self_matrix: dict
    cross: dict
    rows: list = field(default_factory=list)
    params: dict = field(default_factory=dict)

    def best(self) -> dict[str, Any]:
        """The (layer, pooling, reference layer) with the highest CKNNA with the reference."""
        if not self.cross:
            raise ValueError("this sweep has no reference: best() needs reference=")
        best = None
        for how, mat in self.cross.items():
            i, j = np.unravel_index(int(np.nanargmax(mat)), mat.shape)
            cand = {"layer": self.layers[i], "pooling": how,
                    "reference_layer": self.reference_layers[j], "cknna": float(mat[i, j])}
            if best is None or cand["cknna"] > best["cknna"]:
                best = cand
        return best

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (matrices as nested lists)."""
        out = {"model": self.model, "reference": self.reference, "layers": self.layers,
               "poolings": self.poolings, "reference_layers": self.reference_layers,
               "params": self.params, "rows": self.rows,
               "self_matrix": {h: m.tolist() for h, m in self.self_matrix.items()},
               "cross": {h: m.tolist() for h, m in self.cross.items()}}
        if self.cross:
            out["best"] = self.best()
        return out

    def save(self, path: str | Path) -> Path:
        """Write :meth:`to_dict` as JSON (atomically)."""
        path = Path(path)
        atomic_json(path, self.to_dict())
        return path

    def table(self) -> str:
        """Plain-text table of the reference rows, with N, k and the preprocessing."""
        p = self.params
        head = (f"{self.model} layers vs {self.reference or '-'}: CKNNA, N={p.get('n')}, "
                f"k={p.get('k')}, preprocessing={p.get('preprocessing')}")
        lines = [head, f"{'layer':<12}{'pooling':<9}{'cknna':>8}  interval"]
        for r in self.rows:
            ci = (f"[{r['low']:.3f}, {r['high']:.3f}]" if np.isfinite(r["low"]) else "-")
            lines.append(f"{r['layer']:<12}{r['pooling']:<9}{r['cknna']:>8.3f}  {ci}")
        return "\n".join(lines)

    def figure(self, pooling: str | None = None):
        """Layer × layer heatmap of the model (left) and layers × reference layers (right)."""
        from .plots import layer_heatmap

        how = pooling or self.poolings[0]
        if how not in self.self_matrix:
            raise ValueError(f"pooling must be one of {list(self.self_matrix)}, got {how!r}")
        p = self.params
        sub = f"CKNNA, N={p.get('n')}, k={p.get('k')}, {p.get('preprocessing')}, {how} pooling"
        panels = [(self.self_matrix[how], self.layers, self.layers,
                   f"{self.model}: layer × layer")]
        if self.cross:
            panels.append((self.cross[how], self.layers, self.reference_layers,
                           f"{self.model} layers × {self.reference}"))
        return layer_heatmap(panels, subtitle=sub)


def _pp_text(center: bool, l2: bool) -> str:
    parts = (["centre"] if center else []) + (["l2 rows"] if l2 else [])
    return " + ".join(parts) or "none"


def sweep_spaces(spaces: dict, *, reference=None, reference_name: str | None = None,
                 model: str = "model", k: int = 10, center: bool = True, l2: bool = True,
                 ci: bool = True, level: float = 0.95, n_subsamples: int = 20,
                 seed: int = 0, reference_default: str | None = None) -> LayerSweep:
    """The sweep's comparisons on embeddings that are already computed.

    Parameters
    ----------
    spaces : dict of (layer, pooling) to (N, D) array
        The model's layers, in order (the first pooling seen orders nothing; layers keep
        their first-seen order).
    reference : (N, D) array or dict of str to (N, D) array, optional
        The reference model's embedding, or its layers by name (the first is its default).
    reference_name : str, optional
    model : str
    k : int
        Neighbours of CKNNA.
    center, l2 : bool
        Preprocessing applied to every space (``ma.preprocess``).
    ci : bool
        Subsampling intervals for the comparisons with the reference's default layer.
    level, n_subsamples, seed
        Of the intervals.
    reference_default : str, optional
        The reference layer the rows (and intervals) compare with; default its first.

    Returns
    -------
    LayerSweep

    Examples
    --------
    >>> import numpy as np
    >>> from matalign.layers import sweep_spaces
    >>> X = np.random.default_rng(1).normal(size=(40, 5))
    >>> sw = sweep_spaces({("a", "mean"): X, ("b", "mean"): X[:, ::-1]}, k=5)
    >>> round(float(sw.self_matrix["mean"][0, 1]), 12)
    1.0
    """
    if not spaces:
        raise ValueError("spaces is empty: nothing to sweep")
    layers = list(dict.fromkeys(lay for lay, _ in spaces))
    poolings = list(dict.fromkeys(how for _, how in spaces))
    n = {np.asarray(v).shape[0] for v in spaces.values()}
    if len(n) != 1:
        raise ValueError(f"every layer must have the same number of rows, got {sorted(n)}")
    n = n.pop()
    prep = {key: preprocess(np.asarray(v, dtype=np.float64), center=center, l2=l2)
            for key, v in spaces.items()}
    if reference is None:
        ref = {}
    elif isinstance(reference, dict):
        ref = {str(name): preprocess(np.asarray(v, dtype=np.float64), center=center, l2=l2)
               for name, v in reference.items()}
    else:
        ref = {"default": preprocess(np.asarray(reference, dtype=np.float64), center=center,
                                     l2=l2)}
    for name, v in ref.items():
        if v.shape[0] != n:
            raise ValueError(f"reference layer {name!r} has {v.shape[0]} rows, the model {n}")
    self_m: dict[str, np.ndarray] = {}
    cross: dict[str, np.ndarray] = {}
    for how in poolings:
        names = [f"m:{lay}" for lay in layers] + [f"r:{r}" for r in ref]
        sp = {f"m:{lay}": prep[(lay, how)] for lay in layers}
        sp.update({f"r:{r}": v for r, v in ref.items()})
        if len(sp) < 2:                          # one layer, no reference
            self_m[how] = np.ones((1, 1))
            continue
        res = alignment_matrix(sp, metrics=["cknna"], k=k)
        full = np.asarray(res.metrics["cknna"], dtype=np.float64)
        if list(res.names) != names:
            raise RuntimeError(f"internal error: matrix order {list(res.names)} != {names}")
        L = len(layers)
        self_m[how] = full[:L, :L].copy()
        if ref:
            cross[how] = full[:L, L:].copy()
    rows = []
    if ref:
        first = reference_default if reference_default is not None else next(iter(ref))
        if first not in ref:
            raise ValueError(f"reference_default {first!r} is not among the reference layers "
                             f"{list(ref)}")
        col = list(ref).index(first)
        for how in poolings:
            for i, lay in enumerate(layers):
                row = {"layer": lay, "pooling": how, "reference_layer": first,
                       "cknna": float(cross[how][i, col]), "low": float("nan"),
                       "high": float("nan")}
                if ci:
                    r = confidence_interval("cknna", prep[(lay, how)], ref[first], k=k,
                                            level=level, n_subsamples=n_subsamples, seed=seed)
                    row.update(low=float(r.low), high=float(r.high), subsample_size=int(r.b))
                rows.append(row)
    params = {"n": int(n), "k": int(k), "metric": "cknna",
              "preprocessing": _pp_text(center, l2), "center": bool(center), "l2": bool(l2),
              "ci": bool(ci), "level": float(level), "n_subsamples": int(n_subsamples),
              "seed": int(seed)}
    return LayerSweep(model, reference_name if ref else None, layers, poolings, list(ref),
                      self_m, cross, rows, params)


def layer_sweep(model, structures: Sequence, *, reference=None, k: int = 10,
                poolings: Sequence[str] = ("mean", "sum"), reference_layers: str = "default",
                center: bool = True, l2: bool = True, ci: bool = True, level: float = 0.95,
                n_subsamples: int = 20, seed: int = 0, batch_size: int = 32,
                progress: bool = False) -> LayerSweep:
    """Embed every layer of ``model`` once and report its alignment with ``reference`` and
    with itself across layers.

    Parameters
    ----------
    model : str or Adapter
        A registered adapter name (``matalign models``) or an adapter instance that declares
        its layers (CHGNet, SevenNet, ProteinMPNN).
    structures : sequence of Structure
        The same structures for the model and the reference (N >= 4 and N > k).
    reference : str, Adapter or (N, D) array, optional
        The reference model (its default layer and pooling), or its embedding.
    k : int, default 10
        Neighbours of CKNNA.
    poolings : sequence of {'mean', 'sum', 'max'}, default ('mean', 'sum')
    reference_layers : {'default', 'all'}
        'all' also sweeps a reference adapter's layers (same poolings: its first pooling) and
        fills the model × reference layer matrix; ``LayerSweep.best()`` is the best pair.
    center, l2 : bool
        Preprocessing of every space.
    ci : bool
        Subsampling intervals for the comparisons with the reference's default layer.
    level, n_subsamples, seed
        Of the intervals.
    batch_size : int
    progress : bool

    Returns
    -------
    LayerSweep

    Examples
    --------
    >>> import matalign as ma
    >>> crystals = list(ma.datasets.get("mptrj"))[:40]   # doctest: +SKIP
    >>> sw = ma.layer_sweep("sevennet-0", crystals, reference="chgnet-0.3.0")   # doctest: +SKIP
    >>> print(sw.table())   # doctest: +SKIP
    """
    if reference_layers not in ("default", "all"):
        raise ValueError(f"reference_layers must be 'default' or 'all', got "
                         f"{reference_layers!r}")
    ad = _adapters.get(model) if isinstance(model, str) else model
    if not isinstance(ad, _adapters.Adapter):
        raise TypeError(f"model must be an adapter name or an Adapter, got "
                        f"{type(model).__name__}")
    items = list(structures)
    if len(items) < 4 or len(items) <= k:
        raise ValueError(f"structures must hold at least 4 and more than k={k} structures, "
                         f"got {len(items)}")
    spaces = ad.embed_layers(items, poolings=poolings, batch_size=batch_size,
                             progress=progress)
    ref_name = None
    ref = None
    ref_default = None
    if reference is not None:
        if isinstance(reference, (str, _adapters.Adapter)):
            rad = _adapters.get(reference) if isinstance(reference, str) else reference
            ref_name = rad.name
            if reference_layers == "all" and rad.layers():
                how = rad.pooling
                got = rad.embed_layers(items, poolings=[how], batch_size=batch_size,
                                       progress=progress)
                ref = {lay: got[(lay, how)] for lay in rad.layers()}
                ref_default = rad.default_layer
            else:
                ref = {rad.default_layer or "default": rad.embed(items, batch_size=batch_size,
                                                                 progress=progress)}
        else:
            ref_name = "reference"
            ref = np.asarray(reference)
            if ref.ndim != 2 or ref.shape[0] != len(items):
                raise ValueError(f"reference must be an (N, D) array with N={len(items)}, got "
                                 f"shape {ref.shape}")
    sw = sweep_spaces(spaces, reference=ref, reference_name=ref_name, model=ad.name, k=k,
                      center=center, l2=l2, ci=ci, level=level, n_subsamples=n_subsamples,
                      seed=seed, reference_default=ref_default)
    sw.params.update(default_layer=ad.default_layer, default_pooling=ad.pooling,
                     adapter=ad.metadata)
    return sw

def run_layer_sweep(model: str, data: str, out: str | Path, *, reference: str | None = None,
                    n: int | None = None, k: int = 10, poolings: Sequence[str] = ("mean", "sum"),
                    reference_layers: str = "default", ci: bool = True,
                    data_options: dict | None = None, batch_size: int = 32,
                    progress: bool = True) -> LayerSweep:
    """:func:`layer_sweep` on a dataset, written to a folder (what ``matalign layer-sweep``
    runs): ``sweep.json``, ``table.txt`` and per pooling ``layers-<pooling>.png`` / ``.svg``.

    Parameters
    ----------
    model, reference : str
        Registered adapter names.
    data : str
        A structure file (``matalign.datasets.open``) or a built-in set
        (``matalign.datasets.get``).
    out : path
        Output folder (created; its parent must exist).
    n : int, optional
        The first n structures of the set (default: all).
    k, poolings, reference_layers, ci, batch_size, progress
        As :func:`layer_sweep`.
    data_options : dict, optional
        Options of the dataset.

    Returns
    -------
    LayerSweep

    Examples
    --------
    >>> from matalign.layers import run_layer_sweep
    >>> sw = run_layer_sweep("sevennet-0", "mptrj", "sweep", reference="chgnet-0.3.0",
    ...                      n=100)   # doctest: +SKIP
    """
    import itertools
    import os

    from . import datasets

    out = Path(out)
    if not out.parent.is_dir():
        raise FileNotFoundError(f"the parent folder of out does not exist: {out.parent}")
    if n is not None and (isinstance(n, bool) or not isinstance(n, int) or n < 4):
        raise ValueError(f"n must be an integer >= 4, got {n!r}")
    opts = dict(data_options or {})
    ds = (datasets.open(data, **opts) if os.path.exists(data) else datasets.get(data, **opts))
    items = list(itertools.islice(iter(ds), n) if n is not None else ds)
    sw = layer_sweep(model, items, reference=reference, k=k, poolings=poolings,
                     reference_layers=reference_layers, ci=ci, batch_size=batch_size,
                     progress=progress)
    sw.params["data"] = os.fspath(data)
    out.mkdir(exist_ok=True)
    sw.save(out / "sweep.json")
    (out / "table.txt").write_text(sw.table() + "\n")
    for how in sw.poolings:
        fig = sw.figure(how)
        fig.savefig(out / f"layers-{how}.png", dpi=150)
        fig.savefig(out / f"layers-{how}.svg")
    return sw
