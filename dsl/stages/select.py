"""`select: [field, ...]`: keeps only these fields, in this order."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from uee.dsl.errors import Position
from uee.dsl.stages.base import CodeContext, Compiled, StageSpec

if TYPE_CHECKING:
    from uee.dsl.loader import Node
    from uee.dsl.validate import Validator


@dataclass(frozen=True)
class SelectStage(StageSpec):
    id: str
    fields: tuple[str, ...]
    pos: Position = field(compare=False)
    kind = "select"

    @classmethod
    def parse(cls, v: Validator, stage_id: str, pos: Position, body: Node, what: str
              ) -> SelectStage | None:
        fields = v.field_list(body, what)
        return cls(stage_id, fields, pos) if fields else None

    @property
    def signature(self) -> tuple[Any, ...]:
        return ("select", self.fields)

    def describe(self) -> str:
        return f"select: {', '.join(self.fields)}"

    def compile(self, ctx: CodeContext) -> Compiled:
        return Compiled(["r = {" + ", ".join(f"{f!r}: r[{f!r}]" for f in self.fields) + "}"])
