"""One rule for every command (issues 21 and 22.9): an input an architecture cannot run at is one error line
and exit 2; layers that only degenerate there (a dilation reaching past its map: a valid network, and
published ones do it at their own resolutions) are run, with one yellow note line each on stderr,
"note: degenerate at HxW: ...", and listed under "degenerate" in --json output."""

from __future__ import annotations

import json
import urllib.error
import urllib.request

import pytest
from latency_fixtures import QUICK, serving_agent
from typer.testing import CliRunner

import nasseg.cli.latency as latency_cli
from nasseg.cli import app
from nasseg.cli.common import EXIT_BAD_INPUT
from nasseg.models import check
from nasseg.spaces import find_baseline

runner = CliRunner()
DATA = "synthetic:train=12,val=4,test=4"


def _notes(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("note: ")]


def _expected(baseline: str, hw: tuple[int, int]) -> list[str]:
    space, name = find_baseline(baseline)
    return check(space.baseline(name), hw)


def _one_error_line(done) -> str:
    assert done.exit_code == EXIT_BAD_INPUT, done.output
    (line,) = done.stderr.splitlines()
    assert line.startswith("error: infeasible ") and "Traceback" not in done.output
    return line


# ----- nasseg latency ----------------------------------------------------------------------------------
def test_latency_of_fassd_net_at_table_ix_input_runs_with_one_note() -> None:
    """Issue 21: Table IX's own row was refused ("rate(s) [36] reach past the 16x32 map", exit 2)."""
    done = runner.invoke(app, ["latency", "fassd-net", "--target", "jetson-tx2", "--input", "512x1024"])
    assert done.exit_code == 0, done.output
    (note,) = _notes(done.stderr)
    assert note.startswith("note: degenerate at 512x1024: dapf_rates=[12, 24, 36]: rate(s) [36] reach past the 16x32")
    assert "estimated latency of fassd" in done.stdout


def test_latency_json_carries_the_degenerate_notes() -> None:
    done = runner.invoke(app, ["latency", "fassd-net-l2", "--target", "jetson-tx2", "--input", "1024x2048", "--json"])
    assert done.exit_code == 0, done.output
    report = json.loads(done.stdout)  # the notes go to stderr: stdout stays one JSON object
    assert report["kind"] == "estimated" and report["input_hw"] == [1024, 2048]
    assert report["degenerate"] == _expected("fassd-net-l2", (1024, 2048)) and "[36]" in report["degenerate"][0]
    assert _notes(done.stderr) == [f"note: degenerate at 1024x2048: {n}" for n in report["degenerate"]]
    clean = runner.invoke(app, ["latency", "fassd-net", "--target", "jetson-tx2", "--json"])  # 1024x2048: none
    assert clean.exit_code == 0 and json.loads(clean.stdout)["degenerate"] == [] and _notes(clean.stderr) == []


