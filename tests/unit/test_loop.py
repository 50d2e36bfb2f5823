"""The batch loop without a broker (uee.testing's in-memory source and sinks): the commit
order, retries and dead letters by record, breakers, each pipeline's own policy in a shared
agent, the flow gate's pause, and stopping mid-backoff."""

from __future__ import annotations

import datetime
import json
import time
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any, cast

import pytest

from uee.connectors.base import OutRecord, Sink
from uee.dsl.loader import load_text
from uee.dsl.optimize import build_plan
from uee.dsl.plan import Plan
from uee.dsl.validate import validate_documents
from uee.streams.agent import BatchAgent
from uee.streams.control import PermitPool, PipelineState, allocations
from uee.streams.delivery import BatchAbandonedError, RecordFailedError
from uee.streams.kernel import SinkBinding
from uee.streams.permits import MIN_BATCH_S, PermitThrottle, QuotaUpdate
from uee.streams.sensors import Sensor
from uee.streams.state import KEY_SEPARATOR
from uee.testing import Journal, TestingSink, TestingSource


def plan_of(text: str) -> Plan:
    documents = [load_text(part, f"p{i}.yaml") for i, part in enumerate(text.split("---\n"))]
    pipelines, problems = validate_documents([d for d in documents if d is not None])
    assert problems == [], [p.render() for p in problems]
    return build_plan(pipelines)


def pipeline(name: str, dlq: str = "{}", stages: str = "", extra: str = "") -> str:
    return (f"pipeline: {name}\nsource: {{kafka: {{topic: in}}}}\n{stages}"
            f"sink: {{kafka: {{topic: {name}.out}}}}\ndlq: {dlq}\n{extra}")


class Recorder(Sensor):
    def __init__(self) -> None:
        self.states: list[tuple[str, str]] = []

    def on_state_change(self, scope: str, state: str, reason: str) -> None:
        self.states.append((scope, state))


class Loop:
    """An agent wired to in-memory parts; `sinks` by topic (sinks and DLQs)."""

    def __init__(self, text: str, records: list[Any], fail: dict[str, Any] | None = None,
                 stores: tuple[Any, ...] = ()) -> None:
        self.plan = plan_of(text)
        [segment] = self.plan.segments
        self.journal = Journal()
        values = [r if isinstance(r, bytes) else json.dumps(r).encode() for r in records]
        self.source = TestingSource([(str(i).encode(), v) for i, v in enumerate(values)],
                                    journal=self.journal)
        self.sinks: dict[str, TestingSink] = {}
        self.recorder = Recorder()
        fail = fail or {}

        def sink(topic: str) -> Sink:
            return self.sinks.setdefault(topic, TestingSink(topic, self.journal,
                                                            fail.get(topic)))

        def sink_for(binding: SinkBinding) -> Sink:
            return sink(binding.sink.topic)

        self.agent = BatchAgent(segment, self.plan, self.source, sink_for, sink,
                                batch_size=10, poll_timeout=0.01, flush_timeout=1.0,
                                stores=stores, sensors=(self.recorder,))
        self.agent.open()

    def run(self, steps: int = 100) -> None:
        for _ in range(steps):
            if self.source.exhausted or self.agent.gate.held:
                return
            self.agent.step()

    def values(self, topic: str) -> list[Any]:
        sink = self.sinks.get(topic)
        return [json.loads(v) if v is not None else None for v in sink.values()] if sink else []


class FakeStore:
    """Stands for the state step (Faust tables) until state exists."""

    journal = Journal()

    def flush(self) -> None:
        self.journal.add("state", None)


def test_a_batch_is_acknowledged_then_state_flushed_then_committed() -> None:
    store = FakeStore()
    loop = Loop(pipeline("p"), [{"n": 1}, b"not json", {"n": 3}], stores=(store,))
    store.journal = journal = loop.journal  # one journal for every part
    loop.run()
    assert journal.names() == ["poll", "flush", "flush", "state", "commit"]
    assert [detail for event, detail in journal.events if event == "flush"] == [
        "p.out", "p.dlq"]
    assert loop.values("p.out") == [{"n": 1}, {"n": 3}]
    assert loop.sinks["p.dlq"].values() == [b"not json"]  # the original bytes
    headers = dict(loop.sinks["p.dlq"].headers[0] or [])
    assert headers["uee.error.code"] == b"DECODE_JSON" and headers["uee.pipeline"] == b"p"
    assert loop.source.committed == 3


