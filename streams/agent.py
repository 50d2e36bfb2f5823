"""One plan segment's batch loop: poll -> kernel -> deliver -> checkpoint.

This is the hot path. It is synchronous and runs on its own thread (hosted by a
Faust service, see `streams.app`), one batch at a time, so that a source offset
is committed only after every record of its batch was acknowledged by every sink
or by the dead-letter topic: at-least-once by construction. Each job has its own
module: delivery (retries, breakers, dead letters), the flow gate (pauses), the
checkpoint (commit order), the sensors (counters, metrics), the control plane.
"""

from __future__ import annotations

import contextlib
import json
import logging
import threading
import time
from collections import Counter
from collections.abc import Callable

from uee.connectors.base import Sink, Source
from uee.dsl.plan import Plan, Segment
from uee.streams.checkpoint import Checkpoint, StateStore
from uee.streams.control import PAUSED, RUNNING, ControlSubscription, PipelineState, SinkState
from uee.streams.delivery import Delivery, Outlet, Policy
from uee.streams.flow import ERROR_RATE, ErrorWindow, FlowGate
from uee.streams.kernel import Kernel, SinkBinding
from uee.streams.sensors import PipelineStats, Sensor, Sensors, StatsSensor

log = logging.getLogger("uee")
_EMPTY: Counter[str] = Counter()


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
    ) -> None:
        self.segment = segment
        self.source = source
        self.kernel = Kernel(segment)
        self._stopping = threading.Event()
        self.counters = StatsSensor(segment.pipelines)
        self.sensors = Sensors(self.counters, _AgentState(self), *sensors)
        if control is not None:
            self.sensors.add(_PublishBreakers(control))
        source.rebalance_listener = self.sensors.on_rebalance
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
        self.checkpoint = Checkpoint(source, stores, confirm_delivery)
        self.state = RUNNING
        self._control = control
        self._on_close = on_close
        self._batch_size = batch_size
        self._poll_timeout = poll_timeout
        self._last_activity = time.monotonic()
        self._busy = False  # a batch is between poll and commit
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
    def paused(self) -> dict[str, str]:
        """Pipelines held, and why."""
        return self.gate.reasons()

    def open_source(self) -> None:
        """Open the source now, before the rest of the worker: joining a consumer group takes
        seconds on some brokers, and the worker's own start-up runs meanwhile."""
        if not self._source_open:
            self._source_open = True
            self.source.open()

    def open(self) -> None:
        self.open_source()
        if self._control is not None:
            self._follow(self._control.current())  # a pause outlives the worker that paused
        self._last_activity = time.monotonic()

    def step(self) -> int:
        """Process at most one batch; return how many source records it held."""
        if self._closed:
            return 0
        if self._control is not None:
            self._follow(self._control.changes())
        was_ready = self.source.ready
        batch = self.source.poll(self._batch_size, self._poll_timeout)
        if not was_ready and self.source.ready:
            self._last_activity = time.monotonic()  # idle time counts from the assignment
        if batch is None:
            # while held, polling keeps the group membership alive
            self._caught_up = not self.gate.held and self.source.caught_up()
            return 0
        self._caught_up = False
        started = time.monotonic()
        self._busy = True
        try:
            self.sensors.on_batch_in(self.source.name, self.segment.pipelines, len(batch),
                                     started)
            result = self.kernel.run(batch.values, batch.keys)
            outcome = self.delivery.deliver(batch, result.outputs, result.failures)
            self.sensors.on_delivered(self.segment.pipelines, time.monotonic() - started)
            self.checkpoint.commit(batch)
        finally:
            self._busy = False
        self._last_activity = time.monotonic()
        self.sensors.on_commit(self.source.name, self.segment.pipelines, len(batch),
                               self._last_activity)
        filtered = self.kernel.filtered_per_stage(result.drops)
        for (pipeline, stage), count in filtered.items():
            self.sensors.on_filtered(pipeline, stage, count)
        for pipeline, stage, code, topic in outcome.dead:
            self.sensors.on_dead_lettered(pipeline, stage, code, topic)
        for pipeline in self.segment.pipelines:
            self.sensors.on_records_out(
                pipeline, result.delivered[pipeline] - outcome.refused[pipeline],
                outcome.per_target.get(pipeline, _EMPTY))
        self.gate.count(len(batch), outcome.dead_per_pipeline())
        return len(batch)

    def _follow(self, states: dict[str, PipelineState]) -> None:
        """Apply pipeline states from the control topic (`uee resume`, another worker)."""
        for pipeline, state in states.items():
            if state.state == PAUSED:
                self.gate.hold(pipeline, ERROR_RATE, state.reason, announce=False)
            elif pipeline in self.gate.holds:
                self.gate.release(pipeline, ERROR_RATE)

    def _hold_changed(self, pipeline: str, cause: str, reason: str | None) -> None:
        held_too = [p for p in self.segment.pipelines if p != pipeline]
        if reason is None:
            log.warning("%s", json.dumps({"pipeline": pipeline, "state": RUNNING,
                                          "reason": "resumed"}))
            self.sensors.on_state_change(f"pipeline:{pipeline}", RUNNING, "resumed")
            return
        entry: dict[str, object] = {"pipeline": pipeline, "state": PAUSED, "reason": reason,
                                    "resume": f"uee resume {pipeline}"}
        if held_too:  # one consumer: nothing can flow for them either (see `uee plan`)
            entry["holds_also"] = held_too
        log.warning("%s", json.dumps(entry))
        self.sensors.on_state_change(f"pipeline:{pipeline}", PAUSED, reason)
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
        if self._busy or not self.source.ready or not self._caught_up:
            return 0.0
        return time.monotonic() - self._last_activity

    def request_stop(self) -> None:
        """Called from the event loop: ends a backoff wait at once."""
        self._stopping.set()

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            if self._on_close is not None:
                self._on_close()
        finally:
            self.source.close()


class _AgentState(Sensor):
    """Keeps `BatchAgent.state`: RUNNING, or WAITING_BACKOFF while a batch is held."""

    def __init__(self, agent: BatchAgent) -> None:
        self._agent = agent

    def on_state_change(self, scope: str, state: str, reason: str) -> None:
        if scope == f"agent:{self._agent.name}":
            self._agent.state = state


class _PublishBreakers(Sensor):
    """Sink breaker states on the control topic, for `uee status` and other workers."""

    def __init__(self, control: ControlSubscription) -> None:
        self._control = control

    def on_state_change(self, scope: str, state: str, reason: str) -> None:
        if scope.startswith("sink:"):
            with contextlib.suppress(Exception):  # best effort: the broker may be the cause
                self._control.publish(SinkState.now(scope[len("sink:"):], state, reason),
                                      timeout=2)
