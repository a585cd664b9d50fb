"""Resumable training checkpoints and checkpoint averaging.

``ckpt/step-<N>.pt`` holds everything needed to continue exactly: task weights, optimizer,
scheduler, sampler position, RNG states, step, and the validation metrics at that step.
"""

from __future__ import annotations

import random
import re
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mlkd_cli.errors import DataError
from mlkd_cli.fsutil import atomic_path
from mlkd_cli.models.checkpoint import load_checkpoint_file

STEP_RE = re.compile(r"step-(\d+)\.pt$")


def rng_state() -> dict[str, Any]:
    """The random states of python, numpy and torch as tensors and plain values (``weights_only``-loadable)."""
    _, keys, pos, has_gauss, cached_gaussian = np.random.get_state()
    state = {
        "python": random.getstate(),  # (version, tuple of 625 ints, None or float)
        "numpy": {"keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos), "has_gauss": int(has_gauss),
                  "cached_gaussian": float(cached_gaussian)},
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    numpy = state["numpy"]
    np.random.set_state(("MT19937", numpy["keys"].numpy().astype(np.uint32), numpy["pos"], numpy["has_gauss"],
                         numpy["cached_gaussian"]))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def checkpoint_path(ckpt_dir: Path, step: int) -> Path:
    return ckpt_dir / f"step-{step}.pt"


def list_checkpoints(ckpt_dir: Path) -> list[tuple[int, Path]]:
    """(step, path) of the training checkpoints in ``ckpt_dir``, oldest first."""
    found = [(int(m.group(1)), p) for p in ckpt_dir.glob("step-*.pt") if (m := STEP_RE.search(p.name))]
    return sorted(found)


def save_training_state(path: Path, state: dict[str, Any]) -> None:
    with atomic_path(path) as tmp:
        torch.save(state, tmp)


TRAINING_STATE_KEYS = ("task", "optimizer", "scheduler", "sampler", "rng", "step", "epoch")


def load_training_state(path: Path) -> dict[str, Any]:
    """Read a :func:`save_training_state` file; an unreadable, unsafe or incomplete one is a DataError."""
    state = load_checkpoint_file(path)
    lacking = [k for k in TRAINING_STATE_KEYS if k not in state]
    if lacking:
        raise DataError(f"{path}: not an mlkd training checkpoint (no {', '.join(lacking)} entry)")
    return state


def average_state_dicts(states: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """Element-wise mean of floating-point tensors; other tensors (counters) from the last state."""
    averaged = {}
    for key, last in states[-1].items():
        if last.is_floating_point():
            averaged[key] = sum(s[key].double() for s in states).div(len(states)).to(last.dtype)
        else:
            averaged[key] = last.clone()
    return averaged


def select_for_average(ckpts: list[tuple[int, Path]], metrics: dict[int, float], n: int, by: str) -> list[Path]:
    """The last ``n`` checkpoints, or the ``n`` with the lowest validation loss."""
    if by == "best":
        scored = [(metrics[step], step, path) for step, path in ckpts if step in metrics]
        return [path for _, _, path in sorted(scored)[:n]]
    return [path for _, path in ckpts[-n:]]


def prune_checkpoints(ckpts: list[tuple[int, Path]], metrics: dict[int, float], keep: int, by: str) -> None:
    """Delete checkpoints that are neither among the last ``keep`` nor (by "best") the best ``keep``."""
    kept = {path for _, path in ckpts[-keep:]} | set(select_for_average(ckpts, metrics, keep, by))
    for _, path in ckpts:
        if path not in kept:
            path.unlink(missing_ok=True)
