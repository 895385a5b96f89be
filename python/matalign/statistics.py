"""Confidence intervals, null tests and k / N sweeps for the alignment metrics.

Every value an alignment study shows should come with three things: its N and k, an interval
that says how much it would move on another draw of N structures, and a null that says what
the value would be if the two spaces were unrelated. This module provides them for the six
metrics of matalign (method, assumptions and measured coverage in docs/STATISTICS.md):

- :func:`confidence_interval`: subsampling without replacement. The spread of the metric
  over random subsets of b and b/4 structures gives its convergence rate, the spread at size
  N follows (the delete-d jackknife when the rate is 1/2), and a Student-t interval is
  centred on the full-sample value. No structure is ever duplicated, so kNN graphs stay
  valid.
- :func:`null_test`: a permutation null (rows of one space shuffled; for the kNN-graph
  metrics a relabelling of the graph, O(N·k) per permutation) for every pairwise metric, the
  distance-correlation t-test of Székely & Rizzo (2013) and the normal approximation of the
  information imbalance null (expectation exactly 1).
- :func:`sweep`: a metric against k and against N, each row with its interval.
- :func:`coverage`: the empirical coverage of the interval on a synthetic population.

Metrics are named by string (``"cknna"``, ``"mutual_knn"``, ``"cka"``,
``"distance_correlation"``, ``"information_imbalance"``, ``"intrinsic_dimension"``) or given
as the ``ma.*`` function itself. Options of the metric pass through ``**metric_kw``
(``kernel="rbf"`` for CKA, ``unbiased=True``...); the information imbalance takes
``direction="x->y"`` or ``"y->x"``.
"""

from __future__ import annotations

import numbers
import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from ._validate import as_matrix, check_choice, check_int, describe
from .knn import KnnGraph, knn
from .metrics import (cka, cknna, distance_correlation, information_imbalance,
                      intrinsic_dimension, mutual_knn)
from .metrics.significance import permutation_test

__all__ = ["CIResult", "WorkCache", "NullResult", "SweepResult", "CoverageResult", "METRIC_NAMES",
           "confidence_interval", "null_test", "assess", "sweep", "coverage",
           "cka_permutation_moments"]

CI_METHODS = ("subsample",)
NULL_METHODS = ("permutation", "permutation-normal", "t-test", "asymptotic", "moments")
DIRECTIONS = ("x->y", "y->x")
_EXECUTION_KW = ("n_threads", "device", "progress")   # change how, not what, is computed


# ---- metric registry ----------------------------------------------------------------------

@dataclass(frozen=True)
class _Spec:
    name: str
    pairwise: bool
    k_default: int | None          # None: the metric has no k
    graph: str | None              # kNN metric of the graph a permutation relabels, or None
    alternative: str               # which tail a permutation test counts as extreme
    min_n: int


_SPECS = {
    "cknna": _Spec("cknna", True, 10, "ip", "greater", 4),
    "mutual_knn": _Spec("mutual_knn", True, 10, "ip", "greater", 2),
    "cka": _Spec("cka", True, None, None, "greater", 4),
    "distance_correlation": _Spec("distance_correlation", True, None, None, "greater", 4),
    "information_imbalance": _Spec("information_imbalance", True, 1, None, "less", 3),
    "intrinsic_dimension": _Spec("intrinsic_dimension", False, None, None, "greater", 10),
}
METRIC_NAMES = tuple(_SPECS)
_BY_FUNCTION = {cknna: "cknna", mutual_knn: "mutual_knn", cka: "cka",
                distance_correlation: "distance_correlation",
                information_imbalance: "information_imbalance",
                intrinsic_dimension: "intrinsic_dimension"}


@dataclass(frozen=True)
class _Metric:
    spec: _Spec
    k: int | None
    kw: dict
    direction: str | None

    @property
    def label(self) -> str:
        s = self.spec.name
        if self.direction is not None:
            s += f"[{self.direction}]"
        shown = {a: b for a, b in self.kw.items() if a not in _EXECUTION_KW}
        if shown:
            s += "(" + ", ".join(f"{a}={b!r}" for a, b in sorted(shown.items())) + ")"
        return s

    def __call__(self, X, Y=None) -> float:
        name = self.spec.name
        if name == "intrinsic_dimension":
            return float(intrinsic_dimension(X, **self.kw))
        if name == "information_imbalance":
            d = information_imbalance(X, Y, k=self.k, **self.kw)
            return float(d[0] if self.direction == "x->y" else d[1])
        if name == "cknna":
            return float(cknna(X, Y, k=self.k, **self.kw))
        if name == "mutual_knn":
            return float(mutual_knn(X, Y, k=self.k, **self.kw))
        if name == "cka":
            return float(cka(X, Y, **self.kw))
        return float(distance_correlation(X, Y, **self.kw))


def _resolve(metric, k, metric_kw) -> _Metric:
    if isinstance(metric, str):
        name = check_choice(metric, "metric", METRIC_NAMES)
    elif callable(metric) and metric in _BY_FUNCTION:
        name = _BY_FUNCTION[metric]
    else:
        raise TypeError(f"metric must be one of {', '.join(METRIC_NAMES)} (a name or the ma.* "
                        f"function); got {describe(metric)} {metric!r}")
    spec = _SPECS[name]
    kw = dict(metric_kw)
    direction = None
    if name == "information_imbalance":
        direction = check_choice(kw.pop("direction", "x->y"), "direction", DIRECTIONS)
        if kw.get("method", "exact") != "exact":
            raise ValueError("information_imbalance: the statistics need method='exact'; got "
                             f"method={kw['method']!r}")
    elif "direction" in kw:
        raise ValueError(f"direction applies only to information_imbalance, not {name}")
    if spec.k_default is None:
        if k is not None:
            raise ValueError(f"k does not apply to {name}; got k={k!r}")
    else:
        k = spec.k_default if k is None else check_int(k, "k", 1)
    return _Metric(spec, k, kw, direction)


def _arrays(metric: _Metric, X, Y):
    for obj, nm in ((X, "X"), (Y, "Y")):
        if isinstance(obj, KnnGraph):
            raise TypeError(f"{nm} is a KnnGraph; the statistics resample structures and need "
                            f"the embeddings (an array of shape (N, D))")
    X = as_matrix(X, "X")
    if metric.spec.pairwise:
        if Y is None:
            raise ValueError(f"{metric.spec.name} compares two spaces: pass Y")
        Y = as_matrix(Y, "Y")
        if Y.shape[0] != X.shape[0]:
            raise ValueError(f"X and Y must hold the same N structures; got N={X.shape[0]} "
                             f"and N={Y.shape[0]}")
    elif Y is not None:
        raise ValueError(f"{metric.spec.name} takes one space; got Y as well")
    return X, Y


def _check_level(level) -> float:
    if isinstance(level, (bool, np.bool_)) or not isinstance(level, numbers.Real):
        raise TypeError(f"level must be a real number in (0, 1); got {describe(level)} {level!r}")
    level = float(level)
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must be in (0, 1), e.g. 0.95; got {level!r}")
    return level


def _t_quantile(p: float, df: int) -> float:
    from scipy import stats
    return float(stats.t.ppf(p, df))


# ---- fast paths: the statistics from the point estimate's own work --------------------------
#
# The generic interval recomputes the metric on 2·n_subsamples subsets and the generic
# permutation null on every permutation. Three metrics allow the same statistics from what the
# point estimate computes anyway (docs/STATISTICS.md, section "Cost"):
#
# - cknna, mutual_knn: a permutation relabels the two kNN graphs (O(N·k)); rows whose values
#   hold no tie keep their order, so only tied rows are re-sorted (bit for bit the graph of
#   ``permute_rows``).
# - cka (linear, biased): the interval's subsets are unions of G = 16 groups of a random
#   partition of the rows, and the metric on a union comes from per-group sums of XᵀX, YᵀY,
#   XᵀY and the column sums (one pass over the data, as the point estimate); the null is the
#   exact permutation distribution's mean and variance (below).
# - cka (biased): the permutation null of CKA, a normalised tr(K̃ P L̃ Pᵀ) of the doubly
#   centred kernels, has an exact mean and variance (Kazi-Aoual et al. 1995; Josse, Pagès &
#   Husson 2008, for the RV coefficient, which is linear CKA), from tr K̃, tr K̃² and Σ K̃ᵢᵢ²
#   of each kernel: O(N·D²) for the linear kernel, and free from the RBF point estimate's pair
#   sums (row sums and Σ K∘K).

