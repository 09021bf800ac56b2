"""Latency on a target: measured on a device (``measure/``) or estimated by the predictor (``predict/``).

The two halves share only the modules here: the result type, the targets, the timing statistics
and the errors.
"""

from nasseg.latency.predict.predictor import estimate
from nasseg.latency.result import LatencyResult

__all__ = ["LatencyResult", "estimate"]
