"""WFST decoding: Kneser-Ney estimation, graph building and caching, search over CTC output."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from mlkd_cli.decode.ctc import greedy_search
from mlkd_cli.decode.ngram import BOS, EOS, estimate_kneser_ney, modified_discounts
from mlkd_cli.decode.wfst import (
    GRAPH_FILE,
    INFO_FILE,
    WORDS_FILE,
    SearchConfig,
    build_or_load_graph,
    decode,
    decode_batch,
    disambiguate,
    make_lexicon,
)
from mlkd_cli.errors import ConfigError, DataError

TOKENS = ["<blk>", "<unk>", "\u2581", "a", "b", "c"]
ID = {t: i for i, t in enumerate(TOKENS)}
WS, A, B, C = ID["\u2581"], ID["a"], ID["b"], ID["c"]
# "ab" is the common word; "cb" sounds almost the same (a and c are confusable below).
TEXTS = ["ab"] * 20 + ["cb", "ab ab", "b", "ba c"]


def encode(text: str) -> list[int]:
    """A character tokenizer like SentencePiece's: ``▁`` before every word."""
    return [i for w in text.split() for i in [WS] + [ID.get(ch, ID["<unk>"]) for ch in w]]


def frames(*rows: dict[int, float]) -> np.ndarray:
    """Log-probabilities, one frame per row: the given token probabilities, the rest shared."""
    out = []
    for row in rows:
        p = np.full(len(TOKENS), (1 - sum(row.values())) / (len(TOKENS) - len(row)))
        p[list(row)] = list(row.values())
        out.append(np.log(p))
    return np.array(out, dtype=np.float32)


def peaky(tokens: list[int]) -> np.ndarray:
    """Two frames per token at 0.9, each followed by a blank frame."""
    return frames(*[{t: 0.9} for tok in tokens for t in (tok, tok, 0)])


def ambiguous_ab() -> np.ndarray:
    """``▁ ? b`` where ``?`` is c at 0.47 against a at 0.45: acoustics say "cb", barely."""
    x = peaky([WS, A, B])
    x[3:5] = frames({A: 0.45, C: 0.47}, {A: 0.45, C: 0.47})
    return x


# ------------------------------------------------------------------ Kneser-Ney estimation


def test_modified_discounts_from_count_of_counts():
    # Y = 10 / (10 + 2*4) = 5/9; D1 = 1 - 2Y*4/10 = 5/9; D2 = 2 - 3Y*2/4 = 7/6; D3 = 3 - 4Y*1/2 = 17/9
    assert modified_discounts({1: 10, 2: 4, 3: 2, 4: 1}) == pytest.approx((5 / 9, 7 / 6, 17 / 9))
    assert modified_discounts({1: 3, 2: 1}) == (0.5, 1.0, 1.5)  # no n3, n4: fallback


def test_kneser_ney_bigram_by_hand():
    model = estimate_kneser_ney([s.split() for s in ["a b", "a c", "a b"]], order=2)
    # Unigram continuation counts: a 1 (<s>), b 1 (a), c 1 (a), </s> 2 (b, c); total 5,
    # counts-of-counts n1=3 n2=1 -> fallback D = 0.5, 1, 1.5; gamma = (3*0.5 + 1*1) / 5 = 0.5,
    # uniform 1/4: p(a) = (1 - 0.5)/5 + 0.5/4 = 0.225, p(</s>) = (2 - 1)/5 + 0.125 = 0.325.
    assert model.prob("a") == pytest.approx(0.225)
    assert model.prob(EOS) == pytest.approx(0.325)
    # Bigram raw counts 3,2,2,1,1 (no n4: fallback). After "a": b 2, c 1, total 3,
    # gamma = (0.5 + 1) / 3 = 0.5: p(b|a) = (2 - 1)/3 + 0.5*0.225, p(c|a) = (1 - 0.5)/3 + 0.5*0.225,
    # unseen p(</s>|a) = 0.5*0.325. After "<s>": a 3, gamma = 1.5/3, p(a|<s>) = 1.5/3 + 0.5*0.225.
    assert model.prob("b", ["a"]) == pytest.approx(1 / 3 + 0.1125)
    assert model.prob("c", ["a"]) == pytest.approx(1 / 6 + 0.1125)
    assert model.prob(EOS, ["a"]) == pytest.approx(0.1625)
    assert model.prob("a", [BOS]) == pytest.approx(0.6125)
    assert model.backoffs[("a",)] == pytest.approx(0.5)


