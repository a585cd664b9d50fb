"""The decode stage: model dir + inputs → ``<OUTPUT_DIR>/decode_<name>_<method>/``.

``OUTPUT_DIR`` is the model dir unless ``--output-dir`` says otherwise (a read-only or shared
model dir); WFST graphs are cached in ``<OUTPUT_DIR>/graph`` unless ``--graph-dir`` says so.
Outputs: ``hyp.text`` (Kaldi text), ``hyps.jsonl`` (id, text, language, language posteriors,
duration, processing time; the source file of an audio-file input; with greedy search the
segments and their word times), ``hyp.ctm`` (greedy search: word times), ``ref.text``/``ref.utt2lang`` when the inputs carry them,
``stats.json`` (model, method, parameters, real-time factor, failures), ``config.yaml`` and
``stage.json``; published as one set by the stage protocol, so a decode of the same model,
inputs and settings is up to date, and a failed run leaves an earlier decode intact.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import time
from pathlib import Path
from typing import Callable, Optional

import torch

from mlkd_cli.contracts import OUTPUT_FRAME_MS, SAMPLING_RATE
from mlkd_cli.config import dump_yaml, record_dict
from mlkd_cli.data.text import normalize_transcript
from mlkd_cli.decode.decoder import DecodeConfig, Decoder, Result, load_for_decoding
from mlkd_cli.decode.graphs import wfst_search
from mlkd_cli.data.language import UNKNOWN
from mlkd_cli.decode.inputs import Inputs, Item
from mlkd_cli.decode.rejection import CALIBRATION, read_calibration
from mlkd_cli.decode.streaming import (STDIN, OnnxStreamingDecoder, Partial, StreamingDecoder, StreamingExport, Utterance,
                                       pcm_blocks)
from mlkd_cli.decode.timing import ctm_lines
from mlkd_cli.decode.wfst import SearchConfig
from mlkd_cli.errors import ConfigError
from mlkd_cli.experiment.model_dir import ModelDir
from mlkd_cli.fsutil import atomic_write_text, stat_digest
from mlkd_cli.log import log_to_file
from mlkd_cli.stage import Stage, file_input, new_record

logger = logging.getLogger("mlkd")
REJECTION_SETTINGS = ("config.unknown_threshold", "config.unknown_score")  # the record's keys of a rejection rule
ALL_BLANK_SHARE = 0.95  # a decode with at least this share of empty transcripts (trained languages) is warned about


@dataclasses.dataclass
class DecodeSummary:
    out_dir: Path
    results: list[Result]
    items: list[Item]
    rtf: float
    audio_seconds: float
    failed: list[dict]


def decode_dir_name(name: str, config: DecodeConfig) -> str:
    method = config.method
    if method == "wfst":
        method += f"-{config.graph}{config.lm_order if config.graph == 'lm' else ''}"
    chunk = "" if config.chunk_ms is None else f"-{config.chunk_ms}ms"
    mode = f"streaming{chunk}" if config.streaming else f"chunk{chunk}" if chunk else ""
    onnx = f"onnx-{Path(config.onnx).stem}" if config.onnx else ""
    suffix = "".join(f"_{part}" for part in (mode, onnx, config.quantize, f"lang-{config.lang}" if config.lang else "")
                     if part)
    return f"decode_{name}_{method}{suffix}"


def make_search(loaded: ModelDir, graph_root: Path, config: DecodeConfig) -> Optional[Callable]:
    if config.method != "wfst":
        return None
    search = SearchConfig(beam=config.wfst_beam, max_active=config.max_active, acoustic_scale=config.acoustic_scale)
    return wfst_search(loaded, graph_root, config.graph, config.lm_order, search)


def run_decode(model_dir: Path, inputs: Inputs, config: DecodeConfig, name: Optional[str] = None,
               argv: Optional[list[str]] = None, output_dir: Optional[Path] = None,
               graph_dir: Optional[Path] = None, force: bool = False, apply_calibration: bool = True,
               on_partial: Optional[Callable[[Partial], None]] = None) -> DecodeSummary:
    """Decode ``inputs`` with the model of ``model_dir``; write and return the results
    (read back from the decode dir when it is up to date). With ``apply_calibration`` a
    calibrated rejection rule beside the decodes applies (see :func:`with_calibrated_rejection`).
    A streaming decode reports its partial results to ``on_partial`` (not when up to date)."""
    if config.threads:
        torch.set_num_threads(config.threads)
    loaded = load_for_decoding(model_dir, config.quantize)
    items = _references_as_in_training(_own_language_only(inputs.items, loaded), loaded)
    out_root = Path(output_dir) if output_dir is not None else Path(model_dir)
    model = file_input(loaded.weights)  # the weights' digest: for the record and the calibration
    calibrated = with_calibrated_rejection(config, loaded, model["digest"], out_root) if apply_calibration else config
    # a rule read from lid_calibration.json: calibrating again redoes the decode, as a score follows its decode
    follows = REJECTION_SETTINGS if calibrated is not config else ()
    export, config = open_export(loaded, calibrated, model["digest"])
    out_dir = out_root / decode_dir_name(name or inputs.name, config)
    record = new_record("decode", {"model": model, "inputs": items_input(items),
                                   **({"onnx": file_input(export.path)} if export else {})},
                        _recorded_config(config), argv)
    stage = Stage(out_dir, record, force=force, follows=follows)
    with stage.run() as staging, log_to_file(out_dir / "log" / "decode.log"):
        if staging is None:
            return _read_back(out_dir, items, inputs.failed)
        start = time.perf_counter()
        search = make_search(loaded, graph_dir if graph_dir is not None else out_root / "graph", config)
        decoder = (streaming_decoder(loaded, config, export, search, on_partial) if config.streaming
                   else Decoder(loaded, config, search))
        results = decoder.decode(items) if items else []
        elapsed = time.perf_counter() - start
        audio = sum(item.cut.duration for item in items)
        rtf = elapsed / max(audio, 1e-9)
        summary = DecodeSummary(out_dir, results, items, rtf, audio, inputs.failed)
        _write(staging, summary, model_dir, loaded, config)
        logger.info("decoded %d utterances (%.1f s of audio) in %.2f s: real-time factor %.4f%s -> %s",
                    len(results), audio, elapsed, rtf,
                    f"; {len(inputs.failed)} input(s) skipped" if inputs.failed else "", out_dir)
        _warn_if_all_blank(model_dir, results)
    return summary


def open_export(loaded: ModelDir, config: DecodeConfig, weights_digest: str
                ) -> tuple[Optional[StreamingExport], DecodeConfig]:
    """The export ``--onnx`` names (None without it), and the config with its chunk size."""
    if not config.onnx:
        return None, config
    export = StreamingExport.open(Path(config.onnx), loaded, weights_digest)
    if config.chunk_ms not in (None, export.chunk_ms):
        raise ConfigError(f"--chunk-ms {config.chunk_ms}: {export.path} was exported for {export.chunk_ms} ms chunks; "
                          f"leave --chunk-ms out, or export that size (`mlkd export --streaming --chunk-ms "
                          f"{config.chunk_ms} {loaded.path}`)")
    if config.lang and loaded.languages:
        raise ConfigError(f"--lang {config.lang}: the exported graph conditions on the language it predicts, "
                          "as on a device; decode the export without --lang")
    return export, dataclasses.replace(config, chunk_ms=export.chunk_ms)


def streaming_decoder(loaded: ModelDir, config: DecodeConfig, export: Optional[StreamingExport], search,
                      on_partial: Optional[Callable[[Partial], None]]) -> StreamingDecoder:
    """mlkd's own chunk-by-chunk decoder, or with an export, onnxruntime's run of it as sherpa-onnx's."""
    if export is not None:
        return OnnxStreamingDecoder(loaded, config, export, search, on_partial)
    return StreamingDecoder(loaded, config, search, on_partial=on_partial)


