"""`uee run` as a user types it, against the session's real broker."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.conftest import REPO, Completed
from tests.helpers import canonical, produce, quickstart_expected, sink_records, unique

pytestmark = pytest.mark.e2e
Uee = Callable[..., Completed]


def quickstart_copy(tmp_path: Path, pipeline: str, sink: str) -> Path:
    """The real example, renamed so that tests sharing a broker do not collide."""
    text = (REPO / "examples" / "quickstart.yaml").read_text()
    text = text.replace("pipeline: quickstart", f"pipeline: {pipeline}")
    text = text.replace("topic: orders.big-buys", f"topic: {sink}")
    path = tmp_path / "quickstart.yaml"
    path.write_text(text)
    return path


def test_quickstart_writes_exactly_the_expected_records(kafka: str, uee: Uee,
                                                        tmp_path: Path) -> None:
    pipeline, sink = unique("qs"), unique("qs.out")
    stats = tmp_path / "stats.json"
    done = uee("run", str(quickstart_copy(tmp_path, pipeline, sink)), "--bootstrap", kafka,
               "--until-idle", "1", "--stats-json", str(stats))
    assert done.code == 0, done.stderr
    expected = quickstart_expected()
    got = sink_records(kafka, sink)
    assert len(got) == len(expected)
    assert canonical([value for _, value in got]) == canonical(expected)
    assert sorted(key for key, _ in got) == sorted(str(r["order_id"]).encode() for r in expected)

    report = json.loads(stats.read_text())["pipelines"][pipeline]
    assert report["records_in"] == 5000
    assert report["records_out"] == len(expected)
    assert report["filtered"] == 5000 - len(expected)
    assert report["dead_lettered"] == 0
    assert f"{len(expected):,}" in done.stdout  # the summary a user reads

    described = uee("topics", "describe", sink, "--bootstrap", kafka)
    assert described.code == 0, described.stderr
    assert f"total records: {len(expected)}" in described.stdout


def test_kafka_source_bad_records_go_to_the_dlq_and_the_rest_flows(
    kafka: str, uee: Uee, tmp_path: Path
) -> None:
    pipeline, source, sink = unique("kp"), unique("kp.in"), unique("kp.out")
    good = [{"id": i, "kind": "buy" if i % 3 else "sell", "amount": i} for i in range(3000)]
    records = [(str(r["id"]).encode(), json.dumps(r).encode()) for r in good]
    records.insert(100, (b"broken", b"{not json"))
    records.insert(200, (b"noamount", b'{"kind": "buy"}'))
    produce(kafka, source, records)
    path = tmp_path / "kp.yaml"
    path.write_text(f"""\
pipeline: {pipeline}
source: {{kafka: {{topic: {source}}}}}
stages:
  - filter: kind == "buy"
  - map: {{double: amount * 2}}
sink: {{kafka: {{topic: {sink}}}}}
""")
    done = uee("run", str(path), "--bootstrap", kafka, "--until-idle", "1")
    assert done.code == 0, done.stderr

    expected = [{**r, "double": r["amount"] * 2} for r in good if r["kind"] == "buy"]
    assert canonical([v for _, v in sink_records(kafka, sink)]) == canonical(expected)

    from uee.streams.topics import read_all

    dead = {r.key: r for r in read_all(kafka, f"{pipeline}.dlq")}
    assert set(dead) == {b"broken", b"noamount"}
    assert dead[b"broken"].value == b"{not json"  # the original bytes, untouched
    headers = {name: value for name, value in dead[b"noamount"].headers}
    assert headers["uee.error.code"] == b"EXPR_MISSING_FIELD"
    assert headers["uee.stage"] == f"{pipeline}.2-map".encode()
    assert headers["__connect.errors.topic"] == source.encode()
    assert dict(dead[b"broken"].headers)["uee.error.code"] == b"DECODE_JSON"


def test_run_without_bootstrap_starts_and_stops_an_embedded_broker(uee: Uee) -> None:
    done = uee("run", "examples/quickstart.yaml", "--until-idle", "1")
    assert done.code == 0, done.stderr
    assert "started the embedded broker" in done.stdout
    expected = len(quickstart_expected())
    assert f"{expected:,}" in done.stdout
    assert "Traceback" not in done.stderr


def test_a_bad_pipeline_file_is_one_line_per_error_and_exit_1(uee: Uee, tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("pipeline: bad\nsource: {kafka: {topic: a}}\nstages:\n  - filtr: x > 1\n"
                    "sink: {kafka: {topic: b}}\n")
    done = uee("run", str(path), "--until-idle", "1")
    assert done.code == 1
    assert done.stderr.strip().splitlines() == [
        f"{path}:4:5: error[DSL_UNKNOWN_STAGE]: unknown kind 'filtr' in stage 1 of pipeline "
        "'bad' (did you mean 'filter'?)"
    ]
    assert done.stdout == ""
    broken = tmp_path / "broken.yaml"
    broken.write_text("pipeline: [\n")
    done = uee("run", str(broken))
    assert done.code == 1
    assert done.stderr.startswith(f"{broken}:2:1: error[DSL_YAML]")
    assert "Traceback" not in done.stderr
