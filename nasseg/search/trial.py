"""One trial: an architecture checked, built once, profiled, timed and trained, as one typed record.

``evaluate_architecture`` is the only place a search turns a config into its two objectives. What
goes wrong is sorted by what it means to a study: the architecture is *rejected* (it cannot run at
the study's input: nothing was spent on it), the trial *failed* (it diverged, crashed, or its board
stayed unreachable: recorded with the reason, and the study goes on), or the study must *stop* (bad
settings, missing data, an unusable cache or runtime: the error propagates and nothing finished is
lost).
"""

from __future__ import annotations

import time
import traceback
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from torch import nn

from nasseg.errors import BadInput, InfeasibleArchitecture, InfrastructureFailed
from nasseg.latency import estimate
from nasseg.latency.measure.agent import AgentClient
from nasseg.latency.measure.cache import LatencyCache
from nasseg.latency.measure.measure import PREDICTOR, measure_config
from nasseg.latency.result import LatencyResult
from nasseg.models import ArchConfig
from nasseg.profile import count_macs, count_params
from nasseg.search.proxy import LEGACY_PROXY, PROXIES, AccuracyProxy
from nasseg.spaces import SearchSpace
from nasseg.train.runs import build_seeded, make_run, train_run
from nasseg.train.schedule import Schedule

Status = Literal["complete", "constrained", "stopped", "rejected", "failed"]
# Errors that say the study itself cannot go on (see nasseg.errors); any other error fails only the
# trial it happened in.
STOPS_STUDY: tuple[type[BaseException], ...] = (BadInput, InfrastructureFailed)


@dataclass
class TrialRecord:
    """Everything a study keeps about one architecture; the dashboard, CLI and notebooks read only this.

    ``status``: complete (trained and timed), constrained (timed, over ``max_latency_ms`` or
    ``max_params``: not trained), stopped (early stopping cut its training), rejected (cannot run
    at the study's input), failed (``failure`` says why). A record with ``duplicate_of`` was not
    evaluated again: it repeats an earlier trial's.
    """

    config: ArchConfig
    status: Status
    baseline: str | None = None
    params: int | None = None
    macs: int | None = None
    latency: LatencyResult | None = None
    miou: float | None = None
    score: float | None = None
    zero_cost: dict[str, float] = field(default_factory=dict)  # at the initial weights (the proxy's tie-breaker)
    per_class_iou: dict[str, float | None] = field(default_factory=dict)
    pixel_accuracy: float | None = None
    history: list[tuple[int, float | None]] = field(default_factory=list)
    steps: int | None = None
    train_seconds: float | None = None
    wall_seconds: float = 0.0
    degenerate: list[str] = field(default_factory=list)
    violations: list[str] = field(default_factory=list)
    failure: str | None = None
    duplicate_of: int | None = None  # the trial whose record this copies: the sampler drew the same network

    @property
    def arch_hash(self) -> str:
        return self.config.arch_hash()

    @property
    def latency_ms(self) -> float | None:
        return None if self.latency is None else self.latency.median_ms

    def to_dict(self) -> dict[str, Any]:
        """JSON types only, as stored in the trial's attributes."""
        data = asdict(self)
        data["config"] = self.config.to_dict()
        data["arch_hash"] = self.arch_hash
        data["latency"] = None if self.latency is None else self.latency.to_dict()
        data["history"] = [list(item) for item in self.history]
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrialRecord:
        data = {k: v for k, v in data.items() if k != "arch_hash"}
        data["config"] = ArchConfig.from_dict(data["config"])
        data["latency"] = None if data["latency"] is None else LatencyResult.from_dict(data["latency"])
        data["history"] = [tuple(item) for item in data["history"]]
        data.setdefault("score", data["miou"])  # recorded before proxies: scored by the mIoU alone
        return cls(**data)


@dataclass(frozen=True)
class TrialPlan:
    """How every trial of a study is scored: data, schedule, seed and accuracy proxy; the latency
    input, target and source; the constraints."""

    data: str
    schedule: Schedule
    seed: int
    input_hw: tuple[int, int]
    target: str
    backend: str  # "predictor", or the measuring backend (on this machine, or the agent's)
    precision: str | None = None
    agent: str | None = None
    max_latency_ms: float | None = None
    max_params: int | None = None
    device: str = "cpu"
    proxy: AccuracyProxy = PROXIES[LEGACY_PROXY]


