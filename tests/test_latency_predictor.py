"""The latency predictor on real modules: what each layer costs, fusion, and errors by name."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from nasseg.errors import CalibrationError, NassegError, UnsupportedLayer, UntraceableModel
from nasseg.latency import estimate
from nasseg.latency.predict.calibration import find_calibration
from nasseg.latency.predict.costs import layers_of
from nasseg.latency.predict.graph import trace
from nasseg.latency.targets import target_names
from nasseg.models import build
from nasseg.spaces import all_spaces

TARGET = "jetson-agx-xavier"


def _only_conv(conv: nn.Conv2d, hw: tuple[int, int]) -> list:
    return [
        layer for layer in layers_of(trace(conv, hw, conv.in_channels), 2.0, False) if layer.op.endswith("convolution")
    ]


@pytest.mark.parametrize(
    ("conv", "op_class", "macs_per_output"),
    [
        (nn.Conv2d(16, 32, 3, padding=1), "conv", 16 * 9),
        (nn.Conv2d(16, 32, 1), "conv1x1", 16),
        (nn.Conv2d(16, 32, 3, padding=2, dilation=2), "conv_dilated", 16 * 9),
        (nn.Conv2d(16, 32, (3, 1), padding=(1, 0)), "conv_asym", 16 * 3),
        (nn.Conv2d(16, 32, 3, padding=1, groups=4), "conv_grouped", 4 * 9),
        (nn.Conv2d(16, 16, 5, padding=2, groups=16), "conv_depthwise", 25),
    ],
)
def test_each_convolution_gets_its_class_and_exact_arithmetic(
    conv: nn.Conv2d, op_class: str, macs_per_output: int
) -> None:
    (layer,) = _only_conv(conv, (20, 24))
    assert layer.op_class == op_class
    assert layer.flops == 2 * conv.out_channels * 20 * 24 * macs_per_output
    weights = conv.weight.numel() + conv.bias.numel()
    assert layer.bytes == 2.0 * (conv.in_channels * 20 * 24 + conv.out_channels * 20 * 24 + weights)


def test_estimate_is_the_roofline_of_the_calibration() -> None:
    """One dilated conv: the estimate is exactly what the cost model says for its class."""
    cal = find_calibration(TARGET)
    conv = nn.Conv2d(3, 64, 3, padding=2, dilation=2, bias=False)
    result = estimate(conv, (128, 256), TARGET)
    flops = 2 * 64 * 128 * 256 * 3 * 9
    bytes_ = 2 * (3 * 128 * 256 + 64 * 128 * 256 + conv.weight.numel())
    compute = flops / (cal.cuda_core_flops * cal.efficiency["conv_dilated"])  # dilated: no tensor cores
    memory = bytes_ / (cal.bandwidth * cal.memory_efficiency)
    combined = compute + memory if "no_overlap" in cal.effects else max(compute, memory)  # the calibration's rule
    expected = combined * 1e3 + cal.layer_overhead_ms + cal.fixed_overhead_ms
    assert result.median_ms == pytest.approx(expected, rel=1e-9)
    assert result.kind == "estimated" and result.calibration == cal.id and result.predictor


def test_dilation_and_grouping_change_cost_as_the_target_runs_them() -> None:
    dilated = estimate(nn.Conv2d(64, 64, 3, padding=2, dilation=2), (128, 128), TARGET, in_channels=64).median_ms
    plain64 = estimate(nn.Conv2d(64, 64, 3, padding=1), (128, 128), TARGET, in_channels=64).median_ms
    # 32 channels per group: whole output tiles (tile32), so only the grouped kernels' own efficiency differs.
    grouped = estimate(nn.Conv2d(256, 256, 3, padding=1, groups=8), (128, 128), TARGET, in_channels=256).median_ms
    plain256 = estimate(nn.Conv2d(256, 256, 3, padding=1), (128, 128), TARGET, in_channels=256).median_ms
    assert dilated > plain64  # same MACs, but on CUDA cores instead of tensor cores
    assert grouped < plain256  # an eighth of the MACs, at a lower efficiency (ResNeXt's 1.6x on the Nano)


def test_more_work_costs_more() -> None:
    def net(width: int, depth: int) -> nn.Module:
        layers = [nn.Conv2d(3, width, 3, padding=1), nn.BatchNorm2d(width), nn.ReLU()]
        for _ in range(depth):
            layers += [nn.Conv2d(width, width, 3, padding=1), nn.BatchNorm2d(width), nn.ReLU()]
        return nn.Sequential(*layers)

    for target in ("jetson-nano", "jetson-agx-orin"):
        base = estimate(net(32, 2), (256, 256), target).median_ms
        assert estimate(net(64, 2), (256, 256), target).median_ms > base
        assert estimate(net(32, 4), (256, 256), target).median_ms > base
        assert estimate(net(32, 2), (512, 512), target).median_ms > base
    # A slower board takes longer for the same network.
    assert (
        estimate(net(32, 2), (256, 256), "jetson-nano").median_ms
        > estimate(net(32, 2), (256, 256), "jetson-agx-orin").median_ms
    )


class _Mixed(nn.Module):
    """Pooling, resize, concat, channel shuffle, element-wise and attention in one graph."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 16, 3, padding=1)
        self.bn = nn.BatchNorm2d(16)
        self.qkv = nn.Linear(16, 48)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.relu(self.bn(self.conv(x)))
        pooled = F.avg_pool2d(y, 2)
        up = F.interpolate(pooled, size=y.shape[-2:], mode="bilinear", align_corners=False)
        z = torch.cat([y, up], 1)
        n, c, h, w = z.shape
        z = z.view(n, 2, c // 2, h, w).transpose(1, 2).reshape(n, c, h, w)
        tokens = z[:, :16].flatten(2).transpose(1, 2)
        q, k, v = self.qkv(tokens).chunk(3, -1)
        return F.scaled_dot_product_attention(q, k, v)


def test_every_op_kind_is_costed_and_fusion_follows_the_runtime() -> None:
    nodes = trace(_Mixed(), (16, 16))
    eager = layers_of(nodes, 4.0, fuse_pointwise=False)
    classes = {layer.op_class for layer in eager}
    assert {"conv", "elementwise", "pool", "resize", "copy", "matmul"} <= classes
    assert not any(layer.fused for layer in eager)
    fused = layers_of(nodes, 4.0, fuse_pointwise=True)
    # BN and ReLU after the conv, and the bias add after the qkv product, run inside those
    # kernels under TensorRT; nothing else is fused.
    assert [layer.op for layer in fused if layer.fused] == ["aten.native_batch_norm", "aten.relu", "aten.add"]
    matmul_flops = sum(layer.flops for layer in eager if layer.op_class == "matmul")
    tokens = 16 * 16
    # qkv projection + QK^T + PV (however SDPA is decomposed)
    assert matmul_flops == 2 * tokens * 16 * 48 + 2 * tokens * tokens * 16 * 2


def test_unknown_operator_is_reported_by_name_never_zero() -> None:
    class Spectral(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.proj = nn.Conv2d(3, 4, 1)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.fft.rfft2(self.proj(x)).abs()

    with pytest.raises(UnsupportedLayer, match=r"aten\._fft_r2c.*Spectral"):
        estimate(Spectral(), (32, 32), TARGET)


def test_untraceable_model_is_reported_with_the_failing_layer() -> None:
    class Gate(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x * 2 if x.sum().item() > 0 else x

    model = nn.Sequential(nn.Conv2d(3, 4, 1), Gate())
    with pytest.raises(UntraceableModel, match=r"cannot trace Sequential.*layer 1 \(Gate\)"):
        estimate(model, (32, 32), TARGET)


def test_tracing_leaves_the_model_as_it_was() -> None:
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4)).train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    estimate(model, (64, 64), TARGET)
    assert model.training
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert not nn.modules.module._global_forward_hooks and not nn.modules.module._global_forward_pre_hooks


def test_bad_targets_and_calibrations_are_named() -> None:
    with pytest.raises(CalibrationError, match="nasseg calibrate --target cuda"):
        estimate(nn.Conv2d(3, 4, 1), (8, 8), "cuda")
    with pytest.raises(NassegError, match="jetson-nano"):
        estimate(nn.Conv2d(3, 4, 1), (8, 8), "jetson-nano", calibration="no-such-calibration")


def test_every_jetson_has_a_calibration_named_in_its_estimates() -> None:
    model = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.ReLU())
    for target in target_names():
        if not target.startswith("jetson"):
            continue
        result = estimate(model, (64, 64), target)
        assert result.calibration.startswith(target) and result.precision == "fp16"
        assert math.isfinite(result.median_ms) and result.median_ms > 0
        assert "estimated" in result.label()


def test_a_host_estimate_names_the_cpu_its_calibration_was_fitted_on() -> None:
    # Host timings do not transfer between CPUs: the label must say whose CPU the fit describes.
    result = estimate(nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.ReLU()), (64, 64), "host-cpu")
    fitted_on = find_calibration("host-cpu", None, None).fitted_on["device"]
    assert result.extra["calibrated_on"] == fitted_on
    assert f"fitted on {fitted_on}" in result.label()
    assert (
        "calibrated_on" not in estimate(nn.Conv2d(3, 4, 1), (8, 8), "jetson-nano").extra
    )  # published points: no one device


def test_a_baseline_of_every_landed_family_is_costed() -> None:
    for space in all_spaces():
        name = next(iter(space.baselines))
        result = estimate(build(space.baseline(name)), tuple(space.spec.search_input), "jetson-xavier-nx")
        assert result.median_ms > 0, name
        assert result.extra["kernels"] > 5, name
