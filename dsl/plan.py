"""The plan: what runs. A forest of stage nodes per source, after optimization.

A `Segment` is one source read by one consumer group; its stage nodes form a tree.
A node shared by several pipelines runs once per record and fans out to its
children (each gets its own copy of the record) and to the `Endpoint`s of the
pipelines that end there. Names of groups, topics and tables are derived here,
deterministically, so `uee plan` shows exactly what `uee run` uses.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass

from uee.dsl.ir import KafkaSink, Pipeline, RouteStage, Source, Stage

MAX_GROUP_ID = 120


@dataclass(frozen=True)
class Endpoint:
    """Where one pipeline's records leave the tree: its route, sinks and DLQ."""

    pipeline: str
    route: RouteStage | None
    sinks: tuple[KafkaSink, ...]
    dlq_topic: str | None  # None: `dlq: none` with `on_error: fail`


@dataclass(frozen=True)
class PlanNode:
    id: str  # the stage id of the first pipeline (by name) that runs this stage here
    stage: Stage
    stage_ids: tuple[tuple[str, str], ...]  # (pipeline, its own id for this stage), by name
    children: tuple[PlanNode, ...]
    endpoints: tuple[Endpoint, ...]

    @property
    def pipelines(self) -> tuple[str, ...]:
        """Every pipeline whose records pass through this node."""
        return tuple(pipeline for pipeline, _ in self.stage_ids)

    @property
    def shared(self) -> bool:
        return len(self.stage_ids) > 1

    @property
    def table(self) -> str | None:
        """The state table of a stateful stage (diff), named after the node."""
        return f"uee.table.{self.id}" if self.stage.keeps_state else None

    def walk(self) -> Iterator[PlanNode]:
        yield self
        for child in self.children:
            yield from child.walk()


@dataclass(frozen=True)
class Segment:
    """One source, one consumer group, one tree of stages."""

    source: Source
    group_id: str
    pipelines: tuple[str, ...]
    roots: tuple[PlanNode, ...]
    endpoints: tuple[Endpoint, ...]  # pipelines with no stages end at the source

    @property
    def id(self) -> str:
        return self.group_id

    def nodes(self) -> Iterator[PlanNode]:
        for root in self.roots:
            yield from root.walk()

    def all_endpoints(self) -> Iterator[Endpoint]:
        yield from self.endpoints
        for node in self.nodes():
            yield from node.endpoints


@dataclass(frozen=True)
class Plan:
    segments: tuple[Segment, ...]
    pipelines: tuple[Pipeline, ...]
    optimized: bool

    @property
    def unmerged_stage_runs(self) -> int:
        """Stage executions per source record if every pipeline ran alone."""
        return sum(p.stage_count for p in self.pipelines)

    @property
    def merged_stage_runs(self) -> int:
        """Stage executions per source record in this plan (routes are never shared)."""
        nodes = sum(1 for segment in self.segments for _ in segment.nodes())
        routes = sum(1 for p in self.pipelines if p.route is not None)
        return nodes + routes

    def pipeline(self, name: str) -> Pipeline:
        return next(p for p in self.pipelines if p.name == name)


def group_id_for(pipelines: list[Pipeline]) -> str:
    """An explicit `group` wins; otherwise uee.<pipeline>, or uee.<a+b+...> when shared."""
    explicit = getattr(pipelines[0].source, "group", None)
    if explicit:
        return str(explicit)
    if len(pipelines) == 1:
        return pipelines[0].group_id
    joined = "+".join(sorted(p.name for p in pipelines))
    if len(joined) + 4 <= MAX_GROUP_ID:
        return f"uee.{joined}"
    digest = hashlib.sha1(joined.encode()).hexdigest()[:12]
    return f"uee.shared.{digest}"
