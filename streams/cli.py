"""The `uee` command."""

from __future__ import annotations

import datetime
import functools
import json
import logging
import os
import signal
import sys
import threading
from collections.abc import Callable
from typing import Any, NoReturn, TypeVar

import click
from rich.console import Console
from rich.table import Table
from rich.text import Text

from uee.dsl.errors import PipelineFileError
from uee.errors import UeeError

F = TypeVar("F", bound=Callable[..., Any])

out = Console()
err = Console(stderr=True, highlight=False, soft_wrap=True)  # one error, one line


class Terminated(BaseException):  # like KeyboardInterrupt: a stop, not an error
    """SIGTERM before a command installed its own handler (`uee run` while it starts)."""


def _terminated(signum: int, frame: Any) -> None:
    raise Terminated


def _stop_inside(exc: BaseException) -> BaseException | None:
    """The stop (a SIGTERM's `Terminated`, a Ctrl-C's KeyboardInterrupt) that caused `exc`,
    if one did: CPython reports a signal handler's exception raised inside a C function as a
    SystemError caused by it."""
    seen = set()
    cause = exc.__cause__ or exc.__context__
    while cause is not None and id(cause) not in seen:
        if isinstance(cause, Terminated | KeyboardInterrupt):
            return cause
        seen.add(id(cause))
        cause = cause.__cause__ or cause.__context__
    return None


def _stopped(stop: BaseException) -> NoReturn:
    if isinstance(stop, KeyboardInterrupt):
        err.print("interrupted")
        sys.exit(130)
    # A SIGTERM: a stop asked for, as `uee run` treats one once running; whatever had
    # started (the embedded broker) was stopped on the way out, and nothing was committed
    # that had not reached its sinks.
    err.print("stopped (SIGTERM) before it had started")
    sys.exit(0)


def _fail(code: str, message: str) -> None:
    err.print(f"error[{code}]: {message}", markup=False)
    sys.exit(1)


