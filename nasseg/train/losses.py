"""The losses the papers train with; each ignores pixels labelled ``IGNORE_INDEX``.

``make_loss(schedule)`` picks one by ``schedule.loss``: "ce" (plain cross-entropy), "weighted_ce"
(ENet/ESPNet class weights, ``class_weights``), "ohem" (FASSD-Net's online bootstrapping) and
"jetloss" (JetSeg). Every loss returns a 0-dimensional tensor and 0 (with a gradient path) when a batch
has no labelled pixel, so an all-void crop is not mistaken for divergence.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from nasseg.data.base import IGNORE_INDEX, SegmentationSplit
from nasseg.errors import ConfigError
from nasseg.train.schedule import Schedule

ENET_C = 1.02


def class_weights(split: SegmentationSplit, c: float = ENET_C) -> torch.Tensor:
    """ENet's class weights, used by ESPNet: ``w_c = 1 / ln(c + p_c)``, ``c = 1.02``, ``p_c`` the
    fraction of the split's labelled pixels that belong to class ``c`` (Paszke et al. 2016, §5.2).
    The weight is bounded by ``1 / ln(1.02)`` (about 50) for a class that never occurs."""
    labels = split.labels.reshape(-1).long()
    labels = labels[labels != split.info.ignore_index]
    counts = torch.bincount(labels, minlength=split.info.num_classes).double()
    freq = counts / counts.sum().clamp_min(1)
    return (1.0 / torch.log(c + freq)).float()


class CrossEntropy(nn.Module):
    """Cross-entropy over labelled pixels, optionally class-weighted (ESPNet: "an inverse class
    probability weighting scheme was used in the cross-entropy loss", after ENet). The weighted mean
    divides by the summed weights of the labelled pixels, as ``torch.nn.CrossEntropyLoss`` does."""

    def __init__(self, weight: torch.Tensor | None = None, ignore_index: int = IGNORE_INDEX) -> None:
        super().__init__()
        self.ignore_index = ignore_index
        self.weight: torch.Tensor | None
        self.register_buffer("weight", None if weight is None else weight.float())

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        per_pixel = F.cross_entropy(
            logits.float(), target, weight=self.weight, ignore_index=self.ignore_index, reduction="none"
        )
        valid = target != self.ignore_index
        if self.weight is None:
            denom = valid.sum()
        else:
            denom = self.weight[target[valid]].sum()
        return per_pixel.sum() / denom.clamp_min(1e-12)


class OhemCrossEntropy(nn.Module):
    """Online bootstrapped cross-entropy, FASSD-Net's loss ("Cross-entropy loss is computed following
    the online bootstrapping strategy [52]", Wu et al. 2016): only hard pixels contribute, those whose
    predicted probability of the true class is below ``thresh``; when fewer than ``min_kept`` are that
    hard, the ``min_kept`` pixels of lowest true-class probability are kept instead. The loss is the
    mean cross-entropy of the kept pixels."""

    def __init__(self, thresh: float = 0.7, min_kept: int = 100_000, ignore_index: int = IGNORE_INDEX) -> None:
        super().__init__()
        self.thresh = thresh
        self.min_kept = min_kept
        self.ignore_index = ignore_index

    def kept_mask(self, per_pixel: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        """Which labelled pixels the loss averages over, given their cross-entropy."""
        prob = torch.exp(-per_pixel.detach())
        hard = valid & (prob < self.thresh)
        num_valid = int(valid.sum())
        if int(hard.sum()) >= min(self.min_kept, num_valid):
            return hard
        # Fewer hard pixels than min_kept: keep the min_kept of highest loss among the labelled ones.
        scores = torch.where(valid, per_pixel.detach(), torch.full_like(per_pixel, -1.0)).reshape(-1)
        top = torch.topk(scores, min(self.min_kept, num_valid)).indices
        keep = torch.zeros_like(scores, dtype=torch.bool)
        keep[top] = True
        return keep.reshape(valid.shape)

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        per_pixel = F.cross_entropy(logits.float(), target, ignore_index=self.ignore_index, reduction="none")
        keep = self.kept_mask(per_pixel, target != self.ignore_index)
        return (per_pixel * keep).sum() / keep.sum().clamp_min(1)


class JetLoss(nn.Module):
    """JetSeg's loss (eq. 1): recall, precision and batch-IoU terms with class-balanced weights.

    The paper writes ``R = sum_c W_c (TP_c + eps) / (TP_c + FN_c + eps)``,
    ``P = sum_c W_c (TP_c + eps) / (TP_c + FP_c + eps)``, ``B = sum_i TP_bi / sum_i (TP + FP + FN)_bi``
    weighted by ``W_c`` (Huang et al.'s batch soft IoU: counts summed over the batch before dividing)
    and ``JetLoss = R + P + B``. Those are scores to maximise; as a loss we minimise their complements,

        ``JetLoss = sum_c W_c [(1 - R_c) + (1 - P_c) + (1 - B_c)]``

    with soft counts from the softmax ``p``: ``TP_c = sum p_c y_c``, ``FP_c = sum p_c (1 - y_c)``,
    ``FN_c = sum (1 - p_c) y_c`` over the batch's labelled pixels (``y`` one-hot). ``W_c`` follows Cui
    et al. (class-balanced loss by effective number): ``(1 - beta) / (1 - beta^n_c)`` with ``n_c`` the
    class's labelled pixels in the batch, normalised to sum to 1; a class absent from the batch gets
    weight 0 (its effective-number weight is undefined), so the loss lies in [0, 3].
    """

    def __init__(self, beta: float = 0.9999, eps: float = 1.0, ignore_index: int = IGNORE_INDEX) -> None:
        super().__init__()
        self.beta = beta
        self.eps = eps
        self.ignore_index = ignore_index

    def class_balance(self, counts: torch.Tensor) -> torch.Tensor:
        """Cui et al.'s weights for per-class pixel counts, 0 for absent classes, summing to 1."""
        present = counts > 0
        effective = 1.0 - torch.pow(torch.tensor(self.beta, dtype=counts.dtype), counts)
        raw = torch.where(present, (1.0 - self.beta) / effective.clamp_min(1e-12), torch.zeros_like(counts))
        return raw / raw.sum().clamp_min(1e-12)

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        num_classes = logits.shape[1]
        valid = (target != self.ignore_index).unsqueeze(1)
        prob = torch.softmax(logits.float(), dim=1) * valid
        onehot = F.one_hot(torch.where(valid.squeeze(1), target, 0), num_classes).permute(0, 3, 1, 2) * valid
        dims = (0, 2, 3)
        tp = (prob * onehot).sum(dims)
        fp = (prob * (1 - onehot)).sum(dims)
        fn = ((1 - prob) * onehot).sum(dims)
        weight = self.class_balance(onehot.sum(dims).double()).to(prob.dtype)
        recall = (tp + self.eps) / (tp + fn + self.eps)
        precision = (tp + self.eps) / (tp + fp + self.eps)
        iou = (tp + self.eps) / (tp + fp + fn + self.eps)
        return (weight * ((1 - recall) + (1 - precision) + (1 - iou))).sum()


def make_loss(schedule: Schedule, class_weights: torch.Tensor | None = None) -> nn.Module:
    """The loss ``schedule.loss`` names; "weighted_ce" needs ``class_weights`` (see ``class_weights``)."""
    if schedule.loss == "ce":
        return CrossEntropy()
    if schedule.loss == "weighted_ce":
        if class_weights is None:
            raise ConfigError("loss 'weighted_ce' needs class weights (nasseg.train.class_weights(split))")
        return CrossEntropy(class_weights)
    if schedule.loss == "ohem":
        return OhemCrossEntropy(schedule.ohem_thresh, schedule.ohem_min_kept)
    return JetLoss(schedule.jetloss_beta)
