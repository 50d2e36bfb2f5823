"""The control plane: states that outlive a worker, and commands that change them.

One compacted topic, `uee.control`, with one partition: the latest message per key is
the state. Messages are typed and versioned (pydantic): `PipelineState` under
`pipeline:<name>` (PAUSED on its error rate, RUNNING after `uee resume`), `SinkState`
under `sink:<topic>` (its breaker), workers' `QuotaSample`s under
`sample:<deployment>:<pipeline>:<worker>`, `PermitPool` resizes (`uee quota set`) under
`pool:<deployment>:<pipeline>`, and the quota controller's `QuotaUpdate`s under
`quota:<deployment>:<pipeline>` (Avro, streams.permits: a value starting with a zero byte).
A message of a version or kind this worker does not know is skipped, not fatal: workers
of two versions share the topic during an upgrade.

Each worker has one `ControlPlane`: one long-lived producer, one subscriber (a thread
following the topic without a consumer group, so every worker sees every message),
fanned out to its agents through a `ControlSubscription` each.
"""

from __future__ import annotations

import datetime
import json
import logging
import threading
import time
from typing import Annotated, Any, ClassVar, Literal, Self

from confluent_kafka import Consumer, Producer, TopicPartition
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from uee.errors import UeeError
from uee.streams.names import CONTROL_TOPIC
from uee.streams.permits import QuotaUpdate, QuotaUpdateError, is_quota_update
from uee.streams.settings import Settings, settings_for
from uee.streams.topics import ensure_topics, read_all, topic_partitions

log = logging.getLogger("uee")
PAUSED, RUNNING = "PAUSED", "RUNNING"
VERSION = 1


class ControlError(UeeError):
    code = "CONTROL_UNAVAILABLE"


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC).replace(microsecond=0)


class _State(BaseModel):
    """A state kept under `<kind>:<name>`; each kind names its `name` field."""

    model_config = ConfigDict(frozen=True)

    v: int = VERSION
    reason: str
    at: datetime.datetime
    _name: ClassVar[str]

    @classmethod
    def now(cls, name: str, state: str, reason: str) -> Self:
        return cls.model_validate({cls._name: name, "state": state, "reason": reason,
                                   "at": _now()})

    @property
    def key(self) -> bytes:
        return f"{self._name}:{getattr(self, self._name)}".encode()


class PipelineState(_State):
    kind: Literal["pipeline"] = "pipeline"
    pipeline: str
    state: Literal["PAUSED", "RUNNING"]
    _name = "pipeline"


class SinkState(_State):
    kind: Literal["sink"] = "sink"
    sink: str
    state: Literal["CLOSED", "OPEN", "HALF_OPEN"]
    _name = "sink"


class QuotaSample(BaseModel):
    """A worker's reading of one pipeline, for the quota controller (streams.quota), with
    the thresholds of the pipeline's `quota` section (the controller needs no plan)."""

    model_config = ConfigDict(frozen=True)

    kind: Literal["sample"] = "sample"
    v: int = VERSION
    deployment: str
    worker: str
    pipeline: str
    p99_ms: float  # of batch latency: poll to acknowledgements
    saturation: float  # share of the interval the agent was busy with batches, 0-1
    lag: int
    permits: int
    full: int
    max_p99_ms: float
    max_saturation: float
    at: datetime.datetime
    # Later fields have defaults: a worker of the version before still sends samples.
    e2e_p99_ms: float = 0.0  # from the records' Kafka timestamps (time in Kafka included)
    work: float = -1.0  # share of the interval in the stages, 0-1 (-1: not measured)
    throughput: float = 0.0  # records/s delivered over the last seconds (WINDOW_S)
    batch_records: float = 0.0  # records of the batch at the P99, recently
    full_rate: float = 0.0  # records/s it kept at full allocation (what permits are shares of)
    max_lag: int | None = None
    priority: int = 0
    source: str = ""  # the topic it reads ("" if not Kafka)
    sinks: tuple[str, ...] = ()  # the topics it writes
    sink_p99_ms: float = 0.0  # its wait for its sinks' acknowledgements, a batch
    sink_saturation: float = 0.0  # the fullest of its sinks' local buffers, 0-1
    target_set: bool = False  # max_p99_ms is the pipeline's own (its quota section's)
    record_ms: float = 0.0  # its stages' time a record, recently (0: not measured)
    batch_record_ms: float = 0.0  # the same, of the batch at the P99 (0: not measured)
    sink_mean_ms: float = -1.0  # the mean of its waits for acknowledgements (-1: not measured)
    # The batch at the P99 is still in its stages: batch_record_ms is its age so far a record,
    # a lower bound of its stages' time.
    batch_in_stages: bool = False
    interval_throughput: float = -1.0  # records/s delivered since its last sample (-1: unknown)

    @property
    def key(self) -> bytes:
        return f"sample:{self.deployment}:{self.pipeline}:{self.worker}".encode()

    def breaches(self, busy: bool = True) -> bool:
        """Over one of its thresholds (what the controller counts as a breach); `busy`:
        its agent's saturation counts too."""
        return (self.p99_ms > self.max_p99_ms
                or (busy and self.saturation > self.max_saturation)
                or self.sink_p99_ms > self.max_p99_ms
                or self.sink_saturation > self.max_saturation
                or (self.max_lag is not None and self.lag > self.max_lag))


