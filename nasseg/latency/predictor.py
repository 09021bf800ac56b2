"""Latency predictor: a calibrated roofline over the real layer graph.

Every kernel ``l`` of op class ``c`` takes

    t_l = max(flops_l / (peak_c * efficiency_c), bytes_l / (bandwidth * memory_efficiency)) + layer_overhead

for a compute class (convolutions, matrix products), and ``bytes_l / (bandwidth * efficiency_c) +
layer_overhead`` for a memory-bound class (element-wise, pooling, reductions, resize, copies), whose
kernels are limited by how well they stream memory rather than by arithmetic. The network takes ``sum(t_l) + fixed_overhead``. ``peak_c`` is the tensor-core peak for the
classes whose kernels use tensor cores and the CUDA-core peak for depthwise and dilated
convolutions (cuDNN/TensorRT run those without tensor cores; jetson.md section 5). Efficiencies,
overheads and the fusion rule come from a ``Calibration`` fitted to measurements
(``nasseg.latency.calibration``); every estimate names the calibration it used. A host-CPU
calibration may instead carry an op table (``nasseg.latency.optable``): layers timed inside
networks on that CPU, from which a regressor predicts every layer's time in place of the roofline.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from functools import cache, cached_property
from pathlib import Path
from typing import Any

import numpy as np
from torch import nn

from nasseg.errors import NassegError
from nasseg.latency.costs import BYTES_PER_ELEMENT, OP_CLASSES, SHAPE_FIELDS, Layer, layers_of
from nasseg.latency.graph import OpNode, trace
from nasseg.latency.optable import GEOMETRY_FIELDS, OpTable
from nasseg.latency.result import LatencyResult

PREDICTOR = "nasseg-roofline-v1"
OP_TABLE_PREDICTOR = "nasseg-optable-v2"  # a calibration with an op table
CALIBRATIONS_DIR = Path(__file__).resolve().parent / "calibrations"
# Fitted on a user's board by `nasseg calibrate`; searched before the packaged calibrations.
USER_CALIBRATIONS_DIR = Path(os.environ.get("NASSEG_CALIBRATIONS", Path.home() / ".nasseg" / "calibrations"))
# Kernels that run on CUDA cores even where tensor cores exist.
CUDA_CORE_CLASSES = ("conv_depthwise", "conv_dilated")
MEMORY_CLASSES = ("elementwise", "pool", "reduce", "resize", "copy")
_IS_MEMORY = np.array([c in MEMORY_CLASSES for c in OP_CLASSES])


class CalibrationError(NassegError):
    """A calibration is missing, malformed, or cannot be fitted."""


@dataclass(frozen=True)
class Calibration:
    """The fitted constants of the cost model for one target, precision and runtime."""

    id: str
    target: str
    precision: str
    runtime: str  # what the calibration measurements ran on, e.g. "tensorrt" or "torch-eager"
    timed: str  # the timing scope of those measurements (engine, GPU compute, forward, ...)
    fuse_pointwise: bool
    peak_flops: float  # tensor-core (or SIMD) peak at this precision, FLOP/s
    cuda_core_flops: float  # peak for CUDA_CORE_CLASSES, FLOP/s
    bandwidth: float  # bytes/s
    efficiency: dict[str, float]  # op class -> fraction of its peak
    memory_efficiency: float
    layer_overhead_ms: float
    fixed_overhead_ms: float
    fitted_on: dict[str, Any] = field(default_factory=dict)  # data set, points, fit error
    # Layers timed inside networks on the device (nasseg.latency.optable); where present, its
    # prediction replaces the roofline for every layer.
    op_table: dict[str, Any] | None = None

    def __post_init__(self) -> None:
        missing = [c for c in OP_CLASSES if c not in self.efficiency]
        if missing:
            raise CalibrationError(f"calibration {self.id}: no efficiency for op class(es) {', '.join(missing)}")
        if self.precision not in BYTES_PER_ELEMENT:
            raise CalibrationError(f"calibration {self.id}: unknown precision {self.precision!r}")
        if self.op_table is not None:
            try:
                self.optable  # noqa: B018  (validates the table once, at load)
            except (KeyError, TypeError, ValueError) as exc:
                raise CalibrationError(f"calibration {self.id}: bad op table: {exc}") from None

    @cached_property
    def optable(self) -> OpTable | None:
        return OpTable.from_dict(self.op_table) if self.op_table is not None else None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "<dict>") -> Calibration:
        try:
            return cls(**data)
        except TypeError as exc:
            raise CalibrationError(f"{source}: not a calibration: {exc}") from None

    def save(self, path: Path) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.to_dict(), indent=2) + "\n")
        return path

    @classmethod
    def load(cls, path: Path) -> Calibration:
        try:
            data = json.loads(Path(path).read_text())
        except FileNotFoundError:
            raise CalibrationError(f"{path}: no such calibration file") from None
        except json.JSONDecodeError as exc:
            raise CalibrationError(f"{path}: not valid JSON: {exc}") from None
        return cls.from_dict(data, str(path))

    def class_peaks(self) -> np.ndarray:
        return np.array([self.cuda_core_flops if c in CUDA_CORE_CLASSES else self.peak_flops for c in OP_CLASSES])

    def class_rates(self) -> tuple[np.ndarray, np.ndarray]:
        return class_rates(
            self.class_peaks(), np.float64(self.bandwidth),
            np.array([self.efficiency[c] for c in OP_CLASSES]), np.float64(self.memory_efficiency),
        )


def class_rates(
    peaks: np.ndarray, bandwidth: np.ndarray, efficiency: np.ndarray, memory_efficiency: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Effective FLOP/s and bytes/s of every op class (last axis), for one or many targets.

    Memory-bound classes get no compute term; their efficiency scales the bandwidth instead.
    """
    flops = np.where(_IS_MEMORY, np.inf, peaks * efficiency)
    streaming = np.asarray(bandwidth)[..., None]
    return flops, np.where(_IS_MEMORY, streaming * efficiency, streaming * np.asarray(memory_efficiency)[..., None])


