"""Per-structure out-of-distribution scores against an in-distribution reference set.

The deep-nearest-neighbour OOD score (Sun et al. 2022): a structure is out of distribution
for a model when it lies far from the model's embeddings of an in-distribution reference set,
measured by the distance to its k-th nearest reference neighbour. :func:`reference_scores`
computes it in each model's space for a (possibly very large) query set, in row blocks, and
turns the models' scores into separate, named columns (docs/STATISTICS.md):

- ``knn_distance[<model>]``: Euclidean distance to the k-th nearest reference row in that
  model's space (after the same preprocessing as the reference);
- ``percentile[<model>]``: that distance as a fraction of the reference set's own
  leave-one-out k-th neighbour distances that it exceeds (0..1; comparable across models);
- ``consensus``: the mean percentile over models (high = OOD);
- ``max_percentile``: the largest of the models' percentiles (far from the reference in any
  model's space);
- ``agreement``: 1 − the spread (max − min) of the models' percentiles: 1 when every model
  ranks the structure alike; ``disagreement`` = 1 − agreement;
- ``within_set_disagreement``: (two or more models) 1 − the mean over model pairs of the
  per-structure kNN agreement *inside the query set* (``ma.local_agreement``): the older
  within-set score, kept for comparison; it needs the whole query set at once.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from itertools import combinations

import numpy as np

from ._validate import as_matrix, check_choice, check_int, describe
from .knn import knn
from .metrics import local_agreement

__all__ = ["OODScores", "reference_scores", "auroc", "fpr_at_tpr"]


@dataclass(frozen=True, eq=False)
class OODScores:
    """Columns of :func:`reference_scores`, one value per query structure."""

    columns: dict
    models: list
    k: int
    n_reference: int
    default: str = "consensus"
    params: dict = field(default_factory=dict)

    def __getitem__(self, key: str) -> np.ndarray:
        return self.columns[key]

    @property
    def score(self) -> np.ndarray:
        """The default score (high = out of distribution)."""
        return self.columns[self.default]

    def to_pandas(self):
        import pandas as pd
        return pd.DataFrame(self.columns)


def _spaces(obj, name: str) -> dict:
    if not isinstance(obj, dict) or not obj:
        raise TypeError(f"{name} must be a non-empty dict of model name -> (N, D) array; got "
                        f"{describe(obj)}")
    return {str(m): as_matrix(v, f"{name}[{m!r}]") for m, v in obj.items()}


def _kth_distance(ref: np.ndarray, q: np.ndarray, k: int, block: int) -> np.ndarray:
    out = np.empty(q.shape[0], dtype=np.float64)
    for s in range(0, q.shape[0], block):
        g = knn(ref, k=k, metric="l2", queries=np.ascontiguousarray(q[s:s + block]))
        out[s:s + block] = np.sqrt(np.maximum(g.values[:, k - 1].astype(np.float64), 0.0))
    return out


PREPROCESS = ("none", "l2", "standardize")
SCORES = ("consensus", "max_percentile", "disagreement")
DEFAULT_SCORE = "max_percentile"     # chosen by bench/bench_ood.py (docs/STATISTICS.md)
DEFAULT_PREPROCESS = "none"


def _prep(R, Q, how: str):
    """(reference, queries) preprocessed alike: "l2" normalises rows; "standardize" centres and
    scales the columns by the reference set's mean and sd (constant columns keep scale 1)."""
    if how == "l2":
        def f(A):
            A = np.asarray(A, dtype=np.float64)
            return A / np.maximum(np.linalg.norm(A, axis=1, keepdims=True), 1e-300)
        return f(R), f(Q)
    if how == "standardize":
        R64 = np.asarray(R, dtype=np.float64)
        mu, sd = R64.mean(axis=0), R64.std(axis=0)
        sd = np.where(sd > 0, sd, 1.0)
        return (R64 - mu) / sd, (np.asarray(Q, dtype=np.float64) - mu) / sd
    return R, Q


