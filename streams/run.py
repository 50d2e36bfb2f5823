"""`uee run`: pipelines in, a running Faust worker out, until a signal or until idle."""

from __future__ import annotations

import asyncio
import contextlib
import faulthandler
import functools
import hashlib
import json
import logging
import os
import signal
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from confluent_kafka import Producer

from uee.connectors.base import Sink, Source
from uee.connectors.kafka import KafkaSink, KafkaSource, KafkaWriter
from uee.connectors.registry import SOURCE_CONNECTORS
from uee.dsl.ir import ConnectorSource
from uee.dsl.ir import KafkaSource as KafkaSourceSpec
from uee.dsl.plan import Plan, Segment
from uee.errors import UeeError
from uee.streams.agent import BatchAgent
from uee.streams.broker import EmbeddedBroker
from uee.streams.control import ControlPlane
from uee.streams.interpreter import frozen_heap, switch_interval
from uee.streams.kernel import SinkBinding
from uee.streams.metrics import WorkerMetrics
from uee.streams.progress import Progress
from uee.streams.quota import install as install_quota
from uee.streams.sensors import PipelineStats, Sensor
from uee.streams.settings import Settings
from uee.streams.state import state_topic
from uee.streams.statelog import StateView, StateWriter
from uee.streams.topic_watch import TopicDeletedError, TopicWatch
from uee.streams.topics import (
    describe_topics,
    ensure_topics,
    is_tansu,
    topic_identity,
    topic_partitions,
)
from uee.streams.tracker import StateContext
from uee.streams.worker import StateSlot, WorkerState, worker_id

if TYPE_CHECKING:  # imported at run time inside _serve: Faust is slow to import
    from uee.streams.app import AgentService

log = logging.getLogger("uee")
TANSU_SESSION_MS = 2000  # the session timeout with which Tansu answers a join in 1 s
# Tansu answers a fetch with nothing to read yet only when its wait is over, whatever arrived
# meanwhile. A record's wait there, measured (one every 37 ms, P99): 51 ms at the 100 ms
# default, 7 ms at 20 ms and at 10 ms. The price of 20 ms: an idle source's fetches take
# 2% more of a core in the broker (3% -> 5%) and 0.3% more in the worker.
TANSU_FETCH_WAIT_MS = 20


class AgentFailedError(UeeError):
    code = "AGENT_FAILED"


@dataclass(frozen=True)
class RunReport:
    bootstrap: str
    embedded: bool
    stats: dict[str, PipelineStats]
    topic_reads: dict[str, int]  # records read per source, once however many pipelines share it
    topic_records: dict[str, int]  # records in each topic the run touched, read before exit
    seconds: float
    paused: dict[str, str]  # pipelines paused by their error rate, and why


class SourceNotRunnableError(UeeError):
    code = "SOURCE_UNAVAILABLE"


@contextlib.contextmanager
def kafka_for(settings: Settings) -> Iterator[tuple[str, bool]]:
    """The configured Kafka, or an embedded broker for the duration of the block."""
    if settings.bootstrap:
        yield settings.bootstrap, False
        return
    with EmbeddedBroker(durable=settings.durable) as broker:
        yield broker.bootstrap, True


def for_tansu(settings: Settings) -> Settings:
    """Tansu has three quirks; what the user did not set is fitted to them. Its group
    coordinator holds a JoinGroup for about half the session timeout, in whole seconds, at
    least one: with uee's 10 s default a worker waits 5 s for its first record, with 2 s it
    waits 1 s (heartbeats, every 0.4 s, come from librdkafka's own thread). It does not carry
    a cooperative rebalance through: a second worker joining never gets going, so the eager
    `range` strategy is used there. And a fetch's wait is a record's latency there."""
    fitted: dict[str, Any] = {"session_timeout_ms": TANSU_SESSION_MS,
                              "assignment_strategy": "range",
                              "fetch_wait_ms": TANSU_FETCH_WAIT_MS}
    return settings.model_copy(update={k: v for k, v in fitted.items()
                                       if k not in settings.model_fields_set})


def topics_of(plan: Plan) -> list[str]:
    """Every topic the plan reads or writes: sources, sinks, dead letters."""
    return sorted(roles_of(plan))


def roles_of(plan: Plan) -> dict[str, str]:
    """Every topic the plan reads or writes, and what it is to which pipelines."""
    roles: dict[str, list[str]] = {}
    for segment in plan.segments:
        if isinstance(segment.source, KafkaSourceSpec):
            roles.setdefault(segment.source.topic, []).append(
                f"the source of {', '.join(segment.pipelines)}")
        for endpoint in segment.all_endpoints():
            for sink in endpoint.sinks:
                roles.setdefault(sink.topic, []).append(f"a sink of {endpoint.pipeline}")
            if endpoint.dlq_topic:
                roles.setdefault(endpoint.dlq_topic, []).append(
                    f"the dead-letter topic of {endpoint.pipeline}")
    return {topic: "; ".join(dict.fromkeys(what)) for topic, what in roles.items()}


