"""The fault suite's report: one row per scenario, printed at the end of the run and written
to build/faults-report-<broker>[-small].md and .json (make faults runs the full suite once per
broker tier; make test the small one)."""

from __future__ import annotations

import json
import os
from collections.abc import Generator

import pytest

from tests.conftest import REPO
from tests.faults.harness import PASSED, REPORT

COLUMNS = ("scenario", "broker", "produced", "delivered", "dead_lettered", "lost",
           "duplicates", "recovered_s", "final_state", "pass", "notes")


def report_markdown() -> str:
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    for outcome in REPORT:
        row = outcome.row()
        lines.append("| " + " | ".join("-" if row[c] is None else str(row[c])
                                       for c in COLUMNS) + " |")
    return "\n".join(lines) + "\n"


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]
                              ) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """Whether each scenario passed, for its row (read when its `outcome` fixture ends)."""
    report = yield
    if report.when == "call":
        item.stash[PASSED] = report.passed
    return report


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not REPORT:
        return
    tier = os.environ.get("UEE_TEST_KAFKA") or "embedded"
    size = "" if os.environ.get("UEE_FAULTS") == "full" else "-small"
    path = REPO / "build" / f"faults-report-{tier}{size}.md"
    path.parent.mkdir(exist_ok=True)
    text = report_markdown()
    path.write_text(text)
    path.with_suffix(".json").write_text(
        json.dumps([outcome.row() for outcome in REPORT], indent=2) + "\n")
    terminalreporter.write_sep("=", f"fault report ({tier}{size}; also in "
                               f"{path.relative_to(REPO)} and .json)")
    terminalreporter.write(text)
