"""`mlkd export`: an experiment's model as ONNX for sherpa-onnx's offline CTC recognizer.

The graph follows the contract of ``sherpa_onnx.OfflineRecognizer.from_zipformer_ctc``:

  inputs   x (N, T, 80) float32 raw fbank, x_lens (N,) int64       (by position)
  outputs  log_probs (N, T', V) float32, log_probs_len (N,) int64  (by position)

N and T are dynamic. CMVN is part of the model (its ``FeatureNormalizer`` buffers), padded
frames (sherpa pads batches with ln 1e-10) never reach a valid output frame, and inputs of
fewer than 7 frames are padded inside the graph so that they give 0 frames instead of an
onnxruntime error. A language-adaptive model conditions on its own predicted language
posteriors; its language list is stored as metadata.

sherpa-onnx kills the process (segfault, exit 255) on a model or token table outside its
contract, so :func:`check_sherpa_model` checks both before anything hands them over.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import time
import warnings
from pathlib import Path
from typing import Iterator

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from mlkd_cli.contracts import TOKENS_FILE
from mlkd_cli.data.features import NUM_MEL_BINS
from mlkd_cli.data.tokenizer import BLANK
from mlkd_cli.errors import DataError, MlkdError
from mlkd_cli.experiment.model_dir import TOKENIZER_DIR, load_model_dir
from mlkd_cli.fsutil import file_digest
from mlkd_cli.models import CtcModel
from mlkd_cli.models.subsampling import MIN_FRAMES
from mlkd_cli.stage import Stage, file_input, new_record
from mlkd_cli.version import __version__

logger = logging.getLogger("mlkd")

EXPORT_DIR = "export"
MODEL_FILE = "model.onnx"
INT8_FILE = "model.int8.onnx"
INPUT_NAMES = ("x", "x_lens")
OUTPUT_NAMES = ("log_probs", "log_probs_len")
PAD_VALUE = -23.025850929940457  # ln 1e-10: what sherpa-onnx pads a batch's features with
TOLERANCE = 1e-3  # largest accepted |log-prob| difference between onnxruntime and PyTorch
VERIFY_FRAMES = (300, 187)  # a padded batch of two utterances (3 s and 1.9 s)


@dataclasses.dataclass(frozen=True)
class ExportResult:
    out_dir: Path
    seconds: float  # export time, verification excluded
    max_diff: float  # onnxruntime vs PyTorch, valid frames of the verification batch
    int8_diff: float | None = None
    int8_agreement: float | None = None  # fraction of valid frames with the same best token

    @property
    def model(self) -> Path:
        return self.out_dir / MODEL_FILE

    @property
    def int8_model(self) -> Path | None:
        return self.out_dir / INT8_FILE if self.int8_diff is not None else None

    @property
    def tokens(self) -> Path:
        return self.out_dir / TOKENS_FILE


class SherpaCtc(nn.Module):
    """The exported graph: (x, x_lens) -> (log_probs, log_probs_len)."""

    def __init__(self, model: CtcModel) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor, x_lens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = F.pad(x, (0, 0, 0, torch.sym_max(0, MIN_FRAMES - x.size(1))), value=PAD_VALUE)
        out = self.model(x, x_lens)
        return out.log_probs, out.lengths


def export_experiment(exp_dir: str | Path, out_dir: str | Path | None = None, int8: bool = False,
                      tokens: str | Path | None = None, force: bool = False,
                      argv: list[str] | None = None) -> ExportResult | None:
    """Export ``exp_dir``'s model and token table to ``out_dir`` (default ``exp_dir/export``);
    None when that export is up to date.

    Files are written under a staging dir, verified against PyTorch with onnxruntime and
    checked against the sherpa-onnx contract, then published as one set (an int8 model of an
    earlier export does not stay beside a new fp32 one).
    """
    exp_dir = Path(exp_dir)
    out_dir = Path(out_dir) if out_dir is not None else exp_dir / EXPORT_DIR
    loaded = load_model_dir(exp_dir)
    model = loaded.model.eval().requires_grad_(False)
    tokens_path = Path(tokens) if tokens is not None else loaded.path / TOKENIZER_DIR / TOKENS_FILE
    symbols = read_tokens(tokens_path, model.config.vocab_size)
    record = new_record("export", {"model": file_input(loaded.weights), "tokens": file_input(tokens_path)},
                        {"int8": int8}, argv)
    with Stage(out_dir, record, force=force).run() as staged:
        if staged is None:
            return None
        write_tokens(symbols, staged / TOKENS_FILE)
        seconds, max_diff = export_verified(model, staged, metadata(model, loaded.weights))
        logger.info("exported %s in %.1f s; onnxruntime vs PyTorch: max |diff| %.2e", out_dir / MODEL_FILE, seconds, max_diff)
        int8_diff = int8_agreement = None
        if int8:
            int8_diff, int8_agreement = quantize_checked(model, staged)
            logger.info("int8 model: max |diff| %.3f, same best token on %.1f%% of frames", int8_diff, 100 * int8_agreement)
    return ExportResult(out_dir, seconds, max_diff, int8_diff, int8_agreement)


def export_verified(model: CtcModel, staged: Path, props: dict[str, str]) -> tuple[float, float]:
    """Export to ``staged/model.onnx``, check it; export seconds and max |diff| to PyTorch."""
    start = time.perf_counter()
    export_onnx(model, staged / MODEL_FILE, props)
    seconds = time.perf_counter() - start
    check_sherpa_model(staged / MODEL_FILE, staged / TOKENS_FILE)
    return seconds, verify_onnx(model, staged / MODEL_FILE)


def quantize_checked(model: CtcModel, staged: Path) -> tuple[float, float]:
    """Quantize ``staged/model.onnx`` to ``model.int8.onnx``, check it; its diff and agreement with PyTorch."""
    quantize_int8(staged / MODEL_FILE, staged / INT8_FILE)
    check_sherpa_model(staged / INT8_FILE, staged / TOKENS_FILE)
    return compare_onnx(model, staged / INT8_FILE)


def read_tokens(path: Path, vocab_size: int | None = None, blank_first: bool = True) -> list[str]:
    """Symbols by id from a ``symbol id`` table; every id 0..V-1 once, ``<blk>`` at 0 (``blank_first``)."""
    if not path.is_file():
        raise DataError(f"{path}: token table not found")
    symbols: dict[int, str] = {}
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        fields = line.split()
        if len(fields) != 2 or not fields[1].isdigit():
            raise DataError(f"{path}:{number}: expected `symbol id`, got {line!r}")
        symbol, i = fields[0], int(fields[1])
        if i in symbols:
            raise DataError(f"{path}:{number}: id {i} appears twice ({symbols[i]!r} and {symbol!r})")
        symbols[i] = symbol
    missing = sorted(set(range(len(symbols))) - set(symbols))
    if missing:
        raise DataError(f"{path}: ids must run 0..{len(symbols) - 1} without gaps; missing {missing[:5]}")
    if blank_first and symbols.get(0) != BLANK:
        raise DataError(f"{path}: id 0 must be the CTC blank {BLANK}, not {symbols.get(0)!r}")
    if vocab_size is not None and len(symbols) != vocab_size:
        raise DataError(f"{path}: {len(symbols)} tokens, but the model emits {vocab_size}; pass the model's own token table")
    return [symbols[i] for i in range(len(symbols))]


def write_tokens(symbols: list[str], path: Path) -> None:
    path.write_text("".join(f"{symbol} {i}\n" for i, symbol in enumerate(symbols)), encoding="utf-8")


def metadata(model: CtcModel, weights: Path) -> dict[str, str]:
    config = model.config
    return {
        "model_type": "conformer_ctc",
        "model_author": "mlkd",
        "mlkd_version": __version__,
        "final_pt_sha256": file_digest(weights),
        "vocab_size": str(config.vocab_size),
        "feature_dim": str(config.feature_dim),
        "subsampling_factor": str(config.subsampling),
        "languages": ",".join(config.languages),
        "comment": "input: raw 80-bin Kaldi fbank at 16 kHz (lhotse Fbank defaults); CMVN is inside the graph",
    }


@contextlib.contextmanager
def quiet_onnx_tools() -> Iterator[None]:
    """Silence the exporter's and the quantizer's warnings (torchvision notices, pre-processing advice)."""
    loggers = [logging.getLogger("torch.onnx"), logging.getLogger()]  # the quantizer logs to the root logger
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)


def export_onnx(model: CtcModel, path: Path, props: dict[str, str]) -> None:
    """Write ``model`` to ``path`` as one self-contained ONNX file with dynamic N and T.

    torch.export's exporter (``dynamo=True``) keeps the length arithmetic symbolic; the
    weights stay inside the file because sherpa-onnx reads no external data.
    """
    import onnx

    wrapper = SherpaCtc(model).eval()
    example = (torch.zeros(2, VERIFY_FRAMES[0], model.config.feature_dim), torch.tensor(VERIFY_FRAMES))
    batch, frames = torch.export.Dim("N"), torch.export.Dim("T")
    with quiet_onnx_tools():
        program = torch.onnx.export(
            wrapper, example, dynamo=True, input_names=list(INPUT_NAMES), output_names=list(OUTPUT_NAMES),
            dynamic_shapes=({0: batch, 1: frames}, {0: batch}), verbose=False,
        )
    proto = program.model_proto
    onnx.helper.set_model_props(proto, props)
    onnx.save(proto, str(path))


def quantize_int8(src: Path, dst: Path) -> None:
    """Dynamic int8 quantization of the matrix products (onnxruntime), the usual for sherpa-onnx."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    with quiet_onnx_tools():
        quantize_dynamic(src, dst, op_types_to_quantize=["MatMul"], weight_type=QuantType.QInt8)


