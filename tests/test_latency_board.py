"""The board agent for Jetsons without nasseg: its Python 3.6 standard library diet, and measurements
end to end on loopback with a stand-in ``trtexec`` that answers as TensorRT 8.2's does
(tests/fixtures/trtexec/stand_in_trtexec.py)."""

from __future__ import annotations

import ast
import base64
import http.client
import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import yaml
from latency_fixtures import tiny
from test_layout import import_graph
from typer.testing import CliRunner

from nasseg.cli import app
from nasseg.errors import AgentError
from nasseg.latency.measure.agent import AgentClient
from nasseg.latency.measure.board import SCRIPT, board_script, check_board
from nasseg.latency.timing import TimingSettings

STAND_IN = Path(__file__).parent / "fixtures" / "trtexec" / "stand_in_trtexec.py"
QUICK_BOARD = TimingSettings(warmup_s=0.2, max_repeats=20, max_seconds=1.0)
runner = CliRunner()


# ----- the script itself ---------------------------------------------------------------------------
def _vermin(path: Path) -> subprocess.CompletedProcess:
    pytest.importorskip("vermin", reason="vermin (the dev extra) checks which Python versions a file runs on")
    command = [sys.executable, "-c", "import sys, vermin; sys.exit(vermin.main())"]
    return subprocess.run(
        [*command, "-t=3.6-", "--violations", "--no-tips", str(path)], capture_output=True, text=True, check=False
    )


def test_the_board_script_needs_only_python_3_6_and_its_standard_library(tmp_path: Path) -> None:
    done = _vermin(SCRIPT)
    assert done.returncode == 0, done.stdout + done.stderr
    # The check does catch what Python 3.6 lacks.
    newer = tmp_path / "newer.py"
    newer.write_text("import dataclasses\nprint(f'{1 + 1=}')\n")
    assert _vermin(newer).returncode != 0
    imported = {
        alias.name.split(".")[0]
        for node in ast.walk(ast.parse(SCRIPT.read_text()))
        if isinstance(node, ast.Import)
        for alias in node.names
    }
    imported |= {
        node.module.split(".")[0]
        for node in ast.walk(ast.parse(SCRIPT.read_text()))
        if isinstance(node, ast.ImportFrom) and node.module
    }
    assert imported <= sys.stdlib_module_names, imported - sys.stdlib_module_names


def test_nasseg_never_imports_the_board_script() -> None:
    board_agent = "nasseg.latency.measure.board_agent"
    assert not [m for m, deps in import_graph().items() if board_agent in deps]
    assert not import_graph()[board_agent]


def test_agent_script_prints_or_writes_the_board_script(tmp_path: Path) -> None:
    done = runner.invoke(app, ["agent", "--script"])
    assert done.exit_code == 0 and done.stdout == board_script()
    out = tmp_path / "board_agent.py"
    done = runner.invoke(app, ["agent", "--script", "-o", str(out)])
    assert done.exit_code == 0, done.output
    assert out.read_text() == board_script() and os.access(out, os.X_OK)
    done = runner.invoke(app, ["agent"])
    assert done.exit_code == 2 and "--script" in done.output


# ----- the board agent on loopback --------------------------------------------------------------------
@pytest.fixture
def trtexec(tmp_path: Path) -> Path:
    """An executable ``trtexec`` that runs the stand-in with this interpreter."""
    path = tmp_path / "bin" / "trtexec"
    path.parent.mkdir()
    path.write_text(f'#!/bin/sh\nexec "{sys.executable}" "{STAND_IN}" "$@"\n')
    path.chmod(0o755)
    return path


@contextmanager
def serving_board(trtexec: Path, tmp_path: Path, target: str = "jetson-nano", **env: str) -> Iterator[str]:
    """board_agent.py serving on a free loopback port, as it would on the board."""
    process = subprocess.Popen(
        [
            sys.executable,
            str(SCRIPT),
            "--port",
            "0",
            "--target",
            target,
            "--trtexec",
            str(trtexec),
            "--cache",
            str(tmp_path / "engines"),
        ],
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "NASSEG_STAND_IN_CALLS": str(tmp_path / "calls.jsonl"), **env},
    )
    try:
        banner = process.stderr.readline()
        assert "http://" in banner, banner + process.stderr.read()
        yield banner.rsplit(" on ", 1)[1].strip()
    finally:
        process.terminate()
        process.wait(timeout=10)


def quick_client(url: str, retries: int = 1) -> AgentClient:
    return AgentClient(url, timeout_s=120, info_timeout_s=10, retries=retries, backoff_s=0.01, timing=QUICK_BOARD)


def _calls(tmp_path: Path) -> list[dict]:
    """Each trtexec run: its arguments, and when it started and ended."""
    return [json.loads(line) for line in (tmp_path / "calls.jsonl").read_text().splitlines()]


