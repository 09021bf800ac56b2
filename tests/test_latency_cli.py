"""``nasseg targets`` and ``nasseg latency`` from the command line (in-process, real measurements)."""

from __future__ import annotations

import json

import pytest
import yaml
from latency_fixtures import tiny
from typer.testing import CliRunner

from nasseg.cli import app
from nasseg.cli.common import EXIT_BAD_INPUT, EXIT_CHECK_FAILED
from nasseg.latency.measure.cache import LatencyCache
from nasseg.latency.targets import target_names

runner = CliRunner()


@pytest.fixture
def config_file(tinyseg, tmp_path):
    path = tmp_path / "arch.yaml"
    path.write_text(yaml.safe_dump(tiny().to_dict()))
    return path


def test_targets_json_lists_every_target_with_sources() -> None:
    done = runner.invoke(app, ["targets", "--json"])
    assert done.exit_code == 0
    rows = json.loads(done.stdout)
    assert [row["name"] for row in rows] == target_names()
    orin = rows[target_names().index("jetson-agx-orin")]
    assert orin["fp16_tflops"] == 42.5 and orin["sources"]["l2_kb"] == "[S8]"
    assert {mode["name"] for mode in orin["power_modes"]} == {"MAXN", "15W", "30W", "50W"}


def test_targets_table_names_every_target() -> None:
    done = runner.invoke(app, ["targets"], env={"COLUMNS": "200"})
    assert done.exit_code == 0
    assert all(name in done.stdout for name in target_names())


def test_latency_measures_a_config_file_on_the_host(config_file, tmp_path) -> None:
    args = ["latency", str(config_file), "--target", "host-cpu", "--input", "32x48", "--cache", str(tmp_path), "--json"]
    done = runner.invoke(app, args)
    assert done.exit_code == 0, done.output
    report = json.loads(done.stdout)
    assert report["kind"] == "measured" and report["backend"] == "torch" and report["input_hw"] == [32, 48]
    assert report["arch_hash"] == tiny().arch_hash() and report["label"].startswith("measured on ")
    assert len(LatencyCache.for_study(tmp_path)) == 1


def test_latency_without_a_board_estimates_for_a_jetson(config_file) -> None:
    done = runner.invoke(
        app, ["latency", str(config_file), "--target", "jetson-agx-orin", "--input", "64x64", "--json"]
    )
    assert done.exit_code == 0, done.output
    report = json.loads(done.stdout)
    assert report["kind"] == "estimated" and report["target"] == "jetson-agx-orin"
    assert report["predictor"] and report["calibration"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--target", "jetson-orin"], "valid targets: jetson-nano"),
        (["--target", "jetson-nano", "--backend", "tensorrt", "--input", "32x32"], "--backend predictor"),
        (["--target", "host-cpu", "--input", "33x32"], "odd"),
        (["--target", "host-cpu", "--backend", "tflite", "--input", "32x32"], "unknown backend 'tflite'"),
    ],
)
def test_bad_input_gives_one_clear_error(config_file, args, message) -> None:
    done = runner.invoke(app, ["latency", str(config_file), *args])
    assert done.exit_code == EXIT_BAD_INPUT
    assert message in " ".join(done.output.split())


def test_malformed_or_missing_architecture_file_is_named(tmp_path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("family: [unclosed")
    done = runner.invoke(app, ["latency", str(bad), "--target", "host-cpu"])
    assert done.exit_code == EXIT_BAD_INPUT and "bad.yaml: not valid YAML" in " ".join(done.output.split())
    done = runner.invoke(app, ["latency", str(tmp_path / "none.yaml"), "--target", "host-cpu"])
    assert done.exit_code == EXIT_BAD_INPUT and "no such architecture file" in done.output


def test_unreachable_agent_is_one_error_line(config_file) -> None:
    done = runner.invoke(
        app, ["latency", str(config_file), "--target", "host-cpu", "--input", "32x32", "--agent", "http://127.0.0.1:9"]
    )
    # A failed measurement (exit 1), not bad input: the same command works once the board answers.
    assert done.exit_code == EXIT_CHECK_FAILED and "after 4 attempts" in " ".join(done.output.split())


def test_a_baseline_is_estimated_at_its_published_input_by_default() -> None:
    done = runner.invoke(app, ["latency", "fassd-net", "--target", "jetson-xavier-nx", "--json"])
    assert done.exit_code == 0, done.output
    report = json.loads(done.stdout)
    assert report["kind"] == "estimated" and report["input_hw"] == [1024, 2048]  # Table I's input, not 360x480
