"""Shared fixtures: a tiny synthesized multilingual corpus and its prepared data dir."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from mlkd_cli.cli import cli

# Fixtures shared across test modules live in tests/fixtures/ (never imported from a test module).
pytest_plugins = ["fixtures.exports", "fixtures.slurm"]

TINY_LANGS = ("en", "de", "ru")
PREPARED_SETS = ("train", "dev", "test", "unlabeled", "dev_unseen", "test_unseen")  # the `prepared` fixture's


def run_cli(*args: str | Path, input: bytes | None = None):
    """Invoke `mlkd ARGS...` in-process (``input``: its standard input); return click's Result (exit_code, output)."""
    return CliRunner().invoke(cli, [str(a) for a in args], input=input, catch_exceptions=False)


@pytest.fixture(scope="session")
def tiny_corpus(tmp_path_factory) -> Path:
    """Kaldi dirs train/dev/test for three languages, the untranscribed pool ``unlabeled`` and
    dev_unseen/test_unseen (Polish, Czech), synthesized with eSpeak NG."""
    from mlkd_cli.corpus.build import build_corpus

    out = tmp_path_factory.mktemp("corpus")
    build_corpus(out, langs=list(TINY_LANGS), size="tiny", seed=0, num_jobs=1, other_engines=False)  # eSpeak: faster
    return out


@pytest.fixture(scope="session")
def prepared(tiny_corpus, tmp_path_factory) -> Path:
    """`mlkd prepare` of the tiny corpus (every set) with a character tokenizer."""
    out = tmp_path_factory.mktemp("prepared") / "data"
    c = tiny_corpus
    result = run_cli("prepare", "--tokenizer", "char", *(c / s for s in PREPARED_SETS), out)
    assert result.exit_code == 0, result.output
    return out


ROOT = Path(__file__).resolve().parents[1]
TINY_MODEL = ROOT / "conf" / "model" / "tiny.yaml"
TINY_TRAIN = ROOT / "conf" / "train" / "tiny.yaml"


@pytest.fixture(scope="session")
def tiny_teachers(prepared, tmp_path_factory) -> dict[str, Path]:
    """A few-update tiny teacher per language of the tiny corpus (shapes, not quality)."""
    root = tmp_path_factory.mktemp("teachers")
    teachers = {}
    for lang in TINY_LANGS:
        exp = root / f"teacher_{lang}"
        result = run_cli("train-teacher", "--data", prepared, "--lang", lang, "--model-config", TINY_MODEL,
                         "--train-config", TINY_TRAIN, "--max-steps", "20", exp)
        assert result.exit_code == 0, result.output
        teachers[lang] = exp
    return teachers


@pytest.fixture(scope="session")
def tiny_adaptive(prepared, tmp_path_factory) -> Path:
    """A few-update tiny language-adaptive model (`mlkd finetune` from scratch) on all three languages."""
    exp = tmp_path_factory.mktemp("adaptive") / "model"
    result = run_cli("finetune", "--data", prepared, "--model-config", TINY_MODEL, "--train-config", TINY_TRAIN,
                     "--max-steps", "20", exp)
    assert result.exit_code == 0, result.output
    return exp


@pytest.fixture(scope="session")
def transformers():
    """The `hf` extra's transformers: installed here when missing, as `pip install 'mlkd[hf]'` would."""
    import importlib
    import subprocess
    import sys

    try:
        return importlib.import_module("transformers")
    except ImportError:
        subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "transformers>=4.40"], check=True)
        importlib.invalidate_caches()
        return importlib.import_module("transformers")


@pytest.fixture(scope="session")
def hf_wav2vec2(transformers, tmp_path_factory) -> Path:
    """A tiny random Wav2Vec2ForCTC (layer-norm feature encoder) with a German character vocabulary,
    saying short varied text."""
    from hf_checkpoints import GERMAN_VOCAB, save_tiny_ctc

    return save_tiny_ctc(tmp_path_factory.mktemp("hf") / "w2v2-de", "wav2vec2", GERMAN_VOCAB, feat_extract_norm="layer",
                         talkative=True)


@pytest.fixture(scope="session")
def hf_hubert(transformers, tmp_path_factory) -> Path:
    """A tiny random HubertForCTC (group-norm feature encoder, no attention mask)."""
    from hf_checkpoints import GERMAN_VOCAB, save_tiny_ctc

    return save_tiny_ctc(tmp_path_factory.mktemp("hf") / "hubert-de", "hubert", GERMAN_VOCAB, feat_extract_norm="group")
