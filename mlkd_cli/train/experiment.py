"""ASR experiment directories: ``config.yaml`` + ``final.pt`` rebuild a model without any flag.

The contract (also for teachers trained elsewhere and dropped in by hand):
  config.yaml   an experiment config with ``lang`` (teachers), ``data`` and ``model`` keys
                (``model`` = the ModelConfig fields, ``vocab_size`` set)
  final.pt      ``{"config": <same model config>, "model": <state_dict>}``
The model must read the data's features (``feature_dim``) and emit its tokenizer's tokens
(``vocab_size``); anything else is an error that says what does not fit.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import yaml

from mlkd_cli.config import from_dict, to_dict
from mlkd_cli.data.prepare import PreparedData
from mlkd_cli.errors import ConfigError, DataError
from mlkd_cli.models import CtcModel, ModelConfig
from mlkd_cli.models.checkpoint import load_model
from mlkd_cli.stage import StageRecord, software_versions
from mlkd_cli.fsutil import file_digest


def read_config_yaml(exp_dir: Path) -> dict:
    path = exp_dir / "config.yaml"
    if not path.is_file():
        raise DataError(f"{path}: not found; {exp_dir} is not an mlkd experiment (train one with `mlkd train-teacher`)")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML ({e})") from None
    if not isinstance(data, dict) or "model" not in data:
        raise ConfigError(f"{path}: no `model:` section; an experiment config needs one (see README, experiment directories)")
    return data


def load_asr_experiment(exp_dir: Path, data: PreparedData | None = None) -> tuple[CtcModel, dict]:
    """Rebuild the model of ``exp_dir`` from its files and check that it fits ``data``."""
    exp_dir = Path(exp_dir)
    raw = read_config_yaml(exp_dir)
    config = from_dict(ModelConfig, raw["model"], where=f"{exp_dir / 'config.yaml'}:model")
    model, file_config = load_model(exp_dir / "final.pt")
    if file_config != config:
        diff = [f.name for f in dataclasses.fields(ModelConfig) if getattr(config, f.name) != getattr(file_config, f.name)]
        raise ConfigError(f"{exp_dir / 'final.pt'}: its model config differs from config.yaml in {', '.join(diff)}")
    if data is not None:
        check_fits_data(config, data, exp_dir / "config.yaml")
    return model, raw


def check_fits_data(config: ModelConfig, data: PreparedData, where: Path) -> None:
    tokenizer = data.tokenizer()
    if config.vocab_size != tokenizer.vocab_size:
        raise ConfigError(
            f"{where}: the model emits {config.vocab_size} tokens but {data.lang_dir} has {tokenizer.vocab_size}; "
            "the model was trained with another tokenizer"
        )
    num_features = data.num_features()
    if config.feature_dim != num_features:
        raise ConfigError(
            f"{where}: the model reads {config.feature_dim}-dim features but {data.root} has {num_features}-dim ones"
        )


def file_input(path: Path, digest: str | None = None) -> dict[str, str]:
    """A stage.json input: a file by absolute path and content digest."""
    return {"path": str(path.resolve()), "digest": digest or file_digest(path)}


def data_inputs(data: PreparedData, sets: list[str]) -> dict[str, dict[str, str]]:
    """stage.json inputs for a training stage: the set manifests and the tokenizer, by content."""
    inputs = {f"data:{name}": file_input(data.root / "manifests" / f"{name}_cuts.jsonl.gz") for name in sets}
    inputs["tokenizer"] = file_input(data.lang_dir / "tokenizer.model")
    return inputs


def training_record(command: str, argv: list[str], inputs: dict, config) -> StageRecord:
    return StageRecord(command=command, argv=argv, inputs=inputs, config=to_dict(config), versions=software_versions())
