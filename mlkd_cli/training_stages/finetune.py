"""`mlkd finetune`: language-adaptive CTC fine-tuning with an utterance-level language-ID loss.

L = L_CTC + λ · L_CE(language). The model conditions its upper layers on the language
(the true one in training) and predicts it from its lower layers (see ``CtcModel``).
Initialised from a distilled student, or from scratch: the latter, run for as many updates
as distillation and fine-tuning together, is the no-KD baseline. A full-context model given
with a model config that adds a streaming block becomes a streaming one (its convolutions
made causal by :func:`causal_kernels`), fine-tuned from what it learned.
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F

from mlkd_cli.data.features import global_stats
from mlkd_cli.data.tokenizer import Tokenizer
from mlkd_cli.errors import ConfigError
from mlkd_cli.experiment.config import FinetuneConfig
from mlkd_cli.experiment.model_dir import load_model_dir
from mlkd_cli.models import CtcModel, build_model, ctc_loss, greedy_decode, num_parameters
from mlkd_cli.models.checkpoint import load_model_state
from mlkd_cli.models.conformer import causal_kernels
from mlkd_cli.stage import file_input
from mlkd_cli.train.batches import Batch
from mlkd_cli.train.distributed import DistInfo
from mlkd_cli.train.runner import TrainingSetup, TrainingStage
from mlkd_cli.train.task import Metrics, char_errors, language_ids

logger = logging.getLogger("mlkd")

LANGUAGE_MODULES = ("lid_head", "language_embedding")
# What a model config given with --init must share with the init model (it may add streaming).
ARCHITECTURE = ("feature_dim", "d_model", "num_layers", "num_heads", "ff_mult", "conv_kernel", "subsampling",
                "subsampling_channels")


class FinetuneTask(nn.Module):
    """CTC + λ·language-ID cross-entropy; dev metrics decode as at test time (predicted language)."""

    def __init__(self, model: CtcModel, tokenizer: Tokenizer, lid_weight: float):
        super().__init__()
        self.asr_model, self.tokenizer, self.lid_weight = model, tokenizer, lid_weight

    def forward(self, batch: Batch) -> tuple[torch.Tensor, dict[str, float]]:
        lang_ids = language_ids(self.asr_model.config.languages, batch)
        out = self.asr_model(batch.features, batch.feature_lens, language=lang_ids)
        ctc = ctc_loss(out.log_probs, out.lengths, batch.targets)
        lid = F.cross_entropy(out.lid_logits, lang_ids)
        return ctc + self.lid_weight * lid, {"ctc": ctc.item(), "lid": lid.item()}

    @torch.no_grad()
    def evaluate(self, batch: Batch) -> Metrics:
        lang_ids = language_ids(self.asr_model.config.languages, batch)
        out = self.asr_model(batch.features, batch.feature_lens)  # conditioned on the predicted language
        n = len(lang_ids)
        ctc = ctc_loss(out.log_probs, out.lengths, batch.targets, reduction="sum").item()
        lid = F.cross_entropy(out.lid_logits, lang_ids, reduction="sum").item()
        return {
            "loss": (ctc + self.lid_weight * lid, n),
            "ctc": (ctc, n),
            "lid": (lid, n),
            "cer": char_errors(self.tokenizer, greedy_decode(out.log_probs, out.lengths), batch.texts),
            "lid_acc": ((out.lid_logits.argmax(-1) == lang_ids).sum().item(), n),
        }


class FinetuneStage(TrainingStage):
    command = "finetune"
    config: FinetuneConfig

    def resolve(self, config: FinetuneConfig) -> FinetuneConfig:
        langs = tuple(self.languages())
        self.init_model = None
        if config.init:
            init = load_model_dir(config.init)
            init.check_fits(self.data)
            self.init_model = init.model
            if init.languages and init.languages != langs:
                raise ConfigError(f"{init.path}: the model knows languages {', '.join(init.languages)}, "
                                  f"the data {', '.join(langs)}; fine-tune a plain (distilled) model instead")
            arch = dataclasses.replace(init.model.config, languages=())
            if config.model.streaming is not None:
                arch = _made_streaming(arch, config.model, init.path)
            self.inputs["init"] = file_input(init.weights)
            config = dataclasses.replace(config, init=str(init.path.resolve()))
        else:
            arch = config.model.with_vocab(self.tokenizer.vocab_size)
        lid_layer = config.model.lid_layer or arch.lid_layer  # an adaptive init keeps its split unless told
        return dataclasses.replace(config, model=dataclasses.replace(arch, languages=langs, lid_layer=lid_layer))

    def setup(self, dist: DistInfo) -> TrainingSetup:
        config = self.config
        model = build_model(config.model)
        if self.init_model is not None:
            state = self.init_model.state_dict()
            if config.model.streaming is not None and self.init_model.config.streaming is None:
                state = causal_kernels(state)
                logger.info("a streaming model (chunks of %s ms) from the full-context %s: the convolutions keep their "
                            "past and current taps", "/".join(map(str, config.model.streaming.chunk_ms)), config.init)
            load_model_state(model, state, where=str(Path(config.init) / "final.pt"), new_modules=LANGUAGE_MODULES)
        else:
            model.encoder.normalizer.set_stats(*global_stats(self.train_cuts))
        logger.info("%s: %d parameters, languages %s, language ID after layer %d of %d",
                    f"fine-tuning {config.init}" if config.init else "training from scratch", num_parameters(model),
                    " ".join(config.model.languages), config.model.conditioned_layer, config.model.num_layers)
        return TrainingSetup(FinetuneTask(model, self.tokenizer, config.lid_weight), self.train_cuts, self.dev_cuts)


def _made_streaming(arch, given, init_path: Path):
    """``arch`` (the init model's) with the streaming block of ``given`` (the --model-config); a
    ConfigError when ``given`` is another architecture or the init model streams already."""
    if arch.streaming is not None:
        raise ConfigError(f"{init_path}: the model streams already; fine-tune it without --model-config")
    differs = [f"{name} {getattr(given, name)} (the model's: {getattr(arch, name)})"
               for name in ARCHITECTURE if getattr(given, name) != getattr(arch, name)]
    if differs:
        raise ConfigError(f"--model-config with --init may only add a streaming block to {init_path}'s architecture; "
                          f"it differs in {', '.join(differs)}")
    return dataclasses.replace(arch, streaming=given.streaming)
