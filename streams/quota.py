"""The quota controller: samples from every worker, one leader deciding, QuotaUpdates out.

    each worker, every interval:  QuotaSample per pipeline (P99 batch latency, saturation,
                                  lag, permits) -> uee.control
    the deployment's leader:      samples -> policy -> QuotaUpdate -> uee.control
    every worker:                 QuotaUpdate -> its agents' permits (streams.permits)

The leader is Faust's (`on_leader` timers: the member that holds the app's leader topic
partition), so there is one per deployment and another takes over when its worker leaves;
its epoch is the consumer group generation it was elected in, so an update from a leader
that has not noticed it was replaced carries an older epoch and is ignored.

Who gives permits up (`pressures`): a pipeline whose own P99 latency or saturation breaches
its threshold; for a pipeline whose lag breaches `max_lag`, never itself (that would make
it lag more) but its competitors: lower-priority pipelines on one of its workers, and the
pipelines upstream that write to its source topic; for a sink slow to acknowledge or with
its local buffer filling, every pipeline writing to it. The deployment always keeps a probe
permit. How many, by policy: `step` (the design's: two consecutive breaches cut 20%, a few
healthy samples give 20% back), `adaptive` (a first cut to the measured throughput, by
Little's law, then the latency gradient; back up only with headroom), `fixed` (never: the
baseline the others are measured against).
"""

from __future__ import annotations

import itertools
import json
import logging
import math
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from uee.streams.control import ControlPlane, QuotaSample, allocations
from uee.streams.permits import QuotaUpdate
from uee.streams.sensors import Sensor
from uee.streams.settings import Settings

if TYPE_CHECKING:
    from uee.streams.agent import BatchAgent

log = logging.getLogger("uee.state")  # each decision is one JSON line, shown by default

SAMPLES = 1000  # latencies a P99 is taken over, at most
WINDOW_S = 2.0  # and none older than this: a slowdown that ended shows within seconds
BREACHES = 2  # consecutive breaches before a revocation
HEALTHY = 3  # consecutive healthy samples before a restoration
TICK = 1 / 10  # of the interval: how often the samples' and the controller's timers look
STEP = 0.2  # of the allocation, per decision
STALE_S = 5.0  # a sample older than this is not a reading


@dataclass(frozen=True)
class AgentReading:
    """An agent's interval, as its sampler saw it."""

    p99_ms: float  # batch latency, poll to acknowledgements
    e2e_p99_ms: float  # from the batch's first record's Kafka timestamp (0: none had one)
    saturation: float  # share of the interval spent on batches, 0-1
    work: float  # share of the interval spent in the stages (saturation without the waits)
    throughput: float  # records/s delivered over the last WINDOW_S
    batch_records: float  # records of the batch at the P99 (the one in flight too)
    sink_p99_ms: float = 0.0  # the agent's wait for its sinks' acknowledgements, a batch
    sink_saturation: float = 0.0  # the fullest sink buffer seen in the interval, 0-1
    record_ms: float = 0.0  # the stages' time a record over the last WINDOW_S (0: none)
    # The stages' time a record of the batch at the P99 (of one still in its stages, its age
    # so far a record: a lower bound; 0: not measured).
    batch_record_ms: float = 0.0
    # The agent's mean wait for its sinks' acknowledgements, a batch: Little's law is one of
    # means (the P99 of waits, in T = a / (1 - c*X), put a tail in every step).
    sink_mean_ms: float = 0.0
    batch_in_stages: bool = False  # the batch at the P99 is still in its stages
    # Records/s delivered since the last reading: `throughput` is over WINDOW_S, and a
    # change of permits shows in it only as its window fills.
    interval_throughput: float = -1.0


