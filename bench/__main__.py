"""`python -m bench` (or `make bench`): fill a topic, run every contender on it, compare.

Every contender reads the same input topic on the same broker in the same run,
writes its own output topic, and is checked against the reference transform:
a contender that loses or mangles records fails the benchmark, whatever its speed.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

from confluent_kafka import Producer
from rich.console import Console
from rich.table import Table

from bench.work import INPUT_TOPIC_PREFIX, expected_output, input_records
from streams.broker import EmbeddedBroker
from streams.topics import describe_topic, ensure_topics, read_all

CONTENDERS = {
    "uee": ("uee pipeline file (batch agents)", "bench.contenders.uee"),
    "faust": ("idiomatic Faust agent", "bench.contenders.faust_agent"),
    "raw": ("plain confluent-kafka loop", "bench.contenders.raw"),
}
MIN_UEE_OVER_FAUST = 5.0

console = Console()


@dataclass(frozen=True)
class Result:
    name: str
    records: int
    seconds: float
    output_ok: bool
    detail: str

    @property
    def rate(self) -> float:
        return self.records / self.seconds if self.seconds > 0 else 0.0


@contextlib.contextmanager
def broker(bootstrap: str | None) -> Iterator[str]:
    if bootstrap:
        yield bootstrap
        return
    with EmbeddedBroker() as embedded:
        yield embedded.bootstrap


def fill(bootstrap: str, topic: str, values: list[bytes]) -> None:
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 20,
                         "queue.buffering.max.messages": 2_000_000})
    for index, value in enumerate(values):
        producer.produce(topic, value, str(index).encode())
        if index % 50_000 == 0:
            producer.poll(0)
    if producer.flush(120):
        raise SystemExit("could not fill the input topic")


def check_output(bootstrap: str, topic: str, expected: list[str]) -> tuple[bool, str]:
    got = sorted(json.dumps(json.loads(r.value or b"null"), sort_keys=True)
                 for r in read_all(bootstrap, topic, timeout=60))
    if got == expected:
        return True, f"{len(got):,} records, exactly as expected"
    missing = len(set(expected) - set(got))
    return False, f"{len(got):,} records, expected {len(expected):,} ({missing} distinct missing)"


def run_contender(name: str, bootstrap: str, source: str, sink: str, count: int,
                  expected: list[str]) -> Result:
    label, module = CONTENDERS[name]
    console.print(f"running {label} ...", highlight=False)
    completed = subprocess.run(
        [sys.executable, "-m", module, bootstrap, source, sink, str(count)],
        capture_output=True, text=True, timeout=1800,
    )
    if completed.returncode != 0:
        tail = (completed.stderr or completed.stdout).strip().splitlines()[-5:]
        return Result(name, 0, 0.0, False, "failed: " + " | ".join(tail))
    measured = json.loads(completed.stdout.strip().splitlines()[-1])
    ok, detail = check_output(bootstrap, sink, expected)
    return Result(name, measured["records"], measured["seconds"], ok, detail)


def report(results: list[Result]) -> Table:
    table = Table(title="same work, same broker, one run", title_justify="left")
    for column in ("contender", "records", "seconds", "records/s", "output check"):
        table.add_column(column, justify="left" if column in ("contender", "output check")
                         else "right")
    for r in results:
        table.add_row(CONTENDERS[r.name][0], f"{r.records:,}", f"{r.seconds:.2f}",
                      f"{r.rate:,.0f}", ("ok: " if r.output_ok else "WRONG: ") + r.detail)
    return table


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--records", type=int, default=200_000)
    parser.add_argument("--partitions", type=int, default=3)
    parser.add_argument("--bootstrap", help="an existing Kafka (default: embedded broker)")
    parser.add_argument("--only", nargs="+", choices=list(CONTENDERS), default=list(CONTENDERS))
    args = parser.parse_args(argv)

    run_id = uuid.uuid4().hex[:6]
    source = f"{INPUT_TOPIC_PREFIX}.{run_id}"
    values = input_records(args.records)
    expected = expected_output(values)
    with broker(args.bootstrap) as bootstrap:
        sinks = {name: f"bench.out.{name}.{run_id}" for name in args.only}
        ensure_topics(bootstrap, [source, *sinks.values()], args.partitions, 1)
        started = time.perf_counter()
        fill(bootstrap, source, values)
        console.print(f"filled {source}: {describe_topic(bootstrap, source).records:,} records "
                      f"({sum(map(len, values)) / len(values):.0f} B avg) in "
                      f"{time.perf_counter() - started:.1f}s; {len(expected):,} pass the filter",
                      highlight=False)
        results = [run_contender(name, bootstrap, source, sinks[name], args.records, expected)
                   for name in args.only]
    console.print(report(results))
    by_name = {r.name: r for r in results}
    verdict_ok = all(r.output_ok for r in results)
    if "uee" in by_name:
        uee = by_name["uee"]
        for other in ("faust", "raw"):
            if other in by_name and by_name[other].rate:
                console.print(f"uee / {other}: {uee.rate / by_name[other].rate:.2f}x",
                              highlight=False)
        if "faust" in by_name and by_name["faust"].rate:
            ratio = uee.rate / by_name["faust"].rate
            if ratio < MIN_UEE_OVER_FAUST:
                console.print(f"FAIL: uee must be >= {MIN_UEE_OVER_FAUST}x the Faust agent")
                verdict_ok = False
    return 0 if verdict_ok else 1


if __name__ == "__main__":
    sys.exit(main())