def test_a_state_store_that_fails_keeps_the_batch_uncommitted() -> None:
    class Broken:
        def flush(self) -> None:
            raise OSError("disk full")

    loop = Loop(pipeline("p"), [{"n": 1}], stores=(Broken(),))
    assert loop.agent.step() == 1  # sent; delivered in the next step, which checkpoints
    with pytest.raises(OSError):
        loop.agent.step()  # nothing left: the checkpoint is taken now, and fails
    assert loop.source.committed == 0 and loop.values("p.out") == [{"n": 1}]


def fails(rounds: int, indexes: set[int] | None = None, retryable: bool = True
          ) -> Callable[[OutRecord, int], tuple[str, bool] | None]:
    """Fail these source records (all if None) in the first `rounds` flush rounds."""
    def rule(record: OutRecord, round_: int) -> tuple[str, bool] | None:
        if round_ <= rounds and (indexes is None or record[0] in indexes):
            return ("timed out", retryable)
        return None
    return rule


def test_a_record_out_of_retries_goes_to_the_dlq_as_its_own_source_record() -> None:
    """Records 1 and 2 have the same bytes; only record 1 fails. Its dead letter is record 1,
    found by the failure itself, not by comparing bytes."""
    records = [{"n": 0}, {"same": True}, {"same": True}, {"n": 3}]
    loop = Loop(pipeline("p", "{max_retries: 2, backoff: 0.001}"), records,
                fail={"p.out": fails(99, {1})})
    loop.run()
    assert loop.sinks["p.out"].rounds == 3  # the first try, then two retries
    assert loop.values("p.out") == [{"n": 0}, {"same": True}, {"n": 3}]
    assert loop.sinks["p.dlq"].values() == [b'{"same": true}']
    headers = dict(loop.sinks["p.dlq"].headers[0] or [])
    assert headers["uee.error.code"] == b"SINK_UNAVAILABLE"
    assert headers["uee.stage"] == b"p.sink.default"
    assert headers["__connect.errors.offset"] == b"1"
    assert loop.source.committed == 4
    stats = loop.agent.stats["p"]
    assert (stats.records_out, stats.dead_lettered) == (3, 1)


def test_a_refused_record_goes_to_the_dlq_without_retries() -> None:
    loop = Loop(pipeline("p", "{max_retries: 5, backoff: 0.001}"), [{"n": 0}, {"n": 1}],
                fail={"p.out": fails(99, {0}, retryable=False)})
    loop.run()
    assert loop.sinks["p.out"].rounds == 1
    headers = dict(loop.sinks["p.dlq"].headers[0] or [])
    assert headers["uee.error.code"] == b"SINK_REJECTED"


def test_kafka_errors_of_the_broker_are_retried_and_those_of_the_record_are_not() -> None:
    """Which Kafka sink failures are retried (then dead-lettered as SINK_UNAVAILABLE) and
    which are the record's (SINK_REJECTED at once)."""
    from confluent_kafka import KafkaError

    from uee.connectors.kafka import retryable

    for code in (KafkaError.UNKNOWN, KafkaError._MSG_TIMED_OUT, KafkaError._TRANSPORT,
                 KafkaError.NOT_ENOUGH_REPLICAS, KafkaError.KAFKA_STORAGE_ERROR):
        assert retryable(KafkaError(code)), KafkaError(code).str()
    for code in (KafkaError.MSG_SIZE_TOO_LARGE, KafkaError.TOPIC_AUTHORIZATION_FAILED,
                 KafkaError.INVALID_RECORD, KafkaError.INVALID_MSG):
        assert not retryable(KafkaError(code)), KafkaError(code).str()


def test_a_record_delivered_on_a_retry_is_delivered_once() -> None:
    loop = Loop(pipeline("p", "{max_retries: 3, backoff: 0.001}"), [{"n": 0}, {"n": 1}],
                fail={"p.out": fails(2)})
    loop.run()
    assert loop.values("p.out") == [{"n": 0}, {"n": 1}]
    assert "p.dlq" not in loop.sinks or loop.sinks["p.dlq"].values() == []
    assert ("agent:" + loop.agent.name, "WAITING_BACKOFF") in loop.recorder.states