def user_errors(fn: F) -> F:
    """Turn uee's errors and Kafka's into one-line messages and exit 1: never a traceback."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from confluent_kafka import KafkaException

        try:
            return fn(*args, **kwargs)
        except PipelineFileError as exc:
            for diagnostic in exc.diagnostics:
                err.print(diagnostic.render(), markup=False)
            sys.exit(1)
        except UeeError as exc:
            err.print(exc.render(), markup=False)
            sys.exit(1)
        except KafkaException as exc:
            _fail("KAFKA_ERROR", f"{exc.args[0].str() if exc.args else exc}")
        except click.ClickException:
            raise  # usage errors: click prints them and exits 2
        except (KeyboardInterrupt, Terminated) as stop:
            _stopped(stop)
        except Exception as exc:
            # A signal's handler raised while C code ran (seen: a dict's items() under
            # SIGTERM at start-up), and CPython wrapped the stop in a SystemError.
            wrapped = _stop_inside(exc)
            if wrapped is not None:
                _stopped(wrapped)
            if os.environ.get("UEE_DEBUG"):
                raise
            _fail("INTERNAL", f"{type(exc).__name__}: {exc} (a bug in uee; set UEE_DEBUG=1 "
                  "to see the traceback, and please report it)")

    return wrapper  # type: ignore[return-value]


bootstrap_option = click.option(
    "--bootstrap", envvar="UEE_BOOTSTRAP", metavar="HOST:PORT",
    help="Kafka bootstrap servers (default: $UEE_BOOTSTRAP).",
)


durable_option = click.option(
    "--durable", envvar="UEE_DURABLE", metavar="DIR", type=click.Path(file_okay=False),
    help="Keep the embedded broker's topics, records, offsets and tables in DIR (SeaweedFS "
    "underneath): starting again on DIR brings them back.",
)


app_option = click.option(
    "--app", envvar="UEE_APP", metavar="NAME",
    help="The deployment (Faust app) whose workers share tables and status (default: uee, "
         "or $UEE_APP).")


def _require_bootstrap(bootstrap: str | None) -> str:
    if not bootstrap:
        raise click.UsageError(
            "no Kafka to talk to: pass --bootstrap HOST:PORT or set UEE_BOOTSTRAP "
            "(`uee broker` starts a local one and prints its address)"
        )
    return bootstrap


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="uee")
def cli() -> None:
    """uee: ETL pipelines on Kafka, declared in YAML files, run as Faust agents."""


@cli.command()
@click.argument("files", nargs=-1, required=True, type=click.Path())
@user_errors
def validate(files: tuple[str, ...]) -> None:
    """Check pipeline FILES (and directories) without touching Kafka."""
    from uee.dsl.compiler import load_pipelines
    from uee.dsl.optimize import build_plan

    pipelines = load_pipelines(files)
    build_plan(pipelines)  # the checks across pipelines that need the plan (consumer groups)
    out.print(f"ok: {len(pipelines)} pipeline(s): {', '.join(p.name for p in pipelines)}",
              highlight=False, soft_wrap=True)


@cli.command()
@click.argument("files", nargs=-1, required=True, type=click.Path())
@click.option("--format", "fmt", type=click.Choice(["text", "json", "mermaid"]), default="text",
              show_default=True)
@click.option("--no-optimize", is_flag=True, help="Show every pipeline on its own.")
@user_errors
def plan(files: tuple[str, ...], fmt: str, no_optimize: bool) -> None:
    """Show the plan of pipeline FILES: shared stages, agents, groups, topics, tables."""
    from uee.dsl.compiler import load_pipelines
    from uee.dsl.optimize import build_plan
    from uee.dsl.render import RENDERERS

    built = build_plan(load_pipelines(files), optimize=not no_optimize)
    click.echo(RENDERERS[fmt](built))


@cli.command()
@click.argument("files", nargs=-1, required=True, type=click.Path())
@bootstrap_option
@click.option("--until-idle", type=click.FloatRange(min=0, min_open=True), metavar="SECONDS",
              help="Exit 0 once no input arrived for SECONDS and everything is committed.")
@click.option("--batch-size", type=click.IntRange(min=1), help="Records per batch (default 5000).")
@click.option("-q", "--quiet", is_flag=True, help="No progress, only the summary.")
@click.option("--stats-json", type=click.Path(dir_okay=False, writable=True), metavar="PATH",
              help="Also write the run's statistics as JSON to PATH.")
@click.option("--no-optimize", is_flag=True,
              help="Run every pipeline on its own, without sharing common stages.")
@app_option
@click.option("--metrics-port", type=click.IntRange(1, 65535), envvar="UEE_METRICS_PORT",
              metavar="PORT", help="Serve Prometheus metrics at http://HOST:PORT/metrics "
              "(HOST: $UEE_METRICS_HOST, default 127.0.0.1).")
@durable_option
@user_errors
def run(files: tuple[str, ...], bootstrap: str | None, until_idle: float | None,
        batch_size: int | None, quiet: bool, stats_json: str | None, no_optimize: bool,
        app: str | None, metrics_port: int | None, durable: str | None) -> None:
    """Compile pipeline FILES and run them in one worker.

    Without --bootstrap (or UEE_BOOTSTRAP) an embedded broker runs for the duration of the
    command, in memory (or with --durable DIR, its data kept in DIR): for development and
    demos, not production.
    """
    from uee.dsl.compiler import load_pipelines
    from uee.dsl.optimize import build_plan
    from uee.streams.progress import Progress, summary_table, topic_table
    from uee.streams.run import run_plan
    from uee.streams.settings import Settings

    if stats_json and not os.access(os.path.dirname(os.path.abspath(stats_json)), os.W_OK):
        raise click.BadParameter(f"cannot write to {stats_json}: its folder does not exist or "
                                 "is not writable", param_hint="--stats-json")
    plan = build_plan(load_pipelines(files), optimize=not no_optimize)
    settings = Settings.from_env(bootstrap=bootstrap, batch_size=batch_size, app=app,
                                 metrics_port=metrics_port, durable=durable)
    if settings.bootstrap and durable:
        raise click.UsageError("--durable runs the embedded broker; with --bootstrap (or "
                               "UEE_BOOTSTRAP) uee uses that Kafka instead: give one of them")
    if not settings.bootstrap and settings.security_protocol != "PLAINTEXT":
        raise click.UsageError(f"UEE_SECURITY_PROTOCOL={settings.security_protocol} is for a "
                               "Kafka you name with --bootstrap (or UEE_BOOTSTRAP); the "
                               "embedded broker speaks PLAINTEXT on loopback only")
    report = run_plan(plan, settings, until_idle, Progress(out, quiet=quiet))
    if stats_json:
        _write_stats(stats_json, report)
    out.print(summary_table(report.stats))
    out.print(topic_table(report.stats, report.topic_reads, report.topic_records))
    for name, why in report.paused.items():
        err.print(f"error[PIPELINE_PAUSED]: pipeline {name} is paused: {why}; look at "
                  "its dead letters (`uee dlq show`), fix the cause, then "
                  f"`uee resume {name}`",
                  markup=False)
    if report.embedded and settings.durable:
        out.print(f"the embedded broker stopped; its topics are kept in {settings.durable} "
                  f"(`uee broker --durable {settings.durable}` serves them again)",
                  highlight=False, soft_wrap=True)
    elif report.embedded:
        out.print("the embedded broker stopped; its in-memory topics are gone "
                  "(use `uee broker` + --bootstrap to keep them while you inspect, or "
                  "--durable DIR)", highlight=False, soft_wrap=True)
    if report.paused:
        sys.exit(1)


@cli.command()
@click.argument("pipeline")
@bootstrap_option
@user_errors
def resume(pipeline: str, bootstrap: str | None) -> None:
    """Resume PIPELINE after it paused on its error rate (running workers pick it up)."""
    from uee.streams.control import PAUSED, RUNNING, PipelineState, pipeline_states, publish

    address = _require_bootstrap(bootstrap)
    before = pipeline_states(address).get(pipeline)
    publish(address, PipelineState.now(pipeline, RUNNING, "resumed with `uee resume`"))
    note = "it was paused" if before is not None and before.state == PAUSED \
        else "it was not paused"
    out.print(f"pipeline {pipeline}: RUNNING ({note})", highlight=False)


@cli.command()
@bootstrap_option
@app_option
@click.option("--json", "as_json", is_flag=True, help="One JSON object, for scripts.")
@user_errors
def status(bootstrap: str | None, app: str | None, as_json: bool) -> None:
    """The deployment's app state and every provider: state, reason, since, last checkpoint
    and counts, read from its tables (while workers run, and after they stopped)."""
    from uee.streams.settings import Settings
    from uee.streams.status import document, snapshot

    address = _require_bootstrap(bootstrap)
    snap = snapshot(Settings.from_env(bootstrap=address, app=app))
    doc = document(snap)
    if as_json:
        click.echo(json.dumps(doc, indent=2))
        return
    if snap.empty and not snap.control:
        out.print(f"app {snap.app} has no recorded state at {address} (no worker of it ran "
                  "here; `uee run --app NAME` names the app)", highlight=False, soft_wrap=True)
        return
    _print_status(doc, address)


def _print_status(doc: dict[str, Any], address: str) -> None:
    app = doc["app"]
    if app["running_workers"]:
        line = (f"{app['state'] or '-'} since {app['since'] or '-'}; "
                f"{app['running_workers']} worker(s) running")
    else:
        last = app["workers"][-1] if app["workers"] else {}
        line = (f"no worker running (the last stopped at {last.get('stopped') or '-'}, "
                f"{app['state'] or '-'})")
    out.print(f"app {app['name']} at {address}: {line}", highlight=False, soft_wrap=True)
    table = Table(title="providers", title_justify="left")
    for column in ("pipeline", "state", "since", "reason", "checkpoint", "permits", "in", "out",
                   "dlq"):
        table.add_column(column, overflow="fold")
    for p in doc["providers"]:
        checkpoint = p["checkpoint"]
        where = "-" if checkpoint["at"] is None else (
            f"{_cursor_text(checkpoint['cursor'])}, {checkpoint['age_s']:g}s ago"
            + (f", {checkpoint['urn']}" if checkpoint["urn"] else ""))
        state = p["state"] or "-"
        if p["control"] and p["control"]["state"] != state and state != "TERMINATED":
            state += f" ({p['control']['state']} requested)"
        records = p["records"] or {}
        permits = p["permits"]
        held = "/".join(str(n) for n in (permits["allocated"], permits["full"]) if n is not None)
        table.add_row(p["pipeline"], state, p["since"] or "-", p["reason"] or "-", where,
                      held or "-",
                      f"{records.get('in', 0):,}", f"{records.get('out', 0):,}",
                      f"{records.get('dead_lettered', 0):,}")
    out.print(table)
    read = [p for p in doc["providers"] if p.get("reading")]
    if read:
        # What the controller decides on: each pipeline's pressures against its thresholds.
        readings = Table(title="the quota controller's last readings", title_justify="left")
        for column in ("pipeline", "age", "permits", "P99 ms (target)", "from Kafka ms",
                       "lag (max)", "busy (max)", "records/s", "workers"):
            readings.add_column(column, overflow="fold")
        for p in read:
            r = p["reading"]
            target = f"{r['max_p99_ms']:g}" + ("" if r["target_set"] else ", default")
            readings.add_row(
                p["pipeline"], f"{r['age_s']:g}s", str(r["permits"]),
                f"{r['p99_ms']:g} ({target})", f"{r['e2e_p99_ms']:g}" if r["e2e_p99_ms"] else "-",
                f"{r['lag']:,} ({'-' if r['max_lag'] is None else format(r['max_lag'], ',')})",
                f"{r['saturation']:.0%} ({r['max_saturation']:.0%})", f"{r['throughput']:g}",
                str(r["workers"]))
        out.print(readings)
    if doc["quota"]:
        quota = Table(title="the quota controller's last decisions", title_justify="left")
        for column in ("at", "pipeline", "permits", "epoch", "reason"):
            quota.add_column(column, overflow="fold")
        for q in doc["quota"]:
            quota.add_row(q["at"], q["pipeline"], f"{q['permits_before']} -> "
                          f"{q['permits_after']}", str(q["epoch"]), q["reason"])
        out.print(quota)
    if doc["sinks"]:
        sinks = Table(title="sink breakers", title_justify="left")
        for column in ("sink", "state", "since", "reason"):
            sinks.add_column(column)
        for sink in doc["sinks"]:
            sinks.add_row(sink["sink"], sink["state"], sink["at"], sink["reason"])
        out.print(sinks)


def _cursor_text(cursor: Any) -> str:
    if isinstance(cursor, dict) and "offsets" in cursor:
        return "offsets " + ",".join(f"{p}:{o}" for p, o in cursor["offsets"].items())
    return json.dumps(cursor)


@cli.command()
@click.option("--port", type=click.IntRange(1, 65535),
              help="Port to listen on (default: a free one).")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@durable_option
@user_errors
def broker(port: int | None, host: str, durable: str | None) -> None:
    """Run the embedded broker (Tansu, in memory, or durable in --durable DIR) until
    interrupted."""
    from uee.streams.broker import BrokerDiedError, EmbeddedBroker

    stopped = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stopped.set())
    with EmbeddedBroker(port=port, host=host, durable=durable) as running:
        out.print(f"embedded broker ({running.description}) listening; bootstrap: "
                  f"{running.bootstrap}", highlight=False, soft_wrap=True)
        out.print(f"  export UEE_BOOTSTRAP={running.bootstrap}", highlight=False, soft_wrap=True)
        kept = (f"data is kept in {running.storage.folder} and comes back when it starts on "
                "it again" if running.storage else "data is kept in memory only and lost when "
                "it stops")
        out.print(f"{kept}; Ctrl-C stops it", highlight=False, soft_wrap=True)
        sys.stdout.flush()
        while not stopped.wait(0.5):
            if not running.alive:
                raise BrokerDiedError(f"the embedded broker at {running.bootstrap} died; the end "
                                  f"of its log:\n{running.log_tail()}")
    out.print("embedded broker stopped")


@cli.group()
def quota() -> None:
    """The deployment's permits."""


