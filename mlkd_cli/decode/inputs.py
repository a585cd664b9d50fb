"""What `mlkd decode` reads: cuts manifests, Kaldi data dirs, audio files, globs, list files.

Everything becomes a list of :class:`Item` (one lhotse cut each, at 16 kHz). An audio file
that cannot be decoded (missing, not a regular file, empty, unreadable, too short) is
collected as a failure instead of stopping the batch; only when nothing at all is left to
decode is that an error. Relative paths in a list file are relative to the current
directory, as on the command line.
"""

from __future__ import annotations

import dataclasses
import glob
import math
import os
import stat
from pathlib import Path
from typing import Optional

from lhotse import CutSet, Recording

from mlkd_cli.contracts import SAMPLING_RATE
from mlkd_cli.data.manifests import Source, load_source
from mlkd_cli.decode.chunks import MIN_DURATION
from mlkd_cli.errors import DataError

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
    """The items to decode and the inputs that cannot be; a DataError if no item is left."""
    items: list[Item] = []
    failed: list[dict] = []
    names: list[str] = []
    audio: list[tuple[str, str]] = []  # (path, where it was named: "" or "LIST line N")
    for arg in args:
        path = Path(arg)
        if arg == "-":
            raise DataError("-: standard input is decoded alone, as a stream: mlkd decode --streaming MODEL_DIR -")
        if GLOB_CHARS & set(arg):
            matches = sorted(glob.glob(arg, recursive=True))
            if not matches:
                raise DataError(f"{arg}: the pattern matches no file; quote it so your shell does not expand it first")
            audio.extend((match, "") for match in matches)
            names.append("files")
        elif path.is_dir() or (path.name.endswith((".jsonl.gz", ".jsonl")) and "cuts" in path.name):
            good, short = _from_cuts(load_source(Source("x", path), transcripts_used=False), path)
            items.extend(good)
            failed.extend(short)
            names.append(_set_name(path))
        elif path.suffix in LIST_SUFFIXES and path.is_file():
            listed = _read_list(path)
            if not listed:
                failed.append({"input": arg, "error": "the list names no audio file"})
            audio.extend(listed)
            names.append(path.stem)
        else:
            audio.append((arg, ""))
            names.append("files")
    seen: set[str] = {item.id for item in items}
    for path_str, where in audio:
        try:
            items.append(_audio_item(path_str, seen))
        except _Undecodable as e:
            failed.append({"input": path_str, "error": f"{e} ({where})" if where else str(e)})
    if not items:
        raise DataError(_nothing_to_decode(failed))
    name = names[0] if len(set(names)) == 1 else "mixed"
    return Inputs(name, items, failed, audio_files=bool(audio))


class _Undecodable(Exception):
    """Why one audio file cannot be decoded (the batch goes on without it)."""


def _audio_item(path: str, seen: set[str]) -> Item:
    _check_file(path)
    try:
        recording = Recording.from_file(path)
    except Exception:  # lhotse tries each backend; its message lists them all, not the cause
        raise _Undecodable("not an audio file that libsndfile or audioread can decode") from None
    needed = math.ceil(round(MIN_DURATION * recording.sampling_rate, 6))
    if recording.num_samples < needed:
        n = recording.num_samples
        raise _Undecodable(f"too short: {n} sample{'' if n == 1 else 's'}; at least {needed} "
                           f"({MIN_DURATION * 1000:.0f} ms) needed")
    uid = _unique_id(Path(path), seen)
    cut = dataclasses.replace(recording, id=uid).to_cut()  # channels are averaged when the audio is loaded
    if cut.sampling_rate != SAMPLING_RATE:
        cut = cut.resample(SAMPLING_RATE)
    return Item(uid, cut, path=path)


def _check_file(path: str) -> None:
    """Refuse what lhotse would misreport or, for a FIFO, block on forever."""
    try:
        info = os.stat(path)
    except FileNotFoundError:
        if os.path.islink(path):
            raise _Undecodable(f"no such file: a symlink to {os.readlink(path)}, which does not exist") from None
        raise _Undecodable("no such file") from None
    except OSError as e:
        raise _Undecodable(e.strerror or str(e)) from None
    mode = info.st_mode
    if not stat.S_ISREG(mode):
        kind = "a directory" if stat.S_ISDIR(mode) else "a FIFO" if stat.S_ISFIFO(mode) else \
            "a socket" if stat.S_ISSOCK(mode) else "a device"
        raise _Undecodable(f"not a regular file ({kind}); give an audio file")
    if info.st_size == 0:
        raise _Undecodable("empty file (0 bytes)")
    if not os.access(path, os.R_OK):
        raise _Undecodable("permission denied")


def _nothing_to_decode(failed: list[dict]) -> str:
    if not failed:
        return "no input to decode: give cuts manifests, Kaldi data dirs, audio files, globs or list files"
    reasons = "; ".join(f"{f['input']}: {f['error']}" for f in failed[:3])
    if len(failed) == 1:
        return reasons
    more = f"; and {len(failed) - 3} more" if len(failed) > 3 else ""
    return f"nothing to decode: none of the {len(failed)} inputs can be decoded ({reasons}{more})"


def _from_cuts(cuts: CutSet, where: Path) -> tuple[list[Item], list[dict]]:
    """The utterances of ``where``, and failures for those too short to decode."""
    items, short = [], []
    for cut in cuts:
        if cut.duration < MIN_DURATION - 1e-9:
            short.append({"input": f"{where}: {cut.id}",
                          "error": f"too short: {cut.duration:g} s; at least {MIN_DURATION:g} s needed"})
            continue
        if cut.has_features is False and cut.sampling_rate != SAMPLING_RATE:
            cut = cut.resample(SAMPLING_RATE)
        sup = cut.supervisions[0] if cut.supervisions else None
        items.append(Item(cut.id, cut, ref_text=sup.text if sup else None, ref_lang=sup.language if sup else None))
    if not items and not short:
        raise DataError(f"{where}: no utterances")
    return items, short


def _set_name(path: Path) -> str:
    if path.is_dir():
        return path.name
    stem = path.name.split(".")[0]
    return stem[: -len("_cuts")] if stem.endswith("_cuts") else stem


def _read_list(path: Path) -> list[tuple[str, str]]:
    """(audio path, "LIST line N") for each line but blanks and # comments.

    Relative paths are relative to the current directory, as they would be on the command
    line (a list is typically written by `find` or `ls` run there), not to the list file.
    """
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError:
        raise DataError(f"{path}: not a text file; a list holds one audio path per line, in UTF-8") from None
    out = []
    for number, line in enumerate(lines, start=1):
        line = line.strip()
        if line and not line.startswith("#"):
            out.append((line, f"{path} line {number}"))
    return out


def _unique_id(path: Path, seen: set[str]) -> str:
    base = path.stem.replace(" ", "_") or "audio"
    uid, n = base, 1
    while uid in seen:
        n += 1
        uid = f"{base}-{n}"
    seen.add(uid)
    return uid
