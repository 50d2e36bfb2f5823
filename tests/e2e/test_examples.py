"""Every example validates and runs on the broker, writing exactly what the plan predicts."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable

import pytest

from tests.conftest import REPO, Completed
from uee.dsl.compiler import load_pipelines
from uee.dsl.optimize import build_plan
from uee.streams.executor import execute
from uee.streams.topics import read_all, topic_partitions

pytestmark = pytest.mark.e2e
Uee = Callable[..., Completed]


def as_counter(records: list[tuple[bytes | None, bytes]]) -> Counter[tuple[bytes | None, str]]:
    return Counter((key, json.dumps(json.loads(value), sort_keys=True)) for key, value in records)


def test_examples_run_and_write_what_the_plan_predicts(kafka: str, uee: Uee) -> None:
    plan = build_plan(load_pipelines([REPO / "examples"]))
    # Predict in process: generator pipelines first, then those reading what they wrote.
    first = execute(plan, {})
    predicted = execute(plan, first)

    done = uee("run", "examples", "--bootstrap", kafka, "--until-idle", "2")
    assert done.code == 0, done.stderr

    existing = topic_partitions(kafka)
    sinks = {s.topic for p in plan.pipelines for s in p.sinks}
    for topic in sorted(sinks):
        expected = as_counter(predicted.get(topic, []))
        got = as_counter([(r.key, r.value or b"") for r in read_all(kafka, topic)])
        assert got == expected, topic
        assert expected, f"example topic {topic} should receive records"
    for pipeline in plan.pipelines:
        if pipeline.dlq_topic in existing:
            assert read_all(kafka, pipeline.dlq_topic) == [], pipeline.dlq_topic
