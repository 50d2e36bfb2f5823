"""Resumable providers on a real broker, with real kills: checkpoints in the state tables,
`uee status`, the HTTP source against a real HTTP server, and diff state that survives a
restart."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Producer

from tests.conftest import REPO, Completed, wait_until
from tests.feed import Feed
from tests.helpers import committed, members_with_partitions, produce, unique
from uee.streams.settings import Settings
from uee.streams.state import CHECKPOINTS, PROVIDERS, event, state_topic
from uee.streams.status import read_tables
from uee.streams.topics import (
    TopicNotFoundError,
    describe_topic,
    ensure_topics,
    is_tansu,
    read_all,
)

pytestmark = pytest.mark.e2e
Uee = Callable[..., Completed]


def status(uee: Uee, kafka: str) -> dict[str, Any]:
    done = uee("status", "--bootstrap", kafka, "--json")
    assert done.code == 0, done.stderr
    document: dict[str, Any] = json.loads(done.stdout)
    return document


def provider(document: dict[str, Any], pipeline: str) -> dict[str, Any]:
    return next(p for p in document["providers"] if p["pipeline"] == pipeline)


def http_pipeline(path: Path, name: str, url: str, sink: str, page_size: int = 100) -> Path:
    path.write_text(f"""\
pipeline: {name}
source:
  http:
    url: {url}
    cursor_field: modified
    items: items
    id_field: id
    urn: {{provider: demo, type: item}}
    page_size: {page_size}
    interval: 0.2
