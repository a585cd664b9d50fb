"""Model files that carry their own config, and strict state loading with readable errors.

A model file is ``{"config": <ModelConfig as a dict>, "model": <state_dict>}``: later stages
rebuild the model from the file alone.
"""

from __future__ import annotations

import pickle
import re
import zipfile
from pathlib import Path
from typing import Any, Mapping

import torch
from torch import nn

from mlkd_cli.config import from_dict, to_dict
from mlkd_cli.errors import ConfigError, DataError
from mlkd_cli.fsutil import atomic_path
from mlkd_cli.models.asr import CtcModel, build_model
from mlkd_cli.models.config import ModelConfig

SHOWN = 5  # keys named per kind of mismatch


def save_model(path: str | Path, model: nn.Module, config: ModelConfig) -> None:
    """Write ``model``'s weights and ``config`` to ``path`` atomically."""
    with atomic_path(path) as tmp:
        torch.save({"config": to_dict(config), "model": model.state_dict()}, tmp)


def load_checkpoint_file(path: str | Path) -> dict[str, Any]:
    """Read a checkpoint written with ``torch.save``; a missing, unreadable or unsafe file is a DataError.

    Only tensors and plain values are unpickled (``weights_only``): a file that names any
    other Python object is refused, since unpickling it could run arbitrary code.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: checkpoint not found")
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except (OSError, RuntimeError, pickle.UnpicklingError, EOFError, ValueError, zipfile.BadZipFile) as e:
        raise DataError(_load_failure(path, e)) from None
    if not isinstance(data, dict):
        raise DataError(f"{path}: not an mlkd checkpoint (holds a {type(data).__name__}, not a dict)")
    return data


def _load_failure(path: Path, error: Exception) -> str:
    """One line for a failed ``torch.load``: an unsafe file, or an unreadable one and why."""
    message = str(error)
    unsafe = re.search(r"GLOBAL (\S+)", message)
    if unsafe:
        return (f"{path}: refused: it names the Python object {unsafe.group(1)}, which unpickling would call; "
                "this mlkd writes only tensors and plain values (an earlier mlkd's training checkpoint: rerun with "
                "--force to start afresh; anything else: delete it)")
    detail = re.search(r"WeightsUnpickler error: \s*(\S.*)", message)
    lines = message.strip().splitlines()
    reason = detail.group(1) if detail else lines[0].split(". ")[0] if lines else type(error).__name__
    if path.stat().st_size == 0:
        reason = "the file is empty"
    return f"{path}: not a readable checkpoint (truncated or corrupt?): {reason}"


def _named(keys: list[str]) -> str:
    more = f", ... ({len(keys) - SHOWN} more)" if len(keys) > SHOWN else ""
    return ", ".join(keys[:SHOWN]) + more


def _shape(value: Any) -> tuple[int, ...] | str:
    return tuple(value.shape) if isinstance(value, torch.Tensor) else type(value).__name__


def load_model_state(model: nn.Module, state_dict: Mapping[str, torch.Tensor], where: str,
                     new_modules: tuple[str, ...] = ()) -> None:
    """Load ``state_dict`` into ``model`` exactly; any missing, unexpected or misshapen key is a ConfigError.

    Keys under ``new_modules`` (e.g. "lid_head") may be missing: those modules are new in
    ``model`` and keep their initialisation. Nothing else is ever skipped.
    """
    expected = model.state_dict()
    prefixes = tuple(f"{name}." for name in new_modules)
    missing = sorted(k for k in set(expected) - set(state_dict) if not k.startswith(prefixes))
    unexpected = sorted(set(state_dict) - set(expected))
    mismatched = sorted(
        f"{k} {_shape(state_dict[k])} vs {tuple(expected[k].shape)}"
        for k in set(expected) & set(state_dict)
        if _shape(state_dict[k]) != tuple(expected[k].shape)
    )
    problems = [
        f"{len(keys)} {kind} key(s): {_named(keys)}"
        for kind, keys in (("missing", missing), ("unexpected", unexpected), ("mismatched (checkpoint vs model)", mismatched))
        if keys
    ]
    if problems:
        raise ConfigError(f"{where}: the checkpoint does not fit the model config; " + "; ".join(problems))
    model.load_state_dict({**{k: v for k, v in expected.items() if k.startswith(prefixes)}, **state_dict}, strict=True)


def load_model(path: str | Path) -> tuple[CtcModel, ModelConfig]:
    """Rebuild the model a :func:`save_model` file describes and load its weights."""
    data = load_checkpoint_file(path)
    lacking = [k for k in ("config", "model") if k not in data]
    if lacking:
        raise DataError(f"{path}: not a model file (no {' or '.join(lacking)} entry); write one with save_model")
    config = from_dict(ModelConfig, data["config"], where=f"{path}: config")
    model = build_model(config)
    load_model_state(model, data["model"], where=str(path))
    return model, config
