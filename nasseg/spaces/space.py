"""A search space: parameter domains from a YAML file, sampled define-by-run with Optuna."""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import optuna
import pydantic

from nasseg.errors import ConfigError, InfeasibleArchitecture, NassegError, SpaceFileError
from nasseg.models.registry import ArchConfig, Family, check, family_names, get_family
from nasseg.spaces.schema import Baseline, ParamSpec, SpaceFile
from nasseg.yamlio import read_yaml

# Installed with the package (nasseg/search_spaces links to the top-level folder in a checkout), so a
# non-editable install or a Ray worker on another machine finds them too.
SPACES_DIR = Path(os.environ.get("NASSEG_SPACES_DIR", Path(__file__).resolve().parents[1] / "search_spaces"))


def _is_primitive(value: Any) -> bool:
    return value is None or isinstance(value, bool | int | float | str)


@dataclass
class Draw:
    """What ``SearchSpace.sample_feasible`` found: distinct feasible architectures, in draw order;
    how many draws it took; the reasons of each draw the space rejected; how many draws repeated an
    architecture already found."""

    configs: list[ArchConfig] = field(default_factory=list)
    draws: int = 0
    rejections: list[list[str]] = field(default_factory=list)
    duplicates: int = 0

    @property
    def rejected(self) -> int:
        return len(self.rejections)


