"""What `make bench-quota` reports as the time to settle, and as the best static cap."""

from __future__ import annotations

import os
import time
from dataclasses import replace

from rich.console import Console

from bench.quota import (
    HIGH_TARGET_MS,
    Outcome,
    StaticCap,
    best_cap,
    best_cap_line,
    cap_search_start,
    cores_per_window,
    cpu_seconds,
    goals,
    next_cap,
    oracle_cap,
    settle_s,
    slowdown_windows,
    spread_table,
    table,
    verdict_lines,
    windows_table,
)


def test_settled_when_the_permits_enter_the_band_of_their_final_value_for_good() -> None:
    # Cut to 25, then 22 and 24 later: within 10% of 24 from the first cut on; the two
    # later changes count as changes, not as time to settle.
    assert settle_s(100, [(0.46, 25), (29.2, 22), (31.1, 24)]) == 0.46
    # Out of the band in between: settled at the change that ends the last span outside.
    assert settle_s(100, [(0.5, 22), (7.7, 17), (10.6, 18), (12.5, 22), (14.1, 19),
                          (23.4, 20)]) == 10.6
    assert settle_s(100, [(0.5, 50), (1.5, 80)]) == 1.5
    assert settle_s(100, []) is None
    # Already within the band when the slowdown began: nothing to settle.
    assert settle_s(24, [(3.0, 23)]) == 0.0


def test_the_slowdown_s_windows_are_10_s_each_and_the_last_takes_what_is_left() -> None:
    assert slowdown_windows(100.0, 160.2) == [(100.0, 110.0), (110.0, 120.0), (120.0, 130.0),
                                      (130.0, 140.0), (140.0, 150.0), (150.0, 160.2)]
    assert slowdown_windows(0.0, 8.0) == [(0.0, 8.0)]
    assert slowdown_windows(0.0, 25.02, 2) == [(0.0, 10.0), (10.0, 25.02)]


def outcome(policy: str, slowed_rate: float, high_p99_ms: float) -> Outcome:
    return Outcome(policy, None, None, 0, high_p99_ms, 50.0, None, slowed_rate, None,
                   slowed_rate / 250, 0, 0.0, None, 0, 0, None, 0, ())


def test_the_oracle_holds_revoked_at_zero_and_cap_runs_at_their_permits() -> None:
    assert [oracle_cap(p) for p in ("revoked", "cap-12", "fixed", "adaptive")] == [
        0, 12, None, None]


def test_the_best_cap_does_most_while_the_high_priority_pipeline_keeps_to_its_quota() -> None:
    """At 1,000 records/s its max_lag (250 records) is 250 ms of input: a cap whose high
    P99 in the slowdown is more than that over its healthy one (50 ms) let it lag too much,
    however far under its 1,000 ms target."""
    runs = [outcome("fixed", 210, 9000), outcome("adaptive", 100, 500),
            outcome("cap-10", 95, 120), outcome("cap-12", 125, 300),
            outcome("cap-14", 140, 457), outcome("cap-16", 150, HIGH_TARGET_MS + 1)]
    best = best_cap(runs, 1000)
    assert best is not None and best.policy == "cap-12"
    line = best_cap_line(runs, 1000)
    assert "adaptive 0.80" in line and "fixed 1.68" in line, line
    assert best_cap([outcome("cap-16", 150, 4000)], 1000) is None
    assert "try lower ones" in best_cap_line([outcome("cap-16", 150, 4000)], 1000)


def test_where_the_other_needs_no_protection_fixed_permits_are_the_best_static_cap() -> None:
    """The high-priority stage needs no CPU: under fixed permits it keeps to its quota
    section, so what the slowed stage can do is what it does never throttled."""
    runs = [outcome("fixed", 240, 45), outcome("adaptive", 228, 64), outcome("cap-12", 125, 40)]
    best = best_cap(runs, 1000)
    assert best is not None and best.policy == "fixed"
    assert "fixed (all 100 permits)" in best_cap_line(runs, 1000)
    assert "adaptive 0.95" in best_cap_line(runs, 1000)
    assert cap_search_start(runs, 1000) is None


def test_the_cap_search_starts_at_what_adaptive_kept_and_confirms_the_edge() -> None:
    """Fixed permits let the other out of its quota section: the search starts at the cap
    nearest what adaptive kept through the slowdown (137 records/s: 14% of 1,000), goes up
    while each cap keeps the other in, down while none has, and when one that did sits
    right under one that did not, runs it again: the best is a cap whose every run did."""
    runs = [outcome("fixed", 210, 9000), replace(outcome("adaptive", 137, 500), final_permits=18)]
    assert cap_search_start(runs, 1000) == 14
    assert cap_search_start([runs[1]], 1000) is None  # no fixed run: nothing to compare
    assert cap_search_start([runs[0]], 1000) is None  # no adaptive run to start from
    assert next_cap({14: [True]}) == 15
    assert next_cap({14: [True], 15: [True]}) == 16
    assert next_cap({14: [True], 15: [True], 16: [False]}) == 15  # confirm it
    assert next_cap({14: [True], 15: [True, True], 16: [False]}) is None
    # The second run of 15 let the other out: 14 is the best left, and runs again.
    assert next_cap({14: [True], 15: [True, False], 16: [False]}) == 14
    assert next_cap({14: [False]}) == 13
    assert next_cap({14: [False], 13: [True]}) == 13
    assert next_cap({14: [False], 13: [True, False]}) == 12
    assert next_cap({1: [False]}) is None
    assert next_cap({99: [True]}) == 99
    assert next_cap({99: [True, True]}) is None