def build_source(segment: Segment, settings: Settings) -> Source:
    spec = segment.source
    if isinstance(spec, KafkaSourceSpec):
        return KafkaSource(spec.topic, settings.consumer_config(segment.group_id))
    assert isinstance(spec, ConnectorSource)
    connector = SOURCE_CONNECTORS.get(spec.type)
    if connector is None:  # validated against the same registry: cannot happen
        raise SourceNotRunnableError(f"{spec.describe} cannot run in this version of uee")
    return connector.create(f"{spec.type}:{'+'.join(segment.pipelines)}", spec.config)


def build_agent(segment: Segment, plan: Plan, settings: Settings,
                control: ControlPlane | None = None,
                confirm_writes: TopicWatch | None = None,
                state: StateContext | None = None,
                on_provider_change: Any = None,
                sensors: tuple[Sensor, ...] = (),
                permits: dict[str, int] | None = None) -> BatchAgent:
    """`confirm_writes`: check before each commit that the topics the batch was written to
    still exist, for a broker that acknowledges writes to a deleted topic (Tansu 0.6.0)."""
    writer = KafkaWriter(settings.producer_config())

    def sink_for(binding: SinkBinding) -> Sink:
        return KafkaSink(binding.sink.name, binding.sink.topic, writer, settings.max_record_bytes)

    def dead_letter_sink_for(topic: str) -> Sink:
        # Dead letters carry the source record's bytes, which the source took: no size limit.
        return KafkaSink("dlq", topic, writer, max_bytes=2**62)

    written = sorted({sink.topic for e in segment.all_endpoints() for sink in e.sinks}
                     | {e.dlq_topic for e in segment.all_endpoints() if e.dlq_topic})
    return BatchAgent(
        segment, plan, build_source(segment, settings), sink_for, dead_letter_sink_for,
        settings.batch_size, settings.poll_timeout_s, settings.flush_timeout_s,
        control=control.subscribe(segment.pipelines) if control is not None else None,
        confirm_delivery=functools.partial(confirm_writes.confirm, written)
        if confirm_writes is not None else None,
        on_close=writer.close, state=state, on_provider_change=on_provider_change,
        sensors=sensors, permits=permits)


def permits_of(plan: Plan, partitions: dict[str, int]) -> dict[str, int]:
    """Each pipeline's full allocation: its `quota.permits`, else one per partition of its
    Kafka source, else one."""
    full = {}
    for segment in plan.segments:
        spec = segment.source
        default = partitions.get(spec.topic, 1) if isinstance(spec, KafkaSourceSpec) else 1
        for name in segment.pipelines:
            full[name] = plan.pipeline(name).quota.permits or default
    return full


def plan_hash(plan: Plan) -> str:
    from uee.dsl.render import render_json

    return hashlib.sha256(render_json(plan).encode()).hexdigest()[:12]


def run_plan(
    plan: Plan, settings: Settings, until_idle: float | None, progress: Progress
) -> RunReport:
    started = time.monotonic()
    slot = StateSlot(settings.state_dir, settings.app)
    try:
        with kafka_for(settings) as (bootstrap, embedded):
            return _run_on(plan, settings, until_idle, progress, started, slot, bootstrap,
                           embedded)
    finally:
        slot.release()


