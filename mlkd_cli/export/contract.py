"""sherpa-onnx's file contract, which `mlkd export` writes and ONNX teachers read: the model and
token files, the token table, the inputs, outputs and metadata of its offline and online (WeNet)
CTC models, and the onnxruntime sessions that look at them.

sherpa-onnx kills the process (segfault, exit 255) on a model or token table outside its
contract, so :func:`check_offline_model` and :func:`check_streaming_model` check both in
Python before anything hands them over.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from mlkd_cli.data.features import NUM_MEL_BINS
from mlkd_cli.contracts import read_tokens
from mlkd_cli.errors import DataError, OnnxLoadError
from mlkd_cli.models.streaming import RECEPTIVE_EXTRA

MODEL_FILE = "model.onnx"
INT8_FILE = "model.int8.onnx"
SHERPA_KEYS = ("head", "num_blocks", "output_size", "cnn_module_kernel", "right_context", "subsampling_factor",
               "vocab_size")  # the metadata sherpa-onnx's WeNet CTC model reads


def session(path: Path):
    """An onnxruntime CPU session of ``path``; an OnnxLoadError when onnxruntime cannot load it."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    try:
        return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    except Exception as e:  # onnxruntime raises its own exception types for unreadable models
        reason = (str(e).splitlines() or [type(e).__name__])[0]
        raise OnnxLoadError(f"{path}: onnxruntime cannot load it ({reason})") from None


def check_offline_model(model_path: Path, tokens_path: Path) -> None:
    """Raise DataError unless sherpa-onnx's offline CTC recognizer (``from_zipformer_ctc``) can load and
    run these files: (N, T, 80) float32 features and (N,) int64 lengths in, (N, T', V) float32 log-probs
    and (N,) int64 lengths out, by position."""
    symbols = read_tokens(tokens_path)
    sess = session(model_path)
    expected = (
        ("input", sess.get_inputs(), [("tensor(float)", 3), ("tensor(int64)", 1)]),
        ("output", sess.get_outputs(), [("tensor(float)", 3), ("tensor(int64)", 1)]),
    )
    for kind, args, want in expected:
        got = [(arg.type, len(arg.shape)) for arg in args]
        if got != want:
            raise DataError(
                f"{model_path}: sherpa-onnx needs {kind}s {describe_ranks(want)}, the model has {describe_ranks(got)}; "
                "export it with `mlkd export`"
            )
    features, tokens = sess.get_inputs()[0].shape[2], sess.get_outputs()[0].shape[2]  # str when symbolic
    if features != NUM_MEL_BINS:
        raise DataError(f"{model_path}: sherpa-onnx feeds {NUM_MEL_BINS}-dim fbank, the model reads {features}-dim features")
    if isinstance(tokens, int) and tokens != len(symbols):
        raise DataError(f"{model_path}: the model emits {tokens} tokens but {tokens_path} has {len(symbols)}")


@dataclasses.dataclass(frozen=True)
class Geometry:
    """The fixed shapes of one streaming export (sherpa-onnx's WeNet CTC model)."""

    chunk: int  # C, output frames per call
    left_chunks: int  # num_left_chunks
    layers: int
    blocks: int  # cache blocks: layers, + 1 for a language-adaptive model's LID state
    heads: int
    width: int  # d_model
    kernel: int
    vocab: int

    @property
    def cache(self) -> int:  # R
        return self.chunk * self.left_chunks

    @property
    def frames(self) -> int:  # feature frames per call
        return 4 * self.chunk + RECEPTIVE_EXTRA

    def input_shapes(self) -> dict[str, tuple[list[int], str]]:
        r, head_dim = self.cache, self.width // self.heads
        return {
            "x": ([1, self.frames, NUM_MEL_BINS], "tensor(float)"),
            "offset": ([1], "tensor(int64)"),
            "required_cache_size": ([1], "tensor(int64)"),
            "attn_cache": ([self.blocks, self.heads, r, 2 * head_dim], "tensor(float)"),
            "conv_cache": ([self.blocks, 1, self.width, self.kernel - 1], "tensor(float)"),
            "attn_mask": ([1, 1, r + self.chunk], "tensor(bool)"),
        }

    def output_shapes(self) -> list[tuple[list[int], str]]:
        shapes = self.input_shapes()
        return [([1, self.chunk, self.vocab], "tensor(float)"), shapes["attn_cache"], shapes["conv_cache"]]


