"""`mlkd finetune --data DIR (--init EXP | --model-config YAML) EXP_DIR`."""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

import click

from mlkd_cli.commands.options import training_options


@click.command(context_settings={"show_default": True})
@click.option("--data", "data_dir", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Data dir made by `mlkd prepare` (all languages).")
@click.option("--init", "init_dir", type=click.Path(file_okay=False, path_type=Path),
              help="Start from this experiment's model (a distilled student); its architecture is kept.")
@click.option("--model-config", type=click.Path(dir_okay=False, path_type=Path),
              help="Architecture YAML when training from scratch (the no-KD baseline); with --init, the init "
                   "model's architecture plus a streaming block: a streaming model from a full-context one.")
@click.option("--lid-weight", type=float, default=1.0, help="λ of the language-ID cross-entropy.")
@click.option("--lid-layer", type=int, default=0,
              help="Layer whose output predicts the language and above which the model is conditioned on it (0: half-way).")
@training_options
@click.argument("exp_dir", type=click.Path(file_okay=False, path_type=Path))
def finetune(data_dir: Path, init_dir: Path | None, model_config: Path | None, lid_weight: float, lid_layer: int,
             train_config, max_steps, precision, seed, noise_sets, rir_sets, train_set: str, dev_set: str, force: bool,
             exp_dir: Path) -> None:
    """Fine-tune a multilingual model for text and language: L = CTC + λ·CE(language).

    With --init the distilled student is the starting point; with --model-config the same
    stage trains from scratch (give it as many updates as distillation plus fine-tuning to
    get the no-KD baseline). Both: a streaming model from a full-context one (the config is
    the init model's architecture with a `streaming:` block; its convolutions become causal,
    keeping their past and current taps).

    \b
    Examples:
      mlkd finetune --data data --init exp/student_kd --train-config conf/train/finetune_demo.yaml exp/student
      mlkd finetune --data data --model-config conf/model/student_demo.yaml \\
        --train-config conf/train/baseline_demo.yaml exp/baseline
      mlkd finetune --data data --init exp/student --model-config conf/model/student_demo_streaming.yaml \\
        --train-config conf/train/finetune_demo.yaml exp/student_streaming
    """
    from mlkd_cli.commands.options import load_train_config
    from mlkd_cli.config import load_yaml
    from mlkd_cli.errors import ConfigError
    from mlkd_cli.experiment.config import FinetuneConfig
    from mlkd_cli.models import ModelConfig
    from mlkd_cli.training_stages.finetune import FinetuneStage

    if not init_dir and not model_config:
        raise ConfigError("say what to train: pass --init EXP (fine-tune a distilled student) or --model-config YAML "
                          "(train from scratch, e.g. the no-KD baseline)")
    model = load_yaml(ModelConfig, model_config) if model_config else ModelConfig()
    if init_dir and model_config and model.streaming is None:
        raise ConfigError(f"--model-config {model_config} with --init: --init keeps its model's architecture, and a "
                          "model config there may only add a `streaming:` block; this one has none: drop "
                          "--model-config, or give --init alone")
    model = dataclasses.replace(model, lid_layer=lid_layer)
    config = FinetuneConfig(data=str(data_dir), init=str(init_dir) if init_dir else "", model=model,
                            lid_weight=lid_weight, train=load_train_config(train_config, max_steps, precision, seed, noise_sets, rir_sets),
                            train_set=train_set, dev_set=dev_set)
    FinetuneStage(config, exp_dir).run(force=force, argv=["mlkd", *sys.argv[1:]])
