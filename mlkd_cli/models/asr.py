"""Conformer-CTC model, CTC loss and greedy decoding. Token id 0 is the CTC blank."""

from __future__ import annotations

from typing import NamedTuple, Optional, Sequence, Union

import torch
from torch import nn
from torch.nn import functional as F

from mlkd_cli.errors import ConfigError
from mlkd_cli.models.conformer import ConformerEncoder
from mlkd_cli.models.config import ModelConfig

BLANK_ID = 0

Targets = Union[Sequence[Sequence[int]], tuple[torch.Tensor, torch.Tensor]]


class CtcOutput(NamedTuple):
    log_probs: torch.Tensor  # (N, T', V) float32 log-softmax
    lengths: torch.Tensor  # (N,) valid frames
    output: torch.Tensor  # (N, T', D) encoder output
    hidden: list[torch.Tensor]  # every encoder layer's output
    attention: Optional[list[torch.Tensor]]  # every layer's (N, H, T', T') map, or None


class CtcModel(nn.Module):
    """Conformer encoder and a linear CTC head over ``config.vocab_size`` tokens."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        if config.vocab_size < 2:
            raise ConfigError(
                f"model vocab_size is {config.vocab_size}: set it from the tokenizer (config.with_vocab(n)) before building"
            )
        self.config = config
        self.encoder = ConformerEncoder(config)
        self.ctc_head = nn.Linear(config.d_model, config.vocab_size)

    def forward(
        self,
        features: torch.Tensor,
        feature_lens: torch.Tensor,
        condition: Optional[torch.Tensor] = None,
        return_attention: bool = False,
    ) -> CtcOutput:
        enc = self.encoder(features, feature_lens, condition, return_attention)
        log_probs = self.ctc_head(enc.output).float().log_softmax(dim=-1)
        return CtcOutput(log_probs, enc.lengths, enc.output, enc.hidden, enc.attention)


def build_model(config: ModelConfig) -> CtcModel:
    return CtcModel(config)


def num_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def ctc_loss(log_probs: torch.Tensor, lengths: torch.Tensor, targets: Targets, reduction: str = "mean") -> torch.Tensor:
    """CTC loss of (N, T, V) ``log_probs``; ``targets`` are id lists or (padded (N, S), lengths (N,)).

    ``reduction``: "mean" (per utterance, summed over its tokens), "sum", or "none" (N,).
    Infeasible alignments (more tokens than frames) count 0 instead of infinity.
    """
    if reduction not in ("mean", "sum", "none"):
        raise ValueError(f"reduction must be 'mean', 'sum' or 'none', not {reduction!r}")
    if isinstance(targets, tuple) and len(targets) == 2 and isinstance(targets[0], torch.Tensor):
        padded, target_lens = targets
        flat = torch.cat([padded[i, :n] for i, n in enumerate(target_lens.tolist())])
    else:
        target_lens = torch.tensor([len(t) for t in targets], dtype=torch.long)
        flat = torch.tensor([i for t in targets for i in t], dtype=torch.long)
    losses = F.ctc_loss(
        log_probs.float().transpose(0, 1),
        flat.to(log_probs.device),
        lengths,
        target_lens.to(log_probs.device),
        blank=BLANK_ID,
        reduction="none",
        zero_infinity=True,
    )
    if reduction == "none":
        return losses
    return losses.sum() if reduction == "sum" else losses.mean()


def greedy_decode(log_probs: torch.Tensor, lengths: torch.Tensor) -> list[list[int]]:
    """Best path per utterance: argmax per frame, repeats collapsed, blanks dropped."""
    best = log_probs.argmax(dim=-1).cpu()
    hyps = []
    for ids, n in zip(best, lengths.tolist()):
        ids = torch.unique_consecutive(ids[:n])
        hyps.append(ids[ids != BLANK_ID].tolist())
    return hyps
