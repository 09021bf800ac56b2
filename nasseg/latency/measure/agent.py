"""The board in the loop: a JSON-over-HTTP agent on the board, and the host's client for it.

The agent (``nasseg agent`` on the Jetson) receives an ArchConfig as JSON, builds the network,
measures it with its backend and answers the LatencyResult as JSON. Nothing is unpickled: a
request can only name a family and parameter values. One measurement runs at a time (a lock),
so concurrent clients queue instead of disturbing each other's timings.

A Jetson without nasseg runs ``board_agent.py`` instead (protocol 2, ``nasseg.latency.measure.board``):
the same client talks to both, and tells them apart by their /info.

Protocol (version 1):
  GET  /info     -> {"protocol", "target", "backend", "device", "power_mode", "precisions", "versions"}
  POST /measure  {"config": ArchConfig.to_dict(), "input_hw": [H, W], "precision": "fp16" | null}
                 -> 200 {"result": LatencyResult.to_dict(), "degenerate": [notes from check]}: a degenerate
                        architecture (layers that read only padding at this input) is measured, and said so
                 -> 400 {"error", "type"}  bad request (a config that is not a point of its family's space, an
                                           infeasible architecture, an input too large for the target's
                                           memory, a malformed body, ...): not retried
                 -> 500 {"error", "type"}  the measurement crashed: retried by the client
"""

from __future__ import annotations

import json
import logging
import math
import threading
import time
import traceback
import urllib.error
import urllib.request
from dataclasses import dataclass
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import torch
from torch import nn

from nasseg.errors import InfeasibleArchitecture, NassegError
from nasseg.errors import AgentError, AgentUnreachable
from nasseg.latency.measure.backends import measure_model, require_local, resolve_precision
from nasseg.latency.measure.board import board_result, check_board, export_opset, is_board, measure_request
from nasseg.latency.measure.device import cpu_name, jetson_model, power_mode, software_versions
from nasseg.latency.result import LatencyResult
from nasseg.latency.targets import Target, get_target
from nasseg.latency.timing import TimingSettings
from nasseg.models import ArchConfig, build, check
from nasseg.profile import peak_activation_bytes
from nasseg.spaces import config_from_dict

PROTOCOL = 1
MAX_REQUEST_BYTES = 1 << 20  # an ArchConfig is a few KB; refuse anything that is clearly not one
log = logging.getLogger("nasseg.agent")


@dataclass
class AgentSettings:
    target: Target
    backend: str
    timing: TimingSettings


class _Handler(BaseHTTPRequestHandler):
    server: _AgentServer

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (stdlib signature)
        log.info("%s %s", self.address_string(), format % args)

    def _answer(self, status: HTTPStatus, body: dict[str, Any]) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:  # noqa: N802 (stdlib naming)
        if self.path != "/info":
            self._answer(HTTPStatus.NOT_FOUND, {"error": f"no such endpoint {self.path}", "type": "NotFound"})
            return
        self._answer(HTTPStatus.OK, self.server.info())

    def do_POST(self) -> None:  # noqa: N802 (stdlib naming)
        if self.path != "/measure":
            self._answer(HTTPStatus.NOT_FOUND, {"error": f"no such endpoint {self.path}", "type": "NotFound"})
            return
        try:
            request = self._read_json()
            result, degenerate = self.server.measure(request)
        except NassegError as exc:
            self._answer(HTTPStatus.BAD_REQUEST, {"error": str(exc), "type": type(exc).__name__})
        except Exception as exc:  # a crash in a runtime: report it, keep serving
            log.error("measurement crashed:\n%s", traceback.format_exc())
            self._answer(HTTPStatus.INTERNAL_SERVER_ERROR, {"error": f"{type(exc).__name__}: {exc}", "type": "Crash"})
        else:
            self._answer(HTTPStatus.OK, {"result": result.to_dict(), "degenerate": degenerate})

    def _read_json(self) -> dict[str, Any]:
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            length_text = self.headers.get("Content-Length")
            raise AgentError(f"Content-Length {length_text!r} is not a number of bytes") from None
        if not 0 < length <= MAX_REQUEST_BYTES:
            raise AgentError(f"a measure request needs a JSON body of at most {MAX_REQUEST_BYTES} bytes")
        try:
            request = json.loads(self.rfile.read(length))
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise AgentError(f"request body is not JSON: {exc}") from None
        if not isinstance(request, dict) or "config" not in request or "input_hw" not in request:
            raise AgentError("a measure request needs 'config' and 'input_hw'")
        return request