sink: {{kafka: {{topic: {sink}}}}}
""")
    return path


def checkpoint_of(kafka: str, pipeline: str) -> Any:
    tables = read_tables(Settings.from_env(bootstrap=kafka))
    return tables[CHECKPOINTS].get(pipeline)


def at_sink(kafka: str, topic: str) -> int:
    """Records in `topic`; 0 before the worker created it."""
    try:
        return describe_topic(kafka, topic).records
    except TopicNotFoundError:
        return 0


def ids_at(kafka: str, topic: str) -> Counter[str]:
    return Counter(json.loads(r.value)["id"] for r in read_all(kafka, topic) if r.value)


def start(uee_bin: str, path: Path, kafka: str, *extra: str) -> subprocess.Popen[str]:
    env = {k: v for k, v in os.environ.items() if k != "UEE_BOOTSTRAP"}
    env.update({"UEE_SESSION_TIMEOUT_MS": "3000"})
    return subprocess.Popen([uee_bin, "run", str(path), "--bootstrap", kafka, "--quiet",
                             *extra], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            text=True, env=env, cwd=REPO)


def kill(process: subprocess.Popen[str]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGKILL)
        process.wait(10)


def test_the_http_source_resumes_from_its_checkpoint_and_imports_only_what_changed(
    kafka: str, uee: Uee, tmp_path: Path
) -> None:
    name, sink = unique("feed"), unique("feed.out")
    with Feed(250) as feed:
        path = http_pipeline(tmp_path / "feed.yaml", name, feed.url, sink)
        first = uee("run", str(path), "--bootstrap", kafka, "--until-idle", "1")
        assert first.code == 0, first.stderr
        assert feed.requests[0].since is None  # the very first request has no cursor
        records = read_all(kafka, sink)
        assert len(records) == 250
        for record in records:
            urn = dict(record.headers)["uee.urn"].decode()
            assert urn == f"uee::demo::item::{json.loads(record.value or b'')['id']}"
        row = provider(status(uee, kafka), name)
        assert row["checkpoint"]["cursor"] == {"since": 250}
        assert row["checkpoint"]["urn"] == "uee::demo::item::item-00249"
        assert row["state"] == "TERMINATED" and row["records"]["out"] == 250

        changed = [f"item-{n:05d}" for n in range(0, 250, 25)]  # 10 changed at the server
        feed.change(changed, price=11)
        added = feed.add(30)
        feed.requests.clear()
        second = uee("run", str(path), "--bootstrap", kafka, "--until-idle", "1")
        assert second.code == 0, second.stderr
        assert feed.requests[0].since == 250  # not from an empty cursor
    counts = ids_at(kafka, sink)
    assert sum(counts.values()) == 290  # only what changed came again
    assert {i for i, n in counts.items() if n == 2} == set(changed)
    assert set(added) <= set(counts)


def test_a_checkpoint_one_batch_old_reads_that_batch_again_and_loses_nothing(
    kafka: str, uee: Uee, tmp_path: Path
) -> None:
    """The state tables may come back one batch old (the embedded broker's ListOffsets stops
    table recovery early): that must mean duplicates, never a gap."""
    name, sink = unique("old"), unique("old.out")
    with Feed(300) as feed:
        path = http_pipeline(tmp_path / "old.yaml", name, feed.url, sink)
        assert uee("run", str(path), "--bootstrap", kafka, "--until-idle", "1").code == 0
        row = provider(status(uee, kafka), name)["checkpoint"]
        assert row["cursor"] == {"since": 300}
        # The checkpoint as it was one batch (page of 100) earlier.
        producer = Producer({"bootstrap.servers": kafka})
        producer.produce(state_topic(os.environ["UEE_APP"]), json.dumps(event([(
            CHECKPOINTS, name, {**row, "pipeline": name, "cursor": {"since": 200}})])).encode())
        assert producer.flush(10) == 0
        feed.requests.clear()
        again = uee("run", str(path), "--bootstrap", kafka, "--until-idle", "1")
        assert again.code == 0, again.stderr
        assert feed.requests[0].since == 200
    counts = ids_at(kafka, sink)
    assert len(counts) == 300  # nothing lost
    assert sum(counts.values()) - 300 == 100  # exactly the one batch again


def test_http_failures_wait_in_backoff_and_bad_answers_go_to_the_dlq(
    kafka: str, uee: Uee, tmp_path: Path
) -> None:
    name, sink = unique("flaky"), unique("flaky.out")
    with Feed(150) as feed:
        feed.put({"modified": 0, "price": 1})  # no id: a dead letter, not a crash
        feed.add(100)
        for failure in (503, 429, "broken"):
            feed.fail(failure, retry_after=1 if failure == 429 else None)
        path = http_pipeline(tmp_path / "flaky.yaml", name, feed.url, sink)
        done = uee("run", str(path), "--bootstrap", kafka, "--until-idle", "1")
        statuses = [r.status for r in feed.requests]
    assert done.code == 0, done.stderr
    assert statuses[:4] == [503, 429, 200, 200], statuses
    assert len(ids_at(kafka, sink)) == 250  # every good item, once the server answered
    transitions = [json.loads(line) for line in done.stderr.splitlines()
                   if line.startswith('{"provider"')]
    waits = [t for t in transitions if t["to"] == "WAITING_BACKOFF"]
    assert waits and "HTTP 503" in waits[0]["reason"], done.stderr
    letters = read_all(kafka, f"{name}.dlq")
    codes = sorted(dict(r.headers)["uee.error.code"].decode() for r in letters)
    assert codes == ["HTTP_BAD_BODY", "HTTP_ITEM_INVALID"]
    body = next(r for r in letters if dict(r.headers)["uee.error.code"] == b"HTTP_BAD_BODY")
    assert body.value == b"<html>upstream proxy error</html>"  # the raw body, kept
    assert "upstream proxy error" in dict(body.headers)["uee.error.message"].decode()


def test_kill_9_mid_stream_resumes_from_the_checkpoint_and_loses_nothing(
    kafka: str, uee: Uee, uee_bin: str, tmp_path: Path
) -> None:
    name, source, sink = unique("k9"), unique("k9.in"), unique("k9.out")
    total = 50_000
    path = tmp_path / "k9.yaml"
    path.write_text(f"pipeline: {name}\nsource: {{kafka: {{topic: {source}}}}}\n"
                    f"sink: {{kafka: {{topic: {sink}}}}}\n")
    # A steady producer (at most 5k records/s: pacing, not synchronization), so the kill
    # lands while records still come.
    records = [(str(i).encode(), b'{"id": %d}' % i) for i in range(total)]
    producer = threading.Thread(target=lambda: [
        (produce(kafka, source, records[i:i + 500]), time.sleep(0.1))
        for i in range(0, total, 500)], name="steady-producer")
    worker = start(uee_bin, path, kafka)
    producer.start()
    try:
        wait_until(lambda: at_sink(kafka, sink) >= total // 3, 90,
                   "a third of the records at the sink")
        kill(worker)
    finally:
        kill(worker)
        producer.join(60)
    at_kill = provider(status(uee, kafka), name)
    assert at_kill["state"] == "RUNNING"  # killed: it never drained
    checkpointed = sum(at_kill["checkpoint"]["cursor"]["offsets"].values())
    stats = tmp_path / "stats.json"
    again = uee("run", str(path), "--bootstrap", kafka, "--until-idle", "2", "--quiet",
                "--stats-json", str(stats))
    assert again.code == 0, again.stderr
    counts = Counter(json.loads(r.value)["id"] for r in read_all(kafka, sink) if r.value)
    lost = total - len(counts)
    duplicates = sum(counts.values()) - len(counts)
    print(f"kill -9 at {at_kill['records']['out']:,} delivered, checkpoint covered "
          f"{checkpointed:,}: lost {lost}, duplicates {duplicates:,}")
    assert lost == 0
    # It resumed from its checkpoint: it read what the checkpoint did not cover (and one
    # batch more if the kill came between the checkpoint's state and its offset commit).
    reads = json.loads(stats.read_text())["topic_reads"][source]
    assert total - checkpointed <= reads <= total - checkpointed + 5000
    after = provider(status(uee, kafka), name)
    history = [(t["from"], t["to"]) for t in after["history"]]
    # Both runs are in the table. (The killed run's later transitions were once missing on
    # Apache Kafka, its start never: a known issue, see the README's Tests section.)
    assert history.count(("IDLE", "ACQUIRING")) == 2
    assert history[-2:] == [("ACQUIRING", "RUNNING"), ("RUNNING", "TERMINATED")]
    assert after["checkpoint"]["cursor"]["offsets"] and after["records"]["in"] == reads
    # The restart's own line says how long it took from its assignment to RUNNING.
    [running] = [json.loads(line) for line in again.stderr.splitlines()
                 if line.startswith("{") and '"to": "RUNNING"' in line]
    took = re.search(r"reading \(([\d.]+)s after the assignment", running["reason"])
    assert took, running
    print(f"restart: assignment to RUNNING in {float(took[1]):.3f}s")


def test_the_http_source_after_kill_9_does_not_start_from_an_empty_cursor(
    kafka: str, uee: Uee, uee_bin: str, tmp_path: Path
) -> None:
    """The feed changes while the pipeline reads it (items changed behind the cursor come
    back after it); after a kill -9 and a restart, the latest version of every item is at
    the sink."""
    name, sink = unique("hk"), unique("hk.out")
    with Feed(3000, delay=0.05) as feed:
        path = http_pipeline(tmp_path / "hk.yaml", name, feed.url, sink)
        worker = start(uee_bin, path, kafka)
        try:
            wait_until(lambda: at_sink(kafka, sink) >= 500, 90, "items at the sink")
            feed.change([f"item-{n:05d}" for n in range(0, 500, 5)], price=12)
            wait_until(lambda: at_sink(kafka, sink) >= 1000
                       and checkpoint_of(kafka, name) is not None, 90,
                       "a third of the items at the sink, and a checkpoint")
            kill(worker)
        finally:
            kill(worker)
        checkpointed = checkpoint_of(kafka, name)["cursor"]["since"]
        feed.requests.clear()
        again = uee("run", str(path), "--bootstrap", kafka, "--until-idle", "1",
                    env={"UEE_LOG_LEVEL": "INFO"})
        assert again.code == 0, again.stderr
        # From its checkpoint, not empty (the log says where it resumed and whether the
        # tables were complete).
        resumed = [line for line in again.stderr.splitlines() if "resumed_from" in line]
        assert feed.requests[0].since == checkpointed, resumed
        # The restart says what it did with the state the killed run left.
        [plan] = [json.loads(line) for line in again.stderr.splitlines()
                  if '"on_restart"' in line]
        assert plan["last_state"] == "RUNNING" and plan["on_restart"] == "RESUME", plan
        latest = {ident: item["modified"] for ident, item in feed.items.items()}
    seen: dict[str, int] = {}
    for record in read_all(kafka, sink):
        item = json.loads(record.value or b"")
        seen[item["id"]] = max(seen.get(item["id"], 0), item["modified"])
    assert seen == latest  # every item, in its latest version: nothing lost
    counts = ids_at(kafka, sink)
    print(f"HTTP kill -9 with changes: {sum(counts.values()) - 3000} records beyond one "
          "per item (100 changed, the rest duplicates)")


def test_diff_state_survives_a_restart(kafka: str, uee: Uee, tmp_path: Path) -> None:
    name, source, sink = unique("df"), unique("df.in"), unique("df.out")
    path = tmp_path / "df.yaml"
    path.write_text(f"pipeline: {name}\nsource: {{kafka: {{topic: {source}}}}}\n"
                    "stages: [{diff: {key: id, fields: [price]}}]\n"
                    f"sink: {{kafka: {{topic: {sink}}}}}\n")
    records = [(str(i).encode(), json.dumps({"id": i, "price": 10}).encode())
               for i in range(1000)]
    produce(kafka, source, records)
    first = uee("run", str(path), "--bootstrap", kafka, "--until-idle", "1")
    assert first.code == 0, first.stderr
    assert describe_topic(kafka, sink).records == 1000
    # The same 1,000 again, and 10 of them with a new price, to a new worker process.
    produce(kafka, source, records)
    produce(kafka, source, [(str(i).encode(), json.dumps({"id": i, "price": 11}).encode())
                            for i in range(0, 1000, 100)])
    second = uee("run", str(path), "--bootstrap", kafka, "--until-idle", "1")
    assert second.code == 0, second.stderr
    out = [json.loads(r.value or b"") for r in read_all(kafka, sink)]
    assert len(out) == 1010
    assert sorted(r["id"] for r in out if r["_changed"] == ["price"] and r["price"] == 11) \
        == list(range(0, 1000, 100))


def test_diff_state_follows_its_partitions_to_another_worker(
    kafka: str, uee: Uee, uee_bin: str, tmp_path: Path
) -> None:
    """Two workers of one deployment share a diff pipeline's partitions; the first stops and
    the second takes its partitions: it must know the hashes the first one kept, or every
    record of those partitions would pass again as changed."""
    if is_tansu(kafka):
        pytest.skip("Tansu 0.6.0 does not carry a group of two members through a rebalance "
                    "reliably (see test_at_least_once); this runs on the Apache Kafka tier")
    name, source, sink = unique("mv"), unique("mv.in"), unique("mv.out")
    group = f"uee.{name}"
    ensure_topics(kafka, [source, sink], 3, 1)
    path = tmp_path / "mv.yaml"
    path.write_text(f"pipeline: {name}\nsource: {{kafka: {{topic: {source}}}}}\n"
                    "stages: [{diff: {key: id, fields: [price]}}]\n"
                    f"sink: {{kafka: {{topic: {sink}}}}}\n")
    records = [(str(i).encode(), json.dumps({"id": i, "price": 10}).encode())
               for i in range(1000)]

    def all_committed(count: int) -> bool:
        return committed(kafka, group, source, 3) == count

    first = start(uee_bin, path, kafka)
    second = None
    try:
        wait_until(lambda: members_with_partitions(kafka, group) == 1, 60,
                   "the first worker to hold the partitions")
        second = start(uee_bin, path, kafka)
        wait_until(lambda: members_with_partitions(kafka, group) == 2, 120,
                   "both workers to hold partitions")
        produce(kafka, source, records)
        wait_until(lambda: all_committed(1000), 90, "the first 1,000 records committed")
        assert describe_topic(kafka, sink).records == 1000
        first.send_signal(signal.SIGTERM)
        assert first.wait(60) == 0
        wait_until(lambda: members_with_partitions(kafka, group) == 1, 60,
                   "the second worker to take every partition")
        produce(kafka, source, records)
        produce(kafka, source, [(str(i).encode(), json.dumps({"id": i, "price": 11}).encode())
                                for i in range(0, 1000, 100)])
        wait_until(lambda: all_committed(2010), 90, "the second 1,010 records committed")
    finally:
        for worker in (first, second):
            if worker is not None:
                kill(worker)
    out = [json.loads(r.value or b"") for r in read_all(kafka, sink)]
    assert len(out) == 1010, f"{len(out) - 1010} records passed the diff again"
    assert sorted(r["id"] for r in out if r["price"] == 11) == list(range(0, 1000, 100))


def test_a_backoff_outlives_a_kill_and_is_waited_out_after_the_restart(
    kafka: str, uee: Uee, uee_bin: str, tmp_path: Path
) -> None:
    name, sink = unique("ra"), unique("ra.out")
    with Feed(50) as feed:
        # Long enough to outlive the restart (the tables wait out the killed member's session).
        feed.fail(429, retry_after=20)
        path = http_pipeline(tmp_path / "ra.yaml", name, feed.url, sink)
        worker = start(uee_bin, path, kafka)
        try:
            wait_until(lambda: (read_tables(Settings.from_env(bootstrap=kafka))[PROVIDERS]
                                .get(name) or {}).get("state") == "WAITING_BACKOFF", 60,
                       "the provider to wait out the 429")
            kill(worker)
        finally:
            kill(worker)
        row = provider(status(uee, kafka), name)
        assert row["state"] == "WAITING_BACKOFF" and "HTTP 429" in row["reason"]
        feed.requests.clear()
        again = uee("run", str(path), "--bootstrap", kafka, "--until-idle", "1")
        assert again.code == 0, again.stderr
        assert feed.requests[0].at >= row["until"] - 0.05  # nothing asked before it ended
    transitions = [json.loads(line) for line in again.stderr.splitlines()
                   if line.startswith('{"provider"')]
    assert [(t["from"], t["to"], t["trigger"]) for t in transitions][:3] == [
        ("IDLE", "ACQUIRING", "start"), ("ACQUIRING", "WAITING_BACKOFF", "restart"),
        ("WAITING_BACKOFF", "RUNNING", "backoff_over")], again.stderr
    assert len(ids_at(kafka, sink)) == 50


def test_dlq_list_finds_a_dlq_of_any_name_through_the_registry(
    kafka: str, uee: Uee, tmp_path: Path
) -> None:
    name, source, sink = unique("reg"), unique("reg.in"), unique("reg.out")
    dlq = unique("rejects")  # not *.dlq: only the registry knows it is one
    produce(kafka, source, [(b"bad", b"{oops")])
    path = tmp_path / "reg.yaml"
    path.write_text(f"pipeline: {name}\nsource: {{kafka: {{topic: {source}}}}}\n"
                    f"sink: {{kafka: {{topic: {sink}}}}}\ndlq: {{topic: {dlq}}}\n")
    assert uee("run", str(path), "--bootstrap", kafka, "--until-idle", "1").code == 0
    listed = uee("dlq", "list", "--bootstrap", kafka)  # no files given
    assert listed.code == 0, listed.stderr
    [line] = [line for line in listed.stdout.splitlines() if dlq in line]
    assert "DECODE_JSON (1)" in line
    registry = provider(status(uee, kafka), name)
    assert registry["dlq"] == dlq and registry["sinks"] == [sink]
    assert registry["source"] and registry["plan_hash"]


def test_a_stateful_pipeline_runs_again_on_a_new_embedded_broker(
    uee: Uee, tmp_path: Path
) -> None:
    """Each `uee run` without a bootstrap has a new, empty broker, while the worker's RocksDB
    copy of the tables stays in the state folder: tables from another broker are thrown
    away, not recovered (Faust refused them: their offsets lie past the new changelogs)."""
    path = tmp_path / "again.yaml"
    path.write_text("pipeline: again\nsource: {generator: {count: 500, seed: 3}}\n"
                    "stages: [{diff: {key: order_id}}]\nsink: {kafka: {topic: again.out}}\n")
    for run in range(2):
        done = uee("run", str(path), "--until-idle", "1", "--quiet", "--stats-json",
                   str(tmp_path / f"run{run}.json"), timeout=90)
        assert done.code == 0 and "Traceback" not in done.stderr, done.stderr
        stats = json.loads((tmp_path / f"run{run}.json").read_text())["pipelines"]["again"]
        assert stats["records_out"] == 500  # a new broker: no diff state, every record new
    assert "the tables were not recovered in time" not in done.stderr
