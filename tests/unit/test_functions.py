"""Expression functions are defined once (uee.dsl.functions): what the validator accepts is
what the kernel and `uee dlq replay --where` can call, with the same arity."""

from __future__ import annotations

import pytest

from uee.dsl.errors import Position
from uee.dsl.expr import METHODS, parse_expr
from uee.dsl.functions import FUNCTIONS, callables
from uee.streams.dlq import compile_where

AT = Position("f.yaml", 1, 1)


@pytest.mark.parametrize("name", sorted(FUNCTIONS))
def test_each_function_is_accepted_at_its_arity_and_refused_beyond(name: str) -> None:
    function = FUNCTIONS[name]
    args = ", ".join(["s"] * function.min_args)
    expr, problems = parse_expr(f"{name}({args})", AT)
    assert expr is not None and problems == []
    if function.max_args is not None:
        too_many = ", ".join(["s"] * (function.max_args + 1))
        refused, problems = parse_expr(f"{name}({too_many})", AT)
        assert refused is None and "argument(s)" in problems[0].message
    assert callables()[f"_fn_{name}"] is function.call


def test_where_calls_the_same_functions() -> None:
    where = compile_where("lower(s) == 'abc' and coalesce(missing, s) == 'ABC' and len(s) == 3")
    assert where({"s": "ABC"}) is True
    assert {"lower", "upper", "strip", "startswith", "endswith"} == METHODS
