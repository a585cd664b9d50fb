"""Distillation losses over padded batches; every average runs over real frames only."""

from __future__ import annotations

import torch
from torch.nn import functional as F

from mlkd_cli.contracts import BLANK_ID
from mlkd_cli.models.conformer import valid_mask


def even_layer_map(student_layers: int, teacher_layers: int) -> list[tuple[int, int]]:
    """(student, teacher) 1-based layer pairs: every student layer to the teacher layer at the
    same relative depth, so the last layers always pair up (4 → 6: 1-2, 2-3, 3-5, 4-6)."""
    return [(s, max(1, int(s * teacher_layers / student_layers + 0.5))) for s in range(1, student_layers + 1)]


def hidden_kd_loss(student: torch.Tensor, teacher: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """‖h_t − P(h_s)‖² summed over the feature dimension, averaged over valid frames.

    ``student`` is already projected to the teacher's width: (N, T, D) each, ``lengths`` (N,).
    """
    mask = valid_mask(lengths, student.size(1))
    squared = (teacher.float() - student.float()).pow(2).sum(-1)
    return (squared * mask).sum() / mask.sum().clamp(min=1)


def posterior_kl_loss(
    student_log_probs: torch.Tensor, teacher_log_probs: torch.Tensor, lengths: torch.Tensor, temperature: float,
    blank_weight: float = 1.0,
) -> torch.Tensor:
    """T² · KL(p_t^T ‖ p_s^T) per frame, a weighted average over valid frames.

    Softening a log-softmax by T is the same as softening the logits (the normaliser is a
    constant per frame), so the models' CTC log-probabilities serve as they are. The T² factor
    keeps the gradient's scale independent of T (Hinton et al., 2015). Frames the teacher
    assigns to blank (its most likely token) weigh ``blank_weight``, the others 1: CTC
    posteriors are mostly blank, which can drown the frames that carry the tokens
    (blank-frame selection, arXiv 2506.01503, is ``blank_weight`` 0).
    """
    weights = valid_mask(lengths, student_log_probs.size(1)).float()
    if blank_weight != 1.0:
        blank = teacher_log_probs.argmax(-1) == BLANK_ID
        weights = weights * torch.where(blank, blank_weight, 1.0)
    s = F.log_softmax(student_log_probs.float() / temperature, dim=-1)
    t = F.log_softmax(teacher_log_probs.float() / temperature, dim=-1)
    kl = (t.exp() * (t - s)).sum(-1)
    return temperature**2 * (kl * weights).sum() / weights.sum().clamp(min=1e-6)


def attention_kd_loss(student: torch.Tensor, teacher: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """KL(teacher ‖ student) between head-averaged attention rows, averaged over valid query frames.

    Maps are (N, H, T, T) with rows summing to 1 over valid keys (heads may differ in number).
    """
    mask = valid_mask(lengths, student.size(-1))
    s = student.float().mean(1).clamp(min=1e-8).log()
    t = teacher.float().mean(1)
    kl = (t * (t.clamp(min=1e-8).log() - s)).sum(-1)
    return (kl * mask).sum() / mask.sum().clamp(min=1)
