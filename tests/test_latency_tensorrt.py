"""What of the TensorRT path runs without a board: the ONNX it builds, trtexec's command and output, parity."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from torch import nn
from torch.nn import functional as F

from nasseg.errors import BackendUnavailable, MeasurementFailed
from nasseg.latency.measure.backends import tensorrt_backend as trt
from nasseg.latency.measure.backends.onnx_export import INPUT_NAME, OUTPUT_NAME, export_onnx
from nasseg.latency.measure.backends.parity import check_parity
from nasseg.latency.targets import get_target
from nasseg.latency.timing import TimingSettings
from nasseg.models import build
from nasseg.spaces import find_baseline

FIXTURES = Path(__file__).parent / "fixtures" / "trtexec"


class SegNet(nn.Module):
    """Strided, dilated, grouped and asymmetric convolutions, concat and a bilinear resize: what our families use."""

    def __init__(self) -> None:
        super().__init__()
        self.down = nn.Conv2d(3, 16, 3, stride=2, padding=1)
        self.dilated = nn.Conv2d(16, 16, 3, padding=2, dilation=2, groups=4)
        self.asym = nn.Sequential(nn.Conv2d(16, 16, (3, 1), padding=(1, 0)), nn.Conv2d(16, 16, (1, 3), padding=(0, 1)))
        self.head = nn.Conv2d(32, 5, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.relu(self.down(x))
        y = self.head(torch.cat([self.dilated(y), self.asym(y)], dim=1))
        return F.interpolate(y, size=x.shape[-2:], mode="bilinear", align_corners=False)


def test_exported_onnx_is_static_named_and_matches_pytorch(tmp_path) -> None:
    torch.manual_seed(0)
    model = SegNet().train()
    path = export_onnx(model, (64, 96), tmp_path / "m.onnx")
    graph = onnx.load(path)
    onnx.checker.check_model(graph)
    dims = lambda value: [d.dim_value for d in value.type.tensor_type.shape.dim]  # noqa: E731
    assert [i.name for i in graph.graph.input] == [INPUT_NAME] and dims(graph.graph.input[0]) == [1, 3, 64, 96]
    assert [o.name for o in graph.graph.output] == [OUTPUT_NAME] and dims(graph.graph.output[0]) == [1, 5, 64, 96]
    assert graph.opset_import[0].version == 17
    assert model.training  # exporting did not switch the caller's model to eval
    x = torch.randn(1, 3, 64, 96)
    with torch.no_grad():
        expected = model.eval()(x).numpy()
    (got,) = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {INPUT_NAME: x.numpy()})
    np.testing.assert_allclose(got, expected, atol=1e-4)


def test_a_family_with_shape_branches_exports_without_tracer_warnings(tmp_path) -> None:
    # ESPNet's image pyramid pools "while larger than the feature map": frozen on purpose for the static shape.
    space, name = find_baseline("espnet-c")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        path = export_onnx(build(space.baseline(name)), (64, 96), tmp_path / "m.onnx")
    onnx.checker.check_model(onnx.load(path))
    assert not [w for w in caught if issubclass(w.category, torch.jit.TracerWarning)]


def test_a_model_that_does_not_export_is_named(tmp_path) -> None:
    class SpectralNet(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.linalg.svd(x[0, 0])[0]  # no ONNX operator for an SVD

    with pytest.raises(MeasurementFailed, match="SpectralNet does not export.*linalg_svd"):
        export_onnx(SpectralNet(), (8, 8), tmp_path / "m.onnx")


def test_trtexec_command_times_gpu_compute_on_our_input(tmp_path) -> None:
    settings = TimingSettings(warmup_s=0.5, max_repeats=300, max_seconds=10)
    cmd = trt.trtexec_command(Path("trtexec"), tmp_path / "m.onnx", "fp16", tmp_path / "in.bin", tmp_path, settings)
    assert "--fp16" in cmd and f"--loadInputs={INPUT_NAME}:{tmp_path / 'in.bin'}" in cmd
    assert f"--exportTimes={tmp_path / 'times.json'}" in cmd and f"--exportOutput={tmp_path / 'output.json'}" in cmd
    assert "--warmUp=500" in cmd and "--iterations=300" in cmd and "--duration=10" in cmd
    fp32 = trt.trtexec_command(Path("trtexec"), tmp_path / "m.onnx", "fp32", tmp_path / "in.bin", tmp_path, settings)
    assert "--fp16" not in fp32
    with pytest.raises(BackendUnavailable, match="INT8 calibration"):
        trt.trtexec_command(Path("trtexec"), tmp_path / "m.onnx", "int8", tmp_path / "in.bin", tmp_path, settings)


def test_parse_trtexec_85_summary() -> None:
    summary = trt.parse_trtexec_log((FIXTURES / "orin_trt85_fp16.log").read_text())
    assert summary.tensorrt_version == "8.5.2" and summary.device == "Orin"
    assert summary.gpu_compute_ms == {
        "min": 7.76709,
        "max": 9.31348,
        "mean": 7.91724,
        "median": 7.90405,
        "percentile(90%)": 7.97656,
        "percentile(95%)": 8.00562,
        "percentile(99%)": 8.39551,
    }
    assert summary.host_latency_ms["median"] == 9.39404
    assert summary.throughput_qps == 122.163


def test_parse_trtexec_82_summary_without_version_line() -> None:
    summary = trt.parse_trtexec_log((FIXTURES / "nano_trt82_fp16.log").read_text())
    assert summary.tensorrt_version == "8201"  # from the &&&& banner
    assert summary.device == "NVIDIA Tegra X1"
    assert summary.gpu_compute_ms["median"] == 34.8946 and summary.gpu_compute_ms["percentile(99%)"] == 36.5051
    assert summary.host_latency_ms["median"] == 35.3716  # "Latency", not "End-to-End Host Latency"


def test_failed_build_log_is_reported_with_its_errors() -> None:
    with pytest.raises(MeasurementFailed, match="Failed to parse onnx file"):
        trt.parse_trtexec_log((FIXTURES / "build_failure.log").read_text())


def test_parse_exported_times_and_outputs() -> None:
    times = trt.parse_times((FIXTURES / "times.json").read_text())
    assert len(times) == 8 and times[0] == 7.904 and max(times) == 9.314
    output = trt.parse_output((FIXTURES / "output.json").read_text())
    assert output.shape == (1, 2, 2, 3) and output[0, 1, 0, 1] == 1.75
    with pytest.raises(MeasurementFailed, match="no output called 'seg'"):
        trt.parse_output((FIXTURES / "output.json").read_text(), name="seg")


def test_parity_accepts_fp16_rounding_and_rejects_wrong_labels() -> None:
    torch.manual_seed(0)
    model = SegNet().eval()
    with torch.no_grad():
        reference = model(torch.randn(1, 3, 32, 48)).numpy()
    fp16 = reference.astype(np.float16).astype(np.float32)
    report = check_parity(reference, fp16.reshape(-1), "tensorrt")  # trtexec hands back a flat buffer
    assert report["label_agreement"] >= 0.99 and report["max_rel_error"] < 1e-2
    with pytest.raises(MeasurementFailed, match="disagrees with PyTorch"):
        check_parity(reference, reference[:, ::-1].copy(), "tensorrt")  # classes swapped round
    with pytest.raises(MeasurementFailed, match="values"):
        check_parity(reference, reference[..., :10], "tensorrt")


def test_missing_trtexec_says_what_it_needs(monkeypatch, tmp_path) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setattr(trt, "JETPACK_TRTEXEC", tmp_path / "absent" / "trtexec")
    with pytest.raises(BackendUnavailable) as info:
        trt.measure(SegNet(), (32, 32), get_target("jetson-nano"), "fp16", TimingSettings())
    assert "trtexec" in str(info.value) and "--backend predictor" in str(info.value)
