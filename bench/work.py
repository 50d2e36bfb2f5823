"""The work every contender does, defined once: input records, the transforms, the expected output.

Three cases over the same input records:
- json:   filter kind == "buy" and amount > 10; map amount_cents = int(amount * 100),
          customer = upper(customer); JSON in, JSON out.
- avro:   the same filter and map, Avro in and out (schemaless, fastavro), and the output
          validated against its schema before it is written.
- shared: 4 pipelines on one source sharing a 3-stage prefix (filter, map, filter), each then
          keeping a quarter of the records (id % 4) and upper-casing the customer.

This module is imported by contenders that run in other virtual environments (Quix Streams
has its own): it uses the standard library only.
"""

from __future__ import annotations

import io
import json
import random
from collections.abc import Callable
from typing import Any

INPUT_TOPIC_PREFIX = "bench.input"
SHARED_PIPELINES = 4

# A group of its own each run (`group`): the json case runs again on the same source for the
# scale ratio, and a run in the group of the one before would find its offsets committed.
UEE_JSON = """\
pipeline: bench-uee
source:
  kafka: {{topic: {source}, group: {group}}}
stages:
  - filter: kind == "buy" and amount > 10
  - map:
      amount_cents: int(amount * 100)
      customer: upper(customer)
sink:
  kafka: {{topic: {sink}}}
"""

UEE_AVRO = """\
pipeline: bench-uee-avro
source:
  kafka: {{topic: {source}, format: avro, schema: order_in.avsc}}
stages:
  - filter: kind == "buy" and amount > 10
  - map:
      amount_cents: int(amount * 100)
      customer: upper(customer)
  - validate: {{schema: order_out.avsc}}
sink:
  kafka: {{topic: {sink}, format: avro, schema: order_out.avsc}}
"""

UEE_SHARED = """\
- pipeline: bench-shared-{n}
  source:
    kafka: {{topic: {source}}}
  stages:
    - filter: kind == "buy"
    - map: {{amount_cents: int(amount * 100)}}
    - filter: amount > 10
    - filter: id % {count} == {n}
    - map: {{customer: upper(customer)}}
  sink:
    kafka: {{topic: {sink}}}
"""

ORDER_IN: dict[str, Any] = {
    "type": "record", "name": "BenchOrder", "namespace": "uee.bench",
    "fields": [
        {"name": "id", "type": "long"},
        {"name": "kind", "type": "string"},
        {"name": "amount", "type": "double"},
        {"name": "customer", "type": "string"},
        {"name": "ts", "type": "long"},
    ],
}  # fmt: skip
ORDER_OUT: dict[str, Any] = {
    **ORDER_IN, "name": "BenchOrderOut",
    "fields": [*ORDER_IN["fields"], {"name": "amount_cents", "type": "long"}],
}


def input_dicts(count: int, seed: int = 42) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    return [
        {
            "id": i,
            "kind": "buy" if rng.random() < 0.6 else "sell",
            "amount": round(rng.uniform(1, 100), 2),
            "customer": f"customer-{rng.randrange(10_000):05d}",
            "ts": 1_767_225_600_000 + i,
        }
        for i in range(count)
    ]


def input_records(count: int, seed: int = 42) -> list[bytes]:
    """~90-byte JSON records, the same for a given seed."""
    dumps = json.JSONEncoder(separators=(",", ":")).encode
    return [dumps(record).encode() for record in input_dicts(count, seed)]


def transform(record: dict[str, Any]) -> dict[str, Any] | None:
    """The reference implementation every contender must agree with."""
    if not (record["kind"] == "buy" and record["amount"] > 10):
        return None
    record["amount_cents"] = int(record["amount"] * 100)
    record["customer"] = record["customer"].upper()
    return record


def canonical(record: dict[str, Any]) -> str:
    return json.dumps(record, sort_keys=True)


def expected_output(values: list[bytes]) -> list[str]:
    """Sorted canonical JSON of the records the output topic must hold."""
    out = []
    for value in values:
        result = transform(json.loads(value))
        if result is not None:
            out.append(canonical(result))
    return sorted(out)


def expected_shared(values: list[bytes]) -> list[list[str]]:
    """For each of the shared-prefix pipelines, what its sink must hold."""
    outputs: list[list[str]] = [[] for _ in range(SHARED_PIPELINES)]
    for value in values:
        result = transform(json.loads(value))
        if result is not None:
            outputs[result["id"] % SHARED_PIPELINES].append(canonical(result))
    return [sorted(out) for out in outputs]


def avro_codec(schema: dict[str, Any]) -> tuple[Callable[[dict[str, Any]], bytes],
                                                 Callable[[bytes], dict[str, Any]]]:
    """Schemaless Avro write and read for a schema (fastavro is imported only when used)."""
    import fastavro

    parsed = fastavro.parse_schema(schema)

    def write(record: dict[str, Any]) -> bytes:
        buffer = io.BytesIO()
        fastavro.schemaless_writer(buffer, parsed, record)
        return buffer.getvalue()

    def read(value: bytes) -> dict[str, Any]:
        record = fastavro.schemaless_reader(io.BytesIO(value), parsed, None)
        assert isinstance(record, dict)
        return record

    return write, read
