"""Joint Pyramid Upsampling (FastFCN, Wu et al. 2019).

JPU replaces a dilated backbone: it takes three maps of an ordinary (strided) backbone, brings
them to the finest one's size, and mixes them with parallel dilated separable convolutions, so
the head gets stride-8 features at the cost of a few cheap layers.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from nasseg.blocks.conv import ConvBNAct, conv
from nasseg.blocks.ops import resize_to


class SeparableConvBNAct(nn.Sequential):
    """Depthwise dilated 3x3 -> BN -> pointwise 1x1 -> BN -> activation (FastFCN's SeparableConv2d
    followed by BN+ReLU; there is no activation between the depthwise and the pointwise conv)."""

    def __init__(self, in_ch: int, out_ch: int, dilation: int = 1, act: str = "relu") -> None:
        super().__init__(
            conv(in_ch, in_ch, 3, dilation=dilation, groups=in_ch),
            nn.BatchNorm2d(in_ch),
            ConvBNAct(in_ch, out_ch, 1, act=act),
        )


class JPU(nn.Module):
    """FastFCN's JPU on (fine, middle, coarse) maps.

    Each input gets a 3x3 CBR to ``width``; the middle and coarse ones are resized to the fine
    map's size (to its actual size, so any input size works) and concatenated coarse-first as in
    FastFCN; then one separable branch per dilation, concatenated: ``len(dilations) * width``
    channels at the fine map's stride.
    """

    def __init__(
        self,
        in_channels: Sequence[int],
        width: int,
        dilations: Sequence[int] = (1, 2, 4, 8),
        act: str = "relu",
        align_corners: bool = True,
    ) -> None:
        super().__init__()
        self.inputs = nn.ModuleList(ConvBNAct(c, width, 3, act=act) for c in in_channels)
        mixed = width * len(in_channels)
        self.branches = nn.ModuleList(SeparableConvBNAct(mixed, width, d, act) for d in dilations)
        self.align_corners = align_corners
        self.out_channels = width * len(dilations)

    def forward(self, *features: torch.Tensor) -> torch.Tensor:
        size = features[0].shape[-2:]
        projected = [
            resize_to(layer(f), size, self.align_corners) for layer, f in zip(self.inputs, features, strict=False)
        ]
        mixed = torch.cat(projected[::-1], dim=1)  # FastFCN order: coarsest first
        return torch.cat([branch(mixed) for branch in self.branches], dim=1)
