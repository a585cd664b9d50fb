"""Per-utterance scores, per-language sums and language-identification accuracy."""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass
from typing import Iterable, Sequence

from mlkd_cli.data.language import UNKNOWN
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
    """Language identification over utterances with both a reference and a predicted language.

    Utterances in languages the model was trained on (``trained``; all, when that is not
    known) count towards accuracy; those in other (unseen) languages are right only when
    rejected as ``unknown``. Rejection rates: of trained-language utterances wrongly flagged
    ``unknown``, and of unseen-language ones flagged.
    """

    confusion: dict[str, dict[str, int]]  # reference language → predicted language → utterances
    trained: tuple[str, ...] = ()

    def is_trained(self, lang: str) -> bool:
        return not self.trained or lang in self.trained

    def _sum(self, trained: bool, predicted: str | None = None) -> int:
        return sum(sum(row.values()) if predicted is None else row.get(predicted, 0)
                   for ref, row in self.confusion.items() if self.is_trained(ref) == trained)

    @property
    def num_utts(self) -> int:
        """Utterances in trained languages."""
        return self._sum(True)

    @property
    def correct(self) -> int:
        return sum(row.get(lang, 0) for lang, row in self.confusion.items() if self.is_trained(lang))

    @property
    def accuracy(self) -> float | None:
        return self.correct / self.num_utts if self.num_utts else None

    @property
    def num_unseen(self) -> int:
        return self._sum(False)

    @property
    def false_rejection(self) -> float | None:
        """Share of trained-language utterances flagged ``unknown``."""
        return self._sum(True, UNKNOWN) / self.num_utts if self.num_utts else None

    @property
    def unseen_rejection(self) -> float | None:
        """Share of unseen-language utterances flagged ``unknown``; None without any."""
        return self._sum(False, UNKNOWN) / self.num_unseen if self.num_unseen else None

    def language_accuracy(self, lang: str) -> float | None:
        row = self.confusion.get(lang)
        return row.get(lang, 0) / sum(row.values()) if row else None

    def to_dict(self) -> dict:
        return {"accuracy": self.accuracy, "correct": self.correct, "num_utts": self.num_utts,
                "confusion": self.confusion, "trained_languages": list(self.trained),
                "rejection": {"trained_flagged": self.false_rejection, "unseen_flagged": self.unseen_rejection,
                              "num_unseen": self.num_unseen}}

    @classmethod
    def from_dict(cls, data: dict) -> LidScore:
        return cls(data["confusion"], tuple(data.get("trained_languages", ())))


def score_lid(utts: Iterable[UttScore], trained: Sequence[str] = ()) -> LidScore | None:
    """None when no utterance has both languages; ``trained``: the model's languages (empty: all)."""
    confusion: dict[str, Counter[str]] = defaultdict(Counter)
    for u in utts:
        if u.lang and u.pred_lang:
            confusion[u.lang][u.pred_lang] += 1
    if not confusion:
        return None
    return LidScore({ref: dict(sorted(row.items())) for ref, row in sorted(confusion.items())}, tuple(trained))


SCORE_FORMAT = 2  # version of score.json's layout


@dataclass(frozen=True)
class ScoreReport:
    """All figures of one decode dir: what score.json holds."""

    decode_dir: str
    model_name: str
    method: str | None
    num_parameters: int | None
    inputs: list[str]  # absolute paths of the files scored (to tell whether score.json is up to date)
    overall: LangScore
    languages: dict[str, LangScore]
    lid: LidScore | None
    missing: list[str]  # reference utterances without a hypothesis (scored as all deletions)
    extra: list[str]  # hypotheses without a reference (ignored)

    def to_dict(self) -> dict:
        return {
            "format": SCORE_FORMAT,
            "decode_dir": self.decode_dir,
            "model_name": self.model_name,
            "method": self.method,
            "num_parameters": self.num_parameters,
            "inputs": self.inputs,
            "overall": self.overall.to_dict(),
            "languages": {lang: s.to_dict() for lang, s in self.languages.items()},
            "lid": self.lid.to_dict() if self.lid else None,
            "missing": self.missing,
            "extra": self.extra,
        }

    @classmethod
    def from_dict(cls, data: dict) -> ScoreReport:
        return cls(
            decode_dir=data["decode_dir"],
            model_name=data["model_name"],
            method=data["method"],
            num_parameters=data["num_parameters"],
            inputs=data["inputs"],
            overall=LangScore.from_dict(data["overall"]),
            languages={lang: LangScore.from_dict(s) for lang, s in data["languages"].items()},
            lid=LidScore.from_dict(data["lid"]) if data["lid"] else None,
            missing=data["missing"],
            extra=data["extra"],
        )
