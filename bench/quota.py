"""`python -m bench.quota` (`make bench-quota`): fixed permits, `step` and `adaptive`, side by
side, on the same scenario in one run.

The scenario, per policy, on one worker: an open-loop producer writes R records/s to each of
two topics (every record carries its send time); a low-priority pipeline runs a stage that
is fast, with jitter, then, for the slowdown, burns 4/R s of CPU a record (it can do a
quarter of the input rate, and competes for the interpreter), then is fast again; a
high-priority pipeline beside it on the same worker does almost nothing, or, with
`--high-load L`, burns L/R s of CPU a record (L cores at the input rate): then the two
compete for the interpreter, and the high-priority one lags unless the slowed one gives way
(its lag presses on lower-priority pipelines of its worker). Measured, from the
controller's decisions (its log) and the output topics' timestamps:

    detect      slowdown start -> first QuotaUpdate                     goal <= 1 s
    settle      permits within +/-10% of their slowdown value from then  goal <= 5 s, <= 3 changes
    high P99    the high-priority pipeline's end-to-end P99 in the slowdown, against fixed:
                                                                        goal 10x lower
    kept        the slowed pipeline's throughput in the slowdown over the best static cap's
                (below) and over fixed permits' (never throttled)      goal >= 0.9;
                also over R/4, what the stage alone could do without the broker's round trips
    flapping    permit changes in the healthy phase (goal 0); per minute in steady overload,
                the slowdown's second half (goal <= 2)
    restore     slowdown end -> permits back to 95%                     goal <= 5 s
    lost        records sent but not at the sink (always 0); duplicates counted
    CPU         the controller's share of a core                        goal < 2%

Each scenario (`--high-load`, by default 0 and 0.6 cores) runs every policy and prints its
own table: the high P99 goal means something only where the slowed pipeline can hurt the
high-priority one, which, with a thread, a consumer and a queue each, it does only through
the interpreter they share.

A fourth run, `revoked`, is no policy but the bound on the high P99 goal: fixed permits,
and all of the slowed pipeline's permits revoked for the whole slowdown, the moment it
starts, as if by an oracle (a QuotaUpdate to 0 from an epoch no controller reaches; it
reads nothing, so its stage takes no CPU). No policy can take more from the slowed
pipeline, nor sooner, so this run's high P99 against fixed's is the most any policy could
reach on the machine and broker.

What the slowed stage "can do" is a static cap's throughput: `cap-N` is the same oracle,
holding the slowed pipeline at N permits for the whole slowdown. Where the high-priority
pipeline needs the CPU, the slowed stage can do only what the higher priority leaves it,
and fixed permits' throughput (taken from the higher priority) overstates it. The best
static cap, the one whose slowed pipeline does most while the high-priority pipeline keeps
to its quota section (its P99 in the slowdown within its target, and above its healthy P99
by no more than its `max_lag` of input takes to arrive: a lag over that is what the
controller acts on), measures it; fixed permits count as the cap of all of them, the best
where the other needs no protection. A cap counts only where every run of it kept the
other in: at the edge one does by chance. `--caps N [N ...]` runs those caps; without it,
where fixed permits let the other out of its section, the bench searches for the best one
from the cap nearest what the adaptive policy kept through the slowdown (a cap of N is N%
of the input rate), a permit up or down at a time, until one that keeps the other in sits
right under one that does not, and runs that one again to confirm it. With `--repeat`,
the last table judges kept against the best cap over all the runs.

Under each scenario's table, a line per policy says whether it met every goal, or which
it missed: kept is over the best static cap, and the 10x is not judged where the bound
shows no policy can reach it (the other then needs no protection: the slowed pipeline
does not hurt it).

Every policy run's quota samples and decisions, as the control topic carried them, are kept
in `--control` (JSON lines; by default beside `--json`): `python -m bench.quota_replay`
replays them through the policy of the checkout, to see where a change would have decided
otherwise on a recorded run, before running the bench again.
"""

from __future__ import annotations

import argparse
import datetime
import itertools
import json
import math
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from confluent_kafka import Producer
from rich.console import Console
from rich.table import Table

from bench.__main__ import REPO, broker
from bench.quota_replay import keep_control
from uee.streams.control import publish
from uee.streams.permits import QuotaUpdate
from uee.streams.topics import TailRecord, describe_topic, ensure_topics, read_all

POLICIES = ("fixed", "step", "adaptive", "revoked")
# The slowed pipeline's full allocation: 1% a permit. With 5% a permit (20), the caps on
# either side of what the slowed stage can do are 80% of it and more than all of it: the
# throughput kept could not be measured above 0.8 whatever the policy.
SLOW_PERMITS = 100
ORACLE_EPOCH = 1 << 40  # the `revoked` run's decisions: above any controller's epoch
# Its P99 target: above what one small batch's round trip to the broker takes on a loaded
# two-core machine (~150 ms, the high-priority pipeline's healthy P99 here), below a full
# batch of the slowed stage (100 records x 4 ms). The high-priority pipeline may lag a
# quarter of a second of input (max_lag = R / 4).
SLOW_TARGET_MS = 250
HIGH_TARGET_MS = 1000  # the high-priority pipeline's P99 target: a best cap keeps it
# The producer's batches, a topic each every LINGER_MS (`--linger-ms`): the embedded
# broker's fetches list every batch ever written to a partition (README, Brokers), so the
# more batches, the more each fetch costs as a run goes on. At 2 ms they took seconds by
# the slowdown; at 20 the broker's CPU still doubled through a slowdown, moving the line
# the slowed pipeline must keep under while the policies were measured against it; at 100
# it stays flat (measured: 0.07-0.12 cores), for 100 ms more on every latency.
LINGER_MS = 100
# The search for the best static cap (`--caps` not given) runs at most this many times.
MAX_CAP_RUNS = 6
WINDOW_S = 10.0  # seconds of the slowdown each of `Outcome.high_p99_windows_ms` is over
UDF = '''\
"""The bench's stages. work: fast (1% of records wait 2 ms: jitter), or, while the phase
file says so, COST seconds of CPU a record. high: HIGH_COST seconds of CPU a record."""
import os, random, time

PHASE = os.path.join(os.path.dirname(__file__), "phase")
COST = float(os.environ["UEE_BENCH_SLOW_COST"])
HIGH_COST = float(os.environ.get("UEE_BENCH_HIGH_COST", "0"))
_checked = [0.0, False]


def _slowed():
    now = time.monotonic()
    if now - _checked[0] > 0.02:
        _checked[0] = now
        _checked[1] = os.path.exists(PHASE)
    return _checked[1]


def _burn(seconds):
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        pass


def work(record):
    if _slowed():
        _burn(COST)
    elif random.random() < 0.01:
        time.sleep(0.002)
    return record


def high(record):
    _burn(HIGH_COST)
    return record
'''
console = Console(width=max(Console().width, 140))


