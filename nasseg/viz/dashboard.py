"""One self-contained HTML page that shows what one or more studies found (``nasseg dashboard``).

Read only from what the studies recorded (``StudyResults``, and the Optuna study for parameter
importances): the Pareto plot of the accuracy objective (mIoU, or a proxy's score) against latency
with the published baselines labelled and every trial that was not trained greyed on a strip below
it; latency against MACs and params; the optimisation history and hypervolume; parameter importances
per objective; parallel coordinates of the configs; the per-class IoU of the front and the baselines.
Several studies share the page, one colour each. Plotly's JavaScript is inlined once, so the page opens
offline. Past ``GL_POINTS`` points a scatter is drawn with WebGL (``Scattergl``), which keeps 1,000
trials quick to draw.
"""

from __future__ import annotations

import html
import math
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import optuna
import plotly.graph_objects as go
from optuna.trial import TrialState
from plotly.colors import qualitative
from plotly.offline import get_plotlyjs
from plotly.subplots import make_subplots

from nasseg.search.results import StudyResults, TrialRow, dominates, hypervolume

GL_POINTS = 300  # a scatter trace with more points than this is drawn with WebGL
GREY = "#8c8c8c"
PALETTE = qualitative.Plotly
OBJECTIVES = (("accuracy", 0), ("latency", 1))  # "accuracy" is each study's mIoU or score
# Why a trial is not on the Pareto plot, as the strip below it says: its symbol, and what it means.
UNTRAINED = {
    "constrained": ("square-open", "constrained: over --max-latency / --max-params, timed but not trained"),
    "stopped": ("triangle-down-open", "stopped early: hopeless against finished trials"),
    "failed": ("x-open", "failed: diverged, crashed or its board unreachable"),
    "rejected": ("diamond-open", "rejected: cannot run at the study's input"),
}
FANOVA_FULL = 250  # trials up to which importances use fANOVA's full forest (see fanova_trees)
PLOT_CONFIG = {"displaylogo": False, "responsive": True}


@dataclass
class StudyView:
    """One study on the page: its results, its Optuna study (for parameter importances; None leaves
    them out, and the page says so), the label and colour it is drawn with."""

    results: StudyResults
    study: optuna.Study | None = None
    label: str = ""
    color: str = ""
    rows: list[TrialRow] = field(default_factory=list)

    @property
    def scored(self) -> list[TrialRow]:
        return [r for r in self.rows if r.scored]

    @property
    def finished(self) -> list[TrialRow]:
        """Trials with a record: evaluated, whatever came of it (not waiting, not running)."""
        return [r for r in self.rows if r.status is not None]

    def hover(self, row: TrialRow, several: bool) -> str:
        """``hover_text`` of a trial, made once: three plots show it."""
        cache = self.__dict__.setdefault("_hover", {})
        if row.number not in cache:
            cache[row.number] = hover_text(row, self, set(self.results.pareto), several)
        return cache[row.number]

    @property
    def accuracy(self) -> str:
        """What the study's accuracy objective is called on its axes."""
        return "score" if self.results.tie_broken else "mIoU"

    @property
    def front(self) -> list[TrialRow]:
        by_number = {r.number: r for r in self.rows}
        return [by_number[n] for n in self.results.pareto]


@dataclass(frozen=True)
class Section:
    id: str  # the plot's div id
    title: str
    intro: str  # one paragraph of HTML under the title: how to read the plot
    figure: go.Figure


def views_of(
    results: Sequence[StudyResults],
    studies: Sequence[optuna.Study | None] | None = None,
    labels: Sequence[str] | None = None,
) -> list[StudyView]:
    """One view per study, each with its own colour; labels default to the study names (made unique)."""
    studies = list(studies) if studies is not None else [None] * len(results)
    names = list(labels) if labels is not None else [r.study for r in results]
    seen: Counter[str] = Counter()
    views = []
    for i, (res, study, name) in enumerate(zip(results, studies, names, strict=True)):
        seen[name] += 1
        label = name if seen[name] == 1 else f"{name} ({seen[name]})"
        views.append(
            StudyView(res, study, label, PALETTE[i % len(PALETTE)], sorted(res.trials, key=lambda r: r.number))
        )
    return views


# ----- text --------------------------------------------------------------------------------------
def _fmt(value: float | None, pattern: str, none: str = "—") -> str:
    return none if value is None else format(value, pattern)


def _wrap(items: list[str], width: int = 90, sep: str = " · ") -> str:
    lines, line = [], ""
    for item in items:
        if line and len(line) + len(sep) + len(item) > width:
            lines.append(line)
            line = item
        else:
            line = f"{line}{sep}{item}" if line else item
    return "<br>".join(lines + ([line] if line else []))


def _value(value: Any) -> str:
    return "[" + ", ".join(str(v) for v in value) + "]" if isinstance(value, (list, tuple)) else str(value)


