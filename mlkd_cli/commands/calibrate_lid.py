"""`mlkd calibrate-lid MODEL_DIR DEV_INPUT...`."""

from __future__ import annotations

import sys
from pathlib import Path

import click


@click.command(context_settings={"show_default": True})
@click.argument("model_dir", type=click.Path(file_okay=False, path_type=Path))
@click.argument("inputs", nargs=-1, required=True, metavar="DEV_INPUT...")
@click.option("--max-false-reject", type=float, default=0.005,
              help="Most dev utterances in the model's languages that may be flagged unknown (a fraction).")
@click.option("--score", type=click.Choice(["auto", "lid", "lid-x-ctc", "energy"]), default="auto",
              help="lid: the language posterior; lid-x-ctc: times the transcript's CTC confidence; energy: the "
                   "log-sum-exp of the language-ID logits; auto: the one that flags most unseen-language dev speech.")
@click.option("-o", "--output-dir", type=click.Path(file_okay=False, path_type=Path),
              help="Where lid_calibration.json (and the dev decodes) go  [default: MODEL_DIR]")
def calibrate_lid(model_dir: Path, inputs: tuple[str, ...], max_false_reject: float, score: str,
                  output_dir: Path | None) -> None:
    """Calibrate rejection of speech in languages MODEL_DIR was not trained on.

    Decodes the DEV_INPUTs (cuts manifests or Kaldi dirs with utt2lang): the threshold is the
    largest that flags at most --max-false-reject of their utterances in the model's
    languages; utterances in other languages (unseen ones, e.g. data/manifests/dev_unseen_cuts)
    show how much of such speech it flags. `mlkd decode` then writes `unknown` (with the
    language posteriors, and no transcript) for speech below it. Use dev data, never test data.

    \b
    Example:
      mlkd calibrate-lid exp/student data/manifests/dev_cuts.jsonl.gz data/manifests/dev_unseen_cuts.jsonl.gz
    """
    from mlkd_cli.decode.calibrate import calibrate_lid as calibrate

    result = calibrate(model_dir, list(inputs), max_false_reject, score, output_dir, argv=["mlkd", *sys.argv[1:]])
    unseen = result["candidates"][result["score"]]["unseen_flagged"]
    click.echo(f"{result['score']} < {result['threshold']:.4f} -> unknown: flags "
               f"{100 * result['candidates'][result['score']]['trained_flagged']:.2f}% of {result['trained_utts']} "
               f"trained-language and {'—' if unseen is None else f'{100 * unseen:.1f}%'} of {result['unseen_utts']} "
               "unseen-language dev utterances")
