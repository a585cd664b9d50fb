"""`mlkd export --streaming`: the flavour for sherpa-onnx's online CTC recognizer.

The graph follows the WeNet CTC contract of ``sherpa_onnx.OnlineRecognizer.from_wenet_ctc``
(sherpa-onnx/csrc/online-wenet-ctc-model.cc, online-recognizer-ctc-impl.h), one chunk of C
output frames per call, batch 1, all shapes fixed:

  inputs (by position)
    x                    (1, 4C + 3, 80) f32   fbank of the chunk (see below)
    offset               (1,) i64              R + C * (chunks decoded so far); sherpa starts it at R
    required_cache_size  (1,) i64              R = C * num_left_chunks
    attn_cache           (B, H, R, 2 D/H) f32  per layer: the rotated keys | values of the last R frames
    conv_cache           (B, 1, D, K - 1) f32  per layer: the last K - 1 inputs of the causal convolution
    attn_mask            (1, 1, R + C) bool    valid cache frames (right-aligned), then the chunk's
  outputs  log_probs (1, C, V), next_att_cache, next_conv_cache (the caches' shapes)

sherpa-onnx reads the metadata head, num_blocks (B), output_size (D), cnn_module_kernel (K),
right_context (6: the 7-frame window of the two stride-2 convolutions), subsampling_factor and
vocab_size, and uses num_blocks for nothing but the caches' shapes. It feeds 4C + 3 frames
every 4C frames, and decodes a chunk only when more than 4C + 3 frames are ready.

Features: the WeNet path computes fbank of samples scaled to [-32768, 32767], without dither,
so the graph first undoes the scale, ``max(x - 2 ln 32768, ln FLT_EPSILON)`` (Kaldi floors the
mel energies at FLT_EPSILON in either scale), then applies the model's own CMVN.

Positions: rotary embeddings are relative, so the chunk's first frame is at ``offset - R``,
and the cached keys are stored already rotated (as :class:`~mlkd_cli.models.streaming.ModelStream`
keeps them). The left context is ``num_left_chunks = left_context_ms / chunk_ms`` whole chunks.

Language-adaptive models: the running sum of the layer-``conditioned_layer`` frames (D floats)
and their count must survive between calls, but the contract carries only the two caches. They
live in one extra block of ``attn_cache``: B = num_layers + 1, and the extra block's first D + 1
elements (flattened) hold the sum and the count; ``conv_cache`` gets the extra block too, unused
(zero). Each chunk is conditioned on softmax(lid_head(sum / count)) of the audio up to its end,
as ModelStream does.

The export is verified chunk by chunk with onnxruntime against ModelStream (sherpa's offsets and
masks), after :func:`~mlkd_cli.export.contract.check_streaming_model` has checked its inputs,
outputs and metadata.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from pathlib import Path

import numpy as np
import torch
from torch import nn

from mlkd_cli.contracts import OUTPUT_FRAME_MS
from mlkd_cli.data.features import NUM_MEL_BINS
from mlkd_cli.errors import ConfigError, MlkdError
from mlkd_cli.export.contract import Geometry, check_streaming_model, session
from mlkd_cli.export.routine import ExportResult, Flavour, export_model_dir, write_onnx
from mlkd_cli.models import CtcModel
from mlkd_cli.models.streaming import RECEPTIVE_EXTRA, ModelStream, chunk_frames

logger = logging.getLogger("mlkd")

INPUT_NAMES = ("x", "offset", "required_cache_size", "attn_cache", "conv_cache", "attn_mask")
OUTPUT_NAMES = ("log_probs", "next_att_cache", "next_conv_cache")
SAMPLE_SCALE_LOG = 2 * math.log(32768.0)  # fbank of samples * 32768 = fbank of samples + this
LOG_FLT_EPSILON = math.log(float(np.finfo(np.float32).eps))  # Kaldi's floor of the log mel energies
RIGHT_CONTEXT = 6  # frames after a chunk's last output frame's first input frame: 4C + 3 = 4(C - 1) + 6 + 1


@dataclasses.dataclass(frozen=True, kw_only=True)
class StreamingResult(ExportResult):
    chunk_ms: int
    chunk_size: int  # output frames per chunk: sherpa's chunk_size
    num_left_chunks: int


def geometry(model: CtcModel, chunk_ms: int | None) -> tuple[int, Geometry]:
    """The chunk in ms and the export's shapes; a ConfigError for a model or chunk the contract cannot take."""
    chunk = chunk_frames(model, chunk_ms, "export")  # the one-line errors of a non-streaming model or a bad size
    config = model.config
    streaming = config.streaming
    ms = chunk * OUTPUT_FRAME_MS
    if streaming.left_context_ms % ms:
        raise ConfigError(
            f"--chunk-ms {ms}: the model's left context of {streaming.left_context_ms} ms is not a whole number of "
            f"{ms} ms chunks (sherpa-onnx caches num_left_chunks whole chunks); use a chunk size that divides it, "
            f"e.g. one the model was trained with: {', '.join(map(str, streaming.chunk_ms))}"
        )
    left_chunks = streaming.left_context_ms // ms
    if config.languages and left_chunks == 0:
        raise ConfigError("a language-adaptive model without left context cannot be exported for streaming: "
                          "its running language estimate is kept in the attention cache, which has no frames")
    if ms not in streaming.chunk_ms:
        logger.warning("chunk %d ms: the model was trained with %s ms chunks", ms,
                       ", ".join(map(str, streaming.chunk_ms)))
    layers = config.num_layers
    return ms, Geometry(chunk, left_chunks, layers, layers + bool(config.languages), config.num_heads, config.d_model,
                        config.conv_kernel, config.vocab_size)


