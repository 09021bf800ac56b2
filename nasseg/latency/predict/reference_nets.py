"""The networks the published Jetson measurements were taken on, written without torchvision.

The predictor is calibrated on published latencies of these networks
(``calibrations/published_jetson.json``). Only the layer graph matters for latency, so these are
the standard ImageNet definitions (ResNet v1.5 with the stride on the 3x3, VGG without BN, ...),
FCN-ResNet18 as jetson-inference exports it (no dilation, FCN head, stride-32 logits without
upsampling), and mmsegmentation's dilated-ResNet-50 segmentors (R50-D8: FCN, PSPNet, DeepLabV3+)
as mmdeploy times them (decode head only, logits resized to the input), and Ultralytics' YOLOv8 n/s/m
detectors as trtutils' end-to-end engines run them (box decoding and non-maximum suppression inside).
``tests/test_latency_predictor_reference.py`` checks their MACs against the GMAC figures published with
the measurements.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable

import torch
from torch import nn

from nasseg.blocks.ops import channel_shuffle


def _cbr(
    in_ch: int, out_ch: int, kernel: int, stride: int = 1, groups: int = 1, act: type[nn.Module] | None = nn.ReLU
) -> nn.Sequential:
    layers: list[nn.Module] = [
        nn.Conv2d(in_ch, out_ch, kernel, stride, kernel // 2, groups=groups, bias=False),
        nn.BatchNorm2d(out_ch),
    ]
    if act is not None:
        layers.append(act())
    return nn.Sequential(*layers)


def _classifier(in_ch: int, hidden: int | None = None, act: type[nn.Module] = nn.ReLU) -> nn.Sequential:
    head: list[nn.Module] = [nn.AdaptiveAvgPool2d(1), nn.Flatten()]
    if hidden:
        head += [nn.Linear(in_ch, hidden), act()]
        in_ch = hidden
    return nn.Sequential(*head, nn.Linear(in_ch, 1000))


# ----- ResNet --------------------------------------------------------------------------------------
class _Residual(nn.Module):
    def __init__(self, body: nn.Module, shortcut: nn.Module) -> None:
        super().__init__()
        self.body, self.shortcut, self.act = body, shortcut, nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.body(x) + self.shortcut(x))


def _res_block(in_ch: int, width: int, stride: int, bottleneck: bool) -> _Residual:
    out_ch = width * 4 if bottleneck else width
    if bottleneck:
        body = nn.Sequential(_cbr(in_ch, width, 1), _cbr(width, width, 3, stride), _cbr(width, out_ch, 1, act=None))
    else:
        body = nn.Sequential(_cbr(in_ch, width, 3, stride), _cbr(width, width, 3, act=None))
    shortcut = _cbr(in_ch, out_ch, 1, stride, act=None) if stride != 1 or in_ch != out_ch else nn.Identity()
    return _Residual(body, shortcut)


def resnet_features(depths: tuple[int, int, int, int], bottleneck: bool) -> tuple[nn.Sequential, int]:
    """Stem and the four stages (output stride 32), and the channels they end with."""
    layers: list[nn.Module] = [_cbr(3, 64, 7, 2), nn.MaxPool2d(3, 2, 1)]
    in_ch = 64
    for stage, (width, depth) in enumerate(zip((64, 128, 256, 512), depths, strict=True)):
        for i in range(depth):
            block = _res_block(in_ch, width, 2 if stage > 0 and i == 0 else 1, bottleneck)
            layers.append(block)
            in_ch = width * 4 if bottleneck else width
    return nn.Sequential(*layers), in_ch


def resnet(depths: tuple[int, int, int, int], bottleneck: bool) -> nn.Module:
    features, channels = resnet_features(depths, bottleneck)
    return nn.Sequential(features, _classifier(channels))


def fcn_resnet18(num_classes: int = 21) -> nn.Module:
    """jetson-inference's FCN-ResNet18: ResNet-18 (no dilation) + FCN head, stride-32 logits."""
    features, channels = resnet_features((2, 2, 2, 2), bottleneck=False)
    head = nn.Sequential(_cbr(channels, 128, 3), nn.Dropout(0.1), nn.Conv2d(128, num_classes, 1))
    return nn.Sequential(features, head)


