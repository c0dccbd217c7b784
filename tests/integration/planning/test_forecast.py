"""The plan's arithmetic (planning.forecast), by hand: no database."""

from __future__ import annotations

import pytest

from planning import forecast


def test_short_histories_get_a_flat_exponentially_smoothed_forecast():
    # level: 10 → 0.3·20 + 0.7·10 = 13 → 0.3·10 + 0.7·13 = 12.1
    method, curve = forecast.forecast_series([10, 20, 10], 4)
    assert method == "exponential_smoothing"
    assert curve == pytest.approx([12.1] * 4)
    assert forecast.exponential_smoothing([], 3) == [0.0, 0.0, 0.0]


def test_a_year_of_history_and_more_gives_last_years_weeks_scaled_by_the_level():
    last_year = [float(w) for w in range(52)]  # week w sold w units a year ago...
    history = last_year + [2 * w for w in range(8)]  # ...and the last 8 weeks sold double
    method, curve = forecast.forecast_series(history, 3)
    assert method == "seasonal_naive"
    # Week h of the season = history[n - 52 + h] x (28 x 2 / 28) = history[8 + h] x 2.
    assert curve == pytest.approx([16.0, 18.0, 20.0])


def test_the_level_is_clipped_and_a_silent_year_counts_as_one():
    silent = [0.0] * 52 + [5.0] * 8
    assert forecast.seasonal_naive(silent, 2) == [0.0, 0.0]  # no sales a year ago: 0 x 1
    boom = [1.0] * 52 + [100.0] * 8
    assert forecast.seasonal_naive(boom, 1) == [2.0]  # x100 clipped to x2


def test_quantities_are_forecast_times_multiplier_minus_holdback_in_whole_packs():
    row = forecast.quantity_for(100.0, multiplier=1.2, dc_holdback=0.45, pack_size=4)
    assert row == {"demand": 100.0, "gross": 120.0, "holdback": 54.0, "net": 66.0, "quantity": 68}
    assert forecast.round_to_packs(12.000000001, 6) == 12  # float noise costs no pack
    assert forecast.round_to_packs(12.01, 6) == 18
    assert forecast.round_to_packs(0, 6) == 0