class WenetCtcChunk(nn.Module):
    """The exported graph: one chunk and the caches -> log-probs and the next caches."""

    def __init__(self, model: CtcModel, geo: Geometry) -> None:
        super().__init__()
        self.model, self.geo = model, geo

    def forward(self, x: torch.Tensor, offset: torch.Tensor, required_cache_size: torch.Tensor,
                attn_cache: torch.Tensor, conv_cache: torch.Tensor, attn_mask: torch.Tensor
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        model, geo = self.model, self.geo
        encoder, config = model.encoder, model.config
        c, r, head_dim = geo.chunk, geo.cache, geo.width // geo.heads
        x = torch.clamp(x - SAMPLE_SCALE_LOG, min=LOG_FLT_EPSILON)
        x, _ = encoder.subsampling(encoder.normalizer(x), torch.tensor([geo.frames]))
        x = x[:, :c]
        rope = encoder.rotary(c, (offset - required_cache_size).float())  # relative: any origin works
        past_mask = attn_mask[:, :, :r].unsqueeze(1)  # (1, 1, 1, R)
        keys, convs = [], []

        def layers(x: torch.Tensor, start: int, stop: int) -> torch.Tensor:
            for i in range(start, stop):
                cache = attn_cache[i : i + 1]  # (1, H, R, 2 d_k)
                past_conv = conv_cache[i].transpose(1, 2)  # (1, K - 1, D)
                x, k, v, gated = encoder.layers[i].step(x, rope, cache[..., :head_dim], cache[..., head_dim:],
                                                        past_conv, past_mask)
                keys.append(torch.cat([k[:, :, c:], v[:, :, c:]], dim=-1))  # the last R frames
                convs.append(gated[:, c:].transpose(1, 2)[None])  # (1, 1, D, K - 1): the last convolution inputs
            return x

        if not config.languages:
            x = layers(x, 0, geo.layers)
        else:
            split, width = config.conditioned_layer, geo.width
            x = layers(x, 0, split)
            state = attn_cache[geo.layers].reshape(-1)
            total = state[:width] + x[0].sum(0)
            count = state[width : width + 1] + c
            lid = model.lid_head(total / count).float()
            x = x + model.language_embedding(lid.softmax(-1))
            x = layers(x, split, geo.layers)
            rest = state.new_zeros(state.numel() - width - 1)
            keys.append(torch.cat([total, count, rest]).reshape(1, geo.heads, r, 2 * head_dim))
            convs.append(torch.zeros_like(conv_cache[geo.layers : geo.layers + 1]))
        return model.head_log_probs(x), torch.cat(keys), torch.cat(convs)


@dataclasses.dataclass(frozen=True)
class Streaming(Flavour):
    model: CtcModel
    chunk_ms: int
    geo: Geometry
    int8: bool = False
    reference = "ModelStream"

    @property
    def dir_name(self) -> str:
        return f"export_streaming_{self.chunk_ms}ms"

    @property
    def details(self) -> str:
        return f" ({self.chunk_ms} ms chunks, {self.geo.left_chunks} left chunks)"

    @property
    def settings(self) -> dict[str, object]:
        return {"streaming": True, "chunk_ms": self.chunk_ms, "int8": self.int8}

    def metadata(self) -> dict[str, str]:
        """sherpa-onnx's WeNet keys (the rest of ``SHERPA_KEYS`` every export carries), the chunking, mlkd's own."""
        geo, config = self.geo, self.model.config
        return {
            "model_type": "conformer_ctc_streaming",
            "head": str(geo.heads),
            "num_blocks": str(geo.blocks),
            "output_size": str(geo.width),
            "cnn_module_kernel": str(geo.kernel),
            "right_context": str(RIGHT_CONTEXT),
            "chunk_size": str(geo.chunk),
            "chunk_ms": str(self.chunk_ms),
            "num_left_chunks": str(geo.left_chunks),
            "left_context_ms": str(config.streaming.left_context_ms),
            "num_layers": str(geo.layers),
            "comment": ("sherpa-onnx OnlineRecognizer.from_wenet_ctc(chunk_size=chunk_size, num_left_chunks="
                        "num_left_chunks); input: 80-bin Kaldi fbank of samples scaled to +-32768 (the WeNet path); "
                        "CMVN is inside the graph"
                        + ("; attn_cache block num_layers holds the running language-ID sum and count"
                           if config.languages else "")),
        }

    def write(self, path: Path, props: dict[str, str]) -> None:
        """The chunk graph, all shapes fixed."""
        example = initial_inputs(self.geo, np.zeros((1, self.geo.frames, NUM_MEL_BINS), np.float32))
        write_onnx(WenetCtcChunk(self.model, self.geo), tuple(torch.from_numpy(example[name]) for name in INPUT_NAMES),
                   path, props, INPUT_NAMES, OUTPUT_NAMES)

    def check(self, model_path: Path, tokens_path: Path) -> None:
        check_streaming_model(model_path, tokens_path, self.geo.chunk, self.geo.left_chunks)

    def compare(self, path: Path) -> tuple[float, float]:
        return compare_streaming(self.model, self.geo, path)

    def result(self, exported: ExportResult) -> StreamingResult:
        return StreamingResult(**vars(exported), chunk_ms=self.chunk_ms, chunk_size=self.geo.chunk,
                               num_left_chunks=self.geo.left_chunks)


def export_streaming(exp_dir: str | Path, chunk_ms: int | None = None, out_dir: str | Path | None = None,
                     force: bool = False, argv: list[str] | None = None,
                     tokens: str | Path | None = None, int8: bool = False) -> StreamingResult | None:
    """Export ``exp_dir``'s streaming model for ``chunk_ms`` chunks (None: its largest trained size; with
    ``int8`` a quantized copy too) to ``out_dir`` (default ``exp_dir/export_streaming_<ms>ms``); None
    when that export is up to date."""
    return export_model_dir(exp_dir, lambda model: Streaming(model, *geometry(model, chunk_ms), int8), out_dir,
                            tokens, force, argv)


def initial_inputs(geo: Geometry, x: np.ndarray) -> dict[str, np.ndarray]:
    """The first call's inputs, as sherpa-onnx makes them (zero caches, offset R)."""
    shapes = geo.input_shapes()
    return {
        "x": x,
        "offset": np.array([geo.cache], np.int64),
        "required_cache_size": np.array([geo.cache], np.int64),
        "attn_cache": np.zeros(shapes["attn_cache"][0], np.float32),
        "conv_cache": np.zeros(shapes["conv_cache"][0], np.float32),
        "attn_mask": sherpa_mask(geo.cache, geo.chunk, geo.left_chunks),
    }


def sherpa_mask(offset: int, chunk: int, left_chunks: int) -> np.ndarray:
    """The attn_mask sherpa-onnx builds for ``offset`` (OnlineWenetCtcModel::Forward)."""
    required = chunk * left_chunks
    mask = np.ones((1, 1, required + chunk), dtype=bool)
    index = offset // chunk - left_chunks  # chunks decoded so far
    if index < left_chunks:
        mask[..., : required - index * chunk] = False
    return mask


class OnnxStream:
    """One stream through a streaming export in onnxruntime, its caches, offsets and masks as
    sherpa-onnx keeps them (batch 1)."""

    def __init__(self, sess, geo: Geometry) -> None:
        self.sess, self.geo = sess, geo
        self.inputs = initial_inputs(geo, np.zeros((1, geo.frames, NUM_MEL_BINS), np.float32))

    def step(self, x: np.ndarray) -> np.ndarray:
        """The (C, V) log-probs of one chunk's (4C + 3, 80) frames (32768-scale fbank)."""
        self.inputs["x"] = np.ascontiguousarray(x[None], dtype=np.float32)
        log_probs, self.inputs["attn_cache"], self.inputs["conv_cache"] = self.sess.run(None, self.inputs)
        offset = self.inputs["offset"] + log_probs.shape[1]
        self.inputs.update(offset=offset, attn_mask=sherpa_mask(int(offset[0]), self.geo.chunk, self.geo.left_chunks))
        return log_probs[0]

    def language_mean(self) -> np.ndarray:
        """A language-adaptive graph's mean layer-``conditioned_layer`` frame so far (D,): the LID head's
        input, kept in the extra cache block (see the module's docstring)."""
        state = self.inputs["attn_cache"][self.geo.blocks - 1].reshape(-1)
        return state[: self.geo.width] / max(float(state[self.geo.width]), 1.0)


def run_chunks(path: Path, geo: Geometry, features: np.ndarray) -> list[np.ndarray]:
    """onnxruntime over (T, 80) features (32768-scale fbank), one (C, V) per full chunk (every chunk
    whose 4C + 3 frames are there)."""
    stream = OnnxStream(session(path), geo)
    return [stream.step(features[start : start + geo.frames])
            for start in range(0, features.shape[0] - geo.frames + 1, 4 * geo.chunk)]


def verification_features(model: CtcModel, geo: Geometry) -> np.ndarray:
    """Fbank-like frames (the model's CMVN statistics, Kaldi's floor) for enough whole chunks to fill
    the attention cache and roll it over, in mlkd's scale."""
    normalizer = model.encoder.normalizer
    chunks = geo.left_chunks + 3
    generator = torch.Generator().manual_seed(0)
    noise = torch.randn(4 * geo.chunk * chunks + RECEPTIVE_EXTRA, model.config.feature_dim, generator=generator)
    return (normalizer.mean + normalizer.std * noise).clamp(min=LOG_FLT_EPSILON).numpy()


def compare_streaming(model: CtcModel, geo: Geometry, path: Path) -> tuple[float, float]:
    """Max |log-prob diff| between onnxruntime chunk by chunk and ModelStream on the verification
    frames, and the fraction of frames where their best tokens agree."""
    features = verification_features(model, geo)
    ours = [out.log_probs for out in ModelStream(model, geo.chunk).accept(features)]
    theirs = run_chunks(path, geo, features + np.float32(SAMPLE_SCALE_LOG))
    if len(ours) != len(theirs):
        raise MlkdError(f"{path}: onnxruntime gave {len(theirs)} chunks where ModelStream gives {len(ours)}; "
                        "the export is wrong (please report this)")
    ours, theirs = np.concatenate(ours), np.concatenate(theirs)
    return float(np.abs(ours - theirs).max()), float((ours.argmax(-1) == theirs.argmax(-1)).mean())
