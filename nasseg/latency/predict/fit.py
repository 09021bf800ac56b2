"""Fitting the predictor's efficiencies and overheads to measured latencies.

One fit covers one or several targets at once. Each target's log-parameters are a shared value
plus a per-target deviation; the deviations are pulled towards zero and the shared values
towards a prior, so a target with five published points borrows strength from the targets with
thirty, and a parameter no measurement constrains (an op class absent from the data) stays at the
prior instead of drifting. The residual is the log ratio of predicted to measured latency.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Collection
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy.optimize import least_squares
from torch import nn

from nasseg.errors import CalibrationError
from nasseg.latency.predict.calibration import CALIBRATIONS_DIR, MEMORY_CLASSES, Calibration
from nasseg.latency.predict.costs import OP_CLASSES, LayerTable
from nasseg.latency.predict.effects import apply_effects, overlaps
from nasseg.latency.predict.optable import OpTable, time_layers
from nasseg.latency.predict.predictor import layer_table, layer_times_ms, predict_ms
from nasseg.latency.predict.reference_nets import reference_net
from nasseg.latency.result import LatencyResult
from nasseg.latency.targets import get_target
from nasseg.latency.timing import in_passes
from nasseg.models import ArchConfig, build
from nasseg.spaces import SearchSpace, all_spaces, find_baseline

PUBLISHED_JETSON = CALIBRATIONS_DIR / "published_jetson.json"
# Parameters beside the per-class efficiencies, in the order of the parameter vector.
_EXTRA = ("memory_efficiency", "layer_overhead_ms", "fixed_overhead_ms")
_N_CLASS = len(OP_CLASSES)

# Priors: where a fit starts and what an unconstrained parameter keeps. TensorRT on a Jetson:
# dense convs reach 20-100 % of peak, depthwise/shuffle nets a few % (jetson.md section 4);
# the 1.2-2.5 ms floors of small nets on Xavier/Orin set the launch overheads' scale.
JETSON_PRIOR = {
    "efficiency": {
        "conv": 0.5,
        "conv1x1": 0.4,
        "conv_dilated": 0.5,
        "conv_asym": 0.4,
        "conv_depthwise": 0.2,
        "conv_grouped": 0.25,
        "conv_transposed": 0.3,
        "matmul": 0.4,
        "elementwise": 0.5,
        "pool": 0.5,
        "reduce": 0.5,
        "resize": 0.5,
        "copy": 0.5,
    },
    "memory_efficiency": 0.6,
    "layer_overhead_ms": 0.02,
    "fixed_overhead_ms": 0.1,
}
# PyTorch eager on a CPU: every operator is a dispatch (microseconds) and a separate pass over memory.
HOST_PRIOR = {
    "efficiency": dict.fromkeys(OP_CLASSES, 0.3),
    "memory_efficiency": 0.5,
    "layer_overhead_ms": 0.01,
    "fixed_overhead_ms": 0.05,
}
# Targets without a spec sheet (host-cpu, a local cuda GPU): nominal peaks; the fitted
# efficiencies then carry the machine's real speed.
_NOMINAL_FLOPS, _NOMINAL_BANDWIDTH = 1e11, 2e10


@dataclass(frozen=True)
class Measurement:
    """A measured latency and the layer table of what was measured.

    ``precision`` is the one it ran at where it differs from its target's calibration (a published
    FP32 timing beside FP16 ones: the same efficiencies, at the FP32 peaks); ``network`` and
    ``source`` name what was timed and who published it, so that evaluations can hold out every
    point of one network or one source together.
    """

    id: str
    target: str
    table: LayerTable
    ms: float
    precision: str = ""
    network: str = ""
    source: str = ""


def target_specs(target: str, precision: str) -> tuple[float, float, float]:
    """(tensor-core peak, CUDA-core peak, memory bandwidth) from the targets registry.

    CUDA cores run FP16 as paired FP32 (fp16x2), so their FP16 peak is twice the FP32 one; on
    GPUs without tensor cores that is the FP16 headline itself.
    """
    spec = get_target(target).gpu
    if spec is None:
        return _NOMINAL_FLOPS, _NOMINAL_FLOPS, _NOMINAL_BANDWIDTH
    fp32 = spec.fp32_tflops * 1e12
    if precision == "fp32":
        peak = cuda = fp32
    elif precision == "fp16":
        peak, cuda = spec.fp16_tflops * 1e12, (spec.fp16_tflops * 1e12 if spec.tensor_cores == 0 else 2 * fp32)
    elif precision == "int8" and spec.int8_tops:
        peak, cuda = spec.int8_tops * 1e12, 2 * fp32
    else:
        raise CalibrationError(f"{target} has no {precision} path to calibrate")
    return peak, cuda, spec.mem_bandwidth_gbs * 1e9


def template(
    target: str, precision: str, runtime: str, timed: str, fuse_pointwise: bool, prior: dict, cal_id: str
) -> Calibration:
    """A calibration holding the target's specs and the prior's values, ready to be fitted."""
    peak, cuda, bandwidth = target_specs(target, precision)
    return Calibration(
        id=cal_id,
        target=target,
        precision=precision,
        runtime=runtime,
        timed=timed,
        fuse_pointwise=fuse_pointwise,
        peak_flops=peak,
        cuda_core_flops=cuda,
        bandwidth=bandwidth,
        efficiency=dict(prior["efficiency"]),
        **{k: prior[k] for k in _EXTRA},
    )


def _to_vector(cal: Calibration | dict) -> np.ndarray:
    get = (lambda k: getattr(cal, k)) if isinstance(cal, Calibration) else cal.__getitem__
    return np.log([get("efficiency")[c] for c in OP_CLASSES] + [get(k) for k in _EXTRA])


def _from_vector(base: Calibration, theta: np.ndarray, fitted_on: dict) -> Calibration:
    values = np.exp(theta)
    extra = {k: float(v) for k, v in zip(_EXTRA, values[_N_CLASS:], strict=True)}
    return dataclasses.replace(
        base,
        efficiency={c: float(v) for c, v in zip(OP_CLASSES, values[:_N_CLASS], strict=True)},
        memory_efficiency=extra["memory_efficiency"],
        layer_overhead_ms=extra["layer_overhead_ms"],
        fixed_overhead_ms=extra["fixed_overhead_ms"],
        fitted_on=fitted_on,
    )


@dataclass(frozen=True)
class FitWeights:
    """Pull of each target's deviation towards the shared values, and of those towards the prior,
    relative to a unit log-error of one measurement."""

    deviation: float = 0.3
    prior: float = 0.1


def at_precision(cal: Calibration, precision: str) -> Calibration:
    """The calibration at another precision of its target: the same efficiencies at that precision's peaks."""
    if not precision or precision == cal.precision:
        return cal
    peak, cuda, _ = target_specs(cal.target, precision)
    return dataclasses.replace(cal, precision=precision, peak_flops=peak, cuda_core_flops=cuda)


