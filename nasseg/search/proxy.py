"""The accuracy objective a study maximises: a trial's mIoU after its schedule, or that mIoU with a
zero-cost tie-breaker.

Two seeds of ``short`` rank architectures alike at Kendall tau 0.63 only: most of what separates two
candidates' short mIoU is noise. ``benchmarks/proxy_fidelity.py`` measured which score ranks them as a
4x longer run (two seeds) does; the winner adds to the mIoU a weight times the architecture's synflow
(``nasseg.train.zero_cost``: one float64 forward and backward of the untrained network, a few seconds)
standardised with a fixed mean and spread, those of the benchmark's architectures. Fixed, so that a
trial's score is a function of that trial alone and the scores of a study compare. The weight and the
standardisation are data below, checked against the stored benchmark by ``tests/test_benchmarks.py``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from torch import nn

from nasseg.errors import ConfigError, TrialFailed
from nasseg.train.zero_cost import synflow

Z_CLIP = 3.0  # standard deviations


@dataclass(frozen=True)
class AccuracyProxy:
    """``score = mIoU + weight * clip((zero_cost - mean) / spread, +-Z_CLIP)``; without ``zero_cost``, the mIoU."""

    name: str
    zero_cost: str | None = None
    weight: float = 0.0  # mIoU per standard deviation of the zero-cost score
    mean: float = 0.0
    spread: float = 1.0

    @property
    def id(self) -> str:
        """Everything the score depends on: stored with a study, so that scores of two definitions never mix."""
        if self.zero_cost is None:
            return self.name
        return (
            f"{self.name}: mIoU + {self.weight:g} z({self.zero_cost}; mean {self.mean:.4f}, spread {self.spread:.4f})"
        )

    def zero_cost_scores(self, model: nn.Module, train_hw: tuple[int, int]) -> dict[str, float]:
        """The zero-cost score the tie-breaker needs, of ``model`` at its initial weights (empty if none)."""
        if self.zero_cost is None:
            return {}
        return {self.zero_cost: synflow(model, train_hw)}

    def tie_breaker(self, zero_cost: dict[str, float]) -> float:
        """What the score adds to the mIoU (0 without a zero-cost score): the weight times the standardised
        score, clipped to +-Z_CLIP so that one extreme network cannot outweigh training (on the benchmark's
        architectures |z| stays under 2). A score that is not finite fails the trial."""
        if self.zero_cost is None:
            return 0.0
        value = zero_cost[self.zero_cost]
        if not math.isfinite(value):
            raise TrialFailed(f"{self.zero_cost} is {value} at initialisation: the proxy cannot score this network")
        return self.weight * float(np.clip((value - self.mean) / self.spread, -Z_CLIP, Z_CLIP))

    def score(self, miou: float | None, zero_cost: dict[str, float]) -> float | None:
        return None if miou is None else miou + self.tie_breaker(zero_cost)


PROXIES = {
    proxy.name: proxy
    for proxy in (
        AccuracyProxy("miou"),
        # From `python benchmarks/proxy_fidelity.py --report --reference-seeds 2`: the winner's weight, and
        # synflow's mean and spread over the architectures with a `short` run (at short's training input, CamVid).
        AccuracyProxy(
            "miou+synflow",
            zero_cost="synflow",
            weight=0.04,
            mean=80.6487,
            spread=29.7327,
        ),
    )
}
DEFAULT_PROXY = "miou+synflow"
LEGACY_PROXY = "miou"  # what a study stored before it recorded its proxy was scored by


def get_proxy(name: str) -> AccuracyProxy:
    try:
        return PROXIES[name]
    except KeyError:
        raise ConfigError(f"unknown accuracy proxy {name!r}; choose one of: {', '.join(PROXIES)}") from None
