"""Training-time augmentation: precomputed copies, and noise and volume in the feature domain.

Each training cut draws, in Kaldi's order, one of its augmented copies (speed, reverberation,
telephone channel: rendered once with their fbank, :mod:`mlkd_cli.train.augmented_copies`),
additive noise and a volume change, each with its own probability. Noise is mixed into the
cached features (lhotse mixes the mel energies of cuts with precomputed features, as Kaldi's
and icefall's recipes do) and a volume change is a constant offset of the log-mel energies, so
no audio is rendered and no fbank computed while training. The heard cut still describes its
audio (tracks at fixed offsets and gains), so a teacher that reads waveforms hears what the
student's features say.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import random
from pathlib import Path
from typing import Optional

import numpy as np
from lhotse import CutSet, Fbank
from lhotse.audio.resampling_backend import available_resampling_backends, set_current_resampling_backend
from lhotse.cut import Cut

from mlkd_cli.data.audio_sets import listing, load_audio_set
from mlkd_cli.data.features import POWER, compute_fbank, cut_power, downmix, fbank_extractor, relocated
from mlkd_cli.experiment.config import AugmentConfig
from mlkd_cli.fsutil import file_digest
from mlkd_cli.stage import Stage, file_input, new_record
from mlkd_cli.train.augmented_copies import Copies, Prepared, prepare_augmentation

logger = logging.getLogger("mlkd")

BABBLE = "babble"


def use_fast_resampling() -> None:
    """Resample with libsox (Debian libsox3) when it is there: lhotse's own torch resampler runs at
    about 460x real time here, libsox at about 3800x (60 s of audio, speed 1.1)."""
    if "sox" not in available_resampling_backends():
        return
    try:
        from lhotse.tools.libsox import libsox_import

        libsox_import()
    except (OSError, RuntimeError, ImportError):
        logger.warning("libsox not found (apt-get install libsox3): speed and telephone augmentation "
                       "resample with lhotse's slower torch resampler")
        return
    _libsox_failures_only()
    _libsox_frees_with_the_process_allocator()
    set_current_resampling_backend("sox")


def _libsox_failures_only() -> None:
    """libsox warns on stderr for each resampled utterance with a clipped sample ("rate: rate
    clipped 3 samples; decrease volume?", hundreds of lines in a demo run); verbosity 1 (the
    first field of its sox_globals_t) keeps its failures only. Fork-started feature workers
    inherit the setting."""
    import ctypes

    from lhotse.tools import libsox

    get_globals = libsox.libsox.sox_get_globals
    get_globals.restype = ctypes.POINTER(ctypes.c_uint)
    get_globals().contents.value = 1


def _libsox_frees_with_the_process_allocator() -> None:
    """lhotse frees libsox's buffers with the free() it looks up in libc.so.6 itself. Under a
    preloaded allocator (jemalloc: local/run.sh) libsox allocates with that allocator's malloc,
    and glibc's free aborts the process ("munmap_chunk(): invalid pointer"); the free() the
    process resolves is the one that pairs with libsox's malloc, preloaded or not."""
    import ctypes

    from lhotse.tools import libsox

    free = ctypes.CDLL(None).free
    free.argtypes, free.restype = [ctypes.c_void_p], None
    libsox.sox_free = free


@dataclasses.dataclass(frozen=True)
class NoiseTrack:
    """Noise laid over a whole utterance: ``cut`` from ``frame`` on (repeated when it is shorter), at a linear gain."""

    cut: Cut
    frame: int
    gain: float

    def features(self, num_frames: int) -> np.ndarray:
        cut, shift = self.cut, self.cut.frame_shift
        if cut.num_frames - self.frame >= num_frames:  # reads only the archive chunks it needs
            return _fit(cut.truncate(offset=self.frame * shift, duration=num_frames * shift).load_features(), num_frames)
        return _fit(cut.load_features()[self.frame:], num_frames)

    def audio(self, num_samples: int) -> np.ndarray:
        start = round(self.frame * self.cut.frame_shift * self.cut.sampling_rate)
        return _fit(downmix(self.cut.load_audio(), self.cut.sampling_rate)[0, start:], num_samples)


