"""Process-group set-up from torchrun's or srun's environment (one process per device)."""

from __future__ import annotations

import dataclasses
import os

import torch
import torch.distributed as dist

from mlkd_cli.errors import ConfigError


@dataclasses.dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def device(self) -> torch.device:
        return torch.device("cuda", self.local_rank) if torch.cuda.is_available() else torch.device("cpu")


def _from_env() -> DistInfo:
    env = os.environ
    if "WORLD_SIZE" in env and "RANK" in env:  # torchrun
        return DistInfo(int(env["RANK"]), int(env["WORLD_SIZE"]), int(env.get("LOCAL_RANK", 0)))
    if int(env.get("SLURM_NTASKS", "1")) > 1 and "SLURM_PROCID" in env:  # srun, one task per device
        return DistInfo(int(env["SLURM_PROCID"]), int(env["SLURM_NTASKS"]), int(env.get("SLURM_LOCALID", 0)))
    return DistInfo()


def init_distributed() -> DistInfo:
    """Join the process group when launched with several processes; a no-op otherwise."""
    info = _from_env()
    if info.world_size == 1 or dist.is_initialized():
        return info
    if "MASTER_ADDR" not in os.environ:
        if int(os.environ.get("SLURM_NNODES", "1")) > 1:
            raise ConfigError("MASTER_ADDR is not set for a multi-node run; export it in the job script (mlkd slurm does)")
        os.environ["MASTER_ADDR"] = "127.0.0.1"
    os.environ.setdefault("MASTER_PORT", str(29500 + int(os.environ.get("SLURM_JOB_ID", "0")) % 1000))
    if torch.cuda.is_available():
        torch.cuda.set_device(info.local_rank)
    dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo", rank=info.rank, world_size=info.world_size)
    return info


def barrier(info: DistInfo) -> None:
    if info.world_size > 1:
        dist.barrier()


def shutdown(info: DistInfo) -> None:
    if info.world_size > 1 and dist.is_initialized():
        dist.destroy_process_group()


def on_main(info: DistInfo, work):
    """``work()`` on the main process first (it fills a cache), then on the others (they read it)."""
    result = work() if info.is_main else None
    barrier(info)
    return result if info.is_main else work()