def check_streaming_model(model_path: Path, tokens_path: Path, chunk_size: int, num_left_chunks: int) -> Geometry:
    """The graph's geometry; a DataError unless ``from_wenet_ctc(tokens, model, chunk_size, num_left_chunks)``
    can load and run these files (sherpa-onnx exits the process on a missing metadata key or a bad shape)."""
    return _streaming_geometry(session(model_path), model_path, tokens_path, chunk_size, num_left_chunks)


def _streaming_geometry(sess, model_path: Path, tokens_path: Path, chunk_size: int, num_left_chunks: int) -> Geometry:
    """:func:`check_streaming_model` on an open session of ``model_path``."""
    symbols = read_tokens(tokens_path)
    meta = sess.get_modelmeta().custom_metadata_map
    values = {}
    for key in SHERPA_KEYS:
        value = meta.get(key, "")
        if not value.isdigit():
            raise DataError(f"{model_path}: sherpa-onnx's WeNet CTC model needs metadata {key!r} (a non-negative "
                            f"integer), the model has {value!r}; export it with `mlkd export --streaming`")
        values[key] = int(value)
    if values["head"] < 1 or values["output_size"] % values["head"]:
        raise DataError(f"{model_path}: metadata output_size {values['output_size']} is not a multiple of "
                        f"head {values['head']}")
    if values["vocab_size"] != len(symbols):
        raise DataError(f"{model_path}: the model emits {values['vocab_size']} tokens but {tokens_path} has "
                        f"{len(symbols)}")
    frames = (chunk_size - 1) * values["subsampling_factor"] + values["right_context"] + 1
    geo = Geometry(chunk_size, num_left_chunks, values["num_blocks"], values["num_blocks"], values["head"],
                   values["output_size"], values["cnn_module_kernel"], values["vocab_size"])
    want_inputs = geo.input_shapes()
    want_inputs["x"] = ([1, frames, NUM_MEL_BINS], "tensor(float)")
    got_inputs = [(arg.shape, arg.type) for arg in sess.get_inputs()]
    if got_inputs != list(want_inputs.values()):
        raise DataError(f"{model_path}: sherpa-onnx feeds chunk_size {chunk_size}, num_left_chunks {num_left_chunks} "
                        f"inputs {describe_shapes(list(want_inputs.values()))}; the model takes "
                        f"{describe_shapes(got_inputs)} (export it for this chunk size with "
                        "`mlkd export --streaming --chunk-ms`)")
    got_outputs = [(arg.shape, arg.type) for arg in sess.get_outputs()]
    if got_outputs != geo.output_shapes():
        raise DataError(f"{model_path}: sherpa-onnx needs outputs {describe_shapes(geo.output_shapes())}; "
                        f"the model has {describe_shapes(got_outputs)}")
    return geo


def open_mlkd_streaming_export(model_path: Path, tokens_path: Path):
    """An onnxruntime session of an `mlkd export --streaming` graph and its geometry, checked as
    :func:`check_streaming_model` does with the chunk_size and num_left_chunks of its metadata."""
    sess = session(model_path)
    meta = sess.get_modelmeta().custom_metadata_map
    sizes = {key: meta.get(key, "") for key in ("chunk_size", "num_left_chunks")}
    if not all(value.isdigit() for value in sizes.values()):
        raise DataError(f"{model_path}: not a streaming export of mlkd (no chunk_size and num_left_chunks metadata); "
                        "export the model with `mlkd export --streaming`")
    return sess, _streaming_geometry(sess, model_path, tokens_path, int(sizes["chunk_size"]),
                                     int(sizes["num_left_chunks"]))


def describe_ranks(args: list[tuple[str, int]]) -> str:
    return "(" + ", ".join(f"{kind} rank {rank}" for kind, rank in args) + ")"


def describe_shapes(args: list[tuple[list, str]]) -> str:
    return "(" + ", ".join(f"{kind.removeprefix('tensor(').rstrip(')')} {list(shape)}" for shape, kind in args) + ")"
