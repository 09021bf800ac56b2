"""How efficient the search is: its overhead, its samplers, and early stopping.

    python benchmarks/search_efficiency.py overhead studies/espnet-nano.yaml   # share of a trial not training
    python benchmarks/search_efficiency.py samplers --space espnet --seeds 5 --budget 40
    python benchmarks/search_efficiency.py early-stopping --budget 20
    python benchmarks/search_efficiency.py early-stopping-replay studies/espnet-nano.yaml
    python benchmarks/search_efficiency.py report                                # print every stored result

``samplers`` compares TPE, NSGA-II and random search (``nasseg.search.study.make_sampler``, as a study
uses them) at equal budgets over several seeds on a cheap but real objective: the architectures of a
space (sampled define-by-run, conditions and all) scored by their parameter count (maximised, a stand-in
for capacity) and their latency on the target as the predictor estimates it (minimised); its result is
the hypervolume of each run's front, normalised by a reference front pooled over every run.
``early-stopping`` runs the same study (random sampler, so both draw the same architectures) with and
without early stopping and reports the training time saved and the front members lost;
``early-stopping-replay`` applies the same rule (``nasseg.search.study.hopeless``) to a stored study's
learning curves, trial by trial in the order they finished, and reports what it would have stopped.
``overhead``
reads a stored study: for each trial, the share of its wall time (Optuna's start to finish) that was not
training or evaluation. Results are written to benchmarks/results/search_efficiency/ and ``report``
prints them again.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import time
from pathlib import Path
from typing import Any

import optuna

from nasseg.latency import estimate
from nasseg.models import ArchConfig, build
from nasseg.profile import count_params
from nasseg.search.results import TrialRow, hypervolume, pareto_front, study_results
from nasseg.search.run import run_search
from nasseg.search.spec import StudySpec, load_study_file
from nasseg.search.study import (
    BASELINE_ATTR,
    RECORD_ATTR,
    hopeless,
    load_study,
    make_sampler,
    record_of,
    tie_breaker_of,
)
from nasseg.spaces import load_space

RESULTS = Path(__file__).resolve().parent / "results" / "search_efficiency"


def _save(name: str, data: dict[str, Any]) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps(data, indent=2))
    return path


# ----- overhead ----------------------------------------------------------------------------------
def overhead(study_file: Path) -> dict[str, Any]:
    spec = load_study_file(study_file)
    study, _ = load_study(spec.study_name, base=study_file.parent)
    shares, rows = [], []
    for trial in study.get_trials(deepcopy=False):
        record = record_of(trial)
        if record is None or record.train_seconds is None or trial.datetime_complete is None:
            continue
        wall = (trial.datetime_complete - trial.datetime_start).total_seconds()
        shares.append(1 - record.train_seconds / wall)
        rows.append({"number": trial.number, "wall_s": wall, "train_s": record.train_seconds})
    return {
        "study": spec.study_name,
        "trials": len(rows),
        "median_overhead": statistics.median(shares),
        "max_overhead": max(shares),
        "total_overhead": 1 - sum(r["train_s"] for r in rows) / sum(r["wall_s"] for r in rows),
        "rows": rows,
    }


# ----- samplers ------------------------------------------------------------------------------------
def _cheap_objective(space_name: str, target: str) -> Any:
    space = load_space(space_name)
    hw = tuple(space.spec.search_input)
    cache: dict[str, tuple[float, float]] = {}

    def objective(trial: optuna.Trial) -> tuple[float, float]:
        params = space.sample_params(trial)
        config = ArchConfig(space.spec.family, params, space.spec.num_classes)
        space.check(config, hw, degenerate=space.spec.degenerate)  # InfeasibleArchitecture: a failed trial
        key = config.arch_hash()
        if key not in cache:
            model = build(config)
            cache[key] = (math.log10(count_params(model)), estimate(model, hw, target).median_ms)
        return cache[key]

    return objective


def _front_rows(values: list[tuple[float, float]]) -> list[TrialRow]:
    return [
        TrialRow(
            number=i,
            state="COMPLETE",
            status="complete",
            baseline=None,
            miou=v,
            score=v,
            latency_ms=ms,
            latency_kind="estimated",
            latency_label=None,
            params=None,
            macs=None,
            config=None,
            failure=None,
            train_seconds=None,
            wall_seconds=None,
        )
        for i, (v, ms) in enumerate(values)
    ]


def samplers(space: str, target: str, seeds: int, budget: int) -> dict[str, Any]:
    optuna.logging.set_verbosity(optuna.logging.ERROR)  # infeasible draws fail quietly
    objective = _cheap_objective(space, target)
    runs: dict[str, list[list[tuple[float, float]]]] = {}
    seconds: dict[str, float] = {}
    for name in ("tpe", "nsga2", "random"):
        runs[name], started = [], time.perf_counter()
        for seed in range(seeds):
            spec = StudySpec(space=space, target=target, budget=budget, sampler=name, seed=seed)
            study = optuna.create_study(directions=["maximize", "minimize"], sampler=make_sampler(spec))
            while sum(t.state.name == "COMPLETE" for t in study.trials) < budget:
                study.optimize(objective, n_trials=1, catch=(Exception,))
            runs[name].append([tuple(t.values) for t in study.trials if t.state.name == "COMPLETE"])
        seconds[name] = time.perf_counter() - started
    # One reference for every run: log10(params) above the smallest seen, latency below the slowest seen.
    every = [v for per in runs.values() for run in per for v in run]
    floor, ceiling = min(v for v, _ in every), max(ms for _, ms in every)

    def hv(run: list[tuple[float, float]]) -> float:
        return hypervolume(pareto_front(_front_rows([(v - floor, ms) for v, ms in run])), ceiling)

    best = hv(every)
    table = {name: [hv(run) / best for run in per] for name, per in runs.items()}
    return {
        "objective": f"maximise log10(params), minimise latency on {target} estimated by the predictor, "
        f"{space} space at its search input",
        "space": space,
        "target": target,
        "seeds": seeds,
        "budget": budget,
        "normalised_hypervolume": table,
        "mean": {n: statistics.mean(v) for n, v in table.items()},
        "stdev": {n: statistics.stdev(v) if len(v) > 1 else 0.0 for n, v in table.items()},
        "seconds": seconds,
    }


# ----- early stopping ------------------------------------------------------------------------------
def early_stopping(budget: int, data: str, schedule: str, base: Path) -> dict[str, Any]:
    out: dict[str, Any] = {"budget": budget, "data": data, "schedule": schedule}
    for label, on in (("off", False), ("on", True)):
        spec = StudySpec(
            space="espnet",
            target="jetson-nano",
            data=data,
            schedule=schedule,
            budget=budget,
            sampler="random",
            early_stopping=on,
            name=f"es-{label}",
        )
        started = time.perf_counter()
        run_search(spec, base=base)
        study, settings = load_study(spec.study_name, base=base)
        results = study_results(study, settings)
        records = {t.number: r for t in study.get_trials() if (r := record_of(t)) is not None}
        out[label] = {
            "wall_s": time.perf_counter() - started,
            "train_s": sum(r.train_seconds or 0 for r in records.values()),
            "stopped": sum(r.status == "stopped" for r in records.values()),
            "front": sorted(records[n].arch_hash for n in results.pareto),
        }
    lost = sorted(set(out["off"]["front"]) - set(out["on"]["front"]))
    out["front_members_lost"] = lost
    out["train_time_saved"] = 1 - out["on"]["train_s"] / out["off"]["train_s"]
    return out


def early_stopping_replay(study_file: Path) -> dict[str, Any]:
    """The rule on a finished study without it: each sampled trial's evaluations in turn, against the
    trials that had finished before it started (those it could have been compared with in the run; a
    lower bound) and before it finished (an upper bound). Stopping earlier would have changed what the
    sampler drew next; the replay keeps the draws and shows the rule's effect on them."""
    spec = load_study_file(study_file)
    study, settings = load_study(spec.study_name, base=study_file.parent)
    front = set(study_results(study, settings).pareto)
    trials = sorted(
        (t for t in study.get_trials(deepcopy=False) if t.state.name == "COMPLETE"), key=lambda t: t.datetime_complete
    )
    out: dict[str, Any] = {"study": spec.study_name, "front": sorted(front)}
    for bound, before in (("lower", "datetime_start"), ("upper", "datetime_complete")):
        stopped, saved, lost, total = [], 0.0, [], 0.0
        for trial in trials:
            record = trial.user_attrs[RECORD_ATTR]
            if trial.user_attrs.get(BASELINE_ATTR) or record["status"] != "complete":
                continue
            total += record["train_seconds"]
            finished = [
                t.user_attrs[RECORD_ATTR]
                for t in trials
                if t is not trial and t.datetime_complete < getattr(trial, before)
            ]
            latency = record["latency"]["median_ms"]
            tie_breaker = tie_breaker_of(record)
            at = next(
                (
                    step
                    for step, miou in record["history"]
                    if miou is not None and hopeless(step, miou + tie_breaker, latency, finished)
                ),
                None,
            )
            if at is None:
                continue
            stopped.append(trial.number)
            saved += record["train_seconds"] * (1 - at / record["steps"])
            if trial.number in front:
                lost.append(trial.number)
        out[bound] = {
            "stopped": stopped,
            "train_time_saved": saved / total if total else 0.0,
            "front_members_lost": lost,
        }
    return out