CKA_GROUPS = 16                      # groups of the linear-CKA interval's partition


def _kernel_moment_terms(trace: float, frob2: float, diag2: float, n: int):
    """(β, τ) of one doubly centred kernel W for the permutation moments of tr(W₁PW₂Pᵀ):
    β = (tr W)²/tr W², τ = (n−1)/((n−3)(n−1−β))·(n(n+1)·Σ Wᵢᵢ²/tr W² − (n−1)(β+2))."""
    beta = trace * trace / frob2
    den = (n - 3) * (n - 1 - beta)
    tau = (n - 1) / den * (n * (n + 1) * diag2 / frob2 - (n - 1) * (beta + 2)) if den > 0 \
        else 0.0
    return beta, tau


def cka_permutation_moments(x_terms, y_terms, n: int) -> tuple[float, float]:
    """Exact mean and standard deviation of biased CKA (the RV coefficient for the linear
    kernel) over all N! relabellings of one space.

    ``x_terms`` = (tr K̃, Σ K̃∘K̃, Σᵢ K̃ᵢᵢ²) of the doubly centred kernel K̃ = HKH of X, likewise
    ``y_terms``. With β = (tr K̃)²/tr K̃² and τ as in ``_kernel_moment_terms``:
    E = √(β_X β_Y)/(N − 1), Var = 2(N−1−β_X)(N−1−β_Y)/((N+1)(N−1)²(N−2))·
    (1 + (N−3)/(2N(N−1))·τ_X τ_Y) (Kazi-Aoual, Hitier, Sabatier & Lebreton 1995; Josse,
    Pagès & Husson 2008). Needs N >= 4.

    Examples
    --------
    >>> import numpy as np
    >>> from matalign.statistics import cka_permutation_moments
    >>> n = 50
    >>> W = np.eye(n) - 1.0 / n          # a centred kernel: every direction alike
    >>> t = (np.trace(W), float(np.sum(W * W)), float(np.sum(np.diag(W) ** 2)))
    >>> mean, sd = cka_permutation_moments(t, t, n)
    >>> round(mean, 12), round(sd, 12)   # the identity kernel: CKA 1 whatever the order
    (1.0, 0.0)
    """
    bx, tx = _kernel_moment_terms(*x_terms, n)
    by, ty = _kernel_moment_terms(*y_terms, n)
    mean = float(np.sqrt(bx * by) / (n - 1))
    var = 2.0 * (n - 1 - bx) * (n - 1 - by) / ((n + 1) * (n - 1) ** 2 * (n - 2)) \
        * (1.0 + (n - 3) / (2.0 * n * (n - 1)) * tx * ty)
    return mean, float(np.sqrt(max(var, 0.0)))


def _moments_result(m: "_Metric", value: float, x_terms, y_terms, n: int) -> "NullResult":
    """The ``moments`` null: exact permutation mean and sd, normal upper tail."""
    from scipy import stats
    mu, sd = cka_permutation_moments(x_terms, y_terms, n)
    if sd > 0:
        z = (value - mu) / sd
    else:
        z = float(np.sign(value - mu)) * np.inf if value != mu else 0.0
    return NullResult(value, float(stats.norm.sf(z)), mu, sd, "moments", m.label, n, None,
                      None, None, "greater", float(z))


def _cka_fast_kind(m: "_Metric") -> str | None:
    """"linear" or "rbf" where CKA's fast paths apply (the biased estimator), else None."""
    if m.spec.name != "cka" or m.kw.get("unbiased", False):
        return None
    allowed = set(_EXECUTION_KW) | {"kernel", "sigma", "eps", "seed", "unbiased"}
    if set(m.kw) - allowed or m.kw.get("device", "auto") not in ("auto", "cpu"):
        return None
    return m.kw.get("kernel", "linear")


class WorkCache:
    """Work shared by the statistics of many pairs over the same spaces (pass one instance as
    ``cache=`` to every :func:`assess` call of a matrix).

    It keeps, per space (an array object, held by reference, so it must not be modified while
    the cache lives): the full-sample kNN graphs, the kNN graph of every subsample (the subsets
    depend only on N, the subsample size and the seed, so every pair draws the same ones),
    and its per-group tables of linear CKA's interval. Results are the same
    with or without it; only the time changes.

    Examples
    --------
    >>> import numpy as np
    >>> import matalign as ma
    >>> rng = np.random.default_rng(0)
    >>> spaces = [rng.normal(size=(300, 8)) for _ in range(3)]
    >>> cache = ma.statistics.WorkCache()
    >>> cis = [ma.statistics.assess("cknna", spaces[a], spaces[b], k=10, cache=cache)[0]
    ...        for a, b in [(0, 1), (0, 2), (1, 2)]]
    >>> len(cache) > 0
    True
    """

    def __init__(self, spaces=None):
        self._items: dict = {}
        self._spaces = [] if spaces is None else list(spaces)
        # one dtype across the spaces: the fused matrix entries then equal the pairwise calls
        # bit for bit (mixed dtypes would widen float32 spaces in the fused pass)
        self._fusable = len(self._spaces) >= 2 and len({getattr(A, "dtype", None)
                                                         for A in self._spaces}) == 1

    def _index(self, A):
        for i, B in enumerate(self._spaces):
            if B is A:
                return i
        return None

    def fused_pair(self, X, Y):
        """(i, j): the positions of X and Y among the registered spaces, where the metric can
        run on all spaces in one fused pass; else None."""
        if not self._fusable:
            return None
        i, j = self._index(X), self._index(Y)
        return None if i is None or j is None or i == j else (i, j)

    def matrix(self, key: tuple, rows, metric: str, params: dict) -> np.ndarray:
        """The (M, M) values of ``metric`` (an alignment_matrix name) on the registered spaces'
        rows ``rows`` (None: all), computed once per key."""
        full = ("matrix",) + key
        if full not in self._items:
            from .matrix import alignment_matrix
            spaces = {str(i): (A if rows is None else np.ascontiguousarray(A[rows]))
                      for i, A in enumerate(self._spaces)}
            m = alignment_matrix(spaces, metrics=[metric], progress=False, **params)
            self._items[full] = (None, np.asarray(m.metrics[metric]))
        return self._items[full][1]

    def get(self, array, key: tuple, compute):
        """The entry ``key`` of ``array``, computed by ``compute()`` the first time."""
        full = (id(array),) + key
        hit = self._items.get(full)
        if hit is not None and hit[0] is array:
            return hit[1]
        out = compute()
        self._items[full] = (array, out)
        return out

    def __len__(self) -> int:
        return len(self._items)


def _fused_params(m: "_Metric"):
    """(alignment_matrix metric name, its keyword arguments, transpose?) for a metric whose
    values the fused matrix gives bit for bit; None for any other option set."""
    kw = dict(m.kw)
    name = m.spec.name
    if name == "cka" and set(kw) <= {"kernel", "sigma", "unbiased", "seed"}:
        return "cka", {"cka_kernel": kw.get("kernel", "linear"), "sigma": kw.get("sigma"),
                       "unbiased": bool(kw.get("unbiased", False)),
                       "seed": kw.get("seed", 0)}, False
    if name == "distance_correlation" and set(kw) <= {"unbiased"}:
        return "dcor", {"unbiased": bool(kw.get("unbiased", False))}, False
    if name == "information_imbalance" and set(kw) <= {"method"}:
        return "information_imbalance", {"imbalance_k": m.k}, m.direction == "y->x"
    return None


def _centred(A) -> np.ndarray:
    A = np.asarray(A, dtype=np.float64)
    return A - A.mean(axis=0)


def _linear_terms(Ac: np.ndarray, frob2: float):
    """(tr K̃, Σ K̃∘K̃, Σ K̃ᵢᵢ²) of K̃ = AcAcᵀ from the column-centred rows and Σ K̃∘K̃
    (= ‖AcᵀAc‖²_F)."""
    d = np.einsum("ij,ij->i", Ac, Ac, dtype=np.float64)
    return float(d.sum()), float(frob2), float(d @ d)


#: Largest stack of per-group feature blocks (G · Dx · Dy float64) the feature form may hold.
_FEATURE_FORM_BYTES = 1 << 30
#: Rows per tile of the row form (each tile product is at most this squared).
_ROW_TILE = 2048
#: Force "feature" or "row" in :func:`_group_inner` (tests compare the two); None: by cost.
_FORM = None