# ----- VGG, AlexNet, SqueezeNet ---------------------------------------------------------------------
def vgg(convs_per_stage: tuple[int, ...]) -> nn.Module:
    layers: list[nn.Module] = []
    in_ch = 3
    for width, n in zip((64, 128, 256, 512, 512), convs_per_stage, strict=True):
        for _ in range(n):
            layers += [nn.Conv2d(in_ch, width, 3, padding=1), nn.ReLU()]
            in_ch = width
        layers.append(nn.MaxPool2d(2))
    fc = [nn.Flatten(), nn.Linear(512 * 49, 4096), nn.ReLU(), nn.Linear(4096, 4096), nn.ReLU(), nn.Linear(4096, 1000)]
    return nn.Sequential(*layers, nn.AdaptiveAvgPool2d(7), *fc)


def alexnet() -> nn.Module:
    convs = [(3, 64, 11, 4, 2), (64, 192, 5, 1, 2), (192, 384, 3, 1, 1), (384, 256, 3, 1, 1), (256, 256, 3, 1, 1)]
    layers: list[nn.Module] = []
    for i, (cin, cout, k, s, p) in enumerate(convs):
        layers += [nn.Conv2d(cin, cout, k, s, p), nn.ReLU()]
        if i in (0, 1, 4):
            layers.append(nn.MaxPool2d(3, 2))
    fc = [nn.Flatten(), nn.Linear(256 * 36, 4096), nn.ReLU(), nn.Linear(4096, 4096), nn.ReLU(), nn.Linear(4096, 1000)]
    return nn.Sequential(*layers, nn.AdaptiveAvgPool2d(6), *fc)


class _Fire(nn.Module):
    def __init__(self, in_ch: int, squeeze: int, expand: int) -> None:
        super().__init__()
        self.squeeze = nn.Sequential(nn.Conv2d(in_ch, squeeze, 1), nn.ReLU())
        self.expand1 = nn.Sequential(nn.Conv2d(squeeze, expand, 1), nn.ReLU())
        self.expand3 = nn.Sequential(nn.Conv2d(squeeze, expand, 3, padding=1), nn.ReLU())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = self.squeeze(x)
        return torch.cat([self.expand1(s), self.expand3(s)], 1)


