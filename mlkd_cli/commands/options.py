"""Options every training command shares."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import click

from mlkd_cli.errors import ConfigError


def training_options(command):
    """--train-config, --max-steps, --precision, --seed, --noise-set, --rir-set, --train-set, --dev-set, --force."""
    for option in reversed([
        click.option("--train-config", type=click.Path(dir_okay=False, path_type=Path),
                     help="Training YAML, e.g. conf/train/teacher_demo.yaml (default: built-in defaults)."),
        click.option("--max-steps", type=int, help="Override the number of updates."),
        click.option("--precision", type=click.Choice(["fp32", "bf16", "fp16"]), help="Override the precision."),
        click.option("--seed", type=int, help="Override the seed (initialisation, batches, augmentation)."),
        click.option("--noise-set", "noise_sets", multiple=True, type=click.Path(path_type=Path),
                     help="Noise for augmentation (Kaldi dir or lhotse manifest; repeatable): replaces the "
                          "train config's augment.noise.sets."),
        click.option("--rir-set", "rir_sets", multiple=True, type=click.Path(path_type=Path),
                     help="Room impulse responses for augmentation (repeatable): replaces augment.reverb.rirs."),
        click.option("--train-set", default="train"),
        click.option("--dev-set", default="dev"),
        click.option("-f", "--force", is_flag=True, help="Start afresh over a run of other inputs or config."),
    ]):
        command = option(command)
    return command


def load_train_config(path: Path | None, max_steps: int | None, precision: str | None, seed: int | None = None,
                      noise_sets: tuple[Path, ...] = (), rir_sets: tuple[Path, ...] = ()):
    from mlkd_cli.config import load_yaml
    from mlkd_cli.experiment.config import TrainConfig

    train = load_yaml(TrainConfig, path) if path else TrainConfig()
    given = {"max_steps": max_steps, "precision": precision, "seed": seed}
    overrides = {k: v for k, v in given.items() if v is not None}
    augment = train.augment
    where = path or "the default train config"
    if noise_sets and augment.noise.prob == 0:
        raise ConfigError(f"--noise-set: {where} mixes in no noise (augment.noise.prob is 0), so the set would not "
                          "be used; drop --noise-set, or give the config an augment.noise block")
    if rir_sets and augment.reverb.prob == 0:
        raise ConfigError(f"--rir-set: {where} simulates no rooms (augment.reverb.prob is 0), so the set would not "
                          "be used; drop --rir-set, or give the config an augment.reverb block")
    if noise_sets:
        augment = dataclasses.replace(augment, noise=dataclasses.replace(augment.noise, sets=tuple(map(str, noise_sets))))
    if rir_sets:
        augment = dataclasses.replace(augment, reverb=dataclasses.replace(augment.reverb, rirs=tuple(map(str, rir_sets))))
    return dataclasses.replace(train, augment=augment, **overrides)
