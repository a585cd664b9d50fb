"""`mlkd export MODEL_DIR`."""

from __future__ import annotations

from pathlib import Path

import click


@click.command(context_settings={"show_default": True})
@click.argument("model_dir", type=click.Path(file_okay=False, path_type=Path))
@click.option("-o", "--out-dir", type=click.Path(file_okay=False, path_type=Path),
              help="Where to write model.onnx and tokens.txt  [default: MODEL_DIR/export]")
@click.option("--int8", is_flag=True, help="Also write model.int8.onnx (dynamic int8 quantization).")
@click.option("--tokens", type=click.Path(dir_okay=False, path_type=Path),
              help="Token table (`symbol id` lines)  [default: MODEL_DIR/tokenizer/tokens.txt]")
@click.option("-f", "--force", is_flag=True, help="Export again over an export of another model or settings.")
def export(model_dir: Path, out_dir: Path | None, int8: bool, tokens: Path | None, force: bool) -> None:
    """Export MODEL_DIR's model (config.yaml + final.pt) to ONNX for sherpa-onnx.

    The graph is checked against the PyTorch model with onnxruntime before it replaces
    anything in the output dir. sherpa-onnx's offline CTC recognizer loads it and computes
    the same fbank features as mlkd, so it transcribes audio files as `mlkd decode` does.

    \b
    Example:
      mlkd export exp/student_ft --int8
      python3 -c 'import sherpa_onnx; sherpa_onnx.OfflineRecognizer.from_zipformer_ctc(
          model="exp/student_ft/export/model.onnx", tokens="exp/student_ft/export/tokens.txt")'
    """
    import sys

    from mlkd_cli.export import export_experiment

    result = export_experiment(model_dir, out_dir, int8=int8, tokens=tokens, force=force, argv=["mlkd", *sys.argv[1:]])
    if result is None:
        click.echo(f"{out_dir or model_dir / 'export'} is up to date")
        return
    click.echo(f"{result.model} (onnxruntime vs PyTorch: max |diff| {result.max_diff:.1e})")
    if result.int8_model is not None:
        click.echo(f"{result.int8_model} (max |diff| {result.int8_diff:.2f}, "
                   f"same best token on {100 * result.int8_agreement:.1f}% of frames)")
    click.echo(str(result.tokens))
