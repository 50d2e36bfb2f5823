"""The full grammar: what each section accepts, and each error with its code and position."""

from __future__ import annotations

from pathlib import Path

import pytest

from uee.dsl.compiler import load_pipelines
from uee.dsl.errors import PipelineFileError
from uee.dsl.ir import KafkaSource
from uee.dsl.stages import DiffStage, ExplodeStage, PythonStage, RenameStage, SelectStage

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"


def errors(tmp_path: Path, text: str) -> list[str]:
    path = tmp_path / "p.yaml"
    path.write_text(text)
    (tmp_path / "point.avsc").write_text((FIXTURES / "point.avsc").read_text())
    with pytest.raises(PipelineFileError) as caught:
        load_pipelines([path])
    return [d.render().replace(str(tmp_path) + "/", "") for d in caught.value.diagnostics]


def only_code(tmp_path: Path, text: str) -> str:
    found = errors(tmp_path, text)
    assert len(found) == 1, found
    return found[0]


SOURCE = "source: {kafka: {topic: in}}\n"
SINK = "sink: {kafka: {topic: out}}\n"


def test_every_stage_kind_and_section_compiles(tmp_path: Path) -> None:
    path = tmp_path / "all.yaml"
    (tmp_path / "point.avsc").write_text((FIXTURES / "point.avsc").read_text())
    path.write_text("""\
pipeline: everything
description: every kind of stage
source: {kafka: {topic: in, format: json, group: my-group}}
stages:
  - filter: x > 0
  - map: {label: '"p" + str(x)'}
  - select: [x, y, label, items]
  - drop: [y]
  - rename: {label: name}
  - validate: {schema: point.avsc}
  - diff: {key: x, fields: [name]}
  - python: tests.fixtures.udf:tag
  - explode: items
  - route:
      - {when: x > 10, to: big}
      - {otherwise: small}
sinks:
  big: {kafka: {topic: big, key: name}}
  small: {kafka: {topic: small, format: avro, schema: point.avsc}}
dlq: {topic: everything.errors, max_retries: 5, backoff: 0.2, max_replays: 2}
checkpoint: {interval: 10}
quota: {permits: 4, max_lag: 10000, max_p99_ms: 250}
share: false
""")
    [pipeline] = load_pipelines([path])
    assert isinstance(pipeline.source, KafkaSource) and pipeline.source.group == "my-group"
    assert [s.kind for s in pipeline.stages] == [
        "filter", "map", "select", "drop", "rename", "validate", "diff", "python", "explode"]
    assert pipeline.route is not None and [r.to for r in pipeline.route.rules] == ["big", "small"]
    assert [s.name for s in pipeline.sinks] == ["big", "small"]
    assert pipeline.dlq_topic == "everything.errors" and pipeline.dlq.max_retries == 5
    assert pipeline.checkpoint.interval_s == 10 and pipeline.quota.permits == 4
    assert pipeline.share is False and pipeline.group_id == "my-group"
    stages = {s.kind: s for s in pipeline.stages}
    assert isinstance(stages["select"], SelectStage) and stages["select"].fields[0] == "x"
    assert isinstance(stages["rename"], RenameStage)
    assert isinstance(stages["diff"], DiffStage) and stages["diff"].fields == ("name",)
    assert isinstance(stages["python"], PythonStage) and callable(stages["python"].function)
    assert isinstance(stages["explode"], ExplodeStage)
    assert stages["explode"].field_path == ("items",)


