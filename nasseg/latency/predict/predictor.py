"""Latency predictor: a calibrated roofline over the real layer graph.

Every kernel ``l`` of op class ``c`` takes

    t_l = max(flops_l / (peak_c * efficiency_c), bytes_l / (bandwidth * memory_efficiency)) + layer_overhead

for a compute class (convolutions, matrix products), and ``bytes_l / (bandwidth * efficiency_c) +
layer_overhead`` for a memory-bound class (element-wise, pooling, reductions, resize, copies), whose
kernels are limited by how well they stream memory rather than by arithmetic. A calibration with the
``no_overlap`` effect adds the two terms of a compute kernel instead of taking the larger (its kernels do
not hide their memory traffic behind their arithmetic; ``nasseg.latency.predict.effects``). The
network takes ``sum(t_l) + fixed_overhead``. ``peak_c`` is the tensor-core peak for the
classes whose kernels use tensor cores and the CUDA-core peak for depthwise and dilated
convolutions (cuDNN/TensorRT run those without tensor cores; jetson.md section 5). Efficiencies,
overheads and the fusion rule come from a ``Calibration`` fitted to measurements
(``nasseg.latency.predict.fit``); every estimate names the calibration it used. A host-CPU
calibration may instead carry an op table (``nasseg.latency.predict.optable``): layers timed inside
networks on that CPU, from which a regressor predicts every layer's time in place of the roofline.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from torch import nn

from nasseg.latency.predict.calibration import Calibration, find_calibration
from nasseg.latency.predict.costs import BYTES_PER_ELEMENT, OP_CLASSES, Layer, LayerTable, layers_of
from nasseg.latency.predict.effects import apply_effects, overlaps
from nasseg.latency.predict.graph import OpNode, trace
from nasseg.latency.result import LatencyResult

PREDICTOR = "nasseg-roofline-v1"
OP_TABLE_PREDICTOR = "nasseg-optable-v2"  # a calibration with an op table


def layer_times_ms(
    table: LayerTable,
    flops_per_s: np.ndarray,
    bytes_per_s: float | np.ndarray,
    layer_overhead_ms: float | np.ndarray,
    overlap: bool | np.ndarray = True,
) -> np.ndarray:
    """Per-kernel time: roofline of compute (at each layer's effective FLOP/s) and memory traffic,
    plus the launch overhead of launched kernels. ``overlap`` (per layer, or for all): the larger of the
    two, as the roofline has it; without, their sum (the ``no_overlap`` effect)."""
    compute, memory = table.flops / flops_per_s, table.bytes / bytes_per_s
    combined = np.where(overlap, np.maximum(compute, memory), compute + memory)
    return combined * 1e3 + table.launched * layer_overhead_ms


def _per_layer_times(table: LayerTable, cal: Calibration) -> np.ndarray:
    """Each layer's time: from the op table where the calibration has one, else the roofline."""
    if cal.optable is not None:
        return cal.optable.layer_ms(table) * cal.optable.scale
    table = apply_effects(table, cal.effects, cal.hardware())
    flops_per_s, bytes_per_s = cal.class_rates()
    return layer_times_ms(
        table, flops_per_s[table.op_class], bytes_per_s[table.op_class], cal.layer_overhead_ms, overlaps(cal.effects)
    )


def predict_ms(table: LayerTable, cal: Calibration, samples: int = 1) -> np.ndarray:
    """Latency of every sample in the table under a calibration."""
    return np.bincount(table.sample, weights=_per_layer_times(table, cal), minlength=samples) + cal.fixed_overhead_ms


def layer_table(
    model: nn.Module, input_hw: tuple[int, int], cal: Calibration, in_channels: int = 3
) -> tuple[list[Layer], LayerTable]:
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
    return estimate_trace(
        trace(model, (int(input_hw[0]), int(input_hw[1])), in_channels), input_hw, target, calibration=cal
    )


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
    by_class = {
        c: round(float(per_layer[table.op_class == i].sum()), 4)
        for i, c in enumerate(OP_CLASSES)
        if (table.op_class == i).any()
    }
    # A fit from measurements names the device they were taken on (timings do not transfer between CPUs).
    provenance = {"calibrated_on": cal.fitted_on["device"]} if cal.fitted_on.get("device") else {}
    if cal.optable is not None:
        provenance["layers_from_op_table"] = (
            f"{len(layers)} layers predicted from {len(cal.optable.ms)} timed inside networks on that device"
        )
    return LatencyResult(
        kind="estimated",
        median_ms=total,
        target=target,
        input_hw=(int(input_hw[0]), int(input_hw[1])),
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
