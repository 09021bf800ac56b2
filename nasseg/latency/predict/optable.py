"""The host CPU's op table: every layer timed inside real networks, unseen layers predicted.

One efficiency per op class cannot follow a CPU's kernels: oneDNN picks a different algorithm and
blocking for every convolution shape, and an element-wise op costs what the caches make of it. As
nn-Meter does for mobile CPUs, an op table holds layers timed on the device and a tree ensemble
over their log-shape features predicts the time of a layer from its operator (an exp costs several
times an add per element), op class, FLOPs, bytes and (for a convolution) geometry.

The layers are timed where they run: inside the calibration networks, one forward pass at a time
(``nasseg.latency.predict.graph.timed_trace``). Timed alone, a convolution did not cost what it costs in the
network on the development VM (benchmarks/README.md): the caches hold what the previous layer wrote.
A network then takes ``scale`` x the sum of its layers, plus the calibration's fixed overhead:
``scale`` is the calibration networks' median of measured latency (less that overhead) over the sum
of their layers' in-network times. It carries the dispatch between operators, which no layer's time
includes, less what the recorder itself adds to every timed layer.

The table (layer rows and times) is what a calibration stores; the regressor is refitted from it,
deterministically, when the calibration is first used. A table is only meaningful where a network
runs its layers one by one: PyTorch eager (the host CPU). TensorRT fuses and re-plans layers, so
Jetson calibrations keep the roofline of ``nasseg.latency.predict.predictor``.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING, Any

import numpy as np
from torch import nn

from nasseg.latency.predict.costs import (
    BYTES_PER_ELEMENT,
    GEOMETRY_FIELDS,
    OP_CLASSES,
    SHAPE_FIELDS,
    Layer,
    LayerTable,
    layers_of,
)
from nasseg.latency.predict.graph import timed_trace
from nasseg.latency.timing import cpu_conditions, fixed_threads, host_clock

if TYPE_CHECKING:
    from sklearn.ensemble import ExtraTreesRegressor

# A layer row: its operator (index into the table's ``ops``, -1 for one it has not timed), op class
# (index into OP_CLASSES), FLOPs, bytes, its convolution geometry (or -1s) and its activation shapes.
ROW_FIELDS = ("op", "op_class", "flops", "bytes", *GEOMETRY_FIELDS, *SHAPE_FIELDS)
_COL = {name: i for i, name in enumerate(ROW_FIELDS)}
_TREES = 200


def _cols(rows: np.ndarray, *names: str) -> list[np.ndarray]:
    return [rows[:, _COL[n]] for n in names]


def significant(values: np.ndarray | list[float]) -> list[float]:
    """Layer times and sizes as stored: four significant digits, far finer than a layer's run-to-run
    spread, and a tenth of the JSON."""
    return [float(f"{v:.4g}") for v in values]


def conv_output_hw(rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Output height and width of each convolution row (PyTorch's convolution arithmetic)."""
    h, w, kh, kw, sh, sw, ph, pw, dh, dw, tr, oph, opw = _cols(
        rows,
        "in_h",
        "in_w",
        "kernel_h",
        "kernel_w",
        "stride_h",
        "stride_w",
        "pad_h",
        "pad_w",
        "dilation_h",
        "dilation_w",
        "transposed",
        "output_pad_h",
        "output_pad_w",
    )
    direct_h = np.floor((h + 2 * ph - dh * (kh - 1) - 1) / sh) + 1
    direct_w = np.floor((w + 2 * pw - dw * (kw - 1) - 1) / sw) + 1
    up_h = (h - 1) * sh - 2 * ph + dh * (kh - 1) + oph + 1
    up_w = (w - 1) * sw - 2 * pw + dw * (kw - 1) + opw + 1
    return np.where(tr > 0, up_h, direct_h), np.where(tr > 0, up_w, direct_w)


def _work(rows: np.ndarray) -> np.ndarray:
    """What a layer's time grows with: its FLOPs and its bytes, at a CPU's typical 5 FLOP per byte."""
    flops, moved = _cols(rows, "flops", "bytes")
    return np.maximum(flops + 5.0 * moved, 1.0)


def rows_of(table: LayerTable, ops: tuple[str, ...]) -> np.ndarray:
    """The op-table row of every layer, its operator numbered as in ``ops``."""
    index = {op: i for i, op in enumerate(ops)}
    return np.column_stack([[index.get(op, -1) for op in table.op], table.numbers]).reshape(-1, len(ROW_FIELDS))


def features(rows: np.ndarray, n_ops: int) -> np.ndarray:
    """Operator and op class (one-hot), log2 FLOPs and bytes, for convolutions the log2 geometry, and
    for every layer the log2 activation shapes and operands."""
    rows = np.asarray(rows, dtype=float).reshape(-1, len(ROW_FIELDS))
    operator = np.eye(n_ops + 1)[rows[:, 0].astype(np.int64)][:, :n_ops]  # -1 (untimed): no operator bit set
    one_hot = np.eye(len(OP_CLASSES))[rows[:, 1].astype(np.int64)]
    flops, moved = _cols(rows, "flops", "bytes")
    is_conv = rows[:, _COL["in_channels"]] > 0
    cin, cout, kh, kw, sh, dh, dw, g, tr = (
        np.where(is_conv, c, 1.0)
        for c in _cols(
            rows,
            "in_channels",
            "out_channels",
            "kernel_h",
            "kernel_w",
            "stride_h",
            "dilation_h",
            "dilation_w",
            "groups",
            "transposed",
        )
    )
    out_h, out_w = (np.where(is_conv, np.maximum(v, 1.0), 1.0) for v in conv_output_hw(rows))
    geometry = np.log2(np.stack([cin / g, cout / g, g, out_h, out_w, kh, kw, sh, dh, dw], axis=1))
    *dims, operands, second = _cols(rows, *SHAPE_FIELDS)
    shapes = np.log2(np.maximum(np.stack([*dims, second + 1], axis=1), 1.0))
    return np.concatenate(
        [
            operator,
            one_hot,
            np.log2(np.stack([flops + 1, moved + 1], axis=1)),
            geometry,
            shapes,
            np.stack([is_conv, tr > 0, operands], axis=1).astype(float),
        ],
        axis=1,
    )


