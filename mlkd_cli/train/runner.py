"""What every training stage does around its task: the base that the stages of
:mod:`mlkd_cli.training_stages` (teacher, distill, finetune) extend.

A stage resolves its config against the prepared data, then :meth:`TrainingStage.run` plans
it with the stage protocol (skip when up to date, resume an interrupted run, refuse other
inputs without ``--force``), trains in the experiment dir under its lock, and publishes the
self-contained model directory (final.pt, config.yaml, tokenizer/, text/) as one set.
"""

from __future__ import annotations

import abc
import contextlib
import dataclasses
import logging
import os
import shutil
from pathlib import Path
from typing import ClassVar

from lhotse import CutSet
from lhotse.utils import fix_random_seed

from mlkd_cli.config import record_dict
from mlkd_cli.data.audio_sets import listing
from mlkd_cli.data.manifests import is_transcribed
from mlkd_cli.data.prepare import PreparedData, languages
from mlkd_cli.errors import DataError
from mlkd_cli.experiment.config import StageConfig, TrainConfig
from mlkd_cli.experiment.model_dir import check_fits_data, inference_spec, write_model_files
from mlkd_cli.experiment.upgrade import upgrade_model_dir
from mlkd_cli.log import log_to_file
from mlkd_cli.stage import Stage, file_input, new_record
from mlkd_cli.train.augment import Augmenter
from mlkd_cli.train.batches import AsrDataset
from mlkd_cli.train.distributed import DistInfo, barrier, init_distributed, on_main, shutdown
from mlkd_cli.train.loop import Trainer
from mlkd_cli.train.task import Task

logger = logging.getLogger("mlkd")

# The state of a run in progress, kept in the experiment dir for resuming; a fresh start removes it.
WORK_STATE = ("ckpt", "metrics.jsonl", "train_curves.png")
MAX_RENDER_JOBS = 8  # processes that render augmented copies before training starts


@dataclasses.dataclass
class TrainingSetup:
    """What a stage hands the trainer: built after the seed is fixed, inside the stage's log."""

    task: Task
    train_cuts: CutSet
    dev_cuts: CutSet
    train_dataset: AsrDataset | None = None
    dev_dataset: AsrDataset | None = None
    unlabeled_share: float | None = None  # of untranscribed cuts among train_cuts (None: as the data has it)


