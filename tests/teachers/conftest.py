"""Fixtures of the teacher tests: transformers (installed here when missing, as the `hf`
extra would) and tiny Hugging Face CTC checkpoints built from configs, no download."""

from __future__ import annotations

import importlib
import subprocess
import sys
from pathlib import Path

import pytest

from hf_checkpoints import GERMAN_VOCAB, save_tiny_ctc


@pytest.fixture(scope="session")
def transformers():
    try:
        return importlib.import_module("transformers")
    except ImportError:  # the `hf` extra is not part of the default install: install it like a user would
        subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "transformers>=4.40"], check=True)
        importlib.invalidate_caches()
        return importlib.import_module("transformers")


@pytest.fixture(scope="session")
def hf_wav2vec2(transformers, tmp_path_factory) -> Path:
    return save_tiny_ctc(tmp_path_factory.mktemp("hf") / "w2v2-de", "wav2vec2", GERMAN_VOCAB, feat_extract_norm="layer")


@pytest.fixture(scope="session")
def hf_hubert(transformers, tmp_path_factory) -> Path:
    return save_tiny_ctc(tmp_path_factory.mktemp("hf") / "hubert-de", "hubert", GERMAN_VOCAB, feat_extract_norm="group")
