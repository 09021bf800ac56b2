"""The benchmark scripts' own logic: what each option changes, and what it must leave alone."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from scipy.stats import kendalltau
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

import activation_cost
import latency_accuracy
import latency_stability
import proxy_candidates
import proxy_fidelity
import search_efficiency
import suite_memory

from nasseg.data import dataset_info
from nasseg.search.proxy import DEFAULT_PROXY, get_proxy
from nasseg.train import get_schedule
from nasseg.train.runs import evaluate_run, make_run, run_training


def test_proxy_steps_changes_the_candidate_and_never_the_reference() -> None:
    short = get_schedule("short")
    default = proxy_fidelity.schedules(4)
    stretched = proxy_fidelity.schedules(4, 600)
    assert list(default) == ["short", "long"] and default["short"] == short
    assert list(stretched) == ["short-600", "long"]
    candidate = stretched["short-600"]
    assert (candidate.steps, candidate.warmup_steps, candidate.eval_every) == (
        600,
        round(short.warmup_steps * 600 / short.steps),
        round(short.eval_every * 600 / short.steps),
    )
    assert (candidate.lr, candidate.batch_size, candidate.crop) == (short.lr, short.batch_size, short.crop)
    # Every candidate is judged against the same long runs.
    assert stretched["long"] == default["long"] and default["long"].steps == 4 * short.steps
    assert proxy_fidelity.schedules(4, short.steps) == default
    same_images = proxy_fidelity.schedules(4, 600, 4)
    assert list(same_images) == ["short-600-b4", "long"] and same_images["long"] == default["long"]
    assert (same_images["short-600-b4"].steps, same_images["short-600-b4"].batch_size) == (600, 4)
    assert same_images["short-600-b4"].steps * 4 == short.steps * short.batch_size
    # Candidates that change what is scored keep short's training: only their own field differs.
    averaged = proxy_fidelity.schedules(4, proxy_ema=0.99, proxy_eval_scale=1.0)
    assert list(averaged) == ["short-ema0.99-eval1", "long"] and averaged["long"] == default["long"]
    changed = {k for k, v in averaged["short-ema0.99-eval1"].to_dict().items() if v != short.to_dict()[k]}
    assert changed == {"name", "ema_decay", "eval_scale"}


def test_pair_agreement_counts_only_same_family_pairs() -> None:
    points = [("espnet", 0.30, 0.50), ("espnet", 0.40, 0.60), ("espnet", 0.35, 0.40), ("fassd", 0.9, 0.1)]
    # espnet pairs: (1,2) alike, (1,3) not, (2,3) alike; fassd has no pair, cross-family pairs do not count.
    share, pairs = proxy_candidates.pair_agreement(points)
    assert (share, pairs) == (pytest.approx(2 / 3), 3)
    share, pairs = proxy_candidates.pair_agreement(points[-1:])
    assert pairs == 0 and share != share  # NaN: no pair to agree on


def test_a_second_seed_gets_its_own_folder_and_is_judged_by_rank() -> None:
    assert proxy_fidelity.proxy_folder("short", None) == "short"
    assert proxy_fidelity.proxy_folder("short-600", 1) == "short-600-seed1"
    plans = proxy_fidelity.schedules(4)
    assert proxy_fidelity.training_jobs(plans, 0, None) == [("short", plans["short"], 0), ("long", plans["long"], 0)]
    # Another seed trains only the proxy, with that seed; the long reference keeps its own.
    assert proxy_fidelity.training_jobs(plans, 0, 1) == [("short-seed1", plans["short"], 1)]
    stretched = proxy_fidelity.schedules(4, 600)
    assert proxy_fidelity.training_jobs(stretched, 0, None) == [("short-600", stretched["short-600"], 0)]
    # A second seed of the reference trains only the long runs, with that seed, into their own folder.
    assert proxy_fidelity.training_jobs(plans, 0, None, long_seed=1) == [("long-seed1", plans["long"], 1)]


def test_a_candidate_is_judged_by_rank_within_each_space_and_failures_rank_last() -> None:
    space = {"a": "espnet", "b": "espnet", "c": "espnet", "d": "fassd"}
    reference = {"a": 0.5, "b": 0.6, "c": 0.4, "d": 0.1}
    # "e" has no reference and is left out; a, b, c are ordered as the reference orders them, d is not.
    judged = proxy_candidates.judge(
        proxy_candidates.Candidate("x", {"a": 0.3, "b": 0.4, "c": 0.2, "d": 0.9, "e": 0.0}, 1.0, "test"),
        reference,
        space,
    )
    assert (judged.architectures, judged.within_space_alike, judged.within_space_pairs) == (4, 1.0, 3)
    assert judged.tau == pytest.approx(0.0) and judged.tau_by_space == {"espnet": pytest.approx(1.0)}
    low, high = judged.tau_ci
    assert -1.0 <= low <= judged.tau <= high <= 1.0
    # A run that diverged stays in the table, below every scored architecture, with its reason.
    failed = proxy_candidates.Candidate(
        "y", {"a": 0.3, "b": 0.4, "c": 0.2}, 1.0, "test", {"d": "loss 6.9e11 at step 40"}
    )
    judged = proxy_candidates.judge(failed, reference, space)
    assert judged.architectures == 4 and judged.tau == pytest.approx(1.0)
    assert judged.failures == {"d": "loss 6.9e11 at step 40"}


def test_same_space_pairs_get_an_interval_from_resampling_within_each_space() -> None:
    ordered = [("a", float(i), float(i)) for i in range(5)] + [("b", float(i), float(i)) for i in range(4)]
    assert proxy_candidates.bootstrap_alike(ordered) == (1.0, 1.0)  # a copy never pairs with itself
    reversed_b = ordered[:5] + [("b", -float(i), float(i)) for i in range(4)]
    low, high = proxy_candidates.bootstrap_alike(reversed_b)
    assert proxy_candidates.pair_agreement(reversed_b) == (10 / 16, 16)
    assert 0.0 < low < 10 / 16 < high < 1.0
    judged = proxy_candidates.judge(
        proxy_candidates.Candidate("c", {f"n{i}": p[1] for i, p in enumerate(reversed_b)}, 1.0, "test"),
        {f"n{i}": p[2] for i, p in enumerate(reversed_b)},
        {f"n{i}": p[0] for i, p in enumerate(reversed_b)},
    )
    assert judged.tau_by_space == pytest.approx({"a": 1.0, "b": -1.0})
    assert judged.rho_by_space == pytest.approx({"a": 1.0, "b": -1.0})
    assert judged.tau_ci_by_space["a"] == pytest.approx((1.0, 1.0))
    assert judged.tau_ci_by_space["b"] == pytest.approx((-1.0, -1.0))


def test_the_choice_is_the_best_affordable_full_candidate_and_cross_validates() -> None:
    rng = np.random.default_rng(0)
    names = [f"n{i}" for i in range(20)]
    reference = {n: float(v) for n, v in zip(names, rng.random(20), strict=True)}
    noisy = {n: v + float(rng.normal(0, 0.3)) for n, v in reference.items()}
    Candidate = proxy_candidates.Candidate
    found = [
        Candidate("noisy", noisy, 1.0, "test"),
        Candidate("exact-but-dear", dict(reference), 2.0, "test"),  # over the cost limit
        Candidate("exact-but-partial", {n: reference[n] for n in names[:10]}, 1.0, "test"),  # not every architecture
        Candidate("reversed", {n: -v for n, v in reference.items()}, 1.0, "test"),
    ]
    assert proxy_candidates.choose(found, reference, max_cost=1.5) == "noisy"
    assert proxy_candidates.choose(found, reference, max_cost=2.0) == "exact-but-dear"
    # Equal taus: the candidate listed first wins, so a copy never displaces the default.
    assert proxy_candidates.choose([found[0], Candidate("copy", noisy, 1.0, "test")], reference, 1.5) == "noisy"
    cv = proxy_candidates.cross_validate(found, reference, max_cost=1.5, folds=4, repeats=5)
    assert cv["chosen"] == {"noisy": 20}
    assert 0.0 < cv["held_out_tau"] < 1.0


def test_the_report_judges_the_stored_runs_as_scipy_does() -> None:
    """--report --json over the committed proxy-fidelity runs: short's tau is recomputed from the files."""
    runs = Path(proxy_fidelity.__file__).parent / "results" / "proxy_fidelity"
    result = proxy_fidelity.summary(runs, seeds=1, max_cost=1.5)
    short = {
        n: json.loads((runs / "short" / n / "metrics.json").read_text())["miou"]
        for n in proxy_fidelity._load(runs, "long")
    }
    long = {n: m["miou"] for n, m in proxy_fidelity._load(runs, "long").items()}
    names = sorted(n for n in long if n in short)
    judged = {c["name"]: c for c in result["candidates"]}
    assert judged["short"]["architectures"] == len(names) == result["reference"]["architectures"]
    assert judged["short"]["tau"] == pytest.approx(
        kendalltau([short[n] for n in names], [long[n] for n in names]).statistic
    )
    assert judged["short"]["cost_ratio"] == 1.0 and judged["short-600"]["cost_ratio"] == 2.0
    assert result["default"] in judged and result["winner"] in judged
    assert set(judged["short"]) >= {"name", "tau", "tau_ci", "rho", "within_space_alike", "cost_ratio", "architectures"}


