"""`mlkd export`: the flavour for sherpa-onnx's offline CTC recognizer (``from_zipformer_ctc``).

  inputs   x (N, T, 80) float32 raw fbank, x_lens (N,) int64       (by position)
  outputs  log_probs (N, T', V) float32, log_probs_len (N,) int64  (by position)

N and T are dynamic. CMVN is part of the model (its ``FeatureNormalizer`` buffers), padded
frames (sherpa pads batches with ln 1e-10) never reach a valid output frame, and inputs of
fewer than 7 frames are padded inside the graph so that they give 0 frames instead of an
onnxruntime error. A language-adaptive model conditions on its own predicted language
posteriors; its language list is stored as metadata. ``--int8`` adds a dynamically quantized
copy, checked like the model.
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from mlkd_cli.errors import MlkdError
from mlkd_cli.export.contract import check_offline_model, session
from mlkd_cli.export.routine import ExportResult, Flavour, export_model_dir, write_onnx
from mlkd_cli.models import CtcModel
from mlkd_cli.models.subsampling import MIN_FRAMES

logger = logging.getLogger("mlkd")

EXPORT_DIR = "export"
INPUT_NAMES = ("x", "x_lens")
OUTPUT_NAMES = ("log_probs", "log_probs_len")
PAD_VALUE = -23.025850929940457  # ln 1e-10: what sherpa-onnx pads a batch's features with
VERIFY_FRAMES = (300, 187)  # a padded batch of two utterances (3 s and 1.9 s)


class SherpaCtc(nn.Module):
    """The exported graph: (x, x_lens) -> (log_probs, log_probs_len)."""

    def __init__(self, model: CtcModel) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor, x_lens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = F.pad(x, (0, 0, 0, torch.sym_max(0, MIN_FRAMES - x.size(1))), value=PAD_VALUE)
        out = self.model(x, x_lens)
        return out.log_probs, out.lengths


@dataclasses.dataclass(frozen=True)
class Offline(Flavour):
    model: CtcModel
    int8: bool = False
    dir_name = EXPORT_DIR

    @property
    def settings(self) -> dict[str, object]:
        return {"int8": self.int8}

    def metadata(self) -> dict[str, str]:
        return {"model_type": "conformer_ctc",
                "comment": "input: raw 80-bin Kaldi fbank at 16 kHz (lhotse Fbank defaults); CMVN is inside the graph"}

    def write(self, path: Path, props: dict[str, str]) -> None:
        """N and T dynamic, traced on a batch of two."""
        example = (torch.zeros(2, VERIFY_FRAMES[0], self.model.config.feature_dim), torch.tensor(VERIFY_FRAMES))
        batch, frames = torch.export.Dim("N"), torch.export.Dim("T")
        write_onnx(SherpaCtc(self.model), example, path, props, INPUT_NAMES, OUTPUT_NAMES,
                   dynamic_shapes=({0: batch, 1: frames}, {0: batch}))

    def check(self, model_path: Path, tokens_path: Path) -> None:
        check_offline_model(model_path, tokens_path)

    def compare(self, path: Path) -> tuple[float, float]:
        return compare_onnx(self.model, path)

    def result(self, exported: ExportResult) -> ExportResult:
        return exported


def export_experiment(exp_dir: str | Path, out_dir: str | Path | None = None, int8: bool = False,
                      tokens: str | Path | None = None, force: bool = False,
                      argv: list[str] | None = None) -> ExportResult | None:
    """Export ``exp_dir``'s model (and with ``int8`` a quantized copy) and token table to ``out_dir``
    (default ``exp_dir/export``); None when that export is up to date."""
    return export_model_dir(exp_dir, lambda model: Offline(model, int8), out_dir, tokens, force, argv)


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
