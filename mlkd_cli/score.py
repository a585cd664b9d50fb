"""Scoring of decode directories: WER, CER, language-ID accuracy, and comparison tables.

A decode dir (written by ``mlkd decode``) holds ``hyp.text`` and usually ``hyps.jsonl``,
``ref.text``, ``ref.utt2lang`` and ``stats.json``. :func:`score_decode_dir` aligns every
reference utterance with its hypothesis (kaldialign), sums the errors per language and
overall (sums of errors over sums of reference lengths, not means of ratios), and writes
``errs.txt``, ``wer_summary`` and ``score.json`` beside them.

Texts are compared verbatim (no case or punctuation normalization). WER counts whitespace
tokens; CER counts characters with all whitespace removed. Languages written without spaces
between words have CER as their primary error rate, the others WER. A reference utterance
without a hypothesis is scored as all deletions; a hypothesis without a reference is
ignored. Error rates and accuracies in score.json are fractions, not percentages.
"""

from __future__ import annotations

import json
import logging
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator, Sequence

import kaldialign
from rich.table import Table

from mlkd_cli.data.language import normalize_language, require_language
from mlkd_cli.errors import DataError
from mlkd_cli.fsutil import atomic_write_text

logger = logging.getLogger("mlkd")

# Languages written without spaces between words: CER is their primary error rate.
CHARACTER_LANGUAGES = frozenset({"zh", "cmn", "yue", "wuu", "ja", "th", "lo", "km", "my", "bo"})
SCORE_FORMAT = 1  # version of score.json's layout; an older score.json is recomputed
BLANK = "—"  # table cell of a figure that does not exist
_GAP = ""  # alignment gap; never a unit, since units are str.split() tokens or characters
_SHOWN_IDS = 5
_FIX_DECODE = "fix: re-run `mlkd decode` into {dir}"


# ---------------------------------------------------------------------------- counting


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
        return kaldialign.align(split(self.ref), split(self.hyp or ""), _GAP)


def score_utterance(utt_id: str, ref: str, hyp: str | None, lang: str | None = None,
                    pred_lang: str | None = None) -> UttScore:
    hyp_text = hyp or ""
    return UttScore(utt_id, lang, pred_lang, ref, hyp, count_errors(words(ref), words(hyp_text)),
                    count_errors(characters(ref), characters(hyp_text)))


# ---------------------------------------------------------------------------- aggregates


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


# ---------------------------------------------------------------------------- reading


def _require_file(path: Path, fix: str) -> None:
    if path.is_dir():
        raise DataError(f"{path}: is a directory, not a file; {fix}")
    if not path.is_file():
        raise DataError(f"{path}: no such file; {fix}")


def _lines(path: Path) -> Iterator[tuple[int, str]]:
    """Numbered lines of a UTF-8 file; DataError for bad encoding, CRLF endings or a blank line."""
    data = path.read_bytes()
    try:
        content = data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = data.count(b"\n", 0, e.start) + 1
        raise DataError(f"{path}:{line}: not valid UTF-8 ({e.reason}); fix: convert it, "
                        f"e.g. iconv -f LATIN1 -t UTF-8 {path} > {path}.utf8 && mv {path}.utf8 {path}") from None
    if "\r" in content:
        line = content.count("\n", 0, content.index("\r")) + 1
        raise DataError(f"{path}:{line}: Windows line endings (CRLF); fix: sed -i 's/\\r$//' {path}")
    lines = content.split("\n")
    if lines[-1] == "":
        lines.pop()
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            raise DataError(f"{path}:{number}: blank line; fix: sed -i '/^\\s*$/d' {path}")
        yield number, line


def _read_table(path: Path) -> dict[str, tuple[int, str]]:
    """``KEY VALUE...`` lines → key → (line number, value); DataError on a repeated key."""
    rows: dict[str, tuple[int, str]] = {}
    for number, line in _lines(path):
        key, *rest = line.split(maxsplit=1)
        if key in rows:
            raise DataError(f"{path}:{number}: duplicate id {key} (also on line {rows[key][0]}); "
                            f"fix: keep one of the two lines")
        rows[key] = (number, rest[0].strip() if rest else "")
    return rows


