"""Static cost of a network: exact parameters, multiply-accumulates, peak activation memory.

MACs come from fvcore and are cross-checked against ``torch.utils.flop_counter``; fvcore skips
operators it has no handler for, so the operators it skipped are reported, never hidden.
"""

from __future__ import annotations

import logging
import weakref
from dataclasses import asdict, dataclass, field

import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.flop_counter import FlopCounterMode

# fvcore handlers for ops that are not multiply-accumulates of a conv/linear layer;
# fvcore counts them by default, the published "FLOPs" of our papers do not.
_NON_MATMUL_OPS = ("batch_norm", "upsample_nearest2d", "upsample_bilinear2d", "adaptive_avg_pool2d", "grid_sampler")

# Two sets of operators by bare ATen name: fvcore's "aten::relu_" and the latency predictor's
# "aten.relu_" are both "relu" (an in-place variant does what its functional form does).
#
# Operators that run no kernel on the device: views and shape queries only relabel memory, and
# tensors made of constants (zeros, full, arange ...) become constants of an exported engine. The
# latency predictor (nasseg.latency.predict.costs) leaves them out of the layers it costs.
NO_KERNEL_OPS = frozenset(
    {
        "view",
        "_unsafe_view",
        "reshape",
        "transpose",
        "permute",
        "t",
        "expand",
        "expand_as",
        "slice",
        "select",
        "unsqueeze",
        "squeeze",
        "alias",
        "detach",
        "split",
        "split_with_sizes",
        "chunk",
        "unbind",
        "narrow",
        "as_strided",
        "flatten",
        "unflatten",
        "empty",
        "empty_like",
        "empty_strided",
        "zeros",
        "ones",
        "full",
        "zeros_like",
        "ones_like",
        "full_like",
        "arange",
        "scalar_tensor",
        "lift_fresh",
        "lift_fresh_copy",
        "_local_scalar_dense",
        "sym_size",
        "sym_stride",
        "sym_numel",
        "dim",
        "size",
        "stride",
        "numel",
        "is_same_size",
        "view_as",
        "movedim",
        "squeeze_copy",
        "new_empty",
        "new_zeros",
        "new_ones",
    }
)

# Operators with no multiply-accumulates worth counting, so fvcore skipping them is expected (anything
# else it skips is reported as a gap): those that run no kernel, and those whose kernel does only
# element-wise arithmetic, pooling, a reduction or a copy. The latency predictor costs the latter, as
# they take time on the device though they add no MACs.
NO_MAC_OPS = NO_KERNEL_OPS | {
    # element-wise
    "add",
    "sub",
    "mul",
    "div",
    "floor_divide",
    "abs",
    "exp",
    "log",
    "relu",
    "prelu",
    "leaky_relu",
    "sigmoid",
    "tanh",
    "hardswish",
    "hardtanh",
    "silu",
    "clamp",
    "clamp_min",
    "where",
    "gt",
    # pooling and reductions
    "avg_pool2d",
    "max_pool2d",
    "mean",
    "sum",
    "amax",
    "max",
    "softmax",
    # copies and padding
    "cat",
    "stack",
    "repeat",
    "contiguous",
    "constant_pad_nd",
    "reflection_pad2d",
    # only in fvcore's TorchScript trace: the predictor's dispatched graph holds what pad decomposes
    # into, no dropout (an identity in inference) and no scalar conversions
    "pad",
    "dropout",
    "feature_dropout",
    "Int",
    "ScalarImplicit",
}


def _bare_name(op: str) -> str:
    """'aten::relu_' -> 'relu'."""
    name = op.split("::", 1)[-1]
    return name[:-1] if name.endswith("_") else name


@dataclass(frozen=True)
class MacCount:
    """Multiply-accumulates of one forward pass at ``input_hw`` (batch 1)."""

    input_hw: tuple[int, int]
    macs: int  # fvcore total (conv, linear, plus BN / resize / adaptive pooling as fvcore counts them)
    conv_macs: int  # fvcore conv + linear multiply-accumulates only
    flop_counter_macs: int  # torch.utils.flop_counter FLOPs / 2 (matmul-like ops only)
    by_operator: dict[str, int] = field(default_factory=dict)
    skipped_ops: dict[str, int] = field(default_factory=dict)  # ops fvcore had no handler for, with counts

    @property
    def cross_check_rel_diff(self) -> float:
        """Relative difference between fvcore's and torch's count of matmul-like MACs."""
        if self.flop_counter_macs == 0:
            return 0.0 if self.conv_macs == 0 else float("inf")
        return (self.conv_macs - self.flop_counter_macs) / self.flop_counter_macs

    @property
    def uncounted_ops(self) -> dict[str, int]:
        """Skipped ops that may carry multiply-accumulates (any not in ``NO_MAC_OPS``)."""
        return {op: n for op, n in self.skipped_ops.items() if _bare_name(op) not in NO_MAC_OPS}


