"""Repeat a timed call until its median is stable, reject outliers, and summarise.

Latency samples are skewed to the right (interrupts, other processes, clock changes), so the
summary is the median of the samples inside Tukey's fences, with the interquartile range as spread.
Repeats stop once the median is known to ``rel_precision`` (its standard error, estimated as
1.253 σ/√n of the kept samples) or when the repeat or time budget runs out.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import math
import random
import statistics
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class TimingSettings:
    warmup_runs: int = 5
    warmup_s: float = 0.5  # warm up for at least this long too (caches, clocks, allocator, autotuning)
    min_repeats: int = 20
    max_repeats: int = 300
    max_seconds: float = 10.0
    rel_precision: float = 0.005  # stop when the median's standard error is below this share of it
    # CPU threads. One by default: a single thread gives the most repeatable figure on a shared
    # machine (several threads on a busy host wait on each other in OpenMP barriers).
    threads: int = 1


@dataclass(frozen=True)
class TimingStats:
    median_ms: float
    iqr_ms: float
    mean_ms: float
    kept: int
    rejected: int
    converged: bool  # the median reached rel_precision before the budget ran out

    def as_extra(self) -> dict[str, float | int | bool]:
        return {"mean_ms": self.mean_ms, "outliers_rejected": self.rejected, "converged": self.converged}


def _quartiles(samples: list[float]) -> tuple[float, float, float]:
    q1, q2, q3 = statistics.quantiles(samples, n=4, method="inclusive")
    return q1, q2, q3


def summarise(samples_ms: list[float], rel_precision: float = 0.005) -> TimingStats:
    """Median and IQR of the samples inside Tukey's fences (1.5 IQR beyond the quartiles)."""
    if len(samples_ms) < 2:
        raise ValueError("need at least two timed runs to summarise")
    q1, _, q3 = _quartiles(samples_ms)
    low, high = q1 - 1.5 * (q3 - q1), q3 + 1.5 * (q3 - q1)
    kept = [s for s in samples_ms if low <= s <= high]
    k1, median, k3 = _quartiles(kept)
    standard_error = 1.253 * statistics.stdev(kept) / math.sqrt(len(kept))
    return TimingStats(
        median_ms=median,
        iqr_ms=k3 - k1,
        mean_ms=statistics.fmean(kept),
        kept=len(kept),
        rejected=len(samples_ms) - len(kept),
        converged=standard_error <= rel_precision * median,
    )


def time_repeatedly(run_once: Callable[[], float], settings: TimingSettings) -> TimingStats:
    """Warm up, then call ``run_once`` (which returns one latency in ms) until the median is stable."""
    warmup_end = time.perf_counter() + settings.warmup_s
    for i in range(10_000):
        run_once()
        if i + 1 >= settings.warmup_runs and time.perf_counter() >= warmup_end:
            break
    samples: list[float] = []
    deadline = time.perf_counter() + settings.max_seconds
    while len(samples) < settings.max_repeats:
        samples.append(run_once())
        if len(samples) >= settings.min_repeats:
            if summarise(samples, settings.rel_precision).converged or time.perf_counter() >= deadline:
                break
    return summarise(samples, settings.rel_precision)


def in_passes(n_cases: int, rounds: int) -> Iterator[tuple[int, int]]:
    """(pass, case index) for measuring ``n_cases`` cases ``rounds`` times: every case once per pass,
    each pass in its own seeded order. A shared host's slow and fast spells (10-60 s on the development
    VM) then fall on every case alike, and not on the same neighbours in every pass."""
    for done in range(rounds):
        order = list(range(n_cases))
        random.Random(done).shuffle(order)
        for i in order:
            yield done, i


