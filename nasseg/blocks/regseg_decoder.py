"""The RegSeg three-head decoder (Gao 2021) with its kernels, widths and merge point as arguments, so both
RegSeg's own version and JetSeg's "improved RegSeg" are instances of one module.

Topology: a 1x1 ConvBNAct head on each of three encoder features (deep, mid, shallow); the heads are summed
top-down (bilinear up-sampling to each next feature's actual size) down to the merge level; a "fuse"
ConvBNAct; up-sampling to the shallow feature; concatenation with the shallow head; a "final" ConvBNAct; a
1x1 classifier with bias. Logits come out at the shallow feature's size.

- RegSeg: heads (128, 128, 8) on /16, /8, /4; merge at "mid"; fuse 3x3 -> 64; final 3x3 -> 64.
- JetSeg (official code): heads all H wide, merge at "shallow" (shallow + up(mid)), 1x1 fuse and final
  convs, and the deep head computed but discarded (``deep="discard"``).
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import nn

from nasseg.blocks.conv import ConvBNAct
from nasseg.blocks.ops import resize_like

MergeAt = Literal["mid", "shallow"]
DeepHead = Literal["fuse", "discard", "drop"]
MERGE_POINTS: tuple[str, ...] = ("mid", "shallow")
DEEP_HEAD_MODES: tuple[str, ...] = ("fuse", "discard", "drop")


class RegSegDecoder(nn.Module):
    """Three heads -> top-down sum -> fuse conv -> concat with the shallow head -> final conv -> classifier.

    ``deep``: "fuse" sums the deep head in (RegSeg); "discard" builds and runs it but ignores its output
    (JetSeg's code, which the published counts include); "drop" does not build it (two-head decoder).
    """

    def __init__(
        self,
        in_channels: tuple[int, int, int],
        head_channels: tuple[int, int, int],
        num_classes: int,
        fuse_channels: int,
        final_channels: int,
        fuse_kernel: int = 3,
        final_kernel: int = 3,
        merge_at: MergeAt = "mid",
        deep: DeepHead = "fuse",
        act: str = "relu",
    ) -> None:
        super().__init__()
        if merge_at not in MERGE_POINTS:
            raise ValueError(f"merge_at must be one of {', '.join(MERGE_POINTS)}, got {merge_at!r}")
        if deep not in DEEP_HEAD_MODES:
            raise ValueError(f"deep must be one of {', '.join(DEEP_HEAD_MODES)}, got {deep!r}")
        c_deep, c_mid, c_shallow = in_channels
        w_deep, w_mid, w_shallow = head_channels
        summed = [w_mid] + ([w_deep] if deep == "fuse" else []) + ([w_shallow] if merge_at == "shallow" else [])
        if len(set(summed)) != 1:
            raise ValueError(f"summed heads need equal widths, got {summed} (deep, mid, shallow = {head_channels})")
        self.merge_at = merge_at
        self.deep_mode = deep
        self.head_deep = ConvBNAct(c_deep, w_deep, 1, act=act) if deep != "drop" else None
        self.head_mid = ConvBNAct(c_mid, w_mid, 1, act=act)
        self.head_shallow = ConvBNAct(c_shallow, w_shallow, 1, act=act)
        self.fuse = ConvBNAct(w_mid, fuse_channels, fuse_kernel, act=act)
        self.final = ConvBNAct(fuse_channels + w_shallow, final_channels, final_kernel, act=act)
        self.classifier = nn.Conv2d(final_channels, num_classes, 1, bias=True)

    def forward(self, deep: torch.Tensor, mid: torch.Tensor, shallow: torch.Tensor) -> torch.Tensor:
        x = self.head_mid(mid)
        if self.head_deep is not None:
            d = self.head_deep(deep)
            if self.deep_mode == "fuse":
                x = x + resize_like(d, x)
        s = self.head_shallow(shallow)
        if self.merge_at == "shallow":
            x = s + resize_like(x, s)
        x = resize_like(self.fuse(x), s)
        x = self.final(torch.cat([x, s], dim=1))
        return self.classifier(x)
