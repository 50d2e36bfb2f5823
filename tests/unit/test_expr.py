"""The expression language: what it accepts, what it refuses, and where it says so."""

from __future__ import annotations

import pytest

from uee.dsl.errors import Position
from uee.dsl.expr import parse_expr

START = Position("p.yaml", 7, 13)


@pytest.mark.parametrize(
    "text",
    [
        'kind == "buy" and amount > 10',
        "amount * 100",
        "int(amount * 100) // 3 % 7",
        "not (a or b)",
        'kind in ["buy", "sell"]',
        "customer.address.city",
        "items[0]",
        'name.lower().startswith("x")',
        "coalesce(nickname, name)",
        "a if a > 0 else -a",
        "now()",
        "x is None",
        "max > 10",  # a field named like a function
        "items[-1]",
    ],
)
def test_accepts_the_safe_subset(text: str) -> None:
    expr, problems = parse_expr(text, START)
    assert problems == []
    assert expr is not None and expr.text == text


def test_normalized_form_ignores_spacing_and_quotes() -> None:
    a, _ = parse_expr('kind=="buy"   and amount>10', START)
    b, _ = parse_expr("kind == 'buy' and amount > 10", START)
    assert a is not None and b is not None
    assert a.normalized == b.normalized
    assert a.fields == {"kind", "amount"}


@pytest.mark.parametrize(
    ("text", "message", "col"),
    [
        ('__import__("os")', "unknown function '__import__'", 13),
        ("a.__class__", "'__class__' is not a field name", 13),
        ("x ** 99999", "operator '**' is not allowed", 13),
        ("[i for i in x]", "a list comprehension is not allowed", 13),
        ("lambda: 1", "a lambda is not allowed", 13),
        ("amount > 10 and lenn(x)", "unknown function 'lenn'", 29),
        ("len(a, b)", "len() takes 1 argument(s), got 2", 13),
        ("f'{x}'", "an f-string is not allowed", 13),
        ("open('/etc/passwd').read()", "unknown function", 13),
    ],
)
def test_refuses_everything_else_with_a_position(text: str, message: str, col: int) -> None:
    expr, problems = parse_expr(text, START)
    assert expr is None
    assert problems, text
    assert message in problems[0].message
    assert problems[0].code == "DSL_BAD_EXPR"
    assert (problems[0].pos.line, problems[0].pos.col) == (7, col)


def test_syntax_error_points_into_the_expression() -> None:
    expr, problems = parse_expr("amount > > 3", START)
    assert expr is None
    assert problems[0].message.startswith("invalid expression")
    assert problems[0].pos.line == 7 and problems[0].pos.col >= 13


def test_suggests_the_function_meant() -> None:
    _, problems = parse_expr("lenn(x)", START)
    assert problems[0].hint == "did you mean 'len'?"
