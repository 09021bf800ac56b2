"""The latency landscape of a search space, without training (``nasseg explore``).

``explore`` draws N architectures uniformly at random from a space (Optuna's ``RandomSampler``, the
space's own feasibility and degenerate rules, duplicates dropped), adds the space's published
baselines, and gives every one its parameters, MACs and the predictor's latency on each target, all at
the space's search input and class count, as a search would see them. ``landscape_html`` draws it as one
self-contained page: latency against MACs, one panel per board, the baselines labelled, and per board
which parameters move latency most.

Speed: every architecture is built on PyTorch's ``meta`` device (no weights are allocated or
initialised) and traced once with ``graph.trace_meta``; that one trace gives the MACs (``trace_macs``,
the same count as fvcore's, see ``benchmarks/explore_speed.py``) and the estimate on every target
(``predictor.estimate_trace``). The architectures are spread over worker processes.

Which parameters move latency: for every parameter, the samples are grouped by its value (numeric
parameters with more than ``MAX_LEVELS`` values in equal-count bins; "inactive" is a group of its own for
a conditional parameter), and its **share** is the part of the variance of log latency that the groups'
means explain, adjusted for the number of groups (epsilon squared of a one-way analysis of variance).
Because the samples are drawn independently at random, this is the parameter's first-order (main-effect)
share of the variance, the quantity fANOVA estimates, without fitting a forest; unlike Optuna's
evaluators it keeps conditional parameters, which appear in only part of the trials. Beside it,
**ratio** is the slowest group's median latency over the fastest group's. Both are marginal effects:
interactions (a width that matters only at full resolution) are not separated.
"""

from __future__ import annotations

import html
import json
import math
import multiprocessing
import os
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from nasseg.errors import ConfigError, InfeasibleArchitecture
from nasseg.latency.predict.calibration import Calibration, find_calibration
from nasseg.latency.predict.costs import CONV_CLASSES, layers_of
from nasseg.latency.predict.graph import OpNode, trace, trace_meta
from nasseg.errors import UntraceableModel
from nasseg.latency.predict.predictor import estimate_trace
from nasseg.latency.result import LatencyResult
from nasseg.latency.targets import get_target, target_names
from nasseg.models import ArchConfig, build
from nasseg.profile import count_params
from nasseg.spaces import SearchSpace, load_space

MAX_LEVELS = 6  # a numeric parameter with more values is binned into this many equal-count groups
PARALLEL_FROM = 64  # architectures from which ``workers=None`` uses a process pool
DIV_LATENCY, DIV_IMPORTANCE = "landscape-latency-macs", "landscape-importance"


# ----- the result --------------------------------------------------------------------------------
@dataclass(frozen=True)
class Estimate:
    """One architecture's estimated latency on one target, and where it came from."""

    ms: float
    label: str  # LatencyResult.label(): predictor, target, precision, calibration
    calibration: str
    predictor: str
    kind: str = "estimated"

    @classmethod
    def of(cls, result: LatencyResult) -> Estimate:
        return cls(result.median_ms, result.label(), result.calibration or "", result.predictor or "", result.kind)


@dataclass(frozen=True)
class ArchPoint:
    """One architecture of the landscape: a published baseline or a random sample."""

    name: str  # the baseline's name, or "sample-<i>" in draw order
    baseline: bool
    config: ArchConfig
    arch_hash: str
    params: int
    macs: int  # fvcore's total (conv, linear, BN, resize), as ``nasseg.profile.count_macs(...).macs``
    conv_macs: int  # convolutions and matrix products only
    latency: dict[str, Estimate]  # target -> estimate
    degenerate: list[str] = field(default_factory=list)  # a baseline's layers that read only padding


@dataclass(frozen=True)
class ParamEffect:
    """How much one parameter moves latency on one target, over the random samples."""

    parameter: str
    share: float  # adjusted share of the variance of log latency explained by its groups (0..1)
    ratio: float  # median latency of its slowest group over that of its fastest
    levels: list[tuple[str, int, float]]  # (value or bin, samples, median ms), in the parameter's order


