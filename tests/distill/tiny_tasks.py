"""Tiny models and padded batches for the distillation and fine-tuning task tests."""

from __future__ import annotations

import torch

from mlkd_cli.models import ModelConfig, build_model
from mlkd_cli.train.batches import Batch

TINY = ModelConfig(d_model=32, num_layers=2, num_heads=2, ff_mult=2, conv_kernel=7, subsampling_channels=16, vocab_size=9)


def model(config: ModelConfig = TINY, seed: int = 0):
    torch.manual_seed(seed)
    return build_model(config).eval()


def make_batch(lengths: list[int], langs: list[str], seed: int = 0) -> Batch:
    g = torch.Generator().manual_seed(seed)
    features = torch.zeros(len(lengths), max(lengths), 80)
    for i, n in enumerate(lengths):
        features[i, :n] = torch.randn(n, 80, generator=g)
    targets = [[1 + (i + j) % 8 for j in range(3)] for i in range(len(lengths))]
    return Batch(features, torch.tensor(lengths), targets, ["abc"] * len(lengths), langs,
                 [f"u{i}" for i in range(len(lengths))], sum(lengths) / 100)