class _Problem:
    """The stacked layer tables of every measurement, and the residuals of a parameter vector."""

    def __init__(self, measurements: list[Measurement], templates: dict[str, Calibration]) -> None:
        self.targets = list(templates)
        # Each measurement at its own precision's peaks, its kernels as its calibration's effects make them.
        cals = [at_precision(templates[m.target], m.precision) for m in measurements]
        self.table = LayerTable.concat(
            [apply_effects(m.table, c.effects, c.hardware()) for m, c in zip(measurements, cals, strict=True)]
        )
        self.measured = np.array([m.ms for m in measurements])
        sample_target = np.array([self.targets.index(m.target) for m in measurements])
        self.sample_target = sample_target
        self.layer_target = sample_target[self.table.sample]
        self.sample_peaks = np.array([c.class_peaks() for c in cals]).reshape(len(cals), -1)  # S x C
        self.bandwidth = np.array([templates[t].bandwidth for t in self.targets])
        self.is_memory = np.isin(np.array(OP_CLASSES)[self.table.op_class], MEMORY_CLASSES)
        self.overlap = np.array([overlaps(c.effects) for c in cals], dtype=bool)[self.table.sample]

    def predict(self, theta: np.ndarray) -> np.ndarray:
        """theta: targets x parameters (log)."""
        values = np.exp(theta)
        efficiency = values[self.layer_target, self.table.op_class]
        peaks = self.sample_peaks[self.table.sample, self.table.op_class]
        # class_rates, per layer: memory-bound classes stream at their own efficiency, the others at memory_efficiency.
        memory = self.is_memory
        flops = np.where(memory, np.inf, peaks * efficiency)
        streaming = self.bandwidth[self.layer_target] * np.where(
            memory, efficiency, values[self.layer_target, _N_CLASS]
        )
        times = layer_times_ms(self.table, flops, streaming, values[self.layer_target, _N_CLASS + 1], self.overlap)
        per_sample = np.bincount(self.table.sample, weights=times, minlength=len(self.measured))
        return per_sample + values[self.sample_target, _N_CLASS + 2]


