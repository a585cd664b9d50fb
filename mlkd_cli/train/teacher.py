"""`mlkd train-teacher`: one monolingual Conformer-CTC teacher on the prepared multilingual data."""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

from lhotse import CutSet

from mlkd_cli.data.features import global_stats
from mlkd_cli.data.prepare import PreparedData, languages
from mlkd_cli.errors import ConfigError, DataError
from mlkd_cli.models import ModelConfig, build_model, num_parameters
from mlkd_cli.train.config import TrainConfig
from mlkd_cli.train.distributed import DistInfo
from mlkd_cli.train.experiment import check_fits_data, data_inputs, training_record
from mlkd_cli.train.runner import TrainingSetup, run_training_stage
from mlkd_cli.train.task import CtcTask

logger = logging.getLogger("mlkd")


@dataclasses.dataclass(frozen=True)
class TeacherConfig:
    data: str
    lang: str
    model: ModelConfig = ModelConfig()
    train: TrainConfig = TrainConfig()
    train_set: str = "train"
    dev_set: str = "dev"


def language_cuts(data: PreparedData, set_name: str, lang: str) -> CutSet:
    """The utterances of ``lang`` in ``set_name``; an error when there are none."""
    cuts = data.cuts(set_name).to_eager()
    picked = cuts.filter(lambda c: c.supervisions[0].language == lang).to_eager()
    if len(picked) == 0:
        raise DataError(
            f"{data.root}: set {set_name!r} has no utterances in language {lang!r} "
            f"(its languages: {', '.join(languages(cuts)) or 'none'}); choose one of those with --lang"
        )
    return picked


def train_teacher(config: TeacherConfig, exp_dir: Path, force: bool = False, argv: list[str] | None = None) -> bool:
    """Train (or resume, or skip when up to date) the teacher in ``exp_dir``; False when skipped."""
    data = PreparedData(Path(config.data))
    tokenizer = data.tokenizer()
    if config.model.vocab_size not in (0, tokenizer.vocab_size):
        raise ConfigError(f"model vocab_size {config.model.vocab_size} does not match the tokenizer's {tokenizer.vocab_size}; leave it 0")
    config = dataclasses.replace(config, data=str(data.root.resolve()), model=config.model.with_vocab(tokenizer.vocab_size))
    check_fits_data(config.model, data, Path(config.data))
    train_cuts = language_cuts(data, config.train_set, config.lang)
    dev_cuts = language_cuts(data, config.dev_set, config.lang)
    record = training_record("train-teacher", argv or [], data_inputs(data, [config.train_set, config.dev_set]), config)

    def setup(dist: DistInfo) -> TrainingSetup:
        model = build_model(config.model)
        model.encoder.normalizer.set_stats(*global_stats(train_cuts))
        logger.info("teacher %s: %d parameters, %d train / %d dev utterances (%.2f h train); world size %d on %s",
                    config.lang, num_parameters(model), len(train_cuts), len(dev_cuts),
                    sum(c.duration for c in train_cuts) / 3600, dist.world_size, dist.device)
        return TrainingSetup(CtcTask(model, tokenizer), train_cuts, dev_cuts)

    return run_training_stage(exp_dir, record, config, config.train, tokenizer, setup, force)
