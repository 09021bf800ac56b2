"""Convolution + batch-norm + activation helpers used by every family."""

from __future__ import annotations

from collections.abc import Sequence

from torch import nn

from nasseg.blocks.activations import make_act

Size2 = int | tuple[int, int]


def pair(value: Size2 | Sequence[int]) -> tuple[int, int]:
    """(h, w) from an int or a two-element sequence."""
    if isinstance(value, int):
        return value, value
    h, w = value
    return int(h), int(w)


def same_padding(kernel: Size2, dilation: Size2 = 1) -> tuple[int, int]:
    """Padding that keeps the spatial size at stride 1 for odd kernels (per axis, so 3x1 works)."""
    (kh, kw), (dh, dw) = pair(kernel), pair(dilation)
    return (kh - 1) // 2 * dh, (kw - 1) // 2 * dw


def conv(
    in_ch: int,
    out_ch: int,
    kernel: Size2 = 3,
    stride: Size2 = 1,
    dilation: Size2 = 1,
    groups: int = 1,
    bias: bool = False,
) -> nn.Conv2d:
    """A plain convolution with 'same' padding."""
    return nn.Conv2d(
        in_ch,
        out_ch,
        pair(kernel),
        stride=pair(stride),
        padding=same_padding(kernel, dilation),
        dilation=pair(dilation),
        groups=groups,
        bias=bias,
    )


class BNAct(nn.Sequential):
    """BatchNorm followed by an activation (ESPNet's BR, MDA's BNPReLU)."""

    def __init__(self, channels: int, act: str = "relu", bn_eps: float = 1e-5) -> None:
        super().__init__(nn.BatchNorm2d(channels, eps=bn_eps), make_act(act, channels))


class ConvBNAct(nn.Sequential):
    """Convolution -> BatchNorm -> activation; ``act='identity'`` gives conv-BN."""

    def __init__(
        self,
        in_ch: int,
        out_ch: int,
        kernel: Size2 = 3,
        stride: Size2 = 1,
        dilation: Size2 = 1,
        groups: int = 1,
        act: str = "relu",
        bn_eps: float = 1e-5,
        bias: bool = False,
    ) -> None:
        super().__init__(
            conv(in_ch, out_ch, kernel, stride, dilation, groups, bias),
            nn.BatchNorm2d(out_ch, eps=bn_eps),
            make_act(act, out_ch),
        )