class _AgentServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], settings: AgentSettings) -> None:
        super().__init__(address, _Handler)
        self.settings = settings
        self._one_at_a_time = threading.Lock()

    def info(self) -> dict[str, Any]:
        target = self.settings.target
        if target.kind == "host-cpu":
            device = cpu_name()
        else:
            device = jetson_model() or (torch.cuda.get_device_name() if torch.cuda.is_available() else "no CUDA device")
        return {
            "protocol": PROTOCOL,
            "target": target.name,
            "backend": self.settings.backend,
            "device": device,
            "power_mode": power_mode(),
            "precisions": list(target.precisions),
            "versions": software_versions("onnxruntime", "tensorrt", "torch2trt"),
        }

    def measure(self, request: dict[str, Any]) -> tuple[LatencyResult, list[str]]:
        """The measurement, with ``check``'s notes on degenerate layers (an infeasible request raises)."""
        config = config_from_dict(request["config"])  # a point of its family's space, as a baseline is
        input_hw = _parse_hw(request["input_hw"])
        settings = self.settings
        precision = resolve_precision(settings.target, request.get("precision"))
        notes = check(config, input_hw)
        fits_in_memory(config, None, input_hw, settings.target, precision)  # the cheap bound, before building
        with self._one_at_a_time:
            model = build(config)
            fits_in_memory(config, model, input_hw, settings.target, precision)
            return measure_model(model, input_hw, settings.target, settings.backend, precision, settings.timing), notes


PROBE_PIXELS = 1 << 16  # the activation estimate's probe input: at most 256x256, one forward of milliseconds
_ELEMENT_BYTES = {"fp32": 4, "fp16": 2, "int8": 1}


def fits_in_memory(
    config: ArchConfig, model: nn.Module | None, input_hw: tuple[int, int], target: Target, precision: str
) -> None:
    """Refuse an input whose activations cannot fit in the target's memory (``Target.memory_bytes``).

    Two estimates, both of batch-1 inference activations: a floor that needs no network (the input
    image and the logits, both at full resolution, are alive together at the network's end), and,
    with ``model``, its peak of live activations measured on a probe input of at most
    ``PROBE_PIXELS`` with the request's aspect ratio, scaled by the pixel ratio (a fully
    convolutional network's activations grow with H x W). Weights, workspaces and the runtime come
    on top, so an input that passes may still not fit; one refused certainly does not.
    """
    capacity = target.memory_bytes()
    if capacity is None:
        return
    h, w = input_hw
    scale = _ELEMENT_BYTES.get(precision, 4) / 4
    need = (3 + config.num_classes) * h * w * 4 * scale
    how = f"the input image and its {config.num_classes}-class logits alone"
    if need <= capacity and model is not None:
        shrink = max(1.0, math.sqrt(h * w / PROBE_PIXELS))
        probe = (max(32, math.ceil(h / shrink / 32) * 32), max(32, math.ceil(w / shrink / 32) * 32))
        if probe[0] * probe[1] >= h * w:
            probe = (h, w)
        try:
            check(config, probe)
        except InfeasibleArchitecture:
            return  # no probe this network can run at: the floor stands
        peak = peak_activation_bytes(model, probe)
        need = peak * (h * w) / (probe[0] * probe[1]) * scale
        how = f"peak activations, {peak / 2**20:.1f} MiB measured at {probe[0]}x{probe[1]} and scaled by pixels"
    if need > capacity:
        raise AgentError(
            f"input_hw {h}x{w} needs about {need / 2**30:.1f} GiB of {precision} activation memory ({how}); "
            f"{target.name} has {capacity / 2**30:.1f} GiB"
        )


def _parse_hw(value: Any) -> tuple[int, int]:
    if not (
        isinstance(value, list | tuple)
        and len(value) == 2
        and all(isinstance(v, int) and not isinstance(v, bool) for v in value)
    ):
        raise AgentError(f"input_hw must be [height, width], two integers, got {value!r}"[:300])
    h, w = value
    if h < 1 or w < 1:
        raise AgentError(f"input_hw must be positive, got {value!r}")
    return h, w


