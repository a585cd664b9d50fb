"""Console and per-experiment logging, and the rich progress bar every long job uses."""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import tempfile
from pathlib import Path
from typing import Iterator

from rich.console import Console
from rich.logging import RichHandler
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

logger = logging.getLogger("mlkd")
console = Console(stderr=True)
LOG_FORMAT = "%(asctime)s %(levelname)s [%(name)s] %(message)s"


def setup_console_logging(level: int = logging.INFO) -> None:
    """Print mlkd's records at ``level`` and up, and other libraries' warnings, on stderr.

    The handler sits on the root logger, where mlkd's records arrive by propagation. A
    handler on the ``mlkd`` logger would print each record twice as soon as a library logs
    through ``logging.info()`` & co., which give the root logger a stderr handler of its own
    (``logging.basicConfig``) if it has none: lhotse does so when it probes audio files.
    """
    logger.setLevel(logging.DEBUG)
    root = logging.getLogger()
    for handler in list(root.handlers):
        if getattr(handler, "mlkd_console", False):
            root.removeHandler(handler)
    if console.is_terminal:
        handler: logging.Handler = RichHandler(console=console, show_path=False, markup=False)
    else:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter(LOG_FORMAT))
    handler.setLevel(level)
    handler.mlkd_console = True  # type: ignore[attr-defined]
    root.addHandler(handler)


@contextlib.contextmanager
def log_to_file(path: str | Path) -> Iterator[None]:
    """Also write every mlkd log record to ``path`` (appending) while the block runs."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setFormatter(logging.Formatter(LOG_FORMAT))
    handler.setLevel(logging.DEBUG)
    logger.addHandler(handler)
    try:
        logger.info("command: %s", " ".join(sys.argv))
        yield
    finally:
        logger.removeHandler(handler)
        handler.close()


def progress_bar(transient: bool = False) -> Progress:
    """A rich progress bar with count, rate-free ETA and elapsed time."""
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=console,
        transient=transient,
        disable=not console.is_terminal,
    )


def real_time_factor(audio_seconds: float, wall_seconds: float) -> str:
    """``"123x real time"``, with two significant digits below 10 (``"0.41x"``, never ``"0x"``)."""
    speed = audio_seconds / max(wall_seconds, 1e-9)
    return f"{speed:.0f}x real time" if speed >= 10 else f"{speed:.2g}x real time"


@contextlib.contextmanager
def native_stderr_logged(source: str) -> Iterator[None]:
    """What native code writes to stderr (kaldilm's C++ LOG lines) while the block runs goes to
    mlkd's log at debug level (so the log file, not the terminal), each line prefixed ``source``."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as captured:
        os.dup2(captured.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            captured.seek(0)
            for line in captured.read().decode("utf-8", errors="replace").splitlines():
                if line.strip():
                    logger.debug("%s: %s", source, line)
