"""URNs: `uee::<provider>::<type>::<id>`, the one name a record keeps from its source on.

A record read from a source that knows its items' ids (the HTTP source's `id_field`)
carries its URN in the `uee.urn` header to every sink and to the DLQ, and a provider's
checkpoint records the last URN it delivered. Provider and type are names (letters,
digits, `.`, `_`, `-`); the id is anything printable without `::`, so that a URN always
splits back into its four parts (`uee::nvd::cve::CVE-2024-0001`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from uee.errors import UeeError

PREFIX = "uee"
SEPARATOR = "::"
HEADER = "uee.urn"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
_MAX_ID = 512


class UrnError(UeeError):
    code = "URN_INVALID"


@dataclass(frozen=True)
class Urn:
    provider: str
    type: str
    id: str

    def __post_init__(self) -> None:
        for part, value in (("provider", self.provider), ("type", self.type)):
            if not _NAME.match(value):
                raise UrnError(f"URN {part} {value!r} must start with a letter or digit and "
                               "hold only letters, digits, '.', '_' and '-'")
        problem = id_problem(self.id)
        if problem:
            raise UrnError(f"URN id {self.id!r} {problem}")

    def __str__(self) -> str:
        return SEPARATOR.join((PREFIX, self.provider, self.type, self.id))

    @classmethod
    def parse(cls, text: str) -> Urn:
        parts = text.split(SEPARATOR)
        if len(parts) != 4 or parts[0] != PREFIX:
            raise UrnError(f"{text!r} is not a URN: expected "
                           "uee::<provider>::<type>::<id>, e.g. uee::nvd::cve::CVE-2024-0001")
        return cls(parts[1], parts[2], parts[3])


def id_problem(value: str) -> str | None:
    """Why `value` cannot be a URN id, or None."""
    if not value:
        return "is empty"
    if SEPARATOR in value:
        return "contains '::'"
    if len(value) > _MAX_ID:
        return f"is longer than {_MAX_ID} characters"
    if not value.isprintable():
        return "holds a character that is not printable"
    return None


def check_name(value: str, part: str) -> str:
    """`value` as a URN provider or type, or UrnError (for option checks)."""
    Urn(value, "t", "x") if part == "provider" else Urn("p", value, "x")
    return value
