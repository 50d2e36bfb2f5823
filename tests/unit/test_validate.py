"""Pipeline files: every problem found, each with file:line:col, a stable code and a hint."""

from __future__ import annotations

from pathlib import Path

import pytest

from uee.dsl.compiler import load_pipelines
from uee.dsl.errors import PipelineFileError
from uee.dsl.ir import ConnectorSource, KafkaSource
from uee.dsl.stages import FilterStage, MapStage

REPO = Path(__file__).resolve().parents[2]


def problems(tmp_path: Path, text: str, name: str = "p.yaml") -> list[str]:
    path = tmp_path / name
    path.write_text(text)
    with pytest.raises(PipelineFileError) as caught:
        load_pipelines([path])
    return [d.render().replace(str(tmp_path) + "/", "") for d in caught.value.diagnostics]


def test_quickstart_example_compiles() -> None:
    [pipeline] = load_pipelines([REPO / "examples" / "quickstart.yaml"])
    assert pipeline.name == "quickstart"
    assert isinstance(pipeline.source, ConnectorSource) and pipeline.source.type == "generator"
    assert [type(s) for s in pipeline.stages] == [FilterStage, MapStage]
    assert [s.id for s in pipeline.stages] == ["quickstart.1-filter", "quickstart.2-map"]
    assert pipeline.dlq_topic == "quickstart.dlq"
    assert pipeline.group_id == "uee.quickstart"


def test_every_error_of_a_file_is_reported_with_its_position(tmp_path: Path) -> None:
    found = problems(tmp_path, """\
pipeline: bad
source:
  kafak: {topic: x}
stages:
  - filtr: a > 1
  - filter: "amount > > 1"
  - map:
      x: lenn(y)
sink:
  kafka: {topc: y}
""")
    assert found == [
        "p.yaml:3:3: error[DSL_UNKNOWN_SOURCE]: unknown kind 'kafak' in the source of pipeline "
        "'bad' (did you mean 'kafka'?)",
        "p.yaml:5:5: error[DSL_UNKNOWN_STAGE]: unknown kind 'filtr' in stage 1 of pipeline 'bad' "
        "(did you mean 'filter'?)",
        "p.yaml:6:23: error[DSL_BAD_EXPR]: invalid expression: invalid syntax in stage 2 of "
        "pipeline 'bad' (filter)",
        "p.yaml:8:10: error[DSL_BAD_EXPR]: unknown function 'lenn' in field 'x' of stage 3 of "
        "pipeline 'bad' (map) (did you mean 'len'?)",
        "p.yaml:10:10: error[DSL_MISSING_KEY]: the kafka sink of pipeline 'bad' needs the key "
        "'topic'",
        "p.yaml:10:11: error[DSL_UNKNOWN_KEY]: unknown key 'topc' in the kafka sink of pipeline "
        "'bad' (did you mean 'topic'?)",
    ]


def test_yaml_syntax_error_has_a_position(tmp_path: Path) -> None:
    [line] = problems(tmp_path, "pipeline: a\nsource: [1, 2\nsink: x\n")
    assert line.startswith("p.yaml:3:")
    assert "error[DSL_YAML]" in line


def test_wrong_types_and_missing_keys(tmp_path: Path) -> None:
    found = problems(tmp_path, """\
pipeline: w
source:
  generator: {count: many}
stages: {filter: x}
""")
    assert found == [
        "p.yaml:1:1: error[DSL_MISSING_KEY]: pipeline 'w' needs the key 'sink' (or 'sinks')",
        "p.yaml:3:22: error[DSL_WRONG_TYPE]: 'count' of the generator source of pipeline 'w' "
        "must be a valid integer, got 'many'",
        "p.yaml:4:9: error[DSL_WRONG_TYPE]: 'stages' of pipeline 'w' must be a list, got a "
        "mapping",
    ]


def test_unknown_top_level_key_suggests(tmp_path: Path) -> None:
    [line] = problems(tmp_path, """\
pipeline: s
source: {kafka: {topic: a}}
stage: []
sink: {kafka: {topic: b}}
""")
    assert line == ("p.yaml:3:1: error[DSL_UNKNOWN_KEY]: unknown key 'stage' in pipeline 's' "
                    "(did you mean 'stages'?)")


def test_sink_that_is_its_own_source_is_refused(tmp_path: Path) -> None:
    [line] = problems(tmp_path, "pipeline: loop\nsource: {kafka: {topic: a}}\n"
                                "sink: {kafka: {topic: a}}\n")
    assert "error[DSL_SINK_IS_SOURCE]" in line and line.startswith("p.yaml:3:")


def test_duplicate_pipeline_names_across_files(tmp_path: Path) -> None:
    text = "pipeline: same\nsource: {kafka: {topic: a}}\nsink: {kafka: {topic: b}}\n"
    (tmp_path / "one.yaml").write_text(text)
    (tmp_path / "two.yml").write_text(text)
    with pytest.raises(PipelineFileError) as caught:
        load_pipelines([tmp_path])
    [diagnostic] = caught.value.diagnostics
    assert diagnostic.code == "DSL_DUPLICATE_PIPELINE"
    assert diagnostic.pos.path.endswith("two.yml")


