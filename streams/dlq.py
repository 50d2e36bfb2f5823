"""Dead-letter topics: list them, read them, and replay what should run again.

A replay sends records back to the topic they came from (`__connect.errors.topic`), with
their own headers and `uee.attempt` one higher, and remembers each record it sent back in
a ledger topic (`<dlq topic>.replayed`), so running it again, with any filter, does not
send a record twice. Records replayed `max_replays` times already are refused, not looped
forever.
"""

from __future__ import annotations

import datetime
import json
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from confluent_kafka import Producer
from pydantic import BaseModel, ConfigDict

from uee.dsl.errors import Position
from uee.dsl.expr import parse_expr
from uee.dsl.functions import callables
from uee.errors import UeeError
from uee.streams.deadletter import ATTEMPT, MAX_REPLAYS, attempt_of, is_error_header
from uee.streams.kernel import python_source
from uee.streams.names import ledger_topic
from uee.streams.settings import settings_for
from uee.streams.topics import (
    TailRecord,
    describe_topic,
    ensure_topics,
    read_all,
    tail_topic,
    topic_partitions,
)

DLQ_SUFFIX = ".dlq"


class ReplayError(UeeError):
    code = "DLQ_REPLAY"


@dataclass(frozen=True)
class DeadLetter:
    record: TailRecord

    @property
    def headers(self) -> dict[str, str]:
        return {name: value.decode("utf-8", "replace") for name, value in self.record.headers}

    @property
    def code(self) -> str:
        return self.headers.get("uee.error.code", "?")

    @property
    def attempt(self) -> int:
        return attempt_of(list(self.record.headers))

    @property
    def max_replays(self) -> int:
        """The pipeline's `dlq.max_replays`, carried by the dead letter (3 if absent)."""
        try:
            return int(self.headers.get(MAX_REPLAYS, "3"))
        except ValueError:
            return 3

    @property
    def origin_topic(self) -> str | None:
        return self.headers.get("__connect.errors.topic")

    def context(self) -> dict[str, Any]:
        """What a --where expression can read."""
        headers = self.headers
        try:
            record = json.loads(self.record.value) if self.record.value is not None else None
        except ValueError:
            record = None
        return {
            "code": headers.get("uee.error.code"), "stage": headers.get("uee.stage"),
            "pipeline": headers.get("uee.pipeline"), "message": headers.get("uee.error.message"),
            "retryable": headers.get("uee.error.retryable") == "true",
            "attempt": self.attempt, "topic": self.origin_topic, "headers": headers,
            "record": record,
            "key": self.record.key.decode("utf-8", "replace") if self.record.key else None,
        }


@dataclass(frozen=True)
class DlqSummary:
    topic: str
    depth: int
    top_codes: list[tuple[str, int]]


def dlq_topics(bootstrap: str, extra: set[str] | None = None) -> list[str]:
    """Topics named `*.dlq`, and the dead-letter topics that pipeline files configure."""
    existing = topic_partitions(bootstrap)
    return sorted(t for t in existing if t.endswith(DLQ_SUFFIX) or t in (extra or set()))


def summarize(bootstrap: str, topic: str, sample: int = 10_000) -> DlqSummary:
    """Depth of a DLQ and its most frequent codes (over the last `sample` records)."""
    info = describe_topic(bootstrap, topic)
    letters = [DeadLetter(r) for r in tail_topic(bootstrap, topic, min(info.records, sample),
                                                 info=info)]
    return DlqSummary(topic, info.records, Counter(d.code for d in letters).most_common(3))


def show(bootstrap: str, topic: str, count: int, code: str | None) -> list[DeadLetter]:
    letters = [DeadLetter(r) for r in read_all(bootstrap, topic)]
    if code:
        letters = [d for d in letters if d.code == code]
    return letters[-count:]


def compile_where(text: str) -> Callable[[dict[str, Any]], Any]:
    """A --where expression, in the pipeline expression language, over a dead letter."""
    expr, problems = parse_expr(text, Position("--where", 1, 1))
    if expr is None:
        problem = problems[0]
        raise ReplayError(f"--where: {problem.message} at column {problem.pos.col}")
    namespace: dict[str, Any] = callables()
    source = f"def _where(r):\n    return {python_source(expr)}\n"
    exec(compile(source, "<uee --where>", "exec"), namespace)
    where: Callable[[dict[str, Any]], Any] = namespace["_where"]
    return where


