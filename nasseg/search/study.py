"""The study: an Optuna multi-objective study (maximise the accuracy proxy's score, minimise latency) over
one space.

A study lives in a storage (by default ``studies/<name>/study.db``, SQLite, beside its study file;
any database URL Optuna supports, PostgreSQL for several machines). Its settings are stored with it,
so reopening a name with other settings is refused. The space's baselines are enqueued first and are
trials like any other. Workers (processes, threads, Ray tasks) share the storage: each takes the next
trial while the budget has room. A worker killed mid-trial stops sending heartbeats; after the grace
period its trial is marked failed and enqueued again with the same parameters, so a resumed study
runs it again and loses or repeats nothing finished.
"""

from __future__ import annotations

import dataclasses
import fcntl
import os
import time
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import optuna
from optuna.storages import RDBStorage, RetryHeartbeatStaleTrialCallback
from optuna.trial import FrozenTrial, TrialState

from nasseg.data import dataset_info
from nasseg.errors import ConfigError, TrialFailed
from nasseg.latency.measure.cache import LatencyCache
from nasseg.latency.measure.measure import PREDICTOR, latency_backend
from nasseg.latency.targets import get_target
from nasseg.models import ArchConfig
from nasseg.search.proxy import LEGACY_PROXY, PROXIES, get_proxy
from nasseg.search.spec import StudySpec, load_study_file
from nasseg.search.trial import LatencySource, TrialPlan, TrialRecord, evaluate_architecture
from nasseg.spaces import SearchSpace, load_space
from nasseg.train.runs import resolve_schedule
from nasseg.train.trainer import check_device

DB_FILE = "study.db"
SPEC_ATTR, RECORD_ATTR, BASELINE_ATTR = "nasseg_spec", "record", "baseline"
DIRECTIONS: tuple[Literal["maximize", "minimize"], ...] = ("maximize", "minimize")  # proxy score, latency in ms
# Heartbeat every HEARTBEAT_S seconds; a trial silent for 3x that is taken for dead. NASSEG_HEARTBEAT_S
# shortens it (tests, or a quick restart after a crash).
HEARTBEAT_S = int(os.environ.get("NASSEG_HEARTBEAT_S", "20"))
# Early stopping: an intermediate mIoU this far below that of a finished, no slower trial at the same
# step is hopeless. Two seeds of `short` differ by a median 2.4 points (benchmarks/README.md): 3 points
# is past that noise.
HOPELESS_MARGIN = 0.03
MAX_REJECTED_IN_A_ROW = 100
WORKER_SEED_STRIDE = 100_003  # a prime: worker k's sampler seed never meets another's for a long study


def study_dir(spec: StudySpec, base: Path | None = None) -> Path:
    """Where a study's default storage and cache live: ``<base>/<name>/`` (base: ``studies/``)."""
    return (base if base is not None else Path("studies")) / spec.study_name


def default_storage(directory: Path) -> str:
    return f"sqlite:///{directory / DB_FILE}"


@contextmanager
def _stable_enough() -> Iterator[None]:
    """Heartbeats, stale-trial retries and TPE's multivariate grouping have been marked experimental by
    Optuna since v2.8-v3.0; they are its documented way to survive killed workers and to sample
    conditional spaces, so their warnings say nothing to a nasseg user."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        yield


def _create_sqlite(path: Path) -> None:
    """Create a SQLite study file whole: its schema is written under another name and linked into
    place, so a reader (``nasseg results``, a second worker) never opens it half-made. ``os.link``
    refuses an existing file, so of two creators racing, the first one's file stays."""
    path.parent.mkdir(parents=True, exist_ok=True)
    draft = path.with_name(f".{path.name}.{os.getpid()}.draft")
    try:
        RDBStorage(f"sqlite:///{draft}").engine.dispose()
        with suppress(FileExistsError):
            os.link(draft, path)
    finally:
        draft.unlink(missing_ok=True)


