"""Helpers shared by the CLI modules: one console, one way to report errors, HxW parsing."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import typer
import yaml
from rich.console import Console

from nasseg.errors import ConfigError, NassegError
from nasseg.models import ArchConfig
from nasseg.spaces import find_baseline, load_space

console = Console()
err_console = Console(stderr=True)

# Exit codes: 0 success, 1 a check failed (e.g. a figure outside tolerance), 2 bad input.
EXIT_CHECK_FAILED = 1
EXIT_BAD_INPUT = 2


@contextmanager
def user_errors() -> Iterator[None]:
    """Turn a NassegError into one red line on stderr and exit code 2 (no traceback)."""
    try:
        yield
    except NassegError as exc:
        # soft_wrap: one line however long (paths in it stay whole when stderr is piped or captured)
        err_console.print(f"[bold red]error:[/] {exc}", highlight=False, soft_wrap=True)
        raise typer.Exit(EXIT_BAD_INPUT) from None


def parse_hw(text: str) -> tuple[int, int]:
    """'512x1024' -> (512, 1024): height first, as in the papers' tables."""
    try:
        h, w = (int(v) for v in text.lower().replace("×", "x").split("x"))
    except ValueError:
        raise typer.BadParameter(f"expected HxW such as 512x1024, got {text!r}") from None
    if h < 1 or w < 1:
        raise typer.BadParameter(f"height and width must be positive, got {text!r}")
    return h, w


def print_json(data: Any) -> None:
    """One JSON object on stdout, for scripts."""
    sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")


def load_architecture(spec: str) -> tuple[ArchConfig, tuple[int, int] | None]:
    """A baseline name or an ArchConfig file (YAML/JSON: family, num_classes, params), with its space's input."""
    path = Path(spec)
    if path.suffix.lower() in (".yaml", ".yml", ".json"):
        if not path.is_file():
            raise ConfigError(f"{path}: no such architecture file")
        try:
            data = yaml.safe_load(path.read_text())
        except yaml.YAMLError as exc:
            raise ConfigError(f"{path}: not valid YAML/JSON: {exc}") from None
        if not isinstance(data, dict):
            raise ConfigError(f"{path}: expected a mapping with family, num_classes and params")
        try:
            config = ArchConfig.from_dict(data)
        except ConfigError as exc:
            raise ConfigError(f"{path}: {exc}") from None
        try:
            return config, tuple(load_space(config.family).spec.search_input)
        except NassegError:
            return config, None
    space, name = find_baseline(spec)
    return space.baseline(name), space.baseline_input(name)
