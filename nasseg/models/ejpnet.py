"""EJPNet family: an ESPNetv2 (EESP) encoder with either a FastFCN JPU decoder (EJPNet) or the
EdgeNets ESPNetv2 segmentation head.

Encoder levels (output stride in brackets), as in ESPNetv2:
  [PC 1x1 3 -> pc_channels] -> level1 CBR 3x3/s2 (dilation ``cbr_dilation``) [2]
  -> level2 downsampler [4] -> level3 downsampler + ``eesp1_repeats`` EESP(``eesp1_dilations``) [8]
  -> level4 downsampler + ``eesp2_repeats`` EESP(``eesp2_dilations``) [16]
  -> (JPU decoder only) level5 downsampler + ``eesp3_repeats`` EESP(``eesp3_dilations``) [32].
Widths follow ESPNetv2's rule for ``width_scale``. The JPU reads levels 3, 4, 5 (EJPNet's three
EESP outputs E5, E9, E12); the ESPNetv2 head reads levels 1-4.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from nasseg.blocks.conv import BNAct, ConvBNAct, conv
from nasseg.blocks.eesp import EESP, EESPDownsampler, eesp_width_problems, espnetv2_dilations
from nasseg.blocks.efficient_pyramid_pool import EfficientPWConv, EfficientPyrPool
from nasseg.blocks.jpu import JPU
from nasseg.blocks.ops import conv_out_size, resize_to
from nasseg.errors import ConfigError
from nasseg.models.registry import Findings, register_family

DECODERS = ("jpu", "espnetv2_head")
JPU_HEADS = ("fcn", "conv3x3")
UPSAMPLING = ("bilinear", "nearest")
# ESPNetv2's receptive-field caps of the strided units of levels 2..5 (branch count fixed at 4).
DOWNSAMPLER_R_LIM = (13, 11, 9, 7)
DOWNSAMPLER_BRANCHES = 4


def espnetv2_widths(scale: float) -> list[int]:
    """ESPNetv2's channel rule: base = ceil(int(32 s) / 4) * 4, c0 = min(32, base), c_i = base * 2^i
    (s=1: 32, 64, 128, 256, 512)."""
    base = math.ceil(int(32 * scale) / 4) * 4
    return [min(32, base)] + [base * 2**i for i in range(1, 5)]


@dataclass(frozen=True)
class EJPNetSpec:
    """The family's parameter values, parsed and with defaults for inactive ones."""

    decoder: str
    pc_channels: int | None
    input_reinforcement: bool
    ir_source: str
    cbr_dilation: int
    width_scale: float
    eesp_groups: int
    stage_dilations: tuple[tuple[int, ...], ...]  # levels 3, 4[, 5]
    stage_repeats: tuple[int, ...]
    jpu_width: int = 0
    jpu_dilations: tuple[int, ...] = ()
    jpu_head: str = "fcn"
    dropout: float = 0.0
    head_base: int = 16
    final_upsample: str = "bilinear"

    @property
    def widths(self) -> list[int]:
        return espnetv2_widths(self.width_scale)[: 2 + len(self.stage_dilations)]

    @property
    def image_channels(self) -> int:
        return self.pc_channels or 3

    @property
    def reinforce_channels(self) -> int | None:
        """Channels of the image fed to input reinforcement (None: no reinforcement)."""
        if not self.input_reinforcement:
            return None
        return self.pc_channels if (self.pc_channels and self.ir_source == "pc") else 3

    @classmethod
    def parse(cls, params: Mapping[str, Any]) -> EJPNetSpec:
        def get(name: str, default: Any = ...) -> Any:
            if name in params:
                return params[name]
            if default is ...:
                raise ConfigError(f"ejpnet: parameter {name!r} is missing")
            return default

        decoder = get("decoder")
        if decoder not in DECODERS:
            raise ConfigError(f"ejpnet: decoder={decoder!r} is not allowed; decoder is one of {', '.join(DECODERS)}")
        pc = get("pc_channels", "none")
        if pc not in ("none", None) and (not isinstance(pc, int) or pc < 1):
            raise ConfigError(f"ejpnet: pc_channels={pc!r} is not allowed; pc_channels is 'none' or a positive integer")
        levels = 3 if decoder == "jpu" else 2
        dilations = tuple(tuple(int(d) for d in get(f"eesp{i}_dilations")) for i in range(1, levels + 1))
        repeats = tuple(int(get(f"eesp{i}_repeats")) for i in range(1, levels + 1))
        for i, (dil, rep) in enumerate(zip(dilations, repeats), start=1):
            if not dil or min(dil) < 1:
                raise ConfigError(f"ejpnet: eesp{i}_dilations={list(dil)} is not allowed; it needs dilations >= 1")
            if rep < 0:
                raise ConfigError(f"ejpnet: eesp{i}_repeats={rep} is not allowed; it must be >= 0")
        spec = cls(
            decoder=decoder,
            pc_channels=None if pc in ("none", None) else int(pc),
            input_reinforcement=bool(get("input_reinforcement", True)),
            ir_source=get("ir_source", "image"),
            cbr_dilation=int(get("cbr_dilation", 1)),
            width_scale=float(get("width_scale")),
            eesp_groups=int(get("eesp_groups", 4)),
            stage_dilations=dilations,
            stage_repeats=repeats,
            jpu_width=int(get("jpu_width")) if decoder == "jpu" else 0,
            jpu_dilations=tuple(int(d) for d in get("jpu_dilations")) if decoder == "jpu" else (),
            jpu_head=get("jpu_head", "fcn"),
            dropout=float(get("dropout", 0.0)),
            head_base=int(get("head_base", 16)),
            final_upsample=get("final_upsample", "bilinear"),
        )
        if spec.jpu_head not in JPU_HEADS:
            raise ConfigError(
                f"ejpnet: jpu_head={spec.jpu_head!r} is not allowed; jpu_head is one of {', '.join(JPU_HEADS)}"
            )
        if spec.final_upsample not in UPSAMPLING:
            raise ConfigError(
                f"ejpnet: final_upsample={spec.final_upsample!r} is not allowed; it is one of {', '.join(UPSAMPLING)}"
            )
        if spec.ir_source not in ("image", "pc"):
            raise ConfigError(f"ejpnet: ir_source={spec.ir_source!r} is not allowed; ir_source is image or pc")
        if spec.cbr_dilation < 1 or spec.eesp_groups < 1 or spec.width_scale <= 0:
            raise ConfigError("ejpnet: cbr_dilation and eesp_groups must be >= 1 and width_scale > 0")
        if decoder == "jpu" and (spec.jpu_width < 1 or not spec.jpu_dilations or min(spec.jpu_dilations) < 1):
            raise ConfigError("ejpnet: jpu_width must be >= 1 and jpu_dilations non-empty with dilations >= 1")
        if not 0.0 <= spec.dropout < 1.0:
            raise ConfigError(f"ejpnet: dropout={spec.dropout} is not allowed; it must be in [0, 1)")
        return spec