def _warn_if_all_blank(model_dir: Path, results: list[Result]) -> None:
    """One warning when (nearly) every transcript of a trained language is empty: a useless model."""
    transcribed = [r for r in results if r.language != UNKNOWN]
    empty = sum(not r.text.strip() for r in transcribed)
    if transcribed and empty >= ALL_BLANK_SHARE * len(transcribed):
        logger.warning("%s: %d of %d transcripts are empty: the model outputs (nearly) only blanks; see its dev "
                       "CER in final_metrics.json and train it longer", model_dir, empty, len(transcribed))


def decode_stdin(model_dir: Path, config: DecodeConfig, source, sample_rate: Optional[int] = None,
                 on_partial: Optional[Callable[[Partial], None]] = None) -> Result:
    """Stream 16-bit PCM from ``source`` (standard input) through the model; the final result.

    Nothing is written to disk: a live stream is not an input a later run could check. A
    calibrated rejection rule beside the model applies, as for files.
    """
    if config.threads:
        torch.set_num_threads(config.threads)
    loaded = load_for_decoding(model_dir, config.quantize)
    digest = file_input(loaded.weights)["digest"]
    config = with_calibrated_rejection(config, loaded, digest, Path(model_dir))
    export, config = open_export(loaded, config, digest)
    decoder = streaming_decoder(loaded, config, export, make_search(loaded, Path(model_dir) / "graph", config),
                                on_partial)
    start = time.perf_counter()
    utterance = Utterance(STDIN, pcm_blocks(source, sample_rate, decoder.block / SAMPLING_RATE))
    posteriors = decoder.decode_together([utterance])[0]
    duration = utterance.received / SAMPLING_RATE
    result = decoder.result(STDIN, duration, posteriors)
    logger.info("decoded %.1f s of audio from standard input in %.2f s", duration, time.perf_counter() - start)
    return result