def open_storage(url: str, heartbeat_s: int = HEARTBEAT_S) -> RDBStorage:
    """An Optuna RDB storage with heartbeats; a URL that cannot be opened is one error saying why."""
    try:
        path = Path(url.removeprefix("sqlite:///"))
        if url.startswith("sqlite:///") and path.name != ":memory:" and not path.is_file():
            _create_sqlite(path)
        with _stable_enough():
            return RDBStorage(
                url,
                engine_kwargs={"connect_args": {"timeout": 60}} if url.startswith("sqlite") else None,
                heartbeat_interval=heartbeat_s,
                grace_period=3 * heartbeat_s,
                heartbeat_stale_trial_callback=RetryHeartbeatStaleTrialCallback(max_retry=3),
            )
    except Exception as exc:  # SQLAlchemy and drivers raise their own types: say which URL and why
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ConfigError(f"storage {url!r} cannot be opened: {reason[:300]}") from None


def make_sampler(spec: StudySpec, seed: int | None = None) -> optuna.samplers.BaseSampler:
    """TPE by default: it samples define-by-run conditional spaces natively (``group``), learns from a
    few dozen trials, and costs nothing per trial beside training. NSGA-II needs populations of tens
    over many generations; a GP fits poorly to categorical, conditional parameters. Each reads the
    constraint values a trial stores (``Trial.set_constraint``). ``seed`` defaults to the study's."""
    seed = spec.seed if seed is None else seed
    with _stable_enough():
        if spec.sampler == "tpe":
            return optuna.samplers.TPESampler(seed=seed, multivariate=True, group=True, n_startup_trials=10)
        if spec.sampler == "nsga2":
            return optuna.samplers.NSGAIISampler(seed=seed, population_size=20)
        if spec.sampler == "gp":
            return optuna.samplers.GPSampler(seed=seed)
        return optuna.samplers.RandomSampler(seed=seed)


def record_of(trial: FrozenTrial) -> TrialRecord | None:
    data = trial.user_attrs.get(RECORD_ATTR)
    return None if data is None else TrialRecord.from_dict(data)


@dataclass(frozen=True)
class Progress:
    """Where a study stands against its budget."""

    baselines: int  # finished baseline trials
    sampled: int  # finished sampled trials (what the budget counts)
    rejected: int  # draws that cost nothing: rejected architectures, and repeats of an earlier trial
    failed: int
    running: int  # every running trial, a baseline's too
    running_sampled: int
    waiting: int  # enqueued: baselines not yet run, retries of interrupted trials
    budget: int

    @property
    def slots(self) -> int:
        """Trials that may still start: every enqueued one, and sampled ones while the budget has room."""
        return self.waiting + max(0, self.budget - self.sampled - self.running_sampled)


def progress_of(study: optuna.Study, budget: int) -> Progress:
    counts = dict.fromkeys(("baselines", "sampled", "rejected", "failed", "running", "running_sampled", "waiting"), 0)
    for trial in study.get_trials(deepcopy=False):
        if trial.state == TrialState.RUNNING:
            counts["running"] += 1
            counts["running_sampled"] += BASELINE_ATTR not in trial.user_attrs
        elif trial.state == TrialState.WAITING:
            counts["waiting"] += 1
        elif (record := trial.user_attrs.get(RECORD_ATTR)) is not None:
            if record["status"] == "rejected" or record.get("duplicate_of") is not None:
                counts["rejected"] += 1
                continue
            counts["failed"] += record["status"] == "failed"
            counts["baselines" if record["baseline"] else "sampled"] += 1
    return Progress(budget=budget, **counts)