def session(path: Path):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def check_sherpa_model(model_path: Path, tokens_path: Path) -> None:
    """Raise DataError unless sherpa-onnx's offline CTC recognizer can load and run these files."""
    symbols = read_tokens(tokens_path)
    try:
        sess = session(model_path)
    except Exception as e:  # onnxruntime raises its own exception types for unreadable models
        raise DataError(f"{model_path}: onnxruntime cannot load it ({str(e).splitlines()[0]})") from None
    expected = (
        ("input", sess.get_inputs(), [("tensor(float)", 3), ("tensor(int64)", 1)]),
        ("output", sess.get_outputs(), [("tensor(float)", 3), ("tensor(int64)", 1)]),
    )
    for kind, args, want in expected:
        got = [(arg.type, len(arg.shape)) for arg in args]
        if got != want:
            raise DataError(
                f"{model_path}: sherpa-onnx needs {kind}s {describe(want)}, the model has {describe(got)}; "
                "export it with `mlkd export`"
            )
    features, tokens = sess.get_inputs()[0].shape[2], sess.get_outputs()[0].shape[2]  # str when symbolic
    if features != NUM_MEL_BINS:
        raise DataError(f"{model_path}: sherpa-onnx feeds {NUM_MEL_BINS}-dim fbank, the model reads {features}-dim features")
    if isinstance(tokens, int) and tokens != len(symbols):
        raise DataError(f"{model_path}: the model emits {tokens} tokens but {tokens_path} has {len(symbols)}")


