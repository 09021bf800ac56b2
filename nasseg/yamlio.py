"""Reading the small YAML files nasseg takes from users (spaces, architectures, studies) safely.

A config is small, so a file is refused, with one line naming it, when it is not UTF-8 text, when it
is larger than ``MAX_BYTES``, when its aliases would expand it past ``MAX_NODES`` nodes (an alias
"bomb" of a few KB otherwise expands to gigabytes), or when a mapping repeats a key (YAML would keep
the last one silently). Anchors and merge keys (``<<: *base``) stay allowed: space files use them.
A config is also plain data: nesting deeper than ``MAX_DEPTH`` (the parser would recurse until Python
gives up), tags other than YAML's JSON-like core (``!!python/...``, ``!!binary``, ``!!set``, dates) and
keys that are not names are refused too, each with its line.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from nasseg.errors import NassegError

MAX_BYTES = 1 << 20
MAX_NODES = 200_000
MAX_DEPTH = 64  # the deepest nasseg file nests 6 levels; PyYAML's composer recurses once per level
_MERGE = "tag:yaml.org,2002:merge"
_CORE = "tag:yaml.org,2002:"
_SCALARS = {_CORE + name for name in ("str", "int", "float", "bool", "null")}
_COLLECTIONS = {_CORE + "seq", _CORE + "map"}


def _expanded_size(node: yaml.Node, memo: dict[int, int], limit: int) -> int:
    """Nodes ``node`` stands for once every alias is expanded; stops counting past ``limit``."""
    if id(node) in memo:
        return memo[id(node)]
    size = 1
    if isinstance(node, yaml.SequenceNode):
        children: list[yaml.Node] = list(node.value)
    elif isinstance(node, yaml.MappingNode):
        children = [item for pair in node.value for item in pair]
    else:
        children = []
    for child in children:
        size += _expanded_size(child, memo, limit)
        if size > limit:
            break
    memo[id(node)] = size
    return size


def _duplicate_key(node: yaml.Node, seen: set[int]) -> str | None:
    """'key at lines A and B' for the first mapping that repeats a key, else None."""
    if id(node) in seen:
        return None
    seen.add(id(node))
    if isinstance(node, yaml.MappingNode):
        first: dict[str, int] = {}
        for key, _ in node.value:
            if isinstance(key, yaml.ScalarNode) and key.tag != _MERGE:
                line = key.start_mark.line + 1
                if key.value in first:
                    return f"key {key.value!r} appears twice, at lines {first[key.value]} and {line}"
                first[key.value] = line
    children = (
        node.value
        if isinstance(node, yaml.SequenceNode)
        else ([item for pair in node.value for item in pair] if isinstance(node, yaml.MappingNode) else [])
    )
    for child in children:
        if found := _duplicate_key(child, seen):
            return found
    return None


def _too_deep(text: str) -> int | None:
    """The line at which collections nest deeper than ``MAX_DEPTH``, else None (events: no recursion)."""
    depth = 0
    for event in yaml.parse(text, Loader=yaml.SafeLoader):
        if isinstance(event, yaml.CollectionStartEvent):
            depth += 1
            if depth > MAX_DEPTH:
                return event.start_mark.line + 1
        elif isinstance(event, yaml.CollectionEndEvent):
            depth -= 1
    return None


def _not_plain(node: yaml.Node, seen: set[int]) -> str | None:
    """Why ``node`` is not plain JSON-like data (a foreign tag, a key that is not a name), else None."""
    if id(node) in seen:
        return None
    seen.add(id(node))
    line = node.start_mark.line + 1
    if isinstance(node, yaml.ScalarNode):
        return (
            None
            if node.tag in _SCALARS or node.tag == _MERGE
            else (
                f"line {line}: tag {node.tag.replace(_CORE, '!!')} is not allowed; a config holds "
                "strings, numbers, booleans, null, lists and mappings (quote the value to keep it as text)"
            )
        )
    if node.tag not in _COLLECTIONS:
        return f"line {line}: tag {node.tag.replace(_CORE, '!!')} is not allowed; a config holds lists and mappings"
    if isinstance(node, yaml.MappingNode):
        for key, _ in node.value:
            if not (isinstance(key, yaml.ScalarNode) and key.tag in (_CORE + "str", _MERGE)):
                return f"line {key.start_mark.line + 1}: a key must be a name, not {_describe(key)}"
    children = node.value if isinstance(node, yaml.SequenceNode) else [item for pair in node.value for item in pair]
    for child in children:
        if found := _not_plain(child, seen):
            return found
    return None


def _describe(node: yaml.Node) -> str:
    if isinstance(node, yaml.ScalarNode):
        return f"{node.tag.replace(_CORE, '')} {node.value!r}"
    return "a list" if isinstance(node, yaml.SequenceNode) else "a mapping"


def parse_yaml(text: str, where: str, error: type[NassegError] = NassegError) -> Any:
    """Parse ``text`` (from ``where``, named in errors) under the rules above; problems raise ``error``."""
    try:
        deep_at = _too_deep(text)
        node = None if deep_at else yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as exc:
        raise error(f"{where}: not valid YAML{_at(exc)}: {_problem(exc)}") from None
    if deep_at:
        raise error(f"{where}: nested more than {MAX_DEPTH} levels deep at line {deep_at}; a config is far flatter")
    if node is None:
        return None
    if _expanded_size(node, {}, MAX_NODES) > MAX_NODES:
        raise error(f"{where}: its aliases expand to more than {MAX_NODES} nodes; a config is far smaller")
    if duplicate := _duplicate_key(node, set()):
        raise error(f"{where}: {duplicate}")
    if problem := _not_plain(node, set()):
        raise error(f"{where}: {problem}")
    try:
        return yaml.SafeLoader(text).construct_document(node)
    except (yaml.YAMLError, ValueError, TypeError, OverflowError) as exc:  # e.g. `!!int x`, `<<: 3`
        raise error(f"{where}: not valid YAML{_at(exc)}: {_problem(exc)}") from None


def _at(exc: Exception) -> str:
    mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
    return f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""


def _problem(exc: Exception) -> str:
    problem = getattr(exc, "problem", None) or (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    return " ".join(str(problem).split())


def read_yaml(path: Path, what: str = "file", error: type[NassegError] = NassegError) -> Any:
    """Read and parse one YAML (or JSON) file; every problem is one ``error`` naming it."""
    path = Path(path)
    if not path.is_file():
        raise error(f"{path}: no such {what}")
    size = path.stat().st_size
    if size > MAX_BYTES:
        raise error(f"{path}: {size} bytes is too large for a {what} (at most {MAX_BYTES})")
    data = path.read_bytes()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise error(f"{path}: not UTF-8 text (byte 0x{data[exc.start]:02x} at offset {exc.start})") from None
    return parse_yaml(text, str(path), error)
