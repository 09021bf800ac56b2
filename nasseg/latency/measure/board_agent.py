#!/usr/bin/env python3
"""nasseg's board agent: TensorRT latency on a Jetson that has nothing but JetPack.

One file, Python 3.6's standard library and JetPack's ``trtexec``: the host does all the Python
work (builds the network, exports ONNX at an opset this board's TensorRT parses, checksums it) and
this script builds the engine, times it and answers JSON. nasseg never imports it; ``nasseg agent
--script`` prints it for copying to the board:

    python3 board_agent.py --host 0.0.0.0 --port 8765 [--target jetson-nano] [--cache DIR]

Protocol 2, JSON over HTTP:
  GET  /info     -> {"agent": "board", "protocol", "protocols", "target", "backend", "device",
                     "tensorrt", "power_mode", "clocks", "l4t", "precisions", "python"}
  POST /measure  {"protocol": 2, "onnx": base64, "onnx_sha256", "opset", "input_hw": [H, W],
                  "precision": "fp32" | "fp16" | "int8", "timing": {"warmup_ms", "iterations", "duration_s"}}
                 -> 200 {"protocol", "result": {"gpu_compute_ms": [per iteration], "engine_build_s",
                         "engine_cached", "tensorrt", "power_mode", "clocks", ...}}
                 -> 400 {"error", "type"}  the request cannot be served as sent: another protocol
                        ("ProtocolMismatch", with "protocols"), a malformed body, an ONNX file this
                        TensorRT cannot parse ("OnnxParseError", with "opset")
                 -> 500 {"error", "type"}  trtexec crashed, timed out or is gone ("TrtexecFailed",
                        "TrtexecTimeout", "TrtexecMissing"), with its output's last lines
Engines are cached on the board by the ONNX file's SHA-256, the precision and the TensorRT version. One measurement runs
at a time (a lock), so concurrent hosts queue instead of disturbing each other's timings. The agent
has no authentication: run it on a trusted network only.
"""

# The board's Python is 3.6: annotations use typing's Dict, List and Optional.
# ruff: noqa: UP006,UP035,UP045
import argparse
import base64
import glob
import hashlib
import json
import logging
import os
import platform
import re
import shutil
import socketserver
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any, Dict, List, Optional

PROTOCOL = 2
PROTOCOLS = [2]  # every protocol version this script answers
JETPACK_TRTEXEC = "/usr/src/tensorrt/bin/trtexec"  # where JetPack installs it; not on PATH by default
MAX_REQUEST_BYTES = 512 << 20  # an ONNX file of a segmentation network is a few to a few hundred MB
TAIL_LINES = 20
# int8 keeps fp16 allowed so that layers without an INT8 kernel fall back to fp16, not fp32.
PRECISION_FLAGS = {"fp32": [], "fp16": ["--fp16"], "int8": ["--int8", "--fp16"]}
# What TensorRT's ONNX parser prints when it rejects a model (trtexec 8.x and 10.x).
PARSE_FAILED = re.compile(r"Failed to parse onnx file|Parsing model failed|ModelImporter\.cpp", re.IGNORECASE)
GPU_DEVFREQ = re.compile(r"gpu|gm20b|gp10b|gv11b|ga10b")  # Nano, TX2, Xavier, Orin GPU devfreq nodes
EMC_RATE_FILES = (  # the memory clock, where this kernel exposes it (often root only)
    "/sys/kernel/debug/bpmp/debug/clk/emc/rate",
    "/sys/kernel/debug/clk/emc/clk_rate",
    "/sys/kernel/debug/clk/override.emc/clk_rate",
)
log = logging.getLogger("nasseg-board")


class BoardError(Exception):
    """A failure answered to the host: its HTTP status, a type the host can act on, and the message."""

    def __init__(self, status: int, kind: str, message: str, **fields: Any) -> None:
        super().__init__(message)
        self.status, self.kind, self.fields = status, kind, fields

    def body(self) -> Dict[str, Any]:
        body = {"error": str(self), "type": self.kind}
        body.update(self.fields)
        return body


