"""JetSeg (Lopez-Montiel et al. 2023): the JetNet encoder of JetBlocks plus a RegSeg-style decoder.

The architecture is generated from a *design input* (J7): the feature-map list halves the design size
(ceil) until its larger side is at most 16; the list is cut into thirds (stage 0 = the first size, stage 1
= the rest of the first third, stages 2 and 3 = the other thirds). Each size gets ``r`` residual JetBlocks
and one non-residual JetBlock (stride 2, or 1 at the last size). Widths grow per stage as in the authors'
``get_base_cfg`` (architectures.md section 4.1-4.2). The built network is fully convolutional and resizes
to the actual size of whatever input it is given, so the design input fixes the structure, not the input.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from nasseg.blocks.activations import ACTIVATIONS
from nasseg.blocks.attention import ATTENTIONS
from nasseg.blocks.jetconv import GROUPS_POLICIES, JETCONV_MODES, JetBlock, JetInputBlock, parse_kernel
from nasseg.blocks.ops import conv_out_size, resize_to
from nasseg.blocks.regseg_decoder import DEEP_HEAD_MODES, MERGE_POINTS, RegSegDecoder
from nasseg.errors import ConfigError
from nasseg.models.registry import Findings, register_family

LAST_FMAP = 16  # the feature-map list stops once the larger side is <= 16 (authors' last_fmap)
HEAD_POSITIONS = ("first", "middle", "last")


@dataclass(frozen=True)
class WidthConfig:
    """One column of the authors' ``get_base_cfg`` (architectures.md 4.1)."""

    input_features: int  # ib: output width of the input block
    out_base: int  # ob: width added per non-residual block in stages 1 (ob) and 2 (ob * stage_factor)
    stage_factor: int  # sf
    expand: int  # e: expansion of a non-residual block (exp = in * e)
    max_features: int
    max_expand: int
    decoder_features: int  # H: width of the decoder heads and the fuse conv (= last_features)
    residual_blocks: tuple[int, int, int]  # residual JetBlocks per size in stages 1, 2, 3


CONFIGS: dict[str, WidthConfig] = {
    "workstation": WidthConfig(32, 32, 2, 2, 512, 1024, 512, (2, 4, 2)),
    "agx": WidthConfig(16, 16, 2, 2, 256, 256, 256, (2, 4, 2)),
    "nano": WidthConfig(8, 8, 2, 2, 64, 64, 64, (0, 1, 1)),
}


@dataclass(frozen=True)
class BlockPlan:
    stage: int
    level: int  # stride-2 steps before this block: the index of its input size in the feature-map list
    residual: bool
    stride: int
    in_ch: int
    exp_ch: int
    out_ch: int
    kernels: tuple[str, ...]
    kernels_param: str
    attention: str

    @property
    def out_level(self) -> int:
        return self.level + (self.stride == 2)


@dataclass(frozen=True)
class Plan:
    sizes: list[tuple[int, int]]
    blocks: list[BlockPlan]
    taps: tuple[int | None, int, int]  # block indices the (deep, mid, shallow) heads read; None: no deep head
    pair_dilation: dict[int, int]


