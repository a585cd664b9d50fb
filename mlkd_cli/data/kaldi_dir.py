"""Validation of Kaldi data directories before anything is imported.

lhotse's Kaldi importer is lenient (CRLF, unsorted files, extra columns, unreadable audio
silently dropped), so every file is checked here first. All problems are collected and
logged, one line each naming ``file:line``, what is wrong and the fix; then one DataError
carries the first of them.
"""

from __future__ import annotations

import logging
import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

import soundfile as sf

from mlkd_cli.contracts import SAMPLING_RATE
from mlkd_cli.data.kaldi_table import Row, read_table
from mlkd_cli.data.language import require_language
from mlkd_cli.errors import DataError, Problems

logger = logging.getLogger("mlkd")

REQUIRED_FILES = ("wav.scp", "utt2spk")
OPTIONAL_FILES = ("text", "spk2utt", "segments", "utt2lang")  # no text: an untranscribed set
SEGMENT_END_TOLERANCE_S = 0.01
# A WAV header may overstate its data by a few bytes (some writers count their own header);
# more missing audio than this means the file was cut short.
TRUNCATION_TOLERANCE_S = 0.01
# Fluent speech runs at about 15 letters a second (65 ms each) in alphabetic scripts and 5 characters
# a second in Chinese; even the fastest talkers stay above 30 ms a letter. Audio shorter than 20 ms
# per letter or digit of its transcript cannot be that transcript spoken: it is cut short or wrong.
MIN_SECONDS_PER_CHARACTER = 0.02
WARNED_UNSAYABLE = 10  # utterances too short for their transcript warned about one by one
_SHOWN_IDS = 5


@dataclass(frozen=True)
class RecordingInfo:
    """One wav.scp entry: an absolute audio path, or a command ending in ``|`` (not probed)."""

    path: str
    sampling_rate: int | None  # None for commands
    duration: float | None  # seconds; None for commands

    @property
    def is_command(self) -> bool:
        return self.path.endswith("|")


@dataclass(frozen=True)
class Segment:
    recording_id: str
    start: float
    end: float


@dataclass
class KaldiDirInfo:
    """What a valid Kaldi data dir holds, keyed by utterance or recording id."""

    path: Path
    files: list[Path]  # the Kaldi files present, for content digests
    utterances: list[str]  # in utt2spk order (LC_ALL=C sorted)
    recordings: dict[str, RecordingInfo]
    text: dict[str, str] | None  # None for an untranscribed set (no text file)
    utt2spk: dict[str, str]
    utt2lang: dict[str, str]  # canonical codes; empty when there is no utt2lang
    segments: dict[str, Segment] | None  # None when there is no segments file
    unsayable: list[str] = field(default_factory=list)  # utterances whose audio is too short for their transcript

    @property
    def has_segments(self) -> bool:
        return self.segments is not None

    @property
    def sampling_rates(self) -> list[int]:
        """Distinct rates of the probed audio files, most common first."""
        counts = Counter(r.sampling_rate for r in self.recordings.values() if r.sampling_rate)
        return [rate for rate, _ in counts.most_common()]


@dataclass
class _Table:
    path: Path
    rows: dict[str, Row]  # key → first row with that key, in file order

    def at(self, key: str) -> str:
        return f"{self.path}:{self.rows[key].line}"


