"""Chunk-by-chunk inference of a streaming model, equal to its whole-utterance chunked forward.

:class:`ModelStream` takes fbank frames as they arrive and runs the encoder one chunk at a
time: every layer keeps the keys and values (already rotated to their positions) of the
last ``left_context`` frames and the last ``kernel - 1`` inputs of its causal convolution;
the front end keeps the feature frames it has not consumed (output frame ``t`` reads input
frames ``4t .. 4t+6``). A language-adaptive model keeps the running sum of the frames the
language-ID head reads, so each chunk is conditioned on the language of the audio so far,
as :func:`mlkd_cli.models.asr.prefix_means` does for the whole utterance.
"""

from __future__ import annotations

from typing import NamedTuple, Optional

import numpy as np
import torch
from torch.nn import functional as F

from mlkd_cli.errors import ConfigError
from mlkd_cli.models.asr import CtcModel
from mlkd_cli.models.config import OUTPUT_FRAME_MS
from mlkd_cli.models.subsampling import subsampled_lengths

RECEPTIVE_EXTRA = 3  # a chunk of C output frames reads 4C + 3 feature frames (the front end's 7-frame window)


def chunk_frames(model: CtcModel, chunk_ms: Optional[int]) -> int:
    """Output frames per chunk for ``chunk_ms`` (None: the model's largest trained size);
    a ConfigError for a model that does not stream or a size that is not whole frames."""
    streaming = model.config.streaming
    if streaming is None:
        raise ConfigError("this model is not a streaming model (its config has no `streaming:` block); "
                          "decode it without --streaming, or train a student with a streaming model config")
    if chunk_ms is None:
        return max(streaming.chunk_frames)
    if chunk_ms <= 0 or chunk_ms % OUTPUT_FRAME_MS:
        raise ConfigError(f"--chunk-ms {chunk_ms}: must be a positive multiple of {OUTPUT_FRAME_MS} ms "
                          f"(the model was trained with {', '.join(map(str, streaming.chunk_ms))})")
    return chunk_ms // OUTPUT_FRAME_MS


def use_chunk(model: CtcModel, chunk_ms: Optional[int]) -> int:
    """Set the chunk size the model's whole-utterance (chunked) forward uses outside training."""
    model.encoder.chunk = chunk_frames(model, chunk_ms)
    return model.encoder.chunk


class ChunkOutput(NamedTuple):
    log_probs: np.ndarray  # (C, V) of this chunk's output frames
    lid_logits: Optional[np.ndarray]  # (L,) from the audio so far; None for a plain model


class ModelStream:
    """One utterance, fed with :meth:`accept` and closed with :meth:`finish` (inference only)."""

    def __init__(self, model: CtcModel, chunk: int, language: Optional[torch.Tensor] = None) -> None:
        self.model, self.chunk = model, chunk
        encoder, config = model.encoder, model.config
        self.left = config.streaming.left_frames
        self.pending = torch.zeros(0, config.feature_dim)  # normalised features not yet consumed
        self.offset = 0  # output frames emitted
        self.frames_received = 0  # feature frames accepted
        heads, width = config.num_heads, config.d_model
        empty = torch.zeros(1, heads, 0, width // heads)
        self.keys = [empty] * len(encoder.layers)
        self.values = [empty] * len(encoder.layers)
        self.conv = [torch.zeros(1, config.conv_kernel - 1, width) for _ in encoder.layers]
        self.forced = F.one_hot(language, len(config.languages)).float() if language is not None else None
        self.lid_sum, self.lid_count = torch.zeros(width), 0

    @torch.inference_mode()
    def accept(self, features: np.ndarray) -> list[ChunkOutput]:
        """Add (T, F) fbank frames; the chunks they complete."""
        frames = self.model.encoder.normalizer(torch.from_numpy(np.asarray(features, dtype=np.float32)))
        self.frames_received += frames.size(0)
        self.pending = torch.cat([self.pending, frames])
        outputs = []
        needed = 4 * self.chunk + RECEPTIVE_EXTRA
        while self.pending.size(0) >= needed:
            outputs.append(self._encode(self.pending[:needed], self.chunk))
            self.pending = self.pending[4 * self.chunk:]
        return outputs

    @torch.inference_mode()
    def finish(self) -> list[ChunkOutput]:
        """The last, shorter chunk from the frames left (none when they make no output frame)."""
        frames = int(subsampled_lengths(torch.tensor(self.pending.size(0))))
        pending, self.pending = self.pending, self.pending[:0]
        return [self._encode(pending, frames)] if frames else []

    def _encode(self, features: torch.Tensor, frames: int) -> ChunkOutput:
        model, encoder = self.model, self.model.encoder
        x, _ = encoder.subsampling(features[None], torch.tensor([features.size(0)]))
        x = x[:, :frames]
        rope = encoder.rotary(frames, self.offset)
        split = model.config.conditioned_layer if model.config.languages else len(encoder.layers)
        x = self._layers(x, rope, 0, split)
        lid_logits = None
        if model.config.languages:
            self.lid_sum += x[0].sum(0)
            self.lid_count += frames
            lid = model.lid_head(self.lid_sum / self.lid_count).float()
            weights = self.forced if self.forced is not None else lid.softmax(-1)
            x = x + model.language_embedding(weights)
            x = self._layers(x, rope, split, len(encoder.layers))
            lid_logits = lid.numpy()
        self.offset += frames
        return ChunkOutput(model._log_probs(x)[0].numpy(), lid_logits)

    def _layers(self, x: torch.Tensor, rope: tuple[torch.Tensor, torch.Tensor], start: int, stop: int) -> torch.Tensor:
        for i in range(start, stop):
            x, k, v, conv = self.model.encoder.layers[i].step(x, rope, self.keys[i], self.values[i], self.conv[i])
            keep = max(k.size(2) - self.left, 0)  # the last `left` frames (none when left is 0)
            self.keys[i], self.values[i] = k[:, :, keep:], v[:, :, keep:]
            self.conv[i] = conv[:, conv.size(1) - self.conv[i].size(1):]
        return x
