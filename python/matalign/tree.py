"""The model tree: neighbour joining on √JSD between rows of a model × model CKNNA matrix.

A row of the CKNNA matrix says how a model aligns with every other model. Two models whose
rows look alike sit in the same place of the landscape, so the tree joins models by the
Jensen–Shannon distance between their rows, turned into probability distributions as defined
in :func:`row_distance` (and in docs/STATISTICS.md). The tree itself is built by the
neighbour-joining implementation of biotite (``biotite.sequence.phylo.neighbor_joining``,
Saitou & Nei 1987), not by hand-written code.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ._validate import describe

__all__ = ["ModelTree", "row_distance", "neighbor_joining", "model_tree"]


def _square(S, name: str) -> np.ndarray:
    a = np.asarray(S)
    if a.dtype.kind not in "iuf":
        raise TypeError(f"{name} must be a real matrix; got dtype {a.dtype.name}")
    if a.ndim != 2 or a.shape[0] != a.shape[1]:
        raise ValueError(f"{name} must be a square (M, M) matrix; got shape {a.shape}")
    a = a.astype(np.float64)
    bad = np.argwhere(~np.isfinite(a))
    if bad.size:
        i, j = bad[0]
        raise ValueError(f"{name} has a non-finite entry at ({i}, {j}): {a[i, j]!r}")
    return a


def _labels(labels, m: int) -> list[str]:
    if labels is None:
        return [f"m{i}" for i in range(m)]
    labels = [str(x) for x in labels]
    if len(labels) != m:
        raise ValueError(f"labels must name the {m} models; got {len(labels)} labels")
    if len(set(labels)) != m:
        raise ValueError("labels must be distinct")
    return labels


def row_distance(S) -> np.ndarray:
    """√JSD between the rows of a model × model similarity (CKNNA) matrix.

    For a pair of models (i, j), each row is restricted to the *other* models
    l ∉ {i, j}, negative similarities are clipped to 0, and the result is normalised to sum
    to 1: p_i(l) = max(S_il, 0) / Σ_{l' ∉ {i,j}} max(S_il', 0), p_j likewise. The distance is
    the Jensen–Shannon distance with base-2 logarithms,
    d(i, j) = √JSD(p_i, p_j) ∈ [0, 1] (``scipy.spatial.distance.jensenshannon``).

    Why the pair's own columns are left out: the diagonal (self-alignment 1) and the pair's
    mutual value S_ij sit at different positions in the two rows (row i holds S_ij in column
    j, row j holds its self-alignment there), so keeping them would push two nearly identical
    models apart. Why negatives are clipped: a probability cannot be negative, and a CKNNA
    below 0 means "no alignment", which weight 0 says. The matrix is symmetrised first
    ((S + Sᵀ)/2), as CKNNA is symmetric up to rounding.

    Parameters
    ----------
    S : array_like (M, M)
        Similarities (M >= 3, finite).

    Returns
    -------
    numpy.ndarray (M, M), float64
        Symmetric, zero diagonal, values in [0, 1].

    Raises
    ------
    ValueError
        For a non-square or non-finite matrix, M < 3, or a model whose row has no positive
        similarity to the other models of some pair (its distribution is undefined).

    Examples
    --------
    >>> import numpy as np
    >>> from matalign.tree import row_distance
    >>> S = np.array([[1.0, 0.9, 0.2, 0.1], [0.9, 1.0, 0.2, 0.1],
    ...               [0.2, 0.2, 1.0, 0.8], [0.1, 0.1, 0.8, 1.0]])
    >>> D = row_distance(S)
    >>> bool(D[0, 1] < D[0, 2]), float(D[0, 1])
    (True, 0.0)
    """
    from scipy.spatial.distance import jensenshannon

    S = _square(S, "S")
    m = S.shape[0]
    if m < 3:
        raise ValueError(f"row_distance needs at least 3 models (rows are compared over the "
                         f"other models); got {m}")
    S = np.clip((S + S.T) / 2.0, 0.0, None)
    D = np.zeros((m, m))
    for i in range(m):
        for j in range(i + 1, m):
            keep = np.ones(m, dtype=bool)
            keep[[i, j]] = False
            p, q = S[i, keep], S[j, keep]
            for r, row in ((i, p), (j, q)):
                if not row.sum() > 0:
                    raise ValueError(f"model {r} has no positive similarity to the models "
                                     f"other than {i} and {j}; its row is not a distribution")
            D[i, j] = D[j, i] = float(jensenshannon(p / p.sum(), q / q.sum(), base=2.0))
    return D


@dataclass(frozen=True, eq=False)
class ModelTree:
    """A neighbour-joining tree of models.

    Attributes
    ----------
    tree : biotite.sequence.phylo.Tree
        The tree (leaf i is model i); ``tree.get_distance(i, j)`` is the path length.
    newick : str
        The tree in Newick format with the labels and branch lengths.
    labels : list of str
        Model names, in matrix order.
    distances : numpy.ndarray (M, M)
        The distance matrix the tree was built from.
    """

    tree: object
    newick: str
    labels: list
    distances: np.ndarray

    def path_lengths(self) -> np.ndarray:
        """The (M, M) matrix of path lengths between leaves in the tree."""
        m = len(self.labels)
        out = np.zeros((m, m))
        for i in range(m):
            for j in range(i + 1, m):
                out[i, j] = out[j, i] = self.tree.get_distance(i, j)
        return out


def neighbor_joining(D, labels=None) -> ModelTree:
    """Neighbour-joining tree of a distance matrix (biotite's implementation).

    Parameters
    ----------
    D : array_like (M, M)
        Symmetric, non-negative distances with a zero diagonal (M >= 3).
    labels : sequence of str, optional
        Leaf names (default m0, m1, ...).

    Returns
    -------
    ModelTree

    Raises
    ------
    ImportError
        If biotite is not installed.
    ValueError
        For a non-square, non-finite, asymmetric or negative matrix, a non-zero diagonal,
        M < 3, or labels of the wrong count.
    """
    D = _square(D, "D")
    m = D.shape[0]
    if m < 3:
        raise ValueError(f"neighbour joining needs at least 3 models; got {m}")
    if not np.allclose(D, D.T, rtol=0, atol=1e-12 * max(1.0, float(np.abs(D).max()))):
        raise ValueError("D must be symmetric")
    if np.any(D < 0):
        raise ValueError("D must be non-negative")
    if np.any(np.diag(D) != 0):
        raise ValueError("D must have a zero diagonal")
    labels = _labels(labels, m)
    if m < 4:
        raise ValueError(f"neighbour joining needs at least 4 models to resolve a topology "
                         f"(3 give one star tree); got {m}: {labels}")
    try:
        from biotite.sequence.phylo import neighbor_joining as _nj
    except ImportError as e:  # pragma: no cover - biotite is in the [data] extra
        raise ImportError("the model tree needs biotite (pip install 'biotite>=1.0,<2')") from e
    tree = _nj(np.ascontiguousarray(D))
    return ModelTree(tree, tree.to_newick(labels=labels, include_distance=True), labels, D)


def model_tree(S, labels=None) -> ModelTree:
    """The paper's model tree: neighbour joining on :func:`row_distance` of a CKNNA matrix.

    Use the CKNNA matrix at k = 25 (``ma.alignment_matrix(..., metric="cknna", k=25)``), as
    the paper's tree does.

    Parameters
    ----------
    S : array_like (M, M) or AlignmentMatrix
        Model × model CKNNA values (an AlignmentMatrix gives its "cknna" entry and names).
    labels : sequence of str, optional
        Model names (default: the matrix's names, else m0, m1, ...).

    Returns
    -------
    ModelTree

    Examples
    --------
    >>> import numpy as np
    >>> from matalign.tree import model_tree
    >>> S = np.array([[1.0, 0.9, 0.2, 0.1], [0.9, 1.0, 0.2, 0.1],
    ...               [0.2, 0.2, 1.0, 0.8], [0.1, 0.1, 0.8, 1.0]])
    >>> t = model_tree(S, labels=["a", "b", "c", "d"])
    >>> sorted(t.labels), t.newick.endswith(";")
    (['a', 'b', 'c', 'd'], True)
    """
    if hasattr(S, "metrics") and hasattr(S, "names"):
        if "cknna" not in S.metrics:
            raise ValueError(f"the AlignmentMatrix holds no cknna values; it has "
                             f"{sorted(S.metrics)}")
        if labels is None:
            labels = list(S.names)
        S = S.metrics["cknna"]
    if callable(S):
        raise TypeError(f"S must be a matrix; got {describe(S)}")
    return neighbor_joining(row_distance(S), labels)