class QuotaSampler(Sensor):
    """One agent's readings: batch latencies (from the poll, and from the records' Kafka
    timestamps), busy time and records, since the last reading."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        # (at, ms, records, stage s): a batch's latency with its size and its own time in the
        # stages, for Little's law
        self._latencies: deque[tuple[float, float, int, float]] = deque(maxlen=SAMPLES)
        self._waits: deque[tuple[float, float]] = deque(maxlen=SAMPLES)  # (at, ms)
        self._delivered: deque[tuple[float, int]] = deque(maxlen=SAMPLES)  # (at, records)
        self._sink_waits: deque[tuple[float, float]] = deque(maxlen=SAMPLES)  # (at, ms)
        self._sink_fill = 0.0  # the fullest since the last reading
        self._busy = 0.0
        self._work = 0.0
        self._interval_records = 0  # delivered since the last reading
        self._since = self._started = clock()
        # The batches in process, oldest first (the agent settles one while the next is in
        # its stages): [polled at, records, seconds in the stages].
        self._in_flight: deque[list[float]] = deque()
        self._settled_at = 0.0  # when the last batch was settled
        self._first_delivery: float | None = None  # since the agent opened
        self._staged: deque[tuple[float, float, int]] = deque(maxlen=SAMPLES)  # (at, s, records)

    def on_batch_in(self, source: str, pipelines: tuple[str, ...], records: int,
                    at: float) -> None:
        with self._lock:
            self._in_flight.append([self._clock(), records, 0.0])

    def on_delivered(self, pipelines: tuple[str, ...], seconds: float,
                     since_produced: float | None = None) -> None:
        now = self._clock()
        with self._lock:
            batch = self._in_flight.popleft() if self._in_flight else None
            records = int(batch[1]) if batch is not None else 0
            staged = batch[2] if batch is not None else 0.0
            self._latencies.append((now, seconds * 1000, records, staged))
            if since_produced is not None:
                self._waits.append((now, since_produced * 1000))
            # Busy time is the union of the batches' spans: the one settled overlapped the
            # next one's stages, which are not counted twice.
            self._busy += max(0.0, now - max(now - seconds, self._settled_at))
            self._settled_at = now
            if batch is not None:
                self._delivered.append((now, records))
                self._interval_records += records
                self._staged.append((now, batch[2], records))
            if self._first_delivery is None:
                self._first_delivery = now

    def on_kernel(self, pipelines: tuple[str, ...], seconds: float) -> None:
        with self._lock:
            self._work += seconds
            if self._in_flight:
                self._in_flight[-1][2] += seconds  # the newest batch is the one in the stages

    def on_sinks(self, sinks: tuple[str, ...], seconds: float, queued: float) -> None:
        now = self._clock()
        with self._lock:
            self._sink_waits.append((now, seconds * 1000))
            self._sink_fill = max(self._sink_fill, queued)

    def on_quota(self, pipeline: str, before: int, after: int, full: int) -> None:
        """Latencies from before a change of permits say nothing of what the change did: a
        policy that read them would cut again for a queue already gone."""
        if before == after:
            return
        with self._lock:
            self._latencies.clear()
            self._delivered.clear()
            self._sink_waits.clear()
            self._staged.clear()
            self._started = self._clock()

    def warming_up(self, warmup_s: float) -> bool:
        """Its first records were delivered less than `warmup_s` ago. The first batches of a
        worker pay for what later ones do not (connections to the sinks' leaders, a broker
        that has just seen its topics), so they say little of its steady latency: seen, a
        cut 3.5 s after records began to flow, with nothing slowed. Not before the first
        delivery: a pipeline that cannot deliver (no permit) must still be seen."""
        with self._lock:
            first = self._first_delivery
        return first is not None and self._clock() - first < warmup_s

    def in_flight_ms(self) -> float:
        """How long the oldest batch in process has been at it so far (0: none is)."""
        with self._lock:
            since = self._in_flight[0][0] if self._in_flight else None
        return 0.0 if since is None else (self._clock() - since) * 1000

    def reading(self) -> AgentReading:
        """This interval's reading; starts the next interval. A batch still in flight counts
        with its age so far, and is the P99 when it is older than the P99 of those done: a
        stage that slows down shows at once, not when it is done."""
        now = self._clock()
        with self._lock:
            latencies = [(ms, n, s) for at, ms, n, s in self._latencies if now - at <= WINDOW_S]
            in_flight, staging = None, False
            if self._in_flight:
                polled_at, records_in, staged_s = self._in_flight[0]
                age_ms = (now - polled_at) * 1000
                # Its stages are done when it has their time (the agent reports it once the
                # stages are); else it is still in them, for its age so far at least.
                staging = staged_s <= 0
                in_flight = (age_ms, int(records_in), age_ms if staging else staged_s * 1000)
            waits = [ms for at, ms in self._waits if now - at <= WINDOW_S]
            sink_waits = [ms for at, ms in self._sink_waits if now - at <= WINDOW_S]
            sink_fill, self._sink_fill = self._sink_fill, 0.0
            while self._delivered and now - self._delivered[0][0] > WINDOW_S:
                self._delivered.popleft()
            records = sum(n for _, n in self._delivered)
            staged = [(s, n) for at, s, n in self._staged if now - at <= WINDOW_S]
            busy, self._busy = self._busy, 0.0
            work, self._work = self._work, 0.0
            interval_records, self._interval_records = self._interval_records, 0
            span, self._since = now - self._since, now
        window = min(WINDOW_S, now - self._started)
        p99_ms, p99_records, p99_staged_ms = _p99_batch(latencies)
        in_stages = False
        if in_flight is not None and in_flight[0] > p99_ms:
            # Older than the P99 of those done: it is the reading, however many small
            # batches went before it (200 in 2 s would hide it from a P99 otherwise).
            p99_ms, p99_records, p99_staged_ms = in_flight
            in_stages = staging
        return AgentReading(p99_ms, _p99(waits),
                            min(1.0, busy / span) if span > 0 else 0.0,
                            min(1.0, work / span) if span > 0 else 0.0,
                            records / window if window > 0 else 0.0, float(p99_records),
                            _p99(sink_waits), sink_fill, _ms_a_record(staged),
                            p99_staged_ms / p99_records if p99_records else 0.0,
                            sum(sink_waits) / len(sink_waits) if sink_waits else 0.0,
                            in_stages, interval_records / span if span > 0 else -1.0)


def _ms_a_record(staged: list[tuple[float, int]]) -> float:
    """The stages' time over the records of the same batches: not the busy share of one
    interval over the records of another (a batch on either side of a window's edge moved
    that by a fifth at 5 batches a second)."""
    records = sum(n for _, n in staged)
    return 1000 * sum(s for s, _ in staged) / records if records else 0.0


def _p99_at(count: int) -> int:
    """Where the P99 is among `count` sorted values (the nearest-rank method)."""
    return min(count - 1, math.ceil(0.99 * count) - 1)


def _p99(values: list[float]) -> float:
    if not values:
        return 0.0
    values.sort()
    return values[_p99_at(len(values))]


def _p99_batch(batches: list[tuple[float, int, float]]) -> tuple[float, int, float]:
    """The P99 latency, with the records and the stages' ms of the batch it is: Little's
    law pairs a batch's N with its own W. An average size would pair the many small
    batches of a healthy pipeline (a batch goes as soon as records are there) with the one
    slow batch that breached, and make the stage look 10-30x slower than it is."""
    if not batches:
        return 0.0, 0, 0.0
    batches.sort()
    ms, records, staged_s = batches[_p99_at(len(batches))]
    return ms, records, staged_s * 1000


# -- what the controller reads ---------------------------------------------------------------

@dataclass(frozen=True)
class Reading:
    """One pipeline, the fresh samples of every worker that runs it merged: the worst
    latency and saturation, the sum of lag and throughput."""

    pipeline: str
    workers: frozenset[str]
    p99_ms: float
    e2e_p99_ms: float
    saturation: float
    work: float
    lag: int
    throughput: float
    batch_records: float
    full_rate: float
    permits: int
    full: int
    max_p99_ms: float
    max_saturation: float
    max_lag: int | None
    priority: int
    source: str
    sinks: frozenset[str]
    at: float  # the newest sample's time (epoch seconds)
    sink_p99_ms: float = 0.0
    sink_saturation: float = 0.0
    target_set: bool = False  # max_p99_ms is the pipeline's own, not the deployment's default
    record_ms: float = 0.0  # the stages' time a record (the slowest worker's; 0: unknown)
    batch_record_ms: float = 0.0  # the same, of the batch at the P99 alone (AgentReading)
    sink_mean_ms: float = -1.0  # the mean of what sink_p99_ms is the P99 of (-1: unknown)
    # A worker's batch at the P99 is still in its stages: its time a record is a lower bound.
    batch_in_stages: bool = False
    interval_throughput: float = -1.0  # records/s since each worker's last sample (-1: unknown)

    def metrics(self) -> dict[str, float]:
        return {"p99_ms": round(self.p99_ms, 2), "e2e_p99_ms": round(self.e2e_p99_ms, 2),
                "saturation": round(self.saturation, 3), "lag": float(self.lag),
                "throughput": round(self.throughput, 1),
                "sink_p99_ms": round(self.sink_p99_ms, 2),
                "sink_saturation": round(self.sink_saturation, 3),
                "record_ms": round(self.record_ms, 3),
                "batch_records": round(self.batch_records, 1),
                "batch_record_ms": round(self.batch_record_ms, 3),
                "sink_mean_ms": round(self.sink_mean_ms, 2),
                "batch_in_stages": float(self.batch_in_stages),
                "interval_throughput": round(self.interval_throughput, 1),
                # What the permits are shares of, per worker: a worker that starts throttling
                # takes it as its reference, so the cap is the one the controller computed.
                "full_rate": round(self.full_rate / max(1, len(self.workers)), 1)}


def readings(samples: list[QuotaSample], now: float) -> dict[str, Reading]:
    fresh: dict[str, list[QuotaSample]] = {}
    for sample in samples:
        if now - sample.at.timestamp() <= STALE_S:
            fresh.setdefault(sample.pipeline, []).append(sample)
    return {pipeline: Reading(
        pipeline, frozenset(s.worker for s in group), max(s.p99_ms for s in group),
        max(s.e2e_p99_ms for s in group), max(s.saturation for s in group),
        max(s.work if s.work >= 0 else s.saturation for s in group),  # -1: an older worker
        sum(s.lag for s in group), sum(s.throughput for s in group),
        max(s.batch_records for s in group), sum(s.full_rate for s in group),
        min(s.permits for s in group),
        max(s.full for s in group), group[0].max_p99_ms, group[0].max_saturation,
        group[0].max_lag, group[0].priority, group[0].source,
        frozenset(t for s in group for t in s.sinks), max(s.at.timestamp() for s in group),
        max(s.sink_p99_ms for s in group), max(s.sink_saturation for s in group),
        group[0].target_set, max(s.record_ms for s in group),
        max(s.batch_record_ms for s in group), max(s.sink_mean_ms for s in group),
        any(s.batch_in_stages for s in group),
        _sum_known([s.interval_throughput for s in group]),
    ) for pipeline, group in fresh.items()}


def _sum_known(values: list[float]) -> float:
    """Their sum, or -1 when one is not known (-1: a worker of the version before)."""
    return -1.0 if any(v < 0 for v in values) else sum(values)


@dataclass(frozen=True)
class Pressure:
    """Why a pipeline should give permits up: its own latency or saturation, or the lag of
    another pipeline it competes with or feeds."""

    cause: str  # "latency", "saturation", "lag" or "sink"
    by: str  # the pipeline whose reading breached
    reason: str
    excess: float  # the reading over its threshold (> 1)


def pressures(now: dict[str, Reading]) -> dict[str, list[Pressure]]:
    """Who should give permits up, and why. A pipeline's own P99 or saturation over its
    threshold presses on itself (fewer records in flight, shorter queues). Its lag over
    `max_lag` never does: a throttled pipeline lags more, so taking its permits for that
    would feed on itself (every system surveyed uses lag to add capacity, never to remove
    it). Lag presses on its competitors instead: the pipelines of lower priority on one of
    its workers, and those upstream, writing to the topic it reads. A sink that is slow (a
    writer spends longer than its P99 target on a batch's writes, a full local buffer
    waiting for room, and on what is left to wait of their acknowledgements once its next
    batch's stages are done) or whose local buffer fills past a writer's saturation
    threshold presses on every pipeline writing to it: the sink is shared, so is the cut."""
    out: dict[str, list[Pressure]] = {}
    for r in now.values():
        for sink, why, excess in _sink_breaches(r):
            for other in now.values():
                if sink in other.sinks:
                    out.setdefault(other.pipeline, []).append(Pressure(
                        "sink", r.pipeline, f"sink {sink}: {why} (seen by {r.pipeline})",
                        excess))
        if r.p99_ms > r.max_p99_ms:
            out.setdefault(r.pipeline, []).append(Pressure(
                "latency", r.pipeline, f"P99 {r.p99_ms:.0f} ms > {r.max_p99_ms:g} ms",
                r.p99_ms / r.max_p99_ms))
        elif r.saturation > r.max_saturation:
            out.setdefault(r.pipeline, []).append(Pressure(
                "saturation", r.pipeline,
                f"saturation {r.saturation:.0%} > {r.max_saturation:.0%}",
                r.saturation / r.max_saturation))
        if r.max_lag is not None and r.lag > r.max_lag:
            for other in now.values():
                if (relation := _lag_relation(r, other)) is not None:
                    out.setdefault(other.pipeline, []).append(Pressure(
                        "lag", r.pipeline, f"{r.pipeline} lags {r.lag} > {r.max_lag} records "
                        f"and {other.pipeline} {relation} it", r.lag / max(1, r.max_lag)))
    return out


def _lag_relation(lagging: Reading, other: Reading) -> str | None:
    """How `other` bears on `lagging`'s lag, said as a verb ("feeds": it writes the topic
    `lagging` reads; "has a lower priority than": it competes on one of its workers), or
    None when `lagging`'s lag does not press on it (itself included)."""
    if other.pipeline == lagging.pipeline:
        return None
    if lagging.source and lagging.source in other.sinks:
        return "feeds"
    if other.workers & lagging.workers and other.priority < lagging.priority:
        return "has a lower priority than"
    return None


def _sink_breaches(r: Reading) -> list[tuple[str, str, float]]:
    """(sink, what, reading over threshold) for each of `r`'s sinks, if they breach."""
    if r.sink_p99_ms > r.max_p99_ms:
        why = f"acknowledgements P99 {r.sink_p99_ms:.0f} ms > {r.max_p99_ms:g} ms"
        excess = r.sink_p99_ms / r.max_p99_ms
    elif r.sink_saturation > r.max_saturation:
        why = f"buffer {r.sink_saturation:.0%} full > {r.max_saturation:.0%}"
        excess = r.sink_saturation / r.max_saturation
    else:
        return []
    return [(sink, why, excess) for sink in sorted(r.sinks)]


Change = tuple[str, int, int, str, dict[str, float]]  # pipeline, before, after, reason, metrics


@dataclass
class _Track:
    breaches: int = 0
    healthy: int = 0
    seen: float = 0.0  # the newest sample counted: a sample counts once, however often read
    cooldown: int = 0  # samples to wait after a cut before the next (adaptive)
    breaching_since: float = 0.0  # the first sample of its breaches in a row (epoch seconds)
    capped: bool = False  # the adaptive policy's first cut was made
    # Adaptive: the excess of each pressure from another pipeline (its lag, a shared sink)
    # this one was last cut for, by (cause, pipeline).
    others_cut: dict[tuple[str, str], float] = field(default_factory=dict)
    others_cut_at: float = 0.0  # when (epoch seconds)
    # How fast each of those pressures rose before that cut (excess a second; absent: not
    # known; a lag first over its threshold at the cut: from its readings before), and when
    # each was first seen in this run of breaches, at what excess (epoch seconds, excess):
    # whether a cut helped is read from the rates.
    others_rate: dict[tuple[str, str], float] = field(default_factory=dict)
    # A lag's rise before that cut, fitted through its readings of the last
    # `AdaptivePolicy.BEFORE_S` (the larger of this and `others_rate` is how fast it rose
    # before: `_rose_before`).
    others_rise: dict[tuple[str, str], float] = field(default_factory=dict)
    pressed_from: dict[tuple[str, str], tuple[float, float]] = field(default_factory=dict)
    # When that cut showed (`AdaptivePolicy.EFFECT_S`; 0: not yet), and each of those
    # pressures' first sample since: how fast it rises from then on is the cut's effect,
    # not the backlog it left rising.
    effect_at: float = 0.0
    others_since: dict[tuple[str, str], tuple[float, float]] = field(default_factory=dict)
    # What a permit less slowed each of those pressures by (excess a second), measured at
    # the first judgement of this overload's first such cut; empty: not yet.
    others_slope: dict[tuple[str, str], float] = field(default_factory=dict)
    cut_record_ms: float = 0.0  # its stages' time a record when cut for another's pressure
    # Adaptive: after a cut for another's pressure, how high restorations may go (what it
    # was cut to: it relieved the other), since when (epoch seconds), and the allocation that
    # last hurt the other (a try goes halfway to it).
    ceiling: int | None = None
    ceiling_since: float = 0.0
    ceiling_for: frozenset[tuple[str, str]] = frozenset()  # the pressures it relieved
    nudged: bool = False  # its last cut for another's pressure was a nudge (adaptive)
    # Adaptive, this overload: its ceiling was corrected (aimed or nudged: no raise by the
    # line then); the line was drawn (`_raise_to_line`, once); and it raised the ceiling.
    corrected: bool = False
    line_drawn: bool = False
    raised_to_line: bool = False
    judge_after_s: float = 0.0  # how long after its last cut for others that cut is judged
    hurt: int = 0
    try_wait_s: float = 0.0  # at the ceiling before a try (0: TRY_AFTER_S)
    lifted_at: float = 0.0  # when its ceiling was last raised by a try (0: not since a cut)
    held_ceiling: int = 0  # the ceiling it held without hurting the other, before that try
    probe_wait: int = BREACHES  # healthy samples before a pipeline with no permit gets one
    probing: bool = False  # it holds the one permit of a probe
    baseline_ms: float | None = None  # adaptive: its usual P99, for a default target
    # Adaptive: restorations in a row that found headroom (its own count: a capped pipeline
    # has none, and resetting `healthy` for that held back the law's raise, which needs none)
    roomy: int = 0
    # Adaptive: the permits the measured law gave in each of its healthy samples in a row
    # since the last breach or change, newest last (the law's raise takes the least of them).
    laws: list[int] = field(default_factory=list)


