"""``nasseg explore``: the latency landscape of a space, real and small.

The landscape's shortcuts (meta-device build and trace, MACs from the predictor's trace) are checked
against the public path they replace: ``estimate`` with fake tensors, ``count_params`` and fvcore's
``count_macs`` on a real build. The page is opened in headless Chromium (conftest.py's ``chromium``)
and every plot is compared with ``expected_points``.
"""

from __future__ import annotations

import dataclasses
import json
import re

import pytest
import torch
from torch import nn
from typer.testing import CliRunner

from nasseg.cli import app
from nasseg.cli.common import EXIT_BAD_INPUT
from nasseg.latency import estimate
from nasseg.latency.predict.costs import layers_of
from nasseg.latency.predict.graph import trace, trace_meta
from nasseg.latency.targets import target_names
from nasseg.models import build
from nasseg.profile import count_macs, count_params
from nasseg.spaces import load_space, space_names
from nasseg.viz import landscape as landscape_module
from nasseg.viz.landscape import (
    DIV_IMPORTANCE,
    DIV_LATENCY,
    ArchPoint,
    Estimate,
    check_targets,
    expected_points,
    explore,
    landscape_html,
    parameter_effects,
    profile_architecture,
    trace_macs,
    write_landscape_html,
)

TARGETS = ["jetson-nano", "jetson-agx-orin"]
runner = CliRunner()


@pytest.fixture(scope="module")
def small():
    """6 random ESPNet architectures and the 10 baselines on two Jetsons, in this process."""
    return explore("espnet", TARGETS, 6, seed=0, workers=1)


@pytest.fixture(scope="module")
def landscape_page(small, tmp_path_factory):
    """The page of ``small`` on disk and what every plot must draw: (path, expected_points). For a
    headless-browser test: open the path, compare each div's traces with the expected counts."""
    path = write_landscape_html(small, tmp_path_factory.mktemp("landscape") / "landscape.html")
    return path, expected_points(small)


# ----- the landscape -----------------------------------------------------------------------------
def test_a_small_landscape_has_the_baselines_and_the_samples_with_every_number(small) -> None:
    space = load_space("espnet")
    assert [p.name for p in small.baselines] == list(space.baselines)
    assert [p.name for p in small.sampled] == [f"sample-{i}" for i in range(1, 7)]
    assert small.input_hw == tuple(space.spec.search_input) and small.targets == TARGETS
    assert len({p.arch_hash for p in small.points}) == len(small.points) == 16
    assert small.draws == 6 + small.rejected + small.duplicates
    assert small.meta_traced == 16
    for point in small.points:
        assert point.config.num_classes == space.spec.num_classes
        assert point.params > 0 and 0 < point.conv_macs <= point.macs
        assert list(point.latency) == TARGETS
        for target, est in point.latency.items():
            assert est.kind == "estimated" and est.ms > 0
            assert est.label.startswith("estimated by ") and f"for {target} " in est.label
            assert est.calibration.startswith(f"{target}/") and est.calibration in est.label
    # The Orin is the faster board for every architecture.
    assert all(p.latency["jetson-agx-orin"].ms < p.latency["jetson-nano"].ms for p in small.points)


def test_the_landscape_is_json_with_its_provenance(small) -> None:
    data = json.loads(json.dumps(small.to_dict()))
    assert data["space"] == "espnet" and data["found"] == 6 and len(data["points"]) == 16
    first = data["points"][0]
    assert first["baseline"] and first["latency"]["jetson-nano"]["kind"] == "estimated"
    assert set(data["effects"]) == set(TARGETS)


def test_the_same_seed_draws_the_same_architectures_and_another_seed_others() -> None:
    space = load_space("espnet")
    first = space.sample_feasible(8, seed=3).configs
    again = space.sample_feasible(8, seed=3).configs
    other = space.sample_feasible(8, seed=4).configs
    assert [c.arch_hash() for c in first] == [c.arch_hash() for c in again]
    assert {c.arch_hash() for c in first} != {c.arch_hash() for c in other}


def test_worker_processes_give_the_same_landscape(small) -> None:
    pooled = explore("espnet", TARGETS, 6, seed=0, workers=2)
    assert pooled.workers == 2
    assert [(p.name, p.arch_hash, p.params, p.macs) for p in pooled.points] == [
        (p.name, p.arch_hash, p.params, p.macs) for p in small.points
    ]
    assert [p.latency for p in pooled.points] == [p.latency for p in small.points]


