"""How well the Jetson calibrations predict networks they were not fitted on.

Random leave-one-out flatters the predictor: a network's other points (other boards, other inputs)
stay in the fit, so it is predicted from its own timings. Here every published point is also
predicted by a fit that saw no point of its network (leave-one-network-out, the headline) and none
of its source (leave-one-source-out), and the check points (``use: check``), which no fit ever sees,
are predicted by the full fit. ``benchmarks/latency_accuracy.py`` prints the summary tables.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass

import numpy as np
from scipy.stats import kendalltau

from nasseg.latency.predict.fit import (
    JETSON_PRIOR,
    Measurement,
    fit,
    jetson_templates,
    leave_groups_out,
    network_family,
    predict_measurements,
    published_measurements,
)

# Evaluation protocols: how a point's group is found (every point of a group leaves the fit together).
PROTOCOLS: dict[str, Callable[[Measurement], str]] = {
    "loo": lambda m: m.id,
    "lono": lambda m: m.network or m.id,
    "loso": lambda m: m.source or m.id,
}
PROTOCOL_NAMES = {"loo": "leave-one-out", "lono": "leave-one-network-out", "loso": "leave-one-source-out"}


@dataclass(frozen=True)
class PointResult:
    """One published point, measured and predicted (``predicted``: protocol -> ms; ``in_sample`` for the full fit)."""

    id: str
    target: str
    network: str
    family: str
    source: str
    precision: str
    measured_ms: float
    check: bool
    predicted: dict[str, float]

    def ratio(self, protocol: str) -> float:
        return self.predicted[protocol] / self.measured_ms


def evaluate(
    effects: list[str] | None = None,
    protocols: tuple[str, ...] = ("loo", "lono", "loso"),
    progress: Callable[[str, int, int], None] | None = None,
    measurements: list[Measurement] | None = None,
    checks: list[Measurement] | None = None,
) -> list[PointResult]:
    """Every published point predicted under each protocol, and the check points by the full fit
    (their ``predicted`` holds the same full-fit value under every protocol: no fit ever sees them)."""
    measurements = published_measurements() if measurements is None else measurements
    checks = published_measurements(checks=True) if checks is None else checks
    targets = list(dict.fromkeys(m.target for m in measurements + checks))
    templates = jetson_templates(targets, effects)
    fitted, _ = fit(measurements, templates, JETSON_PRIOR)
    for target in set(targets) - set(fitted):  # a board that only has check points keeps its prior
        fitted[target] = templates[target]
    predictions = {"in_sample": predict_measurements(fitted, measurements)}
    for protocol in protocols:
        report = (lambda done, total, p=protocol: progress(p, done, total)) if progress else None
        predictions[protocol] = leave_groups_out(
            measurements, templates, JETSON_PRIOR, PROTOCOLS[protocol], progress=report
        )
    checked = predict_measurements(fitted, checks) if checks else np.empty(0)
    rows = [
        PointResult(
            m.id,
            m.target,
            m.network,
            network_family(m.network),
            m.source,
            m.precision or "fp16",
            m.ms,
            False,
            {k: float(v[i]) for k, v in predictions.items()},
        )
        for i, m in enumerate(measurements)
    ]
    rows += [
        PointResult(
            m.id,
            m.target,
            m.network,
            network_family(m.network),
            m.source,
            m.precision or "fp16",
            m.ms,
            True,
            {k: float(checked[i]) for k in ("in_sample", *protocols)},
        )
        for i, m in enumerate(checks)
    ]
    return rows


@dataclass(frozen=True)
class Summary:
    """Errors of a set of points under one protocol."""

    points: int
    mape: float
    within_25: float
    kendall_tau: float
    bias: float  # geometric-mean ratio of predicted to measured, minus 1 (+0.2: 20 % too slow)

    @classmethod
    def of(cls, rows: list[PointResult], protocol: str) -> Summary:
        ratios = np.array([r.ratio(protocol) for r in rows])
        err = np.abs(ratios - 1)
        tau = (
            float(kendalltau([r.predicted[protocol] for r in rows], [r.measured_ms for r in rows])[0])
            if len(rows) >= 3
            else float("nan")
        )
        return cls(
            len(rows), float(err.mean()), float((err <= 0.25).mean()), tau, float(np.exp(np.log(ratios).mean()) - 1)
        )


def by(rows: list[PointResult], key: Callable[[PointResult], str]) -> dict[str, list[PointResult]]:
    out: dict[str, list[PointResult]] = {}
    for row in rows:
        out.setdefault(key(row), []).append(row)
    return out


def to_json(rows: list[PointResult], effects: list[str]) -> dict:
    """A record of an evaluation, for benchmarks/results/."""
    fitted = [r for r in rows if not r.check]
    protocols = [p for p in PROTOCOLS if fitted and p in fitted[0].predicted]
    return {
        "effects": effects,
        "summary": {
            p: {
                "all": asdict(Summary.of(fitted, p)),
                "by_target": {t: asdict(Summary.of(g, p)) for t, g in by(fitted, lambda r: r.target).items()},
                "by_family": {f: asdict(Summary.of(g, p)) for f, g in by(rows, lambda r: r.family).items()},
            }
            for p in protocols
        },
        "points": [asdict(r) for r in rows],
    }
