"""Conformer-CTC model, CTC loss and greedy decoding. Token id 0 is the CTC blank."""

from __future__ import annotations

from typing import NamedTuple, Optional, Sequence, Union

import torch
from torch import nn
from torch.nn import functional as F

from mlkd_cli.contracts import BLANK_ID
from mlkd_cli.errors import ConfigError
from mlkd_cli.models.config import ModelConfig
from mlkd_cli.models.conformer import ConformerEncoder, valid_mask

Targets = Union[Sequence[Sequence[int]], tuple[torch.Tensor, torch.Tensor]]


class CtcOutput(NamedTuple):
    log_probs: torch.Tensor  # (N, T', V) float32 log-softmax
    lengths: torch.Tensor  # (N,) valid frames
    output: torch.Tensor  # (N, T', D) encoder output
    hidden: list[torch.Tensor]  # every encoder layer's output
    attention: Optional[list[torch.Tensor]]  # every layer's (N, H, T', T') map, or None
    lid_logits: Optional[torch.Tensor] = None  # (N, num_languages), language-adaptive models only


def masked_mean(x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """(N, T, D) frames -> (N, D) mean over each utterance's valid frames (0 when it has none)."""
    mask = (torch.arange(x.size(1), device=x.device) < lengths[:, None]).to(x.dtype)[:, :, None]
    return (x * mask).sum(1) / mask.sum(1).clamp(min=1)


def prefix_means(x: torch.Tensor, lengths: torch.Tensor, chunk: int) -> torch.Tensor:
    """(N, T, D): at each frame, the mean of the valid frames from the start to the end of its chunk."""
    t = x.size(1)
    sums = (x * valid_mask(lengths, t).to(x.dtype)[:, :, None]).cumsum(1)
    ends = torch.minimum((torch.arange(t, device=x.device) // chunk + 1) * chunk, lengths[:, None]).clamp(min=1)
    picked = sums.gather(1, (ends - 1)[:, :, None].expand(-1, -1, x.size(2)))
    return picked / ends[:, :, None].to(x.dtype)


class CtcModel(nn.Module):
    """Conformer encoder and a linear CTC head over ``config.vocab_size`` tokens.

    With ``config.languages`` the model is language-adaptive: after layer
    ``config.conditioned_layer`` a linear head on the mean-pooled frames predicts the
    language, and a language embedding (zero at initialisation, so a plain model's weights
    start out unchanged) is added to every frame before the remaining layers. The embedding
    mixes the given language (training, or forced by the user) or the predicted posteriors;
    a streaming model predicts them chunk by chunk from the audio up to each chunk's end.
    """

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        if config.vocab_size < 2:
            raise ConfigError(
                f"model vocab_size is {config.vocab_size}: set it from the tokenizer (config.with_vocab(n)) before building"
            )
        self.config = config
        self.encoder = ConformerEncoder(config)
        self.ctc_head = nn.Linear(config.d_model, config.vocab_size)
        if config.languages:
            self.lid_head = nn.Linear(config.d_model, len(config.languages))
            self.language_embedding = nn.Linear(len(config.languages), config.d_model, bias=False)
            nn.init.zeros_(self.language_embedding.weight)

    def forward(
        self,
        features: torch.Tensor,
        feature_lens: torch.Tensor,
        language: Optional[torch.Tensor] = None,
        return_attention: bool = False,
    ) -> CtcOutput:
        """``language``: (N,) indices into ``config.languages``, or (N, L) weights; None = predicted."""
        if not self.config.languages:
            if language is not None:
                raise ConfigError("this model has no language input (its config lists no languages)")
            enc = self.encoder(features, feature_lens, return_attention)
            return CtcOutput(self.head_log_probs(enc.output), enc.lengths, enc.output, enc.hidden, enc.attention)
        layers, split = len(self.encoder.layers), self.config.conditioned_layer
        state, hidden, attention = self.encoder.run(self.encoder.embed(features, feature_lens), 0, split, return_attention)
        lid_logits = self.lid_head(masked_mean(state.x, state.lengths)).float()
        if language is None and state.chunk:  # each chunk: the language of the audio up to its end
            weights = self.lid_head(prefix_means(state.x, state.lengths, state.chunk)).float().softmax(dim=-1)
        elif language is None:
            weights = lid_logits.softmax(dim=-1)[:, None, :]
        elif language.dim() == 1:
            weights = F.one_hot(language, len(self.config.languages)).float()[:, None, :]
        else:
            weights = language.float()[:, None, :]
        state = state._replace(x=state.x + self.language_embedding(weights.to(state.x.dtype)))
        state, upper_hidden, upper_attention = self.encoder.run(state, split, layers, return_attention)
        return CtcOutput(self.head_log_probs(state.x), state.lengths, state.x, hidden + upper_hidden,
                         attention + upper_attention if return_attention else None, lid_logits)

    def head_log_probs(self, output: torch.Tensor) -> torch.Tensor:
        """The CTC head's log-posteriors of the frames of ``output`` (the top layer's, or a lower one's)."""
        return self.ctc_head(output).float().log_softmax(dim=-1)


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


def collapse(best_path: Sequence[int]) -> list[int]:
    """The tokens of a frame-level path: repeats collapsed, then blanks dropped."""
    tokens, previous = [], None
    for t in best_path:
        if t != previous and t != BLANK_ID:
            tokens.append(int(t))
        previous = t
    return tokens


def greedy_decode(log_probs: torch.Tensor, lengths: torch.Tensor) -> list[list[int]]:
    """Best path per utterance of a batch: argmax per frame, collapsed."""
    best = log_probs.argmax(dim=-1).cpu()
    return [collapse(ids[:n].tolist()) for ids, n in zip(best, lengths.tolist())]
