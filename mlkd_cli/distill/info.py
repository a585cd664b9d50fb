"""`mlkd teacher-info`: what mlkd sees in a teacher, and which KD terms it can serve."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

from mlkd_cli.data.prepare import PreparedData, texts_by_language
from mlkd_cli.errors import DataError
from mlkd_cli.teachers.base import Teacher
from mlkd_cli.teachers.load import load_teacher, parse_teacher_arg
from mlkd_cli.teachers.vocab import VocabMap


def _vocabulary(teacher: Teacher) -> str:
    if teacher.tokens is None:
        return "the student's own tokenizer"
    blank = f", blank {teacher.tokens[teacher.blank]!r} (id {teacher.blank})" if teacher.blank is not None else ""
    return f"{len(teacher.tokens)} tokens{blank}"


def _layers(teacher: Teacher) -> str:
    widths = teacher.layer_widths
    if not widths:
        return "none exposed (black box)"
    if len(set(widths)) == 1:
        return f"{len(widths)} × {widths[0]}"
    return ", ".join(str(w) for w in widths)


def _map(vocab: VocabMap, lang: str) -> str:
    if vocab.identity:
        return "identity (the student's own tokens)"
    lacks = f"; teacher tokens the student lacks: {' '.join(vocab.missing)}" if vocab.missing else ""
    uncovered = f"; characters it cannot emit: {' '.join(vocab.uncovered)}" if vocab.uncovered else ""
    return f"covers {vocab.coverage:.1%} of the {lang!r} training text's characters{lacks}{uncovered}"


def teacher_report(arg: str, data_dir: Optional[Path] = None, min_coverage: float = 0.95) -> list[tuple[str, str]]:
    """(field, value) rows describing the teacher; with ``data_dir``, checked against that data."""
    from mlkd_cli.distill.ensemble import no_posteriors, own_cuts, smoke_test, vocab_map

    teacher = load_teacher(parse_teacher_arg(arg))
    shift = f"{teacher.frame_shift * 1000:g} ms" if teacher.frame_shift else "unknown (black box)"
    source = "16 kHz waveform" if teacher.input == "waveform" else "the student's fbank features"
    rows = [
        ("teacher", teacher.name),
        ("kind", teacher.kind + (f" ({type(teacher.model).__name__})" if teacher.kind == "hf" else "")),
        ("language", teacher.lang),
        ("parameters", f"{teacher.num_parameters:,}"),
        ("input", f"{source}; {teacher.normalization}"),
        ("frame shift", shift),
        ("layers", _layers(teacher)),
        ("vocabulary", _vocabulary(teacher)),
    ]
    terms = {"layer": "yes" if teacher.white_box else "no (black box)"}
    if data_dir is None:
        rows.append(("vocab map", "give --data DIR to map it onto a student's vocabulary"))
        terms["posterior"] = "depends on the student's tokenizer (give --data)" if teacher.white_box else "no (black box)"
    else:
        data = PreparedData(data_dir)
        cuts = data.cuts(data.config.train_set).to_eager()
        texts = texts_by_language(cuts)
        if teacher.lang not in texts:
            raise DataError(f"{data.root}: no {teacher.lang!r} training data for teacher {teacher.name} "
                            f"(languages: {', '.join(sorted(texts))})")
        vocab = vocab_map(teacher, data, texts[teacher.lang])
        rows.append(("vocab map", _map(vocab, teacher.lang)))
        refusal = no_posteriors(teacher, vocab, min_coverage)
        terms["posterior"] = f"no ({refusal})" if refusal else "yes"
        smoke_test(teacher, own_cuts(cuts, teacher.lang))
        rows.append(("test run", f"ran on the shortest {teacher.lang!r} training utterance of {data.root}"))
    terms["sequence"] = "yes (its transcripts)"
    rows.append(("KD terms", "; ".join(f"{name}: {value}" for name, value in terms.items())))
    return rows
