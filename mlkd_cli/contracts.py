"""What every reader and writer of mlkd's data, models and exports agrees on, in one place."""

from __future__ import annotations

from pathlib import Path
from typing import Mapping, Sequence

from mlkd_cli.errors import DataError
from mlkd_cli.fsutil import atomic_write_text

SAMPLING_RATE = 16000  # Hz: audio is read, synthesized, featurized and exported at this rate
BLANK_ID = 0  # the CTC blank is token 0 of every mlkd vocabulary (models, decoding and export rely on it)
BLANK = "<blk>"  # the blank's symbol in token tables (sherpa-onnx's convention too)
OUTPUT_FRAME_MS = 40  # one encoder output frame: 10 ms features, subsampled 4x
TOKENS_FILE = "tokens.txt"  # a vocabulary's token table: `symbol id` per line, ids 0..V-1


def read_token_table(path: Path) -> dict[int, str]:
    """Symbols by id from a ``symbol id`` table, each id once (a language's inventory may skip ids)."""
    if not path.is_file():
        raise DataError(f"{path}: token table not found")
    symbols: dict[int, str] = {}
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        fields = line.split()
        if len(fields) != 2 or not fields[1].isdigit():
            raise DataError(f"{path}:{number}: expected `symbol id`, got {line!r}")
        symbol, i = fields[0], int(fields[1])
        if i in symbols:
            raise DataError(f"{path}:{number}: id {i} appears twice ({symbols[i]!r} and {symbol!r})")
        symbols[i] = symbol
    return symbols


def read_tokens(path: Path, vocab_size: int | None = None, blank_first: bool = True) -> list[str]:
    """A vocabulary's symbols by id: every id 0..V-1 once, ``<blk>`` at 0 (``blank_first``)."""
    symbols = read_token_table(path)
    missing = sorted(set(range(len(symbols))) - set(symbols))
    if missing:
        raise DataError(f"{path}: ids must run 0..{len(symbols) - 1} without gaps; missing {missing[:5]}")
    if blank_first and symbols.get(BLANK_ID) != BLANK:
        raise DataError(f"{path}: id {BLANK_ID} must be the CTC blank {BLANK}, not {symbols.get(BLANK_ID)!r}")
    if vocab_size is not None and len(symbols) != vocab_size:
        raise DataError(f"{path}: {len(symbols)} tokens, but the model emits {vocab_size}; pass the model's own token table")
    return [symbols[i] for i in range(len(symbols))]


def write_tokens(symbols: Sequence[str] | Mapping[int, str], path: Path) -> None:
    """Write a token table atomically: symbols by id (a sequence is ids 0..V-1)."""
    by_id = symbols if isinstance(symbols, Mapping) else dict(enumerate(symbols))
    atomic_write_text(path, "".join(f"{symbol} {i}\n" for i, symbol in sorted(by_id.items())))
