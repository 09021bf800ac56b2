"""Multi-resolution Dilated Asymmetric module (FASSD-Net), as the authors' code builds it.

It refines the fused decoder/skip features with a dense 3x3 branch (details) and a dilated
asymmetric branch (context) side by side, then projects back and adds its input (decision F1):

pre-activation BN-PReLU -> 3x3 conv to ``ch // 2`` -> BN-PReLU -> [3x3 conv-BN-PReLU,
asymmetric dilated pair] merged (sum in the code, concatenation in the paper) -> BN-PReLU ->
1x1 conv back to ``ch`` (no BN, no activation) -> + input. BN eps is 1e-3 and every activation is
a per-channel PReLU, unlike the ReLU used everywhere else in the network.
"""

from __future__ import annotations

import torch
from torch import nn

from nasseg.blocks.asymmetric import AsymmetricDilatedConv
from nasseg.blocks.conv import BNAct, ConvBNAct, conv

MDA_BN_EPS = 1e-3
MERGES = ("sum", "concat")


class MDA(nn.Module):
    """MDA on ``channels`` channels with dilation ``rate``; output has the input's shape."""

    def __init__(self, channels: int, rate: int, merge: str = "sum", act: str = "prelu") -> None:
        super().__init__()
        if merge not in MERGES:
            raise ValueError(f"MDA merge must be one of {MERGES}, got {merge!r}")
        inner = channels // 2
        if inner < 1 or rate < 1:
            raise ValueError(f"MDA needs at least 2 channels and rate >= 1, got {channels=} {rate=}")
        self.merge = merge
        self.pre = BNAct(channels, act, MDA_BN_EPS)
        self.reduce = ConvBNAct(channels, inner, 3, act=act, bn_eps=MDA_BN_EPS)
        self.detail = ConvBNAct(inner, inner, 3, act=act, bn_eps=MDA_BN_EPS)
        self.context = AsymmetricDilatedConv(inner, inner, rate, act=act, bn_eps=MDA_BN_EPS)
        merged = inner if merge == "sum" else 2 * inner
        self.post = BNAct(merged, act, MDA_BN_EPS)
        self.project = conv(merged, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.reduce(self.pre(x))
        a, b = self.detail(y), self.context(y)
        y = a + b if self.merge == "sum" else torch.cat([a, b], dim=1)
        return x + self.project(self.post(y))