def test_an_open_breaker_holds_the_batch_without_dead_letters_until_a_probe_passes() -> None:
    loop = Loop(pipeline("p", "{max_retries: 1, backoff: 0.001, breaker_failures: 2, "
                              "breaker_open: 0.01}"), [{"n": i} for i in range(5)],
                fail={"p.out": fails(6)})
    loop.run()
    assert loop.values("p.out") == [{"n": i} for i in range(5)]
    assert "p.dlq" not in loop.sinks or loop.sinks["p.dlq"].values() == []
    sink_states = [state for scope, state in loop.recorder.states if scope == "sink:p.out"]
    assert sink_states[0] == "OPEN" and "HALF_OPEN" in sink_states and sink_states[-1] == "CLOSED"


def test_merged_pipelines_keep_their_own_retries() -> None:
    """`a` gives up at once, `b` retries: in one shared agent, each as if it ran alone."""
    text = (pipeline("a", "{topic: a.dlq, max_retries: 0, pause_rate: 1}") + "---\n"
            + pipeline("b", "{topic: b.dlq, max_retries: 3, backoff: 0.001, pause_rate: 1}"))
    loop = Loop(text, [{"n": 0}, {"n": 1}], fail={"a.out": fails(1), "b.out": fails(1)})
    assert len(loop.plan.segments) == 1
    loop.run()
    assert loop.values("a.out") == [] and len(loop.sinks["a.dlq"].values()) == 2
    assert loop.values("b.out") == [{"n": 0}, {"n": 1}]
    assert "b.dlq" not in loop.sinks or loop.sinks["b.dlq"].values() == []


def test_merged_pipelines_keep_their_own_breakers() -> None:
    text = (pipeline("a", "{topic: a.dlq, max_retries: 0, breaker_failures: 1, "
                          "pause_rate: 1}") + "---\n"
            + pipeline("b", "{topic: b.dlq, max_retries: 0, breaker_failures: 9, "
                            "pause_rate: 1}"))
    loop = Loop(text, [{"n": 0}], fail={"a.out": fails(0), "b.out": fails(1)})
    loop.run()
    breakers = {o.pipeline: o.breaker.failures for o in loop.agent.delivery.outlets}
    assert breakers == {"a": 1, "b": 9}
    assert len(loop.sinks["b.dlq"].values()) == 1  # b's breaker (9) never opened


def test_the_error_rate_pauses_the_pipeline_through_the_flow_gate() -> None:
    records = [b"bad"] * 10 + [{"n": i} for i in range(30)]
    loop = Loop(pipeline("p", "{pause_rate: 0.5, pause_window: 10}"), records)
    loop.run()
    assert "p" in loop.agent.paused and "10 of the last 10" in loop.agent.paused["p"]
    assert ("hold", True) in loop.journal.events
    assert loop.source.committed == 10  # the failing batch was dead-lettered and committed
    assert loop.agent.step() == 0  # held: nothing more flows
    assert loop.agent.idle_for() == float("inf")
    loop.agent.gate.release("p", "error_rate")
    assert ("hold", False) in loop.journal.events
    loop.run()
    assert loop.source.committed == 40


def test_a_pause_in_a_shared_agent_holds_its_partners_and_says_so(
    caplog: pytest.LogCaptureFixture,
) -> None:
    text = (pipeline("a", "{topic: a.dlq, pause_rate: 0.5, pause_window: 10}",
                     "stages:\n  - map: {x: 1 / n}\n") + "---\n"
            + pipeline("b", "{topic: b.dlq}"))
    loop = Loop(text, [{"n": 0}] * 20)
    loop.run()
    assert list(loop.agent.paused) == ["a"]
    [paused] = [json.loads(r.getMessage()) for r in caplog.records if "PAUSED" in r.getMessage()]
    assert paused["holds_also"] == ["b"]


def test_on_error_fail_stops_without_committing() -> None:
    loop = Loop(pipeline("p", "none", extra="on_error: fail\n"), [{"n": 0}, b"bad"])
    with pytest.raises(RecordFailedError, match="on_error: fail"):
        loop.agent.step()
    assert loop.source.committed == 0


def test_a_stop_during_a_backoff_leaves_the_batch_uncommitted() -> None:
    class StopWhenWaiting(Sensor):
        def on_state_change(self, scope: str, state: str, reason: str) -> None:
            if state == "WAITING_BACKOFF":
                loop.agent.request_stop()  # as a signal would, once the wait has begun

    loop = Loop(pipeline("p", "{max_retries: 5, backoff: 30}"), [{"n": 0}],
                fail={"p.out": fails(99)})
    loop.agent.sensors.add(StopWhenWaiting())
    assert loop.agent.step() == 1  # sent: its acknowledgements are waited for in the next step
    with pytest.raises(BatchAbandonedError, match="read again on restart"):
        loop.agent.step()
    assert loop.source.committed == 0


