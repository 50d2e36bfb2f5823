"""At-least-once under `kill -9`: a worker killed mid-run loses nothing when restarted."""

from __future__ import annotations

import json
import os
import signal
import subprocess
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest

from streams.topics import describe_topic, ensure_topics, read_all
from tests.conftest import Completed, wait_until
from tests.helpers import produce, unique

pytestmark = pytest.mark.e2e
Uee = Callable[..., Completed]
RECORDS = 100_000


def test_kill_9_mid_run_then_restart_loses_nothing(
    kafka: str, uee: Uee, uee_bin: str, tmp_path: Path, record_property: Callable[..., None]
) -> None:
    pipeline, source, sink = unique("alo"), unique("alo.in"), unique("alo.out")
    ensure_topics(kafka, [source, sink], 3, 1)
    produce(kafka, source, [(str(i).encode(), json.dumps({"id": i, "amount": i % 97}).encode())
                            for i in range(RECORDS)])
    path = tmp_path / "alo.yaml"
    path.write_text(f"pipeline: {pipeline}\nsource: {{kafka: {{topic: {source}}}}}\n"
                    "stages:\n  - map: {cents: amount * 100}\n"
                    f"sink: {{kafka: {{topic: {sink}}}}}\n")

    # Small batches make the run last long enough to be killed in the middle of it.
    env = {**os.environ, "UEE_SESSION_TIMEOUT_MS": "3000", "UEE_BATCH_SIZE": "20"}
    worker = subprocess.Popen([uee_bin, "run", str(path), "--bootstrap", kafka, "--quiet"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    try:
        wait_until(lambda: describe_topic(kafka, sink).records >= 3_000, 90,
                   "the first worker to write some records")
    finally:
        worker.send_signal(signal.SIGKILL)
        worker.wait(10)
    written_before_kill = describe_topic(kafka, sink).records
    assert written_before_kill < RECORDS, "the worker finished before it could be killed"

    restarted = uee("run", str(path), "--bootstrap", kafka, "--until-idle", "1", "--quiet")
    assert restarted.code == 0, restarted.stderr

    keys = Counter(r.key for r in read_all(kafka, sink, timeout=60))
    expected = {str(i).encode() for i in range(RECORDS)}
    lost = expected - set(keys)
    duplicates = sum(keys.values()) - len(keys)
    record_property("written_before_kill", written_before_kill)
    record_property("duplicates", duplicates)
    print(f"killed after {written_before_kill} records; lost {len(lost)}, "
          f"duplicates {duplicates}")
    assert not lost, f"{len(lost)} records lost, e.g. {sorted(lost)[:5]}"
    assert set(keys) == expected
