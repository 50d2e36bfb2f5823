"""A pipeline that fails wholesale pauses itself; the pause outlives the worker; `uee resume`
lets it go on from where it stopped."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.conftest import Completed
from tests.helpers import produce, unique
from uee.streams.topics import describe_topic

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
    # How many records a batch holds depends on the fetches, so the numbers vary a little;
    # a third of the records fail, which always exceeds the 20% threshold.
    assert re.search(rf"error\[PIPELINE_PAUSED\]: pipeline {re.escape(name)} is paused: "
                     r"\d+ of the last \d+ records failed \(\d+% > 20%\)", first.stderr)
    assert '"state": "PAUSED"' in first.stderr  # the one structured log line
    written = describe_topic(kafka, sink).records
    dead = describe_topic(kafka, f"{name}.dlq").records
    assert 0 < written < 300 and dead > 0

    status = uee("status", "--bootstrap", kafka)
    assert name in status.stdout and "PAUSED" in status.stdout

    again = uee("run", str(path), "--bootstrap", kafka, "--until-idle", "1", env=env)
    assert again.code == 1 and "PIPELINE_PAUSED" in again.stderr
    assert describe_topic(kafka, sink).records == written  # still paused: nothing consumed
    transitions = [json.loads(line) for line in again.stderr.splitlines()
                   if line.startswith('{"provider"')]
    assert ("ACQUIRING", "PAUSED") in [(t["from"], t["to"]) for t in transitions]
    row = next(p for p in json.loads(uee("status", "--bootstrap", kafka, "--json").stdout)
               ["providers"] if p["pipeline"] == name)
    assert row["state"] == "PAUSED" and "failed" in row["reason"]  # stopped, still paused
    assert ("RUNNING", "PAUSED") in [(t["from"], t["to"]) for t in row["history"]]

    resumed = uee("resume", name, "--bootstrap", kafka)
    assert resumed.code == 0 and "RUNNING (it was paused)" in resumed.stdout
    write("coalesce(amount, 0) * 2")  # the fix
    last = uee("run", str(path), "--bootstrap", kafka, "--until-idle", "1", env=env)
    assert last.code == 0, last.stderr
    # Every record not dead-lettered before the pause reached the sink, none was lost.
    assert describe_topic(kafka, sink).records + dead == 300
    row = next(p for p in json.loads(uee("status", "--bootstrap", kafka, "--json").stdout)
               ["providers"] if p["pipeline"] == name)
    assert row["state"] == "TERMINATED" and row["control"]["state"] == "RUNNING"
    assert (row["history"][-2]["to"], row["history"][-1]["to"]) == ("RUNNING", "TERMINATED")
