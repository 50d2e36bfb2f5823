"""A confluent-kafka loop that is at-least-once like uee: consume a batch, transform, produce,
flush (every record acknowledged), then commit the batch's offsets."""

from __future__ import annotations

import json
import uuid
from typing import Any

from confluent_kafka import Consumer, KafkaError, Producer, TopicPartition

from bench.contenders import report, spec


def main() -> None:
    work = spec()
    sink = work["sinks"][0]
    consumer = Consumer({
        "bootstrap.servers": work["bootstrap"], "group.id": f"bench-alo-{uuid.uuid4().hex[:8]}",
        "auto.offset.reset": "earliest", "session.timeout.ms": work["session_timeout_ms"],
        "enable.auto.commit": False,
    })
    failed: list[KafkaError] = []

    def on_delivery(error: KafkaError | None, _message: object) -> None:
        if error is not None:
            failed.append(error)

    producer = Producer({"bootstrap.servers": work["bootstrap"], "linger.ms": 5, "acks": "all",
                         "queue.buffering.max.messages": 1_000_000})
    consumer.subscribe([work["source"]])
    seen = 0
    dumps = json.dumps
    while seen < work["records"]:
        batch = consumer.consume(5000, 0.5)
        offsets: dict[tuple[Any, Any], int] = {}
        for message in batch:
            if message.error():
                continue
            seen += 1
            offsets[(message.topic(), message.partition())] = (message.offset() or 0) + 1
            record = json.loads(message.value() or b"null")
            if not (record["kind"] == "buy" and record["amount"] > 10):
                continue
            record["amount_cents"] = int(record["amount"] * 100)
            record["customer"] = record["customer"].upper()
            while True:
                try:
                    producer.produce(sink, dumps(record, separators=(",", ":")).encode(),
                                     message.key(), on_delivery=on_delivery)
                    break
                except BufferError:
                    producer.poll(0.05)
        if producer.flush(60) or failed:
            raise SystemExit(f"records not delivered: {failed[:1]}; nothing committed")
        if offsets:
            consumer.commit(offsets=[TopicPartition(t, p, o) for (t, p), o in offsets.items()],
                            asynchronous=False)
    consumer.close()
    report(records=seen)


if __name__ == "__main__":
    main()
