"""What `uee status` shows: the deployment's tables, read from Kafka, whether or not a
worker runs.

A command must not join the Faust app to read its tables (it would take partitions from
the workers in a rebalance), so it reads what the tables are made of: each table's
changelog, then the state events the tables had not applied yet (a worker killed before
its agent got to them). That is exactly what a worker's tables hold once recovered.
"""

from __future__ import annotations

import datetime
import json
from dataclasses import dataclass
from typing import Any

from uee.streams.control import (
    ControlMessage,
    PermitPool,
    PipelineState,
    QuotaSample,
    SinkState,
    allocations,
    read_states,
)
from uee.streams.permits import QuotaUpdate
from uee.streams.quota import readings
from uee.streams.settings import Settings
from uee.streams.state import (
    APPLIED,
    CHECKPOINTS,
    DEPLOYMENT,
    PIPELINES,
    PROVIDERS,
    apply_event,
    changelog_topic,
    state_topic,
)
from uee.streams.topics import describe_topic, read_all, tail_topic, topic_partitions

READ = (PROVIDERS, CHECKPOINTS, PIPELINES, DEPLOYMENT)  # not diffs: large, not status


@dataclass(frozen=True)
class Snapshot:
    app: str
    tables: dict[str, dict[str, Any]]
    control: list[ControlMessage]

    @property
    def empty(self) -> bool:
        return not any(self.tables[t] for t in (PROVIDERS, PIPELINES, DEPLOYMENT))


def read_tables(settings: Settings, timeout: float = 30.0) -> dict[str, dict[str, Any]]:
    bootstrap = str(settings.bootstrap)
    existing = topic_partitions(bootstrap)
    tables: dict[str, dict[str, Any]] = {name: {} for name in READ}
    for name in READ:
        topic = changelog_topic(settings.app, name)
        if topic not in existing:
            continue
        for record in read_all(bootstrap, topic, timeout):
            if record.key is None:
                continue
            key = _key(record.key)
            if record.value is None:
                tables[name].pop(key, None)
            else:
                tables[name][key] = json.loads(record.value)
    events = state_topic(settings.app)
    if events in existing:
        applied = tables[DEPLOYMENT].get(APPLIED, {}).get("offset", -1)
        info = describe_topic(bootstrap, events, timeout)
        behind = info.partitions[0].high - (applied + 1) if info.partitions else 0
        for record in tail_topic(bootstrap, events, max(0, behind), timeout, info):
            if record.value is not None:
                apply_event(tables, json.loads(record.value))
    return tables


def _key(raw: bytes) -> str:
    """Faust writes str keys as JSON strings, or raw, by version: either is read."""
    try:
        key = json.loads(raw)
    except ValueError:
        return raw.decode(errors="replace")
    return key if isinstance(key, str) else raw.decode(errors="replace")


def snapshot(settings: Settings) -> Snapshot:
    return Snapshot(settings.app, read_tables(settings), read_states(settings))


def _age(at: str | None, now: datetime.datetime) -> float | None:
    if not at:
        return None
    return round((now - datetime.datetime.fromisoformat(at)).total_seconds(), 1)


def _reading(pipeline: str, samples: list[QuotaSample], now: datetime.datetime
             ) -> dict[str, Any] | None:
    """What the quota controller last read of `pipeline`: its workers' latest samples
    merged as the controller merges them (the worst latency and saturation, the sum of lag
    and throughput), those of workers that sampled with the newest; None: never sampled
    (fixed permits sample nothing)."""
    if not samples:
        return None
    newest = max(s.at for s in samples)
    r = readings(samples, newest.timestamp())[pipeline]
    return {"at": newest.isoformat(), "age_s": round((now - newest).total_seconds(), 1),
            "workers": len(r.workers), "permits": r.permits, "p99_ms": round(r.p99_ms, 1),
            "max_p99_ms": r.max_p99_ms, "target_set": r.target_set,
            "e2e_p99_ms": round(r.e2e_p99_ms, 1), "lag": r.lag, "max_lag": r.max_lag,
            "saturation": round(r.saturation, 3), "max_saturation": r.max_saturation,
            "throughput": round(r.throughput, 1), "priority": r.priority}


