"""The micro-benchmark suite `nasseg calibrate` measures: small networks that each stress one op class.

Every case starts with a 1x1 convolution from the 3-channel image (so any backend can run it as
an ordinary network) and then repeats one kind of layer. Cases come in a shallow and a deep
version so a fit can tell per-layer overhead from per-byte and per-FLOP cost.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn
from torch.nn import functional as F

from nasseg.blocks.ops import channel_shuffle

Case = tuple[str, nn.Module, tuple[int, int]]


class _Stack(nn.Module):
    """1x1 stem to ``channels``, then ``depth`` applications of ``make_layer(channels)``."""

    def __init__(self, channels: int, depth: int, make_layer: Callable[[int], nn.Module]) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, channels, 1)
        self.layers = nn.Sequential(*(make_layer(channels) for _ in range(depth)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(self.stem(x))


class _Lambda(nn.Module):
    def __init__(self, fn: Callable[[torch.Tensor], torch.Tensor]) -> None:
        super().__init__()
        self.fn = fn

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fn(x)


class _Concat(nn.Module):
    """Concatenate a half-width 1x1 projection with the input's first half: channels are kept."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.proj = nn.Conv2d(channels, channels - channels // 2, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([x[:, : x.shape[1] // 2], self.proj(x)], 1)


class _ResizeDownUp(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        small = F.interpolate(x, scale_factor=0.5, mode="bilinear", align_corners=False)
        return F.interpolate(small, size=x.shape[-2:], mode="bilinear", align_corners=False)


class _Attention(nn.Module):
    """Single-head self-attention over the pixels (as in attention-based decoders)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.qkv = nn.Linear(channels, 3 * channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.shape
        tokens = x.flatten(2).transpose(1, 2)
        q, k, v = self.qkv(tokens).chunk(3, dim=-1)
        out = F.scaled_dot_product_attention(q, k, v)
        return out.transpose(1, 2).reshape(n, c, h, w)


def _layers() -> dict[str, Callable[[int], nn.Module]]:
    return {
        "conv3x3": lambda c: nn.Conv2d(c, c, 3, padding=1),
        "conv1x1": lambda c: nn.Conv2d(c, c, 1),
        "conv3x3_dilated2": lambda c: nn.Conv2d(c, c, 3, padding=2, dilation=2),
        "conv3x3_dilated4": lambda c: nn.Conv2d(c, c, 3, padding=4, dilation=4),
        "conv3x1": lambda c: nn.Conv2d(c, c, (3, 1), padding=(1, 0)),
        "depthwise3x3": lambda c: nn.Conv2d(c, c, 3, padding=1, groups=c),
        "depthwise5x5": lambda c: nn.Conv2d(c, c, 5, padding=2, groups=c),
        "grouped3x3_g4": lambda c: nn.Conv2d(c, c, 3, padding=1, groups=4),
        "deconv_up_down": lambda c: nn.Sequential(nn.ConvTranspose2d(c, c, 2, stride=2), nn.Conv2d(c, c, 2, stride=2)),
        "bn_relu": lambda c: nn.Sequential(nn.BatchNorm2d(c), nn.ReLU()),
        "add_mul": lambda c: _Lambda(lambda x: x * 0.5 + x),
        "maxpool3x3": lambda c: nn.MaxPool2d(3, 1, 1),
        "avgpool3x3": lambda c: nn.AvgPool2d(3, 1, 1),
        "global_pool_scale": lambda c: _Lambda(lambda x: x * x.mean((2, 3), keepdim=True)),
        "softmax_channels": lambda c: _Lambda(lambda x: torch.softmax(x, 1)),
        "resize_bilinear": lambda c: _ResizeDownUp(),
        "concat": _Concat,
        "channel_shuffle": lambda c: _Lambda(lambda x: channel_shuffle(x, 2)),
        "attention": _Attention,
    }


def suite(input_hw: tuple[int, int] = (64, 64), channels: int = 32, depths: tuple[int, ...] = (1, 4)) -> list[Case]:
    """Every micro-benchmark at one size: one case per layer kind and depth.

    A board gets larger sizes than the host (`nasseg calibrate --input`); attention runs at a
    quarter of the pixels, since its cost grows with their square.
    """
    cases: list[Case] = []
    for name, make in _layers().items():
        hw = (max(1, input_hw[0] // 2), max(1, input_hw[1] // 2)) if name == "attention" else input_hw
        for depth in depths:
            cases.append((f"{name}x{depth}@{hw[0]}x{hw[1]}c{channels}", _Stack(channels, depth, make), hw))
    return cases
