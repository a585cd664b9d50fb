"""The package's layers: commands → recipes (the demo corpus) → training stages (teacher,
distill, finetune) → engines (training, distillation, teachers, decoding, scoring, export) →
models and data → utilities, never upward, so the library's core never imports the recipes and
the engines never import a stage; no import cycles; models do not read data; inference (decode,
export, the model/experiment layer, scoring) never reaches the trainer or a training stage;
every training stage lives in ``mlkd_cli.training_stages``; distillation reaches nothing of
export but sherpa-onnx's file contract."""

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
STAGES = "mlkd_cli.training_stages"
TRAINING = ("mlkd_cli.train", STAGES)  # what inference never reaches


def in_package(module: str, *packages: str) -> bool:
    """Whether ``module`` is one of ``packages`` or inside one (``mlkd_cli.training_stages`` is not inside
    ``mlkd_cli.train``)."""
    return any(module == p or module.startswith(p + ".") for p in packages)


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
    """Every module ``module`` imports, directly or through others (in ``graph``; the package's by default)."""
    edges = graph.get if graph is not None else imports
    seen, todo = set(), [module]
    while todo:
        current = todo.pop()
        for nxt in set(edges(current) or ()) - seen:
            seen.add(nxt)
            todo.append(nxt)
    return seen


INFERENCE = sorted(m for m in MODULES if in_package(m, "mlkd_cli.decode", "mlkd_cli.experiment", "mlkd_cli.score",
                              "mlkd_cli.export")
                   or m in ("mlkd_cli.commands.decode", "mlkd_cli.commands.export",
                            "mlkd_cli.commands.score"))


def training_reached(module: str, graph: dict[str, frozenset[str]] | None = None) -> list[str]:
    """The trainer's and the training stages' modules that ``module`` reaches."""
    return sorted(m for m in reachable(module, graph) if in_package(m, *TRAINING))


@pytest.mark.parametrize("module", INFERENCE)
def test_inference_never_imports_the_trainer(module):
    assert not training_reached(module), module


def test_the_check_sees_imports():
    assert "mlkd_cli.train.loop" in reachable("mlkd_cli.train.runner")  # the walk is not vacuous
    assert "mlkd_cli.experiment.model_dir" in reachable("mlkd_cli.decode.stage")
    assert "mlkd_cli.recipes.corpus.text" in reachable("mlkd_cli.commands.make_corpus")
    assert {"mlkd_cli.train.runner", "mlkd_cli.distill.ensemble"} <= reachable("mlkd_cli.training_stages.distill")
    assert "mlkd_cli.training_stages.teacher" in reachable("mlkd_cli.commands.train_teacher")


UTILITIES = ("mlkd_cli", "mlkd_cli.config", "mlkd_cli.contracts", "mlkd_cli.errors", "mlkd_cli.fsutil", "mlkd_cli.log",
             "mlkd_cli.stage", "mlkd_cli.version")


def layer(module: str) -> int:
    """0 utilities, 1 models and data, 2 engines, 3 training stages (0-3: the library's core),
    4 recipes, 5 commands (the CLI).

    The stages are a layer of their own above the engines: each builds its objective from the
    engines' parts (the trainer in ``train/``, targets, losses and caches in ``distill/``), and
    no engine knows a stage. Nothing in the recipes (the demo corpus) needs a stage; a recipe
    that ran one would sit above it.
    """
    if module in UTILITIES:
        return 0
    if in_package(module, "mlkd_cli.models", "mlkd_cli.data"):
        return 1
    if in_package(module, STAGES):
        return 3
    if in_package(module, "mlkd_cli.recipes"):
        return 4
    if in_package(module, "mlkd_cli.commands", "mlkd_cli.cli", "mlkd_cli.__main__"):
        return 5
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
    assert not sorted(f"{m} -> {n}" for m in MODULES if in_package(m, "mlkd_cli.models")
                      for n in reachable(m) if in_package(n, "mlkd_cli.data"))


def stage_classes(sources: dict[str, str]) -> dict[str, str]:
    """Every subclass of ``TrainingStage`` (directly or through another one) → the module that defines it."""
    defined = {(node.name, module, tuple(ast.unparse(b).rsplit(".", 1)[-1] for b in node.bases))
               for module, source in sources.items() for node in ast.walk(ast.parse(source))
               if isinstance(node, ast.ClassDef)}
    found: dict[str, str] = {}
    while True:
        more = {name: module for name, module, bases in defined
                if name not in found and any(b == "TrainingStage" or b in found for b in bases)}
        if not more:
            return found
        found.update(more)