def _probe_floor(after: int, now: int, total: int) -> int:
    """The deployment keeps a probe permit: no cut takes its last one."""
    return now - (total - 1) if total - (now - after) < 1 else after


class _Policy:
    """What both policies share: readings, the pressures on each pipeline, counting a
    sample once, and the probe permit. `cut` and `restore` are the policies' laws."""

    name = ""

    def __init__(self) -> None:
        self.tracks: dict[str, _Track] = {}

    def decide(self, samples: list[QuotaSample], allocated: dict[str, int],
               at: float | None = None) -> list[Change]:
        """The changes to make now; called by the leader's timer, more often than samples
        come (each counts once)."""
        now = self.targets(readings(samples, time.time() if at is None else at))
        self.remember(now)
        pressed = self.pressed(now)
        total = sum(allocated.get(p, r.full) for p, r in now.items())
        changes: list[Change] = []
        for pipeline, reading in sorted(now.items()):
            track = self.tracks.setdefault(pipeline, _Track())
            if reading.at <= track.seen:
                continue  # nothing new from its workers since the last decision
            track.seen = reading.at
            track.cooldown = max(0, track.cooldown - 1)
            held = allocated.get(pipeline, reading.full)
            why = self.relevant(pressed.get(pipeline, []))
            if why:
                track.breaches, track.healthy = track.breaches + 1, 0
                track.laws.clear()
                if track.breaches == 1:
                    track.breaching_since = reading.at
                    track.pressed_from = {}
                self.observe(track, reading, why)
                if track.breaches < self.breaches_before_cut(track, reading) or held == 0 \
                        or track.cooldown:
                    continue
                after = _probe_floor(self.cut(track, reading, held, why), held, total)
                if after < held:
                    reasons = "; ".join(p.reason for p in why)
                    changes.append((pipeline, held, after, f"{reasons}, {track.breaches} "
                                    "samples in a row", self.metrics(reading)))
                    total -= held - after
                    track.breaches = 0
            else:
                track.breaches = 0
                if held >= reading.full:
                    track.healthy, track.capped, track.probe_wait = 0, False, BREACHES
                    track.laws.clear()
                    continue
                track.healthy += 1
                if track.cooldown:
                    continue  # the readings right after a cut are not yet its effect
                after = self.restore(track, reading, held)
                if after > held:
                    changes.append((pipeline, held, after, f"healthy for {track.healthy} "
                                    f"samples (P99 {reading.p99_ms:.0f} ms)",
                                    self.metrics(reading)))
                    track.healthy = 0
                    track.laws.clear()
        return changes

    def targets(self, now: dict[str, Reading]) -> dict[str, Reading]:
        """The readings with the latency target this policy holds each pipeline to."""
        return now

    def remember(self, now: dict[str, Reading]) -> None:
        """Note what this policy keeps of the readings over time, before it decides."""

    def pressed(self, now: dict[str, Reading]) -> dict[str, list[Pressure]]:
        """Who should give permits up, and why (`pressures`)."""
        return pressures(now)

    def metrics(self, reading: Reading) -> dict[str, float]:
        """What a decision carries: the metrics that triggered it, and what the workers
        need to apply it."""
        return reading.metrics()

    def relevant(self, why: list[Pressure]) -> list[Pressure]:
        """The pressures this policy acts on."""
        return why

    def observe(self, track: _Track, reading: Reading, why: list[Pressure]) -> None:
        """Note a breaching sample's pressures: each one's first sample in the run of
        breaches (a pressure may join a run that began without it)."""
        for p in why:
            track.pressed_from.setdefault((p.cause, p.by), (reading.at, p.excess))

    def breaching(self, sample: QuotaSample) -> bool:
        """A worker's own sample over a threshold this policy counts (it then hurries the
        next sample, see SampleSchedule)."""
        return sample.breaches()

    def waits(self, sample: QuotaSample) -> bool:
        """A breaching sample this policy waits on for a measure before it cuts: the next
        comes a quarter interval later (SampleSchedule)."""
        return False

    def breaches_before_cut(self, track: _Track, reading: Reading) -> int:
        """Breaching samples in a row before a cut: a single bad sample revokes nothing."""
        return BREACHES

    def cut(self, track: _Track, reading: Reading, held: int, why: list[Pressure]) -> int:
        raise NotImplementedError

    def restore(self, track: _Track, reading: Reading, held: int) -> int:
        raise NotImplementedError


class StepPolicy(_Policy):
    """The design's policy: two consecutive breaches revoke 20% of the allocation; `HEALTHY`
    healthy samples in a row give 20% of the full allocation back."""

    name = "step"

    def cut(self, track: _Track, reading: Reading, held: int, why: list[Pressure]) -> int:
        return max(0, held - max(1, math.ceil(STEP * held)))

    def restore(self, track: _Track, reading: Reading, held: int) -> int:
        if track.healthy < HEALTHY:
            return held
        return min(reading.full, held + max(1, math.ceil(STEP * reading.full)))


