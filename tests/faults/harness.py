"""The fault-injection harness: a known set of records (ids 0..N-1) produced at a steady rate,
a pipeline with its DLQ and checkpoints on, workers as real `uee run` processes, a fault
injected once a condition holds (a third of the ids at the sink), recovery, and the count:
every id at the sink or in the DLQ (0 lost), duplicates, the final state in `uee status`.

Each scenario adds one row to the report (`Outcome`), which `make faults` prints and writes
to build/faults-report.md.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import ConsumerGroupTopicPartitions, Producer
from confluent_kafka.admin import AdminClient

from tests.conftest import REPO, wait_until
from uee.streams.dlq import DeadLetter
from uee.streams.topics import TopicNotFoundError, describe_topic, ensure_topics, read_all


@dataclass
class Outcome:
    scenario: str
    broker: str
    produced: int = 0
    delivered: int = 0  # distinct ids at the sink
    dead_lettered: int = 0  # distinct ids in the DLQ
    lost: int = 0
    duplicates: int = 0
    recovered_s: float | None = None  # from the fault to every id accounted for
    final_state: str = "-"
    notes: list[str] = field(default_factory=list)
    passed: bool | None = None  # the scenario's test, once it ran

    def row(self) -> dict[str, Any]:
        return {"scenario": self.scenario, "broker": self.broker, "produced": self.produced,
                "delivered": self.delivered, "dead_lettered": self.dead_lettered,
                "lost": self.lost, "duplicates": self.duplicates,
                "recovered_s": None if self.recovered_s is None else round(self.recovered_s, 1),
                "final_state": self.final_state,
                "pass": {None: None, True: "yes", False: "NO"}[self.passed],
                "notes": "; ".join(self.notes)}


REPORT: list[Outcome] = []
PASSED = pytest.StashKey[bool]()  # a scenario's test passed (set by the suite's conftest)


def pipeline_file(folder: Path, name: str, source: str, sink: str, stages: str = "[]",
                  source_yaml: str | None = None, dlq: str = "") -> Path:
    """`dlq`: more keys of the pipeline's dlq section (`pause_rate: 0.3`)."""
    path = folder / f"{name}.yaml"
    source_yaml = source_yaml or f"{{kafka: {{topic: {source}}}}}"
    more = f", {dlq}" if dlq else ""
    path.write_text(f"pipeline: {name}\nsource: {source_yaml}\nstages: {stages}\n"
                    f"sink: {{kafka: {{topic: {sink}}}}}\n"
                    f"dlq: {{max_retries: 8, backoff: 0.5, breaker_failures: 50{more}}}\n"
                    "checkpoint: {every: 1000, interval: 1}\n")
    return path


def record(i: int, poison_every: int = 0, big_every: int = 0) -> tuple[bytes, bytes]:
    """Record `i`: a JSON object, or (every `poison_every`) bytes that are not JSON, or
    (every `big_every`) one larger than the pipeline's maximum record size."""
    key = str(i).encode()
    if poison_every and i % poison_every == 0:
        return key, b"not json #%d" % i
    if big_every and i % big_every == 0:
        return key, json.dumps({"id": i, "pad": "x" * 8192}).encode()
    return key, json.dumps({"id": i, "n": i}).encode()


