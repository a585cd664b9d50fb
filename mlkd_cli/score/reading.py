"""Reading a decode dir (hyp.text, hyps.jsonl, stats.json) and its references (Kaldi text, utt2lang)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from mlkd_cli.data.kaldi_table import numbered_lines, read_table
from mlkd_cli.data.language import normalize_language, require_language
from mlkd_cli.errors import DataError

FIX_DECODE = "fix: re-run `mlkd decode` into {dir}"


def _require_file(path: Path, fix: str) -> None:
    if path.is_dir():
        raise DataError(f"{path}: is a directory, not a file; {fix}")
    if not path.is_file():
        raise DataError(f"{path}: no such file; {fix}")


def read_text(path: Path) -> dict[str, str]:
    """Kaldi ``text``: ``UTT-ID word...`` per line; an id alone is an empty transcript."""
    return {utt: row.value for utt, row in read_table(path).items()}


def read_utt2lang(path: Path) -> dict[str, str]:
    """``UTT-ID LANG`` per line → utt → canonical language code."""
    utt2lang = {}
    for utt, (number, value) in read_table(path).items():
        fields = value.split()
        if len(fields) != 1:
            raise DataError(f"{path}:{number}: expected 'UTT LANG' (2 columns), got {len(fields) + 1}; "
                            f"fix: correct the line")
        utt2lang[utt] = require_language(fields[0], f"{path}:{number}")
    return utt2lang


def read_predicted_languages(path: Path) -> dict[str, str]:
    """utt → predicted language from ``hyps.jsonl``; utterances without one are left out."""
    fix = FIX_DECODE.format(dir=path.parent)
    langs = {}
    for number, line in numbered_lines(path):
        try:
            record = json.loads(line)
        except json.JSONDecodeError as e:
            raise DataError(f"{path}:{number}: not valid JSON ({e.msg}); {fix}") from None
        if not isinstance(record, dict) or not isinstance(record.get("id"), str):
            raise DataError(f'{path}:{number}: expected a JSON object with a string "id"; {fix}')
        lang = record.get("language")
        if lang is None:
            continue
        if not isinstance(lang, str):
            raise DataError(f'{path}:{number}: "language" must be a language code or null, got {lang!r}; {fix}')
        langs[record["id"]] = normalize_language(lang) or lang
    return langs


def read_stats(path: Path) -> dict:
    """``stats.json`` of a decode dir; empty when there is none."""
    if not path.is_file():
        return {}
    try:
        stats = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise DataError(f"{path}: not valid JSON ({e}); {FIX_DECODE.format(dir=path.parent)}") from None
    if not isinstance(stats, dict):
        raise DataError(f"{path}: expected a JSON object; {FIX_DECODE.format(dir=path.parent)}")
    return stats


@dataclass(frozen=True)
class DecodeInputs:
    """What a decode dir and its references hold, keyed by utterance id."""

    hyps: dict[str, str]
    refs: dict[str, str]
    ref_langs: dict[str, str]
    pred_langs: dict[str, str]
    stats: dict
    files: list[Path]


def load_inputs(decode_dir: Path, ref: Path | None = None, ref_lang: Path | None = None) -> DecodeInputs:
    """Read the hypotheses of ``decode_dir`` and the references (its own unless ``ref`` is given).

    Reference languages come from ``ref_lang``, else the ``utt2lang`` beside ``ref`` (a Kaldi
    data dir), else the decode dir's ``ref.utt2lang``; there may be none.
    """
    if not decode_dir.is_dir():
        raise DataError(f"{decode_dir}: no such decode directory; fix: run `mlkd decode` first, "
                        f"or give a decode_<set>_<method> directory inside a model directory")
    hyp_path = decode_dir / "hyp.text"
    _require_file(hyp_path, FIX_DECODE.format(dir=decode_dir))
    lang_candidates = [decode_dir / "ref.utt2lang"]
    if ref is None:
        ref = decode_dir / "ref.text"
        _require_file(ref, "fix: pass --ref data/<set>/text (the decoded input had no transcripts)")
    else:
        _require_file(ref, "fix: pass the Kaldi text file of the references, e.g. --ref data/<set>/text")
        lang_candidates.insert(0, ref.parent / "utt2lang")
    if ref_lang is None:
        ref_lang = next((p for p in lang_candidates if p.is_file()), None)
    else:
        _require_file(ref_lang, "fix: pass the references' utt2lang, e.g. --ref-lang data/<set>/utt2lang")
    jsonl = decode_dir / "hyps.jsonl"
    stats_path = decode_dir / "stats.json"
    optional = [p for p in (ref_lang, jsonl, stats_path) if p is not None and p.is_file()]
    hyps, refs = read_text(hyp_path), read_text(ref)
    stats = read_stats(stats_path)
    if not refs:
        raise DataError(f"{ref}: no utterances; fix: pass the Kaldi text of the decoded set with --ref")
    if hyps and hyps.keys().isdisjoint(refs):
        raise DataError(f"{ref}: no utterance id in common with {hyp_path}; "
                        f"fix: pass the reference of the decoded set with --ref")
    return DecodeInputs(
        hyps=hyps,
        refs=refs,
        ref_langs=read_utt2lang(ref_lang) if ref_lang else {},
        pred_langs=read_predicted_languages(jsonl) if jsonl.is_file() and _predicts_language(stats) else {},
        stats=stats,
        files=[p.resolve() for p in [hyp_path, ref, *optional]],
    )


def _predicts_language(stats: dict) -> bool:
    """False when stats.json says the hyps' languages were given (forced, or a teacher's own), not predicted."""
    return stats.get("predicts_language") is not False
