"""``nasseg spaces`` and ``nasseg reproduce``: the model zoo seen from the command line."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer
from rich.table import Table

from nasseg.cli.common import console, err_console, parse_hw, print_degenerate, print_json, user_errors
from nasseg.cli.train import training_errors
from nasseg.train.runs import make_run, run_training
from nasseg.models import build, check
from nasseg.profile import count_macs, count_params, peak_activation_bytes
from nasseg.spaces import SearchSpace, all_spaces, find_baseline, load_space
from nasseg.train import get_schedule


def _rel(ours: float | None, theirs: float | None) -> float | None:
    if ours is None or theirs is None or theirs == 0:
        return None
    return (ours - theirs) / theirs


def _fmt_count(value: float | None, unit: float = 1.0, digits: int = 3) -> str:
    if value is None:
        return "—"
    return f"{value / unit:,.{digits}f}" if unit != 1.0 else f"{int(value):,}"


def _fmt_rel(value: float | None) -> str:
    if value is None:
        return "—"
    colour = "green" if abs(value) <= 0.01 else "yellow" if abs(value) <= 0.05 else "red"
    return f"[{colour}]{value:+.2%}[/]"


# ----- nasseg spaces -----------------------------------------------------------------------------
def _space_summary(space: SearchSpace) -> dict[str, Any]:
    return {
        "name": space.name,
        "family": space.spec.family,
        "file": str(space.path),
        "doc": space.spec.doc,
        "search_input": list(space.spec.search_input),
        "num_classes": space.spec.num_classes,
        "degenerate": space.spec.degenerate,
        "parameters": {
            name: {
                "type": p.type,
                "domain": p.describe(),
                **({"when": p.when} if p.when else {}),
                "doc": p.doc,
                **({"decision": p.decision} if p.decision else {}),
            }
            for name, p in space.parameters.items()
        },
        "baselines": {
            name: {
                "num_classes": b.num_classes,
                "params": b.params,
                "published": b.published.model_dump(exclude_none=True),
            }
            for name, b in space.baselines.items()
        },
        "decisions": [d.model_dump() for d in space.spec.decisions],
    }


def _print_spaces(spaces: list[SearchSpace]) -> None:
    table = Table(title="Search spaces", show_lines=False)
    for col in ("space", "family", "parameters", "baselines"):
        table.add_column(col)
    for space in spaces:
        table.add_row(space.name, space.spec.family, str(len(space.parameters)), ", ".join(space.baselines))
    console.print(table)
    console.print("Details of one space: [bold]nasseg spaces NAME[/]")


def _print_space(space: SearchSpace) -> None:
    console.print(f"[bold]{space.name}[/] ({space.path}) — {space.spec.doc.strip()}")
    params = Table(title="Parameters (sampled in this order)", show_lines=True)
    for col in ("parameter", "domain", "only when", "meaning"):
        params.add_column(col, overflow="fold")
    for name, p in space.parameters.items():
        when = ", ".join(f"{k} ∈ {v}" for k, v in (p.when or {}).items())
        params.add_row(
            name,
            p.describe(),
            when,
            p.doc.strip() + (f"\n[dim]decision: {p.decision.strip()}[/]" if p.decision else ""),
        )
    console.print(params)
    h, w = space.spec.search_input
    console.print(
        f"Sampled points with layers that read only padding at {h}x{w} (degenerate) are "
        f"{'rejected' if space.spec.degenerate == 'reject' else 'accepted'}; baselines run at any input their "
        "strides allow."
    )
    baselines = Table(title="Baselines (published networks as points of this space)")
    for col in ("baseline", "classes", "published params", "published MACs", "source"):
        baselines.add_column(col, overflow="fold")
    for name, b in space.baselines.items():
        pub = b.published
        macs = (
            f"{pub.macs / 1e9:.3f} G @ {pub.macs_input[0]}x{pub.macs_input[1]}" if pub.macs and pub.macs_input else "—"
        )
        baselines.add_row(name, str(b.num_classes), _fmt_count(pub.params), macs, pub.source)
    console.print(baselines)
    if space.spec.decisions:
        decisions = Table(title="Documented decisions (paper vs code)", show_lines=True)
        for col in ("id", "topic", "choice", "reason", "affects"):
            decisions.add_column(col, overflow="fold")
        for d in space.spec.decisions:
            decisions.add_row(d.id, d.topic, d.choice, d.reason, ", ".join(d.affects))
        console.print(decisions)


def spaces(
    name: str = typer.Argument(None, help="A space to show in detail (e.g. fassd)."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object instead of tables."),
) -> None:
    """List the search spaces, or show one: parameters, baselines, decisions."""
    with user_errors():
        chosen = [load_space(name)] if name else all_spaces()
        if as_json:
            print_json(_space_summary(chosen[0]) if name else {"spaces": [_space_summary(s) for s in chosen]})
        elif name:
            _print_space(chosen[0])
        else:
            _print_spaces(chosen)


# ----- nasseg reproduce --------------------------------------------------------------------------


def reproduce_report(
    baseline: str, num_classes: int | None = None, input_hw: tuple[int, int] | None = None
) -> dict[str, Any]:
    """Build a baseline, count it, and set our figures beside the published ones. An input it cannot
    run at raises ``InfeasibleArchitecture``; its degenerate layers there are listed in ``degenerate``."""
    space, name = find_baseline(baseline)
    b = space.baselines[name]
    config = space.baseline(name, num_classes)
    hw = input_hw or space.baseline_input(name)
    notes = check(config, hw)
    model = build(config)
    macs = count_macs(model, hw)
    params = count_params(model)
    same_setting = config.num_classes == b.num_classes
    same_input = b.published.macs_input is not None and tuple(b.published.macs_input) == hw
    ours_macs = macs.conv_macs if b.published.macs_kind == "conv" else macs.macs
    official = b.official_code
    rows = []
    for row in space.ablation_of(name):
        rb = space.baselines[row]
        rparams = params if row == name else count_params(build(space.baseline(row, config.num_classes)))
        published = rb.published.params if config.num_classes == rb.num_classes else None
        rows.append(
            {
                "baseline": row,
                "params": rparams,
                "published_params": rb.published.params,
                "rel_diff": _rel(rparams, published),
            }
        )
    return {
        "baseline": name,
        "space": space.name,
        "family": space.spec.family,
        "doc": b.doc,
        "config": config.to_dict(),
        "arch_hash": config.arch_hash(),
        "num_classes": config.num_classes,
        "input": list(hw),
        "degenerate": notes,
        "params": {
            "ours": params,
            "published": b.published.params,
            "rel_diff": _rel(params, b.published.params) if same_setting else None,
            "official_code": official.params if official else None,
            "rel_diff_official": _rel(params, official.params if official else None) if same_setting else None,
        },
        "macs": {
            "ours": ours_macs,
            "kind": b.published.macs_kind,
            "fvcore_total": macs.macs,
            "conv": macs.conv_macs,
            "torch_flop_counter": macs.flop_counter_macs,
            "cross_check_rel_diff": macs.cross_check_rel_diff,
            "skipped_ops": macs.skipped_ops,
            "uncounted_ops": macs.uncounted_ops,
            "published": b.published.macs,
            "published_input": list(b.published.macs_input) if b.published.macs_input else None,
            "rel_diff": _rel(ours_macs, b.published.macs) if same_setting and same_input else None,
        },
        "peak_activation_bytes": peak_activation_bytes(model, hw),
        "published": b.published.model_dump(exclude_none=True),
        "ablation": rows,
    }


def _print_report(report: dict[str, Any]) -> None:
    h, w = report["input"]
    console.print(
        f"[bold]{report['baseline']}[/] ({report['family']}, {report['num_classes']} classes, "
        f"arch {report['arch_hash']}) — {report['doc'].strip()}"
    )
    pub = report["published"]
    table = Table(title=f"Ours vs published ({pub['source']})")
    for col in ("figure", "ours", "published", "Δ", "official code", "Δ"):
        table.add_column(col, justify="right")
    p, m = report["params"], report["macs"]
    table.add_row(
        "params",
        _fmt_count(p["ours"]),
        _fmt_count(p["published"]),
        _fmt_rel(p["rel_diff"]),
        _fmt_count(p["official_code"]),
        _fmt_rel(p["rel_diff_official"]),
    )
    kind = "conv MACs" if m["kind"] == "conv" else "MACs"
    pub_in = m["published_input"]
    table.add_row(
        f"G{kind} @ {h}x{w}",
        _fmt_count(m["ours"], 1e9),
        _fmt_count(m["published"], 1e9) + (f" @ {pub_in[0]}x{pub_in[1]}" if pub_in else ""),
        _fmt_rel(m["rel_diff"]),
        "",
        "",
    )
    table.add_row("peak activations (MiB)", f"{report['peak_activation_bytes'] / 2**20:,.1f}", "—", "", "", "")
    console.print(table)
    console.print(
        f"[dim]MACs cross-check: fvcore conv {m['conv'] / 1e9:.3f} G vs torch flop counter "
        f"{m['torch_flop_counter'] / 1e9:.3f} G ({m['cross_check_rel_diff']:+.2%}).[/]"
    )
    if m["uncounted_ops"]:
        console.print(f"[yellow]fvcore skipped ops that may carry arithmetic:[/] {m['uncounted_ops']}")
    for fig in pub.get("miou", []):
        console.print(
            f"published mIoU {fig['value']} on {fig['dataset']} {fig['split']} ({fig.get('source', pub['source'])})"
        )
    for fig in pub.get("fps", []):
        size = "x".join(str(v) for v in fig["input"])
        console.print(
            f"published {fig['value']} FPS on {fig['device']} ({fig['runtime']}, {size}) — measured by the authors"
        )
    if len(report["ablation"]) > 1:
        ablation = Table(title="Published table, in the paper's order")
        for col in ("row", "ours params", "published", "Δ"):
            ablation.add_column(col, justify="right")
        for row in report["ablation"]:
            ablation.add_row(
                row["baseline"],
                _fmt_count(row["params"]),
                _fmt_count(row["published_params"]),
                _fmt_rel(row["rel_diff"]),
            )
        console.print(ablation)


def reproduce_training(
    baseline: str, data: str, schedule_name: str, steps: int | None, seed: int, out: Path | None, progress: bool
) -> dict[str, Any]:
    """Train a baseline with its paper's recipe at ``schedule_name``'s length and resolution."""
    space, name = find_baseline(baseline)
    recipe = get_schedule("paper", space.spec.family).scaled_to(get_schedule(schedule_name, space.spec.family))
    schedule = recipe.with_overrides(steps=steps) if steps else recipe
    run = make_run(name, space.baseline(name), data, schedule, seed)
    out = out or Path("runs") / f"reproduce-{name}-{schedule.name}-s{seed}"
    metrics = run_training(run, out, overwrite=True, progress=progress)
    keep = (
        "miou",
        "per_class_iou",
        "pixel_accuracy",
        "steps",
        "stopped",
        "train_seconds",
        "images_per_second",
        "degenerate_at_train_input",
    )
    return {
        **{k: metrics[k] for k in keep},
        "data": data,
        "train_hw": list(run.train_hw),
        "eval_hw": list(run.eval_hw),
        "schedule": schedule.name,
        "run_dir": str(out),
    }


def _print_training(report: dict[str, Any]) -> None:
    t = report["trained"]
    h, w = t["eval_hw"]
    console.print(
        f"[bold]our mIoU {100 * t['miou']:.1f}[/] on {t['data']} val @ {h}x{w} after {t['steps']} steps of the paper's "
        f"recipe at schedule {t['schedule']} ({t['train_seconds']:.0f} s; run in {t['run_dir']})"
    )
    for fig in report["published"].get("miou", []):
        console.print(f"  published: {fig['value']} on {fig['dataset']} {fig['split']} after the paper's full training")


def reproduce(
    baseline: str = typer.Argument(..., help="A baseline name, e.g. fassd-net (see `nasseg spaces`)."),
    classes: int = typer.Option(None, "--classes", min=1, help="Number of classes (default: the paper's)."),
    input_size: str = typer.Option(None, "--input", help="Input HxW for MACs (default: the paper's)."),
    do_train: bool = typer.Option(False, "--train", help="Also train it with the paper's recipe and report mIoU."),
    data: str = typer.Option("synthetic", "--data", help="With --train: dataset URI (synthetic, camvid:PATH, ...)."),
    schedule_name: str = typer.Option(
        "short", "--schedule", help="With --train: the length and resolution the paper's recipe is scaled to."
    ),
    steps: int = typer.Option(None, "--steps", min=1, help="With --train: override the number of steps."),
    seed: int = typer.Option(0, "--seed", help="With --train: the training seed."),
    out: Path = typer.Option(None, "--out", help="With --train: the run directory."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object instead of tables."),
) -> None:
    """Build a published network and set our counts beside the paper's, with relative differences."""
    with training_errors():
        hw = parse_hw(input_size) if input_size else None
        with err_console.status(f"building and counting {baseline}…"):
            report = reproduce_report(baseline, classes, hw)
        print_degenerate(report["degenerate"], report["input"])
        if do_train:
            report["trained"] = reproduce_training(baseline, data, schedule_name, steps, seed, out, not as_json)
            print_degenerate(report["trained"]["degenerate_at_train_input"], report["trained"]["train_hw"])
        if as_json:
            print_json(report)
        else:
            _print_report(report)
            if do_train:
                _print_training(report)


def register(app: typer.Typer) -> None:
    app.command()(spaces)
    app.command()(reproduce)