def hover_text(row: TrialRow, view: StudyView, front: set[int], several: bool) -> str:
    """Everything about one trial a reader hovers for: what it is, its scores, where its latency came
    from (measured where and how, or estimated with which calibration), its size and its architecture."""
    esc = html.escape
    head = f"<b>trial #{row.number}</b>" + (f" · <b>{esc(row.baseline)}</b> (published)" if row.baseline else "")
    head += f" · {esc(view.label)}" if several else ""
    status = row.status or row.state.lower()
    lines = [
        head,
        f"{status}"
        + (" · on the Pareto front" if row.number in front else "")
        + (f" · score {_fmt(row.score, '.4f')}" if view.results.tie_broken else "")
        + f" · mIoU {_fmt(row.miou, '.4f')} · latency {_fmt(row.latency_ms, '.2f')} ms",
    ]
    if row.latency_label:
        lines.append(_wrap([f"latency {esc(row.latency_label)}"], 100))
    lines.append(
        f"params {_fmt(None if row.params is None else row.params / 1e6, '.3f')} M · "
        f"MACs {_fmt(None if row.macs is None else row.macs / 1e9, '.3f')} G"
    )
    if row.config:
        lines.append(_wrap([f"{esc(k)}={esc(_value(v))}" for k, v in row.config.get("params", {}).items()]))
    if row.failure:
        lines.append(_wrap(esc(row.failure).split(" "), 100, " "))
    return "<br>".join(lines)


def _short_hover(row: TrialRow, view: StudyView, several: bool) -> str:
    name = f" {html.escape(row.baseline)}" if row.baseline else ""
    where = f" · {html.escape(view.label)}" if several else ""
    return (
        f"trial #{row.number}{name}{where}<br>{view.accuracy} {_fmt(row.score, '.4f')} · "
        f"{_fmt(row.latency_ms, '.2f')} ms ({row.latency_kind or 'no latency'})"
    )


# ----- plot helpers ------------------------------------------------------------------------------
def _scatter(n: int, **kwargs: Any) -> go.Scatter | go.Scattergl:
    """A scatter trace, drawn with WebGL when it has many points (SVG stays crisp and light below)."""
    return (go.Scattergl if n > GL_POINTS else go.Scatter)(**kwargs)


def _message(fig: go.Figure, text: str, row: int | None = None, col: int | None = None, y: float = 0.5) -> None:
    """A message drawn where a plot would be, so a plot with nothing to show says why."""
    where = {"xref": "paper", "yref": "paper"}
    if row:
        axes = fig.get_subplot(row, col or 1)
        where = {"xref": f"{axes.yaxis.anchor} domain", "yref": f"{axes.xaxis.anchor} domain"}  # each anchors the other
    fig.add_annotation(
        text=text,
        x=0.5,
        y=y,
        showarrow=False,
        font={"size": 14, "color": "#555"},
        bgcolor="rgba(255,255,255,0.85)",
        **where,
    )


def _several(views: list[StudyView]) -> bool:
    return len(views) > 1


def _accuracy(views: list[StudyView]) -> str:
    """The accuracy objective's name: mIoU, or score where a study scored it with a tie-breaker."""
    return "score" if any(v.results.tie_broken for v in views) else "mIoU"


def _accuracy_axis(views: list[StudyView]) -> str:
    if _accuracy(views) == "mIoU":
        return "mIoU (validation)"
    return "score: mIoU (validation) + the proxy's tie-breaker"


def _latency_axis(views: list[StudyView]) -> str:
    targets = sorted({v.results.target or "?" for v in views})
    kinds = sorted({r.latency_kind for v in views for r in v.rows if r.latency_kind})
    kind = " and ".join(kinds) if kinds else "no latency yet"
    where = targets[0] if len(targets) == 1 else "each study's own target"
    return f"latency (ms) on {where}, {kind}"


