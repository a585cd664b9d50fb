"""Augmentation: each kind does what it says, copies are rendered once, draws are reproducible, bad sets fail clearly."""

from __future__ import annotations

import dataclasses
import io
import logging
import os
import random
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from lhotse import CutSet, Recording, SupervisionSegment

from conftest import TINY_MODEL, run_cli
from mlkd_cli.data.audio_sets import load_audio_set
from mlkd_cli.data.features import compute_fbank, fbank_extractor
from mlkd_cli.data.rooms import simulate_rirs
from mlkd_cli.errors import ConfigError, DataError
from mlkd_cli.experiment.config import AugmentConfig, NoiseConfig, ReverbConfig, TelephoneConfig
from mlkd_cli.models.subsampling import subsampled_lengths
from mlkd_cli.train.augment import Augmenter, noise_features, use_fast_resampling
from mlkd_cli.train.augmented_copies import Prepared, copies_root, draw, prepare_augmentation, telephone
from mlkd_cli.train.batches import AsrDataset, NumberedBatches

SR = 16000


def write_set(directory: Path, signals: dict[str, np.ndarray], rate: int = SR) -> Path:
    """A Kaldi dir holding only wav.scp, as noise and RIR sets are."""
    directory.mkdir(parents=True, exist_ok=True)
    lines = []
    for key, x in sorted(signals.items()):
        sf.write(directory / f"{key}.wav", x.astype(np.float32), rate, subtype="FLOAT")
        lines.append(f"{key} {directory / key}.wav")
    (directory / "wav.scp").write_text("".join(line + "\n" for line in lines))
    return directory


@pytest.fixture
def speech(tmp_path: Path):
    """A 2 s 'utterance' (a chirp and a tone, all below 4 kHz) with one supervision and cached fbank."""
    t = np.arange(2 * SR) / SR
    x = 0.3 * np.sin(2 * np.pi * (300 + 400 * t) * t) + 0.2 * np.sin(2 * np.pi * 1200 * t)
    sf.write(tmp_path / "utt.wav", x.astype(np.float32), SR, subtype="FLOAT")
    cut = Recording.from_file(tmp_path / "utt.wav", recording_id="utt").to_cut()
    cut = dataclasses.replace(cut, id="utt", supervisions=[
        SupervisionSegment("utt", "utt", 0, 2.0, text="a b", language="en")])
    return compute_fbank(CutSet.from_cuts([cut]), tmp_path / "feats")[0]


def augmenter(config: AugmentConfig, noise: dict | None = None, copies: dict | None = None) -> Augmenter:
    return Augmenter(config, noise or {}, Prepared(copies or {}))


def fbank(samples: np.ndarray) -> np.ndarray:
    return fbank_extractor().extract(samples, SR)


def test_noise_is_mixed_into_cached_features_at_the_drawn_snr(speech, tmp_path: Path):
    noise_dir = write_set(tmp_path / "noise", {"white": np.random.default_rng(0).normal(0, 0.1, 5 * SR)})
    noise = {str(noise_dir): list(noise_features(str(noise_dir), tmp_path / "data"))}
    aug = augmenter(AugmentConfig(noise=NoiseConfig(prob=1.0, snr=(10.0, 10.0), sets=(str(noise_dir),))), noise)
    heard = aug.augment(speech, random.Random(0))
    clean, mixed = speech.load_audio()[0], heard.audio()[0]
    residual = mixed - clean
    snr = 10 * np.log10(np.sum(clean**2) / np.sum(residual**2))
    assert snr == pytest.approx(10.0, abs=0.2)
    assert heard.cut.id == speech.id and heard.cut.duration == speech.duration and heard.cut.supervisions[0].text == "a b"
    # mel energies mixed from the cached features: close to the fbank of the mixed audio (dB-like log units)
    from_features, from_audio = heard.features(), fbank(heard.audio())
    assert from_features.shape == from_audio.shape
    assert np.median(np.abs(from_features - from_audio)) < 0.15
    assert np.median(np.abs(speech.load_features() - from_audio)) > 1.0  # the noise is there
    # a cut without cached features (`speed_perturb: true` makes them on the fly) hears the noise in its audio
    fast = speech.drop_features().perturb_speed(1.1)
    heard = aug.augment(fast, random.Random(1))
    assert heard.noise and heard.features().shape == fbank(heard.audio()).shape
    assert np.array_equal(heard.features(), fbank(heard.audio()))


