"""Every stage kind, sink and format through the compiled kernel."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import fastavro
import pytest

from uee.dsl.loader import load_text
from uee.dsl.optimize import build_plan
from uee.dsl.validate import validate_documents
from uee.streams.kernel import Kernel, KernelResult

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"


def kernel_for(body: str) -> Kernel:
    text = "pipeline: t\n" + body
    document = load_text(text, str(FIXTURES / "t.yaml"))
    assert document is not None
    pipelines, problems = validate_documents([document])
    assert problems == [], [p.render() for p in problems]
    [segment] = build_plan(pipelines).segments
    return Kernel(segment)


def json_pipeline(stages: str, sink: str = "sink: {kafka: {topic: out}}") -> Kernel:
    return kernel_for(f"source: {{kafka: {{topic: in}}}}\nstages:\n{stages}{sink}\n")


def run(kernel: Kernel, records: list[Any], keys: list[bytes | None] | None = None
        ) -> KernelResult:
    values = [r if isinstance(r, bytes) else json.dumps(r).encode() for r in records]
    return kernel.run(values, keys or [None] * len(values))


def out(result: KernelResult, binding: int = 0) -> list[dict[str, Any]]:
    return [json.loads(v) for _, _, v in result.outputs[binding]]


def codes(result: KernelResult) -> list[tuple[int, str]]:
    return [(f.index, f.code) for f in result.failures]


def test_select_keeps_listed_fields_in_order_and_fails_on_missing() -> None:
    kernel = json_pipeline("  - select: [b, a]\n")
    result = run(kernel, [{"a": 1, "b": 2, "c": 3}, {"a": 1}])
    assert [list(r.items()) for r in out(result)] == [[("b", 2), ("a", 1)]]
    assert codes(result) == [(1, "EXPR_MISSING_FIELD")]


def test_drop_ignores_missing_fields() -> None:
    result = run(json_pipeline("  - drop: [secret, other]\n"), [{"a": 1, "secret": 2}])
    assert out(result) == [{"a": 1}]


def test_rename_is_simultaneous() -> None:
    result = run(json_pipeline("  - rename: {a: b, b: a}\n"), [{"a": 1, "b": 2}, {"a": 1}])
    assert out(result) == [{"b": 1, "a": 2}]
    assert codes(result) == [(1, "EXPR_MISSING_FIELD")]


def test_validate_against_an_avro_schema() -> None:
    kernel = json_pipeline("  - validate: {schema: point.avsc}\n")
    result = run(kernel, [{"x": 1, "y": 2}, {"x": "one", "y": 2}])
    assert out(result) == [{"x": 1, "y": 2}]
    assert codes(result) == [(1, "VALIDATION_SCHEMA")]


def test_diff_passes_changes_only_and_says_which_fields() -> None:
    kernel = json_pipeline("  - diff: {key: id, fields: [price, stock]}\n")
    result = run(kernel, [
        {"id": 1, "price": 10, "stock": 5, "name": "a"},
        {"id": 1, "price": 10, "stock": 5, "name": "renamed"},  # unwatched field: no change
        {"id": 2, "price": 7, "stock": 1},
        {"id": 1, "price": 12, "stock": 5},
    ])
    assert [(r["id"], r["_changed"]) for r in out(result)] == [
        (1, ["price", "stock"]), (2, ["price", "stock"]), (1, ["price"])]
    assert kernel.filtered(result.drops) == {"t": 1}


def test_python_stage_results() -> None:
    def through(target: str, records: list[Any]) -> KernelResult:
        return run(json_pipeline(f"  - python: tests.fixtures.udf:{target}\n"), records)

    assert out(through("tag", [{"n": 1}])) == [{"n": 1, "tagged": True}]
    assert out(through("keep_even", [{"n": 1}, {"n": 2}])) == [{"n": 2}]
    assert out(through("split", [{"n": 1}])) == [{"n": 1, "part": "a"}, {"n": 1, "part": "b"}]
    assert codes(through("broken", [{"n": 1}])) == [(0, "TRANSFORM_EXCEPTION")]
    assert codes(through("wrong_type", [{"n": 1}])) == [(0, "TRANSFORM_RESULT")]


def test_explode_a_field_replaces_it_by_each_element() -> None:
    kernel = json_pipeline("  - explode: order.lines\n  - map: {qty2: order.lines.qty * 2}\n")
    record = {"id": 7, "order": {"lines": [{"qty": 1}, {"qty": 3}], "by": "x"}}
    result = run(kernel, [record, {"id": 8, "order": {"lines": []}}])
    assert out(result) == [
        {"id": 7, "order": {"lines": {"qty": 1}, "by": "x"}, "qty2": 2},
        {"id": 7, "order": {"lines": {"qty": 3}, "by": "x"}, "qty2": 6},
    ]
    assert kernel.filtered(result.drops) == {"t": 1}  # the empty list


def test_explode_an_expression_merges_objects() -> None:
    kernel = json_pipeline("  - explode: coalesce(extra, [])\n")
    result = run(kernel, [{"id": 1, "extra": [{"a": 1}, {"a": 2}]}, {"id": 2, "extra": [5]}])
    assert out(result) == [{"id": 1, "extra": [{"a": 1}, {"a": 2}], "a": 1},
                           {"id": 1, "extra": [{"a": 1}, {"a": 2}], "a": 2}]
    assert codes(result) == [(1, "EXPR_TYPE")]


def test_route_sends_each_record_to_the_first_matching_sink() -> None:
    kernel = json_pipeline(
        "  - route:\n      - {when: level == 'high', to: urgent}\n"
        "      - {when: level == 'mid', to: normal}\n      - {otherwise: normal}\n",
        "sinks:\n  urgent: {kafka: {topic: u}}\n  normal: {kafka: {topic: n}}")
    result = run(kernel, [{"level": "high"}, {"level": "mid"}, {"level": "low"}, {"x": 1}])
    topics = {b.sink.topic: [json.loads(v)["level"] for _, _, v in outs]
              for b, outs in zip(kernel.bindings, result.outputs, strict=True)
              if outs}
    assert topics == {"u": ["high"], "n": ["mid", "low"]}
    assert codes(result) == [(3, "EXPR_MISSING_FIELD")]


def test_route_without_otherwise_drops_unmatched_records() -> None:
    kernel = json_pipeline("  - route:\n      - {when: ok, to: good}\n",
                           "sinks:\n  good: {kafka: {topic: g}}")
    result = run(kernel, [{"ok": True}, {"ok": False}])
    assert len(result.outputs[0]) == 1
    assert kernel.filtered(result.drops) == {"t": 1}


def test_every_sink_gets_every_record_with_its_own_key() -> None:
    kernel = json_pipeline("  - filter: n > 0\n",
                           "sinks:\n  by_id: {kafka: {topic: a, key: id}}\n"
                           "  same_key: {kafka: {topic: b}}")
    result = run(kernel, [{"n": 1, "id": "x1"}, {"n": 0, "id": "x2"}], keys=[b"k1", b"k2"])
    assert [k for _, k, _ in result.outputs[0]] == [b"x1"]
    assert [k for _, k, _ in result.outputs[1]] == [b"k1"]
    assert result.delivered == {"t": 1}


def test_avro_in_and_out_and_raw() -> None:
    schema = fastavro.parse_schema(json.loads((FIXTURES / "point.avsc").read_text()))

    def avro(record: dict[str, Any]) -> bytes:
        buffer = io.BytesIO()
        fastavro.schemaless_writer(buffer, schema, record)
        return buffer.getvalue()

    kernel = kernel_for("source: {kafka: {topic: in, format: avro, schema: point.avsc}}\n"
                        "stages:\n  - map: {x: x + 1}\n"
                        "sink: {kafka: {topic: out, format: avro, schema: point.avsc}}\n")
    result = kernel.run([avro({"x": 1, "y": 2, "label": None}), b"\xff"], [None, None])
    [(_, _, value)] = result.outputs[0]
    assert fastavro.schemaless_reader(io.BytesIO(value), schema, None) == {
        "x": 2, "y": 2, "label": None}
    assert codes(result) == [(1, "DECODE_AVRO")]

    raw = kernel_for("source: {kafka: {topic: in, format: raw}}\n"
                     "stages:\n  - map: {value: upper(value)}\n"
                     "sink: {kafka: {topic: out, format: raw}}\n")
    result = raw.run([b"hello", b"\xff\xfe"], [None, None])
    assert [v for _, _, v in result.outputs[0]] == [b"HELLO"]
    assert codes(result) == [(1, "DECODE_RAW")]


@pytest.mark.parametrize(("stages", "record", "code"), [
    ("  - map: {x: 1 / n}\n", {"n": 0}, "EXPR_ARITHMETIC"),
    ("  - map: {x: int(s)}\n", {"s": "abc"}, "EXPR_VALUE"),
    ("  - map: {x: 'items[3]'}\n", {"items": [1]}, "EXPR_MISSING_FIELD"),
    ("  - map: {x: upper(n)}\n", {"n": 1}, "EXPR_TYPE"),
    ("  - map: {x: n * 10.0}\n", {"n": 1e308}, "ENCODE_JSON"),  # inf is not JSON
    ("  - map: {x: float(s)}\n", {"s": "nan"}, "ENCODE_JSON"),
    ("  - map: {x: '[n * 10.0]'}\n", {"n": 1e308}, "ENCODE_JSON"),
    ("  - map: {x: n * 1.0}\n", {"n": 1e308, "y": float("inf")}, "DECODE_JSON"),  # 1e999 in
])
def test_record_error_codes(stages: str, record: dict[str, Any], code: str) -> None:
    values = [json.dumps(record).encode().replace(b"Infinity", b"1e999")]
    assert codes(json_pipeline(stages).run(values, [None])) == [(0, code)]


def test_coalesce_tolerates_missing_fields_not_type_errors() -> None:
    kernel = json_pipeline("  - map: {v: 'coalesce(a.b, upper(c), \"none\")'}\n")
    result = run(kernel, [{"a": None, "c": "x"}, {"c": 5}])
    assert out(result) == [{"a": None, "c": "x", "v": "X"}]
    assert codes(result) == [(1, "EXPR_TYPE")]
