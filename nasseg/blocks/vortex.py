"""Vortex Pooling (Xie, Zhou & Wu 2018) and its efficient form from Pyramid ShuffleNet (section III-B).

Vortex Pooling refines ASPP: a branch that looks ``r`` pixels away first averages each r x r subregion
(k x k average pooling, stride 1, with k = r) so that a dilated 3x3 conv at rate r aggregates region
descriptors instead of isolated pixels; close to the pixel (r = 1) it keeps full detail. A global
average pool -> 1x1 conv branch, broadcast back to the map, adds image-level context.

``separable=False`` gives the standard module (dense 3x3 atrous convs); ``separable=True`` the
efficient one, where each atrous conv becomes a 3x3 depthwise atrous conv + 1x1 pointwise conv, which
is what cuts Pyramid ShuffleNet's parameters from 10.42 M to 2.69 M (Table IV).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from nasseg.blocks.conv import ConvBNAct, conv
from nasseg.errors import ConfigError


def check_vortex_rates(rates: Sequence[int]) -> list[str]:
    """Reasons a rate list cannot be a Vortex Pooling (odd windows keep the map size at stride 1)."""
    reasons = []
    if not rates:
        reasons.append("Vortex Pooling needs at least one rate")
    bad = [r for r in rates if int(r) < 1 or (int(r) > 1 and int(r) % 2 == 0)]
    if bad:
        reasons.append(
            f"rates {bad} are not allowed: each rate is also the average-pooling window, which must be 1 or "
            "an odd size so that stride-1 pooling keeps the map size"
        )
    return reasons


def separable_conv(in_ch: int, out_ch: int, dilation: int = 1) -> nn.Sequential:
    """3x3 depthwise (atrous) conv -> BN -> 1x1 conv -> BN -> ReLU (ShuffleNet's separable pattern)."""
    return nn.Sequential(
        conv(in_ch, in_ch, 3, dilation=dilation, groups=in_ch),
        nn.BatchNorm2d(in_ch),
        ConvBNAct(in_ch, out_ch, 1),
    )


class VortexBranch(nn.Module):
    """r x r average pooling (stride 1, padding excluded from the average) -> 3x3 atrous conv at rate r."""

    def __init__(self, in_ch: int, out_ch: int, rate: int, separable: bool) -> None:
        super().__init__()
        problems = check_vortex_rates([rate])
        if problems:
            raise ConfigError("; ".join(problems))
        # count_include_pad=False: a border pixel's subregion averages only real pixels.
        self.pool = (
            nn.AvgPool2d(rate, stride=1, padding=rate // 2, count_include_pad=False) if rate > 1 else nn.Identity()
        )
        self.conv = separable_conv(in_ch, out_ch, rate) if separable else ConvBNAct(in_ch, out_ch, 3, dilation=rate)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(self.pool(x))


class ImagePool(nn.Module):
    """Global average pool -> 1x1 conv (with bias, no BN) -> ReLU, broadcast to the input's size.

    No BN: a BN over one value per channel and image fails at batch 1 and is noisy at small batches;
    the paper only names the 1x1 conv (decision P1). Broadcasting equals bilinear up-sampling from 1x1.
    """

    def __init__(self, in_ch: int, out_ch: int) -> None:
        super().__init__()
        self.conv = conv(in_ch, out_ch, 1, bias=True)
        self.act = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pooled = self.act(self.conv(x.mean(dim=(2, 3), keepdim=True)))
        return pooled.expand(-1, -1, x.shape[2], x.shape[3])


class VortexPooling(nn.Module):
    """[image pool] + one branch per rate, concatenated, optionally projected back to ``width`` by a 1x1.

    Output channels: ``width`` with ``projection``, else ``width * (len(rates) + 1)``.
    """

    def __init__(
        self,
        in_ch: int,
        width: int = 256,
        rates: Sequence[int] = (1, 3, 9, 27),
        separable: bool = True,
        projection: bool = True,
    ) -> None:
        super().__init__()
        problems = check_vortex_rates(rates)
        if problems:
            raise ConfigError("; ".join(problems))
        self.image_pool = ImagePool(in_ch, width)
        self.branches = nn.ModuleList(VortexBranch(in_ch, width, int(r), separable) for r in rates)
        concat = width * (len(rates) + 1)
        self.project = ConvBNAct(concat, width, 1) if projection else None
        self.out_channels = width if projection else concat

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.cat([self.image_pool(x), *(branch(x) for branch in self.branches)], dim=1)
        return self.project(y) if self.project is not None else y