def _run_on(plan: Plan, settings: Settings, until_idle: float | None, progress: Progress,
            started: float, slot: StateSlot, bootstrap: str, embedded: bool) -> RunReport:
    progress.broker(bootstrap, embedded, settings.durable)
    settings = settings.with_bootstrap(bootstrap)
    tansu = embedded or is_tansu(bootstrap)
    if tansu:
        settings = for_tansu(settings)
    wanted = topics_of(plan)
    created = ensure_topics(bootstrap, wanted, settings.topic_partitions,
                            settings.replication_factor)
    # One partition: the agent that applies state events sees them in the order written.
    ensure_topics(bootstrap, [state_topic(settings.app)], 1, settings.replication_factor)
    if slot.bind(topic_identity(bootstrap, state_topic(settings.app))):
        log.info("%s", json.dumps({"state_dir": str(slot.path), "emptied": "its tables came "
                                   "from another broker or deployment; recovered anew"}))
    progress.topics(wanted, created)
    agents: list[BatchAgent] = []
    metrics = WorkerMetrics.serve(settings, lambda: agents)  # first: a port in use fails now
    if metrics is not None:
        progress.note(f"metrics at {metrics.address}")
    try:
        with switch_interval(settings.switch_interval_ms):
            _run_agents(plan, settings, until_idle, progress, slot, tansu, agents,
                        metrics.sensors if metrics is not None else (),
                        permits_of(plan, topic_partitions(bootstrap)))
    finally:
        if metrics is not None:
            metrics.stop()
    stats = {name: s for agent in agents for name, s in agent.stats.items()}
    reads = sum((agent.counters.read for agent in agents), Counter[str]())
    partitions = topic_partitions(bootstrap)
    totals = describe_topics(bootstrap, {t: partitions[t] for t in wanted if t in partitions})
    paused = {p: why for agent in agents for p, why in agent.paused.items()}
    return RunReport(bootstrap, embedded, stats, dict(reads), {t.name: t.records for t in totals},
                     time.monotonic() - started, paused)


def _run_agents(plan: Plan, settings: Settings, until_idle: float | None, progress: Progress,
                slot: StateSlot, tansu: bool, agents: list[BatchAgent],
                sensors: tuple[Sensor, ...], permits: dict[str, int]) -> None:
    """The worker itself: its agents (into `agents`, which the metrics read), the control
    plane, the topic watch and the state writer, until the run ends."""
    watch = TopicWatch(str(settings.bootstrap), roles_of(plan))
    watch.start()
    control = ControlPlane(settings)
    writer = StateWriter(Producer(settings.state_config()), state_topic(settings.app))
    context = StateContext(worker_id(slot.slot), writer, plan_hash(plan), slot.origin)
    worker = WorkerState(settings.app, context.worker, writer,
                         lambda: [p for a in agents for p in a.tracker.providers.values()])
    try:
        agents.extend(build_agent(segment, plan, settings, control, watch if tansu else None,
                                  context, worker.settle, sensors,
                                  {p: permits[p] for p in segment.pipelines})
                      for segment in plan.segments)
        for agent in agents:
            agent.open_source()
        control.start()
        asyncio.run(_serve(agents, settings, until_idle, progress, watch, context, worker,
                           str(slot.path), control))
    finally:
        control.close()
        watch.stop()
        with contextlib.suppress(Exception):  # best effort: the broker may be the cause
            worker.stopped()
            writer.flush(5)


async def _serve(
    agents: list[BatchAgent], settings: Settings, until_idle: float | None, progress: Progress,
    watch: TopicWatch, context: StateContext, worker: WorkerState, datadir: str,
    control: ControlPlane,
) -> None:
    # Faust is imported here, not at the top: its import takes a third of a second, which the
    # agents' group joins (started by run_plan) now overlap.
    from uee.streams.app import AgentService, create_app
    from uee.streams.state import StateTables

    app = create_app(settings.app, settings, datadir)
    tables = StateTables(app, context.origin)
    install_quota(app, control, agents, settings, context.worker)
    # Where the state topic ends now: a provider that reads its checkpoint waits until the
    # tables hold all of it (Fetch high watermarks: ListOffsets is wrong on Tansu).
    def state_end() -> int:
        [info] = describe_topics(str(settings.bootstrap), {tables.topic_name: 1})
        return info.partitions[0].high

    context.view = StateView(tables, asyncio.get_running_loop(), state_end(),
                             settings.recovery_timeout_s, state_end)
    services = [AgentService(agent, loop=asyncio.get_running_loop()) for agent in agents]
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    # A library can block the event loop (Faust's start-up with a dead broker), so a stop
    # request also arms a watchdog that ends the process if stopping takes too long.
    watchdog = _Watchdog(settings.shutdown_timeout_s)

    def on_signal(signum: int, frame: Any) -> None:
        watchdog.arm()
        loop.call_soon_threadsafe(stop.set)
        worker.drain(f"signal {signal.Signals(signum).name}")

    previous = {signum: signal.signal(signum, on_signal)
                for signum in (signal.SIGINT, signal.SIGTERM)}
    for service in services:
        app.add_dependency(service)  # started and stopped with the app
    progress.start(agents)
    # Everything that exists now is frozen out of the collector's full collections: Faust
    # runs them at every rebalance, and they stop every pipeline while they walk it.
    with frozen_heap():
        # The agents start with the app (they are its dependencies) and consume while Faust
        # finishes joining its own group, so progress and idle checks run meanwhile too.
        starting = asyncio.ensure_future(app.start())
        bootstrapped = False
        try:
            while not stop.is_set():
                if not bootstrapped and starting.done():
                    bootstrapped = True
                    worker.bootstrapped()
                # A deletion first: an agent may have failed because of it, and the deletion is
                # what the user must hear about.
                watch.raise_if_deleted()
                _raise_if_failed(services, starting)
                if until_idle is not None and all(a.idle_for() >= until_idle for a in agents):
                    break
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), 0.2)
            # A start that failed (the broker gone while Faust started: aiokafka's
            # NodeNotReadyError, seen in a test) is reported below, by `_raise_if_failed`,
            # as AGENT_FAILED: raised here, it left as error[INTERNAL], "a bug in uee".
            with contextlib.suppress(Exception):
                await starting
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)
            if not starting.done():
                starting.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await starting
            watchdog.arm()  # stopping may block the loop too (Faust's consumer on a dead broker)
            worker.drain("stopping")
            try:
                await _stop_within([(s, s.label) for s in services], watchdog.left)
                if starting.done() and not starting.cancelled() and starting.exception() is None:
                    # The tables take in this worker's last events before Faust stops, so the
                    # changelogs hold its final checkpoints (`uee status` would apply them too).
                    await tables.ready(context.writer.last_offset + 1,
                                       timeout=min(5.0, watchdog.left()))
                await _stop_within([(app, "the Faust worker")], watchdog.left)
            finally:
                watchdog.cancel()
            progress.finish()
    _raise_if_failed(services, starting)  # a batch that failed while stopping counts too


