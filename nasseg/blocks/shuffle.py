"""ShuffleNet V2 units (Ma et al., ECCV 2018) with the pyramid depthwise option of Pyramid ShuffleNet.

A ShuffleNet V2 unit keeps half of its channels untouched and sends the other half through
1x1 conv -> depthwise conv -> 1x1 conv, then concatenates and shuffles the two halves so the next
unit mixes them. The down-sampling unit drops the split: both branches see the whole input, the left
one through a strided depthwise conv and a 1x1 conv, so the width doubles.

Pyramid ShuffleNet (paper section III-A) replaces the single 3x3 depthwise conv of the right branch by
depthwise convs of several kernel sizes on the same input ("pyramid" K = {k1..kN}) whose outputs are
combined before the following 1x1 conv. With one kernel (K = {3}) every unit here is exactly a
ShuffleNet V2 unit, so the plain network is a point of the same space.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from nasseg.blocks.conv import ConvBNAct, conv
from nasseg.blocks.ops import channel_shuffle
from nasseg.errors import ConfigError

PYRAMID_MERGES = ("hff", "concat", "sum")
PYRAMID_BNS = ("merged", "each")


def pyramid_out_channels(channels: int, kernels: Sequence[int], merge: str) -> int:
    """Width of the merged pyramid: N * channels when the outputs are concatenated, else channels."""
    return channels if merge == "sum" else channels * len(kernels)


class PyramidDepthwise(nn.Module):
    """Parallel depthwise convs (one per kernel size) on the same input, merged, then BN (no activation).

    ``merge``:
      - ``hff``: the paper's eq. (1), concat over i of (c_1 + ... + c_i): each larger kernel's output is
        added to the sum of the smaller ones before concatenation (Fig. 2), as ESPNet's HFF does;
      - ``concat``: plain concatenation of the outputs;
      - ``sum``: the outputs are added (keeps the width, the cheapest reading).
    ``bn``: ``merged`` puts one BN on the merged tensor (Fig. 1 draws DWConvs -> concat -> BN),
    ``each`` puts a BN on every depthwise output before merging (decision P3). Both have the same
    parameter count when the outputs are concatenated.
    """

    def __init__(
        self,
        channels: int,
        kernels: Sequence[int] = (3,),
        stride: int = 1,
        dilation: int = 1,
        merge: str = "hff",
        bn: str = "merged",
    ) -> None:
        super().__init__()
        kernels = [int(k) for k in kernels]
        if not kernels or any(k < 1 or k % 2 == 0 for k in kernels):
            raise ConfigError(f"pyramid kernels must be odd positive sizes, got {kernels}")
        if merge not in PYRAMID_MERGES:
            raise ConfigError(f"pyramid merge {merge!r} is unknown; allowed: {', '.join(PYRAMID_MERGES)}")
        if bn not in PYRAMID_BNS:
            raise ConfigError(f"pyramid BN placement {bn!r} is unknown; allowed: {', '.join(PYRAMID_BNS)}")
        self.merge = merge
        self.out_channels = pyramid_out_channels(channels, kernels, merge)
        self.convs = nn.ModuleList(
            conv(channels, channels, k, stride=stride, dilation=dilation, groups=channels) for k in kernels
        )
        self.bns = nn.ModuleList(nn.BatchNorm2d(channels) for _ in kernels) if bn == "each" else None
        self.bn = nn.BatchNorm2d(self.out_channels) if bn == "merged" else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        outs = [dw(x) for dw in self.convs]
        if self.bns is not None:
            outs = [bn(o) for bn, o in zip(self.bns, outs, strict=False)]
        if self.merge == "sum":
            y = torch.stack(outs).sum(0) if len(outs) > 1 else outs[0]
        elif self.merge == "hff":
            running, merged = outs[0], [outs[0]]
            for o in outs[1:]:
                running = running + o
                merged.append(running)
            y = torch.cat(merged, dim=1) if len(merged) > 1 else merged[0]
        else:
            y = torch.cat(outs, dim=1) if len(outs) > 1 else outs[0]
        return self.bn(y) if self.bn is not None else y


def _right_branch(
    in_ch: int, width: int, kernels: Sequence[int], stride: int, dilation: int, merge: str, bn: str
) -> nn.Sequential:
    """1x1 conv-BN-ReLU -> pyramid depthwise (-> BN) -> 1x1 conv-BN-ReLU, ``width`` channels wide."""
    pyramid = PyramidDepthwise(width, kernels, stride, dilation, merge, bn)
    return nn.Sequential(
        ConvBNAct(in_ch, width, 1),
        pyramid,
        ConvBNAct(pyramid.out_channels, width, 1),
    )


class ShuffleBasicUnit(nn.Module):
    """Stride-1 unit: split the channels in halves, transform one half, concat, shuffle (2 groups)."""

    def __init__(
        self,
        channels: int,
        kernels: Sequence[int] = (3,),
        dilation: int = 1,
        merge: str = "hff",
        bn: str = "merged",
    ) -> None:
        super().__init__()
        if channels % 2:
            raise ConfigError(f"a ShuffleNet V2 basic unit splits its channels in halves; got {channels}")
        half = channels // 2
        self.branch = _right_branch(half, half, kernels, 1, dilation, merge, bn)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        keep, transform = x.chunk(2, dim=1)
        return channel_shuffle(torch.cat([keep, self.branch(transform)], dim=1), 2)


class ShuffleDownUnit(nn.Module):
    """Unit without split: both branches see the whole input and each gives out/2 channels.

    ``stride`` applies to every conv with a kernel larger than 1 (paper III-A); Pyramid ShuffleNet also
    uses this unit at stride 1 to enter Stage3 without down-sampling (Table II). ``left_kernel`` is the
    left branch's depthwise kernel: 3 in ShuffleNet V2 and Fig. 1b, 1 in the paper's text (decision P2).
    """

    def __init__(
        self,
        in_ch: int,
        out_ch: int,
        stride: int = 2,
        kernels: Sequence[int] = (3,),
        left_kernel: int = 3,
        dilation: int = 1,
        merge: str = "hff",
        bn: str = "merged",
    ) -> None:
        super().__init__()
        if out_ch % 2:
            raise ConfigError(f"a ShuffleNet V2 down-sampling unit needs an even output width; got {out_ch}")
        half = out_ch // 2
        self.left = nn.Sequential(
            conv(in_ch, in_ch, left_kernel, stride=stride, dilation=dilation, groups=in_ch),
            nn.BatchNorm2d(in_ch),
            ConvBNAct(in_ch, half, 1),
        )
        self.right = _right_branch(in_ch, half, kernels, stride, dilation, merge, bn)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return channel_shuffle(torch.cat([self.left(x), self.right(x)], dim=1), 2)


def shuffle_stage(
    in_ch: int,
    out_ch: int,
    repeats: int,
    stride: int = 2,
    kernels: Sequence[int] = (3,),
    dilations: Sequence[int] = (1,),
    left_kernel: int = 3,
    merge: str = "hff",
    bn: str = "merged",
) -> nn.Sequential:
    """A down-sampling unit (at ``stride``) followed by ``repeats - 1`` basic units.

    The basic units take their dilations from ``dilations`` in turn (cycling when there are more units
    than entries, as hybrid dilated convolution repeats its rate pattern); the first unit is undilated.
    """
    if repeats < 1:
        raise ConfigError(f"a ShuffleNet V2 stage needs at least one unit; got {repeats}")
    units: list[nn.Module] = [ShuffleDownUnit(in_ch, out_ch, stride, kernels, left_kernel, 1, merge, bn)]
    for i in range(repeats - 1):
        units.append(ShuffleBasicUnit(out_ch, kernels, dilations[i % len(dilations)], merge, bn))
    return nn.Sequential(*units)
