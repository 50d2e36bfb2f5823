"""The control topic: pipeline states that outlive a worker, and commands to change them.

One compacted topic, `uee.control`, keyed by `pipeline:<name>`, each value a small JSON
object (`{"state": "PAUSED", "reason": ..., "at": ...}`). A worker reads it at start (a
pause survives a restart) and watches it while running (`uee resume` reaches it); the
quota controller's permit broadcasts will travel on the same topic.
"""

from __future__ import annotations

import datetime
import json
import time
import uuid
from typing import Any

from confluent_kafka import Consumer, Producer, TopicPartition

from uee.streams.names import CONTROL_TOPIC
from uee.streams.settings import kafka_logger
from uee.streams.topics import ensure_topics, read_all, topic_partitions

PAUSED, RUNNING = "PAUSED", "RUNNING"


def ensure_control_topic(bootstrap: str, timeout: float = 15.0) -> None:
    """One partition, compacted: the latest state per key is all that must be kept."""
    ensure_topics(bootstrap, [CONTROL_TOPIC], 1, 1, timeout=timeout,
                  configs={"cleanup.policy": "compact"})


def _key(pipeline: str) -> bytes:
    return f"pipeline:{pipeline}".encode()


def publish_state(bootstrap: str, pipeline: str, state: str, reason: str,
                  timeout: float = 15.0) -> None:
    """Record a state under `pipeline:<pipeline>` (sinks use `sink:<topic>` as the name)."""
    ensure_control_topic(bootstrap, timeout)
    producer = Producer({"bootstrap.servers": bootstrap, "logger": kafka_logger()})
    value = {"state": state, "reason": reason,
             "at": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")}
    producer.produce(CONTROL_TOPIC, json.dumps(value).encode(), _key(pipeline))
    if producer.flush(timeout):
        raise RuntimeError(f"could not write to {CONTROL_TOPIC}")


def pipeline_states(bootstrap: str) -> dict[str, dict[str, Any]]:
    """The latest state of every pipeline that has one."""
    if CONTROL_TOPIC not in topic_partitions(bootstrap):
        return {}
    states: dict[str, dict[str, Any]] = {}
    for record in read_all(bootstrap, CONTROL_TOPIC):
        if record.key and record.key.startswith(b"pipeline:") and record.value:
            try:
                states[record.key.decode()[len("pipeline:"):]] = json.loads(record.value)
            except ValueError:
                continue
    return states


class ControlWatcher:
    """Follows the control topic from a worker's thread, without a consumer group."""

    def __init__(self, bootstrap: str) -> None:
        self.bootstrap = bootstrap
        self._consumer: Consumer | None = None

    def open(self) -> dict[str, dict[str, Any]]:
        """The states as they are now; later changes come from `changes()`."""
        ensure_control_topic(self.bootstrap)
        current = pipeline_states(self.bootstrap)
        self._consumer = Consumer({
            "bootstrap.servers": self.bootstrap, "group.id": f"uee-control-{uuid.uuid4().hex}",
            "enable.auto.commit": False, "logger": kafka_logger(),
            "client.id": "uee-control",
        })
        _, high = self._consumer.get_watermark_offsets(TopicPartition(CONTROL_TOPIC, 0),
                                                       timeout=10)
        # Tansu's ListOffsets can point before the last batch: re-reading it is harmless,
        # states are idempotent.
        self._consumer.assign([TopicPartition(CONTROL_TOPIC, 0, max(0, high - 1))])
        return current

    def changes(self, wait: float = 0.0) -> dict[str, dict[str, Any]]:
        assert self._consumer is not None, "open() first"
        changes: dict[str, dict[str, Any]] = {}
        deadline = time.monotonic() + wait
        while True:
            messages: list[Any] = self._consumer.consume(100, max(0.0, deadline - time.monotonic()))
            for message in messages:
                if message.error() is not None:  # end of partition, or transient
                    continue
                key, value = message.key() or b"", message.value()
                if key.startswith(b"pipeline:") and value:
                    try:
                        changes[key.decode()[len("pipeline:"):]] = json.loads(value)
                    except ValueError:
                        continue
            if not messages or time.monotonic() >= deadline:
                return changes

    def close(self) -> None:
        if self._consumer is not None:
            self._consumer.close()
            self._consumer = None
