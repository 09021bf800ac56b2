"""Every input checked, by property (issue 22): valid space files and architecture files, mutated at random
(keys deleted, renamed or duplicated, values changed to other types, the text cut short or a character
inserted), must give either a valid space / a valid point of its space, or exactly one clear NassegError
line (exit 2 from the CLI); never another exception, and each in bounded time and memory."""

from __future__ import annotations

import copy
import itertools
import resource
import tempfile
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from nasseg.cli import app
from nasseg.errors import NassegError
from nasseg.spaces import config_from_dict, load_architecture, load_space
from nasseg.spaces import space as space_module

runner = CliRunner()
SPACES = ["espnet", "fassd", "jetseg"]
SPACE_TEXT = {name: (space_module.SPACES_DIR / f"{name}.yaml").read_text() for name in SPACES}
BASELINES = ["espnet-c", "fassd-net", "jetseg-nano", "pyramid-shufflenet", "ejpnet"]
ARCHS = {
    name: {"family": load_architecture(name)[0].family, "num_classes": 11, "params": load_architecture(name)[0].params}
    for name in BASELINES
}
# Each example must finish in this. The slowest legitimate one (a whole space validated and printed as
# JSON) takes about 0.1 s alone, but 20x that on a CI machine busy with other work, which failed the
# 2 s bound once; the alias bombs the issue describes took 40-180 s, so 10 s still tells them apart.
# The three properties run 260 examples in about 15 s on 2 idle cores.
PER_EXAMPLE = timedelta(seconds=10)
PROPERTY = settings(deadline=PER_EXAMPLE, database=None, suppress_health_check=[HealthCheck.too_slow])
_names = itertools.count()

# Values of every YAML type, for a value replaced by one of another type.
VALUES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(10**6), 10**6),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=12),
    st.lists(st.integers(-5, 300), max_size=4),
    st.dictionaries(st.text(min_size=1, max_size=6), st.integers(), max_size=2),
)
CHARACTERS = st.characters(blacklist_categories=("Cs",))  # any character UTF-8 can hold


def _children(node: Any) -> list[Any]:
    if isinstance(node, dict):
        return list(node)
    if isinstance(node, list):
        return list(range(len(node)))
    return []


@st.composite
def structural(draw: st.DrawFn, data: Any) -> Any:
    """``data`` with one entry, somewhere in it, deleted, renamed, or given a value of another type."""
    data = copy.deepcopy(data)
    parent, key = None, None
    node = data
    while _children(node) and (parent is None or draw(st.integers(0, 3)) > 0):  # mostly deep in the file
        parent, key = node, draw(st.sampled_from(_children(node)))
        node = node[key]
    if parent is None:
        return draw(VALUES)  # the whole document replaced
    operation = draw(st.sampled_from(["delete", "rename", "retype"]))
    if operation == "delete":
        del parent[key]
    elif operation == "rename" and isinstance(parent, dict):
        new = draw(st.one_of(st.text(min_size=1, max_size=8), st.just(str(key)[::-1]), st.just(f"{key}_")))
        parent[new] = parent.pop(key)
    else:
        parent[key] = draw(VALUES)
    return data


@st.composite
def mutated_text(draw: st.DrawFn, text: str) -> str:
    """``text`` mutated in its data (``structural``) or as text: cut short, a line repeated (duplicate
    keys), or one character inserted."""
    operation = draw(st.sampled_from(["structural", "truncate", "duplicate_line", "insert"]))
    if operation == "structural":
        return yaml.safe_dump(draw(structural(yaml.safe_load(text))), sort_keys=False, allow_unicode=True)
    if operation == "truncate":
        return text[: draw(st.integers(0, len(text)))]
    lines = text.splitlines(keepends=True)
    at = draw(st.integers(0, len(lines) - 1))
    if operation == "duplicate_line":
        return "".join(lines[: at + 1] + [lines[at]] + lines[at + 1 :])
    column = draw(st.integers(0, len(lines[at])))
    lines[at] = lines[at][:column] + draw(CHARACTERS) + lines[at][column:]
    return "".join(lines)


@pytest.fixture(scope="module")
def scratch() -> Path:
    with tempfile.TemporaryDirectory(prefix="nasseg-mutants-") as folder:
        yield Path(folder)


def _write(folder: Path, text: str, suffix: str = ".yaml") -> Path:
    path = folder / f"mutant{next(_names)}{suffix}"  # a new name each time: load_space caches by path
    path.write_text(text, encoding="utf-8")
    return path


def _one_clear_line(message: str) -> None:
    assert message.strip() and "\n" not in message.strip() and "Traceback" not in message, message


@settings(PROPERTY, max_examples=60)
@given(data=st.data())
def test_a_mutated_space_file_is_a_space_or_one_clear_error(scratch: Path, data: st.DataObject) -> None:
    name = data.draw(st.sampled_from(SPACES))
    path = _write(scratch, data.draw(mutated_text(SPACE_TEXT[name])))
    done = runner.invoke(app, ["spaces", str(path), "--json"])  # loaded, checked and printed
    assert done.exit_code in (0, 2) and done.exception is None or isinstance(done.exception, SystemExit), done.output
    if done.exit_code == 2:
        _one_clear_line(done.stderr)
    else:
        space = load_space(path)
        for baseline in space.baselines:
            assert space.validate(space.baseline(baseline).params) == space.baseline(baseline).params


@settings(PROPERTY, max_examples=100)
@given(data=st.data())
def test_a_mutated_architecture_file_is_a_point_of_its_space_or_one_clear_error(
    scratch: Path, data: st.DataObject
) -> None:
    name = data.draw(st.sampled_from(BASELINES))
    text = data.draw(mutated_text(yaml.safe_dump(ARCHS[name], sort_keys=False)))
    path = _write(scratch, text)
    try:
        config, input_hw = load_architecture(str(path))
    except NassegError as exc:
        _one_clear_line(str(exc))
        assert str(path) in str(exc)  # a file's error names the file
    else:
        assert load_space(config.family).validate(config.params) == config.params and config.num_classes >= 1
        assert len(input_hw) == 2


@settings(PROPERTY, max_examples=100)
@given(data=st.data())
def test_a_mutated_config_as_data_is_a_point_or_one_clear_error(data: st.DataObject) -> None:
    """What the agent's /measure receives as JSON: the same checks without a file."""
    config = data.draw(structural(ARCHS[data.draw(st.sampled_from(BASELINES))]))
    try:
        checked = config_from_dict(config)
    except NassegError as exc:
        _one_clear_line(str(exc))
    else:
        assert load_space(checked.family).validate(checked.params) == checked.params


def test_the_properties_stay_within_memory() -> None:
    """The property tests above ran in this process (pytest runs a file's tests in order): its peak
    resident memory after them is bounded (an alias bomb took 3 GB)."""
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB
    assert peak_mib < 2048, f"peak resident memory {peak_mib:.0f} MiB"


def test_a_field_named_with_a_newline_is_quoted_so_the_error_stays_one_line() -> None:
    # Found by the property above (a mutated key "\n"): the message named it raw, over two lines.
    with pytest.raises(NassegError) as refused:
        config_from_dict({"\n": "espnet", "num_classes": 11, "params": {}})
    _one_clear_line(str(refused.value))
    assert "'\\n'" in str(refused.value)
