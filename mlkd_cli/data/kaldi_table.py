"""Kaldi table files (``KEY VALUE...`` per line): the one reader of wav.scp, text, utt2spk,
utt2lang, segments, hyp.text and their kin.

Every problem goes to ``report(message, kind)``: data-dir validation collects them all,
scoring stops at the first (the default). Messages name the file and line and say how to
fix it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, NamedTuple

from mlkd_cli.errors import DataError

BOM = "\ufeff"
Report = Callable[[str, "str | None"], None]


def raise_first(message: str, kind: str | None = None) -> None:
    raise DataError(message)


class Row(NamedTuple):
    line: int
    value: str  # everything after the key, stripped


def text_lines(path: Path, report: Report = raise_first) -> list[str]:
    """The lines of a UTF-8 file (no BOM, no CRLF), the last newline optional."""
    data = path.read_bytes()
    try:
        content = data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = data.count(b"\n", 0, e.start) + 1
        report(f"{path}:{line}: not valid UTF-8 ({e.reason}); fix: convert it, "
               f"e.g. iconv -f LATIN1 -t UTF-8 {path} > {path}.utf8 && mv {path}.utf8 {path}", None)
        content = data.decode("utf-8", errors="replace")
    if content.startswith(BOM):  # Windows editors add it; left in, it would glue onto the first key
        report(f"{path}:1: starts with a UTF-8 byte-order mark; fix: sed -i '1s/^\\xEF\\xBB\\xBF//' {path}", None)
        content = content[len(BOM):]
    if "\r" in content:
        line = content.count("\n", 0, content.index("\r")) + 1
        report(f"{path}:{line}: Windows line endings (CRLF); fix: sed -i 's/\\r$//' {path}", None)
    lines = content.split("\n")
    if lines[-1] == "":
        lines.pop()
    return [line.rstrip("\r") for line in lines]


def numbered_lines(path: Path, report: Report = raise_first) -> list[tuple[int, str]]:
    """(line number, line) of the non-blank lines; a blank line is reported."""
    out = []
    for number, line in enumerate(text_lines(path, report), start=1):
        if not line.strip():
            report(f"{path}:{number}: blank line; fix: sed -i '/^\\s*$/d' {path}", f"{path} blank lines")
            continue
        out.append((number, line))
    return out


def read_table(path: Path, report: Report = raise_first, *, check_sorted: bool = False,
               allow_empty: bool = True) -> dict[str, Row]:
    """key → first row with that key, in file order; duplicates (and, when asked, unsorted
    keys and an empty file) are reported."""
    lines = numbered_lines(path, report)
    if not lines and not allow_empty:
        report(f"{path}: empty file; fix: re-run the data preparation that writes it", None)
    rows: dict[str, Row] = {}
    previous = ""
    unsorted_reported = False
    for number, line in lines:
        key, *rest = line.split(maxsplit=1)
        if key in rows:
            report(f"{path}:{number}: duplicate key {key} (also on line {rows[key].line}); fix: keep one "
                   f"of the two lines (LC_ALL=C sort -u -o {path} {path} drops exact duplicates)",
                   f"{path} duplicate keys")
            continue
        if check_sorted and key < previous and not unsorted_reported:  # str order = UTF-8 byte order = LC_ALL=C
            report(f"{path}:{number}: not sorted: {key} follows {previous} (LC_ALL=C order); "
                   f"fix: LC_ALL=C sort -o {path} {path}", None)
            unsorted_reported = True
        previous = key
        rows[key] = Row(number, rest[0].strip() if rest else "")
    return rows
