"""A study is data: what to search, how each trial is scored, and how far to go.

``StudySpec`` is read from a study file (``studies/<name>.yaml``) or built from ``nasseg search``'s
flags, which are the same fields. ``identity`` is what may not change once a study has trials:
reopening a name with another space, target, data, schedule, accuracy proxy or constraint is refused,
never mixed;
so is reopening an estimated study under another calibration (after an upgrade of nasseg, or a user's
own ``nasseg calibrate``), whose estimates would not compare with those already recorded.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import pydantic
from pydantic import BaseModel, ConfigDict, Field

from nasseg.errors import ConfigError
from nasseg.latency.measure.measure import PREDICTOR, latency_backend
from nasseg.latency.predict.calibration import find_calibration
from nasseg.search.proxy import DEFAULT_PROXY, PROXIES, get_proxy
from nasseg.yamlio import read_yaml

SamplerName = Literal["tpe", "nsga2", "gp", "random"]
SAMPLERS: tuple[str, ...] = ("tpe", "nsga2", "gp", "random")


class StudySpec(BaseModel):
    """Every setting of one study. ``budget`` counts sampled architectures that are evaluated; the
    space's published baselines are evaluated first, on top of it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str | None = Field(default=None, description="default: <space>-<target>")
    space: str
    target: str
    data: str = "synthetic"
    schedule: str = "short"
    steps: int | None = Field(default=None, ge=1, description="override the schedule's length")
    proxy: str = Field(default=DEFAULT_PROXY, description="the accuracy objective: miou, or miou+synflow")
    budget: int = Field(ge=0)
    max_latency_ms: float | None = Field(default=None, gt=0)
    max_params: int | None = Field(default=None, ge=1)
    sampler: SamplerName = "tpe"
    seed: int = 0
    input: tuple[int, int] | None = Field(
        default=None, description="latency input H, W; default: the space's search input"
    )
    backend: str | None = Field(
        default=None,
        description="latency backend; default: the predictor for a Jetson without an agent, torch on this machine",
    )
    agent: str | None = Field(default=None, description="URL of the board's nasseg agent")
    precision: str | None = None
    baselines: bool = True
    early_stopping: bool = False
    device: str = "cpu"

    @pydantic.field_validator("proxy")
    @classmethod
    def _known_proxy(cls, name: str) -> str:
        if name not in PROXIES:
            raise ValueError(f"unknown accuracy proxy {name!r}; choose one of: {', '.join(PROXIES)}")
        return name

    @property
    def study_name(self) -> str:
        return self.name or f"{self.space}-{self.target}"

    def identity(self) -> dict[str, Any]:
        """The settings every trial of a study must share for its trials to be comparable."""
        keys = (
            "space",
            "target",
            "data",
            "schedule",
            "steps",
            "max_latency_ms",
            "max_params",
            "seed",
            "input",
            "precision",
            "device",
        )
        identity = {key: getattr(self, key) for key in keys}
        identity["input"] = list(self.input) if self.input else None
        identity["proxy"] = get_proxy(self.proxy).id
        measured = self.agent or latency_backend(self.target, self.backend, self.agent) != PREDICTOR
        identity["latency"] = "measured" if measured else "estimated"
        if not measured:
            identity["calibration"] = find_calibration(self.target, self.precision).id
        return identity


def load_study_file(path: Path) -> StudySpec:
    """A study file; an unknown or malformed field is one error naming the file and the field."""
    data = read_yaml(path, "study file", ConfigError)
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of study settings (space, target, budget, ...)")
    data.setdefault("name", Path(path).stem)
    return parse_spec(data, str(path))


def parse_spec(data: dict[str, Any], where: str) -> StudySpec:
    try:
        return StudySpec.model_validate(data)
    except pydantic.ValidationError as exc:
        problems = []
        for err in exc.errors():
            field = ".".join(str(p) for p in err["loc"]) or "<top>"
            message = "unknown field" if err["type"] == "extra_forbidden" else err["msg"]
            problems.append(f"{field}: {message}")
        known = ", ".join(StudySpec.model_fields)
        raise ConfigError(f"{where}: {'; '.join(problems)} (study fields: {known})") from None
