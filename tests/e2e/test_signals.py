"""`uee run` without --until-idle runs until SIGINT/SIGTERM, then stops cleanly."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.conftest import REPO, Completed, wait_until
from tests.helpers import produce, sink_records, unique, wait_or_kill
from uee.streams.topics import TopicNotFoundError, describe_topic

pytestmark = pytest.mark.e2e


def records_in(bootstrap: str, topic: str) -> int:
    try:
        return describe_topic(bootstrap, topic).records
    except TopicNotFoundError:
        return 0  # the run has not created it yet


def start(uee_bin: str, *args: str) -> tuple[subprocess.Popen[str], list[str]]:
    env = {k: v for k, v in os.environ.items() if k != "UEE_BOOTSTRAP"}
    env.update({"UEE_SESSION_TIMEOUT_MS": "3000", "PYTHONUNBUFFERED": "1", "COLUMNS": "200"})
    process = subprocess.Popen([uee_bin, "run", *args], stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True, env=env, cwd=REPO)
    lines: list[str] = []
    threading.Thread(target=lambda: lines.extend(process.stdout or []), daemon=True).start()
    return process, lines


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_signal_stops_a_run_cleanly_after_committing(
    kafka: str, uee: Callable[..., Completed], uee_bin: str, tmp_path: Path,
    signum: signal.Signals
) -> None:
    pipeline, source, sink = unique("sig"), unique("sig.in"), unique("sig.out")
    produce(kafka, source, [(str(i).encode(), b'{"n": %d}' % i) for i in range(500)])
    path = tmp_path / "sig.yaml"
    path.write_text(f"pipeline: {pipeline}\nsource: {{kafka: {{topic: {source}}}}}\n"
                    f"sink: {{kafka: {{topic: {sink}}}}}\n")
    process, lines = start(uee_bin, str(path), "--bootstrap", kafka)
    try:
        wait_until(lambda: records_in(kafka, sink) == 500, 60, "all records at the sink")
    finally:
        process.send_signal(signum)
        code = wait_or_kill(process, 30)
    assert code == 0, "".join(lines)
    output = "".join(lines)
    assert "uee run summary" in output and "Traceback" not in output
    # The drain, as the state tables keep it: the worker DRAINING then stopped, the provider
    # TERMINATED with a final checkpoint covering every record.
    document = json.loads(uee("status", "--bootstrap", kafka, "--json").stdout)
    [worker] = document["app"]["workers"]
    assert worker["state"] == "DRAINING" and worker["stopped"]
    [row] = [p for p in document["providers"] if p["pipeline"] == pipeline]
    # The document's shape, as `uee status --json` promises it (more keys may follow).
    assert {"app", "providers"} <= document.keys()
    assert {"pipeline", "state", "reason", "since", "checkpoint", "records"} <= row.keys()
    assert {"cursor", "urn", "at"} <= row["checkpoint"].keys()
    assert row["state"] == "TERMINATED" and row["history"][-1]["trigger"] == "drain"
    assert sum(row["checkpoint"]["cursor"]["offsets"].values()) == 500

    # Everything was committed: a second run of the same pipeline reads nothing new.
    process, lines = start(uee_bin, str(path), "--bootstrap", kafka, "--until-idle", "1")
    assert wait_or_kill(process, 60) == 0
    assert re.search(rf"│ {re.escape(pipeline)}\s+│\s+0 │", "".join(lines)), "".join(lines)
    assert len(sink_records(kafka, sink)) == 500


def slow_pipeline(tmp_path: Path) -> Path:
    path = tmp_path / "slow.yaml"
    path.write_text("pipeline: slow\nsource: {generator: {count: 100000, rate: 50}}\n"
                    "sink: {kafka: {topic: slow.out}}\n")
    return path


def embedded_broker_port(lines: list[str]) -> int | None:
    match = re.search(r"embedded broker .* at 127\.0\.0\.1:(\d+)", "".join(lines))
    return int(match.group(1)) if match else None


def assert_stopped_cleanly(process: subprocess.Popen[str], lines: list[str], port: int
                           ) -> None:
    code = wait_or_kill(process, 30)
    assert code == 0, "".join(lines)
    assert "Traceback" not in "".join(lines)
    with socket.socket() as probe:
        assert probe.connect_ex(("127.0.0.1", port)) != 0, "the broker still listens"


def test_ctrl_c_stops_the_embedded_broker_too(uee_bin: str, tmp_path: Path) -> None:
    process, lines = start(uee_bin, str(slow_pipeline(tmp_path)))
    try:
        wait_until(lambda: embedded_broker_port(lines) is not None, 30,
                   "the embedded broker to start")
        wait_until(lambda: "running 1 pipeline" in "".join(lines), 30, "the pipeline to run")
    finally:
        process.send_signal(signal.SIGINT)
    assert_stopped_cleanly(process, lines, embedded_broker_port(lines) or 0)


def test_sigterm_while_it_starts_stops_it_cleanly_with_the_embedded_broker(
        uee_bin: str, tmp_path: Path) -> None:
    """The embedded broker is up, the worker not yet (topics, control plane, Faust app):
    `uee run`'s own handler is not installed yet, the CLI's is."""
    process, lines = start(uee_bin, str(slow_pipeline(tmp_path)))
    try:
        wait_until(lambda: embedded_broker_port(lines) is not None, 30,
                   "the embedded broker to start")
    finally:
        process.send_signal(signal.SIGTERM)
    assert_stopped_cleanly(process, lines, embedded_broker_port(lines) or 0)
    assert "running 1 pipeline" not in "".join(lines), "the signal came after the start"