def test_zero_samples_gives_the_baselines_alone() -> None:
    only = explore("pyramid_shufflenet", ["jetson-tx2"], 0)
    assert only.sampled == [] and [p.name for p in only.points] == list(load_space("pyramid_shufflenet").baselines)
    assert only.effects == {"jetson-tx2": []}
    assert "published baselines" in landscape_html(only)


# ----- the shortcuts change nothing --------------------------------------------------------------
def _cases(space_name: str, samples: int = 1) -> list:
    space = load_space(space_name)
    first = next(iter(space.baselines))
    return [space.baseline(first, space.spec.num_classes), *space.sample_feasible(samples, seed=2).configs]


@pytest.mark.parametrize("space_name", space_names())
def test_the_fast_path_gives_what_estimate_count_params_and_fvcore_give(space_name) -> None:
    space = load_space(space_name)
    hw = tuple(space.spec.search_input)
    calibrations = check_targets(["jetson-nano", "host-cpu"])
    for config in _cases(space_name):
        fast = profile_architecture(config, hw, calibrations)
        model = build(config)
        assert fast.meta and fast.params == count_params(model)
        macs = count_macs(model, hw)
        assert (fast.macs, fast.conv_macs) == (macs.macs, macs.conv_macs)
        for target in calibrations:
            assert fast.latency[target].to_dict() == estimate(model, hw, target).to_dict()


@pytest.mark.parametrize("space_name", ["espnet", "jetseg", "fassd"])
def test_the_meta_trace_records_the_graph_the_fake_trace_records(space_name) -> None:
    hw = tuple(load_space(space_name).spec.search_input)
    shapes: dict = {}
    for config in _cases(space_name, 2):
        with torch.device("meta"):
            meta_model = build(config)
        expected = trace(build(config), hw)
        for _ in range(2):  # the second time every operator's shapes come from the memo
            got = trace_meta(meta_model, hw, shapes=shapes)
            assert [dataclasses.astuple(n) for n in got] == [dataclasses.astuple(n) for n in expected]
    assert shapes


def test_ejpnet_constants_made_in_forward_are_the_one_difference_and_cost_nothing() -> None:
    """EJPNet's pyramid pooling builds index tensors with ``torch.tensor``: with fake tensors that is a
    ``lift_fresh`` node, on the meta device no operator at all. It is free, so the layers are the same."""
    space = load_space("ejpnet")
    hw = tuple(space.spec.search_input)
    config = space.baseline("espnetv2-s1", space.spec.num_classes)
    with torch.device("meta"):
        meta_nodes = trace_meta(build(config), hw)
    fake_nodes = trace(build(config), hw)
    assert [n.op for n in fake_nodes if n.op != "aten.lift_fresh"] == [n.op for n in meta_nodes]

    def rows(nodes):
        return [
            (la.op, la.op_class, la.flops, la.bytes, la.fused, la.where, la.conv, la.shape)
            for la in layers_of(nodes, 2.0, True)
        ]

    assert rows(meta_nodes) == rows(fake_nodes)


def test_a_model_that_cannot_run_on_meta_tensors_is_traced_with_fake_tensors(monkeypatch) -> None:
    config = _cases("espnet", 0)[0]
    hw = tuple(load_space("espnet").spec.search_input)
    calibrations = check_targets(["jetson-nano"])
    fast = profile_architecture(config, hw, calibrations)

    def refuse(*_args, **_kwargs):
        raise NotImplementedError("no meta kernel")

    monkeypatch.setattr(landscape_module, "trace_meta", refuse)
    slow = profile_architecture(config, hw, calibrations)
    assert not slow.meta and (slow.params, slow.macs, slow.latency) == (fast.params, fast.macs, fast.latency)


class _DeadBranch(nn.Module):
    """A conv whose result nothing reads: eager PyTorch runs it, an exported graph (and fvcore) drops it."""

    def __init__(self) -> None:
        super().__init__()
        self.used = nn.Conv2d(3, 8, 3, padding=1)
        self.norm = nn.BatchNorm2d(8)
        self.dead = nn.Conv2d(3, 64, 3, padding=1)

    def forward(self, x):
        self.dead(x)
        y = self.norm(self.used(x))
        return nn.functional.interpolate(y, scale_factor=2, mode="bilinear", align_corners=False)


def test_trace_macs_counts_what_fvcore_counts_and_skips_dead_layers() -> None:
    model = _DeadBranch().eval()
    macs = count_macs(model, (16, 20))
    total, conv = trace_macs(trace(model, (16, 20)))
    assert (total, conv) == (macs.macs, macs.conv_macs)
    assert conv == 16 * 20 * 8 * 3 * 9  # the used conv alone
    assert total == conv + 2 * 8 * 16 * 20 + 4 * 8 * 32 * 40  # + affine batch norm + bilinear resize