class Study:
    """One worker's handle on a study: its spec, space, plan and storage."""

    def __init__(
        self,
        spec: StudySpec,
        storage: str | None = None,
        base: Path | None = None,
        heartbeat_s: int = HEARTBEAT_S,
        worker: int = 0,
    ) -> None:
        get_target(spec.target)  # an unknown target lists the valid ones before anything is created
        check_device(spec.device)
        self.spec = spec
        self.space: SearchSpace = load_space(spec.space)
        self.directory = study_dir(spec, base)
        self.storage_url = storage or default_storage(self.directory)
        self.num_classes = dataset_info(spec.data).num_classes
        schedule = resolve_schedule(spec.schedule, self.space.spec.family, spec.steps)
        input_hw = tuple(spec.input or self.space.spec.search_input)
        self.plan = TrialPlan(
            data=spec.data,
            schedule=schedule,
            seed=spec.seed,
            input_hw=(int(input_hw[0]), int(input_hw[1])),
            target=spec.target,
            backend=latency_backend(spec.target, spec.backend, spec.agent),
            precision=spec.precision,
            agent=spec.agent,
            max_latency_ms=spec.max_latency_ms,
            max_params=spec.max_params,
            device=spec.device,
            proxy=get_proxy(spec.proxy),
        )
        self.storage = open_storage(self.storage_url, heartbeat_s)
        self.study = optuna.create_study(
            storage=self.storage,
            study_name=spec.study_name,
            directions=list(DIRECTIONS),
            load_if_exists=True,
        )
        # A seeded sampler replays its draws from the start: one that continues a study, or runs beside
        # another worker, takes a stream of its own. A fresh study's first worker keeps the study's seed,
        # so the same settings give the same study.
        existing = len(self.study.get_trials(deepcopy=False))
        self.study.sampler = make_sampler(spec, spec.seed + existing + WORKER_SEED_STRIDE * worker)
        self._lock_file: Any = None
        self._latency: LatencySource | None = None
        self._claim()

    # ----- identity and baselines ---------------------------------------------------------------
    def _claim(self) -> None:
        """Store this study's settings, or refuse settings that differ from those stored; enqueue the
        baselines once."""
        with self.lock():
            stored = self.study.user_attrs.get(SPEC_ATTR)
            mine = self.spec.identity()
            if stored is None:
                self.study.set_user_attr(SPEC_ATTR, {**mine, "created_by": self.spec.model_dump(mode="json")})
                if self.spec.baselines:
                    for name in self.space.baselines:
                        params = self.space.encode(self.space.baseline(name).params)
                        self.study.enqueue_trial(params, user_attrs={BASELINE_ATTR: name})
                return
            stored = {"proxy": get_proxy(LEGACY_PROXY).id, **stored}  # created before studies chose a proxy
            differs = {k: (stored.get(k), v) for k, v in mine.items() if stored.get(k) != v}
            if differs:
                what = "; ".join(f"{k}: stored {a!r}, asked {b!r}" for k, (a, b) in differs.items())
                raise ConfigError(
                    f"study {self.spec.study_name!r} in {self.storage_url} was created with other "
                    f"settings ({what}); choose another --study name{_proxy_hint(stored['proxy'], differs)}"
                )

    @contextmanager
    def lock(self) -> Iterator[None]:
        """Serialise starting trials between the local workers of a study (a file lock beside it;
        one handle per ``Study``, so give each worker thread its own)."""
        if self._lock_file is None:
            self.directory.mkdir(parents=True, exist_ok=True)
            self._lock_file = open(self.directory / ".lock", "w")  # noqa: SIM115 (held for the worker's life)
        fcntl.flock(self._lock_file, fcntl.LOCK_EX)
        try:
            yield
        finally:
            self.unlock()

    def unlock(self) -> None:
        """Let the next local worker start a trial (unlocking an unlocked file is harmless)."""
        if self._lock_file is not None:
            fcntl.flock(self._lock_file, fcntl.LOCK_UN)

    def progress(self) -> Progress:
        return progress_of(self.study, self.spec.budget)

    # ----- running --------------------------------------------------------------------------
    @property
    def latency(self) -> LatencySource:
        if self._latency is None:
            measured = self.plan.backend != PREDICTOR or self.plan.agent
            cache = LatencyCache.for_study(self.directory) if measured else None
            self._latency = LatencySource(self.plan, cache)
        return self._latency

    def run_worker(
        self,
        on_trial: Callable[[TrialRecord | None, Progress], None] | None = None,
        evaluate: Callable[..., TrialRecord] | None = None,
    ) -> Progress:
        """Take trials until the budget is spent and no trial is left running; return where it stands.

        ``evaluate`` replaces ``evaluate_architecture`` (same arguments), e.g. to run it on Ray.
        """
        evaluate = evaluate or evaluate_architecture
        rejected_in_a_row = 0
        while True:
            with self.lock():
                with _stable_enough():
                    optuna.storages.fail_stale_trials(self.study)
                state = self.progress()
                if state.slots > 0:
                    record = self._one_trial(evaluate)
                    free = record is not None and (record.status == "rejected" or record.duplicate_of is not None)
                    rejected_in_a_row = rejected_in_a_row + 1 if free else 0
            if state.slots == 0:
                if state.running == 0:
                    return state
                time.sleep(min(HEARTBEAT_S, 5))  # another worker's trial, or a dead one awaiting its grace period
                continue
            if on_trial is not None:
                on_trial(record, self.progress())
            if rejected_in_a_row >= MAX_REJECTED_IN_A_ROW:
                raise ConfigError(
                    f"space {self.space.name}: {rejected_in_a_row} sampled architectures in a row cannot "
                    f"run at {self.plan.input_hw[0]}x{self.plan.input_hw[1]} or were evaluated before: the "
                    "space is exhausted, or its domains do not fit the input"
                )

    def _one_trial(self, evaluate: Callable[..., TrialRecord]) -> TrialRecord | None:
        """Run one trial; the lock held by the caller is released once the trial exists."""
        result: list[TrialRecord] = []

        def objective(trial: optuna.Trial) -> tuple[float, float]:
            self.unlock()  # the trial exists now: the next worker may start its own
            try:
                record = self._evaluate(trial, evaluate)
            except KeyboardInterrupt:  # Optuna fails the trial: enqueue it again, so the study runs it later
                self.study.enqueue_trial(trial.params, user_attrs=dict(trial.user_attrs))
                raise
            result.append(record)
            return self._tell(trial, record)

        with _stable_enough():
            self.study.optimize(objective, n_trials=1, catch=(TrialFailed,))
        return result[0] if result else None

    def _evaluate(self, trial: optuna.Trial, evaluate: Callable[..., TrialRecord]) -> TrialRecord:
        baseline = trial.user_attrs.get(BASELINE_ATTR)
        config = ArchConfig(self.space.spec.family, self.space.sample_params(trial), self.num_classes)
        if baseline is None and (earlier := self._finished(config.arch_hash())) is not None:
            number, record = earlier
            return dataclasses.replace(record, baseline=None, duplicate_of=number, wall_seconds=0.0)
        keep = EarlyStop(self.storage_url, self.spec.study_name) if self.spec.early_stopping and not baseline else None
        return evaluate(config, self.plan, self.latency, space=self.space, baseline=baseline, keep_training=keep)

    def _finished(self, arch_hash: str) -> tuple[int, TrialRecord] | None:
        """The first finished trial of this architecture (a repeat is not trained again)."""
        for trial in self.study.get_trials(deepcopy=False):
            record = trial.user_attrs.get(RECORD_ATTR)
            if record is not None and record["arch_hash"] == arch_hash and record.get("duplicate_of") is None:
                return trial.number, TrialRecord.from_dict(record)
        return None

    def _tell(self, trial: optuna.Trial, record: TrialRecord) -> tuple[float, float]:
        trial.set_user_attr(RECORD_ATTR, record.to_dict())
        if record.status in ("rejected", "stopped"):
            raise optuna.TrialPruned(record.failure or "stopped early: hopeless against finished trials")
        if record.status == "failed":
            raise TrialFailed(record.failure)
        assert record.latency is not None and record.params is not None
        if self.spec.max_latency_ms is not None:
            trial.set_constraint("latency_ms", record.latency.median_ms - self.spec.max_latency_ms)
        if self.spec.max_params is not None:
            trial.set_constraint("params", record.params - self.spec.max_params)
        # A constrained architecture is not trained: 0 stands in for its score, and the sampler learns
        # from the constraint values that it is infeasible.
        return (record.score or 0.0) if record.status == "complete" else 0.0, record.latency.median_ms