# ----- the figures -------------------------------------------------------------------------------
def pareto_figure(views: list[StudyView]) -> go.Figure:
    """The accuracy objective (mIoU, or a proxy's score) against latency: every trained trial, the front
    as a step line, the baselines labelled; a strip below holds the trials that were timed but not
    trained (constrained, stopped, failed, rejected), greyed, at their latency."""
    several = _several(views)
    fig = make_subplots(rows=2, cols=1, shared_xaxes=True, row_heights=[0.8, 0.2], vertical_spacing=0.03)
    unplaced: Counter[str] = Counter()
    for view in views:
        scored = view.scored
        fig.add_trace(
            _scatter(
                len(scored),
                x=[r.latency_ms for r in scored],
                y=[r.score for r in scored],
                mode="markers",
                name=f"{view.label}: trained ({len(scored)})" if several else f"trained trials ({len(scored)})",
                legendgroup=view.label,
                marker={"color": view.color, "size": 7, "opacity": 0.75},
                hovertext=[view.hover(r, several) for r in scored],
                hoverinfo="text",
                meta={"kind": "trained", "study": view.label},
            ),
            row=1,
            col=1,
        )
        members = view.front
        fig.add_trace(
            go.Scatter(
                x=[r.latency_ms for r in members],
                y=[r.score for r in members],
                mode="lines+markers",
                line_shape="hv",
                line={"color": view.color, "width": 2},
                marker={"symbol": "circle-open", "size": 14, "color": view.color},
                name=f"{view.label}: Pareto front ({len(members)})" if several else f"Pareto front ({len(members)})",
                legendgroup=view.label,
                hoverinfo="skip",
                meta={"kind": "front", "study": view.label},
            ),
            row=1,
            col=1,
        )
        baselines = [r for r in scored if r.baseline]
        fig.add_trace(
            go.Scatter(
                x=[r.latency_ms for r in baselines],
                y=[r.score for r in baselines],
                mode="markers+text",
                text=[r.baseline for r in baselines],
                textposition="top center",
                textfont={"size": 10},
                marker={"symbol": "diamond", "size": 11, "color": view.color, "line": {"color": "black", "width": 1}},
                name=f"{view.label}: published baselines ({len(baselines)})"
                if several
                else f"published baselines ({len(baselines)})",
                legendgroup=view.label,
                hovertext=[view.hover(r, several) for r in baselines],
                hoverinfo="text",
                meta={"kind": "baseline", "study": view.label},
            ),
            row=1,
            col=1,
        )
        for status, (symbol, meaning) in UNTRAINED.items():
            rows = [r for r in view.finished if r.status == status]
            placed = [r for r in rows if r.latency_ms is not None]
            unplaced[status] += len(rows) - len(placed)
            if not placed:
                continue
            fig.add_trace(
                _scatter(
                    len(placed),
                    x=[r.latency_ms for r in placed],
                    y=[f"{status} · {view.label}" if several else status] * len(placed),
                    mode="markers+text" if any(r.baseline for r in placed) else "markers",
                    text=[r.baseline or "" for r in placed],
                    textposition="top center",
                    textfont={"size": 9, "color": GREY},
                    marker={"symbol": symbol, "size": 9, "color": GREY, "line": {"color": view.color, "width": 1.5}},
                    name=f"{view.label}: {meaning} ({len(placed)})" if several else f"{meaning} ({len(placed)})",
                    legendgroup=view.label,
                    hovertext=[view.hover(r, several) for r in placed],
                    hoverinfo="text",
                    meta={"kind": "untrained", "status": status, "study": view.label},
                ),
                row=2,
                col=1,
            )
        unrecorded = [r for r in view.rows if r.status is None]  # no record: not evaluated (yet)
        unplaced["interrupted"] += sum(r.state == "FAIL" for r in unrecorded)
        unplaced["waiting or running"] += sum(r.state != "FAIL" for r in unrecorded)
    if not any(v.scored for v in views):
        failed = sum(r.status == "failed" for v in views for r in v.rows)
        why = (
            f"{failed} failed: why is listed at the end of the page"
            if failed
            else "no trial has finished yet"
            if not any(v.finished for v in views)
            else "none was trained"
        )
        _message(fig, f"No trial was trained to the end, so there is no front yet ({why}).", row=1, col=1)
    note = ", ".join(f"{n} {k}" for k, n in unplaced.items() if n)
    if note:
        axes = fig.get_subplot(2, 1)
        fig.add_annotation(
            text=f"not drawn (no latency): {note}",
            x=1,
            y=1,
            xanchor="right",
            yanchor="bottom",
            xref=f"{axes.yaxis.anchor} domain",
            yref=f"{axes.xaxis.anchor} domain",
            showarrow=False,
            font={"size": 12, "color": "#555"},
        )
    if not any(r.status in UNTRAINED and r.latency_ms is not None for v in views for r in v.rows):
        # plotly.js draws no subplot that holds no trace: an invisible one keeps the strip and its message
        fig.add_trace(
            go.Scatter(
                x=[None], y=[None], mode="markers", showlegend=False, hoverinfo="skip", meta={"kind": "placeholder"}
            ),
            row=2,
            col=1,
        )
        fig.update_yaxes(showticklabels=False, row=2, col=1)
        if not note:
            _message(fig, "every trial was trained: none constrained, stopped, failed or rejected", row=2, col=1)
    fig.update_yaxes(title_text=_accuracy_axis(views), row=1, col=1)
    fig.update_yaxes(title_text="not trained", row=2, col=1)
    fig.update_xaxes(title_text=_latency_axis(views), row=2, col=1)
    fig.update_layout(
        height=720, legend={"orientation": "h", "y": -0.16}, margin={"t": 30}, hoverlabel={"align": "left"}
    )
    return fig


def _spearman(xs: list[float], ys: list[float]) -> float | None:
    if len(xs) < 3:
        return None
    from scipy.stats import spearmanr

    rho = spearmanr(xs, ys).statistic
    return None if rho is None or math.isnan(rho) else float(rho)


