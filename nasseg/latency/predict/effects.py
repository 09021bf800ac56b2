"""What the plain roofline misses on a Jetson: kernel effects a calibration may switch on.

Each effect rewrites a layer table before it is costed (more effective work, or no kernel at all),
or, for ``no_overlap``, changes how a kernel's arithmetic and memory traffic add up; none needs a
fitted parameter of its own: the fit's efficiencies absorb what stays common to
every network, and an effect survives only if it lowers the error on networks the fit never saw
(leave-one-network-out, ``benchmarks/latency_accuracy.py``). A calibration lists the effects it was
fitted with (``Calibration.effects``); the packaged ones keep those that passed that test
(benchmarks/README.md records what each did).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import numpy as np

from nasseg.latency.predict.costs import GEOMETRY_FIELDS, OP_CLASSES, LayerTable

_CIN, _COUT, _KH, _KW, _SH, _SW, _DH, _DW, _GROUPS, _TRANSPOSED = (
    GEOMETRY_FIELDS.index(f)
    for f in (
        "in_channels",
        "out_channels",
        "kernel_h",
        "kernel_w",
        "stride_h",
        "stride_w",
        "dilation_h",
        "dilation_w",
        "groups",
        "transposed",
    )
)
_CONV_CLASSES = [OP_CLASSES.index(c) for c in OP_CLASSES if c.startswith("conv")]
_CONV, _DEPTHWISE, _DILATED = (OP_CLASSES.index(c) for c in ("conv", "conv_depthwise", "conv_dilated"))
# The network's input image: TensorRT reformats it once, in every network alike, so the fit absorbs it.
_IMAGE_CHANNELS = 4


@dataclasses.dataclass(frozen=True)
class Hardware:
    """What an effect needs to know of the target: its precision and whether it has tensor cores."""

    precision: str
    tensor_cores: bool  # FP16 tensor-core peak above the CUDA-core one
    peak_over_cuda: float  # tensor-core peak / CUDA-core peak (1 without tensor cores)


def _dense_convs(table: LayerTable) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mask of launched, non-depthwise convolutions, and their input channels per group and output channels."""
    conv = np.isin(table.op_class, _CONV_CLASSES) & (table.conv_rows[:, _CIN] > 0) & (table.op_class != _DEPTHWISE)
    groups = np.maximum(table.conv_rows[:, _GROUPS], 1)
    return conv, table.conv_rows[:, _CIN] // groups, table.conv_rows[:, _COUT] // groups


