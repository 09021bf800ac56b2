"""The short-schedule trainer: the accuracy objective of the search.

``train`` runs a ``Schedule`` on an in-memory ``SegmentationSplit`` and returns a ``TrainResult``;
``evaluate`` measures a model on a split. Training is deterministic under a seed on the CPU: torch's
global RNG is seeded and a dedicated ``torch.Generator`` drives batch sampling and augmentation, and
both states go into every checkpoint, so a resumed run ends with the same weights as an
uninterrupted one.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from torch import nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from nasseg.data.augment import Augmentation, normalize
from nasseg.data.base import SegmentationSplit
from nasseg.errors import ConfigError, DatasetError, TrainingDiverged
from nasseg.train.losses import class_weights, make_loss
from nasseg.train.metrics import confusion_matrix, iou_per_class, mean_iou, pixel_accuracy
from nasseg.train.schedule import Schedule

CHECKPOINT_VERSION = 1
Callback = Callable[[int, float], bool]


# A loss this many times its reference (see ``_train_step``) is a diverged run. With cross-entropy the
# reference is about ln(C) (2.4 for 11 classes): the loss of a network that knows nothing. 100 times it
# means the true class's logit sits hundreds of units below the winner's on average, i.e. the logits
# have blown up. A healthy run stays within a few times its start (espnet-c under `tiny` at 10x its
# learning rate peaks at 1.4x); at lr 1e3 the second step's loss is already 6e9x its start.
DIVERGENCE_FACTOR = 100.0


def check_device(device: str) -> None:
    """Refuse a device this machine cannot train on, before anything is written."""
    kind = device.split(":")[0]
    if kind not in ("cpu", "cuda"):
        raise ConfigError(f"--device {device!r} is not supported; use cpu or cuda")
    if kind == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"--device {device}: this machine has no CUDA device (torch {torch.__version__}); use cpu")


def load_checkpoint(path: Path) -> dict[str, Any]:
    """A checkpoint's payload (tensors and plain data only); a corrupt or truncated file is one error."""
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises UnpicklingError, RuntimeError or EOFError by how the file broke
        why = _first_line(exc)
        raise ConfigError(f"{path}: not a readable nasseg checkpoint (corrupt or truncated: {why})") from None
    if not isinstance(payload, dict) or "model" not in payload:
        raise ConfigError(f"{path}: not a nasseg checkpoint (no model weights in it)")
    return payload


def scored_weights(payload: dict[str, Any]) -> dict[str, Any]:
    """The weights a checkpoint's metrics were measured with: its moving average where it keeps one."""
    ema = payload.get("ema")
    if not ema:
        return payload["model"]
    return {key.removeprefix("module."): value for key, value in ema.items() if key.startswith("module.")}


def _first_line(exc: BaseException, limit: int = 160) -> str:
    """An exception's first line, shortened: torch's messages run to many lines."""
    text = str(exc).strip()
    return (text.splitlines()[0] if text else type(exc).__name__)[:limit]


def _finite_or_none(value: float) -> float | None:
    return None if math.isnan(value) else value


@dataclass
class EvalResult:
    """mIoU over the classes with a defined IoU, per-class IoU (NaN: class absent), pixel accuracy, and the
    mean cross-entropy over labelled pixels (unweighted: a smoother score than mIoU, NaN if none is labelled)."""

    miou: float
    per_class_iou: dict[str, float]
    pixel_accuracy: float
    confusion: list[list[int]]
    loss: float

    def to_dict(self) -> dict[str, Any]:
        """JSON types; NaN becomes None."""
        data = asdict(self)
        data["miou"] = _finite_or_none(self.miou)
        data["per_class_iou"] = {name: _finite_or_none(v) for name, v in self.per_class_iou.items()}
        data["loss"] = _finite_or_none(self.loss)
        return data


@dataclass
class TrainResult:
    """What a run achieved and how it went. ``stopped`` is "completed", "budget" or "callback";
    ``history`` the (step, mIoU) of every evaluation; ``forward_backward_fraction`` the share of
    training-step wall time spent in forward, backward and optimiser step (the rest is batching and
    augmentation)."""

    miou: float
    per_class_iou: dict[str, float]
    pixel_accuracy: float
    steps: int
    train_seconds: float
    images_per_second: float
    stopped: str
    history: list[tuple[int, float]]
    forward_backward_fraction: float
    schedule: dict[str, Any]
    seed: int
    device: str

    def to_dict(self) -> dict[str, Any]:
        """JSON types; NaN becomes None."""
        data = asdict(self)
        data["miou"] = _finite_or_none(self.miou)
        data["per_class_iou"] = {name: _finite_or_none(v) for name, v in self.per_class_iou.items()}
        data["history"] = [[step, _finite_or_none(miou)] for step, miou in self.history]
        return data


