"""A stage kind, or a connector, is one module and one line in its registry: a kind and a
connector defined here, registered for the test alone, are validated, merged, planned,
described and run like the others."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from pydantic import BaseModel, ConfigDict, Field

from uee.connectors.base import Source, SourceBatch, SourceConnector
from uee.connectors.registry import SOURCE_CONNECTORS
from uee.dsl.errors import Position
from uee.dsl.loader import Node, load_text
from uee.dsl.optimize import build_plan
from uee.dsl.render import render_text
from uee.dsl.stages import KINDS, CodeContext, Compiled, StageSpec
from uee.dsl.validate import Validator, validate_documents
from uee.streams.executor import execute
from uee.streams.kernel import Kernel


@dataclass(frozen=True)
class UpperStage(StageSpec):
    """`upper: [field, ...]`: upper-cases string fields."""

    id: str
    fields: tuple[str, ...]
    pos: Position = field(compare=False)
    kind = "upper"

    @classmethod
    def parse(cls, v: Validator, stage_id: str, pos: Position, body: Node, what: str
              ) -> UpperStage | None:
        fields = v.field_list(body, what)
        return cls(stage_id, fields, pos) if fields else None

    @property
    def signature(self) -> tuple[Any, ...]:
        return ("upper", self.fields)

    def describe(self) -> str:
        return f"upper: {', '.join(self.fields)}"

    def compile(self, ctx: CodeContext) -> Compiled:
        return Compiled([f"r[{f!r}] = r[{f!r}].upper()" for f in self.fields])


@pytest.fixture
def upper_kind() -> Iterator[None]:
    KINDS["upper"] = UpperStage
    try:
        yield
    finally:
        del KINDS["upper"]


def pipelines(text: str) -> Any:
    documents = [load_text(part, f"p{i}.yaml") for i, part in enumerate(text.split("---\n"))]
    found, problems = validate_documents([d for d in documents if d is not None])
    return found, [p.render() for p in problems]


def test_a_registered_stage_kind_runs_end_to_end(upper_kind: None) -> None:
    text = ("pipeline: a\nsource: {kafka: {topic: in}}\nstages:\n  - upper: [name]\n"
            "sink: {kafka: {topic: a.out}}\n---\n"
            "pipeline: b\nsource: {kafka: {topic: in}}\nstages:\n  - upper: [name]\n"
            "  - select: [name]\nsink: {kafka: {topic: b.out}}\n")
    found, problems = pipelines(text)
    assert problems == []
    plan = build_plan(found)
    assert plan.merged_stage_runs < plan.unmerged_stage_runs  # the shared prefix runs once
    assert "upper: name [shared by a, b]" in render_text(plan)
    [segment] = plan.segments
    result = Kernel(segment).run([json.dumps({"name": "ada", "n": 1}).encode()], [None])
    assert [json.loads(v) for out in result.outputs for _, _, v in out] == [
        {"name": "ADA", "n": 1}, {"name": "ADA"}]


def test_an_unregistered_kind_is_an_unknown_stage_with_a_suggestion() -> None:
    _, problems = pipelines("pipeline: a\nsource: {kafka: {topic: in}}\nstages:\n"
                            "  - upper: [name]\nsink: {kafka: {topic: a.out}}\n")
    assert len(problems) == 1 and "DSL_UNKNOWN_STAGE" in problems[0]


def test_a_registered_kind_reports_its_own_errors_with_positions(upper_kind: None) -> None:
    _, problems = pipelines("pipeline: a\nsource: {kafka: {topic: in}}\nstages:\n"
                            "  - upper: 3\nsink: {kafka: {topic: a.out}}\n")
    assert len(problems) == 1 and problems[0].startswith("p0.yaml:4:12: error[DSL_WRONG_TYPE]")


# -- connectors: one module (options schema + factory) and one line in the registry --------


class CountdownOptions(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", strict=True)
    start: int = Field(ge=1)


class Countdown(Source):
    def __init__(self, name: str, start: int) -> None:
        self.name, self._left, self._committed = name, start, False

    def open(self) -> None: ...

    def poll(self, max_records: int, timeout: float) -> SourceBatch | None:
        if self._left == 0:
            return None
        values: list[bytes | None] = [b'{"n": %d}' % n for n in range(self._left, 0, -1)]
        self._left = 0
        return SourceBatch([None] * len(values), values, commit_token=None)

    def commit(self, batch: SourceBatch) -> None:
        self._committed = True

    def close(self) -> None: ...

    @property
    def bounded(self) -> bool:
        return True

    @property
    def exhausted(self) -> bool:
        return self._committed


COUNTDOWN = SourceConnector("countdown", CountdownOptions, "counts down to 1",
                            create=lambda name, o: Countdown(name, o.start),
                            describe=lambda o: f"countdown from {o.start}")


@pytest.fixture
def countdown() -> Iterator[None]:
    SOURCE_CONNECTORS["countdown"] = COUNTDOWN
    try:
        yield
    finally:
        del SOURCE_CONNECTORS["countdown"]


def test_a_registered_connector_is_validated_planned_and_run(countdown: None) -> None:
    text = ("pipeline: a\nsource: {countdown: {start: 3}}\nsink: {kafka: {topic: a.out}}\n---\n"
            "pipeline: b\nsource: {connector: {type: countdown, start: 3}}\n"
            "sink: {kafka: {topic: b.out}}\n")
    found, problems = pipelines(text)
    assert problems == []
    plan = build_plan(found)
    assert len(plan.segments) == 1  # the same source, written two ways: one read
    assert "agent uee.a+b: countdown from 3" in render_text(plan)
    written = execute(plan, {})
    assert written["a.out"] == written["b.out"] == [(None, b'{"n":3}'), (None, b'{"n":2}'),
                                                      (None, b'{"n":1}')]


def test_a_connector_s_options_are_checked_against_its_schema_with_positions(
    countdown: None,
) -> None:
    _, problems = pipelines("pipeline: a\nsource: {countdown: {strat: 3}}\n"
                            "sink: {kafka: {topic: a.out}}\n---\n"
                            "pipeline: b\nsource: {countdown: {start: 0}}\n"
                            "sink: {kafka: {topic: b.out}}\n")
    assert problems == [
        "p0.yaml:2:22: error[DSL_UNKNOWN_KEY]: unknown key 'strat' in the countdown source of "
        "pipeline 'a' (did you mean 'start'?)",
        "p0.yaml:2:21: error[DSL_MISSING_KEY]: the countdown source of pipeline 'a' needs the "
        "key 'start'",
        "p1.yaml:2:29: error[DSL_WRONG_TYPE]: 'start' of the countdown source of pipeline 'b' "
        "must be greater than or equal to 1, got 0",
    ]
