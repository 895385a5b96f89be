"""matalign.tree: √JSD between CKNNA rows and neighbour joining (biotite), checked against a
NumPy reference of the Jensen–Shannon distance and a known additive tree."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("biotite")

import matalign as ma
from matalign.tree import model_tree, neighbor_joining, row_distance

# A known tree on six leaves with branch lengths: ((a:1,b:2):1.5,(c:0.5,d:1):2,(e:1,f:3):0.7)
EDGES = {"a": ("x", 1.0), "b": ("x", 2.0), "x": ("r", 1.5), "c": ("y", 0.5),
         "d": ("y", 1.0), "y": ("r", 2.0), "e": ("z", 1.0), "f": ("z", 3.0), "z": ("r", 0.7)}
LEAVES = ["a", "b", "c", "d", "e", "f"]


def _path_to_root(v):
    out, length = {v: 0.0}, 0.0
    while v in EDGES:
        v, w = EDGES[v]
        length += w
        out[v] = length
    return out


def additive_matrix():
    m = len(LEAVES)
    D = np.zeros((m, m))
    for i in range(m):
        for j in range(m):
            pi, pj = _path_to_root(LEAVES[i]), _path_to_root(LEAVES[j])
            D[i, j] = min(pi[v] + pj[v] for v in pi if v in pj)
    return D


def test_nj_recovers_a_known_additive_tree():
    D = additive_matrix()
    perm = np.random.default_rng(0).permutation(6)      # leaf order must not matter
    t = neighbor_joining(D[np.ix_(perm, perm)], [LEAVES[p] for p in perm])
    np.testing.assert_allclose(t.path_lengths(), D[np.ix_(perm, perm)], atol=1e-9)
    assert t.newick.endswith(";") and all(x in t.newick for x in LEAVES)
    # cherries of the true tree are cherries of the NJ tree
    for u, v in (("a", "b"), ("c", "d"), ("e", "f")):
        i, j = t.labels.index(u), t.labels.index(v)
        assert t.tree.get_distance(i, j, topological=True) == 2


def _jsd_distance(p, q):
    p, q = p / p.sum(), q / q.sum()
    mid = (p + q) / 2

    def kl(a, b):
        nz = a > 0
        return float(np.sum(a[nz] * np.log2(a[nz] / b[nz])))
    return np.sqrt(0.5 * kl(p, mid) + 0.5 * kl(q, mid))


def test_row_distance_definition():
    rng = np.random.default_rng(1)
    S = rng.uniform(-0.2, 1.0, size=(5, 5))
    S = (S + S.T) / 2
    np.fill_diagonal(S, 1.0)
    D = row_distance(S)
    for i in range(5):
        for j in range(5):
            if i == j:
                assert D[i, j] == 0
                continue
            keep = [l for l in range(5) if l not in (i, j)]
            want = _jsd_distance(np.clip(S[i, keep], 0, None), np.clip(S[j, keep], 0, None))
            assert D[i, j] == pytest.approx(want, rel=1e-12, abs=1e-15)
    assert np.all((D >= 0) & (D <= 1)) and np.array_equal(D, D.T)


def test_model_tree_groups_families_from_real_cknna():
    # Two families of spaces: members of one family are noisy copies of a common space.
    rng = np.random.default_rng(2)
    base = [rng.normal(size=(200, 6)) for _ in range(2)]
    spaces = [b + 0.3 * rng.normal(size=b.shape) for b in base for _ in range(3)]
    names = [f"{f}{i}" for f in "PQ" for i in range(3)]
    S = np.array([[ma.cknna(a, b, k=25) for b in spaces] for a in spaces])
    t = model_tree(S, labels=names)
    T = np.array([[t.tree.get_distance(i, j, topological=True) for j in range(6)]
                  for i in range(6)])
    # Each family is a clade (a split of the unrooted tree): the four-point condition
    # d(a1,a2) + d(b1,b2) < d(a1,b1) + d(a2,b2) holds for every a1 != a2 in P, b1 != b2 in Q.
    from itertools import combinations
    for a1, a2 in combinations(range(3), 2):
        for b1, b2 in combinations(range(3, 6), 2):
            assert T[a1, a2] + T[b1, b2] < min(T[a1, b1] + T[a2, b2], T[a1, b2] + T[a2, b1])


def test_tree_errors():
    with pytest.raises(ValueError, match="at least 3 models"):
        row_distance(np.eye(2))
    with pytest.raises(ValueError, match=r"square \(M, M\)"):
        row_distance(np.ones((3, 4)))
    with pytest.raises(ValueError, match=r"non-finite entry at \(0, 1\)"):
        row_distance(np.array([[1, np.nan, 0.1], [0.2, 1, 0.1], [0.1, 0.1, 1]]))
    S = np.eye(4)
    with pytest.raises(ValueError, match="no positive similarity"):
        row_distance(S)
    with pytest.raises(ValueError, match="must be symmetric"):
        neighbor_joining(np.array([[0, 1, 2], [1, 0, 1], [3, 1, 0.0]]))
    with pytest.raises(ValueError, match="zero diagonal"):
        neighbor_joining(np.array([[1, 1, 2], [1, 0, 1], [2, 1, 0.0]]))
    with pytest.raises(ValueError, match="labels must name the 3 models"):
        neighbor_joining(additive_matrix()[:3, :3], ["a", "b"])
    with pytest.raises(TypeError, match="must be a real matrix"):
        row_distance(np.array([["a"] * 3] * 3))
