"""The work every contender does, defined once: input records, the transform, the expected output.

filter: kind == "buy" and amount > 10
map:    amount_cents = int(amount * 100), customer = upper(customer)
"""

from __future__ import annotations

import json
import random
from typing import Any

INPUT_TOPIC_PREFIX = "bench.input"
UEE_PIPELINE = """\
pipeline: bench-uee
source:
  kafka: {{topic: {source}}}
stages:
  - filter: kind == "buy" and amount > 10
  - map:
      amount_cents: int(amount * 100)
      customer: upper(customer)
sink:
  kafka: {{topic: {sink}}}
"""


def input_records(count: int, seed: int = 42) -> list[bytes]:
    """~90-byte JSON records, the same for a given seed."""
    rng = random.Random(seed)
    dumps = json.JSONEncoder(separators=(",", ":")).encode
    return [
        dumps({
            "id": i,
            "kind": "buy" if rng.random() < 0.6 else "sell",
            "amount": round(rng.uniform(1, 100), 2),
            "customer": f"customer-{rng.randrange(10_000):05d}",
            "ts": 1_767_225_600_000 + i,
        }).encode()
        for i in range(count)
    ]


def transform(record: dict[str, Any]) -> dict[str, Any] | None:
    """The reference implementation every contender must agree with."""
    if not (record["kind"] == "buy" and record["amount"] > 10):
        return None
    record["amount_cents"] = int(record["amount"] * 100)
    record["customer"] = record["customer"].upper()
    return record


def expected_output(values: list[bytes]) -> list[str]:
    """Sorted canonical JSON of the records the output topic must hold."""
    out = []
    for value in values:
        result = transform(json.loads(value))
        if result is not None:
            out.append(json.dumps(result, sort_keys=True))
    return sorted(out)
