"""``nasseg explore``: the latency landscape of a search space on one or more boards, no training."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

from nasseg.cli.common import console, err_console, print_json, user_errors
from nasseg.errors import ConfigError
from nasseg.spaces import load_space
from nasseg.viz.landscape import Landscape, check_targets, explore, write_landscape_html


def _summary(landscape: Landscape, out: Path | None) -> None:
    lx = landscape
    console.print(
        f"[bold]{lx.space}[/] at {lx.input_hw[0]}x{lx.input_hw[1]}, {lx.num_classes} classes: "
        f"{len(lx.baselines)} baselines and {len(lx.sampled)} random samples (seed {lx.seed}; {lx.draws} draws, "
        f"{lx.rejected} rejected by the space, {lx.duplicates} duplicates) in {lx.seconds:.1f} s on {lx.workers} "
        f"process{'es' if lx.workers > 1 else ''}",
        highlight=False,
    )
    if len(lx.sampled) < lx.samples:
        err_console.print(
            f"[yellow]note:[/] only {len(lx.sampled)} distinct feasible architectures in "
            f"{lx.draws} draws (asked for {lx.samples})",
            highlight=False,
        )
    if lx.left_out:
        err_console.print(
            f"[yellow]note:[/] baselines that cannot run at the search input, left out: {', '.join(lx.left_out)}",
            highlight=False,
        )

    table = Table(title="Latency (estimated) by board", show_lines=False)
    for col in ("board", "samples: min", "median", "max", "fastest baseline", "slowest baseline"):
        table.add_column(col, overflow="fold")
    for target in lx.targets:
        ms = sorted(p.latency[target].ms for p in lx.sampled)
        base = sorted((p.latency[target].ms, p.name) for p in lx.baselines)
        table.add_row(
            target,
            *((f"{ms[0]:.2f} ms", f"{ms[len(ms) // 2]:.2f} ms", f"{ms[-1]:.2f} ms") if ms else ("—", "—", "—")),
            *((f"{base[0][1]} {base[0][0]:.2f} ms", f"{base[-1][1]} {base[-1][0]:.2f} ms") if base else ("—", "—")),
        )
    console.print(table)
    for label in sorted({e.label for p in lx.points for e in p.latency.values()}):
        console.print(f"  {label}", highlight=False, soft_wrap=True)

    effects = Table(title="What moves latency: share of log-latency variance over the samples (slowest/fastest value)")
    effects.add_column("board")
    for rank in range(3):
        effects.add_column(f"#{rank + 1}", overflow="fold")
    for target in lx.targets:
        top = lx.effects[target][:3]
        effects.add_row(target, *[f"{e.parameter} {e.share:.0%} ({e.ratio:.2f}x)" for e in top], *[""] * (3 - len(top)))
    if any(lx.effects.values()):
        console.print(effects)
    if out is not None:
        console.print(f"Page: [bold]{out}[/] (opens offline)", highlight=False, soft_wrap=True)


def explore_command(
    space: str = typer.Option(..., "--space", help="The search space: see `nasseg spaces`."),
    target: list[str] = typer.Option([], "--target", "-t", help="A board (repeat for several): see `nasseg targets`."),
    samples: int = typer.Option(
        200, "--samples", "-n", help="Random architectures beside the baselines (0: baselines only)."
    ),
    seed: int = typer.Option(0, "--seed", help="Seed of the random sampler."),
    out: Path | None = typer.Option(
        None, "--out", "-o", help="The HTML page (default landscape-<space>.html; with --json, none unless given)."
    ),
    workers: int | None = typer.Option(
        None, "--workers", help="Processes (default: the CPU count, from 64 architectures)."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print the landscape as one JSON object."),
) -> None:
    """The latency landscape of a space: params, MACs and estimated latency on each board of its baselines
    and N random architectures, without training; one self-contained HTML page."""
    with user_errors():
        if samples < 0:
            raise ConfigError(f"--samples {samples}: must be 0 or more")
        if workers is not None and workers < 1:
            raise ConfigError(f"--workers {workers}: must be 1 or more")
        chosen = load_space(space)  # bad names fail here, in one line, before the progress bar starts
        check_targets(target)
        progress = Progress(
            TextColumn("profiling"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=err_console,
            transient=True,
            disable=as_json,
        )
        with progress:
            task = progress.add_task("explore", total=None)
            landscape = explore(
                chosen,
                target,
                samples,
                seed,
                workers=workers,
                progress=lambda done, total: progress.update(task, completed=done, total=total),
            )
        path = out if out is not None else (None if as_json else Path(f"landscape-{landscape.space}.html"))
        if path is not None:
            write_landscape_html(landscape, path)
        if as_json:
            print_json({**landscape.to_dict(), "html": str(path) if path else None})
        else:
            _summary(landscape, path)


def register(app: typer.Typer) -> None:
    app.command("explore")(explore_command)
