"""Replay the quota samples of `make bench-quota`'s runs through a policy, offline.

`python -m bench.quota` keeps every run's quota samples and decisions from the control
topic as JSON lines (its `--control` file). Fed to a policy in time order as the controller
sees them (the newest sample of each pipeline and worker, decided on as each one comes),
they make the decisions again: the policy that ran makes the same ones, and a changed
policy shows where it would have decided otherwise. That holds up to the first decision
that differs, and no further: from then on the run's samples are those of the recorded
decisions' permits, not the replayed ones'.

    python -m bench.quota_replay bench/last-quota-run.control.jsonl
    python -m bench.quota_replay FILE --deployment adaptive --policy step
"""

from __future__ import annotations

import argparse
import datetime
import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from rich.console import Console

from uee.streams.control import QuotaSample, decode
from uee.streams.names import CONTROL_TOPIC
from uee.streams.permits import QuotaUpdate
from uee.streams.quota import POLICIES
from uee.streams.topics import TopicNotFoundError, read_all

console = Console(highlight=False, soft_wrap=True)

# A replayed decision is made this long after the sample it was made on: the controller's
# timer looks for new samples every tenth of an interval (streams.quota.TICK).
DECIDED_AFTER_S = 0.01


@dataclass
class Recorded:
    """One deployment's samples and decisions (a run of the bench), each in time order."""

    samples: list[QuotaSample] = field(default_factory=list)
    updates: list[QuotaUpdate] = field(default_factory=list)


@dataclass(frozen=True)
class Decision:
    at: float  # epoch seconds
    pipeline: str
    before: int
    after: int
    reason: str


def control_lines(messages: Iterable[QuotaSample | QuotaUpdate]) -> list[str]:
    """The JSON lines `load` reads back: a sample as its model, a decision as its log
    line's (`QuotaUpdate.as_json`), marked `"kind": "update"`."""
    lines = []
    for message in messages:
        if isinstance(message, QuotaSample):
            lines.append(message.model_dump_json())
        else:
            lines.append(json.dumps({"kind": "update", **message.as_json()}))
    return lines


def keep_control(bootstrap: str, deployment: str, path: Path, timeout: float = 60.0) -> int:
    """Append `deployment`'s samples and decisions on the control topic to `path`; how many
    (none when the topic was never made: fixed permits publish nothing)."""
    try:
        records = read_all(bootstrap, CONTROL_TOPIC, timeout)
    except TopicNotFoundError:
        records = []
    mine = [m for m in (decode(r.key, r.value) for r in records)
            if isinstance(m, QuotaSample | QuotaUpdate) and m.deployment == deployment]
    with path.open("a") as out:
        out.writelines(line + "\n" for line in control_lines(mine))
    return len(mine)


def load(path: Path) -> dict[str, Recorded]:
    """Each deployment's samples and decisions in `path`."""
    runs: dict[str, Recorded] = {}
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            data = json.loads(line)
            if data.get("kind") == "update":
                data.pop("kind")
                data["at"] = datetime.datetime.fromisoformat(data["at"])
                update = QuotaUpdate(**data)
                runs.setdefault(update.deployment, Recorded()).updates.append(update)
            else:
                sample = QuotaSample.model_validate(data)
                runs.setdefault(sample.deployment, Recorded()).samples.append(sample)
        except (ValueError, TypeError, KeyError, AttributeError) as error:
            raise SystemExit(f"{path}:{number}: not a quota sample or decision ({error})") \
                from None
    for run in runs.values():
        run.samples.sort(key=lambda s: s.at)
        run.updates.sort(key=lambda u: u.at)
    return runs


def replay(policy_name: str, samples: list[QuotaSample]) -> list[Decision]:
    """The decisions a fresh `policy_name` policy makes on `samples` (in time order), each
    applied before the next sample, as the controller's are."""
    policy = POLICIES[policy_name]()
    newest: dict[tuple[str, str], QuotaSample] = {}
    allocated: dict[str, int] = {}
    decisions = []
    for sample in samples:
        newest[(sample.pipeline, sample.worker)] = sample.model_copy(
            update={"permits": allocated.get(sample.pipeline, sample.permits)})
        at = sample.at.timestamp() + DECIDED_AFTER_S
        for pipeline, before, after, reason, _ in policy.decide(
                list(newest.values()), allocated, at=at):
            allocated[pipeline] = after
            decisions.append(Decision(at, pipeline, before, after, reason))
    return decisions


def recorded(run: Recorded) -> list[Decision]:
    return [Decision(u.at.timestamp(), u.pipeline, u.permits_before, u.permits_after,
                     u.reason) for u in run.updates]


def first_difference(a: list[Decision], b: list[Decision]) -> int | None:
    """The index of the first decision (pipeline, before, after) where `a` and `b` part;
    None when they are the same."""
    for index, (x, y) in enumerate(zip(a, b, strict=False)):
        if (x.pipeline, x.before, x.after) != (y.pipeline, y.before, y.after):
            return index
    return None if len(a) == len(b) else min(len(a), len(b))


def _started(run: Recorded) -> float:
    return min([s.at.timestamp() for s in run.samples[:1]] + [u.at.timestamp()
                                                              for u in run.updates[:1]])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.quota_replay", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("file", type=Path, help="a --control file of python -m bench.quota")
    parser.add_argument("--deployment", default="",
                        help="only the runs whose deployment contains this (bq-POLICY-ID)")
    parser.add_argument("--policy", choices=sorted(set(POLICIES) - {"fixed"}),
                        default=None, help="the policy to replay (default: the one each "
                                           "run's deployment is named after)")
    args = parser.parse_args(argv)
    if not args.file.is_file():
        parser.error(f"{args.file}: no such file")
    runs = {name: run for name, run in load(args.file).items() if args.deployment in name}
    if not runs:
        parser.error(f"{args.file}: no run's deployment contains {args.deployment!r}")
    for name, run in sorted(runs.items(), key=lambda item: _started(item[1])):
        policy = args.policy or next((p for p in POLICIES if f"-{p}-" in f"{name}-"), None)
        if policy is None or policy == "fixed" or not run.samples:
            why = ("its name does not say which policy made its decisions (--policy)"
                   if policy is None else "fixed permits decide nothing" if run.samples
                   else "it has no samples")
            console.print(f"[bold]{name}[/]: {len(run.samples)} samples; not replayed: {why}")
            continue
        # Times from the first decision: the slowdown's detection in the bench.
        start = (run.updates[0].at if run.updates else run.samples[0].at).timestamp()
        then, now = recorded(run), replay(policy, run.samples)
        differs = first_difference(then, now)
        console.print(f"[bold]{name}[/]: {len(run.samples)} samples; replayed by {policy}: "
                      + ("the same decisions" if differs is None
                         else f"differs from decision {differs + 1} on (later ones are "
                              "not a measure)"))
        for label, decisions in (("recorded", then), ("replayed", now)):
            console.print(f"  {label}:")
            for index, d in enumerate(decisions):
                mark = "*" if differs is not None and index >= differs else " "
                console.print(f"   {mark}{d.at - start:8.2f} s  {d.pipeline}  "
                              f"{d.before} -> {d.after}  {d.reason[:90]}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
