"""A plain confluent-kafka consume -> transform -> produce loop, as a user would hand-write it."""

from __future__ import annotations

import json
import sys
import time
import uuid

from confluent_kafka import Consumer, Producer


def main() -> None:
    bootstrap, source, sink, count = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    consumer = Consumer({
        "bootstrap.servers": bootstrap, "group.id": f"bench-raw-{uuid.uuid4().hex[:8]}",
        "auto.offset.reset": "earliest", "session.timeout.ms": 6000,
    })
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5,
                         "queue.buffering.max.messages": 1_000_000})
    consumer.subscribe([source])
    seen, first = 0, None
    dumps = json.dumps
    while seen < count:
        messages = consumer.consume(1000, 0.5)
        if messages and first is None:
            first = time.perf_counter()
        for message in messages:
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
    assert first is not None
    seconds = time.perf_counter() - first
    consumer.close()
    print(json.dumps({"records": seen, "seconds": seconds}))


if __name__ == "__main__":
    main()