def tail(text: str, lines: int = TAIL_LINES) -> str:
    return "\n".join(text.strip().splitlines()[-lines:])


def _read(path: str) -> Optional[str]:
    try:
        with open(path, "rb") as handle:
            return handle.read().decode("utf-8", "replace").replace("\x00", "").strip()
    except OSError:
        return None


def _command_output(command: List[str], timeout: float = 10.0) -> Optional[str]:
    """What a small query command prints, or None where it is missing or fails."""
    try:
        done = subprocess.run(command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                              encoding="utf-8", errors="replace", timeout=timeout)
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout if done.returncode == 0 else None


def find_trtexec(explicit: Optional[str] = None) -> str:
    """The trtexec to run: the one named, else the one on PATH, else JetPack's."""
    candidates = [explicit] if explicit else [shutil.which("trtexec"), JETPACK_TRTEXEC]
    for path in candidates:
        if path and os.path.isfile(path) and os.access(path, os.X_OK):
            return path
    tried = explicit or "trtexec on PATH, " + JETPACK_TRTEXEC
    raise BoardError(500, "TrtexecMissing",
                     f"no executable trtexec ({tried}); it comes with JetPack's TensorRT")


def installed_tensorrt() -> Optional[str]:
    """TensorRT's version from the package manager (JetPack installs it as Debian packages)."""
    for package in ("tensorrt", "libnvinfer10", "libnvinfer8", "libnvinfer7"):
        version = _command_output(["dpkg-query", "-W", "-f=${Version}", package])
        if version and version.strip():
            return version.strip().split("-")[0]
    return None


def power_mode() -> Optional[str]:
    """The active nvpmodel mode, as ``nvpmodel -q`` names it (e.g. MAXN, 5W)."""
    text = _command_output(["nvpmodel", "-q"])
    found = re.search(r"NV Power Mode:\s*(\S+)", text or "")
    return found.group(1) if found else None


def clocks() -> Dict[str, Any]:
    """GPU and memory clocks as the kernel reports them now, in Hz, where readable."""
    found = {}  # type: Dict[str, Any]
    for node in sorted(glob.glob("/sys/class/devfreq/*")):
        if GPU_DEVFREQ.search(os.path.basename(node)):
            for name in ("cur_freq", "min_freq", "max_freq"):
                value = _read(os.path.join(node, name))
                if value and value.isdigit():
                    found["gpu_" + name.replace("_freq", "") + "_hz"] = int(value)
            found["gpu_devfreq"] = os.path.basename(node)
            break
    for path in EMC_RATE_FILES:
        value = _read(path)
        if value and value.isdigit():
            found["emc_hz"] = int(value)
            break
    return found


def parse_trtexec(output: str) -> Dict[str, Any]:
    """The parts of trtexec's log the host keeps: its version, device, summary and build time."""
    parsed = {}  # type: Dict[str, Any]
    version = re.search(r"TensorRT version:\s*(\S+)", output) or re.search(r"\[TensorRT v(\d+)\]", output)
    if version:
        parsed["tensorrt"] = version.group(1)
    device = re.search(r"Selected Device:\s*(.+)", output)
    if device:
        parsed["device"] = device.group(1).strip()
    built = re.search(r"Engine built in\s*([0-9.]+)\s*sec", output)
    if built:
        parsed["engine_build_s"] = float(built.group(1))
    stat = re.compile(r"(min|max|mean|median|percentile\(\d+%\))\s*=\s*([0-9.eE+-]+)\s*ms")
    for label, key in (("GPU Compute Time", "gpu_compute"), ("Latency", "host_latency")):
        line = re.search(r"\]\s*" + re.escape(label) + r":\s*(.*)$", output, re.MULTILINE)
        if line:
            parsed[key + "_summary_ms"] = {k: float(v) for k, v in stat.findall(line.group(1))}
    return parsed


