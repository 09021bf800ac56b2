"""``nasseg search``, ``nasseg results`` and ``nasseg export``: the study from the command line."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import optuna
import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

from nasseg.cli.common import console, err_console, parse_hw, print_json, user_errors
from nasseg.errors import ConfigError
from nasseg.search.export import export_trials
from nasseg.search.results import StudyResults, TrialRow, study_results
from nasseg.search.run import run_search
from nasseg.search.spec import SAMPLERS, StudySpec, load_study_file, parse_spec
from nasseg.search.study import Progress as StudyProgress
from nasseg.search.study import Study, load_study, open_study
from nasseg.search.trial import TrialRecord
from nasseg.train.schedule import schedule_names

EXIT_INTERRUPTED = 130


def _spec_from(study_file: Path | None, flags: dict[str, Any]) -> StudySpec:
    """The study file's fields, with every flag given on the command line taking precedence."""
    given = {k: v for k, v in flags.items() if v is not None}
    if study_file is None:
        missing = [f"--{k.replace('_', '-')}" for k in ("space", "target", "budget") if k not in given]
        if missing:
            raise ConfigError(f"give a study file, or {', '.join(missing)}")
        return parse_spec(given, "nasseg search")
    base = load_study_file(study_file)
    return parse_spec({**base.model_dump(exclude_unset=True), **given}, str(study_file))


def _fmt(value: float | None, pattern: str) -> str:
    return "—" if value is None else format(value, pattern)


def _front_table(results: StudyResults) -> Table:
    rows = {t.number: t for t in results.trials}
    table = Table(title=f"Pareto front of {results.study} ({results.space} on {results.target})")
    score = ["score"] if results.tie_broken else []
    for col in ("trial", "baseline", *score, "mIoU", "latency ms", "latency from", "params", "GMACs"):
        table.add_column(col, justify="right" if col not in ("baseline", "latency from") else "left")
    for number in results.pareto:
        t = rows[number]
        table.add_row(
            str(number),
            t.baseline or "",
            *[_fmt(t.score, ".4f") for _ in score],
            _fmt(t.miou, ".4f"),
            _fmt(t.latency_ms, ".2f"),
            t.latency_kind or "",
            f"{(t.params or 0) / 1e6:.2f} M",
            f"{(t.macs or 0) / 1e9:.2f}",
        )
    return table


def _baseline_table(results: StudyResults) -> Table:
    rows = {t.number: t for t in results.trials}
    table = Table(title="Published baselines, trained and timed as the study's trials")
    score = ["score"] if results.tie_broken else []
    for col in ("baseline", "trial", *score, "mIoU", "latency ms", "dominated by"):
        table.add_column(col)
    for t in results.baseline_rows():
        doms = results.dominated_by.get(t.baseline or "")
        text = (
            t.outcome()
            if not t.scored
            else ", ".join(
                f"#{n} ({_fmt(rows[n].score, '.3f')}, {_fmt(rows[n].latency_ms, '.1f')} ms)" for n in doms or []
            )
            or "nothing found"
        )
        scores = [_fmt(t.score, ".4f") for _ in score]
        table.add_row(t.baseline, str(t.number), *scores, _fmt(t.miou, ".4f"), _fmt(t.latency_ms, ".2f"), text)
    return table


def print_results(results: StudyResults) -> None:
    counts: dict[str, int] = {}
    for t in results.trials:
        counts[t.status or t.state.lower()] = counts.get(t.status or t.state.lower(), 0) + 1
    console.print(_front_table(results))
    console.print(_baseline_table(results))
    kinds = {t.latency_kind for t in results.trials if t.latency_kind}
    label = next((t.latency_label for t in results.trials if t.latency_label), None)
    unit = "score" if results.tie_broken else "mIoU"
    console.print(
        f"trials: {', '.join(f'{n} {k}' for k, n in sorted(counts.items()))}; hypervolume "
        f"{results.hypervolume:.4g} ({unit} x ms, up to {_fmt(results.reference_ms, '.2f')} ms)"
    )
    console.print(f"accuracy objective: {results.proxy}", highlight=False, soft_wrap=True)
    if label:
        console.print(f"latency: {' and '.join(sorted(kinds))}, e.g. {label}", highlight=False, soft_wrap=True)