class LedgerEntry(BaseModel):
    """What the ledger keeps of one replayed dead letter, under the key `partition:offset`.
    Only the key decides whether a dead letter was replayed; the value says when and where
    to, for people and tools (`uee topics tail <dlq>.replayed`)."""

    model_config = ConfigDict(frozen=True)

    v: Literal[1] = 1
    dlq_topic: str
    partition: int
    offset: int
    sent_to: str
    attempt: int
    at: datetime.datetime


@dataclass
class ReplayReport:
    topic: str
    read: int = 0
    replayed: Counter[str] = field(default_factory=Counter)  # per destination topic
    already: int = 0  # sent back by an earlier replay
    skipped: int = 0  # not matching --pipeline / --where
    refused: int = 0  # past max_replays
    no_origin: int = 0  # from a generator: nowhere to send them back to
    unreadable_where: int = 0  # --where failed on the record (missing field...)


def replay(bootstrap: str, topic: str, pipeline: str | None, where: str | None,
           dry_run: bool, max_replays: int | None, timeout: float = 30.0) -> ReplayReport:
    """Send matching dead letters back to their source topics. A dead letter is sent back
    once: the ledger topic remembers it, written only after the broker acknowledged the
    replayed records (a crash in between replays them again: at-least-once)."""
    predicate = compile_where(where) if where else None
    ledger = ledger_topic(topic)
    letters = [DeadLetter(r) for r in read_all(bootstrap, topic, timeout)]
    if ledger in topic_partitions(bootstrap):
        done = {r.key for r in read_all(bootstrap, ledger, timeout)}
    else:
        done = set()
    report = ReplayReport(topic)
    chosen: list[DeadLetter] = []
    for letter in letters:
        report.read += 1
        if _key(letter) in done:
            report.already += 1
        elif _wanted(letter, pipeline, predicate, max_replays, report):
            chosen.append(letter)
            report.replayed[str(letter.origin_topic)] += 1
    if dry_run or not chosen:
        return report
    producer = Producer(settings_for(bootstrap).writer_config("replay"))
    for letter in chosen:
        headers: list[tuple[str, str | bytes | None]] = [
            (n, v) for n, v in letter.record.headers if not is_error_header(n)]
        headers.append((ATTEMPT, str(letter.attempt + 1).encode()))
        producer.produce(str(letter.origin_topic), letter.record.value, letter.record.key,
                         headers=headers)
        producer.poll(0)
    if producer.flush(timeout):
        raise ReplayError("the broker did not acknowledge every replayed record; none is "
                          "marked as replayed, so the next replay sends them again")
    settings = settings_for(bootstrap)
    # Compacted: one entry per dead letter is all that must be kept.
    ensure_topics(bootstrap, [ledger], 1, settings.replication_factor,
                  configs={"cleanup.policy": "compact"})
    for letter in chosen:
        entry = LedgerEntry(dlq_topic=topic, partition=letter.record.partition,
                            offset=letter.record.offset, sent_to=str(letter.origin_topic),
                            attempt=letter.attempt + 1, at=datetime.datetime.now(datetime.UTC))
        producer.produce(ledger, entry.model_dump_json().encode(), _key(letter))
    if producer.flush(timeout):
        raise ReplayError(f"the records were replayed, but {ledger} could not be written; the "
                          "next replay would send them again")
    return report


def _key(letter: DeadLetter) -> bytes:
    return f"{letter.record.partition}:{letter.record.offset}".encode()


def _wanted(letter: DeadLetter, pipeline: str | None, predicate: Callable[..., Any] | None,
            max_replays: int | None, report: ReplayReport) -> bool:
    if pipeline and letter.headers.get("uee.pipeline") != pipeline:
        report.skipped += 1
        return False
    if predicate is not None:
        try:
            matched = predicate(letter.context())
        except Exception:
            report.unreadable_where += 1
            return False
        if not matched:
            report.skipped += 1
            return False
    limit = max_replays if max_replays is not None else letter.max_replays
    if letter.attempt > limit:
        report.refused += 1
        return False
    if not letter.origin_topic:
        report.no_origin += 1
        return False
    return True