@dataclass
class _Progress:
    """Everything about a run that is not weights or optimiser state; checkpointed alongside them."""

    step: int = 0
    history: list[tuple[int, float]] = field(default_factory=list)
    perm: list[int] = field(default_factory=list)
    cursor: int = 0
    images: int = 0
    train_seconds: float = 0.0
    compute_seconds: float = 0.0
    data_seconds: float = 0.0
    first_loss: float | None = None  # the divergence guard's reference; kept so a resumed run judges alike


def _check_logits(logits: torch.Tensor, labels: torch.Tensor, num_classes: int) -> None:
    if logits.shape[1] != num_classes:
        raise ConfigError(f"the model predicts {logits.shape[1]} classes but the dataset has {num_classes}")
    if logits.shape[-2:] != labels.shape[-2:]:
        raise ConfigError(f"the model's output is {tuple(logits.shape[-2:])}, the labels {tuple(labels.shape[-2:])}")


def _autocast(device: torch.device) -> torch.autocast:
    """bf16 autocast where the GPU has it, fp16 otherwise; disabled on the CPU (full fp32 there)."""
    dtype = torch.bfloat16 if device.type == "cuda" and torch.cuda.is_bf16_supported() else torch.float16
    return torch.autocast(device_type=device.type, dtype=dtype, enabled=device.type == "cuda")


def _to_device(images: torch.Tensor, device: torch.device) -> torch.Tensor:
    if device.type == "cuda":
        return images.to(device, non_blocking=True).contiguous(memory_format=torch.channels_last)
    return images


def evaluate(model: nn.Module, split: SegmentationSplit, *, batch_size: int = 8, device: str = "cpu") -> EvalResult:
    """Confusion matrix, per-class IoU, mIoU and pixel accuracy of ``model`` on ``split`` at the
    split's resolution; the model's train/eval mode is restored afterwards."""
    dev = torch.device(device)
    num_classes = split.info.num_classes
    confusion = torch.zeros(num_classes, num_classes, dtype=torch.int64)
    loss_sum, labelled = 0.0, 0
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad(), _autocast(dev):
            for start in range(0, len(split), batch_size):
                labels = split.labels[start : start + batch_size].long()
                logits = model(_to_device(normalize(split.images[start : start + batch_size]), dev))
                _check_logits(logits, labels, num_classes)
                pred = logits.argmax(1).cpu()
                confusion += confusion_matrix(pred, labels, num_classes, split.info.ignore_index)
                loss_sum += nn.functional.cross_entropy(
                    logits.float().cpu(), labels, ignore_index=split.info.ignore_index, reduction="sum"
                ).item()
                labelled += int((labels != split.info.ignore_index).sum())
    finally:
        model.train(was_training)
    ious = iou_per_class(confusion)
    return EvalResult(
        miou=mean_iou(confusion),
        per_class_iou={name: float(iou) for name, iou in zip(split.info.class_names, ious, strict=False)},
        pixel_accuracy=pixel_accuracy(confusion),
        confusion=confusion.tolist(),
        loss=loss_sum / labelled if labelled else math.nan,
    )


def _make_optimizer(model: nn.Module, schedule: Schedule) -> torch.optim.Optimizer:
    params = model.parameters()
    if schedule.optimizer == "sgd":
        return torch.optim.SGD(params, lr=schedule.lr, momentum=schedule.momentum, weight_decay=schedule.weight_decay)
    if schedule.optimizer == "adam":
        return torch.optim.Adam(params, lr=schedule.lr, weight_decay=schedule.weight_decay)
    return torch.optim.AdamW(params, lr=schedule.lr, weight_decay=schedule.weight_decay)


def _next_indices(state: _Progress, num_images: int, batch_size: int, generator: torch.Generator) -> torch.Tensor:
    """The next batch of a shuffled pass over the split; a new permutation starts when one runs out,
    so a batch may straddle two passes (and a split smaller than a batch is still usable)."""
    picked: list[int] = []
    while len(picked) < batch_size:
        if state.cursor >= len(state.perm):
            state.perm = torch.randperm(num_images, generator=generator).tolist()
            state.cursor = 0
        take = min(batch_size - len(picked), len(state.perm) - state.cursor)
        picked.extend(state.perm[state.cursor : state.cursor + take])
        state.cursor += take
    return torch.tensor(picked, dtype=torch.int64)


