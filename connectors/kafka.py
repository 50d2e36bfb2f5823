"""Kafka source and sink on confluent-kafka (librdkafka), batch at a time."""

from __future__ import annotations

import contextlib
import functools
import logging
import time
from collections.abc import Sequence
from typing import Any, cast

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, Producer, TopicPartition

from uee.connectors.base import (
    Headers,
    OutRecord,
    RecordOrigin,
    Sink,
    SinkUnavailableError,
    Source,
    SourceBatch,
    WriteFailure,
)
from uee.errors import UeeError


class ConsumerRefusedError(UeeError):
    """The broker refuses the consumer's group membership as configured; retrying will not
    help, so the agent stops with what to change instead of waiting silently."""

    code = "KAFKA_CONFIG"


# Errors librdkafka reports as transient that no retry can mend, and what to do about them.
_REFUSALS = {
    KafkaError.INVALID_SESSION_TIMEOUT: (
        "the broker refuses the consumer group session timeout of {session} ms: it must lie "
        "between the broker's group.min.session.timeout.ms and group.max.session.timeout.ms "
        "(Apache Kafka's defaults: 6000 and 1800000); set UEE_SESSION_TIMEOUT_MS within them"),
}


def message_headers(message: Any) -> Headers:
    """A record's headers as (name, bytes) pairs, whatever form the client returned."""
    raw = message.headers() or []
    pairs = raw.items() if isinstance(raw, dict) else raw
    return [(name, value.encode() if isinstance(value, str) else value or b"")
            for name, value in pairs]


LAG_EVERY_S = 0.05  # how often a poll measures the lag (a few calls per partition)
# How long close() waits for the group's revocation to run in its polls (it is local to the
# client: milliseconds, unless a rebalance is under way).
GIVE_UP_TIMEOUT_S = 5.0

log = logging.getLogger("uee")


