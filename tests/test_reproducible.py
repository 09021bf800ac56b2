"""Same seed, same result (issue 22): `nasseg train` run twice in two fresh processes with the same seed
gives the same metrics and, bit for bit on the CPU, the same weights; another seed gives others.

Fresh processes matter: the bug this guards against was a network initialised before anything seeded
torch, which an in-process test that seeds torch itself cannot see."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import torch

DATA = "synthetic:train=12,val=4,test=4"
TIMING = ("train_seconds", "images_per_second", "forward_backward_fraction", "provenance")  # wall-clock only


def _train(out: Path, seed: int) -> tuple[dict, dict]:
    args = [
        "train",
        "espnet-c",
        "--data",
        DATA,
        "--schedule",
        "tiny",
        "--steps",
        "6",
        "--seed",
        str(seed),
        "--out",
        str(out),
        "--json",
    ]
    done = subprocess.run(
        [sys.executable, "-c", "from nasseg.cli import app; app()", *args],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    metrics = json.loads((out / "metrics.json").read_text())
    assert json.loads(done.stdout)["miou"] == metrics["miou"]
    checkpoint = torch.load(out / "checkpoint.pt", map_location="cpu", weights_only=True)
    return {k: v for k, v in metrics.items() if k not in TIMING}, checkpoint


def _tensors(tree, prefix: str = "") -> dict[str, torch.Tensor]:
    """Every tensor in a checkpoint, by its path (model weights and buffers, optimiser moments, RNG states)."""
    if isinstance(tree, torch.Tensor):
        return {prefix: tree}
    items = tree.items() if isinstance(tree, dict) else enumerate(tree) if isinstance(tree, list | tuple) else ()
    found: dict[str, torch.Tensor] = {}
    for key, value in items:
        found.update(_tensors(value, f"{prefix}/{key}"))
    return found


def test_same_seed_same_result_bit_for_bit_and_another_seed_differs(tmp_path) -> None:
    metrics_a, checkpoint_a = _train(tmp_path / "a", seed=0)
    metrics_b, checkpoint_b = _train(tmp_path / "b", seed=0)
    assert metrics_a == metrics_b  # mIoU, per-class IoU, pixel accuracy, history, confusion, the run itself
    tensors_a, tensors_b = _tensors(checkpoint_a), _tensors(checkpoint_b)
    assert tensors_a.keys() == tensors_b.keys() and any(k.startswith("/model/") for k in tensors_a)
    unequal = [k for k in tensors_a if not torch.equal(tensors_a[k], tensors_b[k])]
    assert not unequal, f"differ between two runs of seed 0: {unequal[:5]}"

    # Another seed: other initial weights, batches and augmentation, so other weights after 6 steps (its
    # metrics may still coincide: 6 steps can leave both seeds predicting the same few classes).
    metrics_c, checkpoint_c = _train(tmp_path / "c", seed=1)
    model_a, model_c = checkpoint_a["model"], checkpoint_c["model"]
    assert metrics_c["run"]["seed"] == 1
    differ = [k for k in model_a if model_a[k].is_floating_point() and not torch.equal(model_a[k], model_c[k])]
    assert len(differ) > len(model_a) // 2