@dataclass(frozen=True)
class Outcome:
    policy: str
    detect_s: float | None
    settle_s: float | None
    slowdown_changes: int
    high_p99_ms: float
    high_p99_healthy_ms: float  # the same in the healthy phase: what the broker path costs
    high_p99_vs_fixed: float | None  # fixed's P99 over this one's (>1: lower than fixed)
    slowed_rate: float  # the slowed pipeline's records/s in the slowdown
    kept: float | None  # that over fixed permits' (never throttled: all the stage can do)
    kept_of_stage: float  # that over R/4, what the stage alone could do
    healthy_changes: int
    overload_changes_per_min: float
    restore_s: float | None
    lost: int
    duplicates: int
    controller_cpu_share: float | None
    decisions: int
    # s from the slowdown start, pipeline, permits before and after, reason, the metrics
    timeline: tuple[tuple[float, str, int, int, str, dict[str, float]], ...]
    high_load: float = 0.0  # the scenario: the high-priority stage's CPU, in cores
    repeat: int = 0  # which of the `--repeat` runs of the scenario it is (from 0)
    # The high-priority P99 (ms) of each `WINDOW_S` of the slowdown, in order (in the json
    # only): the backlog of the first seconds, before any cut shows, apart from what a cap
    # or a policy's ceiling lets build up later (a creep 40 s in, a fixed run's growth).
    high_p99_windows_ms: tuple[float, ...] = ()
    # The embedded broker's CPU (cores) in the same windows (in the json only; empty on a
    # broker given with --bootstrap): Tansu's fetches cost more as its topics grow, so the
    # line between what the slowed pipeline may do and what hurts the other moves with it.
    broker_cpu_windows: tuple[float, ...] = ()
    final_permits: int = SLOW_PERMITS  # the slowed pipeline's permits as the slowdown ends


class OpenLoopProducer(threading.Thread):
    """R records/s to each topic, on a schedule of its own: it never waits for uee."""

    def __init__(self, bootstrap: str, topics: list[str], rate: int,
                 linger_ms: int = LINGER_MS) -> None:
        super().__init__(daemon=True)
        # A batch a topic every `linger_ms`, as a producer tuned for throughput sends them
        # (the latency counted from the send time includes it).
        self._producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": linger_ms})
        self._topics = topics
        self._rate = rate
        self.sent = 0
        self.stop = threading.Event()

    def run(self) -> None:
        started = time.monotonic()
        while not self.stop.is_set():
            due = int((time.monotonic() - started) * self._rate)
            while self.sent < due:
                value = json.dumps({"n": self.sent, "sent": time.time()}).encode()
                for topic in self._topics:
                    self._producer.produce(topic, value, str(self.sent).encode())
                self.sent += 1
            self._producer.poll(0)
            self.stop.wait(0.005)
        self._producer.flush(30)