def test_a_file_may_hold_a_list_of_pipelines(tmp_path: Path) -> None:
    path = tmp_path / "many.yaml"
    path.write_text("- pipeline: a\n  source: {kafka: {topic: x}}\n  sink: {kafka: {topic: y}}\n"
                    "- pipeline: b\n  source: {generator: {count: 3}}\n"
                    "  sink: {kafka: {topic: z}}\n")
    pipelines = load_pipelines([path])
    assert [p.name for p in pipelines] == ["a", "b"]
    assert isinstance(pipelines[0].source, KafkaSource)


def test_bad_names_and_missing_files(tmp_path: Path) -> None:
    [line] = problems(tmp_path, "pipeline: 'has space'\nsource: {kafka: {topic: a}}\n"
                                "sink: {kafka: {topic: b}}\n")
    assert "error[DSL_BAD_NAME]" in line
    with pytest.raises(PipelineFileError) as caught:
        load_pipelines([tmp_path / "nope.yaml"])
    assert caught.value.diagnostics[0].code == "DSL_FILE"


def test_a_file_that_is_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "latin1.yaml"
    path.write_bytes(b"pipeline: p\nsource: {kafka: {topic: caf\xe9}}\n")
    with pytest.raises(PipelineFileError) as caught:
        load_pipelines([path])
    [diagnostic] = caught.value.diagnostics
    assert (diagnostic.code, diagnostic.pos.line) == ("DSL_FILE", 2)


def test_multi_line_expressions_point_at_their_start(tmp_path: Path) -> None:
    found = problems(tmp_path, """\
pipeline: p
source: {kafka: {topic: a}}
stages:
  - filter: >
      amount > 1 and
      foo(1)
  - filter: "amount > 1 and
      bar(2)"
sink: {kafka: {topic: b}}
""")
    assert [line.split(" error")[0] for line in found] == ["p.yaml:4:13:", "p.yaml:7:14:"]


def test_empty_stages_means_none_and_names_are_read_once(tmp_path: Path) -> None:
    path = tmp_path / "p.yaml"
    path.write_text("pipeline: p\nsource: {kafka: {topic: a}}\nstages:\n"
                    "sink: {kafka: {topic: b}}\n")
    [pipeline] = load_pipelines([path, path, tmp_path])
    assert pipeline.stages == ()


def test_overly_deep_input_is_an_error_not_a_crash(tmp_path: Path) -> None:
    [line] = problems(tmp_path, "pipeline: " + "[" * 5000 + "\n")
    assert "error[DSL_YAML]" in line
    expr = "+".join(["a"] * 1500)
    [line] = problems(tmp_path, f"pipeline: p\nsource: {{kafka: {{topic: a}}}}\nstages:\n"
                                f"  - filter: {expr}\nsink: {{kafka: {{topic: b}}}}\n")
    assert "error[DSL_BAD_EXPR]: expression nested too deeply" in line


def test_a_comma_that_cut_a_flow_mapping_expression_is_named_as_such(tmp_path: Path) -> None:
    [line] = problems(tmp_path, "pipeline: c\nsource: {generator: {count: 1}}\nstages:\n"
                                "  - map: {next: coalesce(amount, 0) + 1, ok: amount}\n"
                                "sink: {kafka: {topic: c.out}}\n")
    assert line == (
        "p.yaml:4:17: error[DSL_FLOW_COMMA]: the expression of field 'next' in stage 1 of "
        "pipeline 'c' (map) was cut at a comma: inside {...} an unquoted comma ends a value, so "
        "YAML read 'coalesce(amount' and then '0) + 1' as another field (quote the expression: "
        "next: \"coalesce(amount, 0) + 1\", or write the stage as a block mapping, one field "
        "per line)")
    quoted = tmp_path / "quoted.yaml"
    quoted.write_text("pipeline: c\nsource: {generator: {count: 1}}\nstages:\n"
                      "  - map: {next: \"coalesce(amount, 0) + 1\"}\n"
                      "sink: {kafka: {topic: c.out}}\n")
    [pipeline] = load_pipelines([quoted])
    assert pipeline.name == "c"


def test_zero_is_a_number_like_any_other(tmp_path: Path) -> None:
    """ruamel reads `0` as a ScalarInt; `max_retries: 0` (dead-letter at once) was refused."""
    path = tmp_path / "p.yaml"
    path.write_text("pipeline: p\nsource: {kafka: {topic: a}}\nsink: {kafka: {topic: b}}\n"
                    "dlq: {max_retries: 0, max_replays: 0}\n")
    [pipeline] = load_pipelines([path])
    assert (pipeline.dlq.max_retries, pipeline.dlq.max_replays) == (0, 0)
    assert type(pipeline.dlq.max_retries) is int