def squeezenet(version: str) -> nn.Module:
    pool = lambda: nn.MaxPool2d(3, 2, ceil_mode=True)  # noqa: E731
    fires = [(16, 64), (16, 64), (32, 128), (32, 128), (48, 192), (48, 192), (64, 256), (64, 256)]
    if version == "1_0":
        layers: list[nn.Module] = [nn.Conv2d(3, 96, 7, 2), nn.ReLU(), pool()]
        in_ch, pool_after = 96, (2, 6)
    else:
        layers = [nn.Conv2d(3, 64, 3, 2), nn.ReLU(), pool()]
        in_ch, pool_after = 64, (1, 3)
    for i, (sq, ex) in enumerate(fires):
        layers.append(_Fire(in_ch, sq, ex))
        in_ch = 2 * ex
        if i in pool_after:
            layers.append(pool())
    head = [nn.Dropout(0.5), nn.Conv2d(512, 1000, 1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten()]
    return nn.Sequential(*layers, *head)


# ----- MobileNetV2 / V3 ---------------------------------------------------------------------------
def _divisible(value: float, divisor: int = 8) -> int:
    rounded = max(divisor, int(value + divisor / 2) // divisor * divisor)
    return rounded + divisor if rounded < 0.9 * value else rounded


class _SqueezeExcite(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        mid = _divisible(channels / 4)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Sequential(nn.Conv2d(channels, mid, 1), nn.ReLU(), nn.Conv2d(mid, channels, 1), nn.Hardsigmoid())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.fc(self.pool(x))


class _InvertedResidual(nn.Module):
    def __init__(
        self, in_ch: int, expanded: int, out_ch: int, kernel: int, stride: int, act: type[nn.Module], se: bool = False
    ) -> None:
        super().__init__()
        layers: list[nn.Module] = [] if expanded == in_ch else [_cbr(in_ch, expanded, 1, act=act)]
        layers.append(_cbr(expanded, expanded, kernel, stride, groups=expanded, act=act))
        if se:
            layers.append(_SqueezeExcite(expanded))
        layers.append(_cbr(expanded, out_ch, 1, act=None))
        self.body = nn.Sequential(*layers)
        self.residual = stride == 1 and in_ch == out_ch

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x) if self.residual else self.body(x)


def mobilenet_v2() -> nn.Module:
    layers: list[nn.Module] = [_cbr(3, 32, 3, 2, act=nn.ReLU6)]
    in_ch = 32
    for t, c, n, s in (
        (1, 16, 1, 1),
        (6, 24, 2, 2),
        (6, 32, 3, 2),
        (6, 64, 4, 2),
        (6, 96, 3, 1),
        (6, 160, 3, 2),
        (6, 320, 1, 1),
    ):
        for i in range(n):
            layers.append(_InvertedResidual(in_ch, in_ch * t, c, 3, s if i == 0 else 1, nn.ReLU6))
            in_ch = c
    layers.append(_cbr(in_ch, 1280, 1, act=nn.ReLU6))
    return nn.Sequential(*layers, _classifier(1280))


# (kernel, expanded, out, squeeze-excite, hard-swish, stride)
_MNV3_LARGE = [
    (3, 16, 16, 0, 0, 1),
    (3, 64, 24, 0, 0, 2),
    (3, 72, 24, 0, 0, 1),
    (5, 72, 40, 1, 0, 2),
    (5, 120, 40, 1, 0, 1),
    (5, 120, 40, 1, 0, 1),
    (3, 240, 80, 0, 1, 2),
    (3, 200, 80, 0, 1, 1),
    (3, 184, 80, 0, 1, 1),
    (3, 184, 80, 0, 1, 1),
    (3, 480, 112, 1, 1, 1),
    (3, 672, 112, 1, 1, 1),
    (5, 672, 160, 1, 1, 2),
    (5, 960, 160, 1, 1, 1),
    (5, 960, 160, 1, 1, 1),
]
_MNV3_SMALL = [
    (3, 16, 16, 1, 0, 2),
    (3, 72, 24, 0, 0, 2),
    (3, 88, 24, 0, 0, 1),
    (5, 96, 40, 1, 1, 2),
    (5, 240, 40, 1, 1, 1),
    (5, 240, 40, 1, 1, 1),
    (5, 120, 48, 1, 1, 1),
    (5, 144, 48, 1, 1, 1),
    (5, 288, 96, 1, 1, 2),
    (5, 576, 96, 1, 1, 1),
    (5, 576, 96, 1, 1, 1),
]


def mobilenet_v3(large: bool) -> nn.Module:
    config, last, hidden = (_MNV3_LARGE, 960, 1280) if large else (_MNV3_SMALL, 576, 1024)
    layers: list[nn.Module] = [_cbr(3, 16, 3, 2, act=nn.Hardswish)]
    in_ch = 16
    for kernel, expanded, out_ch, se, hs, stride in config:
        act = nn.Hardswish if hs else nn.ReLU
        layers.append(_InvertedResidual(in_ch, expanded, out_ch, kernel, stride, act, bool(se)))
        in_ch = out_ch
    layers.append(_cbr(in_ch, last, 1, act=nn.Hardswish))
    return nn.Sequential(*layers, _classifier(last, hidden, nn.Hardswish))


# ----- ShuffleNetV2 -------------------------------------------------------------------------------
class _ShuffleUnit(nn.Module):
    def __init__(self, in_ch: int, out_ch: int, stride: int) -> None:
        super().__init__()
        half = out_ch // 2
        self.stride = stride
        branch_in = in_ch if stride > 1 else half
        self.branch2 = nn.Sequential(
            _cbr(branch_in, half, 1), _cbr(half, half, 3, stride, groups=half, act=None), _cbr(half, half, 1)
        )
        self.branch1 = (
            nn.Sequential(_cbr(in_ch, in_ch, 3, stride, groups=in_ch, act=None), _cbr(in_ch, half, 1))
            if stride > 1
            else None
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.branch1 is None:
            keep, x2 = x.chunk(2, dim=1)
            out = torch.cat([keep, self.branch2(x2)], 1)
        else:
            out = torch.cat([self.branch1(x), self.branch2(x)], 1)
        return channel_shuffle(out, 2)


_SHUFFLE_WIDTHS = {
    "0.5": (48, 96, 192, 1024),
    "1.0": (116, 232, 464, 1024),
    "1.5": (176, 352, 704, 1024),
    "2.0": (244, 488, 976, 2048),
}


def shufflenet_v2(width: str) -> nn.Module:
    *stages, last = _SHUFFLE_WIDTHS[width]
    layers: list[nn.Module] = [_cbr(3, 24, 3, 2), nn.MaxPool2d(3, 2, 1)]
    in_ch = 24
    for out_ch, repeats in zip(stages, (4, 8, 4), strict=True):
        for i in range(repeats):
            layers.append(_ShuffleUnit(in_ch, out_ch, 2 if i == 0 else 1))
            in_ch = out_ch
    layers.append(_cbr(in_ch, last, 1))
    return nn.Sequential(*layers, _classifier(last))


# ----- ResNeXt, SE-ResNet (mmcls) --------------------------------------------------------------
class _Bottleneck(nn.Module):
    """ResNet-50-style bottleneck with optional grouping (ResNeXt), squeeze-excitation and dilation."""

    def __init__(
        self, in_ch: int, mid: int, out_ch: int, stride: int, groups: int = 1, se: bool = False, dilation: int = 1
    ) -> None:
        super().__init__()
        self.body = nn.Sequential(
            _cbr(in_ch, mid, 1),
            nn.Conv2d(mid, mid, 3, stride, dilation, dilation=dilation, groups=groups, bias=False),
            nn.BatchNorm2d(mid),
            nn.ReLU(),
            _cbr(mid, out_ch, 1, act=None),
        )
        # mmcls' SE layer: ratio 16, 1x1 convolutions with bias, ReLU then sigmoid.
        self.se = (
            nn.Sequential(
                nn.AdaptiveAvgPool2d(1),
                nn.Conv2d(out_ch, out_ch // 16, 1),
                nn.ReLU(),
                nn.Conv2d(out_ch // 16, out_ch, 1),
                nn.Sigmoid(),
            )
            if se
            else None
        )
        self.shortcut = _cbr(in_ch, out_ch, 1, stride, act=None) if stride != 1 or in_ch != out_ch else nn.Identity()
        self.act = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.body(x)
        if self.se is not None:
            out = out * self.se(out)
        return self.act(out + self.shortcut(x))


def _bottleneck_stages(
    in_ch: int,
    mids: tuple[int, ...],
    strides: tuple[int, ...],
    dilations: tuple[int, ...],
    depths: tuple[int, ...],
    groups: int = 1,
    se: bool = False,
) -> tuple[list[nn.Sequential], int]:
    """The four bottleneck stages; a dilated stage's first block takes half its dilation (mmseg's contract_dilation)."""
    stages = []
    for stage, (mid, stride, dilation, depth) in enumerate(zip(mids, strides, dilations, depths, strict=True)):
        out_ch = 256 * 2**stage
        blocks = []
        for i in range(depth):
            first = dilation // 2 if dilation > 1 else 1
            blocks.append(
                _Bottleneck(in_ch, mid, out_ch, stride if i == 0 else 1, groups, se, first if i == 0 else dilation)
            )
            in_ch = out_ch
        stages.append(nn.Sequential(*blocks))
    return stages, in_ch


def resnet50_variant(groups: int = 1, se: bool = False) -> nn.Module:
    """ResNet-50 (mmcls), ResNeXt-50 32x4d (grouped 3x3, twice as wide) or SE-ResNet-50."""
    mids = (128, 256, 512, 1024) if groups > 1 else (64, 128, 256, 512)
    stages, channels = _bottleneck_stages(64, mids, (1, 2, 2, 2), (1, 1, 1, 1), (3, 4, 6, 3), groups, se)
    return nn.Sequential(_cbr(3, 64, 7, 2), nn.MaxPool2d(3, 2, 1), *stages, _classifier(channels))


# ----- mmsegmentation R50-D8 segmentors -------------------------------------------------------------
class _R50D8Segmentor(nn.Module):
    """ResNetV1c-50 (three-conv stem) at output stride 8 (stages 3 and 4 dilated 2 and 4), a decode head,
    and the logits resized to the input as mmseg's encode_decode does; no auxiliary head (inference)."""

    def __init__(self, head: str, num_classes: int = 19) -> None:
        super().__init__()
        self.stem = nn.Sequential(_cbr(3, 32, 3, 2), _cbr(32, 32, 3), _cbr(32, 64, 3), nn.MaxPool2d(3, 2, 1))
        stages, _ = _bottleneck_stages(64, (64, 128, 256, 512), (1, 2, 1, 1), (1, 1, 2, 4), (3, 4, 6, 3))
        self.stages = nn.ModuleList(stages)
        self.head_name = head
        if head == "fcn":  # two 3x3 convs, the input concatenated back, a 3x3 fuse
            self.convs = nn.Sequential(_cbr(2048, 512, 3), _cbr(512, 512, 3))
            self.fuse = _cbr(2048 + 512, 512, 3)
        elif head == "psp":  # pyramid pooling at bins 1, 2, 3, 6
            self.bins = nn.ModuleList(nn.Sequential(nn.AdaptiveAvgPool2d(b), _cbr(2048, 512, 1)) for b in (1, 2, 3, 6))
            self.fuse = _cbr(2048 + 4 * 512, 512, 3)
        else:  # deeplabv3plus: depthwise-separable ASPP at rates 12/24/36, a stride-4 skip of 48 channels
            self.image_pool = nn.Sequential(nn.AdaptiveAvgPool2d(1), _cbr(2048, 512, 1))
            self.aspp = nn.ModuleList([_cbr(2048, 512, 1)] + [_sep(2048, 512, rate) for rate in (12, 24, 36)])
            self.bottleneck = _cbr(5 * 512, 512, 3)
            self.skip = _cbr(256, 48, 1)
            self.fuse = nn.Sequential(_sep(512 + 48, 512, 1), _sep(512, 512, 1))
        self.classify = nn.Sequential(nn.Dropout(0.1), nn.Conv2d(512, num_classes, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        size = x.shape[-2:]
        x = self.stem(x)
        c1 = x = self.stages[0](x)
        for stage in self.stages[1:]:
            x = stage(x)
        up = lambda t, hw: nn.functional.interpolate(t, size=hw, mode="bilinear", align_corners=False)  # noqa: E731
        if self.head_name == "fcn":
            y = self.fuse(torch.cat([x, self.convs(x)], 1))
        elif self.head_name == "psp":
            y = self.fuse(torch.cat([x] + [up(b(x), x.shape[-2:]) for b in self.bins], 1))
        else:
            y = torch.cat([up(self.image_pool(x), x.shape[-2:])] + [m(x) for m in self.aspp], 1)
            y = up(self.bottleneck(y), c1.shape[-2:])
            y = self.fuse(torch.cat([self.skip(c1), y], 1))
        return up(self.classify(y), size)


def _sep(in_ch: int, out_ch: int, dilation: int) -> nn.Sequential:
    """mmcv's depthwise-separable conv module: depthwise 3x3 (dilated) + BN + ReLU, pointwise + BN + ReLU."""
    return nn.Sequential(
        nn.Conv2d(in_ch, in_ch, 3, 1, dilation, dilation=dilation, groups=in_ch, bias=False),
        nn.BatchNorm2d(in_ch),
        nn.ReLU(),
        _cbr(in_ch, out_ch, 1),
    )


# ----- YOLOv8 detectors (Ultralytics), as trtutils' engines run them ---------------------------------
def _conv_silu(in_ch: int, out_ch: int, kernel: int = 1, stride: int = 1) -> nn.Sequential:
    """Ultralytics' Conv: convolution (no bias), BN, SiLU."""
    return _cbr(in_ch, out_ch, kernel, stride, act=nn.SiLU)


class _YoloBottleneck(nn.Module):
    def __init__(self, channels: int, shortcut: bool) -> None:
        super().__init__()
        self.body = nn.Sequential(_conv_silu(channels, channels, 3), _conv_silu(channels, channels, 3))
        self.shortcut = shortcut

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x) if self.shortcut else self.body(x)


class _C2f(nn.Module):
    """C2f: a 1x1 to 2c channels, n bottlenecks on its second half, every output concatenated, a 1x1.

    Written as the end-to-end ONNX export has it (the whole first 1x1 output enters the concatenation,
    the bottlenecks read a slice of it), which is Ultralytics' split-and-concatenate channel for channel."""

    def __init__(self, in_ch: int, out_ch: int, n: int, shortcut: bool) -> None:
        super().__init__()
        self.c = out_ch // 2
        self.cv1 = _conv_silu(in_ch, 2 * self.c)
        self.m = nn.ModuleList(_YoloBottleneck(self.c, shortcut) for _ in range(n))
        self.cv2 = _conv_silu((2 + n) * self.c, out_ch)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        first = self.cv1(x)
        outs = [first]
        last = first[:, self.c :]
        for block in self.m:
            last = block(last)
            outs.append(last)
        return self.cv2(torch.cat(outs, 1))


class _SPPF(nn.Module):
    def __init__(self, in_ch: int, out_ch: int) -> None:
        super().__init__()
        self.cv1 = _conv_silu(in_ch, in_ch // 2)
        self.pool = nn.MaxPool2d(5, 1, 2)
        self.cv2 = _conv_silu(in_ch // 2 * 4, out_ch)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        ys = [self.cv1(x)]
        for _ in range(3):
            ys.append(self.pool(ys[-1]))
        return self.cv2(torch.cat(ys, 1))


class _YoloV8(nn.Module):
    """YOLOv8 detection (Ultralytics' v8 layer graph, 80 classes) with the post-processing its end-to-end
    engine runs: per level the box (4 x 16 DFL bins) and class branches concatenated, the three levels
    flattened and concatenated (8400 anchors at 640), sigmoid class scores, the DFL softmax and expectation,
    the anchor decode, and EfficientNMS, costed as one pass over the class scores (the plugin's sort and
    suppression of at most 100 boxes are not modelled). Anchor grids are constants TensorRT folds: shapes only.
    """

    dfl_bins: torch.Tensor  # the DFL expectation's bin values 0..15 (a buffer)

    def __init__(self, depth: float, width: float, max_channels: int, num_classes: int = 80) -> None:
        super().__init__()

        def ch(c: int) -> int:
            return math.ceil(min(c, max_channels) * width / 8) * 8

        def rep(n: int) -> int:
            return max(round(n * depth), 1)

        c1, c2, c3, c4, c5 = ch(64), ch(128), ch(256), ch(512), ch(1024)
        self.stem = nn.Sequential(_conv_silu(3, c1, 3, 2), _conv_silu(c1, c2, 3, 2), _C2f(c2, c2, rep(3), True))
        self.p3 = nn.Sequential(_conv_silu(c2, c3, 3, 2), _C2f(c3, c3, rep(6), True))
        self.p4 = nn.Sequential(_conv_silu(c3, c4, 3, 2), _C2f(c4, c4, rep(6), True))
        self.p5 = nn.Sequential(_conv_silu(c4, c5, 3, 2), _C2f(c5, c5, rep(3), True), _SPPF(c5, c5))
        self.up = nn.Upsample(scale_factor=2.0, mode="nearest")
        self.top_down4 = _C2f(c5 + c4, c4, rep(3), False)
        self.top_down3 = _C2f(c4 + c3, c3, rep(3), False)
        self.down3 = _conv_silu(c3, c3, 3, 2)
        self.bottom_up4 = _C2f(c3 + c4, c4, rep(3), False)
        self.down4 = _conv_silu(c4, c4, 3, 2)
        self.bottom_up5 = _C2f(c4 + c5, c5, rep(3), False)
        self.reg_max, self.num_classes = 16, num_classes
        box_ch, cls_ch = max(16, c3 // 4, 4 * self.reg_max), max(c3, min(num_classes, 100))
        self.box = nn.ModuleList(
            nn.Sequential(
                _conv_silu(c, box_ch, 3), _conv_silu(box_ch, box_ch, 3), nn.Conv2d(box_ch, 4 * self.reg_max, 1)
            )
            for c in (c3, c4, c5)
        )
        self.cls = nn.ModuleList(
            nn.Sequential(_conv_silu(c, cls_ch, 3), _conv_silu(cls_ch, cls_ch, 3), nn.Conv2d(cls_ch, num_classes, 1))
            for c in (c3, c4, c5)
        )
        self.register_buffer("dfl_bins", torch.arange(self.reg_max, dtype=torch.float32))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        p3 = self.p3(self.stem(x))
        p4 = self.p4(p3)
        p5 = self.p5(p4)
        n4 = self.top_down4(torch.cat([self.up(p5), p4], 1))
        n3 = self.top_down3(torch.cat([self.up(n4), p3], 1))
        n4 = self.bottom_up4(torch.cat([self.down3(n3), n4], 1))
        n5 = self.bottom_up5(torch.cat([self.down4(n4), p5], 1))
        levels = [torch.cat([box(f), cls(f)], 1) for f, box, cls in zip((n3, n4, n5), self.box, self.cls, strict=True)]
        y = torch.cat([level.flatten(2) for level in levels], 2)  # 1 x (64 + classes) x anchors
        anchors = y.shape[2]
        boxes, scores = y[:, : 4 * self.reg_max], y[:, 4 * self.reg_max :].sigmoid()
        bins = boxes.view(1, 4, self.reg_max, anchors).permute(0, 1, 3, 2).softmax(-1)
        dist = bins @ self.dfl_bins  # 1 x 4 x anchors
        grid, stride = y.new_zeros((1, 4, anchors)), y.new_zeros((1, 1, anchors))  # folded constants
        decoded = (grid + torch.cat([-dist[:, :2], dist[:, 2:]], 1)) * stride
        best = scores.transpose(1, 2).amax(-1)  # EfficientNMS: one pass over the scores
        return torch.cat([decoded, best.unsqueeze(1)], 1)


REFERENCE_NETS: dict[str, Callable[[], nn.Module]] = {
    "resnet18": lambda: resnet((2, 2, 2, 2), bottleneck=False),
    "resnet34": lambda: resnet((3, 4, 6, 3), bottleneck=False),
    "resnet50": lambda: resnet((3, 4, 6, 3), bottleneck=True),
    "resnet101": lambda: resnet((3, 4, 23, 3), bottleneck=True),
    "resnet152": lambda: resnet((3, 8, 36, 3), bottleneck=True),
    "fcn-resnet18": fcn_resnet18,
    "vgg11": lambda: vgg((1, 1, 2, 2, 2)),
    "vgg13": lambda: vgg((2, 2, 2, 2, 2)),
    "vgg16": lambda: vgg((2, 2, 3, 3, 3)),
    "vgg19": lambda: vgg((2, 2, 4, 4, 4)),
    "alexnet": alexnet,
    "squeezenet1_0": lambda: squeezenet("1_0"),
    "squeezenet1_1": lambda: squeezenet("1_1"),
    "mobilenet_v2": mobilenet_v2,
    "mobilenet_v3_small": lambda: mobilenet_v3(large=False),
    "mobilenet_v3_large": lambda: mobilenet_v3(large=True),
    **{f"shufflenet_v2_x{w}": functools.partial(shufflenet_v2, w) for w in _SHUFFLE_WIDTHS},
    "resnext50_32x4d": lambda: resnet50_variant(groups=32),
    "se_resnet50": lambda: resnet50_variant(se=True),
    "fcn_r50-d8": lambda: _R50D8Segmentor("fcn"),
    "pspnet_r50-d8": lambda: _R50D8Segmentor("psp"),
    "deeplabv3plus_r50-d8": lambda: _R50D8Segmentor("deeplabv3plus"),
    "yolov8n": lambda: _YoloV8(0.33, 0.25, 1024),
    "yolov8s": lambda: _YoloV8(0.33, 0.50, 1024),
    "yolov8m": lambda: _YoloV8(0.67, 0.75, 768),
}


def reference_net(name: str) -> nn.Module:
    """A reference network by name (see ``REFERENCE_NETS``)."""
    from nasseg.errors import ConfigError

    if name not in REFERENCE_NETS:
        raise ConfigError(f"no reference network {name!r}; known: {', '.join(REFERENCE_NETS)}")
    return REFERENCE_NETS[name]()
