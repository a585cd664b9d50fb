"""What every training stage does around its task: plan, experiment dir, logging, train, finalize."""

from __future__ import annotations

import dataclasses
import logging
import shutil
from pathlib import Path
from typing import Callable

from lhotse import CutSet
from lhotse.utils import fix_random_seed

from mlkd_cli.config import dump_yaml
from mlkd_cli.data.tokenizer import Tokenizer
from mlkd_cli.fsutil import atomic_write_text
from mlkd_cli.log import log_to_file
from mlkd_cli.stage import StageRecord, now, plan_stage, read_stage, write_stage
from mlkd_cli.train.batches import AsrDataset
from mlkd_cli.train.config import TrainConfig
from mlkd_cli.train.distributed import DistInfo, barrier, init_distributed, shutdown
from mlkd_cli.train.loop import Trainer
from mlkd_cli.train.task import Task

logger = logging.getLogger("mlkd")

# Outputs of a training run; a fresh start removes them (other files, e.g. caches, stay).
RUN_OUTPUTS = ("ckpt", "metrics.jsonl", "final.pt", "final_metrics.json", "train_curves.png")


@dataclasses.dataclass
class TrainingSetup:
    """What a stage hands the trainer: built after the seed is fixed, inside the stage's log."""

    task: Task
    train_cuts: CutSet
    dev_cuts: CutSet
    train_dataset: AsrDataset | None = None


def run_training_stage(exp_dir: Path, record: StageRecord, config, train: TrainConfig, tokenizer: Tokenizer,
                       setup: Callable[[DistInfo], TrainingSetup], force: bool = False) -> bool:
    """Train (or resume, or skip when up to date) in ``exp_dir``; False when skipped.

    ``config`` is the stage's whole config (written to ``config.yaml``), ``train`` its
    optimisation part; ``record`` describes inputs and config for ``stage.json``.
    """
    plan = plan_stage(exp_dir, record, force)
    if plan == "skip":
        logger.info("%s is up to date (inputs and config unchanged); nothing to do", exp_dir)
        return False
    dist = init_distributed()
    if dist.is_main and plan == "fresh":
        for stale in RUN_OUTPUTS:
            path = exp_dir / stale
            shutil.rmtree(path) if path.is_dir() else path.unlink(missing_ok=True)
        exp_dir.mkdir(parents=True, exist_ok=True)
        atomic_write_text(exp_dir / "config.yaml", dump_yaml(config))
        record.started = now()
        write_stage(exp_dir, record)
    barrier(dist)
    with log_to_file(exp_dir / "log" / f"train.{dist.rank}.log"):
        fix_random_seed(train.seed)
        built = setup(dist)
        trainer = Trainer(built.task, exp_dir, train, built.train_cuts, built.dev_cuts, tokenizer, dist,
                          built.train_dataset)
        if plan == "resume":
            record.started = read_stage(exp_dir).started
            trainer.resume()
        trainer.train()
        if dist.is_main:
            trainer.finalize()
            record.status, record.finished = "done", now()
            write_stage(exp_dir, record)
    barrier(dist)
    shutdown(dist)
    return True
