"""Benchmark: how well the latency predictor matches measured latencies.

1. Jetson: the published TensorRT timings the packaged calibrations are fitted to
   (calibrations/published_jetson.json), each predicted by joint fits that saw no point of its
   network on any board or input (leave-one-network-out, the headline), none of its source
   (leave-one-source-out), or only not itself (leave-one-out); the check points, which no fit sees,
   by the full fit. Per device: MAPE, share within 25 %, Kendall tau; per network family: the bias.
   ``--effects-study`` also judges each kernel effect (nasseg.latency.predict.effects) alone, and the
   shipped set without each of its effects and with each other one.
2. The papers' own Jetson settings: estimates for the baselines at the device and input each
   paper timed them (some of those timings are withheld from us; a reviewer compares).
3. Host CPU: architectures sampled from every search space that has landed are measured with the
   torch backend (1 thread); the predictor is calibrated on one set and checked on another of at
   least 50: share within +-10 %, MAPE, Kendall tau (and the same for latency proportional to FLOPs).
   A second fit adds the micro-benchmark suite of `nasseg calibrate` to the calibration set, and a
   third replaces the roofline with an op table: every layer of the calibration architectures timed
   inside its network, in the same passes as the networks (nasseg.latency.predict.optable). Calibration and
   check networks share every pass, so the host's drift is noise in both and not a bias between them.
   Host measurements are kept in ``--measurements`` (a JSON file keyed by architecture and input):
   a case found there is not measured again, so the fits can be redone, or a changed cost model
   checked, on one quiet measurement run. The check networks are measured a second time at the end:
   how often two measurements of one network agree within +-10 % bounds what any predictor can be
   shown to do on this machine. The store keeps when each measurement was taken, and every table is
   printed twice: as measured, and with each measurement divided by the host's slowdown at its moment
   (``timing.host_slowdown``), which removes the spells in which the whole host ran slower. Each report
   ends with a 5-fold cross-validation of the op table inside the calibration set, per family: where it
   is low, ``--calibrate-space SPACE=N`` gives that space more calibration architectures.

    python benchmarks/latency_accuracy.py [--skip-host] [--skip-jetson] [--effects A,B] [--effects-study]
        [--jetson-results FILE] [--host-scale 0.5]
        [--calibrate-per-space 10] [--calibrate-space SPACE=N ...] [--check-total 60] [--check-seed 2]
        [--measurements FILE] [--rounds 5]
        [--op-table-extra-scale S] [--write-host-calibration]

Prints Markdown tables (paste them into benchmarks/README.md with the date, machine and load).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import numpy as np
import torch
from rich.progress import Progress
from scipy.stats import kendalltau, spearmanr
from torch import nn

from nasseg.errors import InfeasibleArchitecture, NassegError
from nasseg.latency import estimate
from nasseg.latency.measure.backends import measure_model
from nasseg.latency.measure.device import cpu_name
from nasseg.latency.predict.calibration import CALIBRATIONS_DIR, Calibration
from nasseg.latency.predict.effects import CONCAT_FREE, CONCAT_IN_PLACE, EFFECTS
from nasseg.latency.predict.fit import (
    HOST_PRIOR,
    JETSON_EFFECTS,
    JETSON_PRIOR,
    Measurement,
    fit,
    jetson_templates,
    predict_measurements,
    published_measurements,
    sampled_architectures,
    template,
)
from nasseg.latency.predict.generalisation import PROTOCOL_NAMES, PointResult, Summary, by, evaluate, to_json
from nasseg.latency.predict.microbench import suite
from nasseg.latency.predict.optable import OpTable, significant, time_layers
from nasseg.latency.predict.predictor import layer_table
from nasseg.latency.timing import TimingSettings, host_slowdown, in_passes, keep_freed_memory
from nasseg.models import ArchConfig, build
from nasseg.spaces import all_spaces, find_baseline, load_space

MEASUREMENTS = Path(__file__).resolve().parent / "results" / "latency_accuracy" / "host_measurements.json"
JETSON_RESULTS = MEASUREMENTS.parent / "jetson_generalisation.json"
EFFECTS_RESULTS = MEASUREMENTS.parent / "jetson_effects.json"
# How every host measurement in a store was taken (the benchmark fixes all of it).
MEASURED_WITH = {
    "backend": "torch (eager)",
    "precision": "fp32",
    "threads": 1,
    "batch": 1,
    "clock": "thread CPU time",
    "what": "forward pass under no_grad; layers: each timed inside its network "
    "(median of 3 forwards after 1 warm-up), in the same pass as the network, intermediates freed as the network "
    "frees them",
    "denormals": "flushed to zero",
}
OP_TABLE_CAL_ID = "host-cpu/torch-eager-fp32-1thread/sampled-optable-v2"
# Where each paper timed its network on a Jetson (the timing itself may be withheld from us).
PAPER_SETTINGS = [  # baseline, target, input (H, W), published FPS or None (withheld from us / not TensorRT), setting
    (
        "fassd-net-l2",
        "jetson-xavier-nx",
        (1024, 2048),
        None,
        "FASSD-Net abstract / Fig. 7a: TensorRT FP16, full resolution (withheld)",
    ),
    ("fassd-net", "jetson-tx2", (512, 1024), 14.3, "FASSD-Net Table IX: TensorRT FP16 (JetPack)"),
    ("fassd-net-l1", "jetson-tx2", (576, 1152), 22.2, "FASSD-Net Table IX: TensorRT FP16 (JetPack)"),
    ("fassd-net-l2", "jetson-tx2", (704, 1408), 28.5, "FASSD-Net Table IX: TensorRT FP16 (JetPack)"),
    (
        "pyramid-shufflenet",
        "jetson-agx-xavier",
        (768, 1024),
        None,
        "Pyramid ShuffleNetV2 abstract/conclusion: 768x1024 (withheld)",
    ),
    (
        "jetseg-agx",
        "jetson-agx-xavier",
        (512, 512),
        None,
        "JetSeg abstract: 'Jetson AGX' read as AGX Xavier, 512x512 as its Table 1 (withheld)",
    ),
    ("espnet", "jetson-tx2", (512, 1024), 9.0, "ESPNet: PyTorch, not TensorRT (our estimate is TensorRT FP16)"),
    ("ejpnet", "jetson-tx2", (256, 512), 5.8, "EJPNet Table 1: PyTorch, not TensorRT (our estimate is TensorRT FP16)"),
]


def _rank(predicted: np.ndarray, measured: np.ndarray) -> tuple[float, float]:
    if len(measured) < 3:
        return float("nan"), float("nan")
    return float(kendalltau(predicted, measured)[0]), float(spearmanr(predicted, measured)[0])


def _errors(predicted: np.ndarray, measured: np.ndarray) -> np.ndarray:
    return np.abs(predicted / measured - 1)


def jetson_generalisation(effects: list[str] | None, out: Path | None, fit_sources: Sequence[str] = ()) -> None:
    """Every published point predicted by fits that did not see it (leave-one-out), its network
    (leave-one-network-out, the headline) or its source (leave-one-source-out); the check points by
    the full fit. Prints the tables of benchmarks/README.md and keeps every prediction in ``out``, with
    the full fit's constants. ``fit_sources``: sources whose check points are fitted too (an experiment)."""
    effects = list(JETSON_EFFECTS if effects is None else effects)
    measurements = published_measurements(fit_sources=fit_sources)
    checks = published_measurements(checks=True, fit_sources=fit_sources)
    print(
        "\n### Jetson: how the published fit generalises (TensorRT, batch 1; effects: "
        f"{', '.join(effects) or 'none'}{''.join(f'; {s} fitted' for s in fit_sources)})\n"
    )
    start = time.perf_counter()
    with Progress(transient=True) as progress:
        tasks: dict[str, int] = {}

        def report(protocol: str, done: int, total: int) -> None:
            if protocol not in tasks:
                tasks[protocol] = progress.add_task(f"{PROTOCOL_NAMES[protocol]} refits", total=total)
            progress.update(tasks[protocol], completed=done)

        rows = evaluate(effects, progress=report, measurements=measurements, checks=checks)
    constants = full_fit_constants(measurements, effects)
    print_jetson(rows)
    print_constants(constants)
    print(f"\n({time.perf_counter() - start:.0f} s)")
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        record = {
            "date": time.strftime("%Y-%m-%d %H:%M"),
            "torch": torch.__version__,
            "fit_sources": list(fit_sources),
            "full_fit": constants,
            **to_json(rows, effects),
        }
        out.write_text(json.dumps(record, indent=1) + "\n")
        print(f"every prediction: {out}")


