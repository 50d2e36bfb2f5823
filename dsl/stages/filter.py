"""`filter: <expr>`: keeps the records for which the expression is true."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from uee.dsl.errors import Position
from uee.dsl.expr import Expr
from uee.dsl.stages.base import DROP, CodeContext, Compiled, StageSpec

if TYPE_CHECKING:
    from uee.dsl.loader import Node
    from uee.dsl.validate import Validator


@dataclass(frozen=True)
class FilterStage(StageSpec):
    id: str
    predicate: Expr
    pos: Position = field(compare=False)
    kind = "filter"

    @classmethod
    def parse(cls, v: Validator, stage_id: str, pos: Position, body: Node, what: str
              ) -> FilterStage | None:
        predicate = v.expr(body, what)
        return cls(stage_id, predicate, pos) if predicate else None

    @property
    def signature(self) -> tuple[Any, ...]:
        return ("filter", self.predicate.normalized)

    def describe(self) -> str:
        return f"filter: {self.predicate.normalized}"

    def compile(self, ctx: CodeContext) -> Compiled:
        return Compiled([f"if not ({ctx.expr(self.predicate)}):", *("    " + d for d in DROP)])
