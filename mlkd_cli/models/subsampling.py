"""Conv2d front end: 4x frame-rate reduction with two 3x3 stride-2 convolutions.

The first convolution has ``channels // 4`` output channels: it sees only 3x3 = 9 inputs
per position, and it runs at twice the frame rate of the second one, so a wide first
convolution is the costliest layer of the model on a CPU while adding little.

The convolutions have no padding along time, so output frame ``t`` sees input frames
``4t .. 4t+6`` only. An utterance of ``T`` frames gives ``((T - 1) // 2 - 1) // 2`` output
frames, each computed from real frames alone: whatever fills the padding of a batch
(zeros, -23.03, garbage) never reaches a valid output frame.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

MIN_FRAMES = 7  # the shortest input that yields one output frame


def subsampled_lengths(lengths: torch.Tensor) -> torch.Tensor:
    """Output frames of the front end for inputs of ``lengths`` frames (0 for fewer than 7)."""
    return (((lengths - 1) // 2 - 1) // 2).clamp(min=0)


class Conv2dSubsampling(nn.Module):
    """(N, T, F) features -> (N, T', d_model) frames, T' = ((T - 1) // 2 - 1) // 2.

    Batches shorter than 7 frames are padded so that the convolutions run; their
    utterances get 0 valid frames.
    """

    def __init__(self, feature_dim: int, d_model: int, channels: int) -> None:
        super().__init__()
        self.conv = nn.Sequential(
            nn.Conv2d(1, channels // 4, kernel_size=3, stride=2),
            nn.ReLU(),
            nn.Conv2d(channels // 4, channels, kernel_size=3, stride=2),
            nn.ReLU(),
        )
        self.out = nn.Linear(channels * (((feature_dim - 1) // 2 - 1) // 2), d_model)

    def forward(self, features: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if features.size(1) < MIN_FRAMES:  # too short for one frame: pad so the convs run
            features = F.pad(features, (0, 0, 0, MIN_FRAMES - features.size(1)))
        x = self.conv(features.unsqueeze(1))  # (N, C, T', F')
        n, c, t, f = x.shape
        x = self.out(x.transpose(1, 2).reshape(n, t, c * f))
        return x, subsampled_lengths(lengths)
