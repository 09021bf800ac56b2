"""One training run as data: what to train (``RunSpec``), and training it into a run directory.

A run directory holds everything a run needs to be re-scored or continued: ``run.yaml`` (the
architecture, data, resolutions, schedule and seed), ``checkpoint.pt`` (written after every
evaluation) and ``metrics.json`` (the result with its provenance). ``nasseg train``, ``nasseg
reproduce --train``, the search's trials and the benchmarks all train through ``train_run``.
"""

from __future__ import annotations

import json
import platform
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import pydantic
import torch
import yaml
from torch import nn

from nasseg.data import dataset_info, load_split
from nasseg.errors import ConfigError
from nasseg.models import ArchConfig, build, check
from nasseg.train.schedule import Schedule, get_schedule
from nasseg.train.trainer import Callback, EvalResult, TrainResult, evaluate, load_checkpoint, scored_weights, train
from nasseg.yamlio import read_yaml

RUN_FILE, CHECKPOINT_FILE, METRICS_FILE = "run.yaml", "checkpoint.pt", "metrics.json"


@dataclass(frozen=True)
class RunSpec:
    """What one training run is: architecture, data and resolutions, schedule, seed."""

    name: str
    config: ArchConfig
    data: str
    train_hw: tuple[int, int]
    eval_hw: tuple[int, int]
    schedule: Schedule
    seed: int

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "architecture": self.config.to_dict(),
            "arch_hash": self.config.arch_hash(),
            "data": self.data,
            "train_hw": list(self.train_hw),
            "eval_hw": list(self.eval_hw),
            "schedule": self.schedule.to_dict(),
            "seed": self.seed,
        }

    @classmethod
    def from_file(cls, path: Path) -> RunSpec:
        if not path.is_file():
            raise ConfigError(f"{path}: no such run file (a run directory holds {RUN_FILE} beside {CHECKPOINT_FILE})")
        data = read_yaml(path, "run file", ConfigError)
        try:
            return cls(
                name=data["name"],
                config=ArchConfig.from_dict(data["architecture"]),
                data=data["data"],
                train_hw=tuple(data["train_hw"]),
                eval_hw=tuple(data["eval_hw"]),
                schedule=Schedule.model_validate(data["schedule"]),
                seed=int(data["seed"]),
            )
        except (KeyError, TypeError, ValueError, OverflowError, pydantic.ValidationError) as exc:
            raise ConfigError(f"{path}: not a nasseg run file: {' '.join(str(exc).split())[:200]}") from None


def make_run(name: str, config: ArchConfig, data: str, schedule: Schedule, seed: int) -> RunSpec:
    """Resolve an architecture against a dataset: classes from the data, the resolutions from the
    schedule's scales of the dataset's native frame size."""
    info = dataset_info(data)
    return RunSpec(
        name=name,
        config=config.with_classes(info.num_classes),
        data=data,
        train_hw=schedule.input_hw(info.frame_hw()),
        eval_hw=schedule.eval_hw(info.frame_hw()),
        schedule=schedule,
        seed=seed,
    )


def resolve_schedule(name: str, family: str, steps: int | None = None, batch_size: int | None = None) -> Schedule:
    """A named schedule (``paper`` is the family's recipe) with overrides of its length and batch."""
    schedule = get_schedule(name, family if name == "paper" else None)
    overrides = {k: v for k, v in (("steps", steps), ("batch_size", batch_size)) if v is not None}
    return schedule.with_overrides(**overrides) if overrides else schedule


