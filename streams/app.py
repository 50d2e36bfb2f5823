"""The Faust worker: one Faust app per `uee run`, one Faust service per pipeline agent.

Faust gives the worker its lifecycle (start, graceful stop, and the tables,
web endpoint and sensors that later features hang on). The records themselves
do not go through Faust's per-event `Stream`: measured here, that path tops out
near 4k records/s. Each `AgentService` instead drives a `BatchAgent` on a
dedicated thread, a batch per step, so the event loop stays free for Faust.
"""

from __future__ import annotations

import asyncio
import logging
import os
import queue
import threading
from collections.abc import Callable
from typing import Any

import faust
from mode import Service

from uee.streams import security
from uee.streams.agent import BatchAgent
from uee.streams.faust_kafka import transport_for
from uee.streams.faust_tables import GlobalTable
from uee.streams.settings import Settings

log = logging.getLogger("uee")


def create_app(app_id: str, settings: Settings, datadir: str) -> faust.App:
    """One Faust app per deployment: every worker of it joins the same group, so the state
    tables (and, next, leadership) are the deployment's. RocksDB keeps the tables (in this
    worker's slot of the state folder), changelogged to Kafka."""
    if "UEE_LOG_LEVEL" not in os.environ:
        # uee reports what goes wrong in its own words; the libraries' logs are for debugging.
        for noisy in ("faust", "mode", "aiokafka", "kafka", "asyncio"):
            logging.getLogger(noisy).setLevel(logging.CRITICAL)
    app = faust.App(
        app_id,
        broker=f"kafka://{settings.bootstrap}",
        store="rocksdb://",
        GlobalTable=GlobalTable,  # its persisted offsets never run ahead of its store
        datadir=datadir,
        web_enabled=False,
        # Faust's consumer heartbeats from the event loop, which its own start-up blocks for
        # seconds: it keeps a session of 3 s at least, whatever the agents' consumers use.
        broker_session_timeout=max(3000, settings.session_timeout_ms) / 1000,
        broker_heartbeat_interval=max(0.25, settings.session_timeout_ms / 5000),
        topic_partitions=settings.topic_partitions,
        topic_replication_factor=settings.replication_factor,
        broker_credentials=security.faust_credentials(settings),  # TLS and SASL, as librdkafka's
    )
    app.transport = transport_for(str(settings.bootstrap))(app.conf.broker_consumer, app)
    return app


class AgentThread:
    """One daemon thread that runs an agent's blocking calls in order.

    Daemon, unlike a ThreadPoolExecutor's: if librdkafka blocks in a call while the broker
    is gone, `uee` can still exit after its shutdown deadline. Nothing is lost by that: a
    batch is committed only after its records were acknowledged.
    """

    def __init__(self, name: str) -> None:
        self._calls: queue.SimpleQueue[tuple[Callable[[], Any], asyncio.Future[Any]] | None]
        self._calls = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._work, name=name, daemon=True)
        self._thread.start()

    def _work(self) -> None:
        while (item := self._calls.get()) is not None:
            call, future = item
            loop = future.get_loop()
            try:
                result = call()
            except BaseException as exc:  # handed to the awaiting coroutine
                loop.call_soon_threadsafe(_settle, future, None, exc)
            else:
                loop.call_soon_threadsafe(_settle, future, result, None)

    def run(self, call: Callable[[], Any]) -> asyncio.Future[Any]:
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._calls.put((call, future))
        return future

    def shutdown(self) -> None:
        self._calls.put(None)


def _settle(future: asyncio.Future[Any], result: Any, error: BaseException | None) -> None:
    if future.cancelled():
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(result)


class AgentService(Service):
    """Hosts one BatchAgent: opens it, steps it on its thread until stopped, closes it."""

    def __init__(self, agent: BatchAgent, **kwargs: Any) -> None:
        self.agent = agent
        self.error: BaseException | None = None
        self._thread = AgentThread(f"uee-{agent.name}")
        super().__init__(**kwargs)

    @property
    def label(self) -> str:
        return f"agent {self.agent.name} ({', '.join(self.agent.segment.pipelines)})"

    async def on_start(self) -> None:
        await self._thread.run(self.agent.open)

    @Service.task
    async def _drive(self) -> None:
        try:
            await self._thread.run(self.agent.resume_state)
            while not self.should_stop:
                await self._thread.run(self.agent.step)
        except Exception as exc:  # surfaced by the runner as a one-line error
            self.error = exc
            log.debug("agent %s stopped: %s", self.agent.name, exc)  # reported by the runner

    async def on_stop(self) -> None:
        self.agent.request_stop()
        try:
            await self._thread.run(self.agent.close)
        finally:
            self._thread.shutdown()
