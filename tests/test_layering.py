"""The package's layers: inference (decode, export, the model/experiment layer, scoring) never
reaches the trainer, directly or through another module."""

from __future__ import annotations

import ast
import functools
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "mlkd_cli"


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in PACKAGE.rglob("*.py")}


@functools.cache
def imports(module: str) -> frozenset[str]:
    """mlkd modules that ``module`` imports anywhere (top level or inside functions)."""
    found = set()
    for node in ast.walk(ast.parse(MODULES[module].read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("mlkd_cli"):
            names = [f"{node.module}.{a.name}" for a in node.names]
            found |= {n for n in names if n in MODULES} or {node.module}
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("mlkd_cli")}
    return frozenset(m for m in found if m in MODULES)


def reachable(module: str) -> set[str]:
    seen, todo = set(), [module]
    while todo:
        current = todo.pop()
        for nxt in imports(current) - seen:
            seen.add(nxt)
            todo.append(nxt)
    return seen


INFERENCE = sorted(m for m in MODULES if m.startswith(("mlkd_cli.decode", "mlkd_cli.experiment", "mlkd_cli.score"))
                   or m in ("mlkd_cli.export", "mlkd_cli.commands.decode", "mlkd_cli.commands.export",
                            "mlkd_cli.commands.score"))


@pytest.mark.parametrize("module", INFERENCE)
def test_inference_never_imports_the_trainer(module):
    assert not sorted(m for m in reachable(module) if m.startswith("mlkd_cli.train")), module


def test_the_check_sees_imports():
    assert "mlkd_cli.train.loop" in reachable("mlkd_cli.train.runner")  # the walk is not vacuous
    assert "mlkd_cli.experiment.model_dir" in reachable("mlkd_cli.decode.stage")
