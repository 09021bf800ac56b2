"""Kernel-level latency: convolutions timed one at a time, unseen ones predicted by a regressor.

One efficiency per op class cannot follow a CPU's convolution kernels: oneDNN picks a different
algorithm and blocking for every shape, so a 1x1 convolution of 32 -> 128 channels at 96x128 and
a depthwise one of 1024 channels at 2x2 (which costs about 4 us per channel) run at very different
fractions of the peak. As nn-Meter does for mobile CPUs, a kernel table times convolutions alone,
exactly as the network runs them (``aten.convolution`` with the same shapes and arguments), and a
tree ensemble over their log-shape features predicts the convolutions it has not timed.

The table (geometries and times) is what a calibration stores; the regressor is refitted from it,
deterministically, when the calibration is first used. A table is only meaningful where a network
runs its convolutions one by one as separate kernels: PyTorch eager (the host CPU). TensorRT fuses
and re-plans layers, so Jetson calibrations keep the roofline of ``nasseg.latency.predictor``.

Experimental: on the development VM, convolutions inside a network did not cost what they cost alone
(benchmarks/README.md), so no packaged calibration has a table and ``nasseg calibrate`` builds one
only when asked (``--kernel-samples``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from nasseg.latency.costs import ConvGeometry
from nasseg.latency.timing import TimingSettings, cpu_conditions, fixed_threads, host_clock, time_repeatedly

if TYPE_CHECKING:
    from sklearn.ensemble import ExtraTreesRegressor

GEOMETRY_FIELDS = tuple(f.name for f in dataclasses.fields(ConvGeometry))
_COL = {name: i for i, name in enumerate(GEOMETRY_FIELDS)}
_TREES = 200


def _cols(rows: np.ndarray, *names: str) -> list[np.ndarray]:
    return [rows[:, _COL[n]].astype(float) for n in names]


def output_hw(rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Output height and width of each geometry row (PyTorch's convolution arithmetic)."""
    h, w, kh, kw, sh, sw, ph, pw, dh, dw, tr, oph, opw = _cols(
        rows, "in_h", "in_w", "kernel_h", "kernel_w", "stride_h", "stride_w", "pad_h", "pad_w",
        "dilation_h", "dilation_w", "transposed", "output_pad_h", "output_pad_w")
    direct_h = np.floor((h + 2 * ph - dh * (kh - 1) - 1) / sh) + 1
    direct_w = np.floor((w + 2 * pw - dw * (kw - 1) - 1) / sw) + 1
    up_h = (h - 1) * sh - 2 * ph + dh * (kh - 1) + oph + 1
    up_w = (w - 1) * sw - 2 * pw + dw * (kw - 1) + opw + 1
    return np.where(tr > 0, up_h, direct_h), np.where(tr > 0, up_w, direct_w)


def conv_flops(rows: np.ndarray) -> np.ndarray:
    """2 x the multiply-accumulates of each geometry row."""
    cin, h, w, cout, kh, kw, g, tr = _cols(rows, "in_channels", "in_h", "in_w", "out_channels", "kernel_h", "kernel_w", "groups", "transposed")
    out_h, out_w = output_hw(rows)
    direct = out_h * out_w * cout * (cin / g)
    transposed = h * w * cin * (cout / g)
    return 2.0 * np.where(tr > 0, transposed, direct) * kh * kw


def features(rows: np.ndarray) -> np.ndarray:
    """Log2 shape features, the work and the memory traffic of each geometry row."""
    rows = np.asarray(rows, dtype=np.int64).reshape(-1, len(GEOMETRY_FIELDS))
    cin, h, w, cout, kh, kw, sh, sw, dh, dw, g, tr = _cols(
        rows, "in_channels", "in_h", "in_w", "out_channels", "kernel_h", "kernel_w", "stride_h", "stride_w",
        "dilation_h", "dilation_w", "groups", "transposed")
    out_h, out_w = np.maximum(output_hw(rows), 1)
    elements = cin * h * w + cout * out_h * out_w + cout * cin / g * kh * kw
    logs = np.log2(np.stack([cin / g, cout / g, g, out_h, out_w, kh, kw, sh, sw, dh, dw,
                             np.maximum(conv_flops(rows), 1), elements], axis=1))
    return np.concatenate([logs, np.stack([tr, (g == cin) & (g > 1)], axis=1).astype(float)], axis=1)


