"""Segmentation metrics from one confusion matrix: per-class IoU, mIoU, pixel accuracy.

Rows of the confusion matrix are the true class, columns the predicted one. Pixels labelled
``ignore_index`` are left out of everything. A class that appears neither in the labels nor in the
predictions has no IoU (0 / 0): it is NaN and excluded from the mean, so a validation split that
lacks a class does not pull mIoU towards 0 (nor towards 1) for it. A class that is predicted but
never present has IoU 0 and does count.
"""

from __future__ import annotations

import torch

from nasseg.data.base import IGNORE_INDEX


def confusion_matrix(
    pred: torch.Tensor, target: torch.Tensor, num_classes: int, ignore_index: int = IGNORE_INDEX
) -> torch.Tensor:
    """int64 (C, C) counts of (true, predicted) pairs over the pixels whose label is not ignored."""
    target = target.reshape(-1).long()
    pred = pred.reshape(-1).long()
    valid = target != ignore_index
    codes = target[valid] * num_classes + pred[valid]
    return torch.bincount(codes, minlength=num_classes * num_classes).reshape(num_classes, num_classes).cpu()


def iou_per_class(confusion: torch.Tensor) -> torch.Tensor:
    """float64 (C,) TP / (TP + FP + FN); NaN for a class absent from labels and predictions."""
    confusion = confusion.double()
    tp = confusion.diagonal()
    union = confusion.sum(0) + confusion.sum(1) - tp
    return torch.where(union > 0, tp / union.clamp_min(1), torch.full_like(tp, float("nan")))


def mean_iou(confusion: torch.Tensor) -> float:
    """Mean of the defined per-class IoUs (NaN only when no pixel was counted at all)."""
    return float(torch.nanmean(iou_per_class(confusion)))


def pixel_accuracy(confusion: torch.Tensor) -> float:
    """Fraction of counted pixels predicted correctly (NaN when none was counted)."""
    total = int(confusion.sum())
    return float(confusion.diagonal().sum()) / total if total else float("nan")
