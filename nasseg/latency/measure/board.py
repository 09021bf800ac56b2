"""The host's half of the board agent (``board_agent.py``, which runs on the Jetson without nasseg).

The host builds the network, exports it to ONNX at an opset the board's TensorRT parses, checksums
it and sends it; the board builds and times the engine with ``trtexec`` and answers the per-iteration
GPU compute times and what it read from itself (TensorRT version, power mode, clocks). The host
summarises the times exactly as the ``tensorrt`` backend does and records where they came from.
"""

from __future__ import annotations

import base64
import hashlib
import tempfile
from pathlib import Path
from typing import Any

from torch import nn

from nasseg.errors import AgentError
from nasseg.latency.measure.backends.onnx_export import export_onnx
from nasseg.latency.measure.device import jetson_target_of
from nasseg.latency.result import LatencyResult
from nasseg.latency.targets import Target, onnx_opset
from nasseg.latency.timing import TimingSettings, summarise

SCRIPT = Path(__file__).with_name("board_agent.py")
PROTOCOLS = (2,)  # the board agent protocols this host speaks
TIMED = "GPU compute time (trtexec on the board, ONNX -> TensorRT engine)"


def board_script() -> str:
    """The board agent's source, to copy to the board."""
    return SCRIPT.read_text()


def is_board(info: dict[str, Any]) -> bool:
    return info.get("agent") == "board"


def check_board(url: str, info: dict[str, Any]) -> dict[str, Any]:
    """The board's /info with the nasseg target it is; refuses a board that speaks none of our protocols."""
    spoken = info.get("protocols") or [info.get("protocol")]
    if not set(spoken) & set(PROTOCOLS):
        raise AgentError(
            f"board agent {url} speaks protocol {', '.join(map(str, spoken))}; this nasseg speaks "
            f"{', '.join(map(str, PROTOCOLS))}: copy `nasseg agent --script` from this nasseg to the board"
        )
    declared, model = info.get("target"), jetson_target_of(str(info.get("device") or ""))
    if declared and model and declared != model:
        raise AgentError(f"board agent {url} was started as {declared}, but the board is a {info['device']} ({model})")
    if not (declared or model):
        raise AgentError(
            f"board agent {url}: cannot tell which Jetson {info.get('device')!r} is; start it with --target NAME"
        )
    return {**info, "target": declared or model}


def export_opset(target: Target, info: dict[str, Any]) -> int:
    """The opset for the TensorRT the board reports, else for the one its target's JetPack ships."""
    tensorrt = info.get("tensorrt") or (target.software.tensorrt if target.software else None)
    if tensorrt is None:
        raise AgentError(f"board agent for {target.name} reports no TensorRT version, and the target names none")
    return onnx_opset(tensorrt)


def measure_request(
    model: nn.Module, input_hw: tuple[int, int], precision: str, opset: int, settings: TimingSettings
) -> dict[str, Any]:
    """The JSON body of a board measurement: the ONNX file, its checksum and opset, and how long to time."""
    with tempfile.TemporaryDirectory(prefix="nasseg-board-") as tmp:
        data = export_onnx(model, input_hw, Path(tmp) / "model.onnx", opset).read_bytes()
    return {
        "protocol": PROTOCOLS[-1],
        "onnx": base64.b64encode(data).decode("ascii"),
        "onnx_sha256": hashlib.sha256(data).hexdigest(),
        "opset": opset,
        "input_hw": list(input_hw),
        "precision": precision,
        # The same budget the tensorrt backend gives trtexec on the board.
        "timing": {
            "warmup_ms": int(settings.warmup_s * 1000),
            "iterations": settings.max_repeats,
            "duration_s": int(settings.max_seconds),
        },
    }


def board_result(
    answer: dict[str, Any], target: Target, input_hw: tuple[int, int], precision: str, settings: TimingSettings
) -> LatencyResult:
    """The measured ``LatencyResult`` from a board's answer, its times summarised as every backend's are."""
    board = answer["result"]
    stats = summarise([float(ms) for ms in board["gpu_compute_ms"]], settings.rel_precision)
    versions = {
        "tensorrt": board.get("tensorrt") or "unknown",
        "onnx_opset": str(board.get("opset")),
        "board_agent_protocol": str(answer.get("protocol")),
    }
    read_on_board = {
        k: board[k]
        for k in (
            "engine_build_s",
            "engine_build_timed",
            "engine_cached",
            "clocks",
            "l4t",
            "onnx_sha256",
            "int8_scales",
            "gpu_compute_summary_ms",
            "command",
        )
        if board.get(k) is not None
    }
    return LatencyResult.measured(
        stats,
        target=target.name,
        input_hw=input_hw,
        precision=precision,
        backend="tensorrt",
        device=board.get("device") or target.name,
        timed=TIMED,
        power_mode=board.get("power_mode"),
        versions=versions,
        extra={**read_on_board, "agent": "board", "parity": "not checked: the board agent returns times, not outputs"},
    )
