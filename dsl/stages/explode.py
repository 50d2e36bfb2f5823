"""`explode: <expr>`: one record per element of a list."""

from __future__ import annotations

import ast
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from uee.dsl.errors import Position
from uee.dsl.expr import Expr, field_path, may_leave_json
from uee.dsl.stages.base import CodeContext, Compiled, StageSpec

if TYPE_CHECKING:
    from uee.dsl.loader import Node
    from uee.dsl.validate import Validator


@dataclass(frozen=True)
class ExplodeStage(StageSpec):
    """A field's list replaces the field by each element; any other expression must yield
    objects, each merged into a copy of the record."""

    id: str
    items: Expr
    field_path: tuple[str, ...] | None
    pos: Position = field(compare=False)
    kind = "explode"

    @classmethod
    def parse(cls, v: Validator, stage_id: str, pos: Position, body: Node, what: str
              ) -> ExplodeStage | None:
        items = v.expr(body, what)
        if items is None:
            return None
        if isinstance(items.tree, ast.Constant):
            v.error("DSL_BAD_EXPR", f"{what} needs a list to explode, like a field (items) "
                    f"or a list expression, not the constant {items.text}", items.pos)
            return None
        return cls(stage_id, items, field_path(items.tree), pos)

    @property
    def signature(self) -> tuple[Any, ...]:
        return ("explode", self.items.normalized)

    def describe(self) -> str:
        return f"explode: {self.items.normalized}"

    def compile(self, ctx: CodeContext) -> Compiled:
        explode = ctx.bind(ctx.runtime("explode_items"), "explode")
        return Compiled([f"_items = {explode}(r, {ctx.expr(self.items)}, {self.field_path!r})"],
                        "_items")

    def may_leave_json(self) -> bool:
        return self.field_path is None and may_leave_json(self.items)
