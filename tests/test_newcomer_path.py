"""The newcomer's path benchmark (benchmarks/newcomer_path.py, issue 23): its committed result is printed
again by ``report``, and it walks the README's own Start here commands. The path itself (a clone, a
fresh install, a search) takes many minutes and is not run here."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

import newcomer_path
from test_readme import HOW


def test_report_prints_every_stored_newcomer_path_result() -> None:
    stored = sorted(newcomer_path.RESULTS.glob("*.json"))
    assert stored, f"no stored result in {newcomer_path.RESULTS} (benchmarks/README.md quotes one)"
    done = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "newcomer_path.py"), "report"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    for path in stored:
        data = json.loads(path.read_text())  # a malformed file fails here, or at a missing key below
        assert data["completed"] and data["failure"] is None, path.name
        assert [s["step"] for s in data["steps"]] == list(newcomer_path.STEPS), path.name
        assert data["total_s"] == pytest.approx(sum(s["wall_s"] for s in data["steps"]), abs=0.2)
        assert all(s["exit_code"] == 0 and s["wall_s"] > 0 for s in data["steps"]), path.name
        assert data["page"]["plots"] and not data["page"]["javascript_errors"], path.name
        assert len(data["load_average_start"]) == len(data["load_average_end"]) == 3
        assert f"{path.name}: {data['date']}, commit {data['commit'][:10]}" in done.stdout
        for step in data["steps"]:
            assert f"| {step['step']} | {step['wall_s']:.1f} |" in done.stdout
        assert f"| **total** | **{data['total_s']:.1f}** |" in done.stdout
        assert f"{len(data['page']['plots'])} plots drawn" in done.stdout


def test_the_path_runs_the_readme_install_and_main_commands() -> None:
    install, main = newcomer_path.start_here(ROOT / "README.md")
    commands = list(HOW)
    assert (install, main) == (commands[0], commands[2])


def test_report_without_a_stored_result_says_so(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(newcomer_path, "RESULTS", tmp_path)
    assert newcomer_path.report() == 1
    assert "no stored result" in capsys.readouterr().err