class KafkaSource(Source):
    """Consumes a topic as part of a consumer group; commits offsets only when told to."""

    def __init__(self, topic: str, config: dict[str, Any]) -> None:
        self.name = self.topic = topic
        self._config = config
        self._consumer: Consumer | None = None
        self._assigned = False
        self._held = False
        # Per assigned partition: the next offset to read, learned from the batches delivered,
        # or from the group's committed offset before the first one.
        self._next: dict[int, int] = {}
        self._committed: dict[int, TopicPartition] = {}  # the last commit, per partition
        # Per assigned partition, the offset after the last record delivered in a batch: a
        # batch's commit token is a copy, so committing one covers the batches before it.
        self._through: dict[int, int] = {}
        # Records behind the end per partition, as of the last poll: computed on the agent's
        # thread, read by others (metrics, the quota sampler). A call into the consumer from
        # another thread while this one polls or closes it can block in librdkafka with the
        # interpreter's lock held, and the whole worker stops, signals and all.
        self._lag: dict[tuple[str, int], int] = {}
        self._lag_at = 0.0
        self._revoked_in_poll: set[int] = set()  # partitions revoked during the current poll

    @property
    def _cooperative(self) -> bool:
        """Incremental rebalances: a member gives up only the partitions that move."""
        return "cooperative" in str(self._config.get("partition.assignment.strategy", ""))

    def open(self) -> None:
        self._consumer = Consumer(self._config)
        self._consumer.subscribe([self.topic], on_assign=self._on_assign,
                                 on_revoke=self._on_revoke, on_lost=self._on_revoke)

    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        for tp in partitions:
            self._next.pop(tp.partition, None)
        # Assigned here rather than by librdkafka after the callback, so that a held source
        # can pause the new partitions at once.
        if self._cooperative:
            consumer.incremental_assign(partitions)
        else:
            consumer.assign(partitions)
        if self._held and partitions:
            consumer.pause(partitions)
        self._assigned = bool(consumer.assignment())
        if self.rebalance_listener is not None:
            self.rebalance_listener(self.name, [tp.partition for tp in partitions], [])

    def hold(self, held: bool) -> None:
        assert self._consumer is not None
        if held != self._held:
            assignment = self._consumer.assignment()
            if assignment:
                (self._consumer.pause if held else self._consumer.resume)(assignment)
            self._held = held

    def _on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        # Only what was checkpointed is committed here. A batch the agent read before this
        # poll may still wait for its acknowledgements (it reads one batch ahead): its own
        # commit, later, leaves out partitions no longer owned, so their new owner reads it
        # again (duplicates, never a loss). Records an earlier call of this same poll
        # returned are dropped by it, unless the partition comes back (`_without_revoked`).
        self._revoked_in_poll.update(tp.partition for tp in partitions)
        for tp in partitions:
            self._next.pop(tp.partition, None)
            self._through.pop(tp.partition, None)
        self._commit_now(consumer, {tp.partition for tp in partitions})
        for tp in partitions:  # if they come back, the group's commit is the one to trust
            self._committed.pop(tp.partition, None)
        if self._cooperative:
            consumer.incremental_unassign(partitions)
        else:
            consumer.unassign()
        self._assigned = bool(consumer.assignment())
        if self.rebalance_listener is not None:
            self.rebalance_listener(self.name, [], [tp.partition for tp in partitions])

    def _commit_now(self, consumer: Consumer, partitions: set[int]) -> None:
        """Commit what was delivered of these partitions before they go to another member:
        commits are asynchronous, and one still in flight would make it read them again."""
        done = [tp for tp in self._committed.values() if tp.partition in partitions]
        if done:
            with contextlib.suppress(KafkaException):  # the group moved on: it re-reads
                consumer.commit(offsets=done, asynchronous=False)

    @property
    def ready(self) -> bool:
        return self._assigned

    def poll(self, max_records: int, timeout: float) -> SourceBatch | None:
        assert self._consumer is not None, "open() first"
        # Any: librdkafka guarantees partition/offset on records without error, and this
        # loop is the hot path, so no per-record narrowing.
        consume: Any = self._consumer.consume
        self._revoked_in_poll.clear()
        kept: list[Any] = consume(max_records, 0)  # what the prefetch queue holds now
        if not kept:
            # Nothing queued: wait for a first record, then take what came with it. A batch
            # goes as soon as there are records (natural batching: under load the queue
            # holds whole batches, so they stay full), not once max_records came or the
            # timeout passed, which put the whole timeout (100 ms) on every record of a
            # pipeline slower than max_records / timeout.
            kept = consume(1, timeout)
            if kept and max_records > 1:
                kept += consume(max_records - 1, 0)
        if self._revoked_in_poll and kept:
            kept = self._without_revoked(kept)
        if kept and any([message.error() for message in kept]):
            kept = self._without_errors(kept)
        if not kept:
            self._follow_lag()
            return None
        # Comprehensions, not one loop doing everything: each is a tight C-level iteration.
        keys: list[bytes | None] = [message.key() for message in kept]
        values: list[bytes | None] = [message.value() for message in kept]
        # Offsets rise within a partition, so its last message in the batch wins. (A partition
        # assigned back within the poll starts again from its committed offset: its last
        # message is then lower than some before it, and still the one to go on from.)
        next_offsets = {message.partition(): message.offset() + 1 for message in kept}
        self._next.update(next_offsets)
        self._through.update(next_offsets)
        self._follow_lag()

        def origin_of(index: int) -> RecordOrigin:
            message = kept[index]
            return RecordOrigin(message.topic(), message.partition(), message.offset(),
                                message_headers(message))

        kind, first_ms = kept[0].timestamp()
        return SourceBatch(keys, values, dict(self._through), origin_of,
                           first_timestamp_ms=first_ms if kind else None)

    def cursor(self, token: Any) -> Any:
        return {"topic": self.topic,
                "offsets": {str(p): o for p, o in sorted(token.items())}}

    def caught_up(self) -> bool:
        """Every assigned partition is read up to the high watermark of its last fetch (Fetch
        high watermarks are right where ListOffsets is not, on Tansu). Not known yet (no
        fetch answered, the committed offset not readable): False."""
        assert self._consumer is not None
        assignment = self._consumer.assignment()
        if not assignment:
            return False
        unknown = [tp for tp in assignment if tp.partition not in self._next]
        if unknown:
            try:  # once per partition and assignment: where the group left it
                committed = self._consumer.committed(unknown, timeout=5)
            except KafkaException:
                return False
            self._next.update({tp.partition: tp.offset for tp in committed})
        for tp in assignment:
            low, high = self._consumer.get_watermark_offsets(tp, cached=True)
            if high < 0:
                return False
            start = self._next[tp.partition]
            if (start if start >= 0 else low) < high:  # no commit yet: read from the start
                return False
        return True

    def lag(self) -> dict[tuple[str, int], int]:
        """As of the last poll (at most `LAG_EVERY_S` old while it polls): safe from any
        thread, it never touches the consumer."""
        return self._lag

    def _follow_lag(self) -> None:
        """On the polling thread only, after a poll: the lag others read."""
        assert self._consumer is not None
        if (now := time.monotonic()) - self._lag_at < LAG_EVERY_S:
            return
        self._lag_at = now
        behind: dict[tuple[str, int], int] = {}
        try:
            for tp in self._consumer.assignment():
                low, high = self._consumer.get_watermark_offsets(tp, cached=True)
                start = self._next.get(tp.partition)
                if high >= 0 and start is not None:
                    behind[(self.topic, tp.partition)] = max(0, high - (start if start >= 0
                                                                        else low))
        except KafkaException:  # not known now: the last reading stands, the poll goes on
            return
        self._lag = behind

    def _without_revoked(self, messages: list[Any]) -> list[Any]:
        """The records of a poll during which partitions were revoked, without those of the
        partitions this member no longer owns: another member reads them from the offset
        committed at the revocation, so this one must not deliver them too.

        A partition revoked and assigned back within the same poll (a member that lost its
        group membership, a broker restart, rejoins at once) keeps its records: the
        consumer's position moved past those returned after the assignment, so dropping
        them would let the next batch's commit cover records never delivered (seen: 188
        and 301 records lost when Apache Kafka was killed and restarted under a running
        pipeline). Those returned before the revocation are read again from the committed
        offset too: duplicates, never a loss."""
        assert self._consumer is not None
        gone = self._revoked_in_poll - {tp.partition for tp in self._consumer.assignment()}
        return [m for m in messages if m.partition() not in gone] if gone else messages

    def _without_errors(self, messages: list[Any]) -> list[Any]:
        """The records of a poll; a fatal client error or a refusal no retry mends raises,
        transient errors (librdkafka retries by itself) and end-of-partition events are
        dropped."""
        kept = []
        for message in messages:
            error = message.error()
            if error is None:
                kept.append(message)
            elif error.code() in _REFUSALS:
                session = self._config.get("session.timeout.ms")
                raise ConsumerRefusedError(_REFUSALS[error.code()].format(session=session))
            elif error.code() != KafkaError._PARTITION_EOF and error.fatal():
                raise KafkaException(error)
        return kept

    def commit(self, batch: SourceBatch) -> None:
        assert self._consumer is not None
        # Only partitions still owned: one revoked since was committed when it went.
        offsets = [TopicPartition(self.topic, p, o) for p, o in batch.commit_token.items()
                   if p in self._through]
        # Asynchronous is safe: a later commit always covers at least as much, and a
        # revocation and close() commit synchronously.
        if offsets:
            self._consumer.commit(offsets=offsets, asynchronous=True)
        self._committed.update({tp.partition: tp for tp in offsets})

    def close(self) -> None:
        if self._consumer is None:
            return
        owned = {tp.partition for tp in self._consumer.assignment()}
        # Partitions revoked meanwhile were committed then; the new owner reads from there.
        self._commit_now(self._consumer, owned)
        self._give_up_assignment(self._consumer)
        self._consumer.close()
        self._consumer = None
        self._lag = {}

    def _give_up_assignment(self, consumer: Consumer) -> None:
        """Hands the partitions back before close(), in polls of this thread.

        A rebalance callback that runs inside close() can wait forever in librdkafka for
        its (un)assign to be answered (confluentinc/librdkafka#4884; seen here when a
        worker stopped while its group rebalanced, another worker of the deployment having
        just left), and the Python client holds the interpreter lock in those calls, so
        the whole worker would stop: signals, the shutdown watchdog and all. Unsubscribed
        first, the revocation runs here instead, where librdkafka answers it, and close()
        finds nothing left to revoke. Records these polls return were never delivered, so
        never committed: the partitions' next owner reads them.
        """
        deadline = time.monotonic() + GIVE_UP_TIMEOUT_S
        try:
            consumer.unsubscribe()
            consumer.consume(1000, 0)  # a callback already queued runs now
            while consumer.assignment() and time.monotonic() < deadline:
                consumer.consume(1000, 0.05)
        except (KafkaException, RuntimeError) as exc:  # close() still runs and says more
            log.debug("giving up the assignment of %s: %s", self.topic, exc)