class AdaptivePolicy(_Policy):
    """Cut to what the pipeline can do, then follow the latency gradient; give back only
    what it shows it can use.

    - First cut (Little's law, N = X * T): a step of the agent takes T = c*N + a for a
      batch of N records (c, the stages' time a record of the batch at the P99, read at
      once from the batch in process; a, the wait for acknowledgements), and a batch spans
      two steps (it is settled in the step after its own, streams.agent). Any rate above
      what the stages do only lengthens the queue, so the first cut caps it below that, at
      the rate where its batches settle at `AIM` of its target (`first_cap`): a share of
      that over its rate at full allocation. A cap above that rate says its stages are not
      what breaches: it is waited out for the window a P99 is taken over (one slow batch),
      then cut by the gradient. While the batch at the P99 is still in its stages, and
      younger than `STAGES_WAIT` times its target, the first cut waits for it: its age a
      record is only a lower bound of their time.
    - Then, while it still breaches, `COOLDOWN` samples after each cut: the first cap's law
      again with the stages' time a record as measured since (`recap`), when that is at
      least 10% under what it holds (`RECAP_BELOW`; less is noise); and whenever that law
      gave it at least 5% more than it holds in each of its last `RAISE_SAMPLES` healthy
      samples, and its latency is under the aim, the least of those back at once (the first
      cut reads one batch in process, and may undershoot as well as overshoot; a stage may
      get faster in a slowdown). Else,
      when it breaches by more than `TOLERANCE`, and for longer than the window a P99 is
      taken over when the law says it can do what it holds (one slow batch breaches that
      long), a multiplicative cut by the latency gradient (T / P99, at most halving, at
      least 10%).
    - A pipeline pressed by another's lag is a competitor (one cut for its own latency
      and still over it is pressed, the first time in an overload, by a lag still on its
      way over its threshold: `pressed`), and one pressed by a sink it shares with another
      (slow acknowledgements, a filling buffer) a co-writer: it keeps `OTHERS_CUT` of its
      permits, and is cut again only if that pressure, over `TOLERANCE`
      of its threshold `JUDGE_S` after the cut and a second after the cut showed (this one
      at its new rate; a sample up to `SAMPLE_SLACK_S` early counts; a pressure gone before
      that, or for fewer than `HEALTHY` samples, and back is judged as if it had not gone,
      on its first sample back), or within it but a lag over every reading since the cut
      showed (two, both over it at the cut, do), does not fall fast enough to drain in
      `DRAIN_S` (nor does a lag whose two readings since the cut showed rose, whatever the
      excess at the first sample since says) and does not rise as fast as before it (then it
      is not this one's doing; a lag first over its threshold at the cut rose as fast as the
      larger of its rates over the last `RATE_S` and, fitted, over the last `BEFORE_S` say),
      read from when the cut showed (`EFFECT_S`; a lag's, fitted through all its readings
      since, within `HISTORY_S` of the cut): to where the line through its rates before and
      after the overload's first cut says it would (`_aim`; drawn `JUDGE_S` after that cut,
      `_learn_slope`), no lower than `OTHERS_CUT`; pressed again after holding what it was
      cut to for `NUDGE_AFTER_S`, by a pressure over `TOLERANCE` of its threshold and not
      draining `JUDGE_S` later, it was nearly enough: the same aim, or, not known, one
      permit in ten. Such a correction (an aim, a nudge) is judged `CORRECTION_JUDGE_S`
      after it; a nudge was enough once the pressure falls. Whenever its own latency asks
      for nothing (one slow batch, noise), another's pressure is weighed. Restorations then
      stop at what it was cut to, the allocation that relieved the other, but for one permit
      more, once, when the line says the overload's first cut went too far
      (`_raise_to_line`; not after a cut made before the lag crossed its threshold),
      until its stages take less than half the time a record they took at the cut (the
      slowdown ended: all of it back), or for `TRY_AFTER_S`: then it tries
      halfway to the allocation that hurt before any nudge (all of it when that is near). A
      try that hurts the other within `TRY_S` sends it back to the ceiling it held, and the
      next waits twice as long (up to `TRY_AFTER_MAX_S`); one that holds is the ceiling from
      then on. Only trying shows what the other needs, and a try that fails costs it a lag
      spike and two changes: at most one a minute keeps a steady overload within two changes
      a minute (climbing straight back to 80% of what hurt, as before, hurt it again in
      every contended bench run, two changes each: 17 permits of 22, 14 of 18).
    - A pipeline left with no permit has no readings: it gets one back as a probe, after
      twice as many healthy samples each time a probe failed.
    - Back up only with headroom (healthy, and working in its stages less than half the
      time; waiting for acknowledgements is not work): in proportion to it, so that it would
      work `BUSY_AFTER` of the time at most, and at most doubling, up to the full allocation.
      A pipeline capped at what its stage can do keeps it working, so steady overload does
      not flap (a gate at 80% was tried: just after a cut, while its bucket fills, a capped
      pipeline works less, and it sawed 21 times in a minute). Each step waits for two
      healthy samples.
    - Saturation (busy time) never cuts: a pipeline busy all the time at a good latency is
      catching up at full speed, and a capped one is meant to be busy.
    - A pipeline without a target of its own (no `max_p99_ms` in its quota section) is held
      to a spike, not to the deployment's default alone: `SPIKE` times its usual P99 (a
      moving average of its healthy samples), or the default if that is higher. A bulk
      pipeline whose batches always take 80 ms is not throttled for it; one whose latency
      jumps to 300 ms is. Set `max_p99_ms` to hold a pipeline to a latency strictly.
    """

    name = "adaptive"
    MARGIN = 0.95  # of the measured throughput, for the first cut, at most
    AIM = 0.8  # of the target: the P99 latency the first cut aims at
    COOLDOWN = 2  # samples
    HEADROOM = 0.5  # of the time working in the stages
    BUSY_AFTER = 0.8  # the share of the time in its stages a restoration aims at, at most
    # Once capped, a P99 within this factor of the target is noise around it (a broker's
    # acknowledgement time varies by tens of ms), not a queue: no further cut for it. So is
    # another's pressure within it, back at a ceiling that relieved it for long.
    TOLERANCE = 1.5
    # Seconds at the allocation that relieved another's pressure before trying more: a
    # pipeline catching up at full speed would otherwise starve the other in turn, again
    # and again (back-off with memory, as AIMD's).
    TRY_AFTER_S = 60.0
    # Each time a try hurt the other again, the next waits twice as long, up to this: in
    # steady overload the competitor tries less and less often.
    TRY_AFTER_MAX_S = 480.0
    # A cut for the other's pressure within this long (seconds) of a try is the try's
    # doing; one later is another overload, with its ceiling and waits learnt afresh.
    TRY_S = 60.0
    # A try within this share of the allocation that hurt gets all of it: halving the rest
    # of the way would take a try a minute for a few permits. Under 1 - OTHERS_CUT, so the
    # first try after a cut goes halfway, not straight back to what hurt.
    TRY_NEAR = 0.15
    # A cut for another's pressure keeps this share: a multiplicative decrease, as TCP's.
    # Halving kept 0.75-0.88 of what the best static cap let the slowed stage do beside the
    # bench's high-priority pipeline; 0.7 (CUBIC's) kept 0.86-0.94 of it, where the best cap
    # let through 0.77 of the records/s of the permits that hurt (12-06's runs at 592d4f3).
    OTHERS_CUT = 0.75
    # Seconds after such a cut before judging it: the other's backlog takes that long to
    # turn with less relief (a cut to 0.6, judged a second after, was read as too small on
    # Apache Kafka while the other's lag was still rising from before it, and cut to 0.35).
    JUDGE_S = 2.0
    # Pressed again after holding its ceiling this long (seconds), the ceiling was nearly
    # right (the other's lag crept back over 25 s at 14 permits on Tansu): NUDGE less.
    NUDGE_AFTER_S = 10.0
    NUDGE = 0.1
    # A correction (a cut to `_aim`, a nudge) is judged this long after it (seconds), and,
    # the pressure not draining, corrected again (after a nudge, `_aim` not known, nudged
    # again, not cut to OTHERS_CUT): a permit or two less turns the other's backlog more
    # slowly than a cut does, and a second of its lag is noise (seen on Tansu: the other's
    # lag still rising 2 s after a nudge from 12 to 11, and the cut that judged it so took it
    # to 7; 13 aimed down to 11, and judged 2 s later on a second of lag, 11 to 9).
    CORRECTION_JUDGE_S = 5.0
    # A cut for others shows once the pipeline cut runs at its new rate: its throughput
    # since its last sample within EFFECT_RATE of what its permits now let through, at
    # least EFFECT_S after the cut (the workers apply it, the other's next sample reads the
    # result) and at most EFFECT_MAX_S. A cut is judged on the other's rates from then on,
    # and at least JUDGE_AFTER_EFFECT_S after that. Seen on Apache Kafka: 26 permits cut to
    # 18, the cut pipeline's throughput at its new rate only 2.4 s later, the other's lag
    # rising until then and falling after; judged 2.4 s after the cut on the rise, 18 was
    # cut to 15, where 18 was the line. On Tansu, a cut at its new rate within a second,
    # the other's lag still rising 2.4 s later: not enough. Read over WINDOW_S (2 s), as it
    # was, a cut showed 1.9 s after it where its records/s since the sample before were at
    # the new rate after 0.9 s (Apache Kafka, 25 permits cut to 18): judged a second late,
    # settled late (5.4 s).
    EFFECT_S = 0.5
    # Seconds a sample may come before its time: a worker samples when a tenth of its
    # interval is left (SampleSchedule), so the 4th sample after a cut, 0.5 s apart, comes
    # 1.96 s after it, and a cut due to be judged 2 s after it was judged at the 5th, half
    # a second late (replayed, four recorded runs on both brokers are cut again 0.5 s
    # sooner).
    SAMPLE_SLACK_S = 0.2
    EFFECT_MAX_S = 3.0
    EFFECT_RATE = 1.1
    JUDGE_AFTER_EFFECT_S = 1.0
    # Seconds a cut for another's lag should let it drain in, back under its threshold: a
    # lag that plateaus over it keeps the other's latency at its backlog's for good.
    DRAIN_S = 10.0
    # A first cut waits for the batch at the P99 to leave its stages while that batch is
    # younger than this many times its target: a stage slower than that is cut at once, on
    # the lower bound its age gives (the measured law then corrects it).
    STAGES_WAIT = 2.0
    SPIKE = 2.0  # over its usual P99: a spike, for a pipeline with the default target
    # A re-cap goes only this far under what it holds, at least: the stages' time a record
    # varies by a tenth from one second to the next on a loaded machine (4.4 to 4.8 ms in
    # the bench), and a cut for each such reading walked 23 permits down to 13.
    RECAP_BELOW = 0.9
    # A raise to what the measured law gives needs less: it never goes past the law, so it
    # cannot walk anywhere the way cuts for noise did, and a cap left 5-10% under the stage
    # (seen: 22 permits where the law gave 24) keeps that much less for the whole slowdown.
    RAISE_BELOW = 0.95
    RAISE_SAMPLES = 3  # healthy samples in a row the law's raise takes the least of
    BASELINE_WEIGHT = 0.1  # of each healthy sample in the usual P99
    # Seconds of another pipeline's readings that the rate of its lag is read over when
    # that lag first shows over its threshold at a cut (a competitor whose own latency asks
    # for nothing is cut at once): the rate before the cut is what later judgements of it,
    # and the line `_aim` draws, are measured against.
    RATE_S = 1.0
    # Seconds of its readings such a lag's rise before the cut is also fitted over: it
    # moves by the other's batches, and the larger of the two rates is how fast it rose.
    BEFORE_S = 2.0
    # Seconds of another pipeline's lag readings a cut is judged on, at most: all of them
    # since the cut showed, fitted by least squares, not the first and the last. A lag
    # moves by the producer's batches (100 records at once in the bench), so two readings a
    # few seconds apart misread its rate (seen on Tansu: a lag falling at 0.095 of its
    # `max_lag` a second over 2.4 s, where 0.093 drained it in time, read from its first
    # and last readings as 0.045, and 12 permits cut to 11, under the best static cap).
    HISTORY_S = 10.0
    # A first cut for another's lag that the line through it says went this share of the
    # permits at which that lag stops falling, or further, under them gets a permit back
    # (`_raise_to_line`): the line is drawn through a few noisy readings, and a permit over
    # it hurts the other again (seen on Tansu: held at 14 permits, the other's P99 grew to
    # 816 ms in one run and stayed at 237-276 ms in others; at 13, 213-245 ms).
    LINE_SHARE = 0.95
    DRAINED = 0.1  # of its `max_lag`: a lag under it has drained (`_raise_to_line`)

    def __init__(self) -> None:
        super().__init__()
        # Each pipeline's lag over its `max_lag` in its readings of the last HISTORY_S,
        # oldest first (under its threshold too).
        self.lags: dict[str, list[tuple[float, float]]] = {}

    def remember(self, now: dict[str, Reading]) -> None:
        for pipeline, reading in now.items():
            if reading.max_lag is None:
                continue
            kept = self.lags.setdefault(pipeline, [])
            if kept and reading.at <= kept[-1][0]:
                continue  # no new reading
            kept.append((reading.at, reading.lag / max(1, reading.max_lag)))
            self.lags[pipeline] = [(at, x) for at, x in kept
                                   if reading.at - at <= self.HISTORY_S]
        for pipeline, reading in now.items():
            track = self.tracks.get(pipeline)
            if track is not None and track.others_cut_at and not track.effect_at \
                    and self._shows(track, reading):
                track.effect_at = reading.at
        for track in self.tracks.values():
            self._learn_slope(track)

    def pressed(self, now: dict[str, Reading]) -> dict[str, list[Pressure]]:
        """`pressures`, and a lag still under its threshold but on its way over it
        (`_lag_on_its_way`) pressing on a competitor (or a feeder) already cut for its own
        latency, still breaching it, and not yet cut for another's pressure this overload:
        the slowdown that has it cut also starves the other, and a cut for the lag once over
        its threshold comes a second or more later, when that lag crosses it on its next
        batch (seen on Tansu: 124 and 133 records of 250 0.4 and 0.9 s after the first cut,
        249 at 1.4 s, 264 at 1.9 s and cut only then; where the lag crossed that late and
        the cut was corrected 2 s after it, settled at 4.9 s).
        Later cuts for it wait for the threshold: after a cut for others, a lag rising
        between the other's batches is what the judgement of that cut reads."""
        out = pressures(now)
        for lagging in now.values():
            if lagging.max_lag is None or lagging.lag > lagging.max_lag \
                    or not self._lag_on_its_way(lagging.pipeline):
                continue
            for other in now.values():
                relation = _lag_relation(lagging, other)
                track = self.tracks.get(other.pipeline)
                own = out.get(other.pipeline, [])
                if relation is None or track is None or not track.capped \
                        or track.ceiling is not None \
                        or not any(p.cause == "latency" and p.by == other.pipeline for p in own):
                    continue
                own.append(Pressure(
                    "lag", lagging.pipeline, f"{lagging.pipeline} lags {lagging.lag} records, "
                    f"on its way over {lagging.max_lag} within {self.JUDGE_S:g} s, and "
                    f"{other.pipeline} {relation} it", lagging.lag / max(1, lagging.max_lag)))
        return out

    def _lag_on_its_way(self, pipeline: str) -> bool:
        """`pipeline`'s last three lag readings each over the one before, and the slope
        through them puts its lag over its threshold within `JUDGE_S`, the time a cut made
        now takes to turn it: a lag that rises and keeps what it gained (a lone spike falls
        back at the next reading; seen in the bench's healthy runs: up to 105 records of
        250, then under 10). Three readings span a second at the bench's interval, two at
        the default one."""
        kept = self.lags.get(pipeline, [])[-3:]
        if len(kept) < 3 or not all(x < y for (_, x), (_, y) in itertools.pairwise(kept)):
            return False
        rate = _fitted_rate(kept)
        return rate is not None and kept[-1][1] + rate * self.JUDGE_S > 1

    def _shows(self, track: _Track, reading: Reading) -> bool:
        """Its last cut for others shows in `reading` (`EFFECT_S`): it runs at its new
        rate since its last sample (over WINDOW_S from a worker that does not say), or that
        cut is `EFFECT_MAX_S` old."""
        since = reading.at - track.others_cut_at
        if since < self.EFFECT_S:
            return False
        new_rate = reading.full_rate * (track.ceiling or 0) / max(1, reading.full)
        rate = reading.interval_throughput
        if rate < 0:
            rate = reading.throughput
        return since >= self.EFFECT_MAX_S or rate <= self.EFFECT_RATE * new_rate

    def _judged_from(self, track: _Track) -> float:
        """When its last cut for others can be judged: `judge_after_s` after it, and
        `JUDGE_AFTER_EFFECT_S` after it showed (infinity: not shown yet)."""
        if not track.effect_at:
            return math.inf
        return max(track.others_cut_at + track.judge_after_s,
                   track.effect_at + self.JUDGE_AFTER_EFFECT_S) - self.SAMPLE_SLACK_S

    def _learn_slope(self, track: _Track) -> None:
        """What a permit less slowed each lag the first cut of an overload was for, read
        when that cut can be judged (`_judged_from`) from the other's readings of the last
        `RATE_S` (those from when the cut showed), over it or under its threshold: a first
        cut that drains the other's lag within `JUDGE_S` is never judged, and a lag that
        creeps back after a long hold would otherwise be corrected a permit in ten at a time
        (seen on Tansu: 21 permits cut to 14, the lag under its threshold 2 s later, back
        after 25 s, and nudged to 13 and, 18 s later, to 12)."""
        cut_to = track.ceiling
        if track.others_slope or track.nudged or cut_to is None or track.hurt <= cut_to:
            return
        rates = {}
        for key in track.others_rate:
            kept = self.lags.get(key[1], [])
            if key[0] != "lag" or not kept \
                    or not 0 <= kept[-1][0] - self._judged_from(track) < self.RATE_S:
                continue
            rate = self._lag_rate(key[1])
            if rate is not None:
                rates[key] = rate
        track.others_slope = _slopes(_rose_before(track), rates, track.hurt - cut_to)

    def _lags_since(self, pipeline: str, since: float, until: float
                    ) -> list[tuple[float, float]]:
        """`pipeline`'s lag readings (time, lag over its `max_lag`) from `since` to `until`,
        oldest first."""
        return [(at, x) for at, x in self.lags.get(pipeline, []) if since <= at <= until]

    def _rising_since(self, key: tuple[str, str], since: float, at_cut: float) -> bool:
        """Whether a lag has only risen since `since` (when the cut showed: a reading from
        before is of the old rates, and a spike in it hid the rise after; seen on Tansu, 377
        records 0.5 s after the cut, then 292 to 347 from when it showed, cut again only once
        over `TOLERANCE`, 0.5 s later): its last reading over every one before it, three at
        least, or two over `at_cut`, its excess at the cut (the other samples a little
        before this one, so a cut judged a second after it showed has two of its readings
        since; seen on Tansu: 321 and 337 records, from 281 at the cut, read as noise and
        cut again a sample later, settled at 5.36 s). Within `TOLERANCE` such a lag is not
        noise around its threshold (a lag that drains falls in steps as the other's batches
        finish: read over a second or two, its rate between the steps says nothing)."""
        if key[0] != "lag":
            return False
        points = [x for _, x in self._lags_since(key[1], since, math.inf)]
        if len(points) == 2:
            points.insert(0, at_cut)
        return len(points) >= 3 and all(points[-1] > x for x in points[:-1])

    def _lag_rate(self, pipeline: str) -> float | None:
        """How fast `pipeline`'s lag rose (over its `max_lag`, a second) across its readings
        of the last RATE_S; None without two of them at least a quarter of that apart."""
        kept = self.lags.get(pipeline, [])
        kept = [(at, x) for at, x in kept if kept[-1][0] - at <= self.RATE_S]
        if len(kept) < 2 or kept[-1][0] - kept[0][0] < self.RATE_S / 4:
            return None
        (first_at, first), (last_at, last) = kept[0], kept[-1]
        return (last - first) / (last_at - first_at)

    def targets(self, now: dict[str, Reading]) -> dict[str, Reading]:
        out = {}
        for pipeline, reading in now.items():
            track = self.tracks.setdefault(pipeline, _Track())
            if reading.target_set:
                out[pipeline] = reading
                continue
            if track.baseline_ms is None and reading.p99_ms > 0:
                track.baseline_ms = reading.p99_ms  # its first reading, until it learns more
            base = track.baseline_ms or 0.0
            target = max(reading.max_p99_ms, self.SPIKE * base)
            if reading.at > track.seen and 0 < reading.p99_ms <= target:
                track.baseline_ms = base + self.BASELINE_WEIGHT * (reading.p99_ms - base)
            out[pipeline] = replace(reading, max_p99_ms=target)
        return out

    def relevant(self, why: list[Pressure]) -> list[Pressure]:
        return [p for p in why if p.cause != "saturation"]

    def metrics(self, reading: Reading) -> dict[str, float]:
        # How long a step may take at the capped rate (streams.permits): N = X * T, so a
        # batch never holds more than a step's aim of records, whatever waited before it.
        return {**reading.metrics(), "batch_s": self.AIM * reading.max_p99_ms / 2 / 1000}

    def breaching(self, sample: QuotaSample) -> bool:
        return sample.breaches(busy=False)

    def waits(self, sample: QuotaSample) -> bool:
        # At full allocation, its first cut waits for the batch at the P99 to leave its
        # stages (`STAGES_WAIT`).
        return sample.batch_in_stages and sample.permits >= sample.full

    def breaches_before_cut(self, track: _Track, reading: Reading) -> int:
        # A cut for others that can be judged is judged on the other's readings since it
        # showed, not on one sample: a lag that dipped under its threshold between the
        # other's batches and is back needs no second sample in a row (seen on Tansu: the
        # judgement put off 1 s by a dip, 18 permits cut to 13 at 4.9 s, not 3.9).
        if track.others_cut and reading.at >= self._judged_from(track):
            return 1
        return BREACHES

    def cut(self, track: _Track, reading: Reading, held: int, why: list[Pressure]) -> int:
        if track.probing and held <= 1:  # the probe failed: wait twice as long for the next
            track.probe_wait = min(64, track.probe_wait * 2)
        track.probing = False
        own = [p for p in why if p.by == reading.pipeline]
        others = [p for p in why if p.by != reading.pipeline]  # another's lag, a shared sink
        after = self._cut_for_own(track, reading, held, own) if own else held
        if after < held:
            # Only a cut waits out the samples before its effect shows: after a hold (one
            # slow batch, noise) the next sample is weighed (seen on Apache Kafka: the other's
            # lag, first over its threshold a sample after such a hold, cut 0.5 s late).
            track.cooldown = self.COOLDOWN
        elif others:
            # Its own latency asks for nothing now (one slow batch, noise around its
            # target): another's pressure still may (seen: the other's lag left to rise for
            # 1.5 s while this one's P99 still read batches from before its own cut).
            return self._cut_for_others(track, reading, held, others)
        return after

    def _cut_for_own(self, track: _Track, reading: Reading, held: int,
                     own: list[Pressure]) -> int:
        """Its own latency's cut: the first cap's law, then the measured law or the
        gradient (the class's docstring)."""
        if not track.capped and reading.full_rate > 0 and reading.batch_records > 0:
            if reading.batch_in_stages \
                    and reading.p99_ms < self.STAGES_WAIT * reading.max_p99_ms:
                # Its batch at the P99 is still in its stages: its age a record is a lower
                # bound of their time, and a cap from it a second change to come (seen on
                # both brokers: 3.7-4.3 ms a record read at the cut, 4.5-4.6 measured a
                # second later, 100 to 25 to 21). Its samples come a quarter interval
                # apart meanwhile (`waits`).
                return held
            share = self.first_cap(reading) / reading.full_rate
            if share < 1:
                track.capped = True
                return min(held - 1, max(1, round(reading.full * share)))
            if _one_slow_batch(track, reading):
                # Its stages do all it takes at full allocation within the aim: the breach
                # is not their throughput (seen: 100 permits cut to 99 and back for one
                # slow batch in a healthy run). A longer breach is cut by the gradient.
                return held
        recap = self.recap(reading)
        if recap is not None and reading.full_rate > 0:
            # Capped since the readings started over: they are all of the capped regime, so
            # its stages' time a record is measured, not inferred from a batch in flight.
            # Well under what it holds: the stages cannot do it, and the measured law
            # says where they can, whatever the size of the breach (the gradient, read from
            # one slow batch, over- or undershoots). Else its latency is not its stages'
            # doing, and the gradient rules.
            recapped = round(reading.full * recap / reading.full_rate)
            if recapped < held * self.RECAP_BELOW:
                track.capped = True
                return max(1, recapped)
        excess = max(p.excess for p in own)
        if track.capped and excess < self.TOLERANCE:
            return held
        if recap is not None and _one_slow_batch(track, reading):
            # The law says it can do what it holds: cutting for one slow batch only costs
            # throughput (seen: 25 to 15 permits for one batch of 392 ms, kept 0.68).
            return held
        gradient = max(0.5, min(0.9, 1 / excess))
        track.capped = True
        return min(held - 1, math.floor(held * gradient))

    def _cut_for_others(self, track: _Track, reading: Reading, held: int,
                        why: list[Pressure]) -> int:
        """Cut by `OTHERS_CUT` for another's pressure (its lag, a sink they share), again
        only while the last cut helped but not enough, judged `JUDGE_S` after it on how the
        pressure moved since the cut showed (`EFFECT_S`). After a cut, a pressure within
        `TOLERANCE` of its threshold (noise around it), or one that falls fast enough to
        drain within `DRAIN_S`, says it was enough (cutting more would only slow this one
        for a backlog already going; seen in the bench: halved again while the other's lag
        fell, 20 to 10 to 5 permits, for a lag 10 already drained), and one that rose as
        fast as before says this one is not its cause; one that rose more slowly or stays
        flat, that the cut helped, not enough: cut to where it would drain (`_aim`). Pressed
        again after holding its ceiling for `NUDGE_AFTER_S`, by a pressure over `TOLERANCE`
        of its threshold that does not drain `JUDGE_S` later, it was nearly right: cut to
        where it would drain, or, that not known, by one permit in ten (a nudge). Such a
        correction is judged `CORRECTION_JUDGE_S` after it; after a nudge, a pressure that
        falls was relieved enough.
        A cut soon after a try (`restore`) sends it back to the ceiling it held before."""
        excesses = {(p.cause, p.by): p.excess for p in why}
        nudge = held - max(1, round(held * self.NUDGE))
        after, nudged, corrected = math.floor(held * self.OTHERS_CUT), False, False
        if track.others_cut:
            if reading.at < self._judged_from(track):
                return held  # too soon to tell: the other's backlog takes time to turn
            rates = self._rates_since_cut(track, reading.at, excesses)
            drain = self._drain(excesses)
            rising = self._rising_on_two_readings(track, reading.at, rates, drain)
            if not track.others_slope and not track.nudged and track.hurt > held:
                # What a permit less slowed it by, this episode, when `_learn_slope` has not
                # read it (a shared sink's pressure; a lag without readings); measured
                # whether the cut was enough or not: a pressure that creeps back after a long
                # hold is then corrected at once to where it would drain, not a permit in
                # ten at a time (seen on Tansu: the other's lag drained at 16 permits, came
                # back 20 s later, and took two nudges, to 14 and 13, 5 s apart).
                track.others_slope = _slopes(_rose_before(track), rates, track.hurt - held)
            if all((excesses[key] < self.TOLERANCE
                    and not self._rising_since(key, track.effect_at,
                                               track.others_cut.get(key, math.inf)))
                   or (key not in rising and (rate < 0 if track.nudged else rate <= drain[key]))
                   for key, rate in rates.items()):
                # Relieved enough. A pressure within TOLERANCE of its threshold is noise
                # around it (seen on Tansu: the other's lag flat at 1.2-1.3 of its max_lag,
                # its P99 at 205-215 ms of 1000, and 14 permits cut to 9 for it), but for a
                # lag over every reading since the cut: it has not turned (seen on Tansu:
                # from 1.06 to 1.52 of its max_lag in 4 s, 18 permits cut again to 15 only
                # once it passed 1.5, at 5.9 s: settled late). A nudge
                # answered a pressure that crept back after a long hold: one it turns is
                # (asked to drain within DRAIN_S, Tansu's 14 permits went on to 12 in two
                # nudges, for a lag falling at 0.072 of its threshold a second where 0.08
                # would do).
                return held
            # As fast as before the cut, when that is known (a pressure that began with the
            # cut rose at a rate not known: rising, the cut was not enough). After a
            # correction (a nudge is one), that says nothing: a nudge's ceiling relieved this
            # pressure for long, a permit or three less barely shows, and the overload's
            # first cut (a quarter of the permits, which helped) said this one is a cause
            # (seen on Tansu: 15 to 14, then held while the other's lag rose from 436 to 1,635
            # records over 25 s, its P99 to 2 s).
            rose = _rose_before(track)
            if not track.corrected \
                    and all(key in rose and rate >= 0.9 * rose[key] for key, rate in rates.items()):
                return held
            rates |= rising
            aim = self._aim(held, rates, drain, track.others_slope)
            if aim is not None:  # after a nudge, as small a correction as one
                after, nudged, corrected = aim, track.nudged, True
            elif track.nudged:
                after, nudged, corrected = nudge, True, True
            track.others_rate, track.others_rise = rates, {}
        else:
            # Each pressure's rate from when it was first seen in the breaches; first seen
            # at this sample, not known (not 0, as before: any rise after the cut then read
            # as "as fast as before" and held; seen: the other's lag, which joined breaches
            # begun by this one's own latency, rose for the whole slowdown, to a P99 of 4.5 s).
            start = track.pressed_from
            before = {key: (excess - start[key][1]) / (reading.at - start[key][0])
                      for key, excess in excesses.items()
                      if key in start and reading.at > start[key][0]}
            for key in excesses.keys() - before.keys():
                # First over its threshold now: a lag's rate is read from the other's
                # readings before (seen on Tansu: not known, a lag wavering 2 s after the
                # cut, 1.3 to 1.8 of its max_lag, sent 15 permits to 0.7, 10, where 12 was
                # the best cap; known, the line says 13).
                rate = self._lag_rate(key[1]) if key[0] == "lag" else None
                if rate is not None:
                    before[key] = rate
            at_ceiling = track.ceiling is not None and held <= track.ceiling \
                and not track.lifted_at and set(excesses) <= track.ceiling_for
            if at_ceiling and max(excesses.values()) < self.TOLERANCE:
                # Back at the ceiling that relieved it, a pressure within TOLERANCE of its
                # threshold is noise around it, as its own latency's is once capped, soon
                # after the cut (a backlog still draining: seen on Tansu, the other's lag
                # under its max_lag, then back at 1.1 of it 6.7 s after a cut to 17, which
                # then went on to 11 as if that cut had not been made, where 14 held the
                # other in its quota) or long after (the other's lag wavering at 1.0-1.4
                # of its max_lag, its P99 210-230 ms of 1000, nudged 12 to 11 to 10 in 6 s).
                return held
            if at_ceiling and reading.at - track.ceiling_since >= self.NUDGE_AFTER_S:
                # Nearly right: judged as a cut is, on the pressure since it was first seen
                # (one that drains within DRAIN_S is a blip; seen: the other's lag just over
                # its threshold for 3 s, 15 s into a ceiling that held), then cut to where
                # it would drain, or, that not known, by one permit in ten.
                if reading.at - max(start[key][0] for key in excesses) < self.JUDGE_S:
                    return held
                drain = self._drain(excesses)
                if all(rate <= drain[key] for key, rate in before.items()):
                    return held
                aim = self._aim(held, before, drain, track.others_slope)
                after, nudged, corrected = nudge if aim is None else aim, True, True
            if track.ceiling is None:  # a new overload: what a permit does, learnt afresh
                track.others_slope, track.corrected = {}, False
                track.raised_to_line = False
                # A cut made before the lag crossed its threshold (`pressed`) draws no
                # line: the lag drains from under it in a step or two of the other's
                # batches (90 records of 250 each on Tansu), too few to read its rate by,
                # and the line drawn through them gave 18 permits one more in three of eight
                # runs, where 18 had drained the lag; 19 hurt the other again in one, 9 s
                # later (a fourth change).
                track.line_drawn = all(excess <= 1 for excess in excesses.values())
            track.others_rate = before
            # A lag's rise is also fitted over BEFORE_S, and the larger rate is how fast it
            # rose (`_rose_before`): a flat second before a jump read 0.09 of its max_lag a
            # second where the lag had risen 0.5 since the slowdown began, and a rise of
            # 0.12 after the cut held 18 permits for 6.7 s as "not this one's doing"
            # (Tansu); with the fitted rise, cut to 14 at 4.3 s. The fitted rise alone, in
            # place of the rate, read lower in other runs, and the line drawn from it raised
            # 18 to 19 in five runs where 18 was enough.
            track.others_rise = {key: rate for key in excesses if key[0] == "lag"
                                 and (rate := _fitted_rate(self._lags_since(
                                     key[1], reading.at - self.BEFORE_S, reading.at)))
                                 is not None}
        track.others_since = {}
        track.others_cut, track.others_cut_at, track.effect_at = excesses, reading.at, 0.0
        track.cooldown = self.COOLDOWN
        track.cut_record_ms = reading.record_ms
        after = max(0, min(held - 1, after))
        raise_hurt = False
        if track.lifted_at and reading.at - track.lifted_at <= self.TRY_S \
                and 0 < track.held_ceiling < held:
            raise_hurt = track.raised_to_line and held == track.held_ceiling + 1
            # The try hurt the other again: back to the ceiling it held without hurting (a
            # cut of what hurt could be more, or much less), and a longer wait before the
            # next.
            after = track.held_ceiling
            track.try_wait_s = min(self.TRY_AFTER_MAX_S,
                                   2 * (track.try_wait_s or self.TRY_AFTER_S))
        elif track.lifted_at:  # long after the try: another overload, learnt afresh
            track.try_wait_s, track.others_slope = 0.0, {}
        track.nudged = nudged and after < held
        track.corrected = track.corrected or corrected
        track.judge_after_s = self.CORRECTION_JUDGE_S if corrected else self.JUDGE_S
        # What a nudge took from held only slowly is not what hurt; nor is the permit a
        # raise by the line added (a try goes halfway to what hurt: that permit again).
        if not track.nudged and not raise_hurt:
            track.hurt = held
        track.lifted_at, track.held_ceiling = 0.0, 0
        track.ceiling, track.ceiling_since = max(1, after), reading.at
        track.ceiling_for = frozenset(excesses)
        return after

    def observe(self, track: _Track, reading: Reading, why: list[Pressure]) -> None:
        super().observe(track, reading, why)
        if track.others_cut and track.effect_at:  # set from this reading or an older one
            for p in why:
                track.others_since.setdefault((p.cause, p.by), (reading.at, p.excess))

    def _rates_since_cut(self, track: _Track, at: float, excesses: dict[tuple[str, str], float]
                         ) -> dict[tuple[str, str], float]:
        """How fast each pressure rose (excess a second) since the last cut for others could
        show (`EFFECT_S`), or since the cut when it has not been seen since then; one not
        there at the cut has not risen (it is a new one). A lag with three readings or more
        since then, within `HISTORY_S` of the cut, rose at the slope fitted through them all
        (`_fitted_rate`); else, from its first to its last."""
        rates = {}
        for key, excess in excesses.items():
            since = track.others_since.get(key)
            if since is None or at <= since[0]:  # not seen since, or first at this sample
                since = (track.others_cut_at, track.others_cut.get(key, excess))
            rates[key] = (excess - since[1]) / max(1e-9, at - since[0])
            if key[0] == "lag" and at - track.others_cut_at <= self.HISTORY_S:
                fitted = _fitted_rate(self._lags_since(key[1], track.effect_at, at))
                if fitted is not None:
                    rates[key] = fitted
        return rates

    def _rising_on_two_readings(self, track: _Track, at: float,
                                rates: dict[tuple[str, str], float],
                                drain: dict[tuple[str, str], float]
                                ) -> dict[tuple[str, str], float]:
        """The lags `rates` reads as draining that rose from the first to the second of their
        two readings since the cut showed, faster than `drain`: their rate across those two.
        With two, a lag's rate is read from the excess at this pipeline's first sample since,
        which may be the other's reading from before the cut showed (it samples a little
        earlier), at a step of its sawtooth (a lag falls in steps as the other's batches
        finish; seen on Tansu: 393 records there, then 301 and 316 since: read as draining,
        cut again a sample later, settled at 5.0014 s)."""
        rising = {}
        for key, rate in rates.items():
            points = self._lags_since(key[1], track.effect_at, at) if key[0] == "lag" else []
            if len(points) != 2 or rate > drain[key]:
                continue
            (first_at, first), (last_at, last) = points
            if last_at > first_at and (own := (last - first) / (last_at - first_at)) > drain[key]:
                rising[key] = own
        return rising

    def _drain(self, excesses: dict[tuple[str, str], float]) -> dict[tuple[str, str], float]:
        """How fast each pressure must fall (excess a second) to be back under its
        threshold within `DRAIN_S`."""
        return {key: -(excess - 1) / self.DRAIN_S for key, excess in excesses.items()}

    def _aim(self, held: int, rates: dict[tuple[str, str], float],
             drain: dict[tuple[str, str], float], slopes: dict[tuple[str, str], float]
             ) -> int | None:
        """The next cut for pressures the last ones slowed but did not drain: the permits at
        which each would fall at its `drain` rate, on the line through its rates before and
        after the episode's first cut (`slopes`: what a permit less slowed it by, measured
        across the whole cut, not a permit or two, where noise is all there is), at least a
        permit under `held`, at most `OTHERS_CUT` of it. None when a slope is not known.
        Seen on Tansu: 21 permits cut to 14 took the other's lag from rising by 0.6-0.8 of its
        `max_lag` a second to flat, at 2.6-2.9; a second cut to 0.7 took it to 9, where
        11 held its P99 in quota."""
        aims = [held - (rate - drain[key]) / slopes[key]
                for key, rate in rates.items() if rate > drain[key] and slopes.get(key, 0) > 0]
        if len(aims) < sum(rate > drain[key] for key, rate in rates.items()):
            return None
        return max(math.floor(held * self.OTHERS_CUT), min(held - 1, math.floor(min(aims))))

    def _recap_up(self, track: _Track, reading: Reading, held: int) -> int:
        """A pipeline capped for its own latency whose measured law gives it more than it
        holds (by `RAISE_BELOW`) in each of its last `RAISE_SAMPLES` healthy samples gets
        the least of those back at once, whenever that is, while its batches are under the
        latency aimed at: the first cut reads one batch in process, and may undershoot what
        the stage does (seen: half of it, when the batch at the P99 waited for the next
        one's stages), and a stage may get faster in a slowdown (seen: 6 ms a record at the
        cut, 4.3 ms for the 25 s after it, at a P99 of 30-80 ms of a 250 ms target).

        The least, over seconds: the stages' time a record, over the 2 s a reading takes it
        from, moves by a fifth on a loaded machine (4.4 to 5.5 ms), and a raise for each
        quick reading, cut back by the next slow one, changed the permits 10 times in a
        slowdown (17 to 22 and back). Two samples do when it works less than half the time
        (`HEADROOM`). A cap at the law has its batches near the aim: one under it shows as
        batches quicker than aimed at."""
        recap = self.recap(reading)
        if not track.capped or track.ceiling is not None or recap is None \
                or reading.full_rate <= 0:
            return held
        law = min(reading.full, round(reading.full * recap / reading.full_rate))
        track.laws = [*track.laws, law][-self.RAISE_SAMPLES:]
        # Working less than half the time, its stage is not in a dip of a fifth: it got
        # twice as fast (a slowdown ended), and two samples say so.
        needed = BREACHES if reading.work < self.HEADROOM else self.RAISE_SAMPLES
        if len(track.laws) < needed or reading.p99_ms > self.AIM * reading.max_p99_ms:
            return held
        lowest = min(track.laws[-needed:])
        return lowest if held < lowest * self.RAISE_BELOW else held

    def _raise_to_line(self, track: _Track, reading: Reading, held: int) -> int:
        """One permit more, once an overload, when the line through the other's lag says
        its first cut (to `OTHERS_CUT`, a share, not aimed) went well under what the other
        needs: the lag's rate while it drained at the ceiling and what a permit does to it
        (`others_slope`) put the permits at which it would stop falling (the line) at
        `held + 1` over `LINE_SHARE` or more. The rate is fitted through the lag's readings
        from when the cut showed to the first under `DRAINED` of its `max_lag`, and the line
        drawn then, once: those over its threshold alone were too few for a fit in most
        bench runs (the other's lag drains in a second or two), and a line drawn again on
        each sample after, through fewer and fewer of them, would raise on the noisiest. No
        line is drawn later than `HISTORY_S` after the cut showed: a lag not drained by then
        says the cut did not go far too deep, and the readings kept no longer hold the
        whole drain.
        Not after a correction (aimed by the same line, with the drain's margin) nor when a
        pressure it relieved is not a lag it read. It is a try: one that hurts the other
        within `TRY_S` sends it back to the ceiling."""
        if track.ceiling is None or held != track.ceiling or track.lifted_at \
                or track.corrected or track.line_drawn or track.healthy < HEALTHY \
                or held + 1 >= track.hurt:
            return held
        if not track.effect_at:
            return held  # the cut has not shown yet
        if reading.at - track.effect_at > self.HISTORY_S:
            # Too late: the readings kept no longer hold the whole drain, and a line
            # through the drain's slow tail would raise late, into a lag still lingering
            # (seen on Tansu: 18 to 19 permits 12 s after the cut, and the other's P99 from
            # 210 to 380 ms in the next 10 s).
            track.line_drawn = True
            return held
        drains = []
        for cause, by in track.ceiling_for:
            if cause != "lag" or track.others_slope.get((cause, by), 0.0) <= 0:
                return held
            points = self._lags_since(by, track.effect_at, math.inf)
            over = list(itertools.takewhile(lambda point: point[1] > self.DRAINED, points))
            if len(over) == len(points):
                return held  # not drained yet
            drains.append((track.others_slope[(cause, by)], points[:len(over) + 1]))
        track.line_drawn = True
        lines = []
        for slope, draining in drains:
            rate = _fitted_rate(draining)
            if rate is None or rate >= 0:
                return held
            lines.append(held - rate / slope)
        if not lines or held + 1 > self.LINE_SHARE * min(lines):
            return held
        track.raised_to_line = True
        track.held_ceiling, track.lifted_at = held, reading.at
        track.ceiling, track.ceiling_since = held + 1, reading.at
        return held + 1

    def recap(self, reading: Reading) -> float | None:
        """The first cap's law again, with the stages' time a record as measured over the
        readings (their seconds over the records of the same batches; a worker of the version
        before sends its busy share and throughput) rather than from one batch, and a, what
        was left to wait of the acknowledgements once the next batch's stages were done:
        the first cut reads a batch still in process, and overestimates what the stage can
        do (measured: 277 records/s for a stage doing 205); a cut by the gradient alone then
        undershoots (to 190). None when there is nothing to measure it by."""
        if reading.record_ms > 0:
            per_record_s = reading.record_ms / 1000
        elif reading.work > 0 and reading.throughput > 0:  # a worker of the version before
            per_record_s = reading.work / reading.throughput
        else:
            return None
        acks_ms, aim_ms = self._acks_and_aim_ms(reading)
        if acks_ms >= aim_ms:
            return None
        return min(self.MARGIN, 1 - acks_ms / aim_ms) / per_record_s

    def _acks_and_aim_ms(self, reading: Reading) -> tuple[float, float]:
        """Little's law's a (the agent's mean wait for its sinks' acknowledgements in a
        step, never more than the step) and the step time T it aims at, for `first_cap` and
        `recap` alike: a batch is read in one step of the agent and settled in the next
        (streams.agent), so it takes two, and T is half of `AIM` of its target. The law is
        one of means: the P99 of the waits put their tail in every step, and T = a / (1 -
        c*X) magnifies it (seen on Tansu: a P99 of 17 ms capped a stage at 0.83 of what it
        did, and its batches then took 36 ms, not the 200 aimed at). A worker of the version
        before sends the P99 only."""
        waits_ms = reading.sink_mean_ms if reading.sink_mean_ms >= 0 else reading.sink_p99_ms
        return min(waits_ms, _step_ms(reading)), self.AIM * reading.max_p99_ms / 2

    def first_cap(self, reading: Reading) -> float:
        """Records/s at which the pipeline's batches take `AIM` of its target (Little's law).
        A step of the agent takes T = c*N + a for a batch of N records: a, its wait for the
        sinks' acknowledgements, c the stages' time a record; a batch's latency W spans two
        steps (its own and the next, which settles it). Capped at X records/s, the steps
        settle where N = X*T, so T = a / (1 - c*X): X = (1 - a/T) / c for the T aimed at.

        c is the stages' time a record of the batch at the P99, as the sampler measured it.
        Capped at `MARGIN` of what the stages do, a step at the aim spends that share of it
        in the stages; acknowledgements that take less are waited for while the next batch
        is in the stages (streams.agent), so a is what is left of them then, not the whole
        wait the sample read before the slowdown (the agent settled first then: its stages
        were quick): the cap is `MARGIN` of what the stages do, and `recap` corrects it with
        what is left, measured. Acknowledgements that take longer bound every step: the cap
        is `MARGIN` of what batches of N deliver, N / (c*N + a).

        Without that measure (a worker of the version before), c and T come from the batch
        at the P99 (W / 2). That undershoots when the batch is one written and waiting for
        the next one's stages to be settled: its few records over a wait that is mostly
        the next batch's look like a slower stage (seen: 11 permits for a stage worth 24)."""
        acks_ms, aim_ms = self._acks_and_aim_ms(reading)
        if reading.batch_record_ms > 0:
            per_record_s = reading.batch_record_ms / 1000
            if acks_ms < self.MARGIN * aim_ms:
                return self.MARGIN / per_record_s
            return self.MARGIN * reading.batch_records / (
                per_record_s * reading.batch_records + acks_ms / 1000)
        step_ms = _step_ms(reading)
        now = reading.batch_records / (step_ms / 1000)
        if acks_ms >= aim_ms or step_ms <= acks_ms:
            return self.MARGIN * now  # the acknowledgements alone take longer: all it can do
        per_record_s = (step_ms - acks_ms) / 1000 / reading.batch_records
        return min(self.MARGIN * now, (1 - acks_ms / aim_ms) / per_record_s)

    def restore(self, track: _Track, reading: Reading, held: int) -> int:
        if reading.at >= self._judged_from(track) and track.healthy >= HEALTHY:
            # A pressure gone for HEALTHY samples in a row once its last cut for others
            # could be judged was relieved. One gone before, or for fewer, is not yet: a lag
            # dips under its threshold between its batches, and its cut is judged when it is
            # back (seen on Tansu: under it for two samples a second after the cut, back, and
            # then read as a new one at the ceiling, noise within TOLERANCE, until it passed
            # 1.5 of its max_lag 6 s later; under it for two samples, the second when the cut
            # could be judged, the same: cut again 7.3 s after the first cut, not 3.9).
            track.others_cut, track.others_since = {}, {}
        if held == 0:  # no readings to judge by: a probe permit, less often after each failure
            if track.healthy < track.probe_wait:
                return held
            track.probing = True
            return 1
        raised = self._recap_up(track, reading, held)
        if raised > held:
            return raised
        raised = self._raise_to_line(track, reading, held)
        if raised > held:
            return raised
        if reading.work >= self.HEADROOM:
            track.roomy = 0  # healthy without headroom: as it should be when capped
            return held
        track.roomy += 1
        # Two healthy samples in a row with headroom per step: a step taken on each sample
        # would double again before the last one's effect shows in the readings (measured:
        # 10 to 40 of 100 permits in a second, then cut back for the overload). `healthy` is
        # reset by a breach or a change, `roomy` by a sample without headroom.
        if min(track.healthy, track.roomy) < BREACHES:
            return held
        track.probing = False
        if track.ceiling is not None and held >= track.ceiling:
            if 0 < reading.record_ms < track.cut_record_ms / 2:
                # Its stages take half the CPU a record they took at the cut (a slowdown
                # ended): the allocation that hurt the other is not what it would take now.
                track.ceiling, track.try_wait_s, track.lifted_at, track.held_ceiling = \
                    None, 0.0, 0.0, 0
            elif reading.at - track.ceiling_since < (track.try_wait_s or self.TRY_AFTER_S):
                return held
            else:  # long enough without hurting the other: a try, halfway to what hurt
                track.held_ceiling, track.lifted_at = track.ceiling, reading.at
                gap = track.hurt - track.ceiling
                track.ceiling = (track.ceiling + track.hurt + 1) // 2 \
                    if gap > max(1, self.TRY_NEAR * track.hurt) else None
                track.ceiling_since = reading.at
        limit = reading.full if track.ceiling is None else track.ceiling
        # In proportion to the headroom, at most doubling: working 40% of the time, it may
        # take twice as much; 45%, not quite (doubling would put it past what it can do).
        grown = held * min(2.0, self.BUSY_AFTER / max(reading.work, 1e-9))
        return min(limit, max(held + 1, math.floor(grown)))


