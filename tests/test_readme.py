"""Every command the README shows is exercised: run here as written, with trailing options that make it
small (an option given twice takes its last value, so the command itself is unchanged), or named tests
that run it where it needs what this machine lacks (a board, a cluster, a database server)."""

from __future__ import annotations

import json
import re
import shlex
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from typer.testing import CliRunner

from nasseg.cli import app

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
SMALL_DATA = "synthetic:train=8,val=2,test=2"
SMALL_SEARCH = ["--data", SMALL_DATA, "--schedule", "tiny", "--steps", "2", "--budget", "1", "--no-baselines"]

# How each README command is exercised, in the README's order: ("run", extra options) runs it in a copy
# of the repository's studies/; ("ci", path) is a line .ci/run runs; ("test", "file::name") names a test
# that runs the same command or library call where this machine cannot (it must exist).
HOW: dict[str, tuple[str, object]] = {
    'pip install -e ".[dev]" "torch==2.13.0"': ("ci", ".ci/run"),
    "python -m pytest": ("ci", ".ci/run"),
    "nasseg search --space espnet --target jetson-nano --data synthetic --schedule tiny --budget 8": (
        "run",
        SMALL_SEARCH,
    ),
    "nasseg spaces": ("run", []),
    "nasseg reproduce fassd-net": ("run", []),
    "nasseg explore --space fassd --target jetson-nano --target jetson-agx-orin --samples 1000": (
        "run",
        ["--samples", "3"],
    ),
    "nasseg search studies/espnet-nano.yaml --study my-espnet-nano --workers 2": ("run", SMALL_SEARCH),
    "nasseg search --space espnet --target jetson-tx2 --data synthetic --budget 100 --max-latency 40": (
        "run",
        SMALL_SEARCH,
    ),
    "nasseg results espnet-nano": ("run", []),
    "nasseg dashboard espnet-nano -o espnet-nano.html": ("run", []),
    "nasseg export espnet-nano --pareto --out front/": ("run", ["--no-onnx"]),
    "nasseg export espnet-nano --trial 0 --out picked/": ("run", []),
    "nasseg train picked/trial-0.yaml --data camvid:../shared/data/CamVid --steps 1200 --out runs/picked-0": (
        "run",
        ["--data", SMALL_DATA, "--schedule", "tiny", "--steps", "1"],
    ),
    "nasseg targets": ("run", []),
    "nasseg latency fassd-net --target jetson-tx2 --input 512x1024": ("run", []),
    "nasseg agent --host 0.0.0.0 --port 8765 --target jetson-agx-orin": ("serve", []),
    "nasseg search --space fassd --target jetson-agx-orin --data synthetic --agent http://orin:8765": (
        "test",
        "tests/test_search.py::test_the_board_in_the_loop_measures_every_trial_and_caches_it",
    ),
    "nasseg agent --script -o board_agent.py": ("run", []),
    "python3 board_agent.py --host 0.0.0.0 --port 8765": (
        "test",
        "tests/test_latency_board.py::test_nasseg_latency_measures_through_the_board_agent",
    ),
    "nasseg latency fassd-net --target jetson-nano --agent http://nano:8765": (
        "test",
        "tests/test_latency_board.py::test_nasseg_latency_measures_through_the_board_agent",
    ),
    "nasseg search --space espnet --target jetson-nano --data synthetic --backend ray --workers 8 "
    "--storage postgresql+psycopg://USER@HOST/DB": (
        "test",
        "tests/test_search.py::test_the_ray_backend_runs_trials_as_ray_tasks"
        " tests/test_search.py::test_postgresql_storage_two_workers_one_study",
    ),
}


def readme_commands(readme: Path = README, section: str | None = None) -> list[str]:
    """Every command line of the README's bash blocks, without its comment; with ``section``, only those
    under the heading ``## <section>`` (benchmarks/newcomer_path.py reads "Start here" of a clone's README)."""
    text = readme.read_text()
    if section is not None:
        found = re.search(rf"^## {re.escape(section)}\n(.*?)(?=^## |\Z)", text, flags=re.M | re.S)
        if found is None:
            raise ValueError(f"{readme} has no section '## {section}'")
        text = found.group(1)
    commands = []
    for block in re.findall(r"```bash\n(.*?)```", text, flags=re.S):
        for line in block.splitlines():
            command = line.split(" #", 1)[0].strip()
            if command and not command.startswith("#"):
                commands.append(" ".join(command.split()))
    return commands


def test_every_readme_command_is_exercised() -> None:
    assert readme_commands() == list(HOW), "a README command without a way to exercise it, or a stale one"


@pytest.mark.parametrize("command", [c for c, (kind, _) in HOW.items() if kind in ("ci", "test")])
def test_commands_this_machine_cannot_run_are_run_elsewhere(command: str) -> None:
    kind, where = HOW[command]
    if kind == "ci":
        assert command in (ROOT / str(where)).read_text().splitlines(), f"{where} does not run {command!r} as written"
        return
    for node in str(where).split():
        path, name = node.split("::")
        assert re.search(rf"^def {name}\(", (ROOT / path).read_text(), flags=re.M), f"{node} does not exist"


@pytest.fixture
def repo_copy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A working directory with a copy of the committed studies, so commands read them unchanged."""
    shutil.copytree(ROOT / "studies", tmp_path / "studies", ignore=shutil.ignore_patterns(".lock"))
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_every_readme_command_runs_here_made_small(repo_copy: Path) -> None:
    runner = CliRunner()
    ran = []
    for command, (kind, extra) in HOW.items():
        if kind != "run":
            continue
        done = runner.invoke(app, shlex.split(command)[1:] + list(extra))  # type: ignore[arg-type]
        assert done.exit_code == 0, f"{command}: exit {done.exit_code}\n{done.output[-2000:]}"
        ran.append(command)
    assert (repo_copy / "espnet-nano.html").stat().st_size > 100_000
    assert "from http.server import" in (repo_copy / "board_agent.py").read_text()
    assert sorted(p.name for p in (repo_copy / "picked").iterdir()) == ["trial-0.onnx", "trial-0.yaml"]
    assert json.loads((repo_copy / "runs" / "picked-0" / "metrics.json").read_text())["steps"] == 1
    assert len(ran) == sum(kind == "run" for kind, _ in HOW.values())


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_the_readme_agent_command_serves(tmp_path: Path) -> None:
    # As written it runs on a Jetson (TensorRT); here the same command serves this CPU instead.
    command = next(c for c, (kind, _) in HOW.items() if kind == "serve")
    port = _free_port()
    args = shlex.split(command)[1:] + [
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--target",
        "host-cpu",
        "--backend",
        "torch",
    ]
    agent = subprocess.Popen(
        [sys.executable, "-c", "from nasseg.cli import app; app()", *args],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline, info = time.time() + 120, None
        while info is None and time.time() < deadline and agent.poll() is None:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/info", timeout=2) as answer:
                    info = json.loads(answer.read())
            except OSError:
                time.sleep(0.5)
        assert info is not None, agent.stdout.read() if agent.poll() is not None else "no answer in 120 s"
        assert info["target"] == "host-cpu"
    finally:
        agent.terminate()
        agent.wait(timeout=30)
