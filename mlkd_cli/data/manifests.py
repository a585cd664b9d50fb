"""Sources of `mlkd prepare` (Kaldi data dirs, lhotse manifests) → validated lhotse cuts.

Kaldi dirs are validated by :mod:`mlkd_cli.data.kaldi_dir` and then imported with
lhotse's own importer; lhotse manifests (e.g. from ``lhotse prepare commonvoice``) are
read as they are. Either way every cut ends up with one supervision whose ``language``
is an ISO 639 code. A source without transcripts (a Kaldi dir without ``text``, supervisions
without ``text``) is an untranscribed set: its supervisions have ``text`` None.
"""

from __future__ import annotations

import dataclasses
import logging
import re
from pathlib import Path

from lhotse import CutSet, RecordingSet, SupervisionSet
from lhotse.kaldi import get_duration, load_kaldi_data_dir

from mlkd_cli.contracts import SAMPLING_RATE
from mlkd_cli.data.kaldi_dir import validate_kaldi_dir
from mlkd_cli.data.language import normalize_language
from mlkd_cli.data.text import normalize_transcript
from mlkd_cli.errors import DataError

logger = logging.getLogger("mlkd")

MANIFEST_SUFFIX = ".jsonl.gz"


@dataclasses.dataclass(frozen=True)
class Source:
    """One input of `mlkd prepare`: ``[NAME=]PATH``; sources with the same name form one set."""

    name: str
    path: Path

    @classmethod
    def parse(cls, arg: str) -> "Source":
        name, sep, path = arg.partition("=")
        if not sep:
            path, name = arg, _default_name(Path(arg))
        if not re.fullmatch(r"[A-Za-z0-9][\w.-]*", name):
            raise DataError(f"{arg}: set name {name!r} must be letters, digits, '_', '-' or '.'; write NAME=PATH")
        return cls(name, Path(path))

    @property
    def kind(self) -> str:
        if self.path.is_dir():
            return "kaldi"
        if self.path.name.endswith((".jsonl.gz", ".jsonl", ".json")) and "cuts" in self.path.name:
            return "cuts"
        if self.path.name.endswith((".jsonl.gz", ".jsonl", ".json")) and "recordings" in self.path.name:
            return "recordings"
        if not self.path.exists():
            raise DataError(f"{self.path}: no such file or directory")
        raise DataError(
            f"{self.path}: not a Kaldi data dir nor an lhotse cuts/recordings manifest "
            "(expected a directory with wav.scp, or a file named *cuts*.jsonl.gz or *recordings*.jsonl.gz)"
        )


def _default_name(path: Path) -> str:
    """Kaldi dir → its base name; lhotse manifest → file name without type word and suffix."""
    name = path.name
    for suffix in (".jsonl.gz", ".jsonl", ".json"):
        name = name.removesuffix(suffix)
    name = re.sub(r"(^|_)(cuts|recordings)(_|$)", r"\1", name).strip("_")
    return name or path.parent.name


def load_source(source: Source, allow_mixed_rates: bool = False, normalize_text: bool = False,
                transcripts_used: bool = True) -> CutSet:
    """Validate ``source`` and return one cut per utterance with a normalised language.

    With ``normalize_text`` transcripts are lower-cased and stripped of punctuation; an
    utterance left without words is an error. A Kaldi dir's few utterances whose audio is too
    short for their transcript are left out where ``transcripts_used`` (decoding reads none).
    """
    if source.kind == "kaldi":
        cuts = _load_kaldi_dir(source.path, allow_mixed_rates, transcripts_used)
    else:
        cuts = _load_lhotse_manifest(source)
    return _normalise_supervisions(cuts, source.path, normalize_text)


def _load_kaldi_dir(path: Path, allow_mixed_rates: bool, transcripts_used: bool) -> CutSet:
    info = validate_kaldi_dir(path, require_lang=True, allow_mixed_rates=allow_mixed_rates,
                              transcripts_used=transcripts_used)
    # Commands in wav.scp are not probed; lhotse learns their duration by running them.
    nominal_rate = info.sampling_rates[0] if info.sampling_rates else SAMPLING_RATE
    try:
        recordings, supervisions, _ = load_kaldi_data_dir(path, sampling_rate=nominal_rate)
        dropped = sorted(set(info.recordings) - set(recordings.ids))
    except (AssertionError, RuntimeError):
        # lhotse drops a recording it cannot read (only a warning), then fails a bare assert.
        dropped = [rec for rec, entry in info.recordings.items() if entry.is_command and get_duration(entry.path) is None]
        if not dropped:
            raise
    if dropped:
        raise DataError(
            f"{path / 'wav.scp'}: cannot read audio of recording {dropped[0]} ({info.recordings[dropped[0]].path})"
            f"{f' and {len(dropped) - 1} more' if len(dropped) > 1 else ''}; fix the entry or remove the recording"
        )
    recordings = RecordingSet.from_recordings(
        _absolute_and_true_rate(rec, info) for rec in recordings
    )
    cuts = CutSet.from_manifests(recordings=recordings, supervisions=supervisions)
    if info.has_segments:
        cuts = cuts.trim_to_supervisions(keep_overlapping=False)
    # One supervision per cut, and the cut named after it (the Kaldi utterance id).
    left_out = set(info.unsayable)  # empty unless transcripts are used
    return CutSet.from_cuts(cut.with_id(cut.supervisions[0].id) for cut in cuts if cut.supervisions[0].id not in left_out)


