"""Helpers shared by the CLI modules: one console, one way to report errors, HxW parsing."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import typer
from rich.console import Console

from nasseg.errors import ConfigError, InfrastructureFailed, NassegError, TrialFailed

console = Console()
err_console = Console(stderr=True)

# Exit codes: 0 success, 1 a check failed or the architecture could not be scored (nasseg.errors'
# TrialFailed), 2 bad input (BadInput), 3 the infrastructure failed (InfrastructureFailed).
EXIT_CHECK_FAILED = 1
EXIT_BAD_INPUT = 2
EXIT_INFRASTRUCTURE = 3


def exit_code(error: NassegError) -> int:
    """The exit code that says what ``error`` means (nasseg.errors sorts them)."""
    if isinstance(error, TrialFailed):
        return EXIT_CHECK_FAILED
    if isinstance(error, InfrastructureFailed):
        return EXIT_INFRASTRUCTURE
    return EXIT_BAD_INPUT


@contextmanager
def user_errors() -> Iterator[None]:
    """Turn a NassegError into one red line on stderr and the exit code of its meaning (no traceback)."""
    try:
        yield
    except NassegError as exc:
        # soft_wrap: one line however long (paths in it stay whole when stderr is piped or captured)
        err_console.print(f"[bold red]error:[/] {exc}", highlight=False, soft_wrap=True)
        raise typer.Exit(exit_code(exc)) from None


def parse_hw(text: str, option: str = "--input") -> tuple[int, int]:
    """'512x1024' -> (512, 1024): height first, as in the papers' tables. A bad value is a ConfigError
    naming ``option`` (one line and exit 2 under ``user_errors``)."""
    try:
        h, w = (int(v) for v in text.lower().replace("×", "x").split("x"))
    except ValueError:
        raise ConfigError(f"{option} {text!r}: expected HxW such as 512x1024") from None
    if h < 1 or w < 1:
        raise ConfigError(f"{option} {text!r}: height and width must be positive")
    return h, w


def print_json(data: Any) -> None:
    """One JSON object on stdout, for scripts."""
    sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")


def print_degenerate(notes: list[str], input_hw: tuple[int, int]) -> None:
    """One yellow line per layer ``check`` found degenerate at ``input_hw`` (it reads only zero padding
    there, yet the network is valid and the command goes on). Every command says it this way, on
    stderr, so that ``--json`` output stays one object; the notes go into that object too."""
    h, w = input_hw
    for note in notes:
        err_console.print(f"[yellow]note: degenerate at {h}x{w}:[/] {note}", highlight=False, soft_wrap=True)
