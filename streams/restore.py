"""State back from the tables into an agent: where its providers were, their diff hashes.

When. At start, before the first batch: an external cursor (the HTTP source's) and a
backoff the last run was waiting out. On every assignment of partitions (the first
included): the diff hashes, because a partition that arrives may have been processed by
another worker a moment ago. The previous owner checkpointed what it delivered before it
committed the offsets (streams.checkpoint), so once the tables hold every state event the
topic has now, they hold its hashes for every record this worker will not read again.

What a provider does on restart depends on the state its last run left in the `providers`
table: `RESTART` says it, one line per state, and the agent logs it per provider.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from enum import StrEnum

from uee.connectors.base import Source
from uee.streams.kernel import DiffState
from uee.streams.provider import P
from uee.streams.state import CHECKPOINTS, DIFFS, KEY_SEPARATOR, PROVIDERS
from uee.streams.statelog import StateView
from uee.streams.tracker import ProviderTracker, StateContext

log = logging.getLogger("uee")
state_log = logging.getLogger("uee.state")  # shown by default, beside the transitions


class OnRestart(StrEnum):
    RESUME = "resume from its checkpoint"
    STAY_PAUSED = "stay paused until `uee resume` (the pause is on uee.control)"
    ACQUIRE = "acquire its permits again (the controller's last decision applies)"
    WAIT_BACKOFF = "wait out what is left of its backoff, then resume from its checkpoint"
    FRESH = "nothing to restore but its final checkpoint: it drained cleanly"
    FIRST_RUN = "start from the beginning of its source: no earlier run left a row"


# The last run's state -> what the restarted provider does. Every provider starts IDLE ->
# ACQUIRING -> RUNNING again: the rows say where from, and what to wait for first.
RESTART: dict[P, OnRestart] = {
    P.IDLE: OnRestart.RESUME,
    P.ACQUIRING: OnRestart.RESUME,
    P.RUNNING: OnRestart.RESUME,
    P.PAUSED: OnRestart.STAY_PAUSED,
    P.WAITING_QUOTA: OnRestart.ACQUIRE,
    P.WAITING_BACKOFF: OnRestart.WAIT_BACKOFF,
    # A TERMINATED provider skips every recovery step: its drain flushed and committed
    # what it delivered, so its checkpoint is exact and nothing is waited out or read again.
    P.TERMINATED: OnRestart.FRESH,
}


def on_restart(last_row: object) -> OnRestart:
    """What a provider does on restart, from the row its last run left (or None)."""
    if not isinstance(last_row, dict) or last_row.get("state") not in P.__members__:
        return OnRestart.FIRST_RUN
    return RESTART[P(last_row["state"])]


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
        last_rows = {name: view.get(PROVIDERS, name) for name in pipelines}
        for name, last in last_rows.items():
            action = on_restart(last)
            state_log.info("%s", json.dumps({
                "on_restart": action.name, "provider": name,
                "last_state": last.get("state") if isinstance(last, dict) else None,
                "means": str(action)}))
        log.info("%s", json.dumps({
            "agent": self._agent, "resumed_from": oldest["cursor"] if oldest else None,
            "checkpoint_at": oldest.get("at") if oldest else None,
            "tables_complete": complete, "waited_s": round(time.monotonic() - started, 3)}))
        if not complete:
            log.warning("%s", json.dumps({
                "agent": self._agent, "warning": "the tables were not recovered in time; "
                "resuming from what they hold (at worst, records are read again)"}))
        return pending_backoff(last_rows)

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


def pending_backoff(last_rows: dict[str, object]) -> Backoff | None:
    """The longest backoff a provider's last run had not finished waiting out."""
    waits = []
    for row in last_rows.values():
        if on_restart(row) is not OnRestart.WAIT_BACKOFF:
            continue
        assert isinstance(row, dict)
        until = row.get("until")
        if isinstance(until, int | float) and until > time.time():
            waits.append(Backoff(str(row.get("reason")), float(until)))
    return max(waits, key=lambda b: b.until) if waits else None
