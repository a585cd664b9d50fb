"""Word n-gram language models: interpolated modified Kneser-Ney estimation, ARPA text out.

Hand-written because no maintained estimator that pip-installs does this job: kenlm's
Python module only queries models (its estimator ``lmplz`` is a C++ binary built
separately), NLTK's ``nltk.lm`` is slow and writes no ARPA, and ``kaldingram`` 0.1.2
(alpha) estimates only unmodified back-off Kneser-Ney.

The model is Chen & Goodman's interpolated modified Kneser-Ney, as KenLM's ``lmplz``
builds it: the highest order uses raw counts, lower orders use continuation counts (how
many distinct words precede the n-gram; raw counts for n-grams that start with ``<s>``,
which nothing can precede), three discounts per order, and the unigrams are interpolated
with a uniform distribution over the vocabulary (every word seen plus ``</s>``). An
interpolated model is written to ARPA exactly: a seen n-gram's entry holds its
interpolated probability and a context's back-off weight is its interpolation weight.
"""

from __future__ import annotations

import dataclasses
import math
from collections import Counter, defaultdict
from typing import Iterable, Mapping, Sequence

from mlkd_cli.errors import ConfigError, DataError

BOS = "<s>"
EOS = "</s>"
# Discounts for orders whose counts-of-counts cannot give valid estimates (small corpora),
# as KenLM's ``--discount_fallback``.
FALLBACK_DISCOUNTS = (0.5, 1.0, 1.5)
ARPA_LOG10_ZERO = -99.0  # ARPA's probability of <s>, which is never predicted

Ngram = tuple[str, ...]


@dataclasses.dataclass(frozen=True)
class NgramModel:
    """``probs[k - 1][g]``: probability of the last word of k-gram ``g`` given the others;
    ``backoffs[h]``: weight of the lower order after context ``h`` (1 where absent)."""

    order: int
    probs: list[dict[Ngram, float]]
    backoffs: dict[Ngram, float]

    def prob(self, word: str, context: Sequence[str] = ()) -> float:
        """P(word | context) by the ARPA back-off rule; 0 for a word outside the vocabulary."""
        context = tuple(context)[-(self.order - 1) :] if self.order > 1 else ()
        weight = 1.0
        while True:
            p = self.probs[len(context)].get(context + (word,))
            if p is not None:
                return weight * p
            if not context:
                return 0.0
            weight *= self.backoffs.get(context, 1.0)
            context = context[1:]

    def to_arpa(self) -> str:
        """The model as ARPA text (log10 probabilities and back-off weights)."""
        lines = ["\\data\\"] + [f"ngram {k + 1}={len(p)}" for k, p in enumerate(self.probs)]
        for k, probs in enumerate(self.probs):
            lines += ["", f"\\{k + 1}-grams:"]
            for gram in sorted(probs):
                p = probs[gram]
                fields = [f"{ARPA_LOG10_ZERO if p == 0 else math.log10(p):.7f}", " ".join(gram)]
                if gram in self.backoffs:
                    fields.append(f"{math.log10(self.backoffs[gram]):.7f}")
                lines.append("\t".join(fields))
        return "\n".join(lines + ["", "\\end\\", ""])


def modified_discounts(count_of_counts: Mapping[int, int]) -> tuple[float, float, float]:
    """Discounts (D1, D2, D3+) from how many n-grams occur once, twice, 3 and 4 times.

    Chen & Goodman: Y = n1 / (n1 + 2 n2), D_r = r - (r + 1) Y n_{r+1} / n_r. Orders
    lacking any of n1..n4, or giving a discount outside (0, r), use the fallback.
    """
    n = [count_of_counts.get(r, 0) for r in range(1, 5)]
    if min(n) == 0:
        return FALLBACK_DISCOUNTS
    y = n[0] / (n[0] + 2 * n[1])
    d = tuple(r - (r + 1) * y * n[r] / n[r - 1] for r in (1, 2, 3))
    return d if all(0 < d[r - 1] < r for r in (1, 2, 3)) else FALLBACK_DISCOUNTS


def _raw_counts(sentences: Iterable[Sequence[str]], order: int) -> list[Counter[Ngram]]:
    counts: list[Counter[Ngram]] = [Counter() for _ in range(order)]
    for words in sentences:
        seq = (BOS, *words, EOS)
        for i in range(len(seq)):
            for k in range(1, min(order, len(seq) - i) + 1):
                counts[k - 1][seq[i : i + k]] += 1
    del counts[0][(BOS,)]  # <s> is a context only
    return counts


def _adjusted_counts(raw: list[Counter[Ngram]]) -> list[dict[Ngram, int]]:
    """Raw counts at the highest order; continuation counts below (raw after <s>)."""
    adjusted: list[dict[Ngram, int]] = [dict(raw[-1])]
    for k in range(len(raw) - 2, -1, -1):
        continuation: Counter[Ngram] = Counter(g[1:] for g in raw[k + 1])
        adjusted.insert(0, {g: c if g[0] == BOS else continuation[g] for g, c in raw[k].items()})
    return adjusted


def estimate_kneser_ney(sentences: Iterable[Sequence[str]], order: int = 3) -> NgramModel:
    """Interpolated modified Kneser-Ney model of order ``order`` over word sequences."""
    if order < 1:
        raise ConfigError(f"n-gram order {order} is invalid; use 1 or more")
    adjusted = _adjusted_counts(_raw_counts(sentences, order))
    if not adjusted[0]:
        raise DataError("no words to estimate an n-gram model from: the training text is empty")
    probs: list[dict[Ngram, float]] = []
    backoffs: dict[Ngram, float] = {}
    uniform = 1.0 / len(adjusted[0])
    for k, counts in enumerate(adjusted):
        discounts = modified_discounts(Counter(counts.values()))
        by_context: dict[Ngram, dict[str, int]] = defaultdict(dict)
        for gram, c in counts.items():
            by_context[gram[:-1]][gram[-1]] = c
        level: dict[Ngram, float] = {}
        for context, followers in by_context.items():
            total = sum(followers.values())
            gamma = sum(discounts[min(c, 3) - 1] for c in followers.values()) / total
            if context:
                backoffs[context] = gamma
            for word, c in followers.items():
                lower = probs[k - 1][context[1:] + (word,)] if k else uniform
                level[context + (word,)] = (c - discounts[min(c, 3) - 1]) / total + gamma * lower
        probs.append(level)
    probs[0][(BOS,)] = 0.0
    return NgramModel(order, probs, backoffs)