def full_fit_constants(measurements: list[Measurement], effects: list[str]) -> dict[str, dict[str, float]]:
    """Each board's constants as the fit on every point sets them: efficiency per op class, memory efficiency."""
    targets = list(dict.fromkeys(m.target for m in measurements))
    fitted, _ = fit(measurements, jetson_templates(targets, effects), JETSON_PRIOR)
    return {t: {**c.efficiency, "memory_efficiency": c.memory_efficiency} for t, c in fitted.items()}


def print_constants(constants: dict[str, dict[str, float]]) -> None:
    """The full fit's constants, a row per board."""
    if not constants:
        return
    names = list(next(iter(constants.values())))
    print("\nThe full fit's constants (efficiency of each op class's peak; memory efficiency):\n")
    print("| board | " + " | ".join(names) + " |")
    print("|---|" + "---|" * len(names))
    for target, values in constants.items():
        print(f"| {target} | " + " | ".join(f"{values[n]:.3f}" for n in names) + " |")


def stored_jetson_rows(path: Path = JETSON_RESULTS) -> tuple[dict, list[PointResult]]:
    """A stored Jetson evaluation and its points, as ``evaluate`` returned them."""
    data = json.loads(path.read_text())
    return data, [PointResult(**point) for point in data["points"]]


def print_jetson(rows: list[PointResult]) -> None:
    """The Jetson tables of benchmarks/README.md, from every point's predictions."""
    fitted = [r for r in rows if not r.check]
    print(
        "| device | points | **leave-one-network-out MAPE** | leave-one-source-out MAPE | leave-one-out MAPE "
        "| LONO within 25 % | LONO Kendall tau | in-sample MAPE |"
    )
    print("|---|---|---|---|---|---|---|---|")
    groups = by(fitted, lambda r: r.target)
    for target, mine in [*groups.items(), ("all", fitted)]:
        s = {p: Summary.of(mine, p) for p in ("lono", "loso", "loo", "in_sample")}
        print(
            f"| {target} | {len(mine)} | **{s['lono'].mape:.1%}** | {s['loso'].mape:.1%} | {s['loo'].mape:.1%} "
            f"| {s['lono'].within_25:.0%} | {s['lono'].kendall_tau:.2f} | {s['in_sample'].mape:.1%} |"
        )
    print(
        "\nBias by network family (geometric mean of predicted / measured, minus 1; + is too slow). "
        "Check points (never fitted) are predicted by the full fit under every protocol.\n"
    )
    print("| family | points | networks | **LONO bias** | LONO MAPE | LOSO bias | LOO bias |")
    print("|---|---|---|---|---|---|---|")
    for family, mine in by(rows, lambda r: r.family).items():
        nets = ", ".join(dict.fromkeys(r.network for r in mine))
        label = family + (
            " (check)" if all(r.check for r in mine) else " (incl. check)" if any(r.check for r in mine) else ""
        )
        s = {p: Summary.of(mine, p) for p in ("lono", "loso", "loo")}
        print(
            f"| {label} | {len(mine)} | {nets} | **{s['lono'].bias:+.0%}** | {s['lono'].mape:.0%} | {s['loso'].bias:+.0%} "
            f"| {s['loo'].bias:+.0%} |"
        )
    print("\nCheck points (`use: check` in published_jetson.json; no fit sees them):\n")
    print("| point | precision | measured ms | predicted ms | predicted / measured |")
    print("|---|---|---|---|---|")
    for r in rows:
        if r.check:
            print(
                f"| {r.id} | {r.precision} | {r.measured_ms:.1f} | {r.predicted['lono']:.1f} | {r.ratio('lono'):.2f} |"
            )
    worst = sorted(fitted, key=lambda r: -abs(r.ratio("lono") - 1))[:6]
    print(
        "\nLargest leave-one-network-out errors: "
        + "; ".join(f"{r.id} measured {r.measured_ms:.2f} ms, predicted {r.predicted['lono']:.2f} ms" for r in worst)
    )


