"""The model × model alignment matrix of M embedding spaces: orchestration only.

:func:`alignment_matrix` validates its arguments, builds one
:class:`~matalign.metrics._global.MatrixRequest`, checks the memory plan of every requested
metric before any work, and runs each metric's all-models form (its ``MATRIX_STAGE``, which
lives in ``matalign/metrics/<metric>.py`` beside the pairwise function) under one progress
bar. The computations themselves, their memory and work plans, are the metric modules'.

Every entry equals the corresponding pairwise call (``ma.cknna``, ``ma.mutual_knn``,
``ma.cka``, ``ma.distance_correlation``, ``ma.information_imbalance``) bit for bit when the
models share a dtype: both forms call one kernel with one blocking. The fused global passes
(``dcor``, ``cka``) need one dtype, so when the models mix float32 and float64 the float32
ones are widened to float64 (exact, a copy); an entry between two float32 models is then
computed in float64.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping

import numpy as np

from . import _engine
from . import _memory
from ._json import jsonable
from ._progress import Job, progress_callback
from ._validate import (as_matrix, check_bool, check_choice, check_eps, check_fraction,
                        check_int, check_k, check_progress, check_same_structures, check_threads,
                        check_values, describe)
from .knn import METRICS as KNN_METRICS
from .knn import KnnGraph
from .metrics import ALIASES, ALL_METRICS, GRAPH_METRICS, MATRIX_STAGES
from .metrics._global import MatrixRequest, too_few_rows
from .metrics.graph import IP_METRICS
from .metrics.intrinsic import METHODS as ID_METHODS
from .metrics.kernel_alignment import KERNELS, MEDIAN_PAIRS, parse_sigmas
from .result import AlignmentMatrix

__all__ = ["AlignmentMatrix", "alignment_matrix", "DEFAULT_METRICS", "ALL_METRICS"]

DEFAULT_METRICS = ("cknna", "mutual_knn", "cka", "dcor")


def _parse_metrics(metrics) -> list:
    if isinstance(metrics, str):
        metrics = [metrics]
    try:
        items = list(metrics)
    except TypeError:
        raise TypeError(f"metrics must be a list of metric names; got {describe(metrics)}") \
            from None
    valid = ", ".join(repr(m) for m in ALL_METRICS)
    if not items:
        raise ValueError(f"metrics is empty; pass at least one of {valid}")
    out = []
    for item in items:
        if not isinstance(item, str) or item not in ALL_METRICS:
            hint = ""
            if isinstance(item, str):
                alias = ALIASES.get(item.lower(), item.lower() if item.lower() in ALL_METRICS
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
    if isinstance(obj, KnnGraph):
        if not obj.self_excluded:
            raise ValueError(
                f"{label} is a KnnGraph of separate queries (self_excluded=False); graph "
                f"metrics need a self graph: build it with ma.knn(X, k=...) without queries")
        return obj, {}
    if not isinstance(obj, np.ndarray) and hasattr(obj, "embeddings"):
        raw_meta = getattr(obj, "metadata", None)
        metadata = {}
        if raw_meta is not None:
            if not isinstance(raw_meta, Mapping):
                raise TypeError(f"{label}.metadata must be a dict (or None); got "
                                f"{describe(raw_meta)}")
            metadata = jsonable(raw_meta, f"{label}.metadata")
        return as_matrix(obj.embeddings, f"{label}.embeddings", scan=False), metadata
    return as_matrix(obj, label, scan=False), {}  # values are read after the memory check


def _check_inputs(req: MatrixRequest) -> None:
    """Graph inputs only where every requested metric takes graphs, and the right graphs."""
    labels, inputs, wanted = req.labels, req.inputs, req.wanted
    graphs = [isinstance(obj, KnnGraph) for obj in inputs]
    embedding_metrics = [w for w in wanted if w not in GRAPH_METRICS]
    if embedding_metrics and any(graphs):
        which = [label for label, g in zip(labels, graphs) if g]
        raise ValueError(
            f"{', '.join(which)} {'is a KnnGraph' if len(which) == 1 else 'are KnnGraphs'}, "
            f"but metrics {embedding_metrics} need the embeddings themselves; pass the arrays, "
            f"or restrict metrics to {list(GRAPH_METRICS)}")
    for label, obj in zip(labels, inputs):
        if not isinstance(obj, KnnGraph):
            continue
        if "cknna" in wanted and obj.metric not in IP_METRICS:
            raise ValueError(
                f"cknna needs inner-product graphs (metric 'ip' or 'cosine'), because its "
                f"kernel values are the inner products K_ij; {label} is a KnnGraph with "
                f"metric={obj.metric!r}")
        if obj.method != "exact" or obj.recall is not None:
            recall = "unknown" if obj.recall is None else f"{obj.recall:.4f}"
            warnings.warn(
                f"alignment_matrix: {label} is an approximate kNN graph (method="
                f"{obj.method!r}, recall={recall}), so its {', '.join(wanted)} values are "
                f"approximate too; pass an exact graph or the embeddings for exact values",
                UserWarning, stacklevel=3)


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
    - ``cka`` (linear): in feature space, one streaming pass over the rows of all models
      (biased: the engine's float64 Gram of [X_1 | … | X_M], one pass per pair above 1 GiB of
      Gram; unbiased: NumPy sums of every pair's X̄_aᵀX̄_b, split into groups above 1 GiB);
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
    eps = check_eps(eps)
    cka_kernel = check_choice(cka_kernel, "cka_kernel", KERNELS)
    sigmas = parse_sigmas(sigma, names) if cka_kernel == "rbf" else None
    unbiased = check_bool(unbiased, "unbiased")
    id_method = check_choice(id_method, "id_method", ID_METHODS)
    id_fraction = check_fraction(id_fraction, "id_fraction")
    n_threads = check_threads(n_threads)
    progress = check_progress(progress)
    seed = check_int(seed, "seed", 0)

    labels = [f"spaces[{name!r}]" for name in names]
    inputs, metadata = [], {}
    for name in names:
        obj, metadata[name] = _resolve_input(name, spaces[name])
        inputs.append(obj)
    ns = [obj.n if isinstance(obj, KnnGraph) else obj.shape[0] for obj in inputs]
    for label, n_m in zip(labels, ns):
        if n_m != ns[0]:
            raise ValueError(
                f"every model must embed the same N structures (row i is the same structure "
                f"in all): {labels[0]} has N={ns[0]} rows but {label} has N={n_m}")
    n = ns[0]
    req = MatrixRequest(names, labels, inputs, n, wanted, k=k, knn_metric=knn_metric, eps=eps,
                        cka_kernel=cka_kernel, sigmas=sigmas, unbiased=unbiased,
                        imbalance_k=imbalance_k, id_method=id_method, id_fraction=id_fraction,
                        n_threads=n_threads, seed=seed)
    _check_inputs(req)
    stages = [s for s in MATRIX_STAGES if set(s.metrics) & set(wanted)]
    minimum, func, why = max([(2, "alignment_matrix", "a pair of rows")]
                             + [s.min_rows(req) for s in stages], key=lambda t: t[0])
    if n < minimum:
        raise too_few_rows(func, n, minimum, why, names="every model of spaces")
    graph_wanted = set(wanted) & set(GRAPH_METRICS)
    req.k = check_k(k, n) if graph_wanted else check_int(k, "k", 1)
    req.imbalance_k = (check_k(imbalance_k, n, name="imbalance_k")
                       if "information_imbalance" in wanted
                       else check_int(imbalance_k, "imbalance_k", 1))

    plans = [s.plan(req) for s in stages]
    need = max(p[0] for p in plans)  # the stages run one after another
    what = f"alignment_matrix(M={len(names)}, N={n}, metrics={list(wanted)})"
    _memory.check_memory(need, what, advice=(
        "compute fewer metrics per call, pass a smaller k, pass all models in one dtype, or "
        "fewer n_threads"))
    for name, label, obj in zip(names, labels, inputs):
        if not isinstance(obj, KnnGraph):
            is_store = not isinstance(spaces[name], np.ndarray) and hasattr(spaces[name],
                                                                            "embeddings")
            check_values(obj, f"{label}.embeddings" if is_store else label)

    results = {}
    with progress_callback(progress, f"alignment matrix M={len(names)} N={n}") as callback, \
            _memory.reraise(what, need):
        job = Job(callback, sum(p[1] for p in plans))
        for s in stages:
            results.update(s.run(req, job))

    per_model = {w: results.pop(w) for w in list(results)
                 if any(w in s.metrics and s.per_model for s in stages)}
    params = {
        "metrics": list(wanted), "n": n, "k": req.k, "knn_metric": knn_metric, "eps": eps,
        "cka_kernel": cka_kernel,
        "sigma": (None if sigmas is None else req.params.get("sigma", dict(zip(names, sigmas)))),
        "unbiased": unbiased, "imbalance_k": req.imbalance_k, "id_method": id_method,
        "id_fraction": id_fraction, "seed": seed, "median_pairs": MEDIAN_PAIRS,
        "global_dtype": req.params.get("global_dtype"),
        "inputs": {name: ({"kind": "knn_graph", "k": obj.k, "metric": obj.metric,
                           "method": obj.method, "recall": obj.recall}
                          if isinstance(obj, KnnGraph) else
                          {"kind": "embeddings", "d": int(obj.shape[1]),
                           "dtype": obj.dtype.name})
                   for name, obj in zip(names, inputs)},
        "matalign_version": _engine.version(),
    }
    ordered = {w: results[w] for w in wanted if w in results}
    return AlignmentMatrix(names, ordered, per_model, params, metadata)