def document(snap: Snapshot) -> dict[str, Any]:
    """The `uee status --json` object."""
    now = datetime.datetime.now(datetime.UTC)
    workers = sorted((row for key, row in snap.tables[DEPLOYMENT].items()
                      if key.startswith("worker:")), key=lambda r: str(r.get("since")))
    running = [w for w in workers if not w.get("stopped")]
    latest = (running or workers)[-1] if workers else None
    app = {"name": snap.app, "state": latest["state"] if latest else None,
           "since": latest["since"] if latest else None,
           "running_workers": len(running), "workers": workers}
    paused = {m.pipeline: m for m in snap.control if isinstance(m, PipelineState)}
    decisions = sorted((m for m in snap.control
                        if isinstance(m, QuotaUpdate) and m.deployment == snap.app),
                       key=lambda m: m.at)
    quotas = {m.pipeline: m for m in decisions}
    pools = {m.pipeline: m for m in snap.control
             if isinstance(m, PermitPool) and m.deployment == snap.app}
    held = allocations(quotas, pools)
    samples: dict[str, list[QuotaSample]] = {}
    for m in snap.control:
        if isinstance(m, QuotaSample) and m.deployment == snap.app:
            samples.setdefault(m.pipeline, []).append(m)
    providers = []
    names = sorted(set(snap.tables[PROVIDERS]) | set(snap.tables[PIPELINES]))
    for name in names:
        row = snap.tables[PROVIDERS].get(name, {})
        checkpoint = snap.tables[CHECKPOINTS].get(name)
        registry = snap.tables[PIPELINES].get(name, {})
        command = paused.get(name)
        state, reason = row.get("state"), row.get("reason")
        if command is not None and command.state == "PAUSED" and state in (None, "TERMINATED"):
            # Its worker stopped; the pause did not: the next worker starts it PAUSED.
            state, reason = "PAUSED", command.reason
        providers.append({
            "pipeline": name, "state": state, "reason": reason,
            "since": row.get("since"), "until": row.get("until"), "worker": row.get("worker"),
            # The same object with or without a checkpoint yet, so a reader need not test.
            "checkpoint": {"cursor": checkpoint.get("cursor"), "urn": checkpoint.get("urn"),
                           "at": checkpoint.get("at"), "age_s": _age(checkpoint.get("at"), now)}
            if checkpoint else {"cursor": None, "urn": None, "at": None, "age_s": None},
            "records": row.get("records", {}),
            "control": {"state": command.state, "reason": command.reason,
                        "at": command.at.isoformat()} if command else None,
            "source": registry.get("source"), "sinks": registry.get("sinks", []),
            "dlq": registry.get("dlq"), "plan_hash": registry.get("plan_hash"),
            "history": row.get("history", []),
            "permits": {"allocated": held.get(name, registry.get("permits")),
                        "full": pools[name].permits if name in pools
                        else registry.get("permits")},
            "reading": _reading(name, samples.get(name, []), now),
        })
    sinks = [{"sink": m.sink, "state": m.state, "reason": m.reason, "at": m.at.isoformat()}
             for m in snap.control if isinstance(m, SinkState)]
    quota = [m.as_json() for m in decisions[-10:]]  # the controller's last decisions
    return {"app": app, "providers": providers, "sinks": sinks, "quota": quota}


def registry_dlqs(settings: Settings) -> dict[str, str]:
    """Every DLQ topic of the pipeline registry, and the pipeline it belongs to."""
    registry = read_tables(settings)[PIPELINES]
    return {row["dlq"]: name for name, row in registry.items()
            if isinstance(row, dict) and row.get("dlq")}
