"""Pyramid ShuffleNet V2 with efficient Vortex Pooling (paper Table II) as a parameterised family.

    image -> conv 3x3 s2 (24) -> maxpool 3x3 s2                         stride 4
          -> Stage1: down unit s2 + basic units, pyramid depthwise       stride 8
          -> Stage2: same                                               stride 16
          -> Stage3: down unit at ``stage3_stride`` + dilated basic units, 3x3 depthwise
          -> [Vortex Pooling: none / standard / efficient]
          -> resize to the stride-``head_stride`` feature's actual size
          -> conv (head_width, head_kernel) BN ReLU -> 1x1 conv (classes) -> bilinear to the input size

The paper's Stage1/2/3 are ShuffleNet V2's stage2/3/4. ``pyramid_kernels: [3]`` gives plain
ShuffleNet V2 units, so the four rows of the paper's Table IV are four points of this space. Every
resize goes to the actual size of a feature of this forward pass, never to a power-of-two multiple,
so inputs that are not multiples of 16 give logits of exactly the input size.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

import torch
from torch import nn

from nasseg.blocks.conv import ConvBNAct, conv
from nasseg.blocks.ops import conv_out_size, resize_to
from nasseg.blocks.shuffle import PYRAMID_BNS, PYRAMID_MERGES, shuffle_stage
from nasseg.blocks.vortex import VortexPooling, check_vortex_rates
from nasseg.errors import ConfigError
from nasseg.models.registry import Findings, register_family

# ShuffleNet V2 output widths of (Stage1, Stage2, Stage3) per width multiplier (Ma et al. 2018, Table 5).
STAGE_WIDTHS: dict[float, tuple[int, int, int]] = {
    0.5: (48, 96, 192),
    1.0: (116, 232, 464),
    1.5: (176, 352, 704),
    2.0: (244, 488, 976),
}
STEM_WIDTH = 24
VORTEX_KINDS = ("none", "standard", "efficient")
HEAD_STRIDES = (4, 8, 16)
IMAGE_CHANNELS = 3


@dataclass(frozen=True)
class PyramidShuffleNetConfig:
    """Parameter values of one network; the defaults are the paper's Pyramid ShuffleNet (2.69 M row)."""

    width_multiplier: float = 1.0
    stage_repeats: tuple[int, int, int] = (4, 8, 4)
    pyramid_kernels: tuple[int, ...] = (3, 5, 7)
    pyramid_merge: str = "hff"
    pyramid_bn: str = "merged"
    down_left_kernel: int = 3
    stage3_stride: int = 1
    stage3_dilations: tuple[int, ...] = (1, 2, 3)
    vortex: str = "efficient"
    vortex_rates: tuple[int, ...] = (1, 3, 9, 27)
    vortex_width: int = 256
    vortex_projection: bool = True
    head_stride: int = 4
    head_kernel: int = 3
    head_width: int = 128

    @classmethod
    def from_params(cls, params: Mapping[str, Any]) -> PyramidShuffleNetConfig:
        """Read search-space parameters; absent ones (e.g. inactive conditionals) take the defaults."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(params) - known)
        if unknown:
            raise ConfigError(
                f"pyramid_shufflenet: unknown parameter(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}"
            )
        values: dict[str, Any] = dict(params)
        try:
            for name in ("stage_repeats", "pyramid_kernels", "stage3_dilations", "vortex_rates"):
                if name in values:
                    values[name] = tuple(int(v) for v in values[name])
            integers = ("down_left_kernel", "stage3_stride", "vortex_width", "head_stride", "head_kernel", "head_width")
            for name in integers:
                if name in values:
                    values[name] = int(values[name])
            if "width_multiplier" in values:
                values["width_multiplier"] = float(values["width_multiplier"])
            return cls(**values)
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"pyramid_shufflenet: bad parameter values {dict(params)}: {exc}") from None

    @property
    def widths(self) -> tuple[int, int, int]:
        return STAGE_WIDTHS[self.width_multiplier]

    @property
    def stage3_units_dilated(self) -> bool:
        return self.stage_repeats[2] > 1

    def problems(self) -> list[str]:
        """Reasons these values cannot be built at all (independent of the input size)."""
        reasons = []
        if self.width_multiplier not in STAGE_WIDTHS:
            reasons.append(
                f"width_multiplier={self.width_multiplier} is unknown; allowed: {', '.join(map(str, STAGE_WIDTHS))}"
            )
        if len(self.stage_repeats) != 3 or any(r < 1 for r in self.stage_repeats):
            reasons.append(f"stage_repeats={list(self.stage_repeats)} must be three unit counts, each at least 1")
        if not self.pyramid_kernels or any(k < 1 or k % 2 == 0 for k in self.pyramid_kernels):
            reasons.append(f"pyramid_kernels={list(self.pyramid_kernels)}: every kernel must be an odd size >= 1")
        if len(set(self.pyramid_kernels)) != len(self.pyramid_kernels):
            reasons.append(f"pyramid_kernels={list(self.pyramid_kernels)} has repeated kernels")
        if self.pyramid_merge not in PYRAMID_MERGES:
            reasons.append(f"pyramid_merge={self.pyramid_merge!r} is unknown; allowed: {', '.join(PYRAMID_MERGES)}")
        if self.pyramid_bn not in PYRAMID_BNS:
            reasons.append(f"pyramid_bn={self.pyramid_bn!r} is unknown; allowed: {', '.join(PYRAMID_BNS)}")
        if self.down_left_kernel not in (1, 3):
            reasons.append(f"down_left_kernel={self.down_left_kernel} is not allowed; allowed: 1, 3")
        if self.stage3_stride not in (1, 2):
            reasons.append(f"stage3_stride={self.stage3_stride} is not allowed; allowed: 1, 2")
        if not self.stage3_dilations or any(d < 1 for d in self.stage3_dilations):
            reasons.append(f"stage3_dilations={list(self.stage3_dilations)}: every dilation must be >= 1")
        if self.vortex not in VORTEX_KINDS:
            reasons.append(f"vortex={self.vortex!r} is unknown; allowed: {', '.join(VORTEX_KINDS)}")
        if self.vortex != "none":
            rates = list(self.vortex_rates)
            reasons.extend(f"vortex_rates={rates}: {r}" for r in check_vortex_rates(self.vortex_rates))
            if self.vortex_width < 1:
                reasons.append(f"vortex_width={self.vortex_width} must be at least 1")
        if self.head_stride not in HEAD_STRIDES:
            allowed = ", ".join(map(str, HEAD_STRIDES))
            reasons.append(f"head_stride={self.head_stride} is not allowed; allowed: {allowed}")
        if self.head_kernel not in (1, 3):
            reasons.append(f"head_kernel={self.head_kernel} is not allowed; allowed: 1, 3")
        if self.head_width < 1:
            reasons.append(f"head_width={self.head_width} must be at least 1")
        return reasons


class PyramidShuffleNet(nn.Module):
    """Encoder (ShuffleNet V2 with pyramid depthwise convs, output stride 16), Vortex Pooling, head."""

    def __init__(self, cfg: PyramidShuffleNetConfig, num_classes: int) -> None:
        super().__init__()
        problems = cfg.problems()
        if problems:
            raise ConfigError("pyramid_shufflenet: " + "; ".join(problems))
        self.cfg = cfg
        w1, w2, w3 = cfg.widths
        r1, r2, r3 = cfg.stage_repeats
        shared: dict[str, Any] = {"left_kernel": cfg.down_left_kernel, "merge": cfg.pyramid_merge, "bn": cfg.pyramid_bn}
        self.stem = ConvBNAct(IMAGE_CHANNELS, STEM_WIDTH, 3, stride=2)
        self.pool = nn.MaxPool2d(3, stride=2, padding=1)
        self.stage1 = shuffle_stage(STEM_WIDTH, w1, r1, 2, cfg.pyramid_kernels, (1,), **shared)
        self.stage2 = shuffle_stage(w1, w2, r2, 2, cfg.pyramid_kernels, (1,), **shared)
        # Stage3 keeps ShuffleNet V2's 3x3 depthwise convs (paper III-C); only its dilations change.
        self.stage3 = shuffle_stage(w2, w3, r3, cfg.stage3_stride, (3,), cfg.stage3_dilations, **shared)
        self.vortex: VortexPooling | None = None
        head_in = w3
        if cfg.vortex != "none":
            self.vortex = VortexPooling(
                w3,
                cfg.vortex_width,
                cfg.vortex_rates,
                separable=cfg.vortex == "efficient",
                projection=cfg.vortex_projection,
            )
            head_in = self.vortex.out_channels
        self.head = ConvBNAct(head_in, cfg.head_width, cfg.head_kernel)
        self.classifier = conv(cfg.head_width, num_classes, 1, bias=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f4 = self.pool(self.stem(x))
        f8 = self.stage1(f4)
        f16 = self.stage2(f8)
        y = self.stage3(f16)
        if self.vortex is not None:
            y = self.vortex(y)
        target = {4: f4, 8: f8, 16: f16}[self.cfg.head_stride]
        y = resize_to(y, target.shape[-2:])
        return resize_to(self.classifier(self.head(y)), x.shape[-2:])


# ----- the family ----------------------------------------------------------------------------------
def check(params: Mapping[str, Any], input_hw: tuple[int, int]) -> Findings:
    """Infeasible: invalid values, an input smaller than the output stride. Degenerate: a dilation or
    Vortex rate (which is also its pooling window) at least as large as the longer side of the map it
    acts on reads only zero padding there; a pyramid kernel whose reach (k - 1) / 2 is that large too.
    """
    try:
        cfg = PyramidShuffleNetConfig.from_params(params)
    except ConfigError as exc:
        return Findings(infeasible=[str(exc)])
    if problems := cfg.problems():
        return Findings(infeasible=problems)
    h, w = input_hw
    stride = 16 * cfg.stage3_stride
    if h < stride or w < stride:
        return Findings(
            infeasible=[
                f"input {h}x{w} is smaller than the encoder's output stride {stride} (stage3_stride={cfg.stage3_stride})"
            ]
        )
    reasons: list[str] = []
    sizes = feature_sizes(cfg, input_hw)
    s2 = sizes["stage2"]
    reach_limit = max(s2)
    too_wide = [k for k in cfg.pyramid_kernels if (k - 1) // 2 >= reach_limit]
    if too_wide:
        reasons.append(
            f"pyramid_kernels={list(cfg.pyramid_kernels)}: kernel(s) {too_wide} reach past the {s2[0]}x{s2[1]} "
            f"Stage2 map at input {h}x{w} ((k - 1) / 2 < {reach_limit} does not)"
        )
    s3 = sizes["stage3"]
    side = max(s3)
    if cfg.stage3_units_dilated:
        used = sorted({cfg.stage3_dilations[i % len(cfg.stage3_dilations)] for i in range(cfg.stage_repeats[2] - 1)})
        too_large = [d for d in used if d >= side]
        if too_large:
            reasons.append(
                f"stage3_dilations={list(cfg.stage3_dilations)}: dilation(s) {too_large} reach past the "
                f"{s3[0]}x{s3[1]} Stage3 map at input {h}x{w} (dilations < {side} do not)"
            )
    if cfg.vortex != "none":
        too_large = [r for r in cfg.vortex_rates if r >= side]
        if too_large:
            reasons.append(
                f"vortex_rates={list(cfg.vortex_rates)}: rate(s) {too_large} (atrous rate and average-pooling "
                f"window) reach past the {s3[0]}x{s3[1]} map Vortex Pooling acts on at input {h}x{w}; "
                f"rates < {side} do not"
            )
    return Findings(degenerate=reasons)


@register_family(
    "pyramid_shufflenet",
    check=check,
    doc=(
        "Pyramid ShuffleNet V2 with efficient Vortex Pooling: ShuffleNet V2 with multi-kernel depthwise convs"
        " (eq. 1), a dilated stride-1 Stage3 and (efficient) Vortex Pooling; Table IV rows as baselines."
    ),
)
def build(params: Mapping[str, Any], num_classes: int) -> nn.Module:
    """The network for these parameter values (ConfigError for values it cannot build)."""
    return PyramidShuffleNet(PyramidShuffleNetConfig.from_params(params), num_classes)


def feature_sizes(cfg: PyramidShuffleNetConfig, input_hw: tuple[int, int]) -> dict[str, tuple[int, int]]:
    """Spatial size after the stem pool and after each stage (all odd kernels with 'same' padding)."""

    def down(hw: tuple[int, int], stride: int) -> tuple[int, int]:
        return tuple(conv_out_size(s, 3, stride) for s in hw)  # type: ignore[return-value]

    sizes: dict[str, tuple[int, int]] = {}
    hw = down(down(tuple(input_hw), 2), 2)  # type: ignore[arg-type]
    sizes["pool"] = hw
    sizes["stage1"] = hw = down(hw, 2)
    sizes["stage2"] = hw = down(hw, 2)
    sizes["stage3"] = down(hw, cfg.stage3_stride)
    return sizes
