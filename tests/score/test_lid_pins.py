"""Pins on language-ID accuracy: only the diagonal of the confusion counts."""

from __future__ import annotations

import pytest

from mlkd_cli.score import score_lid, score_utterance

# de is mostly mistaken for en (its most frequent prediction is wrong); en is always right.
PAIRS = [("de", "en"), ("de", "en"), ("de", "en"), ("de", "de"), ("en", "en"), ("en", "en")]


def lid_of(pairs):
    return score_lid([score_utterance(f"u{i}", "x", "x", ref, pred) for i, (ref, pred) in enumerate(pairs)])


def test_accuracy_counts_diagonal_entries_only():
    lid = lid_of(PAIRS)
    assert lid.confusion == {"de": {"de": 1, "en": 3}, "en": {"en": 2}}
    assert (lid.correct, lid.num_utts) == (3, 6)  # 1 de + 2 en, not 3 + 2 "most frequent"
    assert lid.accuracy == pytest.approx(0.5)
    assert lid.language_accuracy("de") == pytest.approx(0.25) and lid.language_accuracy("en") == 1.0
    assert lid.to_dict() == {"accuracy": 0.5, "correct": 3, "num_utts": 6, "confusion": lid.confusion,
                             "trained_languages": [], "rejection": {"trained_flagged": 0.0, "unseen_flagged": None,
                                                                    "num_unseen": 0}}


def test_a_language_never_predicted_right_scores_zero():
    lid = lid_of([("de", "en"), ("de", "en"), ("en", "de")])
    assert (lid.correct, lid.accuracy) == (0, 0.0)
    assert lid.language_accuracy("de") == 0.0 and lid.language_accuracy("en") == 0.0
