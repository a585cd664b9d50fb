"""The steps every `mlkd export` shares; a :class:`Flavour` (offline or streaming) supplies the graph,
its contract check and its reference, :func:`export_model_dir` does the rest: load the model dir,
read the token table, record the stage, write under a staging dir, check the files against
sherpa-onnx's contract, verify onnxruntime against PyTorch, with ``int8`` quantize a copy and
check it alike, and publish them as one set (a file of an earlier export, such as an int8 model,
does not stay beside new ones).
"""

from __future__ import annotations

import abc
import contextlib
import dataclasses
import logging
import time
import warnings
from pathlib import Path
from typing import Callable, Iterator

import torch
from torch import nn

from mlkd_cli.contracts import TOKENS_FILE, read_tokens, write_tokens
from mlkd_cli.errors import MlkdError
from mlkd_cli.experiment.model_dir import TOKENIZER_DIR, load_model_dir
from mlkd_cli.export.contract import INT8_FILE, MODEL_FILE
from mlkd_cli.fsutil import file_digest
from mlkd_cli.models import CtcModel
from mlkd_cli.stage import Stage, file_input, new_record
from mlkd_cli.version import __version__

logger = logging.getLogger("mlkd")

TOLERANCE = 1e-3  # largest accepted |log-prob| difference between onnxruntime and PyTorch


@dataclasses.dataclass(frozen=True)
class ExportResult:
    out_dir: Path
    seconds: float  # export time, verification excluded
    max_diff: float  # onnxruntime vs the PyTorch reference on the verification input
    int8_diff: float | None = None  # the same for the int8 model, when one was made
    int8_agreement: float | None = None  # its fraction of frames with the reference's best token

    @property
    def model(self) -> Path:
        return self.out_dir / MODEL_FILE

    @property
    def int8_model(self) -> Path | None:
        return self.out_dir / INT8_FILE if self.int8_diff is not None else None

    @property
    def tokens(self) -> Path:
        return self.out_dir / TOKENS_FILE


class Flavour(abc.ABC):
    """What one kind of export does its own way."""

    dir_name: str  # the default output dir, inside the model dir
    int8: bool  # also a dynamically quantized copy, INT8_FILE
    reference = "PyTorch"  # what onnxruntime's log-probs are verified against
    details = ""  # for the log line after the model path

    @property
    @abc.abstractmethod
    def settings(self) -> dict[str, object]:
        """The stage record's settings: a change redoes the export."""

    @abc.abstractmethod
    def metadata(self) -> dict[str, str]:
        """Model metadata beyond what every export carries."""

    @abc.abstractmethod
    def write(self, path: Path, props: dict[str, str]) -> None:
        """The graph as one self-contained ONNX file with ``props`` as metadata."""

    @abc.abstractmethod
    def check(self, model_path: Path, tokens_path: Path) -> None:
        """Raise unless sherpa-onnx can load and run these files."""

    @abc.abstractmethod
    def compare(self, path: Path) -> tuple[float, float]:
        """Max |log-prob diff| between onnxruntime on ``path`` and the reference, and the fraction of
        output frames where their best tokens agree."""

    @abc.abstractmethod
    def result(self, exported: ExportResult) -> ExportResult:
        """What the export returns, with the flavour's own details."""


def export_model_dir(exp_dir: str | Path, flavour_of: Callable[[CtcModel], Flavour], out_dir: str | Path | None = None,
                     tokens: str | Path | None = None, force: bool = False,
                     argv: list[str] | None = None) -> ExportResult | None:
    """Export ``exp_dir``'s model and token table as ``flavour_of(model)`` says to ``out_dir`` (default:
    the flavour's dir in ``exp_dir``); None when that export is up to date."""
    exp_dir = Path(exp_dir)
    loaded = load_model_dir(exp_dir)
    model = loaded.model.eval().requires_grad_(False)
    flavour = flavour_of(model)
    out_dir = Path(out_dir) if out_dir is not None else exp_dir / flavour.dir_name
    tokens_path = Path(tokens) if tokens is not None else loaded.path / TOKENIZER_DIR / TOKENS_FILE
    symbols = read_tokens(tokens_path, model.config.vocab_size)
    record = new_record("export", {"model": file_input(loaded.weights), "tokens": file_input(tokens_path)},
                        flavour.settings, argv)
    with Stage(out_dir, record, force=force).run() as staged:
        if staged is None:
            return None
        write_tokens(symbols, staged / TOKENS_FILE)
        path = staged / MODEL_FILE
        start = time.perf_counter()
        flavour.write(path, {**common_metadata(model, loaded.weights), **flavour.metadata()})
        seconds = time.perf_counter() - start
        flavour.check(path, staged / TOKENS_FILE)
        max_diff, _ = flavour.compare(path)
        if not max_diff <= TOLERANCE:
            raise MlkdError(
                f"{path}: onnxruntime's log-probs differ from {flavour.reference}'s by up to {max_diff:.3g} "
                f"(tolerance {TOLERANCE}); the export is wrong (please report this with your torch and onnxruntime versions)"
            )
        logger.info("exported %s%s in %.1f s; onnxruntime vs %s: max |diff| %.2e", out_dir / MODEL_FILE,
                    flavour.details, seconds, flavour.reference, max_diff)
        exported = ExportResult(out_dir, seconds, max_diff)
        if flavour.int8:
            quantize_int8(path, staged / INT8_FILE)
            flavour.check(staged / INT8_FILE, staged / TOKENS_FILE)
            int8_diff, int8_agreement = flavour.compare(staged / INT8_FILE)
            logger.info("int8 model: max |diff| %.3f, same best token on %.1f%% of frames", int8_diff,
                        100 * int8_agreement)
            exported = dataclasses.replace(exported, int8_diff=int8_diff, int8_agreement=int8_agreement)
        result = flavour.result(exported)
    return result


def quantize_int8(src: Path, dst: Path) -> None:
    """Dynamic int8 quantization of the matrix products (onnxruntime), the usual for sherpa-onnx."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    with quiet_onnx_tools():
        quantize_dynamic(src, dst, op_types_to_quantize=["MatMul"], weight_type=QuantType.QInt8)


def common_metadata(model: CtcModel, weights: Path) -> dict[str, str]:
    """The model metadata every export carries."""
    config = model.config
    return {
        "model_author": "mlkd",
        "mlkd_version": __version__,
        "final_pt_sha256": file_digest(weights),
        "vocab_size": str(config.vocab_size),
        "feature_dim": str(config.feature_dim),
        "subsampling_factor": str(config.subsampling),
        "languages": ",".join(config.languages),
    }


def write_onnx(graph: nn.Module, example: tuple[torch.Tensor, ...], path: Path, props: dict[str, str],
               input_names: tuple[str, ...], output_names: tuple[str, ...], dynamic_shapes: tuple | None = None) -> None:
    """Export ``graph`` to ``path`` as one ONNX file, the weights inside (sherpa-onnx reads no external data).

    torch.export's exporter (``dynamo=True``) keeps the length arithmetic symbolic.
    """
    import onnx

    with quiet_onnx_tools(), torch.no_grad():
        program = torch.onnx.export(graph.eval(), example, dynamo=True, input_names=list(input_names),
                                    output_names=list(output_names), dynamic_shapes=dynamic_shapes, verbose=False)
    proto = program.model_proto
    onnx.helper.set_model_props(proto, props)
    onnx.save(proto, str(path))


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
