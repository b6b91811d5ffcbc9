"""EBU R 128 normalisation's gain: it stops where the true peak would pass the limit."""

from __future__ import annotations

import pytest

from transcoding import loudness


def test_the_loudness_gain_stops_where_the_true_peak_would_pass_the_limit() -> None:
    assert loudness.gain_for(-20.0, -10.0, -16.0).gain_db == pytest.approx(4.0)
    capped = loudness.gain_for(-20.0, -3.0, -16.0)
    assert capped.gain_db == pytest.approx(loudness.TRUE_PEAK_LIMIT_DBTP + 3.0) and capped.limited_by
    assert loudness.gain_for(float("-inf"), float("-inf"), -16.0).gain_db == 0.0


