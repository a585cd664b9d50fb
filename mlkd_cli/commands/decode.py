"""`mlkd decode MODEL_DIR INPUT...`."""

from __future__ import annotations

import sys
from pathlib import Path

import click


@click.command(context_settings={"show_default": True})
@click.argument("model_dir", type=click.Path(file_okay=False, path_type=Path))
@click.argument("inputs", nargs=-1, required=True)
@click.option("--method", type=click.Choice(["ctc-greedy", "ctc-prefix-beam", "wfst"]), default="ctc-greedy")
@click.option("--beam", type=int, default=8, help="Prefix beam width.")
@click.option("--lang", default="", help="Force this language (and its token inventory) instead of predicting it: "
              "a code or an English name (de, deu, de-DE, German).")
@click.option("--max-duration", type=float, default=200.0, help="Seconds of audio per batch.")
@click.option("--chunk", type=float, default=30.0, help="Decode longer inputs in windows of this many seconds.")
@click.option("--overlap", type=float, default=2.0, help="Overlap of those windows, in seconds.")
@click.option("--threads", type=int, default=0, help="Torch threads (0: torch's default).")
@click.option("--int8", "int8", is_flag=True, help="Dynamic int8 quantization of the linear layers (CPU).")
@click.option("--graph", type=click.Choice(["ctc", "lexicon", "lm"]), default="lm",
              help="WFST graph: CTC topology only, + word lexicon, + word n-gram LM (per language, from the training text).")
@click.option("--lm-order", type=int, default=3, help="Order of the Kneser-Ney word n-gram.")
@click.option("--wfst-beam", type=float, default=16.0, help="WFST search beam.")
@click.option("--max-active", type=int, default=7000, help="WFST search: most active states per frame.")
@click.option("--acoustic-scale", type=float, default=1.0, help="WFST search: weight of the log-probs vs the graph.")
@click.option("--unknown-threshold", type=float,
              help="Write `unknown` for speech whose --unknown-score is below this (lid 0: never)  "
                   "[default: from OUTPUT_DIR/lid_calibration.json, made by `mlkd calibrate-lid`, if any]")
@click.option("--unknown-score", type=click.Choice(["lid", "lid-x-ctc", "energy"]), default="lid",
              help="With --unknown-threshold: the language posterior, that times the transcript's CTC confidence, "
                   "or the log-sum-exp of the language-ID logits.")
@click.option("--streaming", is_flag=True, help="Feed the audio chunk by chunk as it would arrive (a streaming model): "
              "partial results go to stdout as JSON lines.")
@click.option("--chunk-ms", type=int, help="Chunk size of a streaming model, in ms (a multiple of 40)  "
              "[default: the largest it was trained with]")
@click.option("--onnx", type=click.Path(dir_okay=False, path_type=Path),
              help="With --streaming: decode with this export of the model (`mlkd export --streaming`, model.onnx or "
                   "model.int8.onnx) in onnxruntime, as sherpa-onnx's OnlineRecognizer runs it: the text a device gets.")
@click.option("--sample-rate", type=click.IntRange(min=1), help="Sample rate of the raw PCM on standard input (-)  [default: 16000]")
@click.option("--min-pause", type=float, default=0.5,
              help="Greedy search: a pause of this many seconds (blank frames) ends a segment.")
@click.option("--max-segment", type=float, default=15.0,
              help="Greedy search: longest segment, in seconds (a longer one is split at its longest pause).")
@click.option("--format", "output_format", type=click.Choice(["tsv", "ctm", "srt", "vtt", "jsonl"]), default="tsv",
              help="What is printed for audio files: path<TAB>language<TAB>text, CTM word times (Kaldi, sclite), "
                   "SRT or WebVTT subtitles of one file, or hyps.jsonl's records (segments and word times).")
@click.option("--name", help="Name of the decode dir: decode_<name>_<method> (default: from the inputs).")
@click.option("-o", "--output-dir", type=click.Path(file_okay=False, path_type=Path),
              help="Where decode_<name>_<method>/ (and WFST graphs) go, e.g. for a read-only model dir  [default: MODEL_DIR]")
@click.option("--graph-dir", type=click.Path(file_okay=False, path_type=Path),
              help="Cache of WFST graphs  [default: OUTPUT_DIR/graph]")
