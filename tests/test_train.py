"""The short-schedule trainer: metrics, losses against their papers' definitions, schedules, and
training behaviour (determinism, resume, divergence, budget and callback stops, real learning)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from nasseg.data.augment import normalize
from nasseg.data.base import IGNORE_INDEX, DatasetInfo, SegmentationSplit
from nasseg.errors import NassegError, TrainingDiverged
from nasseg.train import Schedule, class_weights, evaluate, get_schedule, make_loss, schedule_names, train
from nasseg.train.losses import JetLoss, OhemCrossEntropy
from nasseg.train.metrics import confusion_matrix, iou_per_class, mean_iou, pixel_accuracy
from nasseg.train.trainer import load_checkpoint, scored_weights

FAMILIES = ["espnet", "ejpnet", "fassd", "jetseg", "pyramid_shufflenet"]


# --- metrics ---------------------------------------------------------------------------------------


def test_confusion_matrix_and_metrics_by_hand() -> None:
    target = torch.tensor([[0, 0, 1, 1], [2, 2, IGNORE_INDEX, 0]])
    pred = torch.tensor([[0, 1, 1, 1], [2, 0, 2, 0]])
    conf = confusion_matrix(pred, target, 3)
    # rows = true class, columns = predicted; the ignored pixel (predicted 2) is not counted
    assert conf.tolist() == [[2, 1, 0], [0, 2, 0], [1, 0, 1]]
    iou = iou_per_class(conf)
    # class 0: TP 2, FP 1, FN 1 -> 2/4; class 1: TP 2, FP 1 -> 2/3; class 2: TP 1, FN 1 -> 1/2
    assert iou.tolist() == pytest.approx([0.5, 2 / 3, 0.5])
    assert mean_iou(conf) == pytest.approx((0.5 + 2 / 3 + 0.5) / 3)
    assert pixel_accuracy(conf) == pytest.approx(5 / 7)


def test_absent_class_is_nan_and_excluded_but_false_positive_class_counts() -> None:
    target = torch.tensor([0, 0, 1, 1])
    pred = torch.tensor([0, 0, 1, 2])  # class 2 predicted once, never present; class 3 absent from both
    iou = iou_per_class(confusion_matrix(pred, target, 4))
    assert math.isnan(iou[3])
    assert iou[2] == 0.0
    assert mean_iou(confusion_matrix(pred, target, 4)) == pytest.approx((1.0 + 0.5 + 0.0) / 3)


# --- losses ----------------------------------------------------------------------------------------


def _logits_and_target(seed: int = 0, n: int = 2, c: int = 4, hw: int = 5) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(n, c, hw, hw, generator=g) * 2
    target = torch.randint(0, c, (n, hw, hw), generator=g)
    target[0, 0, :3] = IGNORE_INDEX
    return logits, target


def test_cross_entropy_ignores_void_and_all_void_is_zero() -> None:
    logits, target = _logits_and_target()
    loss = make_loss(get_schedule("tiny"))(logits, target)
    valid = target != IGNORE_INDEX
    expected = F.cross_entropy(logits.permute(0, 2, 3, 1)[valid], target[valid])
    assert loss.item() == pytest.approx(expected.item(), rel=1e-6)
    all_void = torch.full_like(target, IGNORE_INDEX)
    assert make_loss(get_schedule("tiny"))(logits, all_void).item() == 0.0


def test_weighted_cross_entropy_matches_torch_and_needs_weights() -> None:
    logits, target = _logits_and_target()
    weights = torch.tensor([0.5, 1.0, 2.0, 4.0])
    schedule = get_schedule("tiny").with_overrides(loss="weighted_ce")
    loss = make_loss(schedule, weights)(logits, target)
    expected = F.cross_entropy(logits, target, weight=weights, ignore_index=IGNORE_INDEX)
    assert loss.item() == pytest.approx(expected.item(), rel=1e-6)
    with pytest.raises(NassegError, match="class weights"):
        make_loss(schedule)


def test_class_weights_follow_enet_formula() -> None:
    labels = torch.tensor([[[0, 0, 0, 1], [1, 2, IGNORE_INDEX, IGNORE_INDEX]]], dtype=torch.uint8)
    split = _split(torch.zeros(1, 3, 2, 4, dtype=torch.uint8), labels, classes=4)
    freq = torch.tensor([3 / 6, 2 / 6, 1 / 6, 0.0])
    assert class_weights(split).tolist() == pytest.approx((1 / torch.log(1.02 + freq)).tolist(), rel=1e-6)


def test_ohem_keeps_only_hard_pixels_but_at_least_min_kept() -> None:
    # 1 image, 2 classes, 6 pixels: true class 0 everywhere, logits make probabilities 0.95, 0.9, 0.6,
    # 0.4, 0.2 and an ignored pixel with a terrible prediction.
    p = torch.tensor([0.95, 0.9, 0.6, 0.4, 0.2, 0.01])
    logits = torch.stack([torch.log(p), torch.log(1 - p)]).reshape(1, 2, 1, 6)
    target = torch.tensor([[[0, 0, 0, 0, 0, IGNORE_INDEX]]])
    ce = -torch.log(p)
    hard = OhemCrossEntropy(thresh=0.7, min_kept=2)(logits, target)
    assert hard.item() == pytest.approx(ce[2:5].mean().item(), rel=1e-5)  # the three below 0.7
    at_least = OhemCrossEntropy(thresh=0.7, min_kept=4)(logits, target)
    assert at_least.item() == pytest.approx(ce[1:5].mean().item(), rel=1e-5)  # the four hardest labelled
    everything = OhemCrossEntropy(thresh=0.7, min_kept=100)(logits, target)
    assert everything.item() == pytest.approx(ce[:5].mean().item(), rel=1e-5)  # never the ignored one


def test_jetloss_against_its_definition_pixel_by_pixel() -> None:
    logits, target = _logits_and_target(seed=3, c=3)
    target[target == 2] = 1  # class 2 absent from the batch: weight 0
    beta, eps = 0.99, 1.0
    loss = JetLoss(beta=beta, eps=eps)(logits, target).item()

    prob = torch.softmax(logits, 1).permute(0, 2, 3, 1).reshape(-1, 3).tolist()
    labels = target.reshape(-1).tolist()
    tp, fp, fn, count = [0.0] * 3, [0.0] * 3, [0.0] * 3, [0] * 3
    for pixel, label in zip(prob, labels, strict=True):
        if label == IGNORE_INDEX:
            continue
        count[label] += 1
        for c in range(3):
            is_c = 1.0 if label == c else 0.0
            tp[c] += pixel[c] * is_c
            fp[c] += pixel[c] * (1 - is_c)
            fn[c] += (1 - pixel[c]) * is_c
    raw = [(1 - beta) / (1 - beta**n) if n else 0.0 for n in count]
    weights = [w / sum(raw) for w in raw]
    expected = 0.0
    for c in range(3):
        recall = (tp[c] + eps) / (tp[c] + fn[c] + eps)
        precision = (tp[c] + eps) / (tp[c] + fp[c] + eps)
        iou = (tp[c] + eps) / (tp[c] + fp[c] + fn[c] + eps)
        expected += weights[c] * ((1 - recall) + (1 - precision) + (1 - iou))
    assert weights[2] == 0.0
    assert loss == pytest.approx(expected, rel=1e-5)


def test_jetloss_is_zero_for_a_perfect_prediction() -> None:
    target = torch.tensor([[[0, 1], [1, IGNORE_INDEX]]])
    logits = F.one_hot(torch.where(target == IGNORE_INDEX, 0, target), 2).permute(0, 3, 1, 2).float() * 1e4
    assert JetLoss()(logits, target).item() == pytest.approx(0.0, abs=1e-6)


# --- schedules -------------------------------------------------------------------------------------


def test_short_eval1_trains_as_short_and_evaluates_whole_frames() -> None:
    """The benchmark's candidate ``short-eval1``, by name: ``short`` but for its evaluation resolution."""
    short, whole = get_schedule("short"), get_schedule("short-eval1")
    assert short.eval_hw((360, 480)) == (180, 240) and whole.eval_hw((360, 480)) == (360, 480)
    assert whole.input_hw((360, 480)) == short.input_hw((360, 480))
    assert whole.with_overrides(name="short", eval_scale=short.eval_scale) == short


