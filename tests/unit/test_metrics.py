"""The Prometheus sensor and collector, on a registry of their own."""

from __future__ import annotations

from collections import Counter

from prometheus_client import CollectorRegistry

from uee.streams.metrics import PrometheusSensor, Readings, ReadingsCollector


def test_counters_and_one_current_state_per_provider_and_breaker() -> None:
    registry = CollectorRegistry()
    sensor = PrometheusSensor(registry)
    sensor.on_batch_in("src", ("a", "b"), 10, 0.0)
    sensor.on_records_out("a", 7, Counter({"a.out": 7}))
    sensor.on_dead_lettered("a", "a.1-map", "EXPR_TYPE", "a.dlq")
    sensor.on_state_change("provider:a", "RUNNING", "reading")
    sensor.on_state_change("provider:a", "PAUSED", "error rate")
    sensor.on_state_change("sink:a.sink.default", "OPEN", "5 failures")

    def get(name: str, **labels: str) -> float | None:
        return registry.get_sample_value(name, labels)

    assert get("uee_records_in_total", pipeline="a") == 10
    assert get("uee_records_in_total", pipeline="b") == 10
    assert get("uee_records_out_total", pipeline="a", sink="a.out") == 7
    assert get("uee_records_dead_lettered_total", pipeline="a", code="EXPR_TYPE") == 1
    assert get("uee_provider_state", pipeline="a", state="PAUSED") == 1
    assert get("uee_provider_state", pipeline="a", state="RUNNING") == 0
    assert get("uee_breaker_state", sink="a.sink.default", state="OPEN") == 1
    assert get("uee_breaker_state", sink="a.sink.default", state="CLOSED") == 0


def test_lag_and_checkpoint_age_are_read_when_scraped() -> None:
    registry = CollectorRegistry()
    behind = {("in", 0): 5, ("in", 1): 0}
    registry.register(ReadingsCollector(lambda: [
        Readings(lambda: ("a",), lambda: dict(behind), lambda: 1.5)]))
    assert registry.get_sample_value("uee_consumer_lag_records",
                                     {"pipeline": "a", "topic": "in", "partition": "0"}) == 5
    behind[("in", 0)] = 2  # read again at the next scrape
    assert registry.get_sample_value("uee_consumer_lag_records",
                                     {"pipeline": "a", "topic": "in", "partition": "0"}) == 2
    assert registry.get_sample_value("uee_checkpoint_age_seconds", {"pipeline": "a"}) == 1.5