def _proxy_hint(stored: str, differs: dict[str, Any]) -> str:
    """How to continue a study whose proxy is the only thing asked differently, where nasseg still has it."""
    name = stored.split(":")[0]
    if set(differs) != {"proxy"} or name not in PROXIES or get_proxy(name).id != stored:
        return ""
    return f", or continue it with --proxy {name}"


class EarlyStop:
    """``keep_training`` for a trial: False once a finished trial of no higher latency was clearly
    better at the same step (it would dominate this one). Holds only the storage URL, so it travels
    to a Ray worker."""

    def __init__(self, storage_url: str, study_name: str) -> None:
        self.storage_url, self.study_name = storage_url, study_name

    def __call__(self, step: int, score: float, latency_ms: float) -> bool:
        study = optuna.load_study(study_name=self.study_name, storage=self.storage_url)
        finished = [
            t.user_attrs.get(RECORD_ATTR) for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
        ]
        return not hopeless(step, score, latency_ms, [r for r in finished if r])


def hopeless(step: int, score: float, latency_ms: float, finished: list[dict[str, Any]]) -> bool:
    """The early-stopping rule: a finished, complete trial (its stored record) of no higher latency
    scored better by more than ``HOPELESS_MARGIN`` at the same step (its mIoU then, with its
    tie-breaker), so it would dominate this one."""
    for other in finished:
        if other["status"] != "complete" or other["latency"]["median_ms"] > latency_ms:
            continue
        at_step = dict(other["history"])
        if at_step.get(step) is not None and at_step[step] + tie_breaker_of(other) > score + HOPELESS_MARGIN:
            return True
    return False


