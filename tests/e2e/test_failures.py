"""What goes wrong, as a user meets it: a dying broker, oversized records, tombstones,
slow sources, hostile bytes in topics."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Producer

from tests.conftest import Completed, wait_until
from tests.helpers import produce, unique
from uee.connectors.generator import generate_orders
from uee.streams.broker import EmbeddedBroker
from uee.streams.state import CHECKPOINTS, state_topic
from uee.streams.topics import describe_topic, ensure_topics, is_tansu, read_all

pytestmark = pytest.mark.e2e
Uee = Callable[..., Completed]


def pipeline_file(tmp_path: Path, name: str, source: str, sink: str, stages: str = "") -> Path:
    path = tmp_path / f"{name}.yaml"
    path.write_text(f"pipeline: {name}\nsource: {{kafka: {{topic: {source}}}}}\n{stages}"
                    f"sink: {{kafka: {{topic: {sink}}}}}\n")
    return path


def _fill(bootstrap: str, topic: str, count: int) -> None:
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 20})
    for i in range(count):
        producer.produce(topic, b'{"n": %d}' % i, str(i).encode())
        if i % 10_000 == 0:
            producer.poll(0)
    assert producer.flush(30) == 0


def _worker(uee_bin: str, path: Path, bootstrap: str, *extra: str) -> subprocess.Popen[str]:
    env = {**os.environ, "UEE_SESSION_TIMEOUT_MS": "3000", "UEE_BATCH_SIZE": "20",
           "UEE_FLUSH_TIMEOUT_S": "2", "UEE_SHUTDOWN_TIMEOUT_S": "15"}
    return subprocess.Popen([uee_bin, "run", str(path), "--bootstrap", bootstrap, "--quiet",
                             *extra], env=env, text=True, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)


@dataclass(frozen=True)
class Outage:
    code: int
    stderr: str
    delivered: set[bytes | None]
    dead_letters: int
    checkpoint: dict[str, Any] | None  # the pipeline's last checkpoint row


# No checkpoint while the run goes on: an outage then always meets a sink's delivery (a
# checkpoint's state events, written to the same broker, are the other place it can meet).
NO_CHECKPOINT = "{every: 100000000, interval: 3600}"


def _through_an_outage(uee_bin: str, tmp_path: Path, name: str, count: int, dlq: str,
                       until: str, checkpoint: str = NO_CHECKPOINT, stages: str = "",
                       flowing: str | None = None) -> Outage:
    """Run a pipeline, freeze the broker mid-run until the worker's log shows `until` (the
    state the outage must drive it into), then let both finish. The source is a paced
    generator: it needs no broker, so the worker always has records to deliver while the
    broker is frozen (a Kafka source may have nothing fetched, and then nothing fails).
    The outage begins once `flowing` (the sink by default) holds more than 1,000 records,
    or 10 for another topic."""
    with EmbeddedBroker() as broker:
        path = tmp_path / f"{name}.yaml"
        path.write_text(f"pipeline: {name}\nsource: {{generator: {{count: {count}, seed: 3, "
                        f"rate: {count // 5}}}}}\n{stages}sink: {{kafka: {{topic: {name}.out}}}}"
                        f"\ndlq: {dlq}\ncheckpoint: {checkpoint}\n")
        worker = _worker(uee_bin, path, broker.bootstrap, "--until-idle", "3")
        log: list[str] = []
        reader = threading.Thread(target=lambda: log.extend(iter(worker.stderr.readline, "")),
                                  daemon=True)  # type: ignore[union-attr]
        reader.start()
        try:
            topic, enough = (f"{name}.out", 1000) if flowing is None else (flowing, 10)
            wait_until(lambda: _records(broker.bootstrap, topic) > enough, 60,
                       "records flowing")
            assert "TERMINATED" not in "".join(log), \
                "the run finished before the outage could begin"
            assert broker.process is not None
            broker.process.send_signal(signal.SIGSTOP)
            try:
                try:
                    wait_until(lambda: until in "".join(log), 90, f"the worker to log {until}")
                except AssertionError as exc:  # what the worker did instead, for the report
                    raise AssertionError(f"{exc}; exit {worker.poll()}; its log ends: "
                                         f"{''.join(log)[-3000:]}") from None
            finally:
                broker.process.send_signal(signal.SIGCONT)
            worker.wait(180)
            reader.join(10)
        finally:
            _never_leak(worker)
        delivered = {r.key for r in read_all(broker.bootstrap, f"{name}.out", timeout=60)}
        assert delivered <= _generated_keys(count)
        return Outage(worker.returncode, "".join(log), delivered,
                      _records(broker.bootstrap, f"{name}.dlq"),
                      _last_checkpoint(broker.bootstrap, name))


def _last_checkpoint(bootstrap: str, pipeline: str) -> dict[str, Any] | None:
    rows = [row for record in read_all(bootstrap, state_topic(os.environ["UEE_APP"]),
                                       timeout=60)
            for table, key, row in json.loads(record.value or b"{}").get("sets", [])
            if table == CHECKPOINTS and key == pipeline]
    return rows[-1] if rows else None


def _generated_keys(count: int) -> set[bytes | None]:
    return {str(r["order_id"]).encode() for r in generate_orders(3, count)}


def test_a_broker_that_pauses_is_waited_for_with_backoff_and_nothing_is_lost(
    uee_bin: str, tmp_path: Path
) -> None:
    run = _through_an_outage(uee_bin, tmp_path, "pause", 30_000,
                             "{max_retries: 6, backoff: 0.5}", '"attempt": 2')
    assert run.code == 0, run.stderr
    assert '"state": "WAITING_BACKOFF"' in run.stderr  # the agent did wait and retry
    assert run.delivered == _generated_keys(30_000)  # nothing lost


def test_a_sink_breaker_opens_holds_the_batch_and_closes_when_the_broker_is_back(
    uee_bin: str, tmp_path: Path
) -> None:
    run = _through_an_outage(uee_bin, tmp_path, "brk", 20_000, "{max_retries: 1, backoff: "
                             "0.2, breaker_failures: 2, breaker_open: 1}", '"breaker": "OPEN"')
    assert run.code == 0, run.stderr
    assert '"breaker": "OPEN"' in run.stderr and '"breaker": "CLOSED"' in run.stderr
    assert run.delivered == _generated_keys(20_000)  # nothing lost...
    assert run.dead_letters == 0  # ...and no dead-letter flood while the breaker was open


def test_a_broker_frozen_during_a_checkpoint_is_waited_for_and_the_checkpoint_completes(
    uee_bin: str, tmp_path: Path
) -> None:
    # Every record is filtered out: the only writes to the broker are the checkpoints' state
    # events (one every 100 records), so the outage always meets one of them.
    count, state = 20_000, state_topic(os.environ["UEE_APP"])
    run = _through_an_outage(uee_bin, tmp_path, "ckpt", count, "{max_retries: 1}",
                             '"waiting_for": "state"', checkpoint="{every: 100}",
                             stages="stages:\n  - filter: amount < 0\n", flowing=state)
    assert run.code == 0, run.stderr
    assert '"reason": "state events acknowledged"' in run.stderr  # ...and it went on
    assert run.delivered == set()
    assert run.checkpoint is not None  # every record checkpointed, once:
    assert run.checkpoint["records"]["filtered"] == count, run.checkpoint


def test_a_broker_that_dies_leaves_a_clear_error_and_stops_promptly(
    uee_bin: str, tmp_path: Path
) -> None:
    with EmbeddedBroker() as broker:
        _fill(broker.bootstrap, "die.in", 100_000)
        path = pipeline_file(tmp_path, "die", "die.in", "die.out")
        worker = _worker(uee_bin, path, broker.bootstrap, "--until-idle", "5")
        try:
            wait_until(lambda: _records(broker.bootstrap, "die.out") > 1000, 60,
                       "records flowing")
            assert broker.process is not None
            broker.process.send_signal(signal.SIGKILL)
            wait_until(lambda: broker.process is not None
                       and broker.process.poll() is not None, 10, "the broker to die")
            # Whether it waits on a batch it cannot deliver (WAITING_BACKOFF) or idles with
            # no broker to read from, a stop request ends it promptly, with one clear error.
            worker.send_signal(signal.SIGTERM)
            stopped_at = time.monotonic()
            _, stderr = worker.communicate(timeout=60)
        finally:
            _never_leak(worker)
    took = time.monotonic() - stopped_at
    assert worker.returncode == 1, stderr
    errors = [line for line in stderr.splitlines() if line.startswith("error[")]
    assert len(errors) == 1 and errors[0].split("]")[0] in (
        "error[AGENT_FAILED", "error[KAFKA_UNREACHABLE", "error[SHUTDOWN_TIMEOUT"), stderr
    assert "Traceback" not in stderr
    assert took < 30, f"uee took {took:.0f}s to stop"


def _never_leak(worker: subprocess.Popen[str]) -> None:
    """A failed test must not leave a uee process behind."""
    if worker.poll() is None:
        worker.kill()
        worker.wait(10)


def _records(bootstrap: str, topic: str) -> int:
    try:
        return describe_topic(bootstrap, topic).records
    except Exception:
        return 0


def test_an_oversized_record_goes_to_the_dlq_and_the_rest_flows(
    kafka: str, uee: Uee, tmp_path: Path
) -> None:
    name, source, sink = unique("big"), unique("big.in"), unique("big.out")
    produce(kafka, source, [(b"small", b'{"s": "x"}'), (b"huge", json.dumps({"s": "y" * 3000})
                            .encode()), (b"after", b'{"s": "z"}')])
    path = pipeline_file(tmp_path, name, source, sink, "stages:\n  - map: {t: s + s}\n")
    done = uee("run", str(path), "--bootstrap", kafka, "--until-idle", "1",
               env={"UEE_MAX_RECORD_BYTES": "4096"})
    assert done.code == 0, done.stderr
    assert sorted(r.key for r in read_all(kafka, sink)) == [b"after", b"small"]
    [dead] = read_all(kafka, f"{name}.dlq")
    headers = dict(dead.headers)
    assert dead.key == b"huge" and dead.value == json.dumps({"s": "y" * 3000}).encode()
    assert headers["uee.error.code"] == b"SINK_REJECTED"
    assert headers["uee.stage"] == f"{name}.sink.default".encode()


def test_tombstones_reach_the_dlq_as_they_came(kafka: str, uee: Uee, tmp_path: Path) -> None:
    name, source, sink = unique("tomb"), unique("tomb.in"), unique("tomb.out")
    producer = Producer({"bootstrap.servers": kafka})
    producer.produce(source, None, b"deleted")
    producer.produce(source, b'{"a": 1}', b"kept")
    assert producer.flush(10) == 0
    done = uee("run", str(pipeline_file(tmp_path, name, source, sink)), "--bootstrap", kafka,
               "--until-idle", "1")
    assert done.code == 0, done.stderr
    assert [r.key for r in read_all(kafka, sink)] == [b"kept"]
    [dead] = read_all(kafka, f"{name}.dlq")
    assert dead.key == b"deleted" and dead.value is None
    assert b"tombstone" in dict(dead.headers)["uee.error.message"]


def test_until_idle_waits_for_a_slow_generator(kafka: str, uee: Uee, tmp_path: Path) -> None:
    name, sink = unique("slow"), unique("slow.out")
    path = tmp_path / "slow.yaml"
    path.write_text(f"pipeline: {name}\nsource: {{generator: {{count: 6, rate: 3}}}}\n"
                    f"sink: {{kafka: {{topic: {sink}}}}}\n")
    done = uee("run", str(path), "--bootstrap", kafka, "--until-idle", "0.5")
    assert done.code == 0, done.stderr
    assert len(read_all(kafka, sink)) == 6


def test_tail_shows_hostile_bytes_literally(kafka: str, uee: Uee) -> None:
    topic = unique("hostile")
    deep = ("[" * 5000 + "]" * 5000).encode()
    produce(kafka, topic, [(b"[red]secret", b"[/]"), (b"deep", deep)])
    done = uee("topics", "tail", topic, "-n", "5", "--bootstrap", kafka)
    assert done.code == 0, done.stderr
    assert "key [red]secret" in done.stdout
    assert "[/]" in done.stdout
    assert "key deep" in done.stdout


def test_port_in_use_is_a_clear_error(uee: Uee) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = uee("broker", "--port", str(port))
    assert done.code == 1
    assert done.stderr.strip() == (f"error[BROKER_START]: cannot listen on 127.0.0.1:{port}: "
                                   "Address already in use; choose another port with --port "
                                   "(or omit it for a free one)")


def test_stats_json_to_a_missing_folder_is_refused_before_running(uee: Uee) -> None:
    done = uee("run", "examples/quickstart.yaml", "--stats-json", "/nonexistent/dir/s.json")
    assert done.code == 2
    assert "--stats-json" in done.stderr and "started the embedded broker" not in done.stdout


def test_a_record_larger_than_the_sink_topic_takes_is_dead_lettered_where_the_broker_refuses_it(
    kafka: str, uee: Uee, tmp_path: Path
) -> None:
    """Below uee's own limit, above the sink topic's `max.message.bytes`: Apache Kafka refuses
    it (a broker-side rejection, not retried: SINK_REJECTED to the DLQ); Tansu 0.6.0 keeps no
    such limit and takes it. Either way every record is in exactly one place and the run
    goes on."""
    name, source, sink = unique("limit"), unique("limit.in"), unique("limit.out")
    ensure_topics(kafka, [sink], 1, 1, configs={"max.message.bytes": "20000"})
    huge = json.dumps({"s": "y" * 15000}).encode()  # 30 kB once the map doubles it
    produce(kafka, source, [(b"small", b'{"s": "x"}'), (b"huge", huge),
                            (b"after", b'{"s": "z"}')])
    path = pipeline_file(tmp_path, name, source, sink, "stages:\n  - map: {t: s + s}\n")
    done = uee("run", str(path), "--bootstrap", kafka, "--until-idle", "1")
    assert done.code == 0, done.stderr
    delivered = sorted(r.key for r in read_all(kafka, sink))
    dead = read_all(kafka, f"{name}.dlq")
    if is_tansu(kafka):
        assert delivered == [b"after", b"huge", b"small"] and dead == []
    else:
        assert delivered == [b"after", b"small"], [(d.key, dict(d.headers)) for d in dead]
        [letter] = dead
        assert letter.key == b"huge" and letter.value == huge
        assert dict(letter.headers)["uee.error.code"] == b"SINK_REJECTED"


def test_a_session_timeout_the_broker_refuses_is_a_clear_error(
    kafka: str, uee: Uee, tmp_path: Path
) -> None:
    """Apache Kafka refuses a session timeout outside its group.min/max.session.timeout.ms
    (the test broker: 1 s to 10 s), and librdkafka would retry the join forever, silently;
    Tansu takes any."""
    name, source, sink = unique("session"), unique("session.in"), unique("session.out")
    produce(kafka, source, [(b"k", b'{"s": "x"}')])
    path = pipeline_file(tmp_path, name, source, sink)
    done = uee("run", str(path), "--bootstrap", kafka, "--until-idle", "1",
               env={"UEE_SESSION_TIMEOUT_MS": "12000"}, timeout=90)
    if is_tansu(kafka):
        assert done.code == 0, done.stderr
        assert [r.key for r in read_all(kafka, sink)] == [b"k"]
    else:
        assert done.code == 1
        assert "session timeout of 12000 ms" in done.stderr
        assert "UEE_SESSION_TIMEOUT_MS" in done.stderr and "Traceback" not in done.stderr
