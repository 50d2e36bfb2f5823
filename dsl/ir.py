"""The typed IR of pipelines: frozen dataclasses, produced by `dsl.validate`.

Ids are mandatory and hierarchical (`<pipeline>.<n>-<kind>` for stages); topic,
consumer group, table and metric names derive from them deterministically.
Every stage has a `signature`: equal signatures mean the stages do the same thing
to a record, which is what lets the optimizer run a shared prefix once.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from uee.dsl.errors import Position
from uee.dsl.expr import Expr
from uee.dsl.resolve import AvroSchema
from uee.dsl.stages import StageSpec

__all__ = ["AvroSchema"]  # defined with the resolver, part of the IR

FORMATS = ("json", "avro", "raw")


# -- sources -------------------------------------------------------------------------------


@dataclass(frozen=True)
class KafkaSource:
    topic: str
    format: str
    schema: AvroSchema | None
    group: str | None
    pos: Position = field(compare=False)

    @property
    def identity(self) -> tuple[Any, ...]:
        return ("kafka", self.topic, self.format,
                self.schema.fingerprint if self.schema else None, self.group)

    @property
    def describe(self) -> str:
        return f"kafka topic '{self.topic}' ({self.format})"


@dataclass(frozen=True)
class ConnectorSource:
    """A source from a connector plug-in (uee.connectors.registry): `source: {generator:
    {...}}`, or `source: {connector: {type: ..., ...}}`. `options` are every option with
    its default filled in (what the identity compares); `config` is the connector's own
    validated options object."""

    type: str
    options: tuple[tuple[str, Any], ...]
    config: Any = field(compare=False, hash=False, repr=False)
    summary: str = field(compare=False)  # the connector's one-line description of it
    pos: Position = field(compare=False)

    @property
    def identity(self) -> tuple[Any, ...]:
        return ("connector", self.type, self.options)

    @property
    def describe(self) -> str:
        return self.summary


Source = KafkaSource | ConnectorSource


# -- stages --------------------------------------------------------------------------------


# Each stage kind is a module of uee.dsl.stages; a pipeline holds them as StageSpec.
Stage = StageSpec


@dataclass(frozen=True)
class RouteRule:
    when: Expr | None  # None: the `otherwise` rule
    to: str
    pos: Position = field(compare=False)


@dataclass(frozen=True)
class RouteStage:
    """Sends each record to the sink of the first rule that matches; it ends a pipeline."""

    id: str
    rules: tuple[RouteRule, ...]
    pos: Position = field(compare=False)
    kind = "route"


# -- sinks, sections, pipelines ------------------------------------------------------------


@dataclass(frozen=True)
class KafkaSink:
    name: str
    topic: str
    format: str
    schema: AvroSchema | None
    key: Expr | None
    pos: Position = field(compare=False)


@dataclass(frozen=True)
class DlqSection:
    enabled: bool = True  # `dlq: none` turns it off (only with `on_error: fail`)
    topic: str | None = None
    max_retries: int = 3
    backoff_s: float = 0.5
    max_replays: int = 3
    pause_rate: float = 0.1  # pause when more than this share of records fails...
    pause_window: int = 100  # ...over the last this many records
    breaker_failures: int = 5  # consecutive failed deliveries that open a sink's breaker
    breaker_open_s: float = 30.0  # how long it stays open before one probe


@dataclass(frozen=True)
class CheckpointSection:
    """A checkpoint is taken every `every` records or `interval_s` seconds, whichever first."""

    every: int = 1000
    interval_s: float = 5.0


@dataclass(frozen=True)
class QuotaSection:
    permits: int | None = None
    max_lag: int | None = None
    max_p99_ms: float | None = None
    max_saturation: float | None = None  # percent of the time the agent is busy
    priority: int = 0  # higher: kept running at the expense of lower ones (lag rule)


@dataclass(frozen=True)
class Pipeline:
    name: str
    source: Source
    stages: tuple[Stage, ...]
    route: RouteStage | None
    sinks: tuple[KafkaSink, ...]
    pos: Position = field(compare=False)
    share: bool = True
    dlq: DlqSection = DlqSection()
    checkpoint: CheckpointSection = CheckpointSection()
    quota: QuotaSection = QuotaSection()
    on_error: str = "dlq"  # "fail": the first failing record stops the pipeline

    @property
    def dlq_topic(self) -> str | None:
        if not self.dlq.enabled:
            return None
        return self.dlq.topic or f"{self.name}.dlq"

    @property
    def group_id(self) -> str:
        explicit = getattr(self.source, "group", None)
        return explicit or f"uee.{self.name}"

    @property
    def stage_count(self) -> int:
        """Stage executions per source record when the pipeline runs alone (route included)."""
        return len(self.stages) + (1 if self.route else 0)