def _round_up(x: np.ndarray, multiple: int) -> np.ndarray:
    return -(-x // multiple) * multiple


def pad8(table: LayerTable, hw: Hardware) -> np.ndarray:
    """Tensor-core FP16 kernels take channels in multiples of 8: TensorRT pads the others, and the
    padding is computed too (input channels from the image excepted)."""
    conv, cin, cout = _dense_convs(table)
    conv &= cin > _IMAGE_CHANNELS
    scale = np.ones(len(table.flops))
    safe_in, safe_out = np.maximum(cin, 1), np.maximum(cout, 1)
    scale[conv] = (_round_up(safe_in, 8) * _round_up(safe_out, 8) / (safe_in * safe_out))[conv]
    return scale


def misaligned_off_fp16(table: LayerTable, hw: Hardware) -> np.ndarray:
    """A convolution whose channels are not multiples of 8 falls off the fast FP16 path: onto the
    CUDA cores where there are tensor cores, to the FP32 rate (no paired half2 math) where there are
    none. At FP32 nothing changes."""
    if hw.precision != "fp16":
        return np.ones(len(table.flops))
    conv, cin, cout = _dense_convs(table)
    misaligned = conv & (cin > _IMAGE_CHANNELS) & ((cin % 8 != 0) | (cout % 8 != 0))
    if hw.tensor_cores:  # dilated convolutions run on the CUDA cores there already
        misaligned &= table.op_class != _DILATED
    slower = hw.peak_over_cuda if hw.tensor_cores else 2.0
    return np.where(misaligned, slower, 1.0)


def tile32(table: LayerTable, hw: Hardware) -> np.ndarray:
    """GEMM kernels compute output channels in tiles of 32: a narrow layer (HarDNet's growth of 10-30
    channels) pays for the whole tile."""
    conv, _, cout = _dense_convs(table)
    scale = np.ones(len(table.flops))
    safe = np.maximum(cout, 1)
    scale[conv] = (_round_up(safe, 32) / safe)[conv]
    return scale


def dilated_on_tensor_cores(table: LayerTable, hw: Hardware) -> np.ndarray:
    """TensorRT 7+ runs dilated convolutions as implicit GEMM on tensor cores (cuDNN 7 could not):
    cost them at the tensor-core peak, i.e. scale their work by CUDA-core / tensor-core peak."""
    return np.where(table.op_class == _DILATED, 1.0 / hw.peak_over_cuda, 1.0)


# Winograd F(2x2, 3x3): 16 multiplies per 2x2 output tile and input channel instead of 36.
WINOGRAD_SAVING = 36 / 16


def winograd(table: LayerTable, hw: Hardware) -> np.ndarray:
    """Where there are no tensor cores (Nano, TX2), cuDNN/TensorRT run dense, undilated 3x3 convolutions
    of stride 1 as Winograd F(2x2, 3x3) (jetson.md section 4: Winograd lifts ResNet and VGG there): 2.25x
    fewer multiplies than a strided, larger-kernel or image-input convolution of the same MACs, which
    runs as a plain implicit GEMM. Tensor-core GPUs run both as implicit GEMM: no change there."""
    if hw.tensor_cores:
        return np.ones(len(table.flops))
    rows = table.conv_rows
    fast = (
        (table.op_class == _CONV)
        & (rows[:, _KH] == 3)
        & (rows[:, _KW] == 3)
        & (rows[:, _SH] == 1)
        & (rows[:, _SW] == 1)
        & (rows[:, _CIN] > _IMAGE_CHANNELS)
    )
    return np.where(fast, 1.0 / WINOGRAD_SAVING, 1.0)


# Effects that scale each layer's arithmetic (effective FLOPs).
FLOP_EFFECTS: dict[str, Callable[[LayerTable, Hardware], np.ndarray]] = {
    "pad8": pad8,
    "misaligned_off_fp16": misaligned_off_fp16,
    "tile32": tile32,
    "dilated_on_tensor_cores": dilated_on_tensor_cores,
    "winograd": winograd,
}
# Effects that remove kernels: TensorRT writes a concatenation's inputs straight into its output buffer
# (concat_free: always; concat_in_place: only inputs no other concatenation reads, the rest is copied).
CONCAT_FREE, CONCAT_IN_PLACE = "concat_free", "concat_in_place"
# A kernel's arithmetic does not hide its memory traffic: its time is the sum of the two, not the larger.
# The plain roofline's max() is the ideal overlap; with 1-8 SMs and 0.25-4 MB of L2 a Jetson kernel keeps
# too few warps in flight to stream its operands while it computes. Costing only, no table change.
NO_OVERLAP = "no_overlap"
EFFECTS = (*FLOP_EFFECTS, CONCAT_FREE, CONCAT_IN_PLACE, NO_OVERLAP)


def overlaps(effects: list[str] | tuple[str, ...]) -> bool:
    """Whether a kernel's arithmetic hides its memory traffic (the roofline's max) under these effects."""
    return NO_OVERLAP not in effects


def apply_effects(table: LayerTable, effects: list[str] | tuple[str, ...], hw: Hardware) -> LayerTable:
    """The layer table as the effects make the kernels run (unchanged without effects)."""
    unknown = set(effects) - set(EFFECTS)
    if unknown:
        raise ValueError(f"unknown latency effect(s) {', '.join(sorted(unknown))}; known: {', '.join(EFFECTS)}")
    if not effects:
        return table
    flops = table.flops.copy()
    for name in effects:
        if name in FLOP_EFFECTS:
            flops *= FLOP_EFFECTS[name](table, hw)
    bytes_, launched = table.bytes, table.launched
    if CONCAT_FREE in effects or CONCAT_IN_PLACE in effects:
        cat = np.array([op.split(".", 1)[-1].rstrip("_") == "cat" for op in table.op], dtype=bool)
        copied = np.zeros(len(cat))
        if CONCAT_IN_PLACE in effects and CONCAT_FREE not in effects:
            if table.shared is None:
                raise ValueError("concat_in_place needs a layer table that records shared concatenation inputs")
            copied = table.shared
        bytes_ = np.where(cat, bytes_ * copied, bytes_)
        launched = np.where(cat & (copied == 0), 0.0, launched)
    return dataclasses.replace(table, flops=flops, bytes=bytes_, launched=launched)
