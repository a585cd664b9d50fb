"""Per-utterance scores, per-language sums and language-identification accuracy."""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass
from typing import Iterable, Sequence

from mlkd_cli.score.alignment import ErrorCounts, align, characters, count_errors, primary_metric, words


@dataclass(frozen=True)
class UttScore:
    """One reference utterance against its hypothesis."""

    utt_id: str
    lang: str | None  # reference language, when known
    pred_lang: str | None  # predicted language, when the hypothesis carries one
    ref: str
    hyp: str | None  # None: no hypothesis (scored as all deletions)
    words: ErrorCounts
    chars: ErrorCounts

    def alignment(self) -> list[tuple[str, str]]:
        """(ref, hyp) unit pairs, ``""`` for a gap; by character for CER languages, else by word."""
        split = characters if self.lang and primary_metric(self.lang) == "cer" else words
        return align(split(self.ref), split(self.hyp or ""))


def score_utterance(utt_id: str, ref: str, hyp: str | None, lang: str | None = None,
                    pred_lang: str | None = None) -> UttScore:
    hyp_text = hyp or ""
    return UttScore(utt_id, lang, pred_lang, ref, hyp, count_errors(words(ref), words(hyp_text)),
                    count_errors(characters(ref), characters(hyp_text)))


@dataclass(frozen=True)
class LangScore:
    """Summed errors of a set of utterances: one language, or all."""

    num_utts: int
    num_missing: int  # utterances without a hypothesis
    words: ErrorCounts
    chars: ErrorCounts
    primary: str | None  # "wer" or "cer"; None for a mix of languages of both kinds

    @property
    def primary_rate(self) -> float | None:
        return None if self.primary is None else self.rate(self.primary)

    def rate(self, metric: str) -> float | None:
        """``metric``: "wer", "cer" or "primary"."""
        if metric == "primary":
            return self.primary_rate
        return (self.chars if metric == "cer" else self.words).rate

    def to_dict(self) -> dict:
        return {"num_utts": self.num_utts, "num_missing": self.num_missing, "primary": self.primary,
                "wer": self.words.to_dict(), "cer": self.chars.to_dict()}

    @classmethod
    def from_dict(cls, data: dict) -> LangScore:
        return cls(data["num_utts"], data["num_missing"], ErrorCounts.from_dict(data["wer"]),
                   ErrorCounts.from_dict(data["cer"]), data["primary"])


def summarize(utts: Sequence[UttScore], primary: str | None) -> LangScore:
    return LangScore(
        num_utts=len(utts),
        num_missing=sum(u.hyp is None for u in utts),
        words=sum((u.words for u in utts), ErrorCounts()),
        chars=sum((u.chars for u in utts), ErrorCounts()),
        primary=primary,
    )


def score_languages(utts: Sequence[UttScore]) -> tuple[LangScore, dict[str, LangScore]]:
    """Overall and per reference language (utterances of unknown language count overall only)."""
    groups: dict[str, list[UttScore]] = defaultdict(list)
    for u in utts:
        if u.lang:
            groups[u.lang].append(u)
    languages = {lang: summarize(group, primary_metric(lang)) for lang, group in sorted(groups.items())}
    kinds = {s.primary for s in languages.values()}
    return summarize(utts, kinds.pop() if len(kinds) == 1 else None), languages


@dataclass(frozen=True)
class LidScore:
    """Language identification over utterances with both a reference and a predicted language."""

    confusion: dict[str, dict[str, int]]  # reference language → predicted language → utterances

    @property
    def num_utts(self) -> int:
        return sum(sum(row.values()) for row in self.confusion.values())

    @property
    def correct(self) -> int:
        return sum(row.get(lang, 0) for lang, row in self.confusion.items())

    @property
    def accuracy(self) -> float:
        return self.correct / self.num_utts

    def language_accuracy(self, lang: str) -> float | None:
        row = self.confusion.get(lang)
        return row.get(lang, 0) / sum(row.values()) if row else None

    def to_dict(self) -> dict:
        return {"accuracy": self.accuracy, "correct": self.correct, "num_utts": self.num_utts,
                "confusion": self.confusion}

    @classmethod
    def from_dict(cls, data: dict) -> LidScore:
        return cls(data["confusion"])


def score_lid(utts: Iterable[UttScore]) -> LidScore | None:
    """None when no utterance has both languages."""
    confusion: dict[str, Counter[str]] = defaultdict(Counter)
    for u in utts:
        if u.lang and u.pred_lang:
            confusion[u.lang][u.pred_lang] += 1
    if not confusion:
        return None
    return LidScore({ref: dict(sorted(row.items())) for ref, row in sorted(confusion.items())})
