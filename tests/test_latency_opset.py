"""The ONNX opset nasseg exports for each board: one its TensorRT parses, and exactly the one written."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import torch
from latency_fixtures import tiny
from typer.testing import CliRunner

from nasseg.cli import app
from nasseg.errors import NassegError
from nasseg.latency.measure.backends.onnx_export import export_onnx, written_opset
from nasseg.latency.targets import get_target, max_onnx_opset, onnx_opset, target_names, tensorrt_release
from nasseg.models import build
from nasseg.spaces import all_spaces

runner = CliRunner()


def test_each_jetson_gets_an_opset_its_tensorrt_parses(tinyseg, tmp_path: Path) -> None:
    jetsons = [get_target(name) for name in target_names() if get_target(name).is_jetson]
    assert jetsons
    for target in jetsons:
        opset = target.software.onnx_opset
        assert opset <= max_onnx_opset(target.software.tensorrt), target.name
        # The exporter writes exactly that opset for a network with every op the tiny family uses (Resize included).
        assert written_opset(export_onnx(build(tiny()), (32, 32), tmp_path / f"{target.name}.onnx", opset)) == opset
    # JetPack 4.6's TensorRT 8.2 stops at opset 13, the exporter's own 17 is kept where the parser reads it.
    assert {get_target(n).software.onnx_opset for n in ("jetson-nano", "jetson-tx2")} == {13}
    assert get_target("jetson-agx-orin").software.onnx_opset == 17
    assert "8.2.1 (opset 13)" in runner.invoke(app, ["targets"], env={"COLUMNS": "300"}).stdout
    rows = {row["name"]: row for row in json.loads(runner.invoke(app, ["targets", "--json"]).stdout)}
    assert rows["jetson-nano"]["software"]["onnx_opset"] == 13 and rows["jetson-nano"]["software"]["opset_source"]


def test_tensorrt_versions_are_read_in_every_spelling() -> None:
    assert tensorrt_release("8.2.1.8") == tensorrt_release("8201") == (8, 2)
    assert tensorrt_release("100300") == tensorrt_release("10.3") == (10, 3)
    assert onnx_opset("8.6.2") == 17 and max_onnx_opset("10.3") == 20
    with pytest.raises(NassegError, match="predates"):
        max_onnx_opset("7.1.3")


@pytest.mark.parametrize("space", all_spaces(), ids=lambda s: s.spec.family)
def test_every_family_exports_at_the_nanos_opset_and_computes_the_same(space, tmp_path: Path) -> None:
    """Opset 13 (TensorRT 8.2) has what every family needs: onnxruntime reproduces PyTorch's output."""
    config = space.baseline(next(iter(space.baselines)))
    hw = tuple(space.spec.search_input)
    torch.manual_seed(0)
    model = build(config).eval()
    x = torch.randn(1, 3, *hw)
    with torch.no_grad():
        expected = model(x).numpy()
    path = export_onnx(model, hw, tmp_path / "model.onnx", get_target("jetson-nano").software.onnx_opset)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (got,) = session.run(None, {"image": x.numpy()})
    scale = max(1.0, float(np.abs(expected).max()))
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-4 * scale)
