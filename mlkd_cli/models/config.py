"""Architecture of a Conformer-CTC model, read from ``conf/model/*.yaml``.

``vocab_size`` is 0 in the presets: the trainer fills it in from the tokenizer with
:meth:`ModelConfig.with_vocab`, and the resolved value is what ``config.yaml`` and
checkpoints record.
"""

from __future__ import annotations

import dataclasses
from typing import Optional

from mlkd_cli.contracts import OUTPUT_FRAME_MS
from mlkd_cli.config import ADDED
from mlkd_cli.errors import ConfigError

SUBSAMPLING_FACTORS = (4,)


@dataclasses.dataclass(frozen=True)
class StreamingConfig:
    """A chunk-wise encoder: each frame attends to its own chunk and ``left_context_ms`` before
    it, the depthwise convolutions are causal, and every training batch draws its chunk size
    from ``chunk_ms`` (dynamic chunk training, as in WeNet U2), so one model serves each latency.
    """

    chunk_ms: tuple[int, ...] = (160, 320, 640)
    left_context_ms: int = 1280

    def __post_init__(self) -> None:
        if not self.chunk_ms:
            raise ConfigError("model streaming.chunk_ms must list at least one chunk size")
        for ms in (*self.chunk_ms, self.left_context_ms):
            if not isinstance(ms, int) or isinstance(ms, bool) or ms < 0 or ms % OUTPUT_FRAME_MS:
                raise ConfigError(f"model streaming: {ms!r} ms is not a multiple of the {OUTPUT_FRAME_MS} ms output frame")
        if min(self.chunk_ms) < OUTPUT_FRAME_MS:
            raise ConfigError(f"model streaming.chunk_ms must be at least {OUTPUT_FRAME_MS} ms")
        uneven = [ms for ms in self.chunk_ms if self.left_context_ms % ms]
        if uneven:
            raise ConfigError(f"model streaming.left_context_ms {self.left_context_ms} must be a whole number of "
                              f"chunks of every chunk size; it is not for {uneven} ms")

    @property
    def chunk_frames(self) -> tuple[int, ...]:
        return tuple(ms // OUTPUT_FRAME_MS for ms in self.chunk_ms)

    @property
    def left_frames(self) -> int:
        return self.left_context_ms // OUTPUT_FRAME_MS


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    feature_dim: int = 80
    d_model: int = 144
    num_layers: int = 6
    num_heads: int = 4
    ff_mult: int = 4  # feed-forward inner width = ff_mult * d_model
    conv_kernel: int = 15  # depthwise convolution kernel (odd)
    dropout: float = 0.1
    subsampling: int = 4  # frame-rate reduction of the conv2d front end
    subsampling_channels: int = 64  # channels of the second subsampling conv (the first has a quarter)
    vocab_size: int = 0  # 0: not yet known, set from the tokenizer
    # Language-adaptive model (empty: plain CTC): an utterance-level language-ID head reads
    # layer ``lid_layer`` (1-based; 0 = half-way), and a language embedding is added to that
    # layer's output before the layers above it.
    languages: tuple[str, ...] = ()
    lid_layer: int = 0
    # Chunk-wise streaming encoder (None: every frame sees the whole utterance).
    streaming: Optional[StreamingConfig] = dataclasses.field(default=None, metadata=ADDED)

    def __post_init__(self) -> None:
        positive = ("feature_dim", "d_model", "num_layers", "num_heads", "ff_mult", "conv_kernel", "subsampling_channels")
        for name in (*positive, "subsampling", "vocab_size"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool):
                raise ConfigError(f"model {name} must be an integer, got {value!r}")
        for name in positive:
            if getattr(self, name) < 1:
                raise ConfigError(f"model {name} must be at least 1, got {getattr(self, name)}")
        if self.feature_dim < 7:
            raise ConfigError(f"model feature_dim {self.feature_dim} is too small for conv2d subsampling; use at least 7")
        if self.subsampling_channels % 4:
            raise ConfigError(f"model subsampling_channels {self.subsampling_channels} must be a multiple of 4")
        if self.d_model % self.num_heads:
            raise ConfigError(f"model d_model {self.d_model} must be divisible by num_heads {self.num_heads}")
        if (self.d_model // self.num_heads) % 2:
            raise ConfigError(
                f"model head size d_model/num_heads = {self.d_model // self.num_heads} must be even "
                "(rotary position embedding rotates pairs of dimensions)"
            )
        if self.conv_kernel % 2 == 0:
            raise ConfigError(f"model conv_kernel {self.conv_kernel} must be odd (so the convolution is centred)")
        if isinstance(self.dropout, bool) or not isinstance(self.dropout, (int, float)) or not 0 <= self.dropout < 1:
            raise ConfigError(f"model dropout must be a number in [0, 1), got {self.dropout!r}")
        if self.subsampling not in SUBSAMPLING_FACTORS:
            raise ConfigError(f"model subsampling {self.subsampling} is not supported; use one of {SUBSAMPLING_FACTORS}")
        if len(set(self.languages)) != len(self.languages) or not all(isinstance(x, str) and x for x in self.languages):
            raise ConfigError(f"model languages must be distinct language codes, got {list(self.languages)}")
        if not isinstance(self.lid_layer, int) or not 0 <= self.lid_layer <= self.num_layers:
            raise ConfigError(f"model lid_layer must be 0 (half-way) or a layer number 1..{self.num_layers}, got {self.lid_layer!r}")
        if self.vocab_size < 0 or self.vocab_size == 1:
            raise ConfigError(f"model vocab_size {self.vocab_size} is invalid; use 0 (set from the tokenizer) or at least 2")

    @property
    def conditioned_layer(self) -> int:
        """How many layers run before the language-ID head and the language embedding."""
        return self.lid_layer or max(1, self.num_layers // 2)

    def with_vocab(self, vocab_size: int) -> ModelConfig:
        """This config with the tokenizer's vocabulary size (blank included)."""
        return dataclasses.replace(self, vocab_size=vocab_size)
