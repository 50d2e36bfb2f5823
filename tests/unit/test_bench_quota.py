"""What `make bench-quota` reports as the time to settle, and as the best static cap."""

from __future__ import annotations

from bench.quota import HIGH_TARGET_MS, Outcome, best_cap, best_cap_line, oracle_cap, settle_s


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
