"""onnxruntime: CPU, and the CUDA / TensorRT execution providers where this onnxruntime build has them."""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from torch import nn

from nasseg.errors import BackendUnavailable
from nasseg.latency.measure.backends.onnx_export import INPUT_NAME, export_onnx
from nasseg.latency.measure.device import cpu_device, power_mode, software_versions
from nasseg.latency.result import LatencyResult
from nasseg.latency.targets import Target
from nasseg.latency.timing import TimingSettings, denormals_flushed, host_clock, time_repeatedly


def choose_providers(target: Target, precision: str, available: list[str]) -> list[tuple[str, dict[str, Any]]]:
    """Execution providers for a target, best first; raises when this build has none that fits."""
    if target.kind == "host-cpu":
        return [("CPUExecutionProvider", {})]
    if "TensorrtExecutionProvider" in available:
        # CUDA stays as fallback for any node TensorRT does not take.
        fallback: list[tuple[str, dict[str, Any]]] = (
            [("CUDAExecutionProvider", {})] if "CUDAExecutionProvider" in available else []
        )
        return [("TensorrtExecutionProvider", {"trt_fp16_enable": precision == "fp16"}), *fallback]
    if precision == "fp32" and "CUDAExecutionProvider" in available:
        return [("CUDAExecutionProvider", {})]
    need = "the TensorRT execution provider" if precision != "fp32" else "the CUDA or TensorRT execution provider"
    raise BackendUnavailable(
        "onnxruntime", f"{need} for {target.name} at {precision} (this onnxruntime has {', '.join(available)})"
    )


def measure(
    model: nn.Module, input_hw: tuple[int, int], target: Target, precision: str, settings: TimingSettings
) -> LatencyResult:
    import onnxruntime as ort

    providers = choose_providers(target, precision, ort.get_available_providers())
    options = ort.SessionOptions()
    options.intra_op_num_threads = settings.threads
    options.inter_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    # No denormal arithmetic, as in the torch backend. onnxruntime sets this on the threads that run
    # the session, the caller's included, and never unsets it: denormals_flushed() below restores it.
    options.add_session_config_entry("session.set_denormal_as_zero", "1")
    with tempfile.TemporaryDirectory(prefix="nasseg-onnx-") as tmp:
        path = export_onnx(model, input_hw, Path(tmp) / "model.onnx")
        session = ort.InferenceSession(str(path), options, providers=providers)
    x = np.random.default_rng(0).standard_normal((1, 3, *input_hw), dtype=np.float32)
    used = session.get_providers()[0]
    on_cpu = used == "CPUExecutionProvider"
    # With one intra-op thread onnxruntime runs in the calling thread, like torch.
    clock, clock_name = host_clock(settings.threads) if on_cpu else (time.perf_counter, "wall clock")

    def run_once() -> float:
        start = clock()
        session.run(None, {INPUT_NAME: x})
        return (clock() - start) * 1e3

    with denormals_flushed():
        stats = time_repeatedly(run_once, settings)
    return LatencyResult.measured(
        stats,
        target=target.name,
        input_hw=input_hw,
        precision=precision,
        backend="onnxruntime",
        device=cpu_device(settings.threads) if on_cpu else f"{target.name} GPU via {used}",
        timed=f"session.run, {clock_name}" + ("" if on_cpu else " (includes host-device copies)"),
        power_mode=power_mode(),
        versions=software_versions("onnxruntime", "onnx"),
        extra={"threads": settings.threads, "provider": used, **({"denormals": "flushed to zero"} if on_cpu else {})},
    )