def cost_figure(views: list[StudyView]) -> go.Figure:
    """Latency against MACs and against params: how far the counts that papers quote predict the speed
    on the board. Every timed trial; the not-trained greyed; baselines labelled."""
    several = _several(views)
    fig = make_subplots(
        rows=1, cols=2, horizontal_spacing=0.07, subplot_titles=("latency against MACs", "latency against parameters")
    )
    for col, (what, scale) in enumerate((("macs", 1e9), ("params", 1e6)), start=1):
        for view in views:
            timed = [r for r in view.finished if r.latency_ms is not None and getattr(r, what) is not None]
            for kind, rows in (
                ("timed", [r for r in timed if r.scored and not r.baseline]),
                ("baseline", [r for r in timed if r.baseline]),
                ("untrained", [r for r in timed if not r.scored and not r.baseline]),
            ):
                xs = [getattr(r, what) / scale for r in rows]
                rho = _spearman(
                    [getattr(r, what) for r in timed], [r.latency_ms for r in timed if r.latency_ms is not None]
                )
                name = {
                    "timed": f"trained ({len(rows)})"
                    + (f", Spearman ρ {rho:.2f} over all {len(timed)} timed" if rho is not None else ""),
                    "baseline": f"published baselines ({len(rows)})",
                    "untrained": f"timed, not trained ({len(rows)})",
                }[kind]
                marker: dict[str, Any] = {"color": view.color, "size": 7, "opacity": 0.75}
                if kind == "baseline":
                    marker = {
                        "symbol": "diamond",
                        "size": 10,
                        "color": view.color,
                        "line": {"color": "black", "width": 1},
                    }
                elif kind == "untrained":
                    marker = {"symbol": "circle-open", "size": 7, "color": GREY, "line": {"color": GREY}}
                fig.add_trace(
                    _scatter(
                        len(rows),
                        x=xs,
                        y=[r.latency_ms for r in rows],
                        mode="markers+text" if kind == "baseline" else "markers",
                        text=[r.baseline for r in rows] if kind == "baseline" else None,
                        textposition="top center",
                        textfont={"size": 9},
                        marker=marker,
                        name=f"{view.label}: {name}" if several else name,
                        legendgroup=f"{view.label}-{kind}",
                        showlegend=col == 1,
                        hovertext=[view.hover(r, several) for r in rows],
                        hoverinfo="text",
                        meta={"kind": kind, "axis": what, "study": view.label},
                    ),
                    row=1,
                    col=col,
                )
    if not any(r.latency_ms is not None for v in views for r in v.rows):
        _message(fig, "No trial was timed yet.")
    fig.update_xaxes(title_text="GMACs at the latency input (log)", type="log", dtick="D2", row=1, col=1)
    fig.update_xaxes(title_text="parameters, millions (log)", type="log", dtick="D2", row=1, col=2)
    fig.update_yaxes(title_text=_latency_axis(views), row=1, col=1)
    fig.update_layout(
        height=520, legend={"orientation": "h", "y": -0.2}, margin={"t": 40}, hoverlabel={"align": "left"}
    )
    return fig


def hypervolume_history(rows: list[TrialRow], reference_ms: float | None) -> list[float]:
    """The hypervolume of the front of the trials up to each one (trial order), against the study's
    final reference latency: its last value is the study's hypervolume."""
    front: list[TrialRow] = []
    out = []
    for row in sorted(rows, key=lambda r: r.number):
        if row.scored and not any(dominates(f, row) for f in front):
            front = [f for f in front if not dominates(row, f)] + [row]
        out.append(hypervolume(front, reference_ms) if reference_ms else 0.0)
    return out


def history_figure(views: list[StudyView]) -> go.Figure:
    """The accuracy objective (mIoU, or score) and latency of every trained trial in trial order, with the
    best so far; the hypervolume."""
    several = _several(views)
    accuracy = _accuracy(views)
    fig = make_subplots(
        rows=3,
        cols=1,
        shared_xaxes=True,
        vertical_spacing=0.05,
        subplot_titles=(
            f"{accuracy} of each trained trial, and the best so far",
            "latency of each trained trial, and the fastest so far",
            f"hypervolume of the front so far ({accuracy} x ms)",
        ),
    )
    for view in views:
        scored = view.scored
        prefix = f"{view.label}: " if several else ""
        for row_no, attr, best in ((1, "score", max), (2, "latency_ms", min)):
            values = [getattr(r, attr) for r in scored]
            fig.add_trace(
                _scatter(
                    len(scored),
                    x=[r.number for r in scored],
                    y=values,
                    mode="markers",
                    marker={"color": view.color, "size": 6, "opacity": 0.7},
                    name=f"{prefix}trained trials",
                    legendgroup=view.label,
                    showlegend=row_no == 1,
                    hovertext=[_short_hover(r, view, several) for r in scored],
                    hoverinfo="text",
                    meta={"kind": f"history-{attr}", "study": view.label},
                ),
                row=row_no,
                col=1,
            )
            so_far, running = [], None
            for v in values:
                running = v if running is None else best(running, v)
                so_far.append(running)
            fig.add_trace(
                go.Scatter(
                    x=[r.number for r in scored],
                    y=so_far,
                    mode="lines",
                    line={"color": view.color, "shape": "hv"},
                    name=f"{prefix}{'best' if attr == 'score' else 'fastest'} so far",
                    legendgroup=view.label,
                    hoverinfo="skip",
                    meta={"kind": f"best-{attr}", "study": view.label},
                ),
                row=row_no,
                col=1,
            )
        finished = view.finished
        fig.add_trace(
            go.Scatter(
                x=[r.number for r in finished],
                y=hypervolume_history(finished, view.results.reference_ms),
                mode="lines",
                line={"color": view.color, "shape": "hv", "width": 2},
                name=f"{prefix}hypervolume (up to {_fmt(view.results.reference_ms, '.2f')} ms)",
                legendgroup=view.label,
                meta={"kind": "hypervolume", "study": view.label},
            ),
            row=3,
            col=1,
        )
    if not any(v.scored for v in views):
        _message(fig, "No trial was trained to the end: no history to draw yet.")
    fig.update_yaxes(title_text=_accuracy(views), row=1, col=1)
    fig.update_yaxes(title_text="ms", row=2, col=1)
    fig.update_yaxes(title_text=f"{_accuracy(views)} x ms", row=3, col=1)
    fig.update_xaxes(title_text="trial number (the baselines come first)", row=3, col=1)
    fig.update_layout(
        height=760, legend={"orientation": "h", "y": -0.1}, margin={"t": 40}, hoverlabel={"align": "left"}
    )
    return fig