def validate_kaldi_dir(
    path: str | Path, *, require_lang: bool = True, allow_mixed_rates: bool = False, transcripts_used: bool = True
) -> KaldiDirInfo:
    """Check a Kaldi data dir (§5 of DESIGN.md) and return its contents; DataError if invalid. Whether the
    audio can say each transcript is checked only where ``transcripts_used`` (decoding reads none)."""
    directory = Path(path)
    if not directory.is_dir():
        raise DataError(f"{directory}: data directory not found; fix: check the path")
    problems = Problems()
    _check_files_present(directory, require_lang, problems)
    tables = {
        name: _read_table(directory / name, problems)
        for name in REQUIRED_FILES + OPTIONAL_FILES
        if (directory / name).is_file()
    }
    utt2spk = _check_utt2spk(tables["utt2spk"], problems)
    if "spk2utt" in tables:
        _check_spk2utt(tables["spk2utt"], tables["utt2spk"], utt2spk, problems)
    text = None
    if "text" in tables:
        text = _check_text(tables["text"], problems)
        _compare_keys(tables["utt2spk"], tables["text"], problems, _fix_data_dir(directory))
    else:
        logger.info("%s: no text file: an untranscribed set (for `mlkd distill --unlabeled-set`)", directory)
    recordings = _check_wav_scp(tables["wav.scp"], allow_mixed_rates, problems)
    segments = None
    if "segments" in tables:
        segments = _check_segments(tables["segments"], tables["wav.scp"], recordings, problems)
        _compare_keys(tables["utt2spk"], tables["segments"], problems, _fix_data_dir(directory))
    else:
        _compare_keys(
            tables["utt2spk"], tables["wav.scp"], problems,
            "without a segments file each utterance is the whole recording of the same id; write a "
            f"segments file, or make the ids match (utils/fix_data_dir.sh {directory} keeps the common ones)",
        )
    unsayable = _check_speech_rates(tables, recordings, segments, problems) if transcripts_used else []
    utt2lang: dict[str, str] = {}
    if "utt2lang" in tables:
        utt2lang = _check_utt2lang(tables["utt2lang"], problems)
        _compare_keys(
            tables["utt2spk"], tables["utt2lang"], problems,
            f"give every utterance of utt2spk exactly one line 'UTT LANG' in {tables['utt2lang'].path}",
        )
    problems.raise_if_any()
    return KaldiDirInfo(
        path=directory,
        files=[directory / name for name in tables],
        utterances=list(tables["utt2spk"].rows),
        recordings=recordings,
        text=text,
        utt2spk=utt2spk,
        utt2lang=utt2lang,
        segments=segments,
        unsayable=unsayable,
    )


def _fix_data_dir(directory: Path) -> str:
    return (
        "add the missing lines or remove the extra ones "
        f"(Kaldi's utils/fix_data_dir.sh {directory} keeps the utterances common to all files)"
    )


def _check_files_present(directory: Path, require_lang: bool, problems: Problems) -> None:
    """Missing wav.scp/utt2spk ends validation at once; a missing utt2lang does not."""
    missing = [name for name in REQUIRED_FILES if not (directory / name).is_file()]
    if missing:
        problems.add(
            f"{directory}: not a Kaldi data dir: {', '.join(missing)} missing; fix: point to a "
            "directory with wav.scp, utt2spk and (unless untranscribed) text, made by the corpus's data "
            "preparation script"
        )
    utt2lang = directory / "utt2lang"
    if require_lang and not utt2lang.is_file():
        problems.add(
            f"{utt2lang}: missing; every utterance needs a language. fix: create it, e.g. for an "
            f"all-English dir: awk '{{print $1, \"en\"}}' {directory / 'utt2spk'} > {utt2lang}"
        )
    if missing:
        problems.raise_if_any()


def _read_table(path: Path, problems: Problems) -> _Table:
    """Parse ``KEY VALUE...`` lines, reporting encoding, CRLF, blank, unsorted and duplicate lines."""
    return _Table(path, read_table(path, problems.add, check_sorted=True, allow_empty=False))


def _check_utt2spk(table: _Table, problems: Problems) -> dict[str, str]:
    """utt → speaker; exactly two columns, utterance ids prefixed by their speaker id."""
    utt2spk: dict[str, str] = {}
    for utt, row in table.rows.items():
        fields = row.value.split()
        where = table.at(utt)
        if len(fields) != 1:
            problems.add(
                f"{where}: {len(fields) + 1} columns, expected 2 ('UTT SPK'); "
                f"fix: awk '{{print $1, $2}}' {table.path} > {table.path}.new && mv {table.path}.new {table.path}",
                f"{table.path} column count",
            )
        if not fields:
            continue
        speaker = utt2spk[utt] = fields[0]
        if not utt.startswith(speaker):
            problems.add(
                f"{where}: utterance id {utt} does not start with its speaker id {speaker}; fix: prefix "
                f"utterance ids with the speaker id (e.g. {speaker}-{utt}) in every file (Kaldi "
                "convention, so that sorted utterances stay grouped by speaker)",
                f"{table.path} speaker prefix",
            )
    return utt2spk


