"""The search: real tiny studies (synthetic data, a few steps of ``tiny``) through the library and the CLI."""

from __future__ import annotations

import dataclasses
import datetime
import io
import json
import math
import multiprocessing
import multiprocessing.synchronize
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import optuna
import pytest
import yaml
from latency_fixtures import serving_agent
from rich.console import Console
from typer.testing import CliRunner

from nasseg.cli import app
from nasseg.cli.common import EXIT_BAD_INPUT
from nasseg.cli.search import _baseline_table
from nasseg.data import dataset_info
from nasseg.errors import ConfigError, TrialFailed
from nasseg.latency.predict import calibration
from nasseg.search.proxy import DEFAULT_PROXY, get_proxy
from nasseg.search.results import StudyResults, TrialRow, hypervolume, pareto_front, study_results
from nasseg.search.run import run_search
from nasseg.search.spec import StudySpec, parse_spec
from nasseg.search.study import RECORD_ATTR, SPEC_ATTR, Study, hopeless, load_study, open_storage, record_of
from nasseg.search.trial import TrialRecord, evaluate_architecture
from nasseg.spaces import all_spaces, load_space
from nasseg.train.runs import build_seeded, make_run, resolve_schedule, run_training
from nasseg.train.zero_cost import synflow

runner = CliRunner()
DATA = "synthetic:train=8,val=2,test=2"  # the study machinery is under test, not the learning


def tiny(**fields: object) -> StudySpec:
    settings = {
        "space": "espnet",
        "target": "jetson-nano",
        "data": DATA,
        "schedule": "tiny",
        "steps": 2,
        "budget": 2,
        "baselines": False,
        **fields,
    }
    return StudySpec.model_validate(settings)


def done_records(study: optuna.Study) -> list:
    """Records of the architectures a study evaluated (not rejected, not a repeat of an earlier trial)."""
    return [
        r
        for t in study.get_trials()
        if (r := record_of(t)) is not None and r.status != "rejected" and r.duplicate_of is None
    ]


def test_a_search_can_score_with_short_evaluated_on_whole_frames(tmp_path) -> None:
    """``--schedule short-eval1`` (docs/search.md): trained as ``short``, every evaluation at the native frames."""
    run_search(tiny(schedule="short-eval1", budget=1), base=tmp_path)
    study, _settings = load_study("espnet-jetson-nano", base=tmp_path)
    (record,) = done_records(study)
    assert record.status == "complete" and record.miou is not None
    native = dataset_info(DATA).frame_hw()
    run = make_run("x", record.config, DATA, resolve_schedule("short-eval1", "espnet", steps=2), 0)
    assert run.eval_hw == native and run.train_hw == resolve_schedule("short", "espnet").input_hw(native)
    metrics = run_training(run, tmp_path / "again", progress=False)
    assert metrics["miou"] == record.miou  # the trial was scored at the whole frames


@pytest.mark.parametrize("space", [s.name for s in all_spaces()])
def test_every_baseline_is_enqueued_and_completed_at_the_search_input(space, tmp_path) -> None:
    state = run_search(tiny(space=space, budget=0, baselines=True), base=tmp_path)
    study, _settings = load_study(f"{space}-jetson-nano", base=tmp_path)
    records = {r.baseline: r for r in done_records(study)}
    assert set(records) == set(load_space(space).baselines) and state.baselines == len(records)
    for name, record in records.items():
        assert record.status == "complete", (name, record.failure)
        assert record.latency.kind == "estimated" and record.latency.input_hw == (360, 480)
        assert record.params > 0 and record.macs > 0 and 0 <= record.miou <= 1 and record.steps == 2
        assert record.config.num_classes == 11  # the data's classes, before anything was built or hashed
    if space == "fassd":  # published networks whose rates reach past the 11x15 map: accepted, and noted
        assert records["fassd-net"].degenerate and records["fassd-net-l2"].degenerate


def test_a_trial_scores_exactly_what_nasseg_train_scores(tmp_path) -> None:
    spec = tiny(steps=4)
    study = Study(spec, base=tmp_path)
    config = study.space.baseline("espnet-c", 11)
    record = evaluate_architecture(config, study.plan, study.latency, space=study.space, baseline="espnet-c")
    metrics = run_training(make_run("espnet-c", config, DATA, study.plan.schedule, 0), tmp_path / "run", progress=False)
    assert record.miou == metrics["miou"] and record.history == [tuple(h) for h in metrics["history"]]


