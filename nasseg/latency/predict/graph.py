"""The real layer graph of a network: every ATen operator one forward pass runs, with shapes.

The model runs once on fake tensors (no memory, no arithmetic), so tracing works for any module
that can run a forward pass, whatever Python control flow it uses, and costs nothing at
1024x2048. Each operator records its input and output shapes, its non-tensor arguments (stride,
dilation, groups, ...), the module that called it and which earlier operator produced each of its
inputs, so fusion and consumer counts can be worked out afterwards. ``timed_trace`` runs the same
recording on real tensors and times every operator as it runs inside the network (the host CPU's
op table, ``nasseg.latency.predict.optable``). ``trace_meta`` records the same graph from a model built on
PyTorch's ``meta`` device, several times faster (``nasseg explore`` costs thousands of architectures).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn
from torch._subclasses.fake_tensor import FakeTensorMode
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.weak import WeakIdKeyDictionary

from nasseg.errors import UntraceableModel


@dataclass
class OpNode:
    """One ATen operator call of the forward pass."""

    index: int
    op: str  # e.g. "aten.convolution"
    module: str  # dotted path of the innermost module that ran it ("" for the root)
    module_type: str
    in_shapes: list[tuple[int, ...]]
    out_shapes: list[tuple[int, ...]]
    producers: list[int | None]  # for each tensor input: the node that made it (None: input/weight)
    args: list[Any] = field(default_factory=list)  # non-tensor positional arguments, in order
    is_weight: list[bool] = field(default_factory=list)  # per tensor input: a parameter or buffer
    ms: float | None = None  # its time inside the network (``timed_trace`` only)

    @property
    def where(self) -> str:
        return f"{self.module or '<root>'} ({self.module_type})"


class _Recorder(TorchDispatchMode):
    def __init__(
        self,
        module_stack: list[tuple[str, str]],
        weight_ids: set[int],
        clock: Callable[[], float] | None = None,
        shapes: dict | None = None,
    ) -> None:
        super().__init__()
        self.clock = clock
        self.shapes = shapes  # on the meta device: memo of output metadata (``trace_meta``)
        self.nodes: list[OpNode] = []
        self.module_stack = module_stack
        self.weight_ids = weight_ids
        # Tensor -> the node that wrote it, held weakly: every intermediate is freed when the network
        # drops it, as in an untraced forward. Kept alive, they moved every output to cold memory and
        # inflated the timed layers of large networks to up to 1.4x the network on the dev CPU.
        self.producer_of: WeakIdKeyDictionary = WeakIdKeyDictionary()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # noqa: ANN001
        kwargs = kwargs or {}
        leaves = _leaves((args, kwargs))
        start = self.clock() if self.clock else 0.0
        out = func(*args, **kwargs) if self.shapes is None else _run_meta(self.shapes, func, args, kwargs, leaves)
        ms = (self.clock() - start) * 1e3 if self.clock else None
        op = str(func.overloadpacket)
        if op.startswith("prim."):
            return out
        tensors = [a for a in leaves if isinstance(a, torch.Tensor)]
        outs = [t for t in _leaves(out) if isinstance(t, torch.Tensor)]
        path, kind = self.module_stack[-1]
        node = OpNode(
            index=len(self.nodes),
            op=op,
            module=path,
            module_type=kind,
            in_shapes=[tuple(t.shape) for t in tensors],
            out_shapes=[tuple(t.shape) for t in outs],
            producers=[self.producer_of.get(t) for t in tensors],
            args=[a for a in args if not isinstance(a, torch.Tensor) and not _is_tensor_list(a)],
            is_weight=[id(t) in self.weight_ids for t in tensors],
            ms=ms,
        )
        self.nodes.append(node)
        for t in outs:
            self.producer_of[t] = node.index
        return out


def _leaves(obj: Any) -> list[Any]:
    """The leaves ``tree_flatten`` gives for what ATen operators take and return (tuples, lists and
    dicts of tensors and scalars), in the same order, without its per-node bookkeeping: tracing spent
    a third of its time in ``tree_flatten``."""
    if isinstance(obj, list | tuple):
        out: list[Any] = []
        for item in obj:
            if isinstance(item, list | tuple | dict):
                out += _leaves(item)
            else:
                out.append(item)
        return out
    if isinstance(obj, dict):
        return _leaves(list(obj.values()))
    return [obj]


def _is_tensor_list(value: Any) -> bool:
    return isinstance(value, list | tuple) and any(isinstance(v, torch.Tensor) for v in value)


@contextmanager
def _module_stack(model: nn.Module) -> Iterator[list[tuple[str, str]]]:
    """Track which module is running, through global forward hooks removed afterwards."""
    names = {id(m): name for name, m in model.named_modules()}
    stack: list[tuple[str, str]] = [("", type(model).__name__)]

    def enter(module: nn.Module, _inputs: Any) -> None:
        stack.append((names.get(id(module), "?"), type(module).__name__))

    def leave(_module: nn.Module, _inputs: Any, _output: Any) -> None:
        if len(stack) > 1:
            stack.pop()

    pre = nn.modules.module.register_module_forward_pre_hook(enter)
    post = nn.modules.module.register_module_forward_hook(leave)
    try:
        yield stack
    finally:
        pre.remove()
        post.remove()


def trace(model: nn.Module, input_hw: tuple[int, int], in_channels: int = 3) -> list[OpNode]:
    """The operators of one inference forward pass at batch 1 and ``input_hw``.

    Raises ``UntraceableModel`` naming the model, the layer that failed and why (for example a
    forward pass that reads tensor values with ``.item()``, which fake tensors do not have).
    """
    with FakeTensorMode(allow_non_fake_inputs=True):
        return _record(model, input_hw, in_channels, None)


def timed_trace(
    model: nn.Module, input_hw: tuple[int, int], clock: Callable[[], float], in_channels: int = 3
) -> list[OpNode]:
    """The operators of one real forward pass, each with its time by ``clock`` (seconds) in ``ms``.

    The caller sets the threads and CPU conditions, and warms the network up first. Intermediates are
    freed when the network drops them, as in an untraced forward, so each layer writes where the
    network's own run would (benchmarks/README.md).
    """
    return _record(model, input_hw, in_channels, clock)


def trace_meta(
    model: nn.Module, input_hw: tuple[int, int], in_channels: int = 3, shapes: dict | None = None
) -> list[OpNode]:
    """``trace`` for a model whose parameters are on the ``meta`` device (built inside
    ``with torch.device("meta"):``): the same operators, shapes, arguments and producers (tested on
    every baseline and on sampled architectures of every space), without fake tensors' bookkeeping.

    ``shapes``, a dict kept by the caller across calls, memoises each operator's output shapes by its
    input shapes and arguments, so a layer seen before in this or an earlier network costs a lookup.
    """
    return _record(model, input_hw, in_channels, None, device="meta", shapes={} if shapes is None else shapes)


_NATIVE_BATCH_NORM = torch.ops.aten.native_batch_norm.default


def _run_meta(memo: dict, func, args: tuple, kwargs: dict, leaves: list[Any]) -> Any:  # noqa: ANN001
    """Run an operator on meta tensors, or answer it from ``memo``: output metadata (shape, strides,
    dtype) keyed by the operator, its inputs' metadata and its other arguments. Operators whose outputs
    alias or mutate an input (views, in-place ops) always run, so tensor identity, and with it the
    recorder's producers, stay as in a real forward pass."""
    schema = func._schema
    if schema.is_mutable or any(r.alias_info is not None for r in schema.returns):
        return _meta_kernel(func, args, kwargs)
    key = (func, tuple((a.shape, a.stride(), a.dtype) if isinstance(a, torch.Tensor) else a for a in leaves))
    try:
        hit = memo.get(key)
    except TypeError:  # an unhashable argument: run it
        return _meta_kernel(func, args, kwargs)
    if hit is None:
        out = _meta_kernel(func, args, kwargs)
        outs = out if type(out) is tuple else (out,)
        if all(isinstance(o, torch.Tensor) and o.device.type == "meta" for o in outs):
            memo[key] = (type(out) is tuple, [(o.shape, o.stride(), o.dtype) for o in outs])
        return out
    is_tuple, metas = hit
    outs = tuple(torch.empty_strided(s, st, dtype=d, device="meta") for s, st, d in metas)
    return outs if is_tuple else outs[0]


