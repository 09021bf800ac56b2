"""The Jetson predictor's evaluation protocols, the published points' provenance, and the kernel effects."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from torch import nn

from nasseg.errors import CalibrationError
from nasseg.latency.predict import fit as fit_module
from nasseg.latency.predict.calibration import find_calibration
from nasseg.latency.predict.costs import BYTES_PER_ELEMENT
from nasseg.latency.predict.effects import EFFECTS, Hardware, apply_effects
from nasseg.latency.predict.fit import (
    JETSON_PRIOR,
    JETSON_TIMED,
    Measurement,
    at_precision,
    jetson_templates,
    leave_groups_out,
    leave_one_network_out,
    leave_one_source_out,
    network_family,
    predict_measurements,
    published_points,
    template,
)
from nasseg.latency.predict.generalisation import Summary, evaluate
from nasseg.latency.predict.predictor import layer_table


def _net(width: int, depth: int) -> nn.Module:
    layers: list[nn.Module] = [nn.Conv2d(3, width, 3, padding=1)]
    for _ in range(depth):
        layers += [nn.Conv2d(width, width, 3, padding=1), nn.ReLU()]
    return nn.Sequential(*layers)


def _hand_made() -> list[Measurement]:
    """Three networks, each timed on two boards and at two inputs, from two sources."""
    probe = template("jetson-nano", "fp16", "tensorrt", JETSON_TIMED, True, JETSON_PRIOR, "probe")
    out = []
    for net, (width, depth), source in (("a", (16, 2), "s1"), ("b", (32, 3), "s1"), ("c", (24, 4), "s2")):
        for hw in ((32, 32), (64, 64)):
            table = layer_table(_net(width, depth), hw, probe)[1]
            for target, speed in (("jetson-nano", 1.0), ("jetson-agx-xavier", 0.15)):
                ms = float(table.flops.sum()) / 2e8 * speed + 0.2
                out.append(
                    Measurement(f"{source}/{target}/{net}@{hw[0]}", target, table, ms, network=net, source=source)
                )
    return out


def _fits_seen(monkeypatch: pytest.MonkeyPatch) -> list[set[str]]:
    """Spy on every fit: the ids each one was given."""
    seen: list[set[str]] = []
    real = fit_module.fit

    def spy(measurements: list[Measurement], *args: object, **kwargs: object) -> object:
        seen.append({m.id for m in measurements})
        return real(measurements, *args, **kwargs)

    monkeypatch.setattr(fit_module, "fit", spy)
    return seen


def test_leave_one_network_out_keeps_every_point_of_a_network_out_together(monkeypatch: pytest.MonkeyPatch) -> None:
    points = _hand_made()
    seen = _fits_seen(monkeypatch)
    templates = jetson_templates(["jetson-nano", "jetson-agx-xavier"], effects=[])
    predicted = leave_one_network_out(points, templates, JETSON_PRIOR)
    everything = {m.id for m in points}
    assert seen[0] == everything  # the full fit, a warm start only
    left_out = [everything - ids for ids in seen[1:]]
    # One refit per network, each without every point of that network (both boards, both inputs) and nothing else.
    assert sorted(sorted(ids) for ids in left_out) == sorted(
        sorted(m.id for m in points if m.network == net) for net in ("a", "b", "c")
    )
    assert all(len(ids) == 4 for ids in left_out)
    assert predicted.shape == (len(points),) and np.all(predicted > 0)


def test_leave_one_source_out_holds_out_a_whole_source(monkeypatch: pytest.MonkeyPatch) -> None:
    points = _hand_made()
    seen = _fits_seen(monkeypatch)
    leave_one_source_out(points, jetson_templates(["jetson-nano", "jetson-agx-xavier"], effects=[]), JETSON_PRIOR)
    left_out = sorted(sorted({m.id for m in points} - ids) for ids in seen[1:])
    assert left_out == sorted(sorted(m.id for m in points if m.source == s) for s in ("s1", "s2"))


def test_a_board_left_without_points_is_predicted_from_the_shared_values() -> None:
    points = [m for m in _hand_made() if m.target == "jetson-nano"]
    lone = dataclasses.replace(points[0], id="only-orin", target="jetson-agx-orin", network="z")
    templates = jetson_templates(["jetson-nano", "jetson-agx-orin"], effects=[])
    predicted = leave_groups_out(points + [lone], templates, JETSON_PRIOR, lambda m: m.network)
    assert np.isfinite(predicted).all() and predicted[-1] > 0


def test_every_published_point_names_its_source_precision_and_timing_scope() -> None:
    points = published_points() + published_points(checks=True)
    assert len(points) >= 95 and len({p["id"] for p in points}) == len(points)
    for p in points:
        assert p["source_where"] and p["source_timed"] and p["source_runtime"], p["id"]
        assert p["precision"] in BYTES_PER_ELEMENT, p["id"]
        assert p["network"] and network_family(p["network"]), p["id"]
        assert p["ms"] > 0 and len(p["input_hw"]) == 2, p["id"]
    # One table can hold FP16 and FP32 columns: each point says which it is.
    assert {p["precision"] for p in points if p["source"] == "mmdeploy"} == {"fp16", "fp32"}
    # Sources kept for independent checking elsewhere are never among ours.
    assert not any("bonnetal" in p["source_where"].lower() or "pidnet" in p["source_where"].lower() for p in points)


def test_check_points_are_never_fitted() -> None:
    checks = {p["id"] for p in published_points(checks=True)}
    assert {
        "mmdeploy/jetson-tx2/deeplabv3plus_r50-d8@512x1024/fp32",
        "fassd-net-paper/jetson-tx2/fassd-net@512x1024",
    } <= checks
    assert not checks & {p["id"] for p in published_points()}
    for target in ("jetson-tx2", "jetson-nano", "jetson-agx-xavier"):
        assert not checks & set(find_calibration(target).fitted_on["points"]), target


def test_an_experiment_can_fit_one_sources_check_points_and_nothing_else() -> None:
    fitted, checks = published_points(), published_points(checks=True)
    trial = published_points(fit_sources=["trtutils"])
    moved = {p["id"] for p in checks if p["source"] == "trtutils"}
    assert moved and {p["id"] for p in trial} == {p["id"] for p in fitted} | moved
    left = {p["id"] for p in published_points(checks=True, fit_sources=["trtutils"])}
    assert left == {p["id"] for p in checks} - moved and "fassd-net-paper/jetson-tx2/fassd-net@512x1024" in left


def test_evaluation_fits_never_see_the_check_points(monkeypatch: pytest.MonkeyPatch) -> None:
    points = _hand_made()
    check = dataclasses.replace(points[0], id="check-point", network="checked")
    seen = _fits_seen(monkeypatch)
    rows = evaluate([], protocols=("lono",), measurements=points, checks=[check])
    assert seen and all("check-point" not in ids for ids in seen)
    (row,) = [r for r in rows if r.check]
    assert row.predicted["lono"] == row.predicted["in_sample"] > 0
    assert Summary.of([r for r in rows if not r.check], "lono").points == len(points)


def test_fp32_points_are_costed_at_the_fp32_peaks() -> None:
    cal = jetson_templates(["jetson-tx2"], effects=[])["jetson-tx2"]
    fp32 = at_precision(cal, "fp32")
    assert fp32.peak_flops == pytest.approx(cal.peak_flops / 2, rel=0.01) and fp32.efficiency == cal.efficiency
    net = _net(64, 2)
    probe16 = template("jetson-tx2", "fp16", "tensorrt", JETSON_TIMED, True, JETSON_PRIOR, "p")
    probe32 = template("jetson-tx2", "fp32", "tensorrt", JETSON_TIMED, True, JETSON_PRIOR, "p")
    m16 = Measurement("x16", "jetson-tx2", layer_table(net, (128, 128), probe16)[1], 1.0)
    m32 = Measurement("x32", "jetson-tx2", layer_table(net, (128, 128), probe32)[1], 1.0, precision="fp32")
    t16, t32 = predict_measurements({"jetson-tx2": cal}, [m16, m32])
    assert 1.5 < t32 / t16 <= 2.0


def test_effects_change_only_the_layers_they_are_about() -> None:
    hw_tc = Hardware("fp16", True, 8.0)
    hw_plain = Hardware("fp16", False, 1.0)
    probe = template("jetson-nano", "fp16", "tensorrt", JETSON_TIMED, True, JETSON_PRIOR, "p")

    class Dense(nn.Module):  # an aligned conv, a HarDNet-like 28-channel one, and their concatenation
        def __init__(self) -> None:
            super().__init__()
            self.a, self.b = nn.Conv2d(3, 64, 3, padding=1), nn.Conv2d(64, 28, 3, padding=1)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            y = self.a(x)
            return torch.cat([y, self.b(y)], 1)

    table = layer_table(Dense(), (32, 32), probe)[1]
    conv_b = int(np.flatnonzero(table.conv_rows[:, 3] == 28)[0])
    conv_a = int(np.flatnonzero(table.conv_rows[:, 3] == 64)[0])
    padded = apply_effects(table, ["pad8"], hw_tc)
    assert padded.flops[conv_b] == pytest.approx(table.flops[conv_b] * 32 / 28)
    assert padded.flops[conv_a] == table.flops[conv_a]  # 3 image channels are not padded, 64 needs none
    assert apply_effects(table, ["tile32"], hw_plain).flops[conv_b] == pytest.approx(table.flops[conv_b] * 32 / 28)
    assert apply_effects(table, ["misaligned_off_fp16"], hw_plain).flops[conv_b] == pytest.approx(
        2 * table.flops[conv_b]
    )
    assert apply_effects(table, ["misaligned_off_fp16"], hw_tc).flops[conv_b] == pytest.approx(8 * table.flops[conv_b])
    assert (
        apply_effects(table, ["misaligned_off_fp16"], Hardware("fp32", False, 1.0)).flops[conv_b] == table.flops[conv_b]
    )
    freed = apply_effects(table, ["concat_free"], hw_plain)
    cat = np.array(["cat" in op for op in table.op])
    assert cat.any() and freed.bytes[cat].sum() == 0 and freed.launched[cat].sum() == 0
    assert np.array_equal(freed.bytes[~cat], table.bytes[~cat])
    assert apply_effects(table, [], hw_tc) is table
    with pytest.raises(ValueError, match="unknown latency effect"):
        apply_effects(table, ["warp-drive"], hw_tc)
    assert set(EFFECTS) >= {
        "pad8",
        "tile32",
        "misaligned_off_fp16",
        "concat_free",
        "concat_in_place",
        "dilated_on_tensor_cores",
        "winograd",
        "no_overlap",
    }


def test_winograd_counts_fewer_multiplies_only_where_it_runs() -> None:
    """Without tensor cores a stride-1 3x3 convolution runs as Winograd F(2x2, 3x3): 2.25x fewer
    multiplies; a strided one, the image-input one and any 1x1 keep theirs, and a tensor-core GPU none."""
    probe = template("jetson-nano", "fp16", "tensorrt", JETSON_TIMED, True, JETSON_PRIOR, "p")
    net = nn.Sequential(
        nn.Conv2d(3, 32, 3, padding=1),
        nn.Conv2d(32, 32, 3, padding=1),
        nn.Conv2d(32, 32, 3, stride=2, padding=1),
        nn.Conv2d(32, 32, 1),
    )
    table = layer_table(net, (32, 32), probe)[1]
    image, plain, strided, pointwise = np.flatnonzero(table.conv_rows[:, 0] > 0)
    fast = apply_effects(table, ["winograd"], Hardware("fp16", False, 1.0))
    assert fast.flops[plain] == pytest.approx(table.flops[plain] / 2.25)
    assert [fast.flops[i] for i in (image, strided, pointwise)] == [table.flops[i] for i in (image, strided, pointwise)]
    assert np.array_equal(apply_effects(table, ["winograd"], Hardware("fp16", True, 8.0)).flops, table.flops)


def test_no_overlap_adds_a_kernels_compute_and_memory_time() -> None:
    """The roofline takes the larger of a kernel's compute and memory time; without overlap, their sum.
    Memory-bound kernels have no compute term, so they cost the same either way."""
    net = nn.Sequential(nn.Conv2d(3, 64, 3, padding=1), nn.Conv2d(64, 64, 3, padding=1))
    probe = template("jetson-agx-xavier", "fp16", "tensorrt", JETSON_TIMED, True, JETSON_PRIOR, "p")
    table = layer_table(net, (64, 64), probe)[1]
    same = apply_effects(table, ["no_overlap"], Hardware("fp16", True, 8.0))  # a known effect that changes no layer
    assert np.array_equal(same.flops, table.flops) and np.array_equal(same.bytes, table.bytes)
    cal = jetson_templates(["jetson-agx-xavier"], effects=[])["jetson-agx-xavier"]
    flops_per_s, bytes_per_s = cal.class_rates()
    compute = table.flops / flops_per_s[table.op_class] * 1e3
    memory = table.bytes / bytes_per_s[table.op_class] * 1e3
    launch = table.launched.sum() * cal.layer_overhead_ms + cal.fixed_overhead_ms
    m = Measurement("x", "jetson-agx-xavier", table, 1.0)
    plain = predict_measurements({"jetson-agx-xavier": cal}, [m])[0]
    summed = predict_measurements({"jetson-agx-xavier": dataclasses.replace(cal, effects=["no_overlap"])}, [m])[0]
    assert plain == pytest.approx(np.maximum(compute, memory).sum() + launch)
    assert summed == pytest.approx((compute + memory).sum() + launch)


def test_a_concatenation_is_written_in_place_unless_another_one_reads_its_input() -> None:
    """HarDNet feeds one layer's output into several concatenations: only one of them can hold it."""

    class Harmonic(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a, self.b, self.c = (
                nn.Conv2d(3, 16, 3, padding=1),
                nn.Conv2d(16, 16, 3, padding=1),
                nn.Conv2d(32, 16, 3, padding=1),
            )

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            a = self.a(x)
            b = self.b(a)
            ab = torch.cat([a, b], 1)  # a is read by two concatenations: half of this one is copied
            c = self.c(ab)
            return torch.cat([a, c], 1)

    probe = template("jetson-nano", "fp16", "tensorrt", JETSON_TIMED, True, JETSON_PRIOR, "p")
    table = layer_table(Harmonic(), (16, 16), probe)[1]
    cat = np.flatnonzero(np.array(["cat" in op for op in table.op]))
    assert table.shared[cat].tolist() == [0.5, 0.5]
    hw = Hardware("fp16", False, 1.0)
    in_place = apply_effects(table, ["concat_in_place"], hw)
    assert in_place.bytes[cat] == pytest.approx(table.bytes[cat] * 0.5) and in_place.launched[cat].tolist() == [
        1.0,
        1.0,
    ]
    plain = layer_table(nn.Sequential(nn.Conv2d(3, 8, 1)), (8, 8), probe)[1]
    assert not (plain.shared < 1).any()  # no concatenation, nothing shared


def test_a_calibration_with_an_unknown_effect_is_refused() -> None:
    cal = jetson_templates(["jetson-nano"], effects=[])["jetson-nano"]
    with pytest.raises(CalibrationError, match="unknown effect"):
        dataclasses.replace(cal, effects=["warp-drive"])
