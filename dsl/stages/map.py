"""`map: {field: <expr>, ...}`: sets or overwrites fields."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from uee.dsl.errors import Position
from uee.dsl.expr import Expr, may_leave_json
from uee.dsl.stages.base import CodeContext, Compiled, StageSpec

if TYPE_CHECKING:
    from uee.dsl.loader import Node
    from uee.dsl.validate import Validator


@dataclass(frozen=True)
class MapStage(StageSpec):
    """Every expression sees the record as it was before the stage."""

    id: str
    assignments: tuple[tuple[str, Expr], ...]
    pos: Position = field(compare=False)
    kind = "map"

    @classmethod
    def parse(cls, v: Validator, stage_id: str, pos: Position, body: Node, what: str
              ) -> MapStage | None:
        spec = v.mapping(body, what)
        if spec is None:
            return None
        if not spec.entries:
            v.error("DSL_WRONG_TYPE", f"{what} must set at least one field", spec.pos)
            return None
        assignments: list[tuple[str, Expr]] = []
        ok = True
        cut = v.cut_at_commas(spec, what)
        for index, (field_name, key_pos, value) in enumerate(spec):
            if index in cut:
                ok = False
                continue
            expr = (v.expr(value, f"field '{field_name}' of {what}")
                    if v.field_name(field_name, key_pos, what) else None)
            if expr is None:
                ok = False
            else:
                assignments.append((field_name, expr))
        return cls(stage_id, tuple(assignments), pos) if ok else None

    @property
    def signature(self) -> tuple[Any, ...]:
        return ("map", tuple(sorted((name, e.normalized) for name, e in self.assignments)))

    def describe(self) -> str:
        return "map: " + ", ".join(f"{f} = {e.normalized}" for f, e in self.assignments)

    def compile(self, ctx: CodeContext) -> Compiled:
        # Evaluate every expression before assigning, so each sees the record as it came.
        # Assign in name order: new fields land in an order that depends only on the
        # stage's meaning, so a merged plan writes the very bytes each pipeline would.
        ordered = sorted(self.assignments, key=lambda a: a[0])
        lines = [f"_v{n} = {ctx.expr(e)}" for n, (_, e) in enumerate(ordered)]
        lines += [f"r[{f!r}] = _v{n}" for n, (f, _) in enumerate(ordered)]
        return Compiled(lines)

    def may_leave_json(self) -> bool:
        return any(may_leave_json(expr) for _, expr in self.assignments)