def fanova_trees(trials: int) -> int:
    """Optuna's 64 trees up to FANOVA_FULL trials; 16 past it, where 64 take half a minute (1,000 trials)."""
    return 64 if trials <= FANOVA_FULL else 16


def importance_trials(rows: list[TrialRow], objective: int) -> set[int]:
    """The trials an objective's importances are judged over: trained ones for mIoU (a constrained
    trial's stored 0 is a stand-in), every timed one Optuna counts complete for latency."""
    if objective == 0:
        return {r.number for r in rows if r.scored}
    return {r.number for r in rows if r.status in ("complete", "constrained") and r.latency_ms is not None}


def param_importances(study: optuna.Study | None, rows: list[TrialRow], objective: int) -> dict[str, float] | str:
    """fANOVA importances of the parameters for one objective (0 mIoU, 1 latency), or why there are
    none. mIoU is judged over trained trials only (a constrained trial's stored 0 is a stand-in);
    latency over every timed trial that Optuna counts complete."""
    if study is None:
        return "not computed: the page was made without the Optuna study"
    keep = importance_trials(rows, objective)
    trials = [
        t
        for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
        if t.number in keep and t.values is not None
    ]
    if len(trials) < 2:
        return f"cannot be computed yet: it needs at least 2 finished trials, this study has {len(trials)}"
    verbosity = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        copy = optuna.create_study(directions=study.directions)
        copy.add_trials(trials)
        importances = optuna.importance.get_param_importances(
            copy,
            target=lambda t: t.values[objective],
            evaluator=optuna.importance.FanovaImportanceEvaluator(n_trees=fanova_trees(len(trials)), seed=0),
        )
    except Exception as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        return f"cannot be computed over {len(trials)} trials: {reason[:200]}"
    finally:
        optuna.logging.set_verbosity(verbosity)
    if not importances:
        return f"cannot be computed over {len(trials)} trials: no parameter is common to all of them"
    return importances


def importance_figure(
    views: list[StudyView], importances: Callable[[StudyView, int], dict[str, float] | str] | None = None
) -> go.Figure:
    """One bar chart per study and objective; where importances cannot be computed, the reason."""
    compute = importances or (lambda v, i: param_importances(v.study, v.rows, i))
    titles = [
        (f"{v.label}: " if _several(views) else "")
        + f"importance for {v.accuracy if name == 'accuracy' else name} "
        + f"({len(importance_trials(v.rows, index))} trials)"
        for v in views
        for name, index in OBJECTIVES
    ]
    fig = make_subplots(
        rows=len(views),
        cols=2,
        subplot_titles=titles,
        horizontal_spacing=0.25,
        vertical_spacing=0.25 / max(1, len(views)),
    )
    for i, view in enumerate(views, start=1):
        for name, index in OBJECTIVES:
            result = compute(view, index)
            if isinstance(result, str):
                fig.add_trace(
                    go.Scatter(
                        x=[None],
                        y=[None],
                        mode="markers",
                        showlegend=False,
                        hoverinfo="skip",
                        meta={"kind": "importance-missing", "objective": name, "study": view.label, "reason": result},
                    ),
                    row=i,
                    col=index + 1,
                )  # plotly.js draws no subplot without a trace
                fig.update_xaxes(visible=False, row=i, col=index + 1)
                fig.update_yaxes(visible=False, row=i, col=index + 1)
                _message(fig, _wrap(result.split(" "), 50, " "), row=i, col=index + 1)
                continue
            ordered = sorted(result.items(), key=lambda kv: kv[1])
            fig.add_trace(
                go.Bar(
                    x=[v for _, v in ordered],
                    y=[k for k, _ in ordered],
                    orientation="h",
                    marker_color=view.color,
                    showlegend=False,
                    hovertemplate="%{y}: %{x:.3f}<extra></extra>",
                    meta={"kind": "importance", "objective": name, "study": view.label},
                ),
                row=i,
                col=index + 1,
            )
            fig.update_xaxes(title_text="fANOVA importance (sums to 1)", row=i, col=index + 1)
    fig.update_layout(height=max(360, 340 * len(views)), margin={"t": 50, "l": 160})
    return fig


