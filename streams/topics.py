"""Topic administration and inspection: create, list, describe, tail.

Record counts come from watermarks, and the end of a partition is taken from a
Fetch response, not from ListOffsets alone: Tansu 0.6.0 answers
ListOffsets(latest) with the base offset of the last record batch + 1, which
undercounts. Reading from that offset returns the last batch and, with it, the
true high watermark.
"""

from __future__ import annotations

import socket
import time
from dataclasses import dataclass
from typing import Any

from confluent_kafka import (
    Consumer,
    KafkaError,
    KafkaException,
    TopicCollection,
    TopicPartition,
)
from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]

from uee.connectors.kafka import message_headers
from uee.errors import UeeError
from uee.streams.security import mismatch, refusal
from uee.streams.settings import settings_for


class KafkaUnavailableError(UeeError):
    code = "KAFKA_UNREACHABLE"


class TopicNotFoundError(UeeError):
    code = "TOPIC_NOT_FOUND"


@dataclass(frozen=True)
class PartitionInfo:
    partition: int
    low: int
    high: int

    @property
    def records(self) -> int:
        return max(0, self.high - self.low)


@dataclass(frozen=True)
class TopicInfo:
    name: str
    partitions: tuple[PartitionInfo, ...]

    @property
    def records(self) -> int:
        return sum(p.records for p in self.partitions)


@dataclass(frozen=True)
class TailRecord:
    partition: int
    offset: int
    timestamp_ms: int | None
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes], ...]


def _admin(bootstrap: str) -> AdminClient:
    return AdminClient(settings_for(bootstrap).admin_config())


def _unreachable(bootstrap: str, reason: str) -> KafkaUnavailableError:
    return KafkaUnavailableError(
        f"cannot reach Kafka at {bootstrap} ({reason}); check --bootstrap or UEE_BOOTSTRAP, "
        "or start a local broker with `uee broker`"
    )


def _check_reachable(bootstrap: str) -> None:
    """Fail at once when no bootstrap server accepts a connection, instead of after a timeout."""
    reasons = []
    for server in bootstrap.split(","):
        host, _, port = server.strip().rpartition(":")
        try:
            with socket.create_connection((host or "localhost", int(port)), timeout=3):
                return
        except (OSError, ValueError) as exc:
            reasons.append(f"{server.strip()}: {getattr(exc, 'strerror', None) or exc}")
    raise _unreachable(bootstrap, "; ".join(reasons))


def _metadata(bootstrap: str, timeout: float) -> Any:
    """The cluster's metadata: the first request of every command, so a broker that refuses
    uee's credentials or TLS is reported here, in uee's words (streams.security), as soon as
    librdkafka says so rather than at the end of the timeout."""
    _check_reachable(bootstrap)
    settings = settings_for(bootstrap)
    seen: list[KafkaError] = []
    config: dict[str, Any] = {**settings.admin_config(), "error_cb": seen.append}
    admin = AdminClient(config)
    deadline = time.monotonic() + timeout
    probed = False
    wait = 1.0  # doubling: a slow broker's answer still fits in a later wait
    while True:
        try:
            return admin.list_topics(timeout=max(0.1, min(wait, deadline - time.monotonic())))
        except KafkaException as exc:
            wait *= 2
            admin.poll(0)  # serves the error callback
            for error in (exc.args[0], *seen):
                refused = refusal(error, bootstrap, settings)
                if refused is not None:
                    raise refused from exc
            # A TLS port spoken to in plaintext (or the reverse) only closes the connection;
            # asking the port which it speaks tells the two apart from a broker still starting.
            if not probed and exc.args[0].code() == KafkaError._TRANSPORT:
                probed = True  # once: a healthy broker never sees the probe
                wrong = mismatch(bootstrap, settings)
                if wrong is not None:
                    raise wrong from exc
            if time.monotonic() >= deadline:
                raise _unreachable(bootstrap, exc.args[0].str()) from exc


def is_tansu(bootstrap: str, timeout: float = 10.0) -> bool:
    """True when the broker is Tansu (the embedded broker, or one started by hand), which
    names its cluster after itself unless told otherwise."""
    return str(_metadata(bootstrap, timeout).cluster_id or "").startswith("tansu")


def topic_identity(bootstrap: str, topic: str, timeout: float = 10.0) -> str:
    """The cluster's id and the topic's id: they change when either is made anew (a new
    embedded broker, a topic deleted and created again), whatever the names."""
    cluster = str(_metadata(bootstrap, timeout).cluster_id or "")
    admin = _admin(bootstrap)  # kept until the answer: a client collected cancels it
    [future] = admin.describe_topics(TopicCollection([topic]), request_timeout=timeout).values()
    try:
        description: Any = future.result(timeout)
    except KafkaException as exc:
        raise KafkaUnavailableError(f"cannot describe topic {topic} at {bootstrap}: "
                                    f"{exc.args[0].str()}") from exc
    except TimeoutError as exc:
        raise KafkaUnavailableError(f"topic {topic} at {bootstrap} was not described within "
                                    f"{timeout:g}s; check that the broker is up") from exc
    return f"{cluster}/{description.topic_id}"


