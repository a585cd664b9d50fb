"""Word and segment times from the greedy CTC alignment, and the formats other tools read them
in: CTM (Kaldi, sclite), SRT and WebVTT subtitles.

A token lasts the output frames the greedy path spends on it; a word runs from the first frame
of its first token to the end of the last frame of its last one (SentencePiece's ``▁`` starts a
word). Segments break at pauses, runs of blank frames of at least ``min_pause`` seconds (the
decode's own voice activity), and are at most ``max_length`` seconds long: a longer one is split
at its longest pause. Written by hand: lhotse and k2 align against a reference transcript, and
the recognizers that time their output (sherpa-onnx) do it inside their own decoders.
"""

from __future__ import annotations

import dataclasses
from typing import Callable

import numpy as np

from mlkd_cli.contracts import BLANK_ID, OUTPUT_FRAME_MS

FRAME_S = OUTPUT_FRAME_MS / 1000
WORD_START = "▁"  # SentencePiece's word-boundary mark


@dataclasses.dataclass(frozen=True)
class Word:
    start: float  # seconds from the start of the input
    end: float
    text: str
    tokens: tuple[tuple[float, float, str], ...] = ()  # (start, end, piece) of each of its tokens


def _seconds(first: int, last: int) -> tuple[float, float]:
    """The time span of output frames first..last."""
    return round(first * FRAME_S, 3), round((last + 1) * FRAME_S, 3)


def token_spans(frame_ids: np.ndarray) -> list[tuple[int, int, int]]:
    """(token, first frame, last frame) of each token the greedy path emits: repeats collapse,
    blanks separate."""
    spans: list[tuple[int, int, int]] = []
    previous = BLANK_ID
    for t, token in enumerate(frame_ids.tolist()):
        if token != BLANK_ID:
            if token == previous:
                spans[-1] = (token, spans[-1][1], t)
            else:
                spans.append((token, t, t))
        previous = token
    return spans


def words_of(spans: list[tuple[int, int, int]], piece: Callable[[int], str]) -> list[Word]:
    """The words the token spans spell (``piece``: a token's SentencePiece string), with their times."""
    words: list[Word] = []
    tokens: list[tuple[float, float, str]] = []
    for token, start, end in spans:
        symbol = piece(token)
        if symbol.startswith(WORD_START):
            if tokens:
                words.append(_word(tokens))
            tokens = []
            symbol = symbol[len(WORD_START):]
        if symbol:
            tokens.append((*_seconds(start, end), symbol))
    if tokens:
        words.append(_word(tokens))
    return words


def _word(tokens: list[tuple[float, float, str]]) -> Word:
    return Word(tokens[0][0], tokens[-1][1], "".join(t[2] for t in tokens), tuple(tokens))


def segments_of(words: list[Word], min_pause: float, max_length: float) -> list[list[Word]]:
    """The words grouped into segments: broken at pauses of at least ``min_pause`` seconds, and
    a segment longer than ``max_length`` seconds split at its longest pause (of equal ones, the
    nearest its middle), its parts again until none is longer."""
    segments: list[list[Word]] = []
    for word in words:
        if segments and word.start - segments[-1][-1].end < min_pause:
            segments[-1].append(word)
        else:
            segments.append([word])
    return [part for segment in segments for part in _bounded(segment, max_length)]


def _bounded(words: list[Word], max_length: float) -> list[list[Word]]:
    # A stack, not recursion: an hour of speech without pauses is thousands of words, and the
    # splits nearest the middle keep the work at n log n.
    done: list[list[Word]] = []
    todo = [words]
    while todo:
        part = todo.pop()
        if len(part) < 2 or part[-1].end - part[0].start <= max_length:
            done.append(part)
            continue
        middle = (part[0].start + part[-1].end) / 2
        split = max(range(1, len(part)),  # pauses to the millisecond: frame times carry float noise
                    key=lambda i: (round(part[i].start - part[i - 1].end, 3), -abs(part[i].start - middle)))
        todo += [part[split:], part[:split]]  # the first part next
    return done


def segment_record(words: list[Word]) -> dict:
    """A segment as hyps.jsonl keeps it: start, end, text, each word as [start, end, word] and each
    token as [start, end, piece]."""
    return {"start": words[0].start, "end": words[-1].end, "text": " ".join(w.text for w in words),
            "words": [[w.start, w.end, w.text] for w in words],
            "tokens": [list(t) for w in words for t in w.tokens]}


def ctm_lines(utterance: str, segments: list[dict]) -> list[str]:
    """Kaldi/sclite CTM: ``utterance channel start duration word`` per word."""
    return [f"{utterance} 1 {start:.2f} {end - start:.2f} {word}"
            for segment in segments for start, end, word in segment["words"]]


def subtitles(segments: list[dict], kind: str) -> str:
    """The segments as numbered SRT cues or as a WebVTT file (``kind``: srt or vtt)."""
    separator = "," if kind == "srt" else "."
    cues = [f"{_clock(s['start'], separator)} --> {_clock(s['end'], separator)}\n{s['text']}\n" for s in segments]
    if kind == "srt":
        return "\n".join(f"{i}\n{cue}" for i, cue in enumerate(cues, 1))
    return "WEBVTT\n\n" + "\n".join(cues)


def _clock(seconds: float, separator: str) -> str:
    ms = round(seconds * 1000)
    return f"{ms // 3_600_000:02d}:{ms // 60_000 % 60:02d}:{ms // 1000 % 60:02d}{separator}{ms % 1000:03d}"