def _dimension(label: str, values: list[Any]) -> dict[str, Any]:
    """A parallel-coordinates axis: numeric where every trial has a number, else categorical, with
    '—' for a trial that does not have the parameter (a conditional one)."""
    present = [v for v in values if v is not None]
    if (
        present
        and len(present) == len(values)
        and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in present)
    ):
        return {"label": label, "values": [float(v) for v in values]}
    texts = [_value(v) if v is not None else "—" for v in values]
    order = sorted(set(texts), key=lambda t: (t != "—", _sort_key(t)))
    index = {t: i for i, t in enumerate(order)}
    return {
        "label": label,
        "values": [index[t] for t in texts],
        "tickvals": list(range(len(order))),
        "ticktext": [t[:18] for t in order],
    }


def _sort_key(text: str) -> tuple[int, float, str]:
    try:
        return (0, float(text), text)
    except ValueError:
        return (1, 0.0, text)


def parallel_figures(views: list[StudyView]) -> list[tuple[str, go.Figure]]:
    """Parallel coordinates of the trained trials' configs, one plot per space (spaces have different
    parameters), coloured by mIoU; a study axis first when several studies share the space."""
    figures = []
    spaces = list(dict.fromkeys(v.results.space or "?" for v in views))
    for space in spaces:
        members = [v for v in views if (v.results.space or "?") == space]
        rows = [(v, r) for v in members for r in v.scored if r.config]
        names = list(dict.fromkeys(k for _, r in rows for k in (r.config or {}).get("params", {})))
        dims = []
        if len({v.label for v, _ in rows}) > 1:
            dims.append(_dimension("study", [v.label for v, _ in rows]))
        dims += [_dimension(k, [(r.config or {}).get("params", {}).get(k) for _, r in rows]) for k in names]
        dims += [
            _dimension("latency ms", [r.latency_ms for _, r in rows]),
            _dimension("mIoU", [r.miou for _, r in rows]),
        ]
        fig = go.Figure(
            go.Parcoords(
                dimensions=dims,
                line={
                    "color": [r.miou for _, r in rows],
                    "colorscale": "Viridis",
                    "showscale": True,
                    "colorbar": {"title": {"text": "mIoU"}},
                },
                labelangle=-30,
                labelside="bottom",
                meta={"kind": "parcoords", "space": space, "trials": len(rows)},
            )
        )
        if not rows:
            _message(fig, f"No trained trial in the {html.escape(space)} space yet.")
        fig.update_layout(height=520, margin={"t": 60, "b": 110, "l": 60, "r": 60})
        figures.append((space, fig))
    return figures


def per_class_figure(views: list[StudyView]) -> go.Figure:
    """Per-class IoU (validation) of the front members and the published baselines: which classes a
    faster network gives up."""
    several = _several(views)
    labels, grid = [], []
    classes = list(dict.fromkeys(c for v in views for r in v.rows for c in (r.per_class_iou or {})))
    for view in views:
        front = set(view.results.pareto)
        chosen = [r for r in view.finished if r.number in front or r.baseline]
        chosen.sort(key=lambda r: (r.number not in front, r.latency_ms if r.latency_ms is not None else math.inf))
        for r in chosen:
            tags = [
                t for t in (r.baseline, "front" if r.number in front else None, None if r.scored else r.status) if t
            ]
            labels.append(
                f"{view.label}: #{r.number} {' · '.join(tags)}" if several else f"#{r.number} {' · '.join(tags)}"
            )
            grid.append([(r.per_class_iou or {}).get(c) for c in classes])
    fig = go.Figure(
        go.Heatmap(
            z=grid,
            x=classes,
            y=labels,
            colorscale="Viridis",
            zmin=0,
            zmax=1,
            texttemplate="%{z:.2f}",
            hovertemplate="%{y}<br>%{x}: IoU %{z:.3f}<extra></extra>",
            colorbar={"title": {"text": "IoU"}},
            meta={"kind": "per-class", "rows": len(labels)},
        )
    )
    if not labels or not classes:
        _message(fig, "No front member or baseline with per-class IoU yet.")
    fig.update_yaxes(autorange="reversed")
    fig.update_layout(height=max(300, 120 + 24 * len(labels)), margin={"t": 30, "l": 260})
    return fig


