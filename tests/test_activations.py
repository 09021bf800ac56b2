"""JetSeg's activations: the paper's functions, with arguments that keep their CPU cost value-independent."""

from __future__ import annotations

import torch
from torch.utils._python_dispatch import TorchDispatchMode

from nasseg.blocks.activations import REU, TanhExp

# float32 exp stays finite and normal for arguments in [-87, 88]; tanh leaves its fast path below ~1e-13.
_EXP_OK = (-87.0, 88.0)
_TANH_OK = 1e-13


class _ArgumentRanges(TorchDispatchMode):
    """Every operator run, and the smallest and largest argument exp and tanh saw."""

    def __init__(self) -> None:
        super().__init__()
        self.ops: set[str] = set()
        self.seen: dict[str, tuple[float, float]] = {}

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        name = str(func.overloadpacket)
        self.ops.add(name)
        if name in ("aten.exp", "aten.tanh"):
            lo, hi = args[0].min().item(), args[0].max().item()
            old = self.seen.get(name, (lo, hi))
            self.seen[name] = (min(lo, old[0]), max(hi, old[1]))
        return func(*args, **(kwargs or {}))


# Activations of an untrained network reach these magnitudes (benchmarks/README.md).
WIDE = torch.cat([torch.linspace(-1e4, 1e4, 20001), torch.linspace(-100, 100, 20001)])


def test_reu_is_x_above_zero_and_x_exp_x_below() -> None:
    x = WIDE.double()
    reference = torch.where(x > 0, x, x * torch.exp(x))
    out = REU()(WIDE).double()
    assert torch.equal(out[WIDE > 0], x[WIDE > 0])  # exactly x: exp(0) is exactly 1
    assert torch.allclose(out, reference, rtol=1e-6, atol=1e-30)


def test_tanhexp_matches_its_definition() -> None:
    x = WIDE.double()
    reference = x * torch.tanh(torch.exp(x))
    # Below the floor the output is x * 1.4e-11 instead of x * exp(x): both vanish next to x.
    assert ((TanhExp()(WIDE).double() - reference).abs() <= 1e-6 * reference.abs() + 1e-10 * x.abs()).all()


def test_activations_never_send_exp_or_tanh_onto_their_slow_paths() -> None:
    for activation in (REU(), TanhExp()):
        with _ArgumentRanges() as ranges:
            activation(WIDE)
        lo, hi = ranges.seen["aten.exp"]
        assert _EXP_OK[0] <= lo and hi <= _EXP_OK[1], (type(activation).__name__, lo, hi)
        if "aten.tanh" in ranges.seen:
            assert ranges.seen["aten.tanh"][0] >= _TANH_OK, ranges.seen["aten.tanh"]


def test_reu_runs_no_select() -> None:
    # torch.where over mixed signs mispredicts branches: 6x the time of the product at N(0, 1) (benchmarks/README.md).
    with _ArgumentRanges() as ranges:
        REU()(WIDE)
    assert "aten.exp" in ranges.ops and "aten.where" not in ranges.ops, ranges.ops


def test_gradients_stay_finite_for_huge_activations() -> None:
    x = WIDE.clone().requires_grad_()
    (REU()(x).sum() + TanhExp()(x).sum()).backward()
    assert torch.isfinite(x.grad).all()
