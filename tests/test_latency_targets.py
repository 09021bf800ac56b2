"""The target registry: names, lookup errors, and that the specs agree with their own arithmetic."""

from __future__ import annotations

import pytest

from nasseg.errors import NassegError
from nasseg.latency.targets import get_target, target_names

JETSONS = ["jetson-nano", "jetson-tx2", "jetson-xavier-nx", "jetson-agx-xavier", "jetson-orin-nano", "jetson-agx-orin"]


def test_registry_holds_the_six_jetsons_then_host_and_cuda() -> None:
    assert target_names() == [*JETSONS, "host-cpu", "cuda"]
    assert [name for name in target_names() if get_target(name).is_jetson] == JETSONS


def test_unknown_target_names_every_valid_one() -> None:
    with pytest.raises(NassegError) as info:
        get_target("jetson-orin-nx")
    for name in target_names():
        assert name in str(info.value)


@pytest.mark.parametrize("name", JETSONS)
def test_jetson_fp32_peak_matches_cores_times_clock(name: str) -> None:
    gpu = get_target(name).gpu
    # 2 FLOP per core per clock (FMA); the reference's peaks are rounded to 3 significant figures.
    assert gpu.fp32_tflops == pytest.approx(2 * gpu.cuda_cores * gpu.max_clock_mhz / 1e6, rel=0.02)


@pytest.mark.parametrize("name", JETSONS)
def test_every_jetson_figure_has_a_source(name: str) -> None:
    target = get_target(name)
    for spec in ("sms", "cuda_cores", "max_clock_mhz", "fp32_tflops", "fp16_tflops", "mem_bandwidth_gbs", "l2_kb"):
        assert target.gpu.sources.get(spec), f"{name}.{spec} has no source"
    assert target.software.source
    assert all(mode.source for mode in target.power_modes)
    assert target.power_mode().name == target.max_power_mode


def test_agx_orin_default_30w_mode_is_about_a_quarter_of_maxn() -> None:
    # jetson.md §1.2: half the TPCs at 47 % of the clock, "about 0.24x the MAXN GPU throughput".
    orin = get_target("jetson-agx-orin")
    assert orin.gpu_throughput_scale("MAXN") == 1.0
    assert orin.gpu_throughput_scale("30W") == pytest.approx(0.235, abs=0.005)
    assert next(m for m in orin.power_modes if m.factory_default).name == "30W"


def test_orin_nano_super_mode_reaches_the_super_headline() -> None:
    nano = get_target("jetson-orin-nano")
    # 16.7 TFLOPS FP16 and 102 GB/s in the Super's uncapped mode (jetson.md §1.1).
    assert nano.gpu.fp16_tflops * nano.gpu_throughput_scale("MAXN_SUPER") == pytest.approx(16.7, rel=0.01)
    assert nano.mem_bandwidth_gbs("MAXN_SUPER") == 102.0
    assert nano.mem_bandwidth_gbs("15W") == 68.0


def test_mode_with_unknown_clock_refuses_to_guess() -> None:
    xavier = get_target("jetson-agx-xavier")
    with pytest.raises(NassegError, match="not known"):
        xavier.gpu_throughput_scale("30W")
    with pytest.raises(NassegError, match="MAXN"):
        xavier.power_mode("60W")


def test_int8_only_where_the_gpu_has_a_fast_path() -> None:
    for name in ("jetson-nano", "jetson-tx2"):
        assert get_target(name).gpu.int8_tops is None
        assert "int8" not in get_target(name).precisions
    assert get_target("host-cpu").precisions == ("fp32",)
    assert all(get_target(name).default_precision == "fp16" for name in JETSONS)