class FakeControl:
    """A control subscription without a broker: states to start from, changes to come, and
    what the agent published."""

    def __init__(self, current: dict[str, PipelineState],
                 quotas: list[QuotaUpdate] | None = None) -> None:
        self._current = current
        self._quotas = quotas or []
        self.coming: dict[str, PipelineState] = {}
        self.quotas_coming: list[QuotaUpdate] = []
        self.pools_coming: list[PermitPool] = []
        self.published: list[object] = []

    def current(self) -> dict[str, PipelineState]:
        return self._current

    def current_quotas(self) -> list[QuotaUpdate]:
        return self._quotas

    def quota_changes(self) -> list[QuotaUpdate]:
        coming, self.quotas_coming = self.quotas_coming, []
        return coming

    def current_pools(self) -> list[PermitPool]:
        return []

    def pool_changes(self) -> list[PermitPool]:
        coming, self.pools_coming = self.pools_coming, []
        return coming

    def changes(self) -> dict[str, PipelineState]:
        coming, self.coming = self.coming, {}
        return coming

    def publish(self, message: object, timeout: float = 15.0) -> None:
        self.published.append(message)


def test_a_pause_read_from_the_control_topic_holds_until_resumed_and_is_not_published_again(
) -> None:
    plan = plan_of(pipeline("p"))
    [segment] = plan.segments
    journal = Journal()
    source = TestingSource([(b"0", b'{"n": 0}')], journal=journal)
    control = FakeControl({"p": PipelineState.now("p", "PAUSED", "19 of the last 50 failed")})
    agent = BatchAgent(segment, plan, source, lambda b: TestingSink(b.sink.topic),
                       TestingSink, batch_size=10, poll_timeout=0.01, flush_timeout=1.0,
                       control=control)  # type: ignore[arg-type]
    agent.open()
    assert agent.paused == {"p": "19 of the last 50 failed"} and source.held
    assert agent.step() == 0 and control.published == []
    control.coming = {"p": PipelineState.now("p", "RUNNING", "resumed with `uee resume`")}
    assert agent.step() == 1 and agent.paused == {}
    assert journal.events[:1] == [("hold", True)] and ("hold", False) in journal.events
    assert control.published == []


def quota(epoch: int, before: int, after: int) -> QuotaUpdate:
    return QuotaUpdate("uee", epoch, "p", before, after, "test", {"p99_ms": 80.0})


def test_no_permit_holds_the_source_in_waiting_quota_and_a_permit_back_resumes() -> None:
    plan = plan_of(pipeline("p"))
    [segment] = plan.segments
    journal = Journal()
    source = TestingSource([(str(i).encode(), b'{"n": %d}' % i) for i in range(30)],
                           journal=journal)
    control = FakeControl({}, [quota(1, 2, 0)])  # the deployment's allocation at start: none
    agent = BatchAgent(segment, plan, source, lambda b: TestingSink(b.sink.topic),
                       TestingSink, batch_size=10, poll_timeout=0.01, flush_timeout=1.0,
                       control=control, permits={"p": 2})  # type: ignore[arg-type]
    agent.open()
    assert agent.tracker.providers["p"].state == "WAITING_QUOTA" and source.held
    assert agent.step() == 0 and agent.idle_for() == float("inf")  # work waits: not idle
    control.quotas_coming = [quota(0, 0, 2)]  # a stale controller (epoch 0): ignored
    assert agent.step() == 0 and source.held
    control.quotas_coming = [quota(2, 0, 2)]
    assert agent.step() == 10 and not source.held
    assert agent.tracker.providers["p"].state == "RUNNING"
    transitions = [(t.from_, t.to) for t in agent.tracker.providers["p"].history]
    assert ("ACQUIRING", "WAITING_QUOTA") in transitions
    assert transitions[-2:] == [("WAITING_QUOTA", "ACQUIRING"), ("ACQUIRING", "RUNNING")]
    assert control.published == []  # a quota hold is the controller's, not a pause


