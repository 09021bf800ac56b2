"""The ONNX graph that onnxruntime and TensorRT measure: static batch-1 shape, fixed tensor names."""

from __future__ import annotations

import copy
import threading
import warnings
from pathlib import Path

import onnx
import torch
from torch import nn

from nasseg.errors import MeasurementFailed
from nasseg.latency.targets import EXPORT_OPSET

INPUT_NAME = "image"
OUTPUT_NAME = "logits"
# The TorchScript exporter keeps its state in module globals: two threads exporting at once break each other.
_ONE_EXPORT_AT_A_TIME = threading.Lock()


def export_onnx(model: nn.Module, input_hw: tuple[int, int], path: Path, opset: int = EXPORT_OPSET) -> Path:
    """Export ``model`` in eval mode with a static 1x3xHxW input at ``opset``; the caller's model is left untouched.

    The TorchScript exporter writes any opset from 7 up, as a board's TensorRT needs (13 for TensorRT 8.2 on
    JetPack 4.6). torch's default exporter (dynamo) writes opset 18 and reaches older ones only through
    onnxscript's version converter, which keeps opset 18 where it cannot convert: the written opset is
    checked, so a file the board cannot parse is never sent.
    """
    net = copy.deepcopy(model).eval().float().cpu()
    x = torch.zeros(1, 3, *input_hw)
    try:
        with _ONE_EXPORT_AT_A_TIME, warnings.catch_warnings():
            # The TorchScript exporter is chosen on purpose: it needs no onnxscript and writes the opset asked for.
            warnings.simplefilter("ignore", DeprecationWarning)
            # The graph is exported for one static shape, so shape-dependent Python branches (resize only when
            # sizes differ, pool until the feature size) are meant to be frozen: the tracer's warning says just that.
            warnings.simplefilter("ignore", torch.jit.TracerWarning)
            torch.onnx.export(
                net,
                (x,),
                str(path),
                opset_version=opset,
                dynamo=False,
                input_names=[INPUT_NAME],
                output_names=[OUTPUT_NAME],
                do_constant_folding=True,
            )
    except Exception as exc:  # the exporter raises many types; all mean "this model does not export"
        raise MeasurementFailed(f"{type(model).__name__} does not export to ONNX (opset {opset}): {exc}") from exc
    written = written_opset(path)
    if written != opset:
        raise MeasurementFailed(f"{type(model).__name__} exported at ONNX opset {written}, not the {opset} asked for")
    return path


def written_opset(path: Path) -> int:
    """The default-domain (ai.onnx) opset an ONNX file declares."""
    model = onnx.load(str(path), load_external_data=False)
    return next(entry.version for entry in model.opset_import if entry.domain in ("", "ai.onnx"))
