"""Scoring a decode dir: ``score.json``, ``errs.txt`` and ``wer_summary``, through the stage protocol.

:func:`score_decode_dir` aligns every reference utterance with its hypothesis, sums the
errors per language and overall (sums of errors over sums of reference lengths, not means
of ratios), and writes its files into the decode dir, recorded in ``stage.score.json``: a
second scoring of unchanged files is up to date, and a re-decoded dir is scored again.
Texts are compared verbatim (no case or punctuation normalization). A reference utterance
without a hypothesis is scored as all deletions; a hypothesis without a reference is
ignored. Error rates and accuracies in score.json are fractions, not percentages.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from mlkd_cli.score.confusion import CONFUSION_PNG, plot_confusion
from mlkd_cli.score.metrics import SCORE_FORMAT, ScoreReport, UttScore, score_languages, score_lid, score_utterance
from mlkd_cli.score.reading import DecodeInputs, load_inputs
from mlkd_cli.score.tables import format_errs, format_summary, hypotheses
from mlkd_cli.stage import Stage, file_input, new_record

logger = logging.getLogger("mlkd")

SCORE_RECORD = "stage.score.json"
_SHOWN_IDS = 5


def score_inputs(decode_dir: Path, inputs: DecodeInputs) -> tuple[ScoreReport, list[UttScore]]:
    """Score every reference utterance; the report and the per-utterance scores.

    Utterances in languages the model was not trained on (stats.json's ``languages``) count
    for language-ID rejection only, not for error rates.
    """
    utts = [
        score_utterance(utt, text, inputs.hyps.get(utt), inputs.ref_langs.get(utt),
                        inputs.pred_langs.get(utt) if utt in inputs.hyps else None)
        for utt, text in inputs.refs.items()
    ]
    trained = [lang for lang in inputs.stats.get("languages") or [] if lang]
    lid = score_lid(utts, trained)
    if trained:
        unseen = sorted({u.lang for u in utts if u.lang and u.lang not in trained})
        if unseen:
            logger.info("%s: utterances in %s, which the model was not trained on, count for language-ID "
                        "rejection only", decode_dir, ", ".join(unseen))
        utts = [u for u in utts if not u.lang or u.lang in trained]
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
        lid=lid,
        missing=[u.utt_id for u in utts if u.hyp is None],
        extra=[utt for utt in inputs.hyps if utt not in inputs.refs],
    )
    return report, utts


def score_decode_dir(decode_dir: str | Path, ref: Path | None = None, ref_lang: Path | None = None,
                     force: bool = False, argv: list[str] | None = None) -> ScoreReport:
    """Score ``decode_dir`` into its score.json, errs.txt and wer_summary (reused when up to date)."""
    decode_dir = Path(decode_dir)
    inputs = load_inputs(decode_dir, ref, ref_lang)
    record = new_record("score", {str(p): file_input(p) for p in inputs.files}, {"format": SCORE_FORMAT}, argv)
    with Stage(decode_dir, record, force=force, on_change="redo", record_name=SCORE_RECORD).run() as out:
        if out is None:
            return ScoreReport.from_dict(json.loads((decode_dir / "score.json").read_text(encoding="utf-8")))
        report, utts = score_inputs(decode_dir, inputs)
        _log_coverage(report, inputs)
        (out / "errs.txt").write_text(format_errs(report, utts), encoding="utf-8")
        (out / "wer_summary").write_text(format_summary(report), encoding="utf-8")
        (out / "score.json").write_text(json.dumps(report.to_dict(), indent=2, ensure_ascii=False) + "\n",
                                        encoding="utf-8")
        if report.lid:
            plot_confusion(report.lid, out / CONFUSION_PNG, f"{report.model_name}: {decode_dir.name}")
    logger.info("%s: wrote errs.txt, wer_summary, score.json%s", decode_dir, f", {CONFUSION_PNG}" if report.lid else "")
    return report


def _log_coverage(report: ScoreReport, inputs: DecodeInputs) -> None:
    if report.missing:
        logger.warning("%s: %d of %d reference utterances have no hypothesis (scored as all deletions): %s",
                       report.decode_dir, len(report.missing), report.overall.num_utts, _first(report.missing))
    if report.extra:
        logger.warning("%s: %s without a reference (ignored): %s",
                       report.decode_dir, hypotheses(len(report.extra)), _first(report.extra))
    if not inputs.ref_langs:
        logger.warning("%s: no reference languages (ref.utt2lang or --ref-lang); "
                       "no per-language figures or LID accuracy", report.decode_dir)


def _first(ids: list[str]) -> str:
    return " ".join(ids[:_SHOWN_IDS]) + (" ..." if len(ids) > _SHOWN_IDS else "")