def feature_map_sizes(design_hw: Sequence[int]) -> list[tuple[int, int]]:
    """The design input, then halvings (ceil) while the larger side is > 16: 512x512 -> 6 sizes,
    720x960 -> 7, 1024x2048 -> 8."""
    h, w = int(design_hw[0]), int(design_hw[1])
    sizes = [(h, w)]
    while max(h, w) > LAST_FMAP:
        h, w = -(-h // 2), -(-w // 2)
        sizes.append((h, w))
    return sizes


def _get(params: Mapping[str, Any], name: str) -> Any:
    if name not in params:
        raise ConfigError(f"jetseg: parameter {name!r} is missing")
    return params[name]


def _choice(params: Mapping[str, Any], name: str, allowed: Sequence[Any]) -> Any:
    value = _get(params, name)
    if value not in allowed:
        raise ConfigError(f"jetseg: {name}={value!r} is not allowed; {name} is one of {', '.join(map(str, allowed))}")
    return value


def _kernels(params: Mapping[str, Any], name: str) -> tuple[str, ...]:
    value = _get(params, name)
    if isinstance(value, str) or not isinstance(value, Sequence) or not value:
        raise ConfigError(
            f"jetseg: {name} must be a non-empty list of kernels such as ['3x3', '5x1+1x5'], got {value!r}"
        )
    for entry in value:
        try:
            parse_kernel(str(entry))
        except ValueError as exc:
            raise ConfigError(f"jetseg: {name}: {exc}") from None
    if len(set(value)) != len(value):
        # The authors' ModuleDict silently collapses repeated entries; we ask for the collapsed list.
        raise ConfigError(f"jetseg: {name}={list(value)} repeats a kernel; list each kernel once")
    return tuple(str(v) for v in value)


def _dilations(params: Mapping[str, Any]) -> dict[int, int]:
    out = {}
    for k in (3, 5, 7):
        name = f"pair{k}_dilation"
        d = _get(params, name)
        if isinstance(d, bool) or not isinstance(d, int) or d < 1:
            raise ConfigError(f"jetseg: {name}={d!r} is not allowed; {name} is an integer >= 1")
        out[k] = d
    return out


def _head_index(indices: list[int], position: str) -> int:
    return {"first": indices[0], "middle": indices[len(indices) // 2], "last": indices[-1]}[position]


def plan(params: Mapping[str, Any]) -> Plan:
    """Validate ``params`` and lay out every block (raises ConfigError naming the parameter)."""
    cfg = CONFIGS[_choice(params, "config", list(CONFIGS))]
    design = _get(params, "design_input")
    if not (isinstance(design, Sequence) and len(design) == 2 and all(isinstance(v, int) and v > 0 for v in design)):
        raise ConfigError(f"jetseg: design_input must be [H, W] with positive integers, got {design!r}")
    sizes = feature_map_sizes(design)
    n = len(sizes)
    third = n // 3
    if third < 2:
        raise ConfigError(
            f"jetseg: design_input={list(design)} gives {n} feature-map sizes; at least 6 are needed "
            "(larger side > 256) so every stage has a size"
        )
    stage_of = [0] + [1] * (third - 1) + [2] * third + [3] * (n - 2 * third)
    deep_mode = _choice(params, "deep_head", DEEP_HEAD_MODES)
    # Without a deep head, stage 3 would feed nothing: its parameters do not exist (J3).
    stages = (1, 2) if deep_mode == "drop" else (1, 2, 3)
    kernels = {(0, False): ("stage0_kernels", _kernels(params, "stage0_kernels"))}
    for s in stages:
        for residual, name in ((True, f"stage{s}_residual_kernels"), (False, f"stage{s}_kernels")):
            kernels[(s, residual)] = (name, _kernels(params, name))
    attention = {s: _choice(params, f"stage{s}_attention", ATTENTIONS) for s in stages}
    pair_dilation = _dilations(params)

    name0, k0 = kernels[(0, False)]
    blocks = [BlockPlan(0, 0, False, 2, 3, 3, cfg.input_features, k0, name0, "none")]
    width = cfg.input_features
    for level in range(1, n):
        stage = stage_of[level]
        if stage not in stages:
            break
        name, ks = kernels[(stage, True)]
        for _ in range(cfg.residual_blocks[stage - 1]):
            blocks.append(BlockPlan(stage, level, True, 1, width, width, width, ks, name, attention[stage]))
        grow = {1: width + cfg.out_base, 2: width + cfg.out_base * cfg.stage_factor, 3: width * cfg.stage_factor}
        out_ch = min(grow[stage], cfg.max_features)
        exp_ch = min(width * cfg.expand, cfg.max_expand)
        name, ks = kernels[(stage, False)]
        stride = 1 if level == n - 1 else 2
        blocks.append(BlockPlan(stage, level, False, stride, width, exp_ch, out_ch, ks, name, attention[stage]))
        width = out_ch

    def tap(stage: int, param: str) -> int:
        levels = [lv for lv in range(n) if stage_of[lv] == stage]
        level = _head_index(levels, _choice(params, param, HEAD_POSITIONS))
        # The head reads the last block whose output has that size.
        return max(i for i, b in enumerate(blocks) if b.out_level == level)

    shallow, mid = tap(1, "shallow_head_at"), tap(2, "mid_head_at")
    deep = None if deep_mode == "drop" else tap(3, "deep_head_at")
    if deep is None:  # without a deep head every block after the mid tap is dead: do not build it (J3)
        blocks = blocks[: max(shallow, mid) + 1]
    return Plan(sizes, blocks, (deep, mid, shallow), pair_dilation)


class JetSeg(nn.Module):
    """JetNet encoder (a chain of JetBlocks) + RegSeg-style decoder; logits at the input's size."""

    def __init__(self, params: Mapping[str, Any], num_classes: int) -> None:
        super().__init__()
        layout = plan(params)
        cfg = CONFIGS[params["config"]]
        act = _choice(params, "activation", [a for a in ACTIVATIONS if a != "identity"])
        mode = _choice(params, "jetconv_mode", JETCONV_MODES)
        groups = _choice(params, "groups", GROUPS_POLICIES)
        merge_at = _choice(params, "decoder_merge", MERGE_POINTS)
        kernel = _choice(params, "decoder_kernel", [1, 3])
        common = dict(act=act, mode=mode, pair_dilation=layout.pair_dilation, groups_policy=groups)
        first = layout.blocks[0]
        blocks: list[nn.Module] = [JetInputBlock(3, first.out_ch, first.kernels, first.stride, **common)]
        for b in layout.blocks[1:]:
            blocks.append(JetBlock(b.in_ch, b.exp_ch, b.out_ch, b.kernels, b.stride, b.residual, b.attention, **common))
        self.encoder = nn.ModuleList(blocks)
        deep, mid, shallow = layout.taps
        self.taps = layout.taps
        h = cfg.decoder_features
        c_deep = layout.blocks[deep].out_ch if deep is not None else h
        self.decoder = RegSegDecoder(
            (c_deep, layout.blocks[mid].out_ch, layout.blocks[shallow].out_ch),
            (h, h, h),
            num_classes,
            fuse_channels=h,
            final_channels=h,
            fuse_kernel=kernel,
            final_kernel=kernel,
            merge_at=merge_at,
            deep=params["deep_head"],
            act=act,
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        size = x.shape[-2:]
        deep_i, mid_i, shallow_i = self.taps
        feats: dict[int, torch.Tensor] = {}
        for i, block in enumerate(self.encoder):
            x = block(x)
            if i in self.taps:  # keep only what the heads read, so dead features can be freed
                feats[i] = x
        deep = feats[deep_i] if deep_i is not None else feats[mid_i]
        return resize_to(self.decoder(deep, feats[mid_i], feats[shallow_i]), size)


def check(params: Mapping[str, Any], input_hw: tuple[int, int]) -> Findings:
    """Infeasible: invalid values. Degenerate: dilated asymmetric kernels whose dilation reaches the
    extent of the feature map they act on (they read padding only)."""
    try:
        layout = plan(params)
    except ConfigError as exc:
        return Findings(infeasible=[str(exc)])
    h, w = int(input_hw[0]), int(input_hw[1])
    if h < 1 or w < 1:
        return Findings(infeasible=[f"input {h}x{w} must be at least 1x1"])
    reasons: list[str] = []
    seen: set[tuple[str, int, str]] = set()
    # Every block's depthwise kernels act on the map after the block's (strided) expansion; block 0's
    # act on the input itself. Residual blocks and the last block keep the size.
    cur = (h, w)
    for i, b in enumerate(layout.blocks):
        if i > 0:
            cur = tuple(conv_out_size(s, 1, b.stride, 0) for s in cur)  # type: ignore[assignment]
        for entry in b.kernels:
            kind, k = parse_kernel(entry)
            d = layout.pair_dilation.get(k, 1) if kind == "pair" else 1
            if d == 1:
                continue
            for axis, side in (("height", cur[0]), ("width", cur[1])):
                key = (b.kernels_param, k, axis)
                if d >= side and key not in seen:
                    seen.add(key)
                    reasons.append(
                        f"pair{k}_dilation={d} is >= the {axis} ({side}) of the feature map that {b.kernels_param} "
                        f"entry {entry!r} acts on at input {h}x{w} (block {i}); below {side} it would not read "
                        "only padding"
                    )
        if i == 0:
            cur = tuple(conv_out_size(s, 1, b.stride, 0) for s in cur)  # type: ignore[assignment]
    return Findings(degenerate=reasons)


@register_family(
    "jetseg",
    check=check,
    doc=("JetSeg: JetNet encoder of JetBlocks (JetConv, channel shuffle, CBAM/SAM/ECA) + RegSeg-style decoder"),
)
def build(params: Mapping[str, Any], num_classes: int) -> nn.Module:
    return JetSeg(params, num_classes)
