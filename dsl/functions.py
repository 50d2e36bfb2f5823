"""The functions an expression may call, defined once: the validator checks calls against
their arity, the kernel and `uee dlq replay --where` call them, and the JSON check reads
what they can return. Adding one is one entry here."""

from __future__ import annotations

import datetime
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Function:
    name: str
    call: Callable[..., Any]
    min_args: int
    max_args: int | None  # None: any number
    # Arguments are passed unevaluated, as thunks (coalesce: a missing field means "try the
    # next one", so each argument is evaluated only when the ones before it gave nothing).
    lazy: bool = False
    # Never returns a float or a set, whatever its arguments: JSON has a place for the result.
    json_safe: bool = False
    # May return what JSON has no place for even from JSON arguments (float("nan")).
    leaves_json: bool = False
    # Also callable as a method of its first argument: `name.lower()` is `lower(name)`.
    method: bool = False


def _coalesce(*thunks: Callable[[], Any]) -> Any:
    for thunk in thunks:
        try:
            value = thunk()
        except (KeyError, IndexError):
            continue  # a missing field inside coalesce means "try the next one"
        except TypeError as exc:
            if "not subscriptable" not in str(exc):
                raise  # a real type error (upper(5)) is an error here too
            continue  # a.b where a is null or not an object: missing as well
        if value is not None:
            return value
    return None


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).isoformat(timespec="milliseconds")


def _round(value: Any, digits: int | None = None) -> Any:
    return round(value, digits)


FUNCTIONS: dict[str, Function] = {f.name: f for f in (
    Function("len", len, 1, 1, json_safe=True),
    Function("lower", str.lower, 1, 1, json_safe=True, method=True),
    Function("upper", str.upper, 1, 1, json_safe=True, method=True),
    Function("strip", str.strip, 1, 1, json_safe=True, method=True),
    Function("startswith", str.startswith, 2, 2, json_safe=True, method=True),
    Function("endswith", str.endswith, 2, 2, json_safe=True, method=True),
    Function("coalesce", _coalesce, 1, None, lazy=True),
    Function("int", int, 1, 1, json_safe=True),
    Function("float", float, 1, 1, leaves_json=True),
    Function("str", str, 1, 1, json_safe=True),
    Function("bool", bool, 1, 1, json_safe=True),
    Function("abs", abs, 1, 1),
    Function("round", _round, 1, 2),
    Function("min", min, 1, None),
    Function("max", max, 1, None),
    Function("now", _now, 0, 0, json_safe=True),
)}


def callables() -> dict[str, Callable[..., Any]]:
    """The names compiled expressions call them by (`_fn_<name>`), for their namespace."""
    return {f"_fn_{name}": function.call for name, function in FUNCTIONS.items()}
