"""The fault suite's report: one row per scenario, printed at the end of the run and written
to build/faults-report-<broker>.md (make faults runs the suite once per broker tier)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.conftest import REPO
from tests.faults.harness import REPORT

COLUMNS = ("scenario", "broker", "produced", "delivered", "dead_lettered", "lost",
           "duplicates", "recovered_s", "final_state", "notes")


def report_markdown() -> str:
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    for outcome in REPORT:
        row = outcome.row()
        lines.append("| " + " | ".join("-" if row[c] is None else str(row[c])
                                       for c in COLUMNS) + " |")
    return "\n".join(lines) + "\n"


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not REPORT:
        return
    tier = os.environ.get("UEE_TEST_KAFKA") or "embedded"
    path = REPO / "build" / f"faults-report-{tier}.md"
    path.parent.mkdir(exist_ok=True)
    text = report_markdown()
    Path(path).write_text(text)
    terminalreporter.write_sep("=", f"fault report ({tier}; also in {path.relative_to(REPO)})")
    terminalreporter.write(text)
