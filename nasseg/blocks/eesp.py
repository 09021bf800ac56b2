"""EESP: ESPNetv2's extremely efficient spatial pyramid of depthwise dilated convolutions.

One unit = grouped 1x1 reduce -> K parallel depthwise 3x3 branches (one dilation each) fused
hierarchically (HFF, the first branch included) -> BN+PReLU -> grouped 1x1 expand -> BN, plus a
residual. The dilation list is explicit so that both ESPNetv2's ``r_lim`` sets and EJPNet's
{4,5,6} / {6,7,8} / {1,3,6,8} are plain values; K is the length of that list.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from nasseg.blocks.activations import make_act
from nasseg.blocks.conv import BNAct, ConvBNAct, conv
from nasseg.blocks.ops import resize_to
from nasseg.errors import ConfigError

# ESPNetv2 maps an effective kernel size 3 + 2i to dilation i + 1 (3->1, 5->2, ..., 17->8).
_KSIZE_TO_DILATION = {3 + 2 * i: i + 1 for i in range(8)}


def espnetv2_dilations(r_lim: int, branches: int = 4) -> list[int]:
    """The dilation set ESPNetv2 derives from a receptive-field cap: kernel 3+2i, replaced by 3 when
    it exceeds ``r_lim``, sorted ascending (r_lim 9 -> [1,2,3,4], 7 -> [1,1,2,3], 5 -> [1,1,1,2])."""
    sizes = sorted(3 + 2 * i if 3 + 2 * i <= r_lim else 3 for i in range(branches))
    return [_KSIZE_TO_DILATION[k] for k in sizes]


def eesp_width_problems(in_ch: int, out_ch: int, branches: int, groups: int) -> list[str]:
    """Why an EESP unit in_ch -> out_ch with K branches and g groups cannot be built (empty if it can).

    out_ch splits evenly over the K branches (n = out_ch / K), and both grouped 1x1 convs need
    their input and output widths divisible by g: in_ch, n and out_ch.
    """
    problems = []
    if out_ch % branches:
        problems.append(f"width {out_ch} is not divisible by its {branches} branches")
    elif (out_ch // branches) % groups:
        problems.append(
            f"branch width {out_ch // branches} (= {out_ch}/{branches}) is not divisible by {groups} groups"
        )
    if in_ch % groups or out_ch % groups:
        problems.append(f"widths {in_ch}->{out_ch} are not divisible by {groups} groups")
    return problems


class EESP(nn.Module):
    """One EESP unit (ESPNetv2 Sec. 3.1).

    ``stride=2`` makes every depthwise branch strided and returns the expanded map without the
    residual or the final PReLU: ``EESPDownsampler`` adds its own shortcut and activation.
    """

    def __init__(self, in_ch: int, out_ch: int, dilations: Sequence[int], groups: int = 4, stride: int = 1) -> None:
        super().__init__()
        problems = eesp_width_problems(in_ch, out_ch, len(dilations), groups)
        if problems or stride not in (1, 2) or not dilations or min(dilations) < 1:
            raise ConfigError(
                f"EESP({in_ch}->{out_ch}, dilations={list(dilations)}, groups={groups}, stride={stride}): "
                + ("; ".join(problems) or "stride must be 1 or 2 and dilations positive")
            )
        branch_ch = out_ch // len(dilations)
        self.stride = stride
        self.reduce = ConvBNAct(in_ch, branch_ch, 1, groups=groups, act="prelu")
        # Ascending dilation order: HFF adds each branch to the sum of the smaller-dilation ones.
        self.branches = nn.ModuleList(
            conv(branch_ch, branch_ch, 3, stride=stride, dilation=d, groups=branch_ch) for d in sorted(dilations)
        )
        self.merge_norm = BNAct(out_ch, "prelu")
        self.expand = ConvBNAct(out_ch, out_ch, 1, groups=groups, act="identity")
        self.residual = stride == 1 and in_ch == out_ch
        self.out_act = make_act("prelu", out_ch) if stride == 1 else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        reduced = self.reduce(x)
        fused = [self.branches[0](reduced)]
        for branch in self.branches[1:]:
            fused.append(branch(reduced) + fused[-1])  # hierarchical feature fusion
        out = self.expand(self.merge_norm(torch.cat(fused, dim=1)))
        if self.residual:
            out = out + x
        return self.out_act(out)


class InputReinforcement(nn.Module):
    """ESPNetv2's input reinforcement: the image, average-pooled down to a feature map's size, through
    CBR 3x3 and conv-BN 1x1 to that map's width, so deep stages see the raw pixels again."""

    def __init__(self, image_ch: int, out_ch: int) -> None:
        super().__init__()
        self.project = nn.Sequential(
            ConvBNAct(image_ch, image_ch, 3, act="prelu"), ConvBNAct(image_ch, out_ch, 1, act="identity")
        )

    def forward(self, image: torch.Tensor, size: tuple[int, int] | torch.Size) -> torch.Tensor:
        # The strided convs and this pooling both give ceil(n / 2) per step, so pooling while
        # larger lands exactly on the feature size for any input; resize guards the rest.
        while image.shape[-2] > size[0] or image.shape[-1] > size[1]:
            image = F.avg_pool2d(image, kernel_size=3, stride=2, padding=1)
        return self.project(resize_to(image, size))


class EESPDownsampler(nn.Module):
    """ESPNetv2's strided unit: concat[avg-pool 3x3/s2 (x), strided EESP (x) -> out - in channels],
    plus input reinforcement when an image is given, then PReLU."""

    def __init__(
        self,
        in_ch: int,
        out_ch: int,
        dilations: Sequence[int],
        groups: int = 4,
        reinforce_ch: int | None = None,
    ) -> None:
        super().__init__()
        if out_ch <= in_ch:
            raise ConfigError(f"a downsampler must widen its input: got {in_ch}->{out_ch}")
        self.pool = nn.AvgPool2d(3, stride=2, padding=1)
        self.eesp = EESP(in_ch, out_ch - in_ch, dilations, groups, stride=2)
        self.reinforce = InputReinforcement(reinforce_ch, out_ch) if reinforce_ch else None
        self.act = make_act("prelu", out_ch)

    def forward(self, x: torch.Tensor, image: torch.Tensor | None = None) -> torch.Tensor:
        out = torch.cat([self.pool(x), self.eesp(x)], dim=1)
        if self.reinforce is not None:
            if image is None:
                raise ValueError("this downsampler has input reinforcement: pass the image")
            out = out + self.reinforce(image, out.shape[-2:])
        return self.act(out)
