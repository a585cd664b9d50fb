"""`mlkd score DECODE_DIR...` and `mlkd score --compare DECODE_DIR...`."""

from __future__ import annotations

import sys
from pathlib import Path

import click


@click.command(context_settings={"show_default": True})
@click.argument("decode_dirs", nargs=-1, required=True, metavar="DECODE_DIR...", type=click.Path(path_type=Path))
@click.option("--ref", type=click.Path(path_type=Path),
              help="Kaldi text of the references  [default: DECODE_DIR/ref.text]")
@click.option("--ref-lang", type=click.Path(path_type=Path),
              help="utt2lang of the references  [default: utt2lang beside --ref, else DECODE_DIR/ref.utt2lang]")
@click.option("--compare", is_flag=True,
              help="One table of all DECODE_DIRs: primary error rate per language, average, LID accuracy, "
                   "parameters (reuses each up-to-date score.json); with several decoded sets (test, "
                   "test_noisy, ...) one such table per set, then every model's average on every set.")
@click.option("--markdown", is_flag=True, help="With --compare: print the table as Markdown.")
@click.option("--metric", type=click.Choice(["primary", "cer", "wer"]), default="primary",
              help="With --compare: the rate shown per language (primary: CER for languages written without spaces, else WER).")
@click.option("-f", "--force", is_flag=True, help="Score again even when score.json is up to date.")
def score(decode_dirs: tuple[Path, ...], ref: Path | None, ref_lang: Path | None, compare: bool,
          markdown: bool, metric: str, force: bool) -> None:
    """Score each DECODE_DIR: WER and CER per language and overall, LID accuracy.

    Writes errs.txt (per-utterance alignments), wer_summary (Kaldi-style %WER/%CER lines) and
    score.json into DECODE_DIR. CER (spaces removed) is the primary figure of languages written
    without spaces (zh, ja, th, ...), WER of the others.

    \b
    Examples:
      mlkd score exp/student_ft/decode_test_greedy
      mlkd score --compare --markdown exp/teacher_*/decode_test_greedy exp/student_ft/decode_test_greedy
    """
    from rich.console import Console

    from mlkd_cli.score import (
        compare as compare_reports,
        compare_conditions,
        comparison_markdown,
        comparison_table,
        condition,
        report_table,
        score_decode_dir,
    )

    if markdown and not compare:
        raise click.UsageError("--markdown needs --compare")
    if compare and (ref or ref_lang):
        raise click.UsageError("--compare scores each decode dir against its own reference; drop --ref/--ref-lang")
    argv = ["mlkd", *sys.argv[1:]]
    console = Console() if sys.stdout.isatty() else Console(width=200)  # logs and pipes: never truncate names
    if not compare:
        for decode_dir in decode_dirs:
            console.print(report_table(score_decode_dir(decode_dir, ref, ref_lang, force=force, argv=argv)))
        return
    by_condition: dict[str, list] = {}
    for d in decode_dirs:
        report = score_decode_dir(d, force=force, argv=argv)
        by_condition.setdefault(condition(report), []).append(report)
    comparisons = {name: compare_reports(reports, metric) for name, reports in by_condition.items()}
    tables = list(comparisons.items())
    if len(comparisons) > 1:
        tables.append(("every condition", compare_conditions(comparisons)))
    for name, comparison in tables:
        shown = name if len(comparisons) > 1 else None
        if markdown:
            click.echo((f"\n**{shown}**\n\n" if shown else "") + comparison_markdown(comparison), nl=False)
        else:
            console.print(comparison_table(comparison, shown))
