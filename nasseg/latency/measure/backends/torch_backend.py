"""PyTorch eager on the host CPU (wall clock) or a CUDA GPU (CUDA events after a synchronise)."""

from __future__ import annotations

import copy
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext

import torch
from torch import nn

from nasseg.errors import BackendUnavailable
from nasseg.latency.measure.device import cpu_device, jetson_model, power_mode, software_versions
from nasseg.latency.result import LatencyResult
from nasseg.latency.targets import Target
from nasseg.latency.timing import TimingSettings, cpu_conditions, fixed_threads, host_clock, time_repeatedly

_DTYPES = {"fp32": torch.float32, "fp16": torch.float16}


def _device_for(target: Target) -> torch.device:
    if target.kind == "host-cpu":
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise BackendUnavailable(
            "torch", f"a CUDA device for target {target.name} (torch.cuda.is_available() is False)"
        )
    return torch.device("cuda")


def cpu_timer(model: nn.Module, x: torch.Tensor, clock: Callable[[], float]) -> Callable[[], float]:
    def run_once() -> float:
        start = clock()
        model(x)
        return (clock() - start) * 1e3

    return run_once


def cuda_timer(model: nn.Module, x: torch.Tensor) -> Callable[[], float]:
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)

    def run_once() -> float:
        torch.cuda.synchronize()
        start.record()
        model(x)
        end.record()
        end.synchronize()
        return start.elapsed_time(end)

    return run_once


def measure(
    model: nn.Module, input_hw: tuple[int, int], target: Target, precision: str, settings: TimingSettings
) -> LatencyResult:
    if precision not in _DTYPES:
        raise BackendUnavailable("torch", f"TensorRT for {precision} (PyTorch eager runs fp32 and fp16)")
    device = _device_for(target)
    # A copy, so the caller's model keeps its device, dtype and training mode.
    net = copy.deepcopy(model).eval().to(device=device, dtype=_DTYPES[precision])
    x = torch.randn(1, 3, *input_hw, device=device, dtype=_DTYPES[precision])
    threads = settings.threads
    clock, clock_name = host_clock(threads)
    on_cpu = device.type == "cpu"
    timer = cpu_timer(net, x, clock) if on_cpu else cuda_timer(net, x)
    # CUDA has a caching allocator and flushes denormals in its own kernels; the CPU needs both set up.
    conditions: AbstractContextManager[dict[str, str]] = cpu_conditions() if on_cpu else nullcontext({})
    with fixed_threads(threads), torch.inference_mode(), conditions as host:
        stats = time_repeatedly(timer, settings)
    if on_cpu:
        device_name, timed = cpu_device(threads), f"forward, {clock_name}"
    else:
        device_name = jetson_model() or torch.cuda.get_device_name(device)
        timed = "forward, CUDA events after synchronize"
    return LatencyResult.measured(
        stats,
        target=target.name,
        input_hw=input_hw,
        precision=precision,
        backend="torch",
        device=device_name,
        timed=timed,
        power_mode=power_mode(),
        versions=software_versions(),
        extra={"threads": threads, **host},
    )