def test_the_search_scores_with_the_winner_against_the_two_seed_reference() -> None:
    """nasseg.search.proxy's default is the candidate the stored runs choose, its standardisation theirs."""
    runs = Path(proxy_fidelity.__file__).parent / "results" / "proxy_fidelity"
    result = proxy_fidelity.summary(runs, seeds=2, max_cost=1.5)
    proxy = get_proxy(DEFAULT_PROXY)
    assert result["winner"] == result["default"]  # the default's name: proxy_fidelity.search_default()
    assert (proxy.mean, proxy.spread) == pytest.approx(proxy_fidelity.standardisation(runs, "synflow")[:2], abs=1e-4)


def test_a_long_run_that_would_outlast_a_session_is_skipped(tmp_path: Path) -> None:
    arch = proxy_fidelity._baseline("fassd-net-l2")
    for name, seconds in (("quick", 600.0), ("slow", 4000.0)):
        (tmp_path / "short" / name).mkdir(parents=True)
        (tmp_path / "short" / name / "metrics.json").write_text(json.dumps({"train_seconds": seconds}))
    args = SimpleNamespace(runs=tmp_path, data="synthetic:train=16,val=8", factor=4, max_hours=1.5)
    assert proxy_fidelity.affordable(args, "quick", arch)  # 40 min expected
    assert not proxy_fidelity.affordable(args, "slow", arch)  # 4.4 h expected