# The effects of the previous packaged calibrations (published-v2): the study's "before" row.
PREVIOUS_JETSON_EFFECTS = ["pad8", "tile32", "concat_in_place"]


def effect_candidates(shipped: list[str], previous: list[str] | None = None) -> list[list[str]]:
    """The effect sets the study judges: none, each alone, the previous shipped set, the shipped set, the
    shipped set without each of its effects, and with each other effect (concat_free replaces
    concat_in_place, so it is judged alone only)."""
    candidates = [[], *[[e] for e in EFFECTS]]
    if previous:
        candidates.append(list(previous))
    if shipped:
        candidates.append(list(shipped))
        candidates += [[e for e in shipped if e != dropped] for dropped in shipped]
        others = [e for e in EFFECTS if e not in shipped and not (e == CONCAT_FREE and CONCAT_IN_PLACE in shipped)]
        candidates += [[*shipped, e] for e in others]
    unique: list[list[str]] = []
    for effects in candidates:
        if sorted(effects) not in [sorted(u) for u in unique]:
            unique.append(effects)
    return unique


def effects_study(candidates: list[list[str]], out: Path | None) -> None:
    """Each kernel effect on its own, and the chosen set, judged by leave-one-network-out."""
    print("\n### Jetson: kernel effects, each judged by leave-one-network-out\n")
    measurements, checks = published_measurements(), published_measurements(checks=True)
    boards = list(dict.fromkeys(m.target for m in measurements))
    record = {}
    print(
        "| effects | LONO MAPE | LONO within 25 % | LONO MAPE per board ("
        + " / ".join(b.removeprefix("jetson-") for b in boards)
        + ") | worst fitted family (LONO bias) | FASSD-Net TX2 checks (pred / meas) | DeepLabV3+ TX2 check |"
    )
    print("|---|---|---|---|---|---|---|")
    for effects in candidates:
        rows = evaluate(effects, protocols=("lono",), measurements=measurements, checks=checks)
        fitted = [r for r in rows if not r.check]
        s = Summary.of(fitted, "lono")
        per_board = by(fitted, lambda r: r.target)
        board_mape = " / ".join(f"{Summary.of(per_board[b], 'lono').mape:.1%}" for b in boards)
        families = {f: Summary.of(g, "lono").bias for f, g in by(fitted, lambda r: r.family).items()}
        worst = max(families, key=lambda f: abs(families[f]))
        fassd = [r.ratio("lono") for r in rows if r.check and r.family == "fassd-net"]
        dlv3 = [r.ratio("lono") for r in rows if r.check and r.family == "mmseg-r50-d8"]
        print(
            f"| {' + '.join(effects) or 'none (roofline)'} | {s.mape:.2%} | {s.within_25:.0%} "
            f"| {board_mape} "
            f"| {worst} {families[worst]:+.0%} "
            f"| {' / '.join(f'{x:.2f}' for x in fassd)} | {' / '.join(f'{x:.2f}' for x in dlv3)} |",
            flush=True,
        )
        record["+".join(effects) or "none"] = to_json(rows, effects)["summary"]
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps({"date": time.strftime("%Y-%m-%d %H:%M"), "variants": record}, indent=1) + "\n")
        print(f"\nevery summary: {out}")


def paper_settings() -> None:
    print("\n### Estimates at the papers' Jetson settings (packaged calibrations, TensorRT FP16)\n")
    print("| baseline | target | input (HxW) | estimate ms | estimate FPS | published FPS | calibration | setting |")
    print("|---|---|---|---|---|---|---|---|")
    for name, target, hw, published, note in PAPER_SETTINGS:
        try:
            space, _ = find_baseline(name)
        except NassegError:  # a family that has not landed yet: say so in the table
            print(f"| {name} | {target} | {hw[0]}x{hw[1]} | — | — | — | — | baseline not available yet |")
            continue
        result = estimate(build(space.baseline(name)), hw, target)
        print(
            f"| {name} | {target} | {hw[0]}x{hw[1]} | {result.median_ms:.1f} | {result.fps:.1f} | {published or '—'} "
            f"| {result.calibration} | {note} |"
        )


