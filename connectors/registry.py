"""Connector plug-ins a pipeline can name: each connector is one module (its options schema
and its factory, a `SourceConnector`), registered here by one line. The language checks
`source: {<type>: {...}}` against this table, so an unknown type or option is a
compile-time error; the runtime builds sources from it. (Kafka is built in: the kernel
decodes its formats, and the runtime creates and watches its topics.)
"""

from __future__ import annotations

from uee.connectors import generator, http
from uee.connectors.base import SourceConnector

SOURCE_CONNECTORS: dict[str, SourceConnector] = {c.type: c for c in (
    generator.CONNECTOR,
    http.CONNECTOR,
)}
