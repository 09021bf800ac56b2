"""A tiny segmentation family registered for the latency tests (the real families are tested in test_zoo).

Its forward can be told to crash, and it records how many forwards run at once, so the agent's
error handling and its one-measurement-at-a-time rule are tested on real calls.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from nasseg.latency.measure.agent import AgentSettings, make_server
from nasseg.latency.targets import get_target
from nasseg.latency.timing import TimingSettings
from nasseg.models import ArchConfig, Family, Findings, registry
from nasseg.spaces import space as space_module

# Short budgets: these tests check behaviour and provenance, never speed.
QUICK = TimingSettings(warmup_runs=1, warmup_s=0.0, min_repeats=5, max_repeats=8, max_seconds=2.0)


class Concurrency:
    lock = threading.Lock()
    active = 0
    peak = 0


class TinySeg(nn.Module):
    def __init__(self, width: int, num_classes: int, crash: bool, hold_s: float) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, width, 3, stride=2, padding=1)
        self.head = nn.Conv2d(width, num_classes, 1)
        self.crash, self.hold_s = crash, hold_s

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.crash:
            raise RuntimeError("simulated runtime failure")
        with Concurrency.lock:
            Concurrency.active += 1
            Concurrency.peak = max(Concurrency.peak, Concurrency.active)
        try:
            if self.hold_s:
                threading.Event().wait(self.hold_s)  # lets a concurrent request overlap if the agent allowed it
            return F.interpolate(
                self.head(F.relu(self.stem(x))), size=x.shape[-2:], mode="bilinear", align_corners=False
            )
        finally:
            with Concurrency.lock:
                Concurrency.active -= 1


def _build(params: Mapping[str, Any], num_classes: int) -> nn.Module:
    return TinySeg(
        int(params["width"]), num_classes, bool(params.get("crash", False)), float(params.get("hold_s", 0.0))
    )


def _check(params: Mapping[str, Any], input_hw: tuple[int, int]) -> Findings:
    return Findings(infeasible=[f"input side {side} is odd; the stem halves it" for side in input_hw if side % 2])


FAMILY = Family("tinyseg", _build, _check, doc="test-only two-layer segmentation net")


# Its space: architecture files and the agent validate a config against its family's space.
TINYSEG_SPACE = """
family: tinyseg
doc: test-only two-layer segmentation net
search_input: [32, 32]
num_classes: 5
parameters:
  width: {type: int, low: 1, high: 64}
  crash: {type: categorical, choices: [false, true]}
  hold_s: {type: float, low: 0.0, high: 1.0}
baselines: {}
"""


def tiny(width: int = 8, **params: Any) -> ArchConfig:
    return ArchConfig("tinyseg", {"width": width, "crash": False, "hold_s": 0.0, **params}, num_classes=5)


@pytest.fixture
def tinyseg(monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory) -> None:
    """Make the family buildable through nasseg.models.build, with a space beside the real ones, for
    the duration of a test."""
    monkeypatch.setitem(registry.FAMILIES, "tinyseg", FAMILY)
    spaces = tmp_path_factory.mktemp("spaces")
    for real in space_module.SPACES_DIR.glob("*.yaml"):
        (spaces / real.name).symlink_to(real.resolve())
    (spaces / "tinyseg.yaml").write_text(TINYSEG_SPACE)
    monkeypatch.setattr(space_module, "SPACES_DIR", spaces)
    Concurrency.peak = 0


@contextmanager
def serving_agent(settings: TimingSettings = QUICK) -> Iterator[str]:
    """A ``nasseg agent`` for host-cpu with the torch backend, serving on a free loopback port."""
    server = make_server("127.0.0.1", 0, AgentSettings(get_target("host-cpu"), "torch", settings))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