def fit(
    measurements: list[Measurement],
    templates: dict[str, Calibration],
    prior: dict,
    weights: FitWeights = FitWeights(),
    start: np.ndarray | None = None,
) -> tuple[dict[str, Calibration], np.ndarray]:
    """Fit every target's calibration to its measurements (jointly, see the module doc).

    Returns the fitted calibrations and the solution vector (to warm-start a refit).
    """
    if not measurements:
        raise CalibrationError("no measurements to fit a calibration to")
    problem = _Problem(measurements, templates)
    n_targets, n_params = len(problem.targets), _N_CLASS + len(_EXTRA)
    prior_theta = _to_vector(prior)

    def residuals(x: np.ndarray) -> np.ndarray:
        shared, deviation = x[:n_params], x[n_params:].reshape(n_targets, n_params)
        predicted = problem.predict(shared + deviation)
        return np.concatenate(
            [
                np.log(predicted / problem.measured),
                weights.deviation * deviation.ravel(),
                weights.prior * (shared - prior_theta),
            ]
        )

    x0 = start if start is not None else np.concatenate([prior_theta, np.zeros(n_targets * n_params)])
    solution = least_squares(residuals, x0, method="trf", x_scale=1.0, max_nfev=400)
    shared, deviation = solution.x[:n_params], solution.x[n_params:].reshape(n_targets, n_params)
    predicted = problem.predict(shared + deviation)
    fitted = {}
    for i, target in enumerate(problem.targets):
        mine = problem.sample_target == i
        rel = np.abs(predicted[mine] / problem.measured[mine] - 1)
        fitted[target] = _from_vector(
            templates[target],
            shared + deviation[i],
            {
                "points": [m.id for m, keep in zip(measurements, mine, strict=True) if keep],
                "fit_mape_percent": round(float(rel.mean() * 100), 2) if rel.size else None,
                "weights": dataclasses.asdict(weights),
            },
        )
    return fitted, solution.x


def predict_measurements(cal_by_target: dict[str, Calibration], measurements: list[Measurement]) -> np.ndarray:
    """Each measurement's latency as its target's calibration predicts it (from its op table, if it has one)."""
    out = np.empty(len(measurements))
    for target, precision in dict.fromkeys((m.target, m.precision) for m in measurements):
        mine = [i for i, m in enumerate(measurements) if (m.target, m.precision) == (target, precision)]
        cal = at_precision(cal_by_target[target], precision)
        out[mine] = predict_ms(LayerTable.concat([measurements[i].table for i in mine]), cal, len(mine))
    return out


