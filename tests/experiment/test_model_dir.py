"""Self-contained model directories: a copied, read-only model dir decodes, scores, exports and
teaches with no data or exp dir left; older dirs name the command that upgrades them."""

from __future__ import annotations

import os
import shutil
import stat
from pathlib import Path

import pytest
import yaml

from conftest import TINY_MODEL, TINY_TRAIN, run_cli
from mlkd_cli.errors import ConfigError
from mlkd_cli.experiment.model_dir import load_model_dir, read_stage_config


def snapshot(root: Path) -> dict[str, tuple[int, int]]:
    return {str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns) for p in sorted(root.rglob("*"))}


def writable(root: Path, allowed: bool) -> None:
    """`chmod -R u+w ROOT`, or `chmod -R a-w ROOT`."""
    for path in [root, *root.rglob("*")]:
        mode = path.stat().st_mode
        path.chmod(mode | stat.S_IWUSR if allowed else mode & ~(stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH))


def writable_copy(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    writable(dst, True)
    return dst


def hyps(out: Path) -> str:
    return (next(out.glob("decode_*")) / "hyp.text").read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def travelled(tiny_corpus, tmp_path_factory) -> Path:
    """`mlkd prepare`, a teacher and a language-adaptive model in a work dir, then exactly
    `cp -r exp/student exp/teacher_en /elsewhere && rm -rf data exp`, read-only."""
    work = tmp_path_factory.mktemp("work")
    elsewhere = tmp_path_factory.mktemp("elsewhere")
    c = tiny_corpus
    cwd = os.getcwd()
    os.chdir(work)
    try:
        assert run_cli("prepare", "--tokenizer", "char", c / "train", c / "dev", c / "test", "data").exit_code == 0
        for args in (("train-teacher", "--data", "data", "--lang", "en", "--model-config", TINY_MODEL, "exp/teacher_en"),
                     ("finetune", "--data", "data", "--model-config", TINY_MODEL, "exp/student")):
            result = run_cli(*args[:-1], "--train-config", TINY_TRAIN, "--max-steps", "10", args[-1])
            assert result.exit_code == 0, result.output
        for name in ("student", "teacher_en"):
            shutil.copytree(work / "exp" / name, elsewhere / name)
        shutil.rmtree(work / "data")
        shutil.rmtree(work / "exp")
    finally:
        os.chdir(cwd)
    writable(elsewhere, False)
    yield elsewhere
    writable(elsewhere, True)


def test_a_copied_read_only_model_dir_decodes_scores_exports_and_teaches(travelled, tiny_corpus, tiny_teachers,
                                                                         prepared, tmp_path):
    before = snapshot(travelled)
    student, out = travelled / "student", tmp_path / "out"
    wav = next((tiny_corpus / "wav" / "de").glob("*.wav"))
    result = run_cli("decode", student, wav, "--output-dir", out)
    assert result.exit_code == 0, result.output
    assert result.stdout.split("\t")[0] == str(wav)
    result = run_cli("decode", student, tiny_corpus / "test", "--method", "wfst", "--output-dir", out)
    assert result.exit_code == 0, result.output
    decode_dir = out / "decode_test_wfst-lm3"
    assert list((out / "graph").glob("*_lm3/graph.fst")) and (decode_dir / "ref.text").is_file()
    assert run_cli("score", decode_dir).exit_code == 0 and (decode_dir / "score.json").is_file()
    result = run_cli("export", student, "-o", out / "onnx")
    assert result.exit_code == 0, result.output
    assert (out / "onnx" / "tokens.txt").read_text() == (student / "tokenizer" / "tokens.txt").read_text()
    teachers = [f"en={travelled / 'teacher_en'}", *(f"{lang}={tiny_teachers[lang]}" for lang in ("de", "ru"))]
    result = run_cli("distill", "--data", prepared, "--model-config", TINY_MODEL, "--train-config", TINY_TRAIN,
                     "--max-steps", "2", *teachers, tmp_path / "student_kd")
    assert result.exit_code == 0, result.output
    assert snapshot(travelled) == before  # nothing in the read-only model dirs was written


def test_a_model_dir_of_the_older_layout_names_the_upgrade(travelled, tiny_corpus, prepared, tmp_path):
    old = writable_copy(travelled / "student", tmp_path / "old")
    raw = yaml.safe_load((old / "config.yaml").read_text())
    legacy = {k: v for k, v in raw.items() if k not in ("format", "command", "inference")}
    legacy["data"] = str(prepared)
    (old / "config.yaml").write_text(yaml.safe_dump(legacy))
    shutil.rmtree(old / "tokenizer")
    shutil.rmtree(old / "text")
    wav = next((tiny_corpus / "wav" / "de").glob("*.wav"))
    result = run_cli("decode", old, wav, "-o", tmp_path / "a")
    assert result.exit_code == 1
    assert result.output.strip().splitlines()[-1] == (
        f"Error: {old / 'config.yaml'}: written by an older mlkd, whose model dirs did not carry their tokenizer; "
        f"upgrade it with `mlkd upgrade-model {old}` (needs the data dir it was trained on)")
    result = run_cli("upgrade-model", old)
    assert result.exit_code == 0 and result.stdout == f"{old}: upgraded\n"
    assert run_cli("upgrade-model", old).stdout == f"{old}: up to date\n"
    assert run_cli("decode", old, wav, "-o", tmp_path / "a").exit_code == 0
    assert run_cli("decode", travelled / "student", wav, "-o", tmp_path / "b").exit_code == 0
    assert hyps(tmp_path / "a") == hyps(tmp_path / "b")
    assert read_stage_config(old)[1] == load_model_dir(travelled / "student").config.__class__(
        **{**load_model_dir(travelled / "student").config.__dict__, "data": str(prepared.resolve())})


def test_config_yaml_is_typed_and_strict(travelled, tmp_path):
    copy = writable_copy(travelled / "teacher_en", tmp_path / "m")
    loaded = load_model_dir(copy)
    assert loaded.command == "train-teacher" and loaded.own_language == "en"
    assert loaded.inference.languages == ("en",) and loaded.inference.features.num_features == 80
    assert sorted(p.name for p in (copy / "tokenizer").iterdir()) == ["tokenizer.model", "tokens.en.txt", "tokens.txt"]
    assert sorted(p.name for p in (copy / "text").iterdir()) == ["en.txt"]
    raw = yaml.safe_load((copy / "config.yaml").read_text())
    raw["train"]["max_stesp"] = 3
    (copy / "config.yaml").write_text(yaml.safe_dump(raw))
    with pytest.raises(ConfigError, match=rf"{copy / 'config.yaml'}.train: unknown key\(s\) max_stesp; valid keys are: max_steps"):
        load_model_dir(copy)
