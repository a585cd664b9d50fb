"""Audio of a Kaldi dir: truncated WAVs, audio too short for its transcript, stereo down-mix."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from test_kaldi_dir import RATE, write_kaldi_dir, write_lines

from mlkd_cli.data.features import compute_fbank, fbank_extractor
from mlkd_cli.data.kaldi_dir import validate_kaldi_dir
from mlkd_cli.data.manifests import Source, load_source
from mlkd_cli.errors import DataError

SENTENCE = "the quick brown fox jumps over the lazy dog"  # 35 letters: 0.70 s at 20 ms each
WAV_HEADER = 44  # bytes of the RIFF, fmt and data chunk headers soundfile writes


def one_utterance(root: Path, seconds: float, text: str = SENTENCE) -> tuple[Path, Path]:
    """A Kaldi dir with the single utterance spk-001, and its 16-bit mono wav."""
    data = write_kaldi_dir(root, {"spk-001": ("spk", "en", text, seconds)})
    return data, root / "wav" / "spk-001.wav"


def error_of(data: Path) -> str:
    with pytest.raises(DataError) as error:
        validate_kaldi_dir(data)
    return str(error.value)


def test_truncated_wav(tmp_path: Path) -> None:
    """An interrupted copy (`head -c`): libsndfile reports only the 0.09 s left, the header says 3.70 s."""
    data, wav = one_utterance(tmp_path, 3.7)
    wav.write_bytes(wav.read_bytes()[: WAV_HEADER + 2 * 1440])
    assert error_of(data) == (
        f"{data / 'wav.scp'}:1: {wav} is truncated: its header declares 3.70 s of audio, the file holds 0.09 s; "
        "fix: copy or convert it again from the original (the copy or download was cut short), "
        "or remove the recording and its utterances"
    )


def insert_chunk_before_data(wav: Path, chunk: bytes) -> None:
    """Put another chunk (padded to an even size, as RIFF requires) between the fmt and data chunks."""
    audio = wav.read_bytes()
    padded = chunk + b"\0" * (len(chunk) % 2)
    riff_size = int.from_bytes(audio[4:8], "little") + 8 + len(padded)
    wav.write_bytes(audio[:4] + riff_size.to_bytes(4, "little") + audio[8:36]
                    + b"LIST" + len(chunk).to_bytes(4, "little") + padded + audio[36:])


def test_truncated_wav_with_odd_sized_chunk_before_its_data(tmp_path: Path) -> None:
    data, wav = one_utterance(tmp_path, 3.7)
    insert_chunk_before_data(wav, b"INFOISFT\x01\0\0\0x")  # 13 bytes, padded to 14
    assert validate_kaldi_dir(data).recordings["spk-001"].duration == pytest.approx(3.7)
    wav.write_bytes(wav.read_bytes()[:-2 * RATE])
    assert "is truncated: its header declares 3.70 s of audio, the file holds 2.70 s" in error_of(data)


def set_data_size(wav: Path, size: int) -> None:
    audio = wav.read_bytes()
    wav.write_bytes(audio[:40] + size.to_bytes(4, "little") + audio[44:])


@pytest.mark.parametrize(
    "size",
    [0xFFFFFFFF, 0x7FFFF000, 2 * round(0.5 * RATE) + 2 * round(0.009 * RATE)],
    ids=["ffmpeg to a pipe", "sox to a pipe", "9 ms too long"],
)
def test_unset_or_nearly_right_data_size_is_accepted(tmp_path: Path, size: int) -> None:
    """Writers to a pipe cannot fill in the size; a header a few ms off loses nothing that matters."""
    data, wav = one_utterance(tmp_path, 0.5, "hello world")
    set_data_size(wav, size)
    assert validate_kaldi_dir(data).recordings["spk-001"].duration == pytest.approx(0.5)


def test_audio_too_short_for_its_transcript(tmp_path: Path) -> None:
    data, wav = one_utterance(tmp_path, 0.25)
    assert error_of(data) == (
        f"{data / 'wav.scp'}:1: {wav} holds 0.25 s of audio, too short to say the 35 letters and digits of its "
        f"transcript ({data / 'text'}:1), which needs at least 0.70 s (20 ms each); fix: the file is cut short "
        "or the wrong one: re-create it or correct its path, or remove the utterance"
    )


@pytest.mark.parametrize("text, ok", [("hello, world!!", True), ("hello worlds", True), ("hello worldly", False)])
def test_speech_rate_bound_is_20_ms_per_letter_or_digit(tmp_path: Path, text: str, ok: bool) -> None:
    """0.23 s holds 11 letters (punctuation and spaces are not spoken), not 12."""
    data, _ = one_utterance(tmp_path, 0.23, text)
    if ok:
        validate_kaldi_dir(data)
    else:
        assert "too short to say the 12 letters and digits" in error_of(data)


def test_a_few_utterances_too_short_for_their_transcripts_are_left_out_with_a_warning(tmp_path: Path, caplog) -> None:
    """Prompts that hold a beep: 1 of 3 is warned about and left out of the set; decoding keeps it."""
    data = write_kaldi_dir(tmp_path, {"spk-001": ("spk", "en", SENTENCE, 0.25), "spk-002": ("spk", "en", "hello", 1.0),
                                      "spk-003": ("spk", "en", "world", 1.0)})
    with caplog.at_level(logging.WARNING, logger="mlkd"):
        info = validate_kaldi_dir(data)
    assert info.unsayable == ["spk-001"]
    warnings = [r.getMessage() for r in caplog.records]
    assert len(warnings) == 2 and "wav.scp:1:" in warnings[0] and "too short to say the 35 letters" in warnings[0]
    assert warnings[1] == f"{data / 'text'}: 1 of 3 utterances have audio too short for their transcript (the first 1 " \
                          "above); they are left out of the set"
    assert [c.id for c in load_source(Source("train", data))] == ["spk-002", "spk-003"]
    assert [c.id for c in load_source(Source("x", data), transcripts_used=False)] == ["spk-001", "spk-002", "spk-003"]
    (tmp_path / "most").mkdir()
    most = write_kaldi_dir(tmp_path / "most", {f"spk-00{i}": ("spk", "en", SENTENCE, s)
                                               for i, s in ((1, 0.25), (2, 0.25), (3, 1.0))})
    assert "too short to say the 35 letters" in error_of(most) and "(and 1 more problem" in error_of(most)
    assert len(load_source(Source("x", most), transcripts_used=False)) == 3


def test_segment_too_short_for_its_transcript(tmp_path: Path) -> None:
    data, wav = one_utterance(tmp_path, 3.7)
    write_lines(data / "segments", ["spk-001 spk-001 1.00 1.50"])
    assert error_of(data).startswith(
        f"{data / 'segments'}:1: segment spk-001 of {wav} has 0.50 s of audio, too short to say the 35 letters "
        f"and digits of its transcript ({data / 'text'}:1), which needs at least 0.70 s (20 ms each); "
        "fix: correct the segment times, or remove the utterance"
    )


def test_stereo_is_mixed_down_to_the_channel_mean_as_decode_does(tmp_path: Path) -> None:
    """`mlkd decode` computes fbank of the mean of the channels; prepared features must match it."""
    data, wav = one_utterance(tmp_path, 1.0, "hello")
    rng = np.random.default_rng(0)
    t = np.arange(RATE) / RATE
    left, right = 0.1 * rng.standard_normal(RATE), 0.3 * np.sin(2 * np.pi * 440 * t)
    sf.write(wav, np.stack([left, right], axis=1), RATE, subtype="PCM_16")
    [cut] = compute_fbank(load_source(Source("x", data)), tmp_path / "fbank")
    samples = sf.read(wav, dtype="float32")[0].T
    extractor = fbank_extractor()
    mean, first = (extractor.extract(s, RATE) for s in (samples.mean(axis=0), samples[0]))
    features = cut.load_features()
    assert features.shape == mean.shape == (100, 80)
    np.testing.assert_allclose(features, mean, atol=0.02)  # lilcom stores to 1/32
    assert np.abs(features - first).max() > 1


@pytest.mark.parametrize("at", ["write", "close"])
def test_a_full_disk_is_blamed_on_the_output_not_the_audio(tmp_path: Path, monkeypatch, at: str) -> None:
    import errno

    from lhotse import LilcomChunkyWriter

    data, _ = one_utterance(tmp_path, 1.0, "hello")
    cuts = load_source(Source("train", data))

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(LilcomChunkyWriter, at, full)
    with pytest.raises(DataError) as error:
        compute_fbank(cuts, tmp_path / "feats")
    assert str(error.value).startswith(f"{tmp_path / 'feats' / 'feats-0'}: cannot write features (No space left on "
                                       "device); the input audio is fine")
