"""What distillation needs to know about a teacher, whatever made it.

A teacher declares its language, its input (the student's fbank or the 16 kHz waveform), how
it normalises that input, its output frame shift, the hidden layers it exposes (with their
widths) and its vocabulary with its blank. White boxes (mlkd, Hugging Face) run on a batch
and return hidden states and CTC log-probabilities; black boxes (sherpa-onnx) only
transcribe. Distillation bridges the differences (:mod:`mlkd_cli.teachers.frames`,
:mod:`mlkd_cli.teachers.vocab`).
"""

from __future__ import annotations

import abc
import dataclasses
from pathlib import Path
from typing import ClassVar, NamedTuple, Optional, Sequence

import torch

from mlkd_cli.errors import ConfigError

WORD_DELIMITERS = ("▁", "|")  # SentencePiece's and wav2vec2's word boundary tokens


@dataclasses.dataclass
class TeacherInputs:
    """A batch as the teachers may read it: the student's features and, when asked, the audio."""

    features: torch.Tensor  # (N, T, F)
    feature_lens: torch.Tensor  # (N,)
    audio: Optional[torch.Tensor] = None  # (N, S) 16 kHz, zero-padded
    audio_lens: Optional[torch.Tensor] = None  # (N,)

    def to(self, device: torch.device) -> "TeacherInputs":
        return TeacherInputs(*(None if x is None else x.to(device)
                               for x in (self.features, self.feature_lens, self.audio, self.audio_lens)))

    def select(self, index: torch.Tensor) -> "TeacherInputs":
        def rows(x: Optional[torch.Tensor], lens: Optional[torch.Tensor]) -> Optional[torch.Tensor]:
            return None if x is None else x[index.to(x.device), : int(lens[index.to(lens.device)].max())]

        return TeacherInputs(rows(self.features, self.feature_lens), self.feature_lens[index],
                             rows(self.audio, self.audio_lens),
                             None if self.audio_lens is None else self.audio_lens[index.to(self.audio_lens.device)])


class TeacherOutput(NamedTuple):
    """At the teacher's own frame rate and vocabulary."""

    hidden: list[torch.Tensor]  # every exposed layer, (N, T_t, D_l)
    lengths: torch.Tensor  # (N,) valid frames
    log_probs: torch.Tensor  # (N, T_t, V_t)
    attention: Optional[list[torch.Tensor]] = None


class Transcript(NamedTuple):
    text: str
    confidence: Optional[float]  # mean posterior of the emitted tokens; None for black boxes


@dataclasses.dataclass
class Teacher(abc.ABC):
    """One language's teacher. ``digest`` keys caches of its targets and transcripts."""

    lang: str
    path: Path
    digest: str

    kind: ClassVar[str]
    input: ClassVar[str]  # "fbank" (the student's features) or "waveform" (16 kHz audio)

    @property
    @abc.abstractmethod
    def frame_shift(self) -> Optional[float]:
        """Seconds per output frame (None when a black box does not say)."""

    @property
    @abc.abstractmethod
    def layer_widths(self) -> tuple[int, ...]:
        """Width of each exposed hidden layer (1-based layer l is entry l-1); () for black boxes."""

    @property
    @abc.abstractmethod
    def tokens(self) -> Optional[tuple[str, ...]]:
        """The output vocabulary, index = id; None: the student's own tokenizer."""

    @property
    @abc.abstractmethod
    def blank(self) -> Optional[int]:
        """Id of the CTC blank in :attr:`tokens`."""

    @property
    @abc.abstractmethod
    def normalization(self) -> str:
        """How the teacher normalises its input, in words."""

    @property
    @abc.abstractmethod
    def num_parameters(self) -> int: ...

    @property
    def white_box(self) -> bool:
        return bool(self.layer_widths)

    @property
    def num_layers(self) -> int:
        return len(self.layer_widths)

    @property
    def name(self) -> str:
        return f"{self.lang}={self.kind}:{self.path}"

    def forward(self, inputs: TeacherInputs, return_attention: bool = False) -> TeacherOutput:
        raise ConfigError(f"teacher {self.name} is a black box: it gives transcripts, not hidden states")

    def to(self, device: torch.device) -> "Teacher":
        return self

    @torch.inference_mode()
    def transcribe(self, inputs: TeacherInputs) -> list[Transcript]:
        """Greedy CTC transcripts of a batch (white boxes); black boxes override this."""
        out = self.forward(inputs)
        vocab = self.tokens
        if vocab is None:
            raise ConfigError(f"teacher {self.name}: no vocabulary to spell its output with")
        scores, best = out.log_probs.float().max(dim=-1)
        texts = []
        for ids, logp, n in zip(best.tolist(), scores, out.lengths.tolist()):
            emitted, previous = [], None
            for t in range(n):
                if ids[t] != previous and ids[t] != self.blank_id:
                    emitted.append(t)
                previous = ids[t]
            confidence = float(logp[emitted].exp().mean()) if emitted else 0.0
            texts.append(Transcript(tokens_to_text([vocab[ids[t]] for t in emitted]), confidence))
        return texts

    @property
    def blank_id(self) -> int:
        return 0 if self.blank is None else self.blank


def tokens_to_text(pieces: Sequence[str]) -> str:
    """CTC output tokens → text: word delimiters become spaces, special tokens (``<...>``) drop."""
    text = "".join("" if p.startswith("<") and p.endswith(">") and len(p) > 2 else p for p in pieces)
    for delimiter in WORD_DELIMITERS:
        text = text.replace(delimiter, " ")
    return " ".join(text.split())
