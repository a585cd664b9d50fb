"""`mlkd upgrade-model`: give a model dir of the older layout its own tokenizer and texts.

Format 1 (mlkd 0.1 before self-contained model dirs) kept the tokenizer and the training
text in the data dir that ``config.yaml`` names; this copies what inference needs from
there into the model dir and writes ``config.yaml`` in the current format, last.
"""

from __future__ import annotations

import dataclasses
import logging
import shutil
from pathlib import Path

import yaml

from mlkd_cli.config import from_dict
from mlkd_cli.data.prepare import PreparedData, languages
from mlkd_cli.errors import ConfigError, DataError
from mlkd_cli.experiment.config import STAGE_CONFIGS, TeacherConfig
from mlkd_cli.experiment.model_dir import (
    CONFIG_FILE,
    TEXT_DIR,
    TOKENIZER_DIR,
    check_fits_data,
    inference_spec,
    write_model_files,
)
from mlkd_cli.models.checkpoint import load_model
from mlkd_cli.stage import read_stage

logger = logging.getLogger("mlkd")


def upgrade_model_dir(exp_dir: Path, data_dir: Path | None = None) -> bool:
    """Upgrade ``exp_dir`` in place; False when it is in the current format already."""
    path = exp_dir / CONFIG_FILE
    if not path.is_file():
        raise DataError(f"{path}: not found; {exp_dir} is not an mlkd model directory")
    raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    if "format" in raw:
        logger.debug("%s is in the current format already; nothing to do", exp_dir)
        return False
    command = _command(exp_dir, raw)
    data = PreparedData(Path(data_dir or raw.get("data") or ""))
    config = from_dict(STAGE_CONFIGS[command], {**raw, "data": str(data.root.resolve())}, where=str(path))
    _, model_config = load_model(exp_dir / "final.pt")
    check_fits_data(model_config, data, path)
    train_cuts = data.cuts(config.train_set)
    langs = [config.lang] if isinstance(config, TeacherConfig) else languages(train_cuts)
    config = dataclasses.replace(config, inference=inference_spec(data, langs))
    staging = exp_dir / ".upgrade"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir()
    write_model_files(staging, command, config, data, train_cuts)
    for name in (TOKENIZER_DIR, TEXT_DIR):
        shutil.rmtree(exp_dir / name, ignore_errors=True)
        (staging / name).rename(exp_dir / name)
    (staging / CONFIG_FILE).replace(path)  # last: the format marks the upgrade complete
    staging.rmdir()
    logger.info("%s: upgraded to a self-contained model dir (tokenizer and texts from %s)", exp_dir, data.root)
    return True


def _command(exp_dir: Path, raw: dict) -> str:
    record = read_stage(exp_dir)
    if record is not None and record.command in STAGE_CONFIGS:
        return record.command
    guess = "train-teacher" if "lang" in raw else "distill" if "teachers" in raw else "finetune" if "init" in raw else None
    if guess is None:
        raise ConfigError(f"{exp_dir}: cannot tell which command made it (no stage.json); it is not an mlkd model dir")
    return guess