def test_a_cap_counts_only_where_every_run_of_it_kept_the_other_in() -> None:
    """cap-16 kept the other in its quota section in one run and let it out in another (at
    the edge, by chance): the best is cap-15, whose two runs both kept it in, at their
    mean; the line names cap-16 as not counted."""
    runs = [outcome("fixed", 210, 9000), outcome("adaptive", 151, 500),
            outcome("cap-15", 149, 230), outcome("cap-16", 160, 248),
            outcome("cap-16", 159, 631), outcome("cap-15", 151, 217)]
    best = best_cap(runs, 1000)
    assert best is not None and best.policy == "cap-15" and best.slowed_rate == 150
    assert [o.high_p99_ms for o in best.runs] == [230, 217]
    line = best_cap_line(runs, 1000)
    assert "cap-15 (150 records/s, the mean of 2 runs" in line, line
    assert "adaptive 1.01" in line and "cap-16" not in line.split("not counted")[0], line
    assert "not counted): cap-16 in 1 of 2 runs" in line, line
    alone = best_cap_line(runs[-3:-1], 1000)
    assert "try lower ones" in alone and "cap-16 in 1 of 2 runs" in alone, alone


def test_each_policy_s_verdict_and_a_10x_no_policy_can_reach_is_not_judged() -> None:
    """The bound (revoked) makes the other's P99 only 1.1x lower than fixed's: the 10x is
    not judged, and the line says why; everything else is."""
    fixed = outcome("fixed", 240, 45)
    adaptive = replace(outcome("adaptive", 228, 45), detect_s=0.45, settle_s=0.45,
                       slowdown_changes=1, high_p99_vs_fixed=1.0, kept=0.95, restore_s=1.8,
                       controller_cpu_share=0.0003)
    step = replace(adaptive, policy="step", settle_s=59.2, slowdown_changes=53,
                   overload_changes_per_min=48.0, kept=0.77, slowed_rate=185)
    bound = replace(outcome("revoked", 0, 40), high_p99_vs_fixed=1.1)
    lines = verdict_lines([fixed, step, adaptive, bound], 1000)
    assert lines[0] == ("step: missed settle (59.20 s, 53 changes), kept (0.771 of fixed), "
                        "overload (48.0/min)"), lines
    assert lines[1] == "adaptive: every goal met", lines
    assert "10x not judged" in lines[2] and "1.1x" in lines[2], lines
    assert goals(adaptive, StaticCap("fixed", (fixed,)),
                 replace(bound, high_p99_vs_fixed=127.0))["10x"] is False
    # No fixed run, and the only cap given let the other out of its quota section: kept has
    # nothing to be judged against, and the line says so rather than "every goal met".
    over_the_line = replace(outcome("cap-16", 160, 700), high_p99_healthy_ms=177.0)
    alone = replace(adaptive, kept=None, high_p99_vs_fixed=None)
    assert verdict_lines([alone, over_the_line], 1000) == [
        "adaptive: every other goal met; kept not judged: no static cap kept the other in its "
        "quota section"]


def test_the_table_gives_kept_over_the_best_static_cap_and_over_fixed_permits() -> None:
    """The other needs the CPU: fixed permits let it out of its quota section, cap-14 kept
    it in, so kept is over cap-14 (140 records/s), and over fixed's beside it."""
    fixed = replace(outcome("fixed", 210, 9000), kept=None)
    adaptive = replace(outcome("adaptive", 133, 500), kept=133 / 210)
    console = Console(record=True, width=200)
    console.print(table([fixed, adaptive, outcome("cap-14", 140, 250)], 0.6, 1000))
    rows = {line.split("│")[1].strip(): [cell.strip() for cell in line.split("│")[2:-1]]
            for line in console.export_text().splitlines() if "│" in line}
    assert rows["adaptive"][5:7] == ["0.95", "0.63"], rows
    assert rows["fixed"][5:7] == ["1.50", "1 (itself)"], rows


