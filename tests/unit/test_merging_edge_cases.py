"""Edge cases where merging pipelines could change what they write, and checks that only
make sense across pipelines (consumer groups, dead-letter topics)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from uee.dsl.compiler import load_pipelines
from uee.dsl.errors import PipelineFileError
from uee.dsl.optimize import build_plan
from uee.streams.executor import execute
from uee.streams.kernel import Kernel

Written = dict[str, list[tuple[bytes | None, bytes | None]]]


def both_ways(path: Path, records: list[dict[str, object]]) -> tuple[Written, Written]:
    pipelines = load_pipelines([path])
    topic = [(str(i).encode(), json.dumps(r).encode()) for i, r in enumerate(records)]
    merged = execute(build_plan(pipelines, optimize=True), {"in": topic})
    alone = execute(build_plan(pipelines, optimize=False), {"in": topic})
    return merged, alone


def test_map_and_rename_key_order_do_not_change_bytes(tmp_path: Path) -> None:
    path = tmp_path / "p.yaml"
    path.write_text("""\
- {pipeline: a, source: {kafka: {topic: in}}, stages: [{map: {x: 1, y: 2}}],
   sink: {kafka: {topic: a.out}}}
- {pipeline: b, source: {kafka: {topic: in}}, stages: [{map: {y: 2, x: 1}}],
   sink: {kafka: {topic: b.out}}}
- {pipeline: c, source: {kafka: {topic: in}}, stages: [{rename: {p: q, r: s}}],
   sink: {kafka: {topic: c.out}}}
- {pipeline: d, source: {kafka: {topic: in}}, stages: [{rename: {r: s, p: q}}],
   sink: {kafka: {topic: d.out}}}
""")
    merged, alone = both_ways(path, [{"k": 0, "p": 1, "r": 2}])
    assert merged == alone
    assert merged["a.out"] == merged["b.out"] == [(b"0", b'{"k":0,"p":1,"r":2,"x":1,"y":2}')]


def test_a_python_stage_after_a_shared_explode_changes_only_its_own_records(
    tmp_path: Path
) -> None:
    (tmp_path / "mutating_udfs.py").write_text(
        "def mark(r):\n    r['meta']['seen'] = r['meta'].get('seen', 0) + 1\n    return r\n")
    path = tmp_path / "p.yaml"
    path.write_text("""\
- {pipeline: a, source: {kafka: {topic: in}}, stages: [{explode: items}],
   sink: {kafka: {topic: a.out}}}
- {pipeline: z, source: {kafka: {topic: in}},
   stages: [{explode: items}, {python: 'mutating_udfs:mark'}], sink: {kafka: {topic: z.out}}}
""")
    merged, alone = both_ways(path, [{"items": [1, 2], "meta": {}}])
    assert merged == alone
    assert [json.loads(v)["meta"] for _, v in merged["a.out"]] == [{}, {}]


def test_same_module_name_in_two_folders_are_two_functions(tmp_path: Path) -> None:
    for who in ("one", "two"):
        folder = tmp_path / who
        folder.mkdir()
        (folder / "udfs.py").write_text(f"def f(r):\n    r['who'] = {who!r}\n    return r\n")
        (folder / "p.yaml").write_text(f"pipeline: {who}\nsource: {{kafka: {{topic: in}}}}\n"
                                       "stages: [{python: 'udfs:f'}]\n"
                                       f"sink: {{kafka: {{topic: {who}.out}}}}\n")
    pipelines = load_pipelines([tmp_path])
    plan = build_plan(pipelines)
    assert sum(1 for s in plan.segments for _ in s.nodes()) == 2  # not merged
    written = execute(plan, {"in": [(b"k", b"{}")]})
    assert json.loads(written["one.out"][0][1])["who"] == "one"
    assert json.loads(written["two.out"][0][1])["who"] == "two"


def test_a_failure_in_a_shared_stage_names_each_pipelines_own_stage(tmp_path: Path) -> None:
    path = tmp_path / "p.yaml"
    path.write_text("""\
- {pipeline: a, source: {kafka: {topic: in}}, stages: [{filter: x > 0}],
   sink: {kafka: {topic: a.out}}}
- {pipeline: b, source: {kafka: {topic: in}}, stages: [{filter: x > 0}, {drop: [y]}],
   sink: {kafka: {topic: b.out}}}
""")
    [segment] = build_plan(load_pipelines([path])).segments
    result = Kernel(segment).run([b'{"y": 1}', b"{oops"], [None, None])
    missing, broken = result.failures
    assert {p: missing.slot.stage_for(p) for p in ("a", "b")} == {"a": "a.1-filter",
                                                                  "b": "b.1-filter"}
    assert broken.slot.stage_for("b") == "b.decode"


def test_consumer_group_conflicts_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "p.yaml"
    path.write_text("""\
