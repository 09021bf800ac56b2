"""How fast ``nasseg explore`` draws a space's latency landscape, and whether its shortcuts change anything.

    python benchmarks/explore_speed.py run --space espnet --target jetson-nano --samples 1000
    python benchmarks/explore_speed.py run --space espnet --target jetson-nano --samples 1000 --workers 1
    python benchmarks/explore_speed.py naive --space espnet --target jetson-nano --samples 20
    python benchmarks/explore_speed.py agree --samples 20        # every space: MACs and estimates, both ways
    python benchmarks/explore_speed.py report                    # print every stored result

``run`` times ``nasseg.viz.landscape.explore`` end to end (sampling, building on the meta device, one
trace per architecture, MACs and estimates from it, parameter effects), its wall time and the CPU time
of the process and its workers, with the load average before and after (the development machine is
shared). ``naive`` times what a trial of ``nasseg search`` does for the same three numbers, per
architecture (build with weights, ``count_params``, ``count_macs`` with fvcore, ``estimate`` with fake
tensors), on a few architectures, and scales it to 1,000. ``agree`` checks that the shortcuts change
nothing: for every baseline of every space and ``--samples`` random architectures per space, the MACs
from the predictor's trace against fvcore's (``count_macs``: total and conv-only) and torch's flop
counter, and the estimate from the meta-device trace against ``nasseg.latency.estimate``. Results are
written to benchmarks/results/explore_speed/ and ``report`` prints them again.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import torch

from nasseg.latency import estimate
from nasseg.models import build
from nasseg.profile import count_macs, count_params
from nasseg.spaces import load_space, space_names
from nasseg.viz.landscape import check_targets, explore, profile_architecture

RESULTS = Path(__file__).resolve().parent / "results" / "explore_speed"


def _save(name: str, data: dict[str, Any]) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps(data, indent=2) + "\n")
    return path


def _machine() -> dict[str, Any]:
    cpu = (
        next(
            (
                line.split(":", 1)[1].strip()
                for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")
            ),
            platform.processor(),
        )
        if Path("/proc/cpuinfo").exists()
        else platform.processor()
    )
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "torch": torch.__version__,
        "when": datetime.now().isoformat(timespec="minutes"),
    }


def _cpu_seconds() -> float:
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


# ----- run -----------------------------------------------------------------------------------------
def run(space: str, targets: list[str], samples: int, workers: int | None, seed: int) -> dict[str, Any]:
    check_targets(targets)  # imports and the op-table fit outside the clock, as a warm CLI process has them
    load_before, cpu0, t0 = os.getloadavg(), _cpu_seconds(), time.perf_counter()
    landscape = explore(space, targets, samples, seed, workers=workers)
    wall, cpu = time.perf_counter() - t0, _cpu_seconds() - cpu0
    n = len(landscape.points)
    return {
        "what": "explore() end to end",
        "machine": _machine(),
        "space": space,
        "targets": targets,
        "samples": samples,
        "seed": seed,
        "workers": landscape.workers,
        "architectures": n,
        "sampled": len(landscape.sampled),
        "baselines": len(landscape.baselines),
        "draws": landscape.draws,
        "rejected": landscape.rejected,
        "meta_traced": landscape.meta_traced,
        "wall_s": round(wall, 2),
        "cpu_s": round(cpu, 2),
        "wall_ms_per_architecture": round(wall / n * 1e3, 1),
        "cpu_ms_per_architecture": round(cpu / n * 1e3, 1),
        "load_average_before": [round(v, 2) for v in load_before],
        "load_average_after": [round(v, 2) for v in os.getloadavg()],
        "top_effects": {
            t: [(e.parameter, round(e.share, 3), round(e.ratio, 3)) for e in eff[:5]]
            for t, eff in landscape.effects.items()
        },
    }


# ----- naive ---------------------------------------------------------------------------------------
def naive(space_name: str, target: str, samples: int, seed: int) -> dict[str, Any]:
    space = load_space(space_name)
    hw = tuple(space.spec.search_input)
    configs = space.sample_feasible(samples, seed).configs
    calibrations = check_targets([target])
    estimate(build(configs[0]), hw, target)  # warm up: imports, first trace
    profile_architecture(configs[0], hw, calibrations)
    steps = {"build": 0.0, "count_params": 0.0, "count_macs (fvcore)": 0.0, "estimate (fake tensors)": 0.0}
    fast = 0.0
    for config in configs:
        t = time.process_time()
        model = build(config)
        steps["build"] += time.process_time() - t
        t = time.process_time()
        count_params(model)
        steps["count_params"] += time.process_time() - t
        t = time.process_time()
        count_macs(model, hw)
        steps["count_macs (fvcore)"] += time.process_time() - t
        t = time.process_time()
        estimate(model, hw, target)
        steps["estimate (fake tensors)"] += time.process_time() - t
        t = time.process_time()
        profile_architecture(config, hw, calibrations)
        fast += time.process_time() - t
    per = {k: round(v / len(configs) * 1e3, 1) for k, v in steps.items()}
    total = sum(steps.values()) / len(configs)
    return {
        "what": "CPU time per architecture, one process: a search trial's way against explore's",
        "machine": _machine(),
        "space": space_name,
        "target": target,
        "architectures": len(configs),
        "naive_cpu_ms": per,
        "naive_cpu_ms_total": round(total * 1e3, 1),
        "explore_cpu_ms": round(fast / len(configs) * 1e3, 1),
        "naive_1000_cpu_s": round(total * 1000, 1),
        "explore_1000_cpu_s": round(fast / len(configs) * 1000, 1),
        "load_average": [round(v, 2) for v in os.getloadavg()],
    }


# ----- agree ---------------------------------------------------------------------------------------
def agree(samples: int, seed: int, targets: list[str]) -> dict[str, Any]:
    calibrations = check_targets(targets)
    per_space = {}
    for name in space_names():
        space = load_space(name)
        hw = tuple(space.spec.search_input)
        cases = [(b, space.baseline(b, space.spec.num_classes)) for b in space.baselines]
        cases = [(b, c) for b, c in cases if _feasible(space, c, hw)]
        cases += [(f"sample-{i + 1}", c) for i, c in enumerate(space.sample_feasible(samples, seed).configs)]
        rows = []
        for label, config in cases:
            fast = profile_architecture(config, hw, calibrations)
            model = build(config)
            fv = count_macs(model, hw)
            same_estimates = all(estimate(model, hw, t).to_dict() == fast.latency[t].to_dict() for t in targets)
            rows.append(
                {
                    "architecture": label,
                    "baseline": not label.startswith("sample-"),
                    "trace_macs": fast.macs,
                    "fvcore_macs": fv.macs,
                    "trace_conv_macs": fast.conv_macs,
                    "fvcore_conv_macs": fv.conv_macs,
                    "torch_flop_counter_macs": fv.flop_counter_macs,
                    "params_equal": fast.params == count_params(model),
                    "estimates_identical": same_estimates,
                    "meta_traced": fast.meta,
                }
            )
        per_space[name] = {
            "input_hw": list(hw),
            "architectures": len(rows),
            "macs_equal": sum(r["trace_macs"] == r["fvcore_macs"] for r in rows),
            "conv_macs_equal": sum(r["trace_conv_macs"] == r["fvcore_conv_macs"] for r in rows),
            "max_rel_diff_macs": max(abs(r["trace_macs"] / r["fvcore_macs"] - 1) for r in rows),
            "estimates_identical": sum(r["estimates_identical"] for r in rows),
            "params_equal": sum(r["params_equal"] for r in rows),
            "meta_traced": sum(r["meta_traced"] for r in rows),
            "rows": rows,
        }
    return {
        "what": "MACs from the trace vs fvcore; estimates from the meta trace vs estimate()",
        "machine": _machine(),
        "targets": targets,
        "samples_per_space": samples,
        "seed": seed,
        "spaces": per_space,
    }


def _feasible(space: Any, config: Any, hw: tuple[int, int]) -> bool:
    try:
        space.check(config, hw)
        return True
    except Exception:  # noqa: BLE001  (a baseline that cannot run at the search input is not in a landscape)
        return False


# ----- report --------------------------------------------------------------------------------------
def report() -> None:
    for path in sorted(RESULTS.glob("*.json")):
        data = json.loads(path.read_text())
        m = data["machine"]
        head = f"{path.name} ({m['when']}, {m['cpu']}, {m['cores']} cores)"
        if data["what"].startswith("explore()"):
            print(
                f"{head}\n  {data['space']} on {', '.join(data['targets'])}: {data['sampled']} samples + "
                f"{data['baselines']} baselines ({data['draws']} draws) in {data['wall_s']} s wall on "
                f"{data['workers']} process(es), {data['cpu_s']} s CPU ({data['cpu_ms_per_architecture']} ms "
                f"per architecture); load average {data['load_average_before'][0]} before, "
                f"{data['load_average_after'][0]} after"
            )
        elif data["what"].startswith("CPU time"):
            print(
                f"{head}\n  {data['space']} on {data['target']}, {data['architectures']} architectures, CPU ms "
                f"each: search-trial way {data['naive_cpu_ms_total']} ({data['naive_cpu_ms']}), explore "
                f"{data['explore_cpu_ms']}; for 1,000: {data['naive_1000_cpu_s']} s against "
                f"{data['explore_1000_cpu_s']} s"
            )
        else:
            print(head)
            for name, s in data["spaces"].items():
                print(
                    f"  {name}: {s['architectures']} architectures; MACs equal to fvcore's {s['macs_equal']} "
                    f"(conv {s['conv_macs_equal']}), largest difference {s['max_rel_diff_macs']:.2e}; estimates "
                    f"identical {s['estimates_identical']}; params equal {s['params_equal']}; meta-traced "
                    f"{s['meta_traced']}"
                )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    r = sub.add_parser("run")
    r.add_argument("--space", default="espnet")
    r.add_argument("--target", action="append")
    r.add_argument("--samples", type=int, default=1000)
    r.add_argument("--workers", type=int)
    r.add_argument("--seed", type=int, default=0)
    r.add_argument("--name", help="the result's file name (default <space>-<targets>-<samples>[-w<workers>])")
    n = sub.add_parser("naive")
    n.add_argument("--space", default="espnet")
    n.add_argument("--target", default="jetson-nano")
    n.add_argument("--samples", type=int, default=20)
    n.add_argument("--seed", type=int, default=0)
    a = sub.add_parser("agree")
    a.add_argument("--samples", type=int, default=20)
    a.add_argument("--seed", type=int, default=1)
    a.add_argument("--target", action="append")
    sub.add_parser("report")
    args = parser.parse_args()
    if args.command == "run":
        targets = args.target or ["jetson-nano"]
        data = run(args.space, targets, args.samples, args.workers, args.seed)
        name = args.name or f"{args.space}-{'+'.join(targets)}-{args.samples}" + (
            f"-w{args.workers}" if args.workers else ""
        )
        print(_save(name, data))
    elif args.command == "naive":
        print(_save(f"naive-{args.space}-{args.target}", naive(args.space, args.target, args.samples, args.seed)))
    elif args.command == "agree":
        print(_save("agree", agree(args.samples, args.seed, args.target or ["jetson-nano", "host-cpu"])))
    report()


if __name__ == "__main__":
    main()