@dataclass(frozen=True)
class Landscape:
    """What ``explore`` found: every architecture with params, MACs and latency per target."""

    space: str
    family: str
    input_hw: tuple[int, int]
    num_classes: int
    targets: list[str]
    samples: int  # requested
    seed: int
    points: list[ArchPoint]
    draws: int  # architectures drawn to find the samples
    rejected: int  # draws the space rejects at its search input (infeasible, or degenerate with ``reject``)
    duplicates: int  # draws equal to an architecture already in the landscape
    effects: dict[str, list[ParamEffect]]  # target -> parameters, largest share first
    seconds: float
    workers: int
    meta_traced: int  # architectures traced on the meta device (the rest with fake tensors)
    left_out: list[str] = field(default_factory=list)  # baselines that cannot run at the search input

    @property
    def baselines(self) -> list[ArchPoint]:
        return [p for p in self.points if p.baseline]

    @property
    def sampled(self) -> list[ArchPoint]:
        return [p for p in self.points if not p.baseline]

    def to_dict(self) -> dict[str, Any]:
        return {
            "space": self.space,
            "family": self.family,
            "input_hw": list(self.input_hw),
            "num_classes": self.num_classes,
            "targets": list(self.targets),
            "samples": self.samples,
            "found": len(self.sampled),
            "seed": self.seed,
            "draws": self.draws,
            "rejected": self.rejected,
            "duplicates": self.duplicates,
            "seconds": round(self.seconds, 3),
            "workers": self.workers,
            "meta_traced": self.meta_traced,
            "left_out": list(self.left_out),
            "points": [
                {
                    "name": p.name,
                    "baseline": p.baseline,
                    "arch_hash": p.arch_hash,
                    "config": p.config.to_dict(),
                    "params": p.params,
                    "macs": p.macs,
                    "conv_macs": p.conv_macs,
                    "latency": {t: vars(e) for t, e in p.latency.items()},
                    "degenerate": list(p.degenerate),
                }
                for p in self.points
            ],
            "effects": {
                t: [
                    {
                        "parameter": e.parameter,
                        "share": round(e.share, 4),
                        "ratio": round(e.ratio, 4),
                        "levels": [list(level) for level in e.levels],
                    }
                    for e in effects
                ]
                for t, effects in self.effects.items()
            },
        }


# ----- MACs from the predictor's trace -----------------------------------------------------------
_BATCH_NORM = {"native_batch_norm", "_native_batch_norm_legit_no_training", "_native_batch_norm_legit", "batch_norm"}
_OTHER_NORM = {"native_layer_norm", "native_group_norm", "layer_norm", "group_norm", "instance_norm"}
_PER_OUTPUT = {"upsample_nearest2d": 1, "upsample_bilinear2d": 4, "grid_sampler_2d": 4, "grid_sampler": 4}


def _numel(shape: Sequence[int]) -> int:
    return math.prod(shape) if shape else 1


def trace_macs(nodes: list[OpNode]) -> tuple[int, int]:
    """(total, conv) multiply-accumulates of a traced graph, counted as ``nasseg.profile.count_macs``
    counts them with fvcore: ``conv`` is the convolutions' and matrix products' (the predictor's FLOPs
    of those layers / 2); ``total`` adds what fvcore also counts, batch norm (2 per element with an affine,
    1 without), nearest (1 per output element) and bilinear (4) resizing, and adaptive average pooling
    (1 per input element; traced as a ``mean`` when its output is 1x1).

    Like fvcore, which counts a TorchScript trace from which dead code is eliminated, only the layers the
    output depends on are counted (the last operator's, through the recorded producers): a layer whose
    result nothing reads (a JetSeg encoder block past its last tap) runs in eager PyTorch, and the
    predictor costs it, but an exported network drops it and has no MACs for it."""
    layers = {layer.node: layer for layer in layers_of(nodes, 4.0, fuse_pointwise=False)}
    live = _live(nodes)
    conv = other = 0.0
    for node in nodes:
        layer = layers.get(node.index)
        if layer is None or node.index not in live:
            continue
        name = node.op.split(".", 1)[-1].rstrip("_")
        if layer.op_class in CONV_CLASSES or layer.op_class == "matmul":
            conv += layer.flops / 2
        elif name in _BATCH_NORM:
            training = next((a for a in node.args if isinstance(a, bool)), False)
            # Tensors passed: input, then weight and bias if affine, running mean and var if tracked
            # (inference without running statistics runs as training).
            affine = len(node.in_shapes) == (3 if training else 5)
            other += _numel(node.in_shapes[0]) * ((5 if affine else 4) if training else (2 if affine else 1))
        elif name in _OTHER_NORM:
            other += _numel(node.in_shapes[0]) * (5 if len(node.in_shapes) > 1 else 4)
        elif name in _PER_OUTPUT:
            other += _numel(node.out_shapes[0]) * _PER_OUTPUT[name]
        elif name in ("_adaptive_avg_pool2d", "adaptive_avg_pool2d") or (
            name == "mean" and node.module_type == "AdaptiveAvgPool2d"
        ):
            other += _numel(node.in_shapes[0])
    return int(round(conv + other)), int(round(conv))