def _group_inner(Z, V, edges: np.ndarray, same: bool) -> np.ndarray:
    """The (G, G) matrix P[g, h] = ⟨Z_gᵀV_g, Z_hᵀV_h⟩_F over the row groups of ``edges``
    (Z_g: the rows of group g), in float64.

    Two exact forms, chosen by cost: the *feature form* builds each group's Dx × Dy block
    Z_gᵀV_g (O(N·Dx·Dy) operations, G·Dx·Dy numbers) and takes their Gram; the *row form*
    uses P[g, h] = Σᵢ∈g Σⱼ∈h (Z Zᵀ)ᵢⱼ (V Vᵀ)ᵢⱼ, tile by tile (O(N²·(Dx + Dy)/2) operations,
    O(tile²) memory), which is cheaper for spaces wider than about N/2 and never holds a
    D × D block (a 6,000-wide descriptor would need G · 288 MB)."""
    g = edges.size - 1
    n, dx = Z.shape
    dy = dx if same else V.shape[1]
    feature_cost = float(n + g * g) * dx * dy
    row_cost = float(n) * n * (dx if same else dx + dy) / 2.0
    form = _FORM or ("feature" if g * dx * dy * 8 <= _FEATURE_FORM_BYTES
                     and feature_cost <= row_cost else "row")
    if form == "feature":
        C = np.empty((g, dx * dy))
        for i in range(g):
            a, b = edges[i], edges[i + 1]
            C[i] = (Z[a:b].T @ V[a:b]).ravel()
        return C @ C.T
    out = np.zeros((g, g))
    for i in range(g):
        for j in range(i, g):
            acc = 0.0
            for a in range(edges[i], edges[i + 1], _ROW_TILE):
                ra = slice(a, min(a + _ROW_TILE, edges[i + 1]))
                for b in range(edges[j], edges[j + 1], _ROW_TILE):
                    rb = slice(b, min(b + _ROW_TILE, edges[j + 1]))
                    kz = np.asarray(Z[ra] @ Z[rb].T, dtype=np.float64)
                    kv = kz if same else np.asarray(V[ra] @ V[rb].T, dtype=np.float64)
                    acc += float(np.vdot(kz, kv))
            out[i, j] = out[j, i] = acc
    return out


def _group_projections(W_x, W_y, edges: np.ndarray) -> np.ndarray:
    """(G, G, G): U[g] = W_x[g]ᵀ W_y[g], the group-g rows' products with every group's
    column sums (W = Z Sᵀ), in float64."""
    g = edges.size - 1
    out = np.empty((g, g, g))
    for i in range(g):
        a, b = edges[i], edges[i + 1]
        out[i] = W_x[a:b].T @ W_y[a:b]
    return out


class _GroupBlocks:
    """One space's side of :class:`_LinearCkaGroups`: its rows in partition order, centred
    (shift-free: subset means stay small; float32 stays float32, as the engine's kNN), and
    per group the column sums s_g, the products W = Z Sᵀ of every row with every group's sums,
    and three small tables (every sum across rows or groups float64):

    - F (G, G): ⟨Z_gᵀZ_g, Z_hᵀZ_h⟩ (:func:`_group_inner`),
    - T (G, G, G): T[g] = W_gᵀW_g, so that sᵀ(Z_gᵀZ_g)s' for any sums s, s' of groups is a sum
      of its entries,
    - SS (G, G): s_g · s_h.

    For a union S of groups with ν rows and column sum s = Σ_{g∈S} s_g, the centred Gram's
    ‖Z_SᵀZ_S − s sᵀ/ν‖²_F = Σ_{g,h∈S} F − (2/ν) Σ_{g,h,h'∈S} T + (Σ_{g,h∈S} SS)²/ν²:
    O(|S|³) additions per union, whatever D is."""

    def __init__(self, A, perm: np.ndarray, edges: np.ndarray):
        dt = np.float32 if A.dtype == np.float32 else np.float64
        Z = np.asarray(A, dtype=dt)[perm]
        Z -= Z.mean(axis=0, dtype=np.float64).astype(dt)
        g, d = edges.size - 1, Z.shape[1]
        self.Z = Z
        self.s = np.empty((g, d))                       # (G, D) column sums
        for i in range(g):
            self.s[i] = Z[edges[i]:edges[i + 1]].sum(axis=0, dtype=np.float64)
        self.W = np.empty((Z.shape[0], g))              # (N, G) row · group sums
        for i in range(g):
            a, b = edges[i], edges[i + 1]
            self.W[a:b] = np.asarray(Z[a:b], dtype=np.float64) @ self.s.T
        self.F = _group_inner(Z, Z, edges, True)
        self.T = _group_projections(self.W, self.W, edges)
        self.SS = self.s @ self.s.T
        self._h: dict = {}

    def union(self, sel: np.ndarray, nu: float) -> tuple[float, float]:
        """(Σ C∘C of the centred Gram C of the union of the groups ``sel``, ‖s‖² of its column
        sum s), kept: every pair with this space draws the same unions."""
        key = sel.tobytes()
        if key not in self._h:
            two, three = np.ix_(sel, sel), np.ix_(sel, sel, sel)
            ss = float(self.SS[two].sum())
            self._h[key] = (float(self.F[two].sum()) - 2.0 * float(self.T[three].sum()) / nu
                            + ss * ss / (nu * nu), ss)
        return self._h[key]

    def terms(self):
        """Linear-kernel terms (tr K̃, Σ K̃∘K̃, Σ K̃ᵢᵢ²) on all rows (the moments null)."""
        return _linear_terms(self.Z, self.F.sum())


class _LinearCkaGroups:
    """Per-group sums of a random partition of the rows into G groups: the linear CKA of any
    union of groups, exactly, in O(G³) additions (no pass over the rows, whatever D is).

    Each space's own tables (and its value on each union) depend only on the space, the
    partition and the unions, so with a :class:`WorkCache` they are computed once per space,
    and every pair adds only its cross tables: P[g, h] = ⟨X_gᵀY_g, X_hᵀY_h⟩ (G, G) and
    U[g] = W_x[g]ᵀ W_y[g] (G, G, G); the statistics of all pairs of M spaces then cost about
    one fused Gram of [X_1 | … | X_M]."""

    def __init__(self, X, Y, groups: int, seed, cache=None):
        n = X.shape[0]
        perm = np.random.default_rng(seed).permutation(n)
        edges = np.linspace(0, n, groups + 1).round().astype(np.int64)
        self.size = np.diff(edges).astype(np.float64)

        def side(A):
            def build():
                return _GroupBlocks(A, perm, edges)
            key = ("cka-groups", groups, _seed_key(seed))
            return build() if cache is None else cache.get(A, key, build)

        self.x, self.y = side(X), side(Y)
        self.P = _group_inner(self.x.Z, self.y.Z, edges, False)
        self.U = _group_projections(self.x.W, self.y.W, edges)

    def value(self, sel: np.ndarray, eps: float) -> float:
        nu = float(self.size[sel].sum())
        hxx, ssx = self.x.union(sel, nu)
        hyy, ssy = self.y.union(sel, nu)
        two, three = np.ix_(sel, sel), np.ix_(sel, sel, sel)
        cross = float(self.P[two].sum()) - 2.0 * float(self.U[three].sum()) / nu \
            + ssx * ssy / (nu * nu)
        scale = (nu - 1.0) ** 2
        hxx, hyy = hxx / scale, hyy / scale
        return float(cross / scale / (np.sqrt(hxx * hyy) + eps))

    def full_terms(self):
        """Linear-kernel terms of X and Y on all rows (for the moments null)."""
        return self.x.terms(), self.y.terms()

    def subsample_values(self, m_groups: int, count: int, seed, label: str, b: int,
                         eps: float):
        rng = np.random.default_rng(seed)
        g = self.size.size
        out = np.empty(count)
        for s in range(count):
            out[s] = self.value(np.sort(rng.choice(g, size=m_groups, replace=False)), eps)
            if not np.isfinite(out[s]):
                raise ValueError(f"{label} is {out[s]!r} on subsample {s} (b={b}); the "
                                 f"interval needs finite values: use a larger subsample_size")
        return out


