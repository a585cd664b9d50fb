"""`mlkd teacher-info [--data DIR] TEACHER`."""

from __future__ import annotations

from pathlib import Path

import click


@click.command(context_settings={"show_default": True})
@click.option("--data", "data_dir", type=click.Path(file_okay=False, path_type=Path),
              help="A data dir made by `mlkd prepare`: map the teacher's vocabulary onto its tokenizer and test-run it.")
@click.option("--min-vocab-coverage", type=float, default=0.95,
              help="Posterior KD needs the teacher's tokens to cover this share of the language's characters.")
@click.argument("teacher")
def teacher_info(data_dir: Path | None, min_vocab_coverage: float, teacher: str) -> None:
    """Show what mlkd sees in TEACHER: kind, language, parameters, input, frame shift, layers,
    vocabulary (and its map onto the student's, with --data) and the KD terms it can serve.

    TEACHER is spelled as for `mlkd distill`: DIR (an mlkd experiment), LANG=hf:DIR (a Hugging
    Face CTC checkpoint), LANG=onnx:DIR or LANG=onnx-<loader>:DIR (a sherpa-onnx model; loaders
    zipformer-ctc, nemo-ctc, wenet-ctc).

    \b
    Example:
      mlkd teacher-info --data data de=hf:models/wav2vec2-xlsr-de
    """
    from mlkd_cli.distill.info import teacher_report

    rows = teacher_report(teacher, data_dir, min_vocab_coverage)
    width = max(len(name) for name, _ in rows)
    for name, value in rows:
        click.echo(f"{name:<{width}}  {value}")
