"""Noise sets and noisy test audio of the embedded corpus, generated from a seed (no download).

``noise/`` is what training may mix in: white, pink and brown noise. ``noise_test/`` holds
noise types training never hears: mains hum with a motor tone, and the recorded ambient
sounds of Debian's lugaru-data when it is installed (wind and desert ambience, CC-BY-SA-3.0).
``test_noisy/`` is the test set heard in simulated rooms other than any training simulates,
with ``noise_test`` noise at SNRs below the demo's training range; reverberation and mixing
are lhotse's, as in training.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
from lhotse import CutSet, Recording
from lhotse.cut import Cut

from mlkd_cli.contracts import SAMPLING_RATE
from mlkd_cli.data.audio_sets import mono_cut
from mlkd_cli.data.rooms import room_cuts
from mlkd_cli.fsutil import atomic_write_text

TRAIN_COLOURS = {"white": 0.0, "pink": 1.0, "brown": 2.0}  # power spectrum ∝ 1 / f^exponent
NOISE_SECONDS = 30.0
RECORDINGS_PER_TYPE = 4
# Recorded ambience in Debian main (package lugaru-data, CC-BY-SA-3.0, Wolfire Games).
AMBIENT = (Path("/usr/share/games/lugaru/Sounds/Wind.ogg"), Path("/usr/share/games/lugaru/Sounds/DesertAmbient.ogg"))
AMBIENT_SOURCE = "Debian lugaru-data: Sounds/Wind.ogg, Sounds/DesertAmbient.ogg (CC-BY-SA-3.0, Wolfire Games)"
TEST_SNR = (0.0, 10.0)  # dB; the demo trains at 10-20 dB
TEST_ROOMS = 50
TEST_ROOM_SEED = 1_000_003  # added to the corpus seed: rooms no training run simulates


@dataclass(frozen=True, order=True)
class Condition:
    """How one test_noisy utterance was made (a line of its ``conditions`` file)."""

    utterance: str
    room: str
    noise: str
    snr: float


def coloured_noise(exponent: float, seconds: float, rng: np.random.Generator) -> np.ndarray:
    """Gaussian noise whose power falls as 1/f^exponent (0 white, 1 pink, 2 brown), peak 0.5."""
    n = round(seconds * SAMPLING_RATE)
    spectrum = np.fft.rfft(rng.standard_normal(n))
    freqs = np.fft.rfftfreq(n, 1 / SAMPLING_RATE)
    spectrum[1:] /= freqs[1:] ** (exponent / 2)
    spectrum[0] = 0
    return _peak(np.fft.irfft(spectrum, n))


def machine_hum(seconds: float, rng: np.random.Generator) -> np.ndarray:
    """Mains hum (50 or 60 Hz and harmonics), a beating motor tone and some pink hiss, peak 0.5."""
    t = np.arange(round(seconds * SAMPLING_RATE)) / SAMPLING_RATE
    mains = rng.choice([50.0, 60.0])
    x = sum(np.sin(2 * np.pi * mains * k * t + rng.uniform(0, 2 * np.pi)) / k for k in range(1, 12))
    x = x + 0.5 * np.sin(2 * np.pi * rng.uniform(90, 400) * t) * (1 + 0.5 * np.sin(2 * np.pi * rng.uniform(0.5, 3) * t))
    return _peak(x + 0.1 * coloured_noise(1.0, seconds, rng))


def _peak(x: np.ndarray, peak: float = 0.5) -> np.ndarray:
    return (peak * x / np.abs(x).max()).astype(np.float32)


def write_noise_sets(out_dir: Path, wav_dir: Path, final_wav_dir: Path, seed: int) -> dict[str, CutSet]:
    """``out_dir/noise`` and ``out_dir/noise_test`` (wav.scp each; wavs written to ``wav_dir``,
    listed where they will be once published, ``final_wav_dir``); noise_test's noise by type."""
    rng = np.random.default_rng([seed, 17])
    wav_dir.mkdir(parents=True, exist_ok=True)
    train = {f"{colour}-{i}": coloured_noise(exponent, NOISE_SECONDS, rng)
             for colour, exponent in TRAIN_COLOURS.items() for i in range(RECORDINGS_PER_TYPE)}
    test = {f"hum-{i}": machine_hum(NOISE_SECONDS, rng) for i in range(RECORDINGS_PER_TYPE)}
    for name, signals in (("noise", train), ("noise_test", test)):
        lines = []
        for key, x in signals.items():
            sf.write(wav_dir / f"{key}.wav", x, SAMPLING_RATE, subtype="PCM_16")
            lines.append(f"{key} {final_wav_dir / key}.wav")
        if name == "noise_test":
            lines += [f"ambient-{path.stem} {path}" for path in AMBIENT if path.is_file()]
        atomic_write_text(out_dir / name / "wav.scp", "".join(line + "\n" for line in sorted(lines)))
    types = {"hum": CutSet.from_cuts(Recording.from_file(wav_dir / f"{key}.wav", recording_id=key).to_cut()
                                     for key in sorted(test))}
    ambient = [mono_cut(Recording.from_file(path, recording_id=path.stem)) for path in AMBIENT if path.is_file()]
    if ambient:
        types["ambient"] = CutSet.from_cuts(ambient)
    return types


def noisy_copies(cuts: list[Cut], noise: dict[str, CutSet], seed: int) -> tuple[list[Cut], list[Condition]]:
    """Each cut in a random test room with a random noise type at a random SNR in TEST_SNR."""
    rooms = room_cuts(TEST_ROOMS, seed + TEST_ROOM_SEED, prefix="test-room")
    rng = random.Random(f"{seed}:test_noisy")
    out, conditions = [], []
    for cut in cuts:
        room = rng.choice(rooms)
        kind = rng.choice(sorted(noise))
        snr = round(rng.uniform(*TEST_SNR), 1)
        heard = CutSet.from_cuts([cut.reverb_rir(room, affix_id=False)]).mix(
            noise[kind], snr=snr, mix_prob=1.0, seed=rng, random_mix_offset=True, preserve_id="left")[0]
        out.append(heard)
        conditions.append(Condition(cut.id, room.recording_id, kind, snr))
    return out, conditions


def write_wav(cut: Cut, path: Path) -> None:
    """The cut's audio as 16-bit PCM, scaled down when the mix would clip (the SNR stays)."""
    audio = cut.load_audio()[0]
    peak = np.abs(audio).max()
    sf.write(path, audio / peak * 0.99 if peak > 0.99 else audio, SAMPLING_RATE, subtype="PCM_16")
