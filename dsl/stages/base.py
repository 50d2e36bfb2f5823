"""What every stage kind provides, in its own module: its spec (a frozen dataclass, the IR),
how it is read from a pipeline file, how a plan describes it, and the code it compiles to.

The language never imports the runtime: a stage's code is Python source over the record
`r`, and what it needs at run time (a schema validator, a state table) it asks of the
`CodeContext` the kernel gives it, by name.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

from uee.dsl.errors import Position
from uee.dsl.expr import Expr

if TYPE_CHECKING:
    from uee.dsl.loader import Node
    from uee.dsl.validate import Validator

# What a stage's code runs to drop the record it holds on purpose (filters, diff...).
DROP = ("_drops[s] += 1", "return")


@dataclass(frozen=True)
class Compiled:
    """A stage's code: `lines` run on `r`; a stage that yields several records (or none)
    leaves them in the list named `items`."""

    lines: list[str]
    items: str | None = None


class CodeContext(Protocol):
    """What the kernel's compiler offers a stage."""

    # The state table of the stage being compiled (`PlanNode.table`), for stages that keep
    # state; the runtime persists it under this name.
    state_name: str | None

    def expr(self, expr: Expr) -> str:
        """The expression as Python reading fields from `r`."""

    def bind(self, value: Any, prefix: str) -> str:
        """A name under which `value` is visible to the generated code."""

    def runtime(self, name: str) -> Any:
        """A helper of the runtime, by name: avro_validator, diff_state, python_results,
        explode_items."""


class StageSpec(ABC):
    """A stage of a pipeline. Subclasses are frozen dataclasses with `id` and `pos`."""

    kind: ClassVar[str]
    # The stage may change objects nested in the record, which other branches still share:
    # a branch holding it gets a deep copy (python stages).
    changes_nested: ClassVar[bool] = False
    # The stage keeps state per key, in a table named after its id (diff).
    keeps_state: ClassVar[bool] = False

    id: str
    pos: Position

    @classmethod
    @abstractmethod
    def parse(cls, v: Validator, stage_id: str, pos: Position, body: Node, what: str
              ) -> StageSpec | None:
        """The stage, or None after reporting what is wrong through `v`."""

    @property
    @abstractmethod
    def signature(self) -> tuple[Any, ...]:
        """Equal signatures mean the stages do the same thing to a record (the optimizer
        runs a shared prefix once)."""

    @abstractmethod
    def describe(self) -> str:
        """One line saying what the stage does, in the DSL's own words (normalized)."""

    @abstractmethod
    def compile(self, ctx: CodeContext) -> Compiled: ...

    def may_leave_json(self) -> bool:
        """True when the stage can put into a record a value JSON has no place for; records
        downstream of it are checked before fast encoding."""
        return False
