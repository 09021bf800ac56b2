"""What each operator of the layer graph asks of the hardware: its op class, arithmetic and bytes.

Every operator is either free (it runs no kernel: ``nasseg.profile.NO_KERNEL_OPS``), or a layer
of one op class with its floating-point operations and the bytes it reads and writes. An operator
that is neither is an error naming it and the layer that ran it: nothing is ever silently costed
at 0 ms.

With ``fuse_pointwise`` (TensorRT), element-wise operators that directly follow a convolution
or matrix product whose output nothing else reads (batch-norm, activation, residual add) run
inside that kernel, as TensorRT's conv+BN+activation(+add) fusions do: they cost only the
extra tensors they read and no launch.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import numpy as np

from nasseg.errors import UnsupportedLayer
from nasseg.latency.predict.graph import OpNode
from nasseg.profile import NO_KERNEL_OPS

# Op classes. Convolutions split by the shape of their work, because kernels differ (and papers
# measure them differently): a depthwise conv is memory bound, a dilated one loses Winograd and
# (on Volta) tensor cores, a factorised 3x1 is two launches for 2/3 of the work.
CONV_CLASSES = ("conv", "conv1x1", "conv_dilated", "conv_asym", "conv_depthwise", "conv_grouped", "conv_transposed")
OTHER_CLASSES = ("matmul", "elementwise", "pool", "reduce", "resize", "copy")
OP_CLASSES = CONV_CLASSES + OTHER_CLASSES

_ELEMENTWISE = {
    "add",
    "sub",
    "rsub",
    "mul",
    "div",
    "relu",
    "relu6",
    "sigmoid",
    "tanh",
    "hardswish",
    "hardsigmoid",
    "silu",
    "gelu",
    "prelu",
    "_prelu_kernel",
    "leaky_relu",
    "hardtanh",
    "clamp",
    "clamp_min",
    "clamp_max",
    "exp",
    "log",
    "abs",
    "neg",
    "pow",
    "sqrt",
    "rsqrt",
    "reciprocal",
    "where",
    "gt",
    "lt",
    "ge",
    "le",
    "eq",
    "ne",
    "minimum",
    "maximum",
    "elu",
    "selu",
    "celu",
    "softplus",
    "erf",
    "mish",
    "masked_fill",
    "fill",
    "sign",
    "floor",
    "ceil",
    "round",
    "threshold",
    "addcmul",
    "addcdiv",
    "lerp",
    "native_batch_norm",
    "_native_batch_norm_legit",
    "_native_batch_norm_legit_no_training",
    "native_layer_norm",
    "native_group_norm",
    "sin",
    "cos",
    "logical_and",
    "logical_or",
    "logical_not",
    "bitwise_and",
    "bitwise_or",
    "_to_copy",
    "to",
    "glu",
    "hardshrink",
    "softshrink",
    "log_sigmoid_forward",
    "log1p",
    "expm1",
    "copysign",
    "fmod",
    "remainder",
    "floor_divide",
    "square",
    "exp2",
    "tanh_backward",
}
_POOL = {
    "max_pool2d",
    "max_pool2d_with_indices",
    "avg_pool2d",
    "max_pool1d",
    "avg_pool1d",
    "max_pool3d",
    "avg_pool3d",
    "max_pool3d_with_indices",
    "lp_pool2d",
}
_ADAPTIVE_POOL = {
    "adaptive_avg_pool2d",
    "_adaptive_avg_pool2d",
    "adaptive_max_pool2d",
    "adaptive_avg_pool1d",
    "adaptive_max_pool1d",
    "adaptive_avg_pool3d",
    "_adaptive_avg_pool3d",
}
_REDUCE = {
    "mean",
    "sum",
    "amax",
    "amin",
    "max",
    "min",
    "_softmax",
    "_safe_softmax",
    "softmax",
    "_log_softmax",
    "log_softmax",
    "var",
    "std",
    "var_mean",
    "std_mean",
    "norm",
    "linalg_vector_norm",
    "argmax",
    "argmin",
    "logsumexp",
    "prod",
    "cumsum",
    "any",
    "all",
}
_RESIZE = {
    "upsample_bilinear2d",
    "upsample_nearest2d",
    "upsample_bicubic2d",
    "_upsample_bilinear2d_aa",
    "_upsample_nearest_exact2d",
    "upsample_nearest1d",
    "upsample_linear1d",
    "grid_sampler_2d",
    "upsample_trilinear3d",
    "upsample_nearest3d",
}
_COPY = {
    "cat",
    "stack",
    "clone",
    "copy",
    "contiguous",
    "constant_pad_nd",
    "reflection_pad2d",
    "replication_pad2d",
    "reflection_pad1d",
    "replication_pad1d",
    "channel_shuffle",
    "native_channel_shuffle",
    "pixel_shuffle",
    "pixel_unshuffle",
    "repeat",
    "index_select",
    "index",
    "gather",
    "flip",
    "roll",
    "im2col",
    "col2im",
    "tril",
    "triu",
    "masked_scatter",
    "scatter",
    "slice_scatter",
    "select_scatter",
}
_MATMUL = {"mm", "addmm", "bmm", "baddbmm", "matmul", "linear", "addbmm", "dot", "mv", "einsum"}
_ATTENTION = {
    "_scaled_dot_product_flash_attention_for_cpu",
    "_scaled_dot_product_flash_attention",
    "_scaled_dot_product_efficient_attention",
    "_scaled_dot_product_cudnn_attention",
    "scaled_dot_product_attention",
    "_scaled_dot_product_attention_math",
}
# Ops TensorRT folds into the producing convolution / matrix product.
_FUSABLE = _ELEMENTWISE - {"_to_copy", "to"}

BYTES_PER_ELEMENT = {"fp32": 4.0, "fp16": 2.0, "int8": 1.0}
# Floating-point operations per output element for memory-bound classes (their compute term).
_FLOPS_PER_ELEMENT = {"elementwise": 1.0, "copy": 0.0, "resize": 4.0}


@dataclass(frozen=True)
class ConvGeometry:
    """One 2-D convolution as ``aten.convolution`` ran it: input, weight and arguments.

    It is what a device's kernel time depends on: the op table (``nasseg.latency.predict.optable``) predicts
    a convolution's time from it.
    """

    in_channels: int
    in_h: int
    in_w: int
    out_channels: int
    kernel_h: int
    kernel_w: int
    stride_h: int
    stride_w: int
    pad_h: int
    pad_w: int
    dilation_h: int
    dilation_w: int
    groups: int
    transposed: bool
    output_pad_h: int
    output_pad_w: int
    bias: bool

    def as_row(self) -> list[int]:
        # Not dataclasses.astuple, which deep-copies field by field: that takes a tenth of an estimate's time.
        return [int(getattr(self, f.name)) for f in dataclasses.fields(self)]

    @classmethod
    def from_row(cls, row: list[int]) -> ConvGeometry:
        *ints, transposed, output_pad_h, output_pad_w, bias = row
        # the row is the fields in order: mypy cannot count a starred list
        return cls(*ints, bool(transposed), output_pad_h, output_pad_w, bool(bias))  # type: ignore[arg-type, call-arg]


# A convolution's geometry as a row of ints, in this order.
GEOMETRY_FIELDS = tuple(f.name for f in dataclasses.fields(ConvGeometry))

# What a kernel's time depends on beyond its FLOPs and bytes, for every layer: its first activation
# input and its first output as (channels, height, width), how many activation operands it reads, and
# the size of the second (a multiply by a (C, 1, 1) attention map is not one by a whole tensor). An
# upsampling of 960 channels from 6x8 to 48x64 and one of 11 channels from 48x64 to 192x256 have the
# same FLOPs and bytes within 20 %, yet take 13.6 and 1.3 ns per output element on the development CPU.
SHAPE_FIELDS = ("in_c", "in_h", "in_w", "out_c", "out_h", "out_w", "operands", "second_numel")


@dataclass(frozen=True)
class Layer:
    """One costed kernel: the op class, its arithmetic and its memory traffic."""

    node: int  # index into the traced graph
    op: str
    op_class: str
    flops: float
    bytes: float
    fused: bool = False  # runs inside the previous kernel: extra bytes only, no launch
    where: str = ""
    conv: ConvGeometry | None = None  # for a convolution: enough to replay it alone
    shape: tuple[int, ...] = (-1,) * len(SHAPE_FIELDS)  # SHAPE_FIELDS
    # For a concatenation: the share of its input elements that another concatenation reads too. A
    # runtime that writes producers straight into the concat buffer can do so for one buffer only
    # (HarDNet feeds one layer's output into several), so only that share must still be copied.
    shared: float = 1.0


def _chw(shape: tuple[int, ...]) -> tuple[int, int, int]:
    """(C, H, W) of an activation at batch 1; other ranks fold into C and W (a (B, L, E) token map is (L, 1, E))."""
    if len(shape) == 4:
        return shape[1], shape[2], shape[3]
    if len(shape) < 2:
        return 1, 1, _numel(shape)
    return _numel(shape[1:-1]), 1, shape[-1]


def _layer_shape(node: OpNode) -> tuple[int, ...]:
    activations = [s for s, weight in zip(node.in_shapes, node.is_weight, strict=False) if not weight] or [()]
    second = _numel(activations[1]) if len(activations) > 1 else 0
    return (*_chw(activations[0]), *_chw(node.out_shapes[0] if node.out_shapes else ()), len(activations), second)


def _conv_geometry(node: OpNode) -> ConvGeometry | None:
    """The geometry of a 2-D ``aten.convolution`` node; None for 1-D and 3-D ones."""
    x_shape, w_shape = node.in_shapes[0], node.in_shapes[1]
    if len(x_shape) != 4:
        return None
    stride, padding, dilation, transposed, output_padding, groups = node.args[-6:]
    out_channels = w_shape[1] * groups if transposed else w_shape[0]
    return ConvGeometry(  # type: ignore[call-arg]  # stride, padding, dilation: two ints each
        x_shape[1],
        x_shape[2],
        x_shape[3],
        out_channels,
        w_shape[2],
        w_shape[3],
        *stride,
        *padding,
        *dilation,
        groups,
        bool(transposed),
        *output_padding,
        len(node.in_shapes) > 2,
    )


def _numel(shape: tuple[int, ...]) -> int:
    return math.prod(shape) if shape else 1


def _base_name(op: str) -> str:
    """'aten.relu_' -> 'relu': in-place variants cost what their functional form costs."""
    name = op.split(".", 1)[-1]
    return name[:-1] if name.endswith("_") else name


def _conv_class(node: OpNode) -> tuple[str, float]:
    """Class and FLOPs of an ``aten.convolution`` (args: stride, padding, dilation, transposed,
    output_padding, groups)."""
    x_shape, w_shape = node.in_shapes[0], node.in_shapes[1]
    _stride, _padding, dilation, transposed, _out_pad, groups = node.args[-6:]
    out = node.out_shapes[0]
    kernel = w_shape[2:]
    in_ch = x_shape[1]
    macs_per_out = _numel(kernel) * (w_shape[1] if not transposed else w_shape[0] // groups)
    if transposed:
        flops = 2.0 * _numel(x_shape) * (w_shape[1]) * _numel(kernel)
        return "conv_transposed", flops
    flops = 2.0 * _numel(out) * macs_per_out
    if groups > 1 and groups == in_ch:
        return "conv_depthwise", flops
    if groups > 1:
        return "conv_grouped", flops
    if any(d > 1 for d in dilation):
        return "conv_dilated", flops
    if len(set(kernel)) > 1:
        return "conv_asym", flops
    if all(k == 1 for k in kernel):
        return "conv1x1", flops
    return "conv", flops


def _matmul_flops(node: OpNode) -> float:
    """2 x the multiply-accumulates of a (batched) matrix product: output elements x inner size."""
    name = _base_name(node.op)
    shapes = node.in_shapes
    if name in ("addmm", "baddbmm", "addbmm"):
        shapes = shapes[1:]
    inner = shapes[0][-1] if shapes and shapes[0] else 1
    return 2.0 * _numel(node.out_shapes[0]) * inner


def _attention_flops(node: OpNode) -> float:
    """Q (..., L, E), K (..., S, E), V (..., S, Ev): QK^T and PV."""
    q, k, v = node.in_shapes[:3]
    batch = _numel(q[:-2])
    return 2.0 * batch * q[-2] * k[-2] * (q[-1] + v[-1])


def _classify(node: OpNode) -> tuple[str, float] | None:
    """(op class, FLOPs), or None for a free op. Raises for an op with no cost model."""
    name = _base_name(node.op)
    out_elems = float(sum(_numel(s) for s in node.out_shapes))
    if name in NO_KERNEL_OPS:
        return None
    if name == "convolution" or name == "_convolution":
        return _conv_class(node)
    if name in _MATMUL:
        return "matmul", _matmul_flops(node)
    if name in _ATTENTION:
        return "matmul", _attention_flops(node)
    if name in _POOL:
        kernel = node.args[0] if node.args else (1, 1)
        return "pool", out_elems * _numel(tuple(kernel) if isinstance(kernel, list | tuple) else (kernel,))
    if name in _ADAPTIVE_POOL or name in _REDUCE:
        return ("pool" if name in _ADAPTIVE_POOL else "reduce"), float(_numel(node.in_shapes[0]))
    for op_class, names in (("elementwise", _ELEMENTWISE), ("resize", _RESIZE), ("copy", _COPY)):
        if name in names:
            return op_class, out_elems * _FLOPS_PER_ELEMENT[op_class]
    raise UnsupportedLayer(
        f"no latency cost model for operator {node.op} (called by layer {node.where}); "
        "the predictor never costs an unknown operator at 0 ms"
    )


def _bytes(node: OpNode, bytes_per_element: float) -> float:
    elements = sum(_numel(s) for s in node.in_shapes) + sum(_numel(s) for s in node.out_shapes)
    return elements * bytes_per_element


def layers_of(nodes: list[OpNode], bytes_per_element: float, fuse_pointwise: bool) -> list[Layer]:
    """Cost rows of every kernel the graph runs (free ops dropped, fusions applied)."""
    classified = {node.index: _classify(node) for node in nodes}
    # A view's output is its input's data: look through views to the kernel that wrote it.
    source: dict[int, int | None] = {}
    for node in nodes:
        first = node.producers[0] if node.producers else None
        source[node.index] = node.index if classified[node.index] else source.get(first) if first is not None else None

    def kernels_read(node: OpNode) -> set[int]:
        """The kernels whose outputs ``node`` reads (through views)."""
        return {k for p in node.producers if p is not None and (k := source.get(p)) is not None}

    readers: dict[int, int] = {}
    for node in nodes:
        if classified[node.index]:
            for producer in kernels_read(node):
                readers[producer] = readers.get(producer, 0) + 1
    cat_readers: dict[int, int] = {}  # kernel -> how many concatenations read its output
    for node in nodes:
        if _base_name(node.op) == "cat":
            for producer in kernels_read(node):
                cat_readers[producer] = cat_readers.get(producer, 0) + 1
    in_fusable_kernel: dict[int, bool] = {}  # node -> its output is written by a conv/matmul kernel
    layers: list[Layer] = []
    for node in nodes:
        kernel = classified[node.index]
        if kernel is None:
            continue
        op_class, flops = kernel
        first = source.get(node.producers[0]) if node.producers and node.producers[0] is not None else None
        fused = (
            fuse_pointwise
            and _base_name(node.op) in _FUSABLE
            and first is not None
            and in_fusable_kernel.get(first, False)
            and readers.get(first, 0) == 1
            and _numel(node.out_shapes[0]) == _numel(node.in_shapes[0])
        )
        if fused:
            # The fused kernel still reads any other full-size operand (a residual branch).
            out_elems = _numel(node.out_shapes[0])
            extra = sum(
                _numel(s)
                for s, weight in zip(node.in_shapes[1:], node.is_weight[1:], strict=False)
                if not weight and _numel(s) == out_elems
            )
            layers.append(Layer(node.index, node.op, op_class, 0.0, extra * bytes_per_element, True, node.where))
        else:
            conv = _conv_geometry(node) if op_class in CONV_CLASSES else None
            shared = 1.0
            if _base_name(node.op) == "cat":
                sizes = [
                    (_numel(shape), source.get(p) if p is not None else None)
                    for shape, p in zip(node.in_shapes, node.producers, strict=False)
                ]
                total = sum(n for n, _ in sizes) or 1
                # An input from outside the graph (the image) or a kernel read by another concatenation is copied.
                shared = sum(n for n, p in sizes if p is None or cat_readers.get(p, 0) > 1) / total
            layers.append(
                Layer(
                    node.index,
                    node.op,
                    op_class,
                    flops,
                    _bytes(node, bytes_per_element),
                    False,
                    node.where,
                    conv,
                    _layer_shape(node),
                    shared,
                )
            )
        in_fusable_kernel[node.index] = fused or op_class in CONV_CLASSES or op_class == "matmul"
    return layers


@dataclass(frozen=True)
class LayerTable:
    """The costed kernels of one or more networks as flat arrays (``sample`` says whose)."""

    op_class: np.ndarray  # index into OP_CLASSES
    flops: np.ndarray
    bytes: np.ndarray
    launched: np.ndarray  # 1.0 where the kernel is launched (not fused into the previous one)
    sample: np.ndarray
    conv_rows: np.ndarray  # per layer: its convolution geometry (GEOMETRY_FIELDS), or -1s
    shape_rows: np.ndarray  # per layer: its activation shapes (SHAPE_FIELDS), or -1s where fused
    op: np.ndarray  # per layer: the ATen operator, e.g. "aten.exp" (an op table tells them apart)
    shared: np.ndarray | None = None  # per layer: Layer.shared (None in tables built without it)

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
            conv_rows=np.array(
                [layer.conv.as_row() if layer.conv else [-1] * len(GEOMETRY_FIELDS) for layer in layers], dtype=np.int64
            ).reshape(-1, len(GEOMETRY_FIELDS)),
            shape_rows=np.array([layer.shape for layer in layers], dtype=np.int64).reshape(-1, len(SHAPE_FIELDS)),
            op=np.array([layer.op for layer in layers], dtype=object),
            shared=np.array([layer.shared for layer in layers], dtype=float),
        )

    @classmethod
    def concat(cls, tables: list[LayerTable]) -> LayerTable:
        return cls(
            op_class=np.concatenate([t.op_class for t in tables]),
            flops=np.concatenate([t.flops for t in tables]),
            bytes=np.concatenate([t.bytes for t in tables]),
            launched=np.concatenate([t.launched for t in tables]),
            sample=np.concatenate([np.full(len(t.flops), i, dtype=np.int64) for i, t in enumerate(tables)]),
            conv_rows=np.concatenate([t.conv_rows for t in tables]),
            shape_rows=np.concatenate([t.shape_rows for t in tables]),
            op=np.concatenate([t.op for t in tables]),
            shared=np.concatenate([t.shared for t in tables]) if all(t.shared is not None for t in tables) else None,
        )