def _check_spk2utt(
    table: _Table, utt2spk_table: _Table, utt2spk: dict[str, str], problems: Problems
) -> None:
    """spk2utt must hold exactly the (utterance, speaker) pairs of utt2spk."""
    listed: dict[tuple[str, str], int] = {}
    for speaker, row in table.rows.items():
        for utt in row.value.split():
            listed.setdefault((utt, speaker), row.line)
    extra = [(pair, line) for pair, line in listed.items() if utt2spk.get(pair[0]) != pair[1]]
    missing = [utt for utt, speaker in utt2spk.items() if (utt, speaker) not in listed]
    if not extra and not missing:
        return
    if extra:
        (utt, speaker), line = extra[0]
        example = f"line {line} lists {utt} under {speaker}, utt2spk says {utt2spk.get(utt, 'nothing')}"
    else:
        example = f"{utt2spk_table.at(missing[0])} has {missing[0]} → {utt2spk[missing[0]]}, spk2utt does not"
    problems.add(
        f"{table.path}: does not match utt2spk ({len(extra)} pair(s) only in spk2utt, {len(missing)} only "
        f"in utt2spk; {example}); fix: regenerate it (Kaldi: utils/utt2spk_to_spk2utt.pl "
        f"{utt2spk_table.path} > {table.path}) or delete it (mlkd needs only utt2spk)"
    )


def _check_text(table: _Table, problems: Problems) -> dict[str, str]:
    """utt → transcript; none empty."""
    for utt, row in table.rows.items():
        if not row.value:
            problems.add(
                f"{table.at(utt)}: utterance {utt} has an empty transcript; fix: add its transcript, "
                f"or delete the line and run utils/fix_data_dir.sh {table.path.parent}",
                f"{table.path} empty transcripts",
            )
    return {utt: row.value for utt, row in table.rows.items()}


def _compare_keys(reference: _Table, other: _Table, problems: Problems, fix: str) -> None:
    """The keys of ``other`` must be the utterance ids of ``reference`` (utt2spk)."""
    missing = [key for key in reference.rows if key not in other.rows]
    extra = [key for key in other.rows if key not in reference.rows]
    if missing:
        problems.add(
            f"{other.path}: {len(missing)} utterance(s) of {reference.path} missing: "
            f"{_first_ids(missing)} (first at {reference.at(missing[0])}); fix: {fix}"
        )
    if extra:
        problems.add(
            f"{other.at(extra[0])}: {len(extra)} id(s) not in {reference.path}: {_first_ids(extra)}; fix: {fix}"
        )


def _first_ids(ids: list[str]) -> str:
    shown = ", ".join(ids[:_SHOWN_IDS])
    return shown + (", ..." if len(ids) > _SHOWN_IDS else "")


def _check_wav_scp(table: _Table, allow_mixed_rates: bool, problems: Problems) -> dict[str, RecordingInfo]:
    """recording → probed audio; every file readable and non-empty, one sampling rate."""
    recordings: dict[str, RecordingInfo] = {}
    for rec, row in table.rows.items():
        if not row.value:
            problems.add(
                f"{table.at(rec)}: recording {rec} has no audio path; fix: write 'REC PATH' or 'REC COMMAND |'",
                f"{table.path} missing paths",
            )
        elif row.value.endswith("|"):
            # A pipe is run only when the audio is loaded: probing it here would execute every
            # user command and decode the whole corpus, so it is accepted as it is.
            recordings[rec] = RecordingInfo(row.value, None, None)
        elif (info := _probe_audio(row.value, table.at(rec), problems)) is not None:
            recordings[rec] = info
    if not allow_mixed_rates:
        _check_single_rate(table, recordings, problems)
    return recordings


