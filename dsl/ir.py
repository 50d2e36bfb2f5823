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

FORMATS = ("json", "avro", "raw")


@dataclass(frozen=True)
class AvroSchema:
    """A parsed .avsc file; `path` is resolved, `fingerprint` identifies its content."""

    path: str
    fingerprint: str
    parsed: Any = field(compare=False, hash=False, repr=False)


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
class GeneratorSource:
    """Deterministic order-like records: the same seed gives the same records."""

    count: int
    rate: float | None
    seed: int
    pos: Position = field(compare=False)

    @property
    def identity(self) -> tuple[Any, ...]:
        return ("generator", self.count, self.rate, self.seed)

    @property
    def describe(self) -> str:
        return f"generator ({self.count} records, seed {self.seed})"


@dataclass(frozen=True)
class ConnectorSource:
    """A source provided by a connector plug-in (`connector: {type: ..., ...}`)."""

    type: str
    options: tuple[tuple[str, Any], ...]
    pos: Position = field(compare=False)

    @property
    def identity(self) -> tuple[Any, ...]:
        return ("connector", self.type, self.options)

    @property
    def describe(self) -> str:
        return f"connector '{self.type}'"


Source = KafkaSource | GeneratorSource | ConnectorSource


# -- stages --------------------------------------------------------------------------------


@dataclass(frozen=True)
class FilterStage:
    id: str
    predicate: Expr
    pos: Position = field(compare=False)
    kind = "filter"

    @property
    def signature(self) -> tuple[Any, ...]:
        return ("filter", self.predicate.normalized)


@dataclass(frozen=True)
class MapStage:
    """Sets or overwrites fields; every expression sees the record as it was before the stage."""

    id: str
    assignments: tuple[tuple[str, Expr], ...]
    pos: Position = field(compare=False)
    kind = "map"

    @property
    def signature(self) -> tuple[Any, ...]:
        return ("map", tuple(sorted((name, e.normalized) for name, e in self.assignments)))


@dataclass(frozen=True)
class SelectStage:
    """Keeps only these fields, in this order."""

    id: str
    fields: tuple[str, ...]
    pos: Position = field(compare=False)
    kind = "select"

    @property
    def signature(self) -> tuple[Any, ...]:
        return ("select", self.fields)


@dataclass(frozen=True)
class DropStage:
    id: str
    fields: tuple[str, ...]
    pos: Position = field(compare=False)
    kind = "drop"

    @property
    def signature(self) -> tuple[Any, ...]:
        return ("drop", tuple(sorted(self.fields)))


@dataclass(frozen=True)
class RenameStage:
    """Renames fields simultaneously: every old name is read before any new one is written."""

    id: str
    renames: tuple[tuple[str, str], ...]
    pos: Position = field(compare=False)
    kind = "rename"

    @property
    def signature(self) -> tuple[Any, ...]:
        return ("rename", tuple(sorted(self.renames)))


@dataclass(frozen=True)
class ValidateStage:
    id: str
    schema: AvroSchema
    pos: Position = field(compare=False)
    kind = "validate"

    @property
    def signature(self) -> tuple[Any, ...]:
        return ("validate", self.schema.fingerprint)


@dataclass(frozen=True)
class DiffStage:
    """Passes a record on only when a watched field changed since the last record of its key."""

    id: str
    key: Expr
    fields: tuple[str, ...] | None
    pos: Position = field(compare=False)
    kind = "diff"

    @property
    def signature(self) -> tuple[Any, ...]:
        return ("diff", self.key.normalized, tuple(sorted(self.fields)) if self.fields else None)


@dataclass(frozen=True)
class PythonStage:
    """A user function record -> record | None | list of records."""

    id: str
    target: str  # "package.module:function"
    origin: str  # the file the module came from: equal text may name different functions
    function: Any = field(compare=False, hash=False, repr=False)
    pos: Position = field(compare=False)
    kind = "python"

    @property
    def signature(self) -> tuple[Any, ...]:
        return ("python", self.target, self.origin)


@dataclass(frozen=True)
class ExplodeStage:
    """One record per element of a list: a field's list replaces the field by each element;
    any other expression must yield objects, each merged into a copy of the record."""

    id: str
    items: Expr
    field_path: tuple[str, ...] | None
    pos: Position = field(compare=False)
    kind = "explode"

    @property
    def signature(self) -> tuple[Any, ...]:
        return ("explode", self.items.normalized)


Stage = (FilterStage | MapStage | SelectStage | DropStage | RenameStage | ValidateStage
         | DiffStage | PythonStage | ExplodeStage)


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
    interval_s: float = 5.0


@dataclass(frozen=True)
class QuotaSection:
    permits: int | None = None
    max_lag: int | None = None
    max_p99_ms: float | None = None


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