def build_seeded(config: ArchConfig, seed: int) -> nn.Module:
    """The network with its weights initialised from ``seed`` alone, whatever ran before in the process."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return build(config)


def train_run(
    run: RunSpec,
    model: nn.Module | None = None,
    *,
    checkpoint: Path | None = None,
    resume: bool = False,
    budget_s: float | None = None,
    device: str = "cpu",
    callback: Callback | None = None,
    progress: bool = True,
) -> TrainResult:
    """Train ``run``: its splits loaded at its resolutions, its network built under its seed unless
    ``model`` (built by ``build_seeded`` from the same config and seed) is given."""
    train_split = load_split(run.data, "train", run.train_hw)
    val_split = load_split(run.data, "val", run.eval_hw)
    return train(
        model if model is not None else build_seeded(run.config, run.seed),
        train_split,
        val_split,
        run.schedule,
        seed=run.seed,
        device=device,
        time_budget_s=budget_s,
        checkpoint=checkpoint,
        resume=resume,
        progress=progress,
        callback=callback,
    )


def provenance() -> dict[str, Any]:
    """When, where and with what software a result was produced."""
    return {
        "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "host": platform.node(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "threads": torch.get_num_threads(),
    }


def _claim_directory(run: RunSpec, out: Path, resume: bool, overwrite: bool) -> None:
    """A run directory holds one run: continuing it needs ``resume``, replacing it ``overwrite``."""
    run_file = out / RUN_FILE
    if resume:
        if not run_file.is_file():
            raise ConfigError(f"nothing to resume in {out}: it holds no {RUN_FILE}; drop --resume to start this run")
        if RunSpec.from_file(run_file).to_dict() != run.to_dict():
            raise ConfigError(f"{run_file} describes a different run; cannot resume it with these options")
    elif not overwrite and any((out / name).exists() for name in (RUN_FILE, CHECKPOINT_FILE, METRICS_FILE)):
        raise ConfigError(f"{out} already holds a run: continue it with --resume, or replace it with --overwrite")


def run_training(
    run: RunSpec,
    out: Path,
    *,
    resume: bool = False,
    overwrite: bool = False,
    budget_s: float | None = None,
    device: str = "cpu",
    progress: bool = True,
) -> dict[str, Any]:
    """Train one run into ``out`` and return its metrics (also written to ``metrics.json``).

    ``run.yaml`` is written once the architecture and the data are known to be usable and before
    training starts, so an interrupted run can be resumed or scored. Layers that ``check`` finds
    degenerate at the training input are noted in the metrics.
    """
    _claim_directory(run, out, resume, overwrite)
    notes = list(check(run.config, run.train_hw))
    images = {
        split: len(load_split(run.data, split, hw)) for split, hw in (("train", run.train_hw), ("val", run.eval_hw))
    }
    out.mkdir(parents=True, exist_ok=True)
    (out / RUN_FILE).write_text(yaml.safe_dump(run.to_dict(), sort_keys=False))
    result = train_run(
        run, checkpoint=out / CHECKPOINT_FILE, resume=resume, budget_s=budget_s, device=device, progress=progress
    )
    metrics = {
        **result.to_dict(),
        "run": run.to_dict(),
        "train_images": images["train"],
        "val_images": images["val"],
        "degenerate_at_train_input": notes,
        "provenance": provenance(),
    }
    (out / METRICS_FILE).write_text(json.dumps(metrics, indent=2))
    return metrics


def evaluate_run(
    path: Path,
    data: str | None = None,
    split: str = "val",
    input_hw: tuple[int, int] | None = None,
    device: str = "cpu",
    weights: Literal["scored", "last"] = "scored",
) -> tuple[RunSpec, EvalResult, tuple[int, int]]:
    """Re-score a checkpoint (or run directory) on a split; the resolution defaults to the run's. ``weights``
    "scored" are those its metrics were measured with (the moving average where the schedule keeps one),
    "last" the last optimiser step's."""
    checkpoint = path / CHECKPOINT_FILE if path.is_dir() else path
    if not checkpoint.is_file():
        raise ConfigError(f"{checkpoint}: no such checkpoint")
    run = RunSpec.from_file(checkpoint.with_name(RUN_FILE))
    data = data or run.data
    info = dataset_info(data)
    if info.num_classes != run.config.num_classes:
        raise ConfigError(f"{checkpoint} predicts {run.config.num_classes} classes; {data} has {info.num_classes}")
    hw = input_hw or (run.eval_hw if data == run.data else run.schedule.eval_hw(info.frame_hw()))
    model = build(run.config)
    try:
        payload = load_checkpoint(checkpoint)
        model.load_state_dict(scored_weights(payload) if weights == "scored" else payload["model"])
    except (RuntimeError, TypeError, ValueError) as exc:  # the weights of another network
        why = " ".join(str(exc).split())[:200]
        raise ConfigError(f"{checkpoint}: its weights do not fit {run.name}'s architecture ({why})") from None
    return run, evaluate(model, load_split(data, split, hw), device=device), hw