def reference_scores(reference, queries, *, k=5, agreement_k=10, block_rows=8192,
                     within_set=True, preprocess=None, default=None) -> OODScores:
    """OOD scores of every query structure against an in-distribution reference set.

    Parameters
    ----------
    reference : dict of str to array_like (Nr, D_m)
        Each model's embeddings of the reference structures (same rows in every model).
    queries : dict of str to array_like (Nq, D_m)
        The same models' embeddings of the query structures (same keys as ``reference``; a
        ``np.memmap`` streams: it is read ``block_rows`` rows at a time).
    k : int, default 5
        Neighbour rank of the distance (1..Nr − 1).
    agreement_k : int, default 10
        k of the within-set local agreement (only with two or more models and
        ``within_set=True``).
    block_rows : int, default 8192
        Query rows per kNN search.
    within_set : bool, default True
        Whether to add the ``within_set_disagreement`` column.
    preprocess : {"none", "l2", "standardize"}, optional
        Applied to each model's reference and queries alike ("standardize": columns centred
        and scaled by the reference set's mean and sd; it copies the queries into memory);
        default ``matalign.ood.DEFAULT_PREPROCESS``.
    default : {"consensus", "max_percentile", "disagreement"}, optional
        The column ``OODScores.score`` returns; default ``matalign.ood.DEFAULT_SCORE``.

    Returns
    -------
    OODScores

    Raises
    ------
    TypeError
        For inputs that are not dicts of arrays.
    ValueError
        For different model keys, row counts that differ between models, a dimension that
        differs between reference and queries, or k out of range.

    Examples
    --------
    >>> import numpy as np
    >>> from matalign.ood import reference_scores, auroc
    >>> rng = np.random.default_rng(0)
    >>> ref = {"a": rng.normal(size=(300, 4)), "b": rng.normal(size=(300, 6))}
    >>> q_in = {"a": rng.normal(size=(50, 4)), "b": rng.normal(size=(50, 6))}
    >>> q_out = {m: v[:50] + 3.0 for m, v in q_in.items()}
    >>> q = {m: np.concatenate([q_in[m], q_out[m]]) for m in q_in}
    >>> s = reference_scores(ref, q, k=5)
    >>> auroc(s.score, np.r_[np.zeros(50), np.ones(50)]) > 0.95
    True
    """
    ref = _spaces(reference, "reference")
    qs = _spaces(queries, "queries")
    if set(ref) != set(qs):
        raise ValueError(f"reference and queries must hold the same models; got "
                         f"{sorted(ref)} and {sorted(qs)}")
    models = list(ref)
    nr = {ref[m].shape[0] for m in models}
    nq = {qs[m].shape[0] for m in models}
    if len(nr) > 1 or len(nq) > 1:
        raise ValueError(f"every model must embed the same structures: reference row counts "
                         f"{sorted(nr)}, query row counts {sorted(nq)}")
    nr, nq = nr.pop(), nq.pop()
    k = check_int(k, "k", 1, nr - 1)
    block_rows = check_int(block_rows, "block_rows", 1)
    preprocess = check_choice(DEFAULT_PREPROCESS if preprocess is None else preprocess,
                              "preprocess", PREPROCESS)
    default = check_choice(DEFAULT_SCORE if default is None else default, "default", SCORES)
    cols = {}
    pct = []
    for m in models:
        r, q = ref[m], qs[m]
        if r.shape[1] != q.shape[1]:
            raise ValueError(f"model {m!r}: reference has D={r.shape[1]} but queries have "
                             f"D={q.shape[1]}")
        r, q = _prep(r, q, preprocess)
        if q.dtype != r.dtype:
            q = q.astype(r.dtype)
        d = _kth_distance(r, q, k, block_rows)
        g = knn(r, k=k, metric="l2")   # leave-one-out distances of the reference itself
        ref_d = np.sort(np.sqrt(np.maximum(g.values[:, k - 1].astype(np.float64), 0.0)))
        p = np.searchsorted(ref_d, d, side="left") / ref_d.size
        cols[f"knn_distance[{m}]"] = d
        cols[f"percentile[{m}]"] = p
        pct.append(p)
    P = np.vstack(pct)
    cols["consensus"] = P.mean(axis=0)
    cols["max_percentile"] = P.max(axis=0)
    cols["agreement"] = 1.0 - (P.max(axis=0) - P.min(axis=0))
    cols["disagreement"] = 1.0 - cols["agreement"]
    if within_set and len(models) >= 2:
        agreement_k = check_int(agreement_k, "agreement_k", 1, nq - 1)
        la = [local_agreement(qs[a], qs[b], k=agreement_k, metric="l2")
              for a, b in combinations(models, 2)]
        cols["within_set_disagreement"] = 1.0 - np.mean(la, axis=0)
    return OODScores(cols, models, k, nr, default,
                     {"k": k, "metric": "l2", "agreement_k": agreement_k,
                      "preprocess": preprocess})


def _labels_scores(scores, labels):
    s = np.asarray(scores, dtype=np.float64)
    y = np.asarray(labels)
    if s.ndim != 1 or y.shape != s.shape:
        raise ValueError(f"scores and labels must be 1-D of one length; got {s.shape} and "
                         f"{y.shape}")
    y = y.astype(bool)
    if y.all() or not y.any():
        raise ValueError("labels must contain both classes (1 = out of distribution)")
    return s, y


def auroc(scores, labels) -> float:
    """Area under the ROC curve of ``scores`` for ``labels`` (1 = OOD), ties counted half
    (the Mann–Whitney U statistic / (n₀·n₁), via ``scipy.stats.rankdata``)."""
    from scipy.stats import rankdata
    s, y = _labels_scores(scores, labels)
    r = rankdata(s)
    n1, n0 = int(y.sum()), int((~y).sum())
    return float((r[y].sum() - n1 * (n1 + 1) / 2.0) / (n1 * n0))


def fpr_at_tpr(scores, labels, tpr=0.95) -> float:
    """False-positive rate at the smallest threshold that flags ``tpr`` of the OOD rows."""
    s, y = _labels_scores(scores, labels)
    thr = np.quantile(s[y], 1.0 - tpr, method="lower")
    return float(np.mean(s[~y] >= thr))