def _feasible_at_scale(architectures: list, scale: float, wanted: int) -> list:
    """The first ``wanted`` architectures that their space accepts at its search input times ``scale``:
    feasible there, and not degenerate where the space's sampler rejects degenerate points (every
    space does, and the stores were drawn so)."""
    out = []
    for name, config, hw in architectures:
        hw = (max(32, round(hw[0] * scale / 32) * 32), max(32, round(hw[1] * scale / 32) * 32))
        space = load_space(config.family)
        try:
            space.check(config, hw, degenerate=space.spec.degenerate)
        except InfeasibleArchitecture:
            continue
        out.append((name, config, hw))
    return out[:wanted]


def _measure_host(
    cases: list, settings: TimingSettings, label: str, store: dict, rounds: int, layers: bool = False
) -> tuple[list[Measurement], dict[str, np.ndarray]]:
    """Measure (name, ArchConfig or nn.Module, input) cases with the torch backend on this CPU, into
    ``store["ms"]`` (see ``_timed_cases``), with the layer table of each; with ``layers``, also each
    layer's in-network time (case id -> ms per layer, the median over the rounds).
    Timings do not transfer between CPUs, so a store only grows on the CPU it was started on."""
    probe = template("host-cpu", "fp32", "torch-eager", "forward", False, HOST_PRIOR, "probe")
    out, layer_ms = [], {}
    for case_id, model, hw, ms, layer_times in _timed_cases(cases, settings, label, store, "ms", rounds, layers):
        out.append(Measurement(case_id, "host-cpu", layer_table(model, hw, probe)[1], ms))
        if layer_times is not None:
            if len(layer_times) != len(out[-1].table.flops):
                raise SystemExit(
                    f"{case_id}: {len(layer_times)} layers timed but {len(out[-1].table.flops)} traced: the "
                    "network's graph has changed since this store was measured; pass --measurements NEW.json"
                )
            layer_ms[case_id] = layer_times
    return out, layer_ms


def _network(config: ArchConfig | nn.Module) -> nn.Module:
    return build(config) if isinstance(config, ArchConfig) else config


def _case_id(name: str, hw: tuple[int, int]) -> str:
    return f"{name}@{hw[0]}x{hw[1]}"


def _timed_cases(
    cases: list, settings: TimingSettings, label: str, store: dict, field: str, rounds: int, layers: bool = False
) -> Iterator[tuple[str, nn.Module, tuple[int, int], float, np.ndarray | None]]:
    """(case id, network, input, ms, layer ms) of every case that runs, its ms the median of ``rounds``
    measurements, and with ``layers`` each layer's median in-network time over as many (else None).

    The measurements are taken in ``rounds`` passes over all the cases (``timing.in_passes``). They are
    kept in ``store[field]`` (case id -> list of ms), when each was taken in ``store[field + "_at"]``
    (seconds since the epoch; null for a measurement stored without one) and ``store["layer_ms"]`` (case
    id -> list of per-layer lists, timed right after the network in the same pass); those already there
    are reused.
    """
    ms = store[field] = {k: v if isinstance(v, list) else [v] for k, v in store.get(field, {}).items()}
    at = store.setdefault(f"{field}_at", {})
    layer_ms = store.setdefault("layer_ms", {})
    ids = [_case_id(name, hw) for name, _, hw in cases]
    if layers and any(len(layer_ms.get(i, [])) < len(ms.get(i, [])) for i in ids):
        raise SystemExit(
            f"{label}: the store holds networks measured without their layers (from before the op "
            "table): pass --measurements NEW.json"
        )
    failed: set[str] = set()
    with Progress() as progress:
        task = progress.add_task(label, total=sum(max(0, rounds - len(ms.get(i, []))) for i in ids))
        for done, i in in_passes(len(cases), rounds):
            case_id, (name, config, hw) = ids[i], cases[i]
            if case_id in failed or len(ms.get(case_id, [])) > done:
                continue
            _require_same_cpu(store, case_id)
            try:
                network = _network(config)
                started = time.time()
                ms.setdefault(case_id, []).append(
                    measure_model(network, hw, "host-cpu", "torch", settings=settings).median_ms
                )
                taken = at.setdefault(case_id, [])
                taken += [None] * (len(ms[case_id]) - 1 - len(taken)) + [started]
                if layers:
                    layer_ms.setdefault(case_id, []).append(significant(time_layers(network, hw)[1]))
            except RuntimeError as exc:  # a family bug, not the predictor's: report it and go on
                print(f"skipped {name}: fails to run at {hw[0]}x{hw[1]}: {str(exc).splitlines()[0][:120]}")
                failed.add(case_id)
            progress.advance(task)
    for case_id, (_, config, hw) in zip(ids, cases, strict=True):
        if case_id not in failed and case_id in ms:
            timed_layers = np.median(layer_ms[case_id][:rounds], axis=0) if layers else None
            yield case_id, _network(config), hw, float(np.median(ms[case_id][:rounds])), timed_layers


def _remeasured(check: list, settings: TimingSettings, store: dict, rounds: int) -> dict[str, float]:
    """The check networks measured again, after everything else (``store["ms_again"]``): how far the
    instrument agrees with itself bounds how close any prediction can be shown to be."""
    timed = _timed_cases(check, settings, "check set again", store, "ms_again", rounds)
    return {case_id: ms for case_id, _, _, ms, _ in timed}


def _require_same_cpu(store: dict, what: str) -> None:
    """Timings do not transfer between CPUs or timing methods: a store only grows on the CPU, and
    with the method, it was started with."""
    if store["cpu"] != cpu_name():
        raise SystemExit(
            f"{what} is not measured yet, and the measurements kept with it come from "
            f"{store['cpu']!r}, not this CPU ({cpu_name()!r}): pass --measurements NEW.json"
        )
    if store.get("measured_with") != MEASURED_WITH:
        raise SystemExit(
            f"{what} is not measured yet, and the measurements kept with it were taken otherwise "
            f"({store.get('measured_with')}, not {MEASURED_WITH}): pass --measurements NEW.json"
        )


