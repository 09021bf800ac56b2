"""EdgeNets' decoder blocks for the ESPNetv2 segmentation head.

``EfficientPyrPool`` (EPP) projects to a few channels and looks at them at several scales with one
depthwise 3x3 each; ``EfficientPWConv`` (EFT) brings an encoder skip to the decoder's width with a
grouped 3x3 gated by a global-context sigmoid.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from nasseg.blocks.conv import BNAct, ConvBNAct, conv
from nasseg.blocks.ops import channel_shuffle, resize_to


def _adaptive_avg_pool_axis(x: torch.Tensor, out_size: int, dim: int) -> torch.Tensor:
    """Adaptive average pooling along one spatial axis (``dim`` = -2 or -1).

    Window i is [floor(i*n/o), ceil((i+1)*n/o)); every window has length k or k+1. So pool with
    both lengths at stride 1 and pick each window's start from the right one: only AveragePool,
    Gather and Where, which the ONNX exporter takes at any size ratio.
    """
    n = int(x.shape[dim])  # a constant when traced: the windows are fixed per input size
    if n == out_size:
        return x
    starts = [i * n // out_size for i in range(out_size)]
    lengths = [-((-(i + 1) * n) // out_size) - s for i, s in enumerate(starts)]

    def pooled(length: int) -> torch.Tensor:
        k = (length, 1) if dim == -2 else (1, length)
        # Clamped starts only occur where the other window length is the one picked.
        index = torch.tensor([min(s, n - length) for s in starts], device=x.device)
        return F.avg_pool2d(x, kernel_size=k, stride=1).index_select(dim, index)

    short = min(lengths)
    out = pooled(short)
    if max(lengths) != short:
        longer = torch.tensor([length != short for length in lengths], device=x.device)
        longer = longer.view(-1, 1) if dim == -2 else longer.view(1, -1)
        out = torch.where(longer, pooled(short + 1), out)
    return out


def adaptive_avg_pool2d(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """``F.adaptive_avg_pool2d`` with the same windows, exportable to ONNX when the output size
    does not divide the input (average pooling is separable: rows, then columns)."""
    h, w = int(x.shape[-2]), int(x.shape[-1])
    if h % size[0] == 0 and w % size[1] == 0:  # the same windows as one plain average pool
        kernel = (h // size[0], w // size[1])
        return F.avg_pool2d(x, kernel, stride=kernel)
    return _adaptive_avg_pool_axis(_adaptive_avg_pool_axis(x, size[0], -2), size[1], -1)


class EfficientPyrPool(nn.Module):
    """EPP: CBR 1x1 to ``proj_ch``; per scale s a depthwise 3x3 at ceil(s*size) (at least 5 per
    side), brought back to the map's size; BN+PReLU, channel shuffle, grouped 3x3 CBR back to
    ``proj_ch``, 1x1 to ``out_ch`` and, except in the last decoder stage, BN+PReLU."""

    def __init__(
        self,
        in_ch: int,
        proj_ch: int,
        out_ch: int,
        scales: Sequence[float] = (2.0, 1.5, 1.0, 0.5, 0.1),
        last: bool = False,
        align_corners: bool = True,
    ) -> None:
        super().__init__()
        self.scales = sorted(scales, reverse=True)
        self.align_corners = align_corners
        self.project = ConvBNAct(in_ch, proj_ch, 1, act="prelu")
        self.stages = nn.ModuleList(conv(proj_ch, proj_ch, 3, groups=proj_ch) for _ in self.scales)
        n = len(self.scales)
        self.merge_norm = BNAct(proj_ch * n, "prelu")  # one BN over all scales instead of n small ones
        self.merge = ConvBNAct(proj_ch * n, proj_ch, 3, groups=proj_ch, act="prelu")
        # The last stage emits logits: a bias and no BN+PReLU after it.
        self.classify = conv(proj_ch, out_ch, 1, bias=last)
        self.out_norm = nn.Identity() if last else BNAct(out_ch, "prelu")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.project(x)
        h, w = int(x.shape[-2]), int(x.shape[-1])
        outs = []
        for scale, stage in zip(self.scales, self.stages, strict=False):
            size = (max(5, math.ceil(h * scale)), max(5, math.ceil(w * scale)))
            if scale < 1.0:
                y = resize_to(stage(adaptive_avg_pool2d(x, size)), (h, w), self.align_corners)
            elif scale > 1.0:
                y = adaptive_avg_pool2d(stage(resize_to(x, size, self.align_corners)), (h, w))
            else:
                y = stage(x)
            outs.append(y)
        y = channel_shuffle(self.merge_norm(torch.cat(outs, dim=1)), len(self.scales))
        return self.out_norm(self.classify(self.merge(y)))


class EfficientPWConv(nn.Module):
    """EFT: grouped 3x3 CBR in_ch -> out_ch (groups = gcd of the widths), scaled per channel by a
    sigmoid gate computed from the globally pooled input."""

    def __init__(self, in_ch: int, out_ch: int) -> None:
        super().__init__()
        self.gate = conv(in_ch, out_ch, 1)
        self.value = ConvBNAct(in_ch, out_ch, 3, groups=math.gcd(in_ch, out_ch), act="prelu")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate = torch.sigmoid(self.gate(x.mean(dim=(2, 3), keepdim=True)))
        return self.value(x) * gate