class PermitPool(BaseModel):
    """An operator's resize of a pipeline's full allocation of permits (`uee quota set`), for
    every worker of one deployment. It is a fresh allocation: the pipeline holds all of the
    new size until the controller decides otherwise."""

    model_config = ConfigDict(frozen=True)

    kind: Literal["pool"] = "pool"
    v: int = VERSION
    deployment: str
    pipeline: str
    permits: int = Field(ge=1)
    reason: str
    at: datetime.datetime

    @property
    def key(self) -> bytes:
        return f"pool:{self.deployment}:{self.pipeline}".encode()


StateMessage = PipelineState | SinkState | QuotaSample | PermitPool
ControlMessage = PipelineState | SinkState | QuotaSample | PermitPool | QuotaUpdate
_MESSAGE: TypeAdapter[StateMessage] = TypeAdapter(
    Annotated[StateMessage, Field(discriminator="kind")])


def encode(message: ControlMessage) -> bytes:
    if isinstance(message, QuotaUpdate):
        return message.encode()
    return message.model_dump_json().encode()


def decode(key: bytes | None, value: bytes | None) -> ControlMessage | None:
    """The message, or None for what this worker cannot use: a tombstone, a newer version,
    an unknown kind, or bytes that are not a message."""
    if not value:
        return None
    if is_quota_update(value):
        try:
            return QuotaUpdate.decode(value)
        except QuotaUpdateError:
            log.debug("skipped a quota update it cannot read: %r", value[:200])
            return None
    try:
        data = json.loads(value)
        if isinstance(data, dict) and "kind" not in data and key:
            data = _unversioned(key.decode(), data)  # written by uee before messages had kinds
        if not isinstance(data, dict) or data.get("v", VERSION) > VERSION:
            return None
        return _MESSAGE.validate_python(data)
    except (ValueError, ValidationError, UnicodeDecodeError):
        log.debug("skipped a control message it cannot read: %r", value[:200])
        return None


def _unversioned(key: str, data: dict[str, Any]) -> dict[str, Any]:
    kind, _, name = key.partition(":")
    return {**data, "kind": kind, kind: name, "v": VERSION}


def allocations(quotas: dict[str, QuotaUpdate], pools: dict[str, PermitPool]
                ) -> dict[str, int]:
    """Each pipeline's permits as the control topic says: the newer of the controller's last
    decision and an operator's resize (a resize is a fresh, full allocation)."""
    held = {p: q.permits_after for p, q in quotas.items()}
    for pipeline, pool in pools.items():
        quota = quotas.get(pipeline)
        if quota is None or pool.at >= quota.at:
            held[pipeline] = pool.permits
    return held


def ensure_control_topic(settings: Settings, timeout: float = 15.0) -> None:
    """One partition, compacted: the latest state per key is all that must be kept. (The
    embedded broker accepts topic configs but does not echo them back.)"""
    ensure_topics(str(settings.bootstrap), [CONTROL_TOPIC], 1, settings.replication_factor,
                  timeout=timeout, configs={"cleanup.policy": "compact"})


