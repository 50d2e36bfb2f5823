"""`rename: {old: new, ...}`: renames fields simultaneously."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from uee.dsl.errors import Position
from uee.dsl.stages.base import CodeContext, Compiled, StageSpec

if TYPE_CHECKING:
    from uee.dsl.loader import Node
    from uee.dsl.validate import Validator


@dataclass(frozen=True)
class RenameStage(StageSpec):
    """Every old name is read before any new one is written."""

    id: str
    renames: tuple[tuple[str, str], ...]
    pos: Position = field(compare=False)
    kind = "rename"

    @classmethod
    def parse(cls, v: Validator, stage_id: str, pos: Position, body: Node, what: str
              ) -> RenameStage | None:
        spec = v.mapping(body, what)
        if spec is None:
            return None
        if not spec.entries:
            v.error("DSL_WRONG_TYPE", f"{what} must rename at least one field", spec.pos)
            return None
        renames: list[tuple[str, str]] = []
        ok = True
        for old, key_pos, value in spec:
            new = v.string(value, f"the new name of '{old}' in {what}")
            if (new is None or not v.field_name(old, key_pos, what)
                    or not v.field_name(new, value.pos, what)):
                ok = False
            elif new in (n for _, n in renames):
                v.error("DSL_DUPLICATE_FIELD", f"two fields are renamed to '{new}' in {what}",
                        value.pos)
                ok = False
            else:
                renames.append((old, new))
        return cls(stage_id, tuple(renames), pos) if ok else None

    @property
    def signature(self) -> tuple[Any, ...]:
        return ("rename", tuple(sorted(self.renames)))

    def describe(self) -> str:
        return "rename: " + ", ".join(f"{old} -> {new}" for old, new in self.renames)

    def compile(self, ctx: CodeContext) -> Compiled:
        renames = sorted(self.renames, key=lambda pair: pair[1])  # see MapStage.compile
        pops = ", ".join(f"r.pop({old!r})" for old, _ in renames)
        lines = [f"_t = ({pops},)"]
        lines += [f"r[{new!r}] = _t[{n}]" for n, (_, new) in enumerate(renames)]
        return Compiled(lines)
