"""Problems: every problem of a check reported in one run, each once."""

from __future__ import annotations

import logging

import pytest

from mlkd_cli.errors import ConfigError, DataError, Problems


def test_the_first_problem_is_the_error_line_and_the_others_are_logged_once(caplog):
    problems = Problems(logged_per_kind=2)
    problems.raise_if_any()  # nothing found: nothing raised
    for i in range(5):
        problems.add(f"a.txt:{i}: bad", kind="bad lines")
    problems.add("b.txt: missing")
    with caplog.at_level(logging.ERROR, logger="mlkd"), pytest.raises(DataError) as error:
        problems.raise_if_any()
    assert str(error.value) == "a.txt:0: bad (and 5 more problems, logged above)"
    assert [r.getMessage() for r in caplog.records] == [
        "a.txt:1: bad", "a.txt:2: bad", "b.txt: missing", "bad lines: 2 more like the above, not shown"]


def test_one_problem_is_one_line_of_the_class_asked_for(caplog):
    problems = Problems()
    problems.add("c.yaml: lr must be positive")
    with caplog.at_level(logging.ERROR, logger="mlkd"), pytest.raises(ConfigError, match=r"^c.yaml: lr must be positive$"):
        problems.raise_if_any(ConfigError)
    assert not caplog.records