def test_named_schedules_load() -> None:
    assert {"tiny", "short", "paper"} <= set(schedule_names())
    short = get_schedule("short")
    assert short.steps and short.input_scale < 1 and short.eval_every
    assert all(get_schedule("paper", family).family == family for family in FAMILIES)
    fassd = get_schedule("paper", "fassd")
    published = ("sgd", 0.02, 0.9, 5e-4, "ohem", 16, (512, 512), 90000)
    assert (
        fassd.optimizer,
        fassd.lr,
        fassd.momentum,
        fassd.weight_decay,
        fassd.loss,
        fassd.batch_size,
        fassd.crop,
        fassd.steps,
    ) == published
    assert get_schedule("paper", "jetseg").loss == "jetloss"
    assert get_schedule("paper", "jetseg").resolve_steps(367) == 15 * math.ceil(367 / 8)


def test_unknown_schedule_or_family_lists_the_valid_ones() -> None:
    with pytest.raises(NassegError, match="tiny"):
        get_schedule("nope")
    with pytest.raises(NassegError, match="fassd"):
        get_schedule("paper", "unet")
    with pytest.raises(NassegError, match="espnet"):
        get_schedule("paper")


def test_overrides_validate_and_swap_length() -> None:
    tiny = get_schedule("tiny")
    by_epochs = tiny.with_overrides(epochs=2)
    assert by_epochs.steps is None and by_epochs.resolve_steps(10) == 2 * math.ceil(10 / tiny.batch_size)
    assert by_epochs.with_overrides(steps=7).epochs is None
    with pytest.raises(NassegError, match="unknown"):
        tiny.with_overrides(learning_rate=1.0)
    with pytest.raises(NassegError):
        tiny.with_overrides(lr=-1.0)
    assert Schedule.model_validate(tiny.to_dict()) == tiny
    assert json.loads(json.dumps(tiny.to_dict())) == tiny.to_dict()


