"""Measure an architecture: from the cache when it was measured before, else on the board or this machine."""

from __future__ import annotations

from torch import nn

from nasseg.errors import ConfigError
from nasseg.latency.measure.agent import AgentClient
from nasseg.latency.measure.backends import default_backend, measure_model, resolve_precision
from nasseg.latency.measure.cache import CacheKey, LatencyCache
from nasseg.latency.measure.device import power_mode
from nasseg.latency.result import LatencyResult
from nasseg.latency.targets import get_target
from nasseg.latency.timing import TimingSettings
from nasseg.models import ArchConfig, build, check

PREDICTOR = "predictor"  # the latency "backend" that estimates instead of measuring


def latency_backend(target: str, backend: str | None, agent: str | None) -> str:
    """The predictor for a Jetson with no agent on it (it cannot be measured from here); else the
    backend asked for, or the target's own."""
    spec = get_target(target)
    if backend is None and agent is None and spec.is_jetson:
        return PREDICTOR
    return backend or default_backend(spec)


def measure_config(
    config: ArchConfig,
    input_hw: tuple[int, int],
    target: str,
    backend: str | None = None,
    precision: str | None = None,
    *,
    agent: AgentClient | None = None,
    cache: LatencyCache | None = None,
    settings: TimingSettings | None = None,
    model: nn.Module | None = None,
) -> LatencyResult:
    """The measured latency of ``config``; an infeasible architecture raises before anything runs, a
    degenerate one is measured as it is (``check`` returns its notes: the caller reports them).

    With ``agent`` the board measures (with the backend it was started with); without, this machine
    does, on ``model`` when the caller has built it already.
    """
    spec = get_target(target)
    input_hw = (int(input_hw[0]), int(input_hw[1]))
    check(config, input_hw)
    precision = resolve_precision(spec, precision)
    if agent is not None:
        info = agent.info()
        if info["target"] != spec.name or (backend and backend != info["backend"]):
            raise ConfigError(
                f"agent {agent.url} measures {info['target']} with {info['backend']}, "
                f"not {spec.name}{f' with {backend}' if backend else ''}"
            )
        backend, mode = info["backend"], info.get("power_mode")
    else:
        backend, mode = backend or default_backend(spec), power_mode()
    key = CacheKey.for_config(config, input_hw, spec.name, backend, precision, mode)
    if cache is not None and (hit := cache.get(key)) is not None:
        return hit
    if agent is not None:
        result = agent.measure(config, input_hw, precision)
    else:
        result = measure_model(model or build(config), input_hw, spec, backend, precision, settings)
    if cache is not None:
        cache.put(key, result, config)
    return result