@quota.command("set")
@click.argument("pipeline")
@click.argument("permits", type=click.IntRange(min=1))
@bootstrap_option
@app_option
@user_errors
def quota_set(pipeline: str, permits: int, bootstrap: str | None, app: str | None) -> None:
    """Resize PIPELINE's pool of permits to PERMITS, at run time: its running workers take
    the new size at once (a fresh, full allocation; the controller cuts from there), later
    workers start with it."""
    import datetime

    from uee.streams.control import PermitPool, publish
    from uee.streams.permits import PermitPoolError
    from uee.streams.settings import Settings
    from uee.streams.state import PIPELINES
    from uee.streams.status import read_tables

    address = _require_bootstrap(bootstrap)
    settings = Settings.from_env(bootstrap=address, app=app)
    registry = read_tables(settings)[PIPELINES]
    if pipeline not in registry:
        known = ", ".join(sorted(registry)) or "none"
        raise PermitPoolError(f"no pipeline '{pipeline}' ran in deployment {settings.app} at "
                              f"{address} (its pipelines: {known}); check the name and --app")
    before = registry[pipeline].get("permits")
    publish(address, PermitPool(deployment=settings.app, pipeline=pipeline, permits=permits,
                                reason="resized with `uee quota set`",
                                at=datetime.datetime.now(datetime.UTC)))
    out.print(f"pipeline {pipeline} of {settings.app}: {permits} permits (its file says "
              f"{before})", highlight=False)