def describe(args: list[tuple[str, int]]) -> str:
    return "(" + ", ".join(f"{kind} rank {rank}" for kind, rank in args) + ")"


def verification_batch(model: CtcModel) -> tuple[torch.Tensor, torch.Tensor]:
    """Fbank-like features (the model's CMVN statistics), padded as sherpa-onnx pads them."""
    normalizer = model.encoder.normalizer
    generator = torch.Generator().manual_seed(0)
    lengths = torch.tensor(VERIFY_FRAMES)
    noise = torch.randn(len(VERIFY_FRAMES), max(VERIFY_FRAMES), model.config.feature_dim, generator=generator)
    features = normalizer.mean + normalizer.std * noise
    features[torch.arange(features.size(1)) >= lengths[:, None]] = PAD_VALUE
    return features, lengths


def compare_onnx(model: CtcModel, path: Path) -> tuple[float, float]:
    """Max |log-prob diff| and best-token agreement over valid frames, onnxruntime vs PyTorch."""
    features, lengths = verification_batch(model)
    with torch.no_grad():
        out = model(features, lengths)
    log_probs, out_lens = session(path).run(None, {INPUT_NAMES[0]: features.numpy(), INPUT_NAMES[1]: lengths.numpy()})
    if out_lens.tolist() != out.lengths.tolist():
        raise MlkdError(
            f"{path}: the exported graph gives {out_lens.tolist()} output frames where PyTorch gives "
            f"{out.lengths.tolist()}; the export is wrong (please report this)"
        )
    diffs, same, total = [0.0], 0, 0
    for ours, theirs, n in zip(out.log_probs.numpy(), log_probs, out_lens.tolist()):
        diffs.append(float(np.abs(ours[:n] - theirs[:n]).max(initial=0.0)))
        same += int((ours[:n].argmax(-1) == theirs[:n].argmax(-1)).sum())
        total += n
    return max(diffs), same / max(total, 1)


def verify_onnx(model: CtcModel, path: Path, tolerance: float = TOLERANCE) -> float:
    """Max |log-prob diff| of ``path`` against ``model``; an error above ``tolerance``."""
    diff, _ = compare_onnx(model, path)
    if not diff <= tolerance:
        raise MlkdError(
            f"{path}: onnxruntime's log-probs differ from PyTorch's by up to {diff:.3g} (tolerance {tolerance}); "
            "the export is wrong (please report this with your torch and onnxruntime versions)"
        )
    return diff
