"""Prometheus metrics of one worker: a sensor for what the batch loops report, a collector
for what is read when scraped (lag, checkpoint age), served at `/metrics`.

The loops never import Prometheus: they report to their `Sensors` (streams.sensors) and
`PrometheusSensor` is one more listener, with the `CollectorRegistry` handed to it (as
Faust's own Prometheus sensor). Labels stay low-cardinality: pipeline, sink, stage, error
code, state, and a source's topic and partition for lag.
"""

from __future__ import annotations

import errno
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, Gauge, Histogram, start_http_server
from prometheus_client import Counter as PromCounter
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from uee.errors import UeeError
from uee.streams.breaker import CLOSED, HALF_OPEN, OPEN
from uee.streams.provider import P
from uee.streams.sensors import Sensor

if TYPE_CHECKING:
    from uee.streams.agent import BatchAgent
    from uee.streams.settings import Settings

# Batch latencies: from a few milliseconds (a small batch on loopback) to a retry's backoff.
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
                   10.0, 30.0)
# A stage's share of one batch: from microseconds (a filter on a small batch) to seconds.
STAGE_BUCKETS = (0.00001, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
                 0.1, 0.25, 0.5, 1.0, 5.0)
BREAKER_STATES = (CLOSED, OPEN, HALF_OPEN)


class MetricsPortError(UeeError):
    code = "METRICS_PORT"


