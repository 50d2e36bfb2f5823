"""`make test`'s test run: the whole suite on the embedded broker (Tansu), then every test that
talks to the session's broker again on Apache Kafka 3.9 (tests/apache_kafka.py), when this
machine has Java and Maven. One line names both tiers and their counts at the end; a tier
that could not run says why, and is never counted as passing."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import xml.etree.ElementTree as ElementTree
from dataclasses import dataclass
from pathlib import Path

from tests.apache_kafka import KAFKA_VERSION, missing_tools


@dataclass(frozen=True)
class Tier:
    name: str
    env: dict[str, str]
    args: tuple[str, ...]


@dataclass(frozen=True)
class Outcome:
    code: int
    passed: int = 0
    failed: int = 0
    skipped: int = 0
    xfailed: int = 0  # known failures, each with its reason (a broker's bug), not passes

    def describe(self) -> str:
        text = f"{self.passed} passed, {self.failed} failed, {self.skipped} skipped"
        if self.xfailed:
            text += f", {self.xfailed} known to fail (xfail)"
        return text if self.code in (0, 1) else f"{text} (pytest exit {self.code})"


# The fault scenarios run in their small version here (tests/faults), the full one in
# `make faults`.
TIERS = (
    Tier("embedded Tansu 0.6.0", {}, ()),
    # Only the tests that use the session's broker: the others (unit tests, tests that start
    # a broker of their own to break it) do not depend on which broker the session has.
    Tier(f"Apache Kafka {KAFKA_VERSION}", {"UEE_TEST_KAFKA": "apache"},
         ("-m", "integration or e2e or faults")),
)


def run(tier: Tier, extra: list[str]) -> Outcome:
    print(f"== tests on {tier.name} ==", flush=True)
    with tempfile.TemporaryDirectory(prefix="uee-tier-") as folder:
        report = Path(folder) / "junit.xml"
        code = subprocess.call(
            [sys.executable, "-m", "pytest", *tier.args, f"--junitxml={report}",
             "-o", "junit_family=legacy", *extra],  # legacy: record_property is kept
            env={**os.environ, **tier.env})
        if not report.exists():
            return Outcome(code, failed=1)
        suite = ElementTree.parse(report).getroot()
        suite = suite if suite.tag == "testsuite" else suite[0]
        total, skipped = int(suite.get("tests", 0)), int(suite.get("skipped", 0))
        failed = int(suite.get("failures", 0)) + int(suite.get("errors", 0))
        xfailed = sum(1 for s in suite.iter("skipped") if s.get("type") == "pytest.xfail")
        return Outcome(code, total - failed - skipped, failed, skipped - xfailed, xfailed)


# `make faults`: the full fault suite, on the embedded broker (the scenarios that break a broker
# start their own), then the scenarios that use the session's broker on Apache Kafka.
FAULT_TIERS = (
    Tier("embedded Tansu 0.6.0", {"UEE_FAULTS": "full"}, ("tests/faults",)),
    Tier(f"Apache Kafka {KAFKA_VERSION}", {"UEE_TEST_KAFKA": "apache", "UEE_FAULTS": "full"},
         ("tests/faults",)),
)


def main(extra: list[str]) -> int:
    summary = []
    failed = False
    tiers = TIERS
    if extra[:1] == ["--faults"]:
        tiers, extra = FAULT_TIERS, extra[1:]
    for tier in tiers:
        why = missing_tools() if tier.env.get("UEE_TEST_KAFKA") == "apache" else None
        if why:
            print(f"the {tier.name} tier did not run: {why}", flush=True)
            summary.append(f"{tier.name}: did not run ({why})")
            continue
        outcome = run(tier, extra)
        failed = failed or outcome.code != 0
        summary.append(f"{tier.name}: {outcome.describe()}")
    print("test tiers: " + "; ".join(summary), flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