def read_states(settings: Settings, timeout: float = 30.0) -> list[ControlMessage]:
    """The latest message under every key, oldest first."""
    if CONTROL_TOPIC not in topic_partitions(str(settings.bootstrap)):
        return []
    latest: dict[bytes, ControlMessage] = {}
    for record in read_all(str(settings.bootstrap), CONTROL_TOPIC, timeout):
        message = decode(record.key, record.value)
        if message is not None:
            latest[message.key] = message
    return list(latest.values())


def pipeline_states(bootstrap: str) -> dict[str, PipelineState]:
    """The latest state of every pipeline that has one."""
    return {m.pipeline: m for m in read_states(settings_for(bootstrap))
            if isinstance(m, PipelineState)}


def publish(bootstrap: str, message: ControlMessage, timeout: float = 15.0) -> None:
    """One message, from a command (`uee resume`); a worker uses its ControlPlane."""
    settings = settings_for(bootstrap)
    ensure_control_topic(settings, timeout)
    _send(Producer(settings.writer_config("control")), message, timeout)


def _send(producer: Producer, message: ControlMessage, timeout: float) -> None:
    producer.produce(CONTROL_TOPIC, encode(message), message.key)
    if producer.flush(timeout):
        raise ControlError(f"could not write to {CONTROL_TOPIC} within {timeout:g}s")


class ControlSubscription:
    """An agent's view of the control plane: the pipeline states when it opened, the
    changes since (drained by the agent's thread), and a way to publish."""

    def __init__(self, plane: ControlPlane, pipelines: tuple[str, ...]) -> None:
        self._plane = plane
        self._pipelines = set(pipelines)
        self._lock = threading.Lock()
        self._changes: dict[str, PipelineState] = {}
        self._quotas: list[QuotaUpdate] = []
        self._pools: list[PermitPool] = []

    def current(self) -> dict[str, PipelineState]:
        self._plane.wait_open()
        return {p: s for p, s in self._plane.states.items() if p in self._pipelines}

    def current_pools(self) -> list[PermitPool]:
        """The latest resize of each of these pipelines' permits in this deployment."""
        self._plane.wait_open()
        return [m for p, m in self._plane.pools.items() if p in self._pipelines]

    def pool_changes(self) -> list[PermitPool]:
        with self._lock:
            pools, self._pools = self._pools, []
        return pools

    def current_quotas(self) -> list[QuotaUpdate]:
        """The latest quota update of each of these pipelines in this deployment."""
        self._plane.wait_open()
        return [q for p, q in self._plane.quotas.items() if p in self._pipelines]

    def deliver(self, message: ControlMessage) -> None:
        """Called by the plane's subscriber thread."""
        if isinstance(message, PipelineState) and message.pipeline in self._pipelines:
            with self._lock:
                self._changes[message.pipeline] = message
        elif isinstance(message, QuotaUpdate) and message.pipeline in self._pipelines:
            with self._lock:
                self._quotas.append(message)
        elif isinstance(message, PermitPool) and message.pipeline in self._pipelines:
            with self._lock:
                self._pools.append(message)

    def changes(self) -> dict[str, PipelineState]:
        with self._lock:
            changes, self._changes = self._changes, {}
        return changes

    def quota_changes(self) -> list[QuotaUpdate]:
        """Quota updates since the last call, in the order they were written."""
        with self._lock:
            quotas, self._quotas = self._quotas, []
        return quotas

    def publish(self, message: ControlMessage, timeout: float = 15.0) -> None:
        self._plane.publish(message, timeout)