def test_input_hw_rounds_and_lr_policy() -> None:
    short = get_schedule("short")
    assert short.input_hw((360, 480)) == (180, 240)
    assert short.with_overrides(input_scale=0.33).input_hw((360, 480)) == (119, 158)
    s = get_schedule("tiny").with_overrides(lr=1.0, warmup_steps=4, poly_power=1.0, steps=14)
    assert [s.lr_at(i, 14) for i in range(4)] == pytest.approx([0.25, 0.5, 0.75, 1.0])
    assert s.lr_at(4, 14) == 1.0 and s.lr_at(9, 14) == pytest.approx(0.5)
    espnet = get_schedule("paper", "espnet")
    assert espnet.lr_at(0, 300) == 0.0005 and espnet.lr_at(150, 300) == 0.00025 and espnet.lr_at(250, 300) == 0.000125


def test_paper_recipe_scaled_to_short_keeps_policy_takes_length() -> None:
    short = get_schedule("short")
    scaled = get_schedule("paper", "fassd").scaled_to(short)
    assert (scaled.optimizer, scaled.lr, scaled.loss, scaled.momentum) == ("sgd", 0.02, "ohem", 0.9)
    assert (scaled.steps, scaled.batch_size, scaled.crop, scaled.input_scale) == (
        short.steps,
        short.batch_size,
        short.crop,
        short.input_scale,
    )