@cli.group()
def topics() -> None:
    """Inspect Kafka topics."""


@topics.command("list")
@bootstrap_option
@click.option("--all", "show_all", is_flag=True,
              help="Also show internal topics: uee's control topic, the Faust workers' own "
                   "topics and replay ledgers.")
@app_option
@user_errors
def topics_list(bootstrap: str | None, show_all: bool, app: str | None) -> None:
    """Topics with their partition and record counts."""
    from uee.streams.names import is_internal
    from uee.streams.topics import describe_topics, topic_partitions

    address = _require_bootstrap(bootstrap)
    partitions = topic_partitions(address)
    hidden = [] if show_all else [t for t in partitions if is_internal(t, app or "uee")]
    infos = describe_topics(address, {t: n for t, n in partitions.items() if t not in hidden})
    table = Table(title=f"topics at {address}", title_justify="left")
    table.add_column("topic")
    table.add_column("partitions", justify="right")
    table.add_column("records", justify="right")
    for info in infos:
        table.add_row(info.name, str(len(info.partitions)), f"{info.records:,}")
    out.print(table)
    if hidden:
        out.print(f"{len(hidden)} internal topic(s) not shown; --all shows them", style="dim",
                  highlight=False)


@topics.command("describe")
@click.argument("topic")
@bootstrap_option
@user_errors
def topics_describe(topic: str, bootstrap: str | None) -> None:
    """Per partition: low and high watermarks and record count."""
    from uee.streams.topics import describe_topic

    info = describe_topic(_require_bootstrap(bootstrap), topic)
    table = Table(title=f"topic {info.name}", title_justify="left")
    for column in ("partition", "low", "high", "records"):
        table.add_column(column, justify="right")
    for p in info.partitions:
        table.add_row(str(p.partition), str(p.low), str(p.high), f"{p.records:,}")
    out.print(table)
    out.print(f"total records: {info.records}", highlight=False)