def _absolute_and_true_rate(recording, info):
    """Use the absolute path (resolved as Kaldi does, from the current dir) and each file's own rate.

    lhotse's importer declares one channel but loads every channel of the file; fbank
    (:func:`mlkd_cli.data.features.downmix`) and `mlkd decode` both use their mean.
    """
    entry = info.recordings[recording.id]
    source = recording.sources[0]
    if source.type == "file":
        source = dataclasses.replace(source, source=entry.path)
    rate = entry.sampling_rate or recording.sampling_rate
    return dataclasses.replace(
        recording, sources=[source], sampling_rate=rate, num_samples=round(recording.duration * rate)
    )


def _load_lhotse_manifest(source: Source) -> CutSet:
    from lhotse.qa import validate_recordings_and_supervisions

    try:
        if source.kind == "cuts":
            cuts = CutSet.from_file(source.path).to_eager()
        else:
            sup_path = source.path.with_name(source.path.name.replace("recordings", "supervisions"))
            if not sup_path.is_file():
                raise DataError(f"{sup_path}: supervisions manifest not found next to {source.path.name}")
            recordings = RecordingSet.from_file(source.path)
            supervisions = SupervisionSet.from_file(sup_path)
            validate_recordings_and_supervisions(recordings, supervisions)
            cuts = CutSet.from_manifests(recordings=recordings, supervisions=supervisions)
            cuts = CutSet.from_cuts(
                c.with_id(c.supervisions[0].id) for c in cuts.trim_to_supervisions(keep_overlapping=False)
            )
    except (AssertionError, ValueError, KeyError, OSError) as e:
        raise DataError(f"{source.path}: invalid lhotse manifest ({e})") from None
    transcribed = [bool((c.supervisions[0].text or "").strip()) for c in cuts if c.supervisions]
    for cut in cuts:
        if len(cut.supervisions) != 1:
            raise DataError(
                f"{source.path}: cut {cut.id} has {len(cut.supervisions)} supervisions; "
                "mlkd needs one utterance per cut (use `lhotse cut trim-to-supervisions`)"
            )
        for s in cut.recording.sources:
            if s.type == "file" and not Path(s.source).is_file():
                raise DataError(f"{source.path}: audio file {s.source} of cut {cut.id} not found")
        if any(transcribed) and not (cut.supervisions[0].text or "").strip():
            raise DataError(f"{source.path}: cut {cut.id} has an empty transcript ({sum(transcribed)} of "
                            f"{len(transcribed)} cuts have one); drop it or fix its text, or give the "
                            "untranscribed cuts as a set of their own")
    if not any(transcribed):
        logger.info("%s: no transcripts: an untranscribed set (for `mlkd distill --unlabeled-set`)", source.path)
        cuts = CutSet.from_cuts(cut.map_supervisions(lambda s: dataclasses.replace(s, text=None)) for cut in cuts)
    return cuts


def _normalise_supervisions(cuts: CutSet, where: Path, normalize_text: bool) -> CutSet:
    """Canonical language codes and, with ``normalize_text``, normalised transcripts, in one pass."""
    def fix(cut):
        sup = cut.supervisions[0]
        code = normalize_language(sup.language or "")
        if code is None:
            raise DataError(
                f"{where}: utterance {cut.id} has language {sup.language!r}, not an ISO 639 code or "
                "English language name; set it (Kaldi: utt2lang; lhotse: the supervision's language field)"
            )
        text = normalize_transcript(sup.text) if normalize_text and sup.text is not None else sup.text
        if text == "":
            raise DataError(
                f"{where}: utterance {cut.id} has no words once punctuation is removed ({sup.text!r}); drop it"
            )
        if (code, text) == (sup.language, sup.text):
            return cut
        return cut.map_supervisions(lambda s: dataclasses.replace(s, language=code, text=text))

    return CutSet.from_cuts(fix(cut) for cut in cuts)


def has_transcript(cut) -> bool:
    """Whether the cut's utterance carries a transcript (``text`` None: untranscribed)."""
    return cut.supervisions[0].text is not None


def is_transcribed(cuts: CutSet) -> bool:
    """Whether the set's utterances carry transcripts (sets are all one or the other)."""
    return any(map(has_transcript, cuts))


def audio_paths(cuts: CutSet) -> list[str]:
    return sorted({s.source for cut in cuts for s in cut.recording.sources if s.type == "file"})
