"""JetConv and JetBlock (JetSeg, Lopez-Montiel et al. 2023).

JetConv: depthwise convolutions (square k x k, or an asymmetric dilated k x 1 then 1 x k pair) followed by
one grouped 1x1 convolution. JetBlock: grouped 1x1 expansion -> BN -> act -> channel shuffle -> JetConv ->
attention -> act -> grouped 1x1 reduction (no BN after it). Residual JetBlocks add the identity around
*every* op, as the authors' code does, not once per block.

Kernel entries are strings: ``"3x3"``, ``"5x5"``, ``"7x7"``, ``"1x1"`` (square, dilation 1) and
``"3x1+1x3"``, ``"5x1+1x5"``, ``"7x1+1x7"`` (asymmetric pair, dilated along the long axis only, with
the dilation per kernel size given by the caller).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from typing import Literal

import torch
from torch import nn

from nasseg.blocks.activations import make_act
from nasseg.blocks.attention import make_attention
from nasseg.blocks.conv import conv
from nasseg.blocks.ops import channel_shuffle

GroupsPolicy = Literal["mean_divisor", "dense", "gcd"]
JetConvMode = Literal["sequential", "parallel"]
GROUPS_POLICIES: tuple[str, ...] = ("mean_divisor", "dense", "gcd")
JETCONV_MODES: tuple[str, ...] = ("sequential", "parallel")

_SQUARE = re.compile(r"^(\d+)x\1$")
_PAIR = re.compile(r"^(\d+)x1\+1x\1$")


def common_divisors(a: int, b: int) -> list[int]:
    return [d for d in range(1, min(a, b) + 1) if a % d == 0 and b % d == 0]


def mean_divisor_groups(a: int, b: int) -> int:
    """JetSeg's group rule: the common divisor of ``a`` and ``b`` closest to the mean of all their common
    divisors (the smaller one on a tie), e.g. (8, 16) -> 4, (16, 16) -> 8, (48, 48) -> 12, (64, 64) -> 16.
    It keeps 1x1 convs well below dense cost without going fully depthwise."""
    divisors = common_divisors(a, b)
    mean = sum(divisors) / len(divisors)
    return min(divisors, key=lambda d: (abs(d - mean), d))


def group_count(policy: str, a: int, b: int) -> int:
    """Groups of a 1x1 conv between ``a`` and ``b`` channels under a policy (always divides both)."""
    if policy == "mean_divisor":
        return mean_divisor_groups(a, b)
    if policy == "dense":
        return 1
    if policy == "gcd":
        return math.gcd(a, b)
    raise ValueError(f"unknown groups policy {policy!r}; expected one of {', '.join(GROUPS_POLICIES)}")


def parse_kernel(entry: str) -> tuple[Literal["square", "pair"], int]:
    """``"5x5"`` -> ("square", 5); ``"5x1+1x5"`` -> ("pair", 5); anything else raises ValueError."""
    text = entry.replace(" ", "").lower()
    for kind, pattern in (("square", _SQUARE), ("pair", _PAIR)):
        match = pattern.match(text)
        if match and int(match.group(1)) % 2 == 1:
            return kind, int(match.group(1))  # type: ignore[return-value]
    raise ValueError(f"kernel {entry!r} is not 'kxk' or 'kx1+1xk' with an odd k (e.g. '3x3', '5x1+1x5')")


def depthwise_ops(channels: int, entry: str, pair_dilation: Mapping[int, int]) -> list[nn.Conv2d]:
    """The depthwise conv(s) of one kernel entry: one square conv, or a k x 1 then a 1 x k conv, each
    dilated along its long axis by ``pair_dilation[k]`` (default 1) with 'same' padding."""
    kind, k = parse_kernel(entry)
    if kind == "square":
        return [conv(channels, channels, k, groups=channels)]
    d = int(pair_dilation.get(k, 1))
    return [
        conv(channels, channels, (k, 1), dilation=(d, 1), groups=channels),
        conv(channels, channels, (1, k), dilation=(1, d), groups=channels),
    ]


class JetConv(nn.Module):
    """Depthwise kernels then a grouped 1x1 conv (``in_ch -> out_ch``, stride on the 1x1).

    ``mode="sequential"`` chains every depthwise conv in list order (the authors' code);
    ``mode="parallel"`` runs each kernel entry as its own branch on the input and concatenates the
    branches before the 1x1 conv (the paper's CDDConv branches, Fig. 2). ``residual`` adds the input to
    the output (needs ``in_ch == out_ch`` and stride 1).
    """

    def __init__(
        self,
        in_ch: int,
        out_ch: int,
        kernels: Sequence[str],
        stride: int = 1,
        residual: bool = False,
        mode: JetConvMode = "sequential",
        pair_dilation: Mapping[int, int] | None = None,
        groups_policy: GroupsPolicy = "mean_divisor",
    ) -> None:
        super().__init__()
        if not kernels:
            raise ValueError("a JetConv needs at least one kernel entry")
        if residual and (in_ch != out_ch or stride != 1):
            raise ValueError(f"a residual JetConv needs in == out and stride 1, got {in_ch}->{out_ch} s{stride}")
        if mode not in JETCONV_MODES:
            raise ValueError(f"unknown JetConv mode {mode!r}; expected one of {', '.join(JETCONV_MODES)}")
        dilation = dict(pair_dilation or {})
        self.mode = mode
        self.residual = residual
        branches = [nn.Sequential(*depthwise_ops(in_ch, entry, dilation)) for entry in kernels]
        if mode == "sequential":
            self.depthwise = nn.Sequential(*branches)
            pw_in = in_ch
        else:
            self.branches = nn.ModuleList(branches)
            pw_in = in_ch * len(branches)
        self.pointwise = conv(pw_in, out_ch, 1, stride=stride, groups=group_count(groups_policy, pw_in, out_ch))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.mode == "sequential":
            y = self.depthwise(x)
        else:
            y = torch.cat([branch(x) for branch in self.branches], dim=1)
        y = self.pointwise(y)
        return y + x if self.residual else y


def _act(name: str, channels: int) -> nn.Module:
    """An activation that never works in place: residual JetBlocks still need each op's input."""
    act = make_act(name, channels)
    if hasattr(act, "inplace"):
        setattr(act, "inplace", False)  # noqa: B010 (nn.Module attributes are not typed)
    return act


class ChannelShuffle(nn.Module):
    """ShuffleNet's channel shuffle as a layer, so grouped 1x1 convs in a row see each other's groups."""

    def __init__(self, groups: int) -> None:
        super().__init__()
        self.groups = groups

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return channel_shuffle(x, self.groups)


class JetInputBlock(nn.Sequential):
    """JetSeg's first block: JetConv(3 -> out, depthwise at full resolution, stride on its 1x1) -> BN -> act."""

    def __init__(
        self,
        in_ch: int,
        out_ch: int,
        kernels: Sequence[str],
        stride: int = 2,
        act: str = "reu",
        mode: JetConvMode = "sequential",
        pair_dilation: Mapping[int, int] | None = None,
        groups_policy: GroupsPolicy = "mean_divisor",
    ) -> None:
        super().__init__(
            JetConv(in_ch, out_ch, kernels, stride, False, mode, pair_dilation, groups_policy),
            nn.BatchNorm2d(out_ch),
            _act(act, out_ch),
        )


class JetBlock(nn.Module):
    """Expand (grouped 1x1, stride here) -> BN -> act -> shuffle -> JetConv -> attention -> act -> grouped
    1x1 reduce. A residual block (in == exp == out, stride 1) adds each op's input to its output, and its
    JetConv adds its own input too, as the authors' code does."""

    def __init__(
        self,
        in_ch: int,
        exp_ch: int,
        out_ch: int,
        kernels: Sequence[str],
        stride: int = 1,
        residual: bool = False,
        attention: str = "none",
        act: str = "reu",
        mode: JetConvMode = "sequential",
        pair_dilation: Mapping[int, int] | None = None,
        groups_policy: GroupsPolicy = "mean_divisor",
    ) -> None:
        super().__init__()
        if residual and not (in_ch == exp_ch == out_ch and stride == 1):
            raise ValueError(
                f"a residual JetBlock needs in == exp == out and stride 1, got {in_ch}->{exp_ch}->{out_ch} s{stride}"
            )
        self.residual = residual
        expand_groups = group_count(groups_policy, in_ch, exp_ch)
        ops: list[nn.Module] = [
            conv(in_ch, exp_ch, 1, stride=stride, groups=expand_groups),
            nn.BatchNorm2d(exp_ch),
            _act(act, exp_ch),
        ]
        if expand_groups > 1:  # shuffling one group is the identity: no op (and no doubled residual)
            ops.append(ChannelShuffle(expand_groups))
        ops.append(JetConv(exp_ch, exp_ch, kernels, 1, residual, mode, pair_dilation, groups_policy))
        gate = make_attention(attention, exp_ch)
        if gate is not None:
            ops.append(gate)
        ops += [_act(act, exp_ch), conv(exp_ch, out_ch, 1, groups=group_count(groups_policy, exp_ch, out_ch))]
        self.ops = nn.ModuleList(ops)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for op in self.ops:
            x = op(x) + x if self.residual else op(x)
        return x
