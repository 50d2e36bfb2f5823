"""An idiomatic Faust agent: `async for` over the stream, `await topic.send` per record."""

from __future__ import annotations

import asyncio
import json
import logging
import sys
import tempfile
import time
import uuid

import faust


def main() -> None:
    bootstrap, source, sink, count = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    for noisy in ("faust", "mode", "aiokafka"):
        logging.getLogger(noisy).setLevel(logging.ERROR)
    app = faust.App(
        f"bench-faust-{uuid.uuid4().hex[:8]}", broker=f"kafka://{bootstrap}",
        store="memory://", web_enabled=False, datadir=tempfile.mkdtemp(prefix="bench-faust-"),
        broker_session_timeout=6, topic_partitions=3,
    )
    source_topic = app.topic(source, value_serializer="raw")
    sink_topic = app.topic(sink, value_serializer="raw")
    state = {"seen": 0, "first": 0.0}
    done = asyncio.Event()

    @app.agent(source_topic)
    async def process(stream: faust.StreamT[bytes]) -> None:
        async for event in stream.events():
            if state["seen"] == 0:
                state["first"] = time.perf_counter()
            state["seen"] += 1
            record = json.loads(event.value)
            if record["kind"] == "buy" and record["amount"] > 10:
                record["amount_cents"] = int(record["amount"] * 100)
                record["customer"] = record["customer"].upper()
                await sink_topic.send(key=event.key, value=json.dumps(
                    record, separators=(",", ":")).encode())
            if state["seen"] >= count:
                done.set()

    async def run() -> None:
        await app.start()
        await asyncio.wait_for(done.wait(), timeout=1800)
        await app.producer.flush()
        seconds = time.perf_counter() - state["first"]
        print(json.dumps({"records": state["seen"], "seconds": seconds}), flush=True)
        await app.stop()

    asyncio.run(run())


if __name__ == "__main__":
    main()