def test_without_a_short_run_a_few_timed_steps_estimate_the_long_run_once(tmp_path: Path) -> None:
    arch = proxy_fidelity._baseline("fassd-net-l2")
    data = "synthetic:train=16,val=8"
    hours = proxy_fidelity.long_hours(tmp_path, "unknown", arch, data, 4)
    stored = tmp_path / "cost_estimates" / "unknown.json"
    estimate = json.loads(stored.read_text())
    assert estimate["steps_timed"] == proxy_fidelity.PACE_STEPS and estimate["seconds_per_step"] > 0
    assert estimate["arch_hash"] == arch.with_classes(dataset_info(data).num_classes).arch_hash()
    assert hours == pytest.approx(estimate["seconds_per_step"] * get_schedule("short").steps * 4 / 3600)
    # A later invocation reads the stored estimate instead of timing again, so it chooses the same architectures.
    stored.write_text(json.dumps({**estimate, "seconds_per_step": 9.0}))
    assert proxy_fidelity.long_hours(tmp_path, "unknown", arch, data, 4) == pytest.approx(9.0 * 300 * 4 / 3600)


def test_a_space_short_of_affordable_architectures_draws_more_and_nothing_else_moves() -> None:
    hw, classes = (180, 240), 11
    baselines = [(name, proxy_fidelity._baseline(name)) for name in proxy_fidelity.BASELINES]
    plain = proxy_fidelity.sampled(5, 0, hw, classes)  # one sample per space
    jetseg = next(i for i, s in enumerate(proxy_fidelity.all_spaces()) if s.name == "jetseg")
    further = proxy_fidelity._drawn(proxy_fidelity.all_spaces()[jetseg], jetseg, 4, 0, hw, classes)
    too_slow = {"jetseg-nano", further[0][0], further[1][0]}  # the baseline, the first sample and the next draw
    asked: list[str] = []

    def affordable(name: str, arch: object) -> bool:
        asked.append(name)
        return name not in too_slow

    topped = proxy_fidelity.sampled(5, 0, hw, classes, baselines, affordable, per_space=2)
    assert topped[:5] == plain  # the first draws never change
    assert topped[5:] == further[2:4]  # JetSeg's next two affordable draws, in sequence
    assert further[1][0] in asked and further[3][0] in asked and len(set(asked)) == len(asked)  # each asked once
    assert all(a[1].family == "jetseg" for a in topped[5:])


def test_the_learning_curve_is_carried_on_from_its_later_evaluations() -> None:
    curve = [[step, 0.1 + 0.05 * math.log(step)] for step in (60, 120, 180, 240, 300)]
    curve[0][1] = 0.9  # the first evaluation, off the curve, is left out of the fit
    assert proxy_fidelity._extrapolated(curve, 1200) == pytest.approx(0.1 + 0.05 * math.log(1200))


