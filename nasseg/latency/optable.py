"""The host CPU's op table: every layer timed inside real networks, unseen layers predicted.

One efficiency per op class cannot follow a CPU's kernels: oneDNN picks a different algorithm and
blocking for every convolution shape, and an element-wise op costs what the caches make of it. As
nn-Meter does for mobile CPUs, an op table holds layers timed on the device and a tree ensemble
over their log-shape features predicts the time of a layer from its op class, FLOPs, bytes and
(for a convolution) geometry.

The layers are timed where they run: inside the calibration networks, one forward pass at a time
(``nasseg.latency.graph.timed_trace``). Timed alone, a convolution did not cost what it costs in the
network on the development VM (benchmarks/README.md): the caches hold what the previous layer wrote.
A network then takes ``scale`` x the sum of its layers, plus the calibration's fixed overhead:
``scale`` is the calibration networks' median of measured latency (less that overhead) over the sum
of their layers' in-network times. It carries the dispatch between operators, which no layer's time
includes.

The table (layer rows and times) is what a calibration stores; the regressor is refitted from it,
deterministically, when the calibration is first used. A table is only meaningful where a network
runs its layers one by one: PyTorch eager (the host CPU). TensorRT fuses and re-plans layers, so
Jetson calibrations keep the roofline of ``nasseg.latency.predictor``.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING, Any

import numpy as np
from torch import nn

from nasseg.latency.costs import BYTES_PER_ELEMENT, OP_CLASSES, ConvGeometry, Layer, layers_of
from nasseg.latency.graph import timed_trace
from nasseg.latency.timing import cpu_conditions, fixed_threads, host_clock

if TYPE_CHECKING:
    from sklearn.ensemble import ExtraTreesRegressor

    from nasseg.latency.predictor import LayerTable

GEOMETRY_FIELDS = tuple(ConvGeometry.__dataclass_fields__)
# A layer row: its op class (index into OP_CLASSES), FLOPs, bytes, and its convolution geometry (or -1s).
ROW_FIELDS = ("op_class", "flops", "bytes", *GEOMETRY_FIELDS)
_COL = {name: i for i, name in enumerate(ROW_FIELDS)}
_TREES = 200


def _cols(rows: np.ndarray, *names: str) -> list[np.ndarray]:
    return [rows[:, _COL[n]] for n in names]


def conv_output_hw(rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Output height and width of each convolution row (PyTorch's convolution arithmetic)."""
    h, w, kh, kw, sh, sw, ph, pw, dh, dw, tr, oph, opw = _cols(
        rows, "in_h", "in_w", "kernel_h", "kernel_w", "stride_h", "stride_w", "pad_h", "pad_w",
        "dilation_h", "dilation_w", "transposed", "output_pad_h", "output_pad_w")
    direct_h = np.floor((h + 2 * ph - dh * (kh - 1) - 1) / sh) + 1
    direct_w = np.floor((w + 2 * pw - dw * (kw - 1) - 1) / sw) + 1
    up_h = (h - 1) * sh - 2 * ph + dh * (kh - 1) + oph + 1
    up_w = (w - 1) * sw - 2 * pw + dw * (kw - 1) + opw + 1
    return np.where(tr > 0, up_h, direct_h), np.where(tr > 0, up_w, direct_w)


def _work(rows: np.ndarray) -> np.ndarray:
    """What a layer's time grows with: its FLOPs and its bytes, at a CPU's typical 5 FLOP per byte."""
    flops, moved = _cols(rows, "flops", "bytes")
    return np.maximum(flops + 5.0 * moved, 1.0)