def with_calibrated_rejection(config: DecodeConfig, loaded: ModelDir, weights_digest: str,
                              out_root: Path) -> DecodeConfig:
    """``config`` with the rejection rule of ``out_root/lid_calibration.json`` when it has none of its own
    and the model predicts the language."""
    if config.unknown_threshold is not None or not loaded.languages or config.lang:
        return config
    rejection = read_calibration(out_root, loaded.weights, weights_digest)
    if rejection is None:
        return config
    logger.info("rejecting speech of no trained language as %s: %s score below %.4f (%s)", UNKNOWN, rejection.score,
                rejection.threshold, out_root / CALIBRATION)
    return dataclasses.replace(config, unknown_threshold=rejection.threshold, unknown_score=rejection.score)


def _recorded_config(config: DecodeConfig) -> dict:
    """The settings that change results (threads do not; rejection only when there is one, so that
    decodes made before rejection existed stay up to date)."""
    recorded = {k: v for k, v in record_dict(config).items() if k != "threads"}
    if config.unknown_threshold is None:
        del recorded["unknown_threshold"], recorded["unknown_score"]
    return recorded


def items_input(items: list[Item]) -> dict[str, str]:
    """A record input for the decoded utterances: their cuts, references and audio files (by size and date)."""
    h = hashlib.sha256()
    files = []
    for item in items:
        h.update(json.dumps([item.id, item.ref_text, item.ref_lang, item.cut.to_dict()], sort_keys=True,
                            default=str).encode())
        if item.cut.has_recording:
            files += [s.source for s in item.cut.recording.sources if s.type == "file"]
        if item.cut.has_features:
            files.append(item.cut.features.storage_path)
    h.update(stat_digest(files).encode())
    return {"path": f"{len(items)} utterances", "digest": h.hexdigest()}


def _read_back(out_dir: Path, items: list[Item], failed: list[dict]) -> DecodeSummary:
    stats = json.loads((out_dir / "stats.json").read_text(encoding="utf-8"))
    results = [Result(**json.loads(line)) for line in (out_dir / "hyps.jsonl").read_text(encoding="utf-8").splitlines()]
    return DecodeSummary(out_dir, results, items, stats["rtf"], stats["audio_seconds"], failed)


def _own_language_only(items: list[Item], loaded: ModelDir) -> list[Item]:
    """A monolingual teacher transcribes only the utterances known to be in its language."""
    if loaded.languages or not loaded.own_language:
        return items
    own = [item for item in items if item.ref_lang in (None, loaded.own_language)]
    if len(own) < len(items):
        logger.info("%s teacher: decoding its %d of %d utterances", loaded.own_language, len(own), len(items))
    return own


def _references_as_in_training(items: list[Item], loaded: ModelDir) -> list[Item]:
    """A model trained on normalised transcripts is scored against normalised references."""
    if not loaded.inference.normalize_text:
        return items
    return [dataclasses.replace(item, ref_text=normalize_transcript(item.ref_text)) if item.ref_text else item
            for item in items]


def _hyp(result: Result) -> dict:
    """A result as a hyps.jsonl record (language_settled only from streaming decodes)."""
    record = dataclasses.asdict(result)
    for optional in ("language_settled", "source", "segments"):
        if record[optional] is None:
            del record[optional]
    return record


def _write(out: Path, summary: DecodeSummary, model_dir: Path, loaded: ModelDir, config: DecodeConfig) -> None:
    results, items = summary.results, summary.items
    atomic_write_text(out / "hyp.text", "".join(f"{r.id} {r.text}".rstrip() + "\n" for r in results))
    atomic_write_text(out / "hyps.jsonl", "".join(json.dumps(_hyp(r), ensure_ascii=False) + "\n" for r in results))
    if any(r.segments is not None for r in results):
        atomic_write_text(out / "hyp.ctm", "".join(line + "\n" for r in results for line in ctm_lines(r.id, r.segments or [])))
    if any(item.ref_text is not None for item in items):
        atomic_write_text(out / "ref.text", "".join(f"{i.id} {i.ref_text}".rstrip() + "\n"
                                                    for i in items if i.ref_text is not None))
    if any(item.ref_lang for item in items):
        atomic_write_text(out / "ref.utt2lang", "".join(f"{i.id} {i.ref_lang}\n" for i in items if i.ref_lang))
    stats = {
        "model_dir": str(Path(model_dir).resolve()),
        "model_name": Path(model_dir).resolve().name,
        "method": config.method,
        "num_parameters": loaded.num_parameters,
        "languages": list(loaded.languages) or [loaded.own_language],
        "predicts_language": bool(loaded.languages) and not config.lang,
        "num_utts": len(results),
        **({"streaming": True, "chunk_ms": loaded.model.encoder.chunk * OUTPUT_FRAME_MS} if config.streaming else {}),
        "audio_seconds": round(summary.audio_seconds, 3),
        "rtf": round(summary.rtf, 6),
        "failed": summary.failed,
    }
    atomic_write_text(out / "stats.json", json.dumps(stats, indent=2) + "\n")
    atomic_write_text(out / "config.yaml", dump_yaml(config))
