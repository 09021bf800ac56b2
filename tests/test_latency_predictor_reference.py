"""The reference networks of the published Jetson timings have the published sizes."""

from __future__ import annotations

import pytest

from nasseg.latency.predict.costs import CONV_CLASSES, layers_of
from nasseg.latency.predict.graph import trace
from nasseg.latency.predict.reference_nets import REFERENCE_NETS, reference_net
from nasseg.profile import count_params

# GMACs published beside the measurements (jetson.md sections 2.1 and 3.1, at 224x224 unless noted).
PUBLISHED_GMACS = {
    ("resnet18", (224, 224)): 1.82,
    ("resnet34", (224, 224)): 3.67,
    ("resnet50", (224, 224)): 4.11,
    ("resnet101", (224, 224)): 7.83,
    ("vgg16", (224, 224)): 15.5,
    ("alexnet", (224, 224)): 0.71,
    ("squeezenet1_0", (224, 224)): 0.82,
    ("squeezenet1_1", (224, 224)): 0.35,
    ("mobilenet_v2", (224, 224)): 0.30,
    ("shufflenet_v2_x1.0", (224, 224)): 0.146,
    ("fcn-resnet18", (256, 512)): 4.8,
    # mmcls model zoo (the networks of mmdeploy's Jetson rows): ResNeXt-50 32x4d 4.27, SE-ResNet-50 4.13 GFLOPs (MACs).
    ("resnext50_32x4d", (224, 224)): 4.27,
    ("se_resnet50", (224, 224)): 4.13,
    # Ultralytics YOLOv8 n/s/m (trtutils' Jetson rows, jetson.md section 3.3): 8.7 / 28.6 / 78.9 GFLOPs (= 2 x MAC) at 640.
    ("yolov8n", (640, 640)): 8.7 / 2,
    ("yolov8s", (640, 640)): 28.6 / 2,
    ("yolov8m", (640, 640)): 78.9 / 2,
}
# Parameters published with them (mmcls model zoo, millions): the layers are the same, not just the MACs.
PUBLISHED_PARAMS = {"resnext50_32x4d": 25.03, "se_resnet50": 28.09, "resnet50": 25.56}
# Ultralytics' YOLOv8 model table (millions, one decimal).
PUBLISHED_YOLO_PARAMS = {"yolov8n": 3.2, "yolov8s": 11.2, "yolov8m": 25.9}


@pytest.mark.parametrize(("net", "input_hw"), list(PUBLISHED_GMACS))
def test_reference_net_macs_match_the_published_figure(net: str, input_hw: tuple[int, int]) -> None:
    layers = layers_of(trace(reference_net(net), input_hw), 2.0, False)
    gmacs = sum(layer.flops for layer in layers if layer.op_class in CONV_CLASSES + ("matmul",)) / 2e9
    assert gmacs == pytest.approx(PUBLISHED_GMACS[(net, input_hw)], rel=0.03)


def test_every_reference_net_builds_with_a_plausible_size() -> None:
    for name in REFERENCE_NETS:
        assert 1e6 < count_params(reference_net(name)) < 2e8, name


@pytest.mark.parametrize("net", list(PUBLISHED_PARAMS))
def test_mmcls_reference_nets_have_the_published_parameter_counts(net: str) -> None:
    assert count_params(reference_net(net)) / 1e6 == pytest.approx(PUBLISHED_PARAMS[net], abs=0.01)


def test_mmseg_segmentors_are_dilated_at_output_stride_8_and_resize_to_the_input() -> None:
    """R50-D8: stages 3 and 4 dilated (2 and 4), the map at 1/8 of the input, logits resized back."""
    for net in ("fcn_r50-d8", "pspnet_r50-d8", "deeplabv3plus_r50-d8"):
        layers = layers_of(trace(reference_net(net), (256, 512)), 2.0, False)
        dilated = [
            layer
            for layer in layers
            if layer.op_class in ("conv_dilated", "conv_depthwise") and layer.conv and layer.conv.dilation_h > 1
        ]
        assert {layer.conv.in_h for layer in dilated} == {32}, net
        assert layers[-1].op_class == "resize" and layers[-1].shape[4:6] == (256, 512), net


@pytest.mark.parametrize("net", list(PUBLISHED_YOLO_PARAMS))
def test_yolov8_reference_nets_have_the_published_parameter_counts(net: str) -> None:
    assert count_params(reference_net(net)) / 1e6 == pytest.approx(PUBLISHED_YOLO_PARAMS[net], abs=0.05)


def test_yolov8_has_two_nearest_upsamplings_and_the_engines_post_processing() -> None:
    """The neck up-samples twice (nearest, x2) and concatenates; the head ends in the DFL expectation
    over 8400 anchors at 640 and one pass over the 80 class scores (EfficientNMS)."""
    layers = layers_of(trace(reference_net("yolov8n"), (640, 640)), 2.0, False)
    resizes = [layer for layer in layers if layer.op_class == "resize"]
    assert [layer.op for layer in resizes] == ["aten.upsample_nearest2d"] * 2
    assert sum(layer.op_class == "matmul" for layer in layers) == 1
    assert layers[-2].op_class == "reduce" and layers[-2].flops == 8400 * 80