def test_fewer_permits_cap_the_rate_at_their_share_of_the_full_rate() -> None:
    now = [0.0]
    throttle = PermitThrottle({"p": 4}, clock=lambda: now[0])
    assert throttle.allowance(100) == 100  # full allocation: unthrottled
    for step in range(5):  # 100 records every 0.1 s: 1,000 records/s
        now[0] = step / 10
        throttle.taken(100)
    assert throttle.apply(quota(1, 4, 2))  # half the permits: 500 records/s
    assert throttle.share == 0.5 and throttle.allowance(100) == 0  # an empty bucket first
    assert throttle.wait_s(100) == pytest.approx(MIN_BATCH_S)  # for 25 records at 500/s
    now[0] += 0.1
    assert throttle.allowance(100) == 50
    throttle.taken(50)
    now[0] += 1.0
    assert throttle.allowance(100) == 100  # the bucket holds one batch at most
    assert not throttle.apply(quota(0, 2, 4))  # older epoch
    assert throttle.apply(quota(3, 2, 0)) and throttle.allowance(100) == 0
    assert throttle.wait_s(100) == 0.0  # no permit: nothing to wait for, the gate holds


def test_a_quota_update_round_trips_through_its_avro_schema() -> None:
    update = quota(7, 4, 3)
    value = update.encode()
    assert value[:1] == b"\x00"  # Confluent's wire format: magic byte, then the schema id
    back = QuotaUpdate.decode(value)
    assert back.as_json() == update.as_json() and back.metrics == {"p99_ms": 80.0}


def test_the_controllers_full_rate_is_the_reference_a_worker_throttles_to() -> None:
    """The rate measured a moment after the controller's reading has moved (a slowdown
    empties the window fast): a worker starting to throttle takes the controller's."""
    now = [0.0]
    throttle = PermitThrottle({"p": 10}, clock=lambda: now[0])
    for step in range(5):  # 1,000 records/s at full allocation
        now[0] = step / 10
        throttle.taken(100)
    assert throttle.full_rate == pytest.approx(1000)
    update = QuotaUpdate("d", 1, "p", 10, 3, "P99", {"full_rate": 800.0})
    assert throttle.apply(update) and throttle.full_rate == 800  # 3/10 of 800 records/s
    now[0] += 1.0
    assert throttle.allowance(1000) == 240


def test_the_bucket_holds_at_most_the_batch_time_the_controller_sets_at_the_capped_rate(
) -> None:
    """Capped at 240 records/s with batches of 0.2 s (the adaptive policy's aim): after a
    pause of a second the next batch holds 48 records, not a whole batch of 1,000 (it would
    take as long as the pause and more); without it (the step policy), a whole batch."""
    now = [0.0]
    throttle = PermitThrottle({"p": 10}, clock=lambda: now[0])
    update = QuotaUpdate("d", 1, "p", 10, 3, "P99", {"full_rate": 800.0, "batch_s": 0.2})
    assert throttle.apply(update)
    now[0] += 1.0
    assert throttle.allowance(1000) == 48
    assert throttle.apply(QuotaUpdate("d", 1, "p", 3, 3, "step", {"full_rate": 800.0}))
    now[0] += 5.0
    assert throttle.allowance(1000) == 1000


def test_a_throttled_poll_waits_for_a_batch_of_its_capped_rate_not_a_record() -> None:
    """Capped at 140 records/s, a poll takes MIN_BATCH_S of them at once (7), not each
    record as its token comes; a bucket the controller keeps smaller (`batch_s`) bounds
    that, and a rate under a record in MIN_BATCH_S takes one at a time."""
    now = [0.0]
    throttle = PermitThrottle({"p": 100}, clock=lambda: now[0])
    assert throttle.apply(QuotaUpdate("d", 1, "p", 100, 14, "P99", {"full_rate": 1000.0}))
    least = round(140 * MIN_BATCH_S)
    now[0] += 1 / 140
    assert throttle.allowance(100) == 0  # a record's token: not yet
    assert throttle.wait_s(100) == pytest.approx((least - 1) / 140)
    now[0] += throttle.wait_s(100)
    assert throttle.allowance(100) == least
    throttle.taken(least)
    tight = {"full_rate": 1000.0, "batch_s": 3 / 140}  # the bucket holds 3 records
    assert throttle.apply(QuotaUpdate("d", 1, "p", 14, 14, "P99", tight))
    now[0] += 2 / 140
    assert throttle.allowance(100) == 0
    now[0] += 1 / 140
    assert throttle.allowance(100) == 3
    throttle.taken(3)
    assert throttle.apply(QuotaUpdate("d", 1, "p", 14, 1, "P99", {"full_rate": 10.0}))
    now[0] += 0.1
    assert throttle.allowance(100) == 1  # 10 records/s: a record at a time


