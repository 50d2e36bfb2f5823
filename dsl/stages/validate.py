"""`validate: {schema: x.avsc}`: a record that does not match the Avro schema fails."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from uee.dsl.errors import Position
from uee.dsl.resolve import AvroSchema
from uee.dsl.stages.base import CodeContext, Compiled, StageSpec

if TYPE_CHECKING:
    from uee.dsl.loader import Node
    from uee.dsl.validate import Validator


@dataclass(frozen=True)
class ValidateStage(StageSpec):
    id: str
    schema: AvroSchema
    pos: Position = field(compare=False)
    kind = "validate"

    @classmethod
    def parse(cls, v: Validator, stage_id: str, pos: Position, body: Node, what: str
              ) -> ValidateStage | None:
        spec, keys_ok = v.section(body, {"schema"}, {"schema"}, what)
        if spec is None:
            return None
        schema = v.record_schema(spec.get("schema"), f"the schema of {what}")
        return cls(stage_id, schema, pos) if schema and keys_ok else None

    @property
    def signature(self) -> tuple[Any, ...]:
        return ("validate", self.schema.fingerprint)

    def describe(self) -> str:
        return f"validate: {Path(self.schema.path).name}"

    def compile(self, ctx: CodeContext) -> Compiled:
        validator = ctx.bind(ctx.runtime("avro_validator")(self.schema), "validate")
        return Compiled([f"{validator}(r)"])
