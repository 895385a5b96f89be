"""Figures of alignment results: heatmaps, difference maps, trends, model trees, the
information-imbalance plane and more.

Every function draws on a fresh :class:`matplotlib.figure.Figure` (Agg canvas, no pyplot state,
no display needed) and returns it; save it with ``fig.savefig(path, dpi=150)``. Clustering is
SciPy's average linkage (``scipy.cluster.hierarchy``).

Colour scales are fixed per metric, never fitted to one run's values (:data:`METRIC_RANGES`,
:data:`DIFF_RANGES`), so equal numbers get equal colours in every panel and every run. Cell
annotations are black or white by the relative luminance of the cell's colour.

Distances used for ordering: for a similarity s in [0, 1] (cknna, mutual_knn, cka, dcor)
d = 1 − s of the symmetrised matrix (s + sᵀ)/2; for information imbalance
d = (Δ(a→b) + Δ(b→a))/2.
"""

from __future__ import annotations

import numpy as np
from matplotlib import colormaps
from matplotlib.colors import Normalize
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

__all__ = ["METRIC_LABELS", "METRIC_RANGES", "DIFF_RANGES", "metric_range", "text_colour",
           "distance_matrix", "average_linkage", "leaf_order", "heatmap", "difference_heatmap",
           "heatmaps_side_by_side", "tree", "parse_newick", "newick_leaves", "newick_tree",
           "trend", "imbalance_plane", "reference_vs_error", "intrinsic_dimension_bars",
           "disagreement_histogram"]

METRIC_LABELS = {
    "cknna": "CKNNA",
    "mutual_knn": "mutual kNN",
    "cka": "CKA",
    "dcor": "distance correlation",
    "information_imbalance": "information imbalance Δ(row → column)",
}
SIMILARITIES = ("cknna", "mutual_knn", "cka", "dcor")
#: Fixed colour range per metric (bounded similarities 0–1; information imbalance 0–1.2,
#: since Δ of unrelated spaces is ≈ 1 and finite-N values can exceed it).
METRIC_RANGES = {"cknna": (0.0, 1.0), "mutual_knn": (0.0, 1.0), "cka": (0.0, 1.0),
                 "dcor": (0.0, 1.0), "information_imbalance": (0.0, 1.2)}
#: Fixed symmetric colour range of a difference map (OOD − ID) per metric.
DIFF_RANGES = {"cknna": (-0.5, 0.5), "mutual_knn": (-0.5, 0.5), "cka": (-0.5, 0.5),
               "dcor": (-0.5, 0.5), "information_imbalance": (-0.6, 0.6)}
CMAP = "viridis"
DIFF_CMAP = "PuOr"
_FAMILY_COLOURS = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b",
                   "#e377c2", "#17becf", "#bcbd22", "#7f7f7f"]


def metric_range(metric: str, *, difference: bool = False) -> tuple:
    """The fixed colour range of a metric (or of its difference map).

    Examples
    --------
    >>> from matalign.plots import metric_range
    >>> metric_range("cknna"), metric_range("information_imbalance")
    ((0.0, 1.0), (0.0, 1.2))
    >>> metric_range("cka", difference=True)
    (-0.5, 0.5)
    """
    table = DIFF_RANGES if difference else METRIC_RANGES
    return table.get(metric, (-1.0, 1.0) if difference else (0.0, 1.0))


def text_colour(rgba) -> str:
    """"black" or "white", whichever reads better on a background colour, by its WCAG
    relative luminance (threshold 0.179, where both contrasts are equal).

    Examples
    --------
    >>> from matalign.plots import text_colour
    >>> text_colour((1.0, 1.0, 0.0, 1.0)), text_colour((0.27, 0.0, 0.33, 1.0))
    ('black', 'white')
    """
    c = np.asarray(rgba, dtype=np.float64)[:3]
    lin = np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)
    lum = float(lin @ np.array([0.2126, 0.7152, 0.0722]))
    return "black" if lum > 0.179 else "white"


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


def _linkage(dist):
    from scipy.cluster.hierarchy import linkage
    from scipy.spatial.distance import squareform

    d = np.asarray(dist, dtype=np.float64)
    return linkage(squareform(d, checks=False), method="average")


