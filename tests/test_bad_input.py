"""Every input checked (issue 22): the broken-input corpus in tests/fixtures/broken/ through the real
commands, and the bad settings a corpus file cannot hold (devices, run directories, the spaces
directory, one broken space among good ones, a diverging run). Each must fail with one line and its
exit code: 2 for bad input, 1 for a run that failed."""

from __future__ import annotations

import json
import shutil
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
import yaml
from latency_fixtures import serving_agent
from typer.testing import CliRunner

import nasseg.cli.train as train_cli
from nasseg.cli import app
from nasseg.cli.common import EXIT_BAD_INPUT, EXIT_CHECK_FAILED
from nasseg.errors import NassegError, SpaceFileError
from nasseg.spaces import find_baseline, load_architecture, load_space
from nasseg.spaces import space as space_module
from nasseg.errors import TrainingDiverged
from nasseg.train.runs import RUN_FILE, make_run, resolve_schedule, train_run
from nasseg.yamlio import read_yaml

CORPUS = Path(__file__).parent / "fixtures" / "broken"
CASES: dict[str, dict] = yaml.safe_load((CORPUS / "cases.yaml").read_text())
DATA = "synthetic:train=12,val=4,test=4"  # small splits: the commands, not the learning, are under test
RESUME = ["train", "espnet-c", "--data", DATA, "--schedule", "tiny", "--steps", "2"]
runner = CliRunner()


def one_line(done) -> str:
    """The single line a failed command printed on stderr, after checking there is only one (notes, such
    as a degenerate layer's before a run starts, are not errors and are left out)."""
    assert "Traceback" not in done.output, done.output
    lines = [line for line in done.stderr.strip().splitlines() if not line.startswith("note: ")]
    assert len(lines) == 1, done.output
    return lines[0]


def _cases() -> Iterator:
    for file, case in CASES.items():
        for via in case["via"]:
            expect = case["expect"][via] if isinstance(case["expect"], dict) else case["expect"]
            yield pytest.param(file, via, case["exit"], expect, id=f"{via}:{file}")


def test_the_corpus_lists_every_file_it_holds() -> None:
    on_disk = {str(p.relative_to(CORPUS)) for p in CORPUS.rglob("*") if p.is_file() and p.name != "cases.yaml"}
    assert on_disk == set(CASES)


@pytest.fixture(scope="module")
def agent_url() -> Iterator[str]:
    with serving_agent() as url:
        yield url