def topic_partitions(bootstrap: str, timeout: float = 10.0) -> dict[str, int]:
    """User topics (not __internal ones) and their partition counts."""
    metadata = _metadata(bootstrap, timeout)
    return {
        name: len(topic.partitions)
        for name, topic in metadata.topics.items()
        if not name.startswith("__") and topic.error is None
    }


def ensure_topics(
    bootstrap: str, topics: list[str], partitions: int, replication: int, timeout: float = 15.0,
    configs: dict[str, str] | None = None,
) -> list[str]:
    """Create the topics that do not exist yet, with these topic configs; return the ones
    created."""
    existing = topic_partitions(bootstrap, timeout)
    wanted = sorted({t for t in topics if t not in existing})
    if not wanted:
        return []
    admin = _admin(bootstrap)  # must outlive the futures
    futures = admin.create_topics(
        [NewTopic(t, partitions, replication, config=dict(configs or {})) for t in wanted],
        operation_timeout=timeout,
    )
    for topic, future in futures.items():
        try:
            future.result(timeout)
        except KafkaException as exc:
            if exc.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
                raise KafkaUnavailableError(f"cannot create topic '{topic}': {exc.args[0].str()}"
                                            ) from exc
    _wait_for_topics(bootstrap, wanted, timeout)
    return wanted


def _wait_for_topics(bootstrap: str, topics: list[str], timeout: float) -> None:
    """Until every partition of the new topics has a leader: Apache Kafka lists a topic a
    moment before its partitions are led, and answers NOT_LEADER_FOR_PARTITION until then."""
    deadline = time.monotonic() + timeout
    while True:
        listed = _metadata(bootstrap, timeout).topics
        missing = [t for t in topics if t not in listed or not _led(listed[t])]
        if not missing:
            return
        if time.monotonic() > deadline:
            raise KafkaUnavailableError(f"topics {missing} were created but never became "
                                        "available (no partition leader)")
        time.sleep(0.1)


def _led(topic: Any) -> bool:
    return topic.error is None and bool(topic.partitions) and all(
        p.error is None and p.leader >= 0 for p in topic.partitions.values())


def _inspection_consumer(bootstrap: str) -> Consumer:
    return Consumer(settings_for(bootstrap).inspect_config())


def describe_topics(bootstrap: str, topics: dict[str, int], timeout: float = 10.0
                    ) -> list[TopicInfo]:
    """Low/high watermarks of every partition, with the high one confirmed by a Fetch."""
    consumer = _inspection_consumer(bootstrap)
    try:
        listed: dict[tuple[str, int], tuple[int, int]] = {}
        for topic, count in topics.items():
            for partition in range(count):
                listed[(topic, partition)] = _listed_watermarks(
                    consumer, TopicPartition(topic, partition), timeout)
        confirmed = _fetched_high_watermarks(consumer, listed, timeout)
    except KafkaException as exc:
        raise KafkaUnavailableError(f"cannot read offsets from {bootstrap}: {exc}") from exc
    finally:
        consumer.close()
    result = []
    for topic, count in sorted(topics.items()):
        parts = []
        for partition in range(count):
            low, listed_high = listed[(topic, partition)]
            parts.append(PartitionInfo(partition, low,
                                       max(listed_high, confirmed.get((topic, partition), 0))))
        result.append(TopicInfo(topic, tuple(parts)))
    return result


def end_offsets(bootstrap: str, partitions: list[tuple[str, int]], timeout: float = 10.0
                ) -> dict[tuple[str, int], int]:
    """The end offset of each (topic, partition): the larger of ListOffsets and a Fetch's high
    watermark (Tansu 0.6.0 undercounts the former)."""
    consumer = _inspection_consumer(bootstrap)
    try:
        listed = {tp: _listed_watermarks(consumer, TopicPartition(*tp), timeout)
                  for tp in partitions}
        confirmed = _fetched_high_watermarks(consumer, listed, timeout)
    except KafkaException as exc:
        raise KafkaUnavailableError(f"cannot read offsets from {bootstrap}: {exc}") from exc
    finally:
        consumer.close()
    return {tp: max(high, confirmed.get(tp, 0)) for tp, (_, high) in listed.items()}