def average_linkage(dist) -> list:
    """Average-linkage (UPGMA) clustering of a symmetric distance matrix (SciPy's
    ``linkage(method="average")``).

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
    if np.asarray(dist).shape[0] < 2:
        return []
    return [(int(a), int(b), float(h), int(s)) for a, b, h, s in _linkage(dist)]


def leaf_order(dist) -> list:
    """Leaves in dendrogram order (average linkage), for ordering heatmap rows.

    Examples
    --------
    >>> import numpy as np
    >>> from matalign.plots import leaf_order
    >>> leaf_order(np.array([[0, 4, 1], [4, 0, 4], [1, 4, 0]], dtype=float))
    [1, 0, 2]
    """
    from scipy.cluster.hierarchy import leaves_list

    m = np.asarray(dist).shape[0]
    if m < 2:
        return list(range(m))
    return [int(i) for i in leaves_list(_linkage(dist))]


def _tick_size(m: int) -> float:
    return max(5.0, min(10.0, 220.0 / max(m, 1)))


def _draw_heatmap(ax, values, names, order, title, vmin, vmax, annotate, cmap=CMAP,
                  fmt="{:.2f}"):
    v = np.asarray(values, dtype=np.float64)[np.ix_(order, order)]
    labels = [names[i] for i in order]
    norm = Normalize(vmin=vmin, vmax=vmax, clip=True)
    cm = colormaps[cmap]
    im = ax.imshow(v, cmap=cm, norm=norm, interpolation="nearest")
    m = len(labels)
    ax.set_xticks(range(m), labels, rotation=60, ha="right", rotation_mode="anchor",
                  fontsize=_tick_size(m))
    ax.set_yticks(range(m), labels, fontsize=_tick_size(m))
    ax.set_title(title, fontsize=9)
    if annotate and m <= 12:
        for i in range(m):
            for j in range(m):
                if not np.isfinite(v[i, j]):
                    continue
                ax.text(j, i, fmt.format(v[i, j]), ha="center", va="center", fontsize=7,
                        color=text_colour(cm(norm(v[i, j]))))
    return im


def _order(order, names, values, metric):
    if order is None:
        return leaf_order(distance_matrix(values, metric))
    return [names.index(o) if isinstance(o, str) else int(o) for o in order]


def heatmap(values, names, metric: str, *, title=None, order=None) -> Figure:
    """Model × model heatmap of one metric on its fixed colour range.

    ``order`` (model names or indices) fixes the rows and columns; default: average linkage.

    Examples
    --------
    >>> import numpy as np
    >>> from matalign.plots import heatmap
    >>> fig = heatmap(np.array([[1.0, 0.5], [0.5, 1.0]]), ["a", "b"], "cknna")
    >>> fig.axes[0].get_title(), fig.axes[0].images[0].get_clim()
    ('CKNNA', (0.0, 1.0))
    """
    names = list(names)
    order = _order(order, names, values, metric)
    m = len(names)
    size = max(4.0, min(12.0, 2.5 + 0.35 * m))
    fig = Figure(figsize=(size + 1.2, size + 0.3), layout="constrained")
    ax = fig.add_subplot()
    vmin, vmax = metric_range(metric)
    label = METRIC_LABELS.get(metric, metric)
    im = _draw_heatmap(ax, values, names, order, title or label, vmin, vmax, True)
    cb = fig.colorbar(im, ax=ax, shrink=0.8)
    cb.set_label(label)
    if metric == "information_imbalance":
        ax.set_ylabel("from model (row)")
        ax.set_xlabel("to model (column)")
    return fig


def difference_heatmap(diff, names, metric: str, *, title=None, order=None) -> Figure:
    """Heatmap of a difference of one metric between two sets (e.g. OOD − ID) on the metric's
    fixed symmetric range and a diverging colour map (white = no change).

    Examples
    --------
    >>> import numpy as np
    >>> from matalign.plots import difference_heatmap
    >>> fig = difference_heatmap(np.array([[0.0, -0.2], [-0.2, 0.0]]), ["a", "b"], "cknna")
    >>> fig.axes[0].images[0].get_clim()
    (-0.5, 0.5)
    """
    names = list(names)
    order = list(range(len(names))) if order is None else _order(order, names, diff, metric)
    m = len(names)
    size = max(4.0, min(12.0, 2.5 + 0.35 * m))
    fig = Figure(figsize=(size + 1.2, size + 0.3), layout="constrained")
    ax = fig.add_subplot()
    vmin, vmax = metric_range(metric, difference=True)
    im = _draw_heatmap(ax, diff, names, order, title or f"Δ {metric}", vmin, vmax, True,
                       cmap=DIFF_CMAP, fmt="{:+.2f}")
    cb = fig.colorbar(im, ax=ax, shrink=0.8)
    cb.set_label(f"{METRIC_LABELS.get(metric, metric)}: OOD − ID")
    return fig


def heatmaps_side_by_side(matrices, names, metric: str, *, set_labels=None,
                          order=None) -> Figure:
    """One heatmap per structure set on the metric's fixed colour scale and one model order
    (``order``, default the average-linkage order of the first set).

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
    order = _order(order, names, matrices[0], metric)
    set_labels = list(set_labels) if set_labels is not None else [f"set {i}" for i in
                                                                  range(len(matrices))]
    vmin, vmax = metric_range(metric)
    m = len(names)
    size = max(3.5, min(9.0, 2.2 + 0.3 * m))
    fig = Figure(figsize=(size * len(matrices) + 1.2, size + 0.4), layout="constrained")
    axes = fig.subplots(1, len(matrices), squeeze=False)[0]
    im = None
    for ax, v, label in zip(axes, matrices, set_labels):
        im = _draw_heatmap(ax, v, names, order, label, vmin, vmax, len(matrices) <= 2)
    cb = fig.colorbar(im, ax=list(axes), shrink=0.8)
    cb.set_label(METRIC_LABELS.get(metric, metric))
    fig.suptitle(f"{METRIC_LABELS.get(metric, metric)} by structure set (one model order, "
                 f"colour range {vmin:g}–{vmax:g})", fontsize=11)
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
    merges = average_linkage(d)
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


