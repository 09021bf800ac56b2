"""Batches for training and evaluation from an in-memory split, on torch only.

Training batches get a random scale, a random crop and a random horizontal flip, the usual recipe
of the real-time segmentation papers; image and label always get the same geometric transform
(bilinear for images, nearest for labels, so label values stay valid classes or ``IGNORE_INDEX``).
Every random draw comes from the caller's ``torch.Generator``, so a batch is reproducible.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from nasseg.data.base import IGNORE_INDEX, SegmentationSplit

# ImageNet statistics (RGB, images in 0..1): the encoders the search spaces borrow were trained
# with them, and a fixed normalisation keeps a checkpoint valid whatever data it meets next.
MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)


def normalize(images_uint8: torch.Tensor) -> torch.Tensor:
    """uint8 RGB (N, 3, H, W) or (3, H, W) -> float32 ``(x / 255 - MEAN) / STD``."""
    shape = (3, 1, 1)
    mean = torch.tensor(MEAN, dtype=torch.float32, device=images_uint8.device).view(shape)
    std = torch.tensor(STD, dtype=torch.float32, device=images_uint8.device).view(shape)
    return (images_uint8.float() / 255.0 - mean) / std


def eval_batch(split: SegmentationSplit, indices: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Unaugmented batch at the split's resolution: float32 images (N, 3, H, W), int64 labels (N, H, W)."""
    indices = torch.as_tensor(indices, dtype=torch.long)
    return normalize(split.images[indices]), split.labels[indices].long()


def _uniform(generator: torch.Generator, low: float, high: float) -> float:
    return low + (high - low) * float(torch.rand((), generator=generator))


class Augmentation:
    """Random scale, crop (padding where the scaled image is smaller) and horizontal flip.

    ``crop_hw`` None keeps every output at the split's own size: the scaled image is then cropped
    or padded back to it, so scale augmentation still applies unless ``scale_range`` is (1, 1).
    Padding is zero in normalised space for images (the mean colour) and ``IGNORE_INDEX`` for labels,
    so padded pixels never count in the loss.
    """

    def __init__(
        self, crop_hw: tuple[int, int] | None, scale_range: tuple[float, float] = (0.5, 2.0), hflip: bool = True
    ) -> None:
        low, high = scale_range
        if not 0 < low <= high:
            raise ValueError(f"scale_range must satisfy 0 < low <= high, got {scale_range}")
        if crop_hw is not None and (len(crop_hw) != 2 or min(crop_hw) <= 0):
            raise ValueError(f"crop_hw must be two positive integers, got {crop_hw}")
        self.crop_hw = None if crop_hw is None else (int(crop_hw[0]), int(crop_hw[1]))
        self.scale_range = (float(low), float(high))
        self.hflip = hflip

    eval_batch = staticmethod(eval_batch)

    def batch(
        self, split: SegmentationSplit, indices: torch.Tensor, generator: torch.Generator
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Augmented batch: float32 images (N, 3, h, w) normalised, int64 labels (N, h, w)."""
        indices = torch.as_tensor(indices, dtype=torch.long).reshape(-1)
        out_hw = self.crop_hw or split.hw
        pairs = [self._one(split.images[i], split.labels[i], out_hw, generator) for i in indices.tolist()]
        if not pairs:
            return (torch.empty((0, 3, *out_hw), dtype=torch.float32), torch.empty((0, *out_hw), dtype=torch.long))
        images, labels = zip(*pairs)
        return torch.stack(images), torch.stack(labels)

    def _one(
        self, image: torch.Tensor, label: torch.Tensor, out_hw: tuple[int, int], generator: torch.Generator
    ) -> tuple[torch.Tensor, torch.Tensor]:
        # Draw every random number first, in a fixed order, so the stream does not depend on sizes.
        scale = _uniform(generator, *self.scale_range)
        flip = self.hflip and bool(torch.rand((), generator=generator) < 0.5)
        fy, fx = float(torch.rand((), generator=generator)), float(torch.rand((), generator=generator))
        img = normalize(image)[None]
        lab = label[None, None].float()
        if scale != 1.0:
            h, w = image.shape[-2:]
            size = (max(1, round(h * scale)), max(1, round(w * scale)))
            img = F.interpolate(img, size=size, mode="bilinear", align_corners=False)
            lab = F.interpolate(lab, size=size, mode="nearest")
        img, lab = self._crop(img[0], lab[0, 0].long(), out_hw, fy, fx)
        if flip:
            img, lab = img.flip(-1), lab.flip(-1)
        return img.contiguous(), lab.contiguous()

    @staticmethod
    def _crop(
        img: torch.Tensor, lab: torch.Tensor, out_hw: tuple[int, int], fy: float, fx: float
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Pad to at least ``out_hw`` (bottom/right), then cut a window at the fractional offset."""
        oh, ow = out_hw
        h, w = lab.shape
        if h < oh or w < ow:
            pad = (0, max(0, ow - w), 0, max(0, oh - h))
            img = F.pad(img, pad, value=0.0)
            lab = F.pad(lab, pad, value=IGNORE_INDEX)
            h, w = lab.shape
        y0, x0 = int(fy * (h - oh + 1)), int(fx * (w - ow + 1))
        y0, x0 = min(y0, h - oh), min(x0, w - ow)
        return img[:, y0 : y0 + oh, x0 : x0 + ow], lab[y0 : y0 + oh, x0 : x0 + ow]