def test_nasseg_latency_measures_through_the_board_agent(tinyseg, trtexec: Path, tmp_path: Path) -> None:
    config_file = tmp_path / "arch.yaml"
    config_file.write_text(yaml.safe_dump(tiny().to_dict()))
    with serving_board(trtexec, tmp_path) as url:
        done = runner.invoke(
            app, ["latency", str(config_file), "--target", "jetson-nano", "--input", "32x32", "--agent", url, "--json"]
        )
        assert done.exit_code == 0, done.output
        report = json.loads(done.stdout)
        assert report["kind"] == "measured" and report["backend"] == "tensorrt" and report["target"] == "jetson-nano"
        assert report["label"].startswith("measured on ") and "trtexec on the board" in report["timed"]
        assert 16.0 <= report["median_ms"] <= 16.4  # the stand-in's times, summarised here
        assert report["versions"]["tensorrt"] == "8.2.1" and report["versions"]["onnx_opset"] == "13"
        extra = report["extra"]
        assert extra["agent"] == "board" and extra["engine_cached"] is False and extra["engine_build_s"] > 0
        assert extra["gpu_compute_summary_ms"]["median"] > 0 and "clocks" in extra
        first_build = extra["engine_build_s"]
        # The second measurement of the same network loads the engine the first one built.
        again = quick_client(url).measure(tiny(), (32, 32))
        assert again.extra["engine_cached"] is True and again.extra["engine_build_s"] == first_build
        build_call, load_call = (call["argv"] for call in _calls(tmp_path))
        assert any(a.startswith("--onnx=") for a in build_call) and "--fp16" in build_call
        assert any(a.startswith("--loadEngine=") for a in load_call)
        info = quick_client(url).info()
        assert info["agent"] == "board" and info["target"] == "jetson-nano" and info["protocols"] == [2]


def test_the_board_runs_one_measurement_at_a_time(tinyseg, trtexec: Path, tmp_path: Path) -> None:
    with serving_board(trtexec, tmp_path, NASSEG_STAND_IN_HOLD="0.5") as url:
        results: list = []
        # Three host threads at once: their exports take turns here, their trtexec runs on the board.
        workers = [
            threading.Thread(target=lambda w=w: results.append(quick_client(url).measure(tiny(w), (32, 32))))
            for w in (4, 8, 12)
        ]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()
    assert len(results) == 3 and all(r.kind == "measured" for r in results)
    runs = sorted((call["start"], call["end"]) for call in _calls(tmp_path))
    assert len(runs) == 3 and all(end <= start for (_, end), (start, _) in zip(runs, runs[1:], strict=False))


def test_an_onnx_file_the_boards_tensorrt_cannot_parse_is_that_error(tinyseg, trtexec: Path, tmp_path: Path) -> None:
    # Declared a Xavier NX (TensorRT 8.5: opset 17) while its trtexec is 8.2's: the parser rejects the file.
    with serving_board(trtexec, tmp_path, target="jetson-xavier-nx") as url:
        client = quick_client(url, retries=3)
        parse_error = r"refused the request: TensorRT 8.2.1 cannot parse this ONNX file \(opset 17\)"
        with pytest.raises(AgentError, match=parse_error) as info:
            client.measure(tiny(), (32, 32), "fp16")
        assert "Failed to parse onnx file" in str(info.value)
        assert len(_calls(tmp_path)) == 1  # a request that cannot succeed is not retried
        assert not list((tmp_path / "engines").glob("*.engine*"))


def test_a_crashing_trtexec_is_reported_with_its_last_lines(tinyseg, trtexec: Path, tmp_path: Path) -> None:
    with serving_board(trtexec, tmp_path, NASSEG_STAND_IN_CRASH="1") as url:
        with pytest.raises(AgentError, match="trtexec was killed by signal 11; its last lines") as info:
            quick_client(url, retries=1).measure(tiny(), (32, 32))
        assert "Opset version:    13" in str(info.value) and "after 2 attempts" in str(info.value)


def test_a_missing_trtexec_is_named(tinyseg, trtexec: Path, tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--port", "0", "--trtexec", str(tmp_path / "none")],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2 and "no executable trtexec" in done.stderr and str(tmp_path / "none") in done.stderr
    with serving_board(trtexec, tmp_path) as url:
        trtexec.unlink()  # gone after the agent started
        with pytest.raises(AgentError, match="no executable trtexec"):
            quick_client(url, retries=0).measure(tiny(), (32, 32))


def _post(url: str, body: dict) -> tuple[int, dict]:
    host, port = url.removeprefix("http://").split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=30)
    connection.request("POST", "/measure", json.dumps(body), {"Content-Type": "application/json"})
    response = connection.getresponse()
    return response.status, json.loads(response.read())


def test_protocol_versions_are_named_on_both_sides(trtexec: Path, tmp_path: Path) -> None:
    onnx = b"not really onnx"
    with serving_board(trtexec, tmp_path) as url:
        status, answer = _post(url, {"protocol": 3, "onnx": base64.b64encode(onnx).decode(), "precision": "fp16"})
        assert status == 400 and answer["type"] == "ProtocolMismatch" and answer["protocols"] == [2]
        assert "speaks protocol 2; the host sent protocol 3" in answer["error"]
        status, answer = _post(
            url,
            {
                "protocol": 2,
                "onnx": base64.b64encode(onnx).decode(),
                "onnx_sha256": "0" * 64,
                "precision": "fp16",
                "timing": {"warmup_ms": 1, "iterations": 2, "duration_s": 1},
            },
        )
        assert status == 400 and "damaged" in answer["error"]
    newer = {"agent": "board", "protocol": 3, "protocols": [3], "target": "jetson-nano", "device": "x"}
    with pytest.raises(AgentError, match="speaks protocol 3; this nasseg speaks 2"):
        check_board("http://board:8765", newer)
    mislabelled = {**newer, "protocols": [2], "device": "NVIDIA Jetson Nano Developer Kit", "target": "jetson-tx2"}
    with pytest.raises(AgentError, match="started as jetson-tx2"):
        check_board("http://board:8765", mislabelled)
