"""What mlkd writes to the terminal."""

from __future__ import annotations

from mlkd_cli.log import real_time_factor


def test_speeds_are_written_to_their_size():
    assert real_time_factor(1445.4, 1.0) == "1445x real time"
    assert real_time_factor(12.0, 1.0) == "12x real time"
    assert real_time_factor(4.1, 10.0) == "0.41x real time"
    assert real_time_factor(3.0, 1.0) == "3x real time"
