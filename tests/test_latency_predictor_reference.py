"""The reference networks of the published Jetson timings have the published sizes."""

from __future__ import annotations

import pytest

from nasseg.latency.predict.costs import CONV_CLASSES, layers_of
from nasseg.latency.predict.graph import trace
from nasseg.latency.predict.reference_nets import REFERENCE_NETS, reference_net
from nasseg.profile import count_params

# GMACs published beside the measurements (jetson.md sections 2.1 and 3.1, at 224x224 unless noted).
PUBLISHED_GMACS = {
    ("resnet18", (224, 224)): 1.82, ("resnet34", (224, 224)): 3.67, ("resnet50", (224, 224)): 4.11,
    ("resnet101", (224, 224)): 7.83, ("vgg16", (224, 224)): 15.5, ("alexnet", (224, 224)): 0.71,
    ("squeezenet1_0", (224, 224)): 0.82, ("squeezenet1_1", (224, 224)): 0.35, ("mobilenet_v2", (224, 224)): 0.30,
    ("shufflenet_v2_x1.0", (224, 224)): 0.146, ("fcn-resnet18", (256, 512)): 4.8,
}


@pytest.mark.parametrize(("net", "input_hw"), list(PUBLISHED_GMACS))
def test_reference_net_macs_match_the_published_figure(net: str, input_hw: tuple[int, int]) -> None:
    layers = layers_of(trace(reference_net(net), input_hw), 2.0, False)
    gmacs = sum(layer.flops for layer in layers if layer.op_class in CONV_CLASSES + ("matmul",)) / 2e9
    assert gmacs == pytest.approx(PUBLISHED_GMACS[(net, input_hw)], rel=0.03)


def test_every_reference_net_builds_with_a_plausible_size() -> None:
    for name in REFERENCE_NETS:
        assert 1e6 < count_params(reference_net(name)) < 2e8, name
