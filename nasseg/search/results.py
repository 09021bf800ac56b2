"""What a study found, read only from what it recorded: every trial, the Pareto front of the accuracy
objective (the proxy's score: the mIoU, or the mIoU with a tie-breaker) against latency, its
hypervolume, and which found architectures dominate each published baseline."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import optuna

from nasseg.search.proxy import LEGACY_PROXY, get_proxy
from nasseg.search.study import BASELINE_ATTR, record_of
from nasseg.search.trial import TrialRecord


@dataclass(frozen=True)
class TrialRow:
    number: int
    state: str  # Optuna's: COMPLETE, PRUNED, FAIL, RUNNING, WAITING
    status: str | None  # the record's: complete, constrained, stopped, rejected, failed; None before one exists
    baseline: str | None
    miou: float | None
    score: float | None  # the study's accuracy objective: the mIoU, or the mIoU with the proxy's tie-breaker
    latency_ms: float | None
    latency_kind: str | None  # "measured" | "estimated"
    latency_label: str | None  # where the number came from, in words
    params: int | None
    macs: int | None
    config: dict[str, Any] | None
    failure: str | None
    train_seconds: float | None
    wall_seconds: float | None
    per_class_iou: dict[str, float | None] | None = None  # on the validation split, for trained trials

    @classmethod
    def of(cls, trial: optuna.trial.FrozenTrial) -> TrialRow:
        record: TrialRecord | None = record_of(trial)
        latency = record.latency if record else None
        return cls(
            number=trial.number,
            state=trial.state.name,
            status=record.status if record else None,
            baseline=trial.user_attrs.get(BASELINE_ATTR),
            miou=record.miou if record else None,
            score=record.score if record else None,
            latency_ms=latency.median_ms if latency else None,
            latency_kind=latency.kind if latency else None,
            latency_label=latency.label() if latency else None,
            params=record.params if record else None,
            macs=record.macs if record else None,
            config=record.config.to_dict() if record else None,
            failure=record.failure if record else None,
            train_seconds=record.train_seconds if record else None,
            wall_seconds=record.wall_seconds if record else None,
            per_class_iou=dict(record.per_class_iou) if record and record.per_class_iou else None,
        )

    @property
    def scored(self) -> bool:
        """Trained to the end and timed: a point that can stand on the front."""
        return self.status == "complete" and self.score is not None and self.latency_ms is not None

    def outcome(self) -> str:
        """Why a trial has no point, in words: its status and reason, or how Optuna left it."""
        if self.status is not None:
            return f"{self.status}: {self.failure}" if self.failure else self.status
        if self.state == "FAIL":  # no record: its worker stopped mid-trial, and the study enqueued it again
            return "interrupted before it finished (the study runs it again)"
        return self.state.lower()


def dominates(a: TrialRow, b: TrialRow) -> bool:
    """``a`` scores at least as well and is as fast as ``b``, and is better in one of the two."""
    assert a.score is not None and a.latency_ms is not None and b.score is not None and b.latency_ms is not None
    no_worse = a.score >= b.score and a.latency_ms <= b.latency_ms
    return no_worse and (a.score > b.score or a.latency_ms < b.latency_ms)


def pareto_front(rows: list[TrialRow]) -> list[TrialRow]:
    """The scored rows no other scored row dominates, fastest first."""
    scored = [r for r in rows if r.scored]
    front = [r for r in scored if not any(dominates(o, r) for o in scored if o is not r)]
    return sorted(front, key=lambda r: (r.latency_ms, -(r.score or 0)))


def hypervolume(front: list[TrialRow], reference_ms: float) -> float:
    """Area (score x ms) dominated by the front and bounded by score 0 and ``reference_ms``."""
    area, best = 0.0, 0.0
    points = sorted(
        (r for r in front if r.latency_ms is not None and r.latency_ms < reference_ms),
        key=lambda r: r.latency_ms or 0.0,
    )
    edges = [r.latency_ms for r in points[1:]] + [reference_ms]
    for row, right in zip(points, edges, strict=False):
        best = max(best, row.score or 0.0)
        area += best * ((right or 0.0) - (row.latency_ms or 0.0))
    return area


@dataclass(frozen=True)
class StudyResults:
    study: str
    space: str | None
    target: str | None
    settings: dict[str, Any]
    trials: list[TrialRow]
    pareto: list[int]
    hypervolume: float
    reference_ms: float | None  # the latency bound of the hypervolume
    dominated_by: dict[str, list[int]]  # each baseline -> the found trials that dominate it

    @property
    def proxy(self) -> str:
        """How the study scored accuracy (the proxy's id, as stored with its settings)."""
        return str(self.settings.get("proxy", get_proxy(LEGACY_PROXY).id))

    @property
    def tie_broken(self) -> bool:
        """The score is not the mIoU alone."""
        return self.proxy != get_proxy(LEGACY_PROXY).id

    def baseline_rows(self) -> list[TrialRow]:
        """One row per published baseline, in the study's order: its scored attempt, else its last one
        (a baseline whose worker was stopped is run again as a later trial)."""
        chosen: dict[str, TrialRow] = {}
        for row in self.trials:
            if row.baseline is not None and not (row.baseline in chosen and chosen[row.baseline].scored):
                chosen[row.baseline] = row
        return list(chosen.values())

    def to_dict(self) -> dict[str, Any]:
        keep = (
            "number",
            "state",
            "status",
            "baseline",
            "miou",
            "score",
            "latency_ms",
            "latency_kind",
            "params",
            "macs",
            "config",
            "failure",
        )
        return {
            "study": self.study,
            "space": self.space,
            "target": self.target,
            "proxy": self.proxy,
            "trials": [{k: asdict(t)[k] for k in keep} for t in self.trials],
            "pareto": self.pareto,
            "hypervolume": self.hypervolume,
            "hypervolume_reference_ms": self.reference_ms,
            "dominated_by": self.dominated_by,
        }


def reference_latency(settings: dict[str, Any], rows: list[TrialRow]) -> float | None:
    """The study's latency bound if it has one, else the slowest scored trial's latency."""
    if settings.get("max_latency_ms"):
        return float(settings["max_latency_ms"])
    scored = [r.latency_ms for r in rows if r.scored and r.latency_ms is not None]
    return max(scored) if scored else None


def study_results(study: optuna.Study, settings: dict[str, Any]) -> StudyResults:
    rows = [TrialRow.of(t) for t in study.get_trials(deepcopy=False)]
    front = pareto_front(rows)
    reference = reference_latency(settings, rows)
    found = [r for r in rows if r.scored and r.baseline is None]
    dominated_by = {r.baseline: [f.number for f in found if dominates(f, r)] for r in rows if r.baseline and r.scored}
    return StudyResults(
        study=study.study_name,
        space=settings.get("space"),
        target=settings.get("target"),
        settings=settings,
        trials=rows,
        pareto=[r.number for r in front],
        hypervolume=hypervolume(front, reference) if reference else 0.0,
        reference_ms=reference,
        dominated_by=dominated_by,
    )
