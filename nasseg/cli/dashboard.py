"""``nasseg dashboard``: one self-contained HTML page of one or more studies, or optuna-dashboard live."""

from __future__ import annotations

import time
from pathlib import Path

import optuna
import typer

from nasseg.cli.common import console, err_console, user_errors
from nasseg.errors import ConfigError
from nasseg.search.results import study_results
from nasseg.search.study import load_study, locate_study

DEFAULT_OUT = Path("dashboard.html")
SERVE_INSTALL = 'pip install optuna-dashboard (or pip install -e ".[dashboard]")'


def _serve(urls: list[str], host: str, port: int) -> None:
    """optuna-dashboard on the one storage the studies share; it blocks until Ctrl-C."""
    if len(set(urls)) > 1:
        raise ConfigError(
            f"--serve shows one storage, and these studies are in {len(set(urls))} "
            f"({', '.join(sorted(set(urls)))}): give one study, or studies stored together (--storage URL)"
        )
    try:
        from optuna_dashboard import run_server
    except ImportError:
        raise ConfigError(f"--serve needs optuna-dashboard, which is not installed: {SERVE_INSTALL}") from None
    console.print(
        f"optuna-dashboard on http://{host}:{port}/ for {urls[0]} (Ctrl-C stops it)", highlight=False, soft_wrap=True
    )
    try:
        run_server(urls[0], host=host, port=port)
    except KeyboardInterrupt:
        pass
    except OSError as exc:  # the port is taken, the host cannot be bound
        raise ConfigError(f"--serve cannot listen on {host}:{port}: {exc.strerror or exc}") from None


def dashboard_command(
    studies: list[str] = typer.Argument(
        ...,
        metavar="STUDY",
        help="Study names (stored in studies/<name>/) or study files; several are overlaid, one colour each.",
    ),
    storage: str | None = typer.Option(
        None, "--storage", help="Optuna storage URL of the studies (default: sqlite in studies/<name>/)."
    ),
    out: Path | None = typer.Option(
        None, "--out", "-o", help=f"The HTML file to write (default {DEFAULT_OUT}; with --serve, none unless given)."
    ),
    serve: bool = typer.Option(
        False,
        "--serve",
        help="Start optuna-dashboard on the studies' storage: live, during a search (pip install optuna-dashboard).",
    ),
    host: str = typer.Option("127.0.0.1", "--host", help="With --serve: the address to listen on."),
    port: int = typer.Option(8080, "--port", min=1, max=65535, help="With --serve: the port to listen on."),
) -> None:
    """Draw studies as one self-contained HTML page: the Pareto front with the baselines, latency against
    MACs and params, the history and hypervolume, parameter importances, parallel coordinates, per-class IoU."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    with user_errors():
        located = [locate_study(s, storage) for s in studies]
        opened = [load_study(name, url) for name, url in located]  # a missing study: one line naming it
        if serve:
            if out is not None:
                _write(opened, out)
            _serve([url for _, url in located], host, port)
            return
        _write(opened, out or DEFAULT_OUT)


def _write(opened: list[tuple[optuna.Study, dict]], out: Path) -> None:
    from nasseg.viz.dashboard import write_dashboard

    started = time.perf_counter()
    results = [study_results(study, settings) for study, settings in opened]
    finished = {r.study: sum(t.status is not None for t in r.trials) for r in results}
    if not any(finished.values()):
        waiting = sum(len(r.trials) for r in results)
        raise ConfigError(
            f"nothing to draw: {', '.join(finished)} {'has' if len(finished) == 1 else 'have'} no "
            f"finished trial yet ({waiting} waiting or running); run `nasseg search` first, or "
            "watch a running search with --serve"
        )
    path = write_dashboard(out, results, [study for study, _ in opened])
    for r in results:
        if not finished[r.study]:
            err_console.print(
                f"[yellow]note:[/] {r.study} has no finished trial yet: nothing of it is drawn",
                highlight=False,
                soft_wrap=True,
            )
        elif not any(t.scored for t in r.trials):
            counts = ", ".join(
                f"{n} {s}"
                for s in ("failed", "rejected", "constrained", "stopped")
                if (n := sum(t.status == s for t in r.trials))
            )
            err_console.print(
                f"[yellow]note:[/] no trial of {r.study} was trained to the end ({counts}): the page "
                "shows its trials on the strip under the Pareto plot, and why they failed",
                highlight=False,
                soft_wrap=True,
            )
    trials = sum(len(r.trials) for r in results)
    console.print(
        f"wrote {path} ({path.stat().st_size / 1e6:.1f} MB, {trials} trials of {len(results)} "
        f"{'study' if len(results) == 1 else 'studies'}, {time.perf_counter() - started:.1f} s): open it "
        "in a browser, offline",
        highlight=False,
        soft_wrap=True,
    )


def register(app: typer.Typer) -> None:
    app.command("dashboard")(dashboard_command)
