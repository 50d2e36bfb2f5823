"""Show a plan: as a text tree, as JSON (nodes, edges, names, stats), as a Mermaid graph."""

from __future__ import annotations

import json
from typing import Any

from uee.dsl.ir import (
    DlqSection,
    KafkaSink,
    KafkaSource,
    RouteStage,
    Source,
    Stage,
)
from uee.dsl.plan import Endpoint, Plan, PlanNode, Segment


def stage_text(stage: Stage | RouteStage) -> str:
    """One line saying what a stage does, in the DSL's own words (normalized)."""
    if not isinstance(stage, RouteStage):
        return stage.describe()
    rules = [f"{r.when.normalized} -> {r.to}" if r.when else f"otherwise -> {r.to}"
             for r in stage.rules]
    return "route: " + "; ".join(rules)


def source_text(source: Source) -> str:
    if isinstance(source, KafkaSource):
        return f"kafka topic {source.topic} ({source.format})"
    return source.describe


def sink_text(sink: KafkaSink) -> str:
    key = f", key {sink.key.normalized}" if sink.key else ""
    return f"{sink.name}: topic {sink.topic} ({sink.format}{key})"


HELD_TOGETHER = (
    "one consumer and one offset, so a pause of any of these pipelines (its error rate, a "
    "revoked permit) or a batch held by an open sink breaker holds them all; retries, "
    "backoff, breakers and dead letters stay each pipeline's own (`share: false` runs a "
    "pipeline alone)")


def policy_text(dlq: DlqSection) -> str:
    return (f"retries {dlq.max_retries}, backoff {dlq.backoff_s:g}s, breaker after "
            f"{dlq.breaker_failures} failed deliveries for {dlq.breaker_open_s:g}s, pause above "
            f"{dlq.pause_rate:.0%} failed of {dlq.pause_window}")


# -- text ----------------------------------------------------------------------------------


def render_text(plan: Plan) -> str:
    lines = [f"plan ({'optimized' if plan.optimized else 'not optimized'}): "
             f"{len(plan.pipelines)} pipeline(s), {len(plan.segments)} agent(s)"]
    for segment in plan.segments:
        lines.append("")
        lines.append(f"agent {segment.id}: {source_text(segment.source)}")
        lines.append(f"  consumer group {segment.group_id}; pipelines: "
                     f"{', '.join(segment.pipelines)}")
        for name in segment.pipelines:
            lines.append(f"  policy of {name}: {policy_text(plan.pipeline(name).dlq)}")
        if len(segment.pipelines) > 1:
            lines.append(f"  held together: {HELD_TOGETHER}")
        consumers: list[Endpoint | PlanNode] = [*segment.endpoints, *segment.roots]
        _text_children(consumers, "  ", lines)
    lines.append("")
    lines.append(f"stage runs per source record: {plan.unmerged_stage_runs} if every pipeline "
                 f"ran alone, {plan.merged_stage_runs} in this plan")
    return "\n".join(lines)


def _text_children(items: list[Endpoint | PlanNode], indent: str, lines: list[str]) -> None:
    for position, item in enumerate(items):
        last = position == len(items) - 1
        branch, inner = ("└── ", "    ") if last else ("├── ", "│   ")
        if isinstance(item, PlanNode):
            shared = f" [shared by {', '.join(item.pipelines)}]" if item.shared else ""
            table = f" (state table {item.table})" if item.table else ""
            lines.append(f"{indent}{branch}{item.id}  {stage_text(item.stage)}{shared}{table}")
            _text_children([*item.endpoints, *item.children], indent + inner, lines)
        else:
            route = f"{item.route.id}  {stage_text(item.route)}; " if item.route else ""
            sinks = "; ".join(sink_text(s) for s in item.sinks)
            lines.append(f"{indent}{branch}=> {item.pipeline}: {route}sinks {sinks}; "
                         f"dlq {item.dlq_topic or 'none (on_error: fail)'}")


# -- JSON ----------------------------------------------------------------------------------