@dataclass(frozen=True)
class KernelTable:
    """Convolution kernels measured on one device, and a regressor of log time over them."""

    rows: np.ndarray  # n x len(GEOMETRY_FIELDS) integer geometries
    ms: np.ndarray  # measured time of each

    def __post_init__(self) -> None:
        if self.rows.ndim != 2 or self.rows.shape[1] != len(GEOMETRY_FIELDS) or len(self.rows) != len(self.ms):
            raise ValueError(f"a kernel table needs n x {len(GEOMETRY_FIELDS)} geometry rows and n times")
        if len(self.ms) < 2 or not np.all(np.isfinite(self.ms) & (self.ms > 0)):
            raise ValueError("a kernel table needs at least two kernels, every time positive")

    @staticmethod
    def _regressor() -> ExtraTreesRegressor:
        from sklearn.ensemble import ExtraTreesRegressor  # only where a calibration has a kernel table

        # Unpruned trees without bootstrap reproduce every timed kernel exactly; averaging many
        # randomised splits interpolates between them.
        return ExtraTreesRegressor(_TREES, min_samples_leaf=1, bootstrap=False, random_state=0, n_jobs=1)

    # The regressor learns log(time per FLOP), not log(time): trees cannot extrapolate, and a kernel
    # larger than any timed one then keeps the speed of the largest like it (time grows with its
    # work) instead of taking their time.
    @cached_property
    def _model(self) -> ExtraTreesRegressor:
        return self._regressor().fit(features(self.rows), self._log_ms_per_flop(self.rows, self.ms))

    @staticmethod
    def _log_ms_per_flop(rows: np.ndarray, ms: np.ndarray) -> np.ndarray:
        return np.log(ms) - np.log(np.maximum(conv_flops(rows), 1))

    def predict_ms(self, rows: np.ndarray) -> np.ndarray:
        """Predicted time (ms) of each geometry row; a timed kernel gets its own time."""
        rows = np.asarray(rows, dtype=np.int64).reshape(-1, len(GEOMETRY_FIELDS))
        if not len(rows):
            return np.zeros(0)
        return np.exp(self._model.predict(features(rows))) * np.maximum(conv_flops(rows), 1)

    def cross_validated_ms(self, folds: int = 5) -> np.ndarray:
        """Each timed kernel predicted by a regressor fitted without it (k-fold)."""
        from sklearn.model_selection import KFold, cross_val_predict

        split = KFold(min(folds, len(self.ms)), shuffle=True, random_state=0)
        target = self._log_ms_per_flop(self.rows, self.ms)
        predicted = cross_val_predict(self._regressor(), features(self.rows), target, cv=split)
        return np.exp(predicted) * np.maximum(conv_flops(self.rows), 1)

    def to_dict(self) -> dict[str, Any]:
        return {"fields": list(GEOMETRY_FIELDS), "rows": self.rows.tolist(), "ms": [float(v) for v in self.ms]}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> KernelTable:
        if list(data.get("fields", [])) != list(GEOMETRY_FIELDS):
            raise ValueError(f"kernel table fields {data.get('fields')} are not {list(GEOMETRY_FIELDS)}")
        return cls(np.array(data["rows"], dtype=np.int64), np.array(data["ms"], dtype=float))


def time_conv(geometry: ConvGeometry, settings: TimingSettings) -> float:
    """Median time (ms) of one convolution run alone on this CPU, by the clock a network
    measurement with the same settings uses."""
    g = geometry
    clock, _ = host_clock(settings.threads)
    weight_shape = (g.in_channels, g.out_channels // g.groups) if g.transposed else (g.out_channels, g.in_channels // g.groups)
    x = torch.randn(1, g.in_channels, g.in_h, g.in_w)
    weight = torch.randn(*weight_shape, g.kernel_h, g.kernel_w)
    bias = torch.randn(g.out_channels) if g.bias else None
    args = ([g.stride_h, g.stride_w], [g.pad_h, g.pad_w], [g.dilation_h, g.dilation_w], g.transposed,
            [g.output_pad_h, g.output_pad_w], g.groups)

    def run_once() -> float:
        start = clock()
        torch.ops.aten.convolution(x, weight, bias, *args)
        return (clock() - start) * 1e3

    with fixed_threads(settings.threads), torch.no_grad(), cpu_conditions():
        return time_repeatedly(run_once, settings).median_ms


# Kernels are short and many: a tighter budget per kernel than a whole network gets.
KERNEL_TIMING = TimingSettings(warmup_runs=3, warmup_s=0.02, min_repeats=9, max_repeats=60, max_seconds=0.5,
                               rel_precision=0.01, threads=1)


def measure_table(
    rows: np.ndarray, settings: TimingSettings = KERNEL_TIMING, progress: Callable[[int, int], None] | None = None,
) -> KernelTable:
    """Time every geometry row on this CPU and return the table."""
    ms = np.empty(len(rows))
    for i, row in enumerate(rows):
        ms[i] = time_conv(ConvGeometry.from_row(list(row)), settings)
        if progress:
            progress(i + 1, len(rows))
    return KernelTable(np.asarray(rows, dtype=np.int64), ms)
