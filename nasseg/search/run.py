"""Running a study with several workers: local processes on one storage, or Ray tasks on a cluster.

Both keep Optuna's study as the single record: every worker asks it for the next trial and tells it
the result, so a study can be continued by any mix of them. ``--backend ray`` places each trial's
evaluation as a Ray task by its resources (CPUs, a GPU, a board's custom resource), on a local Ray
instance or the cluster ``RAY_ADDRESS`` names; the driver keeps one thread per concurrent trial.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import optuna
import torch

from nasseg.errors import ConfigError, InfrastructureFailed
from nasseg.search.spec import StudySpec
from nasseg.search.study import HEARTBEAT_S, Progress, Study
from nasseg.search.trial import TrialRecord, evaluate_architecture

OnTrial = Callable[[TrialRecord | None, Progress], None]


@dataclass(frozen=True)
class RayResources:
    """What one trial asks of the Ray cluster."""

    cpus: float = 1.0
    gpus: float = 0.0
    board: str | None = None  # a custom resource of count 1 on the node that reaches the board

    def options(self) -> dict[str, Any]:
        return {"num_cpus": self.cpus, "num_gpus": self.gpus, "resources": {self.board: 0.001} if self.board else {}}


@contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """Treat SIGTERM as Ctrl-C while a study runs: schedulers (SLURM, Kubernetes, systemd) stop jobs with
    it, and a process started in the background ignores SIGINT. Either way the running trial is enqueued
    again and every finished one stays. Signal handlers belong to the main thread; elsewhere, nothing."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _worker_main(
    spec_json: str, storage: str | None, base: str | None, threads: int, heartbeat_s: int, worker: int
) -> None:
    torch.set_num_threads(threads)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    spec = StudySpec.model_validate_json(spec_json)
    try:
        with sigterm_as_interrupt():
            Study(spec, storage, Path(base) if base else None, heartbeat_s, worker).run_worker()
    except KeyboardInterrupt:  # its trial is enqueued again; the parent says what happened
        raise SystemExit(130) from None


def run_search(
    spec: StudySpec,
    *,
    storage: str | None = None,
    base: Path | None = None,
    workers: int = 1,
    backend: str = "local",
    on_trial: OnTrial | None = None,
    ray_resources: RayResources | None = None,
    heartbeat_s: int = HEARTBEAT_S,
    study: Study | None = None,
) -> Progress:
    """Run ``spec``'s study until its budget is spent; return where it stands. ``study`` is this
    process's handle when the caller opened it already (``Study`` checks the settings and enqueues
    the baselines once)."""
    if workers < 1:
        raise ConfigError(f"--workers must be at least 1, got {workers}")
    with sigterm_as_interrupt():
        return _run(spec, storage, base, workers, backend, on_trial, ray_resources, heartbeat_s, study)


def _run(
    spec: StudySpec,
    storage: str | None,
    base: Path | None,
    workers: int,
    backend: str,
    on_trial: OnTrial | None,
    ray_resources: RayResources | None,
    heartbeat_s: int,
    study: Study | None,
) -> Progress:
    study = study or Study(spec, storage, base, heartbeat_s)
    if backend == "ray":
        return _run_on_ray(spec, study, workers, on_trial, ray_resources or RayResources(), heartbeat_s)
    if backend != "local":
        raise ConfigError(f"unknown --backend {backend!r}; use local or ray")
    if workers == 1:
        return study.run_worker(on_trial)
    threads = max(1, (os.cpu_count() or 1) // workers)
    context = multiprocessing.get_context("spawn")  # a clean interpreter: no inherited torch or SQLite state
    others = [
        context.Process(
            target=_worker_main,
            args=(spec.model_dump_json(), storage, str(base) if base else None, threads, heartbeat_s, worker),
            daemon=True,
        )
        for worker in range(1, workers)
    ]
    for process in others:
        process.start()
    torch.set_num_threads(threads)
    try:
        state = study.run_worker(on_trial)
    except BaseException:  # Ctrl-C or an error here: the other workers stop too (their trials are enqueued again)
        for process in others:
            if process.is_alive() and process.pid is not None:
                os.kill(process.pid, signal.SIGTERM)  # SIGINT may be ignored (started in the background)
        raise
    finally:
        for process in others:
            process.join()
    failed = [p.exitcode for p in others if p.exitcode]
    if failed:
        raise InfrastructureFailed(
            f"{len(failed)} worker process(es) exited with codes {failed}; the study keeps what "
            "they finished: run the same command again to continue"
        )
    return study.progress() if state is None else state


def _run_on_ray(
    spec: StudySpec,
    study: Study,
    workers: int,
    on_trial: OnTrial | None,
    resources: RayResources,
    heartbeat_s: int,
) -> Progress:
    try:
        import ray
    except ImportError:
        raise ConfigError("--backend ray needs Ray: pip install 'nasseg[ray]'") from None
    if not ray.is_initialized():
        ray.init(address=os.environ.get("RAY_ADDRESS"), include_dashboard=False, log_to_driver=False)
    remote = ray.remote(cast(Any, evaluate_architecture)).options(**resources.options(), max_retries=0)

    def evaluate(*args: Any, **kwargs: Any) -> TrialRecord:
        return ray.get(remote.remote(*args, **kwargs))

    lock = threading.Lock()  # one progress report at a time
    errors: list[BaseException] = []

    def report(record: TrialRecord | None, state: Progress) -> None:
        if on_trial is not None:
            with lock:
                on_trial(record, state)

    def thread_main(handle: Study) -> None:
        try:
            handle.run_worker(report, evaluate)
        except BaseException as exc:  # noqa: BLE001 (handed to the main thread, which raises it)
            errors.append(exc)

    handles = [study] + [
        Study(spec, study.storage_url, study.directory.parent, heartbeat_s, worker) for worker in range(1, workers)
    ]
    threads = [threading.Thread(target=thread_main, args=(h,), daemon=True) for h in handles]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]
    return study.progress()
