"""On the broker: a merged plan writes the same records as each pipeline run alone."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.conftest import Completed
from tests.helpers import produce, unique
from uee.streams.topics import read_all

pytestmark = pytest.mark.e2e
Uee = Callable[..., Completed]

PIPELINES = """\
- pipeline: {p}-eur
  source: {{kafka: {{topic: {src}}}}}
  stages:
    - filter: kind == "buy"
    - filter: currency == "EUR"
    - map: {{cents: int(amount * 100)}}
  sink: {{kafka: {{topic: {out}.eur}}}}
- pipeline: {p}-big
  source: {{kafka: {{topic: {src}}}}}
  stages:
    - filter: "kind=='buy'"
    - drop: [currency]
    - route:
        - {{when: amount > 80, to: big}}
        - {{otherwise: small}}
  sinks:
    big: {{kafka: {{topic: {out}.big, key: customer}}}}
    small: {{kafka: {{topic: {out}.small}}}}
- pipeline: {p}-all
  source: {{kafka: {{topic: {src}}}}}
  stages:
    - filter: kind == 'buy'
    - select: [order_id, amount]
  sink: {{kafka: {{topic: {out}.all}}}}
"""


def contents(kafka: str, topic: str) -> Counter[tuple[bytes | None, str]]:
    return Counter((r.key, json.dumps(json.loads(r.value or b"null"), sort_keys=True))
                   for r in read_all(kafka, topic))


def test_merged_and_alone_write_the_same_records(kafka: str, uee: Uee, tmp_path: Path) -> None:
    from uee.connectors.generator import generate_orders

    source = unique("merge.in")
    records = [(str(r["order_id"]).encode(), json.dumps(r).encode())
               for r in generate_orders(11, 4000)]
    records.insert(10, (b"bad", b"{broken"))
    produce(kafka, source, records)
    runs = {}
    for mode in ("merged", "alone"):
        prefix, out = unique(f"m{mode}"), unique(f"merge.{mode}")
        path = tmp_path / f"{mode}.yaml"
        path.write_text(PIPELINES.format(p=prefix, src=source, out=out))
        plan = uee("plan", str(path))
        stats = tmp_path / f"{mode}.json"
        args = ["run", str(path), "--bootstrap", kafka, "--until-idle", "1",
                "--stats-json", str(stats)]
        if mode == "alone":
            args.append("--no-optimize")
        done = uee(*args)
        assert done.code == 0, done.stderr
        runs[mode] = (prefix, out, plan.stdout)
        # A read shared by the merged pipelines counts once; apart, each of them reads.
        reads = json.loads(stats.read_text())["topic_reads"]
        assert reads == {source: len(records) * (1 if mode == "merged" else 3)}, reads

    (m_prefix, m_out, m_plan), (a_prefix, a_out, _) = runs["merged"], runs["alone"]
    assert "[shared by" in m_plan  # the merged run did share the filter
    for suffix in ("eur", "big", "small", "all"):
        merged, alone = contents(kafka, f"{m_out}.{suffix}"), contents(kafka, f"{a_out}.{suffix}")
        assert merged == alone, suffix
        assert sum(merged.values()) > 0, suffix
    for name in ("eur", "big", "all"):
        assert len(read_all(kafka, f"{m_prefix}-{name}.dlq")) == 1  # the broken record, each
        assert len(read_all(kafka, f"{a_prefix}-{name}.dlq")) == 1