class SearchSpace:
    """The domains of one family's design choices, its baselines, and their published figures."""

    def __init__(self, spec: SpaceFile, path: Path) -> None:
        self.spec = spec
        self.path = path
        self.name = path.stem
        self._check_file()

    # ----- loading -------------------------------------------------------------------------
    @classmethod
    def from_file(cls, path: str | Path) -> SearchSpace:
        path = Path(path)
        raw = read_yaml(path, "search-space file", SpaceFileError)
        if not isinstance(raw, dict):
            raise SpaceFileError(f"{path}: expected a mapping at the top level, got {type(raw).__name__}")
        try:
            spec = SpaceFile.model_validate(raw)
        except pydantic.ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in err['loc']) or '<top>'}: {err['msg']}" for err in exc.errors()
            )
            raise SpaceFileError(f"{path}: {problems}") from None
        return cls(spec, path)

    def _fail(self, where: str, message: str) -> SpaceFileError:
        return SpaceFileError(f"{self.path}: {where}: {message}")

    def _check_file(self) -> None:
        """Cross-entry checks the schema cannot express: conditions, baselines, ablation rows."""
        if self.spec.family not in family_names():
            raise self._fail("family", f"unknown family {self.spec.family!r}; known: {', '.join(family_names())}")
        seen: list[str] = []
        for name, spec in self.spec.parameters.items():
            for other, values in (spec.when or {}).items():
                if other not in seen:
                    raise self._fail(
                        f"parameters.{name}.when",
                        f"refers to {other!r}, which must be a parameter declared before {name!r}",
                    )
                for value in values:
                    if not self._in_domain(self.spec.parameters[other], value):
                        raise self._fail(
                            f"parameters.{name}.when",
                            f"{other}={value!r} is not allowed: {other} is {self.spec.parameters[other].describe()}",
                        )
            seen.append(name)
        for name, baseline in self.spec.baselines.items():
            try:
                self.validate(baseline.params)
            except ConfigError as exc:
                raise self._fail(f"baselines.{name}", f"not a point of this space: {exc}") from None
        for ablation in self.spec.ablations:
            for row in ablation.rows:
                if row not in self.spec.baselines:
                    raise self._fail(f"ablations.{ablation.name}", f"row {row!r} is not a baseline of this file")

    # ----- domains -------------------------------------------------------------------------
    @property
    def family(self) -> Family:
        return get_family(self.spec.family)

    @property
    def parameters(self) -> dict[str, ParamSpec]:
        return dict(self.spec.parameters)

    @property
    def baselines(self) -> dict[str, Baseline]:
        return dict(self.spec.baselines)

    @staticmethod
    def _in_domain(spec: ParamSpec, value: Any) -> bool:
        if spec.type == "categorical":
            return any(value == c and type(value) is type(c) or _same_number(value, c) for c in spec.choices or [])
        if isinstance(value, bool) or not isinstance(value, int | float):
            return False
        if spec.type == "int" and not float(value).is_integer():
            return False
        assert spec.low is not None and spec.high is not None  # the schema requires them for numbers
        if not spec.low <= value <= spec.high:
            return False
        if spec.step is not None:
            k = (value - spec.low) / spec.step
            return math.isclose(k, round(k), abs_tol=1e-9)
        return True

    def active(self, params: Mapping[str, Any], name: str) -> bool:
        """Whether ``name`` exists given the values of the parameters before it."""
        when = self.spec.parameters[name].when or {}
        return all(params.get(other) in values for other, values in when.items())

    def validate(self, params: Mapping[str, Any]) -> dict[str, Any]:
        """Check that ``params`` is exactly a point a sampler could produce; return it in file order.

        Errors name the parameter and what is allowed: unknown names, missing or inactive
        parameters, and values outside their domain.
        """
        unknown = sorted(set(params) - set(self.spec.parameters))
        if unknown:
            raise ConfigError(
                f"{self.path.name}: unknown parameter(s) {', '.join(unknown)}; "
                f"this space has: {', '.join(self.spec.parameters)}"
            )
        point: dict[str, Any] = {}
        for name, spec in self.spec.parameters.items():
            is_active = self.active(point, name)
            if not is_active:
                if name in params:
                    raise ConfigError(f"{self.path.name}: parameter {name!r} only exists when {_fmt_when(spec.when)}")
                continue
            if name not in params:
                raise ConfigError(f"{self.path.name}: parameter {name!r} is missing; it is {spec.describe()}")
            value = params[name]
            if not self._in_domain(spec, value):
                raise ConfigError(f"{self.path.name}: {name}={value!r} is not allowed; {name} is {spec.describe()}")
            point[name] = value
        return point

    # ----- sampling ------------------------------------------------------------------------
    @staticmethod
    def _encoded_choices(spec: ParamSpec) -> dict[Any, Any]:
        """Optuna takes only primitive categorical choices: encode lists as JSON strings."""
        return {c if _is_primitive(c) else json.dumps(c): c for c in spec.choices or []}

    def encode(self, params: Mapping[str, Any]) -> dict[str, Any]:
        """Parameter values as Optuna records them (e.g. for ``optuna.trial.FixedTrial``)."""
        encoded = {}
        for name, value in params.items():
            spec = self.spec.parameters[name]
            encoded[name] = value if _is_primitive(value) or spec.type != "categorical" else json.dumps(value)
        return encoded

    def sample_params(self, trial: optuna.trial.BaseTrial) -> dict[str, Any]:
        """Sample every active parameter, define-by-run."""
        point: dict[str, Any] = {}
        for name, spec in self.spec.parameters.items():
            if not self.active(point, name):
                continue
            if spec.type == "categorical":
                choices = self._encoded_choices(spec)
                point[name] = choices[trial.suggest_categorical(name, list(choices))]
            elif spec.type == "int":
                assert spec.low is not None and spec.high is not None  # the schema requires them for numbers
                point[name] = trial.suggest_int(
                    name, int(spec.low), int(spec.high), step=int(spec.step or 1), log=spec.log
                )
            else:
                assert spec.low is not None and spec.high is not None
                point[name] = trial.suggest_float(name, spec.low, spec.high, step=spec.step, log=spec.log)
        return point

    def sample(self, trial: optuna.trial.BaseTrial, num_classes: int | None = None) -> ArchConfig:
        """A sampled architecture; raises ``InfeasibleArchitecture`` with its reasons when it cannot
        run at the space's search input, or (``degenerate: reject``, the default) when some of its
        layers read only padding there. The study records either as a rejected trial."""
        config = ArchConfig(self.spec.family, self.sample_params(trial), num_classes or self.spec.num_classes)
        self.check(config, self.spec.search_input, degenerate=self.spec.degenerate)
        return config

    def sample_feasible(
        self,
        count: int,
        seed: int = 0,
        *,
        inputs: Sequence[tuple[int, int]] = (),
        num_classes: int | None = None,
        exclude: Iterable[str] = (),
        attempts_per_sample: int = 20,
    ) -> Draw:
        """Up to ``count`` distinct architectures drawn by Optuna's random sampler (seeded) that the
        space accepts at every input of ``inputs`` (default: its search input) by its own rule for
        degenerate points, none with an arch hash in ``exclude``. It gives up after ``count *
        attempts_per_sample`` draws, so a space that rejects nearly everything returns fewer."""
        verbosity = optuna.logging.get_verbosity()
        optuna.logging.set_verbosity(optuna.logging.WARNING)  # not a study of the user's: say nothing of it
        try:
            study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=seed))
        finally:
            optuna.logging.set_verbosity(verbosity)
        checked_at = list(inputs) or [(int(self.spec.search_input[0]), int(self.spec.search_input[1]))]
        seen, drawn = set(exclude), Draw()
        while len(drawn.configs) < count and drawn.draws < count * attempts_per_sample:
            drawn.draws += 1
            params = self.sample_params(study.ask())
            config = ArchConfig(self.spec.family, params, num_classes or self.spec.num_classes)
            try:
                for hw in checked_at:
                    self.check(config, hw, degenerate=self.spec.degenerate)
            except InfeasibleArchitecture as exc:
                drawn.rejections.append(exc.reasons)
                continue
            if config.arch_hash() in seen:
                drawn.duplicates += 1
                continue
            seen.add(config.arch_hash())
            drawn.configs.append(config)
        return drawn

    def check(self, config: ArchConfig, input_hw: tuple[int, int], degenerate: str = "accept") -> list[str]:
        """``models.check`` (infeasible raises, degenerate notes are returned), with degenerate
        layers rejected too when ``degenerate`` is "reject"."""
        notes = check(config, input_hw)
        if notes and degenerate == "reject":
            raise InfeasibleArchitecture(self.spec.family, notes)
        return notes

    # ----- baselines -----------------------------------------------------------------------
    def baseline(self, name: str, num_classes: int | None = None) -> ArchConfig:
        if name not in self.spec.baselines:
            raise ConfigError(f"{self.path.name}: no baseline {name!r}; baselines: {', '.join(self.spec.baselines)}")
        b = self.spec.baselines[name]
        return ArchConfig(self.spec.family, self.validate(b.params), num_classes or b.num_classes)

    def baseline_input(self, name: str) -> tuple[int, int]:
        """The input a baseline is published at (its MACs' input), else the space's search input."""
        if name not in self.spec.baselines:
            self.baseline(name)  # raises, naming the baselines
        b = self.spec.baselines[name]
        for candidate in (b.published.macs_input, b.official_code.macs_input if b.official_code else None):
            if candidate:
                return int(candidate[0]), int(candidate[1])
        return int(self.spec.search_input[0]), int(self.spec.search_input[1])

    def ablation_of(self, baseline: str) -> list[str]:
        """Rows of the first published table that contains ``baseline`` (just itself if none)."""
        for ablation in self.spec.ablations:
            if baseline in ablation.rows:
                return list(ablation.rows)
        return [baseline]


