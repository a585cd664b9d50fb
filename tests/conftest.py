"""What every test module may use: `run_cli`, the tiny presets, and the shared fixtures (tests/fixtures/) as plugins."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner

from mlkd_cli.cli import cli

# Fixtures shared across test modules live in tests/fixtures/ (never imported from a test module).
pytest_plugins = ["fixtures.tiny", "fixtures.hf", "fixtures.exports", "fixtures.slurm"]

TINY_LANGS = ("en", "de", "ru")
PREPARED_SETS = ("train", "dev", "test", "unlabeled", "dev_unseen", "test_unseen")  # the `prepared` fixture's


def run_cli(*args: str | Path, input: bytes | None = None):
    """Invoke `mlkd ARGS...` in-process (``input``: its standard input); return click's Result (exit_code, output)."""
    return CliRunner().invoke(cli, [str(a) for a in args], input=input, catch_exceptions=False)


ROOT = Path(__file__).resolve().parents[1]
TINY_MODEL = ROOT / "conf" / "model" / "tiny.yaml"
TINY_TRAIN = ROOT / "conf" / "train" / "tiny.yaml"
