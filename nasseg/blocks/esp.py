"""ESP: efficient spatial pyramid of dilated convolutions (ESPNet, Mehta et al. ECCV 2018).

A 1x1 (or strided 3x3) convolution *reduces* the input to ``n = out // K`` channels; ``K`` parallel
3x3 convolutions with different dilations *transform* that same tensor; hierarchical feature fusion
(HFF) adds each dilated branch to the sum of the smaller-dilation ones before they are concatenated,
which removes the gridding artefacts of large dilations at no parameter cost. The width divider ``K``
is the number of branches (``len(dilations)``), so it shrinks every branch uniformly.

The image pyramid of input reinforcement (ESPNet-C) also lives here: it is parameter-free and only
exists to feed ESP stages.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from nasseg.blocks.conv import BNAct, conv
from nasseg.blocks.ops import resize_like
from nasseg.errors import ConfigError


def esp_branch_widths(out_ch: int, branches: int) -> list[int]:
    """Output widths of the K branches: ``n = out // K`` each, the first (smallest-dilation) branch
    takes the remainder so the concat is exactly ``out_ch`` (64 -> 16,12,12,12,12 for K=5)."""
    n = out_ch // branches
    if n < 1:
        raise ConfigError(f"an ESP module of width {out_ch} cannot be split into {branches} branches (width < K)")
    return [out_ch - (branches - 1) * n] + [n] * (branches - 1)


class ESP(nn.Module):
    """Reduce -> split over K dilated 3x3 branches -> HFF -> concat -> (+ input) -> BN -> act.

    ``stride=2`` gives the strided ESP that ESPNet uses for down-sampling: the reduce step becomes a
    3x3 stride-2 convolution and there is no residual. ``reduce_kernel=3`` at stride 1 is the "C1"
    ablation of Table 2d. The reduce and branch convolutions have no BN/activation of their own; one
    BN + activation follows the merge (as in the authors' code).
    """

    def __init__(
        self,
        in_ch: int,
        out_ch: int,
        dilations: Sequence[int] = (1, 2, 4, 8, 16),
        stride: int = 1,
        reduce_kernel: int = 1,
        residual: bool = True,
        act: str = "prelu",
        bn_eps: float = 1e-3,
    ) -> None:
        super().__init__()
        if not dilations or any(int(d) < 1 for d in dilations):
            raise ConfigError(f"ESP dilations must be positive integers, got {list(dilations)}")
        widths = esp_branch_widths(out_ch, len(dilations))
        n = widths[-1]
        kernel = 3 if stride > 1 else reduce_kernel
        self.reduce = conv(in_ch, n, kernel, stride=stride)
        self.branches = nn.ModuleList(conv(n, w, 3, dilation=int(d)) for w, d in zip(widths, dilations, strict=True))
        # A residual needs matching shapes: never at stride 2 or when the width changes.
        self.residual = residual and stride == 1 and in_ch == out_ch
        self.post = BNAct(out_ch, act, bn_eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        reduced = self.reduce(x)
        first, *rest = (branch(reduced) for branch in self.branches)
        fused = [first]
        running: torch.Tensor | None = None
        for y in rest:  # HFF: the first branch stays out of the hierarchical sum (as in the code)
            running = y if running is None else running + y
            fused.append(running)
        out = torch.cat(fused, dim=1)
        if self.residual:
            out = out + x
        return self.post(out)


def strided_esp(
    in_ch: int, out_ch: int, dilations: Sequence[int] = (1, 2, 4, 8, 16), act: str = "prelu", bn_eps: float = 1e-3
) -> ESP:
    """The down-sampling ESP: 3x3 stride-2 reduce, no residual."""
    return ESP(in_ch, out_ch, dilations, stride=2, residual=False, act=act, bn_eps=bn_eps)


class ImagePyramid(nn.Module):
    """Input reinforcement: the RGB image average-pooled (3x3, stride 2, pad 1) ``levels`` times.

    Parameter-free; returns one image per level (1/2, 1/4, ...) so each can be concatenated with the
    features of the same spatial level, giving later stages a direct view of the input.
    """

    def __init__(self, levels: int) -> None:
        super().__init__()
        self.levels = levels
        self.pool = nn.AvgPool2d(3, stride=2, padding=1)

    def forward(self, image: torch.Tensor) -> list[torch.Tensor]:
        out = []
        for _ in range(self.levels):
            image = self.pool(image)
            out.append(image)
        return out


def concat_at(features: Sequence[torch.Tensor]) -> torch.Tensor:
    """Concatenate along channels, resizing every tensor to the first one's spatial size.

    With stride-2 convolutions and the pooling above the sizes already agree (both give ceil(H/2));
    the resize is a safety net that costs nothing when they do.
    """
    ref = features[0]
    return torch.cat([ref, *(resize_like(f, ref) for f in features[1:])], dim=1)