def _live(nodes: list[OpNode]) -> set[int]:
    """The nodes the last node (the network's output) depends on."""
    live: set[int] = set()
    stack = [nodes[-1].index] if nodes else []
    while stack:
        index = stack.pop()
        if index in live:
            continue
        live.add(index)
        stack.extend(p for p in nodes[index].producers if p is not None and p not in live)
    return live


# ----- one architecture --------------------------------------------------------------------------
@dataclass(frozen=True)
class Profiled:
    params: int
    macs: int
    conv_macs: int
    latency: dict[str, LatencyResult]
    meta: bool  # traced on the meta device


_SHAPES: dict = {}  # per process: operator output shapes by input shapes (graph.trace_meta's memo)
_INIT = [name for name in dir(torch.nn.init) if name.endswith("_") and not name.startswith("_")]


@contextmanager
def _meta_build() -> Iterator[None]:
    """Build on the meta device, with ``torch.nn.init``'s initialisers (``kaiming_uniform_``, ...)
    returning their tensor untouched: a meta tensor has no values to initialise, and skipping them halves
    the build time. Shapes, parameter counts and the trace are the same (benchmarks/explore_speed.py)."""
    saved = {name: getattr(torch.nn.init, name) for name in _INIT}
    try:
        for name in _INIT:
            setattr(torch.nn.init, name, _untouched)
        with torch.device("meta"):
            yield
    finally:
        for name, function in saved.items():
            setattr(torch.nn.init, name, function)


def _untouched(tensor: torch.Tensor, *_args: Any, **_kwargs: Any) -> torch.Tensor:
    return tensor


def profile_architecture(
    config: ArchConfig, input_hw: tuple[int, int], calibrations: dict[str, Calibration]
) -> Profiled:
    """Params, MACs and the estimate on every target of one architecture, from one trace.

    The network is built on the meta device and traced there; a model whose forward pass cannot run on
    meta tensors is built for real and traced with fake tensors, as ``estimate`` does (same result)."""
    hw = (int(input_hw[0]), int(input_hw[1]))
    try:
        with _meta_build():
            model = build(config)
        nodes, meta = trace_meta(model, hw, shapes=_SHAPES), True
    except (UntraceableModel, RuntimeError, NotImplementedError):
        model = build(config)
        nodes, meta = trace(model, hw), False
    macs, conv_macs = trace_macs(nodes)
    latency = {t: estimate_trace(nodes, hw, t, calibration=cal) for t, cal in calibrations.items()}
    return Profiled(count_params(model), macs, conv_macs, latency, meta)


def _profile_job(job: tuple[ArchConfig, tuple[int, int], dict[str, Calibration]]) -> Profiled:
    torch.set_num_threads(1)
    return profile_architecture(*job)


def check_targets(targets: Sequence[str]) -> dict[str, Calibration]:
    """The calibration of every target; an unknown target, or one without a calibration, raises the
    registry's error listing the valid ones."""
    if not targets:
        raise ConfigError(f"give at least one --target; targets: {', '.join(target_names())}")
    calibrations = {}
    for name in dict.fromkeys(targets):
        get_target(name)
        calibrations[name] = find_calibration(name)
        calibrations[name].optable  # noqa: B018  (a host op table's regressor is fitted once, here)
    return calibrations


def _default_workers(count: int) -> int:
    return 1 if count < PARALLEL_FROM else max(1, min(os.cpu_count() or 1, 8))