@topics.command("tail")
@click.argument("topic")
@click.option("-n", "count", default=10, show_default=True, type=click.IntRange(min=1))
@bootstrap_option
@user_errors
def topics_tail(topic: str, count: int, bootstrap: str | None) -> None:
    """The last N records of TOPIC, decoded."""
    from uee.streams.topics import tail_topic

    records = tail_topic(_require_bootstrap(bootstrap), topic, count)
    if not records:
        out.print(f"topic {topic} is empty", highlight=False)
    for record in records:
        when = (datetime.datetime.fromtimestamp(record.timestamp_ms / 1000, datetime.UTC)
                .isoformat(timespec="milliseconds") if record.timestamp_ms else "-")
        out.print(Text.assemble((f"partition {record.partition} offset {record.offset}", "bold"),
                                f" key {_show(record.key, pretty=False)} timestamp {when}"))
        for name, value in record.headers:
            out.print(f"  header {name}: {_show(value, pretty=False)}", markup=False)
        out.print(_show(record.value, pretty=True), markup=False, highlight=False)


@cli.group()
def dlq() -> None:
    """Inspect and replay dead-letter topics."""


@dlq.command("list")
@click.argument("files", nargs=-1, type=click.Path())
@bootstrap_option
@app_option
@user_errors
def dlq_list(files: tuple[str, ...], bootstrap: str | None, app: str | None) -> None:
    """Dead-letter topics with depth and top codes: `*.dlq`, every DLQ of the deployment's
    pipeline registry (whatever its name), and those FILES configure."""
    from uee.streams.dlq import dlq_topics, summarize
    from uee.streams.settings import Settings
    from uee.streams.status import registry_dlqs

    address = _require_bootstrap(bootstrap)
    configured = set(registry_dlqs(Settings.from_env(bootstrap=address, app=app)))
    if files:
        from uee.dsl.compiler import load_pipelines

        configured |= {p.dlq_topic for p in load_pipelines(files) if p.dlq_topic}
    table = Table(title=f"dead-letter topics at {address}", title_justify="left")
    for column in ("topic", "records", "most frequent codes"):
        table.add_column(column, justify="right" if column == "records" else "left")
    for topic in dlq_topics(address, configured):
        summary = summarize(address, topic)
        codes = ", ".join(f"{code} ({count:,})" for code, count in summary.top_codes) or "-"
        table.add_row(topic, f"{summary.depth:,}", codes)
    out.print(table)


