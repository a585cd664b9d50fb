"""Errors that reach the user as one line and a non-zero exit code.

Library code raises these; ``mlkd_cli.cli`` prints ``Error: <message>`` and exits 1.
A message names the file (and line) at fault and says how to fix it.
"""


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