# ----- the page ----------------------------------------------------------------------------------
def page_notes(views: list[StudyView]) -> list[str]:
    """What a reader must know before comparing what is drawn."""
    notes = []
    spaces: dict[str, list[str]] = {}
    for v in views:
        spaces.setdefault(v.results.space or "?", []).append(v.label)
    if len(spaces) > 1:
        listed = "; ".join(f"{s}: {', '.join(labels)}" for s, labels in spaces.items())
        notes.append(
            f"These studies search <b>different spaces</b> ({html.escape(listed)}). They share the mIoU, "
            "latency, MACs and params axes; parameter importances and parallel coordinates are per "
            "study or per space."
        )
    targets = sorted({v.results.target or "?" for v in views})
    if len(targets) > 1:
        notes.append(
            f"Latency is on each study's own target ({html.escape(', '.join(targets))}): the same "
            "architecture runs at a different speed on each board."
        )
    proxies = {v.results.proxy for v in views}
    if len(proxies) > 1:
        notes.append(
            f"The studies score accuracy differently ({html.escape('; '.join(sorted(proxies)))}): the Pareto "
            "plot's vertical axis is each study's own accuracy objective; hover a point for its mIoU."
        )
    elif any(v.results.tie_broken for v in views):
        notes.append(
            f"Accuracy is the study's score, not its mIoU: {html.escape(next(iter(proxies)))} (docs/search.md says "
            "why). Hover a point for its mIoU."
        )
    for key, what in (("data", "data"), ("schedule", "training schedule"), ("steps", "number of steps")):
        values = {str(v.results.settings.get(key)) for v in views}
        if len(values) > 1:
            notes.append(
                f"The studies were trained on different {what} ({html.escape(', '.join(sorted(values)))}): "
                "compare their mIoU with care."
            )
    for v in views:
        kinds = {r.latency_kind for r in v.rows if r.latency_kind}
        if len(kinds) > 1:
            notes.append(f"{html.escape(v.label)} mixes measured and estimated latencies: hover a point to see which.")
        if not v.finished:
            notes.append(f"<b>{html.escape(v.label)} has no finished trial yet</b>: nothing of it is drawn.")
        elif not v.scored:
            counts = Counter(r.status for r in v.finished)
            notes.append(
                f"<b>No trial of {html.escape(v.label)} was trained to the end</b> "
                f"({', '.join(f'{n} {k}' for k, n in counts.items())}): it has no front; its trials are on "
                "the strip under the Pareto plot, and the failures are listed at the end."
            )
        if v.study is None:
            notes.append(f"Parameter importances of {html.escape(v.label)} were not computed (no Optuna study given).")
    return notes


def _summary_table(views: list[StudyView]) -> str:
    head = (
        "<tr><th></th><th>study</th><th>space</th><th>target</th><th>data</th><th>schedule</th>"
        "<th>trials</th><th>front</th><th>hypervolume</th><th>latency</th></tr>"
    )
    body = []
    for v in views:
        s, r = v.results.settings, v.results
        counts = Counter(t.status or t.state.lower() for t in v.rows)
        labels = sorted({t.latency_label for t in v.rows if t.latency_label})
        latency = (
            html.escape(labels[0]) + (f" (and {len(labels) - 1} other sources)" if len(labels) > 1 else "")
            if labels
            else "—"
        )
        schedule = f"{s.get('schedule', '?')}" + (f", {s['steps']} steps" if s.get("steps") else "")
        body.append(
            f"<tr><td><span class='swatch' style='background:{v.color}'></span></td><td>{html.escape(v.label)}</td>"
            f"<td>{html.escape(str(r.space))}</td><td>{html.escape(str(r.target))}</td>"
            f"<td>{html.escape(str(s.get('data', '?')))}</td><td>{html.escape(schedule)}</td>"
            f"<td>{len(v.rows)}: {html.escape(', '.join(f'{n} {k}' for k, n in sorted(counts.items())))}</td>"
            f"<td>{len(r.pareto)}</td><td>{r.hypervolume:.4g} ({v.accuracy} x ms up to {_fmt(r.reference_ms, '.2f')} ms)</td>"
            f"<td>{latency}</td></tr>"
        )
    return f"<table class='summary'>{head}{''.join(body)}</table>"


def _failures_table(views: list[StudyView]) -> str:
    """Failed and rejected trials grouped by their reason (a search rejects the same mistake many times)."""
    groups: dict[tuple[str, str, str], list[TrialRow]] = {}
    for v in views:
        for r in v.rows:
            if r.status in ("failed", "rejected"):
                groups.setdefault((v.label, r.status or "", r.failure or "no reason recorded"), []).append(r)
    if not groups:
        return ""
    several = _several(views)
    ordered = sorted(groups.items(), key=lambda kv: (kv[0][1] != "failed", -len(kv[1])))
    cells = []
    for (label, status, reason), rows in ordered:
        names = ", ".join(f"#{r.number}" + (f" {r.baseline}" if r.baseline else "") for r in rows[:12])
        names += f" and {len(rows) - 12} more" if len(rows) > 12 else ""
        cells.append(
            ("<td>" + html.escape(label) + "</td>" if several else "")
            + f"<td>{html.escape(status)}</td><td>{len(rows)}</td><td>{html.escape(names)}</td>"
            f"<td>{html.escape(reason)}</td>"
        )
    total = sum(len(rows) for rows in groups.values())
    head = ("<th>study</th>" if several else "") + "<th>status</th><th>trials</th><th>which</th><th>why</th>"
    return (
        f"<h2 id='failures'>Failed and rejected trials ({total}), by reason</h2><table class='failures'>"
        f"<tr>{head}</tr>" + "".join(f"<tr>{c}</tr>" for c in cells) + "</table>"
    )


