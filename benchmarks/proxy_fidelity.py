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

A tuning candidate for ``short`` is judged against the same long runs: ``--proxy-steps 600`` trains
``short`` stretched to 600 steps into ``short-600/`` (and ``--report --proxy-steps 600`` compares it);
``--proxy-steps 600 --proxy-batch 4`` keeps the images seen, and so about the cost, of ``short`` while
making twice the updates (``short-600-b4/``). ``--train-seed 1`` trains the proxy again with another
seed into ``short-seed1/``; its report adds how well the two seeds agree, and how the mean of the two
ranks against the long runs.
"""

from __future__ import annotations

import argparse
import fcntl
import functools
import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import torch
from scipy.stats import kendalltau, spearmanr

from nasseg.train.runs import METRICS_FILE, RUN_FILE, RunSpec, make_run, run_training
from nasseg.data import dataset_info
from nasseg.models import ArchConfig, build
from nasseg.profile import count_params
from nasseg.spaces import all_spaces, find_baseline
from nasseg.train import Schedule, get_schedule

ROOT = Path(__file__).resolve().parents[1]
CAMVID = ROOT.parent / "shared" / "data" / "CamVid"
LOCK_FILE = ".lock"
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


def schedules(factor: int, proxy_steps: int | None = None, proxy_batch: int | None = None) -> dict[str, Schedule]:
    """The proxy under test (``short``, or a tuning candidate: ``short`` stretched to ``proxy_steps``
    and/or at batch ``proxy_batch``) and the reference: ``short`` ``factor`` times longer, the same
    for every candidate. The keys are the result folders."""
    short = get_schedule("short")
    steps = proxy_steps or short.steps
    batch = proxy_batch or short.batch_size
    if (steps, batch) == (short.steps, short.batch_size):
        proxy = short
    else:
        name = f"short-{steps}" + (f"-b{batch}" if batch != short.batch_size else "")
        proxy = _scaled(short, name, steps / short.steps).with_overrides(batch_size=batch)
    return {proxy.name: proxy, "long": _scaled(short, f"short-x{factor}", factor)}


def sampled(count: int, seed: int, train_hw: tuple[int, int], num_classes: int) -> list[tuple[str, ArchConfig]]:
    """``count`` random architectures that their space accepts at its search input and at ``train_hw``
    (its sampler's rule: every space rejects degenerate points, as the stored runs were drawn), taken
    from the spaces in turn; space i draws with seed ``seed + i``."""
    spaces = all_spaces()
    wanted = [count // len(spaces) + (i < count % len(spaces)) for i in range(len(spaces))]
    drawn = [
        [
            (f"{space.name}-sample-{c.arch_hash()[:6]}", c)
            for c in space.sample_feasible(
                n,
                seed + i,
                inputs=[tuple(space.spec.search_input), train_hw],
                num_classes=num_classes,
                attempts_per_sample=50,
            ).configs
        ]
        for i, (space, n) in enumerate(zip(spaces, wanted, strict=True))
    ]
    return [named[k] for k in range(max(wanted, default=0)) for named in drawn if k < len(named)]


def architectures(data: str, samples: int, seed: int, schedule: Schedule) -> list[tuple[str, ArchConfig]]:
    """Baselines and sampled points interleaved, so that a partial run already covers both kinds."""
    info = dataset_info(data)
    found = sampled(samples, seed, schedule.input_hw(info.frame_hw()), info.num_classes)
    baselines = [(name, _baseline(name)) for name in BASELINES]
    mixed = [arch for pair in zip(baselines, found) for arch in pair]
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


def too_long(runs: Path, name: str, factor: int, max_hours: float) -> bool:
    """Whether ``name``'s long run would take over ``max_hours``, judged from its finished ``short`` run
    (a long run is ``factor`` times its steps): such runs outlast a session of this machine."""
    short = runs / "short" / name / METRICS_FILE
    return short.is_file() and json.loads(short.read_text())["train_seconds"] * factor > max_hours * 3600


def run_all(args: argparse.Namespace) -> None:
    torch.set_num_threads(args.threads)
    plans = schedules(args.factor, args.proxy_steps, args.proxy_batch)
    archs = architectures(args.data, args.samples, args.seed, plans["long"])
    jobs = training_jobs(plans, args.seed, args.train_seed, args.long_seed)
    candidate = args.long_seed is None and jobs[0][0] != "short"
    for key, schedule, seed in jobs:
        for name, arch in archs:
            out = args.runs / key / name
            if candidate and not (args.runs / "long" / name / METRICS_FILE).is_file():
                continue
            if key.startswith("long") and too_long(args.runs, name, args.factor, args.max_hours):
                continue
            with _claim(out) as claimed:
                if not claimed or (out / METRICS_FILE).is_file():
                    continue
                run = make_run(name, arch, args.data, schedule, seed)
                metrics = run_training(run, out, resume=(out / RUN_FILE).is_file(), progress=False)
            print(f"{key:5s} {name:32s} mIoU {metrics['miou']:.4f}  {metrics['train_seconds']:7.1f} s", flush=True)


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


@functools.cache  # a report compares one folder against several others: read each once
def _load(runs: Path, key: str) -> dict[str, dict]:
    return {p.parent.name: json.loads(p.read_text()) for p in sorted((runs / key).glob(f"*/{METRICS_FILE}"))}


def _pair_agreement(points: list[tuple[str, float, float]]) -> tuple[float, int]:
    """Share of same-family pairs that both schedules order the same way, and the number of pairs."""
    same = [(a, b) for i, a in enumerate(points) for b in points[i + 1 :] if a[0] == b[0]]
    alike = sum((a[1] - b[1]) * (a[2] - b[2]) > 0 for a, b in same)
    return (alike / len(same) if same else float("nan")), len(same)


def _agreement(scores: dict[str, float], long: dict[str, dict], family: dict[str, str]) -> tuple[float, float, int]:
    """Kendall tau between ``scores`` and the long runs' mIoU, the share of same-family pairs they
    order alike, and the number of those pairs (over the architectures both have)."""
    names = [n for n in scores if n in long]
    tau = kendalltau([scores[n] for n in names], [long[n]["miou"] for n in names]).statistic
    agree, pairs = _pair_agreement([(family[n], scores[n], long[n]["miou"]) for n in names])
    return tau, agree, pairs


def report(args: argparse.Namespace) -> None:
    proxy = next(iter(schedules(args.factor, args.proxy_steps, args.proxy_batch)))
    folder = proxy_folder(proxy, args.train_seed)
    print(f"proxy: {folder}, reference: {args.factor}x short\n")
    short, long = _load(args.runs, folder), _load(args.runs, "long")
    both = [name for name in short if name in long]
    print("| architecture | kind | params | short mIoU | short s | long mIoU | long s |")
    print("|---|---|---|---|---|---|---|")
    family = {}
    for name in sorted(short, key=lambda n: -(short[n]["miou"] or 0)):
        s, lg = short[name], long.get(name)
        kind = "baseline" if name in BASELINES else "sampled"
        arch = RunSpec.from_file(args.runs / folder / name / "run.yaml").config
        family[name] = arch.family
        params = count_params(build(arch))
        long_cells = f"{lg['miou']:.4f} | {lg['train_seconds']:.0f}" if lg else "— | —"
        print(f"| {name} | {kind} | {params / 1e6:.2f} M | {s['miou']:.4f} | {s['train_seconds']:.0f} | {long_cells} |")
    if len(both) >= 3:
        a = [short[n]["miou"] for n in both]
        b = [long[n]["miou"] for n in both]
        tau, rho = kendalltau(a, b), spearmanr(a, b)
        print(
            f"\n{len(both)} architectures with both runs: Kendall tau {tau.statistic:.3f} (p {tau.pvalue:.3f}), "
            f"Spearman rho {rho.statistic:.3f} (p {rho.pvalue:.3f})"
        )
        # A search ranks architectures of one space against each other: count only pairs of one family.
        agree, pairs = _pair_agreement([(family[n], short[n]["miou"], long[n]["miou"]) for n in both])
        print(f"within one family: {pairs} pairs, the two schedules order {agree:.0%} of them alike")
        for name in sorted({family[n] for n in both}):
            mine = [n for n in both if family[n] == name]
            if len(mine) >= 3:
                family_tau = kendalltau([short[n]["miou"] for n in mine], [long[n]["miou"] for n in mine]).statistic
                print(f"  {name}: {len(mine)} architectures, Kendall tau {family_tau:.2f}")
        if folder != "short":  # a candidate: what short itself gives on the same architectures
            base = _load(args.runs, "short")
            same = {n: base[n]["miou"] for n in both if n in base}
            tau, agree, pairs = _agreement(same, long, family)
            print(
                f"short on the same {len(same)} architectures: Kendall tau {tau:.3f}, same-family pairs alike {agree:.0%} of {pairs}"
            )
        if args.train_seed is not None:  # a second seed of a proxy: how noisy one run is, and what two give
            first = _load(args.runs, proxy)
            same = [n for n in both if n in first]
            seed_tau = kendalltau([first[n]["miou"] for n in same], [short[n]["miou"] for n in same]).statistic
            print(f"{proxy} with two seeds on {len(same)} architectures: Kendall tau {seed_tau:.3f} between the seeds")
            mean = {n: (first[n]["miou"] + short[n]["miou"]) / 2 for n in same}
            tau, agree, pairs = _agreement(mean, long, family)
            print(
                f"the mean of the two seeds: Kendall tau {tau:.3f} against long, same-family pairs alike {agree:.0%} of {pairs}"
            )
    else:
        print(f"\nonly {len(both)} architectures have both runs: no rank correlation yet")
    fractions = sorted(m["forward_backward_fraction"] for m in [*short.values(), *long.values()])
    if fractions:
        print(
            f"forward/backward share of step time: min {fractions[0]:.1%}, median {fractions[len(fractions) // 2]:.1%}"
        )
    total = sum(m["train_seconds"] for m in [*short.values(), *long.values()])
    print(f"total training time {total / 60:.0f} min ({len(short)} short, {len(long)} long runs)")


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
    parser.add_argument(
        "--train-seed", type=int, help="train the proxy with this seed instead (architectures stay those of --seed)"
    )
    parser.add_argument(
        "--long-seed", type=int, help="train only the long reference, with this seed, into long-seed<N>/"
    )
    parser.add_argument(
        "--max-hours",
        type=float,
        default=3.0,
        help="skip a long run expected (from its short run) to take longer than this",
    )
    # Finished runs' run.yaml and metrics.json are committed there (checkpoints are not), so a later
    # session continues the benchmark instead of starting it again.
    parser.add_argument("--runs", type=Path, default=ROOT / "benchmarks" / "results" / "proxy_fidelity")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--report", action="store_true", help="only print the table from finished runs")
    args = parser.parse_args()
    if not args.report:
        run_all(args)
    report(args)


if __name__ == "__main__":
    main()
