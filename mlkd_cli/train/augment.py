"""On-the-fly audio augmentation of training cuts, as lhotse transforms.

Each cut draws, in Kaldi's order, speed perturbation, reverberation, a telephone channel,
additive noise and a volume change, each with its own probability. The result is a lhotse
cut that describes its augmentation (transforms with fixed parameters, mixed tracks at fixed
offsets and gains), so loading its audio twice — the student's features, a teacher's
waveform — gives the same samples. A cut that draws nothing keeps its cached features.
"""

from __future__ import annotations

import logging
import math
import random
from typing import Optional

from lhotse import CutSet
from lhotse.audio.resampling_backend import available_resampling_backends, set_current_resampling_backend
from lhotse.cut import Cut

from mlkd_cli.data.audio_sets import load_audio_set
from mlkd_cli.data.rooms import room_cuts
from mlkd_cli.experiment.config import AugmentConfig

logger = logging.getLogger("mlkd")

TELEPHONE_RATE = 8000
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
    set_current_resampling_backend("sox")


class Augmenter:
    """Draws each training cut's augmentation from a ``random.Random``."""

    def __init__(self, config: AugmentConfig, noise: dict[str, CutSet], rirs: list[Cut]):
        self.config = config
        self.noise = noise  # source name → noise cuts (babble: training utterances)
        self.rirs = rirs

    @classmethod
    def build(cls, config: AugmentConfig, train_cuts: CutSet, seed: int) -> Optional["Augmenter"]:
        """The augmenter ``config`` asks for (None: no augmentation); reads the noise and RIR sets."""
        if not config.enabled:
            return None
        use_fast_resampling()
        noise = {path: load_audio_set(path, "noise") for path in config.noise.sets} if config.noise.prob else {}
        if config.noise.prob and config.noise.babble:
            noise[BABBLE] = CutSet.from_cuts(c.drop_features().drop_supervisions() for c in train_cuts)
        rirs: list[Cut] = []
        if config.reverb.prob:
            rirs = [c for path in config.reverb.rirs for c in load_audio_set(path, "RIR")] or room_cuts(
                config.reverb.simulated_rooms, seed)
        logger.info("augmentation: %s", describe(config, noise, rirs))
        return cls(config, noise, rirs)

    def __call__(self, cuts: CutSet, rng: random.Random) -> CutSet:
        return CutSet.from_cuts(self.augment(cut, rng) for cut in cuts)

    def augment(self, cut: Cut, rng: random.Random) -> Cut:
        """``cut`` with the augmentation it draws (the same id and supervisions)."""
        config, audio = self.config, cut.drop_features()
        changed = False
        if rng.random() < config.speed_prob:
            audio, changed = audio.perturb_speed(rng.choice(config.speed_factors), affix_id=False), True
        if rng.random() < config.reverb.prob:
            audio, changed = audio.reverb_rir(rng.choice(self.rirs), affix_id=False), True
        if rng.random() < config.telephone.prob:
            audio, changed = telephone(audio, rng.choice(config.telephone.codecs)), True
        if rng.random() < config.noise.prob:
            audio, changed = self.add_noise(audio, rng), True
        if rng.random() < config.volume_prob:
            audio, changed = audio.perturb_volume(rng.uniform(*config.volume_range), affix_id=False), True
        return audio if changed else cut

    def add_noise(self, cut: Cut, rng: random.Random) -> Cut:
        """Noise from a random source at a random SNR; babble is ``babble`` training utterances,
        each 10·log10(talkers) dB quieter so that together they make the drawn SNR."""
        source = rng.choice(sorted(self.noise))
        snr = rng.uniform(*self.config.noise.snr)
        talkers = self.config.noise.babble if source == BABBLE else 1
        for _ in range(talkers):
            cut = CutSet.from_cuts([cut]).mix(self.noise[source], snr=snr + 10 * math.log10(talkers), mix_prob=1.0,
                                               seed=rng, random_mix_offset=True, preserve_id="left")[0]
        return cut


def telephone(cut: Cut, codec: str) -> Cut:
    """The cut heard through a narrow-band channel: 8 kHz, the codec (GSM 06.10 full rate through
    libsndfile, lhotse's ``compress``; ``none``: band limit only), back to 16 kHz."""
    narrow = cut.resample(TELEPHONE_RATE)
    if codec == "gsm":
        narrow = narrow.compress("gsm")
    return narrow.resample(cut.sampling_rate)


def describe(config: AugmentConfig, noise: dict[str, CutSet], rirs: list[Cut]) -> str:
    parts = []
    if config.speed_prob:
        parts.append(f"speed {list(config.speed_factors)} p={config.speed_prob}")
    if config.reverb.prob:
        source = f"{len(rirs)} RIRs" if config.reverb.rirs else f"{len(rirs)} simulated rooms"
        parts.append(f"reverb ({source}) p={config.reverb.prob}")
    if config.telephone.prob:
        parts.append(f"telephone {list(config.telephone.codecs)} p={config.telephone.prob}")
    if config.noise.prob:
        sources = ", ".join(f"{name} ({len(cuts)})" for name, cuts in sorted(noise.items()))
        parts.append(f"noise {list(config.noise.snr)} dB from {sources} p={config.noise.prob}")
    if config.volume_prob:
        parts.append(f"volume {list(config.volume_range)} p={config.volume_prob}")
    return "; ".join(parts)