def high_max_lag(rate: int) -> int:
    """The high-priority pipeline's `max_lag`: a quarter of a second of its input."""
    return max(10, rate // 4)


def high_lag_ms(rate: int) -> float:
    """The latency its `max_lag` adds: the time that many records take to arrive."""
    return 1000 * high_max_lag(rate) / rate


def pipelines(run_id: str, slow_in: str, slow_out: str, high_in: str, high_out: str,
              rate: int, high_load: float = 0.0) -> str:
    """The two pipelines; named per run (a pipeline's pause is kept by its name)."""
    high_stage = '{python: "bench_quota_udfs:high"}' if high_load > 0 else \
        '{map: {twice: "n * 2"}}'
    return f"""\
- pipeline: slowed-{run_id}
  source: {{kafka: {{topic: {slow_in}}}}}
  stages: [{{python: "bench_quota_udfs:work"}}]
  sink: {{kafka: {{topic: {slow_out}}}}}
  quota: {{permits: {SLOW_PERMITS}, max_p99_ms: {SLOW_TARGET_MS}, priority: 0}}
- pipeline: high-{run_id}
  source: {{kafka: {{topic: {high_in}}}}}
  stages: [{high_stage}]
  sink: {{kafka: {{topic: {high_out}}}}}
  quota: {{permits: 4, max_p99_ms: {HIGH_TARGET_MS}, max_lag: {high_max_lag(rate)}, priority: 10}}
"""


def run_policy(bootstrap: str, policy: str, rate: int, phases: tuple[float, float, float],
               folder: Path, high_load: float = 0.0, broker_pid: int | None = None,
               linger_ms: int = LINGER_MS) -> dict[str, Any]:
    """One policy through the scenario; what the analysis needs (`broker_pid`: the
    embedded broker's process, whose CPU is read at each window of the slowdown)."""
    healthy_s, slow_s, recover_s = phases
    run_id = f"{policy}-{uuid.uuid4().hex[:6]}"
    topics = [f"bq.{run_id}.{name}" for name in ("slow.in", "slow.out", "high.in", "high.out")]
    ensure_topics(bootstrap, topics, 1, 1)
    work = folder / run_id
    work.mkdir()
    (work / "bench_quota_udfs.py").write_text(UDF)
    slow_in, slow_out, high_in, high_out = topics
    (work / "pipelines.yaml").write_text(
        pipelines(run_id, slow_in, slow_out, high_in, high_out, rate, high_load))
    app = f"bq-{run_id}"
    cap = oracle_cap(policy)
    env = {**os.environ, "UEE_APP": app,
           "UEE_QUOTA_POLICY": "fixed" if cap is not None else policy,
           "UEE_QUOTA_INTERVAL_S": "0.5", "UEE_BATCH_SIZE": "100",
           "UEE_STATE_DIR": str(work / "state"), "UEE_BENCH_SLOW_COST": str(4 / rate),
           "UEE_BENCH_HIGH_COST": str(high_load / rate)}
    env.pop("UEE_BOOTSTRAP", None)
    # A stop (SIGTERM, Ctrl-C) that comes while the worker starts is held until the `try`
    # below, whose `finally` stops it: raised before, it left the worker running, orphaned.
    # Held by a Python handler, not a blocked signal mask: a child inherits the mask, and a
    # worker started with SIGINT blocked ignored the `finally`'s SIGINT for its 60 s.
    held: list[int] = []
    handlers = {signum: signal.signal(signum, lambda signum, _frame: held.append(signum))
                for signum in (signal.SIGINT, signal.SIGTERM)}
    try:
        worker = subprocess.Popen(
            [str(Path(sys.executable).parent / "uee"), "run", str(work / "pipelines.yaml"),
             "--bootstrap", bootstrap, "--quiet"], stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE, text=True, env=env, cwd=work)
    except BaseException:
        _restore(handlers)
        raise
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(worker.stderr or []), daemon=True)
    reader.start()
    try:
        _restore(handlers)
        if held:
            raise KeyboardInterrupt
        producer = OpenLoopProducer(bootstrap, [topics[0], topics[2]], rate, linger_ms)
        _wait_running(lines, worker, {f"slowed-{run_id}", f"high-{run_id}"}, 60)
        producer.start()
        start = time.time()
        _sleep_until(start + healthy_s)
        if cap is not None:
            _oracle(bootstrap, app, f"slowed-{run_id}", SLOW_PERMITS, cap)
        (work / "phase").write_text("slow")
        slow_from = time.time()
        broker_cpu = [(slow_from, cpu_seconds(broker_pid))]
        windows = slowdown_windows(slow_from, slow_from + slow_s)
        for _, window_end in windows:
            _sleep_until(window_end)
            broker_cpu.append((time.time(), cpu_seconds(broker_pid)))
        (work / "phase").unlink()
        slow_to = time.time()
        if cap is not None:
            _oracle(bootstrap, app, f"slowed-{run_id}", cap, SLOW_PERMITS)
        _sleep_until(slow_to + recover_s)
        producer.stop.set()
        producer.join(60)
        _drain(bootstrap, [topics[1], topics[3]], producer.sent, 180)
    finally:
        worker.send_signal(signal.SIGINT)
        try:
            worker.wait(60)
        except subprocess.TimeoutExpired:
            worker.kill()
        reader.join(10)
    return {"policy": policy, "high_load": high_load, "run_id": run_id, "topics": topics,
            "sent": producer.sent,
            "lines": lines, "start": start, "slow_from": slow_from, "slow_to": slow_to,
            "end": time.time(), "broker_cpu": cores_per_window(broker_cpu),
            "windows": len(windows)}


def _restore(handlers: dict[signal.Signals, Any]) -> None:
    """Put back the signal handlers `signal.signal` returned."""
    for signum, handler in handlers.items():
        signal.signal(signum, handler)


def cpu_seconds(pid: int | None) -> float | None:
    """The CPU time (user and system, seconds) process `pid` has used, from Linux's
    /proc; None without a pid or that file."""
    if pid is None:
        return None
    try:
        # After "pid (name)", which may hold spaces: utime and stime are the 12th and 13th.
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def cores_per_window(readings: list[tuple[float, float | None]]) -> tuple[float, ...]:
    """The cores used between readings of (time, CPU seconds) in a row; none when one
    could not be read."""
    known = [(at, cpu) for at, cpu in readings if cpu is not None]
    if len(known) < len(readings):
        return ()
    return tuple((cpu_b - cpu_a) / max(1e-9, at_b - at_a)
                 for (at_a, cpu_a), (at_b, cpu_b) in itertools.pairwise(known))


def oracle_cap(policy: str) -> int | None:
    """The permits the oracle holds the slowed pipeline at in the slowdown: 0 for `revoked`,
    N for `cap-N`; None for a policy."""
    if policy == "revoked":
        return 0
    return int(policy.removeprefix("cap-")) if policy.startswith("cap-") else None


def keeps_quota(o: Outcome, rate: int) -> bool:
    """Whether the high-priority pipeline kept to its quota section in a run's slowdown:
    its P99 within its target, and over its healthy P99 by no more than its `max_lag` of
    input takes to arrive (a lag of that many records adds that much latency)."""
    return 0 < o.high_p99_ms <= min(HIGH_TARGET_MS, o.high_p99_healthy_ms + high_lag_ms(rate))


@dataclass(frozen=True)
class StaticCap:
    """Static permits (`cap-N`, or fixed: all of them) over every run of them in a scenario:
    the search runs its best twice, `--repeat` each given cap once a run."""
    policy: str
    runs: tuple[Outcome, ...]

    @property
    def slowed_rate(self) -> float:
        """The slowed pipeline's records/s in the slowdown, the mean over the runs."""
        return statistics.fmean(o.slowed_rate for o in self.runs)


