"""Provider and app state machines: explicit tables of valid transitions, nothing implicit.

Every source runs under one provider per pipeline it feeds (pipelines merged into one
agent share a source, and so pause together, but each has its own provider, checkpoint and
row in `uee status`). A provider moves

    IDLE -> ACQUIRING -> RUNNING <-> WAITING_BACKOFF (a sink or the source retries)
                 |          |  <-> PAUSED (its error rate; `uee resume`)
                 |          |  <-> WAITING_QUOTA (no permit: the quota controller, next)
                 +----------+----> TERMINATED (drained, or its bounded source finished)

and every transition is one JSON log line and a row in the `providers` table. The app
(one worker's view of the deployment) is BOOTSTRAPPING (broker, topics, tables), then
ORCHESTRATING while any provider is starting or waiting, STABILIZING once every provider
settled (RUNNING, PAUSED or TERMINATED), and DRAINING from a stop request on: provider
events bubble up to it.
"""

from __future__ import annotations

import datetime
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from uee.errors import UeeError


class P(StrEnum):
    IDLE = "IDLE"
    ACQUIRING = "ACQUIRING"
    RUNNING = "RUNNING"
    WAITING_QUOTA = "WAITING_QUOTA"
    WAITING_BACKOFF = "WAITING_BACKOFF"
    PAUSED = "PAUSED"
    TERMINATED = "TERMINATED"


class A(StrEnum):
    BOOTSTRAPPING = "BOOTSTRAPPING"
    ORCHESTRATING = "ORCHESTRATING"
    STABILIZING = "STABILIZING"
    DRAINING = "DRAINING"


PROVIDER_TRANSITIONS: dict[P, frozenset[P]] = {
    P.IDLE: frozenset({P.ACQUIRING, P.TERMINATED}),
    P.ACQUIRING: frozenset({P.RUNNING, P.WAITING_QUOTA, P.WAITING_BACKOFF, P.PAUSED,
                            P.TERMINATED}),
    P.RUNNING: frozenset({P.WAITING_BACKOFF, P.WAITING_QUOTA, P.PAUSED, P.ACQUIRING,
                          P.TERMINATED}),
    P.WAITING_BACKOFF: frozenset({P.RUNNING, P.ACQUIRING, P.WAITING_QUOTA, P.PAUSED,
                                  P.TERMINATED}),
    P.WAITING_QUOTA: frozenset({P.ACQUIRING, P.PAUSED, P.TERMINATED}),
    P.PAUSED: frozenset({P.RUNNING, P.ACQUIRING, P.TERMINATED}),
    P.TERMINATED: frozenset(),
}
APP_TRANSITIONS: dict[A, frozenset[A]] = {
    A.BOOTSTRAPPING: frozenset({A.ORCHESTRATING, A.DRAINING}),
    A.ORCHESTRATING: frozenset({A.STABILIZING, A.DRAINING}),
    A.STABILIZING: frozenset({A.ORCHESTRATING, A.DRAINING}),
    A.DRAINING: frozenset(),
}
SETTLED = frozenset({P.RUNNING, P.PAUSED, P.TERMINATED})
HISTORY = 20  # transitions kept in a provider's row


class InvalidTransitionError(UeeError):
    code = "STATE_TRANSITION"


def now_iso() -> str:
    return datetime.datetime.now(datetime.UTC).isoformat(timespec="milliseconds")


@dataclass(frozen=True)
class Transition:
    provider: str  # the pipeline
    urn: str | None  # the last URN the provider delivered
    from_: str
    to: str
    trigger: str  # what caused it: start, assigned, backoff, error_rate, resume, drain...
    reason: str
    at: str
    counters: dict[str, int] = field(default_factory=dict)

    def as_json(self) -> dict[str, Any]:
        return {"provider": self.provider, "urn": self.urn, "from": self.from_, "to": self.to,
                "trigger": self.trigger, "reason": self.reason, "at": self.at,
                "counters": self.counters}


class Provider:
    """One pipeline's state machine. `on_transition` logs and persists each transition."""

    def __init__(self, pipeline: str, on_transition: Callable[[Provider, Transition], None],
                 counters: Callable[[], dict[str, int]] = dict) -> None:
        self.pipeline = pipeline
        self.state = P.IDLE
        self.reason = "not started"
        self.since = now_iso()
        self.until: float | None = None  # end of a backoff (epoch seconds), when known
        self.last_urn: str | None = None
        self.history: deque[Transition] = deque(maxlen=HISTORY)
        self._on_transition = on_transition
        self._counters = counters

    def to(self, state: P, trigger: str, reason: str, until: float | None = None) -> bool:
        """Move to `state`; False when already there (the reason is updated, nothing
        logged). An invalid move raises: it is a bug, not a condition."""
        if state == self.state:
            self.reason, self.until = reason, until
            return False
        if state not in PROVIDER_TRANSITIONS[self.state]:
            raise InvalidTransitionError(f"provider {self.pipeline}: {self.state} -> {state} "
                                         f"({trigger}) is not a valid transition")
        transition = Transition(self.pipeline, self.last_urn, self.state, state, trigger,
                                reason, now_iso(), self._counters())
        self.state, self.reason, self.since, self.until = state, reason, transition.at, until
        self.history.append(transition)
        self._on_transition(self, transition)
        return True

    def row(self, worker: str, counters: dict[str, int]) -> dict[str, Any]:
        """What the `providers` table keeps."""
        return {"pipeline": self.pipeline, "state": str(self.state), "reason": self.reason,
                "since": self.since, "until": self.until, "worker": worker,
                "urn": self.last_urn, "records": counters,
                "history": [t.as_json() for t in self.history]}


class AppMachine:
    """One worker's app state, derived from its providers once bootstrapped."""

    def __init__(self, on_change: Callable[[A, A, str], None]) -> None:
        self.state = A.BOOTSTRAPPING
        self.since = now_iso()
        self._on_change = on_change

    def to(self, state: A, reason: str) -> None:
        if state == self.state:
            return
        if state not in APP_TRANSITIONS[self.state]:
            raise InvalidTransitionError(f"app: {self.state} -> {state} is not a valid "
                                         "transition")
        before, self.state, self.since = self.state, state, now_iso()
        self._on_change(before, state, reason)

    def settle(self, providers: list[Provider]) -> None:
        """A provider changed: the app follows, unless it is bootstrapping or draining."""
        if self.state in (A.BOOTSTRAPPING, A.DRAINING):
            return
        waiting = [p for p in providers if p.state not in SETTLED]
        if waiting:
            self.to(A.ORCHESTRATING, f"{waiting[0].pipeline} is {waiting[0].state}")
        else:
            self.to(A.STABILIZING, "every provider settled")
