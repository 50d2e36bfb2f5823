"""The compiled batch kernel: semantics of filter and map, and failures kept as data."""

from __future__ import annotations

import json
from typing import Any

from uee.dsl.loader import load_text
from uee.dsl.optimize import build_plan
from uee.dsl.validate import validate_documents
from uee.streams.kernel import Kernel


def kernel_for(stages_yaml: str) -> Kernel:
    text = (f"pipeline: t\nsource: {{kafka: {{topic: a}}}}\nstages:\n{stages_yaml}"
            "sink: {kafka: {topic: b}}\n")
    document = load_text(text, "t.yaml")
    assert document is not None
    pipelines, problems = validate_documents([document])
    assert problems == [], [p.render() for p in problems]
    [segment] = build_plan(pipelines).segments
    return Kernel(segment)


def run(kernel: Kernel, records: list[Any]) -> tuple[list[dict[str, Any]], list[tuple[int, str]]]:
    values = [r if isinstance(r, bytes) else json.dumps(r).encode() for r in records]
    result = kernel.run(values, [None] * len(values))
    [outputs] = result.outputs
    return [json.loads(v) for _, _, v in outputs], [(f.index, f.code) for f in result.failures]


def test_filter_then_map() -> None:
    kernel = kernel_for('  - filter: kind == "buy" and amount > 10\n'
                        "  - map: {cents: int(amount * 100), kind: upper(kind)}\n")
    outputs, failures = run(kernel, [
        {"kind": "buy", "amount": 12.5},
        {"kind": "sell", "amount": 50},
        {"kind": "buy", "amount": 3},
    ])
    assert outputs == [{"kind": "BUY", "amount": 12.5, "cents": 1250}]
    assert failures == []


def test_map_expressions_all_see_the_record_before_the_stage() -> None:
    kernel = kernel_for("  - map: {a: b, b: a}\n")
    outputs, _ = run(kernel, [{"a": 1, "b": 2}])
    assert outputs == [{"a": 2, "b": 1}]


def test_stages_apply_in_order() -> None:
    kernel = kernel_for("  - map: {x: x * 2}\n  - filter: x > 10\n  - map: {x: x + 1}\n")
    outputs, _ = run(kernel, [{"x": 4}, {"x": 6}])
    assert outputs == [{"x": 13}]


def test_failures_are_data_and_do_not_stop_the_batch() -> None:
    kernel = kernel_for("  - filter: amount > 1\n  - map: {y: 10 / amount}\n")
    outputs, failures = run(kernel, [
        b"not json", b"[1, 2]", {"other": 1}, {"amount": "text"}, {"amount": 5},
    ])
    assert outputs == [{"amount": 5, "y": 2.0}]
    assert failures == [(0, "DECODE_JSON"), (1, "DECODE_JSON"), (2, "EXPR_MISSING_FIELD"),
                        (3, "EXPR_TYPE")]


def test_failure_names_the_stage() -> None:
    kernel = kernel_for("  - filter: true\n  - map: {y: missing + 1}\n")
    result = kernel.run([b'{"a": 1}'], [None])
    assert [f.slot.stage_for("t") for f in result.failures] == ["t.2-map"]
    assert result.failures[0].message == "field 'missing' is missing"


def test_nested_fields_indexes_methods_and_coalesce() -> None:
    kernel = kernel_for(
        "  - map:\n"
        "      city: customer.address.city\n"
        "      first: items[0]\n"
        "      shout: name.upper()\n"
        "      nick: coalesce(nickname, name)\n"
        '      vip: tier in ["gold", "platinum"]\n'
    )
    outputs, failures = run(kernel, [{
        "customer": {"address": {"city": "Lyon"}}, "items": [7, 8], "name": "ada", "tier": "gold",
    }])
    assert failures == []
    assert outputs[0]["city"] == "Lyon"
    assert outputs[0]["first"] == 7
    assert outputs[0]["shout"] == "ADA"
    assert outputs[0]["nick"] == "ada"
    assert outputs[0]["vip"] is True


def test_the_timed_variant_gives_the_same_results_and_times_every_stage() -> None:
    """One batch a second runs timed (`uee_stage_latency_seconds`): the same outputs,
    failures and drops, the same diff state, and a time for each stage, decoding and sink
    included, dropped and failed records too."""
    kernel = kernel_for("  - filter: n % 3 != 0\n"
                        "  - map: {half: 10 / (n % 5)}\n"
                        "  - diff: {key: k}\n")
    values = [json.dumps({"n": n, "k": n % 4}).encode() for n in range(40)] + [b"not json"]
    keys: list[bytes | None] = [None] * len(values)
    plain = kernel.run(values, keys)
    [diff] = kernel.states
    diff.last.clear()  # the diff state starts over: the timed run sees what the plain one saw
    timed = kernel.run(values, keys, timed=True)
    assert plain.seconds is None and timed.seconds is not None
    assert timed.outputs == plain.outputs and timed.drops == plain.drops
    assert [(f.index, f.code) for f in timed.failures] == \
        [(f.index, f.code) for f in plain.failures]
    kernel.run(values[1:2], keys[1:2])  # one diff state for both: what one saw, the other did
    assert kernel.run(values[1:2], keys[1:2], timed=True).outputs == [[]]
    stages = {stage: spent for (_, stage), spent in kernel.stage_seconds(timed.seconds).items()}
    assert set(stages) == {"t.decode", "t.1-filter", "t.2-map", "t.3-diff", "t.sink"}
    assert all(spent > 0 for spent in stages.values()), stages


def test_every_example_and_golden_plan_gives_the_same_results_timed_and_untimed() -> None:
    """The timed variant adds names to the generated code: none may shadow a stage's own
    (a rename stage's `_t` once did). Every example and golden plan, on generated orders
    and some broken records, both ways."""
    import sys
    from pathlib import Path

    from uee.connectors.generator import generate_orders

    root = Path(__file__).resolve().parents[2]
    files = [*sorted((root / "examples").glob("*.yaml")),
             *sorted((root / "tests" / "golden").glob("*/pipelines.yaml"))]
    values = [json.dumps(order).encode() for order in generate_orders(7, 300)]
    values += [b"not json", b'{"kind": 3}', b"[]"]
    keys: list[bytes | None] = [str(n).encode() for n in range(len(values))]
    sys.path.insert(0, str(root / "examples"))  # the examples' python stages
    try:
        for path in files:
            document = load_text(path.read_text(), str(path))
            assert document is not None
            pipelines, problems = validate_documents([document])
            assert problems == [], (path, [p.render() for p in problems])
            for segment in build_plan(pipelines).segments:
                plain, timed = Kernel(segment), Kernel(segment)
                expected = plain.run(values, keys)
                got = timed.run(values, keys, timed=True)
                assert got.outputs == expected.outputs, path
                assert got.drops == expected.drops, path
                assert [(f.index, f.code) for f in got.failures] == \
                    [(f.index, f.code) for f in expected.failures], path
    finally:
        sys.path.remove(str(root / "examples"))
