"""FASSD-Net family (Rosas-Arias et al., T-ITS 2022) on an FC-HarDNet-70 style U-shaped backbone.

Encoder: a 4-conv stem (3x3 convs of 16, 24, 32, 48 channels; strides ``stem_strides[0]``, then
``stem_strides[1]``, 2, 1), then ``encoder_blocks`` HarDBlocks. Every block but the last gives a skip
(its HarDBlock output) and is followed by a 1x1 transition conv and a 2x2 average pool (floor mode);
the last block gets a transition conv only. An optional context module (DAPF or ASPP) follows.

Decoder, one stage per skip (deepest first): bilinear up-sampling to the skip's actual size
(align_corners=True), concat [up, skip], 1x1 conv-BN-ReLU to half the width (floor), optional MDA,
then a HarDBlock mirroring the encoder block of that skip (or, as in FASSD-Net-L2, one 3x3
conv-BN-ReLU to ``decoder_width``). Head: 1x1 conv with bias, bilinear up-sampling to the input size.

Published points: FASSD-Net = 4 blocks, DAPF, MDA; L1 = stem strides (3, 1); L2 = stem strides
(2, 2) and 3x3-conv decoder blocks of 64; FC-HarDNet-70 = 5 blocks, no context, no MDA.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from typing import Any

import torch
from torch import nn

from nasseg.blocks.conv import ConvBNAct, conv
from nasseg.blocks.dapf import aspp, dapf
from nasseg.blocks.hardnet import HarDBlock, even_width
from nasseg.blocks.mda import MDA, MERGES
from nasseg.blocks.ops import conv_out_size, resize_like, resize_to
from nasseg.errors import ConfigError
from nasseg.models.registry import Findings, register_family

# FC-HarDNet-70 (shared/reference 3.3): the first four entries are FASSD-Net's encoder.
STEM_WIDTHS = (16, 24, 32, 48)
GROWTH_RATES = (10, 16, 18, 24, 32)
BLOCK_LAYERS = (4, 4, 8, 8, 8)
TRANSITION_WIDTHS = (64, 96, 160, 224, 320)

CONTEXTS = ("none", "aspp", "dapf")
DECODER_BLOCKS = ("hardblock", "conv3x3")
ALIGN_CORNERS = True  # FC-HarDNet / FASSD-Net resize with align_corners=True
MIN_DEEPEST_SIDE = 2  # check(): smallest side allowed for the deepest encoder map


@dataclass(frozen=True)
class FASSDConfig:
    """Parameter values of one network; the defaults are FASSD-Net's."""

    stem_strides: tuple[int, int] = (2, 1)
    encoder_blocks: int = 4
    width_mult: float = 1.0
    growth_multiplier: float = 1.7
    context: str = "dapf"
    dapf_alpha: int = 2
    dapf_rates: tuple[int, ...] = (12, 24, 36)
    aspp_width: int = 256
    aspp_rates: tuple[int, ...] = (12, 24, 36)
    mda: bool = True
    mda_rates: tuple[int, ...] = (8, 4, 2)  # deepest decoder stage first
    mda_merge: str = "sum"
    decoder_block: str = "hardblock"
    decoder_width: int = 64

    @classmethod
    def from_params(cls, params: Mapping[str, Any]) -> FASSDConfig:
        """Read search-space parameters; absent ones keep FASSD-Net's value.

        ``mda_rates_5blocks`` is the 5-block encoder's (4 decoder stages) spelling of ``mda_rates``.
        """
        names = {f.name for f in fields(cls)}
        values = {k: v for k, v in params.items() if k in names}
        if "mda_rates_5blocks" in params:
            values["mda_rates"] = params["mda_rates_5blocks"]
        unknown = sorted(set(params) - names - {"mda_rates_5blocks"})
        if unknown:
            raise ConfigError(f"fassd: unknown parameter(s) {', '.join(unknown)}")
        try:
            for name in ("stem_strides", "dapf_rates", "aspp_rates", "mda_rates"):
                if name in values:
                    values[name] = tuple(int(v) for v in values[name])
            return cls(**values)
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"fassd: bad parameter values {dict(params)}: {exc}") from None

    # ----- derived widths ----------------------------------------------------------------------
    def scaled(self, width: int) -> int:
        """A reference width times ``width_mult``, rounded to even as HarDNet rounds (exact at 1.0)."""
        return width if self.width_mult == 1.0 else max(2, even_width(width * self.width_mult))

    @property
    def stem_widths(self) -> list[int]:
        return [self.scaled(w) for w in STEM_WIDTHS]

    @property
    def growth_rates(self) -> list[int]:
        return [self.scaled(g) for g in GROWTH_RATES[: self.encoder_blocks]]

    @property
    def block_layers(self) -> list[int]:
        return list(BLOCK_LAYERS[: self.encoder_blocks])

    @property
    def transition_widths(self) -> list[int]:
        return [self.scaled(w) for w in TRANSITION_WIDTHS[: self.encoder_blocks]]

    @property
    def decoder_stages(self) -> int:
        return self.encoder_blocks - 1

    @property
    def context_rates(self) -> tuple[int, ...]:
        return {"dapf": self.dapf_rates, "aspp": self.aspp_rates}.get(self.context, ())

    def problems(self) -> list[str]:
        """Reasons these values cannot be built at all (independent of the input size)."""
        reasons = []
        if len(self.stem_strides) != 2 or any(s < 1 for s in self.stem_strides):
            reasons.append(f"stem_strides={list(self.stem_strides)} must be two strides >= 1 (stem0, stem1)")
        if self.encoder_blocks not in (2, 3, 4, 5):
            reasons.append(f"encoder_blocks={self.encoder_blocks} is not allowed; allowed: 2 to 5")
        if self.width_mult <= 0:
            reasons.append(f"width_mult={self.width_mult} must be positive")
        if self.growth_multiplier < 1:
            reasons.append(f"growth_multiplier={self.growth_multiplier} must be at least 1")
        if self.context not in CONTEXTS:
            reasons.append(f"context={self.context!r} is unknown; allowed: {', '.join(CONTEXTS)}")
        if self.context == "dapf":
            if not self.dapf_rates or any(r < 1 for r in self.dapf_rates):
                reasons.append(f"dapf_rates={list(self.dapf_rates)} must be a non-empty list of rates >= 1")
            top = self.transition_widths[-1] if self.encoder_blocks in (2, 3, 4, 5) else 1
            if self.dapf_alpha < 1 or top // self.dapf_alpha < 1:
                reasons.append(
                    f"dapf_alpha={self.dapf_alpha} leaves no channel per branch on {top} channels; allowed: 1 to {top}"
                )
        if self.context == "aspp":
            if not self.aspp_rates or any(r < 1 for r in self.aspp_rates):
                reasons.append(f"aspp_rates={list(self.aspp_rates)} must be a non-empty list of rates >= 1")
            if self.aspp_width < 1:
                reasons.append(f"aspp_width={self.aspp_width} must be at least 1")
        if self.mda:
            name = self.mda_rates_name
            if len(self.mda_rates) != self.decoder_stages:
                reasons.append(
                    f"{name}={list(self.mda_rates)} needs one rate per decoder stage: encoder_blocks="
                    f"{self.encoder_blocks} gives {self.decoder_stages}"
                )
            if any(r < 1 for r in self.mda_rates):
                reasons.append(f"{name}={list(self.mda_rates)}: every rate must be >= 1")
            if self.mda_merge not in MERGES:
                reasons.append(f"mda_merge={self.mda_merge!r} is unknown; allowed: {', '.join(MERGES)}")
        if self.decoder_block not in DECODER_BLOCKS:
            reasons.append(f"decoder_block={self.decoder_block!r} is unknown; allowed: {', '.join(DECODER_BLOCKS)}")
        if self.decoder_block == "conv3x3" and self.decoder_width < 1:
            reasons.append(f"decoder_width={self.decoder_width} must be at least 1")
        return reasons

    @property
    def mda_rates_name(self) -> str:
        return "mda_rates_5blocks" if self.encoder_blocks == 5 else "mda_rates"


