"""Every baseline of every space: a sampler point that builds, trains, exports and sizes its output.

These tests discover the baselines from ``search_spaces/*.yaml``, so a new baseline is covered the
moment it is declared.
"""

from __future__ import annotations

import io

import numpy as np
import onnxruntime as ort
import optuna
import pytest
import torch

from nasseg.models import build
from nasseg.spaces import all_spaces

SPACES = all_spaces()
BASELINES = [(space, name) for space in SPACES for name in space.baselines]
IDS = [name for _, name in BASELINES]

# CamVid's 360x480 (neither side a multiple of 32) and Cityscapes' 512x1024.
CAMVID_HW, CITYSCAPES_HW = (360, 480), (512, 1024)


@pytest.fixture(scope="module", params=BASELINES, ids=IDS)
def baseline(request):
    space, name = request.param
    return space, name, space.baseline(name)


def test_baseline_names_are_unique_across_spaces():
    names = [name for _, name in BASELINES]
    assert len(names) == len(set(names)), sorted(n for n in names if names.count(n) > 1)


def test_every_family_has_a_space():
    assert sorted(s.spec.family for s in SPACES) == sorted(
        ["espnet", "ejpnet", "fassd", "jetseg", "pyramid_shufflenet"]
    )


def test_baseline_is_a_point_a_sampler_produces(baseline):
    space, _name, config = baseline
    trial = optuna.trial.FixedTrial(space.encode(config.params))
    assert space.sample_params(trial) == dict(config.params)


def test_forward_backward_gives_logits_of_input_size(baseline):
    _, name, config = baseline
    torch.manual_seed(0)
    model = build(config).train()
    x = torch.randn(2, 3, *CAMVID_HW)
    logits = model(x)
    assert logits.shape == (2, config.num_classes, *CAMVID_HW)
    assert torch.isfinite(logits).all()
    logits.float().square().mean().backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    with_grad = sum(g is not None and bool(torch.any(g != 0)) for g in grads)
    # Almost every parameter must learn (JetSeg's published decoder leaves some dead: documented J3).
    assert with_grad >= 0.6 * len(grads), f"{name}: only {with_grad}/{len(grads)} parameters get a gradient"


def test_training_forward_at_cityscapes_size_gives_logits_of_input_size(baseline):
    # Without autograd: for JetSeg's workstation config, a batch of two 512x1024 images keeps 10 GB of
    # activations for a backward pass. What depends on the input size (padding, resizing back to it) is
    # in the forward pass; the gradients are checked at CamVid's size above.
    _, _, config = baseline
    torch.manual_seed(0)
    model = build(config).train()
    with torch.no_grad():
        logits = model(torch.randn(2, 3, *CITYSCAPES_HW))
    assert logits.shape == (2, config.num_classes, *CITYSCAPES_HW)
    assert torch.isfinite(logits).all()


def test_odd_input_size(baseline):
    _, _, config = baseline
    model = build(config).eval()
    with torch.no_grad():
        assert model(torch.randn(1, 3, 361, 479)).shape == (1, config.num_classes, 361, 479)


def test_onnx_export_matches_onnxruntime(baseline):
    _, name, config = baseline
    torch.manual_seed(0)
    model = build(config).eval()
    x = torch.randn(1, 3, 360, 480)
    with torch.no_grad():
        expected = model(x).numpy()
    buffer = io.BytesIO()
    torch.onnx.export(
        model, (x,), buffer, opset_version=17, dynamo=False, input_names=["image"], output_names=["logits"]
    )
    session = ort.InferenceSession(buffer.getvalue(), providers=["CPUExecutionProvider"])
    (got,) = session.run(None, {"image": x.numpy()})
    assert got.shape == expected.shape
    scale = max(1.0, float(np.abs(expected).max()))
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-4 * scale, err_msg=f"{name}: ONNX differs")


@pytest.mark.parametrize("space", SPACES, ids=[s.name for s in SPACES])
def test_sampled_architectures_build_or_are_rejected_with_reasons(space):
    """A sampler never produces a network that fails: it either builds and runs, or is rejected up front."""
    drawn = space.sample_feasible(8, seed=7, attempts_per_sample=1)
    assert all(reasons and all(isinstance(r, str) and r for r in reasons) for reasons in drawn.rejections)
    built = 0
    for config in drawn.configs:
        model = build(config).eval()
        h, w = space.spec.search_input
        with torch.no_grad():
            out = model(torch.randn(1, 3, h // 2, w // 2))
        assert out.shape == (1, config.num_classes, h // 2, w // 2)
        built += 1
    assert built >= 3, f"{space.name}: only {built}/8 sampled architectures were feasible"
