"""Op tables: layers timed inside real networks, the regressor over them, and calibrating with one."""

from __future__ import annotations

import dataclasses
import json
import time
import weakref

import numpy as np
import pytest
import torch
from torch import nn

from nasseg.latency.predict import fit as calibration
from nasseg.latency.predict.calibration import Calibration
from nasseg.errors import CalibrationError
from nasseg.latency.predict.costs import SHAPE_FIELDS, ConvGeometry, LayerTable, layers_of
from nasseg.latency.predict.fit import HOST_PRIOR, measure_and_fit, template
from nasseg.latency.predict.graph import timed_trace, trace
from nasseg.latency.predict.microbench import suite
from nasseg.latency.predict.optable import ROW_FIELDS, OpTable, conv_output_hw, rows_of, time_layers
from nasseg.latency.predict.predictor import OP_TABLE_PREDICTOR, estimate, layer_table
from nasseg.latency.result import LatencyResult
from nasseg.models import build
from nasseg.spaces import find_baseline

PROBE = template("host-cpu", "fp32", "torch-eager", "forward", False, HOST_PRIOR, "probe")


class _Convs(nn.Module):
    """Every kind of convolution the predictor classifies, each with output shape checked below."""

    def __init__(self) -> None:
        super().__init__()
        self.convs = nn.ModuleList(
            [
                nn.Conv2d(3, 16, 3, stride=2, padding=1),
                nn.Conv2d(16, 16, (3, 1), padding=(1, 0), bias=False),
                nn.Conv2d(16, 16, 3, padding=2, dilation=2, groups=16),
                nn.Conv2d(16, 24, 5, padding=1, groups=4),
                nn.ConvTranspose2d(24, 8, 3, stride=2, padding=1, output_padding=1),
                nn.Conv2d(8, 11, 1),
            ]
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for conv in self.convs:
            x = conv(x)
        return x


class _Block(nn.Module):
    """A small segmentation-like block: every common op class, its width and size as given."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, width, 3, padding=1, bias=False), nn.BatchNorm2d(width), nn.ReLU())
        self.branch = nn.Conv2d(width, width, 1)
        self.pool = nn.MaxPool2d(2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        y = nn.functional.interpolate(self.pool(x), scale_factor=2.0, mode="bilinear", align_corners=False)
        return torch.cat([self.branch(x) + y, x], 1)


def _table(width: int, size: int) -> LayerTable:
    return layer_table(_Block(width).eval(), (size, size), PROBE)[1]


def _known_ms(table: LayerTable) -> np.ndarray:
    """A 'device' whose layers take a known function of their work: 20 GFLOP/s and 5 GB/s."""
    return table.flops / 2e10 * 1e3 + table.bytes / 5e9 * 1e3


def _synthetic(widths: list[int], sizes: list[int]) -> tuple[OpTable, list[LayerTable]]:
    tables = [_table(w, s) for w in widths for s in sizes]
    return OpTable.from_timings([(t, _known_ms(t), _known_ms(t).sum() * 1.1) for t in tables]), tables


def test_traced_geometry_reproduces_every_convolution() -> None:
    model = _Convs().eval()
    layers = [layer for layer in layer_table(model, (30, 44), PROBE)[0] if layer.conv is not None]
    assert len(layers) == len(model.convs)
    out_h, out_w = conv_output_hw(rows_of(LayerTable.from_layers(layers), ()))
    shapes, x = [], torch.zeros(1, 3, 30, 44)
    with torch.no_grad():
        for conv in model.convs:
            x = conv(x)
            shapes.append(tuple(x.shape[2:]))
    assert [(int(h), int(w)) for h, w in zip(out_h, out_w, strict=True)] == shapes
    assert [ConvGeometry.from_row(layer.conv.as_row()) for layer in layers] == [layer.conv for layer in layers]
    assert layers[1].conv.bias is False and layers[4].conv.transposed is True


def test_a_timed_trace_is_the_traced_graph_with_each_operator_timed() -> None:
    model = nn.Sequential(nn.Conv2d(3, 64, 3, padding=1), nn.Conv2d(64, 64, 3, padding=1), nn.ReLU()).eval()
    hw = (64, 64)
    timed = timed_trace(model, hw, time.thread_time)
    traced = trace(model, hw)
    assert [(n.op, n.in_shapes, n.out_shapes, n.producers) for n in timed] == [
        (n.op, n.in_shapes, n.out_shapes, n.producers) for n in traced
    ]
    assert all(n.ms is not None and n.ms >= 0 for n in timed) and all(n.ms is None for n in traced)
    layers, ms = time_layers(model, hw, passes=3)
    assert [(layer.op, layer.op_class, layer.flops, layer.bytes) for layer in layers] == [
        (layer.op, layer.op_class, layer.flops, layer.bytes) for layer in layers_of(traced, 4.0, False)
    ]
    # 0.3 GFLOP of 3x3 convolution against one pass over its output: the times are real.
    conv64, relu = ms[1], ms[2]
    assert conv64 > 5 * relu > 0


class _DropsAnIntermediate(nn.Module):
    """Says whether a tensor it dropped mid-forward was really freed."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = x * 2.0
        ref = weakref.ref(y)
        z = y + 1.0
        del y
        self.freed = ref() is None
        return z


def test_tracing_frees_intermediates_as_the_network_does() -> None:
    # Kept alive, every output went to cold memory: large JetSegs' layers summed to 1.4x the network.
    model = _DropsAnIntermediate()
    timed = timed_trace(model, (8, 8), time.thread_time)
    assert model.freed
    assert [n.producers for n in timed] == [[None], [0]]  # the add still knows the mul made its input
    trace(model, (8, 8))
    assert model.freed


def test_op_table_interpolates_and_extrapolates_by_the_work() -> None:
    table, tables = _synthetic([8, 16, 32, 64], [16, 32, 64])
    assert table.scale == pytest.approx(1.1) and len(table.ms) == sum(len(t.flops) for t in tables)

    def error(widths: list[int], sizes: list[int]) -> float:
        unseen = [_table(w, s) for w in widths for s in sizes]
        return float(np.median([abs(table.layer_ms(t).sum() / _known_ms(t).sum() - 1) for t in unseen]))

    assert error([12, 24, 48], [24, 48]) < 0.05  # between the timed widths and sizes
    # Larger than anything timed: the speed of the largest carries over, so time grows with the work
    # (a regressor of the time itself would keep the largest timed layer's time: 90 % short here).
    assert error([128], [128]) < 0.1
    again = OpTable.from_dict(json.loads(json.dumps(table.to_dict())))
    probe = _table(24, 48)
    np.testing.assert_allclose(again.layer_ms(probe).sum(), table.layer_ms(probe).sum(), rtol=0.02)


def test_op_table_tells_operators_of_one_class_apart() -> None:
    # An exp and an add of the same tensor have one op class, FLOPs and bytes, but not one time.
    class _Pointwise(nn.Module):
        def __init__(self, exp: bool) -> None:
            super().__init__()
            self.exp = exp

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.exp(x) if self.exp else x + 1.0

    def table(exp: bool, size: int) -> LayerTable:
        return layer_table(_Pointwise(exp), (size, size), PROBE)[1]

    timed = [
        (t, t.bytes / 5e9 * 1e3 * (8.0 if t.op[0] == "aten.exp" else 1.0), 1.0)
        for t in (table(exp, size) for exp in (True, False) for size in (16, 32, 64, 128))
    ]
    fitted = OpTable.from_timings(timed)
    assert fitted.ops == ("aten.add", "aten.exp")
    ratio = fitted.layer_ms(table(True, 48)).sum() / fitted.layer_ms(table(False, 48)).sum()
    assert ratio == pytest.approx(8.0, rel=0.25)


def test_every_layer_carries_its_activation_shapes() -> None:
    layers = layer_table(_Block(8).eval(), (16, 24), PROBE)[0]
    shape = {layer.op: dict(zip(SHAPE_FIELDS, layer.shape, strict=True)) for layer in layers}
    # The upsampling reads the pooled 8x12 map and writes 16x24; the residual add reads two whole maps.
    assert shape["aten.upsample_bilinear2d"] == dict(
        in_c=8, in_h=8, in_w=12, out_c=8, out_h=16, out_w=24, operands=1, second_numel=0
    )
    assert shape["aten.add"]["operands"] == 2 and shape["aten.add"]["second_numel"] == 8 * 16 * 24
    assert shape["aten.cat"]["out_c"] == 16
    # A convolution's weight is not an activation operand.
    conv = next(layer for layer in layers if layer.conv is not None)
    assert conv.shape[:6] == (3, 16, 24, 8, 16, 24) and conv.shape[6] == 1


def test_op_table_tells_layers_of_equal_work_apart_by_their_shapes() -> None:
    # Upsampling many channels from a small map, or few channels onto a large one: one op, FLOPs and
    # bytes within 20 %, but 10x apart per output element on the dev CPU (benchmarks/README.md).
    class _Up(nn.Module):
        def __init__(self, channels: int) -> None:
            super().__init__()
            self.channels = channels

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            x = x[:, :1].expand(-1, self.channels, -1, -1)
            return nn.functional.interpolate(x, scale_factor=8.0 if self.channels < 64 else 2.0, mode="bilinear")

    def table(channels: int, size: int) -> LayerTable:
        return layer_table(_Up(channels), (size, size), PROBE)[1]

    def known_ms(t: LayerTable) -> np.ndarray:
        wide = t.shape_rows[:, SHAPE_FIELDS.index("in_c")] >= 64
        return t.bytes / 5e9 * 1e3 * np.where(wide, 10.0, 1.0)

    timed = [(t, known_ms(t), 1.0) for t in (table(c, s) for c in (8, 16, 256, 512) for s in (8, 16, 32))]
    fitted = OpTable.from_timings(timed)
    for channels, size in ((12, 12), (384, 24)):
        unseen = table(channels, size)
        assert fitted.layer_ms(unseen).sum() == pytest.approx(known_ms(unseen).sum(), rel=0.2), channels


def test_op_table_rejects_bad_data() -> None:
    good = _synthetic([8, 16], [16])[0].to_dict()
    with pytest.raises(ValueError, match="fields.*older nasseg.*nasseg calibrate"):
        OpTable.from_dict({**good, "fields": list(ROW_FIELDS[:-1])})
    with pytest.raises(ValueError, match="positive"):
        OpTable.from_dict({**good, "ms": [0.0] * len(good["ms"])})
    with pytest.raises(ValueError, match="scale"):
        OpTable.from_dict({**good, "scale": 0.0})
    with pytest.raises(ValueError, match="operator"):
        OpTable.from_dict({**good, "ops": good["ops"][:1]})
    with pytest.raises(CalibrationError, match="bad op table"):
        Calibration.from_dict({**PROBE.to_dict(), "op_table": {**good, "rows": good["rows"][:-1]}})


def test_an_estimate_from_an_op_table_costs_every_layer_from_it_and_says_so(tmp_path) -> None:
    table, _ = _synthetic([8, 16, 32], [16, 32])
    cal = dataclasses.replace(PROBE, id="with-op-table", op_table=table.to_dict())
    model, hw = _Block(24).eval(), (24, 40)
    result = estimate(model, hw, "host-cpu", calibration=cal.save(tmp_path / "op.json"))
    layers = layer_table(model, hw, PROBE)[1]
    expected = cal.optable.layer_ms(layers).sum() * table.scale + cal.fixed_overhead_ms
    assert result.kind == "estimated" and result.predictor == OP_TABLE_PREDICTOR
    assert result.median_ms == pytest.approx(expected, rel=1e-9)
    assert result.median_ms == pytest.approx(_known_ms(layers).sum() * 1.1, rel=0.3)
    assert sum(result.extra["ms_by_op_class"].values()) == pytest.approx(expected - cal.fixed_overhead_ms, rel=1e-3)
    assert f"{len(layers.flops)} layers predicted from {len(table.ms)}" in result.extra["layers_from_op_table"]


def test_calibrating_with_an_op_table_times_every_layer_in_each_pass(monkeypatch: pytest.MonkeyPatch) -> None:
    cases = suite((16, 16), 4, depths=(1,))[:2]
    order: list[str] = []
    network_ms = {name: iter(ms) for (name, _, _), ms in zip(cases, ([2.0, 3.0], [4.0, 5.0]), strict=True)}

    def fake_measure(name: str, _model: nn.Module, hw: tuple[int, int]) -> LatencyResult:
        order.append(f"measure {name}")
        return LatencyResult(
            "measured",
            next(network_ms[name]),
            "host-cpu",
            hw,
            "fp32",
            backend="torch",
            device="test cpu",
            timed="forward",
        )

    def counted(model: nn.Module, hw: tuple[int, int]) -> tuple[list, np.ndarray]:
        order.append("layers")
        return time_layers(model, hw, passes=1)

    monkeypatch.setattr(calibration, "time_layers", counted)
    cal, measurements = measure_and_fit(
        "host-cpu",
        cases,
        fake_measure,
        precision="fp32",
        runtime="torch-eager",
        cal_id="test/op-table",
        op_table=True,
        rounds=2,
    )
    names = [name for name, _, _ in cases]
    for one_pass in (order[:4], order[4:]):  # each network, then its layers, once per pass
        assert (
            sorted(one_pass[::2]) == [f"measure {name}" for name in sorted(names)] and one_pass[1::2] == ["layers"] * 2
        )
    assert cal.optable is not None and len(cal.optable.ms) == sum(len(m.table.flops) for m in measurements)
    assert [m.ms for m in measurements] == [2.5, 4.5]
    with pytest.raises(CalibrationError, match="host-cpu, not jetson-nano"):
        measure_and_fit(
            "jetson-nano", cases, fake_measure, precision="fp16", runtime="tensorrt", cal_id="x", op_table=True
        )


def test_calibrate_op_table_option_builds_one_from_the_cases_and_refuses_other_settings(tmp_path, monkeypatch) -> None:
    from typer.testing import CliRunner

    from nasseg.cli import app
    from nasseg.latency.measure import backends

    # The networks' own timings are not what is checked here: only their layers are timed for real.
    monkeypatch.setattr(
        backends,
        "measure_model",
        lambda model, hw, *_a, **_k: LatencyResult(
            "measured", 10.0, "host-cpu", hw, "fp32", backend="torch", device="test cpu", timed="forward"
        ),
    )
    space, name = find_baseline("espnet-c")
    sample = ("espnet-c", space.baseline(name), (64, 96))
    monkeypatch.setattr(calibration, "sampled_architectures", lambda per_space: [sample] * min(per_space, 1))
    out = tmp_path / "host.json"
    result = CliRunner().invoke(
        app,
        [
            "calibrate",
            "--target",
            "host-cpu",
            "--input",
            "16x16",
            "--channels",
            "4",
            "--op-table",
            "--samples",
            "1",
            "--out",
            str(out),
            "--json",
        ],
    )
    assert result.exit_code == 0, result.output
    cal = Calibration.load(out)
    cases = [*suite((16, 16), 4), (sample[0], build(sample[1]), sample[2])]
    layers = sum(len(layer_table(model, hw, PROBE)[1].flops) for _, model, hw in cases)
    assert cal.optable is not None and len(cal.optable.ms) == layers
    assert sample[0] in cal.fitted_on["points"] and json.loads(result.output)["op_table"]["fields"] == list(ROW_FIELDS)
    assert estimate(build(sample[1]), (64, 96), "host-cpu", calibration=out).predictor == OP_TABLE_PREDICTOR
    refused = CliRunner().invoke(app, ["calibrate", "--target", "host-cpu", "--op-table", "--threads", "2"])
    assert refused.exit_code == 2 and "1 thread" in refused.output
