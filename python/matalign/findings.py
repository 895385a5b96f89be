"""Verdicts on a finding from per-pair statistics: "holds", "does not hold" or "inconclusive".

A finding compares two groups of model pairs, e.g. finding 1: "trained models align with
each other more than the architecture baseline (random-init pairs) and more than chance".
:func:`compare_groups` states and applies one test (docs/STATISTICS.md):

1. Near-duplicate pairs (a fine-tune and its parent, or two fine-tunes of one parent) are
   flagged and left out: they are one model seen twice, not independent evidence.
2. Each group's statistic is the mean of its pairs' values; its half-width is the mean of the
   pairs' half-widths (high − low)/2. The mean of half-widths is the largest the half-width
   of the mean can be whatever the correlation between pairs (pairs share models and
   structures), so the group interval is conservative.
3. The difference A − B has the half-width h = h_A + h_B, i.e. its interval excludes 0 exactly
   when the two group intervals do not overlap.
4. Chance: every independent pair of group A must beat its null with p <= alpha / m_A
   (Bonferroni over A's m_A pairs).

Verdict: "holds" if the difference interval lies above 0 (below 0 for
``direction="less"``, e.g. an information imbalance) and the chance test passes; "does not
hold" if it lies entirely on the wrong side; "inconclusive" otherwise (overlapping intervals,
or A not beyond chance). No vote over pairs.
"""

from __future__ import annotations

import numbers
from dataclasses import dataclass, field

import numpy as np

from ._validate import check_choice, describe

__all__ = ["PairStatistic", "Verdict", "compare_groups", "near_duplicate"]

VERDICTS = ("holds", "does not hold", "inconclusive")


@dataclass(frozen=True)
class PairStatistic:
    """One model pair's statistic: value, interval, null p-value, N and k.

    ``low``/``high`` come from ``ma.confidence_interval``, ``p_value`` from ``ma.null_test``
    (None where no null was run, e.g. for a baseline group).
    """

    a: str
    b: str
    value: float
    low: float
    high: float
    n: int
    k: int | None = None
    p_value: float | None = None

    @classmethod
    def from_results(cls, a, b, ci, null=None) -> "PairStatistic":
        """From a CIResult (and a NullResult) of the pair (a, b)."""
        return cls(str(a), str(b), ci.value, ci.low, ci.high, ci.n, ci.k,
                   None if null is None else null.p_value)


@dataclass(frozen=True)
class Verdict:
    """Outcome of :func:`compare_groups`; ``as_dict`` is JSON-ready."""

    verdict: str
    test: str
    difference: float
    low: float
    high: float
    mean_a: float
    mean_b: float
    n_pairs_a: int
    n_pairs_b: int
    chance_ok: bool | None
    n: int
    k: int | None
    alpha: float
    excluded: list = field(default_factory=list)

    def as_dict(self) -> dict:
        return {"verdict": self.verdict, "test": self.test, "difference": self.difference,
                "low": self.low, "high": self.high, "mean_a": self.mean_a,
                "mean_b": self.mean_b, "n_pairs_a": self.n_pairs_a,
                "n_pairs_b": self.n_pairs_b, "chance_ok": self.chance_ok, "n": self.n,
                "k": self.k, "alpha": self.alpha,
                "excluded_near_duplicates": [list(p) for p in self.excluded]}


def _root(model: str, parents: dict) -> str:
    seen = set()
    while model in parents and model not in seen:
        seen.add(model)
        model = parents[model]
    return model


def near_duplicate(a: str, b: str, parents: dict | None) -> bool:
    """Whether models a and b descend from one parent checkpoint (``parents`` maps a fine-tune
    to the checkpoint it was fine-tuned from; chains are followed)."""
    if not parents:
        return False
    return _root(a, parents) == _root(b, parents)


def _as_pairs(group, name: str) -> list[PairStatistic]:
    if isinstance(group, (str, bytes)) or not hasattr(group, "__iter__"):
        raise TypeError(f"{name} must be a list of PairStatistic (or dicts); got "
                        f"{describe(group)}")
    out = []
    for i, p in enumerate(group):
        if isinstance(p, dict):
            try:
                p = PairStatistic(**p)
            except TypeError as e:
                raise TypeError(f"{name}[{i}]: {e}") from None
        if not isinstance(p, PairStatistic):
            raise TypeError(f"{name}[{i}] must be a PairStatistic or dict; got {describe(p)}")
        vals = (p.value, p.low, p.high)
        if not all(isinstance(v, numbers.Real) and np.isfinite(v) for v in vals):
            raise ValueError(f"{name}[{i}] ({p.a}, {p.b}) needs finite value, low and high")
        if not p.low <= p.value <= p.high:
            raise ValueError(f"{name}[{i}] ({p.a}, {p.b}): value {p.value} is not inside "
                             f"[{p.low}, {p.high}]")
        out.append(p)
    return out


