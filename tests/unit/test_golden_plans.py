"""Golden plans: each folder of tests/golden holds pipeline files and the `uee plan --format
json` output they must give. UEE_UPDATE_GOLDEN=1 rewrites the expected files (then review the
diff: a golden file changes only when the optimizer is meant to change)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from click.testing import CliRunner

from uee.streams.cli import cli

GOLDEN = Path(__file__).resolve().parents[1] / "golden"
CASES = sorted(p.name for p in GOLDEN.iterdir() if p.is_dir())


@pytest.mark.parametrize("case", CASES)
def test_plan_matches_golden(case: str) -> None:
    folder = GOLDEN / case
    result = CliRunner().invoke(cli, ["plan", str(folder), "--format", "json"])
    assert result.exit_code == 0, result.output
    expected_path = folder / "expected.json"
    if os.environ.get("UEE_UPDATE_GOLDEN"):
        expected_path.write_text(result.output)
    assert json.loads(result.output) == json.loads(expected_path.read_text())


def test_every_case_has_an_expected_plan() -> None:
    assert len(CASES) >= 7
    assert all((GOLDEN / case / "expected.json").is_file() for case in CASES)