def run_trtexec(command: List[str], timeout_s: float, tensorrt: Optional[str], opset: Any) -> str:
    """trtexec's output; its failures become errors that say what went wrong, with its last lines."""
    try:
        process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                   encoding="utf-8", errors="replace")
    except OSError as exc:
        raise BoardError(500, "TrtexecMissing", f"cannot run {command[0]}: {exc}") from None
    try:
        output, _ = process.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        process.kill()
        output, _ = process.communicate()
        raise BoardError(500, "TrtexecTimeout",
                         f"trtexec ran over {timeout_s:g} s; its last lines:\n{tail(output)}") from None
    if process.returncode == 0:
        return output
    if PARSE_FAILED.search(output):
        tensorrt = tensorrt or parse_trtexec(output).get("tensorrt")
        message = "TensorRT {} cannot parse this ONNX file (opset {}); its last lines:\n{}".format(
            tensorrt or "(version unknown)", opset, tail(output))
        raise BoardError(400, "OnnxParseError", message, opset=opset, tensorrt=tensorrt)
    how = f"was killed by signal {-process.returncode}" if process.returncode < 0 else \
        f"exited with {process.returncode}"
    raise BoardError(500, "TrtexecFailed", "trtexec {}; its last lines:\n{}".format(how, tail(output) or "(no output)"))


def read_times(path: str) -> List[float]:
    """GPU compute time of each timed iteration from an ``--exportTimes`` file."""
    with open(path) as handle:
        return [float(entry["computeMs"]) for entry in json.load(handle) if "computeMs" in entry]


