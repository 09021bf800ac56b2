"""How far to trust the search's accuracy proxy: does ``short`` rank architectures as a longer run does?

Trains the published baselines plus sampled architectures on CamVid with ``short`` and with a
schedule ``--factor`` times longer (same recipe, proportionally longer warm-up and evaluation
cadence), then reports Kendall tau and Spearman rho between the two mIoU rankings, each run's wall
time, and each baseline's ``short`` mIoU.

Every run is a run directory under ``--runs`` (checkpointed, resumable): an interrupted benchmark
continues where it stopped, and ``--report`` only reads what is there. All short runs come first, so
every architecture has its proxy score early, then the long ones. Start one process per core with the
same command: each takes the next run that is neither finished nor held by another process (a lock
file that the operating system releases if its holder dies):

    python benchmarks/proxy_fidelity.py --threads 1 &
    python benchmarks/proxy_fidelity.py --threads 1 &
    python benchmarks/proxy_fidelity.py --report

The reference is the mean of the long runs over seeds: ``--long-seed 1`` trains the long runs again
with seed 1 into ``long-seed1/`` (``--reference-seeds`` says how many the reference needs). Proxy
candidates are judged against it (``proxy_candidates.py``): ``--proxy-steps 600`` trains ``short``
stretched to 600 steps into ``short-600/``; ``--proxy-steps 600 --proxy-batch 4`` keeps ``short``'s
images, and so about its cost, with twice the updates (``short-600-b4/``); ``--train-seed 1`` trains
``short`` again with another seed (``short-seed1/``: its noise, and the mean of two seeds);
``--proxy-ema 0.99`` scores a moving average of the weights (``short-ema0.99/``);
``--proxy-eval-scale 1`` evaluates at CamVid's full 360x480 instead of half (``short-eval1/``); a
``--proxy-ema`` run is also scored with its last weights, at full scale and by validation loss (``rescore``);
``--zero-cost`` scores every architecture's zero-cost proxies at its initial weights (``zero_cost/``).
Scores read off stored runs (the mean of ``short``'s last two evaluations, its learning curve carried on)
and combinations (``short``, and ``short-eval1`` with synflow, plus a zero-cost proxy as tie-breaker) need no
training. A run whose training diverges is recorded as that candidate's failure on that architecture
(``failed.json``, with the reason), not retried.
A long run expected to outlast ``--max-hours`` is skipped; a space left with fewer than ``--per-space``
architectures whose long run fits draws further samples, each judged by a few timed training steps
(``cost_estimates/``) before anything trains it.

    python benchmarks/proxy_fidelity.py --long-seed 1 --threads 1 &
    python benchmarks/proxy_fidelity.py --zero-cost --threads 1
    python benchmarks/proxy_fidelity.py --report [--json]
"""

from __future__ import annotations

import argparse
import fcntl
import functools
import json
import math
import re
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch
from proxy_candidates import Candidate, choose, cross_validate, judge, tau

from nasseg.data import dataset_info, load_split
from nasseg.errors import TrialFailed
from nasseg.models import ArchConfig
from nasseg.search.proxy import AccuracyProxy, get_proxy
from nasseg.search.spec import StudySpec
from nasseg.spaces import SearchSpace, all_spaces, find_baseline
from nasseg.train import Schedule, get_schedule
from nasseg.train.runs import (
    CHECKPOINT_FILE,
    METRICS_FILE,
    RUN_FILE,
    RunSpec,
    build_seeded,
    evaluate_run,
    make_run,
    provenance,
    run_training,
)
from nasseg.train.zero_cost import PROXIES, zero_cost_scores

Named = list[tuple[str, ArchConfig]]
ROOT = Path(__file__).resolve().parents[1]
CAMVID = ROOT.parent / "shared" / "data" / "CamVid"
LOCK_FILE, FAILED_FILE, ZERO_COST, COST_ESTIMATES = ".lock", "failed.json", "zero_cost", "cost_estimates"
RESCORED_FILE = "rescored.json"
PACE_STEPS = 3  # timed training steps behind a cost estimate
PROXY_WEIGHTS = (0.01, 0.02, 0.04, 0.08, 0.16)  # mIoU per standard deviation of a zero-cost score: 1 to 16 points
# short's own winner among the zero-cost scores; the full-scale evaluation is tried with it alone, as each
# further family of sums makes the cross-validated choice noisier
TIE_BREAKER_OF_EVAL1 = "synflow"
MAX_EXTRA_DRAWS = 8  # further samples a space short of affordable architectures may try
ZERO_COST_BATCH = 8  # images of one training batch of short
# One or two named networks per paper: the published points a user compares a search against.
BASELINES = [
    "espnet",
    "espnet-c",
    "ejpnet",
    "espnetv2-s1",
    "fassd-net",
    "fassd-net-l1",
    "fassd-net-l2",
    "jetseg-nano",
    "pyramid-shufflenet",
]