# --- training --------------------------------------------------------------------------------------


def _split(images: torch.Tensor, labels: torch.Tensor, classes: int = 3, split: str = "train") -> SegmentationSplit:
    info = DatasetInfo("test://tensors", "tensors", tuple(f"c{i}" for i in range(classes)))
    return SegmentationSplit(info, split, images, labels, tuple(f"{i}.png" for i in range(len(images))))


def _bars(n: int, seed: int, hw: int = 48, width: int = 5, length: int = 20) -> SegmentationSplit:
    """A horizontal bar (class 1) and a vertical bar (class 2) of the same colour on noise: a pixel's
    class is only told by the shape around it, not by its colour."""
    g = torch.Generator().manual_seed(seed)
    images = (torch.rand(n, 3, hw, hw, generator=g) * 60 + 60).to(torch.uint8)
    labels = torch.zeros(n, hw, hw, dtype=torch.uint8)
    for i in range(n):
        colour = (torch.rand(3, 1, 1, generator=g) * 80 + 160).to(torch.uint8)
        for cls, (h, w) in ((1, (width, length)), (2, (length, width))):
            r, c = torch.randint(1, hw - length - 1, (2,), generator=g).tolist()
            labels[i, r : r + h, c : c + w] = cls
            images[i, :, r : r + h, c : c + w] = colour
    return _split(images, labels, split="train" if seed == 0 else "val")


class SmallNet(nn.Module):
    """A real (if small) conv-BN network, so the behavioural tests run in a second or two."""

    def __init__(self, classes: int = 3) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.Conv2d(8, classes, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


class InfiniteNet(SmallNet):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x) * float("inf")


def _small(seed: int = 0, cls: type[SmallNet] = SmallNet) -> SmallNet:
    torch.manual_seed(seed)
    return cls()


TRAIN, VAL = _bars(12, 0, hw=24, width=3, length=10), _bars(4, 1, hw=24, width=3, length=10)
TINY = get_schedule("tiny").with_overrides(crop=(16, 16), steps=8, eval_every=4)


def test_same_seed_same_history_and_weights() -> None:
    a, b = _small(), _small()
    ra = train(a, TRAIN, VAL, TINY, seed=5, progress=False)
    rb = train(b, TRAIN, VAL, TINY, seed=5, progress=False)
    assert ra.history == rb.history and [s for s, _ in ra.history] == [4, 8]
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values(), strict=True))
    assert ra.stopped == "completed" and ra.steps == 8
    assert 0 < ra.forward_backward_fraction < 1
    assert json.dumps(ra.to_dict(), allow_nan=False)


def test_interrupted_then_resumed_equals_uninterrupted(tmp_path) -> None:
    whole = _small()
    full = train(whole, TRAIN, VAL, TINY, seed=1, progress=False)

    def interrupt(step: int, miou: float) -> bool:
        raise KeyboardInterrupt  # after the step-4 evaluation and its checkpoint

    ckpt = tmp_path / "run.pt"
    with pytest.raises(KeyboardInterrupt):
        train(_small(), TRAIN, VAL, TINY, seed=1, progress=False, checkpoint=ckpt, callback=interrupt)
    assert ckpt.exists() and not list(tmp_path.glob("*.tmp"))
    resumed_model = _small(seed=99)  # different initial weights: everything must come from the checkpoint
    resumed = train(resumed_model, TRAIN, VAL, TINY, seed=1, progress=False, checkpoint=ckpt, resume=True)
    assert resumed.history == full.history and resumed.miou == full.miou and resumed.steps == 8
    for key, value in whole.state_dict().items():
        assert torch.equal(value, resumed_model.state_dict()[key]), key
    with pytest.raises(NassegError, match="different schedule"):
        train(_small(), TRAIN, VAL, TINY.with_overrides(lr=0.5), seed=1, progress=False, checkpoint=ckpt, resume=True)