class LatencySource:
    """A study's latency: measured (by the board's agent, or a backend here; cached) or estimated."""

    def __init__(self, plan: TrialPlan, cache: LatencyCache | None = None) -> None:
        self.plan = plan
        self.cache = cache
        self.agent = AgentClient(plan.agent) if plan.agent else None

    def __call__(self, config: ArchConfig, model: nn.Module) -> LatencyResult:
        plan = self.plan
        if plan.backend == PREDICTOR and self.agent is None:
            return estimate(model, plan.input_hw, plan.target, precision=plan.precision)
        backend = None if self.agent is not None else plan.backend
        return measure_config(
            config, plan.input_hw, plan.target, backend, plan.precision, agent=self.agent, cache=self.cache, model=model
        )


def _violations(plan: TrialPlan, params: int, latency_ms: float) -> list[str]:
    found = []
    if plan.max_latency_ms is not None and latency_ms > plan.max_latency_ms:
        found.append(f"latency {latency_ms:.2f} ms > --max-latency {plan.max_latency_ms:g} ms")
    if plan.max_params is not None and params > plan.max_params:
        found.append(f"{params} parameters > --max-params {plan.max_params}")
    return found


def evaluate_architecture(
    config: ArchConfig,
    plan: TrialPlan,
    latency: LatencySource,
    *,
    space: SearchSpace,
    baseline: str | None = None,
    on_timed: Callable[[TrialRecord], None] | None = None,
    keep_training: Callable[[int, float, float], bool] | None = None,
) -> TrialRecord:
    """Score ``config`` (its class count already the data's) under ``plan``.

    A sampled architecture follows its space's ``degenerate`` rule; a baseline is always accepted.
    ``on_timed`` sees the record once params, MACs and latency are known (before training);
    ``keep_training(step, score, latency_ms)`` is called after every evaluation (the score of the mIoU
    so far) and stops the run by returning False. Errors in ``STOPS_STUDY`` propagate; any other becomes a failed record.
    """
    started = time.perf_counter()
    record = TrialRecord(config=config, status="complete", baseline=baseline)
    try:
        record.degenerate = space.check(
            config, plan.input_hw, degenerate="accept" if baseline else space.spec.degenerate
        )
    except InfeasibleArchitecture as exc:
        record.status, record.failure = "rejected", "; ".join(exc.reasons)
        return _finish(record, started)
    try:
        _score(record, plan, latency, on_timed, keep_training)
    except InfeasibleArchitecture as exc:  # found while scoring (e.g. by a board's agent): this one only
        record.status, record.failure = "failed", str(exc)
    except STOPS_STUDY:
        raise
    except Exception as exc:  # a crash in one architecture must not end a long study
        record.status = "failed"
        where = traceback.extract_tb(exc.__traceback__)[-1]
        record.failure = f"{type(exc).__name__}: {exc} (at {where.filename}:{where.lineno})"
    return _finish(record, started)


def _score(
    record: TrialRecord,
    plan: TrialPlan,
    latency: LatencySource,
    on_timed: Callable[[TrialRecord], None] | None,
    keep_training: Callable[[int, float, float], bool] | None,
) -> None:
    run = make_run(record.baseline or f"trial-{record.arch_hash}", record.config, plan.data, plan.schedule, plan.seed)
    model = build_seeded(run.config, run.seed)  # built once: profiled, timed and trained as the same module
    record.params = count_params(model)
    record.macs = count_macs(model, plan.input_hw).macs
    record.latency = latency(run.config, model)
    if on_timed is not None:
        on_timed(record)
    record.violations = _violations(plan, record.params, record.latency.median_ms)
    if record.violations:
        record.status = "constrained"
        return
    record.zero_cost = plan.proxy.zero_cost_scores(model, run.train_hw)  # before training changes the weights
    latency_ms = record.latency.median_ms
    tie_breaker = plan.proxy.tie_breaker(record.zero_cost)
    callback = (
        None if keep_training is None else (lambda step, miou: keep_training(step, miou + tie_breaker, latency_ms))
    )
    result = train_run(run, model, device=plan.device, callback=callback, progress=False)
    record.status = "stopped" if result.stopped == "callback" else "complete"
    record.miou = None if result.miou != result.miou else result.miou  # NaN: no class present at all
    record.score = plan.proxy.score(record.miou, record.zero_cost)
    record.per_class_iou = result.to_dict()["per_class_iou"]
    record.pixel_accuracy = result.pixel_accuracy
    record.history = [(step, None if miou != miou else miou) for step, miou in result.history]
    record.steps, record.train_seconds = result.steps, result.train_seconds


def _finish(record: TrialRecord, started: float) -> TrialRecord:
    record.wall_seconds = time.perf_counter() - started
    return record
