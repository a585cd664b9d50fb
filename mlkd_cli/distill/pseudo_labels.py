"""Sequence-level KD targets: each teacher's transcripts of its language's training cuts.

Computed once per teacher through the stage protocol (``<exp>/teacher_transcripts/<lang>/``,
redone when the teacher or the cuts change) and attached to the cuts as ``kd_text``; the
student learns them with CTC (``kd.sequence_weight``). Any teacher serves, black boxes
included. A transcript is kept when the teacher's confidence reaches ``kd.min_confidence``
and, when ``kd.max_cer_to_reference`` is set, its CER against the reference stays under it.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import torch
from lhotse import CutSet

from mlkd_cli.data.text import normalize_transcript
from mlkd_cli.distill.cache import cache_record, link_cache, shared_cache, teacher_batches
from mlkd_cli.experiment.config import KdConfig
from mlkd_cli.score.alignment import char_errors
from mlkd_cli.teachers.base import Teacher, Transcript
from mlkd_cli.train.batches import KD_TEXT

logger = logging.getLogger("mlkd")

TRANSCRIPTS = "transcripts.jsonl"


def teacher_transcripts(root: Path, links: Path, teacher: Teacher, cuts: CutSet, device: torch.device,
                        precision: str, max_duration: float) -> dict[str, Transcript]:
    """cut id → the teacher's transcript of it (cached in ``root``, shared; linked from ``links``/<lang>)."""
    stage = shared_cache(root, cache_record("teacher-transcripts", teacher, cuts,
                                            {"format": 1, "precision": precision}), teacher.lang)
    cache_dir = stage.out_dir
    with stage.run() as out:
        if out is not None:
            with open(out / TRANSCRIPTS, "w", encoding="utf-8") as f, torch.inference_mode():
                for batch_cuts, inputs in teacher_batches(teacher, cuts, device, precision, max_duration,
                                                          f"teacher {teacher.lang} transcripts"):
                    for cut, said in zip(batch_cuts, teacher.transcribe(inputs)):
                        f.write(json.dumps({"id": cut.id, "text": said.text, "confidence": said.confidence},
                                           ensure_ascii=False) + "\n")
    link_cache(links, teacher.lang, cache_dir)
    with open(cache_dir / TRANSCRIPTS, encoding="utf-8") as f:
        rows = [json.loads(line) for line in f]
    return {row["id"]: Transcript(row["text"], row["confidence"]) for row in rows}


def spelled_like(text: str, lower: bool, normalize: bool) -> str:
    """A teacher's transcript in the spelling of the training text (its normalisation; lower
    case when that text has no capitals)."""
    if normalize:
        text = normalize_transcript(text)
    return text.lower() if lower else text


def keep(said: Transcript, reference: str | None, kd: KdConfig) -> bool:
    if said.confidence is not None and said.confidence < kd.min_confidence:
        return False
    if kd.max_cer_to_reference is not None and reference:
        return (char_errors(reference, said.text).rate or 0.0) <= kd.max_cer_to_reference
    return bool(said.text)


def with_pseudo_labels(cuts: CutSet, transcripts: dict[str, dict[str, Transcript]], kd: KdConfig,
                       normalize: bool) -> CutSet:
    """``cuts`` with ``kd_text`` on those whose teacher transcript passes the filters."""
    capitals: dict[str, bool] = {}
    for cut in cuts:
        lang, text = cut.supervisions[0].language, cut.supervisions[0].text or ""
        capitals[lang] = capitals.get(lang, False) or text != text.lower()
    kept, total, out = {}, {}, []
    for cut in cuts:
        lang = cut.supervisions[0].language
        said = transcripts.get(lang, {}).get(cut.id)
        if said is not None:
            said = said._replace(text=spelled_like(said.text, not capitals[lang], normalize))
            total[lang] = total.get(lang, 0) + 1
            if keep(said, cut.supervisions[0].text, kd):
                kept[lang] = kept.get(lang, 0) + 1
                cut = cut.with_custom(KD_TEXT, said.text)
        out.append(cut)
    for lang in sorted(total):
        logger.info("sequence-level KD, %s: %d of %d teacher transcripts kept", lang, kept.get(lang, 0), total[lang])
    return CutSet.from_cuts(out)
