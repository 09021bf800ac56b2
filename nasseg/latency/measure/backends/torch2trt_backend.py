"""TensorRT through torch2trt, as the papers measured: engine execute + sync, timed with CUDA events.

torch2trt is not on PyPI; on the board install it from its repository (NVIDIA-AI-IOT/torch2trt).
"""

from __future__ import annotations

import copy
import importlib

import torch
from torch import nn

from nasseg.errors import BackendUnavailable
from nasseg.latency.measure.backends.parity import check_parity
from nasseg.latency.measure.backends.torch_backend import cuda_timer
from nasseg.latency.measure.device import jetson_model, power_mode, software_versions
from nasseg.latency.result import LatencyResult
from nasseg.latency.targets import Target
from nasseg.latency.timing import TimingSettings, time_repeatedly


def _torch2trt():
    try:
        return importlib.import_module("torch2trt").torch2trt
    except ImportError:
        raise BackendUnavailable(
            "torch2trt", "the torch2trt package (not on PyPI: install it on the board from NVIDIA-AI-IOT/torch2trt)"
        ) from None


def measure(
    model: nn.Module, input_hw: tuple[int, int], target: Target, precision: str, settings: TimingSettings
) -> LatencyResult:
    convert = _torch2trt()
    if not torch.cuda.is_available():
        raise BackendUnavailable("torch2trt", f"a CUDA device for target {target.name}")
    if precision not in ("fp16", "fp32"):
        raise BackendUnavailable("torch2trt", f"an INT8 calibration for {precision}, which nasseg does not build yet")
    net = copy.deepcopy(model).eval().float().cuda()
    x = torch.randn(1, 3, *input_hw, device="cuda", generator=torch.Generator("cuda").manual_seed(0))
    with torch.no_grad():
        engine = convert(net, [x], fp16_mode=precision == "fp16")
        parity = check_parity(net(x).cpu().numpy(), engine(x).float().cpu().numpy(), "torch2trt")
        stats = time_repeatedly(cuda_timer(engine, x), settings)
    return LatencyResult.measured(
        stats,
        target=target.name,
        input_hw=input_hw,
        precision=precision,
        backend="torch2trt",
        device=jetson_model() or torch.cuda.get_device_name(),
        timed="engine execute + sync (torch2trt, CUDA events)",
        power_mode=power_mode(),
        versions=software_versions("torch2trt", "tensorrt"),
        extra=parity,
    )
