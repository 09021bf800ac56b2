"""The notebooks (issue 23, point 3) run top to bottom as CI runs them, and show what nasseg computes.

Each notebook is executed by nbclient in a fresh ``python3`` kernel (ipykernel) with
``NASSEG_NOTEBOOK_SMALL=1``; its outputs are then read back, cell by cell (cells are found by their
tags), and checked against the numbers computed here: a baseline's parameter count, the trials a
study holds in its storage, the provenance of every latency.
"""

from __future__ import annotations

import json
import re
import sqlite3
from contextlib import closing
from importlib.resources import files
from pathlib import Path
from typing import Any

import pytest

from nasseg.latency import estimate
from nasseg.models import build
from nasseg.profile import count_macs, count_params
from nasseg.search.results import study_results
from nasseg.search.study import load_study
from nasseg.spaces import all_spaces, find_baseline, load_space

nbformat = pytest.importorskip("nbformat", reason="pip install -e '.[dev]' (nbformat, nbclient, ipykernel)")
nbclient = pytest.importorskip("nbclient", reason="pip install -e '.[dev]' (nbformat, nbclient, ipykernel)")

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = ROOT / "notebooks"
CAMVID_DB = ROOT / "studies" / "espnet-nano" / "study.db"
PLOTLY = "application/vnd.plotly.v1+json"
pytestmark = pytest.mark.slow


def execute(name: str, monkeypatch: pytest.MonkeyPatch, **env: str) -> Any:
    """Run notebook ``name`` in small mode, in the notebooks folder as Jupyter would; its outputs."""
    monkeypatch.setenv("NASSEG_NOTEBOOK_SMALL", "1")
    for key, value in env.items():
        monkeypatch.setenv(key, value)  # the kernel inherits this process's environment
    notebook = nbformat.read(NOTEBOOKS / f"{name}.ipynb", as_version=4)
    nbclient.NotebookClient(
        notebook, timeout=900, kernel_name="python3", resources={"metadata": {"path": str(NOTEBOOKS)}}
    ).execute()
    return notebook


def cell(notebook: Any, tag: str) -> Any:
    tagged = [c for c in notebook.cells if tag in c.metadata.get("tags", [])]
    assert len(tagged) == 1, tag
    return tagged[0]


def text(code: Any) -> str:
    """What a cell printed and returned, as plain text."""
    parts = [o.text for o in code.outputs if o.output_type == "stream"]
    parts += [o.data.get("text/plain", "") for o in code.outputs if "data" in o]
    return "\n".join(parts)


def tables(code: Any) -> list[dict[str, dict[str, str]]]:
    """Every DataFrame a cell shows, from its HTML: index -> column -> cell text."""
    found = []
    for html in (o.data["text/html"] for o in code.outputs if "text/html" in o.get("data", {})):
        head, body = html.split("</thead>")
        columns = re.findall(r"<th[^>]*>(.*?)</th>", head.split("</tr>")[0])[1:]
        rows = {}
        for index, cells in re.findall(r"<tr>\s*<th>(.*?)</th>(.*?)</tr>", body, re.DOTALL):
            values = [re.sub(r"<[^>]+>", "", v).strip() for v in re.findall(r"<td[^>]*>(.*?)</td>", cells, re.DOTALL)]
            rows[index] = dict(zip(columns, values, strict=True))
        found.append(rows)
    return found


def plots(code: Any) -> list[dict]:
    return [o.data[PLOTLY] for o in code.outputs if PLOTLY in o.get("data", {})]


def snapshot(db: Path, into: Path) -> Path:
    """The study as it is now (a search may be writing it), copied through a read-only connection."""
    copy = into / "study.db"
    with (
        closing(sqlite3.connect(f"{db.resolve().as_uri()}?mode=ro", uri=True)) as source,
        closing(sqlite3.connect(copy)) as target,
    ):
        source.backup(target)
    return copy


def test_the_notebooks_are_committed_without_outputs() -> None:
    names = sorted(p.name for p in NOTEBOOKS.glob("*.ipynb"))
    assert names == ["01_spaces_and_baselines.ipynb", "02_search.ipynb", "03_latency.ipynb"]
    for name in names:
        notebook = nbformat.read(NOTEBOOKS / name, as_version=4)
        nbformat.validate(notebook)
        code = [c for c in notebook.cells if c.cell_type == "code"]
        assert all(not c.outputs and c.execution_count is None for c in code), name  # CI executes them
        assert "parameters" in code[0].metadata.get("tags", []), name  # the small settings come first