@click.option("-f", "--force", is_flag=True, help="Decode again over a decode dir of another model, inputs or settings.")
def decode(model_dir: Path, inputs: tuple[str, ...], method: str, beam: int, lang: str, max_duration: float,
           chunk: float, overlap: float, threads: int, int8: bool, graph: str, lm_order: int, wfst_beam: float,
           max_active: int, acoustic_scale: float, unknown_threshold: float | None, unknown_score: str,
           streaming: bool, chunk_ms: int | None, onnx: Path | None, sample_rate: int | None, min_pause: float,
           max_segment: float, output_format: str, name: str | None,
           output_dir: Path | None, graph_dir: Path | None, force: bool) -> None:
    """Transcribe INPUTs (cuts manifests, Kaldi data dirs, audio files, globs, list files of
    audio paths) with the model of MODEL_DIR; results go to MODEL_DIR/decode_<name>_<method>/
    (or OUTPUT_DIR/...). A decode of the same model, inputs and settings is up to date and is
    not redone; MODEL_DIR is only read when --output-dir is given.

    A list file (.list, .lst, .txt) names one audio file per line (# starts a comment);
    relative paths in it are relative to the current directory, as on the command line,
    not to the list file.

    A streaming model (one trained with a `streaming:` model config) decodes with --streaming
    chunk by chunk, as audio arrives: each change of the transcript or the predicted language
    is printed as a JSON line {"id", "time" (seconds of audio heard), "text", "language",
    "final": false}, and each utterance ends with its final result ("final": true, with
    "language_settled": the second from which the language stayed the same). `-` reads
    16-bit mono PCM (raw, or WAV as arecord writes it) from standard input; nothing is
    written to disk then. Without --streaming a streaming model decodes each utterance at
    once with the same chunked attention (the same posteriors); --chunk-ms picks the chunk.
    With --onnx, the streaming decode runs an export of the model as sherpa-onnx does (its
    features, chunking and end of stream; the chunk size is the export's), giving the text
    sherpa-onnx gives on a device (an int8 graph's up to the integer kernels of onnxruntime
    builds).

    A model calibrated by `mlkd calibrate-lid` writes `unknown` as the language (and no text)
    for speech in none of its languages; its posteriors stay in hyps.jsonl.

    For audio files each result is also printed as `path<TAB>language<TAB>text`
    (with --streaming: as its final JSON line). An input
    that cannot be decoded (no such file, not a regular file, empty, not audio, too short)
    is reported on stderr as `skipped PATH: reason` and the rest is decoded (exit status 0);
    if no input at all can be decoded, the command fails (exit status 1).

    \b
    Examples:
      mlkd decode exp/student data/manifests/test_cuts.jsonl.gz
      mlkd decode exp/student 'recordings/*.flac' --method ctc-prefix-beam
      mlkd decode exp/student call.wav --lang de
      arecord -f S16_LE -r 16000 -c 1 | mlkd decode --streaming --chunk-ms 320 exp/student -
    """
    import dataclasses
    import json
    from mlkd_cli.data.language import normalize_language
    from mlkd_cli.decode.decoder import DecodeConfig
    from mlkd_cli.decode.inputs import resolve_inputs
    from mlkd_cli.decode.stage import decode_stdin, run_decode
    from mlkd_cli.decode.streaming import STDIN, Partial
    from mlkd_cli.errors import ConfigError

    # Names and tags (German, deu, de-DE) become the code the model knows; the decoder refuses
    # what is still unknown, listing the model's languages.
    lang = normalize_language(lang) or lang
    config = DecodeConfig(method=method, beam=beam, lang=lang, max_duration=max_duration, chunk=chunk,
                          overlap=overlap, threads=threads, quantize="int8" if int8 else "", graph=graph,
                          lm_order=lm_order, wfst_beam=wfst_beam, max_active=max_active, acoustic_scale=acoustic_scale,
                          unknown_threshold=unknown_threshold, unknown_score=unknown_score, chunk_ms=chunk_ms,
                          streaming=streaming, onnx=str(onnx or ""), min_pause=min_pause, max_segment=max_segment)
    if output_format != "tsv" and (streaming or method != "ctc-greedy"):
        raise ConfigError(f"--format {output_format}: word times come from the greedy CTC alignment of a whole "
                          "input; decode with --method ctc-greedy, without --streaming")

    def print_partial(partial) -> None:
        line = dataclasses.asdict(partial)
        if not partial.final:
            del line["language_settled"]
        click.echo(json.dumps(line, ensure_ascii=False))

    if STDIN in inputs:
        if inputs != (STDIN,) or not streaming:
            raise ConfigError("standard input (-) is decoded alone and with --streaming: "
                              "mlkd decode --streaming MODEL_DIR -")
        result = decode_stdin(model_dir, config, sys.stdin.buffer, sample_rate, print_partial)
        print_partial(Partial(result.id, result.duration, result.text, result.language, True, result.language_settled))
        return
    if sample_rate is not None:
        raise ConfigError("--sample-rate is for raw audio on standard input (-); files say their own rate")
    resolved = resolve_inputs(list(inputs))
    summary = run_decode(model_dir, resolved, config, name=name, argv=["mlkd", *sys.argv[1:]], output_dir=output_dir,
                         graph_dir=graph_dir, force=force, on_partial=print_partial if streaming else None)
    if streaming:
        for r in summary.results:
            print_partial(Partial(r.id, r.duration, r.text, r.language, True, r.language_settled))
    elif resolved.audio_files:
        _print_results([r for r in summary.results if r.source], output_format)
    for failure in summary.failed:
        click.echo(f"skipped {failure['input']}: {failure['error']}", err=True)
    click.echo(f"real-time factor {summary.rtf:.4f} ({summary.audio_seconds:.1f} s of audio); "
               f"results in {summary.out_dir}", err=True)


def _print_results(results, output_format: str) -> None:
    """Audio files' results on stdout in ``output_format`` (see --format)."""
    import dataclasses
    import json

    from mlkd_cli.decode.timing import ctm_lines, subtitles
    from mlkd_cli.errors import ConfigError

    if output_format in ("srt", "vtt"):
        if len(results) != 1:
            raise ConfigError(f"--format {output_format}: subtitles are of one file, and {len(results)} were decoded; "
                              "decode one file at a time (results of all are in the decode dir's hyps.jsonl)")
        click.echo(subtitles(results[0].segments or [], output_format), nl=False)
    for r in results:
        if output_format == "tsv":
            click.echo(f"{r.source}\t{r.language or ''}\t{r.text}")
        elif output_format == "ctm":
            for line in ctm_lines(r.id, r.segments or []):
                click.echo(line)
        elif output_format == "jsonl":
            click.echo(json.dumps({k: v for k, v in dataclasses.asdict(r).items() if v is not None}, ensure_ascii=False))
