"""A training schedule is data: every number that decides how an architecture is trained.

Named schedules live in ``schedules.yaml`` beside this file. ``tiny`` and ``short`` are the same for
every family; ``paper`` holds each paper's published recipe, keyed by family. ``Schedule.scaled_to``
keeps a recipe's optimiser, loss and learning-rate policy while taking another schedule's length and
resolution, so a paper's recipe can be tried at a budget this machine can afford.
"""

from __future__ import annotations

import math
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError, field_validator, model_validator

from nasseg.errors import ConfigError

SCHEDULES_FILE = Path(__file__).with_name("schedules.yaml")

Optimizer = Literal["sgd", "adam", "adamw"]
LossName = Literal["ce", "ohem", "weighted_ce", "jetloss"]


class Schedule(BaseModel):
    """How to train: length, batch, resolution, optimiser, learning-rate policy, loss, augmentation.

    Exactly one of ``steps`` and ``epochs`` is set; ``resolve_steps`` turns epochs into optimiser
    steps for a given training-set size. ``input_scale`` is the fraction of the dataset's native
    resolution at which the training split is cached; ``eval_scale`` the same for the validation split
    (the caller loads both; the trainer evaluates at whatever resolution the split has).
    ``lr_policy`` "poly" decays ``lr * (1 - t)^poly_power`` after ``warmup_steps`` of linear warm-up;
    "step" multiplies the rate by ``step_gamma`` every ``step_fraction`` of the run (ESPNet's halving).
    ``ema_decay`` keeps an exponential moving average of the weights (batch-norm statistics included)
    and evaluates it instead of the last step's weights, which are noisier.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    family: str | None = None
    steps: int | None = None
    epochs: float | None = None
    batch_size: int
    crop: tuple[int, int] | None = None
    input_scale: float = 1.0
    eval_scale: float = 1.0
    eval_every: int | None = None
    optimizer: Optimizer = "adam"
    lr: float
    momentum: float = 0.9
    weight_decay: float = 0.0
    warmup_steps: int = 0
    lr_policy: Literal["poly", "step"] = "poly"
    poly_power: float = 0.9
    step_fraction: float = 1.0 / 3.0
    step_gamma: float = 0.5
    loss: LossName = "ce"
    ohem_thresh: float = 0.7
    ohem_min_kept: int = 100_000
    jetloss_beta: float = 0.9999
    scale_range: tuple[float, float] = (0.5, 2.0)
    hflip: bool = True
    ema_decay: float | None = None
    notes: str = ""

    @model_validator(mode="after")
    def _one_length(self) -> Schedule:
        if (self.steps is None) == (self.epochs is None):
            raise ValueError("set exactly one of steps and epochs")
        return self

    @field_validator("steps", "batch_size", "eval_every")
    @classmethod
    def _positive(cls, value: int | None) -> int | None:
        if value is not None and value < 1:
            raise ValueError("must be at least 1")
        return value

    @field_validator("input_scale", "eval_scale", "lr")
    @classmethod
    def _positive_float(cls, value: float) -> float:
        if not value > 0:
            raise ValueError("must be positive")
        return value

    @field_validator("ema_decay")
    @classmethod
    def _decay(cls, value: float | None) -> float | None:
        if value is not None and not 0 < value < 1:
            raise ValueError("ema_decay must be in (0, 1)")
        return value

    @field_validator("scale_range")
    @classmethod
    def _scale_range(cls, value: tuple[float, float]) -> tuple[float, float]:
        if not 0 < value[0] <= value[1]:
            raise ValueError("scale_range must satisfy 0 < low <= high")
        return value

    @field_validator("crop")
    @classmethod
    def _crop(cls, value: tuple[int, int] | None) -> tuple[int, int] | None:
        if value is not None and min(value) < 1:
            raise ValueError("crop must be two positive integers")
        return value

    def resolve_steps(self, num_train_images: int) -> int:
        """Optimiser steps of the whole run (an epoch is ``ceil(N / batch_size)`` steps)."""
        if self.steps is not None:
            return self.steps
        assert self.epochs is not None
        return max(1, math.ceil(self.epochs * math.ceil(num_train_images / self.batch_size)))

    def input_hw(self, native_hw: tuple[int, int]) -> tuple[int, int]:
        """The training resolution for a dataset whose native frames are ``native_hw``."""
        return _scaled_hw(native_hw, self.input_scale)

    def eval_hw(self, native_hw: tuple[int, int]) -> tuple[int, int]:
        """The evaluation resolution for a dataset whose native frames are ``native_hw``."""
        return _scaled_hw(native_hw, self.eval_scale)

    def lr_at(self, step: int, total_steps: int) -> float:
        """Learning rate of optimiser step ``step`` (0-based) in a run of ``total_steps``."""
        if step < self.warmup_steps:
            return self.lr * (step + 1) / self.warmup_steps
        span = max(1, total_steps - self.warmup_steps)
        progress = min(1.0, (step - self.warmup_steps) / span)
        if self.lr_policy == "step":
            return self.lr * self.step_gamma ** math.floor(progress / self.step_fraction)
        return self.lr * (1.0 - progress) ** self.poly_power

    def with_overrides(self, **overrides: Any) -> Schedule:
        """A copy with some fields replaced (validated); setting ``steps`` clears ``epochs`` and back."""
        data = self.to_dict()
        if "steps" in overrides and "epochs" not in overrides:
            data["epochs"] = None
        if "epochs" in overrides and "steps" not in overrides:
            data["steps"] = None
        unknown = sorted(set(overrides) - set(type(self).model_fields))
        if unknown:
            fields = ", ".join(type(self).model_fields)
            raise ConfigError(f"unknown schedule field(s) {', '.join(unknown)}; fields: {fields}")
        data.update(overrides)
        return _validated(data, f"schedule {self.name!r} with overrides")

    def scaled_to(self, other: Schedule) -> Schedule:
        """This recipe's optimiser, learning-rate policy, loss and augmentation at ``other``'s length,
        batch, crop, resolution and evaluation cadence (warm-up included, as it belongs to the length)."""
        taken = ("steps", "epochs", "batch_size", "crop", "input_scale", "eval_scale", "eval_every", "warmup_steps")
        return self.with_overrides(name=f"{self.name}@{other.name}", **{key: getattr(other, key) for key in taken})

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON types (tuples become lists)."""
        return self.model_dump(mode="json")


