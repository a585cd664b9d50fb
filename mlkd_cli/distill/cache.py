"""Teacher outputs computed once: targets stored as fp16 lhotse arrays attached to the cuts.

Layout: ``<data>/teacher_targets/<lang>-<key>/{arrays/, cuts.jsonl.gz, stage.json}`` beside the
prepared data, built through the stage protocol. The key digests the record: the teacher's
checkpoint digest, the cuts, the layers kept and whether posteriors are kept. So every student
distilled from the same teacher on the same data with the same settings reads one cache (one
waits while another builds it), a retrained teacher or other layers or data get a cache of
their own, and an interrupted build is never mistaken for a complete one. The experiment links
the caches it reads: ``<exp>/teacher_targets/<lang>`` is a symbolic link to its language's cache.

Each cut carries ``kd_hidden`` (T', layers, D_teacher) and, for the KL term, ``kd_log_probs``
(T', V). Frames are counted at the student's encoder output rate (teachers of other frame
rates are aligned to it) and posteriors are in the student's vocabulary; the teachers read the
clean features or audio (SpecAugment only ever touches the student's input).
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import time
from pathlib import Path
from typing import Iterator

import numpy as np
import torch
from lhotse import CutSet, NumpyFilesWriter
from lhotse.utils import fastcopy
from torch.nn.utils.rnn import pad_sequence

from mlkd_cli.distill.ensemble import LanguageTargets, RoutedTargets, collate_inputs, language_groups, teacher_targets
from mlkd_cli.errors import DataError
from mlkd_cli.log import progress_bar
from mlkd_cli.models.subsampling import subsampled_lengths
from mlkd_cli.stage import Stage, StageRecord, new_record
from mlkd_cli.teachers.base import Teacher, TeacherInputs
from mlkd_cli.teachers.vocab import VocabMap
from mlkd_cli.train.batches import make_sampler
from mlkd_cli.train.loop import autocast

logger = logging.getLogger("mlkd")

CACHE_FORMAT = 1
HIDDEN, LOG_PROBS = "kd_hidden", "kd_log_probs"


def cache_record(command: str, teacher: Teacher, cuts: CutSet, config: dict) -> StageRecord:
    """A cache of ``teacher``'s outputs on ``cuts``: redone when either (or ``config``) changes."""
    ids = hashlib.sha256("\n".join(f"{c.id} {c.num_frames}" for c in cuts).encode()).hexdigest()
    return new_record(command, {"teacher": {"path": str(teacher.path), "digest": teacher.digest},
                                "cuts": {"path": f"{len(cuts)} cuts", "digest": ids}}, config)


def link_cache(links: Path, lang: str, cache_dir: Path) -> None:
    """``links``/``lang`` → ``cache_dir``: the experiment names the shared cache it read."""
    link = links / lang
    links.mkdir(parents=True, exist_ok=True)
    if link.is_symlink() or link.is_file():
        link.unlink()
    elif link.is_dir():  # a cache of the earlier layout, inside the experiment
        shutil.rmtree(link)
    link.symlink_to(cache_dir.resolve(), target_is_directory=True)


def shared_cache(root: Path, record: StageRecord, lang: str) -> Stage:
    """The stage of the cache ``record`` describes, in ``root``/<lang>-<key>: students that need the
    same teacher outputs share it (one waits while another builds it)."""
    key = hashlib.sha256(json.dumps([record.command, {k: v["digest"] for k, v in record.inputs.items()},
                                     record.config], sort_keys=True).encode()).hexdigest()[:12]
    return Stage(root / f"{lang}-{key}", record, on_change="redo", shared=True)


def teacher_batches(teacher: Teacher, cuts: CutSet, device: torch.device, precision: str,
                    max_duration: float, title: str) -> Iterator[tuple[CutSet, TeacherInputs]]:
    """``cuts`` in batches as ``teacher`` reads them, on ``device``, under autocast, with a progress bar."""
    teacher.to(device)
    with progress_bar() as bar:
        task = bar.add_task(title, total=len(cuts))
        for batch_cuts in make_sampler(cuts, max_duration, shuffle=False, seed=0):
            inputs = collate_inputs(batch_cuts, audio=teacher.input == "waveform").to(device)
            with autocast(precision, device):
                yield batch_cuts, inputs
            bar.advance(task, len(batch_cuts))


