"""Quix Streams, written as its documentation shows: a StreamingDataFrame with filter and apply.

Runs in its own virtual environment (`make bench` creates .venv-quix with the pinned
version), since Quix Streams pins other versions of confluent-kafka and pydantic than uee.
"""

from __future__ import annotations

import tempfile
import time
import uuid
from typing import Any

from quixstreams import Application
from quixstreams.models.serializers.avro import AvroDeserializer, AvroSerializer

from bench.contenders import report, spec
from bench.work import ORDER_IN, ORDER_OUT


def produced_now(_value: Any, _key: Any, _timestamp: int, _headers: Any) -> int:
    return int(time.time() * 1000)


def enrich(record: dict[str, Any]) -> dict[str, Any]:
    return {**record, "amount_cents": int(record["amount"] * 100),
            "customer": record["customer"].upper()}


def main() -> None:
    work = spec()
    extra: dict[str, Any] = {"session.timeout.ms": work["session_timeout_ms"]}
    extra.update(work.get("consumer_config", {}))
    app = Application(
        broker_address=work["bootstrap"], consumer_group=f"bench-quix-{uuid.uuid4().hex[:8]}",
        auto_offset_reset="earliest", state_dir=tempfile.mkdtemp(prefix="bench-quix-"),
        consumer_extra_config=extra, loglevel="WARNING",
    )
    if work["case"] == "avro":
        import fastavro.validation

        out_schema = fastavro.parse_schema(ORDER_OUT)
        source = app.topic(work["source"], value_deserializer=AvroDeserializer(ORDER_IN))
        sink = app.topic(work["sinks"][0], value_serializer=AvroSerializer(ORDER_OUT))
    else:
        source = app.topic(work["source"], value_deserializer="json")
        sink = app.topic(work["sinks"][0], value_serializer="json")
    sdf = app.dataframe(source)
    sdf = sdf.filter(lambda r: r["kind"] == "buy" and r["amount"] > 10)
    sdf = sdf.apply(enrich)
    if work["case"] == "avro":
        sdf = sdf.update(lambda r: fastavro.validation.validate(r, out_schema, raise_errors=True))
    # Quix gives an output record its input record's timestamp; the bench times every
    # contender by when its records were produced, so stamp them with the time of producing.
    sdf = sdf.set_timestamp(produced_now)
    sdf.to_topic(sink)
    app.run(count=work["outputs"], collect=False)
    report(records=work["records"])


if __name__ == "__main__":
    main()
