"""Light attention modules JetSeg places inside its blocks: CBAM, JetSeg's SAM, and ECA.

All three only re-weight their input (same shape out as in), so any of them, or none, can sit at the
same place in a block: ``make_attention`` picks one by name.
"""

from __future__ import annotations

import math

import torch
from torch import nn

ATTENTIONS = ("cbam", "sam", "eca", "none")


def _global_avg(x: torch.Tensor) -> torch.Tensor:
    return x.mean(dim=(2, 3), keepdim=True)


def _global_max(x: torch.Tensor) -> torch.Tensor:
    return x.amax(dim=(2, 3), keepdim=True)


class ChannelGate(nn.Module):
    """CBAM's channel attention: a shared bias-free 1x1 -> ReLU -> 1x1 MLP over the global average- and
    max-pooled descriptors, summed, then a sigmoid: one weight per channel."""

    def __init__(self, channels: int, reduction: int = 8) -> None:
        super().__init__()
        hidden = max(1, channels // reduction)  # never zero-width for very thin layers
        self.mlp = nn.Sequential(
            nn.Conv2d(channels, hidden, 1, bias=False),
            nn.ReLU(inplace=True),
            nn.Conv2d(hidden, channels, 1, bias=False),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.mlp(_global_avg(x)) + self.mlp(_global_max(x)))


class SpatialGate(nn.Module):
    """CBAM's spatial attention: a bias-free k x k conv over the channel mean and max, then a sigmoid."""

    def __init__(self, kernel: int = 7) -> None:
        super().__init__()
        self.conv = nn.Conv2d(2, 1, kernel, padding=kernel // 2, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pooled = torch.cat([x.mean(dim=1, keepdim=True), x.amax(dim=1, keepdim=True)], dim=1)
        return torch.sigmoid(self.conv(pooled))


class CBAM(nn.Module):
    """Convolutional block attention (Woo et al. 2018): channel gate, then spatial gate."""

    def __init__(self, channels: int, reduction: int = 8, spatial_kernel: int = 7) -> None:
        super().__init__()
        self.channel_gate = ChannelGate(channels, reduction)
        self.spatial_gate = SpatialGate(spatial_kernel)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x * self.channel_gate(x)
        return x * self.spatial_gate(x)


class SAM(nn.Module):
    """JetSeg's "spatial attention module" (not CBAM's spatial gate): a 1x1 conv C -> 1 gives a sigmoid
    map m; the image-level scalar s = mean(m) + max(m) scales it; output x * m * s.

    One weight per input channel, so it is far cheaper than CBAM at the mid-resolution stage.
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, 1, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        m = torch.sigmoid(self.conv(x))
        return x * m * (_global_avg(m) + _global_max(m))


def eca_kernel_size(channels: int, gamma: int = 2, b: int = 1) -> int:
    """ECA's adaptive 1-D kernel: |log2(C) / gamma + b / gamma| truncated, made odd."""
    k = int(abs(math.log2(channels) / gamma + b / gamma))
    return k if k % 2 else k + 1


class ECA(nn.Module):
    """Efficient channel attention (Wang et al. 2020): global average, a bias-free 1-D conv across
    channels (kernel from ``eca_kernel_size``), sigmoid. Only k parameters, no reduction."""

    def __init__(self, channels: int, kernel: int | None = None) -> None:
        super().__init__()
        k = kernel or eca_kernel_size(channels)
        self.conv = nn.Conv1d(1, 1, k, padding=(k - 1) // 2, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c = x.shape[:2]
        y = self.conv(_global_avg(x).view(n, 1, c))
        return x * torch.sigmoid(y).view(n, c, 1, 1)


def make_attention(name: str, channels: int) -> nn.Module | None:
    """The attention module called ``name`` for ``channels`` channels; ``None`` for 'none'."""
    if name == "cbam":
        return CBAM(channels)
    if name == "sam":
        return SAM(channels)
    if name == "eca":
        return ECA(channels)
    if name == "none":
        return None
    raise ValueError(f"unknown attention {name!r}; expected one of {', '.join(ATTENTIONS)}")