def report() -> None:
    for path in sorted(RESULTS.glob("*.json")):
        data = json.loads(path.read_text())
        print(f"== {path.name}")
        if "median_overhead" in data:
            print(
                f"study {data['study']}: {data['trials']} trials; not training or evaluation: median "
                f"{data['median_overhead']:.1%}, worst {data['max_overhead']:.1%}, overall {data['total_overhead']:.1%}"
            )
        elif "normalised_hypervolume" in data:
            print(f"{data['objective']}; budget {data['budget']}, {data['seeds']} seeds")
            for name, mean in data["mean"].items():
                print(
                    f"  {name:7s} hypervolume {mean:.3f} ± {data['stdev'][name]:.3f} (of the pooled front), "
                    f"{data['seconds'][name]:.0f} s"
                )
        elif "lower" in data:
            for bound in ("lower", "upper"):
                d = data[bound]
                print(
                    f"early-stopping replay on {data['study']} ({bound} bound): {len(d['stopped'])} sampled trials "
                    f"stopped, training time saved {d['train_time_saved']:.1%}, front members lost "
                    f"{len(d['front_members_lost'])} of {len(data['front'])}"
                )
        elif "train_time_saved" in data:
            print(
                f"early stopping, {data['budget']} sampled + baselines, {data['schedule']} on {data['data']}: "
                f"training time saved {data['train_time_saved']:.1%}, {data['on']['stopped']} trials stopped, "
                f"front members lost {len(data['front_members_lost'])} of {len(data['off']['front'])}"
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("overhead")
    p.add_argument("study_file", type=Path)
    p = sub.add_parser("samplers")
    p.add_argument("--space", default="espnet")
    p.add_argument("--target", default="jetson-nano")
    p.add_argument("--seeds", type=int, default=5)
    p.add_argument("--budget", type=int, default=40)
    p = sub.add_parser("early-stopping")
    p.add_argument("--budget", type=int, default=20)
    p.add_argument("--data", default="synthetic")
    p.add_argument("--schedule", default="tiny")
    p.add_argument("--base", type=Path, default=Path("/tmp/nasseg-early-stopping"))
    p = sub.add_parser("early-stopping-replay")
    p.add_argument("study_file", type=Path)
    sub.add_parser("report")
    args = parser.parse_args()
    if args.command == "overhead":
        _save(f"overhead-{load_study_file(args.study_file).study_name}", overhead(args.study_file))
    elif args.command == "samplers":
        _save(f"samplers-{args.space}-{args.target}", samplers(args.space, args.target, args.seeds, args.budget))
    elif args.command == "early-stopping-replay":
        _save(
            f"early-stopping-replay-{load_study_file(args.study_file).study_name}",
            early_stopping_replay(args.study_file),
        )
    elif args.command == "early-stopping":
        _save(f"early-stopping-{args.schedule}", early_stopping(args.budget, args.data, args.schedule, args.base))
    report()


if __name__ == "__main__":
    main()