def test_requesting_and_releasing_a_permit_costs_well_under_a_millisecond() -> None:
    """The micro-benchmark of the issue's goal (< 1 ms a call): applying a revocation and
    a restoration, and the allowance each poll asks for, timed over many calls."""
    throttle = PermitThrottle({"p": 10})
    for _ in range(50):
        throttle.taken(100)
    cut = QuotaUpdate("d", 1, "p", 10, 5, "cut", {"full_rate": 1000.0})
    back = QuotaUpdate("d", 1, "p", 5, 10, "back", {})
    calls = 20_000
    started = time.perf_counter()
    for _ in range(calls // 4):
        assert throttle.apply(cut)
        throttle.allowance(500)
        assert throttle.apply(back)
        throttle.allowance(500)
    per_call_ms = (time.perf_counter() - started) / calls * 1000
    print(f"permit request/release: {per_call_ms * 1000:.1f} us a call")
    assert per_call_ms < 1.0


def test_a_resized_pool_is_a_fresh_full_allocation_and_the_newer_message_wins() -> None:
    throttle = PermitThrottle({"p": 4})
    assert throttle.apply(QuotaUpdate("d", 1, "p", 4, 1, "cut", {}))
    assert throttle.resize("p", 8) == (1, 8)
    assert throttle.full["p"] == 8 and not throttle.throttled
    assert throttle.resize("other", 3) is None
    at = datetime.datetime(2026, 12, 1, tzinfo=datetime.UTC)
    later = at + datetime.timedelta(seconds=1)
    quota_then = QuotaUpdate("d", 1, "p", 4, 2, "cut", {}, at=at)
    pool_later = PermitPool(deployment="d", pipeline="p", permits=8, reason="ops", at=later)
    assert allocations({"p": quota_then}, {"p": pool_later}) == {"p": 8}
    quota_later = QuotaUpdate("d", 1, "p", 8, 6, "cut", {}, at=later)
    pool_then = PermitPool(deployment="d", pipeline="p", permits=8, reason="ops", at=at)
    assert allocations({"p": quota_later}, {"p": pool_then}) == {"p": 6}


def test_a_resize_at_run_time_gives_the_agent_its_new_pool_in_full() -> None:
    """`uee quota set`: a pipeline left with no permit by the controller is resized to 3,
    a fresh full allocation: it reads again, and its metrics say 3 of 3."""
    plan = plan_of(pipeline("p"))
    [segment] = plan.segments
    source = TestingSource([(str(i).encode(), b'{"n": %d}' % i) for i in range(30)])
    control = FakeControl({}, [quota(1, 2, 0)])
    changes: list[tuple[str, int, int, int]] = []

    class Quotas(Sensor):
        def on_quota(self, pipeline: str, before: int, after: int, full: int) -> None:
            changes.append((pipeline, before, after, full))

    agent = BatchAgent(segment, plan, source, lambda b: TestingSink(b.sink.topic),
                       TestingSink, batch_size=10, poll_timeout=0.01, flush_timeout=1.0,
                       control=control, permits={"p": 2},  # type: ignore[arg-type]
                       sensors=(Quotas(),))
    agent.open()
    assert agent.step() == 0 and source.held
    control.pools_coming = [PermitPool(deployment="uee", pipeline="p", permits=3,
                                       reason="ops", at=datetime.datetime.now(datetime.UTC))]
    assert agent.step() == 10 and not source.held
    assert agent.permits.full == {"p": 3} and changes[-1] == ("p", 0, 3, 3)


class SlowSink(TestingSink):
    """Acknowledges after `seconds`, like a broker's round trip."""

    def __init__(self, name: str, journal: Journal, seconds: float) -> None:
        super().__init__(name, journal)
        self.seconds = seconds

    def flush(self, timeout: float) -> list[Any]:
        time.sleep(self.seconds)
        return super().flush(timeout)


def loop_of(records: int, stage_s: float, ack_s: float, stages: str = "") -> Loop:
    """`records` in batches of 10, a checkpoint every batch; each batch spends `stage_s`
    in the stages and waits `ack_s` for its sink."""
    loop = Loop(pipeline("p", stages=stages, extra="checkpoint: {every: 10}\n"),
                [{"n": i} for i in range(records)])
    agent = loop.agent
    sink = SlowSink("p.out", loop.journal, ack_s)
    agent.delivery.outlets[0].sink = loop.sinks["p.out"] = sink
    run = agent.kernel.run

    def slow_run(*args: Any, **kwargs: Any) -> Any:
        time.sleep(stage_s)
        loop.journal.add("stages", None)
        return run(*args, **kwargs)

    agent.kernel.run = slow_run  # type: ignore[method-assign]
    return loop


@pytest.mark.parametrize(("stage_s", "ack_s", "events"), [
    # Each batch is settled (flushed, then committed) after the next one was read and ran
    # through the stages; a commit never covers a batch not flushed yet.
    (0.02, 0.0, [("poll", 10), ("stages", None),
                 ("poll", 10), ("stages", None), ("flush", "p.out"), ("commit", 10),
                 ("poll", 10), ("stages", None), ("flush", "p.out"), ("commit", 20),
                 ("flush", "p.out"), ("commit", 30)]),
    # The first batch's acknowledgements took longer than the second's stages: reading ahead
    # would only make records wait, so from then on a batch is settled before the next read.
    (0.0, 0.02, [("poll", 10), ("stages", None),
                 ("poll", 10), ("stages", None), ("flush", "p.out"), ("commit", 10),
                 ("flush", "p.out"), ("commit", 20),
                 ("poll", 10), ("stages", None), ("flush", "p.out"), ("commit", 30)]),
], ids=["stages-slower-read-ahead", "acknowledgements-slower-one-at-a-time"])
def test_the_next_batch_is_read_ahead_while_acknowledgements_take_less_than_the_stages(
    stage_s: float, ack_s: float, events: list[tuple[str, object]]
) -> None:
    loop = loop_of(30, stage_s=stage_s, ack_s=ack_s)
    loop.run()
    assert loop.journal.events == events
    assert loop.values("p.out") == [{"n": i} for i in range(30)]


def test_a_checkpoint_saves_the_diff_state_of_the_batches_it_covers_only() -> None:
    class Rows:
        """Stands for the state step: the diff rows each checkpoint writes, in the journal."""

        def __init__(self, journal: Journal) -> None:
            self.journal = journal

        def put(self, table: str, key: str, row: Any) -> None:
            self.journal.add("put", key.split(KEY_SEPARATOR)[1])

        def flush(self, timeout: float) -> None: ...

    loop = loop_of(20, stage_s=0.02, ack_s=0.0, stages="stages: [{diff: {key: n}}]\n")
    loop.agent._state = cast(Any, SimpleNamespace(writer=Rows(loop.journal)))
    loop.run()
    # The first checkpoint was taken with the second batch through the stages already: it
    # holds the first batch's keys, not the second's, which the next checkpoint holds.
    saved: list[list[str]] = [[]]
    for event, detail in loop.journal.events:
        if event == "put":
            saved[-1].append(str(detail))
        elif event == "commit":
            saved.append([])
    assert [sorted(keys, key=int) for keys in saved] == [
        [str(i) for i in range(10)], [str(i) for i in range(10, 20)], []]


def test_what_the_sinks_cost_includes_writes_that_wait_for_room() -> None:
    """A producer whose local queue is full makes a write wait for room (connectors.kafka):
    that is a cost of the sinks as much as their acknowledgements, and the quota controller
    reads it with them (Little's law's a)."""
    class FullQueueSink(SlowSink):
        def write(self, records: Any, headers: Any = None) -> None:
            time.sleep(0.03)
            super().write(records, headers)

    class Sinks(Sensor):
        def on_sinks(self, sinks: tuple[str, ...], seconds: float, queued: float) -> None:
            spent.append(seconds)

    spent: list[float] = []
    loop = loop_of(20, stage_s=0.0, ack_s=0.01)
    sink = FullQueueSink("p.out", loop.journal, 0.01)
    loop.agent.delivery.outlets[0].sink = loop.sinks["p.out"] = sink
    loop.agent.delivery._sensors = Sinks()
    loop.run()
    assert len(spent) == 2 and min(spent) >= 0.04
    assert loop.values("p.out") == [{"n": i} for i in range(20)]