def count_params(model: nn.Module) -> int:
    """Trainable and frozen parameters (BN affine and PReLU slopes included, BN statistics not)."""
    return sum(p.numel() for p in model.parameters())


def _example(input_hw: tuple[int, int], model: nn.Module, channels: int = 3) -> torch.Tensor:
    param = next(model.parameters(), None)
    device = param.device if param is not None else torch.device("cpu")
    return torch.zeros(1, channels, *input_hw, device=device)


def count_macs(model: nn.Module, input_hw: tuple[int, int]) -> MacCount:
    """Count MACs with fvcore, cross-checked with torch's flop counter."""
    from fvcore.nn import FlopCountAnalysis  # imported lazily: it pulls in iopath

    was_training = model.training
    model.eval()
    x = _example(input_hw, model)
    try:
        with torch.no_grad():
            analysis = FlopCountAnalysis(model, x)
            analysis.unsupported_ops_warnings(False).uncalled_modules_warnings(False).tracer_warnings("none")
            logging.getLogger("fvcore").setLevel(logging.ERROR)
            by_op = {op: int(n) for op, n in analysis.by_operator().items()}
            skipped = {op: int(n) for op, n in analysis.unsupported_ops().items()}
            total = int(analysis.total())
            with FlopCounterMode(display=False) as counter:
                model(x)
    finally:
        model.train(was_training)
    conv_macs = sum(n for op, n in by_op.items() if op not in _NON_MATMUL_OPS)
    return MacCount(
        input_hw=(int(input_hw[0]), int(input_hw[1])),
        macs=total,
        conv_macs=conv_macs,
        flop_counter_macs=int(counter.get_total_flops()) // 2,
        by_operator=by_op,
        skipped_ops=skipped,
    )


class _LiveTensorTracker(TorchDispatchMode):
    """Tracks the bytes of tensor storages created during a forward pass that are still alive."""

    def __init__(self) -> None:
        super().__init__()
        self.live: dict[int, list[int]] = {}  # storage pointer -> [bytes, python tensors alive]
        self.current = 0
        self.peak = 0

    def _release(self, key: int) -> None:
        entry = self.live.get(key)
        if entry is None:
            return
        entry[1] -= 1
        if entry[1] == 0:
            self.current -= entry[0]
            del self.live[key]

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in out if isinstance(out, tuple | list) else (out,):
            if not isinstance(t, torch.Tensor):
                continue
            storage = t.untyped_storage()
            key = storage.data_ptr()
            if key not in self.live:
                self.live[key] = [storage.nbytes(), 0]
                self.current += storage.nbytes()
                self.peak = max(self.peak, self.current)
            self.live[key][1] += 1
            weakref.finalize(t, self._release, key)
        return out


def peak_activation_bytes(model: nn.Module, input_hw: tuple[int, int]) -> int:
    """Peak bytes of live activations during one inference forward pass (batch 1, float32),
    the input image included and the weights excluded."""
    was_training = model.training
    model.eval()
    x = _example(input_hw, model)
    tracker = _LiveTensorTracker()
    try:
        with torch.no_grad(), tracker:
            model(x)
    finally:
        model.train(was_training)
    return tracker.peak + x.numel() * x.element_size()


@dataclass(frozen=True)
class Profile:
    params: int
    macs: MacCount
    peak_activation_bytes: int

    def to_dict(self) -> dict:
        data = asdict(self)
        data["macs"]["cross_check_rel_diff"] = self.macs.cross_check_rel_diff
        data["macs"]["uncounted_ops"] = self.macs.uncounted_ops
        return data


def profile(model: nn.Module, input_hw: tuple[int, int]) -> Profile:
    """Parameters, MACs and peak activation memory of ``model`` at ``input_hw``."""
    return Profile(count_params(model), count_macs(model, input_hw), peak_activation_bytes(model, input_hw))