def _probe_audio(value: str, where: str, problems: Problems) -> RecordingInfo | None:
    path = Path(value)  # relative paths resolve against the current dir, as in Kaldi
    if path.exists() and not path.is_file():  # a directory, or a FIFO or device that reading would block on
        problems.add(
            f"{where}: {value} is {'a directory' if path.is_dir() else 'not a regular file (a FIFO or device)'}, not "
            "an audio file; fix: name the audio file, or write a command that prints it as 'REC COMMAND |'",
            "wav.scp not a file",
        )
        return None
    try:
        info = sf.info(str(path))
    except (sf.SoundFileError, OSError) as e:
        if not path.is_file():
            problems.add(
                f"{where}: audio file {value} does not exist (relative paths are resolved against the "
                f"current directory, {Path.cwd()}); fix: correct the path or run from the directory "
                "it is relative to",
                "wav.scp missing audio",
            )
        else:
            problems.add(
                f"{where}: {value} is corrupt or not an audio format libsndfile reads "
                f"({getattr(e, 'error_string', e)}); fix: re-create or convert it, "
                "e.g. sox IN -r 16000 OUT.wav, or remove the recording and its utterances",
                "wav.scp unreadable audio",
            )
        return None
    if info.frames <= 0:
        problems.add(
            f"{where}: {value} has no audio samples; fix: replace it or remove the recording and its utterances",
            "wav.scp empty audio",
        )
        return None
    if (sizes := _wav_data_sizes(path)) is not None:
        declared, available = (n // sizes.bytes_per_frame / info.samplerate for n in sizes[:2])
        if declared - available > TRUNCATION_TOLERANCE_S:
            problems.add(
                f"{where}: {value} is truncated: its header declares {declared:.2f} s of audio, the file holds "
                f"{available:.2f} s; fix: copy or convert it again from the original (the copy or download was "
                "cut short), or remove the recording and its utterances",
                "wav.scp truncated audio",
            )
            return None
    return RecordingInfo(os.path.abspath(path), info.samplerate, info.frames / info.samplerate)


class _WavDataSizes(NamedTuple):
    declared: int  # bytes of samples the data chunk header announces
    available: int  # bytes of samples the file holds after that header
    bytes_per_frame: int  # the fmt chunk's block align: channels x bytes per sample


def _wav_data_sizes(path: Path) -> _WavDataSizes | None:
    """Sizes of the data chunk of a RIFF WAV; None for other files and for an unset (streamed) size.

    libsndfile silently clamps the length of a WAV cut short (an interrupted copy, ``head -c``)
    to the bytes present, so only the header tells that audio is missing. Reads chunk headers only.
    """
    with open(path, "rb") as f:
        riff = f.read(12)
        if riff[:4] != b"RIFF" or riff[8:12] != b"WAVE":
            return None
        bytes_per_frame = 0
        while len(header := f.read(8)) == 8:
            name, size = header[:4], int.from_bytes(header[4:], "little")
            if name == b"data":
                if not bytes_per_frame or _is_unset_size(size, bytes_per_frame):
                    return None
                return _WavDataSizes(size, os.fstat(f.fileno()).st_size - f.tell(), bytes_per_frame)
            if name == b"fmt ":
                bytes_per_frame = int.from_bytes(f.read(size + size % 2)[12:14], "little")
            else:
                f.seek(size + size % 2, os.SEEK_CUR)  # chunks are padded to an even size
    return None


def _is_unset_size(size: int, bytes_per_frame: int) -> bool:
    """The placeholders of writers to a pipe, which cannot go back to fill in the size: ffmpeg
    leaves 0xFFFFFFFF, sox its "unspecified" 0x7FFFF000 rounded down to whole frames."""
    return size in (0, 0xFFFFFFFF) or size == 0x7FFFF000 // bytes_per_frame * bytes_per_frame


def _check_single_rate(table: _Table, recordings: dict[str, RecordingInfo], problems: Problems) -> None:
    counts: Counter[int] = Counter()
    examples: dict[int, str] = {}
    for info in recordings.values():
        if info.sampling_rate:
            counts[info.sampling_rate] += 1
            examples.setdefault(info.sampling_rate, info.path)
    if len(counts) > 1:
        rates = ", ".join(f"{rate} Hz ({n} file(s), e.g. {examples[rate]})" for rate, n in counts.most_common())
        problems.add(
            f"{table.path}: mixed sampling rates: {rates}; fix: convert them to one rate "
            f"(sox IN -r {SAMPLING_RATE} OUT.wav) or leave out --refuse-mixed-rates to resample them while loading"
        )


def _check_segments(
    table: _Table, wav_scp: _Table, recordings: dict[str, RecordingInfo], problems: Problems
) -> dict[str, Segment]:
    """utt → segment; known recording, 0 <= start < end <= recording duration."""
    segments: dict[str, Segment] = {}
    for utt, row in table.rows.items():
        where = table.at(utt)
        parsed = _parse_segment(row.value)
        if parsed is None:
            problems.add(
                f"{where}: expected 'UTT REC START END' with times in seconds; fix: correct the line",
                f"{table.path} malformed lines",
            )
            continue
        rec, start, end = parsed
        duration = recordings[rec].duration if rec in recordings else None
        if end == -1 and duration is not None:  # Kaldi: -1 means "to the end of the recording"
            end = duration
        if rec not in wav_scp.rows:
            problems.add(
                f"{where}: recording {rec} of utterance {utt} is not in {wav_scp.path}; fix: add it "
                f"there or delete the line and run utils/fix_data_dir.sh {table.path.parent}",
                f"{table.path} unknown recordings",
            )
            continue
        if not 0 <= start < end:
            problems.add(
                f"{where}: segment {utt} has start {start} and end {end}, need 0 <= start < end; "
                "fix: correct the times or delete the segment",
                f"{table.path} bad times",
            )
            continue
        if duration is not None and end > duration + SEGMENT_END_TOLERANCE_S:
            problems.add(
                f"{where}: segment {utt} ends at {end:.3f} s, past the end of the audio of {rec} "
                f"({duration:.3f} s); fix: clip the end time to the duration or delete the segment",
                f"{table.path} past end",
            )
        segments[utt] = Segment(rec, start, end)
    return segments


def _check_speech_rates(
    tables: dict[str, _Table], recordings: dict[str, RecordingInfo], segments: dict[str, Segment] | None,
    problems: Problems,
) -> list[str]:
    """Utterances whose audio is too short to say their transcript (MIN_SECONDS_PER_CHARACTER): a few
    (prompts that hold a beep, say) are returned with a warning each, to be left out of training; a
    set where most are is refused."""
    if "text" not in tables:
        return []
    text = tables["text"]
    short: list[tuple[str, str]] = []
    for utt, row in text.rows.items():
        characters = sum(c.isalnum() for c in row.value)  # punctuation and spaces take no time
        needed = characters * MIN_SECONDS_PER_CHARACTER
        audio = _utterance_audio(utt, tables, recordings, segments)
        if audio is None or audio[2] >= needed:
            continue
        where, what, duration, fix = audio
        short.append((utt, f"{where}: {what} {duration:.2f} s of audio, too short to say the {characters} letters and "
                           f"digits of its transcript ({text.at(utt)}), which needs at least {needed:.2f} s "
                           f"({MIN_SECONDS_PER_CHARACTER * 1000:.0f} ms each); fix: {fix}, or remove the utterance"))
    if 2 * len(short) > len(text.rows):
        for _, message in short:
            problems.add(message, "audio too short for the transcript")
        return []
    for _, message in short[:WARNED_UNSAYABLE]:
        logger.warning(message)
    if short:
        logger.warning("%s: %d of %d utterances have audio too short for their transcript (the first %d above); "
                       "they are left out of the set", text.path, len(short), len(text.rows),
                       min(len(short), WARNED_UNSAYABLE))
    return [utt for utt, _ in short]


def _utterance_audio(
    utt: str, tables: dict[str, _Table], recordings: dict[str, RecordingInfo], segments: dict[str, Segment] | None
) -> tuple[str, str, float, str] | None:
    """(file:line, description, duration, fix) of an utterance's audio; None when its duration is unknown."""
    wav_scp = tables["wav.scp"]
    if segments is None:
        recording = recordings.get(utt)
        if recording is None or recording.duration is None:
            return None
        fix = "the file is cut short or the wrong one: re-create it or correct its path"
        return wav_scp.at(utt), f"{wav_scp.rows[utt].value} holds", recording.duration, fix
    if (segment := segments.get(utt)) is None:
        return None
    what = f"segment {utt} of {wav_scp.rows[segment.recording_id].value} has"
    return tables["segments"].at(utt), what, segment.end - segment.start, "correct the segment times"


def _parse_segment(value: str) -> tuple[str, float, float] | None:
    fields = value.split()
    if len(fields) != 3:
        return None
    try:
        return fields[0], float(fields[1]), float(fields[2])
    except ValueError:
        return None


def _check_utt2lang(table: _Table, problems: Problems) -> dict[str, str]:
    """utt → canonical language code; two columns, known languages."""
    utt2lang: dict[str, str] = {}
    for utt, row in table.rows.items():
        fields = row.value.split()
        if len(fields) != 1:
            problems.add(
                f"{table.at(utt)}: expected 'UTT LANG' (2 columns), got {len(fields) + 1}; fix: correct the line",
                f"{table.path} column count",
            )
            continue
        try:
            utt2lang[utt] = require_language(fields[0], table.at(utt))
        except DataError as e:
            problems.add(str(e), f"{table.path} unknown languages")
    return utt2lang
