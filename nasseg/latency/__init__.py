"""Latency on a target: measured on a device by a backend, or estimated by the predictor."""

from nasseg.latency.result import LatencyResult

__all__ = ["LatencyResult"]
