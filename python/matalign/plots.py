"""Figures of alignment results: heatmaps, model trees, information-imbalance planes and more.

Every function draws on a fresh :class:`matplotlib.figure.Figure` (Agg canvas, no pyplot state,
no display needed) and returns it; save it with ``fig.savefig(path, dpi=150)``. Clustering is
average linkage (UPGMA) implemented here, so SciPy is not needed.

Distances used for ordering and trees: for a similarity s in [0, 1] (cknna, mutual_knn, cka,
dcor) d = 1 − s of the symmetrised matrix (s + sᵀ)/2; for information imbalance
d = (Δ(a→b) + Δ(b→a))/2.
"""

from __future__ import annotations

import numpy as np
from matplotlib.figure import Figure

__all__ = ["METRIC_LABELS", "distance_matrix", "average_linkage", "leaf_order", "heatmap",
           "heatmaps_side_by_side", "tree", "imbalance_plane", "reference_vs_error",
           "intrinsic_dimension_bars", "disagreement_histogram"]

METRIC_LABELS = {
    "cknna": "CKNNA",
    "mutual_knn": "mutual kNN",
    "cka": "CKA",
    "dcor": "distance correlation",
    "information_imbalance": "information imbalance Δ(row → column)",
}
SIMILARITIES = ("cknna", "mutual_knn", "cka", "dcor")


def distance_matrix(values, metric: str) -> np.ndarray:
    """A symmetric distance with a zero diagonal from a model × model metric matrix.

    Examples
    --------
    >>> import numpy as np
    >>> from matalign.plots import distance_matrix
    >>> distance_matrix(np.array([[1.0, 0.6], [0.8, 1.0]]), "cknna")
    array([[0. , 0.3],
           [0.3, 0. ]])
    """
    v = np.asarray(values, dtype=np.float64)
    s = (v + v.T) / 2
    d = s if metric == "information_imbalance" else 1.0 - s
    d = np.clip(d, 0.0, None)
    np.fill_diagonal(d, 0.0)
    return d


def average_linkage(dist) -> list:
    """Average-linkage (UPGMA) clustering of a symmetric distance matrix.

    Returns
    -------
    list of (left, right, height, size)
        M−1 merges, SciPy's convention: nodes 0..M−1 are leaves, node M+i is merge i.

    Examples
    --------
    >>> import numpy as np
    >>> from matalign.plots import average_linkage
    >>> d = np.array([[0, 1, 4], [1, 0, 4], [4, 4, 0]], dtype=float)
    >>> [(a, b, h, s) for a, b, h, s in average_linkage(d)]
    [(0, 1, 1.0, 2), (2, 3, 4.0, 3)]
    """
    d = np.array(dist, dtype=np.float64)
    m = d.shape[0]
    active = {i: 1 for i in range(m)}
    dd = {(i, j): d[i, j] for i in range(m) for j in range(i + 1, m)}
    merges, nxt = [], m
    while len(active) > 1:
        (a, b), h = min(dd.items(), key=lambda kv: (kv[1], kv[0]))
        sa, sb = active.pop(a), active.pop(b)
        for c in active:
            dac = dd.pop((min(a, c), max(a, c)))
            dbc = dd.pop((min(b, c), max(b, c)))
            dd[(c, nxt)] = (sa * dac + sb * dbc) / (sa + sb)
        dd.pop((a, b))
        merges.append((a, b, float(h), sa + sb))
        active[nxt] = sa + sb
        nxt += 1
    return merges


def leaf_order(dist) -> list:
    """Leaves in dendrogram order (average linkage), for ordering heatmap rows.

    Examples
    --------
    >>> import numpy as np
    >>> from matalign.plots import leaf_order
    >>> leaf_order(np.array([[0, 4, 1], [4, 0, 4], [1, 4, 0]], dtype=float))
    [1, 0, 2]
    """
    m = np.asarray(dist).shape[0]
    if m == 1:
        return [0]
    children = {m + i: (a, b) for i, (a, b, _, _) in enumerate(average_linkage(dist))}
    out, stack = [], [2 * m - 2]
    while stack:
        node = stack.pop()
        if node < m:
            out.append(node)
        else:
            a, b = children[node]
            stack.extend([b, a])
    return out


def _tick_size(m: int) -> float:
    return max(5.0, min(10.0, 220.0 / max(m, 1)))


