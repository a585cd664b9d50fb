"""Pins on CTC search and the --lang token restriction: exact results that weaker code gets wrong."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from mlkd_cli.data.tokenizer import Tokenizer, TokenizerConfig, train_tokenizer
from mlkd_cli.decode.ctc import prefix_beam_search, restrict_tokens

# Three frames over (blank, a, b). "a" is the most probable labelling (0.331 > "ab" 0.262), but
# its mass is split between alignments ending in blank and in "a", while each of "ab"'s
# partial scores is larger than either half: a search ranking prefixes by max(p_blank,
# p_token) instead of their sum prefers "ab".
SPLIT_MASS = np.log(np.array([[0.31, 0.40, 0.29],
                              [0.07, 0.73, 0.20],
                              [0.22, 0.39, 0.39]]))


def collapse(path: tuple[int, ...]) -> tuple[int, ...]:
    """A CTC path's labelling: repeats merged, blanks (0) dropped."""
    return tuple(t for k, t in enumerate(path) if t != 0 and (k == 0 or path[k - 1] != t))


def labelling_probabilities(log_probs: np.ndarray) -> dict[tuple[int, ...], float]:
    """P(labelling) by brute force: the sum over all V^T paths that collapse to it."""
    frames, vocab = log_probs.shape
    totals: dict[tuple[int, ...], float] = {}
    for path in itertools.product(range(vocab), repeat=frames):
        p = math.exp(sum(log_probs[t, k] for t, k in enumerate(path)))
        totals[collapse(path)] = totals.get(collapse(path), 0.0) + p
    return totals


def test_split_mass_matrix_has_the_claimed_probabilities():
    totals = labelling_probabilities(SPLIT_MASS)
    assert sum(totals.values()) == pytest.approx(1.0)
    assert totals[(1,)] == pytest.approx(0.330786, abs=1e-6) and totals[(1, 2)] == pytest.approx(0.261857, abs=1e-6)
    assert max(totals, key=totals.get) == (1,)


@pytest.mark.parametrize("beam", [1, 2, 27])
def test_prefix_beam_finds_the_exact_best_labelling_of_split_mass(beam):
    """beam 27 (every labelling kept) pins the final choice; beam 1 and 2 pin the pruning."""
    for dtype in (np.float64, np.float32):
        assert prefix_beam_search(SPLIT_MASS.astype(dtype), beam=beam) == [1]


def test_restrict_tokens_keeps_the_blank_even_when_not_listed():
    matrix = np.log(np.array([[0.5, 0.2, 0.2, 0.1], [0.1, 0.3, 0.4, 0.2]], dtype=np.float32))
    restricted = restrict_tokens(matrix, allowed=[2])
    assert np.array_equal(restricted[:, [0, 2]], matrix[:, [0, 2]])  # blank and allowed: unchanged
    assert np.isneginf(restricted[:, [1, 3]]).all()
    assert restricted.dtype == np.float32


def test_train_tokenizer_lists_the_blank_in_every_language_inventory(tmp_path):
    texts = {"en": ["abc ab"], "de": ["xyz zy"]}
    out = train_tokenizer(texts, tmp_path / "lang_char", TokenizerConfig(type="char"))
    tokenizer = Tokenizer(out)
    for lang, own, other in (("en", "abc", "xyz"), ("de", "xyz", "abc")):
        lines = (out / f"tokens.{lang}.txt").read_text(encoding="utf-8").splitlines()
        assert lines[0] == "<blk> 0"
        ids = tokenizer.language_tokens(lang)
        assert ids[0] == 0 and ids == sorted(ids)
        pieces = {tokenizer.id_to_piece(i) for i in ids}
        assert set(own) <= pieces and not set(other) & pieces


@pytest.mark.parametrize("seed", range(40))
def test_prefix_beam_with_every_prefix_kept_is_exact(seed):
    """With no pruning, prefix search sums every alignment of every prefix: its answer is the most
    probable labelling (brute force), also where two source prefixes reach the same prefix in
    one frame and their scores must be added, not maxed."""
    rng = np.random.default_rng(seed)
    probs = rng.dirichlet(np.full(3, 0.7), size=4)
    totals = labelling_probabilities(np.log(probs))
    best = max(totals, key=totals.get)
    assert tuple(prefix_beam_search(np.log(probs), beam=64, token_beam=1e9)) == best
