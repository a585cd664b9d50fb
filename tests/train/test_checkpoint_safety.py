"""Training checkpoints: nothing but tensors and plain values is unpickled, RNG states round-trip
exactly, and resume falls back past an unreadable newest checkpoint."""

from __future__ import annotations

import json
import pickle
import random
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from conftest import TINY_MODEL, run_cli
from mlkd_cli.errors import DataError
from mlkd_cli.train.checkpoint import load_training_state, rng_state, save_training_state, set_rng_state


class Payload:
    """Unpickling this creates ``marker``: stands for any code an attacker would run."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def training_state(**extra) -> dict:
    return {"task": {"w": torch.ones(2)}, "optimizer": {}, "scheduler": {}, "sampler": {}, "rng": rng_state(),
            "step": 10, "epoch": 0, "valid": {"loss": 1.5}, **extra}


@pytest.mark.parametrize("writer", ["torch.save", "pickle.dump"])
def test_a_checkpoint_holding_code_is_refused_unrun(tmp_path: Path, writer: str):
    marker, path = tmp_path / "marker", tmp_path / "step-10.pt"
    if writer == "torch.save":
        torch.save(training_state(evil=Payload(marker)), path)
    else:
        path.write_bytes(pickle.dumps({"task": Payload(marker)}, protocol=2))
    with pytest.raises(DataError) as caught:
        load_training_state(path)
    assert str(caught.value) == (
        f"{path}: refused: it names the Python object getattr, which unpickling would call; this mlkd writes "
        "only tensors and plain values (an earlier mlkd's training checkpoint: rerun with --force to start afresh; "
        "anything else: delete it)")
    assert not marker.exists()
    pickle.loads(path.read_bytes()) if writer == "pickle.dump" else torch.load(path, weights_only=False)
    assert marker.exists()  # the payload is live: an unrestricted load would have run it


def draws() -> tuple:
    return random.random(), random.gauss(0, 1), np.random.rand(3).tolist(), np.random.standard_normal(), \
        torch.rand(3).tolist()


def test_rng_states_round_trip_exactly(tmp_path: Path):
    random.seed(1), np.random.seed(2), torch.manual_seed(3)
    random.gauss(0, 1), np.random.standard_normal()  # leave a cached Gaussian in python's and numpy's state
    path = tmp_path / "step-10.pt"
    save_training_state(path, training_state())
    expected = draws()
    draws()
    set_rng_state(load_training_state(path)["rng"])
    assert draws() == expected


def test_an_incomplete_checkpoint_is_a_clear_error(tmp_path: Path):
    path = tmp_path / "step-10.pt"
    torch.save({"task": {}, "step": 3}, path)
    with pytest.raises(DataError, match=r"step-10.pt: not an mlkd training checkpoint "
                                        r"\(no optimizer, scheduler, sampler, rng, epoch entry\)$"):
        load_training_state(path)


def losses(exp: Path) -> list[tuple[str, int, float]]:
    records = map(json.loads, (exp / "metrics.jsonl").read_text().splitlines())
    return [(r["kind"], r["step"], pytest.approx(r["loss"], rel=1e-5)) for r in records]


def interrupt(exp: Path) -> None:
    """Mark the finished run in ``exp`` as killed, so that a rerun resumes it."""
    stage = json.loads((exp / "stage.json").read_text())
    (exp / "stage.json").write_text(json.dumps({**stage, "status": "running"}))


def test_resume_skips_an_unreadable_newest_checkpoint(prepared: Path, tmp_path: Path):
    cfg = tmp_path / "t.yaml"
    cfg.write_text(yaml.safe_dump(dict(max_steps=30, max_duration=12.0, lr=0.003, warmup_steps=10, valid_interval=10,
                                       log_interval=5, keep_checkpoints=3, average=1,
                                       spec_augment={"enabled": False})))
    exp = tmp_path / "teacher"
    args = ["train-teacher", "--data", prepared, "--lang", "en", "--model-config", TINY_MODEL,
            "--train-config", cfg, exp]
    assert run_cli(*args).exit_code == 0
    uninterrupted = losses(exp)
    ckpt = exp / "ckpt"
    assert sorted(p.name for p in ckpt.iterdir()) == ["step-10.pt", "step-20.pt", "step-30.pt"]

    interrupt(exp)
    newest = ckpt / "step-30.pt"
    newest.write_bytes(newest.read_bytes()[:2000])
    result = run_cli(*args)
    assert result.exit_code == 0, result.output
    log = (exp / "log" / "train.0.log").read_text()
    assert f"{newest}: not a readable checkpoint (truncated or corrupt?)" in log
    assert f"resumed from {ckpt / 'step-20.pt'} (step 20, epoch" in log
    assert losses(exp) == uninterrupted  # steps 21-30 redone exactly as before
    assert load_training_state(newest)["step"] == 30
    assert json.loads((exp / "stage.json").read_text())["status"] == "done"

    # none readable: one line naming the newest, no output changed
    interrupt(exp)
    marker = tmp_path / "marker"
    torch.save(training_state(evil=Payload(marker)), newest)
    for older in ("step-10.pt", "step-20.pt"):
        (ckpt / older).write_bytes(b"")
    outputs = [p for p in exp.rglob("*") if p.is_file() and "log" not in p.parts and p.name != "stage.json"]
    before = {p: p.read_bytes() for p in outputs}
    result = run_cli(*args)
    errors = [line for line in result.output.splitlines() if line.startswith("Error:")]
    assert result.exit_code == 1 and len(errors) == 1 and "Traceback" not in result.output
    assert errors[0] == (f"Error: {newest}: refused: it names the Python object getattr, which unpickling would "
                         "call; this mlkd writes only tensors and plain values (an earlier mlkd's training "
                         "checkpoint: rerun with --force to start afresh; anything else: delete it); no checkpoint "
                         f"in {ckpt} is readable: delete the unreadable ones to retrain from step 0, or rerun with "
                         "--force to start this stage afresh")
    assert not marker.exists()
    assert {p: p.read_bytes() for p in outputs} == before
    log = (exp / "log" / "train.0.log").read_text()
    for older in ("step-20.pt", "step-10.pt"):
        assert f"{ckpt / older}: not a readable checkpoint (truncated or corrupt?): the file is empty; trying" in log
    assert json.loads((exp / "stage.json").read_text())["status"] == "running"