def test_spaces_and_baselines_shows_our_counts_beside_the_papers(monkeypatch) -> None:
    notebook = execute("01_spaces_and_baselines", monkeypatch)
    shown = cell(notebook, "baselines")
    (rows,) = tables(shown)
    spaces = all_spaces()
    assert set(rows) == {name for s in spaces for name in s.baselines}
    for space in spaces:
        for name, baseline in space.baselines.items():
            row = rows[name]
            assert int(row["params"]) == count_params(build(space.baseline(name))), name
            assert row["space"] == space.name and int(row["classes"]) == baseline.num_classes
            published = baseline.published.params
            assert (
                (row["published params"] == "NaN") if published is None else float(row["published params"]) == published
            )
    # MACs at the published input, counted as the paper counts them (macs_kind)
    space, _ = find_baseline("jetseg-nano")
    macs = count_macs(build(space.baseline("jetseg-nano")), space.baseline_input("jetseg-nano"))
    expected = macs.conv_macs if space.baselines["jetseg-nano"].published.macs_kind == "conv" else macs.macs
    assert float(rows["jetseg-nano"]["GMACs"]) == round(expected / 1e9, 3)
    assert sum(row["GMACs"] not in ("", "NaN") for row in rows.values()) == 3  # the small run's three
    with_paper = sum(b.published.params is not None for s in spaces for b in s.baselines.values())
    plotted = cell(notebook, "params-plot")
    assert f"{with_paper} of {len(rows)} baselines have a published parameter count" in text(plotted)
    assert len(plots(plotted)) == 1


def test_search_runs_a_small_study_draws_its_dashboard_and_reads_the_camvid_study(tmp_path, monkeypatch) -> None:
    camvid_db = snapshot(CAMVID_DB, tmp_path) if CAMVID_DB.is_file() else tmp_path / "missing.db"
    # TMPDIR: the small study's temporary folder lands in pytest's, which pytest cleans up
    notebook = execute("02_search", monkeypatch, NASSEG_NOTEBOOK_STUDY_DB=str(camvid_db), TMPDIR=str(tmp_path))

    # The small study: two enqueued baselines and a budget of two, every latency estimated.
    assert re.search(r"espnet-jetson-nano: 4 trials in \d+ s", text(cell(notebook, "small-study")))
    trials = cell(notebook, "small-trials")
    (rows,) = tables(trials)
    assert [r["status"] for r in rows.values()] == ["complete"] * 4
    assert {r["latency"] for r in rows.values()} == {"estimated"}
    espnet = load_space("espnet")
    baselines = {r["baseline"]: int(r["params"]) for r in rows.values() if r["baseline"]}
    assert baselines == {name: count_params(build(espnet.baseline(name, 11))) for name in ("espnet-c", "espnet-a-a3")}
    assert "estimated by nasseg-roofline-v1 for jetson-nano" in text(trials)

    # Its dashboard, inline: every section of the page, the Pareto plot with all four trials.
    figures = plots(cell(notebook, "dashboard"))
    assert len(figures) == 6
    trained = sum(len(t["x"]) for t in figures[0]["data"] if (t.get("meta") or {}).get("kind") == "trained")
    assert trained == 4
    assert "MB; it opens offline" in text(cell(notebook, "dashboard"))

    # The CamVid study, as its storage holds it at the snapshot.
    said = text(cell(notebook, "camvid"))
    if not CAMVID_DB.is_file():
        assert f"no study at {camvid_db}" in said
        return
    results = study_results(*load_study("espnet-nano", f"sqlite:///{camvid_db}"))
    counts: dict[str, int] = {}
    for t in results.trials:
        counts[t.status or t.state.lower()] = counts.get(t.status or t.state.lower(), 0) + 1
    scored = sum(t.scored for t in results.trials)
    assert (
        f"espnet-nano: {len(results.trials)} trials ("
        f"{', '.join(f'{n} {s}' for s, n in sorted(counts.items()))}); {scored} trained to the end"
    ) in said
    front = cell(notebook, "camvid-front")
    if not results.pareto:
        assert "no trial of espnet-nano is trained to the end yet" in text(front)
        return
    shown_front, dominance = tables(front)
    assert [int(n) for n in shown_front] == results.pareto
    assert set(dominance) == {t.baseline for t in results.trials if t.baseline and t.scored}
    for baseline, row in dominance.items():
        numbers = [int(n) for n in re.findall(r"#(\d+)", row["trials"])]
        assert numbers == results.dominated_by[baseline] and int(row["dominated by"]) == len(numbers), baseline
    assert len(plots(front)) == 1