def _rose_before(track: _Track) -> dict[tuple[str, str], float]:
    """How fast each pressure of its last cut for others rose before that cut: the larger
    of its rate then (`others_rate`) and a lag's rise fitted over `BEFORE_S`."""
    return {key: max(rate, track.others_rise.get(key, -math.inf))
            for key, rate in track.others_rate.items()}


def _slopes(before: dict[tuple[str, str], float], after: dict[tuple[str, str], float],
            permits: int) -> dict[tuple[str, str], float]:
    """What a permit less slowed each pressure by (excess a second): its rate before a cut
    of `permits` over its rate after, for those the cut slowed."""
    return {key: (before[key] - rate) / permits for key, rate in after.items()
            if before.get(key, rate) > rate}


def _fitted_rate(points: list[tuple[float, float]]) -> float | None:
    """The least-squares slope of (time, value) points: how fast the value moved a second
    across all of them, not their first and last alone; None for fewer than three."""
    if len(points) < 3:
        return None
    mean_at = sum(at for at, _ in points) / len(points)
    mean_x = sum(x for _, x in points) / len(points)
    spread = sum((at - mean_at) ** 2 for at, _ in points)
    if spread <= 0:
        return None
    return sum((at - mean_at) * (x - mean_x) for at, x in points) / spread


