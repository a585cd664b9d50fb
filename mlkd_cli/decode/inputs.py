"""What `mlkd decode` reads: cuts manifests, Kaldi data dirs, audio files, globs, list files.

Everything becomes a list of :class:`Item` (one lhotse cut each, at 16 kHz). Audio files
that cannot be opened are collected as failures instead of stopping the batch.
"""

from __future__ import annotations

import dataclasses
import glob
import logging
from pathlib import Path
from typing import Optional

from lhotse import CutSet, Recording

from mlkd_cli.data.features import SAMPLING_RATE
from mlkd_cli.data.manifests import Source, load_source
from mlkd_cli.errors import DataError

logger = logging.getLogger("mlkd")

LIST_SUFFIXES = (".list", ".lst", ".txt")
GLOB_CHARS = set("*?[")


@dataclasses.dataclass
class Item:
    id: str
    cut: object  # a lhotse Cut
    path: Optional[str] = None  # the audio file, for audio-file inputs
    ref_text: Optional[str] = None
    ref_lang: Optional[str] = None


@dataclasses.dataclass
class Inputs:
    name: str  # names the decode dir: decode_<name>_<method>
    items: list[Item]
    failed: list[dict]  # {"input": ..., "error": ...}
    audio_files: bool  # inputs were audio files (print path<TAB>lang<TAB>text)


def resolve_inputs(args: list[str]) -> Inputs:
    items: list[Item] = []
    failed: list[dict] = []
    names: list[str] = []
    audio_paths: list[str] = []
    for arg in args:
        path = Path(arg)
        if GLOB_CHARS & set(arg):
            matches = sorted(glob.glob(arg, recursive=True))
            if not matches:
                raise DataError(f"{arg}: the pattern matches no file; quote it so your shell does not expand it first")
            audio_paths.extend(matches)
            names.append("files")
        elif path.is_dir() or (path.name.endswith((".jsonl.gz", ".jsonl")) and "cuts" in path.name):
            items.extend(_from_cuts(load_source(Source("x", path)), path))
            names.append(_set_name(path))
        elif path.suffix in LIST_SUFFIXES and path.is_file():
            audio_paths.extend(_read_list(path))
            names.append(path.stem)
        else:
            audio_paths.append(arg)
            names.append("files")
    seen: set[str] = {item.id for item in items}
    for audio in audio_paths:
        try:
            recording = Recording.from_file(audio)
        except Exception as e:  # soundfile/audioread raise many types for unreadable files
            logger.warning("%s: cannot read audio, skipped (%s)", audio, str(e).splitlines()[0] if str(e) else type(e).__name__)
            failed.append({"input": audio, "error": str(e).splitlines()[0] if str(e) else type(e).__name__})
            continue
        uid = _unique_id(Path(audio), seen)
        recording = dataclasses.replace(recording, id=uid)
        cut = recording.to_cut()  # several channels are averaged when the audio is loaded
        if cut.sampling_rate != SAMPLING_RATE:
            cut = cut.resample(SAMPLING_RATE)
        items.append(Item(uid, cut, path=audio))
    if not items and not failed:
        raise DataError("no input to decode: give cuts manifests, Kaldi data dirs, audio files, globs or list files")
    name = names[0] if len(set(names)) == 1 else "mixed"
    return Inputs(name, items, failed, audio_files=bool(audio_paths))


def _from_cuts(cuts: CutSet, where: Path) -> list[Item]:
    items = []
    for cut in cuts:
        if cut.has_features is False and cut.sampling_rate != SAMPLING_RATE:
            cut = cut.resample(SAMPLING_RATE)
        sup = cut.supervisions[0] if cut.supervisions else None
        items.append(Item(cut.id, cut, ref_text=sup.text if sup else None, ref_lang=sup.language if sup else None))
    if not items:
        raise DataError(f"{where}: no utterances")
    return items


def _set_name(path: Path) -> str:
    if path.is_dir():
        return path.name
    stem = path.name.split(".")[0]
    return stem[: -len("_cuts")] if stem.endswith("_cuts") else stem


def _read_list(path: Path) -> list[str]:
    """One audio path per line (relative paths are relative to the list file); # comments."""
    out = []
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            p = Path(line)
            out.append(str(p if p.is_absolute() else path.parent / p))
    return out


def _unique_id(path: Path, seen: set[str]) -> str:
    base = path.stem.replace(" ", "_") or "audio"
    uid, n = base, 1
    while uid in seen:
        n += 1
        uid = f"{base}-{n}"
    seen.add(uid)
    return uid
