"""Search-space files: malformed input gives one clear error naming the file, the entry and what is allowed."""

from __future__ import annotations

import re
import textwrap
from pathlib import Path

import optuna
import pytest
from typer.testing import CliRunner

from nasseg.cli import app
from nasseg.errors import ConfigError, SpaceFileError
from nasseg.spaces import SearchSpace, all_spaces, find_baseline, load_space

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


runner = CliRunner()


def test_cli_lists_spaces_and_shows_one():
    result = runner.invoke(app, ["spaces"])
    assert result.exit_code == 0, result.output
    for space in all_spaces():
        assert space.name in result.output
    result = runner.invoke(app, ["spaces", "fassd", "--json"])
    assert result.exit_code == 0, result.output
    assert '"family": "fassd"' in result.output and '"fassd-net"' in result.output


def test_cli_bad_input_is_one_clear_error_with_exit_code_2():
    result = runner.invoke(app, ["reproduce", "unet-v9"])
    assert result.exit_code == 2
    assert re.search(r"error: no baseline 'unet-v9'", result.output)
    assert "Traceback" not in result.output
    result = runner.invoke(app, ["spaces", "unet"])
    assert result.exit_code == 2 and "no search space 'unet'" in result.output
