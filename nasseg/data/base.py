"""The one interface every dataset gives the trainer: a split decoded into memory.

A ``SegmentationSplit`` holds every image and label map of one split as uint8 tensors at the
resolution the schedule trains at, so that loading is never the bottleneck of a training step.
Labels use ``IGNORE_INDEX`` (255) for void pixels, whatever the dataset's own void value.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from nasseg.errors import NassegError

IGNORE_INDEX = 255


class DatasetError(NassegError):
    """A dataset cannot be read: a missing path, an empty split, a label map that does not fit."""


@dataclass(frozen=True)
class DatasetInfo:
    """What a dataset is: its URI, classes (in label order) and the label that is ignored."""

    uri: str
    name: str
    class_names: tuple[str, ...]
    ignore_index: int = IGNORE_INDEX

    @property
    def num_classes(self) -> int:
        return len(self.class_names)


@dataclass(frozen=True)
class SegmentationSplit:
    """One split, decoded: ``images`` uint8 (N, 3, H, W) RGB, ``labels`` uint8 (N, H, W) with values in
    ``0 .. num_classes - 1`` or ``ignore_index``; ``files`` names each sample's image (for errors)."""

    info: DatasetInfo
    split: str
    images: torch.Tensor
    labels: torch.Tensor
    files: tuple[str, ...]

    def __len__(self) -> int:
        return int(self.images.shape[0])

    @property
    def hw(self) -> tuple[int, int]:
        return int(self.images.shape[-2]), int(self.images.shape[-1])