def _fit(x: np.ndarray, n: int) -> np.ndarray:
    """``x`` cut or repeated (along its first axis) to length ``n``."""
    return x[:n] if len(x) >= n else np.concatenate([x] * -(-n // len(x)))[:n]


@dataclasses.dataclass(frozen=True)
class Heard:
    """What training hears of a cut: the utterance or one of its copies, noise, and a linear volume ``gain``.

    Noise is added to the mel energies of the cached features. lhotse's MixedCut does that too,
    but sets the level from the mel energies, which pre-emphasis tilts towards high frequencies
    (white noise came out about 8 dB quieter than the drawn SNR against speech); here the gain
    comes from the mean square of the samples, as in lhotse's audio mixing, so the drawn SNR is
    the SNR of the audio a teacher reading waveforms hears.
    """

    cut: Cut
    noise: tuple[NoiseTrack, ...] = ()
    gain: float = 1.0

    def features(self) -> np.ndarray:
        """Its fbank: cached, or computed from the audio of a cut without any (then noise in the audio)."""
        if not self.cut.has_features:
            return fbank_extractor().extract(self.audio(), self.cut.sampling_rate)
        feats = self.cut.load_features()
        for track in self.noise:
            feats = Fbank.mix(feats, track.features(len(feats)), track.gain**2)
        # lhotse's fbank is the log of mel energies: a gain g scales them by g², which
        # Fbank.scale adds as log(g²) to every bin (exact without dither).
        return (feats if self.gain == 1 else Fbank.scale(feats, self.gain**2)).astype(np.float32)

    def audio(self) -> np.ndarray:
        """Its samples, mono, as ``(1, samples)``."""
        samples = downmix(self.cut.load_audio(), self.cut.sampling_rate)
        for track in self.noise:
            samples = samples + np.float32(track.gain) * track.audio(samples.shape[1])
        return samples if self.gain == 1 else samples * np.float32(self.gain)


class Augmenter:
    """Draws each training cut's augmentation from a ``random.Random`` of its own."""

    def __init__(self, config: AugmentConfig, noise: dict[str, list[Cut]], prepared: Prepared, max_steps: int = 0,
                 seed: int = 0):
        self.config = config
        self.seed = seed
        self.noise = noise  # source name → noise cuts with features (babble: training utterances)
        self.prepared = prepared  # the utterances' copies and power
        start, end = config.during
        self.first_step = round(start * max_steps)
        self.end_step = round(end * max_steps) if end < 1 else None  # None: to the end, however long

    @classmethod
    def build(cls, config: AugmentConfig, cuts: CutSet, data_root: Path, num_jobs: int = 2,
              max_steps: int = 0, seed: int = 0) -> Optional["Augmenter"]:
        """The augmenter ``config`` asks for (None: no augmentation) for ``cuts`` in a run of
        ``max_steps`` updates: reads the noise sets' features and the cuts' copies, computing those
        not yet stored under ``data_root``."""
        if not config.enabled:
            return None
        use_fast_resampling()
        noise = {path: list(noise_features(path, data_root, num_jobs)) for path in config.noise.sets} if config.noise.prob else {}
        if config.noise.prob and config.noise.babble:
            noise[BABBLE] = list(cuts)
        prepared = prepare_augmentation(data_root, config, cuts, num_jobs)
        augmenter = cls(config, noise, prepared, max_steps, seed)
        logger.info("augmentation%s: %s", augmenter.describe_steps(), describe(config, noise, prepared.copies))
        return augmenter

    def __call__(self, cuts: CutSet, step: int = 0) -> list[Heard]:
        """What training hears of the cuts of update ``step`` (counted from 0).

        Each cut draws from a generator of its own, seeded by (seed, update, cut): a resumed run
        augments as an uninterrupted one would, and augmentation takes nothing from torch's
        generator, so a run with it draws the same batches, SpecAugment masks and dropout as the
        same run without it (an ablation differs by what augmentation does only)."""
        if step < self.first_step or (self.end_step is not None and step >= self.end_step):
            return [Heard(cut) for cut in cuts]
        return [self.augment(cut, random.Random(f"{self.seed}/{step}/{cut.id}")) for cut in cuts]

    def describe_steps(self) -> str:
        if self.config.during == (0.0, 1.0):
            return ""
        end = "the end" if self.end_step is None else f"update {self.end_step}"
        return f" from update {self.first_step + 1} to {end}"

    def augment(self, cut: Cut, rng: random.Random) -> Heard:
        """What training hears of ``cut`` (the same supervisions, its copy's length)."""
        config, heard = self.config, cut
        if self.prepared.copies:
            copy = (self.prepared.copies.get(cut.id) or [None] * config.copies)[rng.randrange(config.copies)]
            heard = cut if copy is None else copy
        noise = self.draw_noise(heard, rng) if rng.random() < config.noise.prob else ()
        gain = rng.uniform(*config.volume_range) if rng.random() < config.volume_prob else 1.0
        return Heard(heard, noise, gain)

    def draw_noise(self, cut: Cut, rng: random.Random) -> tuple[NoiseTrack, ...]:
        """Noise from a random source at a random SNR; babble is ``babble`` training utterances,
        each 10·log10(talkers) dB quieter so that together they make the drawn SNR."""
        source = rng.choice(sorted(self.noise))
        talkers = self.config.noise.babble if source == BABBLE else 1
        snr = rng.uniform(*self.config.noise.snr) + 10 * math.log10(talkers)
        speech = self.power(cut)
        tracks = []
        for _ in range(talkers):
            noise = rng.choice(self.noise[source])
            frames = cut.num_frames or round(cut.duration / noise.frame_shift)  # a cut without features: its audio's
            frame = rng.randrange(max(1, noise.num_frames - frames + 1))
            gain = math.sqrt(speech / max(self.power(noise), 1e-20) / 10 ** (snr / 10))
            tracks.append(NoiseTrack(noise, frame, gain))
        return tuple(tracks)

    def power(self, cut: Cut) -> float:
        """Mean square of the cut's samples: stored with a copy or noise, prepared for an utterance."""
        if cut.custom and POWER in cut.custom:
            return cut.custom[POWER]
        if cut.id not in self.prepared.power:  # a cut made while training (speed_perturb): read once
            self.prepared.power[cut.id] = cut_power(cut)
        return self.prepared.power[cut.id]


def noise_features(path: str, data_root: Path, num_jobs: int = 2) -> CutSet:
    """The noise set's cuts with their fbank, computed once into ``<data>/augmented/noise/<digest>/``."""
    digest = file_digest(listing(path, "noise"))
    out_dir = data_root / "augmented" / "noise" / digest[:12]
    record = new_record("noise-features", {"noise": file_input(listing(path, "noise"), digest)}, {"format": 1})
    with Stage(out_dir, record, on_change="redo", shared=True).run() as staging:
        if staging is not None:
            cuts = compute_fbank(load_audio_set(path, "noise"), staging, num_jobs, "noise fbank", power=True)
            relocated(cuts, staging, out_dir).to_file(staging / "cuts.jsonl.gz")
    return CutSet.from_file(out_dir / "cuts.jsonl.gz").to_eager()


def describe(config: AugmentConfig, noise: dict[str, list[Cut]], copies: dict[str, Copies]) -> str:
    parts = []
    if copies:
        changed = sum(c is not None for options in copies.values() for c in options)
        parts.append(f"{config.copies} precomputed copies per utterance ({changed} of {config.copies * len(copies)} "
                     "changed)")
    if config.speed_prob:
        parts.append(f"speed {list(config.speed_factors)} p={config.speed_prob}")
    if config.reverb.prob:
        source = "RIR sets" if config.reverb.rirs else f"{config.reverb.simulated_rooms} simulated rooms"
        parts.append(f"reverb ({source}) p={config.reverb.prob}")
    if config.telephone.prob:
        parts.append(f"telephone {list(config.telephone.codecs)} p={config.telephone.prob}")
    if config.noise.prob:
        sources = ", ".join(f"{name} ({len(cuts)})" for name, cuts in sorted(noise.items()))
        parts.append(f"noise {list(config.noise.snr)} dB from {sources} p={config.noise.prob}")
    if config.volume_prob:
        parts.append(f"volume {list(config.volume_range)} p={config.volume_prob}")
    return "; ".join(parts)