def static_caps(outcomes: list[Outcome]) -> list[StaticCap]:
    """The runs of fixed permits and of each `cap-N`, gathered by policy, in order."""
    names = dict.fromkeys(o.policy for o in outcomes
                          if o.policy == "fixed" or o.policy.startswith("cap-"))
    return [StaticCap(name, tuple(o for o in outcomes if o.policy == name)) for name in names]


def best_cap(outcomes: list[Outcome], rate: int) -> StaticCap | None:
    """The static permits whose slowed pipeline did most in the slowdown while the
    high-priority pipeline kept to its quota section there in every run of them: a
    `cap-N`, or fixed permits (all of them: the slowed pipeline never throttled) where the
    other needs no protection; None if none did. Every run, because a cap at the edge
    keeps the other in by chance (three short runs on 12-06: cap-16 and cap-17 each let its
    P99 out once in three, to 631 and 801 ms), and a user setting a cap to protect a
    pipeline needs it to hold every time."""
    kept = [cap for cap in static_caps(outcomes)
            if all(keeps_quota(o, rate) for o in cap.runs)]
    return max(kept, key=lambda cap: cap.slowed_rate, default=None)


def next_cap(tried: dict[int, list[bool]]) -> int | None:
    """The next cap of the search for the best static one, given the caps tried and
    whether each run of each kept the high-priority pipeline to its quota section (a cap
    does where every run of it did): one above the highest that did, or, while none did,
    one below the lowest that did not (more permits, more of the interpreter for the
    slowed stage). Once one that did sits right under one that did not (or at the top),
    that one again if it ran once: its second run confirms it, or sends the search on.
    None once the best is confirmed, or when none did down to 1 permit."""
    kept = [n for n, runs in tried.items() if all(runs)]
    if kept:
        best = max(kept)
        if best + 1 not in tried and best + 1 < SLOW_PERMITS:
            return best + 1
        return best if len(tried[best]) < 2 else None
    below = min(tried) - 1
    return below if below >= 1 else None


def _oracle(bootstrap: str, app: str, pipeline: str, before: int, after: int) -> None:
    """A decision no controller made: the `revoked` and `cap-N` runs' (the worker applies
    it as any other; under fixed permits no controller decides, whatever the epoch)."""
    publish(bootstrap, QuotaUpdate(deployment=app, epoch=ORACLE_EPOCH, pipeline=pipeline,
                                   permits_before=before, permits_after=after,
                                   reason=f"the bench's oracle: {after} permits for the "
                                          "slowdown"))


def _sleep_until(at: float) -> None:
    while (left := at - time.time()) > 0:
        time.sleep(min(left, 0.05))


