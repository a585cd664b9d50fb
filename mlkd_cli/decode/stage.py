"""The decode stage: model dir + inputs → ``<MODEL_DIR>/decode_<name>_<method>/``.

Outputs: ``hyp.text`` (Kaldi text), ``hyps.jsonl`` (id, text, language, language posteriors,
duration, processing time), ``ref.text``/``ref.utt2lang`` when the inputs carry them,
``stats.json`` (model, method, parameters, real-time factor, failures), ``config.yaml`` and
``stage.json``. Files go in under temporary names, so a failed run leaves an earlier decode
of the same name intact.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from pathlib import Path
from typing import Callable, Optional

import torch

from mlkd_cli.config import dump_yaml
from mlkd_cli.data.text import normalize_transcript
from mlkd_cli.decode.decoder import DecodeConfig, Decoder, LoadedModel, Result, load_for_decoding
from mlkd_cli.decode.graphs import wfst_search
from mlkd_cli.decode.inputs import Inputs, Item
from mlkd_cli.decode.wfst import SearchConfig
from mlkd_cli.fsutil import atomic_write_text
from mlkd_cli.log import log_to_file
from mlkd_cli.stage import StageRecord, now, software_versions, write_stage
from mlkd_cli.train.experiment import file_input

logger = logging.getLogger("mlkd")


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
    suffix = "".join(f"_{part}" for part in (config.quantize, f"lang-{config.lang}" if config.lang else "") if part)
    return f"decode_{name}_{method}{suffix}"


def make_search(model_dir: Path, loaded: LoadedModel, config: DecodeConfig) -> Optional[Callable]:
    if config.method != "wfst":
        return None
    search = SearchConfig(beam=config.wfst_beam, max_active=config.max_active, acoustic_scale=config.acoustic_scale)
    return wfst_search(model_dir, loaded.data_dir, loaded.tokenizer, config.graph, config.lm_order, search)


def run_decode(model_dir: Path, inputs: Inputs, config: DecodeConfig, name: Optional[str] = None,
               argv: Optional[list[str]] = None) -> DecodeSummary:
    """Decode ``inputs`` with the model of ``model_dir``; write and return the results."""
    if config.threads:
        torch.set_num_threads(config.threads)
    loaded = load_for_decoding(model_dir, config.quantize)
    items = _references_as_in_training(_own_language_only(inputs.items, loaded), loaded)
    out_dir = model_dir / decode_dir_name(name or inputs.name, config)
    out_dir.mkdir(parents=True, exist_ok=True)
    with log_to_file(out_dir / "log" / "decode.log"):
        started, start = now(), time.perf_counter()
        results = Decoder(loaded, config, make_search(model_dir, loaded, config)).decode(items) if items else []
        elapsed = time.perf_counter() - start
        audio = sum(item.cut.duration for item in items)
        rtf = elapsed / max(audio, 1e-9)
        summary = DecodeSummary(out_dir, results, items, rtf, audio, inputs.failed)
        _write(summary, model_dir, loaded, config, argv or [], started)
        logger.info("decoded %d utterances (%.1f s of audio) in %.2f s: real-time factor %.4f%s -> %s",
                    len(results), audio, elapsed, rtf,
                    f"; {len(inputs.failed)} input(s) skipped" if inputs.failed else "", out_dir)
    return summary


def _own_language_only(items: list[Item], loaded: LoadedModel) -> list[Item]:
    """A monolingual teacher transcribes only the utterances known to be in its language."""
    if loaded.languages or not loaded.own_language:
        return items
    own = [item for item in items if item.ref_lang in (None, loaded.own_language)]
    if len(own) < len(items):
        logger.info("%s teacher: decoding its %d of %d utterances", loaded.own_language, len(own), len(items))
    return own


def _references_as_in_training(items: list[Item], loaded: LoadedModel) -> list[Item]:
    """A model trained on normalised transcripts is scored against normalised references."""
    if not loaded.normalize_text:
        return items
    return [dataclasses.replace(item, ref_text=normalize_transcript(item.ref_text)) if item.ref_text else item
            for item in items]


def _write(summary: DecodeSummary, model_dir: Path, loaded: LoadedModel, config: DecodeConfig, argv: list[str],
           started: str) -> None:
    out = summary.out_dir
    results, items = summary.results, summary.items
    atomic_write_text(out / "hyp.text", "".join(f"{r.id} {r.text}".rstrip() + "\n" for r in results))
    atomic_write_text(out / "hyps.jsonl", "".join(json.dumps(dataclasses.asdict(r), ensure_ascii=False) + "\n"
                                                  for r in results))
    if any(item.ref_text is not None for item in items):
        atomic_write_text(out / "ref.text", "".join(f"{i.id} {i.ref_text}".rstrip() + "\n"
                                                    for i in items if i.ref_text is not None))
    if any(item.ref_lang for item in items):
        atomic_write_text(out / "ref.utt2lang", "".join(f"{i.id} {i.ref_lang}\n" for i in items if i.ref_lang))
    stats = {
        "model_dir": str(model_dir.resolve()),
        "model_name": model_dir.name,
        "method": config.method,
        "num_parameters": loaded.num_parameters,
        "languages": list(loaded.languages) or [loaded.own_language],
        "predicts_language": bool(loaded.languages) and not config.lang,
        "num_utts": len(results),
        "audio_seconds": round(summary.audio_seconds, 3),
        "rtf": round(summary.rtf, 6),
        "failed": summary.failed,
    }
    atomic_write_text(out / "stats.json", json.dumps(stats, indent=2) + "\n")
    atomic_write_text(out / "config.yaml", dump_yaml(config))
    final = model_dir / "final.pt"
    record = StageRecord(command="decode", argv=argv, inputs={"model": file_input(final)},
                         config=dataclasses.asdict(config), status="done", versions=software_versions(),
                         started=started, finished=now())
    write_stage(out, record)

