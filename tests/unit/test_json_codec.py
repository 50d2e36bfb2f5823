"""JSON on the hot path (msgspec) against the reference (the standard library): what is the
same, what differs, and that every difference is either documented or refused with a code."""

from __future__ import annotations

import json
import math
from typing import Any

import hypothesis.strategies as st
from hypothesis import given, settings

from tests.unit.test_kernel import kernel_for
from uee.dsl.errors import Position
from uee.dsl.expr import may_leave_json, parse_expr
from uee.streams.kernel import Kernel, decode_json, encode_json, fast_json_encode, json_plain

AT = Position("t.yaml", 1, 1)


def outputs(kernel: Kernel, values: list[bytes]) -> tuple[list[bytes], list[tuple[int, str, str]]]:
    result = kernel.run(values, [None] * len(values))
    [out] = result.outputs
    return ([v for _, _, v in out],
            [(f.index, f.code, f.message) for f in result.failures])


def test_integers_of_any_size_pass_through_exactly() -> None:
    kernel = kernel_for("  - map: {n2: n}\n")
    big = b'{"n":123456789012345678901234567890,"m":-9223372036854775809}'
    [value], failures = outputs(kernel, [big])
    assert failures == []
    assert json.loads(value) == {"n": 123456789012345678901234567890,
                                 "m": -9223372036854775809,
                                 "n2": 123456789012345678901234567890}


def test_duplicate_keys_keep_the_last_value_as_before() -> None:
    [value], _ = outputs(kernel_for("  - map: {b: a}\n"), [b'{"a":1,"a":2}'])
    assert json.loads(value) == {"a": 2, "b": 2}


def test_nan_and_infinity_in_input_are_refused_at_decode_with_a_clear_message() -> None:
    kernel = kernel_for("  - map: {b: a}\n")
    out, failures = outputs(kernel, [b'{"a":NaN}', b'{"a":1e999}', b'{"a":Infinity}',
                                     b'{"a":1}'])
    assert [json.loads(v) for v in out] == [{"a": 1, "b": 1}]
    assert [(i, code) for i, code, _ in failures] == [(0, "DECODE_JSON"), (1, "DECODE_JSON"),
                                                      (2, "DECODE_JSON")]
    assert all("NaN, Infinity" in message for _, _, message in failures)


def test_invalid_json_keeps_the_standard_librarys_message() -> None:
    _, failures = outputs(kernel_for("  - map: {b: a}\n"), [b'{"a":', b"[1]", b"\xff"])
    messages = {i: (code, message) for i, code, message in failures}
    assert messages[0] == ("DECODE_JSON", "Expecting value: line 1 column 6 (char 5)")
    assert messages[1] == ("DECODE_JSON", "the value is JSON but not an object")
    assert messages[2][0] == "DECODE_JSON"


def test_what_only_the_reference_reads_is_still_read() -> None:
    # A byte order mark and a lone surrogate escape: msgspec refuses both, json reads them.
    out, failures = outputs(kernel_for("  - map: {b: a}\n"), [b'\xef\xbb\xbf{"a":1}'])
    assert failures == [] and json.loads(out[0]) == {"a": 1, "b": 1}
    assert decode_json(b'{"a":"\\ud800"}') == {"a": "\ud800"}


def test_computed_non_finite_numbers_and_sets_fail_at_the_sink_as_before() -> None:
    kernel = kernel_for("  - map: {x: n * 10.0, s: '{n}'}\n")
    _, failures = outputs(kernel, [b'{"n":1e308}', b'{"n":1}'])
    assert [(i, code) for i, code, _ in failures] == [(0, "ENCODE_JSON"), (1, "ENCODE_JSON")]


def test_values_json_cannot_hold_are_refused_by_the_reference_encoder() -> None:
    for bad in ({"a": float("nan")}, {"a": b"bytes"}, {"a": {1, 2}}, {"a": "\ud800"}):
        assert not json_plain(bad) or bad["a"] == "\ud800"
        try:
            encode_json(bad)
        except Exception as exc:  # RecordError
            assert getattr(exc, "code", None) == "ENCODE_JSON"
        else:
            raise AssertionError(f"{bad!r} was encoded")


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text()
    | st.floats(allow_nan=False, allow_infinity=False),
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(st.text(max_size=5), children, max_size=4),
    max_leaves=12,
)


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.text(max_size=8), json_values, max_size=6))
def test_plain_json_reads_back_the_same_from_both_encoders(record: dict[str, Any]) -> None:
    """Byte-identical but for float exponents (1e16 vs 1e+16): same value either way."""
    assert json_plain(record)
    fast, reference = fast_json_encode(record), encode_json(record)
    assert json.loads(fast) == json.loads(reference)
    if not any(isinstance(v, float) for v in _leaves(record)):
        assert fast == reference


def _leaves(value: Any) -> list[Any]:
    if isinstance(value, dict):
        return [leaf for v in value.values() for leaf in _leaves(v)]
    if isinstance(value, list):
        return [leaf for v in value for leaf in _leaves(v)]
    return [value]


def test_which_expressions_can_leave_json() -> None:
    def leaves(text: str) -> bool:
        expr, problems = parse_expr(text, AT)
        assert expr is not None, problems
        return may_leave_json(expr)

    for safe in ("a", "a.b", "items[0]", "int(amount * 100)", "upper(customer)", "a > 1",
                 "len(items) + 0 == 1", "str(a * b)", "coalesce(a, b)", "[a, b]", "1.5",
                 "a if b else c", "not a"):
        assert not leaves(safe), safe
    for risky in ("amount * 100", "float(text)", "-(a * b)", "round(a * 1e308)", "{a}",
                  "1e999", "[a * 2][0]", "max(a, b * 2)", "coalesce(a * 2, 0)"):
        assert leaves(risky), risky
    assert math.isinf(1e999)
