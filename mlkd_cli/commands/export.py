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
@click.option("--streaming", is_flag=True,
              help="Export a streaming model chunk by chunk for sherpa-onnx's online recognizer "
                   "(OnlineRecognizer.from_wenet_ctc)  [default out dir: MODEL_DIR/export_streaming_<ms>ms]")
@click.option("--chunk-ms", type=int, metavar="N",
              help="With --streaming: the chunk size in ms, a multiple of 40 that divides the model's left context  "
                   "[default: the largest chunk size the model was trained with]")
def export(model_dir: Path, out_dir: Path | None, int8: bool, tokens: Path | None, force: bool, streaming: bool,
           chunk_ms: int | None) -> None:
    """Export MODEL_DIR's model (config.yaml + final.pt) to ONNX for sherpa-onnx.

    The graph is checked against the PyTorch model with onnxruntime before it replaces
    anything in the output dir. sherpa-onnx's offline CTC recognizer loads it and computes
    the same fbank features as mlkd, so it transcribes audio files as `mlkd decode` does.

    \b
    Example:
      mlkd export exp/student_ft --int8
      python3 -c 'import sherpa_onnx; sherpa_onnx.OfflineRecognizer.from_zipformer_ctc(
          model="exp/student_ft/export/model.onnx", tokens="exp/student_ft/export/tokens.txt")'

    A streaming model (`streaming:` in its config) exported with --streaming runs in
    sherpa-onnx's online CTC recognizer, one chunk of --chunk-ms at a time, and computes
    what `mlkd_cli.models.streaming.ModelStream` does:

    \b
      mlkd export exp/student_stream --streaming --chunk-ms 320
      python3 -c 'import sherpa_onnx; sherpa_onnx.OnlineRecognizer.from_wenet_ctc(
          model="exp/student_stream/export_streaming_320ms/model.onnx",
          tokens="exp/student_stream/export_streaming_320ms/tokens.txt", chunk_size=8, num_left_chunks=4)'

    chunk_size is --chunk-ms / 40 and num_left_chunks the model's left context / --chunk-ms
    (both are also in the model's metadata).
    """
    import sys

    from mlkd_cli.errors import ConfigError
    from mlkd_cli.export.offline import export_experiment

    if streaming:
        _export_streaming(model_dir, out_dir, tokens, force, chunk_ms, int8, ["mlkd", *sys.argv[1:]])
        return
    if chunk_ms is not None:
        raise ConfigError("--chunk-ms applies to streaming exports only; add --streaming")

    result = export_experiment(model_dir, out_dir, int8=int8, tokens=tokens, force=force, argv=["mlkd", *sys.argv[1:]])
    if result is None:
        click.echo(f"{out_dir or model_dir / 'export'} is up to date")
        return
    click.echo(f"{result.model} (onnxruntime vs PyTorch: max |diff| {result.max_diff:.1e})")
    _echo_int8_and_tokens(result)


def _export_streaming(model_dir: Path, out_dir: Path | None, tokens: Path | None, force: bool, chunk_ms: int | None,
                      int8: bool, argv: list[str]) -> None:
    from mlkd_cli.export.streaming import export_streaming

    result = export_streaming(model_dir, chunk_ms, out_dir, force=force, argv=argv, tokens=tokens, int8=int8)
    if result is None:
        default = model_dir / f"export_streaming_{chunk_ms}ms" if chunk_ms else f"{model_dir}'s streaming export"
        click.echo(f"{out_dir or default} is up to date")
        return
    click.echo(f"{result.model} ({result.chunk_ms} ms chunks: chunk_size {result.chunk_size}, num_left_chunks "
               f"{result.num_left_chunks}; onnxruntime vs ModelStream: max |diff| {result.max_diff:.1e})")
    _echo_int8_and_tokens(result)


def _echo_int8_and_tokens(result) -> None:
    if result.int8_model is not None:
        click.echo(f"{result.int8_model} (max |diff| {result.int8_diff:.2f}, "
                   f"same best token on {100 * result.int8_agreement:.1f}% of frames)")
    click.echo(str(result.tokens))
