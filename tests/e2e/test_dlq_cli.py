"""`uee dlq list/show/replay` on the broker, and `on_error: fail`."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.conftest import Completed
from tests.helpers import produce, unique
from uee.streams.topics import read_all

pytestmark = pytest.mark.e2e
Uee = Callable[..., Completed]


def write(path: Path, name: str, source: str, sink: str, cents: str, extra: str = "") -> Path:
    path.write_text(f"pipeline: {name}\nsource: {{kafka: {{topic: {source}}}}}\n"
                    f"stages:\n  - map: {{cents: '{cents}'}}\n"
                    f"sink: {{kafka: {{topic: {sink}}}}}\n{extra}")
    return path


def test_inspect_fix_and_replay_dead_letters(kafka: str, uee: Uee, tmp_path: Path) -> None:
    name, source, sink = unique("dl"), unique("dl.in"), unique("dl.out")
    dlq = f"{name}.dlq"
    produce(kafka, source, [(b"good", b'{"amount": 1}'), (b"no-amount", b'{"price": 2}'),
                            (b"broken", b"{oops")])
    v1 = write(tmp_path / "v1.yaml", name, source, sink, "amount * 100")
    assert uee("run", str(v1), "--bootstrap", kafka, "--until-idle", "1").code == 0

    assert {dict(r.headers)["uee.max_replays"] for r in read_all(kafka, dlq)} == {b"3"}
    listed = uee("dlq", "list", "--bootstrap", kafka)
    [row] = [line for line in listed.stdout.splitlines() if dlq in line]
    assert "EXPR_MISSING_FIELD (1)" in row and "DECODE_JSON (1)" in row and " 2 " in row

    shown = uee("dlq", "show", dlq, "--code", "EXPR_MISSING_FIELD", "--bootstrap", kafka)
    assert shown.code == 0, shown.stderr
    assert f"EXPR_MISSING_FIELD  pipeline {name}  stage {name}.1-map  attempt 1" in shown.stdout
    assert "field 'amount' is missing" in shown.stdout and "DECODE_JSON" not in shown.stdout

    dry = uee("dlq", "replay", dlq, "--where", 'code == "EXPR_MISSING_FIELD"', "--dry-run",
              "--bootstrap", kafka)
    assert f"would replay 1; 1 to {source}" in dry.stdout
    assert len(read_all(kafka, source)) == 3  # a dry run sends nothing

    # The user fixes the pipeline, then replays what it used to reject.
    v2 = write(tmp_path / "v2.yaml", name, source, sink, "coalesce(amount, price) * 100")
    replayed = uee("dlq", "replay", dlq, "--pipeline", name, "--where",
                   'record.price == 2', "--bootstrap", kafka)
    assert f"replayed 1; 1 to {source}" in replayed.stdout, replayed.stdout
    again = uee("dlq", "replay", dlq, "--where", "record.price == 2", "--bootstrap", kafka)
    assert "replayed 0" in again.stdout and "1 were replayed before" in again.stdout
    assert uee("run", str(v2), "--bootstrap", kafka, "--until-idle", "1").code == 0

    resent = [r for r in read_all(kafka, source) if r.key == b"no-amount"][-1]
    assert dict(resent.headers)["uee.attempt"] == b"2"
    outputs = {r.key: json.loads(r.value or b"null") for r in read_all(kafka, sink)}
    assert outputs[b"no-amount"]["cents"] == 200
    assert len(read_all(kafka, sink)) == 2  # good and no-amount, each once

    refused = uee("dlq", "replay", dlq, "--max-replays", "0", "--bootstrap", kafka)
    assert "1 refused: already replayed 0 times" in refused.stdout


def test_where_errors_are_clear(kafka: str, uee: Uee) -> None:
    done = uee("dlq", "replay", "any.dlq", "--where", "code ==", "--bootstrap", kafka)
    assert done.code == 1
    assert done.stderr.startswith("error[DLQ_REPLAY]: --where: invalid expression")


def test_on_error_fail_stops_at_the_first_failing_record(kafka: str, uee: Uee,
                                                          tmp_path: Path) -> None:
    name, source, sink = unique("ff"), unique("ff.in"), unique("ff.out")
    produce(kafka, source, [(b"a", b'{"amount": 1}'), (b"b", b'{"x": 1}')])
    path = write(tmp_path / "ff.yaml", name, source, sink, "amount * 100",
                 "dlq: none\non_error: fail\n")
    done = uee("run", str(path), "--bootstrap", kafka, "--until-idle", "1")
    assert done.code == 1
    assert "error[AGENT_FAILED]" in done.stderr
    assert f"pipeline {name} has on_error: fail, and a record ({source}:" in done.stderr
    assert "EXPR_MISSING_FIELD: field 'amount' is missing" in done.stderr
