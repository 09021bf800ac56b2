"""Datasets: decode a whole split into memory once, behind a URI.

    camvid:PATH        CamVid, SegNet layout (list files) or a plain images/labels folder layout
    cityscapes:PATH    Cityscapes, official leftImg8bit/gtFine layout, 19 train ids
    synthetic[:k=v,..] the built-in procedural road scenes (CamVid's classes), keys seed/train/val/test

``load_split`` caches what it decodes, keyed by (uri, split, hw), so a search that trains many
architectures on the same data decodes it once per process.
"""

from __future__ import annotations

from collections import OrderedDict
from pathlib import Path

from nasseg.data import camvid, cityscapes, synthetic
from nasseg.data.base import IGNORE_INDEX, DatasetInfo, SegmentationSplit
from nasseg.errors import DatasetError

__all__ = [
    "IGNORE_INDEX",
    "DatasetError",
    "DatasetInfo",
    "SegmentationSplit",
    "SCHEMES",
    "load_split",
    "dataset_info",
    "parse_uri",
    "clear_cache",
]

SCHEMES = {
    "camvid": "camvid:PATH",
    "cityscapes": "cityscapes:PATH",
    "synthetic": "synthetic or synthetic:seed=N,train=N,val=N,test=N",
}
CACHE_SIZE = 6  # a CamVid train split at 360x480 is ~250 MB: keep a few, not every resolution ever used

_cache: OrderedDict[tuple[str, str, tuple[int, int] | None], SegmentationSplit] = OrderedDict()


def parse_uri(uri: str) -> tuple[str, str]:
    """``scheme:rest`` -> (scheme, rest); an unknown scheme lists the valid ones."""
    scheme, _, rest = uri.partition(":")
    scheme = scheme.strip().lower()
    if scheme not in SCHEMES:
        raise DatasetError(f"unknown dataset URI {uri!r}; valid forms: " + "; ".join(SCHEMES.values()))
    if scheme != "synthetic" and not rest:
        raise DatasetError(f"dataset URI {uri!r} needs a path: {SCHEMES[scheme]}")
    return scheme, rest


def dataset_info(uri: str) -> DatasetInfo:
    """Name and classes of the dataset behind ``uri`` (reads nothing from disk)."""
    scheme, rest = parse_uri(uri)
    if scheme == "synthetic":
        synthetic.parse_options(rest)  # reject bad options here too, not only at load time
    return {"camvid": camvid.info, "cityscapes": cityscapes.info, "synthetic": synthetic.info}[scheme](uri)


def _check_hw(hw: tuple[int, int] | None) -> tuple[int, int] | None:
    if hw is None:
        return None
    if len(hw) != 2 or any(int(v) != v or v <= 0 for v in hw):
        raise DatasetError(f"resolution must be two positive integers (H, W), got {hw!r}")
    return int(hw[0]), int(hw[1])


def load_split(uri: str, split: str, hw: tuple[int, int] | None = None) -> SegmentationSplit:
    """Decode one split of ``uri`` into memory at ``hw`` (H, W; None = the dataset's native size).

    Images are resized bilinearly and labels nearest-neighbour; labels come out in train ids with
    void as ``IGNORE_INDEX``. The result is cached: the same arguments return the same object.
    """
    hw = _check_hw(hw)
    key = (uri, split, hw)
    if key in _cache:
        _cache.move_to_end(key)
        return _cache[key]
    scheme, rest = parse_uri(uri)
    if scheme == "synthetic":
        result = synthetic.load(uri, synthetic.parse_options(rest), split, hw)
    else:
        module = camvid if scheme == "camvid" else cityscapes
        result = module.load(uri, Path(rest).expanduser(), split, hw)
    _cache[key] = result
    while len(_cache) > CACHE_SIZE:
        _cache.popitem(last=False)
    return result


def clear_cache() -> None:
    """Drop every cached split (tests, or a process that moves on to another dataset)."""
    _cache.clear()