def read_text(path: Path) -> dict[str, str]:
    """Kaldi ``text``: ``UTT-ID word...`` per line; an id alone is an empty transcript."""
    return {utt: value for utt, (_, value) in _read_table(path).items()}


def read_utt2lang(path: Path) -> dict[str, str]:
    """``UTT-ID LANG`` per line → utt → canonical language code."""
    utt2lang = {}
    for utt, (number, value) in _read_table(path).items():
        fields = value.split()
        if len(fields) != 1:
            raise DataError(f"{path}:{number}: expected 'UTT LANG' (2 columns), got {len(fields) + 1}; "
                            f"fix: correct the line")
        utt2lang[utt] = require_language(fields[0], f"{path}:{number}")
    return utt2lang


def read_predicted_languages(path: Path) -> dict[str, str]:
    """utt → predicted language from ``hyps.jsonl``; utterances without one are left out."""
    fix = _FIX_DECODE.format(dir=path.parent)
    langs = {}
    for number, line in _lines(path):
        try:
            record = json.loads(line)
        except json.JSONDecodeError as e:
            raise DataError(f"{path}:{number}: not valid JSON ({e.msg}); {fix}") from None
        if not isinstance(record, dict) or not isinstance(record.get("id"), str):
            raise DataError(f'{path}:{number}: expected a JSON object with a string "id"; {fix}')
        lang = record.get("language")
        if lang is None:
            continue
        if not isinstance(lang, str):
            raise DataError(f'{path}:{number}: "language" must be a language code or null, got {lang!r}; {fix}')
        langs[record["id"]] = normalize_language(lang) or lang
    return langs


def read_stats(path: Path) -> dict:
    """``stats.json`` of a decode dir; empty when there is none."""
    if not path.is_file():
        return {}
    try:
        stats = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise DataError(f"{path}: not valid JSON ({e}); {_FIX_DECODE.format(dir=path.parent)}") from None
    if not isinstance(stats, dict):
        raise DataError(f"{path}: expected a JSON object; {_FIX_DECODE.format(dir=path.parent)}")
    return stats


@dataclass(frozen=True)
class DecodeInputs:
    """What a decode dir and its references hold, keyed by utterance id."""

    hyps: dict[str, str]
    refs: dict[str, str]
    ref_langs: dict[str, str]
    pred_langs: dict[str, str]
    stats: dict
    files: list[Path]


def load_inputs(decode_dir: Path, ref: Path | None = None, ref_lang: Path | None = None) -> DecodeInputs:
    """Read the hypotheses of ``decode_dir`` and the references (its own unless ``ref`` is given).

    Reference languages come from ``ref_lang``, else the ``utt2lang`` beside ``ref`` (a Kaldi
    data dir), else the decode dir's ``ref.utt2lang``; there may be none.
    """
    if not decode_dir.is_dir():
        raise DataError(f"{decode_dir}: no such decode directory; fix: run `mlkd decode` first, "
                        f"or give a decode_<set>_<method> directory inside a model directory")
    hyp_path = decode_dir / "hyp.text"
    _require_file(hyp_path, _FIX_DECODE.format(dir=decode_dir))
    lang_candidates = [decode_dir / "ref.utt2lang"]
    if ref is None:
        ref = decode_dir / "ref.text"
        _require_file(ref, "fix: pass --ref data/<set>/text (the decoded input had no transcripts)")
    else:
        _require_file(ref, "fix: pass the Kaldi text file of the references, e.g. --ref data/<set>/text")
        lang_candidates.insert(0, ref.parent / "utt2lang")
    if ref_lang is None:
        ref_lang = next((p for p in lang_candidates if p.is_file()), None)
    else:
        _require_file(ref_lang, "fix: pass the references' utt2lang, e.g. --ref-lang data/<set>/utt2lang")
    jsonl = decode_dir / "hyps.jsonl"
    stats_path = decode_dir / "stats.json"
    optional = [p for p in (ref_lang, jsonl, stats_path) if p is not None and p.is_file()]
    hyps, refs = read_text(hyp_path), read_text(ref)
    stats = read_stats(stats_path)
    if not refs:
        raise DataError(f"{ref}: no utterances; fix: pass the Kaldi text of the decoded set with --ref")
    if hyps and hyps.keys().isdisjoint(refs):
        raise DataError(f"{ref}: no utterance id in common with {hyp_path}; "
                        f"fix: pass the reference of the decoded set with --ref")
    return DecodeInputs(
        hyps=hyps,
        refs=refs,
        ref_langs=read_utt2lang(ref_lang) if ref_lang else {},
        pred_langs=read_predicted_languages(jsonl) if jsonl.is_file() and _predicts_language(stats) else {},
        stats=stats,
        files=[p.resolve() for p in [hyp_path, ref, *optional]],
    )