def parse_newick(text: str) -> dict:
    """Parse a Newick string into nested dicts ``{"name", "length", "children"}``.

    Labels may be quoted ('...'); branch lengths are optional (0 when absent).

    Raises
    ------
    ValueError
        On unbalanced parentheses, a bad branch length or text after the final ';'.

    Examples
    --------
    >>> from matalign.plots import parse_newick
    >>> t = parse_newick("((a:0.1,'b c':0.2):0.3,d:0.4);")
    >>> [c["name"] for c in t["children"][0]["children"]], t["children"][1]["length"]
    (['a', 'b c'], 0.4)
    """
    s = str(text).strip()
    if not s.endswith(";"):
        raise ValueError(f"newick must end with ';'; got {s[-20:]!r}")
    s = s[:-1]
    pos = 0

    def label():
        nonlocal pos
        if pos < len(s) and s[pos] == "'":
            end = s.find("'", pos + 1)
            if end < 0:
                raise ValueError("newick: unterminated quoted label")
            out, pos = s[pos + 1:end], end + 1
            return out
        start = pos
        while pos < len(s) and s[pos] not in ",():;":
            pos += 1
        return s[start:pos].strip()

    def node():
        nonlocal pos
        children = []
        if pos < len(s) and s[pos] == "(":
            pos += 1
            children.append(node())
            while pos < len(s) and s[pos] == ",":
                pos += 1
                children.append(node())
            if pos >= len(s) or s[pos] != ")":
                raise ValueError(f"newick: expected ')' at character {pos}")
            pos += 1
        name = label()
        length = 0.0
        if pos < len(s) and s[pos] == ":":
            pos += 1
            start = pos
            while pos < len(s) and s[pos] not in ",()":
                pos += 1
            try:
                length = float(s[start:pos])
            except ValueError:
                raise ValueError(f"newick: bad branch length {s[start:pos]!r}") from None
        return {"name": name, "length": length, "children": children}

    root = node()
    if pos != len(s):
        raise ValueError(f"newick: unexpected text at character {pos}: {s[pos:pos + 20]!r}")
    return root


def newick_leaves(tree_: dict) -> list:
    """Leaf names of a parsed Newick tree, top to bottom."""
    if not tree_["children"]:
        return [tree_["name"]]
    return [leaf for c in tree_["children"] for leaf in newick_leaves(c)]


