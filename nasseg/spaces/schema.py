"""The schema of a search-space file (``search_spaces/<family>.yaml``).

A file declares each parameter's domain, the published networks as named points of that same
domain, the figures each paper publishes for them, and every documented paper-vs-code decision.
"""

from __future__ import annotations

import math
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ParamSpec(_Strict):
    """One parameter's domain.

    ``when`` makes the parameter conditional: it exists only when every named earlier parameter
    has one of the listed values (define-by-run, as Optuna samples it).
    """

    type: Literal["categorical", "int", "float"]
    choices: list[Any] | None = None
    low: float | None = None
    high: float | None = None
    step: float | None = None
    log: bool = False
    when: dict[str, list[Any]] | None = None
    doc: str = ""
    decision: str | None = Field(default=None, description="documented paper-vs-code decision for this parameter")

    @model_validator(mode="before")
    @classmethod
    def _listify_when(cls, data: Any) -> Any:
        if isinstance(data, dict) and isinstance(data.get("when"), dict):
            data = dict(data)
            data["when"] = {k: v if isinstance(v, list) else [v] for k, v in data["when"].items()}
        return data

    @model_validator(mode="after")
    def _check_domain(self) -> ParamSpec:
        if self.type == "categorical":
            if not self.choices:
                raise ValueError("a categorical parameter needs a non-empty 'choices' list")
            if self.low is not None or self.high is not None or self.step is not None:
                raise ValueError("a categorical parameter takes 'choices', not low/high/step")
            encoded = [repr(c) for c in self.choices]
            if len(set(encoded)) != len(encoded):
                raise ValueError(f"'choices' has duplicates: {self.choices}")
        else:
            if self.choices is not None:
                raise ValueError(f"an {self.type} parameter takes low/high, not 'choices'")
            if self.low is None or self.high is None or not self.low < self.high:
                raise ValueError(f"an {self.type} parameter needs low < high, got low={self.low} high={self.high}")
            if not all(math.isfinite(v) for v in (self.low, self.high, self.step or 1)):
                raise ValueError(f"an {self.type} parameter needs finite low, high and step")
            if self.step is not None and not self.step > 0:
                raise ValueError(f"an {self.type} parameter needs a positive step, got {self.step}")
            if self.type == "int" and not all(float(v).is_integer() for v in (self.low, self.high, self.step or 1)):
                raise ValueError("an int parameter needs integer low, high and step")
            if self.log and (self.low <= 0 or self.step is not None):
                raise ValueError("a log-scaled parameter needs low > 0 and no step")
        return self

    def describe(self) -> str:
        """The domain in one line, as shown to users and in error messages."""
        if self.type == "categorical":
            return "one of " + ", ".join(_fmt(c) for c in self.choices or [])
        kind = "integer" if self.type == "int" else "number"
        text = f"{kind} in [{_fmt(self.low)}, {_fmt(self.high)}]"
        if self.step is not None:
            text += f" step {_fmt(self.step)}"
        return text + (" (log scale)" if self.log else "")


def _fmt(value: Any) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, list):
        return "[" + ", ".join(_fmt(v) for v in value) + "]"
    return str(value)


HW = tuple[int, int]


class MIoUFigure(_Strict):
    value: float
    dataset: str
    split: str
    input: HW | None = None
    source: str | None = None
    note: str | None = None


class FPSFigure(_Strict):
    value: float
    device: str
    runtime: str
    input: HW
    precision: str | None = None
    source: str | None = None
    note: str | None = None


class Published(_Strict):
    """Figures as the paper states them (with the table they come from)."""

    source: str
    params: float | None = None
    macs: float | None = None
    macs_input: HW | None = None
    macs_note: str | None = None
    # Which of our counts the published MACs compare with: "conv" (convolution and linear
    # multiply-accumulates only, as ESPNet/EdgeNets count) or "all" (fvcore's total, which also
    # charges batch-norm and resizing, closest to thop as FASSD-Net counts).
    macs_kind: Literal["conv", "all"] = "all"
    miou: list[MIoUFigure] = []
    fps: list[FPSFigure] = []
    note: str | None = None

    @model_validator(mode="after")
    def _macs_need_input(self) -> Published:
        if self.macs is not None and self.macs_input is None:
            raise ValueError("'macs' needs 'macs_input' (the H, W it was counted at)")
        return self


class OfficialCode(_Strict):
    """Counts measured by building the authors' code (``shared/reference``)."""

    params: int | None = None
    macs: float | None = None
    macs_input: HW | None = None
    counter: str | None = None
    source: str | None = None


class Baseline(_Strict):
    doc: str
    num_classes: int = Field(ge=1)
    params: dict[str, Any]
    published: Published
    official_code: OfficialCode | None = None
    note: str | None = None


class Ablation(_Strict):
    """Rows of one published table, in the paper's order (``reproduce`` shows them together)."""

    name: str
    source: str
    rows: list[str]
    note: str | None = None


class Decision(_Strict):
    """A documented choice where the paper and the official code (or the paper and itself) disagree."""

    id: str
    topic: str
    choice: str
    reason: str
    affects: list[str] = []


class SpaceFile(_Strict):
    family: str
    doc: str
    search_input: HW = Field(description="(H, W) at which sampled architectures are checked and profiled")
    num_classes: int = Field(default=19, ge=1, description="classes of sampled architectures")
    degenerate: Literal["reject", "accept"] = Field(
        default="reject",
        description="whether the sampler rejects points with layers that read only padding at search_input "
        "(baselines are always accepted: they are published networks)",
    )
    parameters: dict[str, ParamSpec]
    baselines: dict[str, Baseline]
    ablations: list[Ablation] = []
    decisions: list[Decision] = []