class _Watchdog:
    """Ends the process if stopping takes longer than `bound` seconds once armed: the whole
    drain (agents, the tables' last events, Faust) shares that one bound.

    Its timer is a Python thread, which needs the interpreter lock to run; a C call that
    blocks while holding it (librdkafka#4884 was one, in a rebalance callback) would keep
    it from ever firing. So `faulthandler`'s watchdog, a thread that needs no lock, ends
    the process `LAST_RESORT_S` later, printing every thread's stack: what hung, for the
    bug report."""

    # Kept back from the parts' share of the bound, so a part that times out still leaves
    # time for the rest to be skipped and the process to exit on its own, with code 0.
    MARGIN_S = 1.0
    LAST_RESORT_S = 5.0

    def __init__(self, bound: float) -> None:
        self._bound = bound
        self._armed_at: float | None = None
        self._timer = threading.Timer(bound, self._fire, args=(bound,))
        self._timer.daemon = True

    def arm(self) -> None:
        if self._armed_at is None:
            self._armed_at = time.monotonic()
            self._timer.start()
            faulthandler.dump_traceback_later(self._bound + self.LAST_RESORT_S, exit=True)

    def left(self) -> float:
        """Seconds the next part of the drain may take."""
        spent = time.monotonic() - self._armed_at if self._armed_at is not None else 0.0
        return max(0.1, self._bound - spent - self.MARGIN_S)

    def cancel(self) -> None:
        self._timer.cancel()
        faulthandler.cancel_dump_traceback_later()

    @staticmethod
    def _fire(bound: float) -> None:
        sys.stderr.write("error[SHUTDOWN_TIMEOUT]: the worker did not stop within "
                         f"UEE_SHUTDOWN_TIMEOUT_S={bound:g}s; exiting now. Nothing "
                         "uncommitted is lost: it is read again on restart\n")
        sys.stderr.flush()
        os._exit(1)


async def _stop_within(stoppables: list[tuple[Any, str]], left: Callable[[], float]) -> None:
    """Stop each (the agents with their last commits, then Faust) within what is `left` of
    the drain's bound: with the broker gone, client shutdowns can wait on it for minutes."""
    for stoppable, label in stoppables:
        timeout = left()
        try:
            await asyncio.wait_for(stoppable.stop(), timeout)
        except TimeoutError:
            log.warning("%s did not stop within %gs; exiting anyway (nothing uncommitted "
                        "is lost: it is read again on restart)", label, timeout)
        except Exception as exc:
            log.warning("%s failed while stopping: %s", label, exc)


def _raise_if_failed(services: list[AgentService], starting: asyncio.Future[None]
                     ) -> None:
    failed = [s for s in services if s.error is not None]
    deleted = [s.error for s in failed if isinstance(s.error, TopicDeletedError)]
    if deleted:
        raise deleted[0]
    if failed:
        raise AgentFailedError(f"{failed[0].label}: {failed[0].error}; nothing after its last "
                               "acknowledged batch was committed, a restart resumes there")
    if starting.done() and not starting.cancelled() and starting.exception() is not None:
        raise AgentFailedError(f"the Faust worker failed to start: {starting.exception()}")