def leave_groups_out(
    measurements: list[Measurement],
    templates: dict[str, Calibration],
    prior: dict,
    group: Callable[[Measurement], str],
    weights: FitWeights = FitWeights(),
    progress: Callable[[int, int], None] | None = None,
) -> np.ndarray:
    """The prediction of every measurement by a fit that saw no measurement of its group.

    ``group`` maps a measurement to its group: its id (leave-one-out), its network (every board and
    input of one network leaves together) or its source. A group whose removal leaves a target
    without measurements is predicted from the shared values alone (that target's template with
    the others' fit)."""
    _, full = fit(measurements, templates, prior, weights)
    keys = [group(m) for m in measurements]
    groups = list(dict.fromkeys(keys))
    predictions = np.empty(len(measurements))
    for n, key in enumerate(groups):
        held = [i for i, k in enumerate(keys) if k == key]
        rest = [m for m, k in zip(measurements, keys, strict=True) if k != key]
        fitted, solution = fit(rest, templates, prior, weights, start=full)
        n_params = _N_CLASS + len(_EXTRA)
        for target in {measurements[i].target for i in held} - set(fitted):
            # No point of this board is left: the shared values are all the fit knows of it.
            fitted[target] = _from_vector(templates[target], solution[:n_params], {"points": []})
        predictions[held] = predict_measurements(fitted, [measurements[i] for i in held])
        if progress:
            progress(n + 1, len(groups))
    return predictions


def leave_one_out(
    measurements: list[Measurement],
    templates: dict[str, Calibration],
    prior: dict,
    weights: FitWeights = FitWeights(),
    progress: Callable[[int, int], None] | None = None,
) -> np.ndarray:
    """The prediction of every measurement by a fit that did not see it."""
    return leave_groups_out(measurements, templates, prior, lambda m: m.id, weights, progress)


def leave_one_network_out(
    measurements: list[Measurement],
    templates: dict[str, Calibration],
    prior: dict,
    weights: FitWeights = FitWeights(),
    progress: Callable[[int, int], None] | None = None,
) -> np.ndarray:
    """The prediction of every measurement by a fit that saw no point of its network (on any board, at any input)."""
    return leave_groups_out(measurements, templates, prior, lambda m: m.network or m.id, weights, progress)


def leave_one_source_out(
    measurements: list[Measurement],
    templates: dict[str, Calibration],
    prior: dict,
    weights: FitWeights = FitWeights(),
    progress: Callable[[int, int], None] | None = None,
) -> np.ndarray:
    """The prediction of every measurement by a fit that saw nothing its source published."""
    return leave_groups_out(measurements, templates, prior, lambda m: m.source or m.id, weights, progress)


# Network families, for the bias of each: a name's family is its longest matching prefix here.
_FAMILY_PREFIXES = {
    "resnet": "resnet",
    "resnext": "resnet",
    "se_resnet": "resnet",
    "fcn-resnet18": "fcn-resnet18",
    "vgg": "vgg",
    "alexnet": "alexnet",
    "squeezenet": "squeezenet",
    "mobilenet": "mobilenet",
    "shufflenet": "shufflenet",
    "fcn_r50-d8": "mmseg-r50-d8",
    "pspnet_r50-d8": "mmseg-r50-d8",
    "deeplabv3plus_r50-d8": "mmseg-r50-d8",
    "fassd": "fassd-net",
    "yolov8": "yolov8",
}


def network_family(network: str) -> str:
    """The family a published network belongs to (``resnet`` for resnet18..152, ResNeXt and SE-ResNet, ...)."""
    matches = [p for p in _FAMILY_PREFIXES if network.startswith(p)]
    return _FAMILY_PREFIXES[max(matches, key=len)] if matches else network


# ----- published Jetson measurements ------------------------------------------------------------
def published_points(checks: bool = False, fit_sources: Collection[str] = ()) -> list[dict]:
    """The published latencies of ``calibrations/published_jetson.json`` with their sources' settings:
    the points the calibrations are fitted on, or (``checks``) those kept as independent checks.

    A point's ``use`` and ``precision`` override its source's (one table may hold FP16 and FP32
    columns, and a few rows kept aside). Every point of a source in ``fit_sources`` is fitted on (an
    experiment: what fitting a source's checks would do)."""
    data = json.loads(PUBLISHED_JETSON.read_text())
    points = []
    for point in data["points"]:
        source = data["sources"][point["source"]]
        merged = {**point, **{f"source_{k}": v for k, v in source.items()}}
        merged["precision"] = point.get("precision", source["precision"])
        merged["use"] = "fit" if point["source"] in fit_sources else point.get("use", source.get("use", "fit"))
        merged["network"] = point.get("baseline", point.get("net"))
        points.append(merged)
    return [p for p in points if (p["use"] == "check") == checks]


