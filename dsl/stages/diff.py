"""`diff: {key: <expr>, fields: [...]}`: passes a record on only when a watched field
changed since the last record of its key, and says which (`_changed`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from uee.dsl.errors import Position
from uee.dsl.expr import Expr
from uee.dsl.stages.base import DROP, CodeContext, Compiled, StageSpec

if TYPE_CHECKING:
    from uee.dsl.loader import Node
    from uee.dsl.validate import Validator

CHANGED_FIELD = "_changed"  # what a diff stage adds: the names of the fields that changed


@dataclass(frozen=True)
class DiffStage(StageSpec):
    id: str
    key: Expr
    fields: tuple[str, ...] | None
    pos: Position = field(compare=False)
    kind = "diff"
    keeps_state = True

    @classmethod
    def parse(cls, v: Validator, stage_id: str, pos: Position, body: Node, what: str
              ) -> DiffStage | None:
        spec, keys_ok = v.section(body, {"key", "fields"}, {"key"}, what)
        if spec is None:
            return None
        key_node, fields_node = spec.get("key"), spec.get("fields")
        key = v.expr(key_node, f"the key of {what}") if key_node else None
        fields = v.field_list(fields_node, f"the fields of {what}") if fields_node else None
        if not keys_ok or key is None or (fields_node is not None and fields is None):
            return None
        return cls(stage_id, key, fields, pos)

    @property
    def signature(self) -> tuple[Any, ...]:
        return ("diff", self.key.normalized, tuple(sorted(self.fields)) if self.fields else None)

    def describe(self) -> str:
        fields = f" fields {', '.join(self.fields)}" if self.fields else ""
        return f"diff: key {self.key.normalized}{fields}"

    def compile(self, ctx: CodeContext) -> Compiled:
        state = ctx.bind(ctx.runtime("diff_state")(self.fields, ctx.state_name or self.id),
                         "diff")
        return Compiled([f"_c = {state}.changes({ctx.expr(self.key)}, r)",
                         "if _c is None:", *("    " + d for d in DROP),
                         f"r[{CHANGED_FIELD!r}] = _c"])