def _same_number(a: Any, b: Any) -> bool:
    numeric = (int, float)
    return (
        isinstance(a, numeric)
        and isinstance(b, numeric)
        and not isinstance(a, bool)
        and not isinstance(b, bool)
        and a == b
    )


def _fmt_when(when: dict[str, list[Any]] | None) -> str:
    return " and ".join(f"{k} is one of {v}" for k, v in (when or {}).items())


@cache
def _load_cached(path: str, mtime: float) -> SearchSpace:
    return SearchSpace.from_file(path)


def load_space(name_or_path: str | Path) -> SearchSpace:
    """A space by family name (``search_spaces/<name>.yaml``) or by file path."""
    path = Path(name_or_path)
    if path.suffix not in (".yaml", ".yml"):
        path = SPACES_DIR / f"{name_or_path}.yaml"
        if not path.is_file():
            raise ConfigError(f"no search space {str(name_or_path)!r}; spaces: {', '.join(space_names())}")
    if not path.is_file():
        raise SpaceFileError(f"{path}: no such search-space file")
    return _load_cached(str(path.resolve()), path.stat().st_mtime)


def space_names() -> list[str]:
    if not SPACES_DIR.is_dir():
        raise ConfigError(
            f"the search-space directory {SPACES_DIR} does not exist (set by NASSEG_SPACES_DIR or the install)"
        )
    return sorted(p.stem for p in SPACES_DIR.glob("*.yaml"))


