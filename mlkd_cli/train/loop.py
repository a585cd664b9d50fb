"""The training loop: AdamW with warm-up, clipping, mixed precision, validation, checkpoints, resume."""

from __future__ import annotations

import functools
import json
import logging
import math
import time
from pathlib import Path

import torch
from lhotse import CutSet
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from torch.nn.parallel import DistributedDataParallel

from mlkd_cli.data.tokenizer import Tokenizer
from mlkd_cli.errors import DataError
from mlkd_cli.experiment.config import TrainConfig
from mlkd_cli.fsutil import atomic_write_text
from mlkd_cli.log import console
from mlkd_cli.models.checkpoint import load_model_state, save_model
from mlkd_cli.train.augment import Augmenter
from mlkd_cli.train.batches import (
    AsrDataset,
    NumberedBatches,
    consumed_sampler_state,
    make_loader,
    make_sampler,
    speed_perturbed,
)
from mlkd_cli.train.checkpoint import (
    average_state_dicts,
    checkpoint_path,
    list_checkpoints,
    load_training_state,
    prune_checkpoints,
    rng_state,
    save_training_state,
    select_for_average,
    set_rng_state,
)
from mlkd_cli.train.curves import append_metrics, plot_curves, read_metrics, truncate_metrics
from mlkd_cli.train.distributed import DistInfo, barrier
from mlkd_cli.train.sampling import language_mix
from mlkd_cli.train.task import Metrics, Task

logger = logging.getLogger("mlkd")
USELESS_CER = 0.95  # a final dev CER at or above this is warned about: the model emits (nearly) only blanks


def lr_lambda(config: TrainConfig):
    """Linear warm-up to the peak, then cosine decay to ``final_lr_ratio`` at ``max_steps``."""

    def factor(step: int) -> float:
        if step < config.warmup_steps:
            return (step + 1) / config.warmup_steps
        progress = (step - config.warmup_steps) / max(1, config.max_steps - config.warmup_steps)
        cosine = 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))
        return config.final_lr_ratio + (1 - config.final_lr_ratio) * cosine

    return factor


def _losses(validations: dict[int, dict[str, float]]) -> dict[int, float]:
    return {step: metrics["loss"] for step, metrics in validations.items()}


def autocast(precision: str, device: torch.device):
    """Mixed-precision context for ``precision`` (fp32: none, also inside another autocast); bf16 on a
    CPU without native bf16 runs in fp32."""
    if precision == "fp32" or (precision == "bf16" and device.type == "cpu" and not cpu_has_bf16()):
        return torch.autocast(device.type, enabled=False)
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    return torch.autocast(device.type, dtype=dtype)


@functools.cache
def cpu_has_bf16() -> bool:
    """Whether this CPU computes bf16 natively (AVX512-BF16 or AMX). Without it oneDNN emulates
    bf16 and a matrix product is about 50x slower than in fp32 (measured on an AVX2-only CPU),
    so the presets' `precision: bf16` falls back to fp32 there, with one warning."""
    native = torch.ops.mkldnn._is_mkldnn_bf16_supported()
    if not native:
        logger.warning("precision bf16: this CPU (%s) has no native bf16, which torch would emulate far more "
                       "slowly than fp32; computing in fp32", torch.backends.cpu.get_cpu_capability())
    return native


def summarize(totals: Metrics) -> dict[str, float]:
    return {name: num / max(den, 1e-9) for name, (num, den) in totals.items()}


