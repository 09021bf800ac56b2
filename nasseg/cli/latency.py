"""``nasseg targets``, ``nasseg latency`` and ``nasseg agent``: latency on a target, measured or estimated."""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Any

import typer
from rich.table import Table

from nasseg.cli.common import console, err_console, parse_hw, print_degenerate, print_json, user_errors
from nasseg.errors import ConfigError
from nasseg.latency.measure.agent import AgentClient, AgentSettings, make_server
from nasseg.latency.measure.backends import backend_names, default_backend
from nasseg.latency.measure.board import board_script
from nasseg.latency.measure.cache import LatencyCache
from nasseg.latency.measure.measure import PREDICTOR, latency_backend, measure_config
from nasseg.latency.result import LatencyResult
from nasseg.latency.targets import TENSORRT_OPSET_SOURCE, Target, get_target, max_onnx_opset, target_names
from nasseg.latency.timing import TimingSettings
from nasseg.models import ArchConfig, build, check
from nasseg.spaces import load_architecture


# ----- nasseg targets ----------------------------------------------------------------------------
def _target_row(target: Target) -> dict[str, Any]:
    row: dict[str, Any] = {
        "name": target.name,
        "kind": target.kind,
        "description": target.description,
        "precisions": list(target.precisions),
    }
    if target.gpu:
        gpu = target.gpu
        assert target.software is not None  # every target with a GPU names its JetPack or CUDA stack
        row.update(
            gpu=f"{gpu.arch} (SM {gpu.compute_capability}), {gpu.sms} SM × {gpu.cuda_cores // gpu.sms} cores, "
            f"{gpu.tensor_cores} tensor cores, {gpu.max_clock_mhz:g} MHz",
            fp32_tflops=gpu.fp32_tflops,
            fp16_tflops=gpu.fp16_tflops,
            int8_tops=gpu.int8_tops,
            mem_bandwidth_gbs=gpu.mem_bandwidth_gbs,
            l2_kb=gpu.l2_kb,
            sources=gpu.sources,
            software={
                **vars(target.software),
                "onnx_opset": target.software.onnx_opset,
                "tensorrt_max_opset": max_onnx_opset(target.software.tensorrt),
                "opset_source": TENSORRT_OPSET_SOURCE,
            },
            power_modes=[vars(mode) for mode in target.power_modes],
            max_power_mode=target.max_power_mode,
        )
    return row


def _print_targets(targets: list[Target]) -> None:
    table = Table(title="Latency targets", show_lines=True)
    table.add_column("target", no_wrap=True)
    for col in ("GPU", "FP16 / INT8 peak", "memory", "JetPack → TensorRT (ONNX opset)", "power modes (GPU MHz)"):
        table.add_column(col, overflow="fold")
    for t in targets:
        if t.gpu is None:
            table.add_row(t.name, t.description, "—", "—", "—", "—")
            continue
        assert t.software is not None  # every target with a GPU names its JetPack or CUDA stack
        int8 = f"{t.gpu.int8_tops:g} TOPS" if t.gpu.int8_tops else "no INT8"
        modes = ", ".join(
            f"{'[bold]' if m.name == t.max_power_mode else ''}{m.name} ({f'{m.gpu_max_mhz:g}' if m.gpu_max_mhz else '?'}"
            f"{f', {m.tpcs_active}/{t.gpu.tpcs} TPC' if m.tpcs_active else ''})"
            f"{'[/]' if m.name == t.max_power_mode else ''}"
            for m in t.power_modes
        )
        table.add_row(
            t.name,
            f"{t.gpu.arch}, {t.gpu.cuda_cores} cores, {t.gpu.tensor_cores} TC, {t.gpu.max_clock_mhz:g} MHz",
            f"{t.gpu.fp16_tflops:g} TFLOPS / {int8}",
            f"{t.gpu.mem_bandwidth_gbs:g} GB/s, L2 {t.gpu.l2_kb} KB",
            f"{t.software.jetpack} → {t.software.tensorrt} (opset {t.software.onnx_opset})",
            modes,
        )
    console.print(table)
    console.print("Sources of every figure: [bold]nasseg targets --json[/] (tags refer to shared/reference/jetson.md)")


