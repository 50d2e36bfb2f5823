"""The deployment's state: RocksDB-backed Faust tables, changelogged to Kafka, kept by one
Faust agent.

Why this shape. A Faust table can be written only by an agent handling an event (its
RocksDB store takes the partition from `current_event()`), on the event loop; the records
themselves move through batch kernels on their own threads, at rates Faust's per-event
path cannot carry. So the batch loop writes *state events*: each checkpoint, provider
transition, registry row and batch of diff hashes is one message on `<app>-state`, sent
and acknowledged before the source offsets it covers are committed (the checkpoint order).
The `uee-state` agent applies each event to the tables; Faust changelogs them. The event
topic is the write-ahead log, the tables are what is read:

    batch thread --(state event, acked)--> <app>-state --(Faust agent)--> tables --> changelogs

Every table is a GlobalTable of one partition: state is small (a row per provider, per
pipeline, per worker, a hash per diffed key), and every worker of the deployment, and
`uee status` reading the changelogs, sees all of it, so a provider that moves to another
worker finds its checkpoint there. The agent also records the offset of the last event it
applied (`deployment["applied"]`), and skips events up to it when it reads them again (its
committed offset lags the tables): a worker waits until the tables hold everything the
event topic had when it started before it reads a checkpoint, and `uee status` applies the
events after that offset itself, so it is exact even after a worker was killed.

Recovery on the embedded broker can stop one batch short of a changelog's end (its
ListOffsets bug). Nothing depends on the tables being perfectly up to date for safety:
a checkpoint that comes back one batch old means that batch is read again (duplicates,
counted), never that a record is skipped, because offsets are committed only after the
state that covers them.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from uee.errors import UeeError
from uee.streams.names import STATE_TABLES
from uee.streams.provider import HISTORY

if TYPE_CHECKING:
    import faust

log = logging.getLogger("uee")

# Tables, by what they hold (keys in parentheses).
PROVIDERS = "providers"  # (pipeline) state, reason, since, counts, last transitions
CHECKPOINTS = "checkpoints"  # (pipeline) cursor, last URN, counts, time
PIPELINES = "pipelines"  # (pipeline) the registry: source, sinks, DLQ topic, plan hash
DEPLOYMENT = "deployment"  # (worker:<id>) worker and app state; (applied) last event applied
DIFFS = "diffs"  # (<diff table name>\0<JSON key>) field hashes of the key's last record
TABLES = STATE_TABLES
assert TABLES == (PROVIDERS, CHECKPOINTS, PIPELINES, DEPLOYMENT, DIFFS)
APPLIED = "applied"
KEY_SEPARATOR = "\x00"  # between a diff state's name and a key in the diffs table
AGENT = "uee-state"


class StateUnavailableError(UeeError):
    code = "STATE_UNAVAILABLE"


def state_topic(app: str) -> str:
    return f"{app}-state"


def changelog_topic(app: str, table: str) -> str:
    """Faust's name for a table's changelog."""
    return f"{app}-{table}-changelog"


def event(sets: Iterable[tuple[str, str, Any]]) -> dict[str, Any]:
    """A state event: rows to set (a value of None deletes)."""
    return {"v": 1, "sets": [list(s) for s in sets]}


def apply_event(tables: dict[str, Any], value: Any) -> int:
    """Apply one state event to `tables` (Faust tables, or plain dicts for `uee status`);
    returns how many rows it set. Unknown tables and versions are skipped: workers of two
    versions share the topic during an upgrade."""
    if not isinstance(value, dict) or value.get("v", 1) > 1:
        return 0
    count = 0
    for item in value.get("sets", ()):
        if not (isinstance(item, list) and len(item) == 3) or item[0] not in tables:
            continue
        table, key, row = item
        if row is None:
            tables[table].pop(key, None)
        else:
            if table == PROVIDERS:
                row = _with_history(tables[table].get(key), row)
            tables[table][key] = row
        count += 1
    return count


def apply_event_at(tables: dict[str, Any], origin: str, offset: int, value: Any) -> bool:
    """Apply the event at `offset` of the state topic `origin` (its cluster's and its own
    ids) unless the tables already hold it; True if applied. The agent resumes from its
    committed offset, which lags the tables (Faust commits every few seconds; a worker
    killed with -9 may never have): applying those events again would roll the rows back
    for a moment, and a provider reading its checkpoint then would resume from an older one."""
    if offset <= applied_offset(tables, origin):
        return False
    apply_event(tables, value)
    tables[DEPLOYMENT][APPLIED] = {"offset": offset, "topic": origin}
    return True


def applied_offset(tables: dict[str, Any], origin: str) -> int:
    """Offset of the last event the tables hold (-1: none, or only events of a state topic
    since deleted and made anew, whose offsets start again at 0)."""
    row = tables[DEPLOYMENT].get(APPLIED)
    if not isinstance(row, dict) or row.get("topic", origin) != origin:
        return -1
    return int(row["offset"])


def _with_history(before: Any, row: Any) -> Any:
    """A provider's row keeps the transitions of earlier runs too (a worker that restarts
    starts a new machine): the last HISTORY of both, in order."""
    if not (isinstance(before, dict) and isinstance(row, dict)):
        return row
    seen = {(t.get("at"), t.get("to")) for t in row.get("history", []) if isinstance(t, dict)}
    older = [t for t in before.get("history", [])
             if isinstance(t, dict) and (t.get("at"), t.get("to")) not in seen]
    merged = sorted([*older, *row.get("history", [])], key=lambda t: str(t.get("at")))
    return {**row, "history": merged[-HISTORY:]}


class StateTables:
    """The tables and the agent that keeps them, defined on a worker's Faust app."""

    def __init__(self, app: faust.App, origin: str) -> None:
        self.app = app
        self.origin = origin  # of the state topic: its offsets mean something only there
        self.topic_name = state_topic(app.conf.id)
        self.topic = app.topic(self.topic_name, partitions=1, key_type=bytes,
                               key_serializer="raw", value_serializer="json")
        self.tables: dict[str, Any] = {
            name: app.GlobalTable(name, partitions=1, recovery_buffer_size=1,
                                  key_type=str, help=f"uee {name}")
            for name in TABLES}
        app.agent(self.topic, name=AGENT)(self._apply)

    async def _apply(self, stream: Any) -> None:
        async for message in stream.events():
            apply_event_at(self.tables, self.origin, message.message.offset, message.value)

    def applied(self) -> int:
        """Offset of the last event applied (-1: none)."""
        return applied_offset(self.tables, self.origin)

    async def ready(self, end_offset: int, timeout: float) -> bool:
        """Wait until the tables are recovered and hold every event below `end_offset` (the
        state topic's end when the worker started). False if that did not happen in time:
        the caller goes on with what the tables hold (at worst one batch is read again)."""
        deadline = time.monotonic() + timeout
        recovery = self.app.tables.recovery  # type: ignore[attr-defined]  # on TableManager
        while time.monotonic() < deadline:
            if recovery.crashed:  # it never comes back: say why, instead of waiting
                raise StateUnavailableError(
                    f"Faust could not recover the state tables: {recovery.crash_reason}; if "
                    "the state folder (UEE_STATE_DIR) was copied from elsewhere, delete it")
            if recovery.completed.is_set() and self.applied() >= end_offset - 1:
                return True
            await asyncio.sleep(0.05)  # polling a condition, with a deadline
        return False

    def get(self, table: str, key: str) -> Any:
        return self.tables[table].get(key)

    def items(self, table: str, prefix: str = "") -> list[tuple[str, Any]]:
        return [(k, v) for k, v in self.tables[table].items()
                if isinstance(k, str) and k.startswith(prefix)]