def _draw_heatmap(fig, ax, values, names, order, title, vmin, vmax, annotate, cmap="viridis"):
    v = np.asarray(values, dtype=np.float64)[np.ix_(order, order)]
    labels = [names[i] for i in order]
    im = ax.imshow(v, cmap=cmap, vmin=vmin, vmax=vmax, interpolation="nearest")
    m = len(labels)
    ax.set_xticks(range(m), labels, rotation=60, ha="right", rotation_mode="anchor",
                  fontsize=_tick_size(m))
    ax.set_yticks(range(m), labels, fontsize=_tick_size(m))
    ax.set_title(title, fontsize=10)
    if annotate and m <= 12:
        mid = (vmin + vmax) / 2
        for i in range(m):
            for j in range(m):
                ax.text(j, i, f"{v[i, j]:.2f}", ha="center", va="center", fontsize=7,
                        color="black" if v[i, j] > mid else "white")
    return im


def _range(values, metric):
    v = np.asarray(values, dtype=np.float64)
    if metric in SIMILARITIES:
        lo = min(0.0, float(v.min()))
        return lo, max(1.0, float(v.max()))
    return float(v.min()), float(v.max()) if v.max() > v.min() else float(v.min()) + 1e-9


def heatmap(values, names, metric: str, *, title=None, order=None) -> Figure:
    """Model × model heatmap of one metric, rows and columns ordered by average linkage.

    Examples
    --------
    >>> import numpy as np
    >>> from matalign.plots import heatmap
    >>> fig = heatmap(np.array([[1.0, 0.5], [0.5, 1.0]]), ["a", "b"], "cknna")
    >>> fig.axes[0].get_title()
    'CKNNA'
    """
    names = list(names)
    if order is None:
        order = leaf_order(distance_matrix(values, metric))
    m = len(names)
    size = max(4.0, min(12.0, 2.5 + 0.35 * m))
    fig = Figure(figsize=(size + 1.2, size), layout="constrained")
    ax = fig.add_subplot()
    vmin, vmax = _range(values, metric)
    label = METRIC_LABELS.get(metric, metric)
    im = _draw_heatmap(fig, ax, values, names, order, title or label, vmin, vmax, True,
                       cmap="viridis_r" if metric == "information_imbalance" else "viridis")
    cb = fig.colorbar(im, ax=ax, shrink=0.8)
    cb.set_label(label)
    if metric == "information_imbalance":
        ax.set_ylabel("from model (row)")
        ax.set_xlabel("to model (column)")
    return fig


def heatmaps_side_by_side(matrices, names, metric: str, *, set_labels=None) -> Figure:
    """One heatmap per structure set on a shared colour scale and a shared model order
    (the average-linkage order of the first set), e.g. in-distribution next to OOD.

    ``matrices`` is a list of (M, M) arrays over the same ``names``.

    Examples
    --------
    >>> import numpy as np
    >>> from matalign.plots import heatmaps_side_by_side
    >>> a = np.array([[1.0, 0.2], [0.2, 1.0]])
    >>> fig = heatmaps_side_by_side([a, a ** 0.5], ["x", "y"], "cka", set_labels=["id", "ood"])
    >>> [ax.get_title() for ax in fig.axes[:2]]
    ['id', 'ood']
    """
    names = list(names)
    order = leaf_order(distance_matrix(matrices[0], metric))
    set_labels = list(set_labels) if set_labels is not None else [f"set {i}" for i in
                                                                  range(len(matrices))]
    lows, highs = zip(*(_range(v, metric) for v in matrices))
    vmin, vmax = min(lows), max(highs)
    m = len(names)
    size = max(3.5, min(9.0, 2.2 + 0.3 * m))
    fig = Figure(figsize=(size * len(matrices) + 1.2, size + 0.4), layout="constrained")
    axes = fig.subplots(1, len(matrices), squeeze=False)[0]
    im = None
    for ax, v, label in zip(axes, matrices, set_labels):
        im = _draw_heatmap(fig, ax, v, names, order, label, vmin, vmax, len(matrices) <= 2,
                           cmap="viridis_r" if metric == "information_imbalance" else "viridis")
    cb = fig.colorbar(im, ax=list(axes), shrink=0.8)
    cb.set_label(METRIC_LABELS.get(metric, metric))
    fig.suptitle(f"{METRIC_LABELS.get(metric, metric)} by structure set "
                 f"(models ordered by average linkage on '{set_labels[0]}')", fontsize=11)
    return fig


