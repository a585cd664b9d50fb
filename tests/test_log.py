"""What mlkd writes to the terminal."""

from __future__ import annotations

from mlkd_cli.log import real_time_factor


def test_speeds_are_written_to_their_size():
    assert real_time_factor(1445.4, 1.0) == "1445x real time"
    assert real_time_factor(12.0, 1.0) == "12x real time"
    assert real_time_factor(4.1, 10.0) == "0.41x real time"
    assert real_time_factor(3.0, 1.0) == "3x real time"


def test_native_stderr_goes_to_the_log_at_debug_level(capfd, caplog):
    import logging
    import os

    from mlkd_cli.log import native_stderr_logged

    with caplog.at_level(logging.DEBUG, logger="mlkd"), native_stderr_logged("kaldilm"):
        os.write(2, b"LOG (arpa2fst[5.5]:Read():arpa-file-parser.cc:94) Reading \\data\\ section.\n\n")
    assert capfd.readouterr().err == ""
    assert [(r.levelno, r.getMessage()) for r in caplog.records] == [
        (logging.DEBUG, "kaldilm: LOG (arpa2fst[5.5]:Read():arpa-file-parser.cc:94) Reading \\data\\ section.")]
    os.write(2, b"after\n")  # stderr is the terminal's again
    assert capfd.readouterr().err == "after\n"