_COUNTED = {"ms": "measured", "layer_ms": "layers_timed", "ms_again": "remeasured"}  # store field -> run record


def _counts(store: dict) -> dict[str, int]:
    """How many measurements each field holds (a case measured in three rounds counts three)."""
    return {
        field: sum(len(v) if isinstance(v, list) else 1 for v in store.get(field, {}).values()) for field in _COUNTED
    }


def _save_store(store: dict, path: Path, known: dict[str, int], load_before: float) -> None:
    """Write the store with a record of this run, if it measured anything (``known``: the counts before)."""
    measured = {_COUNTED[field]: n - known.get(field, 0) for field, n in _counts(store).items()}
    if not any(measured.values()):
        return
    store.setdefault("measured_with", MEASURED_WITH)
    store["runs"].append(
        {
            "date": time.strftime("%Y-%m-%d %H:%M"),
            "torch": torch.__version__,
            **measured,
            "allocator": keep_freed_memory() or "default",
            "load_before": round(load_before, 2),
            "load_after": round(os.getloadavg()[0], 2),
        }
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(store, indent=1) + "\n")


def _load_store(path: Path) -> dict:
    if not path.is_file():
        return {"cpu": cpu_name(), "measured_with": MEASURED_WITH, "runs": [], "ms": {}, "layer_ms": {}}
    return json.loads(path.read_text())


def host_cases(
    scale: float,
    per_space: int,
    check_total: int,
    extra_scale: float | None = None,
    more: dict[str, int] | None = None,
    check_seed: int = 2,
) -> tuple[list, list, list]:
    """The calibration and check architectures (disjoint), each at its search input x ``scale``, and the
    calibration architectures again at x ``extra_scale`` (those that can run there; none without it).

    ``more`` gives some spaces their own number of calibration architectures; a space's samples come
    in a fixed order, so a larger number keeps the smaller one's architectures and adds to them. The
    calibration architectures are drawn with seed 1, the check ones with ``check_seed``."""
    spaces, more = all_spaces(), more or {}
    unknown = set(more) - {s.name for s in spaces}
    if unknown:
        raise SystemExit(
            f"--calibrate-space: no space {', '.join(sorted(unknown))}; the spaces are "
            f"{', '.join(s.name for s in spaces)}"
        )
    # Some samples feasible at the search input are not at the scaled one: draw spares.
    calibrate, extra = [], []
    for space in spaces:
        wanted = more.get(space.name, per_space)
        drawn = sampled_architectures(3 * wanted, seed=1, spaces=[space])
        chosen = _feasible_at_scale(drawn, scale, wanted)
        calibrate += chosen
        if extra_scale is not None:
            names = {name for name, _, _ in chosen}
            extra += _feasible_at_scale([a for a in drawn if a[0] in names], extra_scale, wanted)
    seen = {c.arch_hash() for _, c, _ in calibrate}
    per_space_check = math.ceil(check_total / len(spaces)) + 1  # one spare for a sample that fails to run
    check = []
    for space in spaces:
        fresh = [
            a
            for a in sampled_architectures(3 * per_space_check, seed=check_seed, spaces=[space])
            if a[1].arch_hash() not in seen
        ]
        check += _feasible_at_scale(fresh, scale, per_space_check)
    return calibrate, check, extra


def _drift_corrected(
    store: dict, field: str, ids: list[str], rounds: int
) -> dict[str, tuple[float, np.ndarray | None]] | None:
    """Each case's median ms, and its layers' (if timed), after dividing every pass's measurement by the
    host's slowdown at that moment (``timing.host_slowdown``); None where a measurement has no time."""
    ms, at = store[field], store.get(f"{field}_at", {})
    if any(len(at.get(i, [])) < rounds or None in at[i][:rounds] for i in ids):
        return None
    slowdown = {i: np.array(v[:rounds]) for i, v in host_slowdown(ms, at).items()}
    layers = store.get("layer_ms", {})
    return {
        i: (
            float(np.median(np.array(ms[i][:rounds]) / slowdown[i])),
            np.median(np.array(layers[i][:rounds]) / slowdown[i][:, None], axis=0)
            if field == "ms" and i in layers
            else None,
        )
        for i in ids
    }


