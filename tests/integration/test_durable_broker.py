"""The durable embedded broker (Tansu on SeaweedFS in a folder): killed with -9, storage and
broker both, and started again on the same folder, it has every topic, record and committed
offset back; `uee run --durable DIR` leaves its topics and tables in DIR."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

from confluent_kafka import Consumer, TopicPartition

from tests.conftest import REPO
from tests.helpers import committed, produce, unique
from uee.streams.broker import EmbeddedBroker
from uee.streams.state import changelog_topic
from uee.streams.topics import describe_topic, ensure_topics, read_all, topic_partitions


def kill_9(pid: int | None) -> None:
    assert pid is not None
    os.kill(pid, signal.SIGKILL)


def test_killed_with_9_and_started_again_on_its_folder_it_has_everything_back(
    tmp_path: Path
) -> None:
    folder, topic, group = str(tmp_path / "durable"), unique("durable"), unique("g")
    records = [(str(n).encode(), b'{"n": %d}' % n) for n in range(2000)]
    first = EmbeddedBroker(durable=folder)
    first.start()
    try:
        ensure_topics(first.bootstrap, [topic], 3, 1)
        produce(first.bootstrap, topic, records)
        consumer = Consumer({"bootstrap.servers": first.bootstrap, "group.id": group,
                             "enable.auto.commit": False})
        try:
            consumer.commit(offsets=[TopicPartition(topic, p, 100 + p) for p in range(3)],
                            asynchronous=False)
        finally:
            consumer.close()
        assert committed(first.bootstrap, group, topic, 3) == 303
        assert first.storage is not None
        kill_9(first.pid)
        kill_9(first.storage.pid)
    finally:
        first.stop()
    again = EmbeddedBroker(durable=folder)
    again.start()
    try:
        assert topic_partitions(again.bootstrap)[topic] == 3
        # ListOffsets is far off on this storage; uee reads the ends from Fetch.
        assert describe_topic(again.bootstrap, topic).records == 2000
        values = sorted(json.loads(r.value or b"")["n"] for r in read_all(again.bootstrap, topic))
        assert values == list(range(2000))
        assert committed(again.bootstrap, group, topic, 3) == 303
    finally:
        again.stop()


def test_uee_run_durable_keeps_its_topics_and_tables_in_the_folder(
    uee_bin: str, tmp_path: Path
) -> None:
    folder = tmp_path / "durable"
    env = {k: v for k, v in os.environ.items() if k != "UEE_BOOTSTRAP"}
    started = time.monotonic()
    done = subprocess.run([uee_bin, "run", "examples/quickstart.yaml", "--durable", str(folder),
                           "--until-idle", "1", "--quiet"], capture_output=True, text=True,
                          timeout=180, env=env, cwd=REPO)
    assert done.returncode == 0, done.stderr
    assert f"its topics are kept in {folder}" in " ".join(done.stdout.split())
    print(f"uee run --durable: {time.monotonic() - started:.1f} s")
    with EmbeddedBroker(durable=str(folder)) as broker:
        topics = topic_partitions(broker.bootstrap)
        assert describe_topic(broker.bootstrap, "orders.big-buys").records > 0
        assert changelog_topic(os.environ["UEE_APP"], "checkpoints") in topics


def test_durable_with_a_bootstrap_is_refused(uee_bin: str, tmp_path: Path) -> None:
    done = subprocess.run([uee_bin, "run", "examples/quickstart.yaml", "--durable",
                           str(tmp_path), "--bootstrap", "127.0.0.1:1"], capture_output=True,
                          text=True, timeout=60, cwd=REPO)
    assert done.returncode == 2 and "give one of them" in done.stderr
    assert "Traceback" not in done.stderr