JETSON_TIMED = "engine execute + sync, batch 1 (TensorRT; fitted on published engine timings)"


# The kernel effects the packaged Jetson calibrations are fitted with: those that lowered the
# leave-one-network-out error on the published points (benchmarks/README.md, "Kernel effects").
JETSON_EFFECTS: list[str] = ["pad8", "tile32", "concat_in_place", "winograd", "no_overlap"]
JETSON_CAL_VERSION = "published-v3"


def jetson_templates(targets: list[str], effects: list[str] | None = None) -> dict[str, Calibration]:
    """Unfitted Jetson calibrations (TensorRT FP16) for the targets, costed with ``effects`` (default JETSON_EFFECTS)."""
    chosen = list(JETSON_EFFECTS if effects is None else effects)
    return {
        t: dataclasses.replace(
            template(t, "fp16", "tensorrt", JETSON_TIMED, True, JETSON_PRIOR, f"{t}/trt-fp16/{JETSON_CAL_VERSION}"),
            effects=chosen,
        )
        for t in targets
    }


def point_network(point: dict) -> nn.Module:
    """The network a published point timed: a reference net (``net``) or one of nasseg's own
    baselines (``baseline``, with the point's ``num_classes``).

    A baseline is costed as it ran, degenerate layers included: a paper may time it at an input
    where ``check`` notes them (fassd-net-l2's DAPF rates 24 and 36 reach past the 11x22 map at
    704x1408), and its sampler would reject such a point, but the module runs.
    """
    if "baseline" in point:
        space, name = find_baseline(point["baseline"])
        return build(space.baseline(name, point["num_classes"]))
    return reference_net(point["net"])


def published_measurements(checks: bool = False, fit_sources: Collection[str] = ()) -> list[Measurement]:
    """Layer tables of the timed networks at the published points (TensorRT FP16, fused): those
    fitted on, or (``checks``) the independent checks (``fit_sources``: as ``published_points``)."""
    tables: dict[tuple[str, str, tuple[int, int], str], LayerTable] = {}
    out = []
    for point in published_points(checks, fit_sources):
        # Many points time one network at one input on several boards: trace it once per precision.
        kind = "baseline" if "baseline" in point else "net"
        precision = point["precision"]
        key = (kind, point[kind], tuple(point["input_hw"]), precision)
        if key not in tables:
            probe = template("jetson-nano", precision, "tensorrt", JETSON_TIMED, True, JETSON_PRIOR, "probe")
            tables[key] = layer_table(point_network(point), key[2], probe)[1]
        out.append(
            Measurement(
                point["id"],
                point["target"],
                tables[key],
                float(point["ms"]),
                "" if precision == "fp16" else precision,
                point["network"],
                point["source"],
            )
        )
    return out


def fit_published_jetson(weights: FitWeights = FitWeights()) -> dict[str, Calibration]:
    """The packaged Jetson calibrations: one joint fit over every published point."""
    measurements = published_measurements()
    targets = list(dict.fromkeys(m.target for m in measurements))
    fitted, _ = fit(measurements, jetson_templates(targets), JETSON_PRIOR, weights)
    return fitted


# ----- fitting from the user's own measurements -------------------------------------------------
Case = tuple[str, nn.Module, tuple[int, int]]  # name, network, input H x W
MeasureFn = Callable[[str, nn.Module, tuple[int, int]], LatencyResult]


