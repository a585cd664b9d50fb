"""Errors that reach the user as one line and a non-zero exit code.

Library code raises these; ``mlkd_cli.cli`` prints ``Error: <message>`` and exits 1.
A message names the file (and line) at fault and says how to fix it.
"""

from __future__ import annotations

import logging
from collections import Counter


class MlkdError(Exception):
    """Base class of every error meant for the user rather than a traceback."""


class DataError(MlkdError):
    """Input data (a Kaldi data dir, a manifest, an audio file) is malformed."""


class ConfigError(MlkdError):
    """A config file or option is invalid."""


class StageError(MlkdError):
    """An experiment directory is in a state that forbids running this stage."""


class OnnxLoadError(DataError):
    """ONNX Runtime cannot load a model file (not ONNX, truncated, an operator it lacks)."""


class Problems:
    """Every problem a check finds, so one run reports them all: the first becomes the error line,
    the others are logged before it (the first ``logged_per_kind`` of a kind, then a count)."""

    def __init__(self, logged_per_kind: int = 10) -> None:
        self.messages: list[str] = []
        self.kinds: list[str] = []
        self.logged_per_kind = logged_per_kind

    def add(self, message: str, kind: str | None = None) -> None:
        self.messages.append(message)
        self.kinds.append(kind or message)

    def raise_if_any(self, error: type[MlkdError] = DataError) -> None:
        if not self.messages:
            return
        logger = logging.getLogger("mlkd")
        seen: Counter[str] = Counter()
        for message, kind in zip(self.messages[1:], self.kinds[1:]):
            seen[kind] += 1
            if seen[kind] <= self.logged_per_kind:
                logger.error(message)
        for kind, count in seen.items():
            if count > self.logged_per_kind:
                logger.error("%s: %d more like the above, not shown", kind, count - self.logged_per_kind)
        more = len(self.messages) - 1
        raise error(self.messages[0] + (f" (and {more} more problem{'s' * (more > 1)}, logged above)" if more else ""))