# A topic created a moment ago (by a run, or by a producer's auto-creation) answers these
# on Apache Kafka until its partitions have leaders; they pass, so they are waited out.
_NOT_LED_YET = frozenset({KafkaError.NOT_LEADER_FOR_PARTITION, KafkaError.LEADER_NOT_AVAILABLE,
                          KafkaError.UNKNOWN_TOPIC_OR_PART})


def _listed_watermarks(consumer: Consumer, tp: TopicPartition, timeout: float
                       ) -> tuple[int, int]:
    deadline = time.monotonic() + timeout
    while True:
        try:
            low, high = consumer.get_watermark_offsets(
                tp, timeout=max(0.1, deadline - time.monotonic()))
            return int(low), int(high)
        except KafkaException as exc:
            if exc.args[0].code() not in _NOT_LED_YET or time.monotonic() > deadline:
                raise
        time.sleep(0.1)


def _fetched_high_watermarks(
    consumer: Consumer, listed: dict[tuple[str, int], tuple[int, int]], timeout: float
) -> dict[tuple[str, int], int]:
    """Fetch from just before the listed end of each partition until it reports EOF."""
    starts = [
        TopicPartition(topic, partition, max(low, high - 1))
        for (topic, partition), (low, high) in listed.items()
    ]
    if not starts:
        return {}
    consumer.assign(starts)
    pending = {(tp.topic, tp.partition) for tp in starts}
    highs: dict[tuple[str, int], int] = {}
    deadline = time.monotonic() + timeout
    while pending and time.monotonic() < deadline:
        messages: list[Any] = consumer.consume(10_000, 0.05)
        for message in messages:
            key = (message.topic(), message.partition())
            error = message.error()
            if error is None:
                # The fetch that brought it carried the high watermark (read below, cached):
                # waiting for EOF would never end on a partition being written to.
                highs[key] = max(highs.get(key, 0), message.offset() + 1)
                pending.discard(key)
            elif error.code() == KafkaError._PARTITION_EOF:
                highs[key] = max(highs.get(key, 0), message.offset())
                pending.discard(key)
    for topic, partition in listed:
        _, cached_high = consumer.get_watermark_offsets(TopicPartition(topic, partition),
                                                        cached=True)
        if cached_high >= 0:
            highs[(topic, partition)] = max(highs.get((topic, partition), 0), cached_high)
    return highs


def describe_topic(bootstrap: str, topic: str, timeout: float = 10.0) -> TopicInfo:
    partitions = topic_partitions(bootstrap, timeout)
    if topic not in partitions:
        raise TopicNotFoundError(f"topic '{topic}' does not exist at {bootstrap}; "
                                 "`uee topics list` shows the topics there")
    return describe_topics(bootstrap, {topic: partitions[topic]}, timeout)[0]


def tail_topic(bootstrap: str, topic: str, count: int, timeout: float = 10.0,
               info: TopicInfo | None = None) -> list[TailRecord]:
    """The last `count` records of a topic across partitions, oldest first. Pass `info` when
    the caller already described the topic, to spare a second round of offset lookups."""
    info = info or describe_topic(bootstrap, topic, timeout)
    starts = [
        TopicPartition(topic, p.partition, max(p.low, p.high - count) if count else p.high)
        for p in info.partitions if p.records
    ]
    if not starts or count <= 0:
        return []
    consumer = _inspection_consumer(bootstrap)
    records: list[TailRecord] = []
    try:
        consumer.assign(starts)
        ends = {p.partition: p.high for p in info.partitions if p.records}
        pending = set(ends)
        deadline = time.monotonic() + timeout
        while pending and time.monotonic() < deadline:
            messages: list[Any] = consumer.consume(10_000, 0.05)
            for message in messages:
                error = message.error()
                if error is not None:
                    if error.code() == KafkaError._PARTITION_EOF:
                        pending.discard(message.partition())
                    continue
                ts_type, ts = message.timestamp()
                records.append(TailRecord(
                    message.partition(), message.offset(), ts if ts_type else None,
                    message.key(), message.value(), tuple(message_headers(message)),
                ))
                if message.offset() + 1 >= ends[message.partition()]:
                    pending.discard(message.partition())
    finally:
        consumer.close()
    records.sort(key=lambda r: (r.timestamp_ms or 0, r.partition, r.offset))
    return records[-count:]


def read_all(bootstrap: str, topic: str, timeout: float = 30.0) -> list[TailRecord]:
    """Every record of a topic (for tests and benchmarks that check exact contents)."""
    info = describe_topic(bootstrap, topic, timeout)
    return tail_topic(bootstrap, topic, info.records, timeout, info) if info.records else []


__all__ = [
    "KafkaUnavailableError",
    "PartitionInfo",
    "TailRecord",
    "TopicInfo",
    "TopicNotFoundError",
    "describe_topic",
    "describe_topics",
    "ensure_topics",
    "read_all",
    "tail_topic",
    "topic_partitions",
]