def newick_tree(newick: str, *, families=None, random=(), title=None,
                xlabel="branch length") -> Figure:
    """Draw a (neighbour-joining) tree given as Newick: a rectangular phylogram, leaves
    coloured by family, random-init models drawn with hollow markers and marked "(random)".

    Negative branch lengths (possible with neighbour joining) are drawn as 0.

    Examples
    --------
    >>> from matalign.plots import newick_tree
    >>> fig = newick_tree("((a:0.1,b:0.2):0.3,c:0.4);", families={"a": "X", "b": "X"},
    ...                   random=["c"])
    >>> [t.get_text() for t in fig.axes[0].texts]
    ['a', 'b', 'c (random)']
    """
    families = dict(families or {})
    random = set(random)
    root = parse_newick(newick)
    leaves = newick_leaves(root)
    fams = sorted({families.get(n) or "unknown" for n in leaves})
    colour = {f: _FAMILY_COLOURS[i % len(_FAMILY_COLOURS)] for i, f in enumerate(fams)}
    fig = Figure(figsize=(7.5, max(2.8, 0.38 * len(leaves) + 1.3)), layout="constrained")
    ax = fig.add_subplot()
    ys = {}
    counter = [0]

    def draw(node, x0):
        x = x0 + max(node["length"], 0.0)
        if not node["children"]:
            y = float(counter[0])
            counter[0] += 1
        else:
            cy = [draw(c, x) for c in node["children"]]
            ax.plot([x, x], [min(cy), max(cy)], color="#333333", lw=1.3)
            y = (min(cy) + max(cy)) / 2
        ax.plot([x0, x], [y, y], color="#333333", lw=1.3)
        if not node["children"]:
            ys[node["name"]] = (x, y)
        return y

    draw(root, 0.0)
    xmax = max((x for x, _ in ys.values()), default=1.0) or 1.0
    for name in leaves:
        x, y = ys[name]
        fam = families.get(name) or "unknown"
        rnd = name in random
        ax.scatter([x], [y], s=42, zorder=3, marker="o",
                   facecolors="white" if rnd else colour[fam], edgecolors=colour[fam],
                   linewidths=1.6)
        ax.text(x + 0.02 * xmax, y, f"{name} (random)" if rnd else name, va="center",
                fontsize=8, color=colour[fam], style="italic" if rnd else "normal")
    ax.set_xlim(-0.02 * xmax, xmax * 1.45)
    ax.set_ylim(len(leaves) - 0.4, -0.6)
    ax.set_yticks([])
    ax.set_xlabel(xlabel)
    for side in ("top", "left", "right"):
        ax.spines[side].set_visible(False)
    handles = [Line2D([], [], marker="o", ls="", color=colour[f], label=f) for f in fams]
    if random:
        handles.append(Line2D([], [], marker="o", ls="", markerfacecolor="white",
                              markeredgecolor="black", label="random init"))
    ax.legend(handles=handles, fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0),
              title="family", title_fontsize=7, frameon=False)
    ax.set_title(title or "model tree", fontsize=10)
    return fig


