"""`uee run`: pipelines in, a running Faust worker out, until a signal or until idle."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time
from collections.abc import Iterator
from dataclasses import dataclass

from connectors.base import Source
from connectors.generator import GeneratorSource
from connectors.kafka import KafkaSource, KafkaWriter
from dsl.errors import UeeError
from dsl.ir import GeneratorSource as GeneratorSpec
from dsl.ir import KafkaSource as KafkaSourceSpec
from dsl.plan import Plan, Segment
from streams.agent import BatchAgent, PipelineStats
from streams.broker import EmbeddedBroker
from streams.progress import Progress
from streams.settings import Settings
from streams.topics import describe_topics, ensure_topics, topic_partitions


class AgentFailedError(UeeError):
    code = "AGENT_FAILED"


@dataclass(frozen=True)
class RunReport:
    bootstrap: str
    embedded: bool
    stats: dict[str, PipelineStats]
    created_topics: list[str]
    topic_records: dict[str, int]  # records in each topic the run touched, read before exit
    seconds: float


class SourceNotRunnableError(UeeError):
    code = "SOURCE_UNAVAILABLE"


@contextlib.contextmanager
def kafka_for(settings: Settings) -> Iterator[tuple[str, bool]]:
    """The configured Kafka, or an embedded broker for the duration of the block."""
    if settings.bootstrap:
        yield settings.bootstrap, False
        return
    with EmbeddedBroker() as broker:
        yield broker.bootstrap, True


def topics_of(plan: Plan) -> list[str]:
    """Every topic the plan reads or writes: sources, sinks, dead letters."""
    topics: set[str] = set()
    for segment in plan.segments:
        if isinstance(segment.source, KafkaSourceSpec):
            topics.add(segment.source.topic)
        for endpoint in segment.all_endpoints():
            topics.update(sink.topic for sink in endpoint.sinks)
            topics.add(endpoint.dlq_topic)
    return sorted(topics)


def build_source(segment: Segment, settings: Settings) -> Source:
    spec = segment.source
    if isinstance(spec, GeneratorSpec):
        name = f"generator:{'+'.join(segment.pipelines)}"
        return GeneratorSource(name, spec.count, spec.seed, spec.rate)
    if isinstance(spec, KafkaSourceSpec):
        return KafkaSource(spec.topic, settings.consumer_config(segment.group_id))
    raise SourceNotRunnableError(f"{spec.describe} cannot run in this version of uee")


def build_agent(segment: Segment, plan: Plan, settings: Settings) -> BatchAgent:
    writer = KafkaWriter(settings.producer_config())
    return BatchAgent(segment, plan, build_source(segment, settings), writer,
                      settings.batch_size, settings.poll_timeout_s, settings.flush_timeout_s)


def run_plan(
    plan: Plan, settings: Settings, until_idle: float | None, progress: Progress
) -> RunReport:
    started = time.monotonic()
    with kafka_for(settings) as (bootstrap, embedded):
        progress.broker(bootstrap, embedded)
        settings = settings.with_bootstrap(bootstrap)
        wanted = topics_of(plan)
        created = ensure_topics(bootstrap, wanted, settings.topic_partitions,
                                settings.replication_factor)
        progress.topics(wanted, created)
        agents = [build_agent(segment, plan, settings) for segment in plan.segments]
        asyncio.run(_serve(agents, settings, until_idle, progress))
        stats = {name: s for agent in agents for name, s in agent.stats.items()}
        partitions = topic_partitions(bootstrap)
        totals = describe_topics(bootstrap, {t: partitions[t] for t in wanted if t in partitions})
    return RunReport(bootstrap, embedded, stats, created, {t.name: t.records for t in totals},
                     time.monotonic() - started)


async def _serve(
    agents: list[BatchAgent], settings: Settings, until_idle: float | None, progress: Progress
) -> None:
    from streams.app import AgentService, app_id_for, create_app

    app = create_app(app_id_for([a.name for a in agents]), settings)
    services = [AgentService(agent, loop=asyncio.get_running_loop()) for agent in agents]
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    progress.start(agents)
    try:
        for service in services:
            app.add_dependency(service)  # started and stopped with the app
        await app.start()
        while not stop.is_set():
            failed = [s for s in services if s.error is not None]
            if failed:
                raise AgentFailedError(f"{failed[0].label}: {failed[0].error}")
            if until_idle is not None and all(a.idle_for() >= until_idle for a in agents):
                break
            progress.update()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 0.2)
    finally:
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(signum)
        await app.stop()
        progress.finish()
