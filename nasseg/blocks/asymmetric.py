"""Dilated asymmetric convolution: a dilated k x k conv factorised into k x 1 then 1 x k.

FASSD-Net's DAPF and MDA both use it: the factorisation halves the cost of a dilated 3x3 and adds
a non-linearity between the two 1-D convolutions (each is conv -> BN -> activation).
"""

from __future__ import annotations

from torch import nn

from nasseg.blocks.conv import ConvBNAct


class AsymmetricDilatedConv(nn.Sequential):
    """(k x 1, dilation (r, 1)) conv-BN-act -> (1 x k, dilation (1, r)) conv-BN-act, 'same' padding."""

    def __init__(
        self,
        in_ch: int,
        out_ch: int,
        rate: int,
        kernel: int = 3,
        act: str = "relu",
        bn_eps: float = 1e-5,
    ) -> None:
        super().__init__(
            ConvBNAct(in_ch, out_ch, (kernel, 1), dilation=(rate, 1), act=act, bn_eps=bn_eps),
            ConvBNAct(out_ch, out_ch, (1, kernel), dilation=(1, rate), act=act, bn_eps=bn_eps),
        )