def tree(values, names, metric: str = "cknna", *, title=None) -> Figure:
    """Dendrogram of the models: average linkage (UPGMA) on d = 1 − similarity.

    Examples
    --------
    >>> import numpy as np
    >>> from matalign.plots import tree
    >>> s = np.array([[1.0, 0.9, 0.1], [0.9, 1.0, 0.2], [0.1, 0.2, 1.0]])
    >>> fig = tree(s, ["a", "b", "c"])
    >>> fig.axes[0].get_xlabel()
    '1 − CKNNA (average linkage)'
    """
    names = list(names)
    m = len(names)
    d = distance_matrix(values, metric)
    merges = average_linkage(d) if m > 1 else []
    order = leaf_order(d)
    y = {leaf: float(pos) for pos, leaf in enumerate(order)}
    x = {leaf: 0.0 for leaf in range(m)}
    fig = Figure(figsize=(7.5, max(2.5, 0.35 * m + 1.2)), layout="constrained")
    ax = fig.add_subplot()
    for i, (a, b, h, _) in enumerate(merges):
        node = m + i
        for c in (a, b):
            ax.plot([x[c], h], [y[c], y[c]], color="#1f4e79", lw=1.4)
        ax.plot([h, h], [y[a], y[b]], color="#1f4e79", lw=1.4)
        x[node], y[node] = h, (y[a] + y[b]) / 2
    ax.set_yticks(range(m), [names[i] for i in order], fontsize=_tick_size(m))
    label = METRIC_LABELS.get(metric, metric)
    ax.set_xlabel(f"1 − {label} (average linkage)" if metric in SIMILARITIES
                  else f"{label} (average linkage)")
    ax.set_xlim(left=0)
    ax.invert_xaxis()
    ax.yaxis.tick_right()
    ax.set_ylim(-0.6, m - 0.4)
    for side in ("top", "left"):
        ax.spines[side].set_visible(False)
    ax.set_title(title or f"model tree from {label}", fontsize=10)
    return fig


def imbalance_plane(sets, names, *, reference=None) -> Figure:
    """Information-imbalance plane: Δ(A→B) against Δ(B→A) for every model pair A < B.

    ``sets`` is a list of (label, (M, M) Δ matrix) over the same ``names``; each set gets its
    own colour and marker. Near (0, 0): equivalent information; near the diagonal's top end:
    unrelated; below the diagonal: A predicts B better than B predicts A.

    Examples
    --------
    >>> import numpy as np
    >>> from matalign.plots import imbalance_plane
    >>> d = np.array([[0.01, 0.2, 0.9], [0.5, 0.01, 0.8], [0.9, 0.95, 0.01]])
    >>> fig = imbalance_plane([("id", d)], ["a", "b", "c"])
    >>> fig.axes[0].get_xlabel()
    'Δ(A → B)'
    """
    names = list(names)
    m = len(names)
    fig = Figure(figsize=(6.2, 5.6), layout="constrained")
    ax = fig.add_subplot()
    markers = "osD^vP*X"
    hi = 0.0
    for s, (label, mat) in enumerate(sets):
        v = np.asarray(mat, dtype=np.float64)
        xs, ys, texts = [], [], []
        for a in range(m):
            for b in range(a + 1, m):
                xs.append(v[a, b])
                ys.append(v[b, a])
                texts.append(f"{names[a]}, {names[b]}")
        if not xs:
            continue
        hi = max(hi, max(xs), max(ys))
        ax.scatter(xs, ys, s=36, marker=markers[s % len(markers)], alpha=0.85,
                   label=label, edgecolors="black", linewidths=0.4)
        if len(xs) <= 10 and len(sets) == 1:
            for x0, y0, t in zip(xs, ys, texts):
                ax.annotate(t, (x0, y0), textcoords="offset points", xytext=(4, 3),
                            fontsize=6.5, alpha=0.8)
    top = max(1.05, hi * 1.05)
    ax.plot([0, top], [0, top], ls="--", color="grey", lw=1, label="Δ(A→B) = Δ(B→A)")
    ax.set_xlim(0, top)
    ax.set_ylim(0, top)
    ax.set_aspect("equal")
    ax.set_xlabel("Δ(A → B)")
    ax.set_ylabel("Δ(B → A)")
    ax.set_title("information-imbalance plane (each point: a model pair A, B)", fontsize=10)
    ax.legend(fontsize=8, loc="upper left")
    ax.grid(alpha=0.3)
    return fig


