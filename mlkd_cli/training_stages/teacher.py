"""`mlkd train-teacher`: one monolingual Conformer-CTC teacher on the prepared multilingual data."""

from __future__ import annotations

import dataclasses
import logging

from lhotse import CutSet

from mlkd_cli.data.features import global_stats
from mlkd_cli.data.prepare import languages
from mlkd_cli.errors import ConfigError, DataError
from mlkd_cli.experiment.config import TeacherConfig
from mlkd_cli.models import build_model, num_parameters
from mlkd_cli.train.distributed import DistInfo
from mlkd_cli.train.runner import TrainingSetup, TrainingStage
from mlkd_cli.train.task import CtcTask

logger = logging.getLogger("mlkd")


class TeacherStage(TrainingStage):
    command = "train-teacher"
    config: TeacherConfig

    def select(self, set_name: str) -> CutSet:
        """The utterances of the teacher's language; an error when there are none."""
        cuts = self.data.cuts(set_name).to_eager()
        lang = self.config.lang
        picked = cuts.filter(lambda c: c.supervisions[0].language == lang).to_eager()
        if len(picked) == 0:
            raise DataError(
                f"{self.data.root}: set {set_name!r} has no utterances in language {lang!r} "
                f"(its languages: {', '.join(languages(cuts)) or 'none'}); choose one of those with --lang"
            )
        return picked

    def languages(self) -> list[str]:
        return [self.config.lang]

    def resolve(self, config: TeacherConfig) -> TeacherConfig:
        vocab = self.tokenizer.vocab_size
        if config.model.vocab_size not in (0, vocab):
            raise ConfigError(f"model vocab_size {config.model.vocab_size} does not match the tokenizer's {vocab}; leave it 0")
        return dataclasses.replace(config, model=config.model.with_vocab(vocab))

    def setup(self, dist: DistInfo) -> TrainingSetup:
        model = build_model(self.config.model)
        model.encoder.normalizer.set_stats(*global_stats(self.train_cuts))
        logger.info("teacher %s: %d parameters, %d train / %d dev utterances (%.2f h train); world size %d on %s",
                    self.config.lang, num_parameters(model), len(self.train_cuts), len(self.dev_cuts),
                    sum(c.duration for c in self.train_cuts) / 3600, dist.world_size, dist.device)
        return TrainingSetup(CtcTask(model, self.tokenizer), self.train_cuts, self.dev_cuts)