def _wait_running(lines: list[str], worker: subprocess.Popen[str], names: set[str],
                  timeout: float) -> None:
    """Until both pipelines report RUNNING (their JSON state lines)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        running = {json.loads(line).get("provider") for line in list(lines)
                   if '"to": "RUNNING"' in line and line.startswith("{")}
        if names <= running:
            return
        if worker.poll() is not None:
            raise SystemExit("the worker exited:\n" + "".join(lines[-30:]))
        time.sleep(0.05)
    raise SystemExit("the pipelines did not start in time:\n" + "".join(lines[-30:]))


def _drain(bootstrap: str, sinks: list[str], sent: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if all(describe_topic(bootstrap, sink).records >= sent for sink in sinks):
            return
        time.sleep(0.5)


def analyse(bootstrap: str, run: dict[str, Any], rate: int, fixed: Outcome | None
            ) -> Outcome:
    _, slow_out, _, high_out = run["topics"]
    slow_from, slow_to, start = run["slow_from"], run["slow_to"], run["start"]
    decisions = []
    cpu = 0.0
    for line in run["lines"]:
        if line.startswith('{"controller"'):
            entry = json.loads(line)
            decision = entry["decision"]
            at = datetime.datetime.fromisoformat(decision["at"]).timestamp()
            decisions.append((at, decision["pipeline"], decision["permits_before"],
                              decision["permits_after"], decision["reason"],
                              decision.get("metrics", {})))
            cpu = max(cpu, entry.get("cpu_s", 0.0))
    slowed = [(at, after) for at, pipeline, _, after, *_ in decisions
              if pipeline == f"slowed-{run['run_id']}"]

    def permits_before(t: float) -> int:
        value = SLOW_PERMITS
        for at, after in slowed:
            if at < t:
                value = after
        return value

    during = [(at, after) for at, after in slowed if slow_from <= at < slow_to]
    first = next((at for at, *_ in decisions if at >= slow_from), None)
    detect = first - slow_from if first is not None and first < slow_to else None
    final = permits_before(slow_to)
    settle = settle_s(permits_before(slow_from),
                      [(at - slow_from, after) for at, after in during])
    # Steady overload: the second half of the slowdown, whatever the policy did first.
    steady_from = (slow_from + slow_to) / 2
    overload = [at for at, _ in during if at >= steady_from]
    overload_minutes = max(1e-9, (slow_to - steady_from) / 60)
    restore = None
    if final < SLOW_PERMITS:
        back = next((at for at, after in slowed
                     if at >= slow_to and after >= 0.95 * SLOW_PERMITS), None)
        restore = back - slow_to if back is not None else math.inf
    high = read_all(bootstrap, high_out, 120)
    p99 = _p99_ms(high, slow_from, slow_to)
    slow = read_all(bootstrap, slow_out, 120)
    in_slowdown = sum(1 for r in slow if r.timestamp_ms
                      and slow_from <= r.timestamp_ms / 1000 < slow_to)
    slowed_rate = in_slowdown / (slow_to - slow_from)
    lost = duplicates = 0
    for records in (high, slow):
        seen = Counter(json.loads(r.value or b"{}")["n"] for r in records)
        lost += sum(1 for n in range(run["sent"]) if n not in seen)
        duplicates += sum(count - 1 for count in seen.values() if count > 1)
    return Outcome(
        run["policy"], detect, settle, len(during), p99, _p99_ms(high, start, slow_from),
        fixed.high_p99_ms / p99 if fixed and fixed.high_p99_ms and p99 else None,
        slowed_rate, slowed_rate / fixed.slowed_rate if fixed and fixed.slowed_rate else None,
        slowed_rate / (rate / 4),
        sum(1 for at, *_ in decisions if start <= at < slow_from),
        len(overload) / overload_minutes, restore, lost, duplicates,
        cpu / (run["end"] - start) if decisions else None, len(decisions),
        tuple((round(at - slow_from, 2), pipeline, before, after, reason, metrics)
              for at, pipeline, before, after, reason, metrics in decisions),
        run["high_load"],
        high_p99_windows_ms=tuple(_p99_ms(high, *window)
                                  for window in slowdown_windows(slow_from, slow_to,
                                                                   run.get("windows"))),
        broker_cpu_windows=run.get("broker_cpu", ()),
        # The oracle's runs: the permits it held (its updates are no controller's).
        final_permits=final if (cap := oracle_cap(run["policy"])) is None else cap)


def slowdown_windows(start: float, end: float, count: int | None = None
                     ) -> list[tuple[float, float]]:
    """[start, end) in spans of `WINDOW_S`, the last one taking what is left over (a
    slowdown of 60.02 s is six windows, not six and a sliver); `count` of them when given
    (those the broker's CPU was read at: a slowdown planned at 25 s is two, ended at 25.02
    s it would round to three)."""
    count = count or max(1, round((end - start) / WINDOW_S))
    bounds = [start + n * WINDOW_S for n in range(count)] + [end]
    return list(itertools.pairwise(bounds))


def settle_s(before: int, changes: list[tuple[float, int]]) -> float | None:
    """Seconds from the slowdown's start until the permits are within +/-10% of their final
    value for good (settling time, as control theory has it): the end of the last span of
    permits outside that band. `changes` are (seconds since the start, permits after), in
    order; `before`, the permits held at the start. A change within the band is not an
    unsettled span, but it is counted with the changes. None: nothing changed."""
    if not changes:
        return None
    final = changes[-1][1]
    settled, held = 0.0, before
    for at, after in changes:
        if abs(held - final) > 0.1 * max(1, final):
            settled = at
        held = after
    return settled


def _p99_ms(records: list[TailRecord], sent_from: float, sent_to: float) -> float:
    """P99 end-to-end latency of the records sent in [from, to): their sink timestamp
    minus the send time they carry."""
    latencies = sorted(r.timestamp_ms / 1000 - sent for r in records
                       if r.timestamp_ms and sent_from <= (sent := _sent(r)) < sent_to)
    if not latencies:
        return 0.0
    return latencies[min(len(latencies) - 1, math.ceil(0.99 * len(latencies)) - 1)] * 1000


def _sent(record: TailRecord) -> float:
    return float(json.loads(record.value or b"{}")["sent"])


def _fmt(value: float | None, pattern: str, none: str = "-") -> str:
    if value is None:
        return none
    return "never" if value == math.inf else pattern.format(value)


def table(outcomes: list[Outcome], high_load: float, rate: int) -> Table:
    scenario = (f"the high-priority stage burns {high_load:g} cores at the input rate"
                if high_load > 0 else "the high-priority stage does almost nothing")
    grid = Table(title=f"uee quota policies, one run, same scenario: {scenario} "
                       "(goals in brackets)",
                 caption="revoked: no policy, the bound: all of the slowed pipeline's permits "
                         "taken as the slowdown starts; its high P99 vs fixed is the most any "
                         "policy can reach here; kept: over the best static cap (fixed "
                         "permits where the other kept to its quota section under them)")
    best = best_cap(outcomes, rate)
    for heading in ("policy", "detect s [<=1]", "settle s [<=5]", "changes [<=3]",
                    "high P99 ms (healthy)", "vs fixed [10x]", "kept [>=0.9]", "of fixed",
                    "of R/4",
                    "healthy flaps [0]",
                    "overload /min [<=2]", "restore s [<=5]", "lost [0]", "dup",
                    "ctl CPU [<2%]"):
        grid.add_column(heading, justify="right")
    for o in outcomes:
        grid.add_row(o.policy, _fmt(o.detect_s, "{:.2f}"), _fmt(o.settle_s, "{:.2f}"),
                     str(o.slowdown_changes),
                     f"{o.high_p99_ms:.0f} ({o.high_p99_healthy_ms:.0f})",
                     _fmt(o.high_p99_vs_fixed, "{:.1f}x"),
                     _fmt(kept_of(o, best), "{:.2f}", "-"),
                     _fmt(o.kept, "{:.2f}", "1 (itself)" if o.policy == "fixed" else "-"),
                     f"{o.kept_of_stage:.2f}",
                     str(o.healthy_changes), f"{o.overload_changes_per_min:.1f}",
                     _fmt(o.restore_s, "{:.2f}"), str(o.lost), str(o.duplicates),
                     _fmt(o.controller_cpu_share, "{:.2%}"))
    return grid


def windows_table(outcomes: list[Outcome]) -> Table:
    """Each run's high-priority P99 in each `WINDOW_S` of the slowdown, and the embedded
    broker's CPU then: what builds up under a policy's or a cap's permits after the first
    seconds' backlog, and whether the broker's cost moved under them meanwhile."""
    grid = Table(title=f"per {WINDOW_S:g} s of the slowdown: the high-priority P99 ms (the "
                       "embedded broker's CPU, cores)")
    grid.add_column("policy")
    for n in range(max((len(o.high_p99_windows_ms) for o in outcomes), default=0)):
        grid.add_column(f"{n * WINDOW_S:g}-{(n + 1) * WINDOW_S:g} s", justify="right")
    for o in outcomes:
        cpu = o.broker_cpu_windows if len(o.broker_cpu_windows) == len(
            o.high_p99_windows_ms) else (None,) * len(o.high_p99_windows_ms)
        grid.add_row(o.policy, *(f"{p99:.0f}" + ("" if cores is None else f" ({cores:.2f})")
                                 for p99, cores in zip(o.high_p99_windows_ms, cpu,
                                                       strict=True)))
    return grid


def kept_of(o: Outcome, best: StaticCap | None) -> float | None:
    """The slowed pipeline's throughput in the slowdown over the best static cap's (of the
    same run, or of all the runs in `spread_table`), else over fixed permits' (None:
    neither ran)."""
    return o.slowed_rate / best.slowed_rate if best and best.slowed_rate else o.kept


def reachable_10x(bound: Outcome | None) -> bool:
    """Whether any policy could make the high-priority P99 10x lower than fixed's in a
    scenario: not when the bound (`revoked`: everything taken at once) did not."""
    return bound is None or bound.high_p99_vs_fixed is None or bound.high_p99_vs_fixed >= 10


def goals(o: Outcome, best: StaticCap | None, bound: Outcome | None = None
          ) -> dict[str, bool | None]:
    """Which of the goals in the table's headings a policy's run met (None: not judged in
    this run: the 10x without a fixed run, or where the bound shows no policy can reach
    it); kept as `kept_of` has it."""
    kept = kept_of(o, best)
    return {
        "detect": o.detect_s is not None and o.detect_s <= 1,
        "settle": o.settle_s is not None and o.settle_s <= 5 and o.slowdown_changes <= 3,
        "10x": None if o.high_p99_vs_fixed is None or not reachable_10x(bound)
        else o.high_p99_vs_fixed >= 10,
        "kept": None if kept is None else kept >= 0.9,
        "healthy flaps": o.healthy_changes == 0,
        "overload": o.overload_changes_per_min <= 2,
        "restore": o.restore_s is not None and o.restore_s <= 5,
        "lost": o.lost == 0,
        "CPU": None if o.controller_cpu_share is None else o.controller_cpu_share < 0.02}


def _spread(values: list[float | None], pattern: str) -> str:
    """Median (least-most) of the runs' values; a run without one ("-") is left out."""
    known = sorted(v for v in values if v is not None)
    if not known:
        return "-"
    middle, low, high = (_fmt(v, pattern) for v in (statistics.median(known), known[0],
                                                      known[-1]))
    return middle if low == high else f"{middle} ({low}-{high})"