def compare_groups(group_a, group_b, *, direction="greater", alpha=0.05, parents=None,
                   require_chance=True) -> Verdict:
    """Verdict on "group A's pairs align more than group B's" (the test in the module text).

    Parameters
    ----------
    group_a, group_b : list of PairStatistic or dict
        The pairs of each group (e.g. A: trained–trained, B: random-init–random-init of the
        same architectures). All pairs must share one N and one k.
    direction : {"greater", "less"}, default "greater"
        "greater": A should have the larger values (similarities); "less": the smaller (an
        information imbalance).
    alpha : float, default 0.05
        Level of the chance test (Bonferroni over A's pairs).
    parents : dict of str to str, optional
        Fine-tune → parent checkpoint; pairs within one family tree are flagged as near
        duplicates and excluded from both groups.
    require_chance : bool, default True
        Whether A's pairs must each beat their null (their ``p_value`` is then required).

    Returns
    -------
    Verdict

    Raises
    ------
    TypeError
        For groups that are not lists of pair statistics.
    ValueError
        For a group left empty after exclusions, mixed N or k, a value outside its interval,
        a missing p-value with ``require_chance``, or a bad direction or alpha.

    Examples
    --------
    >>> from matalign.findings import PairStatistic, compare_groups
    >>> A = [PairStatistic("x", "y", 0.80, 0.75, 0.85, 500, 10, 0.01)]
    >>> B = [PairStatistic("rx", "ry", 0.50, 0.45, 0.55, 500, 10)]
    >>> compare_groups(A, B).verdict
    'holds'
    """
    direction = check_choice(direction, "direction", ("greater", "less"))
    if isinstance(alpha, (bool, np.bool_)) or not isinstance(alpha, numbers.Real) \
            or not 0 < alpha < 1:
        raise ValueError(f"alpha must be in (0, 1); got {alpha!r}")
    A = _as_pairs(group_a, "group_a")
    B = _as_pairs(group_b, "group_b")
    excluded = [(p.a, p.b) for p in A + B if near_duplicate(p.a, p.b, parents)]
    A = [p for p in A if not near_duplicate(p.a, p.b, parents)]
    B = [p for p in B if not near_duplicate(p.a, p.b, parents)]
    for g, name in ((A, "group_a"), (B, "group_b")):
        if not g:
            raise ValueError(f"{name} has no independent pair left (near duplicates excluded: "
                             f"{excluded})")
    ns = {p.n for p in A + B}
    ks = {p.k for p in A + B}
    if len(ns) > 1 or len(ks) > 1:
        raise ValueError(f"all pairs must share one N and one k to be compared; got N in "
                         f"{sorted(ns)} and k in {sorted(ks, key=str)}")
    mean_a = float(np.mean([p.value for p in A]))
    mean_b = float(np.mean([p.value for p in B]))
    h_a = float(np.mean([(p.high - p.low) / 2 for p in A]))
    h_b = float(np.mean([(p.high - p.low) / 2 for p in B]))
    sign = 1.0 if direction == "greater" else -1.0
    diff = sign * (mean_a - mean_b)
    low, high = diff - (h_a + h_b), diff + (h_a + h_b)
    chance_ok = None
    if require_chance:
        missing = [(p.a, p.b) for p in A if p.p_value is None]
        if missing:
            raise ValueError(f"require_chance needs a null p-value for every pair of group_a; "
                             f"missing for {missing}")
        chance_ok = all(p.p_value <= alpha / len(A) for p in A)
    if high < 0:
        verdict = "does not hold"
    elif low > 0 and chance_ok is not False:
        verdict = "holds"
    else:
        verdict = "inconclusive"
    op = ">" if direction == "greater" else "<"
    test = (f"mean over group A pairs {op} mean over group B pairs; group interval = mean ± "
            f"mean half-width of the pairs' intervals (conservative under any correlation); "
            f"holds if the A−B interval excludes 0 on the right side"
            + (f" and every A pair beats its null at p <= {alpha}/{len(A)}" if require_chance
               else "")
            + f"; does not hold if it lies on the wrong side; else inconclusive "
            f"(N={ns.pop()}, k={ks.pop()})")
    raw, h = mean_a - mean_b, h_a + h_b
    return Verdict(verdict, test, raw, raw - h, raw + h, mean_a, mean_b, len(A), len(B),
                   chance_ok, next(iter({p.n for p in A})), A[0].k, float(alpha), excluded)
