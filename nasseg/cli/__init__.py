"""The ``nasseg`` command line: typer commands grouped by feature, one module each."""

from __future__ import annotations

import typer

from nasseg.cli import dashboard, explore, latency, search, train, zoo

app = typer.Typer(
    name="nasseg",
    help="Hardware-aware design-space exploration for real-time semantic segmentation on NVIDIA Jetson boards.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

for module in (search, zoo, train, latency, dashboard, explore):
    module.register(app)