def cached_targets(root: Path, links: Path, teacher: Teacher, cuts: CutSet, layers: list[int], log_probs: bool,
                   device: torch.device, precision: str, max_duration: float, *, student_shift: float,
                   vocab: VocabMap | None = None) -> CutSet:
    """``cuts`` with their teacher's targets attached: reused when cached in ``root``, else computed
    now; linked from ``links``/<lang>."""
    settings = {"format": CACHE_FORMAT, "layers": layers, "log_probs": log_probs, "student_shift": student_shift,
                "precision": precision}
    stage = shared_cache(root, cache_record("teacher-targets", teacher, cuts, settings), teacher.lang)
    cache_dir = stage.out_dir
    with stage.run() as out:
        if out is not None:
            start = time.perf_counter()
            _compute(out, cache_dir, teacher, cuts, layers, vocab, log_probs, student_shift, device, precision, max_duration)
            logger.info("teacher %s targets for %d cuts cached in %s (%.1f s)", teacher.lang, len(cuts), cache_dir,
                        time.perf_counter() - start)
    link_cache(links, teacher.lang, cache_dir)
    return CutSet.from_file(cache_dir / "cuts.jsonl.gz").to_eager()


@torch.inference_mode()
def _compute(out_dir: Path, final_dir: Path, teacher: Teacher, cuts: CutSet, layers: list[int], vocab: VocabMap | None,
             log_probs: bool, student_shift: float, device: torch.device, precision: str, max_duration: float) -> None:
    """Targets into ``out_dir`` (staging); the manifest points at their place once published, ``final_dir``."""
    arrays = str((final_dir / "arrays").resolve())
    done = {}
    with NumpyFilesWriter(out_dir / "arrays") as writer:

        def store(key: str, array: np.ndarray):
            return fastcopy(writer.store_array(key, np.ascontiguousarray(array)), storage_path=arrays)

        for batch_cuts, inputs in teacher_batches(teacher, cuts, device, precision, max_duration,
                                                  f"teacher {teacher.lang} targets"):
            out = teacher_targets(teacher, inputs, layers, student_shift, vocab, log_probs)
            hidden = torch.stack(out.hidden, dim=2).half().cpu().numpy()
            posteriors = out.log_probs.half().cpu().numpy() if log_probs else None
            for i, (cut, n) in enumerate(zip(batch_cuts, out.lengths.tolist())):
                cut = cut.with_custom(HIDDEN, store(f"{cut.id}.h", hidden[i, :n]))
                if posteriors is not None:
                    cut = cut.with_custom(LOG_PROBS, store(f"{cut.id}.p", posteriors[i, :n]))
                done[cut.id] = cut
    CutSet.from_cuts(done[c.id] for c in cuts).to_file(out_dir / "cuts.jsonl.gz")  # in the given order


def _pad(arrays: list[np.ndarray]) -> torch.Tensor:
    """(T_i, ...) fp16 arrays → a zero-padded float32 (N, T, ...) batch."""
    return pad_sequence([torch.from_numpy(a).float() for a in arrays], batch_first=True)


def load_cached_targets(cuts: CutSet) -> RoutedTargets:
    """The targets of a batch's cuts (in the batch's order), grouped by language; cuts of
    languages taught by black boxes carry none."""
    cuts = list(cuts)
    targets = RoutedTargets()
    for lang, rows in language_groups([c.supervisions[0].language for c in cuts]).items():
        if not cuts[rows[0]].has_custom(HIDDEN):
            continue
        picked = [cuts[i] for i in rows]
        hidden = [c.load_custom(HIDDEN) for c in picked]
        expected = subsampled_lengths(torch.tensor([c.num_frames for c in picked])).tolist()
        for cut, h, n in zip(picked, hidden, expected):
            if h.shape[0] != n:
                raise DataError(f"{cut.custom[HIDDEN].storage_path}: cached teacher targets of {cut.id} have "
                                f"{h.shape[0]} frames, the features give {n}; delete that cache dir to rebuild it")
        stacked = _pad(hidden)
        has_posteriors = picked[0].has_custom(LOG_PROBS)
        targets[lang] = LanguageTargets(
            index=torch.tensor(rows),
            lengths=torch.tensor(expected),
            hidden=list(stacked.unbind(dim=2)),
            log_probs=_pad([c.load_custom(LOG_PROBS) for c in picked]) if has_posteriors else None,
        )
    return targets