def spread_table(outcomes: list[Outcome], rate: int, high_load: float) -> Table:
    """Each policy over the `--repeat` runs of a scenario, a column each: the median of each
    measure, with the least and the most in brackets, and in how many runs it met every goal
    (and which it missed in how many): one run decides a goal at its edge either way."""
    runs = sorted({o.repeat for o in outcomes})
    policies = list(dict.fromkeys(o.policy for o in outcomes))
    grid = Table(title=f"uee quota policies over {len(runs)} runs, the high-priority stage at "
                       f"{high_load:g} cores: median (least-most)",
                 caption="kept: over the best static cap over all the runs (a cap whose "
                         "every run kept the other in its quota section), else over fixed "
                         "permits'")
    grid.add_column("measure")
    for policy in policies:
        grid.add_column(policy, justify="right")
    # One best cap for all the runs: a cap that kept the other in in one run and not in
    # another is at the edge, and would make kept a draw between the runs.
    best = best_cap(outcomes, rate)
    mine = {policy: [o for o in outcomes if o.policy == policy] for policy in policies}

    def row(measure: str, value: Callable[[Outcome], float | None], pattern: str) -> None:
        grid.add_row(measure, *(_spread([value(o) for o in mine[p]], pattern)
                                for p in policies))

    row("detect s [<=1]", lambda o: o.detect_s, "{:.2f}")
    row("settle s [<=5]", lambda o: o.settle_s, "{:.1f}")
    row("changes [<=3]", lambda o: o.slowdown_changes, "{:.0f}")
    row("high P99 ms", lambda o: o.high_p99_ms, "{:.0f}")
    row("vs fixed [10x]", lambda o: o.high_p99_vs_fixed, "{:.1f}x")
    row("kept [>=0.9]", lambda o: kept_of(o, best), "{:.2f}")
    row("overload /min [<=2]", lambda o: o.overload_changes_per_min, "{:.1f}")
    row("restore s [<=5]", lambda o: o.restore_s, "{:.2f}")
    row("lost [0]", lambda o: o.lost, "{:.0f}")
    bound = {n: run_of([o for o in outcomes if o.repeat == n], "revoked") for n in runs}
    met = {p: [goals(o, best, bound[o.repeat]) for o in mine[p]] for p in policies}
    judged = [is_policy(p) for p in policies]
    # A run whose kept had nothing to be judged against (verdict_lines) did not meet it.
    grid.add_row("every goal met", *(
        f"{sum(False not in run.values() and run['kept'] is not None for run in met[p])} "
        f"of {len(met[p])}" if ok else "-" for p, ok in zip(policies, judged, strict=True)))
    grid.add_row("missed (runs)", *(_missed_runs(met[p]) if ok else "-"
                                     for p, ok in zip(policies, judged, strict=True)))
    return grid


def _missed_runs(runs: list[dict[str, bool | None]]) -> str:
    """Each goal missed, with in how many runs; then the runs whose kept had nothing to
    be judged against."""
    counts = Counter(goal for run in runs for goal, hit in run.items() if hit is False)
    parts = [f"{goal} {count}" for goal, count in counts.items()]
    unjudged = sum(run["kept"] is None for run in runs)
    if unjudged:
        parts.append(f"kept not judged {unjudged}")
    return ", ".join(parts)


def is_policy(name: str) -> bool:
    """A policy judged on the goals: not fixed permits, nor one of the oracle's runs."""
    return name != "fixed" and oracle_cap(name) is None