class SteadyProducer:
    """Ids 0..count-1 into `topic` at about `rate` records/s, from a thread: the records
    keep coming while faults happen (a broker that is away is waited for: librdkafka keeps
    them queued and sends them when it is back)."""

    def __init__(self, bootstrap: str, topic: str, count: int, rate: int,
                 make: Callable[[int], tuple[bytes, bytes]] = record) -> None:
        self._producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5,
                                   "message.timeout.ms": 300_000})
        self._topic, self._count, self._rate, self._make = topic, count, rate, make
        self.failed: list[str] = []
        self._refused: list[tuple[bytes, bytes]] = []
        self.resent = 0  # records the broker refused once and took when sent again
        self._thread = threading.Thread(target=self._run, name="steady-producer", daemon=True)

    def start(self) -> SteadyProducer:
        self._thread.start()
        return self

    def _run(self) -> None:
        started = time.monotonic()
        for i in range(self._count):
            key, value = self._make(i)
            self._producer.produce(self._topic, value, key, on_delivery=self._delivered)
            if i % 100 == 99:
                self._producer.poll(0)
                ahead = (i + 1) / self._rate - (time.monotonic() - started)
                if ahead > 0:
                    time.sleep(ahead)  # pacing, not synchronization
        self._producer.flush(300)
        # A broker that lost its storage refuses writes for a while (an error librdkafka does
        # not retry): as any producing application would, send those records again.
        deadline = time.monotonic() + 240
        while self._refused and time.monotonic() < deadline:
            again, self._refused = self._refused, []
            self.resent += len(again)
            for key, value in again:
                self._producer.produce(self._topic, value, key, on_delivery=self._delivered)
            self._producer.flush(60)
            if self._refused:
                time.sleep(0.5)  # pacing retries, bounded by the deadline
        self.failed = [f"{len(self._refused)} records never accepted"] if self._refused else []

    def _delivered(self, error: Any, message: Any) -> None:
        if error is not None:
            self._refused.append((message.key(), message.value()))

    @property
    def running(self) -> bool:
        return self._thread.is_alive()

    def join(self, timeout: float = 300) -> None:
        self._thread.join(timeout)
        assert not self._thread.is_alive(), "the producer did not finish"
        assert not self.failed, f"the test's producer failed: {self.failed[:3]}"


class Worker:
    """One `uee run` process; its stderr is kept (transitions, errors)."""

    def __init__(self, uee_bin: str, path: Path, bootstrap: str, env: dict[str, str],
                 *extra: str) -> None:
        full = {k: v for k, v in os.environ.items() if k != "UEE_BOOTSTRAP"}
        full.update({"UEE_SESSION_TIMEOUT_MS": "6000", "COLUMNS": "200", **env})
        self.process = subprocess.Popen(
            [uee_bin, "run", str(path), "--bootstrap", bootstrap, "--quiet", *extra],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=full, cwd=REPO)
        self.log: list[str] = []
        self._reader = threading.Thread(
            target=lambda: self.log.extend(iter(self.process.stderr.readline, "")),  # type: ignore[union-attr]
            daemon=True)
        self._reader.start()

    @property
    def stderr(self) -> str:
        return "".join(self.log)

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(10)

    def stop(self, timeout: float = 40) -> tuple[int, float]:
        """SIGTERM; (exit code, seconds it took)."""
        started = time.monotonic()
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            code = self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError(f"the worker did not stop within {timeout}s: "
                                 f"{self.stderr[-2000:]}") from None
        self._reader.join(5)
        return code, time.monotonic() - started


def ids_in(bootstrap: str, topic: str) -> Counter[str]:
    """How many times each id is in `topic` (the key is the id)."""
    try:
        records = read_all(bootstrap, topic, timeout=60)
    except TopicNotFoundError:
        return Counter()
    return Counter(r.key.decode() for r in records if r.key is not None)


def count_at(bootstrap: str, topic: str) -> int:
    try:
        return describe_topic(bootstrap, topic).records
    except TopicNotFoundError:
        return 0


@contextmanager
def workers_never_leak(*workers: list[Worker]) -> Iterator[None]:
    try:
        yield
    finally:
        for group in workers:
            for worker in group:
                worker.kill()


