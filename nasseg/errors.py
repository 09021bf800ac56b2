"""Every error nasseg raises, sorted by what it means to whoever called.

- ``BadInput``: the user's input is wrong (a file, a value, a name, a dataset, a backend this machine
  cannot run). A command prints one line and exits 2; a study stops, since every trial would meet it.
- ``TrialFailed``: one architecture could not be scored (training diverged, a measurement crashed or
  disagreed with PyTorch, a board stayed unreachable after the retries, a layer the predictor cannot
  cost). A command prints one line and exits 1; a study records the trial as failed, with this
  reason, and goes on.
- ``InfrastructureFailed``: what nasseg keeps its results in failed (a latency cache that cannot be
  read or written). A command exits 3; a study stops, and every finished trial stays stored.

``nasseg.cli.common.user_errors`` maps the three to exit codes; ``nasseg.search.trial`` to what a
study does. Every message names the problem in one line, without a traceback.
"""

from __future__ import annotations

PREDICTOR_HINT = "without a board, estimate instead: --backend predictor (nasseg.latency.estimate)"


class NassegError(Exception):
    """Base class: a problem nasseg explains in one line."""


# ----- bad input ----------------------------------------------------------------------------------
class BadInput(NassegError):
    """The user's input is wrong: exit 2, and a study stops."""


class SpaceFileError(BadInput):
    """A search-space file is malformed (names the file and the offending entry)."""


class ConfigError(BadInput):
    """A parameter value is unknown, missing, or outside its domain."""


class InfeasibleArchitecture(BadInput):
    """A configuration is valid in its domains but describes a network that cannot work.

    ``reasons`` lists every problem found, so a search can record why a trial was rejected (a
    study rejects such a sampled point and goes on; given by the user, it is bad input).
    """

    def __init__(self, family: str, reasons: list[str]) -> None:
        self.family = family
        self.reasons = list(reasons)
        super().__init__(f"infeasible {family} architecture: " + "; ".join(self.reasons))


class DatasetError(BadInput):
    """A dataset cannot be read: a missing path, an empty split, a label map that does not fit."""


class UnknownTarget(BadInput):
    """A target name that is not in the registry (the message lists the valid ones)."""


class UnknownPowerMode(BadInput):
    """A power mode the target does not have, or whose GPU clock cap is unknown."""


class BackendUnavailable(BadInput):
    """A backend cannot run here: its runtime, tool or device is missing (says which, suggests the predictor)."""

    def __init__(self, backend: str, needs: str) -> None:
        self.backend = backend
        super().__init__(f"the {backend} backend cannot run here: it needs {needs}; {PREDICTOR_HINT}")


class CalibrationError(BadInput):
    """A calibration is missing, malformed, or cannot be fitted."""


# ----- one trial failed ---------------------------------------------------------------------------
class TrialFailed(NassegError):
    """One architecture could not be scored: exit 1, and a study records the trial and goes on."""


class TrainingDiverged(TrialFailed):
    """The training loss became NaN or infinite, or exploded relative to its start; the run is
    stopped instead of scoring garbage."""

    def __init__(self, step: int, value: float, reason: str = "") -> None:
        self.step = step
        self.value = value
        super().__init__(f"training diverged at step {step}: loss is {value:.4g}{reason}")


class MeasurementFailed(TrialFailed):
    """A measurement started and went wrong (a crash in the runtime, outputs that differ from PyTorch)."""


class AgentUnreachable(TrialFailed):
    """No answer from a board agent after the bounded retries."""


class AgentError(TrialFailed):
    """The board agent answered with an error (bad request, or a measurement that kept failing)."""


class UnsupportedLayer(TrialFailed):
    """The predictor has no cost model for an operator."""


class UntraceableModel(TrialFailed):
    """The predictor could not run the model's forward pass on fake tensors."""


# ----- infrastructure -----------------------------------------------------------------------------
class InfrastructureFailed(NassegError):
    """Where nasseg keeps its results failed: exit 3, and a study stops (finished trials stay)."""


class CacheError(InfrastructureFailed):
    """The latency cache file cannot be opened or read (names the file)."""