class TrainingStage(abc.ABC):
    """One training command: ``resolve`` the config, ``setup`` the task; ``run`` does the rest."""

    command: ClassVar[str]

    def __init__(self, config: StageConfig, exp_dir: Path):
        self.exp_dir = Path(exp_dir)
        self.augmenter: Augmenter | None = None  # built in run(), after the seed is fixed
        self.data = PreparedData(Path(config.data))
        self.tokenizer = self.data.tokenizer()
        self.inputs = {f"data:{name}": file_input(self.data.root / "manifests" / f"{name}_cuts.jsonl.gz")
                       for name in (config.train_set, config.dev_set)}
        self.inputs["tokenizer"] = file_input(self.data.lang_dir / "tokenizer.model")
        self.config = dataclasses.replace(config, data=str(self.data.root.resolve()),
                                          train=self.resolve_augment(config.train))
        self.train_cuts = self.select(config.train_set)
        self.dev_cuts = self.select(config.dev_set)
        self.config = self.resolve(self.config)
        self.config = dataclasses.replace(self.config, inference=inference_spec(self.data, self.languages()))
        check_fits_data(self.config.model, self.data, self.data.root)

    def resolve_augment(self, train: TrainConfig) -> TrainConfig:
        """The noise and RIR sets by absolute path, each an input of the stage."""
        augment = train.augment
        noise = augment.noise.sets if augment.noise.prob else ()
        rirs = augment.reverb.rirs if augment.reverb.prob else ()
        for what, paths in (("noise", noise), ("RIR", rirs)):
            for path in paths:
                self.inputs[f"{what.lower()}:{Path(path).absolute()}"] = file_input(listing(path, what))
        absolute = lambda paths: tuple(str(Path(p).absolute()) for p in paths)  # noqa: E731
        augment = dataclasses.replace(augment, noise=dataclasses.replace(augment.noise, sets=absolute(noise)),
                                      reverb=dataclasses.replace(augment.reverb, rirs=absolute(rirs)))
        return dataclasses.replace(train, augment=augment)

    def select(self, set_name: str) -> CutSet:
        """The utterances of ``set_name`` this stage trains or validates on (transcribed ones)."""
        cuts = self.data.cuts(set_name).to_eager()
        if not is_transcribed(cuts):
            raise DataError(
                f"set {set_name!r} of {self.data.root} is untranscribed: `mlkd {self.command}` trains and validates "
                "on transcripts; name a transcribed set (--train-set/--dev-set), and give untranscribed audio to "
                f"`mlkd distill --unlabeled-set {set_name}`"
            )
        return cuts

    def languages(self) -> list[str]:
        """The languages the model is trained on."""
        return languages(self.train_cuts)

    def augmented_cuts(self) -> CutSet:
        """The cuts that training augments (and renders augmented copies of)."""
        return self.train_cuts

    def build_augmenter(self) -> Augmenter | None:
        """The augmenter of the config; its copies go to (or come from) the prepared data dir."""
        jobs = min(MAX_RENDER_JOBS, len(os.sched_getaffinity(0)))
        train = self.config.train
        return Augmenter.build(train.augment, self.augmented_cuts(), self.data.root, jobs, train.max_steps, train.seed)

    @abc.abstractmethod
    def resolve(self, config: StageConfig) -> StageConfig:
        """The config as it will be recorded (vocabulary, languages, absolute paths filled in);
        adds the stage's own inputs to ``self.inputs``."""

    @abc.abstractmethod
    def setup(self, dist: DistInfo) -> TrainingSetup:
        """Build the task (model, losses) and the data it trains on."""

    def run(self, force: bool = False, argv: list[str] | None = None) -> bool:
        """Train (or resume, or skip when up to date) in the experiment dir; False when skipped."""
        # `inference` is derived from the data, which the inputs hold by digest
        recorded = {k: v for k, v in record_dict(self.config).items() if k != "inference"}
        stage = Stage(self.exp_dir, new_record(self.command, self.inputs, recorded, argv), force=force, resumable=True)
        dist = init_distributed()
        with stage.locked() if dist.is_main else contextlib.nullcontext():
            plan = stage.plan()
            if plan == "skip":
                logger.info("%s is up to date (inputs and config unchanged); nothing to do", self.exp_dir)
                if dist.is_main:
                    upgrade_model_dir(self.exp_dir, self.data.root)  # a model dir of an earlier mlkd, if it is one
                shutdown(dist)
                return False
            if dist.is_main:
                if plan == "fresh":
                    for name in WORK_STATE:
                        path = self.exp_dir / name
                        shutil.rmtree(path) if path.is_dir() else path.unlink(missing_ok=True)
                stage.start_in_place(plan)
            barrier(dist)
            with log_to_file(self.exp_dir / "log" / f"train.{dist.rank}.log"):
                fix_random_seed(self.config.train.seed)
                self.augmenter = on_main(dist, self.build_augmenter)
                built = self.setup(dist)
                trainer = Trainer(built.task, self.exp_dir, self.config.train, built.train_cuts, built.dev_cuts,
                                  self.tokenizer, dist, built.train_dataset, built.dev_dataset, built.unlabeled_share,
                                  self.augmenter)
                if plan == "resume":
                    trainer.resume()
                trainer.train()
                if dist.is_main:
                    with stage.staged() as out:
                        trainer.finalize(out)
                        write_model_files(out, self.command, self.config, self.data, self.train_cuts)
            barrier(dist)
        shutdown(dist)
        return True
