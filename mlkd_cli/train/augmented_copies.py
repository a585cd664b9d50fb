"""Augmented copies of the training utterances, rendered once with their fbank (as Kaldi and icefall do).

Speed perturbation, reverberation and the telephone channel change the waveform, so the
features of an utterance they touch cannot come from the clean ones: rendering the audio and
computing fbank for every batch cost a teacher a quarter of its training speed on 2 cores.
Instead each utterance gets ``augment.copies`` copies, each drawing those kinds with their
probabilities from a generator seeded by the utterance id and the copy's number; the copies
that drew any are rendered once and stored with their fbank and power (mean square, for
mixing noise at an SNR) in ``<data>/augmented/<settings digest>/<lang>-<utterances digest>/``,
beside the power of the clean utterances. A copy depends on the settings and the audio only,
not on the stage or its seed: the teachers and the students trained with the same settings on
the same data hear the same copies, and the first stage to need them writes them for the
others (a student's transcribed utterances of a language are its teacher's).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import random
import time
from pathlib import Path
from typing import Optional

from lhotse import CutSet
from lhotse.cut import Cut
from lhotse.utils import fastcopy

from mlkd_cli.data.audio_sets import listing, load_audio_set
from mlkd_cli.data.features import audio_power, compute_fbank, relocated
from mlkd_cli.data.manifests import has_transcript
from mlkd_cli.data.rooms import room_files
from mlkd_cli.experiment.config import AugmentConfig
from mlkd_cli.fsutil import file_digest
from mlkd_cli.stage import Stage, file_input, new_record

logger = logging.getLogger("mlkd")

FORMAT = 1
COPIES = "cuts.jsonl.gz"
POWERS = "power.json"  # the clean utterances' mean square
ROOM_SEED = 0  # simulated rooms are part of the settings, not of a stage's seed
TELEPHONE_RATE = 8000

# One utterance's copies: index k is copy k, None where copy k drew no waveform change.
Copies = list[Optional[Cut]]


def settings(config: AugmentConfig) -> dict:
    """What the copies depend on (besides the audio): their number and the waveform kinds."""
    reverb = config.reverb
    if not config.changes_waveform:
        return {"format": FORMAT, "copies": 0}
    return {
        "format": FORMAT,
        "copies": config.copies,
        "speed": {"prob": config.speed_prob, "factors": list(config.speed_factors)},
        "reverb": {"prob": reverb.prob, **({"rirs": [_set_digest(p) for p in reverb.rirs]} if reverb.rirs
                                           else {"simulated_rooms": reverb.simulated_rooms, "seed": ROOM_SEED})},
        "telephone": {"prob": config.telephone.prob, "codecs": list(config.telephone.codecs)},
    }


def _set_digest(path: str) -> str:
    return file_digest(listing(path, "RIR"))


def copies_root(data_root: Path, config: AugmentConfig) -> Path:
    digest = hashlib.sha256(json.dumps(settings(config), sort_keys=True).encode()).hexdigest()[:12]
    return data_root / "augmented" / digest


def draw(cut: Cut, rng: random.Random, config: AugmentConfig, rirs: list[Cut]) -> Optional[Cut]:
    """The copy of ``cut`` that ``rng`` draws, in Kaldi's order (None: it drew none of the kinds)."""
    audio, changed = cut.drop_features(), False
    if rng.random() < config.speed_prob:
        audio, changed = audio.perturb_speed(rng.choice(config.speed_factors), affix_id=False), True
    if rng.random() < config.reverb.prob:
        audio, changed = audio.reverb_rir(rng.choice(rirs), affix_id=False), True
    if rng.random() < config.telephone.prob:
        audio, changed = telephone(audio, rng.choice(config.telephone.codecs)), True
    return audio if changed else None


def telephone(cut: Cut, codec: str) -> Cut:
    """The cut heard through a narrow-band channel: 8 kHz, the codec (GSM 06.10 full rate through
    libsndfile, lhotse's ``compress``; ``none``: band limit only), back to 16 kHz."""
    narrow = cut.resample(TELEPHONE_RATE)
    if codec == "gsm":
        narrow = narrow.compress("gsm")
    return narrow.resample(cut.sampling_rate)


