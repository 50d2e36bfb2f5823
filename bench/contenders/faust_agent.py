"""An idiomatic Faust agent: `async for` over the stream, `await topic.send` per record."""

from __future__ import annotations

import asyncio
import json
import logging
import tempfile
import uuid

import faust

from bench.contenders import report, spec


def main() -> None:
    work = spec()
    count = work["records"]
    for noisy in ("faust", "mode", "aiokafka"):
        logging.getLogger(noisy).setLevel(logging.ERROR)
    app = faust.App(
        f"bench-faust-{uuid.uuid4().hex[:8]}", broker=f"kafka://{work['bootstrap']}",
        store="memory://", web_enabled=False, datadir=tempfile.mkdtemp(prefix="bench-faust-"),
        broker_session_timeout=work["session_timeout_ms"] / 1000, topic_partitions=3,
    )
    source_topic = app.topic(work["source"], value_serializer="raw")
    sink_topic = app.topic(work["sinks"][0], value_serializer="raw")
    seen = 0
    done = asyncio.Event()

    @app.agent(source_topic)
    async def process(stream: faust.StreamT[bytes]) -> None:
        nonlocal seen
        async for event in stream.events():
            seen += 1
            record = json.loads(event.value)
            if record["kind"] == "buy" and record["amount"] > 10:
                record["amount_cents"] = int(record["amount"] * 100)
                record["customer"] = record["customer"].upper()
                await sink_topic.send(key=event.key, value=json.dumps(
                    record, separators=(",", ":")).encode())
            if seen >= count:
                done.set()

    async def run() -> None:
        await app.start()
        await asyncio.wait_for(done.wait(), timeout=1800)
        await app.producer.flush()
        await app.stop()

    asyncio.run(run())
    report(records=seen)


if __name__ == "__main__":
    main()