@dlq.command("show")
@click.argument("topic")
@click.option("-n", "count", default=10, show_default=True, type=click.IntRange(min=1))
@click.option("--code", help="Only records with this error code.")
@bootstrap_option
@user_errors
def dlq_show(topic: str, count: int, code: str | None, bootstrap: str | None) -> None:
    """The last N dead letters of TOPIC: the error, where it happened, and the record."""
    from uee.streams.dlq import show

    letters = show(_require_bootstrap(bootstrap), topic, count, code)
    if not letters:
        out.print(f"no dead letters in {topic}" + (f" with code {code}" if code else ""),
                  highlight=False)
    for letter in letters:
        h = letter.headers
        out.print(Text.assemble(
            (f"{h.get('uee.error.code', '?')}", "bold red"),
            f"  pipeline {h.get('uee.pipeline', '?')}  stage {h.get('uee.stage', '?')}  "
            f"attempt {letter.attempt}  retryable {h.get('uee.error.retryable', '?')}"))
        out.print(f"  {h.get('uee.error.message', '')}", markup=False, highlight=False)
        origin = h.get("__connect.errors.topic")
        where = (f"{origin} partition {h.get('__connect.errors.partition')} offset "
                 f"{h.get('__connect.errors.offset')}" if origin else "a generator")
        out.print(f"  from {where}, failed at {h.get('uee.failed.at', '?')}; dlq offset "
                  f"{letter.record.partition}:{letter.record.offset}", markup=False,
                  highlight=False)
        out.print(f"  key {_show(letter.record.key, pretty=False)}", markup=False,
                  highlight=False)
        out.print(_show(letter.record.value, pretty=True), markup=False, highlight=False)


@dlq.command("replay")
@click.argument("topic")
@click.option("--pipeline", help="Only dead letters of this pipeline.")
@click.option("--where", "where", metavar="EXPR",
              help="Only dead letters for which EXPR is true; it reads code, stage, pipeline, "
                   "message, retryable, attempt, topic, key, headers[...] and record.<field>.")
@click.option("--dry-run", is_flag=True, help="Say what would be replayed; send nothing.")
@click.option("--max-replays", type=click.IntRange(min=0),
              help="Refuse records already replayed this many times (default: each record's "
                   "pipeline's dlq.max_replays, carried in its headers; 3 if none).")
