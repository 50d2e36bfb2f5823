"""A pipeline that fails wholesale pauses itself; the pause outlives the worker; `uee resume`
lets it go on from where it stopped."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from streams.topics import describe_topic
from tests.conftest import Completed
from tests.helpers import produce, unique

pytestmark = pytest.mark.e2e
Uee = Callable[..., Completed]


def test_pause_on_error_rate_survives_a_restart_until_resumed(
    kafka: str, uee: Uee, tmp_path: Path
) -> None:
    name, source, sink = unique("pz"), unique("pz.in"), unique("pz.out")
    produce(kafka, source, [(str(i).encode(), json.dumps({"amount": i} if i % 3 else {"x": i})
                             .encode()) for i in range(300)])
    path = tmp_path / "pz.yaml"

    def write(cents: str) -> None:
        path.write_text(f"pipeline: {name}\nsource: {{kafka: {{topic: {source}}}}}\n"
                        f"stages: [{{map: {{c: '{cents}'}}}}]\n"
                        f"sink: {{kafka: {{topic: {sink}}}}}\n"
                        "dlq: {pause_rate: 0.2, pause_window: 50}\n")

    env = {"UEE_BATCH_SIZE": "25"}
    write("amount * 2")
    first = uee("run", str(path), "--bootstrap", kafka, "--until-idle", "1", env=env)
    assert first.code == 1
    assert f"error[PIPELINE_PAUSED]: pipeline {name} is paused: 19 of the last 50 records " \
           "failed (38% > 20%)" in first.stderr
    assert '"state": "PAUSED"' in first.stderr  # the one structured log line
    assert describe_topic(kafka, sink).records == 31

    status = uee("status", "--bootstrap", kafka)
    assert name in status.stdout and "PAUSED" in status.stdout

    again = uee("run", str(path), "--bootstrap", kafka, "--until-idle", "1", env=env)
    assert again.code == 1 and "PIPELINE_PAUSED" in again.stderr
    assert describe_topic(kafka, sink).records == 31  # still paused: nothing consumed

    resumed = uee("resume", name, "--bootstrap", kafka)
    assert resumed.code == 0 and "RUNNING (it was paused)" in resumed.stdout
    write("coalesce(amount, 0) * 2")  # the fix
    last = uee("run", str(path), "--bootstrap", kafka, "--until-idle", "1", env=env)
    assert last.code == 0, last.stderr
    assert describe_topic(kafka, sink).records == 31 + 250
