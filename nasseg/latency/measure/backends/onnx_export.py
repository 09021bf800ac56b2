"""The ONNX graph that onnxruntime and TensorRT measure: static batch-1 shape, fixed tensor names."""

from __future__ import annotations

import copy
import warnings
from pathlib import Path

import torch
from torch import nn

from nasseg.errors import MeasurementFailed

INPUT_NAME = "image"
OUTPUT_NAME = "logits"
OPSET = 17  # Resize with half_pixel / align_corners and every op our families use; TensorRT 8.2+ parses it


def export_onnx(model: nn.Module, input_hw: tuple[int, int], path: Path) -> Path:
    """Export ``model`` in eval mode with a static 1x3xHxW input; the caller's model is left untouched."""
    net = copy.deepcopy(model).eval().float().cpu()
    x = torch.zeros(1, 3, *input_hw)
    try:
        with warnings.catch_warnings():
            # The TorchScript exporter is chosen on purpose: it needs no onnxscript and TensorRT 8.2+ parses its graphs.
            warnings.simplefilter("ignore", DeprecationWarning)
            # The graph is exported for one static shape, so shape-dependent Python branches (resize only when
            # sizes differ, pool until the feature size) are meant to be frozen: the tracer's warning says just that.
            warnings.simplefilter("ignore", torch.jit.TracerWarning)
            torch.onnx.export(
                net, (x,), str(path), opset_version=OPSET, dynamo=False,
                input_names=[INPUT_NAME], output_names=[OUTPUT_NAME], do_constant_folding=True,
            )
    except Exception as exc:  # the exporter raises many types; all mean "this model does not export"
        raise MeasurementFailed(f"{type(model).__name__} does not export to ONNX (opset {OPSET}): {exc}") from exc
    return path