def test_latency_labels_every_number_with_where_it_came_from(monkeypatch) -> None:
    notebook = execute("03_latency", monkeypatch)

    # Measured here and estimated, each saying so; the estimate is exactly the predictor's.
    (html,) = [o.data["text/html"] for o in cell(notebook, "measured").outputs if "text/html" in o.get("data", {})]
    for name in ("espnet-c-a3", "espnetv2-s0.5"):
        space, _ = find_baseline(name)
        expected = estimate(build(space.baseline(name)), (192, 256), "host-cpu")
        kinds = re.findall(
            rf"<th>{re.escape(name)}</th>\s*<td>(\w+)</td>\s*<td>([\d.]+)</td>\s*<td>([^<]*)</td>\s*"
            r"<td>([^<]*)</td>",
            html,
        )
        assert [k for k, *_ in kinds] == ["measured", "estimated"], name
        (_, ms_measured, iqr, where_measured), (_, ms_estimated, no_iqr, where_estimated) = kinds
        assert float(ms_measured) > 0 and float(iqr) >= 0 and where_measured.startswith("measured on ")
        assert float(ms_estimated) == round(expected.median_ms, 2) and no_iqr == "NaN"
        assert where_estimated.startswith("estimated by ")

    # The predictor's accuracy: the host calibration against stored sessions on its own CPU model...
    host = cell(notebook, "host-accuracy")
    (sessions,) = tables(host)
    assert sessions and all(int(r["architectures"]) == 10 for r in sessions.values())  # 2 per space in small mode
    assert all(0 <= float(r["Kendall tau"]) <= 1 for r in sessions.values())
    assert "calibration host-cpu/" in text(host) and len(plots(host)) == 1
    # ... and the Jetson calibrations, with the FASSD-Net TX2 timings kept out of their fit.
    jetson = cell(notebook, "jetson-accuracy")
    calibrations, check = tables(jetson)
    assert set(calibrations) == {
        "jetson-nano",
        "jetson-tx2",
        "jetson-xavier-nx",
        "jetson-agx-xavier",
        "jetson-orin-nano",
        "jetson-agx-orin",
    }
    published = json.loads(
        (files("nasseg") / "latency" / "predict" / "calibrations" / "published_jetson.json").read_text()
    )
    paper = {p["baseline"]: p["ms"] for p in published["points"] if p["source"] == "fassd-net-paper"}
    assert {name: float(r["published ms"]) for name, r in check.items()} == paper
    # The notebook says the estimates come out faster than published and keep the three's order.
    ratios = {name: float(r["estimated / published"]) for name, r in check.items()}
    assert all(0.5 < ratio < 1.0 for ratio in ratios.values()), ratios
    estimated = {name: float(r["estimated ms"]) for name, r in check.items()}
    assert sorted(estimated, key=estimated.get) == sorted(paper, key=paper.get)
    assert len(plots(jetson)) == 1

    # The landscape of ESPNet on two boards: every sample and baseline drawn on each.
    landscape = cell(notebook, "landscape")
    scatter, importance = plots(landscape)
    points = {}
    for trace in scatter["data"]:
        points[(trace["meta"], trace["name"])] = len(trace["x"])
    baselines = len(load_space("espnet").baselines)
    assert sorted(points.values()) == sorted([20, baselines] * 2) and {m for m, _ in points} == {
        "jetson-nano",
        "jetson-agx-orin",
    }
    assert len(importance["data"]) == 2
    said = text(landscape)
    assert f"espnet: {baselines} baselines and 20 random samples at 360x480" in said
    assert "jetson-agx-orin: " in said and "calibration jetson-agx-orin/" in said