class EESPEncoder(nn.Module):
    """ESPNetv2's encoder (levels 1-4, plus level 5 when ``stage_dilations`` has three sets),
    optionally behind EJPNet's 1x1 "PC" colour projection. Returns every level's output."""

    def __init__(self, spec: EJPNetSpec) -> None:
        super().__init__()
        widths = spec.widths
        self.pc = conv(3, spec.pc_channels, 1, bias=True) if spec.pc_channels else None
        self.reinforce_from_pc = spec.reinforce_channels == spec.pc_channels and spec.pc_channels is not None
        self.level1 = ConvBNAct(spec.image_channels, widths[0], 3, stride=2, dilation=spec.cbr_dilation, act="prelu")
        self.downsamplers = nn.ModuleList()
        self.stages = nn.ModuleList()
        # Level 2 is a downsampler only; levels 3.. each have a downsampler and EESP repeats.
        stage_dilations: list[Sequence[int]] = [()] + list(spec.stage_dilations)
        stage_repeats = [0] + list(spec.stage_repeats)
        for level, (dilations, repeats) in enumerate(zip(stage_dilations, stage_repeats)):
            c_in, c_out = widths[level], widths[level + 1]
            down_dilations = espnetv2_dilations(DOWNSAMPLER_R_LIM[level], DOWNSAMPLER_BRANCHES)
            self.downsamplers.append(
                EESPDownsampler(c_in, c_out, down_dilations, spec.eesp_groups, spec.reinforce_channels)
            )
            self.stages.append(
                nn.Sequential(*(EESP(c_out, c_out, dilations, spec.eesp_groups) for _ in range(repeats)))
            )
        self.out_channels = widths

    def forward(self, rgb: torch.Tensor) -> list[torch.Tensor]:
        # EJPNet: RGB combined into pc_channels learned "colour" channels
        x = self.pc(rgb) if self.pc is not None else rgb
        image = x if self.reinforce_from_pc else rgb  # what input reinforcement sees (ir_source)
        feats = [self.level1(x)]
        for down, stage in zip(self.downsamplers, self.stages):
            feats.append(stage(down(feats[-1], image if down.reinforce is not None else None)))
        return feats