def calibration_files() -> list[Path]:
    """Every calibration file: the user's first, then the packaged ones."""
    files = []
    for folder in (USER_CALIBRATIONS_DIR, CALIBRATIONS_DIR):
        if folder.is_dir():
            files += sorted(p for p in folder.glob("*.json") if not p.name.startswith("published"))
    return files


@cache
def _load_cached(path: str, mtime: float) -> Calibration:
    return Calibration.load(Path(path))


def available_calibrations() -> list[Calibration]:
    return [_load_cached(str(p), p.stat().st_mtime) for p in calibration_files()]


def find_calibration(target: str, precision: str | None = None, calibration: str | Path | None = None) -> Calibration:
    """The calibration to use: a file path or id if given, else the first one for the target
    (and precision), the user's own fits before the packaged ones."""
    if calibration is not None and Path(calibration).suffix == ".json":
        return Calibration.load(Path(calibration))
    known = available_calibrations()
    for cal in known:
        if calibration is not None and cal.id != calibration:
            continue
        if cal.target == target and (precision is None or cal.precision == precision):
            return cal
    what = f"calibration {calibration!r}" if calibration else "a calibration"
    have = ", ".join(f"{c.id} ({c.target}, {c.precision})" for c in known) or "none"
    raise CalibrationError(
        f"no {what} for target {target!r}" + (f" at {precision}" if precision else "")
        + f"; available: {have}. Fit one with `nasseg calibrate --target {target}`"
    )


# ----- the cost model ----------------------------------------------------------------------------
@dataclass(frozen=True)
class LayerTable:
    """The costed kernels of one or more networks as flat arrays (``sample`` says whose)."""

    op_class: np.ndarray  # index into OP_CLASSES
    flops: np.ndarray
    bytes: np.ndarray
    launched: np.ndarray  # 1.0 where the kernel is launched (not fused into the previous one)
    sample: np.ndarray
    conv_rows: np.ndarray  # per layer: its convolution geometry (nasseg.latency.optable), or -1s
    shape_rows: np.ndarray  # per layer: its activation shapes (costs.SHAPE_FIELDS), or -1s where fused
    op: np.ndarray  # per layer: the ATen operator, e.g. "aten.exp" (an op table tells them apart)

    @property
    def numbers(self) -> np.ndarray:
        """Each layer's op class, FLOPs, bytes, convolution geometry and activation shapes as one float row."""
        return np.column_stack([self.op_class, self.flops, self.bytes, self.conv_rows, self.shape_rows]).astype(float)

    @classmethod
    def from_layers(cls, layers: list[Layer], sample: int = 0) -> LayerTable:
        index = {c: i for i, c in enumerate(OP_CLASSES)}
        return cls(
            op_class=np.array([index[layer.op_class] for layer in layers], dtype=np.int64),
            flops=np.array([layer.flops for layer in layers], dtype=float),
            bytes=np.array([layer.bytes for layer in layers], dtype=float),
            launched=np.array([0.0 if layer.fused else 1.0 for layer in layers]),
            sample=np.full(len(layers), sample, dtype=np.int64),
            conv_rows=np.array([layer.conv.as_row() if layer.conv else [-1] * len(GEOMETRY_FIELDS) for layer in layers],
                               dtype=np.int64).reshape(-1, len(GEOMETRY_FIELDS)),
            shape_rows=np.array([layer.shape for layer in layers], dtype=np.int64).reshape(-1, len(SHAPE_FIELDS)),
            op=np.array([layer.op for layer in layers], dtype=object),
        )

    @classmethod
    def concat(cls, tables: list[LayerTable]) -> LayerTable:
        return cls(*(np.concatenate([getattr(t, f) for t in tables]) for f in ("op_class", "flops", "bytes", "launched")),
                   sample=np.concatenate([np.full(len(t.flops), i, dtype=np.int64) for i, t in enumerate(tables)]),
                   conv_rows=np.concatenate([t.conv_rows for t in tables]),
                   shape_rows=np.concatenate([t.shape_rows for t in tables]), op=np.concatenate([t.op for t in tables]))