def targets_command(as_json: bool = typer.Option(False, "--json", help="Print JSON for scripts.")) -> None:
    """List the devices a latency can be measured on or estimated for."""
    targets = [get_target(name) for name in target_names()]
    if as_json:
        print_json([_target_row(t) for t in targets])
    else:
        _print_targets(targets)


# ----- nasseg latency ----------------------------------------------------------------------------
def _estimate(config: ArchConfig, input_hw: tuple[int, int], target: str, precision: str | None) -> LatencyResult:
    """The predictor's estimate; the caller has run ``check`` (infeasible refused, degenerate noted)."""
    from nasseg.latency import estimate

    return estimate(build(config), input_hw, target, precision=precision)


def _open_cache(path: Path | None) -> LatencyCache | None:
    if path is None:
        return None
    return LatencyCache(path) if path.suffix == ".sqlite" else LatencyCache.for_study(path)


def _print_result(result: LatencyResult, config: ArchConfig) -> None:
    colour = "green" if result.kind == "measured" else "yellow"
    table = Table(
        title=f"[{colour}]{result.kind}[/] latency of {config.family} {config.arch_hash()}", show_header=False
    )
    table.add_column("field", style="bold")
    table.add_column("value", overflow="fold")
    rows = {
        "median": f"{result.median_ms:.3f} ms ({result.fps:.1f} FPS)",
        "spread (IQR)": f"{result.spread_ms:.3f} ms" if result.spread_ms is not None else None,
        "repeats kept": result.repeats,
        "target": result.target,
        "input (H×W)": "×".join(map(str, result.input_hw)),
        "precision": result.precision,
        "where from": result.label(),
        "power mode": result.power_mode,
        "versions": ", ".join(f"{k} {v}" for k, v in result.versions.items()) or None,
    }
    for field, value in rows.items():
        if value is not None:
            table.add_row(field, str(value))
    console.print(table)