def retryable(error: KafkaError) -> bool:
    """A timeout, a broker that is away or failing can pass; a rejection of the record
    cannot."""
    return bool(error.retriable()) or error.code() in _TRANSIENT


# Named here, not left to `retriable()`: the Python client sets that flag only on errors of
# its newer APIs, never on a delivery report's. UNKNOWN is the broker's own failure (Kafka's
# UNKNOWN_SERVER_ERROR), not a verdict on the record: the embedded broker answers it while
# its storage restarts. Taken as a rejection, a few seconds of it sent a batch's records to
# the DLQ and paused the pipeline on its error rate; retried (the sink's retries, then its
# breaker), they are written once the broker is back.
_TRANSIENT = {KafkaError._MSG_TIMED_OUT, KafkaError._TRANSPORT, KafkaError._ALL_BROKERS_DOWN,
              KafkaError._PURGE_QUEUE, KafkaError._PURGE_INFLIGHT, KafkaError._TIMED_OUT,
              KafkaError.REQUEST_TIMED_OUT, KafkaError.NOT_ENOUGH_REPLICAS,
              KafkaError.NOT_ENOUGH_REPLICAS_AFTER_APPEND, KafkaError.NETWORK_EXCEPTION,
              KafkaError.LEADER_NOT_AVAILABLE, KafkaError.NOT_LEADER_FOR_PARTITION,
              KafkaError.KAFKA_STORAGE_ERROR, KafkaError.UNKNOWN}


