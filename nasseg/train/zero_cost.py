"""Zero-cost accuracy proxies: scores of an untrained network from one batch, with no training.

Each is a published training-free NAS score, computed on any nasseg network at its initial weights:

- ``synflow`` (Tanaka et al. 2020, used for NAS by Abdelfattah et al. 2021): the sum over parameters
  of |theta * dR/dtheta|, R the summed output of the network with every weight made positive, fed an
  all-ones input. Data-free; computed in float64 and reported as its logarithm, since deep networks
  reach 1e100 and more.
- ``naswot`` (Mellor et al. 2021): log |det K| of the kernel K[i, j] = number of activation units in
  which images i and j fall on the same side of zero. Networks whose units separate the images of one
  batch tell them apart better before training. A unit is the input of an activation module (ReLU,
  PReLU, ReLU6, Hardswish, SiLU, REU, TanhExp: all rectifier-like, open for x > 0).
- ``grad_norm``: the L2 norm of the gradient of the cross-entropy loss on one batch.

Every score is larger for a network expected to train better. The batch is drawn from the training
split with the run's seed, and the weights are those ``build_seeded`` gives, so a score is a
deterministic function of (architecture, data, seed).
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import torch
import torch.nn.functional as F
from torch import nn

from nasseg.blocks.activations import REU, TanhExp
from nasseg.data.augment import eval_batch
from nasseg.data.base import IGNORE_INDEX, SegmentationSplit

PROXIES = ("synflow", "naswot", "grad_norm")
_ACTIVATIONS = (nn.ReLU, nn.ReLU6, nn.PReLU, nn.Hardswish, nn.SiLU, REU, TanhExp)


def seeded_batch(split: SegmentationSplit, batch_size: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``batch_size`` distinct images of ``split`` (normalised) and their labels, chosen by ``seed``."""
    if not 0 < batch_size <= len(split):
        raise ValueError(f"batch_size must be in [1, {len(split)}], got {batch_size}")
    generator = torch.Generator().manual_seed(seed)
    return eval_batch(split, torch.randperm(len(split), generator=generator)[:batch_size])


def synflow(model: nn.Module, input_hw: tuple[int, int]) -> float:
    """log of sum |theta * dR/dtheta| with all weights positive and an all-ones input (float64)."""
    model = _copy(model).double().eval()
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.abs_()
    model.zero_grad()
    model(torch.ones(1, 3, *input_hw, dtype=torch.float64)).sum().backward()
    total = sum(float((p.detach() * p.grad).abs().sum()) for p in model.parameters() if p.grad is not None)
    return math.log(total) if total > 0 else -math.inf


def naswot(model: nn.Module, images: torch.Tensor) -> float:
    """log |det K|, K[i, j] = units where images i and j are on the same side of zero (float64)."""
    n = images.shape[0]
    kernel = torch.zeros(n, n, dtype=torch.float64)

    def accumulate(_module: nn.Module, inputs: tuple[torch.Tensor, ...]) -> None:
        codes = (inputs[0].detach() > 0).reshape(n, -1).double()
        kernel.add_(codes @ codes.T + (1 - codes) @ (1 - codes).T)

    model = _copy(model).train()  # batch statistics: the codes of a batch, as the network trains on it
    with _hooks(model, accumulate), torch.no_grad():
        model(images)
    sign, logdet = torch.linalg.slogdet(kernel)
    return float(logdet) if sign > 0 else -math.inf


def grad_norm(model: nn.Module, images: torch.Tensor, labels: torch.Tensor) -> float:
    """L2 norm of the gradient of the cross-entropy loss on one batch, over all parameters."""
    model = _copy(model).train()
    model.zero_grad()
    logits = model(images)
    if logits.shape[-2:] != labels.shape[-2:]:
        logits = F.interpolate(logits, size=labels.shape[-2:], mode="bilinear", align_corners=False)
    F.cross_entropy(logits, labels, ignore_index=IGNORE_INDEX).backward()
    squares = sum(float(p.grad.pow(2).sum()) for p in model.parameters() if p.grad is not None)
    return math.sqrt(squares)


def zero_cost_scores(model: nn.Module, split: SegmentationSplit, batch_size: int, seed: int) -> dict[str, float]:
    """Every proxy of ``PROXIES`` for ``model`` (left untouched) on a seeded batch of ``split``."""
    images, labels = seeded_batch(split, batch_size, seed)
    return {
        "synflow": synflow(model, split.hw),
        "naswot": naswot(model, images),
        "grad_norm": grad_norm(model, images, labels),
    }


def _copy(model: nn.Module) -> nn.Module:
    """A deep copy, so that scoring never changes the caller's weights, buffers or gradients."""
    return copy.deepcopy(model)


@contextmanager
def _hooks(model: nn.Module, hook: Callable[[nn.Module, tuple[torch.Tensor, ...]], None]) -> Iterator[None]:
    """``hook`` sees the input of every activation module while the block runs."""
    handles = [m.register_forward_pre_hook(hook) for m in model.modules() if isinstance(m, _ACTIVATIONS)]
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()
