"""Benchmark: build time, parameters, MACs and peak activation memory of every baseline.

The model-zoo issue asks every baseline to build in under a second on the 2-core development
machine; this measures it (median of several builds) instead of a timed test.

    python benchmarks/zoo_build.py [--input 360x480] [--repeats 5]

Prints a Markdown table (paste it into benchmarks/README.md with the date and machine).
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time

import torch

from nasseg.models import build
from nasseg.profile import count_macs, count_params, peak_activation_bytes
from nasseg.spaces import all_spaces


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--input", default="360x480", help="HxW for MACs and activation memory")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    hw = tuple(int(v) for v in args.input.split("x"))
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {platform.processor() or platform.machine()}")
    print(
        f"\n| baseline | family | build s (median of {args.repeats}) | params | GMACs @ {args.input} | peak activations MiB |"
    )
    print("|---|---|---|---|---|---|")
    worst = 0.0
    for space in all_spaces():
        for name in space.baselines:
            config = space.baseline(name)
            times = []
            for _ in range(args.repeats):
                start = time.perf_counter()
                model = build(config)
                times.append(time.perf_counter() - start)
            build_s = statistics.median(times)
            worst = max(worst, build_s)
            macs = count_macs(model, hw).macs
            peak = peak_activation_bytes(model, hw)
            print(
                f"| {name} | {space.spec.family} | {build_s:.3f} | {count_params(model):,} | "
                f"{macs / 1e9:.3f} | {peak / 2**20:.1f} |"
            )
    print(f"\nslowest build: {worst:.3f} s")


if __name__ == "__main__":
    main()