def trend(panels, *, title=None, xlabel="OOD level") -> Figure:
    """Trend lines with interval bars, one panel per quantity.

    ``panels`` is a list of (y label, {line label: (levels, values, lows, highs)}); a low or
    high that is NaN draws no bar for that point.

    Examples
    --------
    >>> from matalign.plots import trend
    >>> fig = trend([("CKNNA", {"mean": ([0, 1], [0.9, 0.7], [0.85, 0.6], [0.95, 0.8])})])
    >>> fig.axes[0].get_ylabel()
    'CKNNA'
    """
    n = max(len(panels), 1)
    cols = min(n, 3)
    rows = -(-n // cols)
    fig = Figure(figsize=(4.3 * cols + 0.6, 3.6 * rows + 0.5), layout="constrained")
    axes = fig.subplots(rows, cols, squeeze=False).ravel()
    for ax in axes[n:]:
        ax.set_visible(False)
    for ax, (ylabel, lines) in zip(axes, panels):
        for label, (lv, val, lo, hi) in lines.items():
            lv, val = np.asarray(lv, float), np.asarray(val, float)
            lo, hi = np.asarray(lo, float), np.asarray(hi, float)
            err = np.vstack([np.where(np.isfinite(lo), val - lo, 0.0),
                             np.where(np.isfinite(hi), hi - val, 0.0)])
            ax.errorbar(lv, val, yerr=np.clip(err, 0.0, None), marker="o", ms=4, capsize=3,
                        lw=1.4, label=label)
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    if title:
        fig.suptitle(title, fontsize=10)
    return fig


def imbalance_plane(sets, names, *, reference=None) -> Figure:
    """Information-imbalance plane: Δ(A→B) against Δ(B→A) for every model pair A < B, one
    panel per structure set (same axes range in every panel).

    ``sets`` is a list of (label, (M, M) Δ matrix) over the same ``names``; every point is
    labelled "A→B" with its pair, and the pairs that contain ``reference`` are drawn larger with
    a red edge and red labels. Near (0, 0): equivalent information; near (1, 1): unrelated;
    below the diagonal: A predicts B better than B predicts A.

    Examples
    --------
    >>> import numpy as np
    >>> from matalign.plots import imbalance_plane
    >>> d = np.array([[0.01, 0.2, 0.9], [0.5, 0.01, 0.8], [0.9, 0.95, 0.01]])
    >>> fig = imbalance_plane([("id", d)], ["a", "b", "c"], reference="a")
    >>> fig.axes[0].get_xlabel(), len(fig.axes[0].texts)
    ('Δ(A → B)', 3)
    """
    names = list(names)
    m = len(names)
    n = max(len(sets), 1)
    cols = min(n, 2)
    rows = -(-n // cols)
    fig = Figure(figsize=(5.6 * cols + 0.4, 5.4 * rows + 0.4), layout="constrained")
    axes = fig.subplots(rows, cols, squeeze=False).ravel()
    for ax in axes[n:]:
        ax.set_visible(False)
    hi = max([1.0] + [float(np.max(np.asarray(v, float))) for _, v in sets])
    top = hi * 1.05
    for s, (ax, (label, mat)) in enumerate(zip(axes, sets)):
        v = np.asarray(mat, dtype=np.float64)
        pts = [(v[a, b], v[b, a], names[a], names[b]) for a in range(m) for b in range(a + 1, m)]
        is_ref = [reference is not None and reference in (p[2], p[3]) for p in pts]
        colour = _FAMILY_COLOURS[s % len(_FAMILY_COLOURS)]
        ax.scatter([p[0] for p in pts], [p[1] for p in pts], s=[70 if r else 30 for r in is_ref],
                   color=colour, edgecolors=["red" if r else "black" for r in is_ref],
                   linewidths=[1.6 if r else 0.4 for r in is_ref], alpha=0.9, zorder=3)
        for (x0, y0, a, b), r in zip(pts, is_ref):
            ax.annotate(f"{a}→{b}", (x0, y0), textcoords="offset points", xytext=(4, 2),
                        fontsize=6 if m <= 8 else 4.5, color="#b00000" if r else "#222222")
        ax.plot([0, top], [0, top], ls="--", color="grey", lw=1)
        ax.set_xlim(0, top)
        ax.set_ylim(0, top)
        ax.set_aspect("equal")
        ax.set_xlabel("Δ(A → B)")
        ax.set_ylabel("Δ(B → A)")
        ax.set_title(label, fontsize=9)
        ax.grid(alpha=0.3)
    handles = [Line2D([], [], ls="--", color="grey", label="Δ(A→B) = Δ(B→A)")]
    if reference is not None:
        handles.append(Line2D([], [], ls="", marker="o", markerfacecolor="white",
                              markeredgecolor="red", markeredgewidth=1.6,
                              label=f"pairs with the reference {reference}"))
    axes[0].legend(handles=handles, fontsize=7, loc="upper left")
    fig.suptitle("information-imbalance plane (each point: a model pair A→B, both "
                 "directions)", fontsize=10)
    return fig


def reference_vs_error(points, *, reference: str, metric: str = "cknna",
                       error_label: str = "error", functional=None, min_models: int = 3
                       ) -> Figure:
    """Alignment of each model to a reference model against that model's error.

    ``points`` is a list of (set label, {model: (error, alignment)}); ``functional`` maps a
    model to its training functional (e.g. "PBE", "r2SCAN"); models are grouped by it and a
    least-squares line with Spearman's ρ is drawn per group only when it holds at least
    ``min_models`` models; otherwise the panel says so.

    Examples
    --------
    >>> from matalign.plots import reference_vs_error
    >>> fig = reference_vs_error([("id", {"a": (0.1, 0.8), "b": (0.5, 0.3)})], reference="r")
    >>> fig.axes[0].get_ylabel()
    'CKNNA to r'
    >>> any("fewer than 3" in t.get_text() for t in fig.axes[0].texts)
    True
    """
    from scipy.stats import spearmanr

    functional = dict(functional or {})
    fig = Figure(figsize=(6.8, 5.0), layout="constrained")
    ax = fig.add_subplot()
    markers = "osD^vP*X"
    notes = []
    groups_seen = []
    for s, (label, pts) in enumerate(points):
        groups = {}
        for n in pts:
            groups.setdefault(functional.get(n) or "functional unknown", []).append(n)
        for g, members in sorted(groups.items()):
            if g not in groups_seen:
                groups_seen.append(g)
            colour = _FAMILY_COLOURS[groups_seen.index(g) % len(_FAMILY_COLOURS)]
            xs = np.array([pts[n][0] for n in members], float)
            ys = np.array([pts[n][1] for n in members], float)
            tag = g if len(points) == 1 else f"{g}, {label}"
            ax.scatter(xs, ys, s=40, marker=markers[s % len(markers)], color=colour,
                       label=f"{tag} ({len(members)})", edgecolors="black", linewidths=0.4)
            for n, x0, y0 in zip(members, xs, ys):
                ax.annotate(n, (x0, y0), textcoords="offset points", xytext=(4, 3), fontsize=7)
            if len(members) >= min_models and np.ptp(xs) > 0:
                slope, icpt = np.polyfit(xs, ys, 1)
                rho = spearmanr(xs, ys).statistic
                grid = np.linspace(xs.min(), xs.max(), 2)
                ax.plot(grid, slope * grid + icpt, color=colour, lw=1.2, ls="--",
                        label=f"{tag}: Spearman ρ = {rho:+.2f} (n = {len(members)})")
            else:
                notes.append(f"{tag}: {len(members)} model(s), fewer than {min_models} "
                             f"comparable models: no trend drawn")
    if notes:
        ax.text(0.02, 0.02, "\n".join(notes), transform=ax.transAxes, fontsize=7,
                va="bottom", ha="left", bbox={"facecolor": "#fff8e0", "edgecolor": "#c9a227",
                                              "boxstyle": "round,pad=0.3"})
    ax.set_xlabel(error_label)
    ax.set_ylabel(f"{METRIC_LABELS.get(metric, metric)} to {reference}")
    ax.set_title(f"alignment to the reference model {reference} vs error", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="upper right")
    return fig


def intrinsic_dimension_bars(values, names, set_labels, *, intervals=None) -> Figure:
    """Grouped bars: intrinsic dimension per model, one bar per structure set, with interval
    bars where ``intervals`` (one per set: {model: (low, high)}) has them.

    ``values`` is a list (one per set) of {model: dimension}; missing entries are skipped.

    Examples
    --------
    >>> from matalign.plots import intrinsic_dimension_bars
    >>> fig = intrinsic_dimension_bars([{"a": 5.0, "b": 7.5}], ["a", "b"], ["id"],
    ...                                intervals=[{"a": (4.5, 5.6)}])
    >>> fig.axes[0].get_ylabel()
    'intrinsic dimension (TwoNN)'
    """
    names = list(names)
    m, s = len(names), len(values)
    intervals = list(intervals) if intervals is not None else [{} for _ in values]
    fig = Figure(figsize=(max(5.0, 0.55 * m * max(s, 1) + 2.0), 4.4), layout="constrained")
    ax = fig.add_subplot()
    width = 0.8 / max(s, 1)
    for j, (vals, label, ci) in enumerate(zip(values, set_labels, intervals)):
        present = [n for n in names if n in vals]
        xs = [names.index(n) + (j - (s - 1) / 2) * width for n in present]
        ys = [vals[n] for n in present]
        ax.bar(xs, ys, width=width * 0.95, label=label, edgecolor="black", linewidth=0.4)
        bar_x, lo, hi = [], [], []
        for x0, n, y0 in zip(xs, present, ys):
            if n in ci and ci[n] is not None and all(np.isfinite(ci[n])):
                bar_x.append(x0)
                lo.append(max(y0 - ci[n][0], 0.0))
                hi.append(max(ci[n][1] - y0, 0.0))
        if bar_x:
            ax.errorbar(bar_x, [vals[n] for n in present if n in ci and ci[n] is not None
                                and all(np.isfinite(ci[n]))],
                        yerr=[lo, hi], fmt="none", ecolor="black", capsize=3, lw=1)
    ax.set_xticks(range(m), names, rotation=45, ha="right", rotation_mode="anchor",
                  fontsize=_tick_size(m))
    ax.set_ylabel("intrinsic dimension (TwoNN)")
    ax.set_title("intrinsic dimension per model (bars: interval from stats.json)"
                 if any(intervals) else "intrinsic dimension per model", fontsize=10)
    ax.grid(axis="y", alpha=0.3)
    if s > 1:
        ax.legend(fontsize=8)
    return fig


def disagreement_histogram(mean_agreement, pairs=None, *, k=None, title=None,
                           max_pairs: int = 8) -> Figure:
    """Histogram of the per-structure mean local agreement (low = models disagree), with the
    individual pairs' distributions as outlines (the first ``max_pairs``; the legend says how
    many more there are).

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
    pairs = dict(pairs or {})
    for i, (label, v) in enumerate(pairs.items()):
        if i >= max_pairs:
            break
        ax.hist(np.asarray(v), bins=bins, histtype="step", linewidth=1.2, label=label)
    if len(pairs) > max_pairs:
        ax.plot([], [], ls="", label=f"+ {len(pairs) - max_pairs} more pairs (see the table)")
    ax.set_xlabel("local agreement |kNN_A(i) ∩ kNN_B(i)| / k   (low: the models disagree)")
    ax.set_ylabel("structures")
    ax.set_xlim(bins[0], bins[-1])
    ax.set_title(title or "per-structure agreement", fontsize=10)
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    return fig


def layer_heatmap(panels, *, subtitle: str = "", metric: str = "cknna") -> Figure:
    """Layer × layer heatmaps side by side, rows and columns in network order (not clustered).

    Parameters
    ----------
    panels : list of (values, row_names, col_names, title)
        Each a (R, C) matrix of one metric; e.g. a model's layers against themselves, and its
        layers against a reference model's layers.
    subtitle : str
        The figure's suptitle (N, k, preprocessing, pooling).
    metric : str
        Fixes the colour range (``metric_range``).

    Examples
    --------
    >>> import numpy as np
    >>> from matalign.plots import layer_heatmap
    >>> fig = layer_heatmap([(np.eye(2), ["l0", "l1"], ["l0", "l1"], "self")])
    >>> [t.get_text() for t in fig.axes[0].get_xticklabels()]
    ['l0', 'l1']
    """
    if not panels:
        raise ValueError("panels is empty: nothing to draw")
    vmin, vmax = metric_range(metric)
    norm = Normalize(vmin=vmin, vmax=vmax, clip=True)
    cm = colormaps[CMAP]
    width = sum(max(2.5, 0.55 * len(p[2]) + 1.5) for p in panels) + 1.2
    height = max(3.0, 0.55 * max(len(p[1]) for p in panels) + 1.8)
    fig = Figure(figsize=(width, height), layout="constrained")
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    im = None
    for ax, (values, rows, cols, title) in zip(axes, panels):
        v = np.asarray(values, dtype=np.float64)
        if v.shape != (len(rows), len(cols)):
            raise ValueError(f"panel {title!r}: values of shape {v.shape} do not match "
                             f"{len(rows)} row and {len(cols)} column names")
        im = ax.imshow(v, cmap=cm, norm=norm, interpolation="nearest")
        ax.set_xticks(range(len(cols)), cols, rotation=45, ha="right", rotation_mode="anchor",
                      fontsize=8)
        ax.set_yticks(range(len(rows)), rows, fontsize=8)
        ax.set_title(title, fontsize=9)
        if v.size <= 144:
            for i in range(v.shape[0]):
                for j in range(v.shape[1]):
                    if np.isfinite(v[i, j]):
                        ax.text(j, i, f"{v[i, j]:.2f}", ha="center", va="center", fontsize=7,
                                color=text_colour(cm(norm(v[i, j]))))
    cb = fig.colorbar(im, ax=list(axes), shrink=0.8)
    cb.set_label(METRIC_LABELS.get(metric, metric))
    if subtitle:
        fig.suptitle(subtitle, fontsize=9)
    return fig