def host(
    scale: float,
    per_space: int,
    check_total: int,
    write: bool,
    store_path: Path,
    rounds: int,
    extra_scale: float | None,
    more: dict[str, int] | None = None,
    check_seed: int = 2,
    command: str = "",
) -> None:
    spaces = all_spaces()
    store = _load_store(store_path)
    print(
        f"\n### Host CPU: {store['cpu']}, torch {torch.__version__}, 1 thread, "
        f"spaces: {', '.join(s.name for s in spaces)}\n"
    )
    calibrate, check, calibrate_extra = host_cases(scale, per_space, check_total, extra_scale, more, check_seed)
    settings = TimingSettings(
        threads=1, warmup_runs=2, warmup_s=0.1, min_repeats=7, max_repeats=40, max_seconds=1.5, rel_precision=0.01
    )
    known = _counts(store)
    load_before = os.getloadavg()
    try:
        # Both sets in the same passes, so that the host's slow spells are noise in both and not a bias
        # between them: measured one after the other, identical layers took 6 % (median) longer in the check set.
        timed, layers = _measure_host(
            calibrate + calibrate_extra + check, settings, "calibration and check sets", store, rounds, layers=True
        )
        micro_set, _ = _measure_host(suite((96, 128), 32), settings, "micro-benchmarks", store, rounds)
        again = _remeasured(check, settings, store, rounds)
    finally:  # an interrupted or failed run keeps what it measured
        _save_store(store, store_path, known, load_before[0])
    calibration_ids = {_case_id(name, hw) for name, _, hw in calibrate}
    extra_ids = {_case_id(name, hw) for name, _, hw in calibrate_extra} - calibration_ids
    runs = "; ".join(
        f"{r['date']}, {r['measured']} cases, {r.get('layers_timed', 0)} with their layers, "
        f"{r.get('remeasured', 0)} again, load {r['load_before']} -> {r['load_after']}"
        for r in store["runs"]
    )
    print(
        f"Check architectures sampled with seed {check_seed}, calibration ones with seed 1. "
        f"Inputs = search input x {scale} (rounded to 32). Each network's latency is the median of {rounds} "
        f"measurements taken in {rounds} passes. Measurement runs (1-min load average on 2 cores, before -> after): {runs}."
    )
    sets = [
        [m for m in timed if m.id in calibration_ids],
        [m for m in timed if m.id in extra_ids],
        [m for m in timed if m.id not in calibration_ids | extra_ids],
    ]
    fitted, as_measured = _report("as measured", *sets, micro_set, layers, again, extra_scale, rounds)
    tables = [as_measured]
    corrected = _drift_corrected(store, "ms", [m.id for m in timed + micro_set], rounds)
    corrected_again = _drift_corrected(store, "ms_again", list(again), rounds)
    if corrected is None or corrected_again is None:
        print(
            "\n(No drift-corrected table: some measurements in the store have no time; a store from before 2026-12-04.)"
        )
    else:

        def at_usual_speed(networks: list[Measurement]) -> list[Measurement]:
            return [dataclasses.replace(m, ms=corrected[m.id][0]) for m in networks]

        tables.append(
            _report(
                "drift-corrected: every measurement divided by the host's slowdown at its moment (timing.host_slowdown)",
                *map(at_usual_speed, sets),
                at_usual_speed(micro_set),
                {i: corrected[i][1] for i in layers},
                {i: corrected_again[i][0] for i in again},
                extra_scale,
                rounds,
            )[1]
        )
    summary_path = host_summary_path(store_path)
    summary_path.write_text(
        json.dumps(
            {
                "store": store_path.name,
                "cpu": store["cpu"],
                "measurement_runs": store["runs"],
                "replayed": time.strftime("%Y-%m-%d %H:%M"),
                "torch": torch.__version__,
                "command": command,
                "tables": tables,
            },
            indent=1,
        )
        + "\n"
    )
    print(f"\nthese tables: {summary_path} (python benchmarks/latency_accuracy.py --report prints them again)")
    if write:
        provenance = {
            "device": f"{store['cpu']} (1 thread)",
            "backend": "torch",
            "versions": {"torch": torch.__version__},
        }
        # The roofline, as measured: a few numbers, no regressor to fit at first use; a user times an op
        # table of their own CPU with `nasseg calibrate --op-table`.
        cal = fitted["host-cpu"]
        path = dataclasses.replace(cal, fitted_on={**cal.fitted_on, **provenance}).save(
            CALIBRATIONS_DIR / "host-cpu.json"
        )
        print(f"\nwrote {path}")


def calibration_cv(
    cal_set: list[Measurement], predict: Callable[[list[Measurement], list[Measurement]], np.ndarray], folds: int = 5
) -> np.ndarray:
    """Each calibration network's relative error, predicted by ``predict(the other folds' networks,
    its fold)``.

    It needs no check network: it tells which space's networks the op table follows worst, and so where
    more calibration architectures would help (``--calibrate-space``), without looking at the check set."""
    fold = np.random.default_rng(0).permutation(len(cal_set)) % folds
    errors = np.zeros(len(cal_set))
    for k in range(folds):
        held_out = np.flatnonzero(fold == k)
        predicted = predict([m for m, f in zip(cal_set, fold, strict=False) if f != k], [cal_set[i] for i in held_out])
        errors[held_out] = _errors(predicted, np.array([cal_set[i].ms for i in held_out]))
    return errors


