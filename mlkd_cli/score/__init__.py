"""Scoring of decode directories: WER, CER, language-ID accuracy, and comparison tables.

``alignment`` counts edit operations, ``metrics`` sums them per utterance and language
(and language-ID confusion) into a ``ScoreReport``, ``reading`` reads decode dirs and references, ``report``
scores a decode dir through the stage protocol, ``tables`` renders the results.
"""

from mlkd_cli.score.alignment import BLANK, ErrorCounts, characters, count_errors, percent, primary_metric, words
from mlkd_cli.score.metrics import (SCORE_FORMAT, LangScore, LidScore, ScoreReport, UttScore, score_languages,
                                    score_lid, score_utterance, summarize)
from mlkd_cli.score.reading import load_inputs, read_predicted_languages, read_text, read_utt2lang
from mlkd_cli.score.report import score_decode_dir, score_inputs
from mlkd_cli.score.tables import (
    Comparison,
    ConditionComparison,
    compare,
    compare_conditions,
    comparison_markdown,
    comparison_table,
    condition,
    format_alignment,
    format_errs,
    format_params,
    format_summary,
    report_table,
)

__all__ = [
    "BLANK", "Comparison", "ConditionComparison", "ErrorCounts", "LangScore", "LidScore", "SCORE_FORMAT", "ScoreReport", "UttScore",
    "characters", "compare", "compare_conditions", "comparison_markdown", "comparison_table", "condition", "count_errors", "format_alignment",
    "format_errs", "format_params", "format_summary", "load_inputs", "percent", "primary_metric",
    "read_predicted_languages", "read_text", "read_utt2lang", "report_table", "score_decode_dir", "score_inputs",
    "score_languages", "score_lid", "score_utterance", "summarize", "words",
]