def reference_vs_error(points, *, reference: str, metric: str = "cknna",
                       error_label: str = "error") -> Figure:
    """Alignment of each model to a reference model against that model's error.

    ``points`` is a list of (set label, {model: (error, alignment)}).

    Examples
    --------
    >>> from matalign.plots import reference_vs_error
    >>> fig = reference_vs_error([("id", {"a": (0.1, 0.8), "b": (0.5, 0.3)})], reference="r")
    >>> fig.axes[0].get_ylabel()
    'CKNNA to r'
    """
    fig = Figure(figsize=(6.4, 4.8), layout="constrained")
    ax = fig.add_subplot()
    markers = "osD^vP*X"
    for s, (label, pts) in enumerate(points):
        names = list(pts)
        xs = [pts[n][0] for n in names]
        ys = [pts[n][1] for n in names]
        ax.scatter(xs, ys, s=40, marker=markers[s % len(markers)], label=label,
                   edgecolors="black", linewidths=0.4)
        if len(names) <= 25:
            for n, x0, y0 in zip(names, xs, ys):
                ax.annotate(n, (x0, y0), textcoords="offset points", xytext=(4, 3), fontsize=7)
    ax.set_xlabel(error_label)
    ax.set_ylabel(f"{METRIC_LABELS.get(metric, metric)} to {reference}")
    ax.set_title(f"alignment to the reference model {reference} vs error", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return fig


def intrinsic_dimension_bars(values, names, set_labels) -> Figure:
    """Grouped bars: TwoNN intrinsic dimension per model, one bar per structure set.

    ``values`` is a list (one per set) of {model: dimension}; missing entries are skipped.

    Examples
    --------
    >>> from matalign.plots import intrinsic_dimension_bars
    >>> fig = intrinsic_dimension_bars([{"a": 5.0, "b": 7.5}], ["a", "b"], ["id"])
    >>> fig.axes[0].get_ylabel()
    'intrinsic dimension (TwoNN)'
    """
    names = list(names)
    m, s = len(names), len(values)
    fig = Figure(figsize=(max(5.0, 0.55 * m * max(s, 1) + 2.0), 4.2), layout="constrained")
    ax = fig.add_subplot()
    width = 0.8 / max(s, 1)
    for j, (vals, label) in enumerate(zip(values, set_labels)):
        xs = [i + (j - (s - 1) / 2) * width for i, n in enumerate(names) if n in vals]
        ys = [vals[n] for n in names if n in vals]
        ax.bar(xs, ys, width=width * 0.95, label=label, edgecolor="black", linewidth=0.4)
    ax.set_xticks(range(m), names, rotation=45, ha="right", rotation_mode="anchor",
                  fontsize=_tick_size(m))
    ax.set_ylabel("intrinsic dimension (TwoNN)")
    ax.set_title("intrinsic dimension per model", fontsize=10)
    ax.grid(axis="y", alpha=0.3)
    if s > 1:
        ax.legend(fontsize=8)
    return fig


def disagreement_histogram(mean_agreement, pairs=None, *, k=None, title=None) -> Figure:
    """Histogram of the per-structure mean local agreement (low = models disagree), with the
    individual pairs' distributions as outlines (up to 8 pairs).

    ``pairs`` maps a pair label to its per-structure local agreement.

    Examples
    --------
    >>> import numpy as np
    >>> from matalign.plots import disagreement_histogram
    >>> fig = disagreement_histogram(np.linspace(0, 1, 100))
    >>> fig.axes[0].get_ylabel()
    'structures'
    """
    mean_agreement = np.asarray(mean_agreement, dtype=np.float64)
    fig = Figure(figsize=(6.8, 4.2), layout="constrained")
    ax = fig.add_subplot()
    bins = np.linspace(0.0, 1.0, 41) if k is None else np.linspace(-0.5 / k, 1 + 0.5 / k, k + 2)
    ax.hist(mean_agreement, bins=bins, color="#4c72b0", alpha=0.75, label="mean over pairs",
            edgecolor="white", linewidth=0.3)
    for i, (label, v) in enumerate((pairs or {}).items()):
        if i >= 8:
            break
        ax.hist(np.asarray(v), bins=bins, histtype="step", linewidth=1.2, label=label)
    ax.set_xlabel("local agreement |kNN_A(i) ∩ kNN_B(i)| / k   (low: the models disagree)")
    ax.set_ylabel("structures")
    ax.set_xlim(bins[0], bins[-1])
    ax.set_title(title or "per-structure agreement", fontsize=10)
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    return fig
