"""The errors nasseg raises for bad input; the CLI turns each into one clear message."""

from __future__ import annotations


class NassegError(Exception):
    """Base class: a problem with the user's input, reported without a traceback."""


class SpaceFileError(NassegError):
    """A search-space file is malformed (names the file and the offending entry)."""


class ConfigError(NassegError):
    """A parameter value is unknown, missing, or outside its domain."""


class InfeasibleArchitecture(NassegError):
    """A configuration is valid in its domains but describes a network that cannot work.

    ``reasons`` lists every problem found, so a search can record why a trial was rejected.
    """

    def __init__(self, family: str, reasons: list[str]) -> None:
        self.family = family
        self.reasons = list(reasons)
        super().__init__(f"infeasible {family} architecture: " + "; ".join(self.reasons))
