"""mlkd: multilingual speech recognition by knowledge distillation."""

from mlkd_cli.version import __version__

__all__ = ["__version__"]
