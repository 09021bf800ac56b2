"""Export a study's architectures: an architecture file (for ``nasseg train`` with a longer
schedule, or ``nasseg latency``) and an ONNX graph at the study's input (for TensorRT on the board)."""

from __future__ import annotations

from pathlib import Path

import optuna
import yaml

from nasseg.errors import ConfigError
from nasseg.latency.measure.backends.onnx_export import export_onnx
from nasseg.latency.targets import EXPORT_OPSET, get_target
from nasseg.models import build
from nasseg.search.results import StudyResults
from nasseg.search.study import record_of


def export_trials(
    study: optuna.Study,
    results: StudyResults,
    numbers: list[int],
    out: Path,
    onnx: bool = True,
) -> list[Path]:
    """Write ``trial-<n>.yaml`` (and ``trial-<n>.onnx``) into ``out`` for each trial number."""
    by_number = {t.number: t for t in study.get_trials(deepcopy=False)}
    input_hw = tuple(results.settings.get("input") or ())
    # The opset the study's board parses (13 for a Nano's TensorRT 8.2), so the file runs there as it is.
    software = get_target(results.settings["target"]).software if results.settings.get("target") else None
    opset = software.onnx_opset if software else EXPORT_OPSET
    written: list[Path] = []
    out.mkdir(parents=True, exist_ok=True)
    for number in numbers:
        if number not in by_number or (record := record_of(by_number[number])) is None:
            raise ConfigError(f"study {results.study!r} has no finished trial {number}; trials: 0-{len(by_number) - 1}")
        stem = out / f"trial-{number}"
        arch = {**record.config.to_dict(), "params": dict(record.config.params)}
        path = stem.with_suffix(".yaml")
        path.write_text(yaml.safe_dump(arch, sort_keys=False))
        written.append(path)
        if onnx:
            hw = record.latency.input_hw if record.latency else input_hw
            if not hw:
                raise ConfigError(f"trial {number} was never timed ({record.status}): no input to export its ONNX at")
            written.append(
                export_onnx(build(record.config), (int(hw[0]), int(hw[1])), stem.with_suffix(".onnx"), opset)
            )
    return written
