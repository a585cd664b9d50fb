"""Conformer encoder: conv2d subsampling, then pre-norm Conformer blocks.

Block: x + FF/2, x + rotary multi-head self-attention, x + convolution module, x + FF/2,
LayerNorm. Padding never changes a valid frame's output: the front end sees real frames
only (see ``subsampling``), attention masks padded keys, and padded frames are zeroed
before every depthwise convolution, which is then what a lone utterance sees as the
convolution's own zero padding. Values at padded frames are unspecified.

A streaming encoder (``config.streaming``) limits attention to chunks (:func:`chunk_mask`)
and makes the depthwise convolutions causal, so that chunk by chunk with cached keys,
values and convolution inputs (``mlkd_cli.models.streaming``) gives the same frames as the
whole utterance at once. Training draws each batch's chunk size from the config's list;
evaluation uses ``ConformerEncoder.chunk`` (the largest trained size unless set).

Dropout applies to the subsampled input and to every residual branch's output, not inside
the feed-forward layers or to attention weights: random masks are slow to draw on a CPU
(those two sites cost a quarter of a training step at the demo size), and :class:`Dropout`
draws the masks that remain from 16-bit random numbers there.
"""

from __future__ import annotations

import math
from typing import NamedTuple, Optional

import torch
from torch import nn
from torch.nn import functional as F

from mlkd_cli.models.config import ModelConfig
from mlkd_cli.models.subsampling import Conv2dSubsampling

ROPE_BASE = 10000.0


class EncoderOutput(NamedTuple):
    output: torch.Tensor  # (N, T', D), the last layer's output
    lengths: torch.Tensor  # (N,) valid frames of each utterance
    hidden: list[torch.Tensor]  # every layer's output, (N, T', D) each
    attention: Optional[list[torch.Tensor]]  # every layer's (N, H, T', T') map, or None


def valid_mask(lengths: torch.Tensor, max_len: int) -> torch.Tensor:
    """(N, max_len) bool, True on valid frames."""
    return torch.arange(max_len, device=lengths.device) < lengths[:, None]


def chunk_mask(length: int, chunk: int, left: int, device: torch.device | None = None) -> torch.Tensor:
    """(length, length) bool: query i may see key j when j is in i's chunk or within ``left``
    frames before that chunk's start (WeNet's chunk mask, with left context in frames)."""
    start = torch.arange(length, device=device) // chunk * chunk
    j = torch.arange(length, device=device)
    return (j[None, :] < start[:, None] + chunk) & (j[None, :] >= start[:, None] - left)


class Rotary(nn.Module):
    """Rotary position embedding tables for one head size."""

    def __init__(self, head_dim: int) -> None:
        super().__init__()
        inv_freq = ROPE_BASE ** (-torch.arange(0, head_dim, 2, dtype=torch.float32) / head_dim)
        self.register_buffer("inv_freq", inv_freq, persistent=False)

    def forward(self, length: int, start: int | torch.Tensor = 0) -> tuple[torch.Tensor, torch.Tensor]:
        """cos and sin, (length, head_dim) each, for positions start .. start+length-1."""
        positions = torch.arange(length, device=self.inv_freq.device, dtype=torch.float32) + start
        angles = positions[:, None] * self.inv_freq
        angles = torch.cat([angles, angles], dim=-1)
        return angles.cos(), angles.sin()