def tie_breaker_of(record: dict[str, Any]) -> float:
    """What a stored record's score adds to its mIoU: its proxy's tie-breaker (0 for a record without one)."""
    return (record.get("score", record["miou"]) or 0.0) - (record["miou"] or 0.0)


def load_study(name: str, storage: str | None = None, base: Path | None = None) -> tuple[optuna.Study, dict[str, Any]]:
    """An existing study and its stored settings, for reading results; a missing one lists those there."""
    url = storage or default_storage((base if base is not None else Path("studies")) / name)
    if url.startswith("sqlite:///") and not Path(url.removeprefix("sqlite:///")).is_file():
        raise ConfigError(
            f"no study {name!r}: {url.removeprefix('sqlite:///')} does not exist (give --storage URL "
            "for a study stored elsewhere)"
        )
    storage_obj = open_storage(url)
    names = [s.study_name for s in optuna.get_all_study_summaries(storage_obj)]
    if name not in names:
        raise ConfigError(f"no study {name!r} in {url}; studies there: {', '.join(names) or 'none'}")
    study = optuna.load_study(study_name=name, storage=storage_obj)
    return study, study.user_attrs.get(SPEC_ATTR, {})


def locate_study(study: str, storage: str | None = None) -> tuple[str, str]:
    """A study as the command line names it, by name (in studies/<name>/ unless ``storage``) or by its
    study file: its name and its storage URL."""
    path = Path(study)
    name, base = (load_study_file(path).study_name, path.parent) if path.suffix in (".yaml", ".yml") else (study, None)
    return name, storage or default_storage((base if base is not None else Path("studies")) / name)


def open_study(study: str, storage: str | None = None) -> tuple[optuna.Study, dict[str, Any]]:
    """A study by name or by study file, for reading (``nasseg results``, ``export``, ``dashboard``)."""
    name, url = locate_study(study, storage)
    return load_study(name, url)