@dataclass(frozen=True)
class OpTable:
    """Layers timed inside networks on one device, and a regressor of their time."""

    ops: tuple[str, ...]  # the operators the table has timed ("aten.convolution", "aten.exp", ...)
    rows: np.ndarray  # n x len(ROW_FIELDS)
    ms: np.ndarray  # each layer's time inside its network
    scale: float  # network latency / the sum of its layers' times (median over the calibration networks)

    def __post_init__(self) -> None:
        if self.rows.ndim != 2 or self.rows.shape[1] != len(ROW_FIELDS) or len(self.rows) != len(self.ms):
            raise ValueError(f"an op table needs n x {len(ROW_FIELDS)} layer rows and n times")
        if len(self.ms) < 2 or not np.all(np.isfinite(self.ms) & (self.ms > 0)):
            raise ValueError("an op table needs at least two layers, every time positive")
        if not (np.isfinite(self.scale) and self.scale > 0):
            raise ValueError(f"an op table's scale must be positive, not {self.scale}")
        if not np.all((self.rows[:, 0] >= 0) & (self.rows[:, 0] < len(self.ops))):
            raise ValueError(f"every timed layer's operator must be one of the table's {len(self.ops)} ops")

    @staticmethod
    def _regressor() -> ExtraTreesRegressor:
        from sklearn.ensemble import ExtraTreesRegressor  # only where a calibration has an op table

        # Averaging many randomised splits interpolates between the timed layers; leaves of 2
        # keep a single noisy timing from being reproduced exactly.
        return ExtraTreesRegressor(_TREES, min_samples_leaf=2, random_state=0, n_jobs=1)

    # The regressor learns log(time per unit of work), not log(time): trees cannot extrapolate, and a
    # layer larger than any timed one then keeps the speed of the largest like it instead of its time.
    @cached_property
    def _model(self) -> ExtraTreesRegressor:
        return self._regressor().fit(features(self.rows, len(self.ops)), np.log(self.ms / _work(self.rows)))

    def layer_ms(self, table: LayerTable) -> np.ndarray:
        """Predicted in-network time (ms) of each layer, before ``scale``."""
        if not len(table.flops):
            return np.zeros(0)
        rows = rows_of(table, self.ops)
        return np.exp(self._model.predict(features(rows, len(self.ops)))) * _work(rows)

    def to_dict(self) -> dict[str, Any]:
        rows = [[int(r[0]), int(r[1]), *significant(r[2:4]), *map(int, r[4:])] for r in self.rows]
        return {
            "fields": list(ROW_FIELDS),
            "ops": list(self.ops),
            "scale": self.scale,
            "rows": rows,
            "ms": significant(self.ms),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> OpTable:
        if list(data.get("fields", [])) != list(ROW_FIELDS):
            raise ValueError(
                f"op table fields {data.get('fields')} are not {list(ROW_FIELDS)} (a table from an "
                "older nasseg: time it again with `nasseg calibrate --target host-cpu --op-table`)"
            )
        return cls(
            tuple(data["ops"]),
            np.array(data["rows"], dtype=float).reshape(-1, len(ROW_FIELDS)),
            np.array(data["ms"], dtype=float),
            float(data["scale"]),
        )

    @classmethod
    def from_timings(cls, timed: list[tuple[LayerTable, np.ndarray, float]], fixed_overhead_ms: float = 0.0) -> OpTable:
        """From (layer table, each layer's in-network ms, the network's measured ms) per network."""
        ops = tuple(sorted({op for table, _, _ in timed for op in table.op}))
        rows = np.concatenate([rows_of(table, ops) for table, _, _ in timed])
        # A layer faster than the clock resolves counts as 1 us: fast, not free.
        ms = np.maximum(np.concatenate([layer_ms for _, layer_ms, _ in timed]), 1e-3)
        scale = float(np.median([(network - fixed_overhead_ms) / layer_ms.sum() for _, layer_ms, network in timed]))
        return cls(ops, rows, ms, scale)


def time_layers(
    model: nn.Module, input_hw: tuple[int, int], passes: int = 3, warmup: int = 1
) -> tuple[list[Layer], np.ndarray]:
    """Every layer of ``model`` (host CPU, fp32, eager) and its median in-network time over ``passes``
    forward passes, by thread CPU time on one thread, after ``warmup`` untimed ones."""
    clock, _ = host_clock(1)
    with fixed_threads(1), cpu_conditions():
        runs = [timed_trace(model, input_hw, clock) for _ in range(warmup + passes)][warmup:]
    layers = layers_of(runs[0], BYTES_PER_ELEMENT["fp32"], fuse_pointwise=False)
    return layers, np.median([[run[layer.node].ms for layer in layers] for run in runs], axis=0)
