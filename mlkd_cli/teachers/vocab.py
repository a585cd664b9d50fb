"""Vocabulary maps from a teacher's CTC tokens to the student's, for posterior KD.

Character vocabularies map directly: the teacher's blank to the student's, wav2vec2's word
delimiter ``|`` to SentencePiece's ``▁``, letters case-folded to the case the student has.
Special tokens (``<s>``, ``<unk>``, ...) map nowhere; their probability mass is dropped and
each frame renormalised. A teacher whose tokens are pieces the student splits differently
(a character teacher and a BPE student, or two BPE vocabularies) has no frame-level map:
posterior KD is refused for it, layer and sequence-level KD still work.
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from typing import Optional, Sequence

import torch

from mlkd_cli.contracts import BLANK_ID

SPACE = "▁"
DELIMITERS = {"|": SPACE, SPACE: SPACE}


def _special(token: str) -> bool:
    return len(token) > 2 and token.startswith("<") and token.endswith(">")


@dataclasses.dataclass(frozen=True)
class VocabMap:
    """Teacher token id → student token id (-1: no counterpart)."""

    target: tuple[int, ...]  # empty: identity (the teacher speaks the student's tokens)
    student_size: int
    coverage: float  # share of the language's training-text characters the teacher can emit
    missing: tuple[str, ...]  # teacher tokens the student lacks (special tokens aside)
    uncovered: tuple[str, ...]  # characters of the language's text the teacher cannot emit
    frame_level: bool  # True when posteriors can be mapped frame by frame
    reason: str = ""  # why not, when not

    @property
    def identity(self) -> bool:
        return not self.target

    def map_probs(self, log_probs: torch.Tensor) -> torch.Tensor:
        """(N, T, V_t) teacher log-probs → (N, T, V_s) probabilities, renormalised per frame."""
        probs = log_probs.float().exp()
        if self.identity:
            return probs
        target = torch.tensor(self.target, device=probs.device)
        kept = target >= 0
        out = probs.new_zeros(*probs.shape[:-1], self.student_size)
        out.index_add_(-1, target[kept], probs[..., kept])
        return out / out.sum(-1, keepdim=True).clamp(min=1e-10)


def build_vocab_map(teacher_tokens: Optional[Sequence[str]], teacher_blank: Optional[int], student_pieces: Sequence[str],
                    student_type: str, texts: Sequence[str]) -> VocabMap:
    """Map a teacher's vocabulary (None: the student's own) onto the student's pieces.

    ``texts``: the language's training transcripts, for the coverage figure.
    """
    size = len(student_pieces)
    if teacher_tokens is None or tuple(teacher_tokens) == tuple(student_pieces):
        return VocabMap((), size, 1.0, (), (), True)
    ids = {piece: i for i, piece in enumerate(student_pieces)}
    target, missing = [], []
    for i, token in enumerate(teacher_tokens):
        if i == teacher_blank:
            target.append(BLANK_ID)
            continue
        if _special(token):
            target.append(-1)
            continue
        token = DELIMITERS.get(token, token)
        match = next((ids[t] for t in (token, token.lower(), token.upper()) if t in ids), -1)
        target.append(match)
        if match < 0:
            missing.append(token)
    emitted = {DELIMITERS.get(t, t).lower() for t in teacher_tokens if not _special(t)}
    chars = Counter(c.lower() for text in texts for c in text.replace(" ", SPACE))
    uncovered = sorted(c for c in chars if c not in emitted)
    total = sum(chars.values())
    coverage = 1.0 - sum(chars[c] for c in uncovered) / total if total else 0.0
    single = all(len(DELIMITERS.get(t, t)) == 1 for t in teacher_tokens if not _special(t))
    if student_type != "char":
        reason = f"the student's {student_type} pieces do not line up with the teacher's tokens frame by frame"
    elif not single:
        reason = "the teacher's tokens are multi-character pieces, the student's are characters"
    else:
        reason = ""
    return VocabMap(tuple(target), size, coverage, tuple(missing), tuple(uncovered), not reason, reason)