- {pipeline: a, source: {kafka: {topic: in, group: g1}}, sink: {kafka: {topic: a.out}}}
- {pipeline: b, share: false, source: {kafka: {topic: in, group: g1}},
   sink: {kafka: {topic: b.out}}}
- {pipeline: c, source: {kafka: {topic: in, group: g1}}, sink: {kafka: {topic: c.out}}}
""")
    with pytest.raises(PipelineFileError) as caught:
        build_plan(load_pipelines([path]))
    assert {d.code for d in caught.value.diagnostics} == {"DSL_GROUP_CONFLICT"}
    assert len(caught.value.diagnostics) == 3


@pytest.mark.parametrize(("text", "code"), [
    ("pipeline: p\nsource: {kafka: {topic: in}}\nsink: {kafka: {topic: out}}\n"
     "dlq: {topic: in}\n", "DSL_SINK_IS_SOURCE"),
    ("pipeline: p\nsource: {kafka: {topic: in}}\nsink: {kafka: {topic: out}}\n"
     "dlq: {topic: out}\n", "DSL_CONFLICT"),
    ("pipeline: p\nsource: {kafka: {topic: p.dlq}}\nsink: {kafka: {topic: out}}\n",
     "DSL_SINK_IS_SOURCE"),
    ("[]\n", "DSL_EMPTY"),
    ("pipeline: p\nsource: {kafka: {topic: in}}\nsink: {kafka: {topic: out}}\ndlq: none\n",
     "DSL_DLQ_REQUIRED"),
    ("pipeline: p\nsource: {kafka: {topic: in}}\nsink: {kafka: {topic: out}}\n"
     "on_error: stop\n", "DSL_WRONG_TYPE"),
    ("pipeline: p\nsource: {kafka: {topic: in, schema: s.avsc}}\nsink: {kafka: {topic: o}}\n",
     "DSL_CONFLICT"),
    ("pipeline: p\nsource: {kafka: {topic: in}}\nstages: [{explode: 5}]\n"
     "sink: {kafka: {topic: o}}\n", "DSL_BAD_EXPR"),
])
def test_refused_configurations(tmp_path: Path, text: str, code: str) -> None:
    (tmp_path / "p.yaml").write_text(text)
    with pytest.raises(PipelineFileError) as caught:
        load_pipelines([tmp_path / "p.yaml"])
    assert [d.code for d in caught.value.diagnostics] == [code]


def test_dead_letters_feeding_back_form_a_cycle(tmp_path: Path) -> None:
    (tmp_path / "p.yaml").write_text("""\
- {pipeline: a, source: {kafka: {topic: t1}}, sink: {kafka: {topic: t2}}}
- {pipeline: b, source: {kafka: {topic: a.dlq}}, sink: {kafka: {topic: t1}}}
""")
    with pytest.raises(PipelineFileError) as caught:
        load_pipelines([tmp_path / "p.yaml"])
    assert [d.code for d in caught.value.diagnostics] == ["DSL_CYCLE"]


def test_non_record_schema_and_missing_dependency(tmp_path: Path) -> None:
    (tmp_path / "s.avsc").write_text('"string"')
    (tmp_path / "needs.py").write_text("import not_installed_anywhere_zz\n")
    (tmp_path / "p.yaml").write_text(
        "pipeline: p\nsource: {kafka: {topic: in, format: avro, schema: s.avsc}}\n"
        "stages: [{python: 'needs:f'}]\nsink: {kafka: {topic: o}}\n")
    with pytest.raises(PipelineFileError) as caught:
        load_pipelines([tmp_path / "p.yaml"])
    assert [d.code for d in caught.value.diagnostics] == ["DSL_BAD_SCHEMA", "DSL_PYTHON_IMPORT"]


def test_yaml_merge_keys_work(tmp_path: Path) -> None:
    (tmp_path / "p.yaml").write_text("""\
- &base
  pipeline: a
  source: {kafka: {topic: in}}
  stages: [{filter: x > 1}]
  sink: {kafka: {topic: a.out}}
- <<: *base
  pipeline: b
  sink: {kafka: {topic: b.out}}
""")
    assert [p.name for p in load_pipelines([tmp_path / "p.yaml"])] == ["a", "b"]


def test_dlq_none_needs_on_error_fail_written_out(tmp_path: Path) -> None:
    (tmp_path / "p.yaml").write_text("pipeline: p\nsource: {kafka: {topic: in}}\n"
                                     "sink: {kafka: {topic: out}}\ndlq: none\non_error: dlq\n")
    with pytest.raises(PipelineFileError) as caught:
        load_pipelines([tmp_path / "p.yaml"])
    assert [d.code for d in caught.value.diagnostics] == ["DSL_DLQ_REQUIRED"]
