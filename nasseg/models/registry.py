"""One registry of model families: a model is an ``ArchConfig`` plus its family's builder."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from torch import nn

from nasseg.errors import ConfigError, InfeasibleArchitecture


@dataclass(frozen=True)
class Findings:
    """What an input size does to an architecture.

    ``infeasible``: reasons it cannot be built or run there (a value outside what the builder takes,
    an input smaller than the output stride). ``degenerate``: layers that run but read only zero
    padding there (a dilation reaching past its feature map). A degenerate network wastes compute yet
    is valid, and published networks are degenerate at some of the inputs their authors ran.
    """

    infeasible: list[str] = field(default_factory=list)
    degenerate: list[str] = field(default_factory=list)


BuildFn = Callable[[Mapping[str, Any], int], nn.Module]
CheckFn = Callable[[Mapping[str, Any], tuple[int, int]], Findings]


@dataclass(frozen=True)
class Family:
    """A parameterised network family.

    ``build(params, num_classes)`` returns the network. ``check(params, (h, w))`` returns its
    ``Findings`` at that input size, so a search rejects impossible points before spending anything
    on them.
    """

    name: str
    build: BuildFn
    check: CheckFn
    doc: str = ""


@dataclass(frozen=True)
class ArchConfig:
    """A point of a search space: family, parameter values (JSON types only) and class count."""

    family: str
    params: Mapping[str, Any] = field(default_factory=dict)
    num_classes: int = 19

    def to_dict(self) -> dict[str, Any]:
        return {"family": self.family, "num_classes": self.num_classes, "params": dict(self.params)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ArchConfig:
        try:
            return cls(family=str(data["family"]), params=dict(data["params"]), num_classes=int(data["num_classes"]))
        except (KeyError, TypeError, ValueError) as exc:
            raise ConfigError(
                f"an architecture needs 'family', 'num_classes' and 'params'; got keys {sorted(data)}"
            ) from exc

    def arch_hash(self) -> str:
        """A stable short hash of the architecture (used to key caches and deduplicate trials)."""
        canonical = json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()[:16]

    def with_classes(self, num_classes: int) -> ArchConfig:
        return ArchConfig(self.family, dict(self.params), num_classes)


# Family name -> Family, filled by ``register_family`` as nasseg.models imports each family's module.
FAMILIES: dict[str, Family] = {}


def register_family(name: str, *, check: CheckFn, doc: str = "") -> Callable[[BuildFn], BuildFn]:
    """Register the decorated builder as family ``name``, with its ``check``; the registration sits
    beside the family's code, and a name registered twice is refused."""

    def register(build: BuildFn) -> BuildFn:
        if name in FAMILIES:
            raise ValueError(f"model family {name!r} is registered twice")
        FAMILIES[name] = Family(name, build, check, doc)
        return build

    return register


def get_family(name: str) -> Family:
    """The family called ``name``; an unknown name lists the known ones."""
    if name not in FAMILIES:
        raise ConfigError(f"unknown model family {name!r}; known families: {', '.join(FAMILIES)}")
    return FAMILIES[name]


def family_names() -> list[str]:
    return list(FAMILIES)


def build(config: ArchConfig) -> nn.Module:
    """Build the network a config describes (no input-size checks: see ``check``)."""
    family = get_family(config.family)
    if config.num_classes < 1:
        raise ConfigError(f"num_classes must be at least 1, got {config.num_classes}")
    return family.build(config.params, config.num_classes)


def check(config: ArchConfig, input_hw: tuple[int, int]) -> list[str]:
    """Raise ``InfeasibleArchitecture`` listing every reason the config cannot run at ``input_hw``;
    return the notes on its degenerate layers there (empty when there are none)."""
    findings = get_family(config.family).check(config.params, (int(input_hw[0]), int(input_hw[1])))
    if findings.infeasible:
        raise InfeasibleArchitecture(config.family, findings.infeasible)
    return findings.degenerate
