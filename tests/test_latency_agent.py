"""The board in the loop, end to end on loopback, with the torch host-CPU backend standing in for TensorRT."""

from __future__ import annotations

import http.client
import json
import math
import socket
import threading
import time
from collections.abc import Iterator

import pytest
from latency_fixtures import Concurrency, serving_agent, tiny

from nasseg.errors import ConfigError
from nasseg.errors import AgentError, AgentUnreachable
from nasseg.latency.measure.agent import AgentClient, fits_in_memory
from nasseg.latency.measure.cache import LatencyCache
from nasseg.latency.measure.measure import measure_config
from nasseg.latency.targets import get_target
from nasseg.models import ArchConfig, build
from nasseg.spaces import all_spaces, load_space


@pytest.fixture
def agent_url(tinyseg) -> Iterator[str]:
    with serving_agent() as url:
        yield url


def quick_client(url: str, retries: int = 2) -> AgentClient:
    return AgentClient(url, timeout_s=60, info_timeout_s=5, retries=retries, backoff_s=0.01)


def test_agent_reports_its_device_and_versions(agent_url: str) -> None:
    info = quick_client(agent_url).info()
    assert info["protocol"] == 1 and info["target"] == "host-cpu" and info["backend"] == "torch"
    assert info["device"] and "torch" in info["versions"] and "python" in info["versions"]


def test_agent_builds_measures_and_answers_a_full_result(agent_url: str, tmp_path) -> None:
    client = quick_client(agent_url)
    result = client.measure(tiny(), (32, 64))
    assert result.kind == "measured" and result.backend == "torch" and result.target == "host-cpu"
    assert result.input_hw == (32, 64) and result.median_ms > 0
    # At least QUICK's 5 timed runs; ``repeats`` counts those kept after Tukey's outlier rejection.
    assert result.repeats + result.extra["outliers_rejected"] >= 5 and result.repeats >= 2
    # Through measure_config the second request is answered from the study's cache.
    cache = LatencyCache.for_study(tmp_path)
    first = measure_config(tiny(), (32, 64), "host-cpu", agent=client, cache=cache)
    assert measure_config(tiny(), (32, 64), "host-cpu", agent=client, cache=cache) == first
    assert len(cache) == 1


def test_agent_runs_one_measurement_at_a_time(agent_url: str) -> None:
    client = quick_client(agent_url)
    results = []
    workers = [
        threading.Thread(target=lambda w=w: results.append(client.measure(tiny(width=w, hold_s=0.002), (16, 16))))
        for w in (4, 6, 8)
    ]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    assert len(results) == 3
    assert Concurrency.peak == 1


def test_bad_requests_are_refused_at_once_with_the_reason(agent_url: str) -> None:
    client = quick_client(agent_url, retries=5)
    started = time.perf_counter()
    with pytest.raises(AgentError, match="refused.*odd"):
        client.measure(tiny(), (33, 32))  # infeasible: no retries for a request that cannot succeed
    with pytest.raises(AgentError, match="refused.*unknown model family 'nosuch'"):
        client.measure(tiny().__class__("nosuch", {}, 5), (32, 32))
    with pytest.raises(AgentError, match="refused.*precisions fp32"):
        client.measure(tiny(), (32, 32), precision="int8")
    assert time.perf_counter() - started < 5 * 0.01 * 2**4  # less than one retry schedule


def test_crashing_measurement_fails_clearly_after_bounded_retries(agent_url: str) -> None:
    client = quick_client(agent_url, retries=2)
    with pytest.raises(AgentError) as info:
        client.measure(tiny(crash=True), (32, 32))
    message = str(info.value)
    assert "simulated runtime failure" in message and "after 3 attempts" in message
    assert client.measure(tiny(), (32, 32)).kind == "measured"  # the agent survived and still serves


def test_unreachable_agent_fails_clearly_after_bounded_retries(tinyseg, tmp_path) -> None:
    with socket.socket() as probe:  # a port that nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    client = quick_client(f"127.0.0.1:{port}", retries=2)
    with pytest.raises(AgentUnreachable, match=rf"http://127.0.0.1:{port}/info: no answer .* after 3 attempts"):
        client.info()
    cache = LatencyCache.for_study(tmp_path)
    with pytest.raises(AgentUnreachable):
        measure_config(tiny(), (32, 32), "host-cpu", agent=client, cache=cache)
    assert len(LatencyCache.for_study(tmp_path)) == 0


def test_agent_for_another_target_is_not_mislabelled(agent_url: str) -> None:
    with pytest.raises(ConfigError, match="measures host-cpu with torch, not cuda"):
        measure_config(tiny(), (32, 32), "cuda", agent=quick_client(agent_url))


