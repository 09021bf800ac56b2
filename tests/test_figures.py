"""The figures README.md and docs/ quote are those of the stored results under benchmarks/results/.

Each test reads a stored result file, computes a figure as the benchmark's report does (with the
report's own functions), formats it as the text quotes it, and finds that text in the document with the
command that prints it again close beside it. A changed result file, a changed sentence or a command
no longer named beside its figure fails here. Nothing is trained, timed or fitted.
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from scipy.stats import kendalltau, spearmanr

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

import dashboard_render
import explore_speed
import latency_accuracy
import proxy_fidelity
import search_efficiency

from nasseg.latency.predict.calibration import find_calibration
from nasseg.latency.predict.generalisation import Summary, by
from nasseg.search.proxy import DEFAULT_PROXY, get_proxy

BESIDE = 700  # characters: how close to its figure the command that prints it again must be named


def text(document: str) -> str:
    """The document with its line breaks and runs of spaces made single spaces, as a reader reads it."""
    return " ".join((ROOT / document).read_text().split())


def quoted(document: str, figure: str, command: str) -> None:
    """``figure`` is in ``document``, and wherever it is, ``command`` is named within BESIDE characters."""
    body = text(document)
    at = body.find(figure)
    assert at >= 0, f"{document} does not say {figure!r} (the stored results give that)"
    while at >= 0:  # wherever it is said
        near = body[max(0, at - BESIDE) : at + len(figure) + BESIDE]
        assert command in near, f"{document}: {figure!r} without `{command}` beside it"
        at = body.find(figure, at + 1)


def pct(x: float, digits: int = 1) -> str:
    return f"{100 * x:.{digits}f} %"


def span(values: list[float], fmt: Callable[[float], str]) -> str:
    low, high = fmt(min(values)), fmt(max(values))
    return low if low == high else f"{low}-{high}"


# ----- the latency predictor on the Jetsons --------------------------------------------------------
ACCURACY_REPORT = "python benchmarks/latency_accuracy.py --report"


def test_the_jetson_accuracy_quoted_is_that_of_the_stored_evaluation() -> None:
    _, rows = latency_accuracy.stored_jetson_rows()
    fitted = [r for r in rows if not r.check]
    lono, loo, loso = (Summary.of(fitted, p) for p in ("lono", "loo", "loso"))
    boards = {t: Summary.of(g, "lono").mape for t, g in by(fitted, lambda r: r.target).items()}
    worst_board = max(boards, key=boards.__getitem__)
    assert worst_board == "jetson-agx-xavier"  # the text names it
    others = [m for t, m in boards.items() if t != worst_board]
    families = {
        f: (Summary.of(g, "lono").bias, all(r.check for r in g)) for f, g in by(rows, lambda r: r.family).items()
    }
    fitted_bias = {f: b for f, (b, check_only) in families.items() if not check_only}
    widest = max(fitted_bias, key=lambda f: abs(fitted_bias[f]))
    assert widest == "shufflenet" and abs(fitted_bias[widest]) < 0.15  # "every fitted family within ±15 %"
    checks = {r.network: r.ratio("lono") for r in rows if r.check}
    fassd = " / ".join(f"{checks[n]:.2f}" for n in ("fassd-net", "fassd-net-l1", "fassd-net-l2"))

    quoted("docs/latency.md", f"fitted on {len(fitted)} published TensorRT timings", ACCURACY_REPORT)
    quoted(
        "docs/latency.md",
        f"MAPE {pct(lono.mape)} ({pct(boards[worst_board])} on the AGX Xavier; leave-one-out "
        f"{pct(loo.mape)}, leave-one-source-out {pct(loso.mape)})",
        ACCURACY_REPORT,
    )
    quoted(
        "docs/latency.md",
        f"**MAPE {pct(lono.mape)}** overall, {span(others, lambda m: f'{100 * m:.1f}')} % per "
        f"board except the AGX Xavier ({pct(boards[worst_board])}), Kendall tau {lono.kendall_tau:.2f}; every "
        f"fitted family's mean bias within ±15 % (ShuffleNet {100 * fitted_bias[widest]:+.0f} %)",
        ACCURACY_REPORT,
    )
    quoted("docs/latency.md", f"gives {pct(loo.mape)}; leave-one-source-out {pct(loso.mape)}", ACCURACY_REPORT)
    quoted("docs/latency.md", f"{fassd} of the published time", ACCURACY_REPORT)
    quoted(
        "docs/latency.md",
        f"DeepLabV3+ R50-D8 on the TX2 (mmdeploy, FP32) at {checks['deeplabv3plus_r50-d8']:.2f}",
        ACCURACY_REPORT,
    )
    quoted("docs/latency.md", f"FASSD-Net's family bias is {100 * families['fassd-net'][0]:+.0f} %", ACCURACY_REPORT)


TRTUTILS_FITTED = latency_accuracy.JETSON_RESULTS.with_name("jetson_generalisation_trtutils_fitted.json")
TRTUTILS_REPORT = (
    "python benchmarks/latency_accuracy.py --report --jetson-results "
    "benchmarks/results/latency_accuracy/jetson_generalisation_trtutils_fitted.json"
)


def test_the_trtutils_fitting_experiment_quoted_is_that_of_its_stored_evaluation() -> None:
    """The rejected experiment (trtutils' YOLOv8 points fitted) against the stored evaluation with them as checks."""
    _, shipped = latency_accuracy.stored_jetson_rows()
    _, tried = latency_accuracy.stored_jetson_rows(TRTUTILS_FITTED)
    fitted_before = [r for r in shipped if not r.check]
    same = {r.id for r in fitted_before}
    fitted_after = [r for r in tried if not r.check]
    assert {r.id for r in fitted_after} - same == {r.id for r in shipped if r.source == "trtutils"}
    old_after = [r for r in fitted_after if r.id in same]
    lono = (Summary.of(fitted_before, "lono").mape, Summary.of(fitted_after, "lono").mape)
    quoted(
        "benchmarks/README.md", f"| LONO MAPE, all fitted points | {pct(lono[0])} | {pct(lono[1])} |", TRTUTILS_REPORT
    )
    quoted(
        "benchmarks/README.md",
        f"| LONO MAPE, the same 95 points | {pct(lono[0], 2)} | {pct(Summary.of(old_after, 'lono').mape, 2)} |",
        TRTUTILS_REPORT,
    )
    yolo_check = Summary.of([r for r in shipped if r.source == "trtutils"], "lono")
    quoted("benchmarks/README.md", f"| LONO bias, yolov8 | {100 * yolo_check.bias:+.0f} % (check) |", TRTUTILS_REPORT)
    ratios = {r.network: r.ratio("lono") for r in tried if r.check and r.family == "fassd-net"}
    fassd = " / ".join(f"{ratios[n]:.2f}" for n in ("fassd-net", "fassd-net-l1", "fassd-net-l2"))
    quoted(
        "benchmarks/README.md", f"TX2 checks (family bias) | 0.92 / 0.86 / 0.64 (-20 %) | {fassd} (", TRTUTILS_REPORT
    )
    # The fit's constants, as stored with the evaluation (and printed by its report).
    constants = json.loads(TRTUTILS_FITTED.read_text())["full_fit"]

    shipped_constants = {t: find_calibration(t).efficiency for t in constants}  # what the packaged v3 says

    def spread(fits: dict[str, dict[str, float]], op: str, digits: int) -> str:
        values = [board[op] for board in fits.values()]
        return f"{min(values):.{digits}f}-{max(values):.{digits}f}"

    def moved(op: str, digits: int) -> str:
        return f"{spread(shipped_constants, op, digits)} -> {spread(constants, op, digits)}"

    assert spread(shipped_constants, "resize", 2) == "0.50-0.50"  # "from its prior 0.50": no point moves it
    quoted("benchmarks/README.md", f"from its prior 0.50 to {spread(constants, 'resize', 3)} of the", TRTUTILS_REPORT)
    quoted("benchmarks/README.md", f"`conv_depthwise` rose {moved('conv_depthwise', 2)}", TRTUTILS_REPORT)
    quoted("benchmarks/README.md", f"`reduce` fell {moved('reduce', 2)}", TRTUTILS_REPORT)
    orin = [f"{fits['jetson-orin-nano']['conv']:.2f}" for fits in (shipped_constants, constants)]
    quoted("benchmarks/README.md", f"on the Orin Nano `conv` rose {' -> '.join(orin)}", TRTUTILS_REPORT)


# ----- the latency predictor on the host CPU (replayed from the stored measurements) ---------------
HOST = latency_accuracy.MEASUREMENTS.parent
OP_TABLE = "predictor + op table (the calibration architectures' layers, timed inside them)"
ROOFLINE = "predictor, calibrated on the calibration architectures"
OWN_LAYERS = "(not a prediction) the check networks' own layers timed inside them, x the op table's scale"
AGAIN = "(not a prediction) the same networks measured again (5 more passes), after all the rest"


def whole(x: float) -> str:
    return f"{100 * x:.0f} %"


def as_measured(store: str, check_seed: int) -> dict:
    """The as-measured table of a replayed host store, and a check that it is that store's replay with
    the text's protocol: 30 calibration architectures per space and 40 ESPNet, checked on ``check_seed``'s."""
    summary = json.loads(latency_accuracy.host_summary_path(HOST / store).read_text())
    assert summary["store"] == store and (HOST / store).is_file()
    assert summary["cpu"] == json.loads((HOST / store).read_text())["cpu"]
    assert f"--check-seed {check_seed} " in summary["command"]
    table = summary["tables"][0]
    per_space = {name: cell["calibration"] for name, cell in table["cross_validation"].items() if name != "all"}
    assert per_space == {name: 40 if name == "espnet" else 30 for name in per_space} and len(per_space) == 5
    return table


def test_the_host_accuracy_quoted_is_that_of_the_replayed_stores() -> None:
    first = as_measured("host_measurements_intel-xeon-model207-freed.json", check_seed=2)
    second = as_measured("host_measurements_intel-xeon-model207-check3.json", check_seed=3)
    op, roofline = first["rows"][OP_TABLE], first["rows"][ROOFLINE]
    again = second["rows"][OP_TABLE]

    def trio(row: dict) -> str:
        return f"{whole(row['within_10'])} / {pct(row['mape'])} / {row['kendall_tau']:.3f}"

    def families(table: dict) -> str:
        return span([f["with op table"]["within_10"] for f in table["families"].values()], lambda x: f"{100 * x:.0f}")

    headline = f"**{whole(op['within_10'])} within ±10 %, MAPE {pct(op['mape'])}, Kendall tau {op['kendall_tau']:.3f}**"
    quoted(
        "docs/latency.md",
        f"fitted on {first['calibration']} sampled architectures (30 per space, 40 ESPNet) and "
        f"checked on {first['check']} others",
        ACCURACY_REPORT,
    )
    quoted(
        "docs/latency.md",
        f"{headline} (Intel Xeon model 207, 2026-12-06; roofline {trio(roofline)}), and "
        f"{trio(again)} on a second check set of {second['check']}",
        ACCURACY_REPORT,
    )
    quoted(
        "docs/latency.md",
        f"Per family {families(first)} % on the first set, {families(second)} % on the second",
        ACCURACY_REPORT,
    )
    layers = f"{first['op_table_layers']:,}".replace(",", " ")  # the text's thousands separator
    quoted(
        "docs/latency.md",
        f"{first['calibration']} sampled calibration architectures, 30 per space and 40 ESPNet, "
        f"their {layers} layers timed inside them; {first['check']} other sampled architectures",
        ACCURACY_REPORT,
    )
    quoted(
        "docs/latency.md",
        f"{headline}, against the roofline's {trio(roofline)}; on a second check set drawn with "
        f"another seed, {trio(again)}",
        ACCURACY_REPORT,
    )
    own, remeasured = first["rows"][OWN_LAYERS], first["rows"][AGAIN]
    quoted(
        "docs/latency.md",
        f"summed and scaled, reach {whole(own['within_10'])} / {pct(own['mape'])}, and the "
        f"instrument agrees with itself (the check networks measured again) {whole(remeasured['within_10'])} / "
        f"{pct(remeasured['mape'])}",
        ACCURACY_REPORT,
    )
    worst = first["families"]
    quoted(
        "docs/latency.md",
        f"(Pyramid ShuffleNet's wide upsamplings, "
        f"{whole(worst['pyramid_shufflenet']['with op table']['within_10'])}; ESPNet's 3x3 convolutions around "
        f"oneDNN's kernel switches, {whole(worst['espnet']['with op table']['within_10'])})",
        ACCURACY_REPORT,
    )


# ----- the proxy's fidelity (docs/training.md, README.md) ------------------------------------------
PROXY_RUNS = ROOT / "benchmarks" / "results" / "proxy_fidelity"
PROXY_REPORT = "python benchmarks/proxy_fidelity.py --report"


def test_the_proxy_fidelity_quoted_is_that_of_the_stored_runs() -> None:
    result = proxy_fidelity.summary(PROXY_RUNS, seeds=1, max_cost=1.5)
    judged = {c["name"]: c for c in result["candidates"]}
    short = judged["short"]
    long = {name: m["miou"] for name, m in proxy_fidelity._load(PROXY_RUNS, "long").items()}
    proxy = {name: m["miou"] for name, m in proxy_fidelity._load(PROXY_RUNS, "short").items() if name in long}
    names = sorted(proxy)
    assert len(names) == short["architectures"] == result["reference"]["architectures"]
    pairs = ([proxy[n] for n in names], [long[n] for n in names])
    assert max(kendalltau(*pairs).pvalue, spearmanr(*pairs).pvalue) < 0.01  # "(p < 0.01)"
    baselines = sum(name in proxy_fidelity.BASELINES for name in names)
    tau = short["tau_by_space"]
    fassd_long = [m for name, m in long.items() if name.startswith("fassd")]
    quoted(
        "docs/training.md",
        f"over {len(names)} architectures ({baselines} baselines, {len(names) - baselines} "
        f"samples) against one long seed: `short` reaches Kendall tau {short['tau']:.2f}, Spearman rho "
        f"{short['rho']:.2f} (p < 0.01); by space, tau {tau['espnet']:.2f} (ESPNet), {tau['ejpnet']:.2f} "
        f"(EJPNet), {tau['fassd']:.2f} (FASSD-Net, whose long-run mIoUs lie within "
        f"{math.ceil(100 * (max(fassd_long) - min(fassd_long)))} points)",
        PROXY_REPORT,
    )

    noise = result["short_seed_noise"]
    moved = f"median {100 * noise['median_miou_change']:.1f} points"
    quoted(
        "docs/training.md",
        f"moves by a {moved} (up to {100 * noise['max_miou_change']:.1f}), and the two seeds "
        f"rank the {noise['architectures']} architectures alike at tau {noise['kendall_tau']:.2f} only",
        PROXY_REPORT,
    )
    # The README's advice rounds the same measured noise out to whole points on either side.
    quoted(
        "README.md",
        f"read differences of {math.floor(100 * noise['median_miou_change'])}-"
        f"{math.ceil(100 * noise['median_miou_change'])} points as ties",
        PROXY_REPORT,
    )
    quoted("README.md", f"moves by a {moved}", PROXY_REPORT)

    def alike(candidate: dict) -> str:
        return f"{candidate['within_space_alike']:.0%}".replace("%", " %")

    stretched, smaller, two = judged["short-600"], judged["short-600-b4"], judged["short-2seeds"]
    same = stretched["short_on_the_same"]
    quoted(
        "docs/training.md",
        f"600 steps (tau {stretched['tau']:.2f} against `short`'s {same['tau']:.2f} on the same "
        f"{stretched['architectures']}, but {alike(stretched)} of same-space pairs alike against {alike(same)}, "
        f"at {stretched['cost_ratio']:.0f}x the cost)",
        PROXY_REPORT,
    )
    quoted(
        "docs/training.md",
        f"(tau {smaller['tau']:.2f} against {smaller['short_on_the_same']['tau']:.2f} on the "
        f"same {smaller['architectures']} architectures)",
        PROXY_REPORT,
    )
    quoted(
        "docs/training.md",
        f"the mean of two seeds (tau {two['tau']:.2f}, {alike(two)} of same-space pairs, at "
        f"{two['cost_ratio']:.0f}x the cost)",
        PROXY_REPORT,
    )
    weighted = [judged[f"short+{w:g}z(synflow)"] for w in proxy_fidelity.PROXY_WEIGHTS]
    with_ci = [f"{c['tau']:.2f} ({c['tau_ci'][0]:.2f} to {c['tau_ci'][1]:.2f})" for c in weighted[2:]]
    quoted(
        "benchmarks/README.md",
        f"tau {weighted[0]['tau']:.2f}, {weighted[1]['tau']:.2f}, {', '.join(with_ci[:-1])} and {with_ci[-1]}",
        PROXY_REPORT,
    )
    others = [c for c in result["candidates"] if c["name"] not in TABLE_LABELS]
    quoted(
        "benchmarks/README.md",
        f"({len(result['candidates']) - len(others)} of the report's {len(result['candidates'])} candidates; "
        f"the others reach tau {max(c['tau'] for c in others):.2f} at most",
        PROXY_REPORT,
    )
    candidates_table(result, PROXY_REPORT)


# How benchmarks/README.md names the candidates its tables show, in the report's columns; the row of the
# search's default says so.
TABLE_NAMES = {
    "short+0.04z(synflow)": "`short` + 0.04 z(synflow)",
    "short+synflow": "`short` + synflow, rank mean (not per trial)",
    "short-600": "`short-600`",
    "short+0.08z(synflow)": "`short` + 0.08 z(synflow)",
    "short-eval1+0.04z(synflow)": "`short-eval1` + 0.04 z(synflow)",
    "short-ema0.99-loss": "validation loss of the moving average",
    "short-2seeds": "mean of two `short` seeds",
    "short-eval1": "`short-eval1` (evaluated at 360x480)",
    "short-last2": "mean of `short`'s last two evaluations",
    "short": "`short`",
    "short-extrapolated": "`short` carried on (learning curve)",
    "synflow": "synflow alone",
}
TABLE_LABELS = {
    name: label + (" (**the search's default**)" if name == proxy_fidelity.search_default() else "")
    for name, label in TABLE_NAMES.items()
}
TABLE_SPACES = ("espnet", "ejpnet", "fassd", "jetseg", "pyramid_shufflenet")


def candidates_table(result: dict, command: str) -> None:
    """Every row of a reading's table, and its cross-validation, as the report gives them."""

    def value(x: float | None) -> str:
        return "-" if x is None or math.isnan(x) else f"{x:.2f}"

    for c in result["candidates"]:
        if c["name"] in TABLE_LABELS:
            low, high = c["tau_ci"]
            spaces = " / ".join(value(c["tau_by_space"].get(s)) for s in TABLE_SPACES)
            quoted(
                "benchmarks/README.md",
                f"| {TABLE_LABELS[c['name']]} | {c['architectures']} | {value(c['tau'])} ({value(low)} to "
                f"{value(high)}) | {value(c['rho'])} | {pct(c['within_space_alike'], 0)} of {c['within_space_pairs']} "
                f"| {spaces} | {c['cost_ratio']:.2f}x |",
                command,
            )
    cv = result["cross_validation"]
    chosen = ", ".join(f"`{name}` {times}" for name, times in list(cv["chosen"].items())[:3])
    quoted("benchmarks/README.md", f"chosen {chosen} times", command)
    quoted("benchmarks/README.md", f"held-out tau {cv['held_out_tau']:.2f} (`{command}`)", command)


PROXY_REPORT_2 = "python benchmarks/proxy_fidelity.py --report --reference-seeds 2"


def test_the_default_proxy_quoted_is_that_of_the_two_seed_reference() -> None:
    result = proxy_fidelity.summary(PROXY_RUNS, seeds=2, max_cost=1.5)
    judged = {c["name"]: c for c in result["candidates"]}
    default, short = judged[result["default"]], judged["short"]
    assert result["winner"] == result["default"]
    low, high = default["tau_ci"]
    reached = (
        f"reaches tau {default['tau']:.2f} (95 % interval {low:.2f} to {high:.2f}) over "
        f"{result['reference']['architectures']} architectures where `short` alone reaches {short['tau']:.2f}"
    )
    for document in ("README.md", "docs/training.md"):
        quoted(document, reached, PROXY_REPORT_2)
    quoted(
        "README.md",
        f"same-space pairs ordered alike {pct(default['within_space_alike'], 0)} (`short`: "
        f"{pct(short['within_space_alike'], 0)})",
        PROXY_REPORT_2,
    )
    quoted(
        "README.md",
        f"The two long seeds agree with each other at tau {result['reference_seed_tau']:.2f}",
        PROXY_REPORT_2,
    )
    whole = judged["short-eval1"]
    quoted(
        "README.md",
        f"(`--schedule short-eval1 --proxy miou`, {whole['cost_ratio']:.2f}x the time) orders the most same-space "
        f"pairs alike, {pct(whole['within_space_alike'], 0)}, but ranks worse overall (tau {whole['tau']:.2f})",
        PROXY_REPORT_2,
    )
    quoted("README.md", f"costs {round(100 * (default['cost_ratio'] - 1))} % more per trial", PROXY_REPORT_2)
    quoted("docs/search.md", f"for {round(100 * (default['cost_ratio'] - 1))} % more time per trial", PROXY_REPORT_2)
    z = result["default_standardisation"]
    weight = get_proxy(DEFAULT_PROXY).weight
    quoted(
        "docs/search.md",
        f"`score = mIoU + {weight:g} (synflow - {z['mean']:.3f}) / {z['spread']:.3f}`",
        PROXY_REPORT_2,
    )
    noise = result["short_seed_noise"]["median_miou_change"]  # of the short runs, whatever the reference
    quoted("docs/search.md", f"the schedule plus {weight:g} per standard deviation", PROXY_REPORT_2)
    quoted(
        "docs/search.md",
        f"synflow weighs as {100 * weight:g} mIoU points, against a median {100 * noise:.1f} points",
        PROXY_REPORT_2,
    )
    quoted(
        "benchmarks/README.md",
        f"mean {z['mean']:.3f}, spread {z['spread']:.3f} over {z['architectures']}",
        PROXY_REPORT,
    )
    quoted("benchmarks/README.md", f"agree at tau {result['reference_seed_tau']:.2f}", PROXY_REPORT_2)
    candidates_table(result, PROXY_REPORT_2)
    training_pass(judged, result["cross_validation"], default)


def training_pass(judged: dict[str, dict], cross_validation: dict, default: dict) -> None:
    """benchmarks/README.md's reading of the --proxy-ema pass against the two-seed reference."""

    def reading(name: str) -> str:
        return f"{judged[name]['tau']:.2f} ({pct(judged[name]['within_space_alike'], 0)})"

    quoted(
        "benchmarks/README.md",
        f"against `short`'s {reading('short')}: the moving average itself {reading('short-ema0.99')}, at full scale "
        f"{reading('short-ema0.99-eval1')}, its validation loss {reading('short-ema0.99-loss')}; `short` trained "
        f"again (`short-rerun`) {reading('short-rerun')}, its validation loss {reading('short-loss')}, its mIoU at "
        f"full scale (`short-eval1`) {reading('short-eval1')}",
        PROXY_REPORT_2,
    )
    whole, short = judged["short-eval1"], judged["short"]
    low, high = whole["within_space_alike_ci"]
    assert whole["within_space_alike"] == max(c["within_space_alike"] for c in judged.values())
    quoted(
        "benchmarks/README.md",
        f"orders the most same-space pairs alike of all candidates, {pct(whole['within_space_alike'], 0)} of "
        f"{whole['within_space_pairs']} (95 % interval {pct(low, 0)} to {pct(high, 0)}), against "
        f"{pct(short['within_space_alike'], 0)} for `short` and {pct(default['within_space_alike'], 0)} for the "
        f"default, at {whole['cost_ratio']:.2f}x the cost",
        PROXY_REPORT_2,
    )
    more = round((whole["within_space_alike"] - short["within_space_alike"]) * whole["within_space_pairs"])
    assert (
        whole["within_space_pairs"] == short["within_space_pairs"] and more == 4 and low < short["within_space_alike"]
    )
    quoted(
        "benchmarks/README.md",
        f"its overall tau, {whole['tau']:.2f}, is below the default's {default['tau']:.2f}",
        PROXY_REPORT_2,
    )
    summed = judged["short-eval1+0.04z(synflow)"]
    quoted(
        "benchmarks/README.md",
        f"Its sum with synflow reaches {summed['tau']:.2f} and {pct(summed['within_space_alike'], 0)}",
        PROXY_REPORT_2,
    )
    quoted(
        "benchmarks/README.md",
        f"(held-out tau {cross_validation['held_out_tau']:.2f} with the {len(judged)} candidates)",
        PROXY_REPORT_2,
    )
    quoted(
        "benchmarks/README.md",
        f"the best overall tau is the default's {default['tau']:.2f}, the best same-space share `short-eval1`'s "
        f"{pct(whole['within_space_alike'], 0)}",
        PROXY_REPORT_2,
    )


# ----- the search (docs/search.md) -----------------------------------------------------------------
def test_the_early_stopping_replay_quoted_is_that_of_the_stored_result() -> None:
    replay = json.loads((Path(search_efficiency.RESULTS) / "early-stopping-replay-espnet-nano.json").read_text())
    assert replay["lower"] == replay["upper"]  # both bounds give the one answer the text quotes
    lower = replay["lower"]
    quoted(
        "docs/search.md",
        f"it would have saved {lower['train_time_saved']:.0%} of the sampled trials' training and "
        f"stopped {len(lower['front_members_lost'])} of the {len(replay['front'])} front members".replace("%", " %"),
        "python benchmarks/search_efficiency.py report",
    )


# ----- the dashboard and the landscape (docs/dashboards.md) -----------------------------------------
def test_the_dashboard_speed_quoted_is_that_of_the_stored_run() -> None:
    stored = json.loads((dashboard_render.RESULTS / "render-1000x1-browser.json").read_text())
    first, *later = (r["total_s"] for r in stored["repeats"])
    assert stored["trials_per_study"] == 1000 and stored["machine"].endswith("at the end)")
    quoted(
        "docs/dashboards.md",
        f"A page of 1,000 trials is written in {span(later, lambda s: f'{s:.1f}')} s "
        f"({first:.1f} s the first time in a process)",
        "python benchmarks/dashboard_render.py report",
    )


def test_the_newcomer_path_quoted_is_that_of_the_stored_run() -> None:
    (stored,) = sorted((ROOT / "benchmarks" / "results" / "newcomer_path").glob("*.json"))
    run = json.loads(stored.read_text())
    step = {s["step"]: s for s in run["steps"]}
    cpu = sum(s["cpu_s"] for s in run["steps"])
    loads = [load for s in run["steps"] for load in s["load_before"][:1]]
    assert min(loads) >= 3 and max(loads) < 9  # "the load average between 3 and 9"
    quoted(
        "benchmarks/README.md",
        f"a fresh clone to an open dashboard in **{run['total_s']:.1f} s** ({round(run['total_s'] / 60)} minutes), "
        f"of which the install took {step['install']['wall_s']:.1f} s",
        "python benchmarks/newcomer_path.py report",
    )
    quoted(
        "benchmarks/README.md",
        f"{step['search']['wall_s']:.1f} s wall, {step['search']['cpu_s']:.1f} s of CPU. The dashboard was written in "
        f"{step['dashboard']['wall_s']:.1f} s and drawn, {len(run['page']['plots'])} plots, with no JavaScript "
        f"error. The CPU seconds ({cpu:.1f} in all)",
        "python benchmarks/newcomer_path.py report",
    )
    assert not run["page"]["javascript_errors"]


def test_the_suite_memory_quoted_is_that_of_the_stored_runs() -> None:
    stored = ROOT / "benchmarks" / "results" / "suite_memory"
    before, after = (json.loads((stored / f"{name}.json").read_text()) for name in ("before", "after"))
    subset = json.loads((stored / "zoo-jetseg-after.json").read_text())
    report = "python benchmarks/suite_memory.py report"
    worst, later = before["top_held"][0], after["top_held"][0]
    assert worst["nodeid"].endswith("[jetseg-workstation-512x1024]") and "cityscapes" in later["nodeid"]
    quoted("benchmarks/README.md", f"a peak of **{before['time_v']['max_rss_mib']:.0f} MiB**", report)
    quoted(
        "benchmarks/README.md",
        f"held {worst['held']:.0f} MiB on top of {worst['rss_before']:.0f} MiB already resident",
        report,
    )
    quoted("benchmarks/README.md", f"peak at {subset['time_v']['max_rss_mib']:.0f} MiB", report)
    quoted("benchmarks/README.md", f"a peak of **{after['time_v']['max_rss_mib']:.0f} MiB**", report)
    quoted("benchmarks/README.md", f"({later['held']:.0f} MiB held while it runs)", report)
    quoted("README.md", f"The tests peak at {after['time_v']['max_rss_mib']:.0f} MiB", report)


def test_the_landscape_speeds_quoted_are_those_of_the_stored_runs() -> None:
    runs = [json.loads(p.read_text()) for p in sorted(explore_speed.RESULTS.glob("*.json"))]
    runs = [r for r in runs if r["what"].startswith("explore()") and r["workers"] == 2 and r["samples"] == 1000]
    idle = {r["space"]: r["wall_s"] for r in runs if r["load_average_before"][0] < 2.5}
    shared = {r["space"]: r["wall_s"] for r in runs if r["load_average_before"][0] >= 4}
    assert len(idle) == len(shared) == 5 and len(runs) == 10  # every space once idle, once shared
    fastest, slowest = min(idle, key=idle.__getitem__), max(idle, key=idle.__getitem__)
    assert (fastest, slowest) == ("espnet", "ejpnet")  # the text names them
    others = [s for name, s in shared.items() if name != "espnet"]
    quoted(
        "docs/dashboards.md",
        f"take {idle[fastest]:.0f} s (ESPNet) to {idle[slowest]:.0f} s (EJPNet) on the idle "
        f"2-core development machine; shared with a running search, {shared['espnet']:.0f} s and "
        f"{span(others, lambda s: f'{s:.0f}')} s",
        "python benchmarks/explore_speed.py report",
    )


# ----- the commands named beside the figures print them again ---------------------------------------
@pytest.mark.parametrize(
    "module, argv, printed",
    [
        (latency_accuracy, ["--report"], "| all | 95 | **10.5%** | 27.0% | 9.4% |"),
        (
            latency_accuracy,
            ["--report", "--jetson-results", str(TRTUTILS_FITTED)],
            "| all | 122 | **11.3%** | 20.0% | 9.9% |",
        ),
        (latency_accuracy, ["--report"], "timed inside them) | 92% | 3.8% | 0.971 | 0.998 |"),
        (proxy_fidelity, ["--report"], "moves by a median 2.4 points between them (at most 9.5)"),
        (
            proxy_fidelity,
            ["--report", "--reference-seeds", "2"],
            "the default standardises synflow by its mean 80.649 and spread 29.733 over the 24 architectures",
        ),
        (search_efficiency, ["report"], "training time saved 60.3%, front members lost 1 of 4"),
        (dashboard_render, ["report"], "total 3.91 s"),
        (explore_speed, ["report"], "in 53.47 s wall on 2 process(es)"),
    ],
)
def test_each_named_command_prints_its_figures_again(module, argv, printed, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "argv", [f"{module.__name__}.py", *argv])
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        module.main()
    assert printed in out.getvalue()


def test_a_figure_is_found_only_with_its_command_beside_it() -> None:
    with pytest.raises(AssertionError, match="does not say"):
        quoted("docs/training.md", "Kendall tau 0.99", PROXY_REPORT)
    with pytest.raises(AssertionError, match="without"):
        quoted("docs/training.md", "Kendall tau", "python benchmarks/no_such.py report")