@bootstrap_option
@user_errors
def dlq_replay(topic: str, pipeline: str | None, where: str | None, dry_run: bool,
               max_replays: int | None, bootstrap: str | None) -> None:
    """Send dead letters of TOPIC back to the topic they came from, attempt + 1."""
    from uee.streams.dlq import replay

    report = replay(_require_bootstrap(bootstrap), topic, pipeline, where, dry_run, max_replays)
    verb = "would replay" if dry_run else "replayed"
    sent = sum(report.replayed.values())
    out.print(f"read {report.read:,} dead letters from {topic}; {verb} {sent:,}"
              + "".join(f"; {n:,} to {t}" for t, n in sorted(report.replayed.items())),
              highlight=False, soft_wrap=True)
    if report.already:
        out.print(f"  {report.already:,} were replayed before (see {topic}.replayed)",
                  highlight=False)
    if report.skipped:
        out.print(f"  {report.skipped:,} did not match --pipeline/--where", highlight=False)
    if report.unreadable_where:
        out.print(f"  {report.unreadable_where:,} could not be matched: --where failed on them",
                  highlight=False)
    if report.refused:
        limit = f"{max_replays} times (--max-replays)" if max_replays is not None else \
            "as often as their pipeline's dlq.max_replays allows"
        out.print(f"  {report.refused:,} refused: already replayed {limit}; fix the pipeline "
                  "or the data first", highlight=False)
    if report.no_origin:
        out.print(f"  {report.no_origin:,} came from a generator: there is no topic to send "
                  "them back to", highlight=False)


def _write_stats(path: str, report: Any) -> None:
    """Machine-readable run statistics, for scripts and the benchmark."""
    pipelines = {}
    for name, stats in report.stats.items():
        busy = (stats.last_commit_at - stats.first_record_at
                if stats.first_record_at is not None and stats.last_commit_at is not None else None)
        pipelines[name] = {
            "records_in": stats.records_in, "records_out": stats.records_out,
            "filtered": stats.filtered, "dead_lettered": stats.dead_lettered,
            "error_codes": dict(stats.error_codes),
            "per_topic_out": dict(stats.per_topic_out), "busy_seconds": busy,
        }
    document = {"bootstrap": report.bootstrap, "embedded_broker": report.embedded,
                "seconds": report.seconds, "topic_records": report.topic_records,
                "topic_reads": report.topic_reads,
                "pipelines": pipelines}
    with open(path, "w", encoding="utf-8") as handle:
        json.dump(document, handle, indent=2)


def _show(data: bytes | None, pretty: bool) -> str:
    """JSON pretty-printed, text as text, anything else as an escaped bytes literal."""
    if data is None:
        return "null"
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return repr(data)
    try:
        return json.dumps(json.loads(text), indent=2 if pretty else None, ensure_ascii=False)
    except (ValueError, RecursionError):  # not JSON, or nested deeper than Python recurses
        pass
    if text.isprintable():
        return text
    return json.dumps(text, ensure_ascii=False)  # control characters shown escaped


def configure_logging() -> None:
    """Log lines go to stderr, one per line; UEE_LOG_LEVEL=DEBUG shows librdkafka's too."""
    level = os.environ.get("UEE_LOG_LEVEL", "WARNING").upper()
    logging.basicConfig(level=level, stream=sys.stderr,
                        format="uee %(levelname)s %(name)s: %(message)s")
    # State transitions are the worker's record of what happened: one bare JSON object per
    # line, shown unless UEE_LOG_LEVEL asks for less than INFO.
    transitions = logging.getLogger("uee.state")
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(message)s"))
    transitions.addHandler(handler)
    transitions.propagate = False
    transitions.setLevel(min(logging.INFO, logging.getLevelName(level))
                         if "UEE_LOG_LEVEL" not in os.environ else level)
    if "UEE_LOG_LEVEL" not in os.environ:
        logging.getLogger("uee.kafka").setLevel(logging.CRITICAL)
        # Library threads (Faust's consumer) die noisily when the broker goes away; uee
        # reports the failure itself, so their tracebacks are for UEE_LOG_LEVEL=DEBUG.
        threading.excepthook = _quiet_thread_death


def _quiet_thread_death(args: threading.ExceptHookArgs) -> None:
    thread = args.thread.name if args.thread else "?"
    logging.getLogger("uee.threads").debug("thread %s died: %r", thread, args.exc_value)


def main() -> None:
    # First thing: a SIGTERM during the imports and start-up of `uee run` (1-2 s, before it
    # installs its own handler) would otherwise end the process at once, with no message.
    signal.signal(signal.SIGTERM, _terminated)
    configure_logging()
    cli(prog_name="uee")


if __name__ == "__main__":
    main()
