"""The benchmark harness runs every contender on every case and checks each output exactly
(speed is not checked here: a CI machine's speed says nothing)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bench.__main__ import AVRO_CONTENDERS, JSON_CONTENDERS
from bench.quota_replay import load
from tests.conftest import REPO, wait_until

pytestmark = pytest.mark.e2e


def test_bench_runs_all_contenders_and_checks_their_output(kafka: str, tmp_path: Path) -> None:
    results_path = tmp_path / "results.json"
    done = subprocess.run(
        [sys.executable, "-m", "bench", "--records", "2000", "--scale", "2", "--bootstrap",
         kafka, "--json", str(results_path)],
        capture_output=True, text=True, timeout=900, cwd=REPO,
        env={**os.environ, "COLUMNS": "200"},
    )
    assert done.returncode == 0, done.stdout + done.stderr
    results = json.loads(results_path.read_text())["results"]
    ran = {(r["case"], r["contender"]) for r in results}
    assert ran == {*(("json", c) for c in JSON_CONTENDERS),
                   *(("avro", c) for c in AVRO_CONTENDERS),
                   ("shared", "uee"), ("shared", "uee-alone"), ("json-scale", "uee"),
                   ("json-scale", "uee-1x")}
    for result in results:
        assert result["output_ok"], result
        assert result["startup_s"] is not None and result["startup_s"] > 0, result
    assert "exact" in done.stdout and "WRONG" not in done.stdout


def test_the_quota_bench_runs_every_policy_and_loses_nothing(kafka: str, tmp_path: Path
                                                             ) -> None:
    """`make bench-quota`, its phases shortened: each policy runs the scenario through, the
    table and the timelines come out, nothing is lost; an adaptive or step policy decides
    during the slowdown (the numbers themselves are not checked: a CI machine's speed says
    nothing)."""
    results_path = tmp_path / "quota.json"
    done = subprocess.run(
        [sys.executable, "-m", "bench.quota", "--phases", "3", "8", "3", "--rate", "400",
         "--bootstrap", kafka, "--json", str(results_path)],
        capture_output=True, text=True, timeout=600, cwd=REPO,
        env={**os.environ, "COLUMNS": "200"},
    )
    assert done.returncode == 0, done.stdout + done.stderr
    outcomes = {o["policy"]: o for o in json.loads(results_path.read_text())}
    # Where fixed permits let the other out of its quota section (a loaded CI machine), the
    # bench goes on to search for the best static cap: those runs are `cap-N`.
    policies = {"fixed", "step", "adaptive", "revoked"}
    assert policies <= set(outcomes), set(outcomes)
    assert all(name.startswith("cap-") for name in set(outcomes) - policies), set(outcomes)
    assert all(o["lost"] == 0 for o in outcomes.values()), outcomes
    assert outcomes["fixed"]["decisions"] == 0
    for policy in ("step", "adaptive"):
        assert outcomes[policy]["detect_s"] is not None, outcomes[policy]
    # The bound's oracle revoked everything: its slowed pipeline read nothing in the slowdown
    # (but what it held when the revocation came), then caught up: nothing lost (above).
    assert outcomes["revoked"]["decisions"] == 0
    assert outcomes["revoked"]["slowed_rate"] < outcomes["fixed"]["slowed_rate"] / 2, outcomes
    assert "uee quota policies" in done.stdout
    # Each policy run's samples and decisions are kept for `python -m bench.quota_replay`:
    # the decisions the bench counted, from the control topic.
    kept = load(results_path.with_suffix(".control.jsonl"))
    runs = json.loads(results_path.read_text())  # a run of each policy per scenario
    for policy in ("step", "adaptive"):
        mine = [run for name, run in kept.items() if name.startswith(f"bq-{policy}-")]
        assert all(run.samples for run in mine), policy
        assert sorted(len(run.updates) for run in mine) == \
            sorted(o["decisions"] for o in runs if o["policy"] == policy), policy


def children(pid: int) -> set[int]:
    """The processes `pid` started, from Linux's /proc (empty once it is gone)."""
    try:
        return {int(child) for child in
                Path(f"/proc/{pid}/task/{pid}/children").read_text().split()}
    except OSError:
        return set()


def test_a_sigterm_stops_the_quota_bench_and_the_worker_it_started(kafka: str,
                                                                   tmp_path: Path) -> None:
    """`kill` (or a CI timeout) on the bench while a policy runs: the bench stops its `uee
    run` as on Ctrl-C, and exits; the worker is not left running without it."""
    bench = subprocess.Popen(
        [sys.executable, "-m", "bench.quota", "--phases", "120", "5", "3", "--policies",
         "fixed", "--high-load", "0", "--bootstrap", kafka, "--json",
         str(tmp_path / "quota.json")],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=REPO)
    try:
        wait_until(lambda: bool(children(bench.pid)) or bench.poll() is not None, 120,
                   "the bench to start its `uee run`")
        assert bench.poll() is None, bench.communicate()[0]
        workers = children(bench.pid)
        bench.send_signal(signal.SIGTERM)
        stopping = time.monotonic()
        out, _ = bench.communicate(timeout=90)
        assert bench.returncode == 130, out
        # The worker stops on the bench's SIGINT; the bench kills it only after 60 s.
        assert time.monotonic() - stopping < 45, f"the worker ignored its SIGINT: {out}"
        assert "Stopped" in out and "Traceback" not in out, out
        for worker in workers:
            assert not Path(f"/proc/{worker}").exists(), f"uee run {worker} still runs"
    finally:
        if bench.poll() is None:
            bench.kill()
