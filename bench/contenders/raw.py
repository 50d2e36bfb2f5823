"""A plain confluent-kafka consume -> transform -> produce loop, as a user would hand-write it.

No commits at all (auto-commit off): the fastest loop, and one that loses or repeats records
when it stops. Its at-least-once sibling is `raw_alo`.
"""

from __future__ import annotations

import json
import uuid

from confluent_kafka import Consumer, Producer

from bench.contenders import report, spec


def main() -> None:
    work = spec()
    sink = work["sinks"][0]
    consumer = Consumer({
        "bootstrap.servers": work["bootstrap"], "group.id": f"bench-raw-{uuid.uuid4().hex[:8]}",
        "auto.offset.reset": "earliest", "session.timeout.ms": work["session_timeout_ms"],
        "enable.auto.commit": False,
    })
    producer = Producer({"bootstrap.servers": work["bootstrap"], "linger.ms": 5,
                         "queue.buffering.max.messages": 1_000_000})
    consumer.subscribe([work["source"]])
    seen = 0
    dumps = json.dumps
    while seen < work["records"]:
        for message in consumer.consume(1000, 0.5):
            if message.error():
                continue
            seen += 1
            record = json.loads(message.value() or b"null")
            if not (record["kind"] == "buy" and record["amount"] > 10):
                continue
            record["amount_cents"] = int(record["amount"] * 100)
            record["customer"] = record["customer"].upper()
            while True:
                try:
                    producer.produce(sink, dumps(record, separators=(",", ":")).encode(),
                                     message.key())
                    break
                except BufferError:
                    producer.poll(0.05)
        producer.poll(0)
    producer.flush(60)
    consumer.close()
    report(records=seen)


if __name__ == "__main__":
    main()
