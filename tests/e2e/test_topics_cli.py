"""`uee topics ...` and `uee broker` as a user types them."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Callable

import pytest

from tests.conftest import Completed, wait_until
from tests.helpers import produce, unique, wait_or_kill
from uee.streams.broker import free_port
from uee.streams.names import CONTROL_TOPIC, ledger_topic
from uee.streams.topics import ensure_topics

pytestmark = pytest.mark.e2e
Uee = Callable[..., Completed]


def test_list_describe_tail(kafka: str, uee: Uee) -> None:
    topic = unique("cli.topic")
    records = [(str(i).encode(), json.dumps({"n": i, "name": "é"}).encode()) for i in range(250)]
    records.append((b"bin", b"\x00\xff\x10binary"))
    ensure_topics(kafka, [topic], 1, 1)  # one partition: "the last records" is unambiguous
    produce(kafka, topic, records)

    listed = uee("topics", "list", "--bootstrap", kafka)
    assert listed.code == 0, listed.stderr
    [row] = [line for line in listed.stdout.splitlines() if topic in line]
    assert [cell.strip() for cell in row.split("│")[1:4]] == [topic, "1", "251"]

    described = uee("topics", "describe", topic, "--bootstrap", kafka)
    assert described.code == 0, described.stderr
    assert "total records: 251" in described.stdout

    tailed = uee("topics", "tail", topic, "-n", "3", "--bootstrap", kafka)
    assert tailed.code == 0, tailed.stderr
    assert tailed.stdout.count("partition ") == 3
    assert "key bin" in tailed.stdout
    assert "b'\\x00\\xff\\x10binary'" in tailed.stdout  # bytes shown safely
    assert '"name": "é"' in tailed.stdout  # JSON pretty-printed


def test_internal_topics_are_listed_only_with_all(kafka: str, uee: Uee) -> None:
    user = unique("cli.user")
    app = os.environ["UEE_APP"]
    internal = [CONTROL_TOPIC, f"{unique('cli')}-__assignor-__leader", f"{app}-state",
                f"{unique('other')}-providers-changelog", ledger_topic(f"{user}.dlq")]
    ensure_topics(kafka, [user, *internal], 1, 1)

    listed = uee("topics", "list", "--bootstrap", kafka)
    assert listed.code == 0, listed.stderr
    assert user in listed.stdout
    assert not any(topic in listed.stdout for topic in internal), listed.stdout
    assert "internal topic(s) not shown; --all shows them" in listed.stdout

    everything = uee("topics", "list", "--all", "--bootstrap", kafka)
    assert everything.code == 0, everything.stderr
    assert all(topic in everything.stdout for topic in [user, *internal]), everything.stdout
    assert "not shown" not in everything.stdout


def test_bootstrap_comes_from_the_environment(kafka: str, uee: Uee) -> None:
    done = uee("topics", "list", env={"UEE_BOOTSTRAP": kafka})
    assert done.code == 0, done.stderr
    assert f"topics at {kafka}" in done.stdout


def test_clear_errors_without_a_broker(uee: Uee) -> None:
    missing = uee("topics", "list")
    assert missing.code == 2
    assert "--bootstrap" in missing.stderr and "Traceback" not in missing.stderr

    unreachable = uee("topics", "describe", "x", "--bootstrap", f"127.0.0.1:{free_port()}")
    assert unreachable.code == 1
    assert unreachable.stderr.startswith("error[KAFKA_UNREACHABLE]: cannot reach Kafka at")
    assert "Traceback" not in unreachable.stderr

    nope = uee("topics", "describe", "no-such-topic", "--bootstrap", "127.0.0.1:1")
    assert nope.code == 1


def test_unknown_topic(kafka: str, uee: Uee) -> None:
    done = uee("topics", "tail", unique("nope"), "--bootstrap", kafka)
    assert done.code == 1
    assert done.stderr.startswith("error[TOPIC_NOT_FOUND]")


def test_broker_command_serves_until_interrupted(uee_bin: str, uee: Uee) -> None:
    port = free_port()
    process = subprocess.Popen([uee_bin, "broker", "--port", str(port)], stdout=subprocess.PIPE,
                               text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(process.stdout or []), daemon=True)
    reader.start()
    try:
        wait_until(lambda: any("bootstrap: " in line for line in lines), 30, "the broker address")
        assert any(f"127.0.0.1:{port}" in line for line in lines)
        listed = uee("topics", "list", "--bootstrap", f"127.0.0.1:{port}")
        assert listed.code == 0, listed.stderr
    finally:
        process.send_signal(signal.SIGINT)
        assert wait_or_kill(process, 15) == 0
        reader.join(5)
    assert any("embedded broker stopped" in line for line in lines)
    assert sys.platform != "linux" or _port_closed(port)


def _port_closed(port: int) -> bool:
    import socket

    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) != 0
