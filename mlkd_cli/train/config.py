"""Optimisation settings shared by every training stage."""

from __future__ import annotations

import dataclasses

from mlkd_cli.errors import ConfigError

PRECISIONS = ("fp32", "bf16", "fp16")
AVERAGE_BY = ("last", "best")


@dataclasses.dataclass(frozen=True)
class SpecAugmentConfig:
    """lhotse SpecAugment settings (its defaults are tuned for LibriSpeech-scale training)."""

    enabled: bool = True
    time_warp_factor: int = 80
    num_feature_masks: int = 2
    features_mask_size: int = 27
    num_frame_masks: int = 10
    frames_mask_size: int = 100
    max_frames_mask_fraction: float = 0.15


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    max_steps: int = 3000
    max_duration: float = 50.0  # seconds of audio per batch (per process)
    lr: float = 2e-3  # peak, after linear warm-up; cosine decay to final_lr_ratio * lr
    warmup_steps: int = 300
    final_lr_ratio: float = 0.05
    weight_decay: float = 0.01
    grad_clip: float = 5.0
    precision: str = "fp32"  # bf16 autocast works on CPU and GPU; fp16 only on GPU
    spec_augment: SpecAugmentConfig = SpecAugmentConfig()
    speed_perturb: bool = False  # 0.9x/1.1x copies of the training data, features on the fly
    language_sampling: float = 0.0  # multilingual data: draw languages ∝ hours^this (0 = equally often)
    valid_interval: int = 500  # validate and write a resumable checkpoint every N steps
    log_interval: int = 25
    keep_checkpoints: int = 3
    average: int = 3  # final.pt = average of N checkpoints
    average_by: str = "last"  # "last" N, or "best" N by validation loss
    seed: int = 42
    num_workers: int = 0

    def __post_init__(self) -> None:
        if self.precision not in PRECISIONS:
            raise ConfigError(f"precision {self.precision!r} is not one of {', '.join(PRECISIONS)}")
        if self.average_by not in AVERAGE_BY:
            raise ConfigError(f"average_by {self.average_by!r} is not one of {', '.join(AVERAGE_BY)}")
        for name in ("max_steps", "valid_interval", "log_interval", "keep_checkpoints", "average"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be at least 1, got {getattr(self, name)}")
        if not 0 <= self.language_sampling <= 1:
            raise ConfigError(f"language_sampling must be in [0, 1], got {self.language_sampling}")
        if self.max_duration <= 0 or self.lr <= 0:
            raise ConfigError("max_duration and lr must be positive")