def _rbf_terms(m: "_Metric", X, Y):
    """Both RBF kernels' moment terms from ONE pair-sums pass, the pass the point estimate
    makes (row sums and Σ K∘K over i != j; the diagonal k(x, x) = 1 is added back)."""
    from .metrics._global import pair_sums
    from .metrics.kernel_alignment import _parse_sigma, median_distance
    seed = m.kw.get("seed", 0)
    sig = []
    for A, s in zip((X, Y), _parse_sigma(m.kw.get("sigma"))):
        if s == "median":
            s = median_distance(A, seed=seed)
        sig.append(float(s))
    gamma = [1.0 / (2.0 * s * s) for s in sig]
    r, c = pair_sums([X, Y], "rbf", gamma, m.kw.get("n_threads", 0), None)
    n = X.shape[0]
    rk = r + 1.0
    tot = rk.sum(axis=1)
    terms = []
    for a in range(2):
        frob = c[a, a] + n - 2.0 / n * float(rk[a] @ rk[a]) + tot[a] ** 2 / (n * n)
        diag = 1.0 - 2.0 * rk[a] / n + tot[a] / (n * n)
        terms.append((float(n - tot[a] / n), float(frob), float(diag @ diag)))
    return terms


# ---- confidence intervals -----------------------------------------------------------------

@dataclass(frozen=True, eq=False)
class CIResult:
    """A value with its subsampling confidence interval (:func:`confidence_interval`).

    Attributes
    ----------
    value : float
        The metric on all N structures (the interval is centred on it).
    low, high : float
        The interval.
    level : float
        Nominal coverage, e.g. 0.95.
    method : str
        "subsample".
    n : int
        Number of structures.
    b : int
        Subsample size (structures per subsample, drawn without replacement).
    n_subsamples : int
        Number of subsamples.
    seed : int
        Seed of ``np.random.default_rng`` that drew the subsamples.
    se : float
        Standard error of ``value``: √((b/N)^(2r)/(1 − b/N) · s²), s² the variance of the
        subsample values, r the rate (√(b/(N − b) · s²) for r = 1/2).
    metric : str
        The metric and its options, e.g. "cknna" or "information_imbalance[y->x]".
    k : int or None
        Its k, where it has one.
    subsample_values : numpy.ndarray
        The metric on each size-b subsample, in the order drawn.
    rate : float
        Convergence rate r used (sd of the metric ∝ N^−r): estimated from the data unless
        given.
    """

    value: float
    low: float
    high: float
    level: float
    method: str
    n: int
    b: int
    n_subsamples: int
    seed: int
    se: float = float("nan")
    metric: str = ""
    k: int | None = None
    subsample_values: np.ndarray = field(default_factory=lambda: np.empty(0), repr=False)
    rate: float = 0.5

    def __repr__(self) -> str:
        return (f"CIResult({self.metric} = {self.value:.6g} [{self.low:.6g}, {self.high:.6g}], "
                f"level={self.level}, method={self.method!r}, n={self.n}, k={self.k}, "
                f"b={self.b}, n_subsamples={self.n_subsamples}, seed={self.seed})")

    def as_dict(self) -> dict:
        """The fields as plain Python values (JSON-ready; subsample values as a list)."""
        return {"metric": self.metric, "value": self.value, "low": self.low,
                "high": self.high, "level": self.level, "method": self.method, "n": self.n,
                "k": self.k, "b": self.b, "n_subsamples": self.n_subsamples, "seed": self.seed,
                "se": self.se, "rate": self.rate,
                "subsample_values": [float(v) for v in self.subsample_values]}


def _scale(n: int, b: int, rate: float) -> float:
    """Variance at size N from the variance over size-b subsamples drawn without replacement:
    (b/N)^(2·rate) / (1 − b/N). With rate 1/2 this is b/(N − b), the delete-d jackknife factor
    (d = N − b)."""
    return (b / n) ** (2.0 * rate) / (1.0 - b / n)


