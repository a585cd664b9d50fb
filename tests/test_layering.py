"""The package's layers: commands → recipes (the demo corpus) → engines (stages, training,
distillation, decoding, scoring, export) → models and data → utilities, never upward, so the
library's core never imports the recipes; no import cycles; models do not read data; inference
(decode, export, the model/experiment layer, scoring) never reaches the trainer; distillation
reaches nothing of export but sherpa-onnx's file contract."""

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


def reachable(module: str, graph: dict[str, frozenset[str]] | None = None) -> set[str]:
    """What ``module`` imports, directly or not, in ``graph`` (default: the package)."""
    edges = imports if graph is None else (lambda m: graph.get(m, frozenset()))
    seen, todo = set(), [module]
    while todo:
        current = todo.pop()
        for nxt in edges(current) - seen:
            seen.add(nxt)
            todo.append(nxt)
    return seen


def is_export(module: str) -> bool:
    return module == "mlkd_cli.export" or module.startswith("mlkd_cli.export.")


INFERENCE = sorted(m for m in MODULES if m.startswith(("mlkd_cli.decode", "mlkd_cli.experiment", "mlkd_cli.score"))
                   or is_export(m) or m in ("mlkd_cli.commands.decode", "mlkd_cli.commands.export",
                                            "mlkd_cli.commands.score"))


@pytest.mark.parametrize("module", INFERENCE)
def test_inference_never_imports_the_trainer(module):
    assert not sorted(m for m in reachable(module) if m.startswith("mlkd_cli.train")), module


def test_the_check_sees_imports():
    assert "mlkd_cli.train.loop" in reachable("mlkd_cli.train.runner")  # the walk is not vacuous
    assert "mlkd_cli.experiment.model_dir" in reachable("mlkd_cli.decode.stage")
    assert "mlkd_cli.recipes.corpus.text" in reachable("mlkd_cli.commands.make_corpus")


UTILITIES = ("mlkd_cli", "mlkd_cli.config", "mlkd_cli.contracts", "mlkd_cli.errors", "mlkd_cli.fsutil", "mlkd_cli.log",
             "mlkd_cli.stage", "mlkd_cli.version")


def layer(module: str) -> int:
    """0 utilities, 1 models and data, 2 engines (0-2: the library's core), 3 recipes, 4 commands (the CLI)."""
    if module in UTILITIES:
        return 0
    if module.startswith(("mlkd_cli.models", "mlkd_cli.data")):
        return 1
    if module.startswith("mlkd_cli.recipes"):
        return 3
    if module.startswith("mlkd_cli.commands") or module in ("mlkd_cli.cli", "mlkd_cli.__main__"):
        return 4
    return 2


def upward_imports(graph: dict[str, frozenset[str]]) -> list[str]:
    return sorted(f"{m} -> {n}" for m, targets in graph.items() for n in targets if layer(n) > layer(m))


def cycles(graph: dict[str, frozenset[str]]) -> list[list[str]]:
    """The import cycles of ``graph``: its strongly connected components of more than one module."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while not component or component[-1] != v:
                component.append(stack.pop())
            if len(component) > 1:
                found.append(sorted(component))

    for module in sorted(graph):
        if module not in index:
            visit(module)
    return found


GRAPH = {m: imports(m) for m in MODULES}


def test_no_import_cycles():
    assert cycles(GRAPH) == [], "\n".join(f"{m} -> {', '.join(sorted(GRAPH[m]))}" for m in sorted(GRAPH))


def test_no_module_imports_a_higher_layer():
    assert upward_imports(GRAPH) == []


def test_models_do_not_read_data():
    assert not sorted(f"{m} -> {n}" for m in MODULES if m.startswith("mlkd_cli.models")
                      for n in reachable(m) if n.startswith("mlkd_cli.data"))


DISTILLATION = ("mlkd_cli.distill", "mlkd_cli.teachers", "mlkd_cli.commands.distill", "mlkd_cli.commands.teacher_info")
EXPORT_CONTRACT = ("mlkd_cli.export", "mlkd_cli.export.contract")  # the package's __init__ imports nothing


def deployment_imports(graph: dict[str, frozenset[str]]) -> list[str]:
    """Export modules beyond the contract that distillation reaches; reaching a module of the export
    package runs its ``__init__`` first, so that counts too."""
    found = set()
    for module in graph:
        if module.startswith(DISTILLATION):
            reached = reachable(module, graph)
            if any(is_export(n) for n in reached):
                reached |= {"mlkd_cli.export"} | reachable("mlkd_cli.export", graph)
            found |= {f"{module} -> {n}" for n in reached if is_export(n) and n not in EXPORT_CONTRACT}
    return sorted(found)


def test_distillation_uses_only_the_export_contract():
    assert deployment_imports(GRAPH) == []
    assert "mlkd_cli.export.contract" in reachable("mlkd_cli.teachers.load")  # the rule is not vacuous


def test_the_rules_catch_what_they_forbid():
    graph = {"mlkd_cli.models.a": frozenset({"mlkd_cli.decode.b"}),
             "mlkd_cli.decode.b": frozenset({"mlkd_cli.models.a"}),
             "mlkd_cli.errors": frozenset({"mlkd_cli.cli"}), "mlkd_cli.cli": frozenset(),
             "mlkd_cli.train.c": frozenset({"mlkd_cli.recipes.corpus.text"}),
             "mlkd_cli.recipes.corpus.text": frozenset({"mlkd_cli.commands.make_corpus"})}
    assert cycles(graph) == [["mlkd_cli.decode.b", "mlkd_cli.models.a"]]
    assert upward_imports(graph) == ["mlkd_cli.errors -> mlkd_cli.cli", "mlkd_cli.models.a -> mlkd_cli.decode.b",
                                     "mlkd_cli.recipes.corpus.text -> mlkd_cli.commands.make_corpus",
                                     "mlkd_cli.train.c -> mlkd_cli.recipes.corpus.text"]
    contract = {"mlkd_cli.export": frozenset(), "mlkd_cli.export.contract": frozenset(),
                "mlkd_cli.export.offline": frozenset({"mlkd_cli.export.contract"}),
                "mlkd_cli.teachers.a": frozenset({"mlkd_cli.export.contract"})}
    assert deployment_imports(contract) == []
    routine = {**contract, "mlkd_cli.distill.b": frozenset({"mlkd_cli.teachers.a", "mlkd_cli.export.offline"})}
    assert deployment_imports(routine) == ["mlkd_cli.distill.b -> mlkd_cli.export.offline"]
    package = {**contract, "mlkd_cli.export": frozenset({"mlkd_cli.export.offline"})}
    assert deployment_imports(package) == ["mlkd_cli.teachers.a -> mlkd_cli.export.offline"]
