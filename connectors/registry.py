"""Connector plug-ins a pipeline can name with `source: {connector: {type: ...}}`.

Each entry maps a type name to the option keys it accepts (and which of them are
required). Connector implementations register here as they arrive; the DSL validates
against this table, so an unknown type or option is a compile-time error.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ConnectorSpec:
    type: str
    options: frozenset[str]
    required: frozenset[str]
    summary: str


SOURCE_CONNECTORS: dict[str, ConnectorSpec] = {}