class KafkaWriter:
    """One producer shared by an agent's sinks and dead-letter topics, so that one flush
    covers them all. Each record carries its own failure callback (librdkafka calls it only
    for records that fail, with delivery.report.only.error): a failure is known by the
    record it belongs to, never by its bytes."""

    def __init__(self, config: dict[str, Any]) -> None:
        self._producer = Producer(config)
        self.produce = self._producer.produce  # the hot path calls it directly
        self._capacity = int(config.get("queue.buffering.max.messages", 100_000))

    def fill(self) -> float:
        """The share of the local queue in use (records queued or in flight)."""
        return min(1.0, len(self._producer) / self._capacity)

    def make_room(self) -> None:
        """The local queue is full: let deliveries drain."""
        self._producer.poll(0.05)

    def flush(self, timeout: float) -> None:
        """Wait for every queued record; those still queued after `timeout` are withdrawn
        and reported failed (timed out) through their callbacks."""
        if self._producer.flush(timeout):
            self._producer.purge()  # their callbacks report them, as purged
            # Purge does not reach every queue: records of a topic deleted meanwhile wait in
            # one it misses (seen on Apache Kafka), and are reported once message.timeout.ms
            # (the flush timeout) has passed. Wait for those reports; a record still queued
            # after that must not pass for delivered.
            if self._producer.flush(timeout):
                raise SinkUnavailableError(
                    f"{len(self._producer)} records were neither acknowledged nor reported "
                    f"failed within {2 * timeout:g}s; nothing of their batch was committed")

    def close(self, timeout: float = 5.0) -> None:
        if self._producer.flush(timeout):
            # Undeliverable now (the broker is gone): nothing of it was committed, so drop
            # it here rather than block on close until librdkafka gives up.
            self._producer.purge()
            self._producer.flush(0)
        self._producer.close()


