"""Accuracy-proxy candidates and how well each ranks architectures as the long reference does.

A candidate is a score per architecture (higher = expected better after long training) and its cost
per trial relative to ``short``. The reference is the mean mIoU of the long runs over their seeds.
Each candidate is judged by Kendall tau and Spearman rho against the reference, a bootstrap 95 %
interval on tau (architectures resampled), the share of same-space pairs it orders as the reference
does (what a search inside one space decides), and tau (with its bootstrap interval: three to six
architectures give wide ones) and rho within each space. A candidate that failed on an architecture
(its training diverged) keeps that architecture, scored below every success, as a search ranks a
failed trial: the failure is listed with its reason.

Choosing by the numbers: among the candidates within the cost limit that a search can compute one
trial at a time (a score that needs the whole population, such as a rank mean, is judged but cannot
win), the one with the highest tau wins; repeated k-fold cross-validation over architectures shows how
often that choice is made on part of the data and what tau the choice reaches on the architectures it
did not see.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
from scipy.stats import kendalltau, spearmanr

FAILED = -math.inf  # a failed run ranks below every scored one (ties with other failures)
SPACE_RESAMPLES = 500  # per space: a handful of architectures has few distinct resamples to draw


@dataclass(frozen=True)
class Candidate:
    """One proxy: its score of each architecture, and its cost per trial relative to ``short``."""

    name: str
    scores: Mapping[str, float]
    cost_ratio: float
    cost_basis: str
    failures: Mapping[str, str] = field(default_factory=dict)  # architecture -> why it failed
    per_trial: bool = True  # a score of one architecture alone, which a search can use

    def score(self, architecture: str) -> float:
        return FAILED if architecture in self.failures else self.scores[architecture]

    def covers(self, architecture: str) -> bool:
        return architecture in self.scores or architecture in self.failures


def tau(a: list[float], b: list[float]) -> float:
    """Kendall tau-b (ties allowed); NaN for fewer than two distinct values on a side."""
    if len(set(a)) < 2 or len(set(b)) < 2:
        return float("nan")
    return float(kendalltau(a, b).statistic)


def pair_agreement(points: list[tuple[str, float, float]]) -> tuple[float, int]:
    """Share of same-space pairs (group, score, reference) that both order the same way, and their number."""
    same = [(a, b) for i, a in enumerate(points) for b in points[i + 1 :] if a[0] == b[0]]
    alike = sum((a[1] - b[1]) * (a[2] - b[2]) > 0 for a, b in same)
    return (alike / len(same) if same else float("nan")), len(same)


def bootstrap_tau(
    scores: list[float], reference: list[float], resamples: int = 2000, seed: int = 0
) -> tuple[float, float]:
    """95 % percentile interval of tau over architectures resampled with replacement."""
    rng = np.random.default_rng(seed)
    n = len(scores)
    s, r = np.asarray(scores), np.asarray(reference)
    values = []
    for _ in range(resamples):
        pick = rng.integers(0, n, n)
        value = tau(list(s[pick]), list(r[pick]))
        if not math.isnan(value):
            values.append(value)
    if not values:  # every resample repeated one architecture (a space of three can)
        return float("nan"), float("nan")
    low, high = np.percentile(values, [2.5, 97.5])
    return float(low), float(high)


def bootstrap_alike(
    points: list[tuple[str, float, float]], resamples: int = 1000, seed: int = 0
) -> tuple[float, float]:
    """95 % interval of the share of same-space pairs ordered alike, architectures resampled within each
    space; an architecture drawn twice forms no pair with itself."""
    rng = np.random.default_rng(seed)
    groups: dict[str, list[tuple[str, float, float]]] = {}
    for point in points:
        groups.setdefault(point[0], []).append(point)
    values = []
    for _ in range(resamples):
        alike = total = 0
        for group in groups.values():
            pick = rng.integers(0, len(group), len(group))
            for x, i in enumerate(pick):
                for j in pick[x + 1 :]:
                    if i != j:
                        a, b = group[i], group[j]
                        total += 1
                        alike += (a[1] - b[1]) * (a[2] - b[2]) > 0
        if total:
            values.append(alike / total)
    if not values:
        return float("nan"), float("nan")
    low, high = np.percentile(values, [2.5, 97.5])
    return float(low), float(high)


@dataclass(frozen=True)
class Judgement:
    name: str
    architectures: int
    tau: float
    tau_ci: tuple[float, float]
    rho: float
    within_space_alike: float
    within_space_alike_ci: tuple[float, float]
    within_space_pairs: int
    tau_by_space: dict[str, float]
    tau_ci_by_space: dict[str, tuple[float, float]]
    rho_by_space: dict[str, float]
    cost_ratio: float
    cost_basis: str
    failures: dict[str, str]
    per_trial: bool

    def to_dict(self) -> dict[str, object]:
        return {
            "name": self.name,
            "tau": self.tau,
            "tau_ci": list(self.tau_ci),
            "rho": self.rho,
            "within_space_alike": self.within_space_alike,
            "within_space_alike_ci": list(self.within_space_alike_ci),
            "within_space_pairs": self.within_space_pairs,
            "tau_by_space": self.tau_by_space,
            "tau_ci_by_space": {k: list(v) for k, v in self.tau_ci_by_space.items()},
            "rho_by_space": self.rho_by_space,
            "cost_ratio": self.cost_ratio,
            "cost_basis": self.cost_basis,
            "architectures": self.architectures,
            "failures": self.failures,
            "per_trial": self.per_trial,
        }


def judge(candidate: Candidate, reference: Mapping[str, float], space: Mapping[str, str], seed: int = 0) -> Judgement:
    """How ``candidate`` ranks the reference's architectures it covers."""
    names = sorted(n for n in reference if candidate.covers(n))
    scores = [candidate.score(n) for n in names]
    ref = [reference[n] for n in names]
    finite = [max(s, -1e300) for s in scores]  # rank statistics need only the order; a failure stays lowest
    by_space, ci_by_space, rho_by_space = {}, {}, {}
    for group in sorted({space[n] for n in names}):
        mine = [i for i, n in enumerate(names) if space[n] == group]
        if len(mine) >= 3:
            own, own_ref = [finite[i] for i in mine], [ref[i] for i in mine]
            by_space[group] = tau(own, own_ref)
            ci_by_space[group] = bootstrap_tau(own, own_ref, resamples=SPACE_RESAMPLES, seed=seed)
            rho_by_space[group] = float(spearmanr(own, own_ref).statistic)
    points = [(space[n], s, r) for n, s, r in zip(names, finite, ref, strict=True)]
    alike, pairs = pair_agreement(points)
    return Judgement(
        name=candidate.name,
        architectures=len(names),
        tau=tau(finite, ref),
        tau_ci=bootstrap_tau(finite, ref, seed=seed) if len(names) >= 3 else (float("nan"), float("nan")),
        rho=float(spearmanr(finite, ref).statistic) if len(names) >= 3 else float("nan"),
        within_space_alike=alike,
        within_space_alike_ci=bootstrap_alike(points, seed=seed),
        within_space_pairs=pairs,
        tau_by_space=by_space,
        tau_ci_by_space=ci_by_space,
        rho_by_space=rho_by_space,
        cost_ratio=candidate.cost_ratio,
        cost_basis=candidate.cost_basis,
        failures={n: why for n, why in candidate.failures.items() if n in reference},
        per_trial=candidate.per_trial,
    )


