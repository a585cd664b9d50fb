"""Vocabulary maps from a teacher's tokens to the student's: hand-made vocabularies."""

import math

import pytest
import torch

from mlkd_cli.teachers.vocab import build_vocab_map

STUDENT = ["<blk>", "<unk>", "▁", "a", "b", "c", "ä"]  # a char SentencePiece student
TEACHER = ["<pad>", "<s>", "</s>", "<unk>", "|", "A", "B", "C", "Q"]  # wav2vec2 style, upper case


def test_characters_map_with_blank_delimiter_and_case_folded():
    vocab = build_vocab_map(TEACHER, 0, STUDENT, "char", ["ab c", "cä"])
    assert vocab.target == (0, -1, -1, -1, 2, 3, 4, 5, -1)
    assert vocab.missing == ("Q",) and vocab.uncovered == ("ä",)
    # characters of the text, spaces as the word delimiter: a b ▁ c c ä -> 5 of 6 emitted
    assert vocab.coverage == pytest.approx(5 / 6)
    assert vocab.frame_level and not vocab.identity


def test_mapped_posteriors_sum_the_mass_and_drop_special_tokens():
    vocab = build_vocab_map(TEACHER, 0, STUDENT, "char", ["abc"])
    probs = torch.tensor([0.4, 0.1, 0.0, 0.0, 0.1, 0.2, 0.1, 0.05, 0.05])
    mapped = vocab.map_probs(probs.log().reshape(1, 1, -1))[0, 0]
    kept = 0.4 + 0.1 + 0.2 + 0.1 + 0.05  # <s> and Q have no counterpart
    expected = [0.4 / kept, 0, 0.1 / kept, 0.2 / kept, 0.1 / kept, 0.05 / kept, 0]
    assert mapped.tolist() == pytest.approx(expected, abs=1e-6)
    assert math.isclose(float(mapped.sum()), 1.0, rel_tol=1e-6)


def test_own_tokens_map_to_themselves_and_pieces_that_do_not_line_up_are_refused():
    assert build_vocab_map(None, None, STUDENT, "char", ["abc"]).identity
    assert build_vocab_map(STUDENT, 0, STUDENT, "bpe", ["abc"]).identity
    bpe = build_vocab_map(TEACHER, 0, [*STUDENT, "▁ab"], "bpe", ["abc"])
    assert not bpe.frame_level and "bpe pieces" in bpe.reason
    pieces = build_vocab_map(["<pad>", "AB", "C"], 0, STUDENT, "char", ["abc"])
    assert not pieces.frame_level and "multi-character" in pieces.reason


def test_a_teacher_blank_anywhere_maps_to_the_students_blank():
    """Teachers that keep the blank last (NeMo, sherpa-onnx transducer exports): id 0 is a token."""
    vocab = build_vocab_map(["a", "b", "c", "|", "<blank>"], 4, STUDENT, "char", ["abc"])
    assert vocab.target == (3, 4, 5, 2, 0)