def _predicts_language(stats: dict) -> bool:
    """False when stats.json says the hyps' languages were given (forced, or a teacher's own), not predicted."""
    return stats.get("predicts_language") is not False


# ---------------------------------------------------------------------------- scoring


def score_inputs(decode_dir: Path, inputs: DecodeInputs) -> tuple[ScoreReport, list[UttScore]]:
    """Score every reference utterance; the report and the per-utterance scores."""
    utts = [
        score_utterance(utt, text, inputs.hyps.get(utt), inputs.ref_langs.get(utt),
                        inputs.pred_langs.get(utt) if utt in inputs.hyps else None)
        for utt, text in inputs.refs.items()
    ]
    overall, languages = score_languages(utts)
    num_parameters = inputs.stats.get("num_parameters")
    report = ScoreReport(
        decode_dir=str(decode_dir),
        model_name=inputs.stats.get("model_name") or decode_dir.resolve().parent.name,
        method=inputs.stats.get("method"),
        num_parameters=num_parameters if isinstance(num_parameters, int) else None,
        inputs=[str(p) for p in inputs.files],
        overall=overall,
        languages=languages,
        lid=score_lid(utts),
        missing=[u.utt_id for u in utts if u.hyp is None],
        extra=[utt for utt in inputs.hyps if utt not in inputs.refs],
    )
    return report, utts


def score_decode_dir(decode_dir: str | Path, ref: Path | None = None, ref_lang: Path | None = None) -> ScoreReport:
    """Score ``decode_dir`` and write errs.txt, wer_summary and score.json into it."""
    decode_dir = Path(decode_dir)
    inputs = load_inputs(decode_dir, ref, ref_lang)
    report, utts = score_inputs(decode_dir, inputs)
    _log_coverage(report, inputs)
    atomic_write_text(decode_dir / "errs.txt", format_errs(report, utts))
    atomic_write_text(decode_dir / "wer_summary", format_summary(report))
    atomic_write_text(decode_dir / "score.json", json.dumps(report.to_dict(), indent=2, ensure_ascii=False) + "\n")
    logger.info("%s: wrote errs.txt, wer_summary, score.json", decode_dir)
    return report


def _log_coverage(report: ScoreReport, inputs: DecodeInputs) -> None:
    if report.missing:
        logger.warning("%s: %d of %d reference utterances have no hypothesis (scored as all deletions): %s",
                       report.decode_dir, len(report.missing), report.overall.num_utts, _first(report.missing))
    if report.extra:
        logger.warning("%s: %s without a reference (ignored): %s",
                       report.decode_dir, _hypotheses(len(report.extra)), _first(report.extra))
    if not inputs.ref_langs:
        logger.warning("%s: no reference languages (ref.utt2lang or --ref-lang); "
                       "no per-language figures or LID accuracy", report.decode_dir)


def _hypotheses(n: int) -> str:
    return f"{n} hypothes{'is' if n == 1 else 'es'}"


def _first(ids: list[str]) -> str:
    return " ".join(ids[:_SHOWN_IDS]) + (" ..." if len(ids) > _SHOWN_IDS else "")


def load_or_score(decode_dir: str | Path) -> ScoreReport:
    """The decode dir's score.json when newer than every file it was computed from, else a fresh score."""
    decode_dir = Path(decode_dir)
    return _fresh_report(decode_dir / "score.json") or score_decode_dir(decode_dir)


