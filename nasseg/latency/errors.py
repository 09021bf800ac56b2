"""Errors of the latency feature: each names the problem and, where it helps, what to do instead."""

from __future__ import annotations

from nasseg.errors import NassegError

PREDICTOR_HINT = "without a board, estimate instead: --backend predictor (nasseg.latency.estimate)"


class UnknownTarget(NassegError):
    """A target name that is not in the registry (the message lists the valid ones)."""


class UnknownPowerMode(NassegError):
    """A power mode the target does not have, or whose GPU clock cap is unknown."""


class BackendUnavailable(NassegError):
    """A backend cannot run here: its runtime, tool or device is missing (says which, suggests the predictor)."""

    def __init__(self, backend: str, needs: str) -> None:
        self.backend = backend
        super().__init__(f"the {backend} backend cannot run here: it needs {needs}; {PREDICTOR_HINT}")


class MeasurementFailed(NassegError):
    """A measurement started and went wrong (a crash in the runtime, outputs that differ from PyTorch)."""


class AgentUnreachable(NassegError):
    """No answer from a board agent after the bounded retries."""


class AgentError(NassegError):
    """The board agent answered with an error (bad request, or a measurement that kept failing)."""
