"""Short-schedule training: the accuracy objective of the search (see docs/training.md)."""

from nasseg.errors import TrainingDiverged
from nasseg.train.losses import class_weights, make_loss
from nasseg.train.schedule import Schedule, get_schedule, schedule_names
from nasseg.train.trainer import EvalResult, TrainResult, evaluate, train

__all__ = [
    "EvalResult",
    "Schedule",
    "TrainResult",
    "TrainingDiverged",
    "class_weights",
    "evaluate",
    "get_schedule",
    "make_loss",
    "schedule_names",
    "train",
]