def test_the_same_seed_gives_the_same_study(tmp_path) -> None:
    first, second = (run_search(tiny(budget=3), base=tmp_path / name) for name in ("a", "b"))
    studies = [load_study("espnet-jetson-nano", base=tmp_path / name)[0] for name in ("a", "b")]
    a, b = ([(r.config.params, r.miou, r.latency_ms) for r in done_records(s)] for s in studies)
    assert first.sampled == second.sampled == 3 and a == b
    other = run_search(tiny(budget=3, seed=1), base=tmp_path / "c")
    c = [(r.config.params, r.miou) for r in done_records(load_study("espnet-jetson-nano", base=tmp_path / "c")[0])]
    assert other.sampled == 3 and c != [(p, m) for p, m, _ in a]


def test_a_latency_constraint_is_respected_and_not_trained_past(tmp_path) -> None:
    # Inside the range of the espnet baselines' Nano estimates (published-v3: 21.8 to 63.1 ms), so that some
    # trials keep to it and some do not, whatever the sampler draws.
    limit_ms = 25.0
    run_search(tiny(budget=4, baselines=True, max_latency_ms=limit_ms), base=tmp_path)
    study, settings = load_study("espnet-jetson-nano", base=tmp_path)
    records = done_records(study)
    over = [r for r in records if r.latency_ms > limit_ms]
    assert over and all(r.status == "constrained" and r.miou is None and r.steps is None for r in over)
    assert all(r.status == "complete" for r in records if r.latency_ms <= limit_ms)
    results = study_results(study, settings)
    rows = {t.number: t for t in results.trials}
    assert results.pareto and all(rows[n].latency_ms <= limit_ms for n in results.pareto)
    assert results.reference_ms == limit_ms
    constraints = [t.constraints for t in study.get_trials() if t.state.name == "COMPLETE"]
    assert any(c["latency_ms"] > 0 for c in constraints)  # the samplers are told, through Optuna's constraints


def test_a_failing_architecture_is_recorded_and_the_study_goes_on(tmp_path) -> None:
    """The second trial trains with a learning rate that diverges: the real trainer fails it."""
    calls = []

    def diverge_second(config, plan, *args, **kwargs):
        calls.append(config)
        if len(calls) == 2:
            plan = dataclasses.replace(plan, schedule=plan.schedule.with_overrides(lr=1e12, steps=6))
        return evaluate_architecture(config, plan, *args, **kwargs)

    study = Study(tiny(budget=3), base=tmp_path)
    state = study.run_worker(evaluate=diverge_second)
    trials = study.study.get_trials()
    assert state.sampled == 3 and state.failed == 1 and len(calls) == 3
    failed = [t for t in trials if t.state.name == "FAIL"]
    assert len(failed) == 1 and "diverged" in record_of(failed[0]).failure
    assert sum(t.state.name == "COMPLETE" for t in trials) == 2


def test_two_worker_processes_lose_and_repeat_nothing(tmp_path) -> None:
    state = run_search(tiny(budget=4), base=tmp_path, workers=2)
    study, _ = load_study("espnet-jetson-nano", base=tmp_path)
    trials = study.get_trials()
    assert state.sampled == 4 and [t.number for t in trials] == list(range(len(trials)))
    assert all(record_of(t) is not None for t in trials) and len(done_records(study)) == 4
    assert len({r.arch_hash for r in done_records(study)}) == 4  # the workers draw streams of their own