def _scaled(schedule: Schedule, name: str, factor: float) -> Schedule:
    """The same recipe ``factor`` times as long: warm-up and evaluation cadence scale with it."""
    return schedule.with_overrides(
        name=name,
        steps=round(schedule.steps * factor),
        warmup_steps=round(schedule.warmup_steps * factor),
        eval_every=round(schedule.eval_every * factor),
    )


def schedules(
    factor: int,
    proxy_steps: int | None = None,
    proxy_batch: int | None = None,
    proxy_ema: float | None = None,
    proxy_eval_scale: float | None = None,
) -> dict[str, Schedule]:
    """The proxy under test (``short``, or a tuning candidate: ``short`` stretched to ``proxy_steps``,
    at batch ``proxy_batch``, scoring a moving average of its weights with decay ``proxy_ema``, or
    evaluating at ``proxy_eval_scale`` of the native resolution) and the reference: ``short``
    ``factor`` times longer, the same for every candidate. The keys are the result folders."""
    short = get_schedule("short")
    steps = proxy_steps or short.steps
    batch = proxy_batch or short.batch_size
    proxy = short
    if (steps, batch) != (short.steps, short.batch_size):
        name = f"short-{steps}" + (f"-b{batch}" if batch != short.batch_size else "")
        proxy = _scaled(short, name, steps / short.steps).with_overrides(batch_size=batch)
    if proxy_ema is not None:
        proxy = proxy.with_overrides(name=f"{proxy.name}-ema{proxy_ema:g}", ema_decay=proxy_ema)
    if proxy_eval_scale is not None and proxy_eval_scale != short.eval_scale:
        proxy = proxy.with_overrides(name=f"{proxy.name}-eval{proxy_eval_scale:g}", eval_scale=proxy_eval_scale)
    return {proxy.name: proxy, "long": _scaled(short, f"short-x{factor}", factor)}


def _drawn(space: SearchSpace, index: int, count: int, seed: int, train_hw: tuple[int, int], num_classes: int) -> Named:
    """The first ``count`` architectures space ``index`` draws with seed ``seed + index`` that it accepts at its
    search input and at ``train_hw`` (its sampler's rule: every space rejects degenerate points)."""
    draw = space.sample_feasible(
        count,
        seed + index,
        inputs=[tuple(space.spec.search_input), train_hw],
        num_classes=num_classes,
        attempts_per_sample=50,
    )
    return [(f"{space.name}-sample-{c.arch_hash()[:6]}", c) for c in draw.configs]