def _one_slow_batch(track: _Track, reading: Reading) -> bool:
    """The breach is no longer than the window a P99 is taken over: one slow batch (a pause
    of the process, a slow acknowledgement) shows in every sample for that long."""
    return reading.at - track.breaching_since <= WINDOW_S


def _step_ms(reading: Reading) -> float:
    """A step of the agent at the P99: a batch spans two, its own and the next, which settles
    it (streams.agent)."""
    return reading.p99_ms / 2


class FixedPolicy(_Policy):
    """Permits never change: the baseline the others are measured against."""

    name = "fixed"

    def decide(self, samples: list[QuotaSample], allocated: dict[str, int],
               at: float | None = None) -> list[Change]:
        return []


def updates(deployment: str, epoch: int, changes: list[Change]) -> list[QuotaUpdate]:
    return [QuotaUpdate(deployment, epoch, pipeline, before, after, reason, metrics)
            for pipeline, before, after, reason, metrics in changes]


POLICIES: dict[str, type[_Policy]] = {
    "step": StepPolicy, "adaptive": AdaptivePolicy, "fixed": FixedPolicy}


class SampleSchedule:
    """When each agent samples next: every interval, and a quarter of one after a first
    breach. A revocation needs two breaching samples in a row, so the second coming sooner
    takes most of an interval off the time to detect a slowdown; only the first breach
    after a healthy sample is hurried, so a cut's cooldown (counted in samples) keeps
    its length. (The first breach may itself come early: see `publish_samples`.) So is
    each breach while a first cut waits for a batch to leave its stages: that wait is
    what detection takes then."""

    def __init__(self, interval: float) -> None:
        self._interval = interval
        self._next: dict[str, float] = {}
        self._breached: dict[str, bool] = {}

    def due(self, agent: str, now: float) -> bool:
        return now >= self._next.get(agent, 0.0)

    def healthy(self, agent: str) -> bool:
        """Its last sample breached nothing (a sample taken early for a breach is the first)."""
        return not self._breached.get(agent, False)

    def sampled(self, agent: str, now: float, breached: bool, waits: bool = False) -> None:
        """`waits`: a first cut waits for the batch at the P99 to leave its stages."""
        first = breached and not self._breached.get(agent, False)
        self._breached[agent] = breached
        # A timer fires a little late or early: within a tenth of the interval counts.
        wait = self._interval / 4 if first or (breached and waits) else self._interval
        self._next[agent] = now + wait * 0.9