def test_the_ray_backend_runs_trials_as_ray_tasks(tmp_path) -> None:
    ray = pytest.importorskip("ray")
    try:
        state = run_search(tiny(budget=3), base=tmp_path, workers=2, backend="ray")
    finally:
        ray.shutdown()
    study, _ = load_study("espnet-jetson-nano", base=tmp_path)
    assert state.sampled == 3 and len(done_records(study)) == 3
    assert len({r.arch_hash for r in done_records(study)}) == 3


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGINT, signal.SIGTERM], ids=["SIGKILL", "Ctrl-C", "SIGTERM"])
def test_a_study_killed_mid_trial_resumes_without_losing_or_repeating(sig, tmp_path) -> None:
    args = [
        sys.executable,
        "-c",
        "from nasseg.cli import app; app()",
        "search",
        "--space",
        "espnet",
        "--target",
        "jetson-nano",
        "--data",
        DATA,
        "--schedule",
        "tiny",
        "--steps",
        "40",
        "--budget",
        "4",
        "--no-baselines",
        "--study",
        "killed",
        "--json",
    ]
    env = {**os.environ, "NASSEG_HEARTBEAT_S": "1"}
    db = tmp_path / "studies" / "killed" / "study.db"
    process = subprocess.Popen(args, cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    before = None
    while time.time() < deadline and process.poll() is None:
        time.sleep(0.5)
        if not db.is_file():
            continue
        try:
            study = optuna.load_study(study_name="killed", storage=f"sqlite:///{db}")
        except KeyError:  # the file exists, the study in it not yet
            continue
        trials = study.get_trials()
        # Running for a second: its architecture is sampled whole (a trial interrupted while sampling is
        # enqueued again with the parameters it had, which this test could not match).
        running_now = [
            t
            for t in trials
            if t.state.name == "RUNNING" and (datetime.datetime.now() - t.datetime_start).total_seconds() > 1
        ]
        if running_now and any(t.state.name == "COMPLETE" for t in trials):
            before = {t.number: (t.values, t.params) for t in trials if t.state.name == "COMPLETE"}
            running = running_now[0]
            os.kill(process.pid, sig)
            break
    process.wait()
    assert before, "the study never reached a running trial after a finished one"
    assert process.returncode == (-signal.SIGKILL if sig == signal.SIGKILL else 130)
    resumed = subprocess.run(args, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    study = optuna.load_study(study_name="killed", storage=f"sqlite:///{db}")
    trials = study.get_trials()
    assert all(trials[n].values == values and trials[n].params == params for n, (values, params) in before.items())
    killed = trials[running.number]
    assert killed.state.name == "FAIL" and record_of(killed) is None
    rerun = [t for t in trials if t.params == running.params and (r := record_of(t)) and r.duplicate_of is None]
    assert len(rerun) == 1 and rerun[0].number > running.number  # run again, once
    assert len(done_records(study)) == 4 and json.loads(resumed.stdout)["study"] == "killed"


def _create_and_enqueue(url: str, start: multiprocessing.synchronize.Barrier) -> None:
    start.wait()
    study = optuna.create_study(storage=open_storage(url), study_name="raced", load_if_exists=True)
    study.enqueue_trial({"x": 1.0})


@pytest.mark.parametrize("round_", range(4))  # a race: each round is one more chance to lose it
def test_a_study_file_appears_whole_when_workers_create_it_at_once(round_, tmp_path) -> None:
    # Readers poll for the file (``nasseg results`` beside a running search): a half-made schema
    # there would raise UNIQUE constraint failed: alembic_version in the reader or the second creator.
    url = f"sqlite:///{tmp_path / 'raced' / 'study.db'}"
    context = multiprocessing.get_context("fork")
    start = context.Barrier(4)
    workers = [context.Process(target=_create_and_enqueue, args=(url, start)) for _ in range(4)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    assert [w.exitcode for w in workers] == [0] * 4 and os.listdir(tmp_path / "raced") == ["study.db"]
    assert len(optuna.load_study(study_name="raced", storage=url).get_trials()) == 4


def test_a_study_file_runs_and_flags_override_it(tmp_path) -> None:
    path = tmp_path / "mine.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "space": "espnet",
                "target": "jetson-nano",
                "data": DATA,
                "schedule": "tiny",
                "steps": 2,
                "budget": 5,
                "baselines": False,
            }
        )
    )
    done = runner.invoke(app, ["search", str(path), "--budget", "1", "--proxy", "miou", "--json"])
    assert done.exit_code == 0, done.output
    report = json.loads(done.stdout)
    assert report["study"] == "mine" and (tmp_path / "mine" / "study.db").is_file()
    assert len(report["trials"]) == 1 and set(report) >= {"study", "space", "target", "trials", "pareto", "hypervolume"}
    trial = report["trials"][0]
    assert report["proxy"] == "miou" and trial["score"] == trial["miou"]
    assert set(trial) >= {
        "number",
        "state",
        "baseline",
        "miou",
        "score",
        "latency_ms",
        "latency_kind",
        "params",
        "macs",
        "config",
        "failure",
    }
    assert trial["latency_kind"] == "estimated" and report["pareto"] == [0]
    again = runner.invoke(app, ["search", str(path), "--budget", "1", "--proxy", "miou"])
    assert again.exit_code == 0 and "already has its budget" in again.output
    results = runner.invoke(app, ["results", str(path), "--json", "--csv", str(tmp_path / "t.csv")])
    assert results.exit_code == 0 and json.loads(results.stdout)["pareto"] == [0]
    assert (tmp_path / "t.csv").read_text().count("\n") == 2


