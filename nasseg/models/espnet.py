"""ESPNet family (Mehta et al., ECCV 2018): ESPNet-A, -B, -C and ESPNet as points of one space.

The four published variants are a path of cumulative changes (paper Fig. 4), so each is a switch:

- ``a``: plain stacking. Conv 3x3 s2 (level 1), strided ESP + ``alpha2`` ESPs (level 2), strided ESP +
  ``alpha3`` ESPs (level 3), 1x1 classifier at 1/8.
- ``b``: at levels 2 and 3 the strided-ESP output is concatenated with the last ESP output (BN + act
  after each concat), doubling the width the next stage sees.
- ``c``: B plus input reinforcement: the image, average-pooled to 1/2 and 1/4, is concatenated at
  levels 1 and 2.
- ``full``: the ESPNet-C encoder plus the light "reduce-upsample-merge" decoder to full resolution.

Networks that stop at 1/8 (a, b, c) are bilinearly up-sampled to the input size, as the paper does
for evaluation. Every up-sampling resizes to the actual size of the feature it meets, so inputs that
are not multiples of 8 give logits of exactly the input size.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from nasseg.blocks.conv import BNAct, ConvBNAct, conv
from nasseg.blocks.esp import ESP, ImagePyramid, concat_at, strided_esp
from nasseg.blocks.ops import conv_out_size, resize_like, resize_to
from nasseg.errors import ConfigError
from nasseg.models.registry import Findings, register_family

VARIANTS = ("a", "b", "c", "full")
DOWNSAMPLES = ("strided_esp", "strided_conv")
DECODER_SKIPS = ("level1", "reinforced")
BN_EPS = 1e-3  # the authors' code uses eps=1e-3 in every BN
IMAGE_CHANNELS = 3


def default_dilations(k: int) -> list[int]:
    """The paper's rule: 2^(k-1) for k = 1..K (1, 2, 4, 8, 16 at K = 5)."""
    return [2**i for i in range(k)]


@dataclass(frozen=True)
class ESPNetConfig:
    """Parameter values of one ESPNet network, with the published ESPNet as defaults."""

    variant: str = "full"
    width_divider_k: int = 5
    dilations: tuple[int, ...] = (1, 2, 4, 8, 16)
    width_l1: int = 16
    width_l2: int = 64
    width_l3: int = 128
    alpha2: int = 2
    alpha3: int = 8
    reduce_kernel: int = 1
    esp_residual: bool = True
    activation: str = "prelu"
    downsample: str = "strided_esp"
    decoder_skip: str = "level1"

    @property
    def concat_levels(self) -> bool:
        return self.variant != "a"

    @property
    def input_reinforcement(self) -> bool:
        return self.variant in ("c", "full")

    @property
    def decoder(self) -> bool:
        return self.variant == "full"

    @classmethod
    def from_params(cls, params: Mapping[str, Any]) -> ESPNetConfig:
        """Read search-space parameters; absent ones take the ESPNet value."""
        k = int(params.get("width_divider_k", cls.width_divider_k))
        dilations = params.get(f"dilations_k{k}", default_dilations(k))
        values = {name: params[name] for name in cls.__dataclass_fields__ if name in params and name != "dilations"}
        try:
            return cls(**{**values, "width_divider_k": k, "dilations": tuple(int(d) for d in dilations)})
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"espnet: bad parameter values {dict(params)}: {exc}") from None

    def problems(self) -> list[str]:
        """Reasons these values cannot be built at all (independent of the input size)."""
        reasons = []
        if self.variant not in VARIANTS:
            reasons.append(f"variant={self.variant!r} is unknown; allowed: {', '.join(VARIANTS)}")
        if self.downsample not in DOWNSAMPLES:
            reasons.append(f"downsample={self.downsample!r} is unknown; allowed: {', '.join(DOWNSAMPLES)}")
        if self.decoder_skip not in DECODER_SKIPS:
            reasons.append(f"decoder_skip={self.decoder_skip!r} is unknown; allowed: {', '.join(DECODER_SKIPS)}")
        if self.activation not in ("prelu", "relu"):
            reasons.append(f"activation={self.activation!r} is unknown; allowed: prelu, relu")
        if self.reduce_kernel not in (1, 3):
            reasons.append(f"reduce_kernel={self.reduce_kernel} is not allowed; allowed: 1, 3")
        if self.width_divider_k < 1:
            reasons.append(f"width_divider_k={self.width_divider_k} must be at least 1")
        if len(self.dilations) != self.width_divider_k:
            reasons.append(
                f"dilations_k{self.width_divider_k}={list(self.dilations)} must have width_divider_k="
                f"{self.width_divider_k} entries (one per branch)"
            )
        if any(d < 1 for d in self.dilations):
            reasons.append(f"dilations_k{self.width_divider_k}={list(self.dilations)}: every dilation must be >= 1")
        for name in ("width_l1", "width_l2", "width_l3"):
            if getattr(self, name) < 1:
                reasons.append(f"{name}={getattr(self, name)} must be at least 1")
        for name in ("width_l2", "width_l3"):
            if getattr(self, name) < self.width_divider_k:
                reasons.append(
                    f"{name}={getattr(self, name)} must be at least width_divider_k={self.width_divider_k} "
                    "(each of the K branches needs one channel)"
                )
        for name in ("alpha2", "alpha3"):
            if getattr(self, name) < 1:
                reasons.append(f"{name}={getattr(self, name)} must be at least 1 (ESP repeats at that level)")
        return reasons