class ControlPlane:
    """One per worker: a producer and a subscriber shared by all of its agents."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self.states: dict[str, PipelineState] = {}
        self.quotas: dict[str, QuotaUpdate] = {}  # pipeline -> latest, this deployment
        self.pools: dict[str, PermitPool] = {}  # pipeline -> latest resize, this deployment
        self.samples: dict[tuple[str, str], QuotaSample] = {}  # (pipeline, worker) -> latest
        self.samples_noted = 0  # how many samples have come: the controller decides on news
        self._samples_lock = threading.Lock()  # noted by the event loop and the subscriber
        self._subscriptions: list[ControlSubscription] = []
        self._producer: Producer | None = None
        self._consumer: Consumer | None = None
        self._stop = threading.Event()
        self._opened = threading.Event()
        self._failed: Exception | None = None
        self._thread = threading.Thread(target=self._run, name="uee-control", daemon=True)

    def start(self) -> None:
        """Begin reading the states on the plane's thread, then follow the topic; the
        worker's start-up goes on meanwhile (`wait_open` is where an agent waits)."""
        self._thread.start()

    def wait_open(self, timeout: float = 30.0) -> None:
        if not self._opened.wait(timeout):
            raise ControlError(f"could not read {CONTROL_TOPIC} within {timeout:g}s")
        if self._failed is not None:
            raise ControlError(f"could not read {CONTROL_TOPIC}: {self._failed}")

    def _open(self) -> Consumer:
        ensure_control_topic(self._settings)
        consumer = Consumer(self._settings.control_config())
        # Where to follow from is taken first, so nothing written while the states are read
        # is missed. Tansu's ListOffsets can point before the last batch: re-reading it is
        # harmless, states are idempotent.
        _, high = consumer.get_watermark_offsets(TopicPartition(CONTROL_TOPIC, 0), timeout=10)
        states = read_states(self._settings)
        self.states = {m.pipeline: m for m in states if isinstance(m, PipelineState)}
        self.quotas = {m.pipeline: m for m in states
                       if isinstance(m, QuotaUpdate) and m.deployment == self._settings.app}
        self.pools = {m.pipeline: m for m in states
                      if isinstance(m, PermitPool) and m.deployment == self._settings.app}
        self._producer = Producer(self._settings.writer_config("control"))
        consumer.assign([TopicPartition(CONTROL_TOPIC, 0, max(0, high - 1))])
        return consumer

    def subscribe(self, pipelines: tuple[str, ...]) -> ControlSubscription:
        subscription = ControlSubscription(self, pipelines)
        self._subscriptions.append(subscription)
        return subscription

    def publish(self, message: ControlMessage, timeout: float = 15.0) -> None:
        """Thread-safe (librdkafka's producer is): agents publish from their threads."""
        if self._producer is None:
            raise ControlError("the control plane is not open")
        _send(self._producer, message, timeout)

    def publish_nowait(self, message: ControlMessage) -> bool:
        """Queue a message without waiting for the broker (samples and decisions, every
        interval, from the event loop); False when the plane is not open yet."""
        if self._producer is None:
            return False
        self._producer.produce(CONTROL_TOPIC, encode(message), message.key)
        self._producer.poll(0)
        if isinstance(message, QuotaSample):
            # This worker's own samples reach its controller (if it leads) at once, not a
            # round trip through the topic later (50-100 ms of the time to detect). The copy
            # read back from the topic then changes nothing.
            self.note_sample(message)
        return True

    def note_sample(self, sample: QuotaSample) -> None:
        """The newest sample of each (pipeline, worker) of this deployment: one read back
        from the topic never replaces a newer one this worker noted when it published."""
        if sample.deployment != self._settings.app:
            return
        key = (sample.pipeline, sample.worker)
        with self._samples_lock:
            known = self.samples.get(key)
            if known is None or sample.at > known.at:
                self.samples[key] = sample
                self.samples_noted += 1

    def _run(self) -> None:
        try:
            self._consumer = self._open()
        except Exception as exc:
            self._failed = exc
            return
        finally:
            self._opened.set()
        while not self._stop.is_set():
            try:
                messages: list[Any] = self._consumer.consume(100, 0.25)
            except Exception as exc:  # the worker keeps running on what it knows
                log.debug("control topic: %s", exc)
                time.sleep(0.25)  # pacing after a client error, not synchronization
                continue
            for record in messages:
                if record.error() is not None:  # end of partition, or transient
                    continue
                message = decode(record.key(), record.value())
                if message is None:
                    continue
                if isinstance(message, PipelineState):
                    self.states[message.pipeline] = message
                elif isinstance(message, QuotaUpdate):
                    if message.deployment != self._settings.app:
                        continue  # another deployment's controller
                    self.quotas[message.pipeline] = message
                elif isinstance(message, QuotaSample):
                    self.note_sample(message)
                    continue
                elif isinstance(message, PermitPool):
                    if message.deployment != self._settings.app:
                        continue
                    self.pools[message.pipeline] = message
                for subscription in self._subscriptions:
                    subscription.deliver(message)

    def close(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(5)
        if self._consumer is not None:
            self._consumer.close()
            self._consumer = None
        if self._producer is not None:
            self._producer.flush(2)
            self._producer = None
