"""The bench's replay of recorded quota samples (`python -m bench.quota_replay`): what the
`--control` file keeps of a run is all its policy decided on, so the policy that ran makes
the same decisions again from it, run by run; another policy's first different decision is
found; a run whose deployment does not name its policy is replayed only with `--policy`;
and a line that is not a sample or a decision is an error that names it."""

from __future__ import annotations

import dataclasses
import datetime
from pathlib import Path

import pytest

from bench.quota_replay import control_lines, first_difference, load, main, recorded, replay
from tests.unit.test_quota_policy import sample
from uee.streams.control import QuotaSample
from uee.streams.permits import QuotaUpdate
from uee.streams.quota import AdaptivePolicy, updates

T0 = 1_000_000.123456  # epoch seconds, to the microsecond, as samples are stamped


def live_run(deployment: str) -> list[QuotaSample | QuotaUpdate]:
    """A run as the controller makes it: a slowed pipeline over its target, then a
    high-priority one lagging beside it, then both healthy; each sample decided on as it
    comes, with the newest of each pipeline, and each decision applied."""
    policy = AdaptivePolicy()
    newest: dict[str, QuotaSample] = {}
    allocated: dict[str, int] = {}
    messages: list[QuotaSample | QuotaUpdate] = []
    for number in range(60):
        at = T0 + 0.5 * number + 0.001 * (number % 7)  # not on a grid
        slow = 4 <= number < 40
        lag = 300 + 40 * (number - 10) if 10 <= number < 30 else 0
        for pipeline, fields in (
                ("high", {"priority": 10, "max_lag": 100, "lag": lag, "full": 4}),
                ("low", {"p99_ms": 700.0 if slow and number < 12 else 20.0,
                         "batch_records": 100.0, "full_rate": 1000.0,
                         "record_ms": 4.0 if slow else 0.05, "batch_record_ms": 4.0,
                         "throughput": 240.0 if slow else 990.0,
                         "work": 1.0 if slow else 0.1})):
            at += 0.05
            arrived = sample(pipeline, fields.pop("p99_ms", 5.0), at=at,
                             deployment=deployment, max_p99_ms=250, **{"full": 20, **fields})
            newest[pipeline] = arrived.model_copy(
                update={"permits": allocated.get(pipeline, arrived.full)})
            messages.append(arrived)
            changes = policy.decide(list(newest.values()), allocated, at=at + 0.01)
            decided = datetime.datetime.fromtimestamp(round(at + 0.01, 3), datetime.UTC)
            for update in updates(deployment, 1, changes):
                allocated[update.pipeline] = update.permits_after
                messages.append(dataclasses.replace(update, at=decided))  # stamped to the ms
    return messages


def test_the_policy_that_ran_makes_its_decisions_again_from_the_file(tmp_path: Path) -> None:
    path = tmp_path / "control.jsonl"
    first, second = live_run("bq-adaptive-aaaaaa"), live_run("bq-adaptive-bbbbbb")
    lines = control_lines(first + second)
    path.write_text("\n".join(lines[::-1]) + "\n")  # in any order: by time when read
    runs = load(path)
    assert set(runs) == {"bq-adaptive-aaaaaa", "bq-adaptive-bbbbbb"}
    run = runs["bq-adaptive-aaaaaa"]
    made = recorded(run)
    # The run cut for the slowed stage, then for the other's lag, and gave permits back.
    assert [(d.pipeline, d.before > d.after) for d in made][:2] == [("low", True)] * 2
    assert any(d.after > d.before for d in made)
    again = replay("adaptive", run.samples)
    assert [(d.pipeline, d.before, d.after) for d in again] == \
        [(d.pipeline, d.before, d.after) for d in made]
    assert first_difference(made, again) is None
    stepped = replay("step", run.samples)  # another policy: a 20% step, not the first cap
    assert first_difference(made, stepped) == 0


def test_the_command_says_which_decision_differs_and_names_a_bad_line(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "control.jsonl"
    path.write_text("\n".join(control_lines(live_run("bq-adaptive-aaaaaa"))) + "\n")
    assert main([str(path)]) == 0
    assert "replayed by adaptive: the same decisions" in capsys.readouterr().out
    assert main([str(path), "--policy", "step"]) == 0
    assert "replayed by step: differs from decision 1 on" in capsys.readouterr().out
    path.write_text(path.read_text().replace("bq-adaptive-aaaaaa", "orders"))
    assert main([str(path)]) == 0  # a deployment of its own: which policy is not known
    assert "orders: 120 samples; not replayed" in capsys.readouterr().out
    assert main([str(path), "--policy", "adaptive"]) == 0
    assert "replayed by adaptive: the same decisions" in capsys.readouterr().out
    for bad in ('{"kind": "sample", "pipeline": 3}', "[1, 2]", "{"):
        with path.open("a") as out:
            out.write(bad + "\n")
        lines = len(path.read_text().splitlines())
        with pytest.raises(SystemExit, match=f"control.jsonl:{lines}: not a quota sample"):
            main([str(path)])
        path.write_text("\n".join(path.read_text().splitlines()[:-1]) + "\n")