def test_the_training_stages_have_one_home():
    homes = stage_classes({m: p.read_text() for m, p in MODULES.items()})
    assert {"TeacherStage", "DistillStage", "FinetuneStage"} <= set(homes)  # the search is not vacuous
    assert sorted(f"{name} in {m}" for name, m in homes.items() if not in_package(m, STAGES)) == []


DISTILLATION = ("mlkd_cli.distill", "mlkd_cli.teachers", "mlkd_cli.commands.distill", "mlkd_cli.commands.teacher_info")
EXPORT_CONTRACT = ("mlkd_cli.export", "mlkd_cli.export.contract")  # the package's __init__ imports nothing


def deployment_imports(graph: dict[str, frozenset[str]]) -> list[str]:
    """Export modules beyond the contract that distillation reaches; reaching a module of the export
    package runs its ``__init__`` first, so that counts too."""
    found = set()
    for module in graph:
        if module.startswith(DISTILLATION):
            reached = reachable(module, graph)
            if any(in_package(n, "mlkd_cli.export") for n in reached):
                reached |= {"mlkd_cli.export"} | reachable("mlkd_cli.export", graph)
            found |= {f"{module} -> {n}" for n in reached if in_package(n, "mlkd_cli.export") and n not in EXPORT_CONTRACT}
    return sorted(found)


def test_distillation_uses_only_the_export_contract():
    assert deployment_imports(GRAPH) == []
    assert "mlkd_cli.export.contract" in reachable("mlkd_cli.teachers.load")  # the rule is not vacuous


def test_the_rules_catch_what_they_forbid():
    graph = {"mlkd_cli.models.a": frozenset({"mlkd_cli.decode.b"}),
             "mlkd_cli.decode.b": frozenset({"mlkd_cli.models.a"}),
             "mlkd_cli.errors": frozenset({"mlkd_cli.cli"}), "mlkd_cli.cli": frozenset(),
             "mlkd_cli.train.c": frozenset({"mlkd_cli.recipes.corpus.text", "mlkd_cli.training_stages.d"}),
             "mlkd_cli.training_stages.d": frozenset({"mlkd_cli.recipes.corpus.text", "mlkd_cli.train.e"}),
             "mlkd_cli.recipes.corpus.text": frozenset({"mlkd_cli.commands.make_corpus"}),
             "mlkd_cli.decode.f": frozenset({"mlkd_cli.score.g"}),
             "mlkd_cli.score.g": frozenset({"mlkd_cli.training_stages.d"})}
    assert cycles(graph) == [["mlkd_cli.decode.b", "mlkd_cli.models.a"]]
    assert upward_imports(graph) == ["mlkd_cli.errors -> mlkd_cli.cli", "mlkd_cli.models.a -> mlkd_cli.decode.b",
                                     "mlkd_cli.recipes.corpus.text -> mlkd_cli.commands.make_corpus",
                                     "mlkd_cli.score.g -> mlkd_cli.training_stages.d",
                                     "mlkd_cli.train.c -> mlkd_cli.recipes.corpus.text",
                                     "mlkd_cli.train.c -> mlkd_cli.training_stages.d",
                                     "mlkd_cli.training_stages.d -> mlkd_cli.recipes.corpus.text"]
    # inference reaches the trainer and the stages through other modules too; a name alike is not the trainer
    assert training_reached("mlkd_cli.decode.f", graph) == ["mlkd_cli.train.e", "mlkd_cli.training_stages.d"]
    assert training_reached("mlkd_cli.decode.f", {"mlkd_cli.decode.f": frozenset({"mlkd_cli.trainers"})}) == []
    sources = {"mlkd_cli.training_stages.h": "class H(TrainingStage): pass",
               "mlkd_cli.train.i": "class I(H): pass\nclass J(runner.TrainingStage): pass\nclass K: pass"}
    assert stage_classes(sources) == {"H": "mlkd_cli.training_stages.h", "I": "mlkd_cli.train.i",
                                      "J": "mlkd_cli.train.i"}
    contract = {"mlkd_cli.export": frozenset(), "mlkd_cli.export.contract": frozenset(),
                "mlkd_cli.export.offline": frozenset({"mlkd_cli.export.contract"}),
                "mlkd_cli.teachers.a": frozenset({"mlkd_cli.export.contract"})}
    assert deployment_imports(contract) == []
    routine = {**contract, "mlkd_cli.distill.b": frozenset({"mlkd_cli.teachers.a", "mlkd_cli.export.offline"})}
    assert deployment_imports(routine) == ["mlkd_cli.distill.b -> mlkd_cli.export.offline"]
    package = {**contract, "mlkd_cli.export": frozenset({"mlkd_cli.export.offline"})}
    assert deployment_imports(package) == ["mlkd_cli.teachers.a -> mlkd_cli.export.offline"]