class JPUDecoder(nn.Module):
    """JPU on levels 3-5, then the classifier: ``fcn`` = FastFCN's head (CBR 3x3 to the JPU width,
    dropout, 1x1 to classes); ``conv3x3`` = the paper's single 3x3 conv to classes after dropout."""

    def __init__(self, in_channels: Sequence[int], spec: EJPNetSpec, num_classes: int) -> None:
        super().__init__()
        self.jpu = JPU(in_channels, spec.jpu_width, spec.jpu_dilations)
        mixed = self.jpu.out_channels
        if spec.jpu_head == "fcn":
            self.classifier = nn.Sequential(
                ConvBNAct(mixed, spec.jpu_width, 3, act="prelu"),
                nn.Dropout2d(spec.dropout),
                conv(spec.jpu_width, num_classes, 1, bias=True),
            )
        else:
            self.classifier = nn.Sequential(nn.Dropout2d(spec.dropout), conv(mixed, num_classes, 3, bias=True))

    def forward(self, feats: Sequence[torch.Tensor]) -> torch.Tensor:
        return self.classifier(self.jpu(*feats[-3:]))


class ESPNetv2Head(nn.Module):
    """EdgeNets' ESPNetv2 segmentation head: EPP at stride 16, then three times: upsample to the
    skip's size, add the EFT-projected encoder skip, BN+PReLU, EPP; the last EPP emits logits."""

    def __init__(self, widths: Sequence[int], base: int, num_classes: int) -> None:
        super().__init__()
        planes = [4 * base, 3 * base, 2 * base, num_classes]
        proj = max(1, min(num_classes // 2, base))
        self.first = EfficientPyrPool(widths[3], proj, planes[0])
        self.skips = nn.ModuleList(EfficientPWConv(widths[2 - i], planes[i]) for i in range(3))
        self.norms = nn.ModuleList(BNAct(planes[i], "prelu") for i in range(3))
        self.stages = nn.ModuleList(EfficientPyrPool(planes[i], proj, planes[i + 1], last=i == 2) for i in range(3))

    def forward(self, feats: Sequence[torch.Tensor]) -> torch.Tensor:
        out = self.first(feats[3])
        for i, (skip, norm, stage) in enumerate(zip(self.skips, self.norms, self.stages)):
            encoder = feats[2 - i]
            out = resize_to(out, encoder.shape[-2:], align_corners=True) + skip(encoder)
            out = stage(norm(out))
        return out


class EJPNet(nn.Module):
    """Encoder + decoder + upsampling to exactly the input size."""

    def __init__(self, spec: EJPNetSpec, num_classes: int) -> None:
        super().__init__()
        self.encoder = EESPEncoder(spec)
        widths = self.encoder.out_channels
        if spec.decoder == "jpu":
            self.decoder: nn.Module = JPUDecoder(widths[2:5], spec, num_classes)
        else:
            self.decoder = ESPNetv2Head(widths, spec.head_base, num_classes)
        self.final_upsample = spec.final_upsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = self.decoder(self.encoder(x))
        if self.final_upsample == "nearest":
            return F.interpolate(logits, size=x.shape[-2:], mode="nearest")
        return resize_to(logits, x.shape[-2:], align_corners=True)


def check(params: Mapping[str, Any], input_hw: tuple[int, int]) -> Findings:
    """What these values do at ``input_hw``: why they cannot run there, and which layers degenerate."""
    try:
        spec = EJPNetSpec.parse(params)
    except ConfigError as exc:
        return Findings(infeasible=[str(exc)])
    if problems := _width_problems(spec):
        return Findings(infeasible=problems)
    reasons: list[str] = []
    sizes = feature_sizes(input_hw, len(spec.widths))
    # A dilated 3x3 whose dilation reaches the larger side of its input map reads only padding.
    for i, dilations in enumerate(spec.stage_dilations, start=1):
        h, w = sizes[i + 1]  # eesp1 acts on level 3 (index 2)
        if spec.stage_repeats[i - 1] and max(dilations) >= max(h, w):
            reasons.append(
                f"eesp{i}_dilations={list(dilations)}: dilation {max(dilations)} >= {max(h, w)}, the larger side of "
                f"the {h}x{w} level-{i + 2} map at input {input_hw[0]}x{input_hw[1]} (dilations below {max(h, w)} "
                "do not read only padding)"
            )
    if spec.cbr_dilation >= max(input_hw):
        reasons.append(f"cbr_dilation={spec.cbr_dilation} >= {max(input_hw)}, the larger input side")
    if spec.decoder == "jpu":
        h, w = sizes[2]
        if max(spec.jpu_dilations) >= max(h, w):
            reasons.append(
                f"jpu_dilations={list(spec.jpu_dilations)}: dilation {max(spec.jpu_dilations)} >= {max(h, w)}, the "
                f"larger side of the {h}x{w} stride-8 map at input {input_hw[0]}x{input_hw[1]}"
            )
    return Findings(degenerate=reasons)


@register_family(
    "ejpnet",
    check=check,
    doc=("EJPNet (ESPNetv2/EESP encoder + FastFCN JPU decoder) and the EdgeNets ESPNetv2 segmentation head."),
)
def build(params: Mapping[str, Any], num_classes: int) -> nn.Module:
    spec = EJPNetSpec.parse(params)
    problems = _width_problems(spec)
    if problems:
        raise ConfigError("ejpnet: " + "; ".join(problems))
    return EJPNet(spec, num_classes)


def _width_problems(spec: EJPNetSpec) -> list[str]:
    widths = spec.widths
    problems = []
    for level in range(len(widths) - 1):
        c_in, c_out = widths[level], widths[level + 1]
        for p in eesp_width_problems(c_in, c_out - c_in, DOWNSAMPLER_BRANCHES, spec.eesp_groups):
            problems.append(
                f"width_scale={spec.width_scale} / eesp_groups={spec.eesp_groups}: level{level + 2} downsampler: {p}"
            )
        if level >= 1:
            i = level  # eesp1 is level 3
            if spec.stage_repeats[i - 1]:
                for p in eesp_width_problems(c_out, c_out, len(spec.stage_dilations[i - 1]), spec.eesp_groups):
                    problems.append(
                        f"eesp{i}_dilations={list(spec.stage_dilations[i - 1])} / width_scale={spec.width_scale} / "
                        f"eesp_groups={spec.eesp_groups}: level{level + 2} EESP: {p}; use a branch count and group "
                        "count that divide the level's width"
                    )
    return problems


def feature_sizes(input_hw: tuple[int, int], levels: int) -> list[tuple[int, int]]:
    """Spatial size of each encoder level's output (every stride-2 layer gives ceil(n / 2))."""
    h, w = input_hw
    sizes = []
    for _ in range(levels):
        h, w = conv_out_size(h, 3, 2), conv_out_size(w, 3, 2)
        sizes.append((h, w))
    return sizes
