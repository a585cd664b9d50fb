"""Data-parallel training computes what one process computes on the same global batches.

Each process's loss is a mean over its own utterances and DistributedDataParallel averages
the gradients, so two equal halves give the gradient of the mean over the whole batch.
Unequal halves (the sampler fills each process's batch by duration, so utterance counts
differ) give the mean of the two halves' means instead: utterances of the smaller batch
weigh more. Both are checked below, through the trainer's own process-group set-up.

The updates are plain SGD: the gradients agree to float rounding (~1e-7), which AdamW's
first steps (g / sqrt(g²), about ±lr whatever g's size) would blow up on near-zero
components; AdamW is element-wise, so equal gradients give equal AdamW updates anyway.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path

import torch
import torch.multiprocessing as mp
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from mlkd_cli.models import ModelConfig, build_model
from mlkd_cli.train.batches import Batch
from mlkd_cli.train.distributed import init_distributed, shutdown
from mlkd_cli.train.task import CtcTask

CONFIG = ModelConfig(feature_dim=16, d_model=16, num_layers=2, num_heads=2, ff_mult=2, conv_kernel=3, dropout=0.0,
                     subsampling_channels=8, vocab_size=6)
LENGTHS = (48, 37, 44, 30)  # frames: the halves pad differently from the whole batch
STEPS = 3


def utterances() -> list[tuple[torch.Tensor, list[int]]]:
    g = torch.Generator().manual_seed(0)
    return [(torch.randn(n, CONFIG.feature_dim, generator=g),
             torch.randint(1, CONFIG.vocab_size, (2 + i % 3,), generator=g).tolist())
            for i, n in enumerate(LENGTHS)]


def make_batch(utts: list[tuple[torch.Tensor, list[int]]]) -> Batch:
    features = nn.utils.rnn.pad_sequence([f for f, _ in utts], batch_first=True)
    n = len(utts)
    return Batch(features, torch.tensor([len(f) for f, _ in utts]), [t for _, t in utts], [""] * n, ["en"] * n,
                 [str(i) for i in range(n)], 0.0)


def initial_task() -> CtcTask:
    torch.manual_seed(0)
    return CtcTask(build_model(CONFIG), tokenizer=None)


def train(task: CtcTask, parts: list[Batch], ddp: bool = False) -> dict[str, torch.Tensor]:
    """STEPS updates (clipping after the gradient all-reduce, as the Trainer does) on the mean of
    the parts' losses; with ``ddp`` each process gives one part."""
    model = DistributedDataParallel(task) if ddp else task
    optimizer = torch.optim.SGD(task.parameters(), lr=0.1, momentum=0.9, weight_decay=0.01)
    for _ in range(STEPS):
        loss = sum(model(part)[0] for part in parts) / len(parts)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(task.parameters(), 1.0)
        optimizer.step()
    return {k: v.detach().clone() for k, v in task.state_dict().items()}


SPLITS = {"equal": ((0, 1), (2, 3)), "unequal": ((0, 1, 2), (3,))}


def worker(rank: int, port: int, out: Path) -> None:
    os.environ.update(RANK=str(rank), WORLD_SIZE="2", LOCAL_RANK=str(rank), MASTER_ADDR="127.0.0.1",
                      MASTER_PORT=str(port), OMP_NUM_THREADS="1")
    torch.set_num_threads(1)
    dist = init_distributed()
    utts = utterances()
    try:
        for name, split in SPLITS.items():
            part = make_batch([utts[i] for i in split[rank]])
            torch.save(train(initial_task(), [part], ddp=True), out / f"{name}.{rank}.pt")
    finally:
        shutdown(dist)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def assert_same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(a[key], b[key], atol=1e-5, rtol=1e-5, msg=key)


def test_two_processes_train_the_same_model_as_one(tmp_path: Path):
    utts = utterances()
    whole = train(initial_task(), [make_batch(utts)])
    halves = train(initial_task(), [make_batch([utts[i] for i in part]) for part in SPLITS["unequal"]])
    # fork, not spawn: the workers start at once, with torch imported and warmed up by the above
    mp.start_processes(worker, args=(free_port(), tmp_path), nprocs=2, start_method="fork")
    ddp = {name: [torch.load(tmp_path / f"{name}.{rank}.pt") for rank in (0, 1)] for name in SPLITS}
    for name in SPLITS:
        assert_same(ddp[name][0], ddp[name][1])  # the replicas stay identical
    assert_same(ddp["equal"][0], whole)
    assert_same(ddp["unequal"][0], halves)  # the mean of the two halves' means
    assert not all(torch.allclose(ddp["unequal"][0][k], whole[k], atol=1e-5) for k in whole)
    moved = [(whole[k] - p).abs().max().item() for k, p in initial_task().named_parameters()]
    assert min(moved) > 1e-3  # every parameter was trained, so the equalities are not vacuous