def test_kneser_ney_every_context_sums_to_one():
    rng = np.random.default_rng(0)
    words = ["w0", "w1", "w2", "w3", "w4"]
    sentences = [list(rng.choice(words, size=rng.integers(1, 8), p=[0.4, 0.3, 0.15, 0.1, 0.05])) for _ in range(300)]
    model = estimate_kneser_ney(sentences, order=3)
    vocab = words + [EOS]
    contexts = [(), (BOS,), ("w0",), ("w4",), (BOS, "w1"), ("w2", "w3"), ("w4", "w4"), ("w9", "w0")]
    for context in contexts:
        assert sum(model.prob(w, context) for w in vocab) == pytest.approx(1.0, abs=1e-9), context
    arpa = model.to_arpa()
    assert arpa.startswith("\\data\\\nngram 1=7\n") and arpa.rstrip().endswith("\\end\\")


# ------------------------------------------------------------------------------ graphs


def test_disambiguation_of_prefixes_and_homophones():
    entries, num_disambig = disambiguate({"a": (2, 3), "ab": (2, 3, 4), "x": (2, 3), "y": (2, 5)}, num_tokens=6)
    # "a" is a prefix of "ab" and sounds like "x": #1 and #2 (token ids 7, 8); #0 is 6.
    assert dict(entries) == {"a": (2, 3, 7), "ab": (2, 3, 4), "x": (2, 3, 8), "y": (2, 5)}
    assert num_disambig == 3


def test_lexicon_errors(tmp_path):
    assert make_lexicon(["ab b", "ab"], encode, len(TOKENS)) == {"ab": (WS, A, B), "b": (WS, B)}
    with pytest.raises(DataError, match="'ab' encodes to token ids"):
        make_lexicon(["ab"], lambda w: [0, 3], len(TOKENS))
    with pytest.raises(DataError, match="no words"):
        make_lexicon([" "], encode, len(TOKENS))
    with pytest.raises(ConfigError, match="needs an order >= 1"):
        build_or_load_graph(tmp_path, TOKENS, lm_order=3)
    with pytest.raises(ConfigError, match="encode function"):
        build_or_load_graph(tmp_path, TOKENS, TEXTS)
    with pytest.raises(ConfigError, match="beam"):
        SearchConfig(beam=0)


def test_graph_cache_reuses_and_rebuilds(tmp_path):
    graph = build_or_load_graph(tmp_path / "g", TOKENS, TEXTS, encode, lm_order=2)
    info = json.loads((tmp_path / "g" / INFO_FILE).read_text())
    assert info["num_words"] == 5 and info["lm_order"] == 2 and graph.has_words
    stamp = (tmp_path / "g" / GRAPH_FILE).stat().st_mtime_ns

    again = build_or_load_graph(tmp_path / "g", TOKENS, list(TEXTS), encode, lm_order=2)
    assert (tmp_path / "g" / GRAPH_FILE).stat().st_mtime_ns == stamp
    assert again.symbols == graph.symbols

    for texts, order in [(TEXTS + ["ab"], 2), (TEXTS, 3), (TEXTS, None), (None, None)]:
        rebuilt = build_or_load_graph(tmp_path / "g", TOKENS, texts, encode if texts else None, order)
        assert (tmp_path / "g" / GRAPH_FILE).stat().st_mtime_ns != stamp  # every change rebuilds
        stamp = (tmp_path / "g" / GRAPH_FILE).stat().st_mtime_ns
        assert rebuilt.has_words == (texts is not None)
        assert json.loads((tmp_path / "g" / "stage.json").read_text())["config"]["lm_order"] == order
    assert not (tmp_path / "g" / WORDS_FILE).exists()  # the token graph replaced the word graph whole


# ------------------------------------------------------------------------------ search


def test_token_graph_search_is_greedy_search(tmp_path):
    graph = build_or_load_graph(tmp_path, TOKENS)
    rng = np.random.default_rng(0)
    batch = []
    for _ in range(20):
        logits = rng.normal(size=(40, len(TOKENS))) * 4
        logits[:, 0] += 2  # blank-heavy, with repeats, like CTC output
        batch.append((logits - np.log(np.exp(logits).sum(1, keepdims=True))).astype(np.float32))
    hyps = decode_batch(graph, batch, SearchConfig(beam=30))
    for x, hyp in zip(batch, hyps, strict=True):
        assert hyp.labels == greedy_search(x)
        assert hyp.cost == pytest.approx(-x.max(axis=1).sum(), rel=1e-5)
    assert decode(graph, peaky([WS, A, B, WS, C])).text == "ab c"
    assert decode(graph, np.zeros((0, len(TOKENS)), np.float32)).labels == []
    with pytest.raises(ConfigError, match="do not match the graph's 6 tokens"):
        decode(graph, np.zeros((3, 7), np.float32))