def choose(candidates: list[Candidate], reference: Mapping[str, float], max_cost: float) -> str | None:
    """The affordable per-trial candidate with the highest tau against ``reference`` among those that score
    every architecture of it (None if there is none); of equal taus, the one listed first."""
    judged = []
    names = sorted(reference)
    for i, c in enumerate(candidates):
        if c.cost_ratio > max_cost or not c.per_trial or not all(c.covers(n) for n in names):
            continue
        value = tau([max(c.score(n), -1e300) for n in names], [reference[n] for n in names])
        if not math.isnan(value):
            judged.append((value, -i, c.name))
    return max(judged)[2] if judged else None


def cross_validate(
    candidates: list[Candidate],
    reference: Mapping[str, float],
    max_cost: float,
    folds: int = 4,
    repeats: int = 25,
    seed: int = 0,
) -> dict[str, object]:
    """Repeated k-fold over architectures: the choice made on k-1 folds, judged on the fold left out.

    Returns how often each candidate is chosen and the mean tau of the chosen one on held-out folds."""
    names = sorted(reference)
    rng = np.random.default_rng(seed)
    by_name = {c.name: c for c in candidates}
    chosen: dict[str, int] = {}
    held_out = []
    for _ in range(repeats):
        order = rng.permutation(len(names))
        for k in range(folds):
            test = sorted(names[i] for i in order[k::folds])
            pick = choose(candidates, {n: reference[n] for n in names if n not in test}, max_cost)
            if pick is None:
                continue
            chosen[pick] = chosen.get(pick, 0) + 1
            covered = [n for n in test if by_name[pick].covers(n)]
            value = tau([max(by_name[pick].score(n), -1e300) for n in covered], [reference[n] for n in covered])
            if not math.isnan(value):
                held_out.append(value)
    return {
        "folds": folds,
        "repeats": repeats,
        "chosen": dict(sorted(chosen.items(), key=lambda kv: -kv[1])),
        "held_out_tau": float(np.mean(held_out)) if held_out else float("nan"),
    }
