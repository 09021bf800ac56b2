"""How long `nasseg dashboard` takes to draw a large study: 1,000 trials rendered to one HTML page.

    python benchmarks/dashboard_render.py run --trials 1000 [--studies 2] [--browser]
    python benchmarks/dashboard_render.py report           # print every stored result again

The study is synthetic but built as a real one is stored: an Optuna study (in memory) over the espnet
space, sampled define-by-run by the random sampler (conditions and infeasible points as a search meets
them), the published baselines enqueued first, and one nasseg ``TrialRecord`` per trial in its user
attributes. Scores are made up (mIoU, latency from the MACs with noise, per-class IoU) and so are the
statuses, in a search's proportions: mostly complete, a few constrained, stopped and failed, and the
rejected points the sampler drew. What is timed is exactly what the command does after opening the
study: ``study_results`` and ``dashboard_html`` (figures, fANOVA importances, HTML with Plotly's
JavaScript inlined), then writing the file; ``--browser`` also times headless Chromium opening the page
until every plot is drawn. Results go to benchmarks/results/dashboard_render/.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import tempfile
import time
from pathlib import Path
from typing import Any

import optuna

from nasseg.errors import InfeasibleArchitecture
from nasseg.latency.measure.device import cpu_name
from nasseg.latency.result import LatencyResult
from nasseg.search.results import StudyResults, study_results
from nasseg.search.study import BASELINE_ATTR, DIRECTIONS, RECORD_ATTR
from nasseg.search.trial import TrialRecord
from nasseg.spaces import load_space

RESULTS = Path(__file__).resolve().parent / "results" / "dashboard_render"
CLASSES = (
    "Sky",
    "Building",
    "Pole",
    "Road",
    "Pavement",
    "Tree",
    "SignSymbol",
    "Fence",
    "Car",
    "Pedestrian",
    "Bicyclist",
)
# Status of a sampled, feasible trial, with its share (a search's proportions, roughly).
STATUSES = (("complete", 0.84), ("constrained", 0.08), ("stopped", 0.04), ("failed", 0.04))


def _latency(ms: float, target: str) -> LatencyResult:
    return LatencyResult(
        kind="estimated",
        median_ms=ms,
        target=target,
        input_hw=(360, 480),
        precision="fp16",
        predictor="nasseg-roofline-v1",
        calibration=f"{target}/trt-fp16/published-v1",
    )


def synthetic_study(
    trials: int = 1000,
    space: str = "espnet",
    target: str = "jetson-nano",
    seed: int = 0,
    name: str | None = None,
    max_latency_ms: float = 40.0,
) -> tuple[optuna.Study, dict[str, Any]]:
    """An in-memory study of ``trials`` trials (the space's baselines first), stored as nasseg stores
    one, and its settings."""
    rng = random.Random(seed)
    name = name or f"synthetic-{space}-{target}"
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    search = load_space(space)
    study = optuna.create_study(
        study_name=name, directions=list(DIRECTIONS), sampler=optuna.samplers.RandomSampler(seed=seed)
    )
    settings = {
        "space": space,
        "target": target,
        "data": "synthetic",
        "schedule": "tiny",
        "steps": 4,
        "max_latency_ms": max_latency_ms,
        "sampler": "random",
        "seed": seed,
    }
    for baseline in list(search.baselines)[:trials]:
        study.enqueue_trial(search.encode(search.baseline(baseline).params), user_attrs={BASELINE_ATTR: baseline})
    for _ in range(trials):
        trial = study.ask()
        baseline = trial.user_attrs.get(BASELINE_ATTR)
        try:
            config = search.sample(trial, 11)
        except InfeasibleArchitecture as exc:
            if baseline is None:
                record = TrialRecord(config=_config_of(search, trial), status="rejected", failure=str(exc))
                trial.set_user_attr(RECORD_ATTR, record.to_dict())
                study.tell(trial, state=optuna.trial.TrialState.PRUNED)
                continue
            config = search.baseline(baseline, 11)
        macs = int(rng.lognormvariate(20.8, 0.6))
        params = int(macs / rng.uniform(2500, 6000))
        ms = macs / 4.2e7 * rng.uniform(0.7, 1.4)
        roll, status = rng.random(), "complete"
        for status, share in STATUSES:  # noqa: B007 (the status the loop stops at is the one drawn)
            if roll < share:
                break
            roll -= share
        if baseline or ms > max_latency_ms:
            status = "constrained" if ms > max_latency_ms else "complete"
        miou = min(0.75, 0.35 + 0.08 * (macs / 1e9) ** 0.5 + rng.gauss(0, 0.04)) if status == "complete" else None
        record = TrialRecord(
            config=config,
            status=status,
            baseline=baseline,
            params=params,
            macs=macs,
            latency=None if status == "failed" and rng.random() < 0.5 else _latency(ms, target),
            miou=miou,
            score=miou,  # scored by the mIoU alone (proxy miou)
            per_class_iou={c: max(0.0, min(1.0, (miou or 0) + rng.gauss(0, 0.15))) for c in CLASSES}
            if miou is not None
            else {},
            history=[(2, (miou or 0.2) * 0.8), (4, miou)] if miou else [],
            steps=4 if miou else None,
            train_seconds=rng.uniform(5, 30) if miou else None,
            wall_seconds=rng.uniform(6, 35),
            failure="training diverged: loss nan at step 3" if status == "failed" else None,
        )
        trial.set_user_attr(RECORD_ATTR, record.to_dict())
        if status == "failed":
            study.tell(trial, state=optuna.trial.TrialState.FAIL)
        elif status == "stopped":
            study.tell(trial, state=optuna.trial.TrialState.PRUNED)
        else:
            study.tell(trial, [miou or 0.0, ms])
    return study, settings


def _config_of(search: Any, trial: optuna.trial.Trial) -> Any:
    """The config of a point ``sample`` refused: suggesting again returns the values already drawn."""
    from nasseg.models import ArchConfig

    return ArchConfig(search.spec.family, search.sample_params(trial), 11)


def _browser_seconds(page: Path) -> float | None:
    """Seconds headless Chromium takes to open the page and draw every plot (None without Chromium)."""
    import shutil

    if not (shutil.which("chromium") and shutil.which("chromedriver")):
        return None
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    for arg in (
        "--headless=new",
        "--no-sandbox",
        "--disable-dev-shm-usage",
        "--enable-unsafe-swiftshader",
        "--use-angle=swiftshader",
        "--window-size=1400,1000",
    ):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(shutil.which("chromedriver")), options=options)
    try:
        started = time.perf_counter()
        driver.get(page.resolve().as_uri())
        while not driver.execute_script(
            "const p = document.querySelectorAll('.js-plotly-plot');"
            "return p.length > 0 && Array.from(p).every(g => g._fullLayout && g._fullData);"
        ):
            time.sleep(0.05)
        return time.perf_counter() - started
    finally:
        driver.quit()


def run(trials: int, studies: int, browser: bool, repeats: int) -> dict[str, Any]:
    from nasseg.viz.dashboard import dashboard_html

    made = [
        synthetic_study(trials, target=target, seed=i, name=f"synthetic-{target}")
        for i, target in enumerate(("jetson-nano", "jetson-tx2", "jetson-xavier-nx")[:studies])
    ]
    timings: list[dict[str, float]] = []
    size = 0
    for _ in range(repeats):
        started, cpu = time.perf_counter(), time.process_time()
        results: list[StudyResults] = [study_results(study, settings) for study, settings in made]
        rows = time.perf_counter()
        text = dashboard_html(results, [study for study, _ in made])
        rendered, cpu = time.perf_counter(), time.process_time() - cpu
        with tempfile.TemporaryDirectory() as tmp:
            page = Path(tmp) / "dashboard.html"
            page.write_text(text, encoding="utf-8")
            written = time.perf_counter()
            size = page.stat().st_size
            shown = _browser_seconds(page) if browser else None
        timings.append(
            {
                "study_results_s": rows - started,
                "dashboard_html_s": rendered - rows,
                "write_s": written - rendered,
                "total_s": written - started,
                "cpu_s": cpu,
                **({"chromium_draw_s": shown} if shown is not None else {}),
            }
        )
    statuses: dict[str, int] = {}
    for r in results:
        for t in r.trials:
            statuses[t.status or "none"] = statuses.get(t.status or "none", 0) + 1
    data = {
        "command": f"python benchmarks/dashboard_render.py run --trials {trials} --studies {studies}"
        + (" --browser" if browser else "")
        + (f" --repeats {repeats}" if repeats != 1 else ""),
        "date": time.strftime("%Y-%m-%d %H:%M"),
        "machine": f"{cpu_name()}, {os.cpu_count()} cores, load {os.getloadavg()[0]:.2f} (1-minute average, at the end)",
        "trials_per_study": trials,
        "studies": studies,
        "statuses": statuses,
        "html_bytes": size,
        "repeats": timings,
        "best_total_s": min(t["total_s"] for t in timings),
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"render-{trials}x{studies}{'-browser' if browser else ''}.json"
    path.write_text(json.dumps(data, indent=2))
    print(f"stored {path}")
    return data


def _print(data: dict[str, Any]) -> None:
    print(f"{data['command']}  ({data['date']}, {data['machine']})")
    print(
        f"  {data['studies']} x {data['trials_per_study']} trials {data['statuses']}; "
        f"page {data['html_bytes'] / 1e6:.1f} MB"
    )
    for i, t in enumerate(data["repeats"], start=1):
        browser = f", Chromium draws it in {t['chromium_draw_s']:.1f} s" if "chromium_draw_s" in t else ""
        print(
            f"  run {i}: study_results {t['study_results_s']:.2f} s, dashboard_html {t['dashboard_html_s']:.2f} s,"
            f" write {t['write_s']:.2f} s: total {t['total_s']:.2f} s"
            + (f" ({t['cpu_s']:.2f} s of CPU)" if "cpu_s" in t else "")
            + browser
        )


def report() -> None:
    for path in sorted(RESULTS.glob("*.json")):
        _print(json.loads(path.read_text()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("run")
    p.add_argument("--trials", type=int, default=1000)
    p.add_argument("--studies", type=int, default=1, choices=(1, 2, 3))
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--browser", action="store_true", help="also time headless Chromium drawing the page")
    sub.add_parser("report")
    args = parser.parse_args()
    if args.command == "run":
        _print(run(args.trials, args.studies, args.browser, args.repeats))
    else:
        report()


if __name__ == "__main__":
    main()