class Board:
    """This board's facts and its measurements, one at a time, with engines cached on disk."""

    def __init__(self, trtexec: str, cache_dir: str, target: Optional[str], build_timeout_s: float) -> None:
        self.trtexec, self.cache_dir, self.target = trtexec, cache_dir, target
        self.build_timeout_s = build_timeout_s
        self.tensorrt = installed_tensorrt()
        self.engine_tag = self.tensorrt or "unknown"  # fixed for the agent's life, so cached engines stay found
        self.lock = threading.Lock()
        os.makedirs(cache_dir, exist_ok=True)

    def facts(self) -> Dict[str, Any]:
        return {
            "device": _read("/proc/device-tree/model") or platform.node(),
            "l4t": (_read("/etc/nv_tegra_release") or "").split("\n")[0] or None,
            "power_mode": power_mode(),
            "clocks": clocks(),
        }

    def info(self) -> Dict[str, Any]:
        info = {"agent": "board", "protocol": PROTOCOL, "protocols": PROTOCOLS, "target": self.target,
                "backend": "tensorrt", "tensorrt": self.tensorrt, "trtexec": self.trtexec,
                "precisions": sorted(PRECISION_FLAGS), "python": platform.python_version()}
        info.update(self.facts())
        return info

    def measure(self, request: Dict[str, Any]) -> Dict[str, Any]:
        onnx, sha, precision, timing = self._validated(request)
        # An engine only loads into the TensorRT that built it: a JetPack upgrade starts a new set.
        engine = os.path.join(self.cache_dir, f"{sha}-{precision}-trt{self.engine_tag}.engine")
        flags = ["--warmUp={}".format(int(timing["warmup_ms"])), "--iterations={}".format(int(timing["iterations"])),
                 "--duration={}".format(int(timing["duration_s"])), "--useSpinWait"]
        with self.lock, tempfile.TemporaryDirectory(prefix="nasseg-board-") as work:
            times = os.path.join(work, "times.json")
            cached = os.path.isfile(engine)
            trtexec = find_trtexec(self.trtexec)  # it may have gone since the agent started
            if cached:
                command = [trtexec, "--loadEngine=" + engine]
            else:
                model = os.path.join(work, "model.onnx")
                with open(model, "wb") as handle:
                    handle.write(onnx)
                command = [trtexec, "--onnx=" + model, "--saveEngine=" + engine + ".partial"]
                command += PRECISION_FLAGS[precision]
            started = time.monotonic()
            try:
                output = run_trtexec(command + flags + ["--exportTimes=" + times], self.build_timeout_s,
                                     self.tensorrt, request.get("opset"))
            except BoardError:
                # A failed build leaves no engine behind, and a cached engine that fails is built again next time.
                for stale in (engine + ".partial",) if not cached else (engine, engine + ".json"):
                    if os.path.isfile(stale):
                        os.remove(stale)
                raise
            wall_s = time.monotonic() - started
            samples = read_times(times) if os.path.isfile(times) else []
        if not samples:
            raise BoardError(500, "TrtexecFailed", "trtexec timed no iterations; its last lines:\n" + tail(output))
        parsed = parse_trtexec(output)
        if parsed.get("tensorrt"):
            self.tensorrt = self.tensorrt or parsed["tensorrt"]
        build = self._remember_build(engine, cached, parsed, wall_s)
        result = {"gpu_compute_ms": samples, "engine_cached": cached, "precision": precision, "onnx_sha256": sha,
                  "opset": request.get("opset"), "tensorrt": self.tensorrt or parsed.get("tensorrt"),
                  "command": " ".join(command[1:] + flags)}
        result.update(build)
        result.update({k: v for k, v in parsed.items() if k not in ("tensorrt", "engine_build_s")})
        if precision == "int8":
            result["int8_scales"] = "trtexec's placeholder ranges (no calibration data): time only, outputs meaningless"
        result.update(self.facts())
        return {"protocol": PROTOCOL, "result": result}

    def _validated(self, request: Dict[str, Any]) -> Any:
        version = request.get("protocol")
        if version not in PROTOCOLS:
            raise BoardError(400, "ProtocolMismatch", "this board agent speaks protocol {}; the host sent protocol {}: "
                             "copy the host's `nasseg agent --script` to the board".format(
                                 ", ".join(map(str, PROTOCOLS)), version), protocols=PROTOCOLS)
        precision = request.get("precision")
        if precision not in PRECISION_FLAGS:
            raise BoardError(400, "BadRequest", "precision must be one of {}, got {!r}".format(
                ", ".join(sorted(PRECISION_FLAGS)), precision))
        try:
            onnx = base64.b64decode(request["onnx"], validate=True)
            sha = str(request["onnx_sha256"])
            timing = {k: float(request["timing"][k]) for k in ("warmup_ms", "iterations", "duration_s")}
        except (KeyError, TypeError, ValueError) as exc:
            raise BoardError(400, "BadRequest", "a measure request needs onnx (base64), onnx_sha256 and timing "
                             f"{{warmup_ms, iterations, duration_s}}: {exc}") from None
        if hashlib.sha256(onnx).hexdigest() != sha:
            raise BoardError(400, "BadRequest", "the ONNX file's SHA-256 is not onnx_sha256: it was damaged on the way")
        return onnx, sha, precision, timing

    def _remember_build(self, engine: str, cached: bool, parsed: Dict[str, Any], wall_s: float) -> Dict[str, Any]:
        """The engine's build time: this run's, stored beside the engine, or the stored one for a cached engine."""
        meta = engine + ".json"
        if cached:
            try:
                with open(meta) as handle:
                    return json.load(handle)
            except (OSError, ValueError):
                return {"engine_build_s": None}
        os.replace(engine + ".partial", engine)
        # trtexec prints the build time; where it does not, the whole run's wall clock bounds it from above.
        build = {"engine_build_s": parsed.get("engine_build_s", round(wall_s, 3)),
                 "engine_build_timed": "trtexec" if "engine_build_s" in parsed else "wall clock of build and timing"}
        with open(meta, "w") as handle:
            json.dump(build, handle)
        return build


