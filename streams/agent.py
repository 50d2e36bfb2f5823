"""One plan segment's batch loop: poll -> kernel -> send -> settle -> checkpoint.

This is the hot path. It is synchronous and runs on its own thread (hosted by a
Faust service, see `streams.app`), pipelined one batch deep: a batch's sinks
acknowledge it while the next one runs through the stages, and it is settled before
that one is sent. A source offset is committed only after every record of its batch
was acknowledged by every sink or by the dead-letter topic: at-least-once by
construction. Each job has its own module: delivery (retries, breakers, dead
letters), the flow gate (pauses), the checkpoint (commit order), the sensors
(counters, metrics), the control plane.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import logging
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

from uee.connectors.base import Sink, Source, SourceBatch
from uee.dsl.plan import Plan, Segment
from uee.streams.checkpoint import Checkpoint, StateStore
from uee.streams.control import (
    PAUSED,
    RUNNING,
    ControlSubscription,
    PermitPool,
    PipelineState,
    QuotaSample,
    SinkState,
)
from uee.streams.delivery import Delivery, Outcome, Outlet, Policy, Sending
from uee.streams.flow import ERROR_RATE, QUOTA, ErrorWindow, FlowGate
from uee.streams.kernel import Kernel, KernelResult, SinkBinding
from uee.streams.permits import PermitThrottle, QuotaUpdate
from uee.streams.provider import P
from uee.streams.quota import QuotaSampler
from uee.streams.restore import Restore
from uee.streams.sensors import PipelineStats, Sensor, Sensors, StatsSensor
from uee.streams.state import DIFFS, KEY_SEPARATOR
from uee.streams.statelog import PatientState
from uee.streams.tracker import ProviderTracker, StateContext

log = logging.getLogger("uee")
state_log = logging.getLogger("uee.state")  # transitions and quota changes: JSON lines
_EMPTY: Counter[str] = Counter()
# One batch a second runs the kernel variant that times each stage: per-stage latency at a
# cost the fast path does not notice (a clock read per stage per record otherwise).
STAGE_TIMING_S = 1.0


class BatchAgent:
    def __init__(
        self,
        segment: Segment,
        plan: Plan,
        source: Source,
        sink_for: Callable[[SinkBinding], Sink],
        dead_letter_sink_for: Callable[[str], Sink],
        batch_size: int,
        poll_timeout: float,
        flush_timeout: float,
        control: ControlSubscription | None = None,
        stores: tuple[StateStore, ...] = (),
        confirm_delivery: Callable[[], None] | None = None,
        sensors: tuple[Sensor, ...] = (),
        on_close: Callable[[], None] | None = None,
        state: StateContext | None = None,
        on_provider_change: Callable[[], None] | None = None,
        permits: dict[str, int] | None = None,
    ) -> None:
        self.segment = segment
        self.source = source
        self.kernel = Kernel(segment)
        self._stopping = threading.Event()
        self.counters = StatsSensor(segment.pipelines)
        self.tracker = ProviderTracker(segment.pipelines, self.counters, state,
                                       on_provider_change)
        self.sensors = Sensors(self.counters, self.tracker, *sensors)
        self.tracker.report = self.sensors.on_state_change
        self.sampler = QuotaSampler()  # readings for the quota controller
        self.sensors.add(self.sampler)
        # The strictest P99 target its pipelines set themselves (None: only the default).
        self._own_target = min((t for name in segment.pipelines
                                if (t := plan.pipeline(name).quota.max_p99_ms) is not None),
                               default=None)
        self._state = state
        self._plan = plan
        if control is not None:
            self.sensors.add(_PublishBreakers(control))
        source.rebalance_listener = self._on_rebalance
        policies = {name: Policy.of(plan.pipeline(name)) for name in segment.pipelines}
        self.delivery = Delivery(
            self.name,
            [Outlet(b.pipeline, f"{b.pipeline}.sink.{b.sink.name}", sink_for(b),
                    policies[b.pipeline]) for b in self.kernel.bindings],
            {name: dead_letter_sink_for(topic) for name, p in policies.items()
             if (topic := p.dlq_topic) is not None},
            policies, flush_timeout, self.sensors, self._stopping)
        self.gate = FlowGate(source, {name: ErrorWindow(p.dlq.pause_rate, p.dlq.pause_window)
                                      for name, p in policies.items()}, self._hold_changed)
        pipelines = [plan.pipeline(name) for name in segment.pipelines]
        patient = () if state is None else (
            PatientState(state.writer, flush_timeout, self._stopping, self._state_waiting),)
        self.checkpoint = Checkpoint(
            source, (*stores, *patient),
            confirm_delivery,
            every=min(p.checkpoint.every for p in pipelines),
            interval=min(p.checkpoint.interval_s for p in pipelines),
            before_state=self._checkpoint_rows)
        self._source_waiting = False  # the source asked to wait (WAITING_BACKOFF)
        self._restore = Restore(self.name, source, self.kernel.states, self.tracker, state)
        self._reload_diffs = False  # diff hashes to load from the tables before the next batch
        # Each pipeline's full allocation of permits (streams.permits); the controller's
        # QuotaUpdates take some away and give them back.
        self.permits = PermitThrottle(permits or {name: 1 for name in segment.pipelines})
        self._wait_until = 0.0  # epoch seconds: a backoff of the last run still to wait out
        self._opened_at = 0.0
        self._assigned_at: float | None = None  # the first assignment of partitions
        self._control = control
        self._on_close = on_close
        self._batch_size = batch_size
        self._poll_timeout = poll_timeout
        self._last_activity = time.monotonic()
        self._busy = False  # a batch is between its poll and its send
        self._in_flight: _InFlight | None = None  # sent, not settled yet
        self._settle_s = 0.0  # how long the last batch's acknowledgements were waited for
        self._unsaved_diffs: dict[str, dict[str, dict[str, str]]] = {}  # settled, not saved
        self._timed_at = 0.0  # when a batch last ran the timed kernel (stage latencies)
        self._source_open = False
        self._caught_up = False  # the last empty poll found nothing left to read
        self._closed = False

    @property
    def name(self) -> str:
        return self.segment.group_id

    @property
    def stats(self) -> dict[str, PipelineStats]:
        return self.counters.stats

    @property
    def state(self) -> str:
        """WAITING_BACKOFF while any provider of the agent waits, else RUNNING."""
        waiting = any(p.state == P.WAITING_BACKOFF for p in self.tracker.providers.values())
        return P.WAITING_BACKOFF if waiting else RUNNING

    @property
    def paused(self) -> dict[str, str]:
        """Pipelines paused on their error rate, and why (not those waiting for a permit:
        that is the controller's to end, not the user's)."""
        return {pipeline: causes[ERROR_RATE] for pipeline, causes in self.gate.holds.items()
                if ERROR_RATE in causes}

    def open_source(self) -> None:
        """Open the source now, before the rest of the worker: joining a consumer group takes
        seconds on some brokers, and the worker's own start-up runs meanwhile."""
        if not self._source_open:
            self._source_open = True
            self.source.open()

    def open(self) -> None:
        self._opened_at = time.monotonic()
        self.open_source()
        self.tracker.move_all(P.ACQUIRING, "start", "waiting for the source")
        self.tracker.register({name: self._registry_row(name) for name in self.segment.pipelines})
        for name, full in self.permits.full.items():
            self.sensors.on_quota(name, full, full, full)
        if self._control is not None:
            self._follow(self._control.current())  # a pause outlives the worker that paused
            # the deployment's allocation: resizes and decisions, the newer last
            self._follow_permits(self._control.current_pools(),
                                 self._control.current_quotas())
        self._last_activity = time.monotonic()

    def resume_state(self) -> None:
        """Before the first step: state comes back from the tables. Not in `open`, which runs
        while the Faust app starts: the tables recover only once it has."""
        if self.source.external_cursor or self.kernel.states:
            backoff = self._restore.at_start()
            if backoff is not None:
                self._wait_until = backoff.until
                self.tracker.move_all(P.WAITING_BACKOFF, "restart", "the last run was waiting"
                                      f" out a backoff: {backoff.reason}", backoff.until,
                                      unless=(P.PAUSED,))
            # Diff hashes load before the first batch, after any assignment (streams.restore).
            self._reload_diffs = bool(self.kernel.states)
        self.tracker.restored()
        self._last_activity = time.monotonic()

    def _registry_row(self, name: str) -> dict[str, object]:
        pipeline = self._plan.pipeline(name)
        return {"pipeline": name, "source": self.segment.source.describe,
                "permits": self.permits.full[name],
                "sinks": [s.topic for s in pipeline.sinks], "dlq": pipeline.dlq_topic,
                "agent": self.name,
                "plan_hash": self._state.plan_hash if self._state is not None else None}

    def _on_rebalance(self, source: str, assigned: list[int], revoked: list[int]) -> None:
        if assigned and self._assigned_at is None:
            self._assigned_at = time.monotonic()
        if assigned and self.kernel.states:
            self._reload_diffs = True  # another worker may have had them a moment ago
        self.sensors.on_rebalance(source, assigned, revoked)

    def _waiting_out_backoff(self) -> bool:
        """The last run's backoff is not over: wait in slices (a stop ends it at once)."""
        left = self._wait_until - time.time()
        if left > 0:
            self._stopping.wait(min(left, self._poll_timeout))
            return True
        self._wait_until = 0.0
        self.tracker.move_all(P.RUNNING if self.source.ready else P.ACQUIRING, "backoff_over",
                              "the backoff of the last run is over", unless=(P.PAUSED,))
        return False

    def step(self) -> int:
        """Read and process at most one batch; return how many source records it held.

        Pipelined one batch deep: a batch is sent to its sinks at the end of its step and
        settled (acknowledged, checkpointed) in the next, after that step's batch ran
        through the stages, so the sinks' round trips overlap work (when the stages take
        long enough for that to pay, see `_InFlight.overlap`). Nothing waits while a batch
        is unsettled: with nothing new to read, or no permit, it is settled at once.
        """
        if self._closed:
            return 0
        if self._control is not None:
            self._follow(self._control.changes())
            self._follow_permits(self._control.pool_changes(), self._control.quota_changes())
        if self._wait_until and self._waiting_out_backoff():
            return 0
        if self._in_flight is not None and not self._in_flight.overlap:
            self._finish()
        allowed = self.permits.allowance(self._batch_size)
        if allowed == 0 and self.permits.share > 0:  # throttled: the bucket refills
            if self._in_flight is not None:
                self._finish()
                return 0
            self._stopping.wait(min(self._poll_timeout, self.permits.wait_s(self._batch_size)))
            return 0
        was_ready = self.source.ready
        # Only what is there already while a batch is unsettled: a poll must not hold back
        # its acknowledgements.
        batch = self.source.poll(max(1, allowed),
                                 0.0 if self._in_flight is not None else self._poll_timeout)
        if not was_ready and self.source.ready:
            self._last_activity = time.monotonic()  # idle time counts from the assignment
        self._follow_source()
        if batch is None:
            self._finish()
            # while held, polling keeps the group membership alive
            self._caught_up = not self.gate.held and self.source.caught_up()
            if self._caught_up or self.gate.held or self.checkpoint.due():
                self.checkpoint.commit()
            return 0
        self._caught_up = False
        if self._reload_diffs:
            self._reload_diffs = False
            self._finish()
            self.checkpoint.commit()  # what this worker changed is in the tables first
            self._restore.diffs()
        started = time.monotonic()
        self._busy = True
        try:
            self.sensors.on_batch_in(self.source.name, self.segment.pipelines, len(batch),
                                     started)
            self.permits.taken(len(batch))
            timed = started - self._timed_at >= STAGE_TIMING_S
            result = self.kernel.run(batch.values, batch.keys, batch.rejects, timed=timed)
            self.sensors.on_kernel(self.segment.pipelines, time.monotonic() - started)
            if result.seconds is not None:
                self._timed_at = started
                for (pipeline, stage), spent in self.kernel.stage_seconds(
                        result.seconds).items():
                    self.sensors.on_stage_time(pipeline, stage.removeprefix(f"{pipeline}."),
                                               spent)
            staged = time.monotonic() - started
            # This batch's state changes, apart from the next's: a checkpoint covers only
            # the batches settled before it.
            diffs = {diff.name: diff.drain() for diff in self.kernel.states}
            self._finish()  # the batch before: acknowledged while this one was in the stages
            self._in_flight = _InFlight(
                self.delivery.send(batch, result.outputs, result.failures), result, started,
                diffs, overlap=staged >= self._settle_s)
        finally:
            self._busy = False
        return len(batch)

    def _finish(self) -> None:
        """Settle the batch in flight: wait for its acknowledgements, count it, and
        checkpoint if it is time. A failure leaves it uncommitted, read again on restart."""
        flight, self._in_flight = self._in_flight, None
        if flight is None:
            return
        batch = flight.sending.batch
        settling = time.monotonic()
        outcome = self.delivery.settle(flight.sending)
        self._settle_s = time.monotonic() - settling
        self.sensors.on_delivered(
            self.segment.pipelines, time.monotonic() - flight.started,
            None if batch.first_timestamp_ms is None
            else max(0.0, time.time() - batch.first_timestamp_ms / 1000))
        if batch.urns:
            for provider in self.tracker.providers.values():
                provider.last_urn = batch.urns[-1]
        for name, rows in flight.diffs.items():
            self._unsaved_diffs.setdefault(name, {}).update(rows)
        # Counted before the checkpoint, so that its rows count this batch too.
        self._count(flight.result, outcome)
        self.checkpoint.delivered(batch)
        self._last_activity = time.monotonic()
        self.sensors.on_commit(self.source.name, self.segment.pipelines, len(batch),
                               self._last_activity)
        self.gate.count(len(batch), outcome.dead_per_pipeline())

    def _count(self, result: KernelResult, outcome: Outcome) -> None:
        filtered = self.kernel.filtered_per_stage(result.drops)
        for (pipeline, stage), count in filtered.items():
            self.sensors.on_filtered(pipeline, stage, count)
        for pipeline, stage, code, topic in outcome.dead:
            self.sensors.on_dead_lettered(pipeline, stage, code, topic)
        for pipeline in self.segment.pipelines:
            self.sensors.on_records_out(
                pipeline, result.delivered[pipeline] - outcome.refused[pipeline],
                outcome.per_target.get(pipeline, _EMPTY))

    def _follow_source(self) -> None:
        """Providers follow the source: RUNNING once it is assigned, WAITING_BACKOFF while it
        waits to read again (an HTTP server answering 503)."""
        waiting = self.source.backoff()
        if waiting is not None:
            self._source_waiting = True
            reason, until = waiting
            self.tracker.move_all(P.WAITING_BACKOFF, "source_backoff", reason, until,
                                  unless=(P.PAUSED,))
            return
        if not self.source.ready:
            return
        acquiring = [p for p in self.tracker.providers.values() if p.state == P.ACQUIRING]
        if acquiring:
            now = time.monotonic()
            timing = {"running_after_s": round(now - self._opened_at, 3),
                      "assigned_to_running_s": round(now - (self._assigned_at or now), 3)}
            log.info("%s", json.dumps({"agent": self.name, **timing}))
            # The same times in the transition's own line, which is shown by default.
            self.tracker.move([p.pipeline for p in acquiring], P.RUNNING, "assigned",
                              f"reading ({timing['assigned_to_running_s']:g}s after the "
                              f"assignment, {timing['running_after_s']:g}s after start)")
        if self._source_waiting:
            self._source_waiting = False
            self.tracker.move_all(P.RUNNING, "source_back", "reading again",
                                  unless=(P.PAUSED, P.RUNNING, P.ACQUIRING))

    def _follow(self, states: dict[str, PipelineState]) -> None:
        """Apply pipeline states from the control topic (`uee resume`, another worker)."""
        for pipeline, state in states.items():
            if state.state == PAUSED:
                self.gate.hold(pipeline, ERROR_RATE, state.reason, announce=False)
                self._providers_held(pipeline, state.reason, "paused")
            elif pipeline in self.gate.holds:
                self.gate.release(pipeline, ERROR_RATE)

    def batch_past_target(self) -> bool:
        """The batch in process is older than the P99 target one of its pipelines sets
        (`quota.max_p99_ms`; a default target is the policy's to read, in the samples)."""
        return self._own_target is not None and self.sampler.in_flight_ms() > self._own_target

    def quota_samples(self, deployment: str, worker: str, max_p99_ms: float,
                      max_saturation: float) -> list[QuotaSample]:
        """This interval's reading of each pipeline (called on the event loop: it reads
        what the agent's thread wrote under the sampler's lock, and floats)."""
        reading = self.sampler.reading()
        lag = sum(self.source.lag().values())
        at = datetime.datetime.now(datetime.UTC)
        topic = getattr(self.segment.source, "topic", "")
        samples = []
        for name in self.segment.pipelines:
            pipeline = self._plan.pipeline(name)
            quota = pipeline.quota
            samples.append(QuotaSample(
                deployment=deployment, worker=worker, pipeline=name, p99_ms=reading.p99_ms,
                saturation=reading.saturation, work=reading.work, lag=lag,
                permits=self.permits.permits[name],
                full=self.permits.full[name], max_p99_ms=quota.max_p99_ms or max_p99_ms,
                max_saturation=(quota.max_saturation or max_saturation) / 100, at=at,
                e2e_p99_ms=reading.e2e_p99_ms, throughput=reading.throughput,
                batch_records=reading.batch_records,
                full_rate=self.permits.full_rate, max_lag=quota.max_lag,
                priority=quota.priority, source=topic,
                sinks=tuple(sorted({sink.topic for sink in pipeline.sinks})),
                sink_p99_ms=reading.sink_p99_ms, sink_saturation=reading.sink_saturation,
                target_set=quota.max_p99_ms is not None, record_ms=reading.record_ms,
                batch_record_ms=reading.batch_record_ms, sink_mean_ms=reading.sink_mean_ms,
                batch_in_stages=reading.batch_in_stages,
                interval_throughput=reading.interval_throughput))
        return samples

    def _follow_permits(self, pools: list[PermitPool], updates: list[QuotaUpdate]) -> None:
        """Resizes of the pool (`uee quota set`) and the controller's decisions, in the order
        they were made: a resize is a fresh allocation, a later decision cuts from it."""
        if not pools:
            self._follow_quotas(updates)
            return
        messages: list[PermitPool | QuotaUpdate] = [*pools, *updates]
        for message in sorted(messages, key=lambda m: m.at):
            if isinstance(message, PermitPool):
                self._resize(message)
            else:
                self._follow_quotas([message])

    def _resize(self, pool: PermitPool) -> None:
        changed = self.permits.resize(pool.pipeline, pool.permits)
        if changed is None:
            return
        before, after = changed
        state_log.info("%s", json.dumps({"agent": self.name, "pool": pool.model_dump(
            mode="json")}))
        self.sensors.on_quota(pool.pipeline, before, after, after)
        self.gate.release(pool.pipeline, QUOTA)

    def _follow_quotas(self, updates: list[QuotaUpdate]) -> None:
        """Apply the controller's decisions for this agent's pipelines (the newest epoch
        wins; a stale controller's are ignored, and said so)."""
        for update in updates:
            if not self.permits.apply(update):
                log.warning("%s", json.dumps({"agent": self.name, "ignored": "a quota update "
                                              f"of epoch {update.epoch}, older than "
                                              f"{self.permits.epoch}",
                                              "quota": update.as_json()}))
                continue
            state_log.info("%s", json.dumps({"agent": self.name, "quota": update.as_json(),
                                             "share": round(self.permits.share, 3)}))
            self.sensors.on_quota(update.pipeline, update.permits_before,
                                  update.permits_after, self.permits.full[update.pipeline])
            if self.permits.permits[update.pipeline] == 0:
                self.gate.hold(update.pipeline, QUOTA, f"no permit left: {update.reason}")
            else:
                self.gate.release(update.pipeline, QUOTA)

    def _quota_hold_changed(self, pipeline: str, reason: str | None) -> None:
        """No permit: the providers wait for one (WAITING_QUOTA), what they delivered is
        checkpointed; a permit back: they acquire again, and run once the source is ready."""
        if reason is not None:
            self._finish()
            self.checkpoint.commit()
            self.tracker.move(self.segment.pipelines, P.WAITING_QUOTA, "revoked", reason,
                              unless=(P.PAUSED,))
            return
        if self.gate.held:
            return  # another pipeline of the agent, or a pause, still holds the source
        self.tracker.move(self.segment.pipelines, P.ACQUIRING, "permit", "a permit came back",
                          unless=(P.PAUSED, P.RUNNING, P.ACQUIRING))
        if self.source.ready:
            self.tracker.move(self.segment.pipelines, P.RUNNING, "permit", "reading",
                              unless=(P.PAUSED, P.RUNNING))

    def _providers_held(self, pipeline: str, reason: str, trigger: str) -> None:
        """The pipeline, and those merged with it (one consumer), are PAUSED; what they
        delivered is checkpointed now, nothing more will come for a while."""
        self._finish()
        self.checkpoint.commit()
        self.tracker.move([pipeline], P.PAUSED, trigger, reason)
        others = [p for p in self.segment.pipelines if p != pipeline]
        self.tracker.move(others, P.PAUSED, "held", f"held with {pipeline} (one consumer): "
                          f"{reason}")

    def _providers_released(self) -> None:
        free = [p for p in self.segment.pipelines if p not in self.gate.holds]
        if not self.gate.held:
            self.tracker.move(free, P.RUNNING if self.source.ready else P.ACQUIRING,
                              "resume", "resumed", unless=(P.RUNNING, P.ACQUIRING))

    def _state_waiting(self, reason: str | None) -> None:
        """A checkpoint waits for its state events to be acknowledged (the broker is away):
        the providers wait too, and say so; `reason` None: acknowledged, they run again."""
        if reason is None:
            log.warning("%s", json.dumps({"agent": self.name, "state": RUNNING,
                                          "reason": "state events acknowledged"}))
            self.sensors.on_state_change(f"agent:{self.name}", RUNNING,
                                         "state events acknowledged")
            return
        log.warning("%s", json.dumps({"agent": self.name, "state": P.WAITING_BACKOFF,
                                      "waiting_for": "state", "error": reason}))
        self.sensors.on_state_change(f"agent:{self.name}", P.WAITING_BACKOFF, reason)

    def _checkpoint_rows(self, batch: SourceBatch, records: int) -> None:
        self.tracker.checkpoint(self.source.cursor(batch.commit_token), records)
        unsaved, self._unsaved_diffs = self._unsaved_diffs, {}
        if self._state is not None:
            for name, rows in unsaved.items():
                for key, row in rows.items():
                    self._state.writer.put(DIFFS, f"{name}{KEY_SEPARATOR}{key}", row)

    def _hold_changed(self, pipeline: str, cause: str, reason: str | None) -> None:
        if cause == QUOTA:
            self._quota_hold_changed(pipeline, reason)
            return
        held_too = [p for p in self.segment.pipelines if p != pipeline]
        if reason is None:
            log.warning("%s", json.dumps({"pipeline": pipeline, "state": RUNNING,
                                          "reason": "resumed"}))
            self.sensors.on_state_change(f"pipeline:{pipeline}", RUNNING, "resumed")
            self._providers_released()
            return
        entry: dict[str, object] = {"pipeline": pipeline, "state": PAUSED, "reason": reason,
                                    "resume": f"uee resume {pipeline}"}
        if held_too:  # one consumer: nothing can flow for them either (see `uee plan`)
            entry["holds_also"] = held_too
        log.warning("%s", json.dumps(entry))
        self.sensors.on_state_change(f"pipeline:{pipeline}", PAUSED, reason)
        self._providers_held(pipeline, reason, cause)
        if self._control is not None and cause == ERROR_RATE:
            self._control.publish(PipelineState.now(pipeline, PAUSED, reason))

    def idle_for(self) -> float:
        """Seconds since the last record or assignment; 0 while a batch is in flight, while
        not ready to consume, while the source has records left to read (a fetch can be slow
        to come, idle time is not the end of the input), or while a bounded source still has
        records to give."""
        if self.gate.held:
            return float("inf")  # nothing will flow until `uee resume`
        if self.source.bounded:
            return float("inf") if self.source.exhausted else 0.0
        if self._busy or self._in_flight is not None or not self.source.ready \
                or not self._caught_up:
            return 0.0
        return time.monotonic() - self._last_activity

    def request_stop(self) -> None:
        """Called from the event loop: ends a backoff wait at once."""
        self._stopping.set()

    def close(self) -> None:
        """The drain: the batch in flight is settled, what was delivered is checkpointed,
        the providers end TERMINATED, then the clients close."""
        if self._closed:
            return
        self._closed = True
        try:
            try:
                self._finish()
            except Exception as exc:  # uncommitted: read again on restart
                log.warning("%s", json.dumps({"agent": self.name, "warning": "the last batch "
                                              f"was not delivered: {exc}"}))
            try:
                self.checkpoint.commit()
                self.tracker.restored()  # stopped before it resumed: its rows go out now
                self.tracker.move_all(P.TERMINATED, "drain", "the worker stopped; a restart "
                                      "resumes from the last checkpoint")
                if self._state is not None:
                    self._state.writer.flush(10)
            except Exception as exc:  # nothing unacknowledged was committed: read again
                log.warning("%s", json.dumps({"agent": self.name, "warning": "the final "
                                              f"checkpoint failed: {exc}"}))
            if self._on_close is not None:
                self._on_close()
        finally:
            self.source.close()


@dataclass(frozen=True)
class _InFlight:
    """A batch sent to its sinks, settled in the agent's next step."""

    sending: Sending
    result: KernelResult
    started: float  # when it was polled (monotonic)
    diffs: dict[str, dict[str, dict[str, str]]]  # the diff rows its records changed
    # The next batch is read before this one is settled: its stages took at least as long
    # as the acknowledgements were last waited for. Else the sinks' round trips are what
    # bounds the agent, reading ahead would not make it faster, and a record read ahead
    # would wait for the batch before it as well: settled first, as one batch at a time.
    overlap: bool


class _PublishBreakers(Sensor):
    """Sink breaker states on the control topic, for `uee status` and other workers."""

    def __init__(self, control: ControlSubscription) -> None:
        self._control = control

    def on_state_change(self, scope: str, state: str, reason: str) -> None:
        if scope.startswith("sink:"):
            with contextlib.suppress(Exception):  # best effort: the broker may be the cause
                self._control.publish(SinkState.now(scope[len("sink:"):], state, reason),
                                      timeout=2)