def default_subsample_size(n: int) -> int:
    """Default b: N/2 (half-samples) up to N = 2000, then N/4 (at least 1000), where the
    metrics' O(N²) cost makes half-samples dear (docs/STATISTICS.md)."""
    if n <= 2000:
        return n // 2
    return max(1000, n // 4)


def _seed_key(seed) -> tuple:
    """A hashable form of a seed (an int or a list of ints, as numpy's SeedSequence takes)."""
    return tuple(np.atleast_1d(np.asarray(seed, dtype=object)).tolist())


def _subsample_values(metric: _Metric, X, Y, b: int, n_subsamples: int, seed, cache=None):
    """The metric on n_subsamples random subsets of b rows. With a :class:`WorkCache` holding
    every space of a matrix, each subset is evaluated for all pairs in one fused pass (its
    entries equal the pairwise calls bit for bit, and every pair draws the same subsets)."""
    n = X.shape[0]
    rng = np.random.default_rng(seed)
    out = np.empty(n_subsamples, dtype=np.float64)
    pair = None if cache is None or Y is None else cache.fused_pair(X, Y)
    fused = None if pair is None else _fused_params(metric)
    for s in range(n_subsamples):
        idx = np.sort(rng.choice(n, size=b, replace=False))
        if fused is not None:
            name, params, transpose = fused
            i, j = (pair[1], pair[0]) if transpose else pair
            key = (name, tuple(sorted(params.items())), b, _seed_key(seed), s)
            v = float(cache.matrix(key, idx, name, params)[i, j])
        else:
            v = metric(X[idx], None if Y is None else Y[idx])
        if not np.isfinite(v):
            raise ValueError(f"{metric.label} is {v!r} on subsample {s} (b={b}); the interval "
                             f"needs finite values: use a larger subsample_size")
        out[s] = v
    return out


def _graph_subsample_values(metric: _Metric, X, Y, b: int, n_subsamples: int, seed,
                            cache=None):
    """:func:`_subsample_values` for cknna and mutual_knn on validated arrays: the same
    subsets, each searched by the engine's exact kNN directly (the rows were checked once for
    the full sample), then the metric on the two graphs; the same values as the generic path.
    With a :class:`WorkCache`, each space's subsample graphs are searched once and reused by
    every later call on that space (the subsets depend only on N, b and the seed)."""
    from . import _engine
    n = X.shape[0]
    rng = np.random.default_rng(seed)
    out = np.empty(n_subsamples, dtype=np.float64)
    gm = metric.kw.get("metric", metric.spec.graph)
    nt = metric.kw.get("n_threads", 0)
    fn = cknna if metric.spec.name == "cknna" else mutual_knn
    kw = {a: v for a, v in metric.kw.items() if a not in ("metric", "progress")}
    for s in range(n_subsamples):
        idx = np.sort(rng.choice(n, size=b, replace=False))
        graphs = []
        for A in (X, Y):
            def search(A=A, idx=idx):
                values, indices = _engine.knn_exact(np.ascontiguousarray(A[idx]), None,
                                                    metric.k, metric=gm, exclude_self=True,
                                                    n_threads=nt)
                return KnnGraph(indices, values, gm, True)
            graphs.append(search() if cache is None else cache.get(
                A, ("subsample-graph", gm, metric.k, b, _seed_key(seed), s), search))
        v = float(fn(*graphs, k=metric.k, **kw))
        if not np.isfinite(v):
            raise ValueError(f"{metric.label} is {v!r} on subsample {s} (b={b}); the interval "
                             f"needs finite values: use a larger subsample_size")
        out[s] = v
    return out


def _subsample_fn(metric: _Metric):
    """The subsample evaluator: the direct-graph one for cknna / mutual_knn searched on the
    CPU by inner product or l2, else the generic one."""
    if (metric.spec.graph is not None
            and metric.kw.get("metric", metric.spec.graph) in ("ip", "l2")
            and metric.kw.get("device", "auto") in ("auto", "cpu")
            and set(metric.kw) <= {"metric", "n_threads", "device", "progress", "eps"}):
        return _graph_subsample_values
    return _subsample_values


def _estimate_rate(small, large, b1, b2, n) -> float:
    """Convergence rate r (sd ∝ b^−r) from the spread at two subsample sizes b1 < b2, each
    variance first freed of the finite-population factor (1 − b/N); clipped to [0.05, 2]
    (Bertail, Politis & Romano 1999). 1/2 if a spread is zero."""
    v1 = float(np.var(small, ddof=1)) / (1.0 - b1 / n)
    v2 = float(np.var(large, ddof=1)) / (1.0 - b2 / n)
    if not (v1 > 0 and v2 > 0):
        return 0.5
    return float(np.clip(0.5 * np.log(v1 / v2) / np.log(b2 / b1), 0.05, 2.0))


def _interval(value, sub, n, b, level, rate):
    s = sub.size
    var = float(np.var(sub, ddof=1)) if s > 1 else 0.0
    se = float(np.sqrt(_scale(n, b, rate) * var))
    t = _t_quantile((1.0 + level) / 2.0, s - 1)
    return value - t * se, value + t * se, se


def confidence_interval(metric, X, Y=None, *, k=None, level=0.95, method="subsample",
                        n_subsamples=20, subsample_size=None, rate=None, seed=0,
                        **metric_kw) -> CIResult:
    """Confidence interval of an alignment metric by subsampling without replacement.

    Computes ``value`` = the metric on all N structures, then the metric on ``n_subsamples``
    random subsets of b structures and as many of b₁ = b/4 structures, drawn without
    replacement (``np.random.default_rng([seed, 0])`` and ``[seed, 1]``; each subset's kNN
    graphs are searched anew, so no structure is ever duplicated). With ṽ_b the variance of
    the size-b values divided by (1 − b/N), the metric's convergence rate r (sd ∝ n^−r) is
    estimated from the two spreads, r = ½·log(ṽ_b₁/ṽ_b)/log(b/b₁) clipped to [0.05, 2]
    (unless ``rate`` is given), the standard error at size N is se = √(ṽ_b·(b/N)^(2r)), and
    the interval is ``value ± t·se`` with t the (1 + level)/2 quantile of Student's t with
    n_subsamples − 1 degrees of freedom. For r = 1/2 this is the delete-d jackknife
    (d = N − b), se² = b/(N − b)·(variance of the size-b values).

    Why the rate is estimated: the kNN-graph metrics are not √N-consistent in general (their
    spread can shrink much slower or faster than 1/√N, depending on the data); a fixed rate
    gave intervals 15 % too narrow or 2× too wide on synthetic populations (docs/STATISTICS.md).

    What it covers: E[metric on N structures drawn from the population the data came from],
    the expected value *at this N* (CKNNA, mutual kNN, the imbalance and the intrinsic
    dimension all drift with N; compare values at equal N, or use :func:`sweep`). It assumes
    the statistic is asymptotically normal with variance ∝ 1/N, which fails at a degenerate
    point (dCor or CKA of independent spaces, identical spaces): there use :func:`null_test`.
    Coverage measured on synthetic populations is in docs/STATISTICS.md and
    bench/bench_coverage.py.

    Parameters
    ----------
    metric : str or function
        "cknna", "mutual_knn", "cka", "distance_correlation", "information_imbalance",
        "intrinsic_dimension", or the ``ma.*`` function.
    X : array_like (N, D1)
        Embeddings (arrays, not KnnGraphs: subsamples need the rows).
    Y : array_like (N, D2), optional
        Second space; required for every metric but ``intrinsic_dimension``.
    k : int, optional
        The metric's k (default 10 for cknna and mutual_knn, 1 for information_imbalance);
        an error for metrics without k.
    level : float in (0, 1), default 0.95
        Nominal coverage.
    method : {"subsample"}, default "subsample"
        Interval method (the only one; see above).
    n_subsamples : int, default 20
        Number of subsamples of each size (>= 2).
    subsample_size : int, optional
        b, with k + 2 <= b <= N − 1; default :func:`default_subsample_size` (N/2, or N/4 above
        N = 2000).
    rate : float in (0, 2], optional
        Impose the convergence rate r instead of estimating it (0.5 for a √N-consistent
        statistic); then no size-b₁ subsamples are drawn.
    seed : int, default 0
        Seed of the subsamples; recorded.
    **metric_kw
        Options of the metric (``kernel="rbf"``, ``unbiased=True``, ``metric="l2"``,
        ``direction="y->x"``...).

    Returns
    -------
    CIResult

    Raises
    ------
    TypeError
        For an unknown metric object, a KnnGraph input or a non-numeric option.
    ValueError
        For a bad level, method, n_subsamples or subsample_size (each named), N mismatch,
        a k for a metric without k, or anything the metric raises.

    Examples
    --------
    >>> import numpy as np
    >>> import matalign as ma
    >>> rng = np.random.default_rng(0)
    >>> X = rng.normal(size=(300, 8))
    >>> Y = X + 0.5 * rng.normal(size=(300, 8))
    >>> ci = ma.confidence_interval("cknna", X, Y, k=10, seed=0)
    >>> bool(ci.low < ci.value < ci.high), ci.n, ci.b, ci.n_subsamples
    (True, 300, 150, 20)
    """
    m = _resolve(metric, k, metric_kw)
    X, Y = _arrays(m, X, Y)
    return _ci(m, X, Y, None, level, method, n_subsamples, subsample_size, seed, rate)


def _ci(m: _Metric, X, Y, value, level, method, n_subsamples, subsample_size, seed,
        rate=None, groups=None, cache=None) -> CIResult:
    level = _check_level(level)
    method = check_choice(method, "method", CI_METHODS)
    n_subsamples = check_int(n_subsamples, "n_subsamples", 2)
    seed = check_int(seed, "seed", 0)
    n = X.shape[0]
    lo_b = max(m.spec.min_n, (m.k or 0) + 2)
    if n < lo_b + 1:
        raise ValueError(f"{m.spec.name} needs N >= {lo_b + 1} for a subsampling interval "
                         f"(subsamples of at least {lo_b}); got N={n}")
    if subsample_size is None:
        b = max(lo_b, default_subsample_size(n))
    else:
        b = check_int(subsample_size, "subsample_size", 1)
        if not lo_b <= b <= n - 1:
            raise ValueError(f"subsample_size must be in {lo_b}..{n - 1} (k + 2 <= b <= N - 1) "
                             f"for {m.spec.name} with N={n}; got {b}")
    if rate is not None:
        if isinstance(rate, (bool, np.bool_)) or not isinstance(rate, numbers.Real) \
                or not 0 < rate <= 2:
            raise ValueError(f"rate must be a number in (0, 2] (1/2 for a sqrt(N)-consistent "
                             f"statistic) or None to estimate it; got {rate!r}")
        rate = float(rate)
    if value is None:
        value = m(X, Y)
    b1 = max(lo_b, b // 4)
    if _cka_fast_kind(m) == "linear" and n >= 2 * CKA_GROUPS:
        # Subsets as unions of groups of one random partition (each is still a uniform random
        # subset of its size): the metric on each from per-group sums, no pass over the rows.
        if groups is None:
            groups = _LinearCkaGroups(X, Y, CKA_GROUPS, [seed, 2])
        eps = float(m.kw.get("eps", 0.0))
        mb = int(np.clip(round(b * CKA_GROUPS / n), 1, CKA_GROUPS - 1))
        mb1 = int(np.clip(round(b1 * CKA_GROUPS / n), 1, mb))
        b, b1 = int(round(mb * n / CKA_GROUPS)), int(round(mb1 * n / CKA_GROUPS))
        sub = groups.subsample_values(mb, n_subsamples, [seed, 0], m.label, b, eps)
        if rate is None:
            if mb1 < mb:
                small = groups.subsample_values(mb1, n_subsamples, [seed, 1], m.label, b1, eps)
                rate = _estimate_rate(small, sub, b1, b, n)
            else:
                rate = 0.5
    else:
        subsample_values = _subsample_fn(m)
        sub = subsample_values(m, X, Y, b, n_subsamples, [seed, 0], cache=cache)
        if rate is None:
            if b1 < b:
                small = subsample_values(m, X, Y, b1, n_subsamples, [seed, 1], cache=cache)
                rate = _estimate_rate(small, sub, b1, b, n)
            else:
                rate = 0.5
    low, high, se = _interval(value, sub, n, b, level, rate)
    sub.flags.writeable = False
    return CIResult(value, float(low), float(high), level, method, n, b, n_subsamples, seed,
                    se, m.label, m.k, sub, rate)


# ---- null tests ---------------------------------------------------------------------------

@dataclass(frozen=True, eq=False)
class NullResult:
    """Outcome of :func:`null_test`.

    Attributes
    ----------
    value : float
        The statistic on the real pairing (for ``method="t-test"``: the bias-corrected dCor²).
    p_value : float
        One-sided p-value in the direction of alignment (large similarity, small imbalance).
    null_mean : float
        Mean of the null distribution (for the permutation null, of the drawn values; for the
        t-test 0; for the imbalance's asymptotic null exactly 1).
    null_sd : float
        Its standard deviation.
    method : str
        "permutation", "permutation-normal", "t-test", "asymptotic" or "moments".
    metric : str
        The metric and its options.
    n : int
        Number of structures.
    k : int or None
        The metric's k.
    n_permutations : int or None
        Permutations drawn (permutation null only).
    seed : int or None
        Seed of the permutations.
    alternative : str
        "greater" or "less".
    statistic : float or None
        The test statistic of an analytic test (t, or z), else None.
    null : numpy.ndarray
        The permutation null values (empty for analytic tests).
    """

    value: float
    p_value: float
    null_mean: float
    null_sd: float
    method: str
    metric: str
    n: int
    k: int | None
    n_permutations: int | None
    seed: int | None
    alternative: str
    statistic: float | None = None
    null: np.ndarray = field(default_factory=lambda: np.empty(0), repr=False)

    def __repr__(self) -> str:
        return (f"NullResult({self.metric} = {self.value:.6g}, p_value={self.p_value:.4g}, "
                f"null_mean={self.null_mean:.6g}, method={self.method!r}, n={self.n}, "
                f"k={self.k}, n_permutations={self.n_permutations}, seed={self.seed})")

    def as_dict(self) -> dict:
        """The fields as plain Python values (JSON-ready, without the null values)."""
        return {"metric": self.metric, "value": self.value, "p_value": self.p_value,
                "null_mean": self.null_mean, "null_sd": self.null_sd, "method": self.method,
                "n": self.n, "k": self.k, "n_permutations": self.n_permutations,
                "seed": self.seed, "alternative": self.alternative,
                "statistic": self.statistic}


def _dcor_t_test(X, Y, m: _Metric, cache=None):
    """Székely & Rizzo (2013): T = √(ν − 1)·R*/√(1 − R*²), ν = N(N − 3)/2, R* the
    bias-corrected dCor², Student's t with ν − 1 degrees of freedom under independence
    (exact in the limit of high dimension, conservative otherwise)."""
    from scipy import stats
    n = X.shape[0]
    pair = None if cache is None else cache.fused_pair(X, Y)
    if pair is not None and set(m.kw) <= {"unbiased"}:
        # every pair's bias-corrected dCor² from one fused pass (bit for bit the pairwise call)
        r = float(cache.matrix(("dcor", (("unbiased", True),), "all"), None, "dcor",
                               {"unbiased": True})[pair])
    else:
        r = float(distance_correlation(X, Y, unbiased=True,
                                       **{a: b for a, b in m.kw.items() if a != "unbiased"}))
    nu = n * (n - 3) / 2.0
    r_c = min(max(r, -1.0 + 1e-15), 1.0 - 1e-15)
    t = np.sqrt(nu - 1.0) * r_c / np.sqrt(1.0 - r_c * r_c)
    p = float(stats.t.sf(t, nu - 1.0))
    sd = float(np.sqrt((nu - 1.0) / (nu - 3.0)) / np.sqrt(nu - 1.0)) if nu > 3 else float("nan")
    return r, p, 0.0, sd, float(t)


def imbalance_null_sd(n: int, k: int) -> float:
    """Standard deviation of Δ under the relabelling null, ignoring the weak dependence between
    rows: each row's k ranks are a draw without replacement from 1..N−1 (variance
    ((N−1)² − 1)/12 each), Δ = (2/N)·mean of the N·k ranks."""
    m = n - 1
    var_rank = (m * m - 1) / 12.0
    var_row = var_rank / k * (m - k) / (m - 1) if m > 1 else 0.0
    return float(2.0 / n * np.sqrt(var_row / n))


def null_test(metric, X, Y, *, k=None, method="permutation", n_permutations=100, seed=0,
              **metric_kw) -> NullResult:
    """Is the alignment of X and Y beyond chance? A null for every pairwise metric.

    - ``method="permutation"`` (every metric): the rows of Y are shuffled
      ``n_permutations`` times (``np.random.default_rng(seed)``), which keeps each space's own
      geometry and destroys the pairing. For cknna and mutual_knn the kNN graphs are searched
      once and each permutation relabels Y's graph (O(N·k)); p = (1 + #{null at least as
      extreme}) / (1 + n_permutations), one-sided towards alignment.
    - ``method="permutation-normal"`` (every metric): the same permutations, but the p-value
      treats the null as normal with the mean and sd of the drawn values,
      t = (value − mean)/(sd·√(1 + 1/P)) against Student's t with P − 1 degrees of freedom:
      meaningful p-values from few permutations (P = 10-20) where each costs a full
      evaluation; ``statistic`` holds t.
    - ``method="t-test"`` (distance_correlation): the t-test of Székely & Rizzo (2013) on the
      bias-corrected dCor² R*: T = √(ν − 1)·R*/√(1 − R*²), ν = N(N − 3)/2, Student's t with
      ν − 1 degrees of freedom; ``value`` is R*. No resampling, O(N²·D).
    - ``method="moments"`` (cka, biased estimator, linear or RBF kernel): the exact mean and
      variance of CKA over all N! relabellings (:func:`matalign.statistics.cka_permutation_moments`), from
      tr K̃, tr K̃² and Σ K̃ᵢᵢ² of each centred kernel, and the normal upper tail; no
      resampling (O(N·D²) linear, one pair-sums pass RBF). ``statistic`` holds z.
    - ``method="asymptotic"`` (information_imbalance): under the null each neighbour's rank
      in the other space is uniform on 1..N−1, so E[Δ] = 1 exactly; the p-value is the normal
      lower tail with :func:`imbalance_null_sd` (rows treated as independent).

    Parameters
    ----------
    metric : str or function
        A pairwise metric (see :func:`confidence_interval`).
    X, Y : array_like (N, D1), (N, D2)
        Embeddings of the same N structures.
    k : int, optional
        The metric's k, where it has one.
    method : {"permutation", "permutation-normal", "t-test", "asymptotic", "moments"}, default "permutation"
    n_permutations : int, default 100
        Permutations (>= 1) of the permutation null.
    seed : int, default 0
        Seed of the permutations.
    **metric_kw
        Options of the metric (e.g. ``kernel="rbf"``, ``direction="y->x"``).

    Returns
    -------
    NullResult

    Raises
    ------
    TypeError, ValueError
        For an unknown metric or method, a single-space metric, a method that does not apply
        to the metric, or bad inputs (each named).

    Examples
    --------
    >>> import numpy as np
    >>> import matalign as ma
    >>> rng = np.random.default_rng(0)
    >>> X = rng.normal(size=(200, 8))
    >>> Y = X + 0.5 * rng.normal(size=(200, 8))
    >>> r = ma.null_test("cknna", X, Y, k=10, n_permutations=50)
    >>> r.p_value == 1 / 51, r.null_mean < 0.1 < r.value
    (True, True)
    >>> ma.null_test("information_imbalance", X, Y, method="asymptotic").null_mean
    1.0
    """
    m = _resolve(metric, k, metric_kw)
    if not m.spec.pairwise:
        raise ValueError(f"{m.spec.name} describes one space; a null test needs a pairwise "
                         f"metric")
    X, Y = _arrays(m, X, Y)
    return _null(m, X, Y, method, n_permutations, seed)


def _graphs(m: _Metric, X, Y, cache=None):
    graph_metric = m.kw.get("metric", m.spec.graph)
    threads = {a: b for a, b in m.kw.items() if a == "n_threads"}
    if cache is None:
        return (knn(X, k=m.k, metric=graph_metric, **threads),
                knn(Y, k=m.k, metric=graph_metric, **threads))
    return tuple(cache.get(A, ("graph", graph_metric, m.k),
                           lambda A=A: knn(A, k=m.k, metric=graph_metric, **threads))
                 for A in (X, Y))


def _null(m: _Metric, X, Y, method, n_permutations, seed, graphs=None, value=None,
          groups=None, cache=None) -> NullResult:
    method = check_choice(method, "method", NULL_METHODS)
    n = X.shape[0]
    alt = m.spec.alternative
    if method == "moments":
        kind = _cka_fast_kind(m)
        if kind is None:
            raise ValueError(f"method='moments' applies to cka with the biased estimator (the "
                             f"default) only, not {m.label}")
        if n < 4:
            raise ValueError(f"the moments null of cka needs N >= 4; got N={n}")
        value = m(X, Y) if value is None else value
        if kind == "linear":
            if groups is None and n >= 2 * CKA_GROUPS:
                # the same sums as assess() (so the same null to the last bit)
                groups = _LinearCkaGroups(X, Y, CKA_GROUPS, [check_int(seed, "seed", 0), 2])
            if groups is not None:
                tx, ty = groups.full_terms()
            else:
                Xc, Yc = _centred(X), _centred(Y)
                gx, gy = Xc.T @ Xc, Yc.T @ Yc
                tx = _linear_terms(Xc, np.sum(gx * gx))
                ty = _linear_terms(Yc, np.sum(gy * gy))
        else:
            tx, ty = _rbf_terms(m, X, Y)
        return _moments_result(m, value, tx, ty, n)
    if method == "t-test":
        if m.spec.name != "distance_correlation":
            raise ValueError(f"method='t-test' applies to distance_correlation only, not "
                             f"{m.spec.name}")
        if n < 5:
            raise ValueError(f"the dCor t-test needs N >= 5; got N={n}")
        r, p, mu, sd, t = _dcor_t_test(X, Y, m, cache)
        return NullResult(r, p, mu, sd, method, m.label, n, None, None, None, "greater", t)
    if method == "asymptotic":
        if m.spec.name != "information_imbalance":
            raise ValueError(f"method='asymptotic' applies to information_imbalance only, not "
                             f"{m.spec.name}")
        from scipy import stats
        v = m(X, Y) if value is None else float(value)   # (assess passes the CI's value)
        sd = imbalance_null_sd(n, m.k)
        z = (v - 1.0) / sd
        return NullResult(v, float(stats.norm.cdf(z)), 1.0, sd, method, m.label, n, m.k,
                          None, None, "less", float(z))
    n_permutations = check_int(n_permutations, "n_permutations", 1)
    seed = check_int(seed, "seed", 0)
    if m.spec.graph is not None:
        gx, gy = graphs if graphs is not None else _graphs(m, X, Y)
        res = _relabel_test(m, gx, gy, n_permutations, seed, value)
    else:
        res = permutation_test(lambda a, b: m(a, b), X, Y, n_permutations=n_permutations,
                               alternative=alt, seed=seed)
    null = res.null
    mu = float(np.mean(null))
    sd = float(np.std(null, ddof=1)) if null.size > 1 else 0.0
    if method == "permutation":
        return NullResult(res.value, res.p_value, mu, sd, method, m.label, n, m.k,
                          n_permutations, seed, alt, None, null)
    # permutation-normal: the null's mean and sd from few permutations, p from Student's t
    # with n_permutations - 1 degrees of freedom (a normal null with estimated moments).
    if n_permutations < 3:
        raise ValueError(f"method='permutation-normal' needs n_permutations >= 3; got "
                         f"{n_permutations}")
    from scipy import stats
    if sd > 0:
        z = (res.value - mu) / (sd * np.sqrt(1.0 + 1.0 / n_permutations))
    else:
        z = float(np.sign(res.value - mu)) * np.inf if res.value != mu else 0.0
    tail = stats.t.sf(z, n_permutations - 1) if alt == "greater" else \
        stats.t.cdf(z, n_permutations - 1)
    return NullResult(res.value, float(tail), mu, sd, method, m.label, n, m.k, n_permutations,
                      seed, alt, float(z), null)


def _relabel(g: KnnGraph, perm: np.ndarray, tied: np.ndarray) -> KnnGraph:
    """The graph of the rows Y[perm] from Y's graph g, as ``permute_rows`` makes it, bit for
    bit: relabel (O(N·k)); a row keeps its best-first order unless its values hold a tie,
    and only such rows (``tied``, in the old labels) are re-sorted by (value, new index)."""
    inv = np.empty_like(perm)
    inv[perm] = np.arange(perm.size, dtype=perm.dtype)
    indices = inv[g.indices[perm]]
    values = g.values[perm]
    rows = np.flatnonzero(tied[perm])
    if rows.size:
        ri, rv = indices[rows], values[rows]
        key = rv if g.metric == "l2" else -rv
        order = np.lexsort((ri, key), axis=-1)
        indices[rows] = np.take_along_axis(ri, order, axis=1)
        values[rows] = np.take_along_axis(rv, order, axis=1)
    return KnnGraph(indices, values, g.metric, g.self_excluded, g.recall, g.method)


def _relabel_test(m: _Metric, gx: KnnGraph, gy: KnnGraph, n_permutations: int, seed: int,
                  value=None):
    """The permutation test of ``permutation_test`` on two self graphs (same permutations,
    same null values), with the cheap relabelling of :func:`_relabel`."""
    from .metrics.significance import SignificanceResult
    fn = cknna if m.spec.name == "cknna" else mutual_knn
    kw = {a: b for a, b in m.kw.items() if a != "metric"}
    if value is None:
        value = float(fn(gx, gy, k=m.k, **kw))
    tied = np.any(gy.values[:, 1:] == gy.values[:, :-1], axis=1) if gy.k > 1 \
        else np.zeros(gy.n, dtype=bool)
    rng = np.random.default_rng(seed)
    null = np.empty(n_permutations, dtype=np.float64)
    for b in range(n_permutations):
        perm = rng.permutation(gy.n)
        null[b] = float(fn(gx, _relabel(gy, perm, tied), k=m.k, **kw))
    p = (1 + int(np.count_nonzero(null >= value))) / (n_permutations + 1)
    null.flags.writeable = False
    return SignificanceResult(float(value), float(p), null, seed, n_permutations, "greater")


AUTO_NULL = {"cknna": "permutation-normal", "mutual_knn": "permutation-normal",
             "cka": "moments",
             "distance_correlation": "t-test", "information_imbalance": "asymptotic"}


def assess(metric, X, Y=None, *, k=None, level=0.95, n_subsamples=20, subsample_size=None,
           null="auto", n_permutations=20, seed=0, value=None, cache=None, **metric_kw):
    """Value, confidence interval and null of one metric in one call, without recomputing.

    The point estimate is computed once (for cknna and mutual_knn from the kNN graphs, which
    the permutation null then relabels), and shared by :func:`confidence_interval` and
    :func:`null_test`. ``null="auto"`` picks the cheapest valid null: the permutation-normal
    null (``n_permutations``, default 20) for cknna and mutual_knn (relabelled graphs), the
    exact permutation moments for cka (the permutation-normal null with ``unbiased=True``),
    the t-test for distance_correlation, the asymptotic null for information_imbalance;
    ``null=None`` (and intrinsic_dimension) skips it. For linear CKA one pass of per-group
    sums serves both the interval and the null (docs/STATISTICS.md).

    Two arguments share work across the calls of a matrix (every pair of M spaces):
    ``value``, the point estimate when the caller already has it (e.g. the entry of
    :func:`matalign.alignment_matrix`, which equals the pairwise call bit for bit; it is used
    as given, not recomputed; not for cknna and mutual_knn, whose value comes from the
    graphs), and ``cache``, a :class:`matalign.statistics.WorkCache` passed to every call,
    which keeps each space's kNN graphs (full sample and every subsample) and its per-group
    tables for linear CKA, so they are computed once per space instead of once per pair.
    Neither changes a result.

    Returns
    -------
    tuple (CIResult, NullResult or None)
        For the t-test the null's ``value`` is the bias-corrected dCor², not the CI's value.

    Examples
    --------
    >>> import numpy as np
    >>> import matalign as ma
    >>> rng = np.random.default_rng(0)
    >>> X = rng.normal(size=(200, 8))
    >>> ci, null = ma.statistics.assess("cknna", X, X + rng.normal(size=(200, 8)), k=10)
    >>> ci.value == null.value, null.method, null.p_value < 1e-6
    (True, 'permutation-normal', True)
    """
    m = _resolve(metric, k, metric_kw)
    X, Y = _arrays(m, X, Y)
    if cache is not None and not isinstance(cache, WorkCache):
        raise TypeError(f"cache must be a matalign.statistics.WorkCache or None; got "
                        f"{describe(cache)}")
    if value is not None:
        if m.spec.graph is not None:
            raise ValueError(f"value= does not apply to {m.spec.name} (its value comes from "
                             f"the kNN graphs the null relabels); pass value=None")
        if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real) \
                or not np.isfinite(value):
            raise ValueError(f"value must be a finite number (the point estimate) or None; "
                             f"got {value!r}")
        value = float(value)
    if null == "auto":
        null = AUTO_NULL.get(m.spec.name)
    elif null is not None:
        null = check_choice(null, "null", NULL_METHODS)
        if not m.spec.pairwise:
            raise ValueError(f"{m.spec.name} describes one space; pass null=None")
    if null == "moments" and _cka_fast_kind(m) is None:
        null = "permutation-normal"      # auto for unbiased CKA: no exact moments
    graphs = None
    groups = None
    if m.spec.graph is not None:
        graphs = _graphs(m, X, Y, cache)
        fn = cknna if m.spec.name == "cknna" else mutual_knn
        value = float(fn(*graphs, k=m.k, **{a: b for a, b in m.kw.items() if a != "metric"}))
    elif _cka_fast_kind(m) == "linear" and X.shape[0] >= 2 * CKA_GROUPS:
        # one pass of per-group sums serves the interval and the null's moments
        groups = _LinearCkaGroups(X, Y, CKA_GROUPS, [check_int(seed, "seed", 0), 2],
                                  cache=cache)
    ci = _ci(m, X, Y, value, level, "subsample", n_subsamples, subsample_size, seed,
             groups=groups, cache=cache)
    nr = None if null is None else _null(m, X, Y, null, n_permutations, seed, graphs,
                                         ci.value, groups, cache)
    return ci, nr


# ---- sweeps -------------------------------------------------------------------------------

@dataclass(frozen=True, eq=False)
class SweepResult:
    """A metric against k or N (:func:`sweep`): one row per setting.

    Attributes
    ----------
    metric : str
    rows : list of dict
        Keys: "k", "n", "value", "low", "high", "se" (interval keys NaN without ``ci``).
    level : float
    seed : int
    """

    metric: str
    rows: list
    level: float
    seed: int

    def column(self, key: str) -> np.ndarray:
        """One column of the table as an array."""
        return np.array([r[key] for r in self.rows], dtype=np.float64)

    def to_pandas(self):
        """The rows as a pandas DataFrame (needs pandas)."""
        import pandas as pd
        return pd.DataFrame(self.rows)

    def table(self) -> str:
        """The rows as fixed-width text."""
        lines = [f"{self.metric} (level {self.level})",
                 f"{'k':>6} {'N':>7} {'value':>10} {'low':>10} {'high':>10}"]
        for r in self.rows:
            k = "-" if r["k"] is None else str(r["k"])
            lines.append(f"{k:>6} {r['n']:>7d} {r['value']:>10.4f} {r['low']:>10.4f} "
                         f"{r['high']:>10.4f}")
        return "\n".join(lines)

    def __repr__(self) -> str:
        return self.table()


def _as_int_list(v, name: str, lo: int) -> list[int]:
    vals = [v] if isinstance(v, (numbers.Integral, np.integer)) else list(v)
    if not vals:
        raise ValueError(f"{name} must hold at least one value")
    return [check_int(x, name, lo) for x in vals]


def sweep(metric, X, Y=None, *, k=None, n=None, ci=True, level=0.95, n_subsamples=20,
          seed=0, **metric_kw) -> SweepResult:
    """A metric against k and/or against N, each value with its interval.

    ``k`` (a list) sweeps the neighbour count at the full N. ``n`` (a list) sweeps N: the rows
    are shuffled once (``np.random.default_rng(seed)``) and the first n rows are used, so the
    subsets are nested. Both together give every (k, n) combination. With ``ci=True`` each row
    carries :func:`confidence_interval` (same seed in every row).

    Parameters
    ----------
    metric : str or function
        As :func:`confidence_interval`.
    X, Y : array_like
        Embeddings (Y omitted for intrinsic_dimension).
    k : int or list of int, optional
        k values (only for metrics with k).
    n : int or list of int, optional
        Sample sizes, each <= N.
    ci : bool, default True
        Whether to add intervals.
    level, n_subsamples, seed
        As :func:`confidence_interval`.
    **metric_kw
        Options of the metric.

    Returns
    -------
    SweepResult

    Examples
    --------
    >>> import numpy as np
    >>> import matalign as ma
    >>> rng = np.random.default_rng(0)
    >>> X = rng.normal(size=(400, 6))
    >>> Y = X + 0.5 * rng.normal(size=(400, 6))
    >>> s = ma.sweep("mutual_knn", X, Y, k=[5, 20], n=[200, 400], ci=False)
    >>> [(r["k"], r["n"]) for r in s.rows]
    [(5, 200), (20, 200), (5, 400), (20, 400)]
    """
    if not isinstance(ci, (bool, np.bool_)):
        raise TypeError(f"ci must be True or False; got {describe(ci)} {ci!r}")
    seed = check_int(seed, "seed", 0)
    base = _resolve(metric, None if k is None else 1, metric_kw)  # validates names and kw
    X, Y = _arrays(base, X, Y)
    N = X.shape[0]
    if k is not None and base.spec.k_default is None:
        raise ValueError(f"k does not apply to {base.spec.name}")
    ks = [None] if k is None else _as_int_list(k, "k", 1)
    ns = [N] if n is None else _as_int_list(n, "n", 2)
    for v in ns:
        if v > N:
            raise ValueError(f"n values must be <= N={N}; got {v}")
    order = np.random.default_rng(seed).permutation(N) if n is not None else np.arange(N)
    rows = []
    label = None
    for nn in ns:
        idx = np.sort(order[:nn])
        Xs = X[idx]
        Ys = None if Y is None else Y[idx]
        for kk in ks:
            mm = _resolve(metric, kk, metric_kw)
            label = mm.spec.name if mm.direction is None else f"{mm.spec.name}[{mm.direction}]"
            if ci:
                r = confidence_interval(metric, Xs, Ys, k=kk, level=level,
                                        n_subsamples=n_subsamples, seed=seed, **metric_kw)
                rows.append({"k": mm.k, "n": nn, "value": r.value, "low": r.low,
                             "high": r.high, "se": r.se})
            else:
                rows.append({"k": mm.k, "n": nn, "value": mm(Xs, Ys), "low": float("nan"),
                             "high": float("nan"), "se": float("nan")})
    return SweepResult(label, rows, _check_level(level), seed)


# ---- coverage simulation ------------------------------------------------------------------

@dataclass(frozen=True)
class CoverageResult:
    """Empirical coverage of :func:`confidence_interval` (:func:`coverage`)."""

    metric: str
    n: int
    k: int | None
    level: float
    population_value: float
    population_se: float
    n_reps: int
    covered: int
    mean_width: float
    seconds: float

    @property
    def coverage(self) -> float:
        """Fraction of the n_reps intervals that contain the population value."""
        return self.covered / self.n_reps


def coverage(metric, sample: Callable, n: int, *, k=None, n_reps=100, n_population=400,
             level=0.95, seed=0, **ci_kw) -> CoverageResult:
    """Empirical coverage of the subsampling interval on a synthetic population.

    ``sample(rng, n)`` draws n structures from a population and returns ``(X, Y)`` (or ``X``
    for intrinsic_dimension). The population value at this N is E[metric on n draws],
    estimated by the mean over ``n_population`` independent draws; then ``n_reps`` further
    independent draws each give an interval, and the result counts how many contain it.

    Parameters
    ----------
    metric : str or function
    sample : callable(numpy.random.Generator, int)
    n : int
        Sample size.
    k : int, optional
    n_reps : int, default 100
    n_population : int, default 400
    level : float, default 0.95
    seed : int, default 0
    **ci_kw
        Passed to :func:`confidence_interval` (n_subsamples, subsample_size, metric options).

    Returns
    -------
    CoverageResult
    """
    if not callable(sample):
        raise TypeError(f"sample must be callable(rng, n); got {describe(sample)}")
    n = check_int(n, "n", 5)
    n_reps = check_int(n_reps, "n_reps", 1)
    n_population = check_int(n_population, "n_population", 2)
    seed = check_int(seed, "seed", 0)
    metric_kw = {a: b for a, b in ci_kw.items()
                 if a not in ("n_subsamples", "subsample_size", "rate")}
    m = _resolve(metric, k, metric_kw)
    t0 = time.perf_counter()
    rng = np.random.default_rng(seed)

    def draw():
        s = sample(rng, n)
        return (s, None) if not m.spec.pairwise else s

    pop = np.array([m(*draw()) for _ in range(n_population)])
    theta = float(pop.mean())
    covered = 0
    widths = []
    for r in range(n_reps):
        Xr, Yr = draw()
        ci = confidence_interval(metric, Xr, Yr, k=k, level=level, seed=seed + r, **ci_kw)
        covered += int(ci.low <= theta <= ci.high)
        widths.append(ci.high - ci.low)
    return CoverageResult(m.label, n, m.k, float(level), theta,
                          float(pop.std(ddof=1) / np.sqrt(pop.size)), n_reps, covered,
                          float(np.mean(widths)), time.perf_counter() - t0)
