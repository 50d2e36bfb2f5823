"""`drop: [field, ...]`: removes fields (absent ones are no error)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from uee.dsl.errors import Position
from uee.dsl.stages.base import CodeContext, Compiled, StageSpec

if TYPE_CHECKING:
    from uee.dsl.loader import Node
    from uee.dsl.validate import Validator


@dataclass(frozen=True)
class DropStage(StageSpec):
    id: str
    fields: tuple[str, ...]
    pos: Position = field(compare=False)
    kind = "drop"

    @classmethod
    def parse(cls, v: Validator, stage_id: str, pos: Position, body: Node, what: str
              ) -> DropStage | None:
        fields = v.field_list(body, what)
        return cls(stage_id, fields, pos) if fields else None

    @property
    def signature(self) -> tuple[Any, ...]:
        return ("drop", tuple(sorted(self.fields)))

    def describe(self) -> str:
        return f"drop: {', '.join(self.fields)}"

    def compile(self, ctx: CodeContext) -> Compiled:
        return Compiled([f"r.pop({f!r}, None)" for f in self.fields])
