"""`python: module:function`: a user function record -> record | None | list of records."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from uee.dsl.errors import Position
from uee.dsl.resolve import ResolveError, resolve_function
from uee.dsl.stages.base import CodeContext, Compiled, StageSpec

if TYPE_CHECKING:
    from uee.dsl.loader import Node
    from uee.dsl.validate import Validator


@dataclass(frozen=True)
class PythonStage(StageSpec):
    id: str
    target: str  # "package.module:function"
    origin: str  # the file the module came from: equal text may name different functions
    function: Any = field(compare=False, hash=False, repr=False)
    pos: Position = field(compare=False)
    kind = "python"
    changes_nested = True

    @classmethod
    def parse(cls, v: Validator, stage_id: str, pos: Position, body: Node, what: str
              ) -> PythonStage | None:
        target = v.string(body, what)
        if target is None:
            return None
        try:
            function, origin = resolve_function(target, body.pos.path)
        except ResolveError as exc:
            v.error(exc.code, f"{exc} in {what}", body.pos, exc.hint)
            return None
        return cls(stage_id, target, origin, function, pos)

    @property
    def signature(self) -> tuple[Any, ...]:
        return ("python", self.target, self.origin)

    def describe(self) -> str:
        return f"python: {self.target}"

    def compile(self, ctx: CodeContext) -> Compiled:
        function = ctx.bind(self.function, "py")
        results = ctx.bind(ctx.runtime("python_results"), "python_results")
        return Compiled([f"_items = {results}({function}(r))"], "_items")

    def may_leave_json(self) -> bool:
        return True