def latency_command(
    architecture: str = typer.Argument(..., help="A baseline name (e.g. espnet-c) or an ArchConfig YAML/JSON file."),
    target: str = typer.Option(..., "--target", "-t", help="Target device: see `nasseg targets`."),
    input_size: str | None = typer.Option(
        None,
        "--input",
        help="Input H×W, e.g. 512x1024 (default: a baseline's published input, else the space's search input).",
    ),
    backend: str | None = typer.Option(
        None,
        "--backend",
        "-b",
        help=f"{', '.join([*backend_names(), PREDICTOR])}. Default: the agent's backend with --agent, "
        "the predictor for a Jetson target without one, torch otherwise.",
    ),
    precision: str | None = typer.Option(None, "--precision", help="fp32 / fp16 / int8 (default: the target's)."),
    agent: str | None = typer.Option(
        None, "--agent", help="URL of a `nasseg agent` on the board, e.g. http://jetson:8765."
    ),
    cache: Path | None = typer.Option(None, "--cache", help="Study directory or .sqlite file caching measurements."),
    threads: int = typer.Option(1, "--threads", min=1, help="CPU threads for host measurements."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON for scripts."),
) -> None:
    """Latency of one architecture on a target: measured on this machine or a board, or estimated."""
    with user_errors():
        spec = get_target(target)
        config, space_input = load_architecture(architecture)
        input_hw = parse_hw(input_size) if input_size else space_input
        # One rule for every command: an infeasible input is one error line (exit 2); degenerate layers
        # (a published network at an input its authors ran, say) are noted, and the latency is still given.
        notes = check(config, input_hw)
        print_degenerate(notes, input_hw)
        if agent is None:  # with an agent, the board's backend measures
            backend = latency_backend(spec.name, backend, agent)
        with err_console.status(f"{'estimating' if backend == PREDICTOR else 'measuring'} on {spec.name} ..."):
            if backend == PREDICTOR:
                result = _estimate(config, input_hw, spec.name, precision)
            else:
                client = AgentClient(agent) if agent else None
                result = measure_config(
                    config,
                    input_hw,
                    spec.name,
                    backend,
                    precision,
                    agent=client,
                    cache=_open_cache(cache),
                    settings=TimingSettings(threads=threads),
                )
    if as_json:
        print_json(
            {"architecture": config.to_dict(), "arch_hash": config.arch_hash(), **result.to_dict(), "degenerate": notes}
        )
    else:
        _print_result(result, config)


# ----- nasseg agent ------------------------------------------------------------------------------
def agent_command(
    host: str = typer.Option("127.0.0.1", "--host", help="Address to listen on (0.0.0.0: every interface)."),
    port: int = typer.Option(8765, "--port", min=0, max=65535),
    target: str | None = typer.Option(
        None, "--target", "-t", help="What this machine is: a Jetson name, host-cpu or cuda."
    ),
    backend: str | None = typer.Option(
        None, "--backend", "-b", help="Measurement backend (default: tensorrt on a Jetson)."
    ),
    threads: int = typer.Option(1, "--threads", min=1, help="CPU threads for host measurements."),
    script: bool = typer.Option(
        False,
        "--script",
        help="Print the board agent instead: one file for a Jetson without nasseg (Python 3.6+ and JetPack's trtexec).",
    ),
    out: Path | None = typer.Option(None, "--output", "-o", help="With --script: write it to this file."),
) -> None:
    """Serve measurements on this board to a host (JSON over HTTP, one measurement at a time)."""
    if script:
        _write_board_script(out)
        return
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    with user_errors():
        if target is None:
            raise ConfigError("nasseg agent needs --target (what this machine is), or --script for the board agent")
        spec = get_target(target)
        settings = AgentSettings(spec, backend or default_backend(spec), TimingSettings(threads=threads))
        server = make_server(host, port, settings)
    bound_host, bound_port = server.server_address[:2]
    bound_host = bound_host.decode() if isinstance(bound_host, bytes) else bound_host
    err_console.print(
        f"nasseg agent: {spec.name} with {settings.backend} on http://{bound_host}:{bound_port} (Ctrl-C stops)"
    )
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


def _write_board_script(out: Path | None) -> None:
    """The board agent's source to stdout, or to ``out`` made executable."""
    text = board_script()
    if out is None:
        sys.stdout.write(text)
        return
    with user_errors():
        try:
            out.write_text(text)
            out.chmod(0o755)
        except OSError as exc:
            raise ConfigError(f"cannot write the board agent to {out}: {exc.strerror or exc}") from None
    err_console.print(f"board agent written to {out}: copy it to the board and run `python3 {out.name} --host 0.0.0.0`")


def register(app: typer.Typer) -> None:
    """Add this module's commands to the app."""
    app.command("targets")(targets_command)
    app.command("latency")(latency_command)
    app.command("agent")(agent_command)
    # ----- part B: `nasseg calibrate --target T` is registered here, below this line -----
    app.command("calibrate")(calibrate_command)


def calibrate_command(
    target: str = typer.Option(
        ..., "--target", "-t", help="The device to calibrate the predictor for: see `nasseg targets`."
    ),
    agent: str | None = typer.Option(
        None,
        "--agent",
        help="URL of a `nasseg agent` on the board: measures every baseline plus sampled architectures.",
    ),
    backend: str | None = typer.Option(
        None, "--backend", "-b", help="Without --agent: backend on this machine (default: the target's)."
    ),
    precision: str | None = typer.Option(None, "--precision", help="fp32 / fp16 / int8 (default: the target's)."),
    input_size: str = typer.Option("128x128", "--input", help="Micro-benchmark input H×W (without --agent)."),
    channels: int = typer.Option(32, "--channels", min=1, help="Micro-benchmark channel width (without --agent)."),
    samples: int = typer.Option(
        4, "--samples", min=0, help="With --agent or --op-table: sampled architectures per search space."
    ),
    op_table: bool = typer.Option(
        False,
        "--op-table",
        help="host-cpu with torch, 1 thread: also measure --samples sampled architectures per space at their search input, "
        "and time every layer of every case inside its network into an op table that replaces the roofline.",
    ),
    threads: int = typer.Option(1, "--threads", min=1, help="CPU threads for host measurements."),
    rounds: int = typer.Option(
        1,
        "--rounds",
        min=1,
        help="Measure every case this many times, in as many passes, and fit to the medians (3 on a shared machine).",
    ),
    out: Path | None = typer.Option(
        None, "--out", help="Where to write the calibration (default: ~/.nasseg/calibrations/)."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print JSON for scripts."),
) -> None:
    """Refit the latency predictor to measurements on a real device, so estimates match your board."""
    import datetime

    from rich.progress import Progress

    from nasseg.latency.measure.backends import measure_model, require_local, resolve_precision
    from nasseg.latency.predict import fit as calib
    from nasseg.latency.predict.calibration import USER_CALIBRATIONS_DIR
    from nasseg.latency.predict.microbench import suite

    with user_errors():
        spec = get_target(target)
        precision = resolve_precision(spec, precision)
        # Refused before any board is contacted or network built. PyTorch eager runs each layer as its
        # own kernel, so only there can layers be timed in the network.
        local_backend = backend or default_backend(spec)
        if op_table and (
            agent or spec.name != "host-cpu" or local_backend != "torch" or threads != 1 or precision != "fp32"
        ):
            raise ConfigError(
                "--op-table times layers inside PyTorch eager networks on this CPU: it needs --target "
                f"host-cpu, the torch backend, 1 thread and fp32 (not {spec.name}, {local_backend}, "
                f"{threads} thread(s), {precision}{', --agent' if agent else ''})"
            )
        if agent:  # the agent builds architectures from JSON: calibrate on the search spaces' networks
            client = AgentClient(agent)
            info = client.info()  # an unreachable board fails here, after bounded retries
            if info["target"] != spec.name:
                raise ConfigError(f"the agent at {agent} serves {info['target']}, not {spec.name}")
            backend = info["backend"]
            architectures = calib.baseline_architectures() + calib.sampled_architectures(samples)
            configs = {name: config for name, config, _ in architectures}
            cases = [(name, build(config), hw) for name, config, hw in architectures]
            measure = lambda name, _model, hw: client.measure(configs[name], hw, precision)  # noqa: E731
        else:
            backend = local_backend
            require_local(spec, backend)  # a Jetson target needs this machine to be that board
            cases = suite(parse_hw(input_size), channels)
            if op_table:
                cases += [(name, build(config), hw) for name, config, hw in calib.sampled_architectures(samples)]
            settings = TimingSettings(threads=threads)
            measure = lambda _name, model, hw: measure_model(model, hw, spec, backend, precision, settings)  # noqa: E731
        runtime = "torch-eager" if backend == "torch" else backend
        cal_id = f"{spec.name}/{runtime}-{precision}/{datetime.date.today().isoformat()}"
        with Progress(console=err_console, transient=True) as progress:
            task = progress.add_task(f"measuring on {spec.name}", total=len(cases) * rounds)
            cal, _ = calib.measure_and_fit(
                spec.name,
                cases,
                measure,
                precision=precision,
                runtime=runtime,
                cal_id=cal_id,
                op_table=op_table,
                rounds=rounds,
                progress=lambda name: progress.update(task, advance=1, description=name),
            )
        path = cal.save(out or USER_CALIBRATIONS_DIR / f"{spec.name}-{precision}.json")
    if as_json:
        print_json({"path": str(path), **cal.to_dict()})
        return
    table = Table(
        title=f"calibration {cal.id} ({len(cases)} cases x {rounds} rounds, fit MAPE {cal.fitted_on['fit_mape_percent']} %)"
    )
    for column in ("op class", "efficiency"):
        table.add_column(column)
    if cal.optable is None:
        for op_class, value in cal.efficiency.items():
            table.add_row(op_class, f"{value:.3f}")
        table.add_row("memory efficiency", f"{cal.memory_efficiency:.3f}")
        table.add_row("per-kernel overhead", f"{cal.layer_overhead_ms * 1e3:.1f} µs")
    else:  # the op table replaces every layer's roofline time
        table.add_row("every layer", f"op table: {len(cal.optable.ms)} layers timed inside the networks")
        table.add_row("network / sum of its layers", f"{cal.optable.scale:.3f}")
    table.add_row("fixed overhead", f"{cal.fixed_overhead_ms:.3f} ms")
    console.print(table)
    console.print(f"written to {path}; estimates for {spec.name} now use it (or pass calibration={cal.id!r})")
