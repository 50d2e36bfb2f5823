"""Small helpers shared by integration and end-to-end tests."""

from __future__ import annotations

import json
import subprocess
import uuid
from typing import Any

from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient

from uee.connectors.generator import generate_orders
from uee.streams.topics import read_all


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def produce(bootstrap: str, topic: str, records: list[tuple[bytes | None, bytes]],
            config: dict[str, Any] | None = None) -> None:
    """`config`: the producer's own (a secure one), instead of plaintext to `bootstrap`."""
    producer = Producer(config or {"bootstrap.servers": bootstrap, "linger.ms": 5})
    for key, value in records:
        producer.produce(topic, value, key)
    assert producer.flush(30) == 0


def sink_records(bootstrap: str, topic: str) -> list[tuple[bytes | None, dict[str, Any]]]:
    return [(r.key, json.loads(r.value or b"null")) for r in read_all(bootstrap, topic)]


def quickstart_expected(seed: int = 7, count: int = 5000) -> list[dict[str, Any]]:
    """examples/quickstart.yaml, written out by hand in Python."""
    expected = []
    for record in generate_orders(seed, count):
        if record["kind"] == "buy" and record["amount"] > 20:
            record["amount_cents"] = int(record["amount"] * 100)
            record["customer"] = record["customer"].upper()
            expected.append(record)
    return expected


def canonical(records: list[dict[str, Any]]) -> list[str]:
    return sorted(json.dumps(r, sort_keys=True) for r in records)


def wait_or_kill(process: subprocess.Popen[str], timeout: float) -> int:
    """The exit code; a process that does not exit in time is killed, never leaked, and
    the failure shows the end of its stderr when the test kept it in a pipe."""
    try:
        return process.wait(timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(10)
        tail = process.stderr.read()[-3000:] if process.stderr is not None else ""
        raise AssertionError(f"{process.args} did not exit within {timeout}s; its stderr "
                             f"ended with:\n{tail}") from None


def members_with_partitions(kafka: str, group: str) -> int:
    """Members of `group` that hold partitions now (0 while unknown or rebalancing)."""
    admin = AdminClient({"bootstrap.servers": kafka})
    try:
        [future] = admin.describe_consumer_groups([group]).values()
        described = future.result(timeout=10)
    except Exception:  # not known yet, or rebalancing
        return 0
    return sum(1 for m in described.members if m.assignment and m.assignment.topic_partitions)


def committed(kafka: str, group: str, topic: str, partitions: int) -> int:
    """The sum of `group`'s committed offsets on `topic` (a partition never committed: 0)."""
    consumer = Consumer({"bootstrap.servers": kafka, "group.id": group,
                         "enable.auto.commit": False})
    try:
        offsets = consumer.committed([TopicPartition(topic, p) for p in range(partitions)],
                                     timeout=10)
    finally:
        consumer.close()
    return sum(max(0, tp.offset) for tp in offsets)
