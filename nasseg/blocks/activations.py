"""Activation functions by name, including the two JetSeg introduces (REU, TanhExp)."""

from __future__ import annotations

import torch
from torch import nn

# On a CPU, exp of an argument whose result under- or overflows (|x| > 88), and tanh of one below
# about 1e-13, take a slow path that costs 10-200x the usual time per element (benchmarks/README.md),
# and a select over mixed signs mispredicts branches. The activations below clamp their arguments
# where the result no longer changes in float32, so their latency does not depend on the values.
_EXP_FLOOR = -80.0  # x * exp(x) < 1e-32 below it
_TANH_EXP_FLOOR = -25.0  # x * tanh(exp(x)) < 1e-8 below it


class REU(nn.Module):
    """Rectified exponential unit: x for x > 0, x * exp(x) otherwise (JetSeg)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # exp(0) = 1 exactly, so one product covers both branches without a select.
        return x * torch.exp(torch.clamp(x, min=_EXP_FLOOR, max=0.0))


class TanhExp(nn.Module):
    """x * tanh(exp(x)) (described in the JetSeg paper)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.tanh(torch.exp(torch.clamp(x, min=_TANH_EXP_FLOOR, max=20.0)))


ACTIVATIONS = ("relu", "relu6", "prelu", "hardswish", "silu", "reu", "tanhexp", "identity")


def make_act(name: str, channels: int | None = None) -> nn.Module:
    """Build an activation by name; PReLU gets one slope per channel when ``channels`` is given."""
    if name == "relu":
        return nn.ReLU(inplace=True)
    if name == "relu6":
        return nn.ReLU6(inplace=True)
    if name == "prelu":
        return nn.PReLU(channels or 1)
    if name == "hardswish":
        return nn.Hardswish(inplace=True)
    if name == "silu":
        return nn.SiLU(inplace=True)
    if name == "reu":
        return REU()
    if name == "tanhexp":
        return TanhExp()
    if name == "identity":
        return nn.Identity()
    raise ValueError(f"unknown activation {name!r}; expected one of {', '.join(ACTIVATIONS)}")
