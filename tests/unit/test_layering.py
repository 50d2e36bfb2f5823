"""The layers, as the README states them: the language never imports the runtime; connectors
import neither; nothing installed imports the bench or the tests; nothing imports a part by
its folder name instead of under `uee`."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from tests.conftest import REPO

FORBIDDEN = {
    "dsl": ("uee.streams", "bench", "tests"),
    "connectors": ("uee.dsl", "uee.streams", "bench", "tests"),
    "streams": ("bench", "tests"),
    "core": ("uee.dsl", "uee.streams", "uee.connectors", "uee.testing", "bench", "tests"),
    "testing": ("uee.dsl", "uee.streams", "bench", "tests"),
}
FOLDER_NAMES = ("dsl", "streams", "connectors", "core", "testing")


def imports_of(path: Path) -> list[str]:
    names = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.append(node.module)
        elif isinstance(node, ast.Import):
            names.extend(alias.name for alias in node.names)
    return names


@pytest.mark.parametrize("folder", sorted(FORBIDDEN))
def test_each_part_imports_only_what_its_layer_may(folder: str) -> None:
    found = [
        f"{path.relative_to(REPO)} imports {name}"
        for path in sorted((REPO / folder).rglob("*.py"))
        for name in imports_of(path)
        if any(name == banned or name.startswith(f"{banned}.")
               for banned in (*FORBIDDEN[folder], *FOLDER_NAMES))
    ]
    assert found == []