def install(app: Any, control: ControlPlane, agents: list[BatchAgent], settings: Settings,
            worker: str) -> None:
    """The two timers on a worker's Faust app: its samples, every interval; and, on the
    deployment's leader only, the controller's decisions. Every worker of a deployment is
    expected to run the same policy (`UEE_QUOTA_POLICY`)."""
    policy = POLICIES[settings.quota_policy]()
    if isinstance(policy, FixedPolicy):
        return  # nothing to decide: no samples on the control topic either
    interval = settings.quota_interval_s
    schedule = SampleSchedule(interval)

    async def publish_samples() -> None:
        now = time.monotonic()
        for agent in agents:
            if agent.sampler.warming_up(settings.quota_warmup_s):
                continue  # like an autoscaler's initialization period
            # A batch already older than its pipeline's own target is a breach known now:
            # after a healthy sample, its sample goes at once, not at the next interval.
            early = schedule.healthy(agent.name) and agent.batch_past_target()
            if not (early or schedule.due(agent.name, now)):
                continue
            samples = agent.quota_samples(settings.app, worker, settings.quota_max_p99_ms,
                                          settings.quota_max_saturation)
            breached = [s for s in samples if policy.breaching(s)]
            schedule.sampled(agent.name, now, bool(breached),
                             any(policy.waits(s) for s in breached))
            for sample in samples:
                control.publish_nowait(sample)

    spent = [0.0]  # CPU seconds the controller took, for its decisions' log lines
    decided_on = [-1]  # the samples noted when it last decided

    async def decide() -> None:
        if control.samples_noted == decided_on[0]:
            return  # nothing new: every sample counts once, so nothing would change
        decided_on[0] = control.samples_noted
        started = time.thread_time()
        allocated = allocations(control.quotas, control.pools)
        epoch = int(getattr(app, "consumer_generation_id", 0))
        decided = updates(settings.app, epoch,
                          policy.decide(list(control.samples.values()), allocated))
        spent[0] += time.thread_time() - started
        for update in decided:
            log.info("%s", json.dumps({"controller": settings.app, "policy": policy.name,
                                       "decision": update.as_json(),
                                       "cpu_s": round(spent[0], 4)}))
            control.publish_nowait(update)

    # Both timers tick far more often than samples are due: a tick with nothing to do
    # costs a few comparisons. A batch past its target is seen within TICK of an interval,
    # and a sample decided on within TICK of its coming, instead of waiting for a timer
    # of a quarter interval (measured: 0.40 s to detect in the bench, from 0.73-1.07 s).
    app.timer(interval * TICK, name="uee-quota-samples")(publish_samples)
    app.timer(interval * TICK, on_leader=True, name="uee-quota-controller")(decide)
