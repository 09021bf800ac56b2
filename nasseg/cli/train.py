"""``nasseg train`` and ``nasseg evaluate``: the accuracy objective from the command line
(what a run is and how it trains: ``nasseg.train.runs``)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import typer
from rich.table import Table

from nasseg.cli.common import (
    EXIT_CHECK_FAILED,
    console,
    err_console,
    parse_hw,
    print_degenerate,
    print_json,
    user_errors,
)
from nasseg.errors import TrainingDiverged
from nasseg.models import check
from nasseg.spaces import load_architecture
from nasseg.train.runs import evaluate_run, make_run, resolve_schedule, run_training
from nasseg.train.schedule import schedule_names
from nasseg.train.trainer import check_device

EXIT_INTERRUPTED = 130  # as a shell reports a process stopped by Ctrl-C


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
    console.print(
        _iou_table(
            f"{run['name']} on {run['data']} val @ {run['eval_hw'][0]}x{run['eval_hw'][1]}",
            metrics["per_class_iou"],
            metrics["miou"],
        )
    )
    console.print(
        f"{metrics['steps']} steps ({metrics['stopped']}) in {metrics['train_seconds']:.1f} s, "
        f"{metrics['images_per_second']:.1f} images/s, {metrics['forward_backward_fraction']:.0%} of step time in "
        f"forward/backward; schedule {run['schedule']['name']}, seed {run['seed']}"
    )
    console.print(f"[dim]run directory: {out}[/]")


@contextmanager
def training_errors(out: Path | None = None) -> Iterator[None]:
    """Bad input exits 2; divergence is a failed run (exit 1); an interrupt keeps the checkpoint (130)."""
    with user_errors():
        try:
            yield
        except TrainingDiverged as exc:
            err_console.print(f"[bold red]training failed:[/] {exc}", highlight=False, soft_wrap=True)
            raise typer.Exit(EXIT_CHECK_FAILED) from None
        except KeyboardInterrupt:
            where = f" in {out}: continue with --resume" if out else ""
            err_console.print(f"interrupted; what was checkpointed is kept{where}")
            raise typer.Exit(EXIT_INTERRUPTED) from None


def train_command(
    architecture: str = typer.Argument(..., help="A baseline name (e.g. espnet-c) or an ArchConfig YAML/JSON file."),
    data: str = typer.Option("synthetic", "--data", help="Dataset URI: synthetic, camvid:PATH, cityscapes:PATH."),
    schedule_name: str = typer.Option(
        "short", "--schedule", help=f"{', '.join(schedule_names())} (paper: the family's recipe)."
    ),
    steps: int = typer.Option(None, "--steps", min=1, help="Override the schedule's length in optimiser steps."),
    batch_size: int = typer.Option(None, "--batch-size", min=1, help="Override the schedule's batch size."),
    seed: int = typer.Option(0, "--seed", help="Seed of initialisation, batch order and augmentation."),
    out: Path = typer.Option(None, "--out", help="Run directory (default: runs/<architecture>-<schedule>-s<seed>)."),
    resume: bool = typer.Option(False, "--resume", help="Continue from the run directory's checkpoint."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace a run already in the run directory."),
    budget: float = typer.Option(None, "--budget", min=0, help="Wall-clock budget in seconds; stops cleanly."),
    device: str = typer.Option("cpu", "--device", help="cpu or cuda (AMP and channels-last on CUDA)."),
    as_json: bool = typer.Option(False, "--json", help="Print the metrics as one JSON object."),
) -> None:
    """Train an architecture with a named schedule; writes a checkpoint, the resolved run and its metrics."""
    out = out or Path("runs") / f"{Path(architecture).stem}-{schedule_name}-s{seed}"
    with training_errors(out):
        check_device(device)
        config, _ = load_architecture(architecture)
        schedule = resolve_schedule(schedule_name, config.family, steps, batch_size)
        run = make_run(Path(architecture).stem, config, data, schedule, seed)
        # Said before the run starts, as every command says it (metrics.json keeps the notes too):
        # an infeasible training input is one error line; degenerate layers there are noted.
        print_degenerate(check(run.config, run.train_hw), run.train_hw)
        metrics = run_training(
            run, out, resume=resume, overwrite=overwrite, budget_s=budget, device=device, progress=not as_json
        )
        if as_json:
            print_json(metrics)
        else:
            _print_metrics(metrics, out)


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
        check_device(device)
        hw = parse_hw(input_size) if input_size else None
        run, result, hw = evaluate_run(checkpoint, data, split, hw, device)
        report = {
            "run": run.to_dict(),
            "data": data or run.data,
            "split": split,
            "input_hw": list(hw),
            **result.to_dict(),
        }
        if as_json:
            print_json(report)
        else:
            console.print(
                _iou_table(
                    f"{run.name} on {report['data']} {split} @ {hw[0]}x{hw[1]}", report["per_class_iou"], report["miou"]
                )
            )


def register(app: typer.Typer) -> None:
    """Add this module's commands to the app."""
    app.command("train")(train_command)
    app.command("evaluate")(evaluate_command)