def test_latency_measured_on_the_host_notes_degenerate_layers_too(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(latency_cli, "TimingSettings", lambda threads=1: QUICK)
    done = runner.invoke(app, ["latency", "espnet", "--target", "host-cpu", "--input", "32x32", "--json"])
    assert done.exit_code == 0, done.output
    report = json.loads(done.stdout)
    assert report["kind"] == "measured" and report["degenerate"] == _expected("espnet", (32, 32)) != []
    assert len(_notes(done.stderr)) == len(report["degenerate"])


@pytest.mark.parametrize("target", ["jetson-tx2", "host-cpu"])
def test_latency_at_an_infeasible_input_is_one_error_line(target: str) -> None:
    line = _one_error_line(runner.invoke(app, ["latency", "espnet", "--target", target, "--input", "1x1"]))
    assert "input 1x1 is smaller than the output stride 8" in line


# ----- nasseg reproduce --------------------------------------------------------------------------------
def test_reproduce_refuses_an_infeasible_input_in_one_line() -> None:
    """Issue 22.9: ``reproduce --input 1x1`` printed MACs with no note while ``latency`` refused it."""
    done = runner.invoke(app, ["reproduce", "espnet", "--input", "1x1"])
    line = _one_error_line(done)
    assert "input 1x1 is smaller than the output stride 8" in line and "MACs" not in done.output


def test_reproduce_notes_degenerate_layers_as_latency_does() -> None:
    done = runner.invoke(app, ["reproduce", "espnet", "--input", "17x33", "--json"])
    assert done.exit_code == 0, done.output
    report = json.loads(done.stdout)
    assert report["input"] == [17, 33] and report["macs"]["ours"] > 0
    assert report["degenerate"] == _expected("espnet", (17, 33)) != []
    notes = _notes(done.stderr)
    assert notes == [f"note: degenerate at 17x33: {n}" for n in report["degenerate"]]
    # The same words from nasseg latency, for the same network at the same input.
    latency = runner.invoke(app, ["latency", "espnet", "--target", "jetson-tx2", "--input", "17x33"])
    assert latency.exit_code == 0 and _notes(latency.stderr) == notes
    table = runner.invoke(app, ["reproduce", "espnet", "--input", "17x33"], env={"COLUMNS": "200"})
    assert table.exit_code == 0 and _notes(table.stderr) == notes and "MACs @ 17x33" in table.stdout


def test_reproduce_at_the_published_input_has_no_note() -> None:
    done = runner.invoke(app, ["reproduce", "espnet-c", "--json"])
    assert done.exit_code == 0 and json.loads(done.stdout)["degenerate"] == [] and _notes(done.stderr) == []


# ----- nasseg train ------------------------------------------------------------------------------------
def test_train_notes_degenerate_layers_at_its_input_in_the_same_words(tmp_path) -> None:
    # The tiny schedule trains at 90x120, where ESPNet's dilation 16 reaches past the 12x15 level-3 map.
    args = [
        "train",
        "espnet-c",
        "--data",
        DATA,
        "--schedule",
        "tiny",
        "--steps",
        "1",
        "--out",
        str(tmp_path / "r"),
        "--json",
    ]
    done = runner.invoke(app, args)
    assert done.exit_code == 0, done.output
    metrics = json.loads(done.stdout)
    assert metrics["run"]["train_hw"] == [90, 120]
    assert metrics["degenerate_at_train_input"] == _expected("espnet-c", (90, 120)) != []
    assert _notes(done.stderr) == [f"note: degenerate at 90x120: {n}" for n in metrics["degenerate_at_train_input"]]
    stored = json.loads((tmp_path / "r" / "metrics.json").read_text())
    assert stored["degenerate_at_train_input"] == metrics["degenerate_at_train_input"]


def test_train_at_an_infeasible_input_is_one_error_line_before_anything_is_written(tmp_path) -> None:
    # FASSD-Net-L2's output stride 64 leaves no map at the tiny schedule's 90x120.
    out = tmp_path / "r"
    done = runner.invoke(app, ["train", "fassd-net-l2", "--data", DATA, "--schedule", "tiny", "--out", str(out)])
    assert "input 90x120 is too small" in _one_error_line(done)
    assert not out.exists()


# ----- the board agent ---------------------------------------------------------------------------------
@pytest.fixture
def agent_url():
    with serving_agent() as url:
        yield url


def _post(url: str, body: dict) -> tuple[int, dict]:
    request = urllib.request.Request(
        f"{url}/measure", data=json.dumps(body).encode(), method="POST", headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def test_agent_measures_degenerate_architectures_and_says_so(agent_url: str) -> None:
    space, name = find_baseline("espnet")
    config = space.baseline(name).to_dict()
    status, answer = _post(agent_url, {"config": config, "input_hw": [32, 32], "precision": None})
    assert status == 200, answer
    assert answer["result"]["kind"] == "measured" and answer["degenerate"] == _expected("espnet", (32, 32)) != []
    status, answer = _post(agent_url, {"config": config, "input_hw": [360, 480], "precision": None})
    assert status == 200 and answer["degenerate"] == []
    status, answer = _post(agent_url, {"config": config, "input_hw": [1, 1], "precision": None})
    assert status == 400 and answer["type"] == "InfeasibleArchitecture" and "output stride 8" in answer["error"]