def _save_checkpoint(path: Path, payload: dict[str, Any]) -> None:
    """Write to a temporary file in the same folder, then rename over the old checkpoint, so an
    interruption leaves either the previous checkpoint or the new one, never half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as handle:
        torch.save(payload, handle)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)


@dataclass
class _Run:
    """The live objects of one training run."""

    model: nn.Module
    optimizer: torch.optim.Optimizer
    scaler: torch.amp.GradScaler
    generator: torch.Generator
    schedule: Schedule
    seed: int
    total_steps: int
    state: _Progress
    ema: AveragedModel | None = None

    @property
    def scored(self) -> nn.Module:
        """The weights an evaluation scores: the moving average where the schedule keeps one."""
        return self.model if self.ema is None else self.ema.module

    def checkpoint_payload(self) -> dict[str, Any]:
        return {
            "version": CHECKPOINT_VERSION,
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scaler": self.scaler.state_dict(),
            "torch_rng": torch.get_rng_state(),
            "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
            "generator": self.generator.get_state(),
            "schedule": self.schedule.to_dict(),
            "seed": self.seed,
            "total_steps": self.total_steps,
            "progress": asdict(self.state),
            "ema": None if self.ema is None else self.ema.state_dict(),
        }

    def restore(self, payload: dict[str, Any], path: Path) -> None:
        if payload.get("version") != CHECKPOINT_VERSION:
            raise ConfigError(f"checkpoint {path} has version {payload.get('version')}, expected {CHECKPOINT_VERSION}")
        if _schedule_of(payload) != self.schedule or payload.get("seed") != self.seed:
            raise ConfigError(f"checkpoint {path} was written by a different schedule or seed; cannot resume from it")
        try:
            self.model.load_state_dict(payload["model"])
            self.optimizer.load_state_dict(payload["optimizer"])
            self.scaler.load_state_dict(payload["scaler"])
            torch.set_rng_state(payload["torch_rng"])
            if payload["cuda_rng"] and torch.cuda.is_available():
                torch.cuda.set_rng_state_all(payload["cuda_rng"])
            self.generator.set_state(payload["generator"])
            if self.ema is not None:
                self.ema.load_state_dict(payload["ema"])
            progress = dict(payload["progress"])
            progress["history"] = [tuple(item) for item in progress["history"]]
            self.state = _Progress(**progress)
        except (KeyError, TypeError, ValueError, RuntimeError) as exc:  # a checkpoint of another network, or cut short
            why = " ".join(str(exc).split())[:200]
            raise ConfigError(f"checkpoint {path} cannot be resumed by this run: {why}") from None


def _schedule_of(payload: dict[str, Any]) -> Schedule | None:
    """The schedule a checkpoint was written under (fields added since take their defaults)."""
    try:
        return Schedule.model_validate(payload.get("schedule"))
    except ValueError:
        return None


def _prepare(
    model: nn.Module,
    train_split: SegmentationSplit,
    val_split: SegmentationSplit,
    schedule: Schedule,
    seed: int,
    device: torch.device,
) -> _Run:
    if val_split.info.class_names != train_split.info.class_names:
        raise DatasetError("the training and validation splits have different classes")
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    model.to(device)
    if device.type == "cuda":  # not on the CPU: there channels-last crashes some JetSeg backwards (docs/training.md)
        model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]  # torch's stubs omit it
    # fp16 needs loss scaling; bf16 (and the CPU's fp32) does not.
    fp16 = device.type == "cuda" and not torch.cuda.is_bf16_supported()
    return _Run(
        model=model,
        optimizer=_make_optimizer(model, schedule),
        scaler=torch.amp.GradScaler(device.type, enabled=fp16),
        generator=generator,
        schedule=schedule,
        seed=seed,
        total_steps=schedule.resolve_steps(len(train_split)),
        state=_Progress(),
        ema=None
        if schedule.ema_decay is None
        else AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(schedule.ema_decay), use_buffers=True),
    )


def _train_step(run: _Run, loss_fn: nn.Module, augment: Any, split: SegmentationSplit, device: torch.device) -> float:
    """One optimiser step; returns its loss and books data vs compute time."""
    state = run.state
    t0 = time.perf_counter()
    indices = _next_indices(state, len(split), run.schedule.batch_size, run.generator)
    images, labels = augment.batch(split, indices, run.generator)
    images, labels = _to_device(images, device), labels.to(device, non_blocking=True)
    t1 = time.perf_counter()
    for group in run.optimizer.param_groups:
        group["lr"] = run.schedule.lr_at(state.step, run.total_steps)
    with _autocast(device):
        logits = run.model(images)
    if state.step == 0:
        _check_logits(logits, labels, split.info.num_classes)
    loss = loss_fn(logits, labels)  # the losses compute in fp32 whatever autocast produced
    value = float(loss.item())
    if not math.isfinite(value):
        raise TrainingDiverged(state.step + 1, value)
    if state.first_loss is None:
        state.first_loss = value
    reference = max(state.first_loss, math.log(split.info.num_classes))
    if value > DIVERGENCE_FACTOR * reference:
        raise TrainingDiverged(
            state.step + 1,
            value,
            f", over {DIVERGENCE_FACTOR:.0f}x its reference {reference:.4g} (the larger of the first step's loss and "
            f"ln {split.info.num_classes} classes); lower the learning rate",
        )
    run.optimizer.zero_grad(set_to_none=True)
    run.scaler.scale(loss).backward()
    run.scaler.step(run.optimizer)
    run.scaler.update()
    if run.ema is not None:
        run.ema.update_parameters(run.model)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    t2 = time.perf_counter()
    state.step += 1
    state.images += len(indices)
    state.data_seconds += t1 - t0
    state.compute_seconds += t2 - t1
    return value


def _progress_bar(enabled: bool) -> Progress:
    return Progress(
        TextColumn("train"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("{task.fields[info]}"),
        disable=not enabled,
    )


def train(
    model: nn.Module,
    train_split: SegmentationSplit,
    val_split: SegmentationSplit,
    schedule: Schedule,
    *,
    seed: int = 0,
    device: str = "cpu",
    callback: Callback | None = None,
    time_budget_s: float | None = None,
    checkpoint: Path | None = None,
    resume: bool = False,
    progress: bool = True,
) -> TrainResult:
    """Train ``model`` on ``train_split`` under ``schedule`` and evaluate it on ``val_split``.

    Evaluates every ``schedule.eval_every`` steps and at the last step; after each of those
    evaluations ``callback(step, miou)`` is called and a False return stops the run ("callback").
    ``time_budget_s`` (this call's wall-clock, evaluations included) stops between steps ("budget");
    the model is still evaluated. ``checkpoint`` is written atomically after every evaluation;
    with ``resume`` an existing checkpoint of the same schedule and seed is continued (a missing one
    starts afresh). A NaN or infinite loss, or one over ``DIVERGENCE_FACTOR`` times its start, raises
    ``TrainingDiverged``.
    """

    dev = torch.device(device)
    checkpoint = None if checkpoint is None else Path(checkpoint)
    run = _prepare(model, train_split, val_split, schedule, seed, dev)
    if resume and checkpoint is not None and checkpoint.exists():
        run.restore(load_checkpoint(checkpoint), checkpoint)
    weights = class_weights(train_split) if schedule.loss == "weighted_ce" else None
    loss_fn = make_loss(schedule, weights).to(dev)
    augment = Augmentation(schedule.crop, scale_range=schedule.scale_range, hflip=schedule.hflip)
    model.train()
    started = time.perf_counter()
    seconds_before = run.state.train_seconds
    stopped = "completed"
    last: EvalResult | None = None
    loss_value = lr = float("nan")

    def record(result: EvalResult) -> None:
        run.state.history.append((run.state.step, result.miou))
        run.state.train_seconds = seconds_before + time.perf_counter() - started
        if checkpoint is not None:
            _save_checkpoint(checkpoint, run.checkpoint_payload())

    with _progress_bar(progress) as bar:
        task = bar.add_task("train", total=run.total_steps, completed=run.state.step, info="")
        while run.state.step < run.total_steps:
            if time_budget_s is not None and time.perf_counter() - started >= time_budget_s:
                stopped = "budget"
                break
            lr = schedule.lr_at(run.state.step, run.total_steps)
            loss_value = _train_step(run, loss_fn, augment, train_split, dev)
            step = run.state.step
            if step == run.total_steps or (schedule.eval_every and step % schedule.eval_every == 0):
                last = evaluate(run.scored, val_split, batch_size=schedule.batch_size, device=device)
                record(last)
                if callback is not None and callback(step, last.miou) is False and step < run.total_steps:
                    stopped = "callback"
            miou = run.state.history[-1][1] if run.state.history else float("nan")
            bar.update(task, completed=step, info=f"loss {loss_value:.4f}  lr {lr:.2e}  mIoU {miou:.4f}")
            if stopped == "callback":
                break
    if last is None or run.state.history[-1][0] != run.state.step:
        # A budget stop between evaluations, or a resumed run that was already complete.
        last = evaluate(run.scored, val_split, batch_size=schedule.batch_size, device=device)
        if not run.state.history or run.state.history[-1][0] != run.state.step:
            record(last)
    run.state.train_seconds = seconds_before + time.perf_counter() - started
    return _result(run, last, stopped, device)


def _result(run: _Run, last: EvalResult, stopped: str, device: str) -> TrainResult:
    state = run.state
    step_seconds = state.compute_seconds + state.data_seconds
    return TrainResult(
        miou=last.miou,
        per_class_iou=last.per_class_iou,
        pixel_accuracy=last.pixel_accuracy,
        steps=state.step,
        train_seconds=state.train_seconds,
        images_per_second=state.images / step_seconds if step_seconds > 0 else 0.0,
        stopped=stopped,
        history=list(state.history),
        forward_backward_fraction=state.compute_seconds / step_seconds if step_seconds > 0 else 0.0,
        schedule=run.schedule.to_dict(),
        seed=run.seed,
        device=device,
    )
