"""Property: a merged plan writes exactly what its pipelines write when each runs alone.

Random sets of pipelines over one topic, drawn from a small pool of stages so that
prefixes collide often, run on random records (some with missing fields, wrong types
or broken JSON, so dead letters are compared too) by the in-process executor, which
shares the compiled kernel with `uee run`.
"""

from __future__ import annotations

import json

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from uee.dsl.loader import load_text
from uee.dsl.optimize import build_plan
from uee.dsl.validate import validate_documents
from uee.streams.executor import execute

STAGES = [
    "{filter: a > 0}",
    "{filter: 'a>0'}",  # the same stage, spelled differently
    "{filter: b < 2 or c == 1}",
    "{map: {x: a + 1}}",
    "{map: {a: b * 2, c: a - b}}",
    "{map: {c: a - b, a: b * 2}}",  # the same map, keys in another order
    "{map: {y: a, z: 1}}",  # two new fields...
    "{map: {z: 1, y: a}}",  # ...in the other order: the output bytes must not change
    "{select: [a, b, x]}",
    "{drop: [c]}",
    "{rename: {a: c, c: a}}",
    "{diff: {key: a, fields: [b]}}",
]
ROUTE = "{route: [{when: a > 1, to: hi}, {otherwise: lo}]}"

values = st.one_of(st.integers(-3, 3), st.sampled_from(["s", None]))
records = st.lists(
    st.one_of(
        st.dictionaries(st.sampled_from(["a", "b", "c", "x"]), values, max_size=4),
        st.just("not json"),
    ),
    max_size=25,
)
pipeline_specs = st.lists(
    st.tuples(st.lists(st.sampled_from(STAGES), max_size=4), st.booleans(), st.booleans()),
    min_size=1, max_size=5,
)


def pipelines_yaml(specs: list[tuple[list[str], bool, bool]]) -> str:
    lines = []
    for n, (stages, routed, share) in enumerate(specs):
        lines.append(f"- pipeline: p{n}")
        lines.append("  source: {kafka: {topic: in}}")
        if not share:
            lines.append("  share: false")
        all_stages = [*stages, ROUTE] if routed else stages
        if all_stages:
            lines.append(f"  stages: [{', '.join(all_stages)}]")
        if routed:
            lines.append(f"  sinks: {{hi: {{kafka: {{topic: p{n}.hi}}}}, "
                         f"lo: {{kafka: {{topic: p{n}.lo, key: 'coalesce(a, 0)'}}}}}}")
        else:
            lines.append(f"  sink: {{kafka: {{topic: p{n}.out}}}}")
    return "\n".join(lines) + "\n"


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(specs=pipeline_specs, inputs=records)
def test_merged_plan_writes_what_each_pipeline_writes_alone(
    specs: list[tuple[list[str], bool, bool]], inputs: list[object]
) -> None:
    document = load_text(pipelines_yaml(specs), "generated.yaml")
    assert document is not None
    pipelines, problems = validate_documents([document])
    assert problems == [], [p.render() for p in problems]
    topic = [
        (str(i).encode(), r.encode() if isinstance(r, str) else json.dumps(r).encode())
        for i, r in enumerate(inputs)
    ]
    merged = build_plan(pipelines, optimize=True)
    alone = build_plan(pipelines, optimize=False)
    assert execute(merged, {"in": topic}) == execute(alone, {"in": topic})
    assert merged.merged_stage_runs <= alone.merged_stage_runs == alone.unmerged_stage_runs


def test_sharing_actually_happens_in_the_generated_sets() -> None:
    """Guard against a vacuous property: equal prefixes do merge."""
    document = load_text(pipelines_yaml([(["{filter: a > 0}", "{drop: [c]}"], False, True),
                                          (["{filter: 'a>0'}", "{map: {x: a + 1}}"], True, True)]),
                         "generated.yaml")
    assert document is not None
    pipelines, _ = validate_documents([document])
    plan = build_plan(pipelines)
    assert len(plan.segments) == 1
    assert plan.unmerged_stage_runs == 5 and plan.merged_stage_runs == 4
