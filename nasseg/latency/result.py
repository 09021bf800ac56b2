"""What every latency figure carries: the number and where it came from.

A ``LatencyResult`` is either ``measured`` (a backend timed the network on a device) or
``estimated`` (the predictor costed it from a calibration). The two never mix: an estimate
always names the predictor and the calibration it came from, a measurement the device,
runtime, precision and what was timed.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:  # timing imports torch; a result is read and written without it
    from nasseg.latency.timing import TimingStats

Kind = Literal["measured", "estimated"]


@dataclass(frozen=True)
class LatencyResult:
    kind: Kind
    median_ms: float
    target: str  # registry name: jetson-nano, ..., host-cpu, cuda
    input_hw: tuple[int, int]
    precision: str  # fp32 / fp16 / int8
    # measured: backend (torch / onnxruntime / tensorrt / torch2trt), device string, runtime versions,
    # what was timed (e.g. "GPU compute", "engine execute + sync", "forward"), repeats, spread.
    # estimated: predictor name and the calibration id (which measurements it was fitted to).
    backend: str | None = None
    device: str | None = None
    timed: str | None = None
    spread_ms: float | None = None  # interquartile range of the kept repeats (measured only)
    repeats: int | None = None
    power_mode: str | None = None
    versions: dict[str, str] = field(default_factory=dict)
    predictor: str | None = None
    calibration: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.kind == "measured" and not (self.backend and self.device and self.timed):
            raise ValueError("a measured latency needs backend, device and what was timed")
        if self.kind == "estimated" and not (self.predictor and self.calibration):
            raise ValueError("an estimated latency needs the predictor and the calibration it came from")

    @classmethod
    def measured(
        cls,
        stats: TimingStats,
        *,
        target: str,
        input_hw: tuple[int, int],
        precision: str,
        backend: str,
        device: str,
        timed: str,
        power_mode: str | None,
        versions: dict[str, str],
        extra: dict[str, Any] | None = None,
    ) -> LatencyResult:
        """A measurement summarised by ``stats``: its median, spread and kept repeats, with the timing
        statistics first in ``extra`` and then what the backend adds (threads, parity, provider ...)."""
        return cls(
            kind="measured",
            median_ms=stats.median_ms,
            target=target,
            input_hw=(int(input_hw[0]), int(input_hw[1])),
            precision=precision,
            backend=backend,
            device=device,
            timed=timed,
            spread_ms=stats.iqr_ms,
            repeats=stats.kept,
            power_mode=power_mode,
            versions=versions,
            extra={**stats.as_extra(), **(extra or {})},
        )

    @property
    def fps(self) -> float:
        return 1000.0 / self.median_ms

    def label(self) -> str:
        """One human line saying where the number came from."""
        if self.kind == "measured":
            return f"measured on {self.device} ({self.backend}, {self.precision}, {self.timed})"
        fitted = f", fitted on {self.extra['calibrated_on']}" if "calibrated_on" in self.extra else ""
        return f"estimated by {self.predictor} for {self.target} ({self.precision}, calibration {self.calibration}{fitted})"

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["input_hw"] = list(self.input_hw)
        data["label"] = self.label()
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LatencyResult:
        data = {k: v for k, v in data.items() if k != "label"}
        data["input_hw"] = tuple(data["input_hw"])
        return cls(**data)