def test_export_writes_configs_that_train_and_onnx(tmp_path) -> None:
    path = tmp_path / "ex.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "space": "espnet",
                "target": "jetson-nano",
                "data": DATA,
                "schedule": "tiny",
                "steps": 2,
                "budget": 1,
                "baselines": False,
            }
        )
    )
    assert runner.invoke(app, ["search", str(path), "--json"]).exit_code == 0
    done = runner.invoke(app, ["export", str(path), "--pareto", "--out", str(tmp_path / "out")])
    assert done.exit_code == 0, done.output
    assert (tmp_path / "out" / "trial-0.onnx").stat().st_size > 10_000
    trained = runner.invoke(
        app,
        [
            "train",
            str(tmp_path / "out" / "trial-0.yaml"),
            "--data",
            DATA,
            "--schedule",
            "tiny",
            "--steps",
            "1",
            "--out",
            str(tmp_path / "run"),
            "--json",
        ],
    )
    assert trained.exit_code == 0, trained.output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--space", "nope", "--target", "jetson-nano", "--budget", "1"], "spaces: ejpnet, espnet"),
        (["--space", "espnet", "--target", "jetson-nope", "--budget", "1"], "jetson-nano"),
        (["--space", "espnet", "--target", "jetson-nano"], "--budget"),
        (["--space", "espnet", "--target", "jetson-nano", "--budget", "1", "--sampler", "bayes"], "sampler"),
        (
            [
                "--space",
                "espnet",
                "--target",
                "jetson-nano",
                "--budget",
                "1",
                "--storage",
                "postgresql+psycopg://nobody@127.0.0.1:1/none",
            ],
            "cannot be opened",
        ),
    ],
)
def test_bad_search_input_is_one_line(args, message, tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    done = runner.invoke(app, ["search", *args, "--data", DATA, "--schedule", "tiny", "--steps", "1", "--no-baselines"])
    assert done.exit_code == EXIT_BAD_INPUT and message in done.output, done.output
    assert done.output.strip().count("\n") == 0


def test_a_study_name_reused_with_other_settings_is_refused(tmp_path) -> None:
    run_search(tiny(budget=1), base=tmp_path)
    with pytest.raises(Exception, match=r"created with other settings.*target"):
        run_search(tiny(budget=1, target="jetson-tx2", name="espnet-jetson-nano"), base=tmp_path)


def test_an_estimated_study_reopened_under_another_calibration_is_refused(tmp_path, monkeypatch) -> None:
    # The user's own fit for the board comes before the packaged one: the study's estimates so far
    # would not compare with those it would now make.
    run_search(tiny(budget=1), base=tmp_path)
    packaged = json.loads((Path(calibration.CALIBRATIONS_DIR) / "jetson-nano.json").read_text())
    mine = tmp_path / "calibrations"
    mine.mkdir()
    (mine / "jetson-nano.json").write_text(json.dumps({**packaged, "id": "jetson-nano/trt-fp16/my-fit"}))
    monkeypatch.setattr(calibration, "USER_CALIBRATIONS_DIR", mine)
    with pytest.raises(
        Exception, match=rf"other settings \(calibration: stored '{packaged['id']}', asked '[^']+my-fit'"
    ):
        run_search(tiny(budget=2), base=tmp_path)


def test_the_committed_study_is_not_continued_under_todays_calibration(tmp_path, monkeypatch) -> None:
    # As the README says: espnet-nano was estimated with published-v1; it is read, never mixed with v3.
    studies = Path(__file__).resolve().parents[1] / "studies"
    shutil.copytree(studies, tmp_path / "studies", ignore=shutil.ignore_patterns(".lock"))
    monkeypatch.chdir(tmp_path)
    done = runner.invoke(app, ["search", "studies/espnet-nano.yaml"])
    assert done.exit_code == EXIT_BAD_INPUT, done.output
    assert "calibration: stored 'jetson-nano/trt-fp16/published-v1', asked 'jetson-nano/trt-fp16/" in done.output


def test_a_study_file_with_an_unknown_field_names_it(tmp_path) -> None:
    path = tmp_path / "typo.yaml"
    path.write_text("space: espnet\ntarget: jetson-nano\nbudget: 1\nbudgte: 3\n")
    done = runner.invoke(app, ["search", str(path)])
    assert done.exit_code == EXIT_BAD_INPUT and "budgte: unknown field" in done.output


def test_results_of_a_study_that_does_not_exist(tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    done = runner.invoke(app, ["results", "nothing-here"])
    assert done.exit_code == EXIT_BAD_INPUT and "no study 'nothing-here'" in done.output


def test_early_stopping_stops_a_trial_dominated_at_the_same_step(tmp_path) -> None:
    study = Study(tiny(budget=0, early_stopping=True, proxy="miou"), base=tmp_path)  # scores are mIoUs here
    from nasseg.search.study import EarlyStop

    good = study.space.baseline("espnet-c", 11)
    study.study.enqueue_trial(study.space.encode(good.params))
    study.spec.__dict__["budget"] = 1  # one sampled trial: the enqueued one
    study.run_worker()
    record = done_records(study.study)[0]
    stop = EarlyStop(study.storage_url, study.spec.study_name)
    step, miou = record.history[0]
    assert stop(step, miou - 0.1, record.latency_ms + 1) is False  # slower and clearly worse: hopeless
    assert stop(step, miou - 0.01, record.latency_ms + 1) is True  # within the noise margin
    assert stop(step, miou - 0.1, record.latency_ms - 1) is True  # faster: not dominated


def test_the_default_proxy_adds_synflow_at_initialisation_to_the_miou(tmp_path) -> None:
    run_search(tiny(budget=2, baselines=True), base=tmp_path)
    study, settings = load_study("espnet-jetson-nano", base=tmp_path)
    proxy = get_proxy(DEFAULT_PROXY)
    assert settings["proxy"] == proxy.id and proxy.zero_cost == "synflow"
    trials = [t for t in study.get_trials() if t.state.name == "COMPLETE"]
    assert len(trials) == len(load_space("espnet").baselines) + 2
    for trial in trials:
        record = record_of(trial)
        run = make_run("x", record.config, DATA, resolve_schedule("tiny", "espnet", 2), 0)
        initial = synflow(build_seeded(run.config, run.seed), run.train_hw)  # not the trained weights'
        assert record.zero_cost == {"synflow": initial}
        expected = record.miou + proxy.weight * (initial - proxy.mean) / proxy.spread
        assert trial.values[0] == record.score == pytest.approx(expected, abs=1e-12)
    assert len({round(record_of(t).score - record_of(t).miou, 9) for t in trials}) > 1  # it breaks ties
    url = f"sqlite:///{tmp_path / 'espnet-jetson-nano' / 'study.db'}"
    shown = runner.invoke(app, ["results", "espnet-jetson-nano", "--storage", url], terminal_width=200)
    assert shown.exit_code == 0 and f"accuracy objective: {proxy.id}" in shown.output
    assert any("score" in line and "mIoU" in line for line in shown.output.splitlines())  # a column each
    assert "(score x ms" in shown.output


def test_the_miou_proxy_scores_by_the_miou_alone_and_proxies_never_mix(tmp_path) -> None:
    run_search(tiny(budget=1, proxy="miou"), base=tmp_path)
    study, settings = load_study("espnet-jetson-nano", base=tmp_path)
    record = done_records(study)[0]
    assert settings["proxy"] == "miou" and record.zero_cost == {} and record.score == record.miou
    assert study.get_trials()[0].values[0] == record.miou
    with pytest.raises(ConfigError, match=r"other settings \(proxy: stored 'miou', asked 'miou\+synflow: mIoU \+"):
        run_search(tiny(budget=2), base=tmp_path)
    with pytest.raises(ConfigError, match=r"choose another --study name, or continue it with --proxy miou$"):
        run_search(tiny(budget=2), base=tmp_path)
    with pytest.raises(ConfigError, match=r"unknown accuracy proxy 'synflow'; choose one of: miou, miou\+synflow"):
        parse_spec({"space": "espnet", "target": "jetson-nano", "budget": 1, "proxy": "synflow"}, "nasseg search")


def test_a_study_made_before_proxies_continues_as_a_miou_study(tmp_path) -> None:
    study = Study(tiny(budget=1, proxy="miou"), base=tmp_path)
    study.run_worker()
    stored = study.study.user_attrs[SPEC_ATTR]
    study.study.set_user_attr(SPEC_ATTR, {k: v for k, v in stored.items() if k != "proxy"})
    trial = study.study.get_trials()[0]
    old = {k: v for k, v in trial.user_attrs[RECORD_ATTR].items() if k not in ("score", "zero_cost")}
    assert TrialRecord.from_dict(old).score == old["miou"] and TrialRecord.from_dict(old).zero_cost == {}
    trial.set_user_attr(RECORD_ATTR, old)  # this copy of the trial holds a record written before proxies
    assert TrialRow.of(trial).score == TrialRow.of(trial).miou == old["miou"] is not None
    run_search(tiny(budget=2, proxy="miou"), base=tmp_path)  # accepted: it was scored by the mIoU
    with pytest.raises(ConfigError, match=r"proxy: stored 'miou'"):
        run_search(tiny(budget=3), base=tmp_path)
    results = study_results(*load_study("espnet-jetson-nano", base=tmp_path))
    assert results.proxy == "miou" and not results.tie_broken
    assert [r.score for r in results.trials] == [r.miou for r in results.trials] and results.trials[0].score is not None


def test_the_tie_breaker_is_clipped_and_a_non_finite_synflow_fails_the_trial() -> None:
    proxy = get_proxy(DEFAULT_PROXY)
    assert proxy.tie_breaker({"synflow": proxy.mean + proxy.spread}) == pytest.approx(proxy.weight)
    assert proxy.tie_breaker({"synflow": proxy.mean - 10 * proxy.spread}) == pytest.approx(-3 * proxy.weight)
    with pytest.raises(TrialFailed, match="synflow is -inf at initialisation"):
        proxy.tie_breaker({"synflow": -math.inf})


def test_early_stopping_compares_scores_with_their_tie_breakers() -> None:
    finished = [
        {"status": "complete", "latency": {"median_ms": 5.0}, "history": [[10, 0.50]], "miou": 0.5, "score": 0.6}
    ]
    assert hopeless(10, 0.55, 6.0, finished)  # 0.50 + its tie-breaker 0.10 is past 0.55 + the margin
    assert not hopeless(10, 0.58, 6.0, finished)
    before_proxies = [{k: v for k, v in finished[0].items() if k != "score"}]
    assert not hopeless(10, 0.55, 6.0, before_proxies)  # no tie-breaker: 0.50 is below 0.55


def test_the_front_is_drawn_by_the_score_not_the_miou() -> None:
    # Trial 1 has the higher mIoU but the lower score, at the higher latency: the score dominates it.
    rows = [_row(0, None, miou=0.50, score=0.58, latency_ms=5.0), _row(1, None, miou=0.52, score=0.55, latency_ms=6.0)]
    assert [r.number for r in pareto_front(rows)] == [0]
    assert hypervolume(pareto_front(rows), 10.0) == pytest.approx(0.58 * 5.0)


def test_postgresql_storage_two_workers_one_study(tmp_path) -> None:
    url = os.environ.get("NASSEG_TEST_POSTGRES_URL")
    if not url:
        pytest.skip("no PostgreSQL server: .ci/run starts one and sets NASSEG_TEST_POSTGRES_URL")
    name = f"pg-{os.getpid()}-{int(time.time())}"
    state = run_search(tiny(budget=4, name=name), storage=url, base=tmp_path, workers=2)
    study, _ = load_study(name, url)
    assert state.sampled == 4 and len(done_records(study)) == 4
    assert [t.number for t in study.get_trials()] == list(range(len(study.get_trials())))


@pytest.fixture
def host_agent() -> Iterator[str]:
    with serving_agent() as url:
        yield url


def test_the_board_in_the_loop_measures_every_trial_and_caches_it(host_agent, tmp_path) -> None:
    state = run_search(tiny(target="host-cpu", agent=host_agent, budget=2, input=(64, 96)), base=tmp_path)
    study, _ = load_study("espnet-host-cpu", base=tmp_path)
    records = done_records(study)
    assert state.sampled == 2 and all(r.status == "complete" for r in records)
    assert all(
        r.latency.kind == "measured" and r.latency.backend == "torch" and r.latency.input_hw == (64, 96)
        for r in records
    )
    assert all(r.latency.label().startswith("measured on") for r in records)
    assert (tmp_path / "espnet-host-cpu" / "latency_cache.sqlite").is_file()


def test_an_unreachable_board_fails_the_trial_and_the_study_goes_on(tmp_path) -> None:
    state = run_search(tiny(target="host-cpu", agent="http://127.0.0.1:9", budget=2, input=(64, 96)), base=tmp_path)
    study, _ = load_study("espnet-host-cpu", base=tmp_path)
    failures = [r.failure for r in done_records(study)]
    assert state.sampled == 2 and state.failed == 2 and all("AgentUnreachable" in f for f in failures)


def test_a_repeated_architecture_is_not_trained_again(tmp_path) -> None:
    study = Study(tiny(budget=2), base=tmp_path)
    point = study.space.encode(study.space.baseline("espnet-c").params)
    study.study.enqueue_trial(point)
    study.study.enqueue_trial(point)
    state = study.run_worker()
    first, second = (record_of(t) for t in study.study.get_trials()[:2])
    assert second.duplicate_of == 0 and second.miou == first.miou and second.wall_seconds == 0.0
    assert state.sampled == 2 and state.rejected == 1  # the repeat did not use the budget


def test_every_shipped_study_file_is_a_valid_study_of_a_real_space_and_board() -> None:
    from nasseg.latency.targets import get_target
    from nasseg.search.spec import load_study_file

    files = sorted((Path(__file__).resolve().parents[1] / "studies").glob("*.yaml"))
    assert {load_study_file(f).space for f in files} == {s.name for s in all_spaces()}  # one per family at least
    for path in files:
        spec = load_study_file(path)
        assert spec.study_name == path.stem and get_target(spec.target).is_jetson and spec.budget >= 1
        assert load_space(spec.space).baselines and spec.data.startswith("camvid:")


def _row(
    number: int,
    baseline: str | None,
    state: str = "COMPLETE",
    status: str | None = "complete",
    miou: float | None = 0.5,
    latency_ms: float | None = 10.0,
    failure: str | None = None,
    score: float | None = None,
) -> TrialRow:
    score = miou if score is None else score
    return TrialRow(
        number, state, status, baseline, miou, score, latency_ms, "estimated", "estimated", 1, 1, {}, failure, 1.0, 1.0
    )


def test_a_baseline_run_again_after_an_interrupt_is_shown_once_with_its_score() -> None:
    rows = [
        _row(0, "espnet"),
        _row(1, "espnet-c", state="FAIL", status=None, miou=None, latency_ms=None),
        _row(2, "espnet-a", state="FAIL", status="failed", miou=None, failure="training diverged at step 3"),
        _row(3, None, miou=0.6, latency_ms=5.0),
        _row(4, "espnet-c", miou=0.55, latency_ms=12.0),
    ]
    results = StudyResults("s", "espnet", "jetson-nano", {}, rows, [3], 1.0, 10.0, {"espnet": [3], "espnet-c": [3]})
    shown = results.baseline_rows()
    assert [(r.baseline, r.number) for r in shown] == [("espnet", 0), ("espnet-c", 4), ("espnet-a", 2)]
    assert shown[2].outcome() == "failed: training diverged at step 3"
    assert rows[1].outcome() == "interrupted before it finished (the study runs it again)"
    table = io.StringIO()
    Console(file=table, width=200).print(_baseline_table(results))
    assert "None" not in table.getvalue() and table.getvalue().count("espnet-c ") == 1
