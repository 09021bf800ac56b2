"""``nasseg dashboard``: real tiny studies drawn to one HTML page, opened in headless Chromium.

Chromium is Debian's, driven by selenium (the ``chromium`` fixture in conftest.py). Where it is missing,
the browser tests skip and say so.
"""

from __future__ import annotations

import math
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from nasseg.cli import app
from nasseg.cli.common import EXIT_BAD_INPUT
from nasseg.search.results import StudyResults, study_results
from nasseg.search.spec import StudySpec
from nasseg.search.study import BASELINE_ATTR, Study, load_study
from nasseg.viz.dashboard import UNTRAINED, hypervolume_history, page_notes, pareto_figure, views_of, write_dashboard

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import itertools

import dashboard_render

runner = CliRunner()
DATA = "synthetic:train=8,val=2,test=2"  # the page is under test, not the learning
MAIN, OTHER, FAILED, EMPTY = "espnet-jetson-nano", "pyramid_shufflenet-jetson-tx2", "espnet-host-cpu", "empty"
BASELINES = ("espnet-a-a3", "espnet-c-a3", "espnet")  # 167,200, 185,225 and 353,140 params at 11 classes
MAX_PARAMS = 300_000  # so the published ESPNet is constrained: timed, not trained


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


@pytest.fixture(scope="module")
def studies(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """studies/ with four real studies: espnet on the Nano with three published baselines (one over
    --max-params) and two sampled trials, scored by the default proxy; pyramid_shufflenet on the TX2
    (another space, another board, scored by the mIoU alone); one whose every trial failed (its board
    unreachable); one with no trial yet."""
    base = tmp_path_factory.mktemp("work") / "studies"
    main = Study(tiny(budget=2, max_params=MAX_PARAMS), base=base)
    for name in BASELINES:
        main.study.enqueue_trial(main.space.encode(main.space.baseline(name).params), user_attrs={BASELINE_ATTR: name})
    main.run_worker()
    Study(tiny(space="pyramid_shufflenet", target="jetson-tx2", budget=2, proxy="miou"), base=base).run_worker()
    Study(tiny(target="host-cpu", agent="http://127.0.0.1:9", budget=2, input=(64, 96)), base=base).run_worker()
    Study(tiny(name=EMPTY), base=base)
    return base


def results_of(base: Path, name: str) -> StudyResults:
    return study_results(*load_study(name, base=base))


# ----- what the page holds, read in headless Chromium (conftest.py's chromium fixture) -----------
PLOTS_JS = """
return Array.from(document.querySelectorAll('.js-plotly-plot')).map(gd => ({
  id: gd.id, drawn: !!(gd._fullLayout && gd._fullData), height: gd.getBoundingClientRect().height,
  svg: gd.querySelectorAll('.main-svg').length, gl: gd.querySelectorAll('canvas').length,
  annotations: ((gd._fullLayout || {}).annotations || []).map(a => a.text),
  traces: gd.data.map((t, i) => ({
    type: t.type, meta: t.meta || {},
    n: t.type === 'parcoords' ? t.dimensions[0].values.length : t.type === 'heatmap' ? t.z.length
       : Array.from(t.x || []).filter(v => v !== null).length,
    drawn: (gd._fullData[i] || {}).visible !== false,
    last: t.y && t.y.length ? t.y[t.y.length - 1] : null,
  })),
  svgPoints: gd.querySelectorAll('.scatterlayer .trace .points path').length,
}));
"""


def points(plot: dict, kind: str, study: str | None = None, **meta: str) -> int:
    return sum(
        t["n"]
        for t in plot["traces"]
        if t["meta"].get("kind") == kind
        and (study is None or t["meta"].get("study") == study)
        and all(t["meta"].get(k) == v for k, v in meta.items())
    )


def check_page(plots: list[dict], log: list[dict], results: list[StudyResults]) -> dict[str, dict]:
    """Every plot drawn with exactly the points the studies hold, and no JavaScript error."""
    errors = [e for e in log if e["level"] == "SEVERE"]
    assert not errors, errors
    spaces = list(dict.fromkeys(r.space for r in results))
    by_id = {p["id"]: p for p in plots}
    assert set(by_id) == {"pareto", "cost", "history", "importance", "per-class"} | {f"parallel-{s}" for s in spaces}
    for plot in plots:
        assert plot["drawn"] and plot["svg"] > 0 and plot["height"] > 250, plot["id"]
        assert all(t["drawn"] for t in plot["traces"] if t["n"]), plot["id"]  # plotly.js hides empty ones
    for view in views_of(results):
        rows, label = view.rows, view.label
        scored = [r for r in rows if r.scored]
        pareto = by_id["pareto"]
        assert points(pareto, "trained", label) == len(scored)
        assert points(pareto, "front", label) == len(view.results.pareto)
        assert points(pareto, "baseline", label) == sum(bool(r.baseline) for r in scored)
        for status in UNTRAINED:
            placed = [r for r in rows if r.status == status and r.latency_ms is not None]
            assert points(pareto, "untrained", label, status=status) == len(placed), status
        timed = [r for r in rows if r.latency_ms is not None and r.macs is not None]
        for axis in ("macs", "params"):
            assert sum(points(by_id["cost"], k, label, axis=axis) for k in ("timed", "baseline", "untrained")) == len(
                timed
            )
        history = by_id["history"]
        assert points(history, "history-score", label) == points(history, "history-latency_ms", label) == len(scored)
        finished = [r for r in rows if r.status is not None]
        assert points(history, "hypervolume", label) == len(finished)
        last = [t["last"] for t in history["traces"] if t["meta"] == {"kind": "hypervolume", "study": label}]
        if finished:
            assert math.isclose(last[0], view.results.hypervolume, rel_tol=1e-9, abs_tol=1e-12)
        kinds = [t["meta"]["kind"] for t in by_id["importance"]["traces"] if t["meta"].get("study") == label]
        assert len(kinds) == 2  # one per objective: bars, or the reason there are none
    for space in spaces:
        scored = sum(r.scored for res in results if res.space == space for r in res.trials)
        assert points(by_id[f"parallel-{space}"], "parcoords") == scored
    shown = sum(
        len({r.number for r in res.trials if r.status and (r.baseline or r.number in res.pareto)}) for res in results
    )
    assert points(by_id["per-class"], "per-class") == shown
    # SVG scatter traces: every point is in the page as a drawn marker
    svg_points = sum(
        t["n"]
        for t in by_id["pareto"]["traces"]
        if t["type"] == "scatter" and t["meta"].get("kind") in ("trained", "front", "baseline", "untrained")
    )
    assert by_id["pareto"]["svgPoints"] == svg_points
    return by_id


# ----- the tests -------------------------------------------------------------------------------
def test_the_dashboard_of_three_studies_draws_every_trial_in_chromium(studies, tmp_path, monkeypatch, chromium) -> None:
    monkeypatch.chdir(studies.parent)
    page = tmp_path / "dashboard.html"
    result = runner.invoke(app, ["dashboard", MAIN, OTHER, FAILED, "-o", str(page)])
    assert result.exit_code == 0, result.output
    assert "wrote" in result.output and "no trial of espnet-host-cpu was trained to the end (2 failed)" in result.output
    results = [results_of(studies, name) for name in (MAIN, OTHER, FAILED)]
    main = {r.baseline: r for r in results[0].trials if r.baseline}
    assert main["espnet"].status == "constrained" and main["espnet-a-a3"].scored and main["espnet-c-a3"].scored
    assert all(r.status == "failed" for r in results[2].trials)

    text = page.read_text()
    assert "<script src=" not in text and "Plotly" in text[:5_000_000]  # its JavaScript inlined: opens offline
    assert "search <b>different spaces</b> (espnet: espnet-jetson-nano, espnet-host-cpu; pyramid_shufflenet: " in text
    assert "each study's own target (host-cpu, jetson-nano, jetson-tx2)" in text
    assert "AgentUnreachable" in text  # the failures, with their reason

    plots, log = chromium.open_plots(page, tmp_path / "dashboard.png", PLOTS_JS)
    by_id = check_page(plots, log, results)
    assert (tmp_path / "dashboard.png").stat().st_size > 50_000
    # The failed study has no importances: the plot says why instead of failing.
    missing = [t for t in by_id["importance"]["traces"] if t["meta"].get("kind") == "importance-missing"]
    assert {t["meta"]["study"] for t in missing} == {FAILED}
    assert any("needs at least 2 finished trials" in a.replace("<br>", " ") for a in by_id["importance"]["annotations"])
    # The constrained baseline sits on the strip, labelled; the baselines' hover says where latency came from.
    assert points(by_id["pareto"], "untrained", MAIN, status="constrained") >= 1
    assert "estimated by" in text and "calibration" in text


def test_a_thousand_trials_draw_quickly_with_webgl_in_chromium(tmp_path, chromium) -> None:
    study, settings = dashboard_render.synthetic_study(1000)
    results = study_results(study, settings)
    assert {t.status for t in results.trials} == {"complete", "constrained", "stopped", "failed", "rejected"}
    started = time.perf_counter()
    page = write_dashboard(tmp_path / "big.html", [results], [study])
    elapsed = time.perf_counter() - started
    assert elapsed < 120, elapsed  # benchmarks/README.md has the figure on a quiet machine
    plots, log = chromium.open_plots(page, tmp_path / "big.png", PLOTS_JS)
    by_id = check_page(plots, log, [results])
    assert by_id["pareto"]["gl"] > 0 and any(t["type"] == "scattergl" for t in by_id["pareto"]["traces"])
    rejected = sum(t.status == "rejected" for t in results.trials)
    assert any(f"{rejected} rejected" in a for a in by_id["pareto"]["annotations"])


def test_a_study_that_does_not_exist_is_one_line(studies, monkeypatch) -> None:
    monkeypatch.chdir(studies.parent)
    result = runner.invoke(app, ["dashboard", MAIN, "nope"])
    assert result.exit_code == EXIT_BAD_INPUT and "Traceback" not in result.output
    assert result.output.strip().splitlines() == [
        "error: no study 'nope': studies/nope/study.db does not exist (give --storage URL for a study stored elsewhere)"
    ]
    url = f"sqlite:///{studies / MAIN / 'study.db'}"
    result = runner.invoke(app, ["dashboard", "other-name", "--storage", url])
    assert result.exit_code == EXIT_BAD_INPUT and f"studies there: {MAIN}" in result.output


def test_an_empty_study_is_one_line_and_writes_nothing(studies, tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(studies.parent)
    result = runner.invoke(app, ["dashboard", EMPTY, "-o", str(tmp_path / "d.html")])
    assert result.exit_code == EXIT_BAD_INPUT and len(result.output.strip().splitlines()) == 1
    assert "nothing to draw: empty has no finished trial yet" in result.output
    assert not (tmp_path / "d.html").exists()
    # Beside a study with trials, it is drawn as a note, not an error.
    result = runner.invoke(app, ["dashboard", EMPTY, FAILED, "-o", str(tmp_path / "d.html")])
    assert result.exit_code == 0 and "empty has no finished trial yet: nothing of it is drawn" in result.output
    assert "empty has no finished trial yet</b>" in (tmp_path / "d.html").read_text()


def test_a_study_with_only_failed_trials_is_a_labelled_page(studies, tmp_path) -> None:
    results = results_of(studies, FAILED)
    page = write_dashboard(tmp_path / "failed.html", [results], [load_study(FAILED, base=studies)[0]])
    text = page.read_text().replace("<br>", " ")
    assert "No trial was trained to the end, so there is no front yet (2 failed: why is listed at the end" in text
    assert "No trial of espnet-host-cpu was trained to the end" in text and "AgentUnreachable" in text
    assert "cannot be computed yet: it needs at least 2 finished trials, this study has 0" in text


def test_hypervolume_history_ends_at_the_study_hypervolume(studies) -> None:
    results = results_of(studies, MAIN)
    history = hypervolume_history(results.trials, results.reference_ms)
    assert len(history) == len(results.trials) and history[-1] == pytest.approx(results.hypervolume)
    assert all(b >= a for a, b in itertools.pairwise(history))  # a front only grows


def test_each_study_is_drawn_by_its_own_accuracy_objective(studies) -> None:
    # The main study scores with the default proxy (mIoU + synflow tie-breaker), the other by its mIoU.
    main, other = results_of(studies, MAIN), results_of(studies, OTHER)
    assert main.tie_broken and not other.tie_broken
    assert any(r.score != r.miou for r in main.trials if r.scored)
    assert all(r.score == r.miou for r in other.trials if r.scored)
    for results, title in ((main, "score: mIoU (validation) + the proxy's tie-breaker"), (other, "mIoU (validation)")):
        figure = pareto_figure(views_of([results])).to_dict()
        trained = next(t for t in figure["data"] if t["meta"]["kind"] == "trained")
        assert list(trained["y"]) == [r.score for r in sorted(results.trials, key=lambda r: r.number) if r.scored]
        assert figure["layout"]["yaxis"]["title"]["text"] == title
    notes = " ".join(page_notes(views_of([main, other])))
    assert "score accuracy differently" in notes and main.proxy in notes


def test_serve_starts_optuna_dashboard_on_the_study_storage(studies, monkeypatch) -> None:
    monkeypatch.chdir(studies.parent)
    optuna_dashboard = pytest.importorskip("optuna_dashboard")
    calls = []
    monkeypatch.setattr(optuna_dashboard, "run_server", lambda storage, host, port: calls.append((storage, host, port)))
    result = runner.invoke(app, ["dashboard", MAIN, "--serve", "--port", "8099"])
    assert result.exit_code == 0, result.output
    assert calls == [(f"sqlite:///studies/{MAIN}/study.db", "127.0.0.1", 8099)]
    (studies / "main.yaml").write_text(f"name: {MAIN}\nspace: espnet\ntarget: jetson-nano\nbudget: 2\n")
    result = runner.invoke(app, ["dashboard", "studies/main.yaml", "--serve"])  # a study file (docs/dashboards.md)
    assert result.exit_code == 0 and calls[-1] == (f"sqlite:///studies/{MAIN}/study.db", "127.0.0.1", 8080)
    result = runner.invoke(app, ["dashboard", MAIN, OTHER, "--serve"])
    assert result.exit_code == EXIT_BAD_INPUT and "--serve shows one storage" in result.output


def test_serve_without_optuna_dashboard_names_the_install(studies, monkeypatch) -> None:
    monkeypatch.chdir(studies.parent)
    monkeypatch.setitem(sys.modules, "optuna_dashboard", None)  # import fails as if not installed
    result = runner.invoke(app, ["dashboard", MAIN, "--serve"])
    assert result.exit_code == EXIT_BAD_INPUT and len(result.output.strip().splitlines()) == 1
    assert "--serve needs optuna-dashboard, which is not installed: pip install optuna-dashboard" in result.output
