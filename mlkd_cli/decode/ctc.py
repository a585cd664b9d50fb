"""CTC search over one utterance's (T, V) log-probabilities: greedy and prefix beam."""

from __future__ import annotations

import math

import numpy as np

from mlkd_cli.contracts import BLANK_ID
from mlkd_cli.models.asr import collapse

NEG_INF = -math.inf


def greedy_search(log_probs: np.ndarray) -> list[int]:
    """Best path of one utterance: argmax per frame, collapsed."""
    return collapse(log_probs.argmax(axis=-1).tolist())


def greedy_confidence(log_probs: np.ndarray) -> float:
    """Mean posterior of the tokens the greedy path emits (0 when it emits none)."""
    best = log_probs.argmax(axis=-1)
    emitted = (best != BLANK_ID) & np.concatenate([[True], best[1:] != best[:-1]])
    if not emitted.any():
        return 0.0
    return float(np.exp(log_probs.max(axis=-1)[emitted]).mean())


def restrict_tokens(log_probs: np.ndarray, allowed: list[int]) -> np.ndarray:
    """Log-probabilities with every token outside ``allowed`` (and the blank) impossible."""
    mask = np.full(log_probs.shape[-1], NEG_INF, dtype=log_probs.dtype)
    mask[list(allowed)] = 0.0
    mask[BLANK_ID] = 0.0
    return log_probs + mask


def _logaddexp(a: float, b: float) -> float:
    if a == NEG_INF:
        return b
    if b == NEG_INF:
        return a
    return max(a, b) + math.log1p(math.exp(-abs(a - b)))


def prefix_beam_search(log_probs: np.ndarray, beam: int = 8, token_beam: float = 12.0) -> list[int]:
    """CTC prefix beam search (Hannun et al., 2014) without a language model.

    Each prefix keeps two scores: ending in blank and ending in its last token, so that
    alignments that collapse to the same text are summed. Per frame only tokens within
    ``token_beam`` (log) of the frame's best are expanded. Written by hand: the maintained
    implementations need torchaudio or k2, which mlkd does not depend on.
    """
    beams: dict[tuple[int, ...], tuple[float, float]] = {(): (0.0, NEG_INF)}
    for frame in log_probs:
        top = float(frame.max())
        candidates = [int(t) for t in np.nonzero(frame >= top - token_beam)[0]]
        next_beams: dict[tuple[int, ...], list[float]] = {}

        def add(prefix: tuple[int, ...], blank: float, nonblank: float) -> None:
            entry = next_beams.setdefault(prefix, [NEG_INF, NEG_INF])
            entry[0] = _logaddexp(entry[0], blank)
            entry[1] = _logaddexp(entry[1], nonblank)

        for prefix, (p_blank, p_token) in beams.items():
            total = _logaddexp(p_blank, p_token)
            for t in candidates:
                lp = float(frame[t])
                if t == BLANK_ID:
                    add(prefix, total + lp, NEG_INF)
                elif prefix and prefix[-1] == t:
                    add(prefix, NEG_INF, p_token + lp)  # the same token continues
                    add(prefix + (t,), NEG_INF, p_blank + lp)  # a new token after a blank
                else:
                    add(prefix + (t,), NEG_INF, total + lp)
        ranked = sorted(next_beams.items(), key=lambda kv: _logaddexp(*kv[1]), reverse=True)[:beam]
        beams = {prefix: (scores[0], scores[1]) for prefix, scores in ranked}
    best = max(beams.items(), key=lambda kv: _logaddexp(*kv[1]))[0]
    return list(best)