def test_one_averaged_run_is_rescored_into_the_candidates_it_stands_for(tmp_path: Path) -> None:
    """An --proxy-ema run trains as short does (the average changes only what is scored), so its final
    checkpoint also scores short again and both at full scale: each candidate recomputed from the weights."""
    data, arch, seed = "synthetic:train=16,val=8", proxy_fidelity._baseline("fassd-net-l2"), 0
    short = get_schedule("short").with_overrides(steps=4, eval_every=2, warmup_steps=1)
    averaged = short.with_overrides(name="short-ema0.99", ema_decay=0.99)
    plain = run_training(make_run("net", arch, data, short, seed), tmp_path / "short" / "net", progress=False)
    out = tmp_path / "short-ema0.99" / "net"
    metrics = run_training(make_run("net", arch, data, averaged, seed), out, progress=False)
    scores = proxy_fidelity.rescore(out)
    assert scores["scored@0.5"]["miou"] == metrics["miou"]  # what the run itself scored
    assert scores["last@0.5"]["miou"] == plain["miou"]  # the same training as a run without the average
    for key in ("scored@1", "last@1"):
        weights = key.split("@")[0]
        full = evaluate_run(out, input_hw=tuple(scores[key]["input_hw"]), weights=weights)[1]  # type: ignore[arg-type]
        assert scores[key]["miou"] == full.miou
        assert scores[key]["input_hw"] == list(dataset_info(data).frame_hw())
    found = {c.name: c for c in proxy_fidelity.candidates(tmp_path)}
    assert found["short-rerun"].scores == {"net": plain["miou"]}
    assert found["short-loss"].scores == {"net": -scores["last@0.5"]["loss"]}  # lower loss ranks higher
    assert found["short-ema0.99-loss"].scores == {"net": -scores["scored@0.5"]["loss"]}
    assert found["short-eval1"].scores == {"net": scores["last@1"]["miou"]}
    assert found["short-ema0.99-eval1"].scores == {"net": scores["scored@1"]["miou"]}
    assert found["short-ema0.99"].scores == {"net": metrics["miou"]} and found["short-ema0.99"].cost_ratio == 1.0
    evaluations = 2  # at steps 2 and 4
    extra = evaluations * (scores["last@1"]["seconds"] - scores["last@0.5"]["seconds"]) / plain["train_seconds"]
    assert found["short-eval1"].cost_ratio == pytest.approx(1.0 + extra)


def test_a_run_that_diverges_is_its_candidates_failure_with_the_reason(tmp_path: Path) -> None:
    """A candidate's diverged run is recorded beside its results, read back as a failure on that architecture
    with its reason, and judged (ranked last), not dropped: the issue's bad input."""
    data, arch = "synthetic:train=16,val=8", proxy_fidelity._baseline("fassd-net-l2")
    short = get_schedule("short").with_overrides(steps=4, eval_every=2, warmup_steps=1)
    wild = short.with_overrides(name="short-wild", lr=1e9, warmup_steps=0)
    for name in ("a", "b"):
        assert proxy_fidelity._train(tmp_path / "short" / name, "short", make_run(name, arch, data, short, 0))
    assert proxy_fidelity._train(tmp_path / "short-wild" / "a", "wild", make_run("a", arch, data, short, 0))
    assert not proxy_fidelity._train(tmp_path / "short-wild" / "b", "wild", make_run("b", arch, data, wild, 0))
    stored = json.loads((tmp_path / "short-wild" / "b" / "failed.json").read_text())
    assert stored["reason"].startswith("training diverged at step"), stored["reason"]
    found = {c.name: c for c in proxy_fidelity.candidates(tmp_path)}
    assert found["short-wild"].failures == {"b": stored["reason"]} and found["short-wild"].covers("b")
    judged = proxy_candidates.judge(found["short-wild"], {"a": 0.5, "b": 0.4}, {"a": "fassd", "b": "fassd"})
    assert judged.architectures == 2 and judged.failures == {"b": stored["reason"]}


