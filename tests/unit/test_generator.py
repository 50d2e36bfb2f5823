from __future__ import annotations

import json
import time

from uee.connectors.generator import GeneratorSource, generate_orders


def test_same_seed_same_records() -> None:
    assert list(generate_orders(7, 50)) == list(generate_orders(7, 50))
    assert list(generate_orders(7, 50)) != list(generate_orders(8, 50))


def test_source_emits_count_records_then_is_exhausted_once_committed() -> None:
    source = GeneratorSource("g", count=1200, seed=1, rate=None)
    source.open()
    batches = []
    while (batch := source.poll(500, 0.01)) is not None:
        batches.append(batch)
    assert [len(b) for b in batches] == [500, 500, 200]
    assert not source.exhausted  # emitted, but not yet committed
    for batch in batches:
        source.commit(batch)
    assert source.exhausted
    ids = [json.loads(v)["order_id"] for b in batches for v in b.values]
    assert ids == list(range(1200))
    assert batches[0].keys[3] == b"3"


def test_rate_limits_emission() -> None:
    source = GeneratorSource("g", count=10_000, seed=1, rate=200.0)
    source.open()
    started = time.monotonic()
    emitted = 0
    while time.monotonic() - started < 0.5:
        batch = source.poll(10_000, 0.01)
        emitted += len(batch) if batch else 0
    # 0.5 s at 200/s is ~100 records, far from the 10,000 available
    assert 50 <= emitted <= 160


def test_generated_records_match_the_order_schema() -> None:
    from pathlib import Path

    import fastavro

    schema = fastavro.schema.load_schema(
        str(Path(__file__).resolve().parents[2] / "schemas" / "order.avsc"))
    for record in generate_orders(3, 200):
        fastavro.validate(record, schema, raise_errors=True)