def test_moving_average_weights_are_scored_and_resumed_without_changing_training(tmp_path) -> None:
    ema = TINY.with_overrides(ema_decay=0.9)
    plain_model, ema_model = _small(), _small()
    train(plain_model, TRAIN, VAL, TINY, seed=1, progress=False)
    averaged = train(ema_model, TRAIN, VAL, ema, seed=1, progress=False, checkpoint=tmp_path / "ema.pt")
    # The average only changes what is scored: the optimiser's weights are those of a run without it.
    assert all(
        torch.equal(x, y)
        for x, y in zip(plain_model.state_dict().values(), ema_model.state_dict().values(), strict=True)
    )
    payload = load_checkpoint(tmp_path / "ema.pt")
    weights = scored_weights(payload)
    assert set(weights) == set(ema_model.state_dict())
    assert any(not torch.equal(weights[k], v) for k, v in ema_model.state_dict().items())
    scored = _small()
    scored.load_state_dict(weights)
    assert evaluate(scored, VAL).miou == averaged.miou
    raw = ema_model.state_dict()
    assert scored_weights({"model": raw, "ema": None}) is raw  # a run without an average scores its weights
    # A vanishing decay follows the weights: the average is the last step's weights.
    follow = _small()
    train(
        follow, TRAIN, VAL, TINY.with_overrides(ema_decay=1e-12), seed=1, progress=False, checkpoint=tmp_path / "f.pt"
    )
    for key, value in scored_weights(load_checkpoint(tmp_path / "f.pt")).items():
        assert torch.allclose(value.float(), follow.state_dict()[key].float(), atol=1e-6), key

    def interrupt(step: int, miou: float) -> bool:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(_small(), TRAIN, VAL, ema, seed=1, progress=False, checkpoint=tmp_path / "cut.pt", callback=interrupt)
    resumed = train(
        _small(seed=99), TRAIN, VAL, ema, seed=1, progress=False, checkpoint=tmp_path / "cut.pt", resume=True
    )
    assert resumed.history == averaged.history
    assert all(torch.equal(weights[k], v) for k, v in scored_weights(load_checkpoint(tmp_path / "cut.pt")).items())


def test_a_checkpoint_from_before_a_schedule_field_existed_still_resumes(tmp_path) -> None:
    ckpt = tmp_path / "run.pt"
    with pytest.raises(KeyboardInterrupt):
        train(
            _small(),
            TRAIN,
            VAL,
            TINY,
            seed=1,
            progress=False,
            checkpoint=ckpt,
            callback=lambda step, miou: (_ for _ in ()).throw(KeyboardInterrupt),
        )
    payload = load_checkpoint(ckpt)
    del payload["schedule"]["ema_decay"]  # as written before the field existed
    torch.save(payload, ckpt)
    assert train(_small(), TRAIN, VAL, TINY, seed=1, progress=False, checkpoint=ckpt, resume=True).steps == 8


def test_ema_decay_must_be_a_fraction() -> None:
    for bad in (0.0, 1.0, 1.5):
        with pytest.raises(NassegError, match="ema_decay"):
            TINY.with_overrides(ema_decay=bad)


def test_infinite_loss_raises_diverged_with_step() -> None:
    with pytest.raises(TrainingDiverged, match="step 1") as info:
        train(_small(cls=InfiniteNet), TRAIN, VAL, TINY, progress=False)
    assert not math.isfinite(info.value.value)


def test_budget_stop_still_evaluates() -> None:
    result = train(_small(), TRAIN, VAL, TINY, time_budget_s=0.0, progress=False)
    assert result.stopped == "budget" and result.steps == 0
    assert result.history == [(0, result.miou)] and 0.0 <= result.miou <= 1.0


def test_callback_false_stops_training() -> None:
    seen: list[tuple[int, float]] = []

    def prune(step: int, miou: float) -> bool:
        seen.append((step, miou))
        return False

    result = train(_small(), TRAIN, VAL, TINY, callback=prune, progress=False)
    assert result.stopped == "callback" and result.steps == 4 and seen == result.history


