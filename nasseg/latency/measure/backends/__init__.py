"""Measurement backends: each times a network on this machine and returns a ``measured`` LatencyResult.

A backend module defines ``measure(model, input_hw, target, precision, settings)``. Modules are
imported only when used, so a missing runtime (TensorRT, torch2trt) fails only the backend that
needs it, with a message saying what is missing.
"""

from __future__ import annotations

import importlib

from torch import nn

from nasseg.errors import ConfigError
from nasseg.errors import BackendUnavailable
from nasseg.latency.measure.device import jetson_model, jetson_target_of
from nasseg.latency.result import LatencyResult
from nasseg.latency.targets import Target, get_target
from nasseg.latency.timing import TimingSettings

_BACKEND_MODULES: dict[str, str] = {
    "torch": "nasseg.latency.measure.backends.torch_backend",
    "onnxruntime": "nasseg.latency.measure.backends.onnxruntime_backend",
    "tensorrt": "nasseg.latency.measure.backends.tensorrt_backend",
    "torch2trt": "nasseg.latency.measure.backends.torch2trt_backend",
}


def backend_names() -> list[str]:
    return list(_BACKEND_MODULES)


def default_backend(target: Target) -> str:
    """What a board or machine of this kind measures with: TensorRT on a Jetson (as the papers), else torch."""
    return "tensorrt" if target.is_jetson else "torch"


def resolve_precision(target: Target, precision: str | None) -> str:
    if precision is None:
        return target.default_precision
    if precision not in target.precisions:
        raise ConfigError(f"{target.name} supports precisions {', '.join(target.precisions)}, not {precision!r}")
    return precision


def require_local(target: Target, backend: str) -> None:
    """Refuse to label a measurement with a Jetson target unless this machine is that Jetson."""
    if not target.is_jetson:
        return
    model = jetson_model()
    if model is None:
        raise BackendUnavailable(
            backend, f"to run on the {target.name} itself (run `nasseg agent` there and pass its URL with --agent)"
        )
    here = jetson_target_of(model)
    if here != target.name:
        raise ConfigError(f"this board is {model!r} ({here or 'not in the registry'}), not {target.name}")


def measure_model(
    model: nn.Module,
    input_hw: tuple[int, int],
    target: str | Target,
    backend: str,
    precision: str | None = None,
    settings: TimingSettings | None = None,
) -> LatencyResult:
    """Time ``model`` at batch 1 and ``input_hw`` with the named backend, on this machine."""
    target = get_target(target) if isinstance(target, str) else target
    if backend not in _BACKEND_MODULES:
        raise ConfigError(f"unknown backend {backend!r}; backends: {', '.join(_BACKEND_MODULES)}")
    require_local(target, backend)
    module = importlib.import_module(_BACKEND_MODULES[backend])
    return module.measure(
        model, tuple(input_hw), target, resolve_precision(target, precision), settings or TimingSettings()
    )
