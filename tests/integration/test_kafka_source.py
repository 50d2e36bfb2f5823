"""The Kafka source on the real broker: knowing when the input is read to its end, which
`uee run --until-idle` waits for instead of trusting a quiet moment."""

from __future__ import annotations

import os
import uuid

import pytest

from tests.conftest import wait_until
from tests.helpers import produce
from uee.connectors.kafka import KafkaSource
from uee.streams.settings import Settings
from uee.streams.topics import ensure_topics, is_tansu

pytestmark = pytest.mark.integration


def source_for(kafka: str, topic: str, group: str) -> KafkaSource:
    settings = Settings(bootstrap=kafka, session_timeout_ms=3000)
    return KafkaSource(topic, settings.consumer_config(group))


def drain(source: KafkaSource, count: int) -> int:
    """Poll until `count` more records came and the source says it is caught up; commit."""
    seen = 0

    def done() -> bool:
        nonlocal seen
        batch = source.poll(1000, 0.1)
        if batch is not None:
            seen += len(batch)
            source.commit(batch)
            return False
        return seen >= count and source.caught_up()

    wait_until(done, 60, f"{count} records and the end of the input")
    return seen


def first_batch(source: KafkaSource) -> int:
    batches = []

    def came() -> bool:
        batch = source.poll(1000, 0.1)
        if batch is not None:
            batches.append(batch)
            source.commit(batch)
        return bool(batches)

    wait_until(came, 60, "the first batch")
    return len(batches[0])


def test_caught_up_only_at_the_end_of_the_input_and_after_a_restart_at_the_end(
        kafka: str) -> None:
    topic, group = f"src.{uuid.uuid4().hex[:8]}", f"g.{uuid.uuid4().hex[:8]}"
    ensure_topics(kafka, [topic], 3, 1)
    produce(kafka, topic, [(str(i).encode(), b"{}") for i in range(3000)])

    source = source_for(kafka, topic, group)
    source.open()
    try:
        first = first_batch(source)
        assert first <= 1000
        assert not source.caught_up()  # at least 2,000 records are still to read
        assert first + drain(source, 3000 - first) == 3000
        produce(kafka, topic, [(b"late", b"{}")])
        wait_until(lambda: not source.caught_up(), 30, "the late record's watermark")
        assert drain(source, 1) == 1
    finally:
        source.close()

    # A new member of the group starts where the group committed: at the end. It reads
    # nothing and still knows it is caught up (librdkafka has no position for it yet).
    again = source_for(kafka, topic, group)
    again.open()
    try:
        assert drain(again, 0) == 0
    finally:
        again.close()


def test_the_test_broker_is_recognised(kafka: str) -> None:
    """Tansu gets a short session timeout (its group joins wait half of it); others do not."""
    if os.environ.get("UEE_TEST_BOOTSTRAP"):
        pytest.skip("an existing cluster: which broker it is, the test cannot know")
    embedded = os.environ.get("UEE_TEST_KAFKA", "embedded") in ("embedded", "durable")
    assert is_tansu(kafka) == embedded