def run_of(scenario: list[Outcome], policy: str) -> Outcome | None:
    """A scenario's run of `policy` (fixed, the bound `revoked`, adaptive...), if it ran."""
    return next((o for o in scenario if o.policy == policy), None)


def verdict_lines(scenario: list[Outcome], rate: int) -> list[str]:
    """Each policy's goals in one run of a scenario: every one met, or those it missed;
    kept, when there was nothing to judge it against (no cap kept the other in its quota
    section, and no fixed run); and why the 10x is not judged where no policy could reach
    it."""
    best, bound = best_cap(scenario, rate), run_of(scenario, "revoked")
    lines = []
    for o in scenario:
        if is_policy(o.policy):
            judged = goals(o, best, bound)
            missed = [f"{goal} ({_measured(o, goal, best)})"
                      for goal, ok in judged.items() if ok is False]
            unjudged = judged["kept"] is None
            verdict = f"missed {', '.join(missed)}" if missed \
                else "every other goal met" if unjudged else "every goal met"
            if unjudged:
                verdict += "; kept not judged: no static cap kept the other in its quota section"
            lines.append(f"{o.policy}: {verdict}")
    if bound is not None and bound.high_p99_vs_fixed is not None and not reachable_10x(bound):
        lines.append(f"10x not judged: with every permit of the slowed pipeline revoked as "
                     f"the slowdown starts (revoked), the high-priority P99 is only "
                     f"{bound.high_p99_vs_fixed:.1f}x lower than fixed's here, and no policy "
                     "can take more")
    return lines


def _measured(o: Outcome, goal: str, best: StaticCap | None) -> str:
    """What a run measured against one of `goals`, precisely enough to see how far it
    missed (a kept of 0.895 shows as 0.90 in the table)."""
    kept = kept_of(o, best)
    return {
        "detect": _fmt(o.detect_s, "{:.2f} s", "none"),
        "settle": f"{_fmt(o.settle_s, '{:.2f} s', 'none')}, {o.slowdown_changes} changes",
        "10x": _fmt(o.high_p99_vs_fixed, "{:.1f}x"),
        "kept": _fmt(kept, "{:.3f}") + (f" of {best.policy}" if best else ""),
        "healthy flaps": str(o.healthy_changes),
        "overload": f"{o.overload_changes_per_min:.1f}/min",
        "restore": _fmt(o.restore_s, "{:.2f} s", "none"),
        "lost": str(o.lost),
        "CPU": _fmt(o.controller_cpu_share, "{:.2%}")}[goal]


def cap_search_start(scenario: list[Outcome], rate: int) -> int | None:
    """Where the search for the best static cap starts (`--caps` not given): at the cap
    whose records/s are nearest what the adaptive policy kept through the slowdown (a cap
    of N is N% of the input rate, set before it; adaptive's permits are shares of what its
    pipeline did when it was first cut, a rate that may already be falling). None where
    there is nothing to search: fixed permits' run kept the high-priority pipeline to its
    quota section (it is the best static one), or no fixed or capped adaptive run to go by."""
    fixed, adaptive = run_of(scenario, "fixed"), run_of(scenario, "adaptive")
    if fixed is None or keeps_quota(fixed, rate) or adaptive is None \
            or adaptive.final_permits >= SLOW_PERMITS:
        return None
    return max(1, round(adaptive.slowed_rate * SLOW_PERMITS / rate))


def best_cap_line(outcomes: list[Outcome], rate: int) -> str:
    best = best_cap(outcomes, rate)
    lag_ms = high_lag_ms(rate)
    # Caps that did more than the best and kept the other in in some runs, not in all.
    edge = [f"{cap.policy} in {sum(keeps_quota(o, rate) for o in cap.runs)} of "
            f"{len(cap.runs)} runs"
            for cap in static_caps(outcomes)
            if (best is None or cap.slowed_rate > best.slowed_rate)
            and any(keeps_quota(o, rate) for o in cap.runs)]
    unsteady = (f" Kept the other in its quota section in some runs, not all (not counted): "
                f"{', '.join(edge)}." if edge else "")
    if best is None:
        return (f"No cap kept the high-priority P99 within {HIGH_TARGET_MS} ms and within "
                f"{lag_ms:.0f} ms of its healthy P99 (its max_lag) in every run of it: try "
                f"lower ones.{unsteady}")
    kept = ", ".join(f"{o.policy} {o.slowed_rate / best.slowed_rate:.2f}"
                     for o in outcomes if oracle_cap(o.policy) is None
                     and o.policy != best.policy and best.slowed_rate > 0)
    name = f"fixed (all {SLOW_PERMITS} permits)" if best.policy == "fixed" else best.policy
    runs = " and ".join(f"{o.high_p99_ms:.0f} ms (healthy {o.high_p99_healthy_ms:.0f})"
                        for o in best.runs)
    over = f", the mean of {len(best.runs)} runs" if len(best.runs) > 1 else ""
    return (f"Best static cap: {name} ({best.slowed_rate:.0f} records/s{over}; high P99 "
            f"{runs}: within {HIGH_TARGET_MS} ms and its max_lag's {lag_ms:.0f} ms). The "
            f"slowed pipeline's throughput over it: {kept}.{unsteady}")