def _fresh_report(path: Path) -> ScoreReport | None:
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        if data.get("format") != SCORE_FORMAT:
            return None
        report = ScoreReport.from_dict(data)
    except (ValueError, KeyError, TypeError, AttributeError):
        logger.debug("%s: unreadable, scoring again", path, exc_info=True)
        return None
    mtime = path.stat().st_mtime_ns
    inputs = [Path(p) for p in report.inputs]
    if any(not p.is_file() or p.stat().st_mtime_ns > mtime for p in inputs):
        return None
    logger.info("%s: up to date, reused", path)
    return report


# ---------------------------------------------------------------------------- outputs


def format_alignment(pairs: Iterable[tuple[str, str]]) -> str:
    """Correct units as they are, errors as ``(ref->hyp)`` with ``*`` for a gap."""
    return " ".join(r if r == h else f"({r or '*'}->{h or '*'})" for r, h in pairs)


def format_errs(report: ScoreReport, utts: Sequence[UttScore]) -> str:
    """errs.txt: overall figures, per-utterance alignments, missing ids, and the most common errors."""
    subs: Counter[tuple[str, str]] = Counter()
    dels: Counter[str] = Counter()
    ins: Counter[str] = Counter()
    details = []
    for u in utts:
        pairs = u.alignment()
        details.append(f"{u.utt_id}\t{u.lang or BLANK}\t{format_alignment(pairs)}")
        for r, h in pairs:
            if r and h and r != h:
                subs[r, h] += 1
            elif not h:
                dels[r] += 1
            elif not r:
                ins[h] += 1
    lines = [
        report.overall.words.kaldi_line("WER"),
        report.overall.chars.kaldi_line("CER"),
        "Search below for sections starting with PER-UTT DETAILS:, MISSING:, SUBSTITUTIONS:, DELETIONS:, INSERTIONS:",
        "",
        "PER-UTT DETAILS: utt-id, reference language, alignment (correct units as they are, errors as "
        "(ref->hyp), * for nothing); by character for languages scored by CER, else by word",
        *details,
        "",
        "MISSING: reference utterances without a hypothesis (scored as all deletions)",
        *report.missing,
        "",
        "SUBSTITUTIONS: count ref -> hyp",
        *(f"{n}\t{r} -> {h}" for (r, h), n in subs.most_common()),
        "",
        "DELETIONS: count ref",
        *(f"{n}\t{r}" for r, n in dels.most_common()),
        "",
        "INSERTIONS: count hyp",
        *(f"{n}\t{h}" for h, n in ins.most_common()),
    ]
    return "\n".join(lines) + "\n"


def format_summary(report: ScoreReport) -> str:
    """wer_summary: one Kaldi-style line per language and overall, LID accuracy and confusion."""
    lines = [f"# {report.decode_dir}: {report.overall.num_utts} reference utterances, "
             f"{len(report.missing)} without hypothesis (all deletions), "
             f"{_hypotheses(len(report.extra))} without reference (ignored)"]
    rows = [*report.languages.items(), ("all", report.overall)]
    width = max(len(name) for name, _ in rows)
    for name, s in rows:
        primary = f"primary {s.primary.upper()}" if s.primary else "primary —"
        lines.append(f"{name:<{width}}  {s.words.kaldi_line('WER')}  {s.chars.kaldi_line('CER')}  "
                     f"{primary}  {s.num_utts} utts")
    if report.lid:
        lid = report.lid
        lines += [f"%LID {percent(lid.accuracy)} [ {lid.correct} / {lid.num_utts} correct ]", "",
                  *_confusion_lines(lid)]
    return "\n".join(lines) + "\n"


def _confusion_lines(lid: LidScore) -> list[str]:
    """Plain-text confusion matrix, rows reference and columns predicted languages."""
    labels = sorted(set(lid.confusion) | {p for row in lid.confusion.values() for p in row})
    rows = [["ref\\hyp", *labels]]
    rows += [[ref, *(str(row.get(p, 0)) for p in labels)] for ref, row in lid.confusion.items()]
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return ["LID confusion (rows: reference language, columns: predicted language)",
            *("  ".join([row[0].ljust(widths[0]), *(c.rjust(w) for c, w in zip(row[1:], widths[1:]))])
              for row in rows)]