def build_sections(views: list[StudyView]) -> list[Section]:
    sections = [
        Section(
            "pareto",
            f"Pareto front: {_accuracy(views)} against latency",
            "Every trained trial; the front as a step line; the published baselines as labelled diamonds, "
            "trained and timed as the study's trials. The strip below holds the trials that were not "
            "trained (greyed), at their latency. Hover a point for its architecture, size, and where its "
            "latency came from (measured on which device and how, or estimated with which calibration).",
            pareto_figure(views),
        ),
        Section(
            "cost",
            "Latency against MACs and parameters",
            "How far the counts that papers quote predict the speed on the board: the spread at one MAC "
            "count is what a hardware-aware search gains. ρ is the rank correlation of latency with the count.",
            cost_figure(views),
        ),
        Section(
            "history",
            "Optimisation history and hypervolume",
            "Trials in the order they were created: the baselines first, then the sampled ones.",
            history_figure(views),
        ),
        Section(
            "importance",
            "Parameter importances per objective",
            "fANOVA (Optuna's default evaluator) over the parameters every trial has: accuracy over the trained "
            f"trials, latency over every timed one; a forest of 64 trees, of 16 past {FANOVA_FULL} trials "
            "(it stays quick at 1,000).",
            importance_figure(views),
        ),
    ]
    for space, fig in parallel_figures(views):
        sections.append(
            Section(
                f"parallel-{space}",
                f"Parallel coordinates: the {space} space",
                "One line per trained trial, coloured by mIoU; drag along an axis to filter. "
                "'—' marks a trial without that (conditional) parameter.",
                fig,
            )
        )
    sections.append(
        Section(
            "per-class",
            "Per-class IoU of the front and the baselines",
            "Validation IoU per class, front members first (fastest first), then the baselines.",
            per_class_figure(views),
        )
    )
    return sections


STYLE = """
body { font-family: system-ui, sans-serif; margin: 1.5em auto; max-width: 1400px; padding: 0 1em; color: #222; }
h1 { font-size: 1.5em; } h2 { font-size: 1.2em; margin-top: 1.8em; border-bottom: 1px solid #ddd; }
p.intro { color: #444; margin: 0.3em 0 0.6em; } .notes li { margin: 0.3em 0; }
table { border-collapse: collapse; font-size: 0.9em; } td, th { border: 1px solid #ddd; padding: 3px 8px;
text-align: left; vertical-align: top; } .swatch { display: inline-block; width: 14px; height: 14px; }
footer { color: #777; font-size: 0.85em; margin-top: 2em; }
"""


def dashboard_html(
    results: Sequence[StudyResults],
    studies: Sequence[optuna.Study | None] | None = None,
    labels: Sequence[str] | None = None,
    title: str | None = None,
) -> str:
    """The whole page as one string: Plotly's JavaScript inlined once, every figure after it."""
    if not results:
        raise ValueError("dashboard_html needs at least one study")
    views = views_of(results, studies, labels)
    sections = build_sections(views)
    title = title or "nasseg dashboard: " + ", ".join(v.label for v in views)
    notes = page_notes(views)
    parts = [
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>",
        f"<title>{html.escape(title)}</title><style>{STYLE}</style>",
        f"<script type='text/javascript'>{get_plotlyjs()}</script></head><body>",
        f"<h1>{html.escape(title)}</h1>",
        _summary_table(views),
        "<ul class='notes'>" + "".join(f"<li>{n}</li>" for n in notes) + "</ul>" if notes else "",
        "<p>" + " · ".join(f"<a href='#{s.id}'>{html.escape(s.title)}</a>" for s in sections) + "</p>",
    ]
    for section in sections:
        parts.append(f"<h2>{html.escape(section.title)}</h2><p class='intro'>{section.intro}</p>")
        parts.append(
            section.figure.to_html(full_html=False, include_plotlyjs=False, div_id=section.id, config=PLOT_CONFIG)
        )
    parts.append(_failures_table(views))
    parts.append(
        f"<footer>nasseg dashboard, {time.strftime('%Y-%m-%d %H:%M')}; "
        f"{sum(len(v.rows) for v in views)} trials of {len(views)} "
        f"{'study' if len(views) == 1 else 'studies'}.</footer></body></html>"
    )
    return "".join(parts)


def write_dashboard(
    path: Path,
    results: Sequence[StudyResults],
    studies: Sequence[optuna.Study | None] | None = None,
    labels: Sequence[str] | None = None,
    title: str | None = None,
) -> Path:
    """Write the page to ``path`` (its folder is created) and return it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    text = dashboard_html(results, studies, labels, title)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)
    return path