def test_class_count_mismatch_is_an_error() -> None:
    with pytest.raises(NassegError, match="5 classes"):
        train(SmallNet(classes=5), TRAIN, VAL, TINY, progress=False)


def test_every_loss_trains_finitely() -> None:
    for loss in ("weighted_ce", "ohem", "jetloss"):
        result = train(_small(), TRAIN, VAL, TINY.with_overrides(loss=loss, steps=4), progress=False)
        assert result.steps == 4 and math.isfinite(result.miou)


def test_espnet_c_learns_shapes_beyond_majority_class() -> None:
    from nasseg.models import build
    from nasseg.spaces import find_baseline
    from nasseg.train import evaluate

    train_split, val_split = _bars(48, 0), _bars(16, 1)
    space, name = find_baseline("espnet-c")
    torch.manual_seed(0)
    model = build(space.baseline(name, num_classes=3))
    schedule = get_schedule("tiny").with_overrides(steps=40, eval_every=20, crop=None, scale_range=(1.0, 1.0))
    result = train(model, train_split, val_split, schedule, progress=False)

    majority = int(torch.bincount(train_split.labels.reshape(-1).long()).argmax())
    majority_miou = mean_iou(confusion_matrix(torch.full_like(val_split.labels, majority), val_split.labels, 3))
    assert result.miou > majority_miou + 0.15, (result.miou, majority_miou)
    scored = evaluate(model, val_split, batch_size=5)
    assert scored.miou == pytest.approx(result.miou)
    # The validation loss: cross-entropy over the labelled pixels of the whole split, whatever the batching.
    model.eval()
    with torch.no_grad():
        logits = model(normalize(val_split.images))
    expected = nn.functional.cross_entropy(logits, val_split.labels.long(), ignore_index=val_split.info.ignore_index)
    assert scored.loss == pytest.approx(expected.item(), rel=1e-5)
    assert scored.loss < evaluate(build(space.baseline(name, num_classes=3)), val_split).loss  # it learned


CAMVID = Path(__file__).resolve().parents[1].parent / "shared/data/CamVid"


def _data_uri(name: str) -> str:
    if name == "synthetic":
        return "synthetic:train=60,val=20"
    if not (CAMVID / "train.txt").is_file():
        pytest.skip(f"CamVid not found at {CAMVID} (see shared/data/README.md)")
    return f"camvid:{CAMVID}"


@pytest.mark.parametrize("data", ["synthetic", "camvid"])
def test_tiny_schedule_learns_real_scenes_beyond_majority_class(data: str) -> None:
    """espnet-c from scratch, tiny schedule, real data: from chance to well above the majority class."""
    from nasseg.data import dataset_info, load_split
    from nasseg.models import build
    from nasseg.spaces import find_baseline

    uri, schedule = _data_uri(data), get_schedule("tiny")
    info = dataset_info(uri)
    train_split = load_split(uri, "train", schedule.input_hw(info.native_hw))
    val_split = load_split(uri, "val", schedule.eval_hw(info.native_hw))
    space, name = find_baseline("espnet-c")
    torch.manual_seed(0)
    model = build(space.baseline(name, num_classes=info.num_classes))
    chance = evaluate(model, val_split).miou
    result = train(model, train_split, val_split, schedule, progress=False)

    counts = torch.bincount(train_split.labels.reshape(-1).long(), minlength=256)[: info.num_classes]
    majority = torch.full_like(val_split.labels, int(counts.argmax()))
    majority_miou = mean_iou(confusion_matrix(majority, val_split.labels, info.num_classes))
    # Seen here: 0.22 (synthetic) and 0.20 (CamVid) against 0.025-0.027 for the majority class.
    assert result.miou > max(3 * majority_miou, chance + 0.1), (result.miou, majority_miou, chance)
