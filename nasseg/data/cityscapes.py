"""Cityscapes in its official layout, fine annotations, labelIds mapped to the 19 train ids.

    PATH/leftImg8bit/<split>/<city>/<stem>_leftImg8bit.png
    PATH/gtFine/<split>/<city>/<stem>_gtFine_labelIds.png

Every labelId outside the 19 evaluated classes (void, ego vehicle, ..., license plate) becomes
``IGNORE_INDEX``; a labelId above 33 cannot come from Cityscapes and is an error.
"""

from __future__ import annotations

from pathlib import Path

from nasseg.data.base import (
    IGNORE_INDEX,
    DatasetInfo,
    SegmentationSplit,
    check_root,
    check_split,
    decode_pairs,
    label_lut,
)
from nasseg.errors import DatasetError

CLASS_NAMES = (
    "road",
    "sidewalk",
    "building",
    "wall",
    "fence",
    "pole",
    "traffic light",
    "traffic sign",
    "vegetation",
    "terrain",
    "sky",
    "person",
    "rider",
    "car",
    "truck",
    "bus",
    "train",
    "motorcycle",
    "bicycle",
)
# labelId -> trainId, the standard table of cityscapesScripts' labels.py (ids 0..33).
LABEL_TO_TRAIN = {
    7: 0,
    8: 1,
    11: 2,
    12: 3,
    13: 4,
    17: 5,
    19: 6,
    20: 7,
    21: 8,
    22: 9,
    23: 10,
    24: 11,
    25: 12,
    26: 13,
    27: 14,
    28: 15,
    31: 16,
    32: 17,
    33: 18,
}
SPLITS = ("train", "val", "test")
NATIVE_HW = (1024, 2048)
MAX_LABEL_ID = 33

_LUT = label_lut({i: LABEL_TO_TRAIN.get(i, IGNORE_INDEX) for i in range(MAX_LABEL_ID + 1)})
_IMAGE_SUFFIX = "_leftImg8bit.png"
_LABEL_SUFFIX = "_gtFine_labelIds.png"


def info(uri: str) -> DatasetInfo:
    return DatasetInfo(uri=uri, name="cityscapes", class_names=CLASS_NAMES, native_hw=NATIVE_HW)


def find_pairs(root: Path, split: str) -> list[tuple[Path, Path]]:
    check_root(root, "Cityscapes")
    check_split(split, SPLITS)
    image_dir = root / "leftImg8bit" / split
    label_dir = root / "gtFine" / split
    images = sorted(image_dir.glob(f"*/*{_IMAGE_SUFFIX}"))
    if not images:
        raise DatasetError(f"split {split!r} has no images: looked for <city>/*{_IMAGE_SUFFIX} in {image_dir}")
    pairs: list[tuple[Path, Path]] = []
    missing: list[tuple[Path, Path]] = []
    for image in images:
        stem = image.name[: -len(_IMAGE_SUFFIX)]
        label = label_dir / image.parent.name / f"{stem}{_LABEL_SUFFIX}"
        (pairs if label.is_file() else missing).append((image, label))
    if missing:
        names = ", ".join(f"{i.parent.name}/{i.name[: -len(_IMAGE_SUFFIX)]}" for i, _ in missing[:10])
        raise DatasetError(
            f"split {split!r}: {len(missing)} image(s) without a *{_LABEL_SUFFIX} in {label_dir}: {names}"
        )
    return pairs


def load(uri: str, root: Path, split: str, hw: tuple[int, int] | None) -> SegmentationSplit:
    return decode_pairs(info(uri), split, find_pairs(root, split), hw or NATIVE_HW, _LUT)