class Trainer:
    """Trains ``task`` for ``config.max_steps`` updates in ``exp_dir``, resuming where a run stopped."""

    def __init__(self, task: Task, exp_dir: Path, config: TrainConfig, train_cuts: CutSet, dev_cuts: CutSet,
                 tokenizer: Tokenizer, dist: DistInfo = DistInfo(), train_dataset: AsrDataset | None = None,
                 dev_dataset: AsrDataset | None = None, unlabeled_share: float | None = None,
                 augment: Augmenter | None = None):
        """``train_dataset`` and ``dev_dataset`` replace the default ones (plain batches; in training
        SpecAugment and ``augment``); ``unlabeled_share`` is the share of untranscribed training cuts
        (see ``sampling.language_mix``)."""
        self.task, self.exp_dir, self.config, self.dist = task, exp_dir, config, dist
        self.device = dist.device
        self.task.to(self.device)
        self.ckpt_dir = exp_dir / "ckpt"
        self.metrics_path = exp_dir / "metrics.jsonl"
        if config.speed_perturb:
            train_cuts = speed_perturbed(train_cuts)
        train_cuts = language_mix(train_cuts, config.language_sampling, config.seed, unlabeled_share)
        self.sampler = make_sampler(train_cuts, config.max_duration, shuffle=True, seed=config.seed,
                                    rank=dist.rank, world_size=dist.world_size)
        if train_dataset is None:
            train_dataset = AsrDataset(tokenizer, config.spec_augment, augment=augment)
        self.numbered = NumberedBatches(self.sampler)
        self.train_loader = make_loader(train_dataset, self.numbered, config.num_workers)
        self.dev_loader = make_loader(dev_dataset or AsrDataset(tokenizer),
                                      make_sampler(dev_cuts, config.max_duration * 2, shuffle=False, seed=0))
        trainable = [p for p in task.parameters() if p.requires_grad]
        self.optimizer = torch.optim.AdamW(trainable, lr=config.lr, betas=(0.9, 0.98), weight_decay=config.weight_decay,
                                           fused=True if self.device.type in ("cpu", "cuda") else None)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, lr_lambda(config))
        self.scaler = torch.amp.GradScaler(enabled=config.precision == "fp16" and self.device.type == "cuda")
        self.model = DistributedDataParallel(task) if dist.world_size > 1 else task  # what forward() runs
        self.step = 0
        self.epoch = 0
        self.epoch_batches = 0  # batches of this epoch that training consumed

    # -- state ------------------------------------------------------------------------------
    def state_dict(self, valid: dict[str, float]) -> dict:
        return {
            "task": self.task.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "sampler": consumed_sampler_state(self.sampler, self.epoch_batches),
            "rng": rng_state(),
            "step": self.step,
            "epoch": self.epoch,
            "valid": valid,
        }

    def resume(self) -> bool:
        """Continue from the newest readable checkpoint in ``ckpt/``; False when there is none.

        An unreadable newest checkpoint (a truncated copy, a full disk) is skipped with a
        warning for the one before it; when none is readable the run stops.
        """
        ckpts = list_checkpoints(self.ckpt_dir)
        if not ckpts:
            if self.dist.is_main:
                truncate_metrics(self.metrics_path, 0)  # steps logged before the first checkpoint are redone
            return False
        path, state = self._newest_readable(ckpts)
        load_model_state(self.task, state["task"], str(path))
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.sampler.load_state_dict(state["sampler"])
        set_rng_state(state["rng"])
        self.step, self.epoch = state["step"], state["epoch"]
        self.epoch_batches = self.sampler.diagnostics.current_epoch_stats.total_batches  # re-drawn to resume
        if self.dist.is_main:
            truncate_metrics(self.metrics_path, self.step)
        logger.info("resumed from %s (step %d, epoch %d)", path, self.step, self.epoch)
        return True

    def _newest_readable(self, ckpts: list[tuple[int, Path]]) -> tuple[Path, dict]:
        failures = []
        for _, path in reversed(ckpts):
            try:
                return path, load_training_state(path)
            except DataError as e:
                failures.append(str(e))
                logger.warning("%s; trying the checkpoint before it", e)
        raise DataError(f"{failures[0]}; no checkpoint in {self.ckpt_dir} is readable: delete the unreadable ones "
                        "to retrain from step 0, or rerun with --force to start this stage afresh")

    # -- loop ---------------------------------------------------------------------------------
    def train(self) -> None:
        cfg = self.config
        self.task.train()
        window: dict[str, float] = {}
        window_audio, window_start, window_steps = 0.0, time.perf_counter(), 0
        with self._progress() as progress:
            bar = progress.add_task("train", total=cfg.max_steps, completed=self.step, info="")
            while self.step < cfg.max_steps:
                self.sampler.set_epoch(self.epoch)
                self.numbered.next_step = self.step
                for batch in self.train_loader:
                    loss, terms = self._update(batch.to(self.device))
                    self.step += 1
                    self.epoch_batches += 1
                    for name, value in {"loss": loss, **terms}.items():
                        window[name] = window.get(name, 0.0) + value
                    window_audio += batch.duration
                    window_steps += 1
                    if self.step % cfg.log_interval == 0 or self.step == cfg.max_steps:
                        elapsed = time.perf_counter() - window_start
                        record = {"kind": "train", "step": self.step, "epoch": self.epoch,
                                  **{name: total / window_steps for name, total in window.items()},
                                  "lr": self.scheduler.get_last_lr()[0],
                                  "audio_per_s": window_audio * self.dist.world_size / elapsed}
                        self._log(record)
                        progress.update(bar, info=f"loss {record['loss']:.3f}  {record['audio_per_s']:.0f} s audio/s")
                        window, window_audio, window_start, window_steps = {}, 0.0, time.perf_counter(), 0
                    progress.update(bar, completed=self.step)
                    if self.step % cfg.valid_interval == 0 or self.step == cfg.max_steps:
                        self._validate_and_checkpoint()
                        window_start = time.perf_counter()
                    if self.step >= cfg.max_steps:
                        break
                else:
                    self.epoch, self.epoch_batches = self.epoch + 1, 0

    def _update(self, batch) -> tuple[float, dict[str, float]]:
        with autocast(self.config.precision, self.device):
            loss, terms = self.model(batch)
        self.optimizer.zero_grad(set_to_none=True)
        if not torch.isfinite(loss):
            logger.warning("step %d: non-finite loss %s, update skipped", self.step + 1, loss.item())
            self.scheduler.step()
            return float("nan"), terms
        self.scaler.scale(loss).backward()
        self.scaler.unscale_(self.optimizer)
        torch.nn.utils.clip_grad_norm_(self.task.parameters(), self.config.grad_clip)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.scheduler.step()
        return loss.item(), terms

    def evaluate(self) -> dict[str, float]:
        """Metrics of the task on the whole dev set (summed, then divided)."""
        self.task.eval()
        totals: Metrics = {}
        with torch.inference_mode(), autocast(self.config.precision, self.device):
            for batch in self.dev_loader:
                for name, (num, den) in self.task.evaluate(batch.to(self.device)).items():
                    n0, d0 = totals.get(name, (0.0, 0.0))
                    totals[name] = (n0 + num, d0 + den)
        self.task.train()
        return summarize(totals)

    def _validate_and_checkpoint(self) -> None:
        if self.dist.is_main:
            valid = self.evaluate()
            self._log({"kind": "valid", "step": self.step, **valid})
            logger.info("step %d: %s", self.step, "  ".join(f"dev {k} {v:.4f}" for k, v in valid.items()))
            save_training_state(checkpoint_path(self.ckpt_dir, self.step), self.state_dict(valid))
            prune_checkpoints(list_checkpoints(self.ckpt_dir), _losses(self._validations()), self.config.keep_checkpoints,
                              self.config.average_by)
            plot_curves(self.metrics_path, self.exp_dir / "train_curves.png", self.exp_dir.name)
        barrier(self.dist)

    def _validations(self) -> dict[int, dict[str, float]]:
        """Each validation's dev metrics, by step."""
        return {r["step"]: {k: v for k, v in r.items() if k not in ("kind", "step")}
                for r in read_metrics(self.metrics_path) if r.get("kind") == "valid"}

    def _log(self, record: dict) -> None:
        if self.dist.is_main:
            append_metrics(self.metrics_path, record)

    def _progress(self) -> Progress:
        return Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                        TimeElapsedColumn(), TimeRemainingColumn(), TextColumn("{task.fields[info]}"),
                        console=console, disable=not (console.is_terminal and self.dist.is_main))

    # -- result ---------------------------------------------------------------------------------
    def finalize(self, out_dir: Path) -> dict[str, float]:
        """Average the chosen checkpoints into ``out_dir/final.pt``; return its dev metrics."""
        cfg = self.config
        checkpoints = list_checkpoints(self.ckpt_dir)
        validated = self._validations()
        paths = select_for_average(checkpoints, _losses(validated), cfg.average, cfg.average_by)
        states = [load_training_state(p)["task"] for p in paths]
        load_model_state(self.task, average_state_dicts(states), f"average of {len(paths)} checkpoints")
        steps = [step for step, path in checkpoints if path in paths]
        # one checkpoint: its validation measured these very weights, so the dev set is not run again
        valid = validated[steps[0]] if len(steps) == 1 and steps[0] in validated else self.evaluate()
        model = self.task.asr_model
        save_model(out_dir / "final.pt", model, model.config)
        atomic_write_text(out_dir / "final_metrics.json",
                          json.dumps({"averaged": [p.name for p in paths], **valid}, indent=2) + "\n")
        logger.info("final.pt = average of %s: %s", ", ".join(p.name for p in paths),
                    "  ".join(f"dev {k} {v:.4f}" for k, v in valid.items()))
        if len(paths) < cfg.average:
            logger.warning("%s: final.pt averages %d checkpoint(s), not the %d `average: %d` asks for (the run wrote "
                           "fewer: max_steps %d, valid_interval %d)", out_dir, len(paths), cfg.average, cfg.average,
                           cfg.max_steps, cfg.valid_interval)
        if valid.get("cer", 0.0) >= USELESS_CER:
            logger.warning("%s: dev CER %.2f: the model has not learned to transcribe (its output is (nearly) all "
                           "blank); train longer, lower the learning rate, or check the data", out_dir, valid["cer"])
        return valid
