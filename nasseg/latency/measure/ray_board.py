"""One board shared by many Ray Tune trials: a Ray actor around the agent client.

The Ray cluster declares the board as a custom resource of count 1 (``board_resources``); the
actor takes that unit, so exactly one actor per board exists, and Ray runs its calls one at a
time. Trials look the actor up by name and call ``measure``. Ray is optional: ``pip install nasseg[ray]``.
"""

from __future__ import annotations

import importlib
from typing import Any

from nasseg.errors import ConfigError
from nasseg.latency.measure.agent import AgentClient
from nasseg.latency.result import LatencyResult
from nasseg.models import ArchConfig


def board_resource(target: str) -> str:
    """The custom resource name that stands for the one board of ``target``."""
    return f"board:{target}"


def board_resources(target: str) -> dict[str, float]:
    """For ``ray.init(resources=...)`` on the node that can reach the board."""
    return {board_resource(target): 1.0}


class BoardActor:
    """Runs inside Ray: holds the client, measures on request (Ray serialises the calls)."""

    def __init__(self, url: str, client_options: dict[str, Any]) -> None:
        self.client = AgentClient(url, **client_options)

    def info(self) -> dict[str, Any]:
        return self.client.info()

    def measure(self, config: dict[str, Any], input_hw: tuple[int, int], precision: str | None = None) -> LatencyResult:
        return self.client.measure(ArchConfig.from_dict(config), (int(input_hw[0]), int(input_hw[1])), precision)


def _ray() -> Any:
    try:
        return importlib.import_module("ray")
    except ImportError:
        raise ConfigError("sharing a board between Ray trials needs Ray: pip install 'nasseg[ray]'") from None


def board_actor(url: str, target: str, **client_options: Any) -> Any:
    """The actor for ``target``'s board: created on first call, looked up by name afterwards."""
    ray = _ray()
    remote = ray.remote(BoardActor).options(
        name=f"nasseg-board-{target}",
        get_if_exists=True,
        num_cpus=0,
        max_concurrency=1,
        resources={board_resource(target): 1},
    )
    return remote.remote(url, client_options)