@pytest.mark.slow
def test_ray_trials_share_the_board_through_one_actor(agent_url: str) -> None:
    ray = pytest.importorskip("ray", reason="Ray is the optional 'ray' extra")
    from nasseg.latency.measure.ray_board import board_actor, board_resource, board_resources

    ray.init(num_cpus=1, resources=board_resources("host-cpu"), include_dashboard=False, log_to_driver=False)
    try:
        actor = board_actor(agent_url, "host-cpu", timeout_s=60, retries=1, backoff_s=0.01)
        results = ray.get([actor.measure.remote(tiny(width=w).to_dict(), (16, 16)) for w in (4, 8)])
        assert [r.kind for r in results] == ["measured", "measured"]
        assert ray.available_resources().get(board_resource("host-cpu"), 0) == 0  # the actor holds the board
        same = board_actor(agent_url, "host-cpu")
        assert ray.get(same.info.remote())["target"] == "host-cpu"
        assert same._actor_id == actor._actor_id
    finally:
        ray.shutdown()


def _first_baselines() -> list:
    """Per landed space, its first baseline that can run at the space's search input (feasibility is the
    family's own concern, tested with the zoo)."""
    params = []
    for space in all_spaces():
        hw = tuple(space.spec.search_input)
        runnable = [
            name for name in space.baselines if not space.family.check(space.baseline(name).params, hw).infeasible
        ]
        params.extend(pytest.param(space.baseline(name), hw, id=name) for name in runnable[:1])
    return params


@pytest.mark.parametrize(("config", "input_hw"), _first_baselines())
def test_every_family_is_measured_through_the_agent_from_json(agent_url: str, config: ArchConfig, input_hw) -> None:
    result = quick_client(agent_url).measure(config, input_hw)
    assert result.kind == "measured" and result.input_hw == input_hw and result.median_ms > 0


# ----- every request checked (issue 22) ----------------------------------------------------------


@pytest.mark.parametrize(
    ("config", "message"),
    [
        (ArchConfig("tinyseg", {"widht": 8, "crash": False, "hold_s": 0.0}, 5), "unknown parameter(s) widht"),
        (ArchConfig("tinyseg", {"width": 8}, 5), "parameter 'crash' is missing"),
        (tiny(width=999), "width=999 is not allowed; width is integer in [1, 64]"),
        (tiny(width="8"), "width='8' is not allowed"),
        (
            ArchConfig("espnet", {**load_space("espnet").baseline("espnet-c").params, "alpha2": 99}, 11),
            "alpha2=99 is not allowed; alpha2 is integer in [1, 5]",
        ),
    ],
)
def test_measure_checks_a_config_against_its_space_as_a_baseline_is(agent_url: str, config, message) -> None:
    with pytest.raises(AgentError) as info:
        quick_client(agent_url, retries=3).measure(config, (32, 32))
    assert "refused" in str(info.value) and message in str(info.value)
    assert Concurrency.peak == 0  # refused before anything was built or run


def test_an_input_beyond_the_targets_memory_is_refused_before_building(agent_url: str) -> None:
    capacity = get_target("host-cpu").memory_bytes()
    side = 2 * math.ceil(math.sqrt(2 * capacity / ((3 + 5) * 4)) / 2)  # its input and 5-class logits: 2x memory
    with pytest.raises(
        AgentError,
        match=rf"refused.*input_hw {side}x{side} needs about .* GiB of fp32 activation "
        r"memory \(the input image and its 5-class logits alone\); host-cpu has",
    ):
        quick_client(agent_url).measure(tiny(), (side, side))
    assert Concurrency.peak == 0


def test_the_memory_bound_scales_measured_peak_activations_by_pixels(tinyseg) -> None:
    nano = get_target("jetson-nano")
    assert nano.memory_bytes() == 4 * 2**30  # "4 GB 64-bit LPDDR4", DRAM sized in GiB
    config = tiny(width=32)  # peak 77 bytes per input pixel: the input, 32 channels at half size, the logits
    model = build(config)
    fits_in_memory(config, model, (1024, 2048), nano, "fp32")  # a Cityscapes frame fits
    # 10000x10000 passes the floor (3.0 GiB for the input and logits) but not the measured peak (7.1 GiB).
    with pytest.raises(
        AgentError,
        match=r"input_hw 10000x10000 needs about [6-8]\.\d GiB of fp32 activation memory "
        r"\(peak activations, [4-5]\.\d MiB measured at 256x256 and scaled by pixels\); "
        r"jetson-nano has 4\.0 GiB",
    ):
        fits_in_memory(config, model, (10000, 10000), nano, "fp32")
    fits_in_memory(config, model, (10000, 10000), nano, "fp16")  # half the bytes per activation: 3.6 GiB
    fits_in_memory(config, model, (10000, 10000), get_target("jetson-agx-orin"), "fp32")  # 64 GB holds it


@pytest.mark.parametrize("length", ["abc", "-5", "1e3", str(1 << 30)])
def test_a_bad_content_length_is_a_400_not_a_crash(agent_url: str, length: str) -> None:
    host, port = agent_url.removeprefix("http://").split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=10)
    try:
        connection.putrequest("POST", "/measure")
        connection.putheader("Content-Type", "application/json")
        connection.putheader("Content-Length", length)
        connection.endheaders()
        response = connection.getresponse()
        body = json.loads(response.read())
    finally:
        connection.close()
    assert response.status == 400 and body["type"] == "AgentError"
    assert "Content-Length" in body["error"] or "at most" in body["error"]