def _report(
    title: str,
    cal_set: list[Measurement],
    extra_set: list[Measurement],
    check_set: list[Measurement],
    micro_set: list[Measurement],
    layers: dict[str, np.ndarray],
    again: dict[str, float],
    extra_scale: float | None,
    rounds: int,
) -> tuple[dict[str, Calibration], dict]:
    """Fit every predictor on the calibration networks, print how each predicts the check networks, and
    return the roofline fit and the printed table's figures."""
    base = template(
        "host-cpu",
        "fp32",
        "torch-eager",
        "forward, thread CPU time",
        False,
        HOST_PRIOR,
        "host-cpu/torch-eager-fp32-1thread/sampled-v4",
    )
    fitted, _ = fit(cal_set, {"host-cpu": base}, HOST_PRIOR)
    with_micro, _ = fit(cal_set + micro_set, {"host-cpu": base}, HOST_PRIOR)
    fixed_ms = fitted["host-cpu"].fixed_overhead_ms

    def with_table(networks: list[Measurement], predicted: list[Measurement]) -> tuple[OpTable, np.ndarray]:
        table = OpTable.from_timings([(m.table, layers[m.id], m.ms) for m in networks], fixed_ms)
        calibration = dataclasses.replace(fitted["host-cpu"], id=OP_TABLE_CAL_ID, op_table=table.to_dict())
        return table, predict_measurements({"host-cpu": calibration}, predicted)

    op_table, table_predictions = with_table(cal_set, check_set)
    measured = np.array([m.ms for m in check_set])
    rows = {"predictor + op table (the calibration architectures' layers, timed inside them)": table_predictions}
    if extra_set:  # does a table of more layer sizes generalise better to unseen networks?
        rows[f"predictor + op table, the calibration architectures also at search input x {extra_scale}"] = with_table(
            cal_set + extra_set, check_set
        )[1]
    rows |= {
        "predictor, calibrated on the calibration architectures": predict_measurements(fitted, check_set),
        "predictor, calibrated on the calibration architectures + micro-benchmarks": predict_measurements(
            with_micro, check_set
        ),
        "predictor, prior only (uncalibrated)": predict_measurements({"host-cpu": base}, check_set),
    }
    # Not a prediction: the check networks' own layers, timed inside them, summed and scaled as the op
    # table does. What is left is how far a network is from the sum of its layers (the composition error).
    rows["(not a prediction) the check networks' own layers timed inside them, x the op table's scale"] = np.array(
        [layers[m.id].sum() * op_table.scale + fixed_ms for m in check_set]
    )
    rows[f"(not a prediction) the same networks measured again ({rounds} more passes), after all the rest"] = np.array(
        [again[m.id] for m in check_set]
    )
    flops_cal = np.array([m.table.flops.sum() for m in cal_set])
    per_flop = np.exp(np.mean(np.log(np.array([m.ms for m in cal_set]) / flops_cal)))
    rows["FLOPs x one fitted constant (for comparison)"] = np.array([m.table.flops.sum() for m in check_set]) * per_flop
    cv = calibration_cv(cal_set, lambda networks, predicted: with_table(networks, predicted)[1])
    spaces = [space.name for space in all_spaces()]

    def family(networks: list[Measurement]) -> np.ndarray:
        return np.array([next(name for name in spaces if m.id.startswith(f"{name}-")) for m in networks])

    def scores(err: np.ndarray) -> dict[str, float]:
        return {"within_10": float((err <= 0.10).mean()), "mape": float(err.mean())}

    table: dict = {
        "title": title,
        "calibration": len(cal_set),
        "check": len(check_set),
        "measured_ms": [float(measured.min()), float(measured.max())],
        "op_table_layers": len(op_table.ms),
        "op_table_scale": float(op_table.scale),
        "rows": {},
        "families": {},
        "cross_validation": {},
    }
    for label, predicted in rows.items():
        tau, rho = _rank(predicted, measured)
        table["rows"][label] = {**scores(_errors(predicted, measured)), "kendall_tau": tau, "spearman_rho": rho}
    compared = {
        "with op table": next(iter(rows)),
        f"op table, also x {extra_scale}": list(rows)[1] if extra_set else None,
        "roofline only": "predictor, calibrated on the calibration architectures",
    }
    cal_family, check_family = family(cal_set), family(check_set)
    for name in spaces:
        mine = check_family == name
        if mine.any():
            table["families"][name] = {
                "check": int(mine.sum()),
                **{
                    column: scores(_errors(rows[label][mine], measured[mine]))
                    for column, label in compared.items()
                    if label
                },
            }
    for name in spaces:
        mine = cal_family == name
        if mine.any():
            table["cross_validation"][name] = {"calibration": int(mine.sum()), **scores(cv[mine])}
    table["cross_validation"]["all"] = {"calibration": len(cv), **scores(cv)}
    print_host_table(table)
    return fitted, table


def print_host_table(table: dict) -> None:
    """One host table of benchmarks/README.md (as measured, or drift-corrected), from its summary."""
    low, high = table["measured_ms"]
    print(
        f"\n#### {table['title']}\n\nCalibration set {table['calibration']} architectures, check set {table['check']} "
        f"(disjoint); measured {low:.1f}-{high:.1f} ms. Op table: {table['op_table_layers']} layers, network / sum of "
        f"its layers {table['op_table_scale']:.3f}.\n"
    )
    print("| model | within +-10 % | MAPE | Kendall tau | Spearman rho |")
    print("|---|---|---|---|---|")
    for label, row in table["rows"].items():
        print(
            f"| {label} | {row['within_10']:.0%} | {row['mape']:.1%} | {row['kendall_tau']:.3f} | {row['spearman_rho']:.3f} |"
        )
    columns = [c for c in next(iter(table["families"].values())) if c != "check"]
    print(
        "\nPer family (within +-10 % / MAPE):\n\n| family | check archs | "
        + " | ".join(columns)
        + " |\n"
        + "|---" * (2 + len(columns))
        + "|"
    )
    for name, cells in table["families"].items():
        print(
            f"| {name} | {cells['check']} | "
            + " | ".join(f"{cells[c]['within_10']:.0%} / {cells[c]['mape']:.1%}" for c in columns)
            + " |"
        )
    print(
        "\nOp table, 5-fold cross-validation inside the calibration set (no check network seen; where it is low, "
        "more calibration architectures help: --calibrate-space):\n\n| family | calibration archs | within +-10 % | MAPE |\n|---|---|---|---|"
    )
    for name, cell in table["cross_validation"].items():
        print(f"| {name} | {cell['calibration']} | {cell['within_10']:.0%} | {cell['mape']:.1%} |")


def host_summary_path(store_path: Path) -> Path:
    """Where a replay of a host store keeps its tables: beside the store, host_accuracy<...>.json."""
    stem = store_path.stem
    suffix = stem[len("host_measurements") :] if stem.startswith("host_measurements") else f"_{stem}"
    return store_path.with_name(f"host_accuracy{suffix}.json")


