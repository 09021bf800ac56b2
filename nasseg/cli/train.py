"""``nasseg train`` and ``nasseg evaluate``: the accuracy objective from the command line.

A run directory holds everything a run needs to be re-scored or continued: ``run.yaml`` (the
architecture, data, resolutions, schedule and seed), ``checkpoint.pt`` (written after every
evaluation) and ``metrics.json`` (the result with its provenance).
"""

from __future__ import annotations

import json
import platform
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import typer
import yaml
from rich.table import Table

from nasseg.cli.common import (
    EXIT_CHECK_FAILED,
    console,
    err_console,
    load_architecture,
    parse_hw,
    print_json,
    user_errors,
)
from nasseg.data import dataset_info, load_split
from nasseg.errors import ConfigError, InfeasibleArchitecture
from nasseg.models import ArchConfig, build, check
from nasseg.train import EvalResult, Schedule, TrainingDiverged, TrainResult, evaluate, get_schedule, train

RUN_FILE, CHECKPOINT_FILE, METRICS_FILE = "run.yaml", "checkpoint.pt", "metrics.json"
EXIT_INTERRUPTED = 130  # as a shell reports a process stopped by Ctrl-C


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
            "name": self.name, "architecture": self.config.to_dict(), "arch_hash": self.config.arch_hash(),
            "data": self.data, "train_hw": list(self.train_hw), "eval_hw": list(self.eval_hw),
            "schedule": self.schedule.to_dict(), "seed": self.seed,
        }

    @classmethod
    def from_file(cls, path: Path) -> RunSpec:
        if not path.is_file():
            raise ConfigError(f"{path}: no such run file (a run directory holds {RUN_FILE} beside {CHECKPOINT_FILE})")
        data = yaml.safe_load(path.read_text())
        try:
            return cls(
                name=data["name"], config=ArchConfig.from_dict(data["architecture"]), data=data["data"],
                train_hw=tuple(data["train_hw"]), eval_hw=tuple(data["eval_hw"]),
                schedule=Schedule.model_validate(data["schedule"]), seed=int(data["seed"]),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ConfigError(f"{path}: not a nasseg run file: {exc}") from None


def make_run(name: str, config: ArchConfig, data: str, schedule: Schedule, seed: int) -> RunSpec:
    """Resolve an architecture against a dataset: classes from the data, the resolutions from the
    schedule's scales of the dataset's native frame size."""
    info = dataset_info(data)
    return RunSpec(
        name=name, config=config.with_classes(info.num_classes), data=data,
        train_hw=schedule.input_hw(info.native_hw), eval_hw=schedule.eval_hw(info.native_hw),
        schedule=schedule, seed=seed,
    )


def resolve_schedule(name: str, family: str, steps: int | None, batch_size: int | None) -> Schedule:
    """A named schedule (``paper`` is the family's recipe) with the command line's overrides."""
    schedule = get_schedule(name, family if name == "paper" else None)
    overrides = {k: v for k, v in (("steps", steps), ("batch_size", batch_size)) if v is not None}
    return schedule.with_overrides(**overrides) if overrides else schedule


def _provenance() -> dict[str, Any]:
    return {
        "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "host": platform.node(),
        "torch": torch.__version__, "python": platform.python_version(), "threads": torch.get_num_threads(),
    }


def run_training(
    run: RunSpec, out: Path, *, resume: bool = False, budget_s: float | None = None, device: str = "cpu",
    progress: bool = True,
) -> dict[str, Any]:
    """Train one run into ``out`` and return its metrics (also written to ``metrics.json``).

    ``run.yaml`` is written before training starts, so an interrupted run can be resumed or scored.
    A run whose architecture ``check`` rejects at the training input still trains (a user asked for
    it by name), with the reasons kept in the metrics; a search filters such points earlier.
    """
    out.mkdir(parents=True, exist_ok=True)
    run_file = out / RUN_FILE
    if resume and run_file.is_file() and RunSpec.from_file(run_file).to_dict() != run.to_dict():
        raise ConfigError(f"{run_file} describes a different run; cannot resume it with these options")
    run_file.write_text(yaml.safe_dump(run.to_dict(), sort_keys=False))
    try:
        check(run.config, run.train_hw)
        warnings: list[str] = []
    except InfeasibleArchitecture as exc:
        warnings = exc.reasons
    train_split = load_split(run.data, "train", run.train_hw)
    val_split = load_split(run.data, "val", run.eval_hw)
    result: TrainResult = train(
        build(run.config), train_split, val_split, run.schedule, seed=run.seed, device=device,
        time_budget_s=budget_s, checkpoint=out / CHECKPOINT_FILE, resume=resume, progress=progress,
    )
    metrics = {
        **result.to_dict(), "run": run.to_dict(), "train_images": len(train_split), "val_images": len(val_split),
        "infeasible_at_train_input": warnings, "provenance": _provenance(),
    }
    (out / METRICS_FILE).write_text(json.dumps(metrics, indent=2))
    return metrics


def _iou_table(title: str, per_class: dict[str, float | None], miou: float | None) -> Table:
    table = Table(title=title)
    table.add_column("class")
    table.add_column("IoU", justify="right")
    for name, iou in per_class.items():
        table.add_row(name, "—" if iou is None else f"{iou:.3f}")
    table.add_row("[bold]mIoU[/]", "—" if miou is None else f"[bold]{miou:.3f}[/]")
    return table


def _print_metrics(metrics: dict[str, Any], out: Path) -> None:
    run = metrics["run"]
    console.print(_iou_table(f"{run['name']} on {run['data']} val @ {run['eval_hw'][0]}x{run['eval_hw'][1]}",
                             metrics["per_class_iou"], metrics["miou"]))
    console.print(
        f"{metrics['steps']} steps ({metrics['stopped']}) in {metrics['train_seconds']:.1f} s, "
        f"{metrics['images_per_second']:.1f} images/s, {metrics['forward_backward_fraction']:.0%} of step time in "
        f"forward/backward; schedule {run['schedule']['name']}, seed {run['seed']}"
    )
    for reason in metrics["infeasible_at_train_input"]:
        console.print(f"[yellow]note: a search would reject this architecture here:[/] {reason}")
    console.print(f"[dim]run directory: {out}[/]")


@contextmanager
def training_errors(out: Path | None = None) -> Iterator[None]:
    """Bad input exits 2; divergence is a failed run (exit 1); an interrupt keeps the checkpoint (130)."""
    with user_errors():
        try:
            yield
        except TrainingDiverged as exc:
            err_console.print(f"[bold red]training failed:[/] {exc}", highlight=False)
            raise typer.Exit(EXIT_CHECK_FAILED) from None
        except KeyboardInterrupt:
            where = f" in {out}: continue with --resume" if out else ""
            err_console.print(f"interrupted; what was checkpointed is kept{where}")
            raise typer.Exit(EXIT_INTERRUPTED) from None


def train_command(
    architecture: str = typer.Argument(..., help="A baseline name (e.g. espnet-c) or an ArchConfig YAML/JSON file."),
    data: str = typer.Option("synthetic", "--data", help="Dataset URI: synthetic, camvid:PATH, cityscapes:PATH."),
    schedule_name: str = typer.Option("short", "--schedule", help="tiny, short, or paper (the family's recipe)."),
    steps: int = typer.Option(None, "--steps", min=1, help="Override the schedule's length in optimiser steps."),
    batch_size: int = typer.Option(None, "--batch-size", min=1, help="Override the schedule's batch size."),
    seed: int = typer.Option(0, "--seed", help="Seed of initialisation, batch order and augmentation."),
    out: Path = typer.Option(None, "--out", help="Run directory (default: runs/<architecture>-<schedule>-s<seed>)."),
    resume: bool = typer.Option(False, "--resume", help="Continue from the run directory's checkpoint."),
    budget: float = typer.Option(None, "--budget", min=0, help="Wall-clock budget in seconds; stops cleanly."),
    device: str = typer.Option("cpu", "--device", help="cpu or cuda (AMP and channels-last on CUDA)."),
    as_json: bool = typer.Option(False, "--json", help="Print the metrics as one JSON object."),
) -> None:
    """Train an architecture with a named schedule; writes a checkpoint, the resolved run and its metrics."""
    out = out or Path("runs") / f"{Path(architecture).stem}-{schedule_name}-s{seed}"
    with training_errors(out):
        config, _ = load_architecture(architecture)
        schedule = resolve_schedule(schedule_name, config.family, steps, batch_size)
        run = make_run(Path(architecture).stem, config, data, schedule, seed)
        metrics = run_training(run, out, resume=resume, budget_s=budget, device=device, progress=not as_json)
        if as_json:
            print_json(metrics)
        else:
            _print_metrics(metrics, out)


def _checkpoint_path(path: Path) -> Path:
    return path / CHECKPOINT_FILE if path.is_dir() else path


def evaluate_run(
    path: Path, data: str | None = None, split: str = "val", input_hw: tuple[int, int] | None = None,
    device: str = "cpu",
) -> tuple[RunSpec, EvalResult, tuple[int, int]]:
    """Re-score a checkpoint (or run directory) on a split; the resolution defaults to the run's."""
    checkpoint = _checkpoint_path(path)
    if not checkpoint.is_file():
        raise ConfigError(f"{checkpoint}: no such checkpoint")
    run = RunSpec.from_file(checkpoint.with_name(RUN_FILE))
    data = data or run.data
    info = dataset_info(data)
    if info.num_classes != run.config.num_classes:
        raise ConfigError(
            f"{checkpoint} predicts {run.config.num_classes} classes; {data} has {info.num_classes}"
        )
    hw = input_hw or (run.eval_hw if data == run.data else run.schedule.eval_hw(info.native_hw))
    model = build(run.config)
    payload = torch.load(checkpoint, map_location="cpu", weights_only=True)
    model.load_state_dict(payload["model"])
    return run, evaluate(model, load_split(data, split, hw), device=device), hw


def evaluate_command(
    checkpoint: Path = typer.Argument(..., help="A checkpoint.pt, or the run directory holding it."),
    data: str = typer.Option(None, "--data", help="Dataset URI (default: the one the run trained on)."),
    split: str = typer.Option("val", "--split", help="train, val or test."),
    input_size: str = typer.Option(None, "--input", help="Evaluation H×W (default: the run's)."),
    device: str = typer.Option("cpu", "--device", help="cpu or cuda."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object."),
) -> None:
    """Re-score a trained checkpoint: per-class IoU and mIoU from a confusion matrix over a split."""
    with user_errors():
        hw = parse_hw(input_size) if input_size else None
        run, result, hw = evaluate_run(checkpoint, data, split, hw, device)
        report = {"run": run.to_dict(), "data": data or run.data, "split": split, "input_hw": list(hw),
                  **result.to_dict()}
        if as_json:
            print_json(report)
        else:
            console.print(_iou_table(f"{run.name} on {report['data']} {split} @ {hw[0]}x{hw[1]}",
                                     report["per_class_iou"], report["miou"]))


def register(app: typer.Typer) -> None:
    """Add this module's commands to the app."""
    app.command("train")(train_command)
    app.command("evaluate")(evaluate_command)
