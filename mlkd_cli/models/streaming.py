"""Chunk-by-chunk inference of a streaming model, equal to its whole-utterance chunked forward.

:class:`StreamBatch` takes fbank frames as they arrive and runs the encoder one chunk at a
time, for several streams in step (:class:`ModelStream` is one stream): every layer keeps the keys and values (already rotated to their positions) of the
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

from mlkd_cli.contracts import OUTPUT_FRAME_MS
from mlkd_cli.errors import ConfigError
from mlkd_cli.models.asr import CtcModel
from mlkd_cli.models.subsampling import subsampled_lengths

RECEPTIVE_EXTRA = 3  # a chunk of C output frames reads 4C + 3 feature frames (the front end's 7-frame window)


def chunk_frames(model: CtcModel, chunk_ms: Optional[int], command: str = "decode") -> int:
    """Output frames per chunk for ``chunk_ms`` (None: the model's largest trained size);
    a ConfigError for a model that does not stream (its fix names ``command``) or a size that
    is not whole frames."""
    streaming = model.config.streaming
    if streaming is None:
        raise ConfigError(f"this model is not a streaming model (its config has no `streaming:` block); "
                          f"{command} it without --streaming, or train a student with a streaming model config")
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


class StreamBatch:
    """Streams that started together, encoded together chunk by chunk (inference only).

    Streams fed the same amount of audio stay in step (the same offset and cache lengths), so
    their chunks run as one batch: a tiny model's chunk costs little more for 16 streams than for
    one. A stream whose audio ends leaves with :meth:`remove` and finishes alone.
    """

    def __init__(self, model: CtcModel, chunk: int, language: Optional[torch.Tensor] = None, size: int = 1) -> None:
        self.model, self.chunk = model, chunk
        encoder, config = model.encoder, model.config
        self.left = config.streaming.left_frames
        self.pending = [torch.zeros(0, config.feature_dim) for _ in range(size)]  # normalised, not yet consumed
        self.frames_received = [0] * size  # feature frames accepted
        self.offset = 0  # output frames emitted
        heads, width = config.num_heads, config.d_model
        empty = torch.zeros(size, heads, 0, width // heads)
        self.keys = [empty] * len(encoder.layers)
        self.values = [empty] * len(encoder.layers)
        self.conv = [torch.zeros(size, config.conv_kernel - 1, width) for _ in encoder.layers]
        self.forced = F.one_hot(language, len(config.languages)).float()[None] if language is not None else None
        self.lid_sum, self.lid_count = torch.zeros(size, width), 0

    def __len__(self) -> int:
        return len(self.pending)

    @torch.inference_mode()
    def accept(self, features: list[np.ndarray]) -> list[list[ChunkOutput]]:
        """Add (T, F) fbank frames to each stream; the chunks every stream can complete, per stream."""
        for i, f in enumerate(features):
            frames = self.model.encoder.normalizer(torch.from_numpy(np.asarray(f, dtype=np.float32)))
            self.frames_received[i] += frames.size(0)
            self.pending[i] = torch.cat([self.pending[i], frames])
        outputs: list[list[ChunkOutput]] = [[] for _ in self.pending]
        needed = 4 * self.chunk + RECEPTIVE_EXTRA
        while self.pending and min(p.size(0) for p in self.pending) >= needed:
            for out, chunk in zip(outputs, self._encode(torch.stack([p[:needed] for p in self.pending]), self.chunk)):
                out.append(chunk)
            self.pending = [p[4 * self.chunk:] for p in self.pending]
        return outputs

    @torch.inference_mode()
    def finish(self) -> list[list[ChunkOutput]]:
        """Each stream's last, shorter chunk from the frames it has left (none when they make no
        output frame), all in one batch: shorter ones padded, the padding masked."""
        frames = [int(subsampled_lengths(torch.tensor(p.size(0)))) for p in self.pending]
        most = max(frames, default=0)
        outputs: list[list[ChunkOutput]] = [[] for _ in self.pending]
        if most:
            length = max(p.size(0) for p in self.pending)
            padded = torch.stack([F.pad(p, (0, 0, 0, length - p.size(0))) for p in self.pending])
            for i, chunk in enumerate(self._encode(padded, most, frames)):
                if frames[i]:
                    outputs[i].append(chunk)
        self.pending = [p[:0] for p in self.pending]
        return outputs

    def remove(self, indices: list[int]) -> "StreamBatch":
        """Take the streams at ``indices`` out of the batch, as a batch of their own."""
        out = StreamBatch.__new__(StreamBatch)
        out.__dict__.update(self.__dict__)
        keep = [j for j in range(len(self)) if j not in indices]
        for name in ("keys", "values", "conv"):
            setattr(out, name, [t[indices] for t in getattr(self, name)])
            setattr(self, name, [t[keep] for t in getattr(self, name)])
        out.lid_sum, self.lid_sum = self.lid_sum[indices], self.lid_sum[keep]
        out.pending = [self.pending[j] for j in indices]
        out.frames_received = [self.frames_received[j] for j in indices]
        self.pending = [self.pending[j] for j in keep]
        self.frames_received = [self.frames_received[j] for j in keep]
        return out

    def _encode(self, features: torch.Tensor, frames: int, valid: Optional[list[int]] = None) -> list[ChunkOutput]:
        """``frames`` output frames of every stream; with ``valid``, stream i's only first valid[i]
        (the others, made of padding, are masked and dropped)."""
        model, encoder = self.model, self.model.encoder
        n = features.size(0)
        x, _ = encoder.subsampling(features, torch.full((n,), features.size(1)))
        x = x[:, :frames]
        rope = encoder.rotary(frames, self.offset)
        mask = None if valid is None else torch.arange(frames) < torch.tensor(valid)[:, None]  # (N, C)
        split = model.config.conditioned_layer if model.config.languages else len(encoder.layers)
        x = self._layers(x, rope, 0, split, mask)
        lid_logits = [None] * n
        if model.config.languages:
            counted = x if mask is None else torch.where(mask[:, :, None], x, 0.0)
            self.lid_sum = self.lid_sum + counted.sum(1)
            self.lid_count = self.lid_count + (frames if mask is None else mask.sum(1, keepdim=True))
            lid = model.lid_head(self.lid_sum / self.lid_count).float()
            weights = self.forced if self.forced is not None else lid.softmax(-1)
            x = x + model.language_embedding(weights)[:, None, :]
            x = self._layers(x, rope, split, len(encoder.layers), mask)
            lid_logits = list(lid.numpy())
        self.offset += frames
        log_probs = model.head_log_probs(x).numpy()
        lengths = valid or [frames] * n
        return [ChunkOutput(lp[:m], lg) for lp, lg, m in zip(log_probs, lid_logits, lengths)]

    def _layers(self, x: torch.Tensor, rope: tuple[torch.Tensor, torch.Tensor], start: int, stop: int,
                mask: Optional[torch.Tensor] = None) -> torch.Tensor:
        for i in range(start, stop):
            x, k, v, conv = self.model.encoder.layers[i].step(x, rope, self.keys[i], self.values[i], self.conv[i],
                                                              chunk_mask=None if mask is None else mask[:, None, None, :])
            keep = max(k.size(2) - self.left, 0)  # the last `left` frames (none when left is 0)
            self.keys[i], self.values[i] = k[:, :, keep:], v[:, :, keep:]
            self.conv[i] = conv[:, conv.size(1) - self.conv[i].size(1):]
        return x


class ModelStream:
    """One utterance, fed with :meth:`accept` and closed with :meth:`finish` (inference only)."""

    def __init__(self, model: CtcModel, chunk: int, language: Optional[torch.Tensor] = None) -> None:
        self.batch = StreamBatch(model, chunk, language)

    def accept(self, features: np.ndarray) -> list[ChunkOutput]:
        """Add (T, F) fbank frames; the chunks they complete."""
        return self.batch.accept([features])[0]

    def finish(self) -> list[ChunkOutput]:
        """The last, shorter chunk from the frames left (none when they make no output frame)."""
        return self.batch.finish()[0]