class Stem(nn.Sequential):
    """Four 3x3 conv-BN-ReLU layers with strides (s0, s1, 2, 1)."""

    def __init__(self, widths: Sequence[int], strides: tuple[int, int]) -> None:
        chans = [3, *widths]
        all_strides = [strides[0], strides[1], 2, 1]
        super().__init__(*(ConvBNAct(chans[i], chans[i + 1], 3, stride=all_strides[i]) for i in range(4)))


class DecoderStage(nn.Module):
    """Up-sample to the skip's size, concat, 1x1 fuse to half the width, optional MDA, then a block."""

    def __init__(self, up_ch: int, skip_ch: int, block: nn.Module, mda: MDA | None, fused_ch: int) -> None:
        super().__init__()
        self.fuse = ConvBNAct(up_ch + skip_ch, fused_ch, 1)
        self.mda = mda if mda is not None else nn.Identity()
        self.block = block

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        x = torch.cat([resize_like(x, skip, ALIGN_CORNERS), skip], dim=1)
        return self.block(self.mda(self.fuse(x)))


class FASSDNet(nn.Module):
    """U-shaped HarDNet encoder/decoder with optional DAPF/ASPP context and MDA refinement."""

    def __init__(self, cfg: FASSDConfig, num_classes: int) -> None:
        super().__init__()
        problems = cfg.problems()
        if problems:
            raise ConfigError("fassd: " + "; ".join(problems))
        self.cfg = cfg
        self.stem = Stem(cfg.stem_widths, cfg.stem_strides)
        ch = cfg.stem_widths[-1]
        self.blocks, self.transitions = nn.ModuleList(), nn.ModuleList()
        skip_widths = []
        n = cfg.encoder_blocks
        for i in range(n):
            encoder_block = HarDBlock(ch, cfg.growth_rates[i], cfg.block_layers[i], cfg.growth_multiplier)
            self.blocks.append(encoder_block)
            if i < n - 1:
                skip_widths.append(encoder_block.out_channels)
            transition: list[nn.Module] = [ConvBNAct(encoder_block.out_channels, cfg.transition_widths[i], 1)]
            if i < n - 1:
                transition.append(nn.AvgPool2d(2, stride=2))  # floor mode, as the reference
            self.transitions.append(nn.Sequential(*transition))
            ch = cfg.transition_widths[i]

        if cfg.context == "dapf":
            self.context: nn.Module = dapf(ch, cfg.dapf_alpha, cfg.dapf_rates)
        elif cfg.context == "aspp":
            self.context = aspp(ch, cfg.aspp_width, cfg.aspp_rates)
        else:
            self.context = nn.Identity()

        self.decoder = nn.ModuleList()
        for stage, i in enumerate(reversed(range(n - 1))):  # deepest skip first
            fused = (ch + skip_widths[i]) // 2
            mda = MDA(fused, cfg.mda_rates[stage], cfg.mda_merge) if cfg.mda else None
            if cfg.decoder_block == "hardblock":
                hard_block = HarDBlock(fused, cfg.growth_rates[i], cfg.block_layers[i], cfg.growth_multiplier)
                block: nn.Module = hard_block
                out = hard_block.out_channels
            else:
                block, out = ConvBNAct(fused, cfg.decoder_width, 3), cfg.decoder_width
            self.decoder.append(DecoderStage(ch, skip_widths[i], block, mda, fused))
            ch = out
        self.head = conv(ch, num_classes, 1, bias=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.stem(x)
        skips = []
        last = len(self.blocks) - 1
        for i, (block, transition) in enumerate(zip(self.blocks, self.transitions)):
            y = block(y)
            if i < last:
                skips.append(y)
            y = transition(y)
        y = self.context(y)
        for stage, skip in zip(self.decoder, reversed(skips)):
            y = stage(y, skip)
        return resize_to(self.head(y), x.shape[-2:], ALIGN_CORNERS)


# ----- the family ----------------------------------------------------------------------------------
def check(params: Mapping[str, Any], input_hw: tuple[int, int]) -> Findings:
    """What these values do at ``input_hw``: why they cannot run there, and which layers degenerate."""
    try:
        cfg = FASSDConfig.from_params(params)
    except ConfigError as exc:
        return Findings(infeasible=[str(exc)])
    if problems := cfg.problems():
        return Findings(infeasible=problems)
    h, w = input_hw
    sizes = feature_sizes(cfg, input_hw)
    # The deepest map must keep at least 2x2 pixels: at 1 pixel the context module and the deepest
    # decoder stage see no spatial structure, and any smaller input would pool the map away entirely.
    if min(sizes[-1]) < MIN_DEEPEST_SIDE:
        stride = cfg.stem_strides[0] * cfg.stem_strides[1] * 2**cfg.encoder_blocks
        return Findings(
            infeasible=[
                f"input {h}x{w} is too small for stem_strides={list(cfg.stem_strides)} and encoder_blocks="
                f"{cfg.encoder_blocks} (output stride {stride}): the deepest map would be "
                f"{sizes[-1][0]}x{sizes[-1][1]}; allowed: at least {MIN_DEEPEST_SIDE}x{MIN_DEEPEST_SIDE}"
            ]
        )
    degenerate: list[str] = []
    # A dilated kernel whose rate reaches past the map reads only zero padding but for its centre tap.
    deepest = sizes[-1]
    if cfg.context in ("dapf", "aspp"):
        name = f"{cfg.context}_rates"
        too_large = [r for r in cfg.context_rates if r >= max(deepest)]
        if too_large:
            degenerate.append(
                f"{name}={list(cfg.context_rates)}: rate(s) {too_large} reach past the {deepest[0]}x{deepest[1]} "
                f"map the {cfg.context.upper()} acts on at input {h}x{w} (rates < {max(deepest)} do not)"
            )
    if cfg.mda:
        for stage, rate in enumerate(cfg.mda_rates):
            skip_hw = sizes[cfg.encoder_blocks - 2 - stage]
            if rate >= max(skip_hw):
                degenerate.append(
                    f"{cfg.mda_rates_name}={list(cfg.mda_rates)}: rate {rate} of decoder stage {stage + 1} reaches "
                    f"past its {skip_hw[0]}x{skip_hw[1]} map at input {h}x{w} (rates < {max(skip_hw)} do not)"
                )
    return Findings(degenerate=degenerate)


@register_family(
    "fassd",
    check=check,
    doc=("FASSD-Net (Rosas-Arias et al. 2022): HarDNet U-Net with DAPF context and MDA decoder fusion; FC-HarDNet-70."),
)
def build(params: Mapping[str, Any], num_classes: int) -> nn.Module:
    """The network for these parameter values (ConfigError for values it cannot build)."""
    return FASSDNet(FASSDConfig.from_params(params), num_classes)


def feature_sizes(cfg: FASSDConfig, input_hw: tuple[int, int]) -> list[tuple[int, int]]:
    """Spatial size of each encoder block's map (block 1 at the stem's output; the last one is where
    the context module acts). Stem convs are 3x3 with padding 1; pools are 2x2 stride 2, floor."""
    hw = (int(input_hw[0]), int(input_hw[1]))
    for stride in (*cfg.stem_strides, 2, 1):
        hw = (conv_out_size(hw[0], 3, stride), conv_out_size(hw[1], 3, stride))
    sizes = [hw]
    for _ in range(cfg.encoder_blocks - 1):
        hw = (conv_out_size(hw[0], 2, 2, padding=0), conv_out_size(hw[1], 2, 2, padding=0))
        sizes.append(hw)
    return sizes