def all_spaces() -> list[SearchSpace]:
    return [load_space(name) for name in space_names()]


def load_architecture(spec: str) -> tuple[ArchConfig, tuple[int, int]]:
    """A baseline by name, or an architecture file (YAML/JSON: family, num_classes, params) whose
    params are validated exactly as a baseline's are; with the input it is meant for (a baseline's
    published input, else its space's search input)."""
    path = Path(spec)
    if path.suffix.lower() not in (".yaml", ".yml", ".json"):
        space, name = find_baseline(spec)
        return space.baseline(name), space.baseline_input(name)
    data = read_yaml(path, "architecture file", ConfigError)
    try:
        config = config_from_dict(data)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None
    space = load_space(config.family)
    return config, (int(space.spec.search_input[0]), int(space.spec.search_input[1]))


def config_from_dict(data: Any) -> ArchConfig:
    """An architecture as data (``{family, num_classes, params}``, from a file or a request), checked by
    ``validate_config``; any other shape or type is one ConfigError naming the field."""
    if not isinstance(data, dict):
        raise ConfigError(f"expected a mapping with family, num_classes and params, got {type(data).__name__}")
    unknown = sorted(set(map(str, data)) - {"family", "num_classes", "params"})
    if unknown:
        # a name with a newline or other control character is quoted, so the error stays one line
        shown = ", ".join(name if name.isprintable() and name.strip() == name else repr(name) for name in unknown)
        raise ConfigError(f"unknown field(s) {shown}; an architecture has family, num_classes and params")
    missing = [key for key in ("family", "num_classes", "params") if key not in data]
    if missing:
        raise ConfigError(f"missing field(s) {', '.join(missing)}; an architecture has family, num_classes and params")
    family, num_classes, params = data["family"], data["num_classes"], data["params"]
    if not isinstance(family, str):
        raise ConfigError(f"family must be a name, got {family!r}")
    if isinstance(num_classes, bool) or not isinstance(num_classes, int):
        raise ConfigError(f"num_classes must be an integer, got {num_classes!r}")
    if not isinstance(params, dict):
        raise ConfigError(f"params must be a mapping of parameter names to values, got {type(params).__name__}")
    return validate_config(ArchConfig(family, dict(params), num_classes))


def validate_config(config: ArchConfig) -> ArchConfig:
    """``config`` checked as a point of its family's space, exactly as a baseline is (unknown, missing,
    inactive and out-of-domain parameters are each named), with its parameters in file order. Used
    wherever an architecture enters: architecture files, the agent's requests."""
    get_family(config.family)  # a known family name, never a path to some other file
    if config.num_classes < 1:
        raise ConfigError(f"num_classes must be at least 1, got {config.num_classes}")
    return ArchConfig(config.family, load_space(config.family).validate(config.params), config.num_classes)


def find_baseline(name: str) -> tuple[SearchSpace, str]:
    """The space that holds the baseline called ``name`` (names are unique across spaces).

    A space file that does not load is skipped: it cannot hold ``name`` as far as anyone can tell,
    and one broken family must not take the others down. It is reported only when no other file
    holds the name, since the baseline may be in it."""
    known: list[str] = []
    broken: list[NassegError] = []
    for family in space_names():
        try:
            space = load_space(family)
        except NassegError as exc:
            broken.append(exc)
            continue
        if name in space.spec.baselines:
            return space, name
        known.extend(space.spec.baselines)
    if broken:
        others = f" (and {len(broken) - 1} other space file(s) that do not load)" if len(broken) > 1 else ""
        raise ConfigError(
            f"no baseline {name!r} in the space files that load; it may be in one that does not{others}: {broken[0]}"
        )
    raise ConfigError(f"no baseline {name!r}; baselines: {', '.join(known)}")