def copy_id(cut_id: str, k: int) -> str:
    return f"{cut_id}_copy{k}"


@dataclasses.dataclass
class Prepared:
    """What augmentation reads instead of rendering audio while training."""

    copies: dict[str, Copies] = dataclasses.field(default_factory=dict)  # utterance id → its copies
    power: dict[str, float] = dataclasses.field(default_factory=dict)  # utterance id → mean square of its samples


def prepare_augmentation(data_root: Path, config: AugmentConfig, cuts: CutSet, num_jobs: int = 2) -> Prepared:
    """The cuts' copies (each with its ``power``) and, for mixing noise at an SNR, the clean cuts'
    power: read from ``data_root``, rendered and stored there where missing."""
    out = Prepared()
    if not (config.changes_waveform or config.noise.prob):
        return out
    root = copies_root(data_root, config)
    rirs = _rirs(root, config)
    groups: dict[tuple[str, bool], list[Cut]] = {}  # a stage's transcribed and untranscribed cuts apart:
    for cut in cuts:                                  # a teacher's are a student's too
        groups.setdefault((cut.supervisions[0].language, has_transcript(cut)), []).append(cut)
    for (lang, _), group in sorted(groups.items()):
        digest = _cuts_digest(group)
        out_dir = root / f"{lang}-{digest[:12]}"
        stored = _prepare_group(out_dir, lang, group, digest, config, rirs, num_jobs)
        out.power.update(json.loads((out_dir / POWERS).read_text()))
        copies = {c.id: c for c in stored}
        if config.changes_waveform:
            out.copies.update({cut.id: [copies.get(copy_id(cut.id, k)) for k in range(config.copies)] for cut in group})
    return out


def _rirs(root: Path, config: AugmentConfig) -> list[Cut]:
    if not config.reverb.prob:
        return []
    if config.reverb.rirs:
        return [c for path in config.reverb.rirs for c in load_audio_set(path, "RIR")]
    return room_files(root / "rooms", config.reverb.simulated_rooms, ROOM_SEED)


def _cuts_digest(cuts: list[Cut]) -> str:
    lines = (f"{c.id} {c.num_samples} {' '.join(s.source for s in c.recording.sources)}" for c in cuts)
    return hashlib.sha256("\n".join(lines).encode()).hexdigest()


def _prepare_group(out_dir: Path, lang: str, cuts: list[Cut], digest: str, config: AugmentConfig, rirs: list[Cut],
                   num_jobs: int) -> CutSet:
    """The rendered copies of a group of one language's cuts (only those that drew a change); the
    cuts' own power in POWERS."""
    record = new_record("augmentation", {"cuts": file_input(f"{len(cuts)} {lang} cuts", digest)},
                        settings(config))
    with Stage(out_dir, record, on_change="redo", shared=True).run() as staging:
        if staging is not None:
            start = time.perf_counter()
            drawn = [copy for cut in cuts for k in range(config.copies)
                     if config.changes_waveform and (copy := _drawn(cut, k, config, rirs)) is not None]
            if drawn:
                rendered = compute_fbank(CutSet.from_cuts(drawn), staging, num_jobs, f"augmented copies ({lang})",
                                         power=True)
                relocated(rendered, staging, out_dir).to_file(staging / COPIES)
            power = dict(zip((c.id for c in cuts), audio_power(cuts, num_jobs, f"audio power ({lang})")))
            (staging / POWERS).write_text(json.dumps(power))
            logger.info("augmentation (%s): %d of %d x %d copies changed, %.2f h rendered in %.1f s into %s",
                        lang, len(drawn), len(cuts), config.copies, sum(c.duration for c in drawn) / 3600,
                        time.perf_counter() - start, out_dir)
    return CutSet.from_file(out_dir / COPIES).to_eager() if (out_dir / COPIES).is_file() else CutSet()


def _drawn(cut: Cut, k: int, config: AugmentConfig, rirs: list[Cut]) -> Optional[Cut]:
    copy = draw(cut, random.Random(f"{cut.id}/{k}"), config, rirs)
    return None if copy is None else fastcopy(copy, id=copy_id(cut.id, k))

