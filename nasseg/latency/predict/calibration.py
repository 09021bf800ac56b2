"""A calibration: the fitted constants of the predictor's cost model for one target, and where they are found.

A calibration is data (``calibrations/<target>.json`` beside this module, or the user's own fits);
``nasseg.latency.predict.fit`` fits one from measurements and ``nasseg.latency.predict.predictor``
costs a network with it.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from functools import cache, cached_property
from pathlib import Path
from typing import Any

import numpy as np

from nasseg.errors import CalibrationError
from nasseg.latency.predict.costs import BYTES_PER_ELEMENT, OP_CLASSES
from nasseg.latency.predict.effects import EFFECTS, Hardware
from nasseg.latency.predict.optable import OpTable

CALIBRATIONS_DIR = Path(__file__).resolve().parent / "calibrations"
# Fitted on a user's board by `nasseg calibrate`; searched before the packaged calibrations.
USER_CALIBRATIONS_DIR = Path(os.environ.get("NASSEG_CALIBRATIONS", Path.home() / ".nasseg" / "calibrations"))
# Kernels that run on CUDA cores even where tensor cores exist.
CUDA_CORE_CLASSES = ("conv_depthwise", "conv_dilated")
MEMORY_CLASSES = ("elementwise", "pool", "reduce", "resize", "copy")
_IS_MEMORY = np.array([c in MEMORY_CLASSES for c in OP_CLASSES])


@dataclass(frozen=True)
class Calibration:
    """The fitted constants of the cost model for one target, precision and runtime."""

    id: str
    target: str
    precision: str
    runtime: str  # what the calibration measurements ran on, e.g. "tensorrt" or "torch-eager"
    timed: str  # the timing scope of those measurements (engine, GPU compute, forward, ...)
    fuse_pointwise: bool
    peak_flops: float  # tensor-core (or SIMD) peak at this precision, FLOP/s
    cuda_core_flops: float  # peak for CUDA_CORE_CLASSES, FLOP/s
    bandwidth: float  # bytes/s
    efficiency: dict[str, float]  # op class -> fraction of its peak
    memory_efficiency: float
    layer_overhead_ms: float
    fixed_overhead_ms: float
    fitted_on: dict[str, Any] = field(default_factory=dict)  # data set, points, fit error
    # Layers timed inside networks on the device (nasseg.latency.predict.optable); where present, its
    # prediction replaces the roofline for every layer.
    op_table: dict[str, Any] | None = None
    # Kernel effects the roofline is costed with (nasseg.latency.predict.effects); older files have none.
    effects: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        unknown = [e for e in self.effects if e not in EFFECTS]
        if unknown:
            raise CalibrationError(
                f"calibration {self.id}: unknown effect(s) {', '.join(unknown)}; known: {', '.join(EFFECTS)}"
            )
        missing = [c for c in OP_CLASSES if c not in self.efficiency]
        if missing:
            raise CalibrationError(f"calibration {self.id}: no efficiency for op class(es) {', '.join(missing)}")
        if self.precision not in BYTES_PER_ELEMENT:
            raise CalibrationError(f"calibration {self.id}: unknown precision {self.precision!r}")
        if self.op_table is not None:
            try:
                self.optable  # noqa: B018  (validates the table once, at load)
            except (KeyError, TypeError, ValueError) as exc:
                raise CalibrationError(f"calibration {self.id}: bad op table: {exc}") from None

    @cached_property
    def optable(self) -> OpTable | None:
        return OpTable.from_dict(self.op_table) if self.op_table is not None else None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "<dict>") -> Calibration:
        try:
            return cls(**data)
        except TypeError as exc:
            raise CalibrationError(f"{source}: not a calibration: {exc}") from None

    def save(self, path: Path) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.to_dict(), indent=2) + "\n")
        return path

    @classmethod
    def load(cls, path: Path) -> Calibration:
        try:
            data = json.loads(Path(path).read_text())
        except FileNotFoundError:
            raise CalibrationError(f"{path}: no such calibration file") from None
        except json.JSONDecodeError as exc:
            raise CalibrationError(f"{path}: not valid JSON: {exc}") from None
        return cls.from_dict(data, str(path))

    def hardware(self) -> Hardware:
        """What the kernel effects need to know of the target."""
        return Hardware(self.precision, self.peak_flops > self.cuda_core_flops, self.peak_flops / self.cuda_core_flops)

    def class_peaks(self) -> np.ndarray:
        return np.array([self.cuda_core_flops if c in CUDA_CORE_CLASSES else self.peak_flops for c in OP_CLASSES])

    def class_rates(self) -> tuple[np.ndarray, np.ndarray]:
        return class_rates(
            self.class_peaks(),
            np.asarray(self.bandwidth, dtype=np.float64),
            np.array([self.efficiency[c] for c in OP_CLASSES]),
            np.asarray(self.memory_efficiency, dtype=np.float64),
        )


def class_rates(
    peaks: np.ndarray, bandwidth: np.ndarray, efficiency: np.ndarray, memory_efficiency: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Effective FLOP/s and bytes/s of every op class (last axis), for one or many targets.

    Memory-bound classes get no compute term; their efficiency scales the bandwidth instead.
    """
    flops = np.where(_IS_MEMORY, np.inf, peaks * efficiency)
    streaming = np.asarray(bandwidth)[..., None]
    return flops, np.where(_IS_MEMORY, streaming * efficiency, streaming * np.asarray(memory_efficiency)[..., None])


def calibration_files() -> list[Path]:
    """Every calibration file: the user's first, then the packaged ones."""
    files = []
    for folder in (USER_CALIBRATIONS_DIR, CALIBRATIONS_DIR):
        if folder.is_dir():
            files += sorted(p for p in folder.glob("*.json") if not p.name.startswith("published"))
    return files


@cache
def _load_cached(path: str, mtime: float) -> Calibration:
    return Calibration.load(Path(path))


def available_calibrations() -> list[Calibration]:
    return [_load_cached(str(p), p.stat().st_mtime) for p in calibration_files()]


def find_calibration(target: str, precision: str | None = None, calibration: str | Path | None = None) -> Calibration:
    """The calibration to use: a file path or id if given, else the first one for the target
    (and precision), the user's own fits before the packaged ones."""
    if calibration is not None and Path(calibration).suffix == ".json":
        return Calibration.load(Path(calibration))
    known = available_calibrations()
    for cal in known:
        if calibration is not None and cal.id != calibration:
            continue
        if cal.target == target and (precision is None or cal.precision == precision):
            return cal
    what = f"calibration {calibration!r}" if calibration else "a calibration"
    have = ", ".join(f"{c.id} ({c.target}, {c.precision})" for c in known) or "none"
    raise CalibrationError(
        f"no {what} for target {target!r}"
        + (f" at {precision}" if precision else "")
        + f"; available: {have}. Fit one with `nasseg calibrate --target {target}`"
    )