def test_babble_of_three_talkers_makes_the_drawn_snr_together(speech, tmp_path: Path):
    rng = np.random.default_rng(1)
    talkers = []
    for i in range(6):
        path = tmp_path / f"talker{i}.wav"
        sf.write(path, rng.normal(0, 0.05 * (i + 1), 3 * SR).astype(np.float32), SR, subtype="FLOAT")
        talkers.append(Recording.from_file(path).to_cut())
    babble = compute_fbank(CutSet.from_cuts(talkers), tmp_path / "babble")
    aug = augmenter(AugmentConfig(noise=NoiseConfig(prob=1.0, snr=(5.0, 5.0), babble=3)), {"babble": list(babble)})
    heard = aug.augment(speech, random.Random(3))
    clean, mixed = speech.load_audio()[0], heard.audio()[0]
    assert len({track.cut.id for track in heard.noise}) == 3  # three talkers
    # independent noises: their powers add, so together they sit at the drawn SNR
    assert 10 * np.log10(np.sum(clean**2) / np.sum((mixed - clean) ** 2)) == pytest.approx(5.0, abs=0.5)
    # summed mel energies leave out the talkers' cross terms: the same energy, bin by bin noisier than one noise
    mixed_features, from_audio = heard.features(), fbank(heard.audio())
    assert np.exp(mixed_features).sum() / np.exp(from_audio).sum() == pytest.approx(1.0, abs=0.1)
    assert np.median(np.abs(mixed_features - from_audio)) < 0.5


def test_reverberation_convolves_with_the_impulse_response(speech, tmp_path: Path):
    rir = np.zeros(400)
    rir[0], rir[160] = 1.0, 0.5  # the direct path and one echo 10 ms later
    rir_dir = write_set(tmp_path / "rirs", {"echo": rir})
    config = AugmentConfig(reverb=ReverbConfig(prob=1.0, rirs=(str(rir_dir),)))
    out = draw(speech, random.Random(0), config, list(load_audio_set(rir_dir, "RIR"))).load_audio()[0]
    clean = speech.load_audio()[0]
    expected = clean + 0.5 * np.concatenate([np.zeros(160), clean[:-160]])
    assert np.corrcoef(out, expected)[0, 1] > 0.999
    assert len(out) == len(clean)


