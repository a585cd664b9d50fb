"""Every command through the stage protocol: a second run is up to date and rewrites nothing; a
changed input is refused naming what changed (scores are redone); --force redoes it; a run
interrupted mid-write leaves the previous output intact and the next run finishes."""

from __future__ import annotations

import dataclasses
import importlib
import json
import shutil
from pathlib import Path
from typing import Callable

import pytest

from conftest import TINY_MODEL, TINY_TRAIN, run_cli

STEPS = ("--train-config", TINY_TRAIN, "--max-steps", "2")


class Killed(BaseException):
    """Stands in for SIGKILL mid-write (click turns KeyboardInterrupt into an exit code)."""


@dataclasses.dataclass
class Case:
    name: str
    args: Callable[[dict, Path, bool], list]  # the command line, given the world, the output dir, changed or not
    changed: str  # what the refusal names
    interrupt: str  # "module:Class.function" that raises mid-work
    refuses: bool = True  # derived outputs (scores) are redone instead
    record: str = "stage.json"
    record_dir: Callable[[Path], Path] = lambda out: out

    def __str__(self) -> str:
        return self.name


def outputs(out: Path, record: str) -> dict[str, tuple[int, int]]:
    """Size and date of every file the stage published (as its record lists them)."""
    names = json.loads((out / record).read_text())["outputs"]
    files = [p for name in names for p in ([out / name] if (out / name).is_file() else (out / name).rglob("*"))]
    return {str(p.relative_to(out)): (p.stat().st_size, p.stat().st_mtime_ns) for p in sorted(files) if p.is_file()}


def prepare_args(world: dict, out: Path, changed: bool) -> list:
    dev = world["corpus"] / "dev"
    if changed:  # one transcript of the dev set edited
        dev = out.parent / "edited" / "dev"
        if not dev.exists():
            shutil.copytree(world["corpus"] / "dev", dev)
            lines = (dev / "text").read_text().splitlines()
            (dev / "text").write_text("\n".join([lines[0] + " again", *lines[1:]]) + "\n")
    return ["prepare", "--tokenizer", "char", f"train={world['corpus'] / 'train'}", f"dev={dev}", out]


def teachers(world: dict) -> list:
    return [f"{lang}={path}" for lang, path in sorted(world["teachers"].items())]


def score_args(world: dict, out: Path, changed: bool) -> list:
    if not out.exists():  # the decode dir to score, made once
        model = out.parent
        shutil.copytree(world["adaptive"], model, ignore=shutil.ignore_patterns("decode_*", ".*"))
        result = run_cli("decode", model, world["data"] / "manifests" / "test_cuts.jsonl.gz", "--name", "walk")
        assert result.exit_code == 0, result.output
    hyp = out / "hyp.text"
    if changed and not hyp.read_text().startswith("changed"):
        lines = hyp.read_text().splitlines()
        hyp.write_text("\n".join([lines[0].split(" ", 1)[0] + " changed", *lines[1:]]) + "\n")
    return ["score", out]


def flag(changed: bool, *args: str) -> list:
    return list(args) if changed else []


CASES = [
    Case("make-corpus", lambda w, o, c: ["make-corpus", o, "--langs", "en", "--size", "tiny", "--espeak-only",
                                         "--seed", "4" if c else "3"],
         "changed: config.seed", "mlkd_cli.recipes.corpus.build:_write_data_dir"),
    Case("prepare", prepare_args, "changed: dev:", "mlkd_cli.data.prepare:write_manifests"),
    Case("train-teacher", lambda w, o, c: ["train-teacher", "--data", w["data"], "--lang", "de", "--model-config",
                                           TINY_MODEL, *STEPS, *flag(c, "--precision", "bf16"), o],
         "changed: config.train.precision", "mlkd_cli.train.loop:Trainer.finalize"),
    Case("distill", lambda w, o, c: ["distill", "--data", w["data"], "--model-config", TINY_MODEL, *STEPS,
                                     *flag(c, "--lid-weight", "2"), *teachers(w), o],
         "changed: config.lid_weight", "mlkd_cli.train.loop:Trainer.finalize"),
    Case("finetune", lambda w, o, c: ["finetune", "--data", w["data"], "--model-config", TINY_MODEL, *STEPS,
                                      *flag(c, "--lid-weight", "2"), o],
         "changed: config.lid_weight", "mlkd_cli.train.loop:Trainer.finalize"),
    Case("decode", lambda w, o, c: ["decode", w["adaptive"], w["data"] / "manifests" / f"{'dev' if c else 'test'}_cuts.jsonl.gz",
                                    "--name", "walk", "-o", o],
         "changed: inputs", "mlkd_cli.decode.stage:_write", record_dir=lambda out: out / "decode_walk_ctc-greedy"),
    Case("score", score_args, "changed: ", "mlkd_cli.score.report:format_summary", refuses=False,
         record="stage.score.json"),
    # first with --int8, then without: the redone export must not keep the earlier model.int8.onnx
    Case("export", lambda w, o, c: ["export", w["adaptive"], "-o", o, *flag(not c, "--int8")], "changed: config.int8",
         "mlkd_cli.export.offline:Offline.write"),
]


@pytest.fixture(scope="module")
def world(tiny_corpus, prepared, tiny_teachers, tiny_adaptive) -> dict:
    return {"corpus": tiny_corpus, "data": prepared, "teachers": tiny_teachers, "adaptive": tiny_adaptive}


def cli(case: Case, world: dict, out: Path, changed: bool = False, *extra: str):
    return run_cli(*case.args(world, out, changed), *extra)


def raising(target: str):
    """(object, attribute name) of ``module:Class.function`` or ``module:function``, and a stand-in that raises."""
    module, attr = target.split(":")
    owner = importlib.import_module(module)
    *classes, name = attr.split(".")
    for cls in classes:
        owner = getattr(owner, cls)

    def killed(*args, **kwargs):
        raise Killed("killed mid-write")

    return owner, name, killed


@pytest.mark.parametrize("case", CASES, ids=str)
def test_every_command_follows_the_stage_protocol(case: Case, world, tmp_path, monkeypatch):
    out = tmp_path / "model" / "decode_walk_ctc-greedy" if case.name == "score" else tmp_path / "out"
    first = cli(case, world, out)
    assert first.exit_code == 0, first.output
    where = case.record_dir(out)
    published = outputs(where, case.record)
    assert published

    again = cli(case, world, out)
    assert again.exit_code == 0 and "up to date" in again.output, again.output
    assert outputs(where, case.record) == published  # nothing rewritten

    changed = cli(case, world, out, True)
    if case.refuses:
        assert changed.exit_code == 1, changed.output
        assert case.changed in changed.output and "--force" in changed.output, changed.output
        assert outputs(where, case.record) == published
    else:
        assert changed.exit_code == 0 and f"redoing ({case.changed}" in changed.output, changed.output
        assert outputs(where, case.record) != published
        published = outputs(where, case.record)

    owner, name, killed = raising(case.interrupt)
    with monkeypatch.context() as patch:
        patch.setattr(owner, name, killed)
        with pytest.raises(Killed):
            cli(case, world, out, True, "--force")
    assert outputs(where, case.record) == published  # the previous output is intact

    redone = cli(case, world, out, True, "--force")
    assert redone.exit_code == 0, redone.output
    assert outputs(where, case.record) != published
    assert not [p for p in where.rglob(".*") if p.name.startswith((".staging", ".trash", ".tmp"))]
    if case.name == "export":
        assert sorted(p.name for p in out.iterdir() if not p.name.startswith(".")) == ["model.onnx", "stage.json",
                                                                                      "tokens.txt"]