class KafkaSink(Sink):
    """A topic written through a shared `KafkaWriter` (one producer per agent).

    A failure is known by its position among the records written since the last flush: each
    record is produced with the callback of its position, from a list kept across batches,
    so the hot path creates no object per record (a closure per record cost a fifth of the
    throughput)."""

    def __init__(self, name: str, topic: str, writer: KafkaWriter, max_bytes: int) -> None:
        self.name = name
        self.topic = self.target = topic
        self._writer = writer
        self._max_bytes = max_bytes
        self._pending: list[OutRecord] = []  # written since the last flush, in order
        self._pending_headers: dict[int, Headers] = {}  # by position, for those with headers
        self._callbacks: list[Any] = []  # the failure callback of each position
        self._failed: list[WriteFailure] = []
        self._too_large: list[WriteFailure] = []  # of those, refused as too large

    def _callbacks_up_to(self, count: int) -> list[Any]:
        callbacks = self._callbacks
        if len(callbacks) < count:
            callbacks.extend(functools.partial(self._on_failure, position)
                             for position in range(len(callbacks), count))
        return callbacks

    def _on_failure(self, position: int, error: KafkaError | None, message: Message) -> None:
        if error is not None:
            failure = WriteFailure(self._pending[position], self._pending_headers.get(position),
                                   error.str(), retryable(error))
            self._failed.append(failure)
            if error.code() == KafkaError.MSG_SIZE_TOO_LARGE:
                self._too_large.append(failure)

    def write(self, records: Sequence[OutRecord], headers: Sequence[Headers] | None = None
              ) -> None:
        base = len(self._pending)
        self._pending.extend(records)
        callbacks = self._callbacks_up_to(base + len(records))
        produce, topic, max_bytes = self._writer.produce, self.topic, self._max_bytes
        if headers is not None:
            self._pending_headers.update(enumerate(headers, base))
            for position, (record, extra) in enumerate(zip(records, headers, strict=True), base):
                self._produce(position, record, list(extra), callbacks[position])
            return
        for position, (_, key, value) in enumerate(records, base):
            if len(value) + (len(key) if key else 0) > max_bytes:  # type: ignore[arg-type]
                self._produce(position, records[position - base], None, callbacks[position])
                continue
            try:
                # Positional: keyword arguments cost more than the call itself here.
                produce(topic, value, key, -1, callbacks[position])
            except (BufferError, KafkaException):  # the queue is full, or a refusal
                self._produce(position, records[position - base], None, callbacks[position])

    def _produce(self, position: int, record: OutRecord, headers: Headers | None,
                 callback: Any) -> None:
        """One record, off the fast path: a size check, a full queue waited out, a refusal
        kept as a failure of its own."""
        _, key, value = record
        size = (len(value) if value else 0) + (len(key) if key else 0)
        if size > self._max_bytes:
            self._refuse(position, f"the record is {size:,} bytes; the limit is "
                         f"{self._max_bytes:,} (UEE_MAX_RECORD_BYTES)")
            return
        while True:
            try:
                self._writer.produce(self.topic, value, key, on_delivery=callback,
                                     headers=cast(Any, headers))
                return
            except BufferError:
                self._writer.make_room()
            except KafkaException as exc:
                self._refuse(position, exc.args[0].str())
                return

    def _refuse(self, position: int, reason: str) -> None:
        self._failed.append(WriteFailure(self._pending[position],
                                         self._pending_headers.get(position), reason,
                                         retryable=False))

    def queued(self) -> float:
        return self._writer.fill()

    def flush(self, timeout: float) -> list[WriteFailure]:
        self._writer.flush(timeout)
        failed, too_large = self._failed, self._too_large
        self._failed, self._too_large = [], []
        self._pending, self._pending_headers = [], {}
        if not too_large:
            return failed
        # A broker that refuses a request as too large refuses every record batched with the
        # one at fault (Apache Kafka does; librdkafka does not split it): those are sent again
        # one by one, and only a record refused alone is refused for itself.
        resent = {id(failure) for failure in too_large}
        still = [f for f in failed if id(f) not in resent]
        for failure in too_large:
            self.write([failure.record], None if failure.headers is None else [failure.headers])
            self._writer.flush(timeout)
            still.extend(self._failed)
            self._failed, self._too_large = [], []
            self._pending, self._pending_headers = [], {}
        return still
