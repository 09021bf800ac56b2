"""Parallel dilated pyramids on the deepest feature map: FASSD-Net's DAPF and DeepLabV3+'s ASPP.

Both are one idea (a 1x1 branch plus one dilated branch per rate, concatenated and fused by a 1x1
conv), so one module builds both and the ablation "DAPF vs ASPP" is a parameter change:

- DAPF (Rosas-Arias et al. 2022, eq. 3): branch width ``in // alpha``, dilated branches are
  asymmetric (3x1 then 1x3), no image-pooling branch, no dropout; output width = input width.
- ASPP (Chen et al. 2018): fixed branch width (256), dense dilated 3x3 branches and an
  image-pooling branch (global average -> 1x1 conv-BN-ReLU, broadcast back).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from nasseg.blocks.asymmetric import AsymmetricDilatedConv
from nasseg.blocks.conv import ConvBNAct


class ImagePooling(nn.Module):
    """Global average pool -> 1x1 conv-BN-act, broadcast to the input's size (ASPP's fifth branch)."""

    def __init__(self, in_ch: int, out_ch: int, act: str = "relu") -> None:
        super().__init__()
        self.project = ConvBNAct(in_ch, out_ch, 1, act=act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # Broadcasting the 1x1 result is what bilinear up-sampling of a 1x1 map gives, without a Resize.
        pooled = self.project(x.mean(dim=(2, 3), keepdim=True))
        return pooled.expand(-1, -1, x.shape[2], x.shape[3])


class DilatedPyramid(nn.Module):
    """1x1 branch + one dilated branch per rate (+ optional image pooling) -> concat -> 1x1 conv-BN-act."""

    def __init__(
        self,
        in_ch: int,
        branch_ch: int,
        rates: Sequence[int],
        out_ch: int | None = None,
        asymmetric: bool = True,
        image_pooling: bool = False,
        act: str = "relu",
    ) -> None:
        super().__init__()
        if branch_ch < 1 or in_ch < 1 or any(r < 1 for r in rates):
            raise ValueError(f"DilatedPyramid needs positive widths and rates, got {branch_ch=} {rates=}")
        out_ch = in_ch if out_ch is None else out_ch

        def dilated(rate: int) -> nn.Module:
            if asymmetric:
                return AsymmetricDilatedConv(in_ch, branch_ch, rate, act=act)
            return ConvBNAct(in_ch, branch_ch, 3, dilation=rate, act=act)

        branches: list[nn.Module] = [ConvBNAct(in_ch, branch_ch, 1, act=act)]
        branches += [dilated(r) for r in rates]
        if image_pooling:
            branches.append(ImagePooling(in_ch, branch_ch, act))
        self.branches = nn.ModuleList(branches)
        self.fuse = ConvBNAct(branch_ch * len(branches), out_ch, 1, act=act)
        self.out_channels = out_ch

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fuse(torch.cat([branch(x) for branch in self.branches], dim=1))


def dapf(in_ch: int, alpha: int = 2, rates: Sequence[int] = (12, 24, 36)) -> DilatedPyramid:
    """FASSD-Net's Dilated Asymmetric Pyramidal Fusion: branches of ``in_ch // alpha`` channels."""
    if alpha < 1 or in_ch // alpha < 1:
        raise ValueError(f"DAPF needs 1 <= alpha <= in_ch, got alpha={alpha} for {in_ch} channels")
    return DilatedPyramid(in_ch, in_ch // alpha, rates, asymmetric=True, image_pooling=False)


def aspp(
    in_ch: int, width: int = 256, rates: Sequence[int] = (12, 24, 36), out_ch: int | None = None
) -> DilatedPyramid:
    """DeepLabV3+ ASPP: five ``width``-channel branches (1x1, three atrous 3x3, image pooling), fused
    back to ``out_ch`` (default: the input width, so it drops in where DAPF sits)."""
    return DilatedPyramid(in_ch, width, rates, out_ch=out_ch, asymmetric=False, image_pooling=True)