def report_table(report: ScoreReport) -> Table:
    """Rich table of one report: per language and overall, the primary metric marked."""
    title = " ".join(x for x in (report.model_name, report.method) if x)
    table = Table(title=f"{title}: {report.decode_dir}")
    for name in ("Language", "Utts", "%WER", "%CER", "Primary", "%LID"):
        table.add_column(name, justify="left" if name in ("Language", "Primary") else "right")
    for name, s in [*report.languages.items(), ("all", report.overall)]:
        lid = None
        if report.lid:
            lid = report.lid.accuracy if name == "all" else report.lid.language_accuracy(name)
        table.add_row(name, str(s.num_utts), percent(s.words.rate), percent(s.chars.rate),
                      s.primary.upper() if s.primary else BLANK, percent(lid))
    return table


# ---------------------------------------------------------------------------- comparison


@dataclass(frozen=True)
class ComparisonRow:
    label: str
    num_parameters: int | None
    rates: dict[str, float | None]  # language → primary error rate, for languages with hypotheses
    average: float | None  # mean of the primary rates; None unless the model covers every language
    lid_accuracy: float | None


@dataclass(frozen=True)
class Comparison:
    """Several decode dirs side by side: rows are models, columns languages."""

    languages: list[str]
    rows: list[ComparisonRow]
    metric: str = "primary"  # what the rates are: "primary" (per language), "wer" or "cer"

    def header(self) -> list[str]:
        def name(lang: str) -> str:
            return (primary_metric(lang) if self.metric == "primary" else self.metric).upper()

        average = "Avg %ER" if self.metric == "primary" else f"Avg %{self.metric.upper()}"
        return ["Model", "Params", *(f"{lang} %{name(lang)}" for lang in self.languages), average, "%LID"]

    def cells(self) -> list[list[str]]:
        return [[row.label, format_params(row.num_parameters),
                 *(percent(row.rates.get(lang)) for lang in self.languages),
                 percent(row.average), percent(row.lid_accuracy)] for row in self.rows]


def compare(reports: Sequence[ScoreReport], metric: str = "primary") -> Comparison:
    """Per language each model's error rate (``metric``: the language's primary one, "wer" or
    "cer"), its average over languages, LID accuracy and size.

    A language counts for a model when it has a hypothesis for at least one of its utterances;
    the average is the unweighted mean over the table's languages and is left blank for a model
    that does not cover all of them (a monolingual teacher).
    """
    covered = [{lang: s.rate(metric) for lang, s in r.languages.items() if s.num_missing < s.num_utts}
               for r in reports]
    languages = sorted({lang for rates in covered for lang in rates})
    names = Counter(r.model_name for r in reports)
    rows = []
    for r, rates in zip(reports, covered):
        values = [rates.get(lang) for lang in languages]
        average = sum(values) / len(values) if values and None not in values else None
        label = r.model_name if names[r.model_name] == 1 else f"{r.model_name} ({Path(r.decode_dir).name})"
        rows.append(ComparisonRow(label, r.num_parameters, rates, average, r.lid.accuracy if r.lid else None))
    return Comparison(languages, rows, metric)


def format_params(n: int | None) -> str:
    """12345678 → ``12.3M``."""
    if n is None:
        return BLANK
    for scale, suffix in ((1e9, "B"), (1e6, "M"), (1e3, "K")):
        if n >= scale:
            return f"{n / scale:.1f}{suffix}"
    return str(n)


def comparison_markdown(comparison: Comparison) -> str:
    header = comparison.header()
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join([":---", *["---:"] * (len(header) - 1)]) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in comparison.cells()]
    return "\n".join(lines) + "\n"


def comparison_table(comparison: Comparison) -> Table:
    title = {"primary": "Error rates (%): WER, or CER for languages written without spaces",
             "wer": "Word error rates (%)", "cer": "Character error rates (%, spaces removed)"}[comparison.metric]
    table = Table(title=title)
    for i, name in enumerate(comparison.header()):
        table.add_column(name, justify="left" if i == 0 else "right")
    for row in comparison.cells():
        table.add_row(*row)
    return table
