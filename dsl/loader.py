"""Load YAML into position-carrying nodes.

ruamel.yaml knows where every key and value sits; the validator needs that for
each error it reports, so the loaded document is turned into small node objects
that carry their own `Position`, instead of passing ruamel's types around.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.error import MarkedYAMLError
from ruamel.yaml.scalarstring import DoubleQuotedScalarString, SingleQuotedScalarString

from uee.dsl.errors import Diagnostic, PipelineFileError, Position


@dataclass(frozen=True)
class Node:
    pos: Position


@dataclass(frozen=True)
class Scalar(Node):
    value: str | int | float | bool | None
    # Column where the scalar's text starts inside the file, after any opening quote;
    # expressions map their own column offsets onto it.
    text_col: int
    # True when the value appears verbatim on one line at text_col, so that columns inside
    # it are columns in the file (not for block scalars, folded lines or escapes).
    verbatim: bool = True


@dataclass(frozen=True)
class Mapping(Node):
    entries: tuple[tuple[str, Position, Node], ...]

    def get(self, key: str) -> Node | None:
        for name, _, node in self.entries:
            if name == key:
                return node
        return None

    def key_pos(self, key: str) -> Position:
        for name, pos, _ in self.entries:
            if name == key:
                return pos
        return self.pos

    def keys(self) -> list[str]:
        return [name for name, _, _ in self.entries]

    def __iter__(self) -> Iterator[tuple[str, Position, Node]]:
        return iter(self.entries)


@dataclass(frozen=True)
class Sequence(Node):
    items: tuple[Node, ...]


def kind_of(node: Node) -> str:
    """A user-facing name of a node's YAML type, for 'expected X, got Y' messages."""
    if isinstance(node, Mapping):
        return "a mapping"
    if isinstance(node, Sequence):
        return "a list"
    assert isinstance(node, Scalar)
    value = node.value
    if value is None:
        return "nothing (null)"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    return "a string"


def load_file(path: Path) -> Node | None:
    """Parse one YAML file; a syntax error becomes a DSL_YAML diagnostic with its position."""
    display = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise PipelineFileError(
            [Diagnostic("DSL_FILE", f"cannot read file: {exc.strerror}", Position(display, 1, 1))]
        ) from exc
    except UnicodeDecodeError as exc:
        line = path.read_bytes()[: exc.start].count(b"\n") + 1
        raise PipelineFileError(
            [Diagnostic("DSL_FILE", "the file is not UTF-8 text", Position(display, line, 1),
                        "save it as UTF-8")]
        ) from exc
    return load_text(text, display)


def load_text(text: str, path: str) -> Node | None:
    yaml = YAML(typ="rt")
    yaml.preserve_quotes = True
    try:
        document = yaml.load(text)
    except RecursionError as exc:
        raise PipelineFileError([Diagnostic("DSL_YAML", "the YAML is nested too deeply",
                                            Position(path, 1, 1))]) from exc
    except MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line, col = (mark.line + 1, mark.column + 1) if mark else (1, 1)
        problem = exc.problem or exc.context or "invalid YAML"
        raise PipelineFileError(
            [Diagnostic("DSL_YAML", f"YAML syntax error: {problem}", Position(path, line, col))]
        ) from exc
    if document is None:
        return None
    try:
        return _convert(document, Position(path, 1, 1), path, text.splitlines())
    except RecursionError as exc:
        raise PipelineFileError([Diagnostic("DSL_YAML", "the YAML is nested too deeply",
                                            Position(path, 1, 1))]) from exc


def _convert(value: Any, pos: Position, path: str, lines: list[str]) -> Node:
    if isinstance(value, CommentedMap):
        entries = []
        for key in value:
            # Keys merged in with `<<: *anchor` have no position of their own in this map.
            where = value.lc.data.get(key) or (value.lc.line, value.lc.col) * 2
            key_line, key_col, value_line, value_col = where
            key_pos = Position(path, key_line + 1, key_col + 1)
            child = _convert(value[key], Position(path, value_line + 1, value_col + 1), path,
                             lines)
            entries.append((str(key), key_pos, child))
        return Mapping(Position(path, value.lc.line + 1, value.lc.col + 1), tuple(entries))
    if isinstance(value, CommentedSeq):
        items = []
        for index, item in enumerate(value):
            line, col = value.lc.data[index]
            items.append(_convert(item, Position(path, line + 1, col + 1), path, lines))
        return Sequence(Position(path, value.lc.line + 1, value.lc.col + 1), tuple(items))
    quoted = isinstance(value, SingleQuotedScalarString | DoubleQuotedScalarString)
    text_col = pos.col + (1 if quoted else 0)
    verbatim = True
    if isinstance(value, str):
        value = str(value)
        line = lines[pos.line - 1] if 0 < pos.line <= len(lines) else ""
        verbatim = line[text_col - 1: text_col - 1 + len(value)] == value
    elif isinstance(value, int | float) and not isinstance(value, bool):
        # ruamel keeps some numbers as subclasses (`0` is a ScalarInt): the DSL sees plain ones.
        value = int(value) if isinstance(value, int) else float(value)
    elif value is not None and not isinstance(value, bool):
        value = str(value)  # dates and other YAML tags are plain text to the DSL
    return Scalar(pos, value, text_col, verbatim)
