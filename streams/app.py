"""The Faust worker: one Faust app per `uee run`, one Faust service per pipeline agent.

Faust gives the worker its lifecycle (start, graceful stop, and the tables,
web endpoint and sensors that later features hang on). The records themselves
do not go through Faust's per-event `Stream`: measured here, that path tops out
near 4k records/s. Each `AgentService` instead drives a `BatchAgent` on a
dedicated thread, a batch per step, so the event loop stays free for Faust.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import faust
from mode import Service

from streams.agent import BatchAgent
from streams.settings import Settings

log = logging.getLogger("uee")


def app_id_for(segment_names: list[str]) -> str:
    """Deterministic from the segments it runs, and short enough for a group id."""
    joined = "+".join(sorted(name.removeprefix("uee.") for name in segment_names))
    if len(joined) <= 80:
        return f"uee.worker.{joined}"
    return f"uee.worker.{hashlib.sha1(joined.encode()).hexdigest()[:16]}"


def create_app(app_id: str, settings: Settings) -> faust.App:
    for noisy in ("faust", "mode", "aiokafka", "kafka"):
        logging.getLogger(noisy).setLevel(logging.ERROR)
    datadir = Path(tempfile.gettempdir()) / "uee" / app_id
    datadir.parent.mkdir(parents=True, exist_ok=True)
    return faust.App(
        app_id,
        broker=f"kafka://{settings.bootstrap}",
        store="memory://",
        datadir=str(datadir),
        web_enabled=False,
        broker_session_timeout=settings.session_timeout_ms / 1000,
        broker_heartbeat_interval=max(0.25, settings.session_timeout_ms / 5000),
        topic_partitions=settings.topic_partitions,
        topic_replication_factor=settings.replication_factor,
    )


class AgentService(Service):
    """Hosts one BatchAgent: opens it, steps it on its thread until stopped, closes it."""

    def __init__(self, agent: BatchAgent, **kwargs: Any) -> None:
        self.agent = agent
        self.error: BaseException | None = None
        self._thread = ThreadPoolExecutor(1, thread_name_prefix=f"uee-{agent.name}")
        super().__init__(**kwargs)

    @property
    def label(self) -> str:
        return f"agent {self.agent.name} ({', '.join(self.agent.segment.pipelines)})"

    async def on_start(self) -> None:
        await self._on_thread(self.agent.open)

    async def _on_thread(self, fn: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self._thread, fn)

    @Service.task
    async def _drive(self) -> None:
        try:
            while not self.should_stop:
                await self._on_thread(self.agent.step)
        except Exception as exc:  # surfaced by the runner as a one-line error
            self.error = exc
            log.error("agent %s stopped: %s", self.agent.name, exc)

    async def on_stop(self) -> None:
        await self._on_thread(self.agent.close)
        self._thread.shutdown(wait=True)
