"""Benchmark: does an activation's CPU time depend on the values it is given?

A latency search times untrained networks, whose activations can reach +-1e4. JetSeg's REU and
TanhExp call exp (and tanh), which on a CPU take a slow path for arguments whose result under- or
overflows float32; a select over mixed signs mispredicts branches. This times each activation on one
(1, 32, 96, 128) tensor drawn at three scales, by thread CPU time on one thread (as nasseg's host
backend times a network), against the textbook forms that call exp on every value.

    python benchmarks/activation_cost.py

Prints a Markdown table (paste it into benchmarks/README.md with the date and machine).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from nasseg.blocks.activations import REU, TanhExp
from nasseg.latency.measure.device import cpu_name
from nasseg.latency.timing import TimingSettings, cpu_conditions, fixed_threads, host_clock, time_repeatedly

SCALES = (1.0, 100.0, 1e4)  # standard deviation of the activations
SHAPE = (1, 32, 96, 128)

TEXTBOOK: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "REU, textbook (where, exp of x <= 0)": lambda x: torch.where(x > 0, x, x * torch.exp(torch.clamp(x, max=0.0))),
    "TanhExp, textbook (exp of x <= 20)": lambda x: x * torch.tanh(torch.exp(torch.clamp(x, max=20.0))),
}
SHIPPED: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "REU (nasseg)": REU(),
    "TanhExp (nasseg)": TanhExp(),
    "ReLU (for scale)": nn.ReLU(),
}


def median_ms(activation: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor) -> float:
    clock, _ = host_clock(1)

    def run_once() -> float:
        start = clock()
        activation(x)
        return (clock() - start) * 1e3

    with fixed_threads(1), cpu_conditions(), torch.no_grad():
        return time_repeatedly(run_once, TimingSettings(max_seconds=2.0)).median_ms


def main() -> None:
    inputs = [torch.randn(SHAPE, generator=torch.Generator().manual_seed(0)) * scale for scale in SCALES]
    print(
        f"measured on {cpu_name()}, torch {torch.__version__} eager, fp32, 1 thread, thread CPU time, "
        f"input {'x'.join(map(str, SHAPE))}, ms (median)\n"
    )
    print("| activation | " + " | ".join(f"N(0, {s:g}^2)" for s in SCALES) + " | slowest / fastest |")
    print("|---" * (len(SCALES) + 2) + "|")
    for name, activation in {**TEXTBOOK, **SHIPPED}.items():
        ms = [median_ms(activation, x) for x in inputs]
        print(f"| {name} | " + " | ".join(f"{v:.3f}" for v in ms) + f" | {max(ms) / min(ms):.1f}x |")


if __name__ == "__main__":
    main()