class ESPNet(nn.Module):
    """ESPNet-A/B/C (output stride 8, bilinearly up-sampled) or ESPNet with its light decoder."""

    def __init__(self, cfg: ESPNetConfig, num_classes: int) -> None:
        super().__init__()
        problems = cfg.problems()
        if cfg.decoder and num_classes < cfg.width_divider_k:
            problems.append(
                f"the decoder's ESP has num_classes={num_classes} channels, fewer than width_divider_k="
                f"{cfg.width_divider_k}"
            )
        if problems:
            raise ConfigError("espnet: " + "; ".join(problems))
        self.cfg = cfg
        act, dil = cfg.activation, cfg.dilations
        w1, w2, w3 = cfg.width_l1, cfg.width_l2, cfg.width_l3
        image = IMAGE_CHANNELS if cfg.input_reinforcement else 0

        def down(in_ch: int, out_ch: int) -> nn.Module:
            if cfg.downsample == "strided_conv":  # Table 2c: a standard strided convolution
                return ConvBNAct(in_ch, out_ch, 3, stride=2, act=act, bn_eps=BN_EPS)
            return strided_esp(in_ch, out_ch, dil, act=act, bn_eps=BN_EPS)

        def repeat(width: int, times: int) -> nn.Sequential:
            return nn.Sequential(
                *(
                    ESP(
                        width,
                        width,
                        dil,
                        reduce_kernel=cfg.reduce_kernel,
                        residual=cfg.esp_residual,
                        act=act,
                        bn_eps=BN_EPS,
                    )
                    for _ in range(times)
                )
            )

        # Level 1 (1/2): a standard strided convolution; with input reinforcement, the pooled image
        # joins it and a BN + act follows the concat.
        self.level1 = ConvBNAct(IMAGE_CHANNELS, w1, 3, stride=2, act=act, bn_eps=BN_EPS)
        self.pyramid = ImagePyramid(2) if cfg.input_reinforcement else None
        self.merge1 = BNAct(w1 + image, act, BN_EPS) if image else None
        # Level 2 (1/4).
        self.down2 = down(w1 + image, w2)
        self.level2 = repeat(w2, cfg.alpha2)
        l2_out = (2 * w2 + image) if cfg.concat_levels else w2
        self.merge2 = BNAct(l2_out, act, BN_EPS) if cfg.concat_levels else None
        # Level 3 (1/8).
        self.down3 = down(l2_out, w3)
        self.level3 = repeat(w3, cfg.alpha3)
        l3_out = 2 * w3 if cfg.concat_levels else w3
        self.merge3 = BNAct(l3_out, act, BN_EPS) if cfg.concat_levels else None
        self.classifier = conv(l3_out, num_classes, 1)  # no BN / activation (paper §4.1)

        self.decoder = None
        if cfg.decoder:
            skip1 = w1 + image if cfg.decoder_skip == "reinforced" else w1
            self.decoder = LightDecoder(num_classes, l2_out, skip1, dil, act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c = self.cfg
        images = self.pyramid(x) if self.pyramid is not None else []
        f1 = self.level1(x)
        l1 = self.merge1(concat_at([f1, images[0]])) if self.merge1 is not None else f1

        d2 = self.down2(l1)
        f2 = self.level2(d2)
        if self.merge2 is not None:  # order as in the authors' code: [ESP out, strided-ESP out, image]
            f2 = self.merge2(concat_at([f2, d2, *images[1:2]]))

        d3 = self.down3(f2)
        f3 = self.level3(d3)
        if self.merge3 is not None:
            f3 = self.merge3(concat_at([d3, f3]))
        logits = self.classifier(f3)

        if self.decoder is None:
            return resize_to(logits, x.shape[-2:])
        skip1 = l1 if c.decoder_skip == "reinforced" else f1
        return self.decoder(logits, f2, skip1, x.shape[-2:])


class LightDecoder(nn.Module):
    """ESPNet's "reduce-upsample-merge" decoder (Fig. 4d; layer choices of the authors' test code).

    1/8 class scores -> BN -> 2x transposed conv, merged with a 1x1 projection of the level-2
    features through BN + act and an ESP (no residual); 2x transposed conv + BN + act, merged with the
    level-1 features through a 3x3 conv-BN-act; a last 2x transposed conv to full resolution.
    Each up-sampled tensor is resized to the feature it meets (a no-op when sizes already agree).
    """

    def __init__(self, num_classes: int, level2_ch: int, level1_ch: int, dilations: Sequence[int], act: str) -> None:
        super().__init__()
        c = num_classes
        self.bn8 = nn.BatchNorm2d(c, eps=BN_EPS)  # BN without activation, as in the code
        self.up8 = nn.ConvTranspose2d(c, c, 2, stride=2, bias=False)
        self.project2 = conv(level2_ch, c, 1)
        self.merge4 = nn.Sequential(
            BNAct(2 * c, act, BN_EPS), ESP(2 * c, c, dilations, residual=False, act=act, bn_eps=BN_EPS)
        )
        self.up4 = nn.Sequential(nn.ConvTranspose2d(c, c, 2, stride=2, bias=False), BNAct(c, act, BN_EPS))
        self.merge2 = ConvBNAct(level1_ch + c, c, 3, act=act, bn_eps=BN_EPS)
        self.up2 = nn.ConvTranspose2d(c, c, 2, stride=2, bias=False)

    def forward(
        self, logits8: torch.Tensor, level2: torch.Tensor, level1: torch.Tensor, out_hw: torch.Size | tuple[int, int]
    ) -> torch.Tensor:
        up = resize_like(self.up8(self.bn8(logits8)), level2)
        x = self.merge4(torch.cat([self.project2(level2), up], dim=1))
        up = resize_like(self.up4(x), level1)
        x = self.merge2(torch.cat([up, level1], dim=1))
        return resize_to(self.up2(x), out_hw)


# ----- the family ----------------------------------------------------------------------------------
def check(params: Mapping[str, Any], input_hw: tuple[int, int]) -> Findings:
    """What these values do at ``input_hw``: why they cannot run there, and which layers degenerate."""
    try:
        cfg = ESPNetConfig.from_params(params)
    except ConfigError as exc:
        return Findings(infeasible=[str(exc)])
    reasons = cfg.problems()
    h, w = input_hw
    if h < 8 or w < 8:
        reasons.append(f"input {h}x{w} is smaller than the output stride 8 of the encoder")
    if reasons:
        return Findings(infeasible=reasons)
    sizes = feature_sizes(input_hw)
    # The smallest map an ESP acts on is level 3 (alpha3 >= 1). A 3x3 kernel whose dilation reaches
    # past the map reads only zero padding there (the paper's own explanation of Table 2e).
    side = max(sizes[3])
    too_large = [d for d in cfg.dilations if d >= side]
    if too_large:
        return Findings(
            degenerate=[
                f"dilations_k{cfg.width_divider_k}={list(cfg.dilations)}: dilation(s) {too_large} reach past the "
                f"{sizes[3][0]}x{sizes[3][1]} level-3 feature map at input {h}x{w} (they read only padding there; "
                f"dilations < {side} do not)"
            ]
        )
    return Findings()


@register_family(
    "espnet",
    check=check,
    doc=("ESPNet (Mehta et al., ECCV 2018): ESP modules (reduce, dilated pyramid, HFF); variants A, B, C, ESPNet."),
)
def build(params: Mapping[str, Any], num_classes: int) -> nn.Module:
    """The network for these parameter values (ConfigError for values it cannot build)."""
    return ESPNet(ESPNetConfig.from_params(params), num_classes)


def feature_sizes(input_hw: tuple[int, int]) -> dict[int, tuple[int, int]]:
    """Spatial size at levels 1, 2, 3 (strides 2, 4, 8; every down-sampler is 3x3, stride 2, pad 1)."""
    sizes: dict[int, tuple[int, int]] = {}
    h, w = input_hw
    for level in (1, 2, 3):
        h, w = conv_out_size(h, 3, 2), conv_out_size(w, 3, 2)
        sizes[level] = (h, w)
    return sizes
