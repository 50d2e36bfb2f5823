"""What `uee status` shows of the quota controller's readings: each pipeline's latest
samples, merged as the controller merges them."""

from __future__ import annotations

import datetime

from uee.streams.control import QuotaSample
from uee.streams.state import CHECKPOINTS, DEPLOYMENT, PIPELINES, PROVIDERS
from uee.streams.status import Snapshot, document


def sample(worker: str, pipeline: str, at: datetime.datetime, **fields: float) -> QuotaSample:
    values = {"p99_ms": 40.0, "saturation": 0.5, "lag": 0, "permits": 10, "full": 10,
              "max_p99_ms": 250.0, "max_saturation": 0.8, **fields}
    return QuotaSample(deployment="app", worker=worker, pipeline=pipeline, at=at,
                       max_lag=300, throughput=100.0, **values)  # type: ignore[arg-type]


def test_status_shows_what_the_controller_last_read_of_each_pipeline() -> None:
    """Two workers run `orders`: the worst P99 and the sum of lag and throughput, as the
    controller reads them; a third worker's sample from before it stopped a minute earlier
    is not a reading any more. A pipeline never sampled (fixed permits) has none; another
    deployment's samples are not this one's."""
    now = datetime.datetime.now(datetime.UTC)
    control = [
        sample("w1", "orders", now, p99_ms=310.0, lag=120, permits=7),
        sample("w2", "orders", now - datetime.timedelta(seconds=0.4), lag=80, permits=7),
        sample("w3", "orders", now - datetime.timedelta(seconds=60), p99_ms=900.0, lag=5000),
    ]
    other = sample("w1", "orders", now, p99_ms=999.0).model_copy(update={"deployment": "x"})
    tables = {PROVIDERS: {"orders": {"state": "RUNNING"}, "audit": {"state": "RUNNING"}},
              CHECKPOINTS: {}, PIPELINES: {}, DEPLOYMENT: {}}
    doc = document(Snapshot("app", tables, [*control, other]))
    rows = {p["pipeline"]: p for p in doc["providers"]}
    reading = rows["orders"]["reading"]
    assert reading["workers"] == 2 and reading["p99_ms"] == 310.0
    assert reading["lag"] == 200 and reading["throughput"] == 200.0
    assert reading["max_p99_ms"] == 250.0 and reading["max_lag"] == 300
    assert reading["permits"] == 7 and 0 <= reading["age_s"] < 5
    assert reading["at"] == now.isoformat()
    assert rows["audit"]["reading"] is None