def plan_document(plan: Plan) -> dict[str, Any]:
    """Nodes (sources, stages, routes, sinks, DLQs), edges between them, names, stats."""
    nodes: list[dict[str, Any]] = []
    edges: list[dict[str, str]] = []
    for segment in plan.segments:
        source_id = f"source:{segment.id}"
        nodes.append({"id": source_id, "type": "source", "text": source_text(segment.source),
                      "group_id": segment.group_id, "pipelines": list(segment.pipelines),
                      "shared": len(segment.pipelines) > 1})
        _json_consumers(source_id, [*segment.endpoints, *segment.roots], nodes, edges)
    return {
        "optimized": plan.optimized,
        "stats": {
            "pipelines": len(plan.pipelines),
            "agents": len(plan.segments),
            "unmerged_stage_runs": plan.unmerged_stage_runs,
            "merged_stage_runs": plan.merged_stage_runs,
        },
        "agents": [_segment_document(plan, s) for s in plan.segments],
        "nodes": nodes,
        "edges": edges,
    }


def _segment_document(plan: Plan, segment: Segment) -> dict[str, Any]:
    endpoints = list(segment.all_endpoints())
    return {
        "id": segment.id,
        "source": source_text(segment.source),
        "group_id": segment.group_id,
        "pipelines": list(segment.pipelines),
        "topics": {
            "source": getattr(segment.source, "topic", None),
            "sinks": sorted({s.topic for e in endpoints for s in e.sinks}),
            "dlq": sorted({e.dlq_topic for e in endpoints if e.dlq_topic}),
        },
        "tables": sorted(n.table for n in segment.nodes() if n.table),
        "policies": {name: policy_text(plan.pipeline(name).dlq) for name in segment.pipelines},
        "held_together": HELD_TOGETHER if len(segment.pipelines) > 1 else None,
    }


def _json_consumers(parent: str, items: list[Endpoint | PlanNode], nodes: list[dict[str, Any]],
                    edges: list[dict[str, str]]) -> None:
    for item in items:
        if isinstance(item, PlanNode):
            nodes.append({"id": item.id, "type": "stage", "kind": item.stage.kind,
                          "text": stage_text(item.stage), "pipelines": list(item.pipelines),
                          "shared": item.shared, "table": item.table})
            edges.append({"from": parent, "to": item.id})
            _json_consumers(item.id, [*item.endpoints, *item.children], nodes, edges)
            continue
        at = parent
        if item.route:
            nodes.append({"id": item.route.id, "type": "stage", "kind": "route",
                          "text": stage_text(item.route), "pipelines": [item.pipeline],
                          "shared": False, "table": None})
            edges.append({"from": parent, "to": item.route.id})
            at = item.route.id
        for sink in item.sinks:
            sink_id = f"sink:{item.pipeline}.{sink.name}"
            nodes.append({"id": sink_id, "type": "sink", "text": sink_text(sink),
                          "topic": sink.topic, "pipelines": [item.pipeline]})
            edges.append({"from": at, "to": sink_id})
        dlq_id = f"dlq:{item.pipeline}"
        nodes.append({"id": dlq_id, "type": "dlq", "topic": item.dlq_topic,
                      "pipelines": [item.pipeline]})


def render_json(plan: Plan) -> str:
    return json.dumps(plan_document(plan), indent=2, ensure_ascii=False)


# -- Mermaid -------------------------------------------------------------------------------


def _mermaid_label(text: str) -> str:
    return '"' + text.replace('"', "#quot;").replace("<", "#lt;").replace(">", "#gt;") + '"'


def render_mermaid(plan: Plan) -> str:
    document = plan_document(plan)
    ids = {node["id"]: f"n{i}" for i, node in enumerate(document["nodes"])}
    lines = ["flowchart LR"]
    for node in document["nodes"]:
        if node["type"] == "dlq":
            continue  # every pipeline has one; the text view lists them
        label = (_mermaid_label(node["id"])[:-1] + "<br/>" + _mermaid_label(node["text"])[1:]
                 if node["type"] == "stage" else _mermaid_label(node["text"]))
        shape = {"source": ("[(", ")]"), "sink": ("[/", "/]")}.get(node["type"], ("[", "]"))
        lines.append(f"  {ids[node['id']]}{shape[0]}{label}{shape[1]}")
        if node.get("shared"):
            lines.append(f"  class {ids[node['id']]} shared")
    for edge in document["edges"]:
        lines.append(f"  {ids[edge['from']]} --> {ids[edge['to']]}")
    lines.append("  classDef shared stroke-width:3px,stroke:#d97706")
    return "\n".join(lines)


RENDERERS = {"text": render_text, "json": render_json, "mermaid": render_mermaid}
