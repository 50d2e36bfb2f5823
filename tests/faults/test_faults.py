"""Faults injected into real processes with real signals (`make faults`). Every scenario: ids
0..N-1 produced at a steady rate, the DLQ and checkpoints on, the fault once a third of the
ids are at the sink, recovery, then 0 lost (every id at the sink or in the DLQ), duplicates
counted, the provider's final state read from `uee status`.

Two sizes: `make test` runs a small version of every scenario (3,000 ids at 1,000/s, a 5 s
freeze, 3 s without the HTTP server); `make faults` (UEE_FAULTS=full) the full one (30,000
ids at 3,000/s, 30 s and 20 s)."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.conftest import wait_until
from tests.faults.harness import (
    PASSED,
    REPORT,
    Outcome,
    SteadyProducer,
    Worker,
    create_topics,
    final_state,
    pipeline_file,
    record,
    settle,
    wait_for_third,
    workers_never_leak,
)
from tests.feed import Feed
from tests.helpers import unique
from uee.streams.broker import EmbeddedBroker
from uee.streams.topics import is_tansu

pytestmark = pytest.mark.faults

FULL = os.environ.get("UEE_FAULTS") == "full"  # make faults; make test runs the small one
COUNT = 30_000 if FULL else 3_000
RATE = 3_000 if FULL else 1_000  # records/s: the stream lasts 10 s (3 s), faults land in it
BATCH_SIZE = 500 if FULL else 100  # small batches: a kill lands between and inside them
BATCH = {"UEE_BATCH_SIZE": str(BATCH_SIZE)}
FREEZE_S = 30 if FULL else 5  # the broker's SIGSTOP
HTTP_DOWN_S = 20 if FULL else 3  # the HTTP source's server away
HTTP_ITEMS = 3_000 if FULL else 1_500
ALL = {str(i) for i in range(COUNT)}


def broker_name(bootstrap: str) -> str:
    return "Tansu" if is_tansu(bootstrap) else "Apache Kafka"


@pytest.fixture
def outcome(request: pytest.FixtureRequest) -> Iterator[Outcome]:
    """The scenario's row of the report, added whatever the test's result (once it ran:
    a scenario skipped on this broker has no row)."""
    row = Outcome(request.node.name.removeprefix("test_").replace("_", " "), "-")
    yield row
    if row.broker != "-":
        row.passed = request.node.stash.get(PASSED, False)
        REPORT.append(row)


def names(prefix: str) -> tuple[str, str, str, str]:
    name = unique(prefix)
    return name, f"{name}.in", f"{name}.out", f"{name}.dlq"


def started(worker: Worker) -> None:
    """Until the worker's Faust app has started (its app state left BOOTSTRAPPING): a broker
    that dies before that is a known issue of its own (README, Tests)."""
    wait_until(lambda: '"from": "BOOTSTRAPPING"' in worker.stderr, 120,
               "the worker's Faust app to start")


def restarted(worker: Worker) -> Worker:
    """Until a replacement worker reads (its providers RUNNING): in the small version the
    sink may already hold every id when it starts, and a stop sent before it has started
    tests nothing (a SIGTERM during its imports ends it unhandled, a known issue)."""
    wait_until(lambda: '"to": "RUNNING"' in worker.stderr
               or worker.process.poll() is not None, 120, "the restarted worker to read")
    return worker


def check(outcome: Outcome, code: int, took: float, worker: Worker | None = None) -> None:
    log = worker.stderr[-3000:] if worker is not None else ""
    assert outcome.lost == 0, f"{outcome.lost} ids lost ({'; '.join(outcome.notes)}): {log}"
    assert code == 0, f"exit {code}: {log}"
    assert took <= 30, f"the drain took {took:.1f}s: {log}"
    assert outcome.final_state == "TERMINATED", f"{outcome.final_state}: {log}"


def test_worker_kill_9_mid_batch_then_restart(kafka: str, uee_bin: str, tmp_path: Path,
                                              outcome: Outcome) -> None:
    outcome.broker = broker_name(kafka)
    name, source, sink, dlq = names("k9")
    create_topics(kafka, source)
    path = pipeline_file(tmp_path, name, source, sink)
    producer = SteadyProducer(kafka, source, COUNT, RATE).start()
    workers = [Worker(uee_bin, path, kafka, BATCH)]
    with workers_never_leak(workers):
        fault = wait_for_third(kafka, sink, COUNT)
        workers[0].kill()
        workers.append(restarted(Worker(uee_bin, path, kafka, BATCH)))
        producer.join()
        settle(outcome, kafka, source, sink, dlq, ALL, fault)
        code, took = workers[-1].stop()
    outcome.final_state = final_state(uee_bin, kafka, name, {})
    check(outcome, code, took, workers[-1])


def test_graceful_sigterm_under_load_then_restart(kafka: str, uee_bin: str, tmp_path: Path,
                                                  outcome: Outcome) -> None:
    outcome.broker = broker_name(kafka)
    name, source, sink, dlq = names("term")
    create_topics(kafka, source)
    path = pipeline_file(tmp_path, name, source, sink)
    producer = SteadyProducer(kafka, source, COUNT, RATE).start()
    workers = [Worker(uee_bin, path, kafka, BATCH)]
    with workers_never_leak(workers):
        fault = wait_for_third(kafka, sink, COUNT)
        code, took = workers[0].stop()
        outcome.notes.append(f"drained in {took:.1f}s, exit {code}")
        assert code == 0 and took <= 30, workers[0].stderr[-2000:]
        workers.append(restarted(Worker(uee_bin, path, kafka, BATCH)))
        producer.join()
        settle(outcome, kafka, source, sink, dlq, ALL, fault)
        code, took = workers[-1].stop()
    outcome.final_state = final_state(uee_bin, kafka, name, {})
    check(outcome, code, took, workers[-1])
    # The drain committed what it delivered: a restart reads at most the last batch again.
    assert outcome.duplicates <= BATCH_SIZE, outcome.duplicates


def test_poison_flood_and_records_over_the_maximum_go_to_the_dlq(
    kafka: str, uee_bin: str, tmp_path: Path, outcome: Outcome
) -> None:
    outcome.broker = broker_name(kafka)
    name, source, sink, dlq = names("poison")
    create_topics(kafka, source)
    # 1 in 25 not JSON, 1 in 97 larger than the pipeline's maximum: 5% fail. The pause
    # (its own tests) must not come: the error window counts 100 records as they arrive,
    # and keys spread the ids over 3 partitions, so a window can hold 11 failures (it did,
    # and the pipeline paused at the default 10%). At 30%, no spread of 5% reaches it.
    path = pipeline_file(tmp_path, name, source, sink, dlq="pause_rate: 0.3")
    producer = SteadyProducer(kafka, source, COUNT, RATE,
                              lambda i: record(i, poison_every=25, big_every=97)).start()
    workers = [Worker(uee_bin, path, kafka, {**BATCH, "UEE_MAX_RECORD_BYTES": "4096"})]
    with workers_never_leak(workers):
        fault = time.monotonic()
        producer.join()
        _, at_dlq = settle(outcome, kafka, source, sink, dlq, ALL, fault)
        code, took = workers[0].stop()
    outcome.final_state = final_state(uee_bin, kafka, name, {})
    check(outcome, code, took, workers[-1])
    bad = {str(i) for i in range(COUNT) if i % 25 == 0 or i % 97 == 0}
    assert set(at_dlq) == bad  # exactly the records at fault, each once at least
    outcome.notes.append(f"{len(bad)} records at fault, all in the DLQ")


def test_stateful_diff_pipeline_kill_9_then_restart(kafka: str, uee_bin: str, tmp_path: Path,
                                                    outcome: Outcome) -> None:
    outcome.broker = broker_name(kafka)
    name, source, sink, dlq = names("diffk")
    create_topics(kafka, source)
    path = pipeline_file(tmp_path, name, source, sink, stages="[{diff: {key: id}}]")
    producer = SteadyProducer(kafka, source, COUNT, RATE).start()
    workers = [Worker(uee_bin, path, kafka, BATCH)]
    with workers_never_leak(workers):
        fault = wait_for_third(kafka, sink, COUNT)
        workers[0].kill()
        workers.append(restarted(Worker(uee_bin, path, kafka, BATCH)))
        producer.join()
        settle(outcome, kafka, source, sink, dlq, ALL, fault)
        code, took = workers[-1].stop()
    outcome.final_state = final_state(uee_bin, kafka, name, {})
    check(outcome, code, took, workers[-1])
    outcome.notes.append("records read again pass the diff only if its hashes were not "
                         "checkpointed yet")


def test_two_workers_kill_9_one_the_other_takes_its_partitions(
    kafka: str, uee_bin: str, tmp_path: Path, outcome: Outcome
) -> None:
    if is_tansu(kafka):
        pytest.skip("Tansu 0.6.0 does not settle two-member groups reliably: this scenario "
                    "runs on the Apache Kafka tier")
    outcome.broker = broker_name(kafka)
    name, source, sink, dlq = names("two")
    create_topics(kafka, source, partitions=6)
    path = pipeline_file(tmp_path, name, source, sink)
    producer = SteadyProducer(kafka, source, COUNT, RATE).start()
    workers = [Worker(uee_bin, path, kafka, BATCH), Worker(uee_bin, path, kafka, BATCH)]
    with workers_never_leak(workers):
        fault = wait_for_third(kafka, sink, COUNT)
        workers[0].kill()
        producer.join()
        settle(outcome, kafka, source, sink, dlq, ALL, fault)
        assert workers[1].process.poll() is None, workers[1].stderr[-2000:]
        code, took = workers[1].stop()
    outcome.final_state = final_state(uee_bin, kafka, name, {})
    check(outcome, code, took, workers[-1])


def test_rebalance_mid_batch_a_second_and_third_worker_join(
    kafka: str, uee_bin: str, tmp_path: Path, outcome: Outcome
) -> None:
    if is_tansu(kafka):
        pytest.skip("Tansu 0.6.0 does not settle three-member groups reliably: this "
                    "scenario runs on the Apache Kafka tier")
    outcome.broker = broker_name(kafka)
    name, source, sink, dlq = names("join")
    create_topics(kafka, source, partitions=6)
    path = pipeline_file(tmp_path, name, source, sink)
    producer = SteadyProducer(kafka, source, COUNT, RATE).start()
    workers = [Worker(uee_bin, path, kafka, BATCH)]
    with workers_never_leak(workers):
        fault = wait_for_third(kafka, sink, COUNT)
        workers += [Worker(uee_bin, path, kafka, BATCH), Worker(uee_bin, path, kafka, BATCH)]
        producer.join()
        settle(outcome, kafka, source, sink, dlq, ALL, fault)
        for joined in workers[1:]:
            started(joined)  # a stop before its start tests nothing (see `restarted`)
        stops = [worker.stop() for worker in workers]
    outcome.final_state = final_state(uee_bin, kafka, name, {})
    for (code, took), worker in zip(stops, workers, strict=True):
        check(outcome, code, took, worker)


# -- faults of the broker and its storage: each scenario owns its broker ----------------

# Injects a fault into a running worker's broker; returns what a supervisor checks while
# the system recovers (see `settle`), or None.
Inject = Callable[[Worker, SteadyProducer], Callable[[], None] | None]


def one_worker_through(kafka: str, uee_bin: str, tmp_path: Path, outcome: Outcome,
                       prefix: str, inject: Inject) -> tuple[Worker, SteadyProducer]:
    """One worker through a broker's fault, injected once its Faust app has started and a
    third of the ids are at the sink: it must ride the fault out, lose nothing and drain."""
    name, source, sink, dlq = names(prefix)
    create_topics(kafka, source)
    path = pipeline_file(tmp_path, name, source, sink)
    producer = SteadyProducer(kafka, source, COUNT, RATE).start()
    worker = Worker(uee_bin, path, kafka, BATCH)
    with workers_never_leak([worker]):
        started(worker)
        fault = wait_for_third(kafka, sink, COUNT)
        tick = inject(worker, producer)
        producer.join()
        settle(outcome, kafka, source, sink, dlq, ALL, fault, tick=tick)
        assert worker.process.poll() is None, \
            f"the worker exited during the fault: {worker.stderr[-2000:]}"
        code, took = worker.stop()
    outcome.final_state = final_state(uee_bin, kafka, name, {})
    check(outcome, code, took, worker)
    return worker, producer


def kill_9_and(process: subprocess.Popen[bytes] | None, restart: Callable[[], None]) -> None:
    assert process is not None
    process.send_signal(signal.SIGKILL)
    process.wait(10)
    restart()  # a supervisor's restart, on the same port and folder


def test_broker_freeze_sigstop_then_sigcont(uee_bin: str, tmp_path: Path,
                                               outcome: Outcome) -> None:
    with EmbeddedBroker() as broker:
        outcome.broker = "Tansu (own)"

        def freeze(worker: Worker, producer: SteadyProducer) -> None:
            assert broker.process is not None
            broker.process.send_signal(signal.SIGSTOP)
            try:
                frozen_until = time.monotonic() + FREEZE_S  # the fault's length, not a wait
                wait_until(lambda: time.monotonic() >= frozen_until
                           or worker.process.poll() is not None, FREEZE_S + 10, "the freeze")
            finally:
                broker.process.send_signal(signal.SIGCONT)
            assert worker.process.poll() is None, \
                f"the worker died in the freeze: {worker.stderr[-2000:]}"

        worker, _ = one_worker_through(broker.bootstrap, uee_bin, tmp_path, outcome, "freeze",
                                       freeze)
        restarts = worker.stderr.count('"from": "IDLE"')
        outcome.notes.append(f"frozen {FREEZE_S} s, rode it out in one process "
                             f"({restarts} start)")


def test_durable_broker_kill_9_and_restart(uee_bin: str, tmp_path: Path,
                                           outcome: Outcome) -> None:
    with EmbeddedBroker(durable=str(tmp_path / "durable")) as broker:
        outcome.broker = "Tansu durable (own)"
        one_worker_through(broker.bootstrap, uee_bin, tmp_path, outcome, "bk9",
                           lambda worker, producer: kill_9_and(broker.process, broker.revive))


def test_apache_kafka_broker_kill_9_and_restart(kafka: str, uee_bin: str, tmp_path: Path,
                                               outcome: Outcome) -> None:
    if is_tansu(kafka):
        pytest.skip("runs on the Apache Kafka tier (the embedded broker's "
                    "kill -9 is the durable scenario)")
    from tests.apache_kafka import ApacheKafka

    with ApacheKafka() as own:
        outcome.broker = "Apache Kafka (own)"
        one_worker_through(own.bootstrap, uee_bin, tmp_path, outcome, "ak9",
                           lambda worker, producer: kill_9_and(own.process, own.restart))


def test_durable_storage_kill_9_and_restart(uee_bin: str, tmp_path: Path,
                                            outcome: Outcome) -> None:
    with EmbeddedBroker(durable=str(tmp_path / "durable")) as broker:
        outcome.broker = "Tansu durable (own)"
        tansu = broker.pid

        def kill_storage(worker: Worker, producer: SteadyProducer) -> Callable[[], None]:
            assert broker.storage is not None and broker.storage.pid is not None
            os.kill(broker.storage.pid, signal.SIGKILL)
            wait_until(lambda: broker.storage is not None and not broker.storage.alive, 10,
                       "SeaweedFS to die")
            broker.revive()
            # A supervisor restarts whatever dies meanwhile (Tansu may, on its lost storage).
            wait_until(lambda: (broker.revive(), not producer.running)[1], 300,
                       "the producer to finish")
            return broker.revive

        _, producer = one_worker_through(broker.bootstrap, uee_bin, tmp_path, outcome, "sk9",
                                         kill_storage)
        if broker.pid != tansu:
            outcome.notes.append("Tansu exited after the storage came back: restarted")
        if producer.resent:
            outcome.notes.append(f"the broker refused {producer.resent} writes of the "
                                 "test's producer while its storage was away")


def test_http_source_server_down_then_back(kafka: str, uee_bin: str, tmp_path: Path,
                                              outcome: Outcome) -> None:
    outcome.broker = broker_name(kafka)
    name, _, sink, dlq = names("httpdown")
    total = HTTP_ITEMS
    with Feed(total) as feed:
        source = (f"{{http: {{url: '{feed.url}', cursor_field: modified, items: items, "
                  "id_field: id, page_size: 50, interval: 0.2, max_backoff: 2}}")
        path = pipeline_file(tmp_path, name, "", sink, source_yaml=source)
        # About 2,500 items/s (1,000 for the small version): the outage lands mid-feed.
        feed.delay = 0.02 if FULL else 0.05
        workers = [Worker(uee_bin, path, kafka, {})]
        with workers_never_leak(workers):
            fault = wait_for_third(kafka, sink, total)
            feed.down()
            down_until = time.monotonic() + HTTP_DOWN_S  # the fault's length, not a wait
            wait_until(lambda: '"to": "WAITING_BACKOFF"' in workers[0].stderr
                       and time.monotonic() >= down_until, HTTP_DOWN_S + 40,
                       f"the provider in WAITING_BACKOFF, {HTTP_DOWN_S} s down")
            feed.up()
            settle(outcome, kafka, None, sink, dlq, set(feed.items), fault)
            code, took = workers[0].stop()
        outcome.final_state = final_state(uee_bin, kafka, name, {})
    outcome.notes.append(f"down {HTTP_DOWN_S} s, WAITING_BACKOFF while down")
    check(outcome, code, took, workers[-1])
