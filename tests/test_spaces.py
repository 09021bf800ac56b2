"""Search-space files: malformed input gives one clear error naming the file, the entry and what is allowed."""

from __future__ import annotations

import re
import textwrap
from pathlib import Path

import optuna
import pytest
from typer.testing import CliRunner

from nasseg.cli import app
from nasseg.errors import ConfigError, InfeasibleArchitecture, SpaceFileError
from nasseg.models import Findings, check
from nasseg.models.fassd import FASSDConfig, feature_sizes
from nasseg.spaces import SPACES_DIR, SearchSpace, all_spaces, find_baseline, load_space

GOOD = """
family: espnet
doc: a small test space
search_input: [64, 96]
parameters:
  variant: {type: categorical, choices: [c, full]}
  alpha3: {type: int, low: 1, high: 8}
  rates: {type: categorical, choices: [[1, 2, 4], [1, 3, 9]], when: {variant: full}}
  scale: {type: float, low: 0.5, high: 2.0, step: 0.5}
baselines:
  tiny:
    doc: a point
    num_classes: 5
    params: {variant: full, alpha3: 3, rates: [1, 3, 9], scale: 1.5}
    published: {source: "nowhere, Table 0", params: 1000}
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "space.yaml"
    path.write_text(textwrap.dedent(text))
    return path


def load_error(tmp_path: Path, text: str) -> str:
    with pytest.raises(SpaceFileError) as exc:
        SearchSpace.from_file(write(tmp_path, text))
    message = str(exc.value)
    assert "space.yaml" in message  # every error names the file
    return message


def test_good_file_loads_and_baseline_round_trips(tmp_path):
    space = SearchSpace.from_file(write(tmp_path, GOOD))
    config = space.baseline("tiny")
    assert config.params == {"variant": "full", "alpha3": 3, "rates": [1, 3, 9], "scale": 1.5}
    assert space.sample_params(optuna.trial.FixedTrial(space.encode(config.params))) == config.params


def test_conditional_parameter_is_sampled_only_when_active(tmp_path):
    space = SearchSpace.from_file(write(tmp_path, GOOD))
    study = optuna.create_study(sampler=optuna.samplers.TPESampler(seed=0))
    seen = set()
    for _ in range(30):
        trial = study.ask()
        params = space.sample_params(trial)
        assert ("rates" in params) == (params["variant"] == "full")
        if "rates" in params:
            assert params["rates"] in ([1, 2, 4], [1, 3, 9])  # lists come back decoded
        assert space.validate(params) == params
        seen.add(params["variant"])
        study.tell(trial, float(params["alpha3"]))
    assert seen == {"c", "full"}


def test_not_yaml(tmp_path):
    assert "not valid YAML" in load_error(tmp_path, "family: [unclosed")


def test_top_level_must_be_a_mapping(tmp_path):
    assert "mapping" in load_error(tmp_path, "- a\n- b\n")


def test_unknown_key_in_parameter_is_named(tmp_path):
    message = load_error(tmp_path, GOOD.replace("alpha3: {type: int,", "alpha3: {type: int, lowest: 2,"))
    assert "parameters.alpha3" in message and "lowest" in message


def test_categorical_without_choices(tmp_path):
    message = load_error(tmp_path, GOOD.replace("choices: [c, full]", "choices: []"))
    assert "parameters.variant" in message and "choices" in message


def test_int_domain_must_be_ordered(tmp_path):
    message = load_error(tmp_path, GOOD.replace("low: 1, high: 8", "low: 8, high: 1"))
    assert "parameters.alpha3" in message and "low < high" in message


def test_condition_must_refer_to_an_earlier_parameter(tmp_path):
    message = load_error(tmp_path, GOOD.replace("when: {variant: full}", "when: {scale: 1.0}"))
    assert "parameters.rates.when" in message and "'scale'" in message


def test_condition_value_must_be_in_the_other_domain(tmp_path):
    message = load_error(tmp_path, GOOD.replace("when: {variant: full}", "when: {variant: b}"))
    assert "variant='b'" in message and "one of c, full" in message


def test_unknown_family(tmp_path):
    message = load_error(tmp_path, GOOD.replace("family: espnet", "family: unet"))
    assert "unknown family 'unet'" in message and "fassd" in message


def test_baseline_with_unknown_parameter(tmp_path):
    message = load_error(tmp_path, GOOD.replace("scale: 1.5}", "scale: 1.5, depth: 3}"))
    assert "baselines.tiny" in message and "depth" in message and "variant, alpha3, rates, scale" in message


def test_baseline_value_outside_domain_names_what_is_allowed(tmp_path):
    message = load_error(tmp_path, GOOD.replace("alpha3: 3,", "alpha3: 12,"))
    assert "alpha3=12" in message and "integer in [1, 8]" in message


def test_baseline_value_off_the_step(tmp_path):
    message = load_error(tmp_path, GOOD.replace("scale: 1.5}", "scale: 1.2}"))
    assert "scale=1.2" in message and "step 0.5" in message


def test_baseline_list_value_not_among_choices(tmp_path):
    message = load_error(tmp_path, GOOD.replace("rates: [1, 3, 9], scale", "rates: [1, 3, 27], scale"))
    assert "rates=[1, 3, 27]" in message and "[1, 2, 4], [1, 3, 9]" in message


def test_baseline_missing_an_active_parameter(tmp_path):
    message = load_error(tmp_path, GOOD.replace(" rates: [1, 3, 9],", ""))
    assert "'rates' is missing" in message


def test_baseline_with_an_inactive_parameter(tmp_path):
    message = load_error(tmp_path, GOOD.replace("variant: full, alpha3", "variant: c, alpha3"))
    assert "'rates' only exists when variant is one of ['full']" in message


def test_ablation_rows_must_be_baselines(tmp_path):
    text = GOOD + "ablations:\n  - {name: t1, source: Table 1, rows: [tiny, huge]}\n"
    assert "row 'huge'" in load_error(tmp_path, text)


def test_published_macs_need_their_input(tmp_path):
    message = load_error(tmp_path, GOOD.replace("params: 1000}", "params: 1000, macs: 5.0e8}"))
    assert "macs_input" in message


def test_missing_file_and_unknown_space():
    with pytest.raises(SpaceFileError, match="no such search-space file"):
        SearchSpace.from_file("/nonexistent/space.yaml")
    with pytest.raises(ConfigError, match="no search space 'unet'; spaces: .*fassd"):
        load_space("unet")
    with pytest.raises(ConfigError, match="no baseline 'unet-v9'; baselines: .*fassd-net"):
        find_baseline("unet-v9")


# Section 7 of shared/reference/architectures.md: every paper-vs-code ambiguity gets a decision.
AMBIGUITIES = {
    "espnet": [f"E{i}" for i in range(1, 7)],
    "ejpnet": [f"V{i}" for i in range(1, 8)],
    "fassd": [f"F{i}" for i in range(1, 7)],
    "jetseg": [f"J{i}" for i in range(1, 8)],
    "pyramid_shufflenet": [f"P{i}" for i in range(1, 6)],
}


@pytest.mark.parametrize("space", all_spaces(), ids=lambda s: s.name)
def test_every_ambiguity_has_a_documented_decision(space):
    decisions = {d.id: d for d in space.spec.decisions}
    missing = [i for i in AMBIGUITIES[space.spec.family] if i not in decisions]
    assert not missing, f"{space.path.name}: no decision for {missing}"
    for decision in decisions.values():
        assert decision.choice.strip() and decision.reason.strip()
        for name in decision.affects:
            assert name in space.parameters or name == "structure", f"{decision.id} affects unknown {name!r}"


# ----- infeasible vs degenerate (issue 21) ------------------------------------------------------------
def _published_inputs(space: SearchSpace, name: str) -> list[tuple[int, int]]:
    """The space's search input, the baseline's default input, and every input its paper gives a figure at."""
    published = space.baselines[name].published
    inputs = {tuple(space.spec.search_input), tuple(space.baseline_input(name))}
    inputs |= {tuple(fig.input) for fig in [*published.miou, *published.fps] if fig.input}
    if published.macs_input:
        inputs.add(tuple(published.macs_input))
    if space.spec.family == "fassd":  # the resolutions of issue 21: Tables IX and X, and the search input
        inputs |= {(360, 480), (512, 1024), (576, 1152), (1024, 2048)}
    return sorted(inputs)


BASELINE_INPUTS = [
    pytest.param(space, name, hw, id=f"{name}@{hw[0]}x{hw[1]}")
    for space in all_spaces()
    for name in space.baselines
    for hw in _published_inputs(space, name)
]


@pytest.mark.parametrize(("space", "name", "hw"), BASELINE_INPUTS)
def test_every_baseline_is_feasible_at_its_search_and_published_inputs(space, name, hw):
    """A published network is never refused at an input its paper or its space runs it at: its degenerate
    layers there, if any, are notes (strings naming the parameter), never an InfeasibleArchitecture."""
    config = space.baseline(name)
    notes = check(config, hw)
    assert all(isinstance(n, str) and n.split("=")[0] in config.params for n in notes), notes
    assert space.check(config, hw) == notes  # a space accepts its baselines' degenerate layers too
    assert not space.family.check(config.params, hw).infeasible


def test_fassd_baselines_that_issue_21_saw_refused_are_accepted():
    space = load_space("fassd")
    for name, hw in [
        ("fassd-net", (512, 1024)),
        ("fassd-net-l1", (576, 1152)),
        ("fassd-net-l2", (1024, 2048)),
        ("fassd-net", (360, 480)),
    ]:
        (note,) = check(space.baseline(name), hw)
        assert note.startswith("dapf_rates=[12, 24, 36]: rate(s)") and f"at input {hw[0]}x{hw[1]}" in note


@pytest.mark.parametrize("path", sorted(SPACES_DIR.glob("*.yaml")), ids=lambda p: p.stem)
def test_every_space_file_states_its_degenerate_decision_with_a_reason(path):
    lines = path.read_text().splitlines()
    (at,) = [i for i, line in enumerate(lines) if line.startswith("degenerate:")]
    assert lines[at].split(":", 1)[1].strip() in ("reject", "accept")
    assert lines[at - 1].startswith("# "), f"{path.name}: say why, in a comment above 'degenerate:'"


@pytest.mark.parametrize("space", all_spaces(), ids=lambda s: s.name)
def test_every_space_offers_points_that_do_not_degenerate_at_its_search_input(space):
    """The sampler rejects degenerate points: enough of the others must be left to search."""
    drawn = space.sample_feasible(60, seed=0, attempts_per_sample=1)
    accepted = len(drawn.configs) + drawn.duplicates
    assert drawn.draws == 60 and accepted >= 15, (
        f"{space.name}: only {accepted}/60 samples neither infeasible nor degenerate"
    )


def test_fassd_keeps_rate_sets_that_fit_fassd_nets_deepest_map_at_the_search_input():
    space = load_space("fassd")
    base = space.baselines["fassd-net"].params
    assert feature_sizes(FASSDConfig.from_params(base), tuple(space.spec.search_input))[-1] == (11, 15)
    for key, context, extra in (("dapf_rates", "dapf", {"dapf_alpha": 2}), ("aspp_rates", "aspp", {"aspp_width": 256})):
        fitting = []
        for rates in space.parameters[key].choices:
            params = {k: v for k, v in base.items() if not k.startswith("dapf_")} | {
                "context": context,
                key: rates,
                **extra,
            }
            if space.family.check(params, tuple(space.spec.search_input)) == Findings():
                fitting.append(rates)
        assert [4, 8, 12] in fitting and [3, 6, 9] in fitting and [2, 4, 6] in fitting, (key, fitting)
    for rates in space.parameters["mda_rates"].choices:
        params = {**base, "dapf_rates": [4, 8, 12], "mda_rates": rates}
        assert space.family.check(params, tuple(space.spec.search_input)) == Findings(), rates


def test_degenerate_field_decides_what_the_sampler_rejects(tmp_path):
    text = (SPACES_DIR / "espnet.yaml").read_text()
    assert "\ndegenerate: reject\n" in text
    (tmp_path / "reject.yaml").write_text(text)
    (tmp_path / "accept.yaml").write_text(text.replace("\ndegenerate: reject\n", "\ndegenerate: accept\n"))
    (tmp_path / "default.yaml").write_text(text.replace("\ndegenerate: reject\n", "\n"))
    reject, accept, default = (SearchSpace.from_file(tmp_path / f"{n}.yaml") for n in ("reject", "accept", "default"))
    assert default.spec.degenerate == "reject" and accept.spec.degenerate == "accept"
    params = {**reject.baselines["espnet"].params, "width_divider_k": 8, "dilations_k8": [1, 2, 4, 8, 16, 32, 64, 128]}
    del params["dilations_k5"]
    trial = optuna.trial.FixedTrial(reject.encode(params))
    for space in (reject, default):
        with pytest.raises(InfeasibleArchitecture, match=r"dilations_k8=.*\[64, 128\] reach past the 45x60"):
            space.sample(trial)
    assert accept.sample(trial).params == params  # sampled, as a valid (if wasteful) network
    # Infeasible points are rejected whatever the field says.
    with pytest.raises(InfeasibleArchitecture, match="smaller than the output stride"):
        accept.check(accept.sample(trial), (4, 4), degenerate=accept.spec.degenerate)
    (tmp_path / "bad.yaml").write_text(text.replace("\ndegenerate: reject\n", "\ndegenerate: warn\n"))
    with pytest.raises(SpaceFileError, match="bad.yaml.*degenerate"):
        SearchSpace.from_file(tmp_path / "bad.yaml")


runner = CliRunner()


def test_cli_lists_spaces_and_shows_one():
    result = runner.invoke(app, ["spaces"])
    assert result.exit_code == 0, result.output
    for space in all_spaces():
        assert space.name in result.output
    result = runner.invoke(app, ["spaces", "fassd", "--json"])
    assert result.exit_code == 0, result.output
    assert '"family": "fassd"' in result.output and '"fassd-net"' in result.output
    assert '"degenerate": "reject"' in result.output


def test_cli_bad_input_is_one_clear_error_with_exit_code_2():
    result = runner.invoke(app, ["reproduce", "unet-v9"])
    assert result.exit_code == 2
    assert re.search(r"error: no baseline 'unet-v9'", result.output)
    assert "Traceback" not in result.output
    result = runner.invoke(app, ["spaces", "unet"])
    assert result.exit_code == 2 and "no search space 'unet'" in result.output
