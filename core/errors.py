"""uee's root exception. Every part raises its own subclasses with a stable code; the CLI
turns any of them into one line (`error[CODE]: what happened, and what to do`)."""

from __future__ import annotations


class UeeError(Exception):
    """Root of every error uee raises on purpose; the CLI turns these into one-line messages."""

    code = "UEE_ERROR"

    def render(self) -> str:
        return f"error[{self.code}]: {self}"