def host_slowdown(
    ms: dict[str, list[float]], at: dict[str, list[float]], neighbours: int = 4, max_gap_s: float = 60.0
) -> dict[str, list[float]]:
    """How much slower than usual the host ran at each measurement of cases measured in passes.

    ``ms`` and ``at`` hold each case's measurements and when each was taken (seconds). A measurement's
    deviation is its ratio to its case's median; the host's slowdown at a moment is the median deviation
    of the ``neighbours`` measurements taken just before and just after it (within ``max_gap_s``), of
    other cases. A measurement's own deviation is left out, or its noise would be read as the host's.
    Dividing by it removes the spells in which the whole host runs slower (on the development VM a
    measurement's log deviation correlates 0.47 with the next one's, falling to 0.1 eight cases on).
    A case measured only once, a measurement with no neighbour near it, and one without a time (None:
    from before times were kept) count 1.0.
    """
    entries = sorted(
        (t, case, i) for case, times in at.items() for i, t in enumerate(times[: len(ms[case])]) if t is not None
    )
    usual = {case: statistics.median(values) for case, values in ms.items() if values}
    deviation = [math.log(ms[case][i] / usual[case]) for _, case, i in entries]
    slowdown = {case: [1.0] * len(ms[case]) for case in at}
    for j, (t, case, i) in enumerate(entries):
        near = [
            deviation[k]
            for k in range(max(0, j - neighbours), min(len(entries), j + neighbours + 1))
            if k != j and abs(entries[k][0] - t) <= max_gap_s
        ]
        if near:
            slowdown[case][i] = math.exp(statistics.median(near))
    return slowdown


def host_clock(threads: int) -> tuple[Callable[[], float], str]:
    """The clock for a host-CPU measurement (seconds) and how to name it.

    With one thread the network runs in the calling thread, so that thread's CPU time is its latency
    minus the time other processes had the core. On a shared machine the wall clock measures the
    neighbours too: a convolution stack under onnxruntime read 49-95 ms by the wall clock but
    48.8-49.4 ms of thread CPU time, with the 2-core development machine at load 2.5.
    With several threads, CPU time would add the threads up, so the wall clock is used.
    """
    if threads == 1:
        return time.thread_time, "thread CPU time, 1 thread"
    return time.perf_counter, f"wall clock, {threads} threads"


@contextmanager
def fixed_threads(threads: int) -> Iterator[None]:
    """Pin torch's intra-op thread count for the measurement and restore it afterwards."""
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@contextmanager
def denormals_flushed() -> Iterator[str]:
    """Flush denormal floats to zero on the CPU while timing, then restore the default (off).

    Yields how denormals were treated, for the measurement's provenance. Random weights make
    activations decay towards zero through a deep untrained network, and an x86 core takes a slow
    microcode assist for every denormal operand: one JetSeg sample at 192x256 ran in 4.4 s with
    denormals and 0.96 s without (its 1x1 convolution of 1024 -> 512 channels took 3.6 s, against
    0.16 s for the same convolution in another sample). A trained network rarely makes them, and a
    Jetson's FP16 TensorRT engine never computes with them, so they are not part of a latency.
    """
    flushed = torch.set_flush_denormal(True)
    try:
        yield "flushed to zero" if flushed else "kept (this CPU cannot flush them)"
    finally:
        torch.set_flush_denormal(False)


# glibc's mallopt parameters (malloc.h) and the largest mmap threshold it accepts on 64-bit Linux.
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3
_MMAP_THRESHOLD_MAX = 32 * 1024 * 1024


@functools.cache
def keep_freed_memory() -> str | None:
    """Make glibc malloc keep freed memory instead of returning it to the system; say what was set.

    PyTorch on the CPU has no caching allocator, and glibc hands large activations back to the
    kernel after each forward, so the next forward page-faults them in again: about 13 000 faults
    (50 MB zeroed) per forward of jetseg-nano at 256x512, which made its thread CPU time vary by
    10 % between runs and inflated it by 8 %. Raising the trim and mmap thresholds, as jemalloc or
    tcmalloc do for PyTorch CPU inference, leaves about 200 faults. Process-wide and permanent:
    called once per process, before the first timing. None where glibc is not the allocator.
    """
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name) if name else None
        mallopt = libc.mallopt if libc is not None else None
    except (OSError, AttributeError):
        return None
    if mallopt is None or not (
        mallopt(_M_TRIM_THRESHOLD, 2**31 - 1) and mallopt(_M_MMAP_THRESHOLD, _MMAP_THRESHOLD_MAX)
    ):
        return None
    return "glibc malloc keeps freed memory (no trim, mmap above 32 MiB)"


@contextmanager
def cpu_conditions() -> Iterator[dict[str, str]]:
    """What every CPU timing sets up (memory kept between forwards, denormals flushed); yields
    the provenance a measurement records of them."""
    allocator = keep_freed_memory() or "default (freed memory may return to the system)"
    with denormals_flushed() as denormals:
        yield {"allocator": allocator, "denormals": denormals}
