"""Benchmark: decoding CamVid train+val into the in-memory cache, and generating synthetic splits.

A search trains many architectures on one split, so what matters is the one cold load per process
(the cache answers every later call). This times the cold load, then a cached call.

    python benchmarks/data_loading.py [--camvid ../shared/data/CamVid] [--repeats 1]

Prints a Markdown table (paste it into benchmarks/README.md with the date and machine).
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from pathlib import Path

from nasseg.data import clear_cache, load_split

DEFAULT_CAMVID = Path(__file__).resolve().parents[1].parent / "shared/data/CamVid"


def time_load(uri: str, splits: tuple[str, ...], hw: tuple[int, int], repeats: int) -> tuple[int, float, float, float]:
    """(images, best cold wall seconds over ``repeats``, its CPU seconds, cached-call milliseconds).

    CPU time (all threads) is reported beside wall time because the development machine is shared:
    wall time there says as much about the neighbours as about the loader."""
    best, best_cpu = float("inf"), 0.0
    for _ in range(repeats):
        clear_cache()
        start, cpu = time.perf_counter(), time.process_time()
        n = sum(len(load_split(uri, s, hw)) for s in splits)
        if time.perf_counter() - start < best:
            best, best_cpu = time.perf_counter() - start, time.process_time() - cpu
    start = time.perf_counter()
    for s in splits:
        load_split(uri, s, hw)
    cached_ms = (time.perf_counter() - start) * 1e3
    clear_cache()
    return n, best, best_cpu, cached_ms


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--camvid", type=Path, default=DEFAULT_CAMVID)
    parser.add_argument("--repeats", type=int, default=1)
    args = parser.parse_args()

    cases = []
    if (args.camvid / "train.txt").is_file():
        cases += [(f"camvid:{args.camvid}", "CamVid", ("train", "val"), hw) for hw in ((360, 480), (180, 240))]
    else:
        print(f"CamVid not found at {args.camvid}: timing the synthetic dataset only")
    cases += [("synthetic", "synthetic (300/60/60)", ("train", "val", "test"), hw) for hw in ((360, 480), (180, 240))]
    cases += [("synthetic:train=200", "synthetic train=200", ("train",), (180, 240))]

    print(
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
        f"load average before {os.getloadavg()[0]:.2f}"
    )
    print()
    print("| dataset | splits | H×W | images | cold load, wall (s) | CPU (s) | images/s (wall) | cached call (ms) |")
    print("|---|---|---|---|---|---|---|---|")
    for uri, name, splits, hw in cases:
        n, cold, cpu, cached = time_load(uri, splits, hw, args.repeats)
        print(
            f"| {name} | {'+'.join(splits)} | {hw[0]}×{hw[1]} | {n} | {cold:.2f} | {cpu:.2f} | {n / cold:.0f} "
            f"| {cached:.3f} |"
        )
    print()
    print(f"load average after {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