class _Display:
    """A progress bar over the study's trials, with the current front and the time left."""

    def __init__(self, total: int, enabled: bool) -> None:
        self.progress = Progress(
            TextColumn("search"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TextColumn("left"),
            TimeRemainingColumn(),
            TextColumn("{task.fields[info]}"),
            console=err_console,
            disable=not enabled,
        )
        self.task = self.progress.add_task("search", total=total, info="")
        self.front: list[tuple[float, float]] = []
        self.trials = 0  # run by this command

    def __call__(self, record: TrialRecord | None, state: StudyProgress) -> None:
        self.trials += record is not None
        if record is not None and record.status == "complete" and record.score is not None and record.latency_ms:
            self.front = [p for p in self.front if not (p[0] <= record.score and p[1] >= record.latency_ms)]
            if not any(p[0] >= record.score and p[1] <= record.latency_ms for p in self.front):
                self.front.append((record.score, record.latency_ms))
        what = "" if record is None else f"last: {record.baseline or record.arch_hash[:8]} {record.status}"
        best = max(self.front, default=None)
        self.progress.update(
            self.task,
            completed=state.baselines + state.sampled,
            total=state.baselines + state.sampled + state.slots,
            info=f"front {len(self.front)}" + (f", best score {best[0]:.3f}" if best else "") + f"; {what}",
        )


def search_command(
    study_file: Path | None = typer.Argument(
        None, help="A study file (studies/<name>.yaml); flags override its fields."
    ),
    space: str | None = typer.Option(None, "--space", help="The search space: see `nasseg spaces`."),
    target: str | None = typer.Option(None, "--target", "-t", help="The latency target: see `nasseg targets`."),
    budget: int | None = typer.Option(
        None, "--budget", min=0, help="Sampled architectures to evaluate, beside the baselines."
    ),
    data: str | None = typer.Option(
        None, "--data", help="Dataset URI (default synthetic): synthetic, camvid:PATH, cityscapes:PATH."
    ),
    schedule: str | None = typer.Option(
        None, "--schedule", help=f"Training schedule per trial (default short): {', '.join(schedule_names())}."
    ),
    steps: int | None = typer.Option(None, "--steps", min=1, help="Override the schedule's length."),
    proxy: str | None = typer.Option(
        None, "--proxy", help="Accuracy objective (default miou+synflow): miou, miou+synflow. See docs/search.md."
    ),
    max_latency: float | None = typer.Option(None, "--max-latency", help="Constraint: latency in ms at most this."),
    max_params: int | None = typer.Option(None, "--max-params", help="Constraint: parameters at most this."),
    sampler: str | None = typer.Option(None, "--sampler", help=f"{' | '.join(SAMPLERS)} (default tpe)."),
    seed: int | None = typer.Option(
        None, "--seed", help="Seed of the sampler and of every trial's training (default 0)."
    ),
    input_size: str | None = typer.Option(
        None, "--input", help="Latency input HxW (default: the space's search input)."
    ),
    latency_backend: str | None = typer.Option(
        None, "--latency-backend", help="predictor, torch, onnxruntime, tensorrt (default: the predictor for a Jetson)."
    ),
    agent: str | None = typer.Option(
        None, "--agent", help="URL of the board's `nasseg agent`: latency measured there."
    ),
    early_stopping: bool | None = typer.Option(
        None, "--early-stopping/--no-early-stopping", help="Stop hopeless trials early (default off)."
    ),
    baselines: bool | None = typer.Option(
        None, "--baselines/--no-baselines", help="Evaluate the space's published baselines first (default on)."
    ),
    device: str | None = typer.Option(None, "--device", help="cpu or cuda for training."),
    name: str | None = typer.Option(
        None, "--study", help="The study's name (default: <space>-<target>, or the study file's name)."
    ),
    storage: str | None = typer.Option(
        None, "--storage", help="Optuna storage URL (default: sqlite in studies/<name>/)."
    ),
    workers: int = typer.Option(
        1, "--workers", min=1, help="Concurrent trials (processes, or Ray tasks with --backend ray)."
    ),
    backend: str = typer.Option(
        "local", "--backend", help="local (processes here) or ray (a local Ray instance, or RAY_ADDRESS)."
    ),
    as_json: bool = typer.Option(False, "--json", help="At the end, print the results as one JSON object."),
) -> None:
    """Search a space: every trial trained with the schedule and timed on the target; the Pareto front at the end."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # the progress display says what Optuna would log per trial
    with user_errors():
        flags = {
            "space": space,
            "target": target,
            "budget": budget,
            "data": data,
            "schedule": schedule,
            "steps": steps,
            "proxy": proxy,
            "max_latency_ms": max_latency,
            "max_params": max_params,
            "sampler": sampler,
            "seed": seed,
            "input": parse_hw(input_size) if input_size else None,
            "backend": latency_backend,
            "agent": agent,
            "early_stopping": early_stopping,
            "baselines": baselines,
            "device": device,
            "name": name,
        }
        spec = _spec_from(study_file, flags)
        base = study_file.parent if study_file is not None else None
        study = Study(spec, storage, base)  # settings checked, baselines enqueued: before any display
        display = _Display(spec.budget, enabled=not as_json)
        started = time.perf_counter()
        try:
            with display.progress:
                state = run_search(
                    spec, storage=storage, base=base, workers=workers, backend=backend, on_trial=display, study=study
                )
        except KeyboardInterrupt:
            err_console.print("interrupted: every finished trial is in the study; run the same command to continue")
            raise typer.Exit(EXIT_INTERRUPTED) from None
        stored, settings = load_study(spec.study_name, storage, base)
        results = study_results(stored, settings)
    if display.trials == 0:
        err_console.print(
            f"study {spec.study_name} already has its budget of {spec.budget} sampled architectures: "
            "nothing to run (raise --budget to continue it)"
        )
    if as_json:
        print_json(results.to_dict())
        return
    print_results(results)
    console.print(
        f"{state.baselines} baselines and {state.sampled} sampled architectures in the study "
        f"({time.perf_counter() - started:.0f} s this run); `nasseg results {spec.study_name}` shows them again"
    )


def results_command(
    study: str = typer.Argument(..., help="A study name (stored in studies/<name>/) or a study file."),
    storage: str | None = typer.Option(
        None, "--storage", help="Optuna storage URL (default: sqlite in studies/<name>/)."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object."),
    csv: Path | None = typer.Option(None, "--csv", help="Also write every trial as a CSV row."),
) -> None:
    """The Pareto front, its hypervolume, and which found architectures dominate each baseline."""
    with user_errors():
        results = study_results(*open_study(study, storage))
        if csv is not None:
            _write_csv(results.trials, csv)
    if as_json:
        print_json(results.to_dict())
    else:
        print_results(results)


def _write_csv(rows: list[TrialRow], path: Path) -> None:
    import pandas as pd

    frame = pd.DataFrame(
        [
            {
                **{k: v for k, v in vars(r).items() if k != "per_class_iou"},
                "config": None if r.config is None else r.config["params"],
            }
            for r in rows
        ]
    )
    frame.to_csv(path, index=False)


def export_command(
    study: str = typer.Argument(..., help="A study name or study file."),
    pareto: bool = typer.Option(False, "--pareto", help="Export every architecture on the Pareto front."),
    trial: list[int] = typer.Option([], "--trial", help="Export this trial (repeatable)."),
    out: Path = typer.Option(..., "--out", help="Folder to write trial-<n>.yaml and trial-<n>.onnx into."),
    storage: str | None = typer.Option(None, "--storage", help="Optuna storage URL."),
    onnx: bool = typer.Option(True, "--onnx/--no-onnx", help="Also export ONNX at the study's latency input."),
) -> None:
    """Write architectures as config YAML (for `nasseg train`) and ONNX (for TensorRT on the board)."""
    with user_errors():
        if not pareto and not trial:
            raise ConfigError("choose what to export: --pareto, or --trial N")
        optuna_study, settings = open_study(study, storage)
        results = study_results(optuna_study, settings)
        numbers = sorted(set(trial) | (set(results.pareto) if pareto else set()))
        written = export_trials(optuna_study, results, numbers, out, onnx=onnx)
    for item in written:
        console.print(str(item))


def register(app: typer.Typer) -> None:
    app.command("search")(search_command)
    app.command("results")(results_command)
    app.command("export")(export_command)
