"""The typed IR of pipelines: frozen dataclasses, produced by `dsl.validate`.

Ids are mandatory and hierarchical (`<pipeline>.<n>-<kind>` for stages); topic,
consumer group, table and metric names derive from them deterministically.
"""

from __future__ import annotations

from dataclasses import dataclass

from dsl.errors import Position
from dsl.expr import Expr


@dataclass(frozen=True)
class KafkaSource:
    topic: str
    pos: Position

    @property
    def describe(self) -> str:
        return f"kafka topic '{self.topic}'"


@dataclass(frozen=True)
class GeneratorSource:
    """Deterministic order-like records: the same seed gives the same records."""

    count: int
    rate: float | None
    seed: int
    pos: Position

    @property
    def describe(self) -> str:
        return f"generator ({self.count} records)"


Source = KafkaSource | GeneratorSource


@dataclass(frozen=True)
class FilterStage:
    id: str
    predicate: Expr
    pos: Position


@dataclass(frozen=True)
class MapStage:
    """Sets or overwrites fields; every expression sees the record as it was before the stage."""

    id: str
    assignments: tuple[tuple[str, Expr], ...]
    pos: Position


Stage = FilterStage | MapStage


@dataclass(frozen=True)
class KafkaSink:
    name: str
    topic: str
    pos: Position


@dataclass(frozen=True)
class Pipeline:
    name: str
    source: Source
    stages: tuple[Stage, ...]
    sinks: tuple[KafkaSink, ...]
    pos: Position

    @property
    def dlq_topic(self) -> str:
        return f"{self.name}.dlq"

    @property
    def group_id(self) -> str:
        return f"uee.{self.name}"
