"""The trainer and `mlkd train-teacher`: maths, learning, exact resume, 2 processes, bad inputs."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml

from conftest import run_cli
from mlkd_cli.errors import ConfigError
from mlkd_cli.train.checkpoint import average_state_dicts, prune_checkpoints, select_for_average
from mlkd_cli.experiment.config import TrainConfig
from mlkd_cli.experiment.model_dir import load_model_dir
from mlkd_cli.train.loop import lr_lambda

ROOT = Path(__file__).resolve().parents[2]
TINY_MODEL = ROOT / "conf" / "model" / "tiny.yaml"


def test_average_state_dicts_hand_computed():
    a = {"w": torch.tensor([1.0, 2.0]), "h": torch.tensor([0.5], dtype=torch.float16), "n": torch.tensor(3)}
    b = {"w": torch.tensor([3.0, 6.0]), "h": torch.tensor([1.5], dtype=torch.float16), "n": torch.tensor(5)}
    c = {"w": torch.tensor([2.0, 1.0]), "h": torch.tensor([1.0], dtype=torch.float16), "n": torch.tensor(7)}
    avg = average_state_dicts([a, b, c])
    assert torch.equal(avg["w"], torch.tensor([2.0, 3.0]))
    assert avg["h"].dtype == torch.float16 and avg["h"].item() == 1.0
    assert avg["n"].item() == 7  # counters come from the newest checkpoint


def test_lr_schedule():
    f = lr_lambda(TrainConfig(max_steps=110, warmup_steps=10, final_lr_ratio=0.05))
    assert f(0) == pytest.approx(0.1) and f(9) == pytest.approx(1.0) and f(10) == pytest.approx(1.0)
    assert f(60) == pytest.approx(0.05 + 0.95 * 0.5)
    assert f(110) == pytest.approx(0.05) and f(500) == pytest.approx(0.05)


def test_select_and_prune_checkpoints(tmp_path):
    ckpts = []
    for step in (10, 20, 30, 40, 50):
        (tmp_path / f"step-{step}.pt").write_text("x")
        ckpts.append((step, tmp_path / f"step-{step}.pt"))
    losses = {10: 1.0, 20: 3.0, 30: 0.5, 40: 4.0, 50: 5.0}
    assert [p.name for p in select_for_average(ckpts, losses, 2, "last")] == ["step-40.pt", "step-50.pt"]
    assert [p.name for p in select_for_average(ckpts, losses, 2, "best")] == ["step-30.pt", "step-10.pt"]
    prune_checkpoints(ckpts, losses, keep=2, by="best")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["step-10.pt", "step-30.pt", "step-40.pt", "step-50.pt"]
    prune_checkpoints(ckpts, losses, keep=2, by="last")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["step-40.pt", "step-50.pt"]


def write_train_config(path: Path, **values) -> Path:
    base = dict(max_steps=60, max_duration=12.0, lr=0.003, warmup_steps=10, valid_interval=20, log_interval=5,
                keep_checkpoints=2, average=2, spec_augment={"enabled": True})
    path.write_text(yaml.safe_dump({**base, **values}))
    return path


def teacher_args(data: Path, train_config: Path, exp: Path, lang: str = "en", *extra: str) -> list[str]:
    return ["train-teacher", "--data", str(data), "--lang", lang, "--model-config", str(TINY_MODEL),
            "--train-config", str(train_config), *extra, str(exp)]


def losses(exp: Path, kind: str = "train") -> list[float]:
    return [r["loss"] for r in map(json.loads, (exp / "metrics.jsonl").read_text().splitlines()) if r["kind"] == kind]


def test_teacher_learns_its_own_tiny_data(prepared: Path, tmp_path: Path):
    """Loss falls and greedy CER on its own (training) utterances ends below 20%."""
    cfg = write_train_config(tmp_path / "t.yaml", max_steps=400, max_duration=15.0, lr=0.005, warmup_steps=40,
                             valid_interval=100, log_interval=25, spec_augment={"enabled": False})
    exp = tmp_path / "teacher_de"
    result = run_cli(*teacher_args(prepared, cfg, exp, "de", "--dev-set", "train"))
    assert result.exit_code == 0, result.output
    train_losses = losses(exp)
    assert train_losses[-1] < 0.3 * train_losses[0]
    final = json.loads((exp / "final_metrics.json").read_text())
    assert final["cer"] < 0.20, final
    assert "WARNING" not in result.output, result.output  # a model that learned, averaged as asked
    assert (exp / "train_curves.png").read_bytes()[:4] == b"\x89PNG"
    stage = json.loads((exp / "stage.json").read_text())
    assert stage["status"] == "done" and set(stage["inputs"]) == {"data:train", "tokenizer"}
    loaded = load_model_dir(exp)
    assert loaded.own_language == "de" and loaded.model.config.vocab_size > 2
    # unchanged inputs and config: up to date, nothing rewritten
    before = (exp / "final.pt").stat().st_mtime_ns
    assert run_cli(*teacher_args(prepared, cfg, exp, "de", "--dev-set", "train")).exit_code == 0
    assert (exp / "final.pt").stat().st_mtime_ns == before


def test_a_model_that_did_not_learn_and_a_short_average_are_warned_about(prepared: Path, tmp_path: Path):
    cfg = write_train_config(tmp_path / "t.yaml", max_steps=4, valid_interval=2, keep_checkpoints=2, average=3)
    exp = tmp_path / "teacher"
    result = run_cli(*teacher_args(prepared, cfg, exp))
    assert result.exit_code == 0, result.output
    assert json.loads((exp / "final_metrics.json").read_text())["cer"] >= 0.95
    warnings = [line for line in result.output.splitlines() if "WARNING" in line]
    assert len(warnings) == 2, result.output
    assert "final.pt averages 2 checkpoint(s), not the 3 `average: 3` asks for" in warnings[0]
    assert "has not learned to transcribe" in warnings[1] and str(exp) in warnings[1]


@pytest.mark.parametrize("average, evaluations", [(1, 2), (2, 3)])
def test_final_metrics_of_one_checkpoint_are_its_validation(prepared: Path, tmp_path: Path, monkeypatch, average, evaluations):
    """final.pt of one checkpoint is the validated weights: its metrics are that validation's, the
    dev set is not run again; an average of two is new weights, validated anew."""
    from mlkd_cli.train import loop

    calls = []
    evaluate = loop.Trainer.evaluate
    monkeypatch.setattr(loop.Trainer, "evaluate", lambda self: calls.append(self.step) or evaluate(self))
    cfg = write_train_config(tmp_path / "t.yaml", max_steps=4, valid_interval=2, average=average)
    exp = tmp_path / "teacher"
    assert run_cli(*teacher_args(prepared, cfg, exp)).exit_code == 0
    assert len(calls) == evaluations
    last = [r for r in map(json.loads, (exp / "metrics.jsonl").read_text().splitlines()) if r["kind"] == "valid"][-1]
    final = json.loads((exp / "final_metrics.json").read_text())
    assert last["step"] == 4 and final["averaged"] == (["step-4.pt"] if average == 1 else ["step-2.pt", "step-4.pt"])
    if average == 1:
        assert {k: v for k, v in final.items() if k != "averaged"} == {k: v for k, v in last.items() if k not in ("kind", "step")}


def mlkd_subprocess(args: list[str], cwd: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "mlkd_cli", *args], cwd=cwd, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)


@pytest.mark.parametrize("workers", [0, 2])
def test_sigkill_and_resume_reproduce_an_uninterrupted_run(prepared: Path, tmp_path: Path, workers: int):
    """Also with data-loading workers, which run ahead of training: no batch is skipped on resume.
    (Their SpecAugment draws happen in the workers, whose random state is not checkpointed.)"""
    # Without workers every augmentation draw comes from the checkpointed generator too.
    augment = {"noise": {"prob": 0.5, "babble": 2}, "reverb": {"prob": 0.3, "simulated_rooms": 4},
               "telephone": {"prob": 0.3}, "speed_prob": 0.3, "volume_prob": 0.3}
    cfg = write_train_config(tmp_path / "t.yaml", max_steps=40, num_workers=workers,
                             spec_augment={"enabled": workers == 0}, augment=augment if workers == 0 else {})
    full, killed = tmp_path / "full", tmp_path / "killed"
    assert run_cli(*teacher_args(prepared, cfg, full)).exit_code == 0
    proc = mlkd_subprocess(teacher_args(prepared, cfg, killed), tmp_path)
    deadline = time.time() + 120
    while not (killed / "ckpt" / "step-20.pt").exists():
        assert proc.poll() is None and time.time() < deadline, proc.communicate()[0]
        time.sleep(0.05)
    time.sleep(0.3)  # let it run on past the checkpoint before the kill
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert json.loads((killed / "stage.json").read_text())["status"] == "running"
    result = run_cli(*teacher_args(prepared, cfg, killed))
    assert result.exit_code == 0
    assert losses(killed) == pytest.approx(losses(full), rel=1e-5)
    steps = [json.loads(line)["step"] for line in (killed / "metrics.jsonl").read_text().splitlines()]
    assert steps == sorted(steps) and max(steps) == 40
    assert json.loads((killed / "stage.json").read_text())["status"] == "done"


def test_bad_inputs_are_clear_errors(prepared: Path, tmp_path: Path):
    cfg = write_train_config(tmp_path / "t.yaml", max_steps=5, valid_interval=5)
    result = run_cli(*teacher_args(prepared, cfg, tmp_path / "x", "fr"))
    assert result.exit_code == 1 and "no utterances in language 'fr'" in result.output and "en, de, ru" in result.output.replace("de, en", "en, de")
    bad = tmp_path / "bad.yaml"
    bad.write_text("max_stpes: 3\n")
    result = run_cli(*teacher_args(prepared, bad, tmp_path / "x"))
    assert result.exit_code == 1 and "bad.yaml: unknown key(s) max_stpes" in result.output
    model40 = tmp_path / "m40.yaml"
    model40.write_text(TINY_MODEL.read_text().replace("feature_dim: 80", "feature_dim: 40"))
    result = run_cli("train-teacher", "--data", prepared, "--lang", "en", "--model-config", model40,
                     "--train-config", cfg, tmp_path / "x")
    assert result.exit_code == 1 and "reads 40-dim features" in result.output and "80-dim" in result.output
    result = run_cli(*teacher_args(tmp_path / "nodata", cfg, tmp_path / "x"))
    assert result.exit_code == 1 and "not a prepared data dir" in result.output and "mlkd prepare" in result.output
    assert not (tmp_path / "x").exists()


def test_finished_and_interrupted_runs_are_protected(prepared: Path, tmp_path: Path):
    cfg = write_train_config(tmp_path / "t.yaml", max_steps=10, valid_interval=5)
    exp = tmp_path / "teacher"
    assert run_cli(*teacher_args(prepared, cfg, exp)).exit_code == 0
    snapshot = {p: p.read_bytes() for p in exp.rglob("*") if p.is_file() and "log" not in p.parts
                and not p.name.startswith(".")}
    other = write_train_config(tmp_path / "t2.yaml", max_steps=12, valid_interval=5)
    result = run_cli(*teacher_args(prepared, other, exp))
    assert result.exit_code == 1 and "changed: config" in result.output and "--force" in result.output
    assert {p: p.read_bytes() for p in snapshot} == snapshot
    # an interrupted run whose checkpoints are all corrupt: a clear error, nothing touched
    stage = json.loads((exp / "stage.json").read_text())
    (exp / "stage.json").write_text(json.dumps({**stage, "status": "running"}))
    for ckpt in (exp / "ckpt").glob("step-*.pt"):
        ckpt.write_bytes(ckpt.read_bytes()[:1000])
    before = {p: p.read_bytes() for p in exp.rglob("*") if p.is_file() and "log" not in p.parts
              and not p.name.startswith(".")}
    result = run_cli(*teacher_args(prepared, cfg, exp))
    assert result.exit_code == 1 and "no checkpoint in" in result.output and "--force" in result.output
    assert {p: p.read_bytes() for p in before} == before


def test_dropped_in_teacher_is_validated(prepared: Path, tmp_path: Path):
    cfg = write_train_config(tmp_path / "t.yaml", max_steps=5, valid_interval=5)
    exp = tmp_path / "teacher"
    assert run_cli(*teacher_args(prepared, cfg, exp)).exit_code == 0
    # a model dir of the earlier layout (tokenizer in the data dir): an up-to-date re-run upgrades it
    raw = yaml.safe_load((exp / "config.yaml").read_text())
    (exp / "config.yaml").write_text(yaml.safe_dump({k: v for k, v in raw.items()
                                                     if k not in ("format", "command", "inference")}))
    shutil.rmtree(exp / "tokenizer")
    shutil.rmtree(exp / "text")
    record = json.loads((exp / "stage.json").read_text())
    (exp / "stage.json").write_text(json.dumps({k: v for k, v in record.items() if k != "outputs"}))
    weights = (exp / "final.pt").stat().st_mtime_ns
    result = run_cli(*teacher_args(prepared, cfg, exp))
    assert result.exit_code == 0 and "up to date" in result.output, result.output
    assert yaml.safe_load((exp / "config.yaml").read_text()) == raw and (exp / "final.pt").stat().st_mtime_ns == weights
    assert load_model_dir(exp).tokenizer.vocab_size == raw["model"]["vocab_size"]
    raw = yaml.safe_load((exp / "config.yaml").read_text())
    raw["model"]["d_model"] = 48
    (exp / "config.yaml").write_text(yaml.safe_dump(raw))
    with pytest.raises(ConfigError, match="differs from config.yaml in d_model"):
        load_model_dir(exp)
    raw["model"]["d_model"], raw["model"]["vocab_size"] = 32, 7
    (exp / "config.yaml").write_text(yaml.safe_dump(raw))
    with pytest.raises(ConfigError, match="vocab_size"):
        load_model_dir(exp)


def test_data_loading_workers_feed_the_same_batches(prepared: Path, tmp_path: Path):
    """num_workers (the full preset uses 8) changes where batches are built, not which."""
    runs = {}
    for workers in (0, 2):
        cfg = write_train_config(tmp_path / f"w{workers}.yaml", max_steps=10, valid_interval=10, log_interval=1,
                                 average=1, num_workers=workers, spec_augment={"enabled": False})
        assert run_cli(*teacher_args(prepared, cfg, tmp_path / f"w{workers}")).exit_code == 0
        runs[workers] = losses(tmp_path / f"w{workers}")
    assert len(runs[0]) == 10 and runs[2] == pytest.approx(runs[0], rel=1e-5)


def test_speed_perturbation_runs_on_the_fly(prepared: Path, tmp_path: Path):
    from mlkd_cli.data.prepare import PreparedData
    from mlkd_cli.train.batches import AsrDataset, speed_perturbed
    from mlkd_cli.experiment.config import SpecAugmentConfig

    data = PreparedData(prepared)
    cuts = data.cuts("train").to_eager().subset(first=4)
    perturbed = speed_perturbed(cuts)
    assert len(perturbed) == 12
    durations = sorted(c.duration for c in perturbed if c.id.startswith(cuts[0].id) or cuts[0].id in c.id)
    assert durations == pytest.approx(sorted([cuts[0].duration, cuts[0].duration / 0.9, cuts[0].duration / 1.1]), rel=1e-3)
    batch = AsrDataset(data.tokenizer(), SpecAugmentConfig())[perturbed]  # copies' features from their audio
    assert batch.features.shape[0] == 12 and batch.features.shape[2] == 80
    cfg = write_train_config(tmp_path / "t.yaml", max_steps=4, valid_interval=4, speed_perturb=True)
    assert run_cli(*teacher_args(prepared, cfg, tmp_path / "sp")).exit_code == 0


def test_bf16_on_a_cpu_without_native_bf16_computes_in_fp32(monkeypatch, caplog):
    from mlkd_cli.train import loop

    x = torch.randn(4, 8)
    for native in (True, False):
        loop.cpu_has_bf16.cache_clear()
        monkeypatch.setattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", lambda native=native: native)
        with loop.autocast("bf16", torch.device("cpu")):
            dtype = torch.nn.functional.linear(x, x).dtype
        assert dtype == (torch.bfloat16 if native else torch.float32)
    assert "no native bf16" in caplog.text
    loop.cpu_has_bf16.cache_clear()


def test_finetuning_validates_as_decoding_runs_conditioned_on_the_predicted_language(tmp_path: Path):
    """The dev metrics of a language-adaptive model come from the language its LID head predicts
    (as at test time), not the true one: here the head always says de, the utterances are en."""
    from mlkd_cli.data.tokenizer import Tokenizer, TokenizerConfig, train_tokenizer
    from mlkd_cli.models import ModelConfig, build_model, ctc_loss
    from mlkd_cli.train.batches import Batch
    from mlkd_cli.training_stages.finetune import FinetuneTask

    lang_dir = train_tokenizer({"en": ["abc cab"], "de": ["bca"]}, tmp_path / "lang", TokenizerConfig(type="char"))
    tokenizer = Tokenizer(lang_dir)
    config = ModelConfig(d_model=32, num_layers=2, num_heads=2, ff_mult=2, conv_kernel=7, subsampling_channels=16,
                         vocab_size=tokenizer.vocab_size, languages=("de", "en"))
    torch.manual_seed(0)
    model = build_model(config).eval()
    with torch.no_grad():
        model.language_embedding.weight.normal_(std=3.0)
        model.lid_head.bias.copy_(torch.tensor([50.0, -50.0]))  # always de
    features, lens = torch.randn(2, 60, 80), torch.tensor([60, 45])
    batch = Batch(features, lens, [tokenizer.encode("abc"), tokenizer.encode("cab")], ["abc", "cab"], ["en", "en"],
                  ["u1", "u2"], 1.05)
    metrics = FinetuneTask(model, tokenizer, lid_weight=1.0).evaluate(batch)
    with torch.no_grad():
        predicted = model(features, lens, language=torch.tensor([0, 0]))
        true = model(features, lens, language=torch.tensor([1, 1]))
    expected = ctc_loss(predicted.log_probs, predicted.lengths, batch.targets, reduction="sum").item()
    assert metrics["ctc"][0] == pytest.approx(expected, rel=1e-5)
    conditioned_on_truth = ctc_loss(true.log_probs, true.lengths, batch.targets, reduction="sum").item()
    assert conditioned_on_truth != pytest.approx(expected, rel=1e-3)
    assert metrics["lid_acc"] == (0, 2)