def settle(outcome: Outcome, bootstrap: str, source: str | None, sink: str, dlq: str,
           expected: set[str], fault_at: float, timeout: float = 180,
           tick: Callable[[], None] | None = None) -> tuple[Counter[str], Counter[str]]:
    """Wait until every expected id is at the sink or in the DLQ (or the deadline), then
    count what the outcome reports. `tick` runs at every look (a supervisor's check). Ids
    lost get notes: where they are in the Kafka `source` (see `where_lost`; None: not a
    topic), and what the DLQ's records say."""
    deadline = time.monotonic() + timeout
    while True:
        if tick is not None:
            tick()
        # Cheap first: the record counts, then the ids once the counts could add up.
        if count_at(bootstrap, sink) + count_at(bootstrap, dlq) >= len(expected):
            at_sink, at_dlq = ids_in(bootstrap, sink), ids_in(bootstrap, dlq)
            if expected <= set(at_sink) | set(at_dlq):
                outcome.recovered_s = time.monotonic() - fault_at
                break
        if time.monotonic() > deadline:
            at_sink, at_dlq = ids_in(bootstrap, sink), ids_in(bootstrap, dlq)
            break
        time.sleep(0.5)  # polling a condition, bounded by the deadline
    accounted = set(at_sink) | set(at_dlq)
    outcome.produced = len(expected)
    outcome.delivered = len(at_sink)
    outcome.dead_lettered = len(at_dlq)
    outcome.lost = len(expected - accounted)
    outcome.duplicates = sum(at_sink.values()) - len(at_sink)
    if outcome.lost and source is not None:
        outcome.notes.append(where_lost(bootstrap, source, expected - accounted))
    if outcome.lost and at_dlq:
        outcome.notes.append(dead_letter_reasons(bootstrap, dlq))
    return at_sink, at_dlq


def dead_letter_reasons(bootstrap: str, dlq: str) -> str:
    """What the DLQ's records say went wrong: each error code and its first message."""
    reasons: Counter[str] = Counter()
    first: dict[str, str] = {}
    for letter in map(DeadLetter, read_all(bootstrap, dlq, timeout=60)):
        reasons[letter.code] += 1
        first.setdefault(letter.code, letter.headers.get("uee.error.message", "")[:200])
    return "dead letters: " + "; ".join(f"{n} {code} ({first[code]})"
                                        for code, n in reasons.most_common())


def where_lost(bootstrap: str, source: str, lost: set[str]) -> str:
    """Where the ids lost are in the source topic, against what the consumer groups reading
    it committed: ids the broker lost (not in the source), ids behind a committed offset
    (committed, never delivered: an at-least-once breach) and ids past it (not read yet)."""
    where: dict[int, list[int]] = {}
    for r in read_all(bootstrap, source, timeout=60):
        if r.key is not None and r.key.decode() in lost:
            where.setdefault(r.partition, []).append(r.offset)
    committed: dict[int, list[int]] = {}
    admin = AdminClient({"bootstrap.servers": bootstrap})
    groups = admin.list_consumer_groups().result(30).valid
    for group in groups:
        request = ConsumerGroupTopicPartitions(group.group_id)
        offsets = admin.list_consumer_group_offsets([request])[group.group_id].result(30)
        for tp in offsets.topic_partitions:
            if tp.topic == source and tp.offset >= 0:
                committed.setdefault(tp.partition, []).append(tp.offset)
    found = sum(len(offsets) for offsets in where.values())
    parts = [f"{len(lost) - found} lost ids not in the source"]
    for partition, offsets in sorted(where.items()):
        behind = sum(1 for o in offsets if o < max(committed.get(partition, [-1])))
        parts.append(f"p{partition}: {len(offsets)} at offsets {min(offsets)}-{max(offsets)}, "
                     f"{behind} behind a commit (committed: {committed.get(partition)})")
    return "; ".join(parts)


def final_state(uee_bin: str, bootstrap: str, pipeline: str, env: dict[str, str]) -> str:
    full = {k: v for k, v in os.environ.items() if k != "UEE_BOOTSTRAP"}
    full.update(env)
    done = subprocess.run([uee_bin, "status", "--bootstrap", bootstrap, "--json"],
                          capture_output=True, text=True, timeout=120, env=full, cwd=REPO)
    assert done.returncode == 0, done.stderr
    rows = [p for p in json.loads(done.stdout)["providers"] if p["pipeline"] == pipeline]
    assert rows, f"uee status has no provider {pipeline}"
    return str(rows[0]["state"])


def create_topics(bootstrap: str, *topics: str, partitions: int = 3) -> None:
    ensure_topics(bootstrap, list(topics), partitions, 1)


def wait_for_third(bootstrap: str, sink: str, count: int, timeout: float = 120) -> float:
    """Until a third of the ids are at the sink; returns when (the fault's time)."""
    wait_until(lambda: count_at(bootstrap, sink) >= count // 3, timeout,
               f"a third of {count} records at {sink}")
    return time.monotonic()