@pytest.mark.parametrize(("body", "expected"), [
    ("stages:\n  - route:\n      - {when: x > 1, to: crit}\n      - {otherwise: rest}\n"
     "sinks:\n  critical: {kafka: {topic: a}}\n  rest: {kafka: {topic: b}}\n",
     "p.yaml:5:9: error[DSL_UNKNOWN_SINK_NAME]: route of pipeline 'p' sends to sink 'crit', "
     "which the pipeline does not define (did you mean 'critical'?)"),
    ("stages:\n  - route:\n      - {otherwise: a}\n  - filter: x\n" + SINK,
     "p.yaml:4:5: error[DSL_ROUTE_NOT_LAST]: stage 1 of pipeline 'p': 'route' must be the last "
     "stage; it chooses the sink each record goes to"),
    ("stages:\n  - route:\n      - {otherwise: default}\n      - {when: x, to: default}\n"
     + SINK,
     "p.yaml:5:9: error[DSL_ROUTE_ORDER]: rule 1 of stage 1 of pipeline 'p' (route): "
     "'otherwise' must be the last rule"),
    ("stages:\n  - validate: {schema: nope.avsc}\n" + SINK,
     "p.yaml:4:24: error[DSL_UNKNOWN_SCHEMA]: schema file 'nope.avsc' not found (the schema of "
     "stage 1 of pipeline 'p' (validate)) (put it in schemas/ or give a path relative to the "
     "pipeline file)"),
    ("stages:\n  - python: no_such_module_x:f\n" + SINK,
     "p.yaml:4:13: error[DSL_UNKNOWN_FUNCTION]: cannot import module 'no_such_module_x' (No "
     "module named 'no_such_module_x') in stage 1 of pipeline 'p' (python) (is it beside "
     "the pipeline file, or on PYTHONPATH?)"),
    ("stages:\n  - python: tests.fixtures.udf:nope\n" + SINK,
     "p.yaml:4:13: error[DSL_UNKNOWN_FUNCTION]: module 'tests.fixtures.udf' has no function "
     "'nope' in stage 1 of pipeline 'p' (python)"),
    ("stages:\n  - python: just_a_name\n" + SINK,
     "p.yaml:4:13: error[DSL_BAD_PYTHON]: 'just_a_name' is not of the form "
     "package.module:function in stage 1 of pipeline 'p' (python)"),
    ("stages:\n  - select: [a, a]\n" + SINK,
     "p.yaml:4:17: error[DSL_DUPLICATE_FIELD]: field 'a' is listed twice in stage 1 of "
     "pipeline 'p' (select)"),
    ("stages:\n  - select: a\n" + SINK,
     "p.yaml:4:13: error[DSL_WRONG_TYPE]: stage 1 of pipeline 'p' (select) must be a non-empty "
     "list of field names, got a string"),
    ("stages:\n  - diff: {fields: [a]}\n" + SINK,
     "p.yaml:4:11: error[DSL_MISSING_KEY]: stage 1 of pipeline 'p' (diff) needs the key 'key'"),
    ("stages:\n  - explode: 'items['\n" + SINK,
     "p.yaml:4:20: error[DSL_BAD_EXPR]: invalid expression: '[' was never closed in stage 1 of "
     "pipeline 'p' (explode)"),
    (SINK + "sinks: {a: {kafka: {topic: x}}}\n",
     "p.yaml:4:1: error[DSL_CONFLICT]: pipeline 'p' has both 'sink' and 'sinks' (use 'sink' "
     "for one, 'sinks' for several)"),
    ("sink: {kafka: {topic: out, format: avro}}\n",
     "p.yaml:3:15: error[DSL_MISSING_KEY]: the kafka sink of pipeline 'p' has format avro and "
     "needs the key 'schema'"),
    ("sink: {kafka: {topic: out, format: jsn}}\n",
     "p.yaml:3:36: error[DSL_BAD_FORMAT]: unknown format 'jsn' in the kafka sink of pipeline "
     "'p' (did you mean 'json'?)"),
    (SINK + "dlq: {max_retries: -1}\n",
     "p.yaml:4:20: error[DSL_WRONG_TYPE]: dlq 'max_retries' of pipeline 'p' must be an integer "
     ">= 0, got -1"),
    (SINK + "quota: {permit: 3}\n",
     "p.yaml:4:9: error[DSL_UNKNOWN_KEY]: unknown key 'permit' in the quota section of "
     "pipeline 'p' (did you mean 'permits'?)"),
    (SINK + "share: maybe\n",
     "p.yaml:4:8: error[DSL_WRONG_TYPE]: 'share' of pipeline 'p' must be true or false, got a "
     "string"),
])
def test_errors_point_at_the_problem(tmp_path: Path, body: str, expected: str) -> None:
    assert only_code(tmp_path, "pipeline: p\n" + SOURCE + body) == expected


def test_bad_avro_schema_is_refused(tmp_path: Path) -> None:
    (tmp_path / "schemas").mkdir()
    (tmp_path / "schemas" / "bad.avsc").write_text(
        '{"type": "record", "name": "X", "fields": [{"name": "a", "type": "nosuchtype"}]}')
    found = only_code(tmp_path, "pipeline: p\n" + SOURCE +
                      "stages:\n  - validate: {schema: bad.avsc}\n" + SINK)
    assert "error[DSL_BAD_SCHEMA]" in found and "not a valid Avro schema" in found


def test_schema_found_in_a_schemas_folder_above(tmp_path: Path) -> None:
    (tmp_path / "schemas").mkdir()
    (tmp_path / "schemas" / "p.avsc").write_text((FIXTURES / "point.avsc").read_text())
    (tmp_path / "pipelines").mkdir()
    path = tmp_path / "pipelines" / "p.yaml"
    path.write_text("pipeline: p\n" + SOURCE + "stages:\n  - validate: {schema: p.avsc}\n" + SINK)
    [pipeline] = load_pipelines([path])
    assert pipeline.stages[0].kind == "validate"


def test_unknown_connector_type(tmp_path: Path) -> None:
    found = only_code(tmp_path, "pipeline: p\nsource: {connector: {type: ftp}}\n" + SINK)
    assert found.startswith("p.yaml:2:28: error[DSL_UNKNOWN_CONNECTOR]: no source connector of "
                            "type 'ftp'")


def test_cycles_across_pipelines_are_refused(tmp_path: Path) -> None:
    found = errors(tmp_path, """\
- pipeline: a
  source: {kafka: {topic: t1}}
  sink: {kafka: {topic: t2}}
- pipeline: b
  source: {kafka: {topic: t2}}
  sink: {kafka: {topic: t3}}
- pipeline: c
  source: {kafka: {topic: t3}}
  sinks: {back: {kafka: {topic: t1}}, out: {kafka: {topic: t4}}}
- pipeline: d
  source: {kafka: {topic: t4}}
  sink: {kafka: {topic: t5}}
""")
    assert found == ["p.yaml:1:3: error[DSL_CYCLE]: pipelines form a cycle through their topics: "
                     "a -> b -> c -> a (every record would circulate forever; break the cycle "
                     "with a different topic)"]


def test_a_list_of_errors_is_complete(tmp_path: Path) -> None:
    found = errors(tmp_path, """\
- pipeline: one
  source: {kafka: {topic: a}}
  stages: [{filtr: x}]
  sink: {kafka: {topic: b}}
- pipeline: two
  source: {kafka: {topic: a, format: xml}}
  sink: {kafka: {topic: c}}
- pipeline: one
  source: {generator: {count: 1}}
  sink: {kafka: {topic: d}}
""")
    assert [line.split(": error[")[1].split("]")[0] for line in found] == [
        "DSL_UNKNOWN_STAGE", "DSL_BAD_FORMAT", "DSL_DUPLICATE_PIPELINE"]
