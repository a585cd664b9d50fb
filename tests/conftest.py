"""What every test module may use: `run_cli`, the tiny presets, and the shared fixtures (tests/fixtures/) as plugins."""

from __future__ import annotations

import os
from pathlib import Path

# Under pytest-xdist (`make test`) each worker gets its share of the cores (before torch starts its
# thread pool): tiny models gain nothing from threads that the other workers need.
if os.environ.get("PYTEST_XDIST_WORKER"):
    os.environ.setdefault("OMP_NUM_THREADS", str(max(1, os.cpu_count() // int(os.environ["PYTEST_XDIST_WORKER_COUNT"]))))

import pytest
from click.testing import CliRunner

from mlkd_cli.cli import cli

# Fixtures shared across test modules live in tests/fixtures/ (never imported from a test module).
pytest_plugins = ["fixtures.tiny", "fixtures.hf", "fixtures.exports", "fixtures.slurm"]


# Shared model dirs that tests write into (decodes, graphs, calibrations): their tests run in one worker.
SHARED_MODELS = {"tiny_adaptive", "tiny_teachers", "distilled"}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """For pytest-xdist's `--dist loadgroup`: a module's tests run in one worker (its module-scoped
    fixtures are built once); so do all tests on the SLURM cluster (one cluster per run) and all
    that write into the shared tiny models (never two commands in one model dir at once)."""
    for item in items:
        if "slurm_cluster" in item.fixturenames:
            group = "slurm"
        elif SHARED_MODELS & set(item.fixturenames):
            group = "shared-models"
        else:
            group = item.nodeid.split("::")[0]
        item.add_marker(pytest.mark.xdist_group(group))

TINY_LANGS = ("en", "de", "ru")
PREPARED_SETS = ("train", "dev", "test", "unlabeled", "dev_unseen", "test_unseen")  # the `prepared` fixture's


def run_cli(*args: str | Path, input: bytes | None = None):
    """Invoke `mlkd ARGS...` in-process (``input``: its standard input); return click's Result (exit_code, output)."""
    return CliRunner().invoke(cli, [str(a) for a in args], input=input, catch_exceptions=False)


ROOT = Path(__file__).resolve().parents[1]
TINY_MODEL = ROOT / "conf" / "model" / "tiny.yaml"
TINY_TRAIN = ROOT / "conf" / "train" / "tiny.yaml"