def test_lexicon_allows_only_vocabulary_words(tmp_path):
    graph = build_or_load_graph(tmp_path, TOKENS, TEXTS, encode)
    x = peaky([WS, A, C])  # "ac" is no word
    assert greedy_search(x) == [WS, A, C]
    hyp = decode(graph, x)
    assert hyp.text and set(hyp.text.split()) <= {"ab", "b", "ba", "c", "cb"}
    assert decode(graph, peaky([WS, A, B, WS, A, B])).text == "ab ab"


def test_language_model_flips_ambiguous_word(tmp_path):
    x = ambiguous_ab()
    tokens_only = build_or_load_graph(tmp_path / "t", TOKENS)
    lexicon_only = build_or_load_graph(tmp_path / "l", TOKENS, TEXTS, encode)
    with_lm = build_or_load_graph(tmp_path / "g", TOKENS, TEXTS, encode, lm_order=3)
    assert decode(tokens_only, x).text == "cb"
    assert decode(lexicon_only, x).text == "cb"
    assert decode(with_lm, x).text == "ab"  # p(ab) is about 20x p(cb)
    assert decode(with_lm, x, SearchConfig(acoustic_scale=50.0)).text == "cb"  # acoustics outweigh the LM


@pytest.mark.parametrize("words", [["ab", "ab"], ["b", "ab"]])  # seen trigrams; back-off to unigram "ab"
def test_language_model_cost_is_kneser_ney_log_probability(tmp_path, words):
    x = peaky([t for w in words for t in encode(w)])
    lexicon_only = decode(build_or_load_graph(tmp_path / "l", TOKENS, TEXTS, encode), x)
    with_lm = decode(build_or_load_graph(tmp_path / "g", TOKENS, TEXTS, encode, lm_order=3), x)
    assert with_lm.text == lexicon_only.text == " ".join(words)
    model = estimate_kneser_ney([t.split() for t in TEXTS], order=3)
    history = [BOS, *words, EOS]
    lm_cost = -sum(math.log(model.prob(history[i], history[max(0, i - 2) : i])) for i in range(1, len(history)))
    # ARPA keeps 7 decimals and minimize_encoded quantizes weights to 1/1024.
    assert with_lm.cost - lexicon_only.cost == pytest.approx(lm_cost, abs=5e-3)


def test_homophones_from_unknown_characters_still_build(tmp_path):
    # "é" and "ü" both encode to "▁ <unk>": the lexicon needs #1 and #2 to stay determinizable.
    texts = ["é ab", "ü ab", "ab é"]
    graph = build_or_load_graph(tmp_path, TOKENS, texts, encode, lm_order=2)
    assert json.loads((tmp_path / INFO_FILE).read_text())["num_disambig"] == 3
    hyp = decode(graph, peaky([WS, ID["<unk>"], WS, A, B]))
    assert hyp.text in {"é ab", "ü ab"}


def test_real_sentencepiece_tokenizer(tmp_path):
    from mlkd_cli.data.tokenizer import Tokenizer, TokenizerConfig, train_tokenizer

    texts = ["the cat sat", "the dog sat", "a cat ran", "the cat ran"]
    tokenizer = Tokenizer(train_tokenizer({"en": texts}, tmp_path / "lang", TokenizerConfig(type="char")))
    tokens = [tokenizer.id_to_piece(i) for i in range(tokenizer.vocab_size)]
    graph = build_or_load_graph(tmp_path / "graph", tokens, texts, tokenizer.encode, lm_order=3)
    ids = tokenizer.encode("the cat ran")
    x = np.log(np.full((3 * len(ids), len(tokens)), 0.1 / (len(tokens) - 1), np.float32))
    for i, t in enumerate(ids):
        x[3 * i : 3 * i + 2, t] = x[3 * i + 2, 0] = np.log(0.9)
    assert decode(graph, x).text == "the cat ran"
    assert decode(build_or_load_graph(tmp_path / "t", tokens), x).text == tokenizer.decode(ids)
    assert {"the", "cat", "sat", "dog", "a", "ran"} <= set(graph.symbols)