def test_host_measurements_only_grow_on_the_cpu_they_were_taken_on(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(latency_accuracy, "cpu_name", lambda: "Some Other CPU")
    method = latency_accuracy.MEASURED_WITH
    with pytest.raises(SystemExit, match=r"not this CPU .'Some Other CPU'.*--measurements"):
        latency_accuracy._require_same_cpu(
            {"cpu": "Intel(R) Xeon(R) Processor", "measured_with": method}, "espnet-1234@192x256"
        )
    latency_accuracy._require_same_cpu({"cpu": "Some Other CPU", "measured_with": method}, "espnet-1234@192x256")
    # Nor between timing methods: measurements taken with denormals are not mixed with flushed ones.
    older = {**method, "denormals": "kept"}
    with pytest.raises(SystemExit, match=r"taken otherwise.*--measurements"):
        latency_accuracy._require_same_cpu({"cpu": "Some Other CPU", "measured_with": older}, "espnet-1234@192x256")


def test_a_new_store_says_how_it_is_measured(tmp_path: Path) -> None:
    store = latency_accuracy._load_store(tmp_path / "new.json")
    assert store["cpu"] == latency_accuracy.cpu_name() and store["ms"] == {} and store["layer_ms"] == {}
    assert store["measured_with"]["clock"] == "thread CPU time" and store["measured_with"]["threads"] == 1
    assert store["measured_with"]["denormals"] == "flushed to zero"
    # Every kept store says how it was measured, down to the treatment of denormals and what was
    # timed beside the networks (convolutions alone, or for an op table the layers inside them).
    for kept in latency_accuracy.MEASUREMENTS.parent.glob("host_measurements*.json"):
        method = latency_accuracy._load_store(kept)["measured_with"]
        assert method.keys() == latency_accuracy.MEASURED_WITH.keys(), kept.name
        assert {k: v for k, v in method.items() if k not in ("denormals", "what")} == {
            k: v for k, v in latency_accuracy.MEASURED_WITH.items() if k not in ("denormals", "what")
        }, kept.name


def test_a_store_is_written_only_when_something_was_measured(tmp_path: Path) -> None:
    path = tmp_path / "store.json"
    store = latency_accuracy._load_store(path)
    before = latency_accuracy._counts(store)
    latency_accuracy._save_store(store, path, before, 0.5)
    assert not path.exists()
    store["ms"]["espnet-1234@192x256"] = 12.5
    store["ms_again"] = {"espnet-1234@192x256": 13.0}
    latency_accuracy._save_store(store, path, before, 0.5)
    again = latency_accuracy._load_store(path)
    assert again["ms"] == {"espnet-1234@192x256": 12.5} and again["ms_again"] == {"espnet-1234@192x256": 13.0}
    run = again["runs"][-1]
    assert (run["measured"], run["layers_timed"], run["remeasured"]) == (1, 0, 1)


def test_host_networks_are_measured_in_passes_and_take_the_median(monkeypatch: pytest.MonkeyPatch) -> None:
    # The host's speed changes in spells of 10-60 s: each round times every network once before the next.
    calls: list[str] = []
    timings = {"a": iter([10.0, 11.0]), "b": iter([30.0, 31.0, 29.0])}

    def fake_measure(model: nn.Module, hw: tuple[int, int], *_args: object, **_kwargs: object) -> SimpleNamespace:
        calls.append(model.name)
        return SimpleNamespace(median_ms=next(timings[model.name]))

    monkeypatch.setattr(latency_accuracy, "measure_model", fake_measure)
    a, b = nn.Identity(), nn.Identity()
    a.name, b.name = "a", "b"
    store = latency_accuracy._load_store(Path("/nonexistent/store.json"))
    store["ms"] = {"a@8x8": 12.0}  # a store of one round: one float per network
    timed = list(latency_accuracy._timed_cases([("a", a, (8, 8)), ("b", b, (8, 8))], None, "test", store, "ms", 3))
    assert calls[0] == "b" and sorted(calls[1:3]) == sorted(calls[3:5]) == ["a", "b"]  # a had its first round
    assert store["ms"] == {"a@8x8": [12.0, 10.0, 11.0], "b@8x8": [30.0, 31.0, 29.0]}
    assert [(case_id, ms, layers) for case_id, _, _, ms, layers in timed] == [
        ("a@8x8", 11.0, None),
        ("b@8x8", 30.0, None),
    ]
    assert latency_accuracy._counts(store)["ms"] == 6
    # When each was taken, aligned with the measurements; null for the one stored without a time.
    a_at, b_at = store["ms_at"]["a@8x8"], store["ms_at"]["b@8x8"]
    assert a_at[0] is None and b_at[0] < a_at[1] < a_at[2] and len(b_at) == 3
    # With one round, the kept measurements answer and nothing runs again.
    again = list(latency_accuracy._timed_cases([("a", a, (8, 8))], None, "test", store, "ms", 1))
    assert len(calls) == 5 and again[0][3] == 12.0


def test_drift_correction_divides_each_pass_by_the_hosts_slowdown_then_takes_the_median() -> None:
    # Three networks, three passes 100 s apart; the whole host runs 1.5x slower through the second.
    store = {
        "ms": {"a": [10.0, 15.0, 10.0], "b": [20.0, 30.0, 20.0], "c": [40.0, 60.0, 40.0]},
        "ms_at": {"a": [0.0, 100.0, 200.0], "b": [1.0, 101.0, 201.0], "c": [2.0, 102.0, 202.0]},
        "layer_ms": {"a": [[4.0, 6.0], [6.0, 9.0], [4.0, 6.0]]},
    }
    corrected = latency_accuracy._drift_corrected(store, "ms", ["a", "b", "c"], 3)
    assert {i: ms for i, (ms, _) in corrected.items()} == pytest.approx({"a": 10.0, "b": 20.0, "c": 40.0})
    assert corrected["a"][1] == pytest.approx([4.0, 6.0]) and corrected["b"][1] is None
    # Without the times the correction cannot be made, and says so by None.
    store["ms_at"]["c"][1] = None
    assert latency_accuracy._drift_corrected(store, "ms", ["a", "b", "c"], 3) is None


def test_each_pass_times_every_network_once_in_its_own_order(monkeypatch: pytest.MonkeyPatch) -> None:
    # A slow spell of the host must not fall on the same neighbours in every pass.
    calls: list[str] = []

    def fake_measure(model: nn.Module, *_args: object, **_kwargs: object) -> SimpleNamespace:
        calls.append(model.name)
        return SimpleNamespace(median_ms=10.0)

    monkeypatch.setattr(latency_accuracy, "measure_model", fake_measure)
    cases = []
    for name in "abcdefgh":
        network = nn.Identity()
        network.name = name
        cases.append((name, network, (8, 8)))
    store = latency_accuracy._load_store(Path("/nonexistent/store.json"))
    list(latency_accuracy._timed_cases(cases, None, "test", store, "ms", 3))
    passes = [calls[i : i + 8] for i in range(0, 24, 8)]
    assert all(sorted(p) == list("abcdefgh") for p in passes)
    assert len({tuple(p) for p in passes}) == 3


def test_the_extra_calibration_scale_times_the_same_architectures_larger() -> None:
    calibrate, check, extra = latency_accuracy.host_cases(0.5, 1, 5, 0.75)
    assert [name for name, _, _ in extra] == [name for name, _, _ in calibrate]
    for (_, _, small), (_, _, large) in zip(calibrate, extra, strict=True):
        assert large[0] * large[1] > 1.5 * small[0] * small[1]
    assert not {c.arch_hash() for _, c, _ in check} & {c.arch_hash() for _, c, _ in extra}
    assert latency_accuracy.host_cases(0.5, 1, 5)[2] == []


def test_another_check_seed_draws_other_check_architectures_never_calibration_ones() -> None:
    calibrate, check, _ = latency_accuracy.host_cases(0.5, 2, 10)
    _, other_check, _ = latency_accuracy.host_cases(0.5, 2, 10, check_seed=3)
    hashes = {c.arch_hash() for _, c, _ in calibrate}
    assert not hashes & {c.arch_hash() for _, c, _ in other_check}
    assert {name for name, _, _ in check} != {name for name, _, _ in other_check}
    assert len(other_check) >= 10


def test_layers_are_timed_right_after_their_network_in_the_same_pass(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []
    network_ms = iter([20.0, 22.0, 21.0])
    layer_ms = iter([[1.0, 5.0], [3.0, 7.0], [2.0, 6.0]])

    def fake_measure(model: nn.Module, *_args: object, **_kwargs: object) -> SimpleNamespace:
        calls.append("network")
        return SimpleNamespace(median_ms=next(network_ms))

    def fake_layers(model: nn.Module, hw: tuple[int, int]) -> tuple[list, np.ndarray]:
        calls.append("layers")
        return [], np.array(next(layer_ms))

    monkeypatch.setattr(latency_accuracy, "measure_model", fake_measure)
    monkeypatch.setattr(latency_accuracy, "time_layers", fake_layers)
    store = latency_accuracy._load_store(Path("/nonexistent/store.json"))
    [(case_id, _, _, ms, layers)] = latency_accuracy._timed_cases(
        [("a", nn.Identity(), (8, 8))], None, "test", store, "ms", 3, layers=True
    )
    assert calls == ["network", "layers"] * 3
    assert (case_id, ms) == ("a@8x8", 21.0) and layers.tolist() == [2.0, 6.0]  # each layer's median over the passes
    assert store["layer_ms"] == {"a@8x8": [[1.0, 5.0], [3.0, 7.0], [2.0, 6.0]]}
    # A store whose networks were measured without their layers: refused, not half-used.
    store["ms"]["b@8x8"] = [9.0]
    with pytest.raises(SystemExit, match="without their layers"):
        list(latency_accuracy._timed_cases([("b", nn.Identity(), (8, 8))], None, "test", store, "ms", 1, layers=True))


def test_stability_sets_each_run_beside_the_host_speed_probe_taken_before_it(monkeypatch: pytest.MonkeyPatch) -> None:
    events: list[str] = []
    probes, medians = iter([2.0, 3.0, 2.0, 3.0]), iter([100.0, 110.0, 100.0, 110.0])

    def fake_probe(threads: int) -> float:
        events.append("probe")
        return next(probes)

    def fake_measure(*_args: object, **_kwargs: object) -> SimpleNamespace:
        events.append("measure")
        return SimpleNamespace(median_ms=next(medians), spread_ms=1.0, repeats=20, extra={"converged": True})

    monkeypatch.setattr(latency_stability, "host_speed_probe", fake_probe)
    monkeypatch.setattr(latency_stability, "measure_model", fake_measure)
    args = SimpleNamespace(input="8x8", threads=1, runs=4, backend="torch")
    progress = SimpleNamespace(add_task=lambda *a, **k: 0, advance=lambda *a: None)
    row = latency_stability.stability("net", nn.Identity(), args, progress)
    assert events == ["probe", "measure"] * 4
    assert row["mean_ms"] == 105.0 and row["converged"] == 4
    assert row["cv"] == pytest.approx(latency_stability.cv([100.0, 110.0, 100.0, 110.0]))
    assert row["probe_cv"] == pytest.approx(0.5 / 2.5 * (4 / 3) ** 0.5)
    assert row["probe_corr"] == pytest.approx(1.0)  # the runs follow the probe exactly


def test_a_stability_run_is_stored_and_printed_again_from_its_file(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    rows = [
        {
            "name": "net",
            "mean_ms": 105.0,
            "cv": 0.0512,
            "probe_cv": 0.02,
            "probe_corr": 0.5,
            "iqr_ms": 1.0,
            "repeats": 20,
            "converged": 4,
            "medians_ms": [100.0, 110.0, 100.0, 110.0],
            "probes_ms": [2.0, 3.0, 2.0, 3.0],
        }
    ]
    data = {
        "command": "OMP_NUM_THREADS=1 python benchmarks/latency_stability.py --runs 4",
        "date": "2026-12-07 06:00",
        "device": "Some CPU (1 thread)",
        "cpu": "Some CPU",
        "cores": 2,
        "versions": {"torch": "2.13.0+cpu"},
        "backend": "torch",
        "input": "8x8",
        "runs": 4,
        "threads": 1,
        "load_before": 1.5,
        "load_after": 2.0,
        "rows": rows,
    }
    path = latency_stability.save(data, tmp_path)
    assert path.name == "torch-2026-12-07-0600.json"
    latency_stability.print_run(data)
    printed = capsys.readouterr().out
    latency_stability.report(tmp_path)
    again = capsys.readouterr().out
    assert again == f"== {path.name}\n{printed}"
    assert (
        "| net | 105.00 | 5.12% ✗ |" in printed and "load average 1.50 before, 2.00 after (2026-12-07 06:00)" in printed
    )


def test_the_host_speed_probe_times_a_matrix_product_and_restores_the_threads() -> None:
    before = torch.get_num_threads()
    ms = latency_stability.host_speed_probe(1)
    assert 0.0 < ms < 1000.0  # a 512x512 product: about 2-6 ms on a 2-core VM
    assert torch.get_num_threads() == before


def test_a_space_can_get_more_calibration_architectures_and_keeps_its_first_ones() -> None:
    fewer, _check, _ = latency_accuracy.host_cases(0.5, 2, 10)
    more, check_more, _ = latency_accuracy.host_cases(0.5, 2, 10, more={"espnet": 4})
    espnet = [name for name, _, _ in more if name.startswith("espnet-")]
    # A store measured with fewer is extended, not replaced: the first two are the same architectures.
    assert len(espnet) == 4 and espnet[:2] == [name for name, _, _ in fewer if name.startswith("espnet-")]
    assert [n for n, _, _ in more if not n.startswith("espnet-")] == [
        n for n, _, _ in fewer if not n.startswith("espnet-")
    ]
    assert not {n for n, _, _ in more} & {n for n, _, _ in check_more}
    with pytest.raises(SystemExit, match="no space espnett; the spaces are ejpnet, espnet"):
        latency_accuracy.host_cases(0.5, 2, 10, more={"espnett": 4})


def test_space_counts_are_parsed_with_one_clear_error() -> None:
    assert latency_accuracy.parse_space_counts(["espnet=40", "jetseg=30"]) == {"espnet": 40, "jetseg": 30}
    for bad in ("espnet", "espnet=0", "espnet=forty"):
        with pytest.raises(SystemExit, match="expected SPACE=N"):
            latency_accuracy.parse_space_counts([bad])


def test_calibration_cross_validation_predicts_every_network_from_the_other_folds() -> None:
    def predict(networks: list, predicted: list) -> np.ndarray:
        seen = {m.id for m in networks}
        assert not seen & {m.id for m in predicted} and len(seen) + len(predicted) == 12  # never from a fit that saw it
        return np.array([m.ms * (1.2 if m.id.startswith("espnet") else 1.05) for m in predicted])

    networks = [SimpleNamespace(id=f"{family}-{i}", ms=10.0 + i) for family in ("espnet", "fassd") for i in range(6)]
    errors = latency_accuracy.calibration_cv(networks, predict)
    assert errors[:6] == pytest.approx([0.2] * 6) and errors[6:] == pytest.approx([0.05] * 6)


def test_the_activation_benchmark_times_forms_that_compute_the_same_function() -> None:
    # The textbook forms it times against must be the shipped functions where both are fast.
    x = torch.linspace(-20, 20, 4001)
    torch.testing.assert_close(
        activation_cost.TEXTBOOK["REU, textbook (where, exp of x <= 0)"](x), activation_cost.SHIPPED["REU (nasseg)"](x)
    )
    torch.testing.assert_close(
        activation_cost.TEXTBOOK["TanhExp, textbook (exp of x <= 20)"](x),
        activation_cost.SHIPPED["TanhExp (nasseg)"](x),
    )
    assert 0.0 < activation_cost.median_ms(activation_cost.SHIPPED["REU (nasseg)"], x) < 100.0


STUDY_FILE = Path(__file__).resolve().parents[1] / "studies" / "espnet-nano.yaml"
STORED = Path(search_efficiency.RESULTS)


@pytest.mark.parametrize(
    "name, compute",
    [
        ("overhead-espnet-nano", search_efficiency.overhead),
        ("early-stopping-replay-espnet-nano", search_efficiency.early_stopping_replay),
    ],
)
def test_the_camvid_study_figures_are_recomputed_from_the_committed_study(name, compute) -> None:
    # benchmarks/README quotes these; the committed study gives them again, number for number.
    import json

    stored = json.loads((STORED / f"{name}.json").read_text())
    assert json.loads(json.dumps(compute(STUDY_FILE))) == stored


def test_the_effects_study_judges_each_effect_alone_and_the_shipped_set_without_and_with_each() -> None:
    shipped = ["pad8", "concat_in_place", "no_overlap"]
    candidates = latency_accuracy.effect_candidates(shipped, ["pad8"])
    assert candidates[0] == [] and all([e] in candidates for e in latency_accuracy.EFFECTS)
    assert (
        shipped in candidates
        and ["concat_in_place", "no_overlap"] in candidates
        and ["pad8", "no_overlap"] in candidates
    )
    assert [*shipped, "tile32"] in candidates and [
        *shipped,
        "concat_free",
    ] not in candidates  # concat_free replaces in_place
    assert len({tuple(sorted(c)) for c in candidates}) == len(candidates)  # ["pad8"] is there once


def test_suite_memory_report_prints_every_stored_run_again(capsys: pytest.CaptureFixture[str]) -> None:
    stored = sorted(suite_memory.RESULTS.glob("*.json"))
    assert {p.stem for p in stored} >= {"before", "after"}  # the runs benchmarks/README.md quotes
    suite_memory.report(top=3)
    out = capsys.readouterr().out
    for path in stored:
        run = json.loads(path.read_text())
        assert f"{run['command']}  ({run['date']}" in out
        assert f"maximum resident set size {run['time_v']['max_rss_mib']:.0f} MiB" in out
        worst = run["top_held"][0]
        assert f"{worst['held']:8.0f}  (RSS {worst['rss_before']:.0f} -> max {worst['sampled_max']:.0f}" in out
