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
    """The train config of ``path`` (or the defaults) with the command line's overrides.

    ``--noise-set``/``--rir-set`` go into the YAML before it is checked, so a config may leave its
    noise or rooms to the command line (``noise: {prob: 0.2}`` and ``--noise-set DIR``)."""
    from mlkd_cli.config import from_dict, read_yaml
    from mlkd_cli.experiment.config import TrainConfig

    data = read_yaml(path) if path else {}
    where = path or "the default train config"
    for option, sets, block, key, what in (("--noise-set", noise_sets, "noise", "sets", "mixes in no noise"),
                                           ("--rir-set", rir_sets, "reverb", "rirs", "simulates no rooms")):
        if not sets:
            continue
        augment = data.get("augment") if isinstance(data, dict) else None
        kind = augment.get(block) if isinstance(augment, dict) else None
        if not isinstance(kind, dict) or not kind.get("prob"):
            raise ConfigError(f"{option}: {where} {what} (augment.{block}.prob is 0), so the set would not be used; "
                              f"drop {option}, or give the config an augment.{block} block")
        data = {**data, "augment": {**augment, block: {**kind, key: [str(p) for p in sets]}}}
    train = from_dict(TrainConfig, data, where=str(where))
    given = {"max_steps": max_steps, "precision": precision, "seed": seed}
    return dataclasses.replace(train, **{k: v for k, v in given.items() if v is not None})