def apply_rotary(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate (..., T, head_dim) ``x`` by position (rotate-half convention)."""
    half = x.size(-1) // 2
    rotated = torch.cat([-x[..., half:], x[..., :half]], dim=-1)
    return x * cos.to(x.dtype) + rotated * sin.to(x.dtype)


def attend(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: Optional[torch.Tensor]) -> torch.Tensor:
    """Scaled dot-product attention; in fp32 when bf16 autocast runs on a CPU, where torch's bf16
    kernel is slow at short sequences (a demo teacher's training step 1.25 times as fast:
    bench/model_speed.py, record in bench/README.md)."""
    if q.device.type == "cpu" and q.dtype == torch.bfloat16:
        with torch.autocast("cpu", enabled=False):
            return F.scaled_dot_product_attention(q.float(), k.float(), v.float(), attn_mask=mask).to(q.dtype)
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask)


class Dropout(nn.Dropout):
    """``nn.Dropout`` whose CPU mask compares 16-bit random integers with the rate: torch's
    ``bernoulli_`` draws a 32-bit number per element (a demo teacher's training step 1.11 times
    as fast with this: bench/model_speed.py, record in bench/README.md). The keep rate is
    ``1 - p`` to within 2^-16; GPUs keep torch's dropout."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or not 0 < self.p < 1 or x.device.type != "cpu":
            return super().forward(x)
        n = x.numel()
        bits = torch.randint(-2**63, 2**63 - 1, ((n + 3) // 4,), dtype=torch.int64).view(torch.int16)[:n]
        return x * (bits.view(x.shape) >= round(self.p * 65536) - 32768) * (1 / (1 - self.p))


class FeedForward(nn.Module):
    def __init__(self, d_model: int, mult: int, dropout: float) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(d_model)
        self.linear1 = nn.Linear(d_model, mult * d_model)
        self.linear2 = nn.Linear(mult * d_model, d_model)
        self.dropout = Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dropout(self.linear2(F.silu(self.linear1(self.norm(x)))))


class RotarySelfAttention(nn.Module):
    """Multi-head self-attention with rotary positions on q and k and a key-padding mask."""

    def __init__(self, d_model: int, num_heads: int, dropout: float) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.norm = nn.LayerNorm(d_model)
        self.qkv = nn.Linear(d_model, 3 * d_model)
        self.out = nn.Linear(d_model, d_model)
        self.dropout = Dropout(dropout)

    def forward(
        self, x: torch.Tensor, key_mask: torch.Tensor, rope: tuple[torch.Tensor, torch.Tensor], return_attention: bool
    ) -> tuple[torch.Tensor, Optional[torch.Tensor]]:
        """``key_mask`` (N, 1, 1 or T, T) is True on keys that may be attended to."""
        n, t, d = x.shape
        q, k, v = self.qkv(self.norm(x)).view(n, t, 3, self.num_heads, d // self.num_heads).permute(2, 0, 3, 1, 4)
        q, k = apply_rotary(q, *rope), apply_rotary(k, *rope)
        weights = None
        if return_attention:
            scores = (q @ k.transpose(-1, -2)) / math.sqrt(q.size(-1))
            weights = scores.float().masked_fill(~key_mask, float("-inf")).softmax(dim=-1)
            y = weights.to(v.dtype) @ v
        else:
            y = attend(q, k, v, key_mask)
        y = y.transpose(1, 2).reshape(n, t, d)
        return self.dropout(self.out(y)), weights

    def step(self, x: torch.Tensor, rope: tuple[torch.Tensor, torch.Tensor], past_k: torch.Tensor,
             past_v: torch.Tensor, past_mask: Optional[torch.Tensor] = None, chunk_mask: Optional[torch.Tensor] = None
             ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """One chunk of a stream: (N, C, D) frames attend to themselves and the cached (N, H, P, d_k)
        keys (already rotated) and values; ``past_mask`` (N, 1, 1, P) and ``chunk_mask`` (N, 1, 1, C)
        mark valid cache and chunk frames (None: all). The output, and the keys and values with this
        chunk's appended."""
        n, t, d = x.shape
        q, k, v = self.qkv(self.norm(x)).view(n, t, 3, self.num_heads, d // self.num_heads).permute(2, 0, 3, 1, 4)
        q, k = apply_rotary(q, *rope), apply_rotary(k, *rope)
        p = past_k.size(2)
        k, v = torch.cat([past_k, k], dim=2), torch.cat([past_v, v], dim=2)
        mask = None
        if past_mask is not None or chunk_mask is not None:
            past = past_mask if past_mask is not None else x.new_ones(n, 1, 1, p, dtype=torch.bool)
            chunk = chunk_mask if chunk_mask is not None else x.new_ones(n, 1, 1, t, dtype=torch.bool)
            mask = torch.cat([past.expand(n, 1, 1, p), chunk.expand(n, 1, 1, t)], dim=-1)
        y = attend(q, k, v, mask).transpose(1, 2).reshape(n, t, d)
        return self.out(y), k, v


class ConvModule(nn.Module):
    """Pointwise conv + GLU, depthwise conv over valid frames, LayerNorm, swish, pointwise conv.

    Causal: the depthwise convolution sees the ``kernel - 1`` frames before each frame, not
    the ones after it (the same weights, padded on the left only).
    """

    def __init__(self, d_model: int, kernel: int, dropout: float, causal: bool = False) -> None:
        super().__init__()
        self.causal = causal
        self.norm = nn.LayerNorm(d_model)
        self.pointwise1 = nn.Linear(d_model, 2 * d_model)
        self.depthwise = nn.Conv1d(d_model, d_model, kernel, padding=0 if causal else kernel // 2, groups=d_model)
        self.depthwise_norm = nn.LayerNorm(d_model)
        self.pointwise2 = nn.Linear(d_model, d_model)
        self.dropout = Dropout(dropout)

    def gated(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """(N, T, D) input of the depthwise convolution, zero on padded frames."""
        return F.glu(self.pointwise1(self.norm(x)), dim=-1).masked_fill(~mask, 0.0)

    def convolve(self, y: torch.Tensor, unfolded: bool = False) -> torch.Tensor:
        """The depthwise convolution and what follows it, on (N, T, D) gated frames
        (a causal module's ``y`` starts with its ``kernel - 1`` frames of left context).

        ``unfolded`` computes the convolution as a product of frame windows and the kernel: on a
        stream's chunk (tens of frames) torch's depthwise conv1d is 3-4x slower than that.
        """
        if unfolded:
            kernel = self.depthwise.weight[:, 0]  # (D, K)
            y = (y.unfold(1, kernel.size(1), 1) * kernel).sum(-1) + self.depthwise.bias
        else:
            y = self.depthwise(y.transpose(1, 2)).transpose(1, 2)
        return self.dropout(self.pointwise2(F.silu(self.depthwise_norm(y))))

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """``mask`` (N, T, 1) is True on valid frames."""
        y = self.gated(x, mask)
        if self.causal:
            y = F.pad(y, (0, 0, self.depthwise.kernel_size[0] - 1, 0))
        return self.convolve(y)


def causal_kernels(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A full-context model's weights for a streaming one: each depthwise kernel keeps its taps on
    the current and past frames, in the places a causal kernel reads them, and drops the future
    ones (a centred tap ``j`` reads frame ``t + j - kernel // 2``, a causal tap ``t + j - kernel + 1``).
    So a causal convolution starts as the full-context one without its look-ahead."""
    out = dict(state)
    for name, weight in state.items():
        if name.endswith("depthwise.weight"):
            kernel = weight.shape[-1]
            shift = kernel - 1 - kernel // 2
            causal = torch.zeros_like(weight)
            causal[..., shift:] = weight[..., : kernel - shift]
            out[name] = causal
    return out


class ConformerBlock(nn.Module):
    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        d = config.d_model
        self.ff1 = FeedForward(d, config.ff_mult, config.dropout)
        self.attn = RotarySelfAttention(d, config.num_heads, config.dropout)
        self.conv = ConvModule(d, config.conv_kernel, config.dropout, causal=config.streaming is not None)
        self.ff2 = FeedForward(d, config.ff_mult, config.dropout)
        self.norm = nn.LayerNorm(d)

    def forward(
        self,
        x: torch.Tensor,
        mask: torch.Tensor,
        key_mask: torch.Tensor,
        rope: tuple[torch.Tensor, torch.Tensor],
        return_attention: bool,
    ) -> tuple[torch.Tensor, Optional[torch.Tensor]]:
        x = x + 0.5 * self.ff1(x)
        y, weights = self.attn(x, key_mask, rope, return_attention)
        x = x + y
        x = x + self.conv(x, mask)
        x = x + 0.5 * self.ff2(x)
        return self.norm(x), weights

    def step(self, x: torch.Tensor, rope: tuple[torch.Tensor, torch.Tensor], past_k: torch.Tensor,
             past_v: torch.Tensor, past_conv: torch.Tensor, past_mask: Optional[torch.Tensor] = None,
             chunk_mask: Optional[torch.Tensor] = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """One chunk of a stream (inference; causal convolution): the output, the keys and values
        with this chunk's appended, and the convolution input with its (N, kernel - 1, D) past before it.
        Frames ``chunk_mask`` marks invalid (padding at a stream's end) are never attended to, and the
        causal convolution never carries them back to valid frames."""
        x = x + 0.5 * self.ff1(x)
        y, k, v = self.attn.step(x, rope, past_k, past_v, past_mask, chunk_mask)
        x = x + y
        gated = torch.cat([past_conv, self.conv.gated(x, x.new_ones(1, 1, 1, dtype=torch.bool))], dim=1)
        x = x + self.conv.convolve(gated, unfolded=True)
        x = x + 0.5 * self.ff2(x)
        return self.norm(x), k, v, gated


class FeatureNormalizer(nn.Module):
    """Global per-bin mean/std normalisation of the input features.

    The statistics are buffers: they travel with every checkpoint and with exported graphs,
    whose runtimes (sherpa-onnx) feed raw fbank. Identity until ``set_stats`` is called.
    """

    def __init__(self, feature_dim: int) -> None:
        super().__init__()
        self.register_buffer("mean", torch.zeros(feature_dim))
        self.register_buffer("std", torch.ones(feature_dim))

    def set_stats(self, mean: torch.Tensor, std: torch.Tensor) -> None:
        self.mean.copy_(torch.as_tensor(mean, dtype=self.mean.dtype))
        self.std.copy_(torch.as_tensor(std, dtype=self.std.dtype).clamp(min=1e-3))

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return (features - self.mean) / self.std


class EncoderState(NamedTuple):
    """Frames between encoder layers, with what every layer needs to process them."""

    x: torch.Tensor  # (N, T', D)
    lengths: torch.Tensor  # (N,)
    mask: torch.Tensor  # (N, T', 1) True on valid frames
    key_mask: torch.Tensor  # (N, 1, 1, T'), or (N, 1, T', T') for a streaming encoder
    rope: tuple[torch.Tensor, torch.Tensor]
    chunk: int = 0  # chunk size in frames of a streaming encoder; 0: whole utterance


class ConformerEncoder(nn.Module):
    """(N, T, feature_dim) features -> (N, T', d_model) frames, T' about T / 4.

    ``embed`` and ``run`` expose the layers one span at a time, so a model can act between
    them (the language-adaptive model predicts the language and conditions on it there).
    """

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.normalizer = FeatureNormalizer(config.feature_dim)
        self.subsampling = Conv2dSubsampling(config.feature_dim, config.d_model, config.subsampling_channels)
        self.dropout = Dropout(config.dropout)
        self.rotary = Rotary(config.d_model // config.num_heads)
        self.layers = nn.ModuleList(ConformerBlock(config) for _ in range(config.num_layers))
        self.streaming = config.streaming
        # Chunk size (output frames) of a streaming encoder outside training.
        self.chunk = max(config.streaming.chunk_frames) if config.streaming else 0

    def current_chunk(self) -> int:
        """This forward pass's chunk size in frames: drawn per batch in training, else ``chunk``."""
        if not self.training:
            return self.chunk
        sizes = self.streaming.chunk_frames
        return sizes[int(torch.randint(len(sizes), ()))]

    def embed(self, features: torch.Tensor, feature_lens: torch.Tensor) -> EncoderState:
        """Normalise and subsample the features; the input of the first layer."""
        x, lengths = self.subsampling(self.normalizer(features), feature_lens)
        x = self.dropout(x)
        t = x.size(1)
        valid = valid_mask(lengths, t)
        # An utterance with no valid frame attends to frame 0 rather than to nothing (NaN).
        key_mask = valid_mask(lengths.clamp(min=1), t)[:, None, None, :]
        chunk = 0
        if self.streaming is not None:
            chunk = self.current_chunk()
            # Padded queries see every valid key: a row of nothing would be NaN, and NaN values
            # reach valid frames through the zero attention weights of the next layer.
            key_mask = key_mask & (chunk_mask(t, chunk, self.streaming.left_frames, x.device) | ~valid[:, None, :, None])
        return EncoderState(x, lengths, valid[:, :, None], key_mask, self.rotary(t), chunk)

    def run(
        self, state: EncoderState, start: int, stop: int, return_attention: bool = False
    ) -> tuple[EncoderState, list[torch.Tensor], list[Optional[torch.Tensor]]]:
        """Layers ``start`` .. ``stop - 1`` (0-based); their outputs and attention maps."""
        x, hidden, attention = state.x, [], []
        for layer in self.layers[start:stop]:
            x, weights = layer(x, state.mask, state.key_mask, state.rope, return_attention)
            hidden.append(x)
            attention.append(weights)
        return state._replace(x=x), hidden, attention

    def forward(self, features: torch.Tensor, feature_lens: torch.Tensor, return_attention: bool = False) -> EncoderOutput:
        """Encode a padded batch.

        With ``return_attention`` the attention maps are computed explicitly (slower) and
        returned: rows sum to 1 over valid keys and are 0 on padded keys.
        """
        state, hidden, attention = self.run(self.embed(features, feature_lens), 0, len(self.layers), return_attention)
        return EncoderOutput(state.x, state.lengths, hidden, attention if return_attention else None)
