"""URNs, the provider and app state machines, and state events applied to tables."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from uee.streams.provider import (
    APP_TRANSITIONS,
    PROVIDER_TRANSITIONS,
    A,
    AppMachine,
    InvalidTransitionError,
    P,
    Provider,
    Transition,
)
from uee.streams.restore import RESTART, OnRestart, on_restart, pending_backoff
from uee.streams.state import apply_event, apply_event_at, event
from uee.streams.worker import StateSlot
from uee.urn import Urn, UrnError


def test_a_urn_formats_and_parses_back() -> None:
    urn = Urn("nvd", "cve", "CVE-2024-0001")
    assert str(urn) == "uee::nvd::cve::CVE-2024-0001"
    assert Urn.parse("uee::nvd::cve::CVE-2024-0001") == urn


@pytest.mark.parametrize("text, says", [
    ("nvd::cve::1", "is not a URN"),
    ("urn::nvd::cve::1", "is not a URN"),
    ("uee::nvd::cve", "is not a URN"),
    ("uee::n v d::cve::1", "provider 'n v d'"),
    ("uee::nvd::-cve::1", "type '-cve'"),
    ("uee::nvd::cve::", "is empty"),
])
def test_a_bad_urn_says_what_is_wrong(text: str, says: str) -> None:
    with pytest.raises(UrnError, match=says) as caught:
        Urn.parse(text)
    assert caught.value.code == "URN_INVALID"


def test_an_id_with_the_separator_is_refused() -> None:
    with pytest.raises(UrnError, match="contains '::'"):
        Urn("p", "t", "a::b")


@given(st.text(min_size=1, max_size=50).filter(
    lambda s: "::" not in s and s.isprintable() and not s.endswith(":")
    and not s.startswith(":")))
def test_any_valid_id_round_trips(ident: str) -> None:
    assert Urn.parse(str(Urn("p", "t", ident))).id == ident


def test_every_state_has_a_row_in_the_transition_tables() -> None:
    assert set(PROVIDER_TRANSITIONS) == set(P)
    assert set(APP_TRANSITIONS) == set(A)
    assert PROVIDER_TRANSITIONS[P.TERMINATED] == frozenset()


def test_a_provider_logs_each_transition_and_refuses_an_invalid_one() -> None:
    seen: list[Transition] = []
    provider = Provider("orders", lambda _, t: seen.append(t), lambda: {"in": 3})
    assert provider.to(P.ACQUIRING, "start", "waiting")
    assert provider.to(P.RUNNING, "assigned", "reading")
    assert not provider.to(P.RUNNING, "assigned", "still reading")  # no transition
    assert provider.to(P.WAITING_BACKOFF, "backoff", "503", until=123.0)
    with pytest.raises(InvalidTransitionError, match="WAITING_BACKOFF -> IDLE"):
        provider.to(P.IDLE, "reset", "again")
    assert [(t.from_, t.to) for t in seen] == [
        (P.IDLE, P.ACQUIRING), (P.ACQUIRING, P.RUNNING), (P.RUNNING, P.WAITING_BACKOFF)]
    line = seen[-1].as_json()
    assert line["from"] == "RUNNING" and line["to"] == "WAITING_BACKOFF"
    assert line["trigger"] == "backoff" and line["counters"] == {"in": 3}
    row = provider.row("host/w0", {"in": 3})
    assert row["state"] == "WAITING_BACKOFF" and row["until"] == 123.0
    assert [h["to"] for h in row["history"]] == ["ACQUIRING", "RUNNING", "WAITING_BACKOFF"]


def test_every_state_says_what_a_restart_does_with_it() -> None:
    assert set(RESTART) == set(P)
    assert on_restart(None) is OnRestart.FIRST_RUN
    assert on_restart({"state": "RUNNING"}) is OnRestart.RESUME
    assert on_restart({"state": "PAUSED"}) is OnRestart.STAY_PAUSED
    assert on_restart({"state": "WAITING_QUOTA"}) is OnRestart.ACQUIRE
    assert on_restart({"state": "TERMINATED"}) is OnRestart.FRESH
    # Only a backoff not yet over is waited out, the longest of them.
    now = time.time()
    rows: dict[str, object] = {
        "a": {"state": "WAITING_BACKOFF", "reason": "HTTP 429", "until": now + 30},
        "b": {"state": "WAITING_BACKOFF", "reason": "HTTP 503", "until": now + 5},
        "c": {"state": "WAITING_BACKOFF", "reason": "over", "until": now - 1},
        "d": {"state": "RUNNING", "until": now + 60}}
    backoff = pending_backoff(rows)
    assert backoff is not None and backoff.reason == "HTTP 429"
    assert pending_backoff({"c": rows["c"], "d": rows["d"]}) is None


def test_the_app_follows_its_providers() -> None:
    changes: list[tuple[A, A]] = []
    app = AppMachine(lambda before, after, _: changes.append((before, after)))
    providers = [Provider(name, lambda *_: None) for name in ("a", "b")]
    app.settle(providers)  # still bootstrapping: providers do not move it yet
    assert app.state == A.BOOTSTRAPPING
    app.to(A.ORCHESTRATING, "started")
    for p in providers:
        p.to(P.ACQUIRING, "start", "")
        p.to(P.RUNNING, "assigned", "")
    app.settle(providers)
    assert app.state == A.STABILIZING
    providers[0].to(P.WAITING_BACKOFF, "backoff", "503")
    app.settle(providers)
    assert app.state == A.ORCHESTRATING
    app.to(A.DRAINING, "SIGTERM")
    app.settle(providers)
    assert app.state == A.DRAINING
    with pytest.raises(InvalidTransitionError):
        app.to(A.STABILIZING, "no way back")
    assert changes == [(A.BOOTSTRAPPING, A.ORCHESTRATING), (A.ORCHESTRATING, A.STABILIZING),
                       (A.STABILIZING, A.ORCHESTRATING), (A.ORCHESTRATING, A.DRAINING)]


def test_state_events_set_and_delete_rows_and_skip_what_they_do_not_know() -> None:
    tables: dict[str, dict[str, object]] = {"providers": {"old": {"state": "RUNNING"}}}
    applied = apply_event(tables, event([("providers", "a", {"state": "RUNNING"}),
                                         ("providers", "old", None),
                                         ("a future table", "x", 1)]))
    assert applied == 2 and tables == {"providers": {"a": {"state": "RUNNING"}}}
    assert apply_event(tables, {"v": 2, "sets": [["providers", "b", {}]]}) == 0
    assert apply_event(tables, "not an event") == 0


def test_events_the_tables_already_hold_are_not_applied_again() -> None:
    """A restarted agent reads the state topic again from its committed offset, behind the
    tables recovered from the changelogs: the checkpoint must not step back meanwhile."""
    tables: dict[str, dict[str, object]] = {"checkpoints": {}, "deployment": {}}
    events = [event([("checkpoints", "p", {"since": since})]) for since in (100, 1100, 2100)]
    assert all(apply_event_at(tables, "c/t1", n, e) for n, e in enumerate(events))
    for n, again in enumerate(events):  # the replay after a kill -9
        assert not apply_event_at(tables, "c/t1", n, again)
        assert tables["checkpoints"]["p"] == {"since": 2100}
    assert apply_event_at(tables, "c/t1", 3, event([("checkpoints", "p", {"since": 3100})]))
    # The state topic deleted and made anew: its offsets start at 0 again, and count.
    assert apply_event_at(tables, "c/t2", 0, event([("checkpoints", "p", {"since": 0})]))
    assert tables["checkpoints"]["p"] == {"since": 0}
    assert tables["deployment"]["applied"] == {"offset": 0, "topic": "c/t2"}


def test_a_state_slot_is_locked_and_forgets_tables_of_another_origin(tmp_path: Path) -> None:
    first = StateSlot(str(tmp_path), "app")
    second = StateSlot(str(tmp_path), "app")  # the first slot is locked: the next one
    try:
        assert (first.slot, second.slot) == (0, 1)
        (first.path / "v1").mkdir()
        (first.path / "v1" / "table.sst").write_text("rows")
        assert first.bind("tansu_cluster/topic-1")  # an origin it did not know: emptied
        assert not (first.path / "v1").exists()
        (first.path / "v1").mkdir()
        assert not first.bind("tansu_cluster/topic-1")  # the same origin: kept
        assert (first.path / "v1").exists()
        assert first.bind("tansu_cluster/topic-2")  # the topic made anew: emptied
        assert not (first.path / "v1").exists() and (first.path / ".lock").exists()
    finally:
        first.release()
        second.release()
    again = StateSlot(str(tmp_path), "app")
    assert again.slot == 0  # released: taken back by the next worker
    again.release()
