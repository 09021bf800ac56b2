"""Benchmark: how repeatable a host-CPU latency measurement is (issue 4: coefficient of variation < 3 %).

Each baseline is measured ``--runs`` times, each run a full measurement (warm-up, repeats until the
median is stable, outlier rejection); the coefficient of variation is taken over the runs' medians.
The machine is shared, so the load average is printed with the results: run it when it is quiet.
Before every run a fixed matrix product is timed too (the host-speed probe): where the probe itself
varies by more than the goal, the machine, not the measurement, is what moves, and the correlation of
each model's run medians with the probe says how much of its spread that explains.

    OMP_NUM_THREADS=1 python benchmarks/latency_stability.py [--input 256x512] [--runs 10] [--backend torch]
        [--baselines espnet-c jetseg-nano ...]   (default: the first baseline of every space)

Prints a Markdown table (paste it into benchmarks/README.md with the date and machine).
"""

from __future__ import annotations

import argparse
import os
import statistics

import torch
from rich.progress import Progress

from nasseg.latency.measure.backends import measure_model
from nasseg.latency.measure.device import cpu_device
from nasseg.latency.timing import TimingSettings, cpu_conditions, fixed_threads, host_clock, time_repeatedly
from nasseg.models import build
from nasseg.spaces import all_spaces, find_baseline

GOAL_CV = 0.03
_PROBE_SIZE = 512


def host_speed_probe(threads: int) -> float:
    """Median ms of a fixed 512x512 matrix product, timed as the backend times a network
    (its clock, CPU conditions and outlier rejection)."""
    clock, _ = host_clock(threads)
    a = torch.randn(_PROBE_SIZE, _PROBE_SIZE)

    def run_once() -> float:
        start = clock()
        a @ a
        return (clock() - start) * 1e3

    exactly_15 = TimingSettings(warmup_runs=3, warmup_s=0.0, min_repeats=15, max_repeats=15, threads=threads)
    with fixed_threads(threads), cpu_conditions():
        return time_repeatedly(run_once, exactly_15).median_ms


def cv(values: list[float]) -> float:
    return statistics.stdev(values) / statistics.fmean(values)


def stability(name: str, model: torch.nn.Module, args: argparse.Namespace, progress: Progress) -> dict:
    hw = tuple(int(v) for v in args.input.split("x"))
    settings = TimingSettings(threads=args.threads)
    task = progress.add_task(name, total=args.runs)
    results, probes = [], []
    for _ in range(args.runs):
        probes.append(host_speed_probe(args.threads))
        results.append(measure_model(model, hw, "host-cpu", args.backend, settings=settings))
        progress.advance(task)
    medians = [r.median_ms for r in results]
    return {
        "name": name,
        "mean_ms": statistics.fmean(medians),
        "cv": cv(medians),
        "probe_cv": cv(probes),
        "probe_corr": statistics.correlation(medians, probes)
        if min(len(set(medians)), len(set(probes))) > 1
        else float("nan"),
        "iqr_ms": statistics.median(r.spread_ms for r in results),
        "repeats": statistics.median(r.repeats for r in results),
        "converged": sum(bool(r.extra["converged"]) for r in results),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--input", default="256x512", help="HxW")
    parser.add_argument("--runs", type=int, default=10, help="independent measurements per model")
    parser.add_argument("--backend", default="torch", choices=["torch", "onnxruntime"])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--baselines", nargs="*", help="baseline names (default: the first of every space)")
    args = parser.parse_args()
    chosen = args.baselines or [next(iter(space.baselines)) for space in all_spaces()]
    load_before = os.getloadavg()[0]
    rows = []
    with Progress() as progress:
        for name in chosen:
            space, _ = find_baseline(name)
            rows.append(stability(name, build(space.baseline(name)), args, progress))
    load_after = os.getloadavg()[0]
    print(
        f"\n{cpu_device(args.threads)}, torch {torch.__version__}, backend {args.backend}, input {args.input}, "
        f"{args.runs} runs per model; 1-min load average {load_before:.2f} before, {load_after:.2f} after\n"
    )
    print(
        "| baseline | mean of medians ms | CV of medians | within-run IQR ms | repeats kept | runs converged "
        "| host probe CV | correlation with probe |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for row in rows:
        flag = "" if row["cv"] < GOAL_CV else " ✗"
        print(
            f"| {row['name']} | {row['mean_ms']:.2f} | {row['cv']:.2%}{flag} | {row['iqr_ms']:.2f} | "
            f"{row['repeats']:.0f} | {row['converged']}/{args.runs} | {row['probe_cv']:.2%} | {row['probe_corr']:.2f} |"
        )
    worst = max(row["cv"] for row in rows)
    print(f"\nWorst CV {worst:.2%} (goal < {GOAL_CV:.0%}): {'met' if worst < GOAL_CV else 'NOT met'}")


if __name__ == "__main__":
    main()
