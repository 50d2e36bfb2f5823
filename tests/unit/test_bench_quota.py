"""What `make bench-quota` reports as the time to settle."""

from __future__ import annotations

from bench.quota import settle_s


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
