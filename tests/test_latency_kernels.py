"""Kernel tables: convolution geometry from the traced graph, replaying it alone, and predicting from it."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch
from torch import nn

from nasseg.latency import calibration
from nasseg.latency.calibration import HOST_PRIOR, Measurement, fit, predict_measurements, template
from nasseg.latency.costs import ConvGeometry
from nasseg.latency.kernels import GEOMETRY_FIELDS, KernelTable, conv_flops, measure_table, output_hw
from nasseg.latency.microbench import suite
from nasseg.latency.predictor import Calibration, CalibrationError, estimate, layer_table
from nasseg.latency.timing import TimingSettings
from nasseg.models import build
from nasseg.spaces import find_baseline

QUICK = TimingSettings(warmup_runs=1, warmup_s=0.0, min_repeats=3, max_repeats=5, max_seconds=0.2, threads=1)
PROBE = template("host-cpu", "fp32", "torch-eager", "forward", False, HOST_PRIOR, "probe")


class _Convs(nn.Module):
    """Every kind of convolution the predictor classifies, each with output shape checked below."""

    def __init__(self) -> None:
        super().__init__()
        self.convs = nn.ModuleList([
            nn.Conv2d(3, 16, 3, stride=2, padding=1),
            nn.Conv2d(16, 16, (3, 1), padding=(1, 0), bias=False),
            nn.Conv2d(16, 16, 3, padding=2, dilation=2, groups=16),
            nn.Conv2d(16, 24, 5, padding=1, groups=4),
            nn.ConvTranspose2d(24, 8, 3, stride=2, padding=1, output_padding=1),
            nn.Conv2d(8, 11, 1),
        ])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for conv in self.convs:
            x = conv(x)
        return x


def _conv_layers(model: nn.Module, hw: tuple[int, int]) -> list:
    layers, _ = layer_table(model, hw, PROBE)
    return [layer for layer in layers if layer.conv is not None]


def _outputs(model: _Convs, hw: tuple[int, int]) -> list[tuple[int, ...]]:
    shapes, x = [], torch.zeros(1, 3, *hw)
    with torch.no_grad():
        for conv in model.convs:
            x = conv(x)
            shapes.append(tuple(x.shape))
    return shapes


def test_traced_geometry_reproduces_every_convolution() -> None:
    model = _Convs().eval()
    layers = _conv_layers(model, (30, 44))
    assert len(layers) == len(model.convs)
    rows = np.array([layer.conv.as_row() for layer in layers])
    out_h, out_w = output_hw(rows)
    expected = _outputs(model, (30, 44))
    assert [(int(h), int(w)) for h, w in zip(out_h, out_w, strict=True)] == [s[2:] for s in expected]
    # The kernel table's FLOPs are the predictor's FLOPs for the same layer.
    np.testing.assert_allclose(conv_flops(rows), [layer.flops for layer in layers])
    assert [ConvGeometry.from_row(layer.conv.as_row()) for layer in layers] == [layer.conv for layer in layers]
    assert layers[1].conv.bias is False and layers[4].conv.transposed is True


def test_measure_table_times_each_geometry_alone() -> None:
    rows = np.array([layer.conv.as_row() for layer in _conv_layers(_Convs().eval(), (30, 44))])
    table = measure_table(rows, QUICK)
    assert table.rows.shape == rows.shape and np.all(table.ms > 0)
    # A geometry that cannot run is an error of the replay, not a silent zero.
    bad = dataclasses.replace(ConvGeometry.from_row(list(rows[0])), in_h=1, in_w=1, pad_h=0, pad_w=0)
    with pytest.raises(RuntimeError):
        measure_table(np.array([bad.as_row()]), QUICK)


def _synthetic_table(n: int, channels: list[int], sizes: list[int], seed: int = 0) -> KernelTable:
    """Dense 3x3 and 1x1 convolutions whose 'time' is a known function of their shape."""
    rng = np.random.default_rng(seed)
    rows = []
    for _ in range(n):
        k, cin, cout, hw = (int(rng.choice(v)) for v in ([1, 3], channels, channels, sizes))
        rows.append(ConvGeometry(cin, hw, hw, cout, k, k, 1, 1, k // 2, k // 2, 1, 1, 1, False, 0, 0, True).as_row())
    rows = np.unique(np.array(rows), axis=0)
    return KernelTable(rows, conv_flops(rows) / 2e10 * 1e3 + 0.01)


def test_kernel_table_reproduces_timed_kernels_and_interpolates_unseen_ones() -> None:
    table = _synthetic_table(300, [8, 16, 32, 64, 128], [8, 16, 32, 64])
    np.testing.assert_allclose(table.predict_ms(table.rows), table.ms, rtol=1e-6)
    # Shapes between the timed ones: channels and sizes off the powers of two.
    unseen = _synthetic_table(60, [12, 24, 48, 96], [12, 24, 48], seed=1)
    ratio = table.predict_ms(unseen.rows) / unseen.ms
    assert np.median(np.abs(ratio - 1)) < 0.3
    assert np.median(np.abs(table.cross_validated_ms() / table.ms - 1)) < 0.3
    # Larger than anything timed: the speed of the largest carries over, so time grows with the work.
    larger = _synthetic_table(30, [128], [128, 256], seed=2)
    assert np.median(np.abs(table.predict_ms(larger.rows) / larger.ms - 1)) < 0.3
    again = KernelTable.from_dict(table.to_dict())
    np.testing.assert_allclose(again.predict_ms(unseen.rows), table.predict_ms(unseen.rows), rtol=1e-5)


def test_kernel_table_rejects_bad_data() -> None:
    good = _synthetic_table(10, [8, 16], [8, 16]).to_dict()
    with pytest.raises(ValueError, match="fields"):
        KernelTable.from_dict({**good, "fields": list(GEOMETRY_FIELDS[:-1])})
    with pytest.raises(ValueError, match="positive"):
        KernelTable.from_dict({**good, "ms": [0.0] * len(good["ms"])})
    data = {**PROBE.to_dict(), "kernels": {**good, "rows": good["rows"][:-1]}}
    with pytest.raises(CalibrationError, match="bad kernel table"):
        Calibration.from_dict(data)


def _by_class(model: nn.Module, hw: tuple[int, int], cal: Calibration, folder) -> dict[str, float]:
    result = estimate(model, hw, "host-cpu", calibration=cal.save(folder / f"{len(list(folder.iterdir()))}.json"))
    assert f"{len(_conv_layers(model, hw))} convolutions from" in result.extra["convolutions_from_kernel_table"]
    return result.extra["ms_by_op_class"]


def test_estimate_and_fit_take_convolutions_from_the_kernel_table(tmp_path) -> None:
    model = _Convs().eval()
    hw = (30, 44)
    rows = np.array([layer.conv.as_row() for layer in _conv_layers(model, hw)])
    # Give every convolution 5 ms: the estimate's convolution share must be exactly that.
    cal = dataclasses.replace(PROBE, id="with-kernels", kernels=KernelTable(rows, np.full(len(rows), 5.0)).to_dict())
    conv_ms = sum(v for c, v in _by_class(model, hw, cal, tmp_path).items() if c.startswith("conv"))
    assert conv_ms == pytest.approx(5.0 * len(rows), rel=1e-4)
    # A fit leaves table-timed convolutions alone: a measurement 1 ms above the convolutions'
    # 30 ms moves the other parameters towards it (the prior holds them back from all the way).
    table = layer_table(model, hw, PROBE)[1]
    point = Measurement("m", "host-cpu", table, 5.0 * len(rows) + 1.0)
    before = predict_measurements({"host-cpu": cal}, [point])[0]
    fitted, _ = fit([point], {"host-cpu": cal}, HOST_PRIOR)
    assert before < predict_measurements(fitted, [point])[0] < point.ms
    refit_conv_ms = sum(v for c, v in _by_class(model, hw, fitted["host-cpu"], tmp_path).items() if c.startswith("conv"))
    assert refit_conv_ms == pytest.approx(5.0 * len(rows), rel=1e-4)


def test_calibrate_on_the_host_times_convolutions_into_a_kernel_table(tmp_path, monkeypatch) -> None:
    from typer.testing import CliRunner

    from nasseg.cli import app

    space, name = find_baseline("espnet-c")
    sample = ("espnet-c", space.baseline(name), (64, 96))
    monkeypatch.setattr(calibration, "sampled_architectures", lambda per_space: [sample] * min(per_space, 1))
    out = tmp_path / "host.json"
    result = CliRunner().invoke(app, ["calibrate", "--target", "host-cpu", "--input", "16x16", "--channels", "4",
                                      "--kernel-samples", "1", "--out", str(out), "--json"])
    assert result.exit_code == 0, result.output
    cal = Calibration.load(out)
    cases = [*suite((16, 16), 4), (sample[0], build(sample[1]), sample[2])]
    expected = calibration.conv_geometry_rows(cases)
    assert cal.kernel_table is not None and np.array_equal(np.unique(cal.kernel_table.rows, axis=0), expected)
    assert sample[0] in cal.fitted_on["points"] and json.loads(result.output)["kernels"]["fields"] == list(GEOMETRY_FIELDS)