# ----- which parameters move latency -------------------------------------------------------------
def test_a_parameter_that_alone_sets_latency_gets_all_the_share() -> None:
    space = load_space("espnet")
    configs = space.sample_feasible(60, seed=1).configs
    scale = {v: i + 1.0 for i, v in enumerate(sorted({c.params["width_l1"] for c in configs}))}
    points = [
        ArchPoint(
            f"s{i}",
            False,
            c,
            c.arch_hash(),
            1,
            1,
            1,
            {"t": Estimate(10.0 * scale[c.params["width_l1"]], "estimated by test", "cal", "p")},
        )
        for i, c in enumerate(configs)
    ]
    effects = parameter_effects(space, points, "t")
    assert {e.parameter for e in effects} == set(space.parameters)
    assert effects[0].parameter == "width_l1" and effects[0].share == pytest.approx(1.0)
    assert effects[0].ratio == pytest.approx(len(scale))
    assert all(e.share < 0.2 for e in effects[1:])
    assert sum(n for _, n, _ in effects[0].levels) == 60


def test_effects_are_shares_sorted_largest_first(small) -> None:
    for target in TARGETS:
        shares = [e.share for e in small.effects[target]]
        assert shares == sorted(shares, reverse=True) and all(0 <= s <= 1 for s in shares)
        assert all(e.ratio >= 1 for e in small.effects[target])


# ----- the page ----------------------------------------------------------------------------------
def test_the_page_is_self_contained(landscape_page) -> None:
    path, _ = landscape_page
    page = path.read_text(encoding="utf-8")
    assert page.startswith("<!DOCTYPE html>")
    # plotly.js inlined once (its bundle is megabytes), nothing fetched from anywhere
    assert page.count("Plotly.newPlot") >= 2 and len(page) > 3_000_000
    assert re.search(r"""<script[^>]*\bsrc\s*=""", page, re.IGNORECASE) is None
    assert re.search(r"""<link[^>]*\bhref\s*=\s*["']?(https?:)?//""", page, re.IGNORECASE) is None
    assert "mathjax" not in page.lower().split("</head>")[0]


def test_the_page_shows_every_point_labelled_and_says_what_to_expect(small, landscape_page) -> None:
    path, expected = landscape_page
    page = path.read_text(encoding="utf-8")
    for div in (DIV_LATENCY, DIV_IMPORTANCE):
        assert f'id="{div}"' in page
    embedded = re.search(r'<script id="landscape-expected" type="application/json">(.*?)</script>', page, re.S)
    assert json.loads(embedded.group(1)) == expected
    assert [t["points"] for t in expected[DIV_LATENCY]] == [6, 10, 6, 10]
    assert [t["meta"] for t in expected[DIV_LATENCY]] == [TARGETS[0], TARGETS[0], TARGETS[1], TARGETS[1]]
    assert [t["points"] for t in expected[DIV_IMPORTANCE]] == [len(load_space("espnet").parameters)] * 2
    assert all(f'"{p.name}"' in page for p in small.baselines)
    assert "estimated" in page and small.points[0].latency["jetson-nano"].calibration in page


LANDSCAPE_JS = """
return Array.from(document.querySelectorAll('.js-plotly-plot')).map(gd => ({
  id: gd.id, drawn: !!(gd._fullLayout && gd._fullData), height: gd.getBoundingClientRect().height,
  traces: gd.data.map((t, i) => ({
    name: t.name, meta: t.meta, points: Array.from(t.x || []).filter(v => v !== null).length,
    visible: (gd._fullData[i] || {}).visible !== false,
  })),
  markers: gd.querySelectorAll('.scatterlayer .trace .points path').length,
  labels: gd.querySelectorAll('.scatterlayer .trace .textpoint').length,
  bars: gd.querySelectorAll('.barlayer .trace .point').length,
}));
"""


def test_the_page_draws_every_point_in_chromium(small, landscape_page, chromium, tmp_path) -> None:
    """Opened in headless Chromium: no JavaScript error, each plot drawn with exactly the points the
    landscape holds (as marker paths, baseline labels and bars), and a screenshot of the whole page."""
    path, expected = landscape_page
    plots, log = chromium.open_plots(path, tmp_path / "landscape.png", LANDSCAPE_JS)
    assert not [entry for entry in log if entry["level"] == "SEVERE"], log
    by_id = {plot["id"]: plot for plot in plots}
    assert set(by_id) == set(expected) == {DIV_LATENCY, DIV_IMPORTANCE}
    for div, traces in expected.items():
        plot = by_id[div]
        assert plot["drawn"] and plot["height"] > 250, div
        assert [{k: t[k] for k in ("name", "meta", "points")} for t in plot["traces"]] == traces, div
        assert all(t["visible"] for t in plot["traces"]), div
    latency = by_id[DIV_LATENCY]
    assert latency["markers"] == sum(t["points"] for t in expected[DIV_LATENCY]) == 2 * 16
    assert latency["labels"] == len(small.baselines) * len(small.targets)
    assert by_id[DIV_IMPORTANCE]["bars"] == sum(t["points"] for t in expected[DIV_IMPORTANCE])
    assert (tmp_path / "landscape.png").stat().st_size > 50_000


