"""Zero-cost proxies: each against its definition on networks small enough to work out by hand, and on
a real nasseg network: deterministic under a seed, and the caller's network left as it was."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from nasseg.data import load_split
from nasseg.spaces import find_baseline
from nasseg.train.runs import build_seeded
from nasseg.train.zero_cost import grad_norm, naswot, seeded_batch, synflow, zero_cost_scores


def test_synflow_of_a_positive_linear_chain_is_its_depth_times_its_output() -> None:
    # With every weight positive and an all-ones input, R = sum of the output is linear in each layer's
    # weights, so sum(theta * dR/dtheta) over one layer is R itself: L layers give L * R.
    torch.manual_seed(0)
    chain = nn.Sequential(
        nn.Conv2d(3, 4, 1, bias=False), nn.Conv2d(4, 2, 1, bias=False), nn.Conv2d(2, 1, 1, bias=False)
    )
    with torch.no_grad():
        a, b, c = (layer.weight.abs().double().flatten(1) for layer in chain)
        output_per_pixel = float((c @ b @ a).sum())
    assert synflow(chain, (5, 7)) == pytest.approx(math.log(3 * 35 * output_per_pixel), rel=1e-9)


def test_naswot_is_the_log_determinant_of_the_sign_agreement_kernel() -> None:
    torch.manual_seed(0)
    images = torch.randn(5, 3, 4, 4)
    net = nn.Sequential(nn.Conv2d(3, 6, 1), nn.ReLU(), nn.Conv2d(6, 2, 1), nn.PReLU())
    with torch.no_grad():
        first = net[0](images)
        second = net[2](net[1](first))
    codes = torch.cat([(first > 0).flatten(1), (second > 0).flatten(1)], 1).double().numpy()
    kernel = codes @ codes.T + (1 - codes) @ (1 - codes).T
    assert naswot(net, images) == pytest.approx(float(np.linalg.slogdet(kernel)[1]), rel=1e-9)
    # Two identical images make K singular: a network cannot tell them apart.
    assert naswot(net, torch.cat([images[:1], images[:1]])) == -math.inf


def test_grad_norm_is_the_norm_of_the_loss_gradient() -> None:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 3, 1))
    images, labels = torch.randn(2, 3, 6, 6), torch.randint(0, 3, (2, 6, 6))
    labels[0, 0, 0] = 255  # ignored
    loss = nn.functional.cross_entropy(net(images), labels, ignore_index=255)
    grads = torch.autograd.grad(loss, list(net.parameters()))
    expected = math.sqrt(sum(float(g.pow(2).sum()) for g in grads))
    assert grad_norm(net, images, labels) == pytest.approx(expected, rel=1e-6)


def test_scores_of_a_real_network_are_seeded_and_leave_it_untouched() -> None:
    space, name = find_baseline("espnet-c")
    model = build_seeded(space.baseline(name).with_classes(11), 0).eval()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    split = load_split("synthetic:train=6,val=2,test=2", "train", (64, 96))
    scores = zero_cost_scores(model, split, 4, seed=0)
    assert set(scores) == {"synflow", "naswot", "grad_norm"} and all(math.isfinite(v) for v in scores.values())
    assert zero_cost_scores(model, split, 4, seed=0) == scores  # same seed, same batch, same numbers
    assert zero_cost_scores(model, split, 4, seed=1)["naswot"] != scores["naswot"]  # another batch
    assert not model.training and all(p.grad is None for p in model.parameters())
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_a_batch_larger_than_the_split_is_refused() -> None:
    split = load_split("synthetic:train=3,val=2,test=2", "train", (32, 32))
    with pytest.raises(ValueError, match=r"batch_size must be in \[1, 3\]"):
        seeded_batch(split, 4, 0)
    assert seeded_batch(split, 3, 0)[0].shape == (3, 3, 32, 32)
