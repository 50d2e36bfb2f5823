"""An agent's providers: their transitions logged and persisted, their checkpoint rows.

One `Provider` per pipeline of the agent (see `streams.provider`). Transitions come from
the loop (assignment, drain), from delivery through the sensors (WAITING_BACKOFF while a
batch is held), from the flow gate (PAUSED) and from the source (WAITING_BACKOFF while it
waits to read again). Each is one JSON line on the `uee.state` logger and a row in the
`providers` table; checkpoints add a row per pipeline to `checkpoints`.
"""

from __future__ import annotations

import functools
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from uee.streams.provider import P, Provider, Transition, now_iso
from uee.streams.sensors import Sensor, StatsSensor
from uee.streams.state import CHECKPOINTS, PIPELINES, PROVIDERS
from uee.streams.statelog import StateView, StateWriter

log = logging.getLogger("uee.state")


@dataclass
class StateContext:
    """What a worker gives its agents to keep state: who it is, where rows go, and (once
    the Faust app exists) how to read them back."""

    worker: str
    writer: StateWriter
    plan_hash: str
    origin: str  # the cluster's and the state topic's ids (streams.worker.StateSlot.bind)
    view: StateView | None = None


class ProviderTracker(Sensor):
    def __init__(self, pipelines: tuple[str, ...], stats: StatsSensor,
                 state: StateContext | None,
                 on_change: Callable[[], None] | None = None) -> None:
        self._stats = stats
        self._state = state
        self._on_change = on_change
        self.providers = {p: Provider(p, self._transition, functools.partial(self.counts, p))
                          for p in pipelines}
        # Until the agent has read its providers' rows back (streams.restore), their new rows
        # wait here: written at once, they could overwrite what the last run left (a backoff
        # to wait out) before it is read.
        self._held: dict[str, dict[str, Any]] | None = {}
        # The agent's sensors, told each transition (scope `provider:<pipeline>`).
        self.report: Callable[[str, str, str], None] | None = None

    def restored(self) -> None:
        """The last run's rows were read: this run's rows go to the table from now on."""
        held, self._held = self._held or {}, None
        if self._state is not None and held:
            for pipeline, row in held.items():
                self._state.writer.put(PROVIDERS, pipeline, row)
            self._state.writer.send()

    def counts(self, pipeline: str) -> dict[str, int]:
        s = self._stats.stats[pipeline]
        return {"in": s.records_in, "out": s.records_out, "filtered": s.filtered,
                "dead_lettered": s.dead_lettered}

    def move(self, pipelines: Any, state: P, trigger: str, reason: str,
             until: float | None = None, unless: tuple[P, ...] = ()) -> None:
        """Move these providers (skipping those in `unless`)."""
        for name in pipelines:
            provider = self.providers[name]
            if provider.state not in unless:
                provider.to(state, trigger, reason, until)

    def move_all(self, state: P, trigger: str, reason: str, until: float | None = None,
                 unless: tuple[P, ...] = ()) -> None:
        self.move(self.providers, state, trigger, reason, until, unless)

    def _transition(self, provider: Provider, transition: Transition) -> None:
        log.info("%s", json.dumps(transition.as_json()))
        if self.report is not None:
            self.report(f"provider:{provider.pipeline}", transition.to, transition.reason)
        if self._state is not None:
            row = provider.row(self._state.worker, self.counts(provider.pipeline))
            if self._held is not None:
                self._held[provider.pipeline] = row
            else:
                self._state.writer.put(PROVIDERS, provider.pipeline, row)
                self._state.writer.send()  # durable by the next checkpoint at the latest
        if self._on_change is not None:
            self._on_change()

    # -- rows ------------------------------------------------------------------------------

    def register(self, rows: dict[str, dict[str, Any]]) -> None:
        """The pipeline registry: what `uee status` and `uee dlq list` find without files."""
        if self._state is not None:
            for pipeline, row in rows.items():
                self._state.writer.put(PIPELINES, pipeline,
                                       {**row, "worker": self._state.worker, "at": now_iso()})

    def checkpoint(self, cursor: Any, records: int) -> None:
        """Rows for a checkpoint covering `records` more records, up to `cursor`."""
        if self._state is None:
            return
        at = now_iso()
        for name, provider in self.providers.items():
            counts = self.counts(name)
            self._state.writer.put(CHECKPOINTS, name, {
                "pipeline": name, "cursor": cursor, "urn": provider.last_urn,
                "records": counts, "covered": records, "at": at,
                "worker": self._state.worker})
            self._state.writer.put(PROVIDERS, name, provider.row(self._state.worker, counts))

    # -- the delivery's and the gate's states, as transitions ---------------------------

    def on_state_change(self, scope: str, state: str, reason: str) -> None:
        if scope.startswith("agent:"):
            # Paused, waiting for a permit, not started or stopped: a provider stays so (a
            # checkpoint may wait for the broker in any of these).
            unless = (P.PAUSED, P.WAITING_QUOTA, P.IDLE, P.TERMINATED)
            if state == P.WAITING_BACKOFF:
                self.move_all(P.WAITING_BACKOFF, "backoff", reason, unless=unless)
            elif state == P.RUNNING:
                self.move_all(P.RUNNING, "delivered", reason,
                              unless=(*unless, P.RUNNING, P.ACQUIRING))
