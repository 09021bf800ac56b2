"""Latency on a target: measured on a device by a backend, or estimated by the predictor."""

from nasseg.latency.result import LatencyResult
from nasseg.latency.predictor import estimate  # noqa: E402  (after result: predictor imports it)

__all__ = ["LatencyResult", "estimate"]