def make_server(host: str, port: int, settings: AgentSettings) -> _AgentServer:
    """A bound (not yet serving) agent; fails at once if this machine cannot measure for the target."""
    require_local(settings.target, settings.backend)
    try:
        return _AgentServer((host, port), settings)
    except OSError as exc:
        raise AgentError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None


# ----- host side -------------------------------------------------------------------------------
class AgentClient:
    """Talks to one agent: timeouts on every call, bounded retries with back-off on failures that may pass.

    Retried: no connection, a timeout, a 5xx (the measurement crashed). Not retried: a 4xx, which
    means the request itself is wrong (the error is raised with the agent's message).
    """

    def __init__(
        self,
        url: str,
        *,
        timeout_s: float = 1800.0,
        info_timeout_s: float = 10.0,
        retries: int = 3,
        backoff_s: float = 1.0,
        timing: TimingSettings | None = None,
    ) -> None:
        self.url = url.rstrip("/")
        if not self.url.startswith(("http://", "https://")):
            self.url = f"http://{self.url}"
        self.timeout_s, self.info_timeout_s = timeout_s, info_timeout_s
        self.retries, self.backoff_s = retries, backoff_s
        self.timing = timing or TimingSettings()  # what a board agent gives trtexec (a nasseg agent has its own)
        self._info: dict[str, Any] | None = None

    def info(self) -> dict[str, Any]:
        """The agent's /info; for a board agent, checked to speak our protocol and completed with its target."""
        info = self._call("GET", "/info", None, self.info_timeout_s)
        if is_board(info):
            info = check_board(self.url, info)
        elif info.get("protocol") != PROTOCOL:
            raise AgentError(
                f"agent {self.url} speaks protocol {info.get('protocol')}; this nasseg speaks {PROTOCOL} "
                "to a nasseg agent: run the same nasseg on the board and the host"
            )
        self._info = info
        return info

    def measure(self, config: ArchConfig, input_hw: tuple[int, int], precision: str | None = None) -> LatencyResult:
        info = self._info or self.info()
        if is_board(info):
            return self._measure_on_board(info, config, (int(input_hw[0]), int(input_hw[1])), precision)
        body = {"config": config.to_dict(), "input_hw": list(input_hw), "precision": precision}
        return LatencyResult.from_dict(self._call("POST", "/measure", body, self.timeout_s)["result"])

    def _measure_on_board(
        self, info: dict[str, Any], config: ArchConfig, input_hw: tuple[int, int], precision: str | None
    ) -> LatencyResult:
        """Build and export here, time there: the board has no nasseg, so the checks a nasseg agent makes run here."""
        target = get_target(info["target"])
        precision = resolve_precision(target, precision)
        check(config, input_hw)
        fits_in_memory(config, None, input_hw, target, precision)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)  # the same architecture exports the same file, whose engine the board has cached
            model = build(config)
        fits_in_memory(config, model, input_hw, target, precision)
        body = measure_request(model, input_hw, precision, export_opset(target, info), self.timing)
        answer = self._call("POST", "/measure", body, self.timeout_s)
        return board_result(answer, target, input_hw, precision, self.timing)

    def _call(self, method: str, path: str, body: dict[str, Any] | None, timeout: float) -> dict[str, Any]:
        attempts = self.retries + 1
        last_problem = ""
        for attempt in range(attempts):
            if attempt:
                time.sleep(self.backoff_s * 2 ** (attempt - 1))
            try:
                return self._send(method, path, body, timeout)
            except urllib.error.HTTPError as exc:
                answer = _error_body(exc)
                if exc.code < 500:
                    raise AgentError(f"agent {self.url} refused the request: {answer}") from None
                last_problem = f"the measurement crashed on the agent: {answer}"
            except (urllib.error.URLError, OSError) as exc:
                reason = getattr(exc, "reason", exc)
                last_problem = f"no answer ({reason})"
        error = AgentError if last_problem.startswith("the measurement crashed") else AgentUnreachable
        raise error(f"agent {self.url}{path}: {last_problem}, after {attempts} attempts")

    def _send(self, method: str, path: str, body: dict[str, Any] | None, timeout: float) -> dict[str, Any]:
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(
            self.url + path, data=data, method=method, headers={"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310 (http(s) only, checked above)
            return json.loads(response.read())


def _error_body(exc: urllib.error.HTTPError) -> str:
    try:
        return json.loads(exc.read()).get("error", exc.reason)
    except (json.JSONDecodeError, AttributeError, OSError):
        return str(exc.reason)
