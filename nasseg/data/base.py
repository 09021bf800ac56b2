"""The one interface every dataset gives the trainer: a split decoded into memory.

A ``SegmentationSplit`` holds every image and label map of one split as uint8 tensors at the
resolution the schedule trains at, so that loading is never the bottleneck of a training step.
Labels use ``IGNORE_INDEX`` (255) for void pixels, whatever the dataset's own void value.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from PIL import Image

from nasseg.errors import DatasetError

IGNORE_INDEX = 255


@dataclass(frozen=True)
class DatasetInfo:
    """What a dataset is: its URI, classes (in label order), native frame size and the ignored label."""

    uri: str
    name: str
    class_names: tuple[str, ...]
    ignore_index: int = IGNORE_INDEX
    # The frame size the dataset ships at, which schedules scale from (None: a split built from tensors).
    native_hw: tuple[int, int] | None = None

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def frame_hw(self) -> tuple[int, int]:
        """The native frame size, which a schedule scales its resolutions from."""
        if self.native_hw is None:
            raise DatasetError(f"{self.uri} has no native frame size for a schedule to scale")
        return self.native_hw


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


# --- helpers shared by the file-based datasets -------------------------------------------------


def label_lut(mapping: dict[int, int]) -> np.ndarray:
    """A 256-entry lookup table from raw label values to train ids; -1 marks a value not allowed."""
    lut = np.full(256, -1, dtype=np.int16)
    for raw, train in mapping.items():
        lut[raw] = train
    return lut


def _reason(exc: OSError) -> str:
    """PIL's or the OS's reason, without the path (the message names the file itself)."""
    return exc.strerror or " ".join(str(exc).split()) or type(exc).__name__


def _decode_one(
    image_path: Path, label_path: Path, hw: tuple[int, int], lut: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    # Missing or unreadable file: name it, not PIL's internals. Each file is read in its own block
    # because a truncated PNG fails while decoding, where PIL's error carries no filename.
    try:
        with Image.open(image_path) as im:
            image = im.convert("RGB")
    except OSError as exc:
        raise DatasetError(f"cannot read image {image_path}: {_reason(exc)}") from exc
    try:
        with Image.open(label_path) as lb:
            label = np.asarray(lb)
    except OSError as exc:
        raise DatasetError(f"cannot read label map {label_path}: {_reason(exc)}") from exc
    if label.ndim != 2:
        raise DatasetError(f"label map {label_path} is not single-channel (shape {label.shape})")
    if label.shape != (image.height, image.width):
        raise DatasetError(
            f"label map {label_path} is {label.shape[1]}x{label.shape[0]} (WxH) but its "
            f"image {image_path} is {image.width}x{image.height}"
        )
    if label.dtype != np.uint8:  # 16/32-bit PNGs: anything above 255 is out of range anyway
        if label.min() < 0 or label.max() > 255:
            bad = np.unique(label[(label < 0) | (label > 255)])[:10]
            raise DatasetError(f"label map {label_path} holds values outside the class range: {bad.tolist()}")
        label = label.astype(np.uint8)
    mapped = lut[label]
    if (mapped < 0).any():
        bad = np.unique(label[mapped < 0])[:10]
        allowed = np.flatnonzero(lut >= 0)
        raise DatasetError(
            f"label map {label_path} holds values outside the class range "
            f"{allowed.min()}..{allowed.max()}: {bad.tolist()}"
        )
    label_im = Image.fromarray(mapped.astype(np.uint8), mode="L")
    h, w = hw
    if (image.height, image.width) != (h, w):
        image = image.resize((w, h), Image.Resampling.BILINEAR)
        label_im = label_im.resize((w, h), Image.Resampling.NEAREST)
    return np.asarray(image), np.asarray(label_im)


def decode_pairs(
    info: DatasetInfo, split: str, pairs: Sequence[tuple[Path, Path]], hw: tuple[int, int], lut: np.ndarray
) -> SegmentationSplit:
    """Decode (image, label) file pairs into one split at ``hw``, labels mapped through ``lut``.

    A thread pool overlaps the PNG decoding and resizing: PIL releases the GIL there, so even two
    cores roughly halve the time a search spends before its first step.
    """
    h, w = hw
    images = np.empty((len(pairs), 3, h, w), dtype=np.uint8)  # channels first, as the split holds them
    labels = np.empty((len(pairs), h, w), dtype=np.uint8)

    def work(i: int) -> None:
        image, labels[i] = _decode_one(pairs[i][0], pairs[i][1], hw, lut)
        images[i] = image.transpose(2, 0, 1)  # in the worker: no second full-split copy afterwards

    workers = min(8, (os.cpu_count() or 1) + 2)
    with ThreadPoolExecutor(max_workers=workers) as pool:
        list(pool.map(work, range(len(pairs))))  # re-raises the first failure, in file order
    return SegmentationSplit(
        info=info,
        split=split,
        images=torch.from_numpy(images),
        labels=torch.from_numpy(labels),
        files=tuple(str(p[0]) for p in pairs),
    )


def check_split(split: str, valid: Sequence[str]) -> None:
    """Unknown split names list the valid ones."""
    if split not in valid:
        raise DatasetError(f"unknown split {split!r}; valid splits: {', '.join(valid)}")


def check_root(root: Path, name: str) -> None:
    if not root.is_dir():
        raise DatasetError(f"{name} dataset path {root} does not exist or is not a directory")