def run_scenario(args: argparse.Namespace, repeat: int, high_load: float,
                 folder: Path) -> list[Outcome]:
    """Every policy of `--policies` through one scenario, then the caps: those of `--caps`,
    or, without it, the search for the best static one (`cap_search_start`, `next_cap`)."""
    scenario: list[Outcome] = []

    def one(policy: str) -> Outcome:
        of_runs = f", run {repeat + 1} of {args.repeat}" if args.repeat > 1 else ""
        console.print(f"[bold]{policy}[/]{of_runs}: {args.phases[0]:g} s healthy, "
                      f"{args.phases[1]:g} s slowed, {args.phases[2]:g} s recovering, "
                      f"{args.rate} records/s to each topic, the high-priority stage at "
                      f"{high_load:g} cores")
        fixed = run_of(scenario, "fixed")
        # A new embedded broker for each policy: Tansu's in-memory storage spends more CPU
        # on every fetch as its topics grow (measured: 1.3-1.5 cores at 4,000 records/s
        # after 80 s), so a policy run after another would meet a slower broker than the
        # first.
        with broker(args.bootstrap) as (bootstrap, pid):
            run = run_policy(bootstrap, policy, args.rate, tuple(args.phases), folder,
                             high_load, pid, args.linger_ms)
            outcome = replace(analyse(bootstrap, run, args.rate, fixed), repeat=repeat)
            if oracle_cap(policy) is None and policy != "fixed":  # fixed publishes nothing
                keep_control(bootstrap, f"bq-{run['run_id']}", args.control)
        scenario.append(outcome)
        return outcome

    for policy in args.policies:
        one(policy)
    for n in args.caps or ():
        one(f"cap-{n}")
    cap = cap_search_start(scenario, args.rate) if args.caps is None else None
    if cap is not None:
        console.print(f"The high-priority pipeline left its quota section under fixed "
                      f"permits: searching the best static cap from {cap} (the nearest "
                      f"what adaptive kept through the slowdown), at most {MAX_CAP_RUNS} runs")
    tried: dict[int, list[bool]] = {}
    while cap is not None and sum(map(len, tried.values())) < MAX_CAP_RUNS:
        tried.setdefault(cap, []).append(keeps_quota(one(f"cap-{cap}"), args.rate))
        cap = next_cap(tried)
    return scenario


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.quota", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rate", type=int, default=1000, help="records/s to each topic")
    parser.add_argument("--phases", type=float, nargs=3, default=(60.0, 60.0, 20.0),
                        metavar=("HEALTHY", "SLOW", "RECOVER"), help="seconds of each phase")
    parser.add_argument("--policies", nargs="+", choices=POLICIES, default=list(POLICIES))
    parser.add_argument("--high-load", type=float, nargs="+", default=[0.0, 0.6],
                        help="the high-priority stage's CPU, in cores at the input rate: a "
                             "scenario each (0: it does almost nothing; 0.6: it needs more "
                             "of the interpreter than the slowed stage leaves it)")
    parser.add_argument("--caps", type=int, nargs="+", default=None, metavar="N",
                        help=f"a run each holding the slowed pipeline at N permits for the "
                             f"slowdown (of {SLOW_PERMITS}): the best that keeps the "
                             "high-priority pipeline to its quota section is what the slowed "
                             "stage can do beside it. Without it, where fixed permits let "
                             "the high-priority pipeline out of its section, the bench "
                             "searches for that cap from adaptive's permits, one up or down "
                             "at a time, and runs the best it finds twice (at most "
                             f"{MAX_CAP_RUNS} runs). A cap counts where every run of it "
                             "kept the other in")
    parser.add_argument("--repeat", type=int, default=1, metavar="N",
                        help="run each scenario N times, then print each policy's spread "
                             "over the runs (a goal at its edge is decided by chance in one)")
    parser.add_argument("--linger-ms", type=int, default=LINGER_MS, metavar="MS",
                        help="how long the producer gathers a topic's records into a batch "
                             f"(default {LINGER_MS}): the embedded broker's fetches cost more "
                             "with every batch ever written (README, Brokers); at 20 ms its "
                             "cost doubled through a slowdown, at 100 it stays flat")
    parser.add_argument("--bootstrap", help="an existing Kafka (default: embedded broker)")
    parser.add_argument("--json", default=str(REPO / "bench" / "last-quota-run.json"))
    parser.add_argument("--control", type=Path, default=None, metavar="FILE",
                        help="where each policy run's quota samples and decisions go, as "
                             "JSON lines for python -m bench.quota_replay (default: --json's "
                             "file with the suffix .control.jsonl)")
    args = parser.parse_args(argv)
    # A SIGTERM (`kill`, a CI timeout) stops the bench as Ctrl-C does, through the `finally`
    # that stops each run's `uee run` and the block that stops its embedded broker: by
    # default Python ends at once, and the worker went on running, orphaned.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    args.control = args.control or Path(args.json).with_suffix(".control.jsonl")
    args.control.write_text("")  # this run's, not appended to the last one's
    if any(not 0 < n <= SLOW_PERMITS for n in args.caps or ()):
        parser.error(f"--caps: each N is a number of permits from 1 to {SLOW_PERMITS}")
    if args.linger_ms < 0:
        parser.error("--linger-ms: MS is a number of milliseconds, at least 0")
    if args.repeat < 1:
        parser.error("--repeat: N is a number of runs, at least 1")
    outcomes: list[Outcome] = []
    with tempfile.TemporaryDirectory() as folder:
        for repeat, high_load in itertools.product(range(args.repeat), args.high_load):
            scenario = run_scenario(args, repeat, high_load, Path(folder))
            console.print(table(scenario, high_load, args.rate))
            console.print(windows_table(scenario))
            if best_cap(scenario, args.rate) or any(oracle_cap(o.policy) for o in scenario):
                console.print(best_cap_line(scenario, args.rate))
            for line in verdict_lines(scenario, args.rate):
                console.print(line)
            outcomes.extend(scenario)
    if args.repeat > 1:
        for high_load in args.high_load:
            console.print(spread_table([o for o in outcomes if o.high_load == high_load],
                                       args.rate, high_load))
    Path(args.json).write_text(json.dumps([asdict(o) for o in outcomes], indent=2) + "\n")
    return 1 if any(o.lost for o in outcomes) else 0


if __name__ == "__main__":
    try:
        raise SystemExit(main())
    except KeyboardInterrupt:  # Ctrl-C or SIGTERM, once the run's worker and broker stopped
        console.print("Stopped, with the run in progress and its worker (the tables and --json "
                      "come only at the end).")
        raise SystemExit(130) from None
