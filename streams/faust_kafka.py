"""Faust's Kafka transport, with end offsets that are right on every broker.

Faust's table recovery reads each changelog up to its end as ListOffsets(latest) reports
it. Tansu 0.6.0 answers that with the base offset of the partition's last record batch + 1,
so recovery stopped short of the last batch (a table of 3,000 came back as 2,998), and a
worker that restarts on its own RocksDB copy was refused outright: its store had applied
more than the end Faust was told ("persisted offset ... is higher than the last offset",
a ConsistencyError that stops recovery for good). The end offsets here are the larger of
ListOffsets and a Fetch's high watermark (`streams.topics.end_offsets`), as everywhere else
in uee.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

from faust.transport.drivers import aiokafka as faust_aiokafka
from faust.types import TP

from uee.streams.topics import end_offsets


def transport_for(bootstrap: str) -> type[faust_aiokafka.Transport]:
    """A Faust transport class whose consumer knows the true end of a partition."""

    class Consumer(faust_aiokafka.Consumer):
        async def highwaters(self, *partitions: TP) -> Mapping[TP, int]:
            listed: Mapping[TP, Any] = await super().highwaters(*partitions)
            fetched = await asyncio.to_thread(
                end_offsets, bootstrap, [(tp.topic, tp.partition) for tp in partitions])
            return {tp: max(listed.get(tp) or 0, fetched.get((tp.topic, tp.partition), 0))
                    for tp in partitions}

    class Transport(faust_aiokafka.Transport):
        pass

    Transport.Consumer = Consumer
    return Transport
