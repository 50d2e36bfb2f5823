"""Compile a chain of stages into one Python function that runs a whole batch.

Per-record work is what limits a Python stream processor, so a chain of stages
becomes a single generated loop: decode, every filter and map inlined, encode.
Field reads are dict lookups (`r["amount"]`), functions are bound locals, and a
failing record is caught, labelled with its stage and kept as data for the DLQ;
it never stops the batch.
"""

from __future__ import annotations

import ast
import datetime
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from dsl.expr import Expr
from dsl.ir import FilterStage, MapStage, Stage

_RECORD = "r"


class NotAnObjectError(ValueError):
    """A decoded value that is valid JSON but not an object."""


@dataclass(frozen=True)
class Failure:
    """One record that could not go through the chain: where, what, and why."""

    index: int
    stage_id: str
    code: str
    error: BaseException

    @property
    def message(self) -> str:
        if isinstance(self.error, KeyError):
            return f"field {self.error.args[0]!r} is missing"
        return str(self.error) or type(self.error).__name__


@dataclass(frozen=True)
class KernelResult:
    outputs: list[tuple[int, bytes]]
    failures: list[Failure]


def _coalesce(*thunks: Callable[[], Any]) -> Any:
    for thunk in thunks:
        try:
            value = thunk()
        except (KeyError, IndexError, TypeError):
            continue  # a missing field inside coalesce means "try the next one"
        if value is not None:
            return value
    return None


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).isoformat(timespec="milliseconds")


def _round(value: Any, digits: int | None = None) -> Any:
    return round(value, digits)


_FUNCTIONS: dict[str, Callable[..., Any]] = {
    "len": len, "lower": str.lower, "upper": str.upper, "strip": str.strip,
    "startswith": str.startswith, "endswith": str.endswith, "coalesce": _coalesce,
    "int": int, "float": float, "str": str, "bool": bool, "abs": abs, "round": _round,
    "min": min, "max": max, "now": _now,
}  # fmt: skip


class _ToRecordLookups(ast.NodeTransformer):
    """Rewrite a checked expression so fields read from the record and calls hit our table."""

    def visit_Name(self, node: ast.Name) -> ast.AST:
        return _lookup(ast.Name(_RECORD, ast.Load()), node.id)

    def visit_Attribute(self, node: ast.Attribute) -> ast.AST:
        return _lookup(self.visit(node.value), node.attr)

    def visit_Call(self, node: ast.Call) -> ast.AST:
        func = node.func
        args = [self.visit(arg) for arg in node.args]
        if isinstance(func, ast.Attribute):  # field.lower() -> lower(field)
            name, args = func.attr, [self.visit(func.value), *args]
        else:
            assert isinstance(func, ast.Name)
            name = func.id
        if name == "coalesce":
            args = [ast.Lambda(_no_args(), arg) for arg in args]
        return ast.Call(ast.Name(f"_fn_{name}", ast.Load()), args, [])


def _lookup(container: ast.expr, key: str) -> ast.Subscript:
    return ast.Subscript(container, ast.Constant(key), ast.Load())


def _no_args() -> ast.arguments:
    return ast.arguments(posonlyargs=[], args=[], kwonlyargs=[], kw_defaults=[], defaults=[])


def python_source(expr: Expr) -> str:
    """The expression as Python over the record variable, e.g. `r['amount'] * 100`."""
    tree = _ToRecordLookups().visit(ast.parse(expr.normalized, mode="eval").body)
    return ast.unparse(ast.fix_missing_locations(tree))


def _error_code(error: BaseException, stage_index: int, last_index: int) -> str:
    if stage_index == 0:
        return "DECODE_JSON"
    if stage_index == last_index:
        return "ENCODE_JSON"
    if isinstance(error, KeyError | IndexError):
        return "EXPR_MISSING_FIELD"
    if isinstance(error, TypeError | AttributeError):
        return "EXPR_TYPE"
    if isinstance(error, ZeroDivisionError | OverflowError):
        return "EXPR_ARITHMETIC"
    if isinstance(error, ValueError):
        return "EXPR_VALUE"
    return "EXPR_ERROR"


class Kernel:
    """A compiled chain: `run(values)` decodes, filters, maps and encodes one batch."""

    def __init__(self, stages: Sequence[Stage], pipeline: str) -> None:
        self.stage_ids = [f"{pipeline}.decode", *(s.id for s in stages), f"{pipeline}.encode"]
        self.source = _generate(stages)
        namespace: dict[str, Any] = {f"_fn_{name}": fn for name, fn in _FUNCTIONS.items()}
        namespace["_loads"] = json.loads
        namespace["_encode"] = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode
        namespace["_NotAnObject"] = NotAnObjectError
        exec(compile(self.source, f"<uee kernel {pipeline}>", "exec"), namespace)
        self._run: Callable[[list[bytes]], tuple[list[tuple[int, bytes]], list[Any]]]
        self._run = namespace["_kernel"]

    def run(self, values: list[bytes]) -> KernelResult:
        outputs, raw_failures = self._run(values)
        last = len(self.stage_ids) - 1
        failures = [
            Failure(index, self.stage_ids[stage], _error_code(error, stage, last), error)
            for index, stage, error in raw_failures
        ]
        return KernelResult(outputs, failures)


def _generate(stages: Sequence[Stage]) -> str:
    """Source of `_kernel(values)`; the code is built only from checked expressions."""
    body = [
        "stage = 0",
        "r = _loads(v)",
        "if r.__class__ is not dict:",
        "    raise _NotAnObject('the value is JSON but not an object')",
    ]
    for number, stage in enumerate(stages, start=1):
        body.append(f"stage = {number}")
        if isinstance(stage, FilterStage):
            body.append(f"if not ({python_source(stage.predicate)}):")
            body.append("    continue")
        elif isinstance(stage, MapStage):
            # Evaluate every expression before assigning, so each sees the record as it came in.
            for slot, (_, expr) in enumerate(stage.assignments):
                body.append(f"_v{slot} = {python_source(expr)}")
            for slot, (field_name, _) in enumerate(stage.assignments):
                body.append(f"r[{field_name!r}] = _v{slot}")
    body.append(f"stage = {len(stages) + 1}")
    body.append("append((i, _encode(r).encode()))")
    lines = [
        "def _kernel(values):",
        "    out = []",
        "    append = out.append",
        "    failures = []",
        "    for i, v in enumerate(values):",
        "        try:",
        *(f"            {line}" for line in body),
        "        except Exception as exc:",
        "            failures.append((i, stage, exc))",
        "    return out, failures",
    ]
    return "\n".join(lines) + "\n"