def measure_and_fit(
    target: str,
    cases: list[Case],
    measure: MeasureFn,
    *,
    precision: str,
    runtime: str,
    cal_id: str,
    op_table: bool = False,
    rounds: int = 1,
    progress: Callable[[str], None] | None = None,
) -> tuple[Calibration, list[Measurement]]:
    """Measure every case (``measure`` returns a measured LatencyResult), then fit a calibration
    for ``target``. TensorRT runtimes fuse element-wise ops into convolutions; others do not.
    With ``rounds`` > 1 the cases are measured in that many passes (``timing.in_passes``) and each
    keeps its median.
    With ``op_table`` (host-cpu only: it runs the cases here), every layer of every case is also timed
    inside its network in each pass, and the calibration gets an op table of them
    (``nasseg.latency.predict.optable``) that predicts every layer in place of the roofline.
    The calibration records the device, timing scope and cases."""
    if rounds < 1:
        raise ValueError(f"rounds must be at least 1, not {rounds}")
    if op_table and target != "host-cpu":
        raise CalibrationError(f"an op table times layers on this CPU: it calibrates host-cpu, not {target}")
    fuse = runtime in ("tensorrt", "torch2trt")
    prior = JETSON_PRIOR if get_target(target).is_jetson else HOST_PRIOR
    base = template(target, precision, runtime, "", fuse, prior, cal_id)
    timed: list[list[LatencyResult]] = [[] for _ in cases]
    layer_ms: list[list[np.ndarray]] = [[] for _ in cases]
    layer_rows: dict[int, LayerTable] = {}
    for _, i in in_passes(len(cases), rounds):
        name, model, input_hw = cases[i]
        timed[i].append(measure(name, model, input_hw))
        if op_table:
            layers, ms = time_layers(model, input_hw)
            layer_ms[i].append(ms)
            layer_rows.setdefault(i, LayerTable.from_layers(layers))
        if progress:
            progress(name)
    measurements = [
        Measurement(
            name, target, layer_table(model, input_hw, base)[1], float(np.median([r.median_ms for r in results]))
        )
        for (name, model, input_hw), results in zip(cases, timed, strict=True)
    ]
    first = timed[0][0]
    base = dataclasses.replace(base, timed=first.timed or "")
    fitted, _ = fit(measurements, {target: base}, prior)
    cal = fitted[target]
    if op_table:
        table = OpTable.from_timings(
            [
                (layer_rows[i], np.median(ms, axis=0), m.ms)
                for i, (ms, m) in enumerate(zip(layer_ms, measurements, strict=True))
            ],
            cal.fixed_overhead_ms,
        )
        cal = dataclasses.replace(cal, op_table=table.to_dict())
    provenance = {
        "device": first.device,
        "backend": first.backend,
        "power_mode": first.power_mode,
        "versions": first.versions,
        "rounds": rounds,
        "measured_ms": [m.ms for m in measurements],
    }
    return dataclasses.replace(cal, fitted_on={**cal.fitted_on, **provenance}), measurements


Architecture = tuple[str, ArchConfig, tuple[int, int]]  # name, config, the space's search input


def _search_input(space: SearchSpace) -> tuple[int, int]:
    return int(space.spec.search_input[0]), int(space.spec.search_input[1])


def baseline_architectures() -> list[Architecture]:
    """Every baseline of every search space that has landed."""
    return [(name, space.baseline(name), _search_input(space)) for space in all_spaces() for name in space.baselines]


def sampled_architectures(per_space: int, seed: int = 0, spaces: list[SearchSpace] | None = None) -> list[Architecture]:
    """``per_space`` distinct feasible random samples of every search space (fewer where a space
    rejects most of its samples)."""
    out: list[Architecture] = []
    for space in all_spaces() if spaces is None else spaces:
        drawn = space.sample_feasible(per_space, seed)
        out += [(f"{space.name}-{c.arch_hash()}", c, _search_input(space)) for c in drawn.configs]
    return out


def write_published_calibrations(folder: Path = CALIBRATIONS_DIR) -> list[Path]:
    """Refit the packaged Jetson calibrations from the published points and write them."""
    return [cal.save(folder / f"{target}.json") for target, cal in fit_published_jetson().items()]
