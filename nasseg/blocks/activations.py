"""Activation functions by name, including the two JetSeg introduces (REU, TanhExp)."""

from __future__ import annotations

import torch
from torch import nn


class REU(nn.Module):
    """Rectified exponential unit: x for x > 0, x * exp(x) otherwise (JetSeg)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # exp of the clamped value keeps the unused branch finite for large positive x.
        return torch.where(x > 0, x, x * torch.exp(torch.clamp(x, max=0.0)))


class TanhExp(nn.Module):
    """x * tanh(exp(x)) (described in the JetSeg paper)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.tanh(torch.exp(torch.clamp(x, max=20.0)))


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
