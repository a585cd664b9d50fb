"""What scoring shows: errs.txt, wer_summary, rich tables, and the side-by-side comparison."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

from rich.table import Table

from mlkd_cli.score.alignment import BLANK, percent, primary_metric
from mlkd_cli.score.confusion import confusion_labels
from mlkd_cli.data.language import UNKNOWN
from mlkd_cli.score.metrics import LidScore, ScoreReport, UttScore


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
             f"{hypotheses(len(report.extra))} without reference (ignored)"]
    rows = [*report.languages.items(), ("all", report.overall)]
    width = max(len(name) for name, _ in rows)
    for name, s in rows:
        primary = f"primary {s.primary.upper()}" if s.primary else "primary —"
        lines.append(f"{name:<{width}}  {s.words.kaldi_line('WER')}  {s.chars.kaldi_line('CER')}  "
                     f"{primary}  {s.num_utts} utts")
    if report.lid:
        lid = report.lid
        lines += [f"%LID {percent(lid.accuracy)} [ {lid.correct} / {lid.num_utts} correct ]"]
        if (rejection := rejection_line(lid)) is not None:
            lines.append(rejection)
        lines += ["", *_confusion_lines(lid)]
    return "\n".join(lines) + "\n"


def rejection_line(lid: LidScore) -> str | None:
    """How often speech was flagged ``unknown``: wrongly (trained languages) and rightly (unseen ones)."""
    if lid.unseen_rejection is None and not lid.false_rejection:
        return None
    unseen = (f"{percent(lid.unseen_rejection)}% of {lid.num_unseen} unseen-language utterances"
              if lid.unseen_rejection is not None else "no unseen-language utterances")
    return (f"rejected as unknown: {unseen}; {percent(lid.false_rejection)}% of {lid.num_utts} "
            "trained-language utterances (wrongly)")


def _confusion_lines(lid: LidScore) -> list[str]:
    """Plain-text confusion matrix, rows reference and columns predicted languages (``unknown`` last)."""
    refs, labels = confusion_labels(lid)
    if not any(UNKNOWN in row for row in lid.confusion.values()):
        labels = labels[:-1]
    rows = [["ref\\hyp", *labels]]
    rows += [[ref, *(str(lid.confusion[ref].get(p, 0)) for p in labels)] for ref in refs]
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
    if report.lid and (rejection := rejection_line(report.lid)) is not None:
        table.caption = rejection
    return table


# ---------------------------------------------------------------------------- comparison


@dataclass(frozen=True)
class ComparisonRow:
    label: str
    num_parameters: int | None
    rates: dict[str, float | None]  # language → primary error rate, for languages with hypotheses
    average: float | None  # mean of the primary rates; None unless the model covers every language
    lid_accuracy: float | None
    false_rejection: float | None = None  # trained-language utterances flagged unknown
    unseen_rejection: float | None = None  # unseen-language utterances flagged unknown


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
        rejection = ["%Unseen→unk", "%Trained→unk"] if self.has_rejection else []
        return ["Model", "Params", *(f"{lang} %{name(lang)}" for lang in self.languages), average, "%LID", *rejection]

    @property
    def has_rejection(self) -> bool:
        """Some decode dir holds speech in languages its model was not trained on."""
        return any(row.unseen_rejection is not None for row in self.rows)

    def cells(self) -> list[list[str]]:
        return [[row.label, format_params(row.num_parameters),
                 *(percent(row.rates.get(lang)) for lang in self.languages),
                 percent(row.average), percent(row.lid_accuracy),
                 *([percent(row.unseen_rejection), percent(row.false_rejection)] if self.has_rejection else [])]
                for row in self.rows]


def compare(reports: Sequence[ScoreReport], metric: str = "primary") -> Comparison:
    """Per language each model's error rate (``metric``: the language's primary one, "wer" or
    "cer"), its average over languages, LID accuracy, size and, where the decode dirs hold
    speech of unseen languages, how much of it and of the trained languages became ``unknown``.

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
        lid = r.lid
        rows.append(ComparisonRow(label, r.num_parameters, rates, average, lid.accuracy if lid else None,
                                  lid.false_rejection if lid else None, lid.unseen_rejection if lid else None))
    return Comparison(languages, rows, metric)


def condition(report: ScoreReport) -> str:
    """The decoded set's name, from ``decode_<name>_<method>...``: what ``--compare`` groups by."""
    name = Path(report.decode_dir).name.removeprefix("decode_")
    return name.split(f"_{report.method}")[0] if report.method else name.rpartition("_")[0] or name


@dataclass(frozen=True)
class ConditionComparison:
    """Each model's average error rate on each condition (test, test_noisy, ...)."""

    conditions: list[str]
    models: list[str]
    cells: dict[tuple[str, str], str]  # (model, condition) → shown rate
    metric: str = "primary"

    def header(self) -> list[str]:
        rate = "%ER" if self.metric == "primary" else f"%{self.metric.upper()}"
        return ["Model", *(f"{c} avg {rate}" for c in self.conditions)]

    def rows(self) -> list[list[str]]:
        return [[model, *(self.cells.get((model, c), BLANK) for c in self.conditions)] for model in self.models]


def compare_conditions(by_condition: dict[str, Comparison]) -> ConditionComparison:
    """One row per model: its average over each condition's languages; a model that covers only
    some of them (a teacher) shows the mean over its own, with the languages named."""
    cells: dict[tuple[str, str], str] = {}
    models: list[str] = []
    for name, comparison in by_condition.items():
        for row in comparison.rows:
            models += [row.label] if row.label not in models else []
            if row.average is not None:
                cells[row.label, name] = percent(row.average)
            elif row.rates:
                own = [v for v in row.rates.values() if v is not None]
                cells[row.label, name] = f"{percent(sum(own) / len(own))} ({' '.join(sorted(row.rates))})" if own else BLANK
    metric = next(iter(by_condition.values())).metric
    return ConditionComparison(list(by_condition), models, cells, metric)


def format_params(n: int | None) -> str:
    """12345678 → ``12.3M``."""
    if n is None:
        return BLANK
    for scale, suffix in ((1e9, "B"), (1e6, "M"), (1e3, "K")):
        if n >= scale:
            return f"{n / scale:.1f}{suffix}"
    return str(n)


def _cells(comparison: Comparison | ConditionComparison) -> list[list[str]]:
    return comparison.cells() if isinstance(comparison, Comparison) else comparison.rows()


def comparison_markdown(comparison: Comparison | ConditionComparison) -> str:
    header = comparison.header()
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join([":---", *["---:"] * (len(header) - 1)]) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in _cells(comparison)]
    return "\n".join(lines) + "\n"


def comparison_table(comparison: Comparison | ConditionComparison, condition: str | None = None) -> Table:
    """The table of a comparison; ``condition`` names the decoded set in the title."""
    title = {"primary": "Error rates (%): WER, or CER for languages written without spaces",
             "wer": "Word error rates (%)", "cer": "Character error rates (%, spaces removed)"}[comparison.metric]
    if isinstance(comparison, ConditionComparison):
        title += ", averaged over each condition's languages"
    table = Table(title=f"{title}: {condition}" if condition else title)
    for i, name in enumerate(comparison.header()):
        table.add_column(name, justify="left" if i == 0 else "right")
    for row in _cells(comparison):
        table.add_row(*row)
    return table


def hypotheses(n: int) -> str:
    return f"{n} hypothes{'is' if n == 1 else 'es'}"
