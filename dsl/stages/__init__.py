"""Stage kinds, one module each, found by name. Adding a kind is a new module with its
`StageSpec` subclass and one line here; the validator, the optimizer, the plan and the
kernel's compiler ask the kind itself. (`route` ends a pipeline and chooses its sinks:
it is part of the pipeline's ending, in `uee.dsl.ir`, not a stage kind.)"""

from uee.dsl.stages.base import CodeContext, Compiled, StageSpec
from uee.dsl.stages.diff import CHANGED_FIELD, DiffStage
from uee.dsl.stages.drop import DropStage
from uee.dsl.stages.explode import ExplodeStage
from uee.dsl.stages.filter import FilterStage
from uee.dsl.stages.map import MapStage
from uee.dsl.stages.python import PythonStage
from uee.dsl.stages.rename import RenameStage
from uee.dsl.stages.select import SelectStage
from uee.dsl.stages.validate import ValidateStage

KINDS: dict[str, type[StageSpec]] = {kind.kind: kind for kind in (
    FilterStage, MapStage, SelectStage, DropStage, RenameStage, ValidateStage, DiffStage,
    PythonStage, ExplodeStage,
)}

__all__ = [
    "CHANGED_FIELD", "KINDS", "CodeContext", "Compiled", "DiffStage", "DropStage",
    "ExplodeStage", "FilterStage", "MapStage", "PythonStage", "RenameStage", "SelectStage",
    "StageSpec", "ValidateStage",
]
