"""Kaldi data dir validation: a valid dir, then one bad input per check."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Callable

import numpy as np
import pytest
import soundfile as sf

from mlkd_cli.data.kaldi_dir import KaldiDirInfo, validate_kaldi_dir
from mlkd_cli.data.language import normalize_language, require_language
from mlkd_cli.errors import DataError

RATE = 16000
# utterance id → (speaker, language, transcript, duration in seconds)
UTTERANCES = {
    "en_a-001": ("en_a", "en", "hello world", 0.5),
    "en_a-002": ("en_a", "en", "good morning", 0.25),
    "en_b-001": ("en_b", "en", "thank you", 0.75),
    "ru_c-001": ("ru_c", "ru", "привет мир", 0.5),
    "ru_d-001": ("ru_d", "ru", "доброе утро", 0.25),
    "ru_d-002": ("ru_d", "ru", "спасибо", 0.5),
}


def write_wav(path: Path, seconds: float, rate: int = RATE) -> None:
    rng = np.random.default_rng(0)
    sf.write(path, 0.1 * rng.standard_normal(round(seconds * rate)), rate, subtype="PCM_16")


def write_lines(path: Path, lines: list[str]) -> None:
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")


def read_lines(path: Path) -> list[str]:
    return path.read_text(encoding="utf-8").splitlines()


def write_spk2utt(data: Path) -> None:
    speakers: dict[str, list[str]] = {}
    for line in read_lines(data / "utt2spk"):
        utt, spk = line.split()
        speakers.setdefault(spk, []).append(utt)
    write_lines(data / "spk2utt", [f"{spk} {' '.join(utts)}" for spk, utts in sorted(speakers.items())])


def write_kaldi_dir(root: Path, utterances: dict[str, tuple[str, str, str, float]]) -> Path:
    """``root/data`` with the utterances in the given order and one wav each in ``root/wav``."""
    (root / "wav").mkdir()
    data = root / "data"
    data.mkdir()
    for utt, (_, _, _, seconds) in utterances.items():
        write_wav(root / "wav" / f"{utt}.wav", seconds)
    write_lines(data / "wav.scp", [f"{u} {root / 'wav' / u}.wav" for u in utterances])
    write_lines(data / "text", [f"{u} {v[2]}" for u, v in utterances.items()])
    write_lines(data / "utt2spk", [f"{u} {v[0]}" for u, v in utterances.items()])
    write_lines(data / "utt2lang", [f"{u} {v[1]}" for u, v in utterances.items()])
    write_spk2utt(data)
    return data


@pytest.fixture
def kaldi_dir(tmp_path: Path) -> Path:
    """A valid dir: 6 utterances, 4 speakers, English and Russian, one 16 kHz wav each."""
    return write_kaldi_dir(tmp_path, {u: UTTERANCES[u] for u in sorted(UTTERANCES)})


def test_valid_dir(kaldi_dir: Path) -> None:
    info = validate_kaldi_dir(kaldi_dir)
    assert isinstance(info, KaldiDirInfo)
    assert info.utterances == sorted(UTTERANCES)
    assert info.utt2lang == {u: v[1] for u, v in UTTERANCES.items()}
    assert info.utt2spk == {u: v[0] for u, v in UTTERANCES.items()}
    assert info.text["ru_d-002"] == "спасибо"
    assert {u: r.duration for u, r in info.recordings.items()} == pytest.approx(
        {u: v[3] for u, v in UTTERANCES.items()}
    )
    assert info.sampling_rates == [RATE]
    assert not info.has_segments
    assert {f.name for f in info.files} == {"wav.scp", "text", "utt2spk", "spk2utt", "utt2lang"}
    assert all(Path(r.path).is_absolute() for r in info.recordings.values())


def test_segments_and_commands_accepted(kaldi_dir: Path) -> None:
    wav = read_lines(kaldi_dir / "wav.scp")
    wav[0] = "en_a-001 sox /nonexistent.flac -t wav - |"  # commands are not probed
    write_lines(kaldi_dir / "wav.scp", wav)
    segments = [f"{u} {u} 0.00 {UTTERANCES[u][3]:.2f}" for u in sorted(UTTERANCES)]
    segments[2] = "en_b-001 en_b-001 0.10 -1"  # Kaldi: -1 = to the end of the recording
    write_lines(kaldi_dir / "segments", segments)
    info = validate_kaldi_dir(kaldi_dir)
    assert info.has_segments and info.segments["en_b-001"].end == 0.75
    assert info.recordings["en_a-001"].is_command and info.recordings["en_a-001"].duration is None


def test_relative_paths_resolve_against_current_dir(kaldi_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = kaldi_dir.parent
    write_lines(kaldi_dir / "wav.scp", [f"{u} wav/{u}.wav" for u in sorted(UTTERANCES)])
    monkeypatch.chdir(root)
    info = validate_kaldi_dir("data")
    assert info.recordings["en_a-001"].path == str(root / "wav" / "en_a-001.wav")


def test_without_utt2lang_when_not_required(kaldi_dir: Path) -> None:
    (kaldi_dir / "utt2lang").unlink()
    assert validate_kaldi_dir(kaldi_dir, require_lang=False).utt2lang == {}


def edit(name: str, change: Callable[[list[str]], list[str]]) -> Callable[[Path], None]:
    """A mutation that rewrites one file of the dir line by line."""

    def mutate(data: Path) -> None:
        write_lines(data / name, change(read_lines(data / name)))

    return mutate


def replace_line(index: int, line: str) -> Callable[[list[str]], list[str]]:
    return lambda lines: lines[:index] + [line] + lines[index + 1:]


def insert_line(index: int, line: str) -> Callable[[list[str]], list[str]]:
    return lambda lines: lines[:index] + [line] + lines[index:]


def swap_first_two(lines: list[str]) -> list[str]:
    return [lines[1], lines[0]] + lines[2:]


def move_to_other_speaker(data: Path) -> None:
    spk2utt = ["en_a en_a-001", "en_b en_a-002 en_b-001", "ru_c ru_c-001", "ru_d ru_d-001 ru_d-002"]
    write_lines(data / "spk2utt", spk2utt)


def speaker_of_second(speaker: str) -> Callable[[Path], None]:
    def mutate(data: Path) -> None:
        edit("utt2spk", replace_line(1, f"en_a-002 {speaker}"))(data)
        write_spk2utt(data)

    return mutate


def with_bom(name: str) -> Callable[[Path], None]:
    return lambda data: (data / name).write_bytes(b"\xef\xbb\xbf" + (data / name).read_bytes())


def wav_of(data: Path, utt: str) -> Path:
    return Path(dict(line.split(maxsplit=1) for line in read_lines(data / "wav.scp"))[utt])


def corrupt_wav(data: Path) -> None:
    wav_of(data, "en_b-001").write_bytes(np.random.default_rng(1).bytes(4000))


def resample_one(data: Path) -> None:
    write_wav(wav_of(data, "ru_c-001"), 0.5, rate=8000)


def write_crlf_text(data: Path) -> None:
    (data / "text").write_bytes(b"".join(line.encode() + b"\r\n" for line in read_lines(data / "text")))


def write_segments(end_of_second: str, rec_of_second: str = "en_a-002") -> Callable[[Path], None]:
    def mutate(data: Path) -> None:
        lines = [f"{u} {u} 0.00 {UTTERANCES[u][3]:.2f}" for u in sorted(UTTERANCES)]
        lines[1] = f"en_a-002 {rec_of_second} 0.00 {end_of_second}"
        write_lines(data / "segments", lines)

    return mutate


def latin1_text(data: Path) -> None:
    (data / "text").write_bytes((data / "text").read_bytes().replace("hello".encode(), "héllo".encode("latin-1")))


def remove(name: str) -> Callable[[Path], None]:
    return lambda data: (data / name).unlink()


BAD_CASES = {
    "unsorted": (edit("utt2spk", swap_first_two), "utt2spk:2", "not sorted"),
    "duplicate id": (edit("text", insert_line(1, "en_a-001 hello again")), "text:2", "duplicate key en_a-001"),
    "spk2utt mismatch": (move_to_other_speaker, "spk2utt", "does not match utt2spk"),
    "text for missing utterance": (edit("text", insert_line(2, "en_a-003 extra")), "text:3", "not in"),
    "utt2lang file missing": (remove("utt2lang"), "utt2lang", "awk '{print $1, \"en\"}'"),
    "utt2lang misses an utterance": (edit("utt2lang", lambda ls: ls[:-1]), "utt2lang", "ru_d-002"),
    "utt2lang unknown code": (
        edit("utt2lang", replace_line(3, "ru_c-001 xx")), "utt2lang:4", "unknown language 'xx'"
    ),
    "wav does not exist": (
        edit("wav.scp", replace_line(0, "en_a-001 /no/such.wav")), "wav.scp:1", "does not exist"
    ),
    "corrupt wav": (corrupt_wav, "wav.scp:3", "is corrupt or not an audio format"),
    "empty transcript": (edit("text", replace_line(4, "ru_d-001")), "text:5", "empty transcript"),
    "segment past end of audio": (write_segments("0.40"), "segments:2", "past the end of the audio"),
    "segment start after end": (write_segments("-0.5"), "segments:2", "need 0 <= start < end"),
    "segment unknown recording": (write_segments("0.25", rec_of_second="rec9"), "segments:2", "not in"),
    "mixed sampling rates": (resample_one, "wav.scp", "mixed sampling rates: 16000 Hz (5 file(s)"),
    "CRLF": (write_crlf_text, "text:1", "CRLF"),
    "not UTF-8": (latin1_text, "text:1", "not valid UTF-8"),
    "blank line": (edit("wav.scp", insert_line(2, "")), "wav.scp:3", "blank line"),
    "3-column utt2spk": (edit("utt2spk", replace_line(2, "en_b-001 en_b extra")), "utt2spk:3", "expected 2"),
    "3-column utt2lang": (edit("utt2lang", replace_line(2, "en_b-001 en extra")), "utt2lang:3",
                          "expected 'UTT LANG' (2 columns), got 3"),
    "no speaker prefix": (speaker_of_second("en_x"), "utt2spk:2", "does not start with its speaker id en_x;"),
    "speaker id inside, not a prefix": (
        speaker_of_second("a"), "utt2spk:2", "utterance id en_a-002 does not start with its speaker id a;"
    ),
    "wav.scp ids differ without segments": (
        edit("wav.scp", lambda ls: [ls[0].replace("en_a-001 ", "en_a-000 ", 1)] + ls[1:]),
        "wav.scp",
        "without a segments file",
    ),
    "missing required file": (remove("wav.scp"), "wav.scp", "not a Kaldi data dir"),
    "wav.scp names a directory": (lambda d: edit("wav.scp", replace_line(0, f"en_a-001 {d}"))(d), "wav.scp:1",
                                  "is a directory, not an audio file"),
    "wav.scp names a FIFO": (lambda d: (os.mkfifo(d / "fifo.wav"),
                                        edit("wav.scp", replace_line(0, f"en_a-001 {d / 'fifo.wav'}"))(d)),
                             "wav.scp:1", "is not a regular file (a FIFO or device), not an audio file"),
}


BAD_CASES |= {
    f"byte-order mark in {name}": (
        with_bom(name), f"{name}:1",
        f"{name}:1: starts with a UTF-8 byte-order mark; fix: sed -i '1s/^\\xEF\\xBB\\xBF//' ",
    )
    for name in ("text", "wav.scp", "utt2spk", "utt2lang")
}


@pytest.mark.parametrize("mutate, where, phrase", BAD_CASES.values(), ids=BAD_CASES.keys())
def test_bad_input(kaldi_dir: Path, mutate: Callable[[Path], None], where: str, phrase: str) -> None:
    mutate(kaldi_dir)
    with pytest.raises(DataError) as error:
        validate_kaldi_dir(kaldi_dir)
    message = str(error.value)
    assert where in message and phrase in message
    assert "fix:" in message


MIXED_CASE = {"B-001": ("B", "en", "hello", 0.25), "a-001": ("a", "en", "world", 0.25)}


def test_mixed_case_ids_sorted_in_c_order_are_accepted(tmp_path: Path) -> None:
    assert validate_kaldi_dir(write_kaldi_dir(tmp_path, MIXED_CASE)).utterances == ["B-001", "a-001"]


def test_case_insensitive_order_is_not_sorted(tmp_path: Path) -> None:
    data = write_kaldi_dir(tmp_path, dict(reversed(MIXED_CASE.items())))
    with pytest.raises(DataError) as error:
        validate_kaldi_dir(data)
    assert str(error.value).startswith(
        f"{data / 'wav.scp'}:2: not sorted: B-001 follows a-001 (LC_ALL=C order); "
        f"fix: LC_ALL=C sort -o {data / 'wav.scp'} {data / 'wav.scp'}"
    )


def test_byte_order_mark_is_the_only_problem(kaldi_dir: Path) -> None:
    with_bom("utt2spk")(kaldi_dir)
    with pytest.raises(DataError) as error:
        validate_kaldi_dir(kaldi_dir)
    path = kaldi_dir / "utt2spk"
    assert str(error.value) == f"{path}:1: starts with a UTF-8 byte-order mark; fix: sed -i '1s/^\\xEF\\xBB\\xBF//' {path}"


def test_mixed_rates_allowed(kaldi_dir: Path) -> None:
    resample_one(kaldi_dir)
    info = validate_kaldi_dir(kaldi_dir, allow_mixed_rates=True)
    assert info.sampling_rates == [16000, 8000]
    assert info.recordings["ru_c-001"].sampling_rate == 8000


def test_missing_dir(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="not found"):
        validate_kaldi_dir(tmp_path / "nope")


def test_all_problems_counted_and_logged(kaldi_dir: Path, caplog: pytest.LogCaptureFixture) -> None:
    edit("text", replace_line(4, "ru_d-001"))(kaldi_dir)
    edit("utt2lang", replace_line(3, "ru_c-001 zzz"))(kaldi_dir)
    with caplog.at_level(logging.ERROR, logger="mlkd"), pytest.raises(DataError) as error:
        validate_kaldi_dir(kaldi_dir)
    assert "empty transcript" in str(error.value)
    assert str(error.value).endswith(" (and 1 more problem, logged above)")
    logged = [r.getMessage() for r in caplog.records if r.name == "mlkd"]
    assert len(logged) == 1 and "unknown language 'zzz'" in logged[0]  # the first is the error line, not logged too


@pytest.mark.parametrize(
    "value, code",
    [("en", "en"), ("eng", "en"), ("English", "en"), ("ENGLISH", "en"), ("german", "de"), ("ger", "de"),
     ("ru", "ru"), ("yue", "yue"), ("xx", None), ("zzz", None), ("", None),
     # locale tags of CommonVoice (zh-CN, pt-BR), FLEURS (en_us, cmn_hans_cn) and BCP 47
     ("zh-CN", "zh"), ("pt-BR", "pt"), ("en_us", "en"), ("cmn_hans_cn", "cmn"), ("de-DE", "de"),
     ("xx-YY", None)],
)
def test_normalize_language(value: str, code: str | None) -> None:
    assert normalize_language(value) == code


def test_require_language() -> None:
    assert require_language("Russian", "utt2lang:1") == "ru"
    with pytest.raises(DataError, match=r"utt2lang:7: unknown language 'elvish'.*ISO 639-1"):
        require_language("elvish", "utt2lang:7")