# ----- the command line --------------------------------------------------------------------------
def one_line(done) -> str:
    assert "Traceback" not in done.output, done.output
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.output
    return lines[0]


def test_explore_writes_the_page_and_prints_json(tmp_path) -> None:
    out = tmp_path / "page.html"
    done = runner.invoke(
        app,
        [
            "explore",
            "--space",
            "pyramid_shufflenet",
            "--target",
            "jetson-nano",
            "--target",
            "jetson-orin-nano",
            "--samples",
            "2",
            "--seed",
            "5",
            "-o",
            str(out),
            "--json",
        ],
    )
    assert done.exit_code == 0, done.output
    data = json.loads(done.stdout)
    assert data["html"] == str(out) and out.is_file() and data["targets"] == ["jetson-nano", "jetson-orin-nano"]
    assert data["found"] == 2 and data["seed"] == 5
    assert all(p["latency"]["jetson-orin-nano"]["kind"] == "estimated" for p in data["points"])


def test_explore_prints_a_summary_table(tmp_path) -> None:
    out = tmp_path / "page.html"
    done = runner.invoke(
        app,
        ["explore", "--space", "espnet", "--target", "jetson-tx2", "--samples", "3", "-o", str(out)],
        env={"COLUMNS": "200"},
    )
    assert done.exit_code == 0, done.output
    space = load_space("espnet")
    hw, classes = tuple(space.spec.search_input), space.spec.num_classes
    ms = {name: estimate(build(space.baseline(name, classes)), hw, "jetson-tx2").median_ms for name in space.baselines}
    fastest, slowest = min(ms, key=ms.__getitem__), max(ms, key=ms.__getitem__)
    assert "Latency (estimated) by board" in done.stdout
    assert f"{fastest} {ms[fastest]:.2f} ms" in done.stdout and f"{slowest} {ms[slowest]:.2f} ms" in done.stdout
    assert "calibration jetson-tx2/" in done.stdout and str(out) in done.stdout and out.is_file()


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--space", "nope", "--target", "jetson-nano"], "no search space 'nope'; spaces: " + ", ".join(space_names())),
        (
            ["--space", "espnet", "--target", "nope"],
            "unknown target 'nope'; valid targets: " + ", ".join(target_names()),
        ),
        (["--space", "espnet", "--target", "jetson-nano", "--target", "cuda"], "for target 'cuda'; available: "),
        (["--space", "espnet"], "give at least one --target; targets: " + ", ".join(target_names())),
        (["--space", "espnet", "--target", "jetson-nano", "--samples", "-1"], "--samples -1: must be 0 or more"),
        (["--space", "espnet", "--target", "jetson-nano", "--workers", "0"], "--workers 0: must be 1 or more"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(args, says, tmp_path) -> None:
    done = runner.invoke(app, ["explore", *args, "-o", str(tmp_path / "x.html")])
    assert done.exit_code == EXIT_BAD_INPUT
    assert says in one_line(done)
    assert not (tmp_path / "x.html").exists()


def test_the_documented_explore_commands_run_with_fewer_samples(tmp_path, monkeypatch) -> None:
    """Every ``nasseg explore`` line of docs/dashboards.md, as written except for a smaller ``--samples``
    (the README's are run by tests/test_readme.py)."""
    import shlex
    from pathlib import Path

    guide = (Path(__file__).resolve().parents[1] / "docs" / "dashboards.md").read_text()
    lines = [line.split("#")[0] for line in guide.splitlines() if line.startswith("nasseg explore ")]
    assert len(lines) >= 2
    monkeypatch.chdir(tmp_path)
    for line in lines:
        argv = shlex.split(line)[1:]
        argv[argv.index("--samples") + 1] = "2"
        done = runner.invoke(app, argv)
        assert done.exit_code == 0, (line, done.output)
    assert (tmp_path / "landscape-fassd.html").is_file() and (tmp_path / "tx2.html").is_file()