def features(rows: np.ndarray) -> np.ndarray:
    """Op class (one-hot), log2 FLOPs and bytes, and for convolutions the log2 geometry."""
    rows = np.asarray(rows, dtype=float).reshape(-1, len(ROW_FIELDS))
    one_hot = np.eye(len(OP_CLASSES))[rows[:, 0].astype(np.int64)]
    flops, moved = _cols(rows, "flops", "bytes")
    is_conv = rows[:, _COL["in_channels"]] > 0
    cin, cout, kh, kw, sh, dh, dw, g, tr = (np.where(is_conv, c, 1.0) for c in _cols(
        rows, "in_channels", "out_channels", "kernel_h", "kernel_w", "stride_h", "dilation_h", "dilation_w",
        "groups", "transposed"))
    out_h, out_w = (np.where(is_conv, np.maximum(v, 1.0), 1.0) for v in conv_output_hw(rows))
    geometry = np.log2(np.stack([cin / g, cout / g, g, out_h, out_w, kh, kw, sh, dh, dw], axis=1))
    return np.concatenate([one_hot, np.log2(np.stack([flops + 1, moved + 1], axis=1)), geometry,
                           np.stack([is_conv, tr > 0], axis=1).astype(float)], axis=1)


def layer_rows(layers: list[Layer]) -> np.ndarray:
    """The op-table row of every layer."""
    index = {c: i for i, c in enumerate(OP_CLASSES)}
    return np.array([[index[layer.op_class], layer.flops, layer.bytes,
                      *(layer.conv.as_row() if layer.conv else [-1] * len(GEOMETRY_FIELDS))] for layer in layers],
                    dtype=float).reshape(-1, len(ROW_FIELDS))


@dataclass(frozen=True)
class OpTable:
    """Layers timed inside networks on one device, and a regressor of their time."""

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
        return self._regressor().fit(features(self.rows), np.log(self.ms / _work(self.rows)))

    def layer_ms(self, rows: np.ndarray) -> np.ndarray:
        """Predicted in-network time (ms) of each layer row, before ``scale``."""
        rows = np.asarray(rows, dtype=float).reshape(-1, len(ROW_FIELDS))
        if not len(rows):
            return np.zeros(0)
        return np.exp(self._model.predict(features(rows))) * _work(rows)

    def to_dict(self) -> dict[str, Any]:
        # Four significant digits: far finer than a layer's run-to-run spread, and a tenth of the JSON.
        rows = [[int(row[0]), float(f"{row[1]:.4g}"), float(f"{row[2]:.4g}"), *map(int, row[3:])] for row in self.rows]
        return {"fields": list(ROW_FIELDS), "scale": self.scale, "rows": rows, "ms": [float(f"{v:.4g}") for v in self.ms]}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> OpTable:
        if list(data.get("fields", [])) != list(ROW_FIELDS):
            raise ValueError(f"op table fields {data.get('fields')} are not {list(ROW_FIELDS)}")
        return cls(np.array(data["rows"], dtype=float), np.array(data["ms"], dtype=float), float(data["scale"]))

    @classmethod
    def from_timings(cls, timed: list[tuple[LayerTable, np.ndarray, float]], fixed_overhead_ms: float = 0.0) -> OpTable:
        """From (layer table, each layer's in-network ms, the network's measured ms) per network."""
        rows = np.concatenate([table.rows for table, _, _ in timed])
        ms = np.concatenate([layer_ms for _, layer_ms, _ in timed])
        scale = float(np.median([(network - fixed_overhead_ms) / layer_ms.sum() for _, layer_ms, network in timed]))
        keep = ms > 0  # a layer below the clock's resolution carries no time to learn from
        return cls(rows[keep], ms[keep], scale)


def time_layers(model: nn.Module, input_hw: tuple[int, int], passes: int = 3, warmup: int = 1) -> tuple[list[Layer], np.ndarray]:
    """Every layer of ``model`` (host CPU, fp32, eager) and its median in-network time over ``passes``
    forward passes, by thread CPU time on one thread, after ``warmup`` untimed ones."""
    clock, _ = host_clock(1)
    with fixed_threads(1), cpu_conditions():
        runs = [timed_trace(model, input_hw, clock) for _ in range(warmup + passes)][warmup:]
    layers = layers_of(runs[0], BYTES_PER_ELEMENT["fp32"], fuse_pointwise=False)
    return layers, np.median([[run[layer.node].ms for layer in layers] for run in runs], axis=0)