def _meta_kernel(func, args: tuple, kwargs: dict) -> Any:  # noqa: ANN001
    out = func(*args, **kwargs)
    if func is _NATIVE_BATCH_NORM and not args[5]:
        # Inference batch norm saves no statistics: the CPU kernel (and so ``trace``) returns empty
        # tensors for them, the meta kernel tensors of C elements. Return what the CPU returns.
        empty = torch.empty(0, dtype=out[1].dtype, device="meta")
        return out[0], empty, empty.clone()
    return out


def _record(
    model: nn.Module,
    input_hw: tuple[int, int],
    in_channels: int,
    clock: Callable[[], float] | None,
    device: str = "cpu",
    shapes: dict | None = None,
) -> list[OpNode]:
    was_training = model.training
    model.eval()
    weight_ids = {id(t) for t in (*model.parameters(), *model.buffers())}
    try:
        with _module_stack(model) as stack, torch.no_grad():
            x = torch.randn(1, in_channels, *input_hw, device=device)
            recorder = _Recorder(stack, weight_ids, clock, shapes)
            try:
                with recorder:
                    model(x)
            except Exception as exc:  # any failure of the user's forward pass, reported by name
                path, kind = stack[-1]
                hint = (
                    " (the forward pass reads tensor values, e.g. .item(); the predictor needs shapes only)"
                    if ("DataDependent" in type(exc).__name__)
                    else ""
                )
                raise UntraceableModel(
                    f"cannot trace {type(model).__name__} at {input_hw[0]}x{input_hw[1]}: layer "
                    f"{path or '<root>'} ({kind}) failed: {type(exc).__name__}: {str(exc).splitlines()[0][:200]}{hint}"
                ) from exc
    finally:
        model.train(was_training)
    return recorder.nodes