def post(url: str, body: bytes, headers: dict[str, str] | None = None) -> tuple[int, dict]:
    request = urllib.request.Request(
        url, data=body, method="POST", headers=headers or {"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def _run_dir(out: Path, checkpoint: Path | None = None) -> Path:
    """A run directory as `nasseg train RESUME --out out` writes it, with ``checkpoint`` as its checkpoint."""
    config, _ = load_architecture("espnet-c")
    run = make_run("espnet-c", config, DATA, resolve_schedule("tiny", "espnet", 2), 0)
    out.mkdir(parents=True, exist_ok=True)
    (out / RUN_FILE).write_text(yaml.safe_dump(run.to_dict(), sort_keys=False))
    if checkpoint is not None:
        shutil.copy(checkpoint, out / "checkpoint.pt")
    return out


@pytest.mark.parametrize(("file", "via", "code", "expect"), _cases())
def test_every_broken_input_fails_with_its_one_line(file, via, code, expect, tmp_path, request) -> None:
    path = CORPUS / file
    started = time.perf_counter()
    if via == "agent":
        status, body = post(request.getfixturevalue("agent_url") + "/measure", path.read_bytes())
        assert status == code and expect in body["error"] and "\n" not in body["error"], body
        return
    args = {
        "spaces": ["spaces", str(path)],
        "train": ["train", str(path), "--data", DATA, "--out", str(tmp_path / "out")],
        "latency": ["latency", str(path), "--target", "host-cpu", "--backend", "predictor"],
        "evaluate": ["evaluate", str(tmp_path / "run")],
        "resume": [*RESUME, "--out", str(tmp_path / "run"), "--resume"],
    }[via]
    if via in ("evaluate", "resume"):
        _run_dir(tmp_path / "run", path)
    done = runner.invoke(app, args)
    assert done.exit_code == code, done.output
    assert expect in one_line(done)
    if via in ("spaces", "train", "latency"):  # refused while reading the file: the alias bombs too
        assert time.perf_counter() - started < 2.0
    if via == "train":
        assert not (tmp_path / "out").exists()  # nothing written for a run that never started
    if via == "spaces":
        with pytest.raises(SpaceFileError) as info:
            load_space(path)
        assert expect in str(info.value) and "\n" not in str(info.value)


@pytest.mark.parametrize(
    "file", ["spaces/alias_bomb.yaml", "spaces/alias_bomb_in_choices.yaml", "architectures/alias_bomb.yaml"]
)
def test_alias_bombs_are_refused_in_well_under_a_second(file) -> None:
    started = time.perf_counter()
    with pytest.raises(NassegError, match="aliases expand to more than"):
        read_yaml(CORPUS / file)
    assert time.perf_counter() - started < 0.5


# ----- devices and run directories ---------------------------------------------------------------


@pytest.mark.parametrize("device", ["cuda", "tpu", "cuda:0"])
def test_an_unusable_device_is_one_line_and_leaves_nothing_behind(device, tmp_path) -> None:
    if device.startswith("cuda") and torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    done = runner.invoke(app, [*RESUME, "--out", str(tmp_path / "run"), "--device", device])
    assert done.exit_code == EXIT_BAD_INPUT
    assert f"--device {device!r}" in one_line(done) or f"--device {device}:" in one_line(done)
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("state", ["missing", "empty"])
def test_resume_needs_a_run_to_resume(state, tmp_path) -> None:
    out = tmp_path / "run"
    if state == "empty":
        out.mkdir()
    done = runner.invoke(app, [*RESUME, "--out", str(out), "--resume"])
    assert done.exit_code == EXIT_BAD_INPUT
    assert f"nothing to resume in {out}: it holds no run.yaml" in one_line(done)
    assert not (out / RUN_FILE).exists()


def test_a_finished_run_is_kept_unless_overwrite_is_asked(tmp_path) -> None:
    out = tmp_path / "run"
    assert runner.invoke(app, [*RESUME, "--out", str(out), "--json"]).exit_code == 0
    before = {name: (out / name).read_bytes() for name in ("checkpoint.pt", "metrics.json", RUN_FILE)}
    again = runner.invoke(app, [*RESUME, "--out", str(out)])
    assert again.exit_code == EXIT_BAD_INPUT
    assert "already holds a run: continue it with --resume, or replace it with --overwrite" in one_line(again)
    assert {name: (out / name).read_bytes() for name in before} == before
    replaced = runner.invoke(app, [*RESUME, "--out", str(out), "--overwrite", "--json"])
    assert replaced.exit_code == 0, replaced.output
    assert json.loads(replaced.stdout)["steps"] == 2


# ----- the spaces directory and one broken space among good ones -------------------------------


def test_a_spaces_directory_that_does_not_exist_is_named(tmp_path, monkeypatch) -> None:
    nowhere = tmp_path / "no-such-spaces"
    monkeypatch.setattr(space_module, "SPACES_DIR", nowhere)
    for args in (["spaces"], ["reproduce", "espnet-c"], ["train", "espnet-c", "--out", str(tmp_path / "o")]):
        done = runner.invoke(app, args)
        assert done.exit_code == EXIT_BAD_INPUT
        assert f"the search-space directory {nowhere} does not exist" in one_line(done)


def test_one_corrupt_space_file_does_not_break_the_others(tmp_path, monkeypatch) -> None:
    for name in ("espnet", "fassd"):
        shutil.copy(space_module.SPACES_DIR / f"{name}.yaml", tmp_path / f"{name}.yaml")
    broken = tmp_path / "fassd.yaml"
    broken.write_text(broken.read_text().replace("\nbaselines:", "\nfamily: fassd\nbaselines:", 1))
    monkeypatch.setattr(space_module, "SPACES_DIR", tmp_path)
    space, name = find_baseline("espnet-c")
    assert space.path == tmp_path / "espnet.yaml" and name == "espnet-c"
    done = runner.invoke(app, ["reproduce", "espnet-c", "--input", "64x64", "--json"])
    assert done.exit_code == 0, done.output
    assert json.loads(done.stdout)["baseline"] == "espnet-c"
    # A name that is in no loadable file may be in the broken one: that file is reported.
    done = runner.invoke(app, ["reproduce", "fassd-net"])
    assert done.exit_code == EXIT_BAD_INPUT
    line = one_line(done)
    assert "no baseline 'fassd-net' in the space files that load" in line
    assert f"{broken}: key 'family' appears twice" in line


@pytest.mark.parametrize(
    "args",
    [
        ["reproduce", "espnet-c", "--input", "3x"],
        ["latency", "espnet-c", "--target", "host-cpu", "--input", "abc", "--backend", "predictor"],
        ["reproduce", "espnet-c", "--input", "0x64"],
    ],
)
def test_a_bad_input_size_names_the_option(args) -> None:
    done = runner.invoke(app, args)
    assert done.exit_code == EXIT_BAD_INPUT
    assert one_line(done).startswith(f"error: --input {args[args.index('--input') + 1]!r}: ")


# ----- a diverging run -----------------------------------------------------------------------------


def _run(lr: float | None, steps: int = 6):
    config, _ = load_architecture("espnet-c")
    schedule = resolve_schedule("tiny", "espnet", steps)
    return make_run("espnet-c", config, DATA, schedule.with_overrides(lr=lr) if lr else schedule, 0)


def test_a_loss_that_explodes_stops_the_run_with_its_step_and_value() -> None:
    with pytest.raises(TrainingDiverged) as info:
        train_run(_run(lr=1e3), progress=False)
    assert info.value.step <= 6 and info.value.value > 100 * 2.3
    assert f"training diverged at step {info.value.step}: loss is" in str(info.value) and "over 100x" in str(info.value)


def test_a_normal_run_does_not_trip_the_divergence_guard() -> None:
    result = train_run(_run(lr=None), progress=False)
    assert result.stopped == "completed" and result.steps == 6


def test_a_diverging_run_exits_1_with_one_line(tmp_path, monkeypatch) -> None:
    def high_lr(*args, **kwargs):
        return resolve_schedule(*args, **kwargs).with_overrides(lr=1e3)

    monkeypatch.setattr(train_cli, "resolve_schedule", high_lr)
    done = runner.invoke(
        app, ["train", "espnet-c", "--data", DATA, "--schedule", "tiny", "--steps", "6", "--out", str(tmp_path / "run")]
    )
    assert done.exit_code == EXIT_CHECK_FAILED
    line = one_line(done)
    assert line.startswith("training failed: training diverged at step ") and "over 100x its reference" in line
    assert (tmp_path / "run" / RUN_FILE).is_file()  # the run is described even though it failed


def test_a_missing_dataset_is_one_line_and_leaves_no_run_behind(tmp_path) -> None:
    out = tmp_path / "run"
    done = CliRunner().invoke(
        app, ["train", "espnet-c", "--data", f"camvid:{tmp_path / 'nowhere'}", "--schedule", "tiny", "--out", str(out)]
    )
    assert done.exit_code == EXIT_BAD_INPUT and "nowhere" in done.output, done.output
    assert not (out / "run.yaml").exists()
