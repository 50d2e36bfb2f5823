"""Optimizer passes: pure functions from validated pipelines to a plan.

`merge_shared_prefixes` groups pipelines that read the same source (same topic,
format, schema and group) and builds a trie of their stages: stages with equal
signatures at the same depth become one node, recursively, so any shared prefix
runs once per record and fans out where the pipelines diverge. `one_per_pipeline`
is the unmerged plan (`--no-optimize`, and pipelines with `share: false`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from uee.dsl.errors import Diagnostic, PipelineFileError
from uee.dsl.ir import Pipeline, Stage
from uee.dsl.plan import Endpoint, Plan, PlanNode, Segment, group_id_for


@dataclass
class _Building:
    """A node while the trie is being built; frozen into a PlanNode at the end."""

    stage: Stage
    stage_ids: list[tuple[str, str]] = field(default_factory=list)
    children: list[_Building] = field(default_factory=list)
    endpoints: list[Endpoint] = field(default_factory=list)

    def freeze(self) -> PlanNode:
        return PlanNode(self.stage.id, self.stage, tuple(self.stage_ids),
                        tuple(c.freeze() for c in self.children), tuple(self.endpoints))


def _endpoint(pipeline: Pipeline) -> Endpoint:
    return Endpoint(pipeline.name, pipeline.route, pipeline.sinks, pipeline.dlq_topic)


def _segment(pipelines: list[Pipeline]) -> Segment:
    """One tree for pipelines that share a source; equal stages at equal depth merge."""
    roots: list[_Building] = []
    endpoints: list[Endpoint] = []
    for pipeline in sorted(pipelines, key=lambda p: p.name):
        level, parent = roots, None
        for stage in pipeline.stages:
            node = next((n for n in level if n.stage.signature == stage.signature), None)
            if node is None:
                node = _Building(stage)
                level.append(node)
            node.stage_ids.append((pipeline.name, stage.id))
            level, parent = node.children, node
        (parent.endpoints if parent else endpoints).append(_endpoint(pipeline))
    return Segment(
        source=pipelines[0].source,
        group_id=group_id_for(pipelines),
        pipelines=tuple(sorted(p.name for p in pipelines)),
        roots=tuple(r.freeze() for r in roots),
        endpoints=tuple(endpoints),
    )


def merge_shared_prefixes(pipelines: list[Pipeline]) -> Plan:
    groups: dict[tuple[Any, ...], list[Pipeline]] = {}
    alone: list[list[Pipeline]] = []
    for pipeline in pipelines:
        if pipeline.share:
            groups.setdefault(pipeline.source.identity, []).append(pipeline)
        else:
            alone.append([pipeline])
    segments = [_segment(group) for group in [*groups.values(), *alone]]
    return Plan(_ordered(segments), tuple(pipelines), optimized=True)


def one_per_pipeline(pipelines: list[Pipeline]) -> Plan:
    segments = [_segment([pipeline]) for pipeline in pipelines]
    return Plan(_ordered(segments), tuple(pipelines), optimized=False)


def _ordered(segments: list[Segment]) -> tuple[Segment, ...]:
    return tuple(sorted(segments, key=lambda s: s.group_id))


def build_plan(pipelines: list[Pipeline], optimize: bool = True) -> Plan:
    plan = merge_shared_prefixes(pipelines) if optimize else one_per_pipeline(pipelines)
    problems = group_conflicts(plan)
    if problems:
        raise PipelineFileError(problems)
    return plan


def group_conflicts(plan: Plan) -> list[Diagnostic]:
    """A consumer group must belong to one agent: two agents in one group would split the
    topic's partitions between them, and each would silently miss the other's records."""
    by_group: dict[str, list[Segment]] = {}
    for segment in plan.segments:
        by_group.setdefault(segment.group_id, []).append(segment)
    problems = []
    for group, segments in sorted(by_group.items()):
        if len(segments) < 2:
            continue
        names = [name for segment in segments for name in segment.pipelines]
        for name in names:
            pipeline = plan.pipeline(name)
            problems.append(Diagnostic(
                "DSL_GROUP_CONFLICT",
                f"pipeline '{name}' would share consumer group '{group}' with "
                f"{', '.join(repr(n) for n in names if n != name)} without sharing their "
                "agent; Kafka would split the partitions and each would miss records",
                pipeline.pos,
                "give each a different `group`, or let them share: same topic, format and "
                "schema, and no `share: false`"))
    return problems
