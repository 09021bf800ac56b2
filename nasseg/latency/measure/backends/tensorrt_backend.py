"""TensorRT through ONNX and ``trtexec`` (on the Jetson itself): GPU compute time, FP16 by default.

trtexec builds the engine from our ONNX export, runs it on a fixed input, and writes per-iteration
timings (``--exportTimes``) and the outputs (``--exportOutput``); the reported latency is the median
GPU compute time of those iterations, after the outputs were checked against PyTorch.
"""

from __future__ import annotations

import copy
import json
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from nasseg.errors import BackendUnavailable, MeasurementFailed
from nasseg.latency.measure.backends.onnx_export import INPUT_NAME, OUTPUT_NAME, export_onnx
from nasseg.latency.measure.backends.parity import check_parity
from nasseg.latency.measure.device import jetson_model, power_mode, software_versions
from nasseg.latency.result import LatencyResult
from nasseg.latency.targets import EXPORT_OPSET, Target
from nasseg.latency.timing import TimingSettings, summarise

JETPACK_TRTEXEC = Path("/usr/src/tensorrt/bin/trtexec")  # where JetPack installs it, not on PATH by default
BUILD_TIMEOUT_S = 1800  # engine building on a Nano can take many minutes
_PRECISION_FLAGS = {"fp32": [], "fp16": ["--fp16"]}


def find_trtexec() -> Path:
    found = shutil.which("trtexec")
    if found:
        return Path(found)
    if JETPACK_TRTEXEC.is_file():
        return JETPACK_TRTEXEC
    raise BackendUnavailable("tensorrt", f"TensorRT's trtexec (on PATH or at {JETPACK_TRTEXEC}; it comes with JetPack)")


def trtexec_command(
    trtexec: Path, onnx: Path, precision: str, input_bin: Path, workdir: Path, settings: TimingSettings
) -> list[str]:
    if precision not in _PRECISION_FLAGS:
        raise BackendUnavailable("tensorrt", f"an INT8 calibration for {precision}, which nasseg does not build yet")
    return [
        str(trtexec),
        f"--onnx={onnx}",
        *_PRECISION_FLAGS[precision],
        f"--loadInputs={INPUT_NAME}:{input_bin}",
        f"--exportOutput={workdir / 'output.json'}",
        f"--exportTimes={workdir / 'times.json'}",
        f"--warmUp={int(settings.warmup_s * 1000)}",
        f"--iterations={settings.max_repeats}",
        f"--duration={int(settings.max_seconds)}",
        "--useSpinWait",  # steadier synchronisation timing (jetson.md §6.5)
    ]


@dataclass(frozen=True)
class TrtexecSummary:
    """The parts of trtexec's log we keep: versions, device, and the performance summary (ms)."""

    tensorrt_version: str | None
    device: str | None
    gpu_compute_ms: dict[str, float]  # min / max / mean / median / percentile(99%) ...
    host_latency_ms: dict[str, float]
    throughput_qps: float | None


_STAT = re.compile(r"(min|max|mean|median|percentile\(\d+%\))\s*=?\s*([0-9.eE+-]+)\s*ms")


def _line_after(log: str, label: str) -> str | None:
    match = re.search(rf"\]\s*{re.escape(label)}:?\s*(.*)$", log, re.MULTILINE)
    return match.group(1).strip() if match else None


def parse_trtexec_log(log: str) -> TrtexecSummary:
    """Read trtexec's stdout (TensorRT 8.x / 10.x format); raise when it has no performance summary."""
    gpu = _line_after(log, "GPU Compute Time")
    if gpu is None:
        tail = "\n".join(log.strip().splitlines()[-15:])
        raise MeasurementFailed(f"trtexec printed no 'GPU Compute Time' summary; its last lines:\n{tail}")
    version = _line_after(log, "TensorRT version")
    if version is None and (tag := re.search(r"\[TensorRT v(\d+)\]", log)):
        version = tag.group(1)
    throughput = _line_after(log, "Throughput")
    latency = _line_after(log, "Latency")
    return TrtexecSummary(
        tensorrt_version=version,
        device=_line_after(log, "Selected Device"),
        gpu_compute_ms={k: float(v) for k, v in _STAT.findall(gpu)},
        host_latency_ms={k: float(v) for k, v in _STAT.findall(latency or "")},
        throughput_qps=float(throughput.split()[0]) if throughput else None,
    )


def parse_times(text: str) -> list[float]:
    """GPU compute time of each timed iteration from an ``--exportTimes`` file."""
    return [float(entry["computeMs"]) for entry in json.loads(text) if "computeMs" in entry]


def parse_output(text: str, name: str = OUTPUT_NAME) -> np.ndarray:
    """The named tensor from an ``--exportOutput`` file (dimensions like '1x19x64x128')."""
    for tensor in json.loads(text):
        if tensor["name"] == name:
            shape = [int(d) for d in str(tensor["dimensions"]).split("x")]
            return np.asarray(tensor["values"], dtype=np.float32).reshape(shape)
    raise MeasurementFailed(f"trtexec exported no output called {name!r}")


def _run(command: list[str]) -> str:
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=BUILD_TIMEOUT_S, check=False)
    except subprocess.TimeoutExpired as exc:
        raise MeasurementFailed(f"trtexec took over {BUILD_TIMEOUT_S} s: {' '.join(command)}") from exc
    if done.returncode != 0:
        tail = "\n".join((done.stdout + done.stderr).strip().splitlines()[-15:])
        raise MeasurementFailed(f"trtexec failed (exit {done.returncode}); its last lines:\n{tail}")
    return done.stdout


def measure(
    model: nn.Module, input_hw: tuple[int, int], target: Target, precision: str, settings: TimingSettings
) -> LatencyResult:
    trtexec = find_trtexec()
    x = torch.randn(1, 3, *input_hw, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        reference = copy.deepcopy(model).eval().float().cpu()(x).numpy()
    with tempfile.TemporaryDirectory(prefix="nasseg-trt-") as tmp:
        workdir = Path(tmp)
        opset = target.software.onnx_opset if target.software else EXPORT_OPSET
        onnx = export_onnx(model, input_hw, workdir / "model.onnx", opset)
        input_bin = workdir / "input.bin"
        x.numpy().astype(np.float32).tofile(input_bin)
        summary = parse_trtexec_log(_run(trtexec_command(trtexec, onnx, precision, input_bin, workdir, settings)))
        samples = parse_times((workdir / "times.json").read_text())
        parity = check_parity(reference, parse_output((workdir / "output.json").read_text()), "tensorrt")
    stats = summarise(samples, settings.rel_precision)
    versions = software_versions("onnx")
    if summary.tensorrt_version:
        versions["tensorrt"] = summary.tensorrt_version
    return LatencyResult.measured(
        stats,
        target=target.name,
        input_hw=input_hw,
        precision=precision,
        backend="tensorrt",
        device=jetson_model() or summary.device or target.name,
        timed="GPU compute time (trtexec, ONNX -> TensorRT engine)",
        power_mode=power_mode(),
        versions=versions,
        extra={**parity, "trtexec_gpu_compute_ms": summary.gpu_compute_ms},
    )
