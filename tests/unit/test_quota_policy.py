"""The step policy on samples made by hand: two breaches in a row revoke, one does not; the
deployment keeps a probe permit; healthy samples give permits back stepwise."""

from __future__ import annotations

import datetime

from uee.streams.control import QuotaSample
from uee.streams.quota import FixedPolicy, QuotaSampler, StepPolicy


def sample(pipeline: str, p99_ms: float, full: int = 5) -> QuotaSample:
    return QuotaSample(deployment="d", worker="w", pipeline=pipeline, p99_ms=p99_ms,
                       saturation=0.5, lag=0, permits=full, full=full, max_p99_ms=30,
                       max_saturation=1.01, at=datetime.datetime.now(datetime.UTC))


def test_a_single_bad_sample_revokes_nothing_two_in_a_row_do() -> None:
    policy = StepPolicy()
    assert policy.decide([sample("a", 90)], {}) == []  # one breach
    assert policy.decide([sample("a", 10)], {}) == []  # healthy again: the count starts over
    assert policy.decide([sample("a", 90)], {}) == []
    [(pipeline, before, after, reason, metrics)] = policy.decide([sample("a", 90)], {})
    assert (pipeline, before, after) == ("a", 5, 4) and "P99 90 ms > 30 ms" in reason
    assert metrics["p99_ms"] == 90


def test_the_deployment_keeps_a_probe_permit_and_healthy_samples_restore_stepwise() -> None:
    policy = StepPolicy()
    allocated = {"a": 1}
    for _ in range(4):
        assert policy.decide([sample("a", 500, full=5)], allocated) == []  # 1 is the last
    restored = []
    for _ in range(12):
        for pipeline, _, after, _, _ in policy.decide([sample("a", 5, full=5)], allocated):
            allocated[pipeline] = after
            restored.append(after)
    assert restored == [2, 3, 4, 5]  # a step per 3 healthy samples, up to the allocation


def test_fixed_never_changes_and_the_sampler_takes_the_p99_of_recent_batches() -> None:
    assert FixedPolicy().decide([sample("a", 900)], {}) == []
    sampler = QuotaSampler()
    for ms in range(1, 101):
        sampler.on_delivered(("a",), ms / 1000)
    p99, saturation = sampler.reading()
    assert p99 == 99 and 0 < saturation <= 1
