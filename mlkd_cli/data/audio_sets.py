"""Noise and room-impulse-response sets for augmentation: Kaldi dirs (wav.scp) or lhotse manifests.

Unlike a training set they need no utterances, speakers or languages, only readable audio;
audio at another sampling rate is resampled (by lhotse, when loaded) rather than refused,
as Kaldi's and icefall's MUSAN and RIR recipes do.
"""

from __future__ import annotations

import logging
from pathlib import Path

import soundfile as sf
from lhotse import CutSet, Recording, RecordingSet

from mlkd_cli.contracts import SAMPLING_RATE
from mlkd_cli.data.kaldi_table import read_table
from mlkd_cli.errors import DataError

logger = logging.getLogger("mlkd")


def _fix(what: str) -> str:
    return (f"a {what} set is a directory with wav.scp or an lhotse recordings/cuts manifest "
            "(e.g. from `lhotse prepare musan`)")


def listing(path: str | Path, what: str) -> Path:
    """The file that lists the set's recordings (wav.scp or the manifest): what a stage records."""
    path = Path(path)
    if path.is_file():
        return path
    if not path.is_dir():
        raise DataError(f"{path}: {what} set not found; {_fix(what)}")
    if not (path / "wav.scp").is_file():
        raise DataError(f"{path}: no wav.scp; {_fix(what)}")
    return path / "wav.scp"


def load_audio_set(path: str | Path, what: str) -> CutSet:
    """One mono cut per recording of ``path`` (first channel), at 16 kHz; ``what`` ("noise",
    "RIR") names the set in errors."""
    path = Path(path)
    listed = listing(path, what)
    recordings = _read_wav_scp(listed, what) if path.is_dir() else _read_manifest(path, what)
    if not recordings:
        raise DataError(f"{path}: empty {what} set (no recordings); {_fix(what)}")
    rates = sorted({r.sampling_rate for r in recordings if r.sampling_rate != SAMPLING_RATE})
    if rates:
        logger.info("%s set %s: recordings at %s Hz are resampled to %d Hz", what, path,
                    ", ".join(map(str, rates)), SAMPLING_RATE)
    return CutSet.from_cuts(mono_cut(r) for r in recordings)


def mono_cut(recording: Recording):
    """The recording's first channel at 16 kHz (resampled by lhotse when loaded)."""
    cut = recording.to_cut()
    if len(recording.channel_ids) > 1:
        cut = cut.with_channels(recording.channel_ids[0])
    return cut if cut.sampling_rate == SAMPLING_RATE else cut.resample(SAMPLING_RATE)


def _read_wav_scp(scp: Path, what: str) -> list[Recording]:
    recordings = []
    for key, row in read_table(scp).items():
        where = f"{scp}:{row.line}"
        if row.value.endswith("|"):
            raise DataError(f"{where}: {what} recording {key} is a command; write its audio to a file "
                            "(augmentation reads noise many times per epoch)")
        recordings.append(_recording(Path(row.value).absolute(), key, where, what))
    return recordings


def _read_manifest(path: Path, what: str) -> list[Recording]:
    try:
        if "cuts" in path.name:
            recordings = [cut.recording for cut in CutSet.from_file(path) if cut.has_recording]
        else:
            recordings = list(RecordingSet.from_file(path))
    except (ValueError, KeyError, OSError) as e:
        raise DataError(f"{path}: not a readable lhotse manifest ({e})") from None
    for recording in recordings:
        for source in recording.sources:
            if source.type == "file" and not Path(source.source).is_file():
                raise DataError(f"{path}: {what} file {source.source} of recording {recording.id} not found; "
                                "fix the path or remove the recording")
    return recordings


def _recording(audio: Path, key: str, where: str, what: str) -> Recording:
    if not audio.is_file():
        raise DataError(f"{where}: {what} file {audio} not found; fix the path or remove the line")
    try:
        sf.info(audio)  # libsndfile's one-line reason, rather than lhotse's report of every backend it tried
        return Recording.from_file(audio, recording_id=key)
    except Exception as e:  # soundfile and audioread raise many types for a bad file
        raise DataError(f"{where}: cannot read {what} file {audio} ({type(e).__name__}: {e}); "
                        "replace it or remove the line") from None
