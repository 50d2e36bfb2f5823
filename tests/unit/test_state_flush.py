"""A checkpoint's state step waits for the broker as long as it is away, ends on a stop, and
fails on a refusal. The producer here is a stand-in that acknowledges after N flushes:
what the broker does is covered end to end in tests/e2e/test_failures.py."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from confluent_kafka import KafkaError

from uee.streams.state import StateUnavailableError
from uee.streams.statelog import PatientState, StateWriter


class SlowBroker:
    """Holds every event until `flush` was called `answers_after` times; `refuse` makes it
    fail the events instead, through the delivery callback as librdkafka does."""

    def __init__(self, answers_after: int, refuse: bool = False) -> None:
        self.answers_after = answers_after
        self.refuse = refuse
        self.flushes = 0
        self.waiting: list[Any] = []
        self.on_flush: Any = None

    def produce(self, topic: str, value: bytes, on_delivery: Any) -> None:
        self.waiting.append(on_delivery)

    def poll(self, timeout: float) -> int:
        return 0

    def flush(self, timeout: float) -> int:
        self.flushes += 1
        if self.on_flush is not None:
            self.on_flush(self.flushes)
        if self.flushes < self.answers_after:
            return len(self.waiting)
        for callback in self.waiting:
            callback(KafkaError(KafkaError._MSG_TIMED_OUT) if self.refuse else None,
                     Acknowledged())
        self.waiting.clear()
        return 0


class Acknowledged:
    def offset(self) -> int:
        return 7


def _patient(broker: SlowBroker, stopping: threading.Event | None = None
             ) -> tuple[PatientState, list[str | None]]:
    writer = StateWriter(broker, "app-state")  # type: ignore[arg-type]
    writer.put("checkpoints", "p", {"records": 1})
    told: list[str | None] = []
    return PatientState(writer, 2.0, stopping or threading.Event(), told.append), told


def test_an_acknowledgement_in_time_says_nothing() -> None:
    patient, told = _patient(SlowBroker(answers_after=1))
    patient.flush()
    assert told == []
    assert patient.writer.last_offset == 7


def test_a_broker_away_is_waited_for_said_once_and_the_end_of_the_wait_too() -> None:
    broker = SlowBroker(answers_after=50)
    patient, told = _patient(broker)
    patient.flush()  # no error: it waited 49 slices
    assert broker.flushes == 50
    assert len(told) == 2 and told[1] is None
    assert told[0] is not None and "app-state" in told[0] and "not acknowledged" in told[0]


def test_a_stop_ends_the_wait_and_nothing_is_said_committed() -> None:
    stopping = threading.Event()
    broker = SlowBroker(answers_after=1_000_000)
    broker.on_flush = lambda n: n == 3 and stopping.set()
    patient, told = _patient(broker, stopping)
    with pytest.raises(StateUnavailableError, match=r"stopped while state events.*"
                       r"restart resumes there"):
        patient.flush()
    assert broker.flushes == 3 and len(told) == 1


def test_a_refused_event_fails_the_checkpoint() -> None:
    patient, _ = _patient(SlowBroker(answers_after=4, refuse=True))
    with pytest.raises(StateUnavailableError, match="could not write state to app-state"):
        patient.flush()