class _Handler(BaseHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (stdlib signature)
        log.info("%s %s", self.address_string(), format % args)

    def _answer(self, status: int, body: Dict[str, Any]) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:  # noqa: N802 (stdlib naming)
        if self.path != "/info":
            self._answer(HTTPStatus.NOT_FOUND, {"error": "no such endpoint " + self.path, "type": "NotFound"})
            return
        self._answer(HTTPStatus.OK, self.server.board.info())  # type: ignore[attr-defined]  # a BoardServer

    def do_POST(self) -> None:  # noqa: N802 (stdlib naming)
        if self.path != "/measure":
            self._answer(HTTPStatus.NOT_FOUND, {"error": "no such endpoint " + self.path, "type": "NotFound"})
            return
        try:
            answer = self.server.board.measure(self._read_json())  # type: ignore[attr-defined]
        except BoardError as exc:
            log.warning("%s: %s", exc.kind, exc)
            self._answer(exc.status, exc.body())
        except Exception as exc:  # a bug or an unexpected board state: report it, keep serving
            log.error("measurement crashed:\n%s", traceback.format_exc())
            error = f"{type(exc).__name__}: {exc}"
            self._answer(HTTPStatus.INTERNAL_SERVER_ERROR, {"error": error, "type": "Crash"})
        else:
            self._answer(HTTPStatus.OK, answer)

    def _read_json(self) -> Dict[str, Any]:
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            raise BoardError(400, "BadRequest", "Content-Length is not a number of bytes") from None
        if not 0 < length <= MAX_REQUEST_BYTES:
            raise BoardError(400, "BadRequest",
                             f"a measure request needs a JSON body of at most {MAX_REQUEST_BYTES} bytes")
        try:
            request = json.loads(self.rfile.read(length).decode("utf-8"))
        except ValueError as exc:
            raise BoardError(400, "BadRequest", f"request body is not JSON: {exc}") from None
        if not isinstance(request, dict):
            raise BoardError(400, "BadRequest", "a measure request is a JSON object")
        return request


class BoardServer(socketserver.ThreadingMixIn, HTTPServer):
    daemon_threads = True

    def __init__(self, address: Any, board: Board) -> None:
        HTTPServer.__init__(self, address, _Handler)
        self.board = board


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(
        description=f"nasseg board agent: TensorRT latency over JSON/HTTP (protocol {PROTOCOL})")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (0.0.0.0: every interface)")
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--target", default=None, help="the nasseg target this board is, e.g. jetson-nano "
                        "(default: the host reads it from the board's model)")
    parser.add_argument("--trtexec", default=None,
                        help="trtexec to run (default: on PATH, else " + JETPACK_TRTEXEC + ")")
    parser.add_argument("--cache", default=os.path.join(os.path.expanduser("~"), ".cache", "nasseg-board"),
                        help="where engines are kept, by ONNX checksum and precision")
    parser.add_argument("--build-timeout", type=float, default=1800.0, help="seconds one trtexec run may take")
    parser.add_argument("--version", action="version", version=f"nasseg board agent, protocol {PROTOCOL}")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    try:
        board = Board(find_trtexec(args.trtexec), args.cache, args.target, args.build_timeout)
        server = BoardServer((args.host, args.port), board)
    except BoardError as exc:
        sys.stderr.write(f"nasseg board agent: {exc}\n")
        return 2
    except OSError as exc:
        sys.stderr.write(f"nasseg board agent: cannot listen on {args.host}:{args.port}: {exc.strerror or exc}\n")
        return 2
    host, port = server.server_address[:2]
    host = host.decode() if isinstance(host, bytes) else host
    sys.stderr.write("nasseg board agent (protocol {}): {}, TensorRT {}, on http://{}:{}\n".format(
        PROTOCOL, board.trtexec, board.tensorrt or "(version from trtexec's first run)", host, port))
    sys.stderr.flush()
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
