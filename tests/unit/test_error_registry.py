"""The error registry: every code the runtime can emit is registered and documented, and
dead letters carry its retryable flag and the delivery attempt."""

from __future__ import annotations

import re
from pathlib import Path

from uee.connectors.base import RecordOrigin
from uee.streams.deadletter import attempt_of, dead_letter_headers
from uee.streams.errors import REGISTRY, lookup
from uee.streams.kernel import Failure, RecordError, Slot

README = (Path(__file__).resolve().parents[2] / "README.md").read_text()
KERNEL = (Path(__file__).resolve().parents[2] / "streams" / "kernel.py").read_text()


def test_every_code_the_kernel_emits_is_registered() -> None:
    pattern = r'"((?:DECODE|ENCODE|EXPR|TRANSFORM|VALIDATION|SINK|UNKNOWN)_[A-Z_]+)"'
    emitted = set(re.findall(pattern, KERNEL))
    assert emitted, "the kernel names its codes"
    assert emitted <= set(REGISTRY), emitted - set(REGISTRY)


def test_every_registered_code_is_in_the_readme_with_its_flag() -> None:
    for code in REGISTRY.values():
        row = next((line for line in README.splitlines()
                    if line.startswith(f"| `{code.code}` |")), None)
        assert row is not None, f"{code.code} is not documented"
        assert ("yes" if code.retryable else "no") in row.split("|")[2], row


def test_unknown_codes_fall_back_to_the_generic_one() -> None:
    assert lookup("NO_SUCH_CODE").code == "UNKNOWN_ERROR"
    assert lookup("SINK_UNAVAILABLE").retryable is True


def test_dead_letter_headers_replace_an_earlier_failures_headers() -> None:
    slot = Slot((("p", "p.1-map"),), "map")
    failure = Failure(0, slot, "EXPR_TYPE", RecordError("EXPR_TYPE", "bad"))
    replayed = RecordOrigin("in", 2, 7, [("trace", b"t1"), ("uee.attempt", b"2"),
                                         ("uee.error.code", b"OLD")])
    headers = dead_letter_headers("p", failure, replayed)
    names = [name for name, _ in headers]
    assert names.count("uee.error.code") == 1 and dict(headers)["uee.error.code"] == b"EXPR_TYPE"
    assert dict(headers)["uee.attempt"] == b"2"
    assert dict(headers)["uee.error.retryable"] == b"false"
    assert dict(headers)["trace"] == b"t1"
    assert dict(headers)["__connect.errors.offset"] == b"7"
    assert attempt_of([]) == 1
