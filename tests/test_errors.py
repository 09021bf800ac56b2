"""Errors are sorted by what they mean to a caller, in one module, and the CLI's exit codes follow."""

from __future__ import annotations

import ast
import inspect
from pathlib import Path

import pytest
import typer

import nasseg
from nasseg import errors
from nasseg.cli.common import EXIT_BAD_INPUT, EXIT_CHECK_FAILED, EXIT_INFRASTRUCTURE, user_errors

PACKAGE = Path(nasseg.__file__).parent
# The board agent runs on a Jetson without nasseg (Python 3.6's standard library alone), so it keeps its own.
STANDALONE = {PACKAGE / "latency" / "measure" / "board_agent.py"}
MEANINGS = {
    errors.BadInput: EXIT_BAD_INPUT,
    errors.TrialFailed: EXIT_CHECK_FAILED,
    errors.InfrastructureFailed: EXIT_INFRASTRUCTURE,
}
CLASSES = [c for _, c in inspect.getmembers(errors, inspect.isclass) if c.__module__ == errors.__name__]


def _exception_classes_outside_errors() -> list[str]:
    found = []
    for path in PACKAGE.rglob("*.py"):
        if path == PACKAGE / "errors.py" or path in STANDALONE:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ClassDef) and any(
                getattr(base, "id", getattr(base, "attr", "")).endswith(("Error", "Exception", "Failed"))
                or getattr(base, "id", "") in {c.__name__ for c in CLASSES}
                for base in node.bases
            ):
                found.append(f"{path.relative_to(PACKAGE)}: {node.name}")
    return found


def test_every_error_class_lives_in_nasseg_errors() -> None:
    assert _exception_classes_outside_errors() == []


@pytest.mark.parametrize(
    "cls", [c for c in CLASSES if c not in (errors.NassegError, *MEANINGS)], ids=lambda c: c.__name__
)
def test_every_error_has_exactly_one_meaning_and_its_exit_code(cls: type[errors.NassegError]) -> None:
    meanings = [m for m in MEANINGS if issubclass(cls, m)]
    assert len(meanings) == 1, f"{cls.__name__} means {meanings}"
    error = cls.__new__(cls)
    Exception.__init__(error, "what went wrong")
    with pytest.raises(typer.Exit) as exited, user_errors():
        raise error
    assert exited.value.exit_code == MEANINGS[meanings[0]]


def test_nothing_raises_the_bare_base_class() -> None:
    # A bare NassegError has no meaning for a study or an exit code: raise the class that says what it is.
    bare = [
        f"{path.relative_to(PACKAGE)}:{node.lineno}"
        for path in PACKAGE.rglob("*.py")
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, ast.Raise)
        and isinstance(node.exc, ast.Call)
        and getattr(node.exc.func, "id", "") == "NassegError"
    ]
    assert bare == []