class PrometheusSensor(Sensor):
    """The counters, histograms and state gauges; one per worker, shared by its agents
    (prometheus-client's metrics are thread-safe)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.records_in = PromCounter(
            "uee_records_in", "Records read from the source, per pipeline", ["pipeline"],
            registry=registry)
        self.records_out = PromCounter(
            "uee_records_out", "Records acknowledged by a sink", ["pipeline", "sink"],
            registry=registry)
        self.filtered = PromCounter(
            "uee_records_filtered", "Records dropped by a stage", ["pipeline"],
            registry=registry)
        self.dead_lettered = PromCounter(
            "uee_records_dead_lettered", "Records sent to the dead-letter topic",
            ["pipeline", "code"], registry=registry)
        self.delivery_latency = Histogram(
            "uee_delivery_latency_seconds", "From a batch's poll to its sinks' and DLQ's "
            "acknowledgements", ["pipeline"], buckets=LATENCY_BUCKETS, registry=registry)
        self.end_to_end_latency = Histogram(
            "uee_end_to_end_latency_seconds", "From a batch's first record's Kafka timestamp "
            "to its acknowledgements (the time it waited in Kafka included)", ["pipeline"],
            buckets=LATENCY_BUCKETS, registry=registry)
        self.stage_latency = Histogram(
            "uee_stage_latency_seconds", "Time a batch spent in a stage (one sampled batch a "
            "second per agent)", ["pipeline", "stage"], buckets=STAGE_BUCKETS,
            registry=registry)
        self.provider_state = Gauge(
            "uee_provider_state", "1 for a provider's current state", ["pipeline", "state"],
            registry=registry)
        self.breaker_state = Gauge(
            "uee_breaker_state", "1 for a sink breaker's current state", ["sink", "state"],
            registry=registry)
        self.permits_total = Gauge(
            "uee_permits_total", "Permits of the pipelines this worker runs, at full "
            "allocation", registry=registry)
        self.permits_allocated = Gauge(
            "uee_permits_allocated", "Permits a pipeline holds now", ["pipeline"],
            registry=registry)
        self.revocations = PromCounter(
            "uee_quota_revocations", "Quota updates that took permits away", ["pipeline"],
            registry=registry)
        self.restorations = PromCounter(
            "uee_quota_restorations", "Quota updates that gave permits back", ["pipeline"],
            registry=registry)
        self._full: dict[str, int] = {}

    def on_batch_in(self, source: str, pipelines: tuple[str, ...], records: int,
                    at: float) -> None:
        for pipeline in pipelines:
            self.records_in.labels(pipeline).inc(records)

    def on_records_out(self, pipeline: str, records: int, per_target: Counter[str]) -> None:
        for sink, count in per_target.items():
            self.records_out.labels(pipeline, sink).inc(count)

    def on_filtered(self, pipeline: str, stage: str, records: int) -> None:
        self.filtered.labels(pipeline).inc(records)

    def on_dead_lettered(self, pipeline: str, stage: str, code: str, topic: str) -> None:
        self.dead_lettered.labels(pipeline, code).inc()

    def on_delivered(self, pipelines: tuple[str, ...], seconds: float,
                     since_produced: float | None = None) -> None:
        for pipeline in pipelines:
            self.delivery_latency.labels(pipeline).observe(seconds)
            if since_produced is not None:
                self.end_to_end_latency.labels(pipeline).observe(since_produced)

    def on_stage_time(self, pipeline: str, stage: str, seconds: float) -> None:
        self.stage_latency.labels(pipeline, stage).observe(seconds)

    def on_quota(self, pipeline: str, before: int, after: int, full: int) -> None:
        self._full[pipeline] = full
        self.permits_total.set(sum(self._full.values()))
        self.permits_allocated.labels(pipeline).set(after)
        if after < before:
            self.revocations.labels(pipeline).inc()
        elif after > before:
            self.restorations.labels(pipeline).inc()

    def on_state_change(self, scope: str, state: str, reason: str) -> None:
        kind, _, name = scope.partition(":")
        if kind == "provider":
            for provider_state in P:
                self.provider_state.labels(name, provider_state.value).set(
                    1 if provider_state == state else 0)
        elif kind == "sink":
            for breaker_state in BREAKER_STATES:
                self.breaker_state.labels(name, breaker_state).set(
                    1 if breaker_state == state else 0)


@dataclass(frozen=True)
class Readings:
    """What the collector asks an agent for when scraped."""

    pipelines: Callable[[], Iterable[str]]
    lag: Callable[[], dict[tuple[str, int], int]]  # (topic, partition) -> records behind
    checkpoint_age: Callable[[], float]  # seconds since the agent's last checkpoint


class ReadingsCollector(Collector):
    """Lag and checkpoint age, read from the agents at scrape time."""

    def __init__(self, agents: Callable[[], Iterable[Readings]]) -> None:
        self._agents = agents

    def collect(self) -> Iterator[Any]:
        lag = GaugeMetricFamily("uee_consumer_lag_records", "Records between a source "
                                "partition's position and its end (the last fetch's high "
                                "watermark)", labels=["pipeline", "topic", "partition"])
        age = GaugeMetricFamily("uee_checkpoint_age_seconds", "How long records the pipeline "
                                "delivered have waited for a checkpoint (0: none waits)",
                                labels=["pipeline"])
        for agent in self._agents():
            behind = agent.lag()
            seconds = agent.checkpoint_age()
            for pipeline in agent.pipelines():
                age.add_metric([pipeline], seconds)
                for (topic, partition), records in sorted(behind.items()):
                    lag.add_metric([pipeline, topic, str(partition)], records)
        yield lag
        yield age

    def describe(self) -> list[Any]:
        return []  # collected fresh each scrape: nothing to check at registration


class MetricsServer:
    """`/metrics` on HOST:PORT until stopped."""

    def __init__(self, registry: CollectorRegistry, host: str, port: int) -> None:
        try:
            self._server, self._thread = start_http_server(port, addr=host, registry=registry)
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise MetricsPortError(f"port {port} on {host} is in use; give --metrics-port "
                                       "(or UEE_METRICS_PORT) a free port") from exc
            raise MetricsPortError(f"cannot serve metrics on {host}:{port}: "
                                   f"{exc.strerror or exc}; check UEE_METRICS_HOST") from exc
        self.address = f"http://{host}:{port}/metrics"
        self.started = time.monotonic()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)


class WorkerMetrics:
    """A worker's registry, sensor, collector and server, when a metrics port is set."""

    def __init__(self, host: str, port: int, agents: Callable[[], Iterable[BatchAgent]]
                 ) -> None:
        registry = CollectorRegistry()
        self.sensors: tuple[Sensor, ...] = (PrometheusSensor(registry),)
        registry.register(ReadingsCollector(lambda: [_readings(a) for a in agents()]))
        self._server = MetricsServer(registry, host, port)
        self.address = self._server.address

    @classmethod
    def serve(cls, settings: Settings, agents: Callable[[], Iterable[BatchAgent]]
              ) -> WorkerMetrics | None:
        if settings.metrics_port is None:
            return None
        return cls(settings.metrics_host, settings.metrics_port, agents)

    def stop(self) -> None:
        self._server.stop()


def _readings(agent: BatchAgent) -> Readings:
    return Readings(lambda: agent.segment.pipelines, agent.source.lag,
                    lambda: agent.checkpoint.age)
