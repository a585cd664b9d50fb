"""`mlkd train-teacher --data DIR --lang L EXP_DIR`."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from mlkd_cli.commands.options import training_options


@click.command(context_settings={"show_default": True})
@click.option("--data", "data_dir", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Data dir made by `mlkd prepare`.")
@click.option("--lang", required=True, help="Language of the teacher (ISO 639 code as in the data).")
@click.option("--model-config", type=click.Path(dir_okay=False, path_type=Path),
              help="Model preset YAML, e.g. conf/model/demo.yaml (default: the demo-sized defaults).")
@training_options
@click.argument("exp_dir", type=click.Path(file_okay=False, path_type=Path))
def train_teacher(data_dir: Path, lang: str, model_config: Path | None, train_config: Path | None,
                  max_steps: int | None, precision: str | None, seed: int | None, noise_sets: tuple[Path, ...],
                  rir_sets: tuple[Path, ...], train_set: str, dev_set: str,
                  force: bool, exp_dir: Path) -> None:
    """Train a Conformer-CTC teacher for one language into EXP_DIR.

    An interrupted run in EXP_DIR resumes from its last checkpoint; a finished one with the
    same inputs and config is left alone ("up to date"). Runs under torchrun/srun with
    several processes train data-parallel.

    \b
    Example:
      mlkd train-teacher --data data --lang en --model-config conf/model/demo.yaml exp/teacher_en
    """
    from mlkd_cli.commands.options import load_train_config
    from mlkd_cli.config import load_yaml
    from mlkd_cli.experiment.config import TeacherConfig
    from mlkd_cli.models import ModelConfig
    from mlkd_cli.training_stages.teacher import TeacherStage

    model = load_yaml(ModelConfig, model_config) if model_config else ModelConfig()
    config = TeacherConfig(data=str(data_dir), lang=lang, model=model,
                           train=load_train_config(train_config, max_steps, precision, seed, noise_sets, rir_sets),
                           train_set=train_set, dev_set=dev_set)
    TeacherStage(config, exp_dir).run(force=force, argv=["mlkd", *sys.argv[1:]])