def layer_times_ms(
    table: LayerTable, flops_per_s: np.ndarray, bytes_per_s: float | np.ndarray, layer_overhead_ms: float | np.ndarray,
) -> np.ndarray:
    """Per-kernel time: roofline of compute (at each layer's effective FLOP/s) and memory traffic,
    plus the launch overhead of launched kernels."""
    return np.maximum(table.flops / flops_per_s, table.bytes / bytes_per_s) * 1e3 + table.launched * layer_overhead_ms


def _per_layer_times(table: LayerTable, cal: Calibration) -> np.ndarray:
    """Each layer's time: from the op table where the calibration has one, else the roofline."""
    if cal.optable is not None:
        return cal.optable.layer_ms(table) * cal.optable.scale
    flops_per_s, bytes_per_s = cal.class_rates()
    return layer_times_ms(table, flops_per_s[table.op_class], bytes_per_s[table.op_class], cal.layer_overhead_ms)


def predict_ms(table: LayerTable, cal: Calibration, samples: int = 1) -> np.ndarray:
    """Latency of every sample in the table under a calibration."""
    return np.bincount(table.sample, weights=_per_layer_times(table, cal), minlength=samples) + cal.fixed_overhead_ms


def layer_table(model: nn.Module, input_hw: tuple[int, int], cal: Calibration, in_channels: int = 3) -> tuple[list[Layer], LayerTable]:
    return nodes_table(trace(model, input_hw, in_channels), cal)


def nodes_table(nodes: list[OpNode], cal: Calibration) -> tuple[list[Layer], LayerTable]:
    """The costed layers of a traced graph under a calibration (its precision and fusion rule)."""
    layers = layers_of(nodes, BYTES_PER_ELEMENT[cal.precision], cal.fuse_pointwise)
    return layers, LayerTable.from_layers(layers)


def estimate(
    model: nn.Module,
    input_hw: tuple[int, int],
    target: str,
    *,
    precision: str | None = None,
    calibration: str | Path | None = None,
    in_channels: int = 3,
) -> LatencyResult:
    """Estimated batch-1 inference latency of ``model`` at ``input_hw`` (H, W) on ``target``.

    ``calibration`` is a calibration id or JSON path; by default the first calibration for the
    target (and ``precision``) is used. Raises ``UntraceableModel`` or ``UnsupportedLayer``
    naming the layer when the model cannot be costed, ``CalibrationError`` when none fits.
    """
    cal = find_calibration(target, precision, calibration)
    return estimate_trace(trace(model, tuple(input_hw), in_channels), input_hw, target, calibration=cal)


def estimate_trace(
    nodes: list[OpNode],
    input_hw: tuple[int, int],
    target: str,
    *,
    precision: str | None = None,
    calibration: Calibration | str | Path | None = None,
) -> LatencyResult:
    """``estimate`` of a graph already traced at ``input_hw`` (``graph.trace`` or ``graph.trace_meta``):
    one trace serves every target and calibration."""
    cal = calibration if isinstance(calibration, Calibration) else find_calibration(target, precision, calibration)
    layers, table = nodes_table(nodes, cal)
    total = float(predict_ms(table, cal)[0])
    per_layer = _per_layer_times(table, cal)
    by_class = {c: round(float(per_layer[table.op_class == i].sum()), 4) for i, c in enumerate(OP_CLASSES) if (table.op_class == i).any()}
    # A fit from measurements names the device they were taken on (timings do not transfer between CPUs).
    provenance = {"calibrated_on": cal.fitted_on["device"]} if cal.fitted_on.get("device") else {}
    if cal.optable is not None:
        provenance["layers_from_op_table"] = (
            f"{len(layers)} layers predicted from {len(cal.optable.ms)} timed inside networks on that device")
    return LatencyResult(
        kind="estimated",
        median_ms=total,
        target=target,
        input_hw=tuple(input_hw),
        precision=cal.precision,
        timed=cal.timed,
        predictor=PREDICTOR if cal.optable is None else OP_TABLE_PREDICTOR,
        calibration=cal.id,
        extra={
            "kernels": int(table.launched.sum()),
            "fused_ops": int(len(layers) - table.launched.sum()),
            "gflops": float(table.flops.sum() / 1e9),
            "mbytes": float(table.bytes.sum() / 1e6),
            "ms_by_op_class": by_class,
            "fixed_overhead_ms": cal.fixed_overhead_ms,
            "runtime": cal.runtime,
            **provenance,
        },
    )
