"""Edit-distance counting: the one home of WER/CER alignment (kaldialign) for scoring and training.

WER counts whitespace tokens; CER counts characters with all whitespace removed. Languages
written without spaces between words have CER as their primary error rate, the others WER.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import kaldialign

# Languages written without spaces between words: CER is their primary error rate.
CHARACTER_LANGUAGES = frozenset({"zh", "cmn", "yue", "wuu", "ja", "th", "lo", "km", "my", "bo"})
BLANK = "—"  # table cell of a figure that does not exist
GAP = ""  # alignment gap; never a unit, since units are str.split() tokens or characters


@dataclass(frozen=True)
class ErrorCounts:
    """Edit operations that turn ``ref_len`` reference units (words or characters) into a hypothesis."""

    ref_len: int = 0
    ins: int = 0
    dels: int = 0
    sub: int = 0

    @property
    def errors(self) -> int:
        return self.ins + self.dels + self.sub

    @property
    def rate(self) -> float | None:
        """errors / ref_len; None when there is no reference unit."""
        return self.errors / self.ref_len if self.ref_len else None

    def __add__(self, other: ErrorCounts) -> ErrorCounts:
        return ErrorCounts(self.ref_len + other.ref_len, self.ins + other.ins, self.dels + other.dels,
                           self.sub + other.sub)

    def kaldi_line(self, name: str) -> str:
        """``%WER 12.34 [ 123 / 997, 10 ins, 20 del, 93 sub ]``."""
        return (f"%{name} {percent(self.rate)} [ {self.errors} / {self.ref_len}, "
                f"{self.ins} ins, {self.dels} del, {self.sub} sub ]")

    def to_dict(self) -> dict:
        return {"rate": self.rate, "errors": self.errors, "ref_len": self.ref_len,
                "ins": self.ins, "del": self.dels, "sub": self.sub}

    @classmethod
    def from_dict(cls, data: dict) -> ErrorCounts:
        return cls(data["ref_len"], data["ins"], data["del"], data["sub"])


def words(text: str) -> list[str]:
    return text.split()


def characters(text: str) -> list[str]:
    """The characters of ``text`` without any whitespace."""
    return list("".join(text.split()))


def count_errors(ref: Sequence[str], hyp: Sequence[str]) -> ErrorCounts:
    counts = kaldialign.edit_distance(ref, hyp)
    return ErrorCounts(len(ref), counts["ins"], counts["del"], counts["sub"])


def primary_metric(lang: str) -> str:
    """``"cer"`` for a language written without spaces between words, else ``"wer"``."""
    return "cer" if lang in CHARACTER_LANGUAGES else "wer"


def percent(rate: float | None) -> str:
    return BLANK if rate is None else f"{100 * rate:.2f}"


def char_errors(ref: str, hyp: str) -> ErrorCounts:
    """Character errors of ``hyp`` against ``ref``, whitespace removed."""
    return count_errors(characters(ref), characters(hyp))


def align(ref: Sequence[str], hyp: Sequence[str]) -> list[tuple[str, str]]:
    """(ref, hyp) unit pairs, :data:`GAP` for a gap."""
    return kaldialign.align(ref, hyp, GAP)