def test_repeated_runs_report_each_policy_s_spread_and_the_goals_it_met_in_how_many() -> None:
    """Two runs of a scenario: in the first the adaptive policy meets every goal; in the
    second it settles late after 4 changes, and changes twice in 30 s of steady overload.
    Each measure's median comes with the least and the most; kept is over the best cap of
    all the runs."""
    good = replace(outcome("adaptive", 130, 500), detect_s=0.4, settle_s=2.4,
                   slowdown_changes=2, high_p99_vs_fixed=20.0, restore_s=2.4,
                   controller_cpu_share=0.001)
    late = replace(good, settle_s=46.9, slowdown_changes=4, overload_changes_per_min=4.0,
                   slowed_rate=140, repeat=1)
    cap = outcome("cap-12", 120, 100)
    assert goals(good, StaticCap("cap-12", (cap,))) == {
        "detect": True, "settle": True, "10x": True, "kept": True, "healthy flaps": True,
        "overload": True, "restore": True, "lost": True, "CPU": True}
    assert [goal for goal, ok in goals(late, StaticCap("cap-12", (cap,))).items()
            if not ok] == ["settle", "overload"]
    assert goals(replace(good, high_p99_vs_fixed=None), None)["10x"] is None
    console = Console(record=True, width=140)
    console.print(spread_table([good, cap, late, replace(cap, repeat=1)], 1000, 0.6))
    text = console.export_text()
    assert "over 2 runs" in text, text
    rows = {line.split("│")[1].strip(): line for line in text.splitlines() if "│" in line}
    assert "24.6 (2.4-46.9)" in rows["settle s [<=5]"], text
    assert "1.12 (1.08-1.17)" in rows["kept [>=0.9]"], text
    assert "1 of 2" in rows["every goal met"], text
    assert "settle 1, overload 1" in rows["missed (runs)"], text
    # Runs with nothing to judge kept against (no fixed run, no cap that kept the other in)
    # are not counted as meeting every goal.
    console = Console(record=True, width=140)
    over = outcome("cap-16", 160, 700)
    console.print(spread_table([good, over, replace(good, repeat=1), replace(over, repeat=1)],
                               1000, 0.6))
    text = console.export_text()
    rows = {line.split("│")[1].strip(): line for line in text.splitlines() if "│" in line}
    assert "0 of 2" in rows["every goal met"], text
    assert "kept not judged 2" in rows["missed (runs)"], text
    # A cap that kept the other in in one run and not in the other is not the best of
    # either: both runs' kept are over cap-12 (130 / 120), not the first over cap-14's 140.
    console = Console(record=True, width=140)
    edge = outcome("cap-14", 140, 250)
    console.print(spread_table([good, cap, edge, replace(good, repeat=1),
                                replace(cap, repeat=1), replace(edge, high_p99_ms=700,
                                                                repeat=1)], 1000, 0.6))
    text = console.export_text()
    rows = {line.split("│")[1].strip(): line for line in text.splitlines() if "│" in line}
    assert "1.08 │" in rows["kept [>=0.9]"] and "0.93" not in rows["kept [>=0.9]"], text


def test_the_broker_s_cpu_is_read_per_window_from_its_process() -> None:
    """Its CPU seconds from /proc (this process's, after a burn of its own), then the
    cores used between readings in a row; nothing when a reading could not be made (no
    embedded broker, or a process gone)."""
    before = cpu_seconds(os.getpid())
    deadline = time.process_time() + 0.2
    while time.process_time() < deadline:
        pass
    after = cpu_seconds(os.getpid())
    # /proc counts in clock ticks (10 ms): half the burn, whatever the rounding.
    assert before is not None and after is not None and after - before >= 0.1
    assert cpu_seconds(None) is None
    assert cores_per_window([(0.0, 10.0), (10.0, 12.0), (20.0, 17.0)]) == (0.2, 0.5)
    assert cores_per_window([(0.0, None), (10.0, 12.0)]) == ()


def test_the_windows_table_shows_a_cap_s_p99_rising_with_the_broker_s_cpu() -> None:
    """The cap held 14 permits throughout; the high-priority P99 rose from the third window
    as the embedded broker's CPU did (seen on Tansu). Without CPU readings (a broker given
    with --bootstrap), the P99 alone."""
    cap = replace(outcome("cap-14", 140, 400), high_p99_windows_ms=(264, 137, 196, 365),
                  broker_cpu_windows=(0.2, 0.24, 0.29, 0.34))
    apache = replace(outcome("cap-13", 130, 90), high_p99_windows_ms=(250, 80, 52, 79))
    console = Console(record=True, width=140)
    console.print(windows_table([cap, apache]))
    text = console.export_text()
    rows = {line.split("│")[1].strip(): line for line in text.splitlines() if "│" in line}
    assert "30-40 s" in text, text
    assert [cell.strip() for cell in rows["cap-14"].split("│")[2:-1]] == [
        "264 (0.20)", "137 (0.24)", "196 (0.29)", "365 (0.34)"], text
    assert [cell.strip() for cell in rows["cap-13"].split("│")[2:-1]] == [
        "250", "80", "52", "79"], text