def explore(
    space: SearchSpace | str,
    targets: Sequence[str],
    samples: int,
    seed: int = 0,
    *,
    workers: int | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> Landscape:
    """The latency landscape of ``space`` on ``targets``: its baselines and ``samples`` random
    architectures (fewer when the space rejects almost every draw), at its search input.

    ``workers``: processes that profile architectures (default: one below ``PARALLEL_FROM``
    architectures, else the CPU count, at most 8). ``progress(done, total)`` is called as they finish.
    """
    started = time.perf_counter()
    if samples < 0:
        raise ConfigError(f"--samples {samples}: must be 0 or more")
    space = load_space(space) if isinstance(space, str) else space
    calibrations = check_targets(targets)
    hw = (int(space.spec.search_input[0]), int(space.spec.search_input[1]))
    named: list[tuple[str, bool, ArchConfig, list[str]]] = []
    left_out = []
    for name in space.baselines:
        config = space.baseline(name, space.spec.num_classes)
        try:
            notes = space.check(config, hw, degenerate="accept")  # a baseline is shown even if degenerate
        except InfeasibleArchitecture:
            left_out.append(name)  # it cannot run at the search input; the page says so
            continue
        named.append((name, True, config, notes))
    drawn = space.sample_feasible(samples, seed, exclude={c.arch_hash() for _, _, c, _ in named})
    named += [(f"sample-{i + 1}", False, config, []) for i, config in enumerate(drawn.configs)]

    workers = _default_workers(len(named)) if workers is None else max(1, int(workers))
    jobs = [(config, hw, calibrations) for _, _, config, _ in named]
    results: list[Profiled] = []
    if workers == 1:
        for job in jobs:
            results.append(profile_architecture(*job))
            if progress:
                progress(len(results), len(jobs))
    else:
        method = "fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn"
        with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context(method)) as pool:
            for result in pool.map(_profile_job, jobs, chunksize=max(1, min(16, len(jobs) // (workers * 8)))):
                results.append(result)
                if progress:
                    progress(len(results), len(jobs))

    points = [
        ArchPoint(
            name,
            is_baseline,
            config,
            config.arch_hash(),
            r.params,
            r.macs,
            r.conv_macs,
            {t: Estimate.of(res) for t, res in r.latency.items()},
            notes,
        )
        for (name, is_baseline, config, notes), r in zip(named, results, strict=True)
    ]
    sampled = [p for p in points if not p.baseline]
    effects = {t: parameter_effects(space, sampled, t) for t in calibrations}
    return Landscape(
        space=space.name,
        family=space.spec.family,
        input_hw=hw,
        num_classes=space.spec.num_classes,
        targets=list(calibrations),
        samples=samples,
        seed=seed,
        points=points,
        draws=drawn.draws,
        rejected=drawn.rejected,
        duplicates=drawn.duplicates,
        effects=effects,
        seconds=time.perf_counter() - started,
        workers=workers,
        meta_traced=sum(r.meta for r in results),
        left_out=left_out,
    )


# ----- which parameters move latency -------------------------------------------------------------
def _levels(space: SearchSpace, name: str, values: list[Any]) -> tuple[list[str], list[str]]:
    """Each sample's group for parameter ``name`` and the groups in order."""
    spec = space.parameters[name]
    active = [v for v in values if v is not None]
    if spec.type != "categorical" and len(set(active)) > MAX_LEVELS:
        edges = np.quantile(np.array(active, dtype=float), np.linspace(0, 1, MAX_LEVELS + 1))
        edges = np.unique(edges)
        bins = [f"{lo:g}–{hi:g}" for lo, hi in zip(edges[:-1], edges[1:], strict=True)]

        def group(v: Any) -> str:
            return bins[min(int(np.searchsorted(edges, float(v), side="right")) - 1, len(bins) - 1)]

        order = bins
    else:

        def group(v: Any) -> str:
            return json.dumps(v) if isinstance(v, list | dict) else str(v)

        choices = (spec.choices or []) if spec.type == "categorical" else sorted(set(active))
        order = [group(c) for c in choices]
    labels = ["inactive" if v is None else group(v) for v in values]
    if "inactive" in labels:
        order = [*order, "inactive"]
    return labels, [o for o in order if o in labels]


def parameter_effects(space: SearchSpace, sampled: list[ArchPoint], target: str) -> list[ParamEffect]:
    """Per parameter, the adjusted share of log-latency variance its values explain, largest first
    (module doc). Needs at least 3 samples; fewer give an empty list."""
    if len(sampled) < 3:
        return []
    y_ms = np.array([p.latency[target].ms for p in sampled])
    y = np.log(y_ms)
    total = float(((y - y.mean()) ** 2).sum())
    effects = []
    for name in space.parameters:
        labels, order = _levels(space, name, [p.config.params.get(name) for p in sampled])
        k, n = len(order), len(y)
        groups = [np.array([lab == level for lab in labels]) for level in order]
        between = sum(g.sum() * (y[g].mean() - y.mean()) ** 2 for g in groups)
        within_ms = (total - between) / (n - k) if n > k else 0.0
        share = max(0.0, (between - (k - 1) * within_ms) / total) if total > 0 and k > 1 else 0.0
        medians = [float(np.median(y_ms[g])) for g in groups]
        ratio = max(medians) / min(medians) if k > 1 else 1.0
        effects.append(
            ParamEffect(
                name,
                float(share),
                float(ratio),
                [(level, int(g.sum()), m) for level, g, m in zip(order, groups, medians, strict=True)],
            )
        )
    return sorted(effects, key=lambda e: (-e.share, e.parameter))


# ----- the page ----------------------------------------------------------------------------------
SAMPLE_COLOUR, BASELINE_COLOUR = "#4c78a8", "#d62728"
SAMPLES_NAME, BASELINES_NAME, SHARE_NAME = "random samples", "published baselines", "share of log-latency variance"


def _config_text(config: ArchConfig) -> str:
    return "<br>".join(f"{k} = {html.escape(json.dumps(v))}" for k, v in config.params.items())


def _hover(point: ArchPoint, target: str) -> str:
    est = point.latency[target]
    return (
        f"<b>{html.escape(point.name)}</b> ({point.arch_hash})<br>{est.ms:.2f} ms on {target}, {est.kind}<br>"
        f"{point.macs / 1e9:.3f} GMACs, {point.params / 1e6:.3f} M params<br>{_config_text(point.config)}"
    )


def _label_positions(points: list[ArchPoint]) -> list[str]:
    """Text positions for baseline labels, alternating around neighbours in MACs order so that a
    cluster of baselines does not print every name in the same place."""
    cycle = ("top center", "bottom center", "middle right", "middle left", "top right", "bottom left")
    order = sorted(range(len(points)), key=lambda i: points[i].macs)
    out = [""] * len(points)
    for rank, i in enumerate(order):
        out[i] = cycle[rank % len(cycle)]
    return out


def expected_points(landscape: Landscape) -> dict[str, list[dict[str, Any]]]:
    """For a browser test: per plot (its div id), its traces in order, each with its name, its board
    (the trace's ``meta``) and how many points it draws."""
    out: dict[str, list[dict[str, Any]]] = {DIV_LATENCY: [], DIV_IMPORTANCE: []}
    for target in landscape.targets:
        out[DIV_LATENCY] += [
            {"name": SAMPLES_NAME, "meta": target, "points": len(landscape.sampled)},
            {"name": BASELINES_NAME, "meta": target, "points": len(landscape.baselines)},
        ]
        out[DIV_IMPORTANCE].append({"name": SHARE_NAME, "meta": target, "points": len(landscape.effects[target])})
    return out


def figures(landscape: Landscape) -> dict[str, Any]:
    """The page's Plotly figures by div id: latency against MACs (one panel per target) and the
    parameters' share of log-latency variance (one panel per target)."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    targets = landscape.targets
    cols = min(len(targets), 3)
    rows = math.ceil(len(targets) / cols)
    scatter = make_subplots(
        rows=rows, cols=cols, subplot_titles=targets, horizontal_spacing=0.07, vertical_spacing=0.12
    )
    for i, target in enumerate(targets):
        row, col = i // cols + 1, i % cols + 1
        for is_baseline in (False, True):
            group = landscape.baselines if is_baseline else landscape.sampled
            colour = BASELINE_COLOUR if is_baseline else SAMPLE_COLOUR
            scatter.add_trace(
                go.Scatter(
                    x=[p.macs / 1e9 for p in group],
                    y=[p.latency[target].ms for p in group],
                    mode="markers+text" if is_baseline else "markers",
                    meta=target,
                    name=BASELINES_NAME if is_baseline else SAMPLES_NAME,
                    legendgroup="baselines" if is_baseline else "samples",
                    showlegend=i == 0,
                    text=[p.name for p in group] if is_baseline else None,
                    textposition=_label_positions(group),
                    textfont={"size": 9, "color": colour},
                    marker={
                        "color": colour,
                        "size": 10 if is_baseline else 6,
                        "opacity": 1.0 if is_baseline else 0.55,
                        "symbol": "diamond" if is_baseline else "circle",
                        "line": {"width": 1, "color": "white"},
                    },
                    hovertext=[_hover(p, target) for p in group],
                    hoverinfo="text",
                ),
                row=row,
                col=col,
            )
        label = landscape.points[0].latency[target].label if landscape.points else target
        scatter.update_xaxes(title_text="GMACs", type="log", row=row, col=col)
        scatter.update_yaxes(title_text="estimated ms", type="log", row=row, col=col)
        scatter.layout.annotations[i].hovertext = html.escape(label)
    scatter.update_layout(
        height=460 * rows,
        title=(
            f"Latency against MACs: {landscape.space} at {landscape.input_hw[0]}x{landscape.input_hw[1]}, "
            f"{len(landscape.sampled)} random samples and {len(landscape.baselines)} baselines"
        ),
        legend={"orientation": "h", "y": -0.12},
        margin={"t": 80},
    )

    importance = make_subplots(rows=rows, cols=cols, subplot_titles=targets, horizontal_spacing=0.18)
    for i, target in enumerate(targets):
        row, col = i // cols + 1, i % cols + 1
        effects = list(reversed(landscape.effects[target]))  # largest at the top
        importance.add_trace(
            go.Bar(
                x=[e.share for e in effects],
                y=[e.parameter for e in effects],
                orientation="h",
                name=SHARE_NAME,
                meta=target,
                showlegend=False,
                marker={"color": SAMPLE_COLOUR},
                hovertext=[
                    f"<b>{e.parameter}</b>: {e.share:.0%} of log-latency variance; slowest/fastest "
                    f"median {e.ratio:.2f}x<br>"
                    + "<br>".join(f"{html.escape(level)}: {ms:.2f} ms median of {n}" for level, n, ms in e.levels)
                    for e in effects
                ],
                hoverinfo="text",
            ),
            row=row,
            col=col,
        )
        importance.update_xaxes(title_text="share of log-latency variance", range=[0, 1], row=row, col=col)
    importance.update_layout(
        height=max(300, 24 * len(landscape.effects[targets[0]]) + 140) * rows,
        title="Which parameters move latency (over the random samples)",
        margin={"t": 80},
    )
    return {DIV_LATENCY: scatter, DIV_IMPORTANCE: importance}


def landscape_html(landscape: Landscape) -> str:
    """The landscape as one HTML page that opens offline: plotly.js is inlined once, nothing is
    fetched. Every plot's div has a fixed id (``DIV_LATENCY``, ``DIV_IMPORTANCE``), and the page
    carries ``expected_points`` as JSON in ``<script id="landscape-expected" type="application/json">``
    for a browser test to compare with what Plotly drew."""
    import plotly.io as pio

    figs = figures(landscape)
    parts = []
    for i, (div_id, fig) in enumerate(figs.items()):
        parts.append(
            pio.to_html(
                fig,
                include_plotlyjs=i == 0,
                full_html=False,
                div_id=div_id,
                config={"displaylogo": False, "responsive": True},
            )
        )
    lx = landscape
    labels = sorted({e.label for p in lx.points for e in p.latency.values()})
    summary = [
        f"<b>{html.escape(lx.space)}</b> ({html.escape(lx.family)}) at its search input "
        f"{lx.input_hw[0]}x{lx.input_hw[1]}, {lx.num_classes} classes: {len(lx.baselines)} published baselines"
        + (f" ({html.escape(', '.join(lx.left_out))} left out: they cannot run at this input)" if lx.left_out else "")
        + f" and {len(lx.sampled)} of {lx.samples} requested random samples (seed {lx.seed}; {lx.draws} draws, "
        f"{lx.rejected} rejected by the space, {lx.duplicates} duplicates), in {lx.seconds:.1f} s.",
        "Every latency is <b>estimated</b> by the predictor, not measured: "
        + "; ".join(map(html.escape, labels))
        + ".",
        "MACs are fvcore's count (convolutions, linear layers, batch norm, resizing), taken from the predictor's trace.",
        "Shares: the part of the variance of log latency over the random samples that a parameter's values "
        "explain (adjusted one-way ANOVA, i.e. its first-order effect); hover a bar for the median latency "
        "of each of its values.",
    ]
    expected = json.dumps(expected_points(lx)).replace("</", "<\\/")  # JSON still; cannot close the script
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        f"<title>nasseg explore: {html.escape(lx.space)} on {html.escape(', '.join(lx.targets))}</title>\n"
        "<style>body{font-family:system-ui,sans-serif;margin:1.5em;max-width:1500px}"
        "p.note{color:#444;margin:.3em 0}</style>\n</head>\n<body>\n"
        f"<h1>The latency landscape of {html.escape(lx.space)}</h1>\n"
        + "".join(f'<p class="note">{s}</p>\n' for s in summary)
        + "\n".join(parts)
        + f'\n<script id="landscape-expected" type="application/json">{expected}</script>\n'
        "</body>\n</html>\n"
    )


def write_landscape_html(landscape: Landscape, path: str | Path) -> Path:
    """Write ``landscape_html`` to ``path`` (parents created); returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(landscape_html(landscape), encoding="utf-8")
    return path
