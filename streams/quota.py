"""The quota controller: samples from every worker, one leader deciding, QuotaUpdates out.

    each worker, every interval:  QuotaSample per pipeline (P99 batch latency, saturation,
                                  lag, permits) -> uee.control
    the deployment's leader:      samples -> policy -> QuotaUpdate -> uee.control
    every worker:                 QuotaUpdate -> its agents' permits (streams.permits)

The leader is Faust's (`on_leader` timers: the member that holds the app's leader topic
partition), so there is one per deployment and another takes over when its worker leaves;
its epoch is the consumer group generation it was elected in, so an update from a leader
that has not noticed it was replaced carries an older epoch and is ignored.

The `step` policy, as designed: two consecutive breaches of a pipeline's P99 latency or
saturation revoke 20% of its permits; `HEALTHY` healthy samples in a row give back 20% of
its allocation, stepwise. Lag never takes permits from the pipeline that lags (that would
make it lag more). The deployment always keeps a probe permit. `fixed` never changes them
(the baseline).
"""

from __future__ import annotations

import json
import logging
import math
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from uee.streams.control import ControlPlane, QuotaSample
from uee.streams.permits import QuotaUpdate
from uee.streams.sensors import Sensor
from uee.streams.settings import Settings

if TYPE_CHECKING:
    from uee.streams.agent import BatchAgent

log = logging.getLogger("uee.state")  # each decision is one JSON line, shown by default

SAMPLES = 1000  # latencies a P99 is taken over, at most
WINDOW_S = 5.0  # and none older than this
BREACHES = 2  # consecutive breaches before a revocation
HEALTHY = 3  # consecutive healthy samples before a restoration
STEP = 0.2  # of the allocation, per decision
STALE_S = 5.0  # a sample older than this is not a reading


class QuotaSampler(Sensor):
    """One agent's readings: batch latencies (poll to acknowledgement) and busy time."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._latencies: deque[tuple[float, float]] = deque(maxlen=SAMPLES)  # (at, ms)
        self._busy = 0.0
        self._since = time.monotonic()

    def on_delivered(self, pipelines: tuple[str, ...], seconds: float) -> None:
        with self._lock:
            self._latencies.append((time.monotonic(), seconds * 1000))
            self._busy += seconds

    def reading(self) -> tuple[float, float]:
        """(P99 latency in ms over the recent samples, saturation 0-1 since the last
        reading); resets the busy time."""
        now = time.monotonic()
        with self._lock:
            recent = sorted(ms for at, ms in self._latencies if now - at <= WINDOW_S)
            busy, self._busy = self._busy, 0.0
            span, self._since = now - self._since, now
        p99 = recent[min(len(recent) - 1, math.ceil(0.99 * len(recent)) - 1)] if recent else 0.0
        return p99, min(1.0, busy / span) if span > 0 else 0.0


@dataclass
class _Track:
    breaches: int = 0
    healthy: int = 0
    seen: float = 0.0  # the newest sample counted: a sample counts once, however often read


@dataclass
class StepPolicy:
    """The design's policy. `decide` is called once per interval by the leader."""

    tracks: dict[str, _Track] = field(default_factory=dict)
    name: str = "step"

    def decide(self, samples: list[QuotaSample], allocated: dict[str, int]
               ) -> list[tuple[str, int, int, str, dict[str, float]]]:
        """(pipeline, before, after, reason, metrics) for each change."""
        fresh = [s for s in samples if time.time() - s.at.timestamp() <= STALE_S]
        by_pipeline: dict[str, list[QuotaSample]] = {}
        for sample in fresh:
            by_pipeline.setdefault(sample.pipeline, []).append(sample)
        total = sum(allocated.get(p, s[0].full) for p, s in by_pipeline.items())
        changes = []
        for pipeline, readings in sorted(by_pipeline.items()):
            track = self.tracks.setdefault(pipeline, _Track())
            newest = max(r.at.timestamp() for r in readings)
            if newest <= track.seen:
                continue  # nothing new from its workers since the last decision
            track.seen = newest
            full = max(r.full for r in readings)
            now = allocated.get(pipeline, full)
            p99 = max(r.p99_ms for r in readings)
            saturation = max(r.saturation for r in readings)
            worst = readings[0]
            metrics = {"p99_ms": round(p99, 2), "saturation": round(saturation, 3),
                       "lag": float(sum(r.lag for r in readings))}
            if p99 > worst.max_p99_ms or saturation > worst.max_saturation:
                track.breaches, track.healthy = track.breaches + 1, 0
                if track.breaches >= BREACHES and now > 0:
                    after = max(0, now - max(1, math.ceil(STEP * now)))
                    if total - (now - after) < 1:
                        after = now - (total - 1)  # the deployment keeps a probe permit
                    if after < now:
                        why = (f"P99 {p99:.0f} ms > {worst.max_p99_ms:g} ms"
                               if p99 > worst.max_p99_ms else
                               f"saturation {saturation:.0%} > {worst.max_saturation:.0%}")
                        changes.append((pipeline, now, after,
                                        f"{why}, {track.breaches} samples in a row", metrics))
                        total -= now - after
                        track.breaches = 0
            else:
                track.breaches, track.healthy = 0, track.healthy + 1
                if track.healthy >= HEALTHY and now < full:
                    after = min(full, now + max(1, math.ceil(STEP * full)))
                    changes.append((pipeline, now, after, f"healthy for {track.healthy} "
                                    f"samples (P99 {p99:.0f} ms)", metrics))
                    track.healthy = 0
        return changes


@dataclass
class FixedPolicy:
    """Permits never change: the baseline the others are measured against."""

    name: str = "fixed"

    def decide(self, samples: list[QuotaSample], allocated: dict[str, int]
               ) -> list[tuple[str, int, int, str, dict[str, float]]]:
        return []


def updates(deployment: str, epoch: int,
            changes: list[tuple[str, int, int, str, dict[str, float]]]) -> list[QuotaUpdate]:
    return [QuotaUpdate(deployment, epoch, pipeline, before, after, reason, metrics)
            for pipeline, before, after, reason, metrics in changes]


POLICIES = {"step": StepPolicy, "fixed": FixedPolicy}


def install(app: Any, control: ControlPlane, agents: list[BatchAgent], settings: Settings,
            worker: str) -> None:
    """The two timers on a worker's Faust app: its samples, every interval; and, on the
    deployment's leader only, the controller's decisions. Every worker of a deployment is
    expected to run the same policy (`UEE_QUOTA_POLICY`)."""
    policy = POLICIES[settings.quota_policy]()
    if isinstance(policy, FixedPolicy):
        return  # nothing to decide: no samples on the control topic either
    interval = settings.quota_interval_s

    async def publish_samples() -> None:
        for agent in agents:
            for sample in agent.quota_samples(settings.app, worker, settings.quota_max_p99_ms):
                control.publish_nowait(sample)

    async def decide() -> None:
        allocated = {p: q.permits_after for p, q in control.quotas.items()}
        epoch = int(getattr(app, "consumer_generation_id", 0))
        for update in updates(settings.app, epoch,
                              policy.decide(list(control.samples.values()), allocated)):
            log.info("%s", json.dumps({"controller": settings.app, "policy": policy.name,
                                       "decision": update.as_json()}))
            control.publish_nowait(update)

    app.timer(interval, name="uee-quota-samples")(publish_samples)
    app.timer(interval, on_leader=True, name="uee-quota-controller")(decide)
