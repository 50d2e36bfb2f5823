"""State back from the tables into an agent: where its providers were, their diff hashes.

When. At start, before the first batch: an external cursor (the HTTP source's) and a
backoff the last run was waiting out. On every assignment of partitions (the first
included): the diff hashes, because a partition that arrives may have been processed by
another worker a moment ago. The previous owner checkpointed what it delivered before it
committed the offsets (streams.checkpoint), so once the tables hold every state event the
topic has now, they hold its hashes for every record this worker will not read again.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass

from uee.connectors.base import Source
from uee.streams.kernel import DiffState
from uee.streams.provider import P
from uee.streams.state import CHECKPOINTS, DIFFS, KEY_SEPARATOR, PROVIDERS
from uee.streams.statelog import StateView
from uee.streams.tracker import ProviderTracker, StateContext

log = logging.getLogger("uee")


@dataclass(frozen=True)
class Backoff:
    """A wait the last run of a provider had not finished."""

    reason: str
    until: float  # epoch seconds


class Restore:
    def __init__(self, agent: str, source: Source, diffs: list[DiffState],
                 tracker: ProviderTracker, state: StateContext | None) -> None:
        self._agent = agent
        self._source = source
        self._diffs = diffs
        self._tracker = tracker
        self._state = state

    @property
    def _view(self) -> StateView | None:
        """Set once the worker's Faust app exists, after the agents are made."""
        return self._state.view if self._state is not None else None

    def at_start(self) -> Backoff | None:
        """The external cursor back in the source (the checkpoint of the pipeline furthest
        behind: merged pipelines checkpoint together) and the last URNs; returns a backoff
        still to wait out."""
        view = self._view
        if view is None:
            return None
        started = time.monotonic()
        complete = view.wait_ready()
        pipelines = list(self._tracker.providers)
        rows = [view.get(CHECKPOINTS, name) for name in pipelines]
        found = [r for r in rows if isinstance(r, dict) and r.get("cursor") is not None]
        oldest = min(found, key=lambda r: str(r.get("at"))) if found else None
        if oldest is not None and len(found) == len(rows) and self._source.external_cursor:
            self._source.resume(oldest["cursor"])
        for name, row in zip(pipelines, rows, strict=True):
            if isinstance(row, dict):
                self._tracker.providers[name].last_urn = row.get("urn")
        log.info("%s", json.dumps({
            "agent": self._agent, "resumed_from": oldest["cursor"] if oldest else None,
            "checkpoint_at": oldest.get("at") if oldest else None,
            "tables_complete": complete, "waited_s": round(time.monotonic() - started, 3)}))
        if not complete:
            log.warning("%s", json.dumps({
                "agent": self._agent, "warning": "the tables were not recovered in time; "
                "resuming from what they hold (at worst, records are read again)"}))
        return self._pending_backoff(view, pipelines)

    def _pending_backoff(self, view: StateView, pipelines: list[str]) -> Backoff | None:
        waits = []
        for name in pipelines:
            row = view.get(PROVIDERS, name)
            if not isinstance(row, dict) or row.get("state") != P.WAITING_BACKOFF:
                continue
            until = row.get("until")
            if isinstance(until, int | float) and until > time.time():
                waits.append(Backoff(str(row.get("reason")), float(until)))
        return max(waits, key=lambda b: b.until) if waits else None

    def diffs(self) -> None:
        """Every diff hash of the tables, once they hold every state event written so far
        (those of a worker that had these partitions a moment ago included)."""
        view = self._view
        if view is None or not self._diffs:
            return
        started = time.monotonic()
        complete = view.catch_up()
        loaded = 0
        for diff in self._diffs:
            prefix = f"{diff.name}{KEY_SEPARATOR}"
            rows = {key[len(prefix):]: row for key, row in view.items(DIFFS, prefix)}
            diff.load(rows)
            loaded += len(rows)
        log.info("%s", json.dumps({"agent": self._agent, "diff_keys_loaded": loaded,
                                   "tables_complete": complete,
                                   "waited_s": round(time.monotonic() - started, 3)}))
