"""CamVid: the SegNet layout (list files with ``/SegNet/CamVid/...`` paths) or a plain folder layout.

SegNet layout (as distributed, and in ``../shared/data/CamVid``)::

    PATH/train.txt  PATH/val.txt  PATH/test.txt    lines: "<image path> <label path>"
    PATH/train/*.png   PATH/trainannot/*.png       ... likewise val, test

Folder layout (no list files): ``PATH/images/<split>/*.png|jpg`` with ``PATH/labels/<split>/*.png``,
or ``PATH/<split>/`` with ``PATH/<split>annot/``, images and labels paired by file stem.

Labels 0..10 are the classes below; 11 is void and becomes ``IGNORE_INDEX``.
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
    "Sky",
    "Building",
    "Pole",
    "Road",
    "Pavement",
    "Tree",
    "SignSymbol",
    "Fence",
    "Car",
    "Pedestrian",
    "Bicyclist",
)
SPLITS = ("train", "val", "test")
NATIVE_HW = (360, 480)
VOID = 11
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")

_LUT = label_lut({**{c: c for c in range(len(CLASS_NAMES))}, VOID: IGNORE_INDEX})


def info(uri: str) -> DatasetInfo:
    return DatasetInfo(uri=uri, name="camvid", class_names=CLASS_NAMES, native_hw=NATIVE_HW)


def _resolve(root: Path, listed: str) -> Path:
    """The list files carry absolute paths of the machine SegNet was built on: keep only what follows
    the ``CamVid/`` component and resolve it under the dataset root."""
    parts = Path(listed).parts
    if "CamVid" in parts:
        parts = parts[len(parts) - parts[::-1].index("CamVid") :]
    else:  # a relative or foreign path: strip any anchor and take it as relative to the root
        parts = tuple(p for p in parts if p not in ("/", "\\") and not p.endswith(":\\"))
    return root.joinpath(*parts)


def _pairs_from_list(root: Path, list_file: Path) -> list[tuple[Path, Path]]:
    pairs = []
    for number, line in enumerate(list_file.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        fields = line.split()
        if len(fields) != 2:
            raise DatasetError(f"{list_file} line {number}: expected '<image> <label>', got {line!r}")
        image, label = (_resolve(root, f) for f in fields)
        missing = [str(p) for p in (image, label) if not p.is_file()]
        if missing:
            raise DatasetError(
                f"{list_file} line {number}: missing file(s) {', '.join(missing)} "
                f"(listed as {line.strip()!r}, resolved under {root})"
            )
        pairs.append((image, label))
    return pairs


def _folder_dirs(root: Path, split: str) -> tuple[Path, Path]:
    candidates = [(root / "images" / split, root / "labels" / split), (root / split, root / f"{split}annot")]
    for images, labels in candidates:
        if images.is_dir() or labels.is_dir():
            return images, labels
    raise DatasetError(
        f"split {split!r} has no images: no {split}.txt in {root}, and neither "
        f"{candidates[0][0]} nor {candidates[1][0]} exists"
    )


def _by_stem(folder: Path, suffixes: tuple[str, ...]) -> dict[str, Path]:
    if not folder.is_dir():
        return {}
    return {p.stem: p for p in sorted(folder.iterdir()) if p.suffix.lower() in suffixes}


def pair_by_stem(images_dir: Path, labels_dir: Path, split: str) -> list[tuple[Path, Path]]:
    """Pair ``images_dir/*.png|jpg`` with ``labels_dir/*.png`` by stem; unpaired stems are an error."""
    images = _by_stem(images_dir, IMAGE_SUFFIXES)
    labels = _by_stem(labels_dir, (".png",))
    if not images:
        raise DatasetError(f"split {split!r} has no images: looked for *.png/*.jpg in {images_dir}")
    lonely_images = sorted(images.keys() - labels.keys())
    lonely_labels = sorted(labels.keys() - images.keys())
    if lonely_images or lonely_labels:
        detail = []
        if lonely_images:
            detail.append(f"images without a label in {labels_dir}: {', '.join(lonely_images[:10])}")
        if lonely_labels:
            detail.append(f"labels without an image in {images_dir}: {', '.join(lonely_labels[:10])}")
        raise DatasetError(f"split {split!r}: images and labels do not pair up; " + "; ".join(detail))
    return [(images[s], labels[s]) for s in sorted(images)]


def find_pairs(root: Path, split: str) -> list[tuple[Path, Path]]:
    """The split's (image, label) files: from ``<split>.txt`` when present, else the folder layout."""
    check_root(root, "CamVid")
    check_split(split, SPLITS)
    list_file = root / f"{split}.txt"
    if list_file.is_file():
        pairs = _pairs_from_list(root, list_file)
        if not pairs:
            raise DatasetError(f"split {split!r} has no images: {list_file} lists none")
        return pairs
    return pair_by_stem(*_folder_dirs(root, split), split)


def load(uri: str, root: Path, split: str, hw: tuple[int, int] | None) -> SegmentationSplit:
    pairs = find_pairs(root, split)
    return decode_pairs(info(uri), split, pairs, hw or NATIVE_HW, _LUT)