def sampled(
    count: int,
    seed: int,
    train_hw: tuple[int, int],
    num_classes: int,
    baselines: Sequence[tuple[str, ArchConfig]] = (),
    affordable: Callable[[str, ArchConfig], bool] | None = None,
    per_space: int = 0,
) -> Named:
    """``count`` random architectures taken from the spaces in turn, then, for a space with fewer than
    ``per_space`` ``affordable`` architectures (its baselines counted), its next draws in sequence that are
    affordable, up to ``MAX_EXTRA_DRAWS`` tried (appended at the end, so the first ``count`` never change)."""
    spaces = all_spaces()
    wanted = [count // len(spaces) + (i < count % len(spaces)) for i in range(len(spaces))]
    drawn = [_drawn(s, i, n, seed, train_hw, num_classes) for i, (s, n) in enumerate(zip(spaces, wanted, strict=True))]
    found = [named[k] for k in range(max(wanted, default=0)) for named in drawn if k < len(named)]
    if affordable is None:
        return found
    for i, (space, n) in enumerate(zip(spaces, wanted, strict=True)):
        own = [a for a in [*baselines, *drawn[i]] if a[1].family == space.spec.family]
        missing = per_space - sum(affordable(*a) for a in own)
        if missing <= 0:
            continue
        for name, arch in _drawn(space, i, n + MAX_EXTRA_DRAWS, seed, train_hw, num_classes)[n:]:
            if affordable(name, arch):
                found.append((name, arch))
                missing -= 1
                if not missing:
                    break
    return found


def architectures(
    data: str,
    samples: int,
    seed: int,
    schedule: Schedule,
    affordable: Callable[[str, ArchConfig], bool] | None = None,
    per_space: int = 0,
) -> Named:
    """Baselines and sampled points interleaved, so that a partial run already covers both kinds; a space's
    extra samples (``sampled``) come last."""
    info = dataset_info(data)
    baselines = [(name, _baseline(name)) for name in BASELINES]
    found = sampled(
        samples, seed, schedule.input_hw(info.frame_hw()), info.num_classes, baselines, affordable, per_space
    )
    mixed = [arch for pair in zip(baselines, found, strict=False) for arch in pair]
    return mixed + baselines[len(found) :] + found[len(baselines) :]


def _baseline(name: str) -> ArchConfig:
    space, name = find_baseline(name)
    return space.baseline(name)


def proxy_folder(proxy: str, train_seed: int | None) -> str:
    """Where a proxy's runs live: the same proxy trained with another seed gets its own folder."""
    return proxy if train_seed is None else f"{proxy}-seed{train_seed}"


def training_jobs(
    plans: dict[str, Schedule],
    seed: int,
    train_seed: int | None,
    long_seed: int | None = None,
) -> list[tuple[str, Schedule, int]]:
    """(folder, schedule, training seed) of each set of runs: ``short`` and the long reference, a tuning
    candidate alone (judged by the long runs there are), or the long reference again with ``long_seed``."""
    if long_seed is not None:
        return [(f"long-seed{long_seed}", plans["long"], long_seed)]
    proxy = next(iter(plans))
    folder = proxy_folder(proxy, train_seed)
    jobs = [(folder, plans[proxy], seed if train_seed is None else train_seed)]
    return jobs + [("long", plans["long"], seed)] if folder == "short" else jobs


def long_hours(runs: Path, name: str, arch: ArchConfig, data: str, factor: int) -> float:
    """How long ``name``'s long run is expected to take, in hours: ``factor`` times its finished ``short`` run,
    or before that run exists, ``factor`` times ``short``'s steps at the pace of a few timed training steps
    (kept in cost_estimates/, so a later invocation chooses the same architectures without timing again)."""
    short = runs / "short" / name / METRICS_FILE
    if short.is_file():
        return json.loads(short.read_text())["train_seconds"] * factor / 3600
    stored = runs / COST_ESTIMATES / f"{name}.json"
    if not stored.is_file():
        stored.parent.mkdir(parents=True, exist_ok=True)
        stored.write_text(json.dumps(_timed_pace(name, arch, data), indent=2))
    return json.loads(stored.read_text())["seconds_per_step"] * get_schedule("short").steps * factor / 3600


def _timed_pace(name: str, arch: ArchConfig, data: str) -> dict[str, object]:
    """Seconds per ``short`` training step, from a run of ``PACE_STEPS`` steps (its first step's set-up
    included, its evaluation not: an estimate on the slow side by the first, on the fast side by the second)."""
    short = get_schedule("short")
    probe = short.with_overrides(name="pace", steps=PACE_STEPS, warmup_steps=0, eval_every=None)
    run = make_run(name, arch, data, probe, 0)
    with tempfile.TemporaryDirectory() as tmp:
        metrics = run_training(run, Path(tmp) / name, progress=False)
    seconds = probe.batch_size / metrics["images_per_second"]
    print(f"pace  {name:32s} {seconds:.2f} s per short step ({PACE_STEPS} steps timed)", flush=True)
    return {
        "seconds_per_step": seconds,
        "steps_timed": PACE_STEPS,
        "threads": torch.get_num_threads(),
        "arch_hash": run.config.arch_hash(),
        "provenance": provenance(),
    }


def affordable(args: argparse.Namespace, name: str, arch: ArchConfig) -> bool:
    """Whether ``name``'s long run is expected within ``--max-hours`` (longer ones outlast a session here)."""
    return long_hours(args.runs, name, arch, args.data, args.factor) <= args.max_hours


def chosen(args: argparse.Namespace, schedule: Schedule) -> Named:
    """The architectures the benchmark trains: ``--samples`` draws, and more where a space has fewer than
    ``--per-space`` architectures whose long run is affordable."""
    return architectures(
        args.data, args.samples, args.seed, schedule, functools.partial(affordable, args), args.per_space
    )


def run_all(args: argparse.Namespace) -> None:
    torch.set_num_threads(args.threads)
    plans = schedules(args.factor, args.proxy_steps, args.proxy_batch, args.proxy_ema, args.proxy_eval_scale)
    archs = chosen(args, plans["long"])
    jobs = training_jobs(plans, args.seed, args.train_seed, args.long_seed)
    candidate = args.long_seed is None and jobs[0][0] != "short"
    for key, schedule, seed in jobs:
        for name, arch in archs:
            out = args.runs / key / name
            if candidate and not (args.runs / "long" / name / METRICS_FILE).is_file():
                continue
            if key.startswith("long") and not affordable(args, name, arch):
                continue
            with _claim(out) as claimed:
                if not claimed or (out / FAILED_FILE).is_file():
                    continue
                if not (out / METRICS_FILE).is_file() and not _train(
                    out, key, make_run(name, arch, args.data, schedule, seed)
                ):
                    continue
                if schedule.ema_decay is not None and not (out / RESCORED_FILE).is_file():
                    if (out / CHECKPOINT_FILE).is_file():
                        rescore(out)
                    else:  # a finished run stored without its weights (a fresh clone): nothing to rescore
                        print(f"{key:5s} {name:32s} not rescored: no {CHECKPOINT_FILE} beside its metrics", flush=True)


def _train(out: Path, key: str, run: RunSpec) -> bool:
    """Train (or resume) ``run`` into ``out``; False if it diverged, recorded there as this candidate's
    failure on this architecture, kept and not retried."""
    try:
        metrics = run_training(run, out, resume=(out / RUN_FILE).is_file(), progress=False)
    except TrialFailed as exc:
        (out / FAILED_FILE).write_text(json.dumps({"reason": str(exc), "provenance": provenance()}, indent=2))
        print(f"{key:5s} {run.name:32s} failed: {exc}", flush=True)
        return False
    print(f"{key:5s} {run.name:32s} mIoU {metrics['miou']:.4f}  {metrics['train_seconds']:7.1f} s", flush=True)
    return True


def rescore(out: Path) -> dict[str, dict[str, object]]:
    """A finished run that keeps a moving average, scored four ways from its final checkpoint: the average
    and the last step's weights (the same as a run without the average: it does not change training), each
    at the run's evaluation scale and at the full native frames, by mIoU and by validation loss."""
    run = RunSpec.from_file(out / RUN_FILE)
    native = dataset_info(run.data).frame_hw()
    scores: dict[str, dict[str, object]] = {}
    for weights in ("scored", "last"):
        for scale in sorted({run.schedule.eval_scale, 1.0}):
            hw = run.schedule.with_overrides(eval_scale=scale).eval_hw(native)
            start = time.perf_counter()
            _, result, _ = evaluate_run(out, input_hw=hw, weights=weights)
            scores[f"{weights}@{scale:g}"] = {
                "miou": result.miou,
                "loss": result.loss,
                "seconds": time.perf_counter() - start,
                "input_hw": list(hw),
            }
    (out / RESCORED_FILE).write_text(json.dumps({"scores": scores, "provenance": provenance()}, indent=2))
    return scores


def score_zero_cost(args: argparse.Namespace) -> None:
    """Every architecture's zero-cost proxies at ``short``'s training input, one file each in zero_cost/."""
    torch.set_num_threads(args.threads)
    short = get_schedule("short")
    archs = chosen(args, short)
    split = None
    for name, arch in archs:
        out = args.runs / ZERO_COST / f"{name}.json"
        if out.is_file():
            continue
        run = make_run(name, arch, args.data, short, args.seed)
        split = split or load_split(run.data, "train", run.train_hw)
        start = time.perf_counter()
        scores = zero_cost_scores(build_seeded(run.config, run.seed), split, ZERO_COST_BATCH, run.seed)
        seconds = time.perf_counter() - start
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(
            json.dumps(
                {
                    "scores": scores,
                    "seconds": seconds,
                    "batch": ZERO_COST_BATCH,
                    "seed": run.seed,
                    "input_hw": list(run.train_hw),
                    "arch_hash": run.config.arch_hash(),
                    "provenance": provenance(),
                },
                indent=2,
            )
        )
        print(
            f"zero-cost {name:32s} {' '.join(f'{k} {v:.3f}' for k, v in scores.items())}  {seconds:.1f} s", flush=True
        )


@contextmanager
def _claim(out: Path) -> Iterator[bool]:
    """Hold ``out``'s lock file while training there; False if another process holds it."""
    out.mkdir(parents=True, exist_ok=True)
    with open(out / LOCK_FILE, "w") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        yield True


@functools.cache  # a report reads each folder once
def _load(runs: Path, key: str) -> dict[str, dict]:
    return {p.parent.name: json.loads(p.read_text()) for p in sorted((runs / key).glob(f"*/{METRICS_FILE}"))}


def _failures(runs: Path, key: str) -> dict[str, str]:
    return {p.parent.name: json.loads(p.read_text())["reason"] for p in sorted((runs / key).glob(f"*/{FAILED_FILE}"))}


def reference(runs: Path, seeds: int) -> tuple[dict[str, float], dict[str, list[float]]]:
    """The mean long-run mIoU of every architecture with ``seeds`` long runs (``long``, ``long-seed1``, ...),
    and each architecture's per-seed mIoUs."""
    folders = ["long", *sorted(p.name for p in runs.glob("long-seed*") if p.is_dir())]
    per_seed: dict[str, list[float]] = {}
    for folder in folders:
        for name, metrics in _load(runs, folder).items():
            per_seed.setdefault(name, []).append(metrics["miou"])
    complete = {n: v[:seeds] for n, v in per_seed.items() if len(v) >= seeds}
    return {n: sum(v) / len(v) for n, v in complete.items()}, complete


def _images(metrics: dict) -> int:
    return metrics["steps"] * metrics["schedule"]["batch_size"]


def candidates(runs: Path) -> list[Candidate]:
    """Every proxy the stored results can score: trained folders, scores read off ``short``'s runs, the
    zero-cost proxies, and combinations. Cost is in images trained per trial relative to ``short``."""
    short = _load(runs, "short")
    base_images = {n: _images(m) for n, m in short.items()}
    found = []
    # A proxy trained again with another seed (short-seed1) measures that proxy's noise; it is not a proxy.
    folders = sorted(
        (
            p.name
            for p in runs.iterdir()
            if p.is_dir() and p.name.startswith("short") and not re.search(r"-seed\d+$", p.name)
        ),
        key=lambda name: (name != "short", name),
    )  # short first: it wins ties
    for folder in folders:
        done = _load(runs, folder)
        if not done:
            continue
        ratio = float(np.median([_images(m) / base_images[n] for n, m in done.items() if n in base_images]))
        found.append(
            Candidate(folder, {n: m["miou"] for n, m in done.items()}, ratio, "images trained", _failures(runs, folder))
        )
        found += _rescored(runs, folder, done, short)
    if short:
        found.append(
            Candidate(
                "short-last2",
                {n: float(np.mean([v for _, v in m["history"][-2:]])) for n, m in short.items()},
                1.0,
                "the short run itself",
                _failures(runs, "short"),
            )
        )
        reference_steps = max((m["steps"] for m in _load(runs, "long").values()), default=0)
        if reference_steps:  # the curve is carried on to the long runs' length
            found.append(
                Candidate(
                    "short-extrapolated",
                    {n: _extrapolated(m["history"], reference_steps) for n, m in short.items()},
                    1.0,
                    "the short run itself",
                    _failures(runs, "short"),
                )
            )
        second = _load(runs, "short-seed1")
        both = [n for n in short if n in second]
        if both:
            found.append(
                Candidate(
                    "short-2seeds", {n: (short[n]["miou"] + second[n]["miou"]) / 2 for n in both}, 2.0, "images trained"
                )
            )
    zero = {p.stem: json.loads(p.read_text()) for p in sorted((runs / ZERO_COST).glob("*.json"))}
    if zero:
        with_short = [n for n in zero if n in short]
        ratio = (
            float(np.median([zero[n]["seconds"] / short[n]["train_seconds"] for n in with_short]))
            if with_short
            else float("nan")
        )
        trained = {c.name: c for c in found}
        for proxy in PROXIES:
            scores = {n: z["scores"][proxy] for n, z in zero.items()}
            found.append(Candidate(proxy, scores, ratio, "seconds, median over architectures"))
            if with_short:  # a tie-breaker: the mean of the two ranks, so neither score's scale matters
                found.append(
                    Candidate(
                        f"short+{proxy}",
                        _rank_mean({n: short[n]["miou"] for n in with_short}, scores),
                        1.0 + ratio,
                        "short plus the proxy's seconds",
                        per_trial=False,  # ranks need every architecture's scores at once
                    )
                )
                standardised = _standardised_by([scores[n] for n in with_short])[:2]
                found += _tie_broken(trained["short"], proxy, scores, standardised, ratio)
                if "short-eval1" in trained and proxy == TIE_BREAKER_OF_EVAL1:
                    found += _tie_broken(trained["short-eval1"], proxy, scores, standardised, ratio)
    return found


def _tie_broken(
    base: Candidate, proxy: str, scores: dict[str, float], standardised: tuple[float, float], ratio: float
) -> list[Candidate]:
    """``base`` plus each weight times ``proxy``, scored as the search scores a trial
    (``nasseg.search.proxy.AccuracyProxy``): the proxy standardised by a fixed mean and spread, those over
    the architectures with a ``short`` run. A score the search would fail the trial on is this candidate's
    failure on that architecture."""
    mean, spread = standardised
    found = []
    for weight in PROXY_WEIGHTS:
        scored = AccuracyProxy(f"{base.name}+{weight:g}z({proxy})", proxy, weight, mean, spread)
        values, failures = {}, {n: why for n, why in base.failures.items() if n in scores}
        for n in (n for n in base.scores if n in scores):
            try:
                values[n] = scored.score(base.scores[n], {proxy: scores[n]})
            except TrialFailed as exc:
                failures[n] = str(exc)
        found.append(
            Candidate(scored.name, values, base.cost_ratio + ratio, f"{base.name} plus the proxy's seconds", failures)
        )
    return found


def standardisation(runs: Path, proxy: str) -> tuple[float, float, int]:
    """Mean and spread of a zero-cost score over the architectures with a ``short`` run, which the
    weighted candidates standardise by (and the search's ``nasseg.search.proxy`` holds as constants),
    and how many architectures that is."""
    short = _load(runs, "short")
    return _standardised_by(
        [
            json.loads(p.read_text())["scores"][proxy]
            for p in sorted((runs / ZERO_COST).glob("*.json"))
            if p.stem in short
        ]
    )


def _standardised_by(scored: list[float]) -> tuple[float, float, int]:
    return float(np.mean(scored)), float(np.std(scored)), len(scored)


def search_default() -> str:
    """The candidate a study scores with unless told (``nasseg search --proxy``), by this benchmark's name."""
    proxy = get_proxy(StudySpec.model_fields["proxy"].default)
    schedule = StudySpec.model_fields["schedule"].default
    return schedule if proxy.zero_cost is None else f"{schedule}+{proxy.weight:g}z({proxy.zero_cost})"


def _default_standardisation(runs: Path) -> dict[str, object] | None:
    proxy = get_proxy(StudySpec.model_fields["proxy"].default)
    if proxy.zero_cost is None or not (runs / ZERO_COST).is_dir():
        return None
    mean, spread, count = standardisation(runs, proxy.zero_cost)
    return {"zero_cost": proxy.zero_cost, "mean": mean, "spread": spread, "architectures": count}


def _extrapolated(history: list[list[float]], steps: int) -> float:
    """The learning curve carried on to ``steps`` (the long run's length, as its ranking settles late): mIoU
    linear in log(step), fitted to every evaluation but the first, where the curve is steepest."""
    points = np.array(history[1:], dtype=float)
    slope, intercept = np.polyfit(np.log(points[:, 0]), points[:, 1], 1)
    return float(intercept + slope * np.log(steps))


def _rescored(runs: Path, folder: str, done: dict[str, dict], short: dict[str, dict]) -> list[Candidate]:
    """The candidates a folder's rescored runs add (``rescore``): its last weights (``short`` trained again),
    the validation loss of either weights, and the mIoU of either at full scale. Scoring at full scale costs
    every evaluation's extra time (median over architectures, relative to ``short``'s run)."""
    rescored = {  # of runs whose metrics were read: a shard may finish one while a report runs
        p.parent.name: json.loads(p.read_text())["scores"]
        for p in sorted((runs / folder).glob(f"*/{RESCORED_FILE}"))
        if p.parent.name in done
    }
    if not rescored:
        return []
    failures = _failures(runs, folder)
    again = re.sub(r"-ema[\d.]+", "", folder)
    native = {n: f"@{done[n]['schedule']['eval_scale']:g}" for n in rescored}
    found = [
        Candidate(
            f"{again}-rerun",
            {n: r[f"last{native[n]}"]["miou"] for n, r in rescored.items()},
            1.0,
            "images trained",
            failures,
        )
    ]
    for weights, name in (("scored", f"{folder}-loss"), ("last", f"{again}-loss")):  # the lower, the better
        scores = {n: -r[f"{weights}{native[n]}"]["loss"] for n, r in rescored.items()}
        found.append(Candidate(name, scores, 1.0, "images trained", failures))
    for weights, name in (("scored", f"{folder}-eval1"), ("last", f"{again}-eval1")):
        extra = [
            _evaluations(done[n]["schedule"])
            * (r[f"{weights}@1"]["seconds"] - r[f"{weights}{native[n]}"]["seconds"])
            / short[n]["train_seconds"]
            for n, r in rescored.items()
            if n in short
        ]
        found.append(
            Candidate(
                name,
                {n: r[f"{weights}@1"]["miou"] for n, r in rescored.items()},
                1.0 + float(np.median(extra)) if extra else float("nan"),
                "images trained, plus every evaluation at full scale",
                failures,
            )
        )
    return found


def _evaluations(schedule: dict) -> int:
    """How many evaluations a run of ``schedule`` makes (every ``eval_every`` steps and at the last)."""
    steps, every = schedule["steps"], schedule["eval_every"]
    return steps // every + (steps % every != 0) if every else 1


def _rank_mean(first: dict[str, float], second: dict[str, float]) -> dict[str, float]:
    names = sorted(first)
    a = np.argsort(np.argsort([first[n] for n in names]))
    b = np.argsort(np.argsort([second[n] for n in names]))
    return {n: float(x + y) / 2 for n, x, y in zip(names, a, b, strict=True)}


def families(runs: Path) -> dict[str, str]:
    """Each trained architecture's family, from its run file (the search space it belongs to)."""
    return {p.parent.name: RunSpec.from_file(p).config.family for p in sorted(runs.glob(f"*/*/{RUN_FILE}"))}


def seed_noise(runs: Path) -> dict[str, float] | None:
    """How far one ``short`` run moves under another seed (``short`` against ``short-seed1``)."""
    short, second = _load(runs, "short"), _load(runs, "short-seed1")
    both = sorted(n for n in short if n in second)
    if len(both) < 3:
        return None
    moved = sorted(abs(short[n]["miou"] - second[n]["miou"]) for n in both)
    return {
        "architectures": len(both),
        "kendall_tau": tau([short[n]["miou"] for n in both], [second[n]["miou"] for n in both]),
        "median_miou_change": float(np.median(moved)),
        "max_miou_change": moved[-1],
    }


def summary(runs: Path, seeds: int, max_cost: float) -> dict[str, object]:
    """Everything the report prints, as one object (``--report --json``)."""
    ref, per_seed = reference(runs, seeds)
    space = families(runs)
    found = candidates(runs)
    two = [v for v in per_seed.values() if len(v) >= 2]
    judged = sorted((judge(c, ref, space) for c in found), key=lambda j: -j.tau if not math.isnan(j.tau) else math.inf)
    short = next((c for c in found if c.name == "short"), None)
    rows = []
    for j in judged:
        row = j.to_dict()
        if short is not None and j.architectures < len(ref):  # a partial candidate: short on the same ones
            mine = {n: r for n, r in ref.items() if next(c for c in found if c.name == j.name).covers(n)}
            row["short_on_the_same"] = judge(short, mine, space).to_dict()
        rows.append(row)
    return {
        "default": search_default(),
        "default_standardisation": _default_standardisation(runs),
        "reference": {"seeds": seeds, "architectures": len(ref)},
        "reference_seed_tau": tau([v[0] for v in two], [v[1] for v in two]) if len(two) >= 3 else None,
        "short_seed_noise": seed_noise(runs),
        "winner": choose(found, ref, max_cost),
        "max_cost_ratio": max_cost,
        "cross_validation": cross_validate(found, ref, max_cost) if len(ref) >= 8 else None,
        "candidates": rows,
    }


def report(args: argparse.Namespace) -> None:
    result = summary(args.runs, args.reference_seeds, args.max_cost)
    if args.json:
        print(json.dumps(result, indent=2))
        return
    ref = result["reference"]
    print(
        f"reference: mean of {ref['seeds']} long run(s) ({args.factor}x short) over {ref['architectures']} architectures;"
        f" tau between two long seeds: {_fmt(result['reference_seed_tau'])}"
    )
    noise = result["short_seed_noise"]
    if noise:
        print(
            f"short with two seeds on {noise['architectures']} architectures: Kendall tau {noise['kendall_tau']:.2f} between"
            f" the seeds; an architecture's mIoU moves by a median {100 * noise['median_miou_change']:.1f} points between"
            f" them (at most {100 * noise['max_miou_change']:.1f})"
        )
    print()
    print(
        "| candidate | archs | Kendall tau (95 % CI) | Spearman rho | same-space pairs alike (95 % CI) | tau per space (95 % CI);"
        " rho | cost vs short | failures |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for c in result["candidates"]:
        spaces = ", ".join(
            f"{k} {_fmt(v)} ({_fmt(c['tau_ci_by_space'][k][0])} to {_fmt(c['tau_ci_by_space'][k][1])}); "
            f"{_fmt(c['rho_by_space'][k])}"
            for k, v in c["tau_by_space"].items()
        )
        low, high = c["tau_ci"]
        alike_low, alike_high = c["within_space_alike_ci"]
        print(
            f"| {c['name']}{'' if c['per_trial'] else ' (not per trial)'} | {c['architectures']} | {_fmt(c['tau'])} ({_fmt(low)} to {_fmt(high)}) | {_fmt(c['rho'])} "
            f"| {c['within_space_alike']:.0%} of {c['within_space_pairs']} ({alike_low:.0%} to {alike_high:.0%}) | {spaces} | {c['cost_ratio']:.2f}x ({c['cost_basis']}) "
            f"| {len(c['failures'])} |"
        )
    print("(not per trial: the score needs every architecture's at once, so a search cannot use it and it cannot win)")
    for c in result["candidates"]:
        for name, why in c["failures"].items():
            print(f"{c['name']} failed on {name}: {why}")
        if "short_on_the_same" in c:
            same = c["short_on_the_same"]
            print(
                f"{c['name']} covers {c['architectures']} architectures; short on the same ones: Kendall tau"
                f" {_fmt(same['tau'])}, same-space pairs alike {same['within_space_alike']:.0%} of {same['within_space_pairs']}"
            )
    cv = result["cross_validation"]
    print(
        f"\nwinner within {result['max_cost_ratio']}x short's cost: {result['winner']} (the search's default: {result['default']})"
    )
    if result["default_standardisation"]:
        z = result["default_standardisation"]
        print(
            f"the default standardises {z['zero_cost']} by its mean {z['mean']:.3f} and spread {z['spread']:.3f} over"
            f" the {z['architectures']} architectures with a short run"
        )
    if cv:
        print(
            f"cross-validated ({cv['folds']} folds x {cv['repeats']}): chosen {cv['chosen']}, held-out tau {_fmt(cv['held_out_tau'])}"
        )


def _fmt(value: float | None) -> str:
    return "—" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.2f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=f"camvid:{CAMVID}")
    parser.add_argument("--samples", type=int, default=14, help="sampled architectures besides the baselines")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--factor", type=int, default=4, help="the long schedule is this many times short")
    parser.add_argument(
        "--proxy-steps", type=int, help="judge short stretched to this many steps instead (a tuning candidate)"
    )
    parser.add_argument(
        "--proxy-batch", type=int, help="judge short at this batch size instead (with --proxy-steps: same images seen)"
    )
    parser.add_argument("--proxy-ema", type=float, help="judge short scoring a moving average of its weights (decay)")
    parser.add_argument(
        "--proxy-eval-scale", type=float, help="judge short evaluated at this scale of the native frames"
    )
    parser.add_argument(
        "--train-seed", type=int, help="train the proxy with this seed instead (architectures stay those of --seed)"
    )
    parser.add_argument(
        "--long-seed", type=int, help="train only the long reference, with this seed, into long-seed<N>/"
    )
    parser.add_argument(
        "--max-hours",
        type=float,
        default=1.5,
        help="skip a long run expected (from its short run, or a few timed steps) to take longer than this",
    )
    parser.add_argument(
        "--per-space",
        type=int,
        default=3,
        help="a space with fewer architectures whose long run fits --max-hours draws more samples",
    )
    # Finished runs' run.yaml and metrics.json are committed there (checkpoints are not), so a later
    # invocation continues the benchmark instead of starting it again.
    parser.add_argument("--runs", type=Path, default=ROOT / "benchmarks" / "results" / "proxy_fidelity")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--zero-cost", action="store_true", help="score every architecture's zero-cost proxies")
    parser.add_argument("--report", action="store_true", help="only judge the candidates from finished runs")
    parser.add_argument("--json", action="store_true", help="with --report: print it as one JSON object")
    parser.add_argument(
        "--reference-seeds",
        type=int,
        default=1,
        help="long runs (seeds) the reference averages: architectures with fewer are left out",
    )
    parser.add_argument("--max-cost", type=float, default=1.5, help="the winner costs at most this many times short")
    args = parser.parse_args()
    if args.zero_cost:
        score_zero_cost(args)
    elif not args.report:
        run_all(args)
    report(args)


if __name__ == "__main__":
    main()
