"""``nasseg train``, ``nasseg evaluate`` and ``nasseg reproduce --train`` from the command line (in-process)."""

from __future__ import annotations

import json

import pytest
import yaml
from typer.testing import CliRunner

import nasseg.train.runs as runs
from nasseg.cli import app
from nasseg.cli.common import EXIT_BAD_INPUT, EXIT_CHECK_FAILED
from nasseg.errors import TrainingDiverged

runner = CliRunner()
DATA = "synthetic:train=12,val=4,test=4"  # small splits: the commands, not the learning, are under test


def _train(out, *extra: str):
    args = ["train", "espnet-c", "--data", DATA, "--schedule", "tiny", "--steps", "4", "--out", str(out), "--json"]
    return runner.invoke(app, [*args, *extra])


def test_train_writes_checkpoint_run_and_metrics(tmp_path) -> None:
    done = _train(tmp_path / "run")
    assert done.exit_code == 0, done.output
    metrics = json.loads(done.stdout)
    assert metrics["steps"] == 4 and metrics["stopped"] == "completed" and 0 <= metrics["miou"] <= 1
    assert len(metrics["per_class_iou"]) == 11 and metrics["train_images"] == 12 and metrics["val_images"] == 4
    run = yaml.safe_load((tmp_path / "run" / "run.yaml").read_text())
    assert run["architecture"]["num_classes"] == 11  # classes come from the data
    assert run["schedule"]["name"] == "tiny" and run["schedule"]["steps"] == 4
    assert json.loads((tmp_path / "run" / "metrics.json").read_text())["miou"] == metrics["miou"]
    assert (tmp_path / "run" / "checkpoint.pt").is_file()


def test_evaluate_rescores_the_checkpoint_exactly(tmp_path) -> None:
    trained = json.loads(_train(tmp_path / "run").stdout)
    done = runner.invoke(app, ["evaluate", str(tmp_path / "run"), "--json"])
    assert done.exit_code == 0, done.output
    report = json.loads(done.stdout)
    assert report["miou"] == trained["miou"] and report["input_hw"] == trained["run"]["eval_hw"]
    test_split = json.loads(runner.invoke(app, ["evaluate", str(tmp_path / "run"), "--split", "test", "--json"]).stdout)
    assert test_split["split"] == "test" and sum(map(sum, test_split["confusion"])) > 0


def test_resume_continues_the_same_run_and_refuses_another(tmp_path) -> None:
    out = tmp_path / "run"
    assert _train(out).exit_code == 0
    again = _train(out, "--resume")  # already complete: nothing more to train, same result
    assert again.exit_code == 0 and json.loads(again.stdout)["steps"] == 4
    other = runner.invoke(
        app, ["train", "espnet-c", "--data", DATA, "--schedule", "tiny", "--steps", "6", "--out", str(out), "--resume"]
    )
    assert other.exit_code == EXIT_BAD_INPUT and "different run" in other.output


def test_reproduce_train_adds_mIoU_beside_the_published_figures(tmp_path) -> None:
    args = [
        "reproduce",
        "espnet-c",
        "--train",
        "--data",
        DATA,
        "--schedule",
        "tiny",
        "--steps",
        "2",
        "--out",
        str(tmp_path / "rep"),
        "--json",
    ]
    done = runner.invoke(app, args)
    assert done.exit_code == 0, done.output
    report = json.loads(done.stdout)
    trained = report["trained"]
    assert trained["steps"] == 2 and trained["schedule"] == "paper-espnet@tiny" and 0 <= trained["miou"] <= 1
    assert report["published"]["miou"]  # the paper's figure stays beside ours
    run = yaml.safe_load((tmp_path / "rep" / "run.yaml").read_text())
    assert run["schedule"]["optimizer"] == "adam" and run["schedule"]["loss"] == "weighted_ce"  # ESPNet's recipe


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["train", "espnet-c", "--data", "camvid:/no/such/dir"], "/no/such/dir"),
        (["train", "espnet-c", "--data", "imagenet:/x"], "unknown dataset URI"),
        (["train", "espnet-c", "--data", DATA, "--schedule", "forever"], "no schedule 'forever'"),
        (["train", "no-such-net", "--data", DATA], "no baseline 'no-such-net'"),
        (["evaluate", "/no/such/run"], "no such checkpoint"),
    ],
)
def test_bad_input_is_one_clear_error(tmp_path, args, message) -> None:
    done = runner.invoke(app, [*args, "--out", str(tmp_path / "x")] if args[0] == "train" else args)
    assert done.exit_code == EXIT_BAD_INPUT, done.output
    assert message in done.output and "Traceback" not in done.output


def test_a_diverging_run_fails_with_exit_1_and_its_reason(tmp_path, monkeypatch) -> None:
    def diverge(*_args, **_kwargs):
        raise TrainingDiverged(3, float("nan"))

    monkeypatch.setattr(runs, "train", diverge)
    done = _train(tmp_path / "run")
    assert done.exit_code == EXIT_CHECK_FAILED and "training failed" in done.output
    assert "training diverged at step 3: loss is nan" in done.output
    assert (tmp_path / "run" / "run.yaml").is_file()  # the run is described even though it failed