def print_host_summary(summary: dict) -> None:
    print(
        f"\n### Host CPU: {summary['cpu']}, store {summary['store']} (replayed {summary['replayed']}, torch "
        f"{summary['torch']})\n\n{summary['command']}\n\nMeasurement runs: "
        + "; ".join(
            f"{r['date']}, {r['measured']} cases, {r.get('layers_timed', 0)} with their layers, {r.get('remeasured', 0)} "
            f"again, load {r['load_before']} -> {r['load_after']}"
            for r in summary["measurement_runs"]
        )
    )
    for table in summary["tables"]:
        print_host_table(table)


def report(jetson_results: Path = JETSON_RESULTS) -> None:
    """Print every stored result again: the Jetson evaluation (``jetson_results``) and each replayed host store's tables."""
    data, rows = stored_jetson_rows(jetson_results)
    sources = "".join(f"; {source} fitted" for source in data.get("fit_sources", []))
    print(
        f"\n### Jetson: how the published fit generalises (TensorRT, batch 1; effects: {', '.join(data['effects']) or 'none'}; "
        f"{sources}; {jetson_results.name}, {data['date']}, torch {data['torch']})\n"
    )
    print_jetson(rows)
    print_constants(data.get("full_fit", {}))
    for path in sorted(MEASUREMENTS.parent.glob("host_accuracy*.json")):
        print_host_summary(json.loads(path.read_text()))


def _command_line(args: argparse.Namespace) -> str:
    """The host part's command, as it replays this store."""
    try:
        store = args.measurements.resolve().relative_to(Path.cwd())
    except ValueError:
        store = args.measurements
    parts = [
        "OMP_NUM_THREADS=1 python benchmarks/latency_accuracy.py --skip-jetson",
        f"--calibrate-per-space {args.calibrate_per_space}",
        *[f"--calibrate-space {c}" for c in args.calibrate_space],
        f"--check-total {args.check_total}",
        f"--check-seed {args.check_seed}",
        f"--host-scale {args.host_scale}",
        f"--rounds {args.rounds}",
    ]
    if args.op_table_extra_scale is not None:
        parts.append(f"--op-table-extra-scale {args.op_table_extra_scale}")
    return " ".join([*parts, f"--measurements {store}"])


def parse_space_counts(items: list[str]) -> dict[str, int]:
    """``["espnet=40"]`` -> ``{"espnet": 40}``; a malformed item is one clear error."""
    out = {}
    for item in items:
        name, _, count = item.partition("=")
        if not count.isdigit() or int(count) < 1:
            raise SystemExit(f"--calibrate-space {item!r}: expected SPACE=N with N a positive count, e.g. espnet=40")
        out[name] = int(count)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--skip-host", action="store_true")
    parser.add_argument("--skip-jetson", action="store_true")
    parser.add_argument("--host-scale", type=float, default=0.5, help="host inputs: the search input times this")
    parser.add_argument("--calibrate-per-space", type=int, default=10)
    parser.add_argument(
        "--calibrate-space",
        action="append",
        default=[],
        metavar="SPACE=N",
        help="this many calibration architectures for this space (repeatable; the others keep --calibrate-per-space)",
    )
    parser.add_argument("--check-total", type=int, default=60, help="at least this many check architectures")
    parser.add_argument(
        "--check-seed",
        type=int,
        default=2,
        help="draw the check architectures with this seed (2 in every store before 2026-12-06)",
    )
    parser.add_argument(
        "--op-table-extra-scale",
        type=float,
        default=None,
        help="host: also time the calibration architectures at the search input times this, for a "
        "second op table of more layer sizes",
    )
    parser.add_argument(
        "--rounds",
        type=int,
        default=5,
        help="host: measure every network this many times, in as many passes, and take the median "
        "(1 reproduces stores from before 2026-12-03, which hold one measurement per network)",
    )
    parser.add_argument(
        "--write-host-calibration", action="store_true", help="save the host fit as the packaged host-cpu calibration"
    )
    parser.add_argument(
        "--fit-source",
        action="append",
        default=[],
        help="Jetson: fit this source's check points too (an experiment; repeatable), e.g. trtutils",
    )
    parser.add_argument(
        "--effects",
        default=None,
        metavar="A,B",
        help="Jetson: cost with these kernel effects instead of the packaged ones ('' for none; "
        f"known: {', '.join(EFFECTS)})",
    )
    parser.add_argument(
        "--effects-study",
        action="store_true",
        help="Jetson: also judge every kernel effect alone by leave-one-network-out (slow: minutes each)",
    )
    parser.add_argument(
        "--jetson-results",
        type=Path,
        default=JETSON_RESULTS,
        help="Jetson: write every prediction here (and the effects study beside it); with --report, print this "
        "stored evaluation",
    )
    parser.add_argument(
        "--report",
        action="store_true",
        help="only print the stored results again: the Jetson evaluation and every replayed host store",
    )
    parser.add_argument(
        "--measurements",
        type=Path,
        default=MEASUREMENTS,
        help="host measurements reused from and added to this JSON file (a new path measures afresh)",
    )
    args = parser.parse_args()
    if args.report:
        report(args.jetson_results)
        return
    more = parse_space_counts(args.calibrate_space)
    if not args.skip_jetson:
        effects = None if args.effects is None else [e for e in args.effects.split(",") if e]
        jetson_generalisation(effects, args.jetson_results, args.fit_source)
        if args.effects_study:
            effects_study(
                effect_candidates(JETSON_EFFECTS, PREVIOUS_JETSON_EFFECTS),
                args.jetson_results.with_name(EFFECTS_RESULTS.name),
            )
        paper_settings()
    if not args.skip_host:
        host(
            args.host_scale,
            args.calibrate_per_space,
            args.check_total,
            args.write_host_calibration,
            args.measurements,
            args.rounds,
            args.op_table_extra_scale,
            more,
            args.check_seed,
            _command_line(args),
        )


if __name__ == "__main__":
    main()