def _scaled_hw(native_hw: tuple[int, int], scale: float) -> tuple[int, int]:
    return max(1, round(native_hw[0] * scale)), max(1, round(native_hw[1] * scale))


def _validated(data: dict[str, Any], where: str) -> Schedule:
    try:
        return Schedule.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(f"{where}: {exc}") from exc


@lru_cache(maxsize=1)
def _table() -> dict[str, Any]:
    return yaml.safe_load(SCHEDULES_FILE.read_text())


def schedule_names() -> list[str]:
    """The named schedules in ``schedules.yaml``."""
    return list(_table())


def _is_per_family(entry: dict[str, Any]) -> bool:
    return "batch_size" not in entry


def get_schedule(name: str, family: str | None = None) -> Schedule:
    """The schedule called ``name``; per-family schedules (``paper``) need ``family``."""
    table = _table()
    if name not in table:
        raise ConfigError(f"no schedule {name!r}; schedules: {', '.join(table)}")
    entry = table[name]
    if not _is_per_family(entry):
        return _validated({"name": name, **entry}, f"schedule {name!r}")
    if family not in entry:
        raise ConfigError(
            f"schedule {name!r} is per family; "
            f"{'no family given' if family is None else f'no family {family!r}'}; families: {', '.join(entry)}"
        )
    return _validated({"name": f"{name}-{family}", "family": family, **entry[family]}, f"schedule {name!r}/{family}")
