"""`mlkd finetune`: language-adaptive CTC fine-tuning with an utterance-level language-ID loss.

L = L_CTC + λ · L_CE(language). The model conditions its upper layers on the language
(the true one in training) and predicts it from its lower layers (see ``CtcModel``).
Initialised from a distilled student, or from scratch: the latter, run for as many updates
as distillation and fine-tuning together, is the no-KD baseline.
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F

from mlkd_cli.data.features import global_stats
from mlkd_cli.data.prepare import PreparedData, languages
from mlkd_cli.data.tokenizer import Tokenizer
from mlkd_cli.errors import ConfigError
from mlkd_cli.models import CtcModel, ModelConfig, build_model, ctc_loss, greedy_decode, num_parameters
from mlkd_cli.models.checkpoint import load_model_state
from mlkd_cli.train.batches import Batch
from mlkd_cli.train.config import TrainConfig
from mlkd_cli.train.distributed import DistInfo
from mlkd_cli.train.experiment import check_fits_data, data_inputs, file_input, load_asr_experiment, training_record
from mlkd_cli.train.runner import TrainingSetup, run_training_stage
from mlkd_cli.train.task import Metrics, char_errors, language_ids

logger = logging.getLogger("mlkd")

LANGUAGE_MODULES = ("lid_head", "language_embedding")


@dataclasses.dataclass(frozen=True)
class FinetuneConfig:
    data: str
    init: str = ""  # experiment dir of the model to start from (a distilled student); "" = from scratch
    model: ModelConfig = ModelConfig()  # the architecture when from scratch; with init, the init's
    lid_weight: float = 1.0  # λ
    train: TrainConfig = TrainConfig()
    train_set: str = "train"
    dev_set: str = "dev"

    def __post_init__(self) -> None:
        if self.lid_weight < 0:
            raise ConfigError(f"lid_weight must be >= 0, got {self.lid_weight}")


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


def finetune(config: FinetuneConfig, exp_dir: Path, force: bool = False, argv: list[str] | None = None) -> bool:
    """Fine-tune (or train from scratch) the language-adaptive model in ``exp_dir``; False when up to date."""
    data = PreparedData(Path(config.data))
    tokenizer = data.tokenizer()
    train_cuts = data.cuts(config.train_set).to_eager()
    dev_cuts = data.cuts(config.dev_set).to_eager()
    langs = tuple(languages(train_cuts))
    inputs = data_inputs(data, [config.train_set, config.dev_set])
    init_model = None
    if config.init:
        init_dir = Path(config.init)
        init_model, _ = load_asr_experiment(init_dir, data)
        if init_model.config.languages and init_model.config.languages != langs:
            raise ConfigError(f"{init_dir}: the model knows languages {', '.join(init_model.config.languages)}, "
                              f"the data {', '.join(langs)}; fine-tune a plain (distilled) model instead")
        arch = dataclasses.replace(init_model.config, languages=())
        inputs["init"] = file_input(init_dir / "final.pt")
        config = dataclasses.replace(config, init=str(init_dir.resolve()))
    else:
        arch = config.model.with_vocab(tokenizer.vocab_size)
    lid_layer = config.model.lid_layer or arch.lid_layer  # an adaptive init keeps its split unless told
    model_config = dataclasses.replace(arch, languages=langs, lid_layer=lid_layer)
    check_fits_data(model_config, data, Path(config.data))
    config = dataclasses.replace(config, data=str(data.root.resolve()), model=model_config)
    record = training_record("finetune", argv or [], inputs, config)

    def setup(dist: DistInfo) -> TrainingSetup:
        model = build_model(model_config)
        if init_model is not None:
            load_model_state(model, init_model.state_dict(), where=str(Path(config.init) / "final.pt"),
                             new_modules=LANGUAGE_MODULES)
        else:
            model.encoder.normalizer.set_stats(*global_stats(train_cuts))
        logger.info("%s: %d parameters, languages %s, language ID after layer %d of %d",
                    f"fine-tuning {config.init}" if config.init else "training from scratch", num_parameters(model),
                    " ".join(langs), model_config.conditioned_layer, model_config.num_layers)
        return TrainingSetup(FinetuneTask(model, tokenizer, config.lid_weight), train_cuts, dev_cuts)

    return run_training_stage(exp_dir, record, config, config.train, tokenizer, setup, force)