def test_simulated_rooms_are_seeded_decaying_impulse_responses():
    a, b = simulate_rirs(3, seed=7), simulate_rirs(3, seed=7)
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
    assert not np.array_equal(a[0], a[1])
    for rir in a:
        energy = rir**2
        peak = int(np.argmax(energy))
        tail = energy[peak + SR // 10:]  # more than 100 ms after the direct path
        assert tail.sum() < energy[peak:peak + SR // 10].sum()


@pytest.mark.parametrize("codec", ["none", "gsm"])
def test_telephone_keeps_the_band_below_4_khz_only(codec: str):
    t = np.arange(2 * SR) / SR
    tones = (0.3 * np.sin(2 * np.pi * 6000 * t) + 0.3 * np.sin(2 * np.pi * 1000 * t)).astype(np.float32)
    buffer = io.BytesIO()
    sf.write(buffer, tones, SR, format="WAV", subtype="FLOAT")
    cut = Recording.from_bytes(buffer.getvalue(), "two-tones").to_cut()
    narrow = telephone(cut, codec)
    y = narrow.load_audio()[0]
    assert narrow.sampling_rate == SR and len(y) == len(tones)
    power = np.abs(np.fft.rfft(y)) ** 2
    freqs = np.fft.rfftfreq(len(y), 1 / SR)
    near = lambda f: power[np.abs(freqs - f) < 50].sum()  # noqa: E731
    assert near(6000) < 1e-4 * near(1000)  # the 6 kHz tone is gone, the 1 kHz one stays
    assert np.corrcoef(y, 0.3 * np.sin(2 * np.pi * 1000 * t))[0, 1] > (0.95 if codec == "none" else 0.5)


def test_speed_copy_and_volume(speech):
    config = AugmentConfig(speed_prob=1.0, speed_factors=(1.25,), volume_prob=1.0, volume_range=(0.5, 0.5))
    copy = draw(speech, random.Random(0), config, [])
    assert copy.duration == pytest.approx(speech.duration / 1.25, abs=1e-3)
    assert copy.supervisions[0].duration == pytest.approx(speech.duration / 1.25, abs=1e-3)
    heard = augmenter(config, copies={"utt": [copy] * config.copies}).augment(speech, random.Random(0))
    assert len(heard.features()) == round(copy.duration / 0.01)  # computed from its audio (no features attached here)
    assert heard.cut is copy and heard.gain == 0.5
    rms = lambda x: np.sqrt(np.mean(x**2))  # noqa: E731
    assert rms(heard.audio()) == pytest.approx(0.5 * rms(copy.load_audio()), rel=1e-5)


def test_copies_are_rendered_once_per_settings_and_reused(speech, tmp_path: Path, caplog):
    """Each utterance's copies draw the waveform kinds by their probabilities, their fbank is that of
    their audio, and a second stage with the same settings reads them instead of rendering again."""
    cuts = CutSet.from_cuts(dataclasses.replace(speech, id=f"utt{i}") for i in range(40))
    config = AugmentConfig(reverb=ReverbConfig(prob=0.5, simulated_rooms=4), telephone=TelephoneConfig(prob=0.2),
                           speed_prob=0.3, copies=2)
    data = tmp_path / "data"
    with caplog.at_level(logging.INFO, logger="mlkd"):
        copies = prepare_augmentation(data, config, cuts, num_jobs=1).copies
    assert sorted(copies) == sorted(c.id for c in cuts) and all(len(v) == 2 for v in copies.values())
    changed = [c for v in copies.values() for c in v if c is not None]
    assert 40 < len(changed) < 75  # 80 draws, each changed with probability 1 - 0.5 * 0.8 * 0.7 = 0.72
    assert "augmentation (en): " in caplog.text and str(copies_root(data, config)) in caplog.text
    copy = changed[0]
    assert np.abs(copy.load_features() - fbank(copy.load_audio())).max() < 0.1  # lilcom's precision
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="mlkd"):
        again = prepare_augmentation(data, config, cuts, num_jobs=1).copies
    assert "augmentation (en): " not in caplog.text and "up to date" in caplog.text
    assert {k: [c and c.id for c in v] for k, v in again.items()} == {k: [c and c.id for c in v] for k, v in copies.items()}
    other = dataclasses.replace(config, speed_prob=0.0)
    assert copies_root(data, other) != copies_root(data, config)
    assert prepare_augmentation(data, AugmentConfig(volume_prob=0.5), cuts) == Prepared()  # nothing to render


def test_draws_are_reproducible_and_different_draws_differ(speech, tmp_path: Path):
    noise_dir = write_set(tmp_path / "noise", {"n": np.random.default_rng(0).normal(0, 0.1, 5 * SR)})
    config = AugmentConfig(noise=NoiseConfig(prob=0.7, sets=(str(noise_dir),)), reverb=ReverbConfig(prob=0.7, simulated_rooms=8),
                           telephone=TelephoneConfig(prob=0.5), speed_prob=0.5, volume_prob=0.5, copies=4)
    aug = Augmenter.build(config, CutSet.from_cuts([speech]), tmp_path / "data", num_jobs=1)
    first = [aug.augment(speech, random.Random(s)) for s in range(8)]
    again = [aug.augment(speech, random.Random(s)) for s in range(8)]
    assert all(np.array_equal(a.features(), b.features()) and np.array_equal(a.audio(), b.audio())
               for a, b in zip(first, again))
    assert len({a.features().tobytes() for a in first}) > 3  # different draws, different features


def test_cuts_that_draw_nothing_keep_their_cached_features(prepared: Path):
    from mlkd_cli.data.prepare import PreparedData

    data = PreparedData(prepared)
    cuts = data.cuts("train").to_eager().subset(first=6)
    plain = AsrDataset(data.tokenizer())[cuts]
    never = AsrDataset(data.tokenizer(), augment=augmenter(AugmentConfig(volume_prob=1e-12)))[cuts]
    assert torch.equal(plain.features, never.features)
    loud = AsrDataset(data.tokenizer(), augment=augmenter(AugmentConfig(volume_prob=1.0, volume_range=(2.0, 2.0))))[cuts]
    assert loud.features.shape == plain.features.shape and torch.equal(loud.feature_lens, plain.feature_lens)
    # twice the amplitude adds log(4) to every fbank bin of the cached features
    valid = plain.features[0, : plain.feature_lens[0]]
    assert torch.allclose(loud.features[0, : plain.feature_lens[0]] - valid, torch.tensor(np.log(4), dtype=torch.float32),
                          atol=1e-5)


def test_augmentation_takes_nothing_from_torchs_generator(prepared: Path):
    """A run with augmentation draws the same SpecAugment masks and dropout as the run without it, and each cut's
    augmentation is a function of (seed, update, cut): the same again, another with another seed."""
    from lhotse.utils import fix_random_seed

    from mlkd_cli.data.prepare import PreparedData
    from mlkd_cli.experiment.config import SpecAugmentConfig

    data = PreparedData(prepared)
    cuts = data.cuts("train").to_eager().subset(first=6)
    spec = SpecAugmentConfig(enabled=True)
    config = AugmentConfig(volume_prob=0.5)

    def after_batches(augment: Augmenter | None) -> tuple[list[torch.Tensor], torch.Tensor]:
        """Three batches, and torch's generator after them."""
        fix_random_seed(0)  # SpecAugment draws from Python's, NumPy's and torch's generators
        dataset = AsrDataset(data.tokenizer(), spec, augment=augment)
        return [dataset[(step, cuts)].features for step in range(3)], torch.get_rng_state()

    plain, generator = after_batches(None)
    volume = Augmenter(config, {}, Prepared(), seed=7)
    louder, generator_augmenting = after_batches(volume)
    assert torch.equal(generator, generator_augmenting)
    assert not all(torch.equal(a, b) for a, b in zip(plain, louder))
    gains = [[h.gain for h in volume(cuts, step)] for step in range(3)]
    assert gains == [[h.gain for h in volume(cuts, step)] for step in range(3)]
    assert gains != [[h.gain for h in Augmenter(config, {}, Prepared(), seed=8)(cuts, step)] for step in range(3)]


def test_noise_set_at_8_khz_is_resampled(tmp_path: Path, caplog):
    directory = write_set(tmp_path / "n8k", {"hum": np.sin(np.arange(8000 * 3) / 8000 * 2 * np.pi * 100)}, rate=8000)
    with caplog.at_level(logging.INFO, logger="mlkd"):
        cuts = load_audio_set(directory, "noise")
    assert cuts[0].sampling_rate == SR and cuts[0].load_audio().shape == (1, 3 * SR)
    assert "resampled to 16000 Hz" in caplog.text


@pytest.mark.parametrize("case", ["missing dir", "empty", "missing file", "corrupt file", "command"])
def test_bad_noise_sets_fail_with_one_line_naming_the_file(tmp_path: Path, case: str):
    directory = tmp_path / "noise"
    directory.mkdir()
    scp = directory / "wav.scp"
    if case == "missing dir":
        directory = tmp_path / "nowhere"
    elif case == "empty":
        scp.write_text("")
    elif case == "missing file":
        scp.write_text(f"a {tmp_path}/gone.wav\n")
    elif case == "corrupt file":
        (tmp_path / "bad.wav").write_bytes(b"RIFF0000WAVEjunk")
        scp.write_text(f"a {tmp_path}/bad.wav\n")
    else:
        scp.write_text("a sox x.wav -t wav - |\n")
    with pytest.raises(DataError) as err:
        load_audio_set(directory, "noise")
    message = str(err.value)
    assert "\n" not in message
    expected = {"missing dir": "nowhere: noise set not found", "empty": "empty noise set",
                "missing file": "wav.scp:1: noise file", "corrupt file": "cannot read noise file",
                "command": "is a command"}[case]
    assert expected in message


def test_config_errors_name_the_option():
    with pytest.raises(ConfigError, match=r"noise snr: min 20.0 > max 10.0"):
        NoiseConfig(snr=(20.0, 10.0))
    with pytest.raises(ConfigError, match="needs a source"):
        NoiseConfig(prob=0.5)
    with pytest.raises(ConfigError, match="reverb prob must be in"):
        ReverbConfig(prob=1.5)
    with pytest.raises(ConfigError, match="choose from gsm, none"):
        TelephoneConfig(codecs=("amr",))


def test_train_config_with_a_missing_noise_set_fails_before_training(prepared: Path, tmp_path: Path):
    import yaml

    cfg = tmp_path / "t.yaml"
    cfg.write_text(yaml.safe_dump({"max_steps": 2, "augment": {"noise": {"prob": 0.5, "sets": [str(tmp_path / "musan")]}}}))
    result = run_cli("train-teacher", "--data", prepared, "--lang", "en", "--model-config",
                     TINY_MODEL, "--train-config", cfg,
                     tmp_path / "exp")
    assert result.exit_code != 0
    assert "musan: noise set not found" in result.output
    assert not (tmp_path / "exp" / "final.pt").exists()


def test_teachers_hear_what_the_student_hears(prepared: Path):
    """``keep_clean`` (the on-the-fly teachers' input) is the augmented audio before SpecAugment."""
    from mlkd_cli.data.prepare import PreparedData
    from mlkd_cli.experiment.config import SpecAugmentConfig

    data = PreparedData(prepared)
    cuts = data.cuts("train").to_eager().subset(first=4)
    loud = augmenter(AugmentConfig(volume_prob=1.0, volume_range=(2.0, 2.0)))
    torch.manual_seed(0)
    batch = AsrDataset(data.tokenizer(), SpecAugmentConfig(), keep_clean=True, augment=loud, with_audio=True)[cuts]
    plain = AsrDataset(data.tokenizer(), with_audio=True)[cuts]
    assert torch.allclose(batch.audio, 2 * plain.audio, atol=1e-6)
    assert (batch.clean_features - plain.features)[0, : plain.feature_lens[0]].median().item() == pytest.approx(
        np.log(4), abs=0.1)
    assert not torch.equal(batch.features, batch.clean_features)  # SpecAugment on the student's copy only


def distill(prepared: Path, tiny_teachers: dict, tmp_path: Path, **kd) -> tuple:
    import yaml

    tmp_path.mkdir()
    cfg = tmp_path / "t.yaml"
    cfg.write_text(yaml.safe_dump({"max_steps": 4, "max_duration": 15.0, "valid_interval": 4, "average": 1,
                                   "augment": {"speed_prob": 0.5, "noise": {"prob": 0.5, "babble": 2}}}))
    kd_cfg = tmp_path / "kd.yaml"
    kd_cfg.write_text(yaml.safe_dump(kd))
    exp = tmp_path / "student"
    result = run_cli("distill", "--data", prepared, "--model-config", TINY_MODEL, "--train-config", cfg,
                     "--kd-config", kd_cfg, *tiny_teachers.values(), exp)
    return result, exp


def test_cached_targets_follow_each_speed_perturbed_copy(prepared: Path, tiny_teachers: dict, tmp_path: Path):
    from lhotse import CutSet

    result, exp = distill(prepared, tiny_teachers, tmp_path / "cached", targets="cached")
    assert result.exit_code == 0, result.output
    log = (exp / "log" / "train.0.log").read_text()
    assert "3 precomputed copies per utterance" in log and "speed [0.9, 1.1] p=0.5; noise [10.0, 20.0] dB from babble" in log
    cached = CutSet.from_file(exp / "teacher_targets" / "en" / "cuts.jsonl.gz")
    copies = [c for c in cached if "_copy" in c.id]
    assert copies and len(cached) > len(copies)
    originals = {c.id: c for c in cached}
    speed = [c for c in copies if c.num_frames != originals[c.id.rsplit("_copy", 1)[0]].num_frames]
    assert speed  # some copies drew a speed change: their targets have their own length
    for cut in speed:
        assert cut.load_custom("kd_hidden").shape[0] == subsampled_lengths(torch.tensor(cut.num_frames)).item()
    result, exp = distill(prepared, tiny_teachers, tmp_path / "live", targets="on-the-fly")
    assert result.exit_code == 0, result.output


def test_augmentation_runs_during_its_share_of_the_updates(speech):
    """`during: [0.5, 0.8]` of 10 updates: updates 5, 6 and 7 (counted from 0) are augmented, the rest clean;
    the updates are the batches' numbers, as NumberedBatches counts them on from a resumed step."""
    config = AugmentConfig(volume_prob=1.0, volume_range=(0.5, 0.5), during=(0.5, 0.8))
    aug = Augmenter(config, {}, Prepared(), max_steps=10)
    gains = [aug(CutSet.from_cuts([speech]), step)[0].gain for step in range(10)]
    assert gains == [1.0] * 5 + [0.5] * 3 + [1.0] * 2
    numbered = NumberedBatches(["a", "b", "c"])
    numbered.next_step = 7
    assert list(numbered) == [(7, "a"), (8, "b"), (9, "c")]
    with pytest.raises(ConfigError, match=r"augment during \[0.8, 0.5\]"):
        AugmentConfig(during=(0.8, 0.5))


def test_libsox_says_nothing_on_the_terminal_about_clipped_samples(capfd):
    import ctypes

    from lhotse.tools import libsox

    use_fast_resampling()
    loud = np.clip(np.random.default_rng(0).standard_normal(16000).astype(np.float32), -1, 1)
    verbosity = libsox.libsox.sox_get_globals()
    assert isinstance(verbosity, ctypes.POINTER(ctypes.c_uint)) and verbosity.contents.value == 1
    libsox.libsox_rate(loud, 16000, 14545)
    assert "clipped" not in capfd.readouterr().err
    verbosity.contents.value = 2  # libsox's default: the warning this test is about
    try:
        libsox.libsox_rate(loud, 16000, 14545)
        assert "rate clipped" in capfd.readouterr().err
    finally:
        verbosity.contents.value = 1


def test_libsox_resamples_under_a_preloaded_jemalloc():
    """local/run.sh preloads jemalloc; lhotse frees libsox's buffers with libc.so.6's own free(),
    which aborts on jemalloc's memory unless mlkd hands it the process's free()."""
    jemalloc = subprocess.run(["bash", "-c", "ldconfig -p | awk '$1 == \"libjemalloc.so.2\" {p = $NF} END {print p}'"],
                              capture_output=True, text=True).stdout.strip()
    assert jemalloc, "libjemalloc2 is one of local/install_system_deps.sh's packages"
    script = ("import numpy as np\n"
              "from lhotse.tools import libsox\n"
              "from mlkd_cli.train.augment import use_fast_resampling\n"
              "use_fast_resampling()\n"
              "audio = np.random.default_rng(0).uniform(-0.5, 0.5, 16000).astype(np.float32)\n"
              "for _ in range(20):\n"
              "    out, rate = libsox.libsox_rate(audio, 16000, 8000)\n"
              "print(out.shape, rate)\n")
    result = subprocess.run([sys.executable, "-c", script], env={**os.environ, "LD_PRELOAD": jemalloc},
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr[-500:]
    assert result.stdout.strip() == "(8000,) 8000"
