"""What the trainer optimises: a module whose forward(batch) returns the loss.

Teachers, distillation and fine-tuning differ only in their task; the loop, checkpoints,
resume, averaging and distributed training are shared. A task exposes the model that
later stages use (``asr_model``) and its metrics on a validation batch as
(numerator, denominator) pairs, summed over the dev set before dividing.
"""

from __future__ import annotations

from typing import Protocol

import torch
from torch import nn

from mlkd_cli.data.tokenizer import Tokenizer
from mlkd_cli.errors import DataError
from mlkd_cli.models import CtcModel, ctc_loss, greedy_decode
from mlkd_cli.score.alignment import ErrorCounts, char_errors as count_char_errors
from mlkd_cli.train.batches import Batch

Metrics = dict[str, tuple[float, float]]


class Task(Protocol):
    asr_model: CtcModel

    def __call__(self, batch: Batch) -> tuple[torch.Tensor, dict[str, float]]: ...

    def evaluate(self, batch: Batch) -> Metrics: ...


def language_ids(languages: tuple[str, ...], batch: Batch) -> torch.Tensor:
    """The batch's languages as indices into a language-adaptive model's ``languages``."""
    index = {lang: i for i, lang in enumerate(languages)}
    unknown = sorted(set(batch.langs) - set(index))
    if unknown:
        raise DataError(f"utterances in language(s) {', '.join(unknown)}, which the model does not know "
                        f"(its languages: {', '.join(languages)})")
    return torch.tensor([index[lang] for lang in batch.langs], device=batch.features.device)


def char_errors(tokenizer: Tokenizer, hyps: list[list[int]], refs: list[str]) -> tuple[int, int]:
    """Character edit errors and reference length (whitespace excluded) over a batch."""
    total = sum((count_char_errors(ref, tokenizer.decode(hyp)) for hyp, ref in zip(hyps, refs)), ErrorCounts())
    return total.errors, total.ref_len


class CtcTask(nn.Module):
    """Plain CTC training of a CtcModel (teachers, and the no-KD baseline)."""

    def __init__(self, model: CtcModel, tokenizer: Tokenizer):
        super().__init__()
        self.asr_model = model
        self.tokenizer = tokenizer

    def forward(self, batch: Batch) -> tuple[torch.Tensor, dict[str, float]]:
        out = self.asr_model(batch.features, batch.feature_lens)
        loss = ctc_loss(out.log_probs, out.lengths, batch.targets)
        return loss, {"ctc": loss.item()}

    @torch.no_grad()
    def evaluate(self, batch: Batch) -> Metrics:
        out = self.asr_model(batch.features, batch.feature_lens)
        n = len(batch.targets)
        loss = ctc_loss(out.log_probs, out.lengths, batch.targets, reduction="sum").item()
        return {"loss": (loss, n), "cer": char_errors(self.tokenizer, greedy_decode(out.log_probs, out.lengths), batch.texts)}
