"""Parameter-free tensor operations shared by several families."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def resize_to(x: torch.Tensor, size: tuple[int, int] | torch.Size, align_corners: bool = False) -> torch.Tensor:
    """Bilinear resize of ``x`` to ``size`` (h, w); a no-op when it already has that size."""
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    return F.interpolate(x, size=tuple(size), mode="bilinear", align_corners=align_corners)


def resize_like(x: torch.Tensor, ref: torch.Tensor, align_corners: bool = False) -> torch.Tensor:
    """Bilinear resize of ``x`` to the spatial size of ``ref``."""
    return resize_to(x, ref.shape[-2:], align_corners)


def channel_shuffle(x: torch.Tensor, groups: int) -> torch.Tensor:
    """ShuffleNet channel shuffle: interleave the channels of ``groups`` equal groups."""
    if groups == 1:
        return x
    n, c, h, w = x.shape
    return x.view(n, groups, c // groups, h, w).transpose(1, 2).reshape(n, c, h, w)


def conv_out_size(size: int, kernel: int = 3, stride: int = 1, padding: int | None = None, dilation: int = 1) -> int:
    """Output extent of a convolution or pooling layer along one axis (floor mode)."""
    if padding is None:
        padding = (kernel - 1) // 2 * dilation
    return (size + 2 * padding - dilation * (kernel - 1) - 1) // stride + 1
