"""The DSL's diagnostics.

Every user-facing error names where (file:line:col), what (a stable code) and,
where it helps, what to do. The compiler collects all diagnostics of a file
before failing, so a user fixes a file in one pass instead of one error per run.
"""

from __future__ import annotations

from dataclasses import dataclass

from uee.errors import UeeError


@dataclass(frozen=True, order=True)
class Position:
    """A 1-based place in a pipeline file."""

    path: str
    line: int
    col: int

    def __str__(self) -> str:
        return f"{self.path}:{self.line}:{self.col}"

    def shifted(self, line_delta: int, col: int) -> Position:
        return Position(self.path, self.line + line_delta, col)


@dataclass(frozen=True)
class Diagnostic:
    """One problem found in a pipeline file."""

    code: str
    message: str
    pos: Position
    hint: str | None = None

    def render(self) -> str:
        text = f"{self.pos}: error[{self.code}]: {self.message}"
        return f"{text} ({self.hint})" if self.hint else text


class PipelineFileError(UeeError):
    """One or more diagnostics that make a set of pipeline files unusable."""

    code = "DSL_INVALID"

    def __init__(self, diagnostics: list[Diagnostic]) -> None:
        self.diagnostics = sorted(diagnostics, key=lambda d: d.pos)
        super().__init__("\n".join(d.render() for d in self.diagnostics))

    def render(self) -> str:
        return str(self)
