"""What a user sees while pipelines run: a live bar on a terminal, a line every few seconds
otherwise (CI logs), and a summary table at the end."""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Sequence

from rich.console import Console
from rich.progress import BarColumn, TaskID, TextColumn, TimeElapsedColumn
from rich.progress import Progress as RichProgress
from rich.table import Table

from uee.streams.agent import BatchAgent
from uee.streams.sensors import PipelineStats

LOG_EVERY_S = 2.0


def _counts(stats: PipelineStats) -> str:
    return (f"in {stats.records_in:,}  out {stats.records_out:,}  "
            f"filtered {stats.filtered:,}  dlq {stats.dead_lettered:,}")


class Progress:
    def __init__(self, console: Console, quiet: bool = False) -> None:
        self.console = console
        self.quiet = quiet
        self._agents: Sequence[BatchAgent] = ()
        self._live: RichProgress | None = None
        self._tasks: dict[str, TaskID] = {}
        self._last_line = 0.0
        self._stopped = threading.Event()
        self._ticker: threading.Thread | None = None

    def note(self, message: str) -> None:
        if not self.quiet:
            self.console.print(message, highlight=False, soft_wrap=True)

    def broker(self, bootstrap: str, embedded: bool, durable: str | None = None) -> None:
        if embedded and durable:
            self.note(f"started the embedded broker (Tansu, durable in {durable}) at "
                      f"{bootstrap}")
        elif embedded:
            self.note(f"started the embedded broker (Tansu, in memory) at {bootstrap}")
        else:
            self.note(f"using Kafka at {bootstrap}")

    def topics(self, wanted: list[str], created: list[str]) -> None:
        for topic in wanted:
            self.note(f"topic {topic}: {'created' if topic in created else 'exists'}")

    def start(self, agents: Sequence[BatchAgent]) -> None:
        self._agents = agents
        self._last_line = time.monotonic()
        # Its own thread: Faust blocks the event loop for seconds while it joins its group,
        # and the counters (written by the agents' threads) should move meanwhile.
        self._stopped.clear()
        self._ticker = threading.Thread(target=self._tick, name="uee-progress", daemon=True)
        if self.quiet or not self.console.is_terminal:
            pipelines = sum(len(a.segment.pipelines) for a in agents)
            self.note(f"running {pipelines} pipeline(s) in {len(agents)} Faust agent(s); "
                      "Ctrl-C stops")
            self._ticker.start()
            return
        self._live = RichProgress(
            TextColumn("[bold]{task.description}"), BarColumn(),
            TextColumn("{task.fields[counts]}"), TextColumn("{task.fields[rate]}"),
            TimeElapsedColumn(), console=self.console,
        )
        for agent in agents:
            total = agent.source.total
            for name in agent.segment.pipelines:
                self._tasks[name] = self._live.add_task(
                    name, total=total, counts="waiting for partitions", rate="")
        self._live.start()
        self._ticker.start()

    def _tick(self) -> None:
        while not self._stopped.wait(0.25):
            self.update()

    def update(self) -> None:
        if self._live is not None:
            for agent in self._agents:
                for name, stats in agent.stats.items():
                    self._live.update(self._tasks[name], completed=stats.records_in,
                                      counts=_counts(stats), rate=_rate(stats))
            return
        now = time.monotonic()
        if not self.quiet and now - self._last_line >= LOG_EVERY_S:
            self._last_line = now
            for agent in self._agents:
                for name, stats in agent.stats.items():
                    self.note(f"{name}: {_counts(stats)} {_rate(stats)}")

    def finish(self) -> None:
        self._stopped.set()
        if self._ticker is not None and self._ticker.is_alive():
            self._ticker.join()
        self.update()
        if self._live is not None:
            self._live.stop()
            self._live = None


def _rate(stats: PipelineStats) -> str:
    if stats.first_record_at is None or stats.last_commit_at is None:
        return ""
    seconds = stats.last_commit_at - stats.first_record_at
    return f"{stats.records_in / seconds:,.0f} rec/s" if seconds > 0 else ""


def summary_table(stats: dict[str, PipelineStats]) -> Table:
    table = Table(title="uee run summary", title_justify="left")
    for column in ("pipeline", "records in", "out", "filtered", "dead-lettered", "rate"):
        table.add_column(column, justify="left" if column == "pipeline" else "right")
    for name, s in stats.items():
        table.add_row(name, f"{s.records_in:,}", f"{s.records_out:,}", f"{s.filtered:,}",
                      f"{s.dead_lettered:,}", _rate(s) or "-")
    return table


def topic_table(stats: dict[str, PipelineStats], reads: dict[str, int],
                topic_totals: dict[str, int]) -> Table:
    """Per source and topic: read and written by this run, and what the topic now holds."""
    table = Table(title="per topic", title_justify="left")
    table.add_column("source / topic")
    table.add_column("read this run", justify="right")
    table.add_column("written this run", justify="right")
    table.add_column("records in topic", justify="right")
    read = Counter(reads)
    written: Counter[str] = Counter()
    for s in stats.values():
        written.update(s.per_topic_out)
    for name in sorted(set(read) | set(written) | set(topic_totals)):
        total = topic_totals.get(name)
        table.add_row(name, f"{read[name]:,}", f"{written[name]:,}",
                      "-" if total is None else f"{total:,}")
    return table
