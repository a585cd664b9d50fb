"""Pins on the decoder's language decision for a recording split into windows."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from mlkd_cli.decode.decoder import DecodeConfig, Decoder


def decoder() -> Decoder:
    """A decoder for a de/en language-adaptive model (not a streaming one); ``_language`` reads only its languages."""
    model = SimpleNamespace(config=SimpleNamespace(streaming=None))
    loaded = SimpleNamespace(model=model, tokenizer=None, languages=("de", "en"), own_language=None)
    return Decoder(loaded, DecodeConfig())


def test_language_of_a_long_file_weights_windows_by_duration():
    # 30 s leaning de, then a 10 s tail sure of en: weighted (0.7·30 + 0.05·10) / 40 = 0.5375 for de,
    # whereas the unweighted mean (0.375 for de) would pick en.
    # windows carry language-ID logits: log-posteriors are logits of those posteriors (with energy 0)
    windows = [(30.0, np.log(np.array([0.7, 0.3]))), (10.0, np.log(np.array([0.05, 0.95])))]
    language, posteriors, energy = decoder()._language(windows)
    assert language == "de"
    assert posteriors == pytest.approx({"de": 0.5375, "en": 0.4625}, abs=1e-6)
    assert energy == pytest.approx(0.0, abs=1e-6)
    unweighted = np.mean([np.exp(lg) for _, lg in windows], axis=0)
    assert ("de", "en")[int(unweighted.argmax())] != language


def test_order_of_windows_does_not_change_the_language():
    windows = [(10.0, np.log(np.array([0.05, 0.95]))), (30.0, np.log(np.array([0.7, 0.3])))]
    language, posteriors, _ = decoder()._language(windows)
    assert (language, posteriors) == ("de", {"de": 0.5375, "en": 0.4625})

