"""Pins on the distillation and fine-tuning objectives as the tasks (and the CLI) assemble them."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
import torch
import yaml
from torch.nn import functional as F

from conftest import ROOT, run_cli
from mlkd_cli.training_stages.distill import DistillTask, LayerPlan
from mlkd_cli.teachers.mlkd import MlkdTeacher
from mlkd_cli.experiment.config import KdConfig
from mlkd_cli.models import ctc_loss
from mlkd_cli.training_stages.finetune import FinetuneTask
from tiny_tasks import TINY, make_batch, model

TEMPERATURE = 2.0


def softened_kl(p_log: torch.Tensor, q_log: torch.Tensor) -> torch.Tensor:
    """T²·KL(p^T ‖ q^T) per frame, from log-probabilities (T, V) of p and q."""
    p, q = F.log_softmax(p_log / TEMPERATURE, -1), F.log_softmax(q_log / TEMPERATURE, -1)
    return TEMPERATURE**2 * (p.exp() * (p - q)).sum(-1)


def test_distill_kl_term_is_teacher_to_student_over_valid_frames(tmp_path):
    teachers = {"de": MlkdTeacher("de", tmp_path / "de", "d", model(seed=1)),
                "en": MlkdTeacher("en", tmp_path / "en", "e", model(seed=2))}
    student = model(seed=3)
    kd = KdConfig(kl_weight=0.7, kl_temperature=TEMPERATURE, targets="on-the-fly")
    task = DistillTask(student, teachers, LayerPlan([2], {"de": [2], "en": [2]}, [1.0]), kd, tokenizer=None)
    batch = make_batch([80, 50, 64], ["en", "de", "en"])
    with torch.no_grad():
        total, terms = task(batch)
        out = student(batch.features, batch.feature_lens)
        forward, reverse, frames = 0.0, 0.0, 0
        for i, lang in enumerate(batch.langs):  # each utterance alone through its own teacher
            n = int(batch.feature_lens[i])
            teacher = teachers[lang].model(batch.features[i:i + 1, :n], batch.feature_lens[i:i + 1])
            m = int(teacher.lengths[0])
            assert m == int(out.lengths[i])
            s, t = out.log_probs[i, :m], teacher.log_probs[0]
            forward += softened_kl(t, s).sum().item()
            reverse += softened_kl(s, t).sum().item()
            frames += m
    assert terms["kl"] == pytest.approx(forward / frames, rel=1e-4)
    assert terms["kl"] != pytest.approx(reverse / frames, rel=1e-2)  # the two directions are told apart
    assert total.item() == pytest.approx(terms["kd"] + 0.7 * terms["kl"], rel=1e-5)


# -- the CLI's --lid-weight reaches the student's loss ---------------------------------------

LID_WEIGHT = 2.5


@pytest.fixture(scope="module")
def distilled_lid(prepared, tiny_teachers, tmp_path_factory) -> Path:
    exp = tmp_path_factory.mktemp("distill_lid") / "student"
    result = run_cli("distill", "--data", prepared, "--model-config", ROOT / "conf/model/student_tiny.yaml",
                     "--kd-config", ROOT / "conf/kd/tiny.yaml", "--train-config", ROOT / "conf/train/distill_tiny.yaml",
                     "--targets", "on-the-fly", "--lid-weight", str(LID_WEIGHT), "--max-steps", "1",
                     *tiny_teachers.values(), exp)
    assert result.exit_code == 0, result.output
    return exp


def test_distill_cli_lid_weight_is_recorded_and_weights_the_lid_term(distilled_lid):
    assert yaml.safe_load((distilled_lid / "config.yaml").read_text())["lid_weight"] == LID_WEIGHT
    records = [json.loads(line) for line in (distilled_lid / "metrics.jsonl").read_text().splitlines()]
    assert {r["kind"] for r in records} == {"train", "valid"}
    kd = yaml.safe_load((ROOT / "conf/kd/tiny.yaml").read_text())  # ctc_weight 1, kl_weight 1
    for r in records:
        expected = r["kd"] + kd["ctc_weight"] * r["ctc"] + kd["kl_weight"] * r["kl"] + LID_WEIGHT * r["lid"]
        assert r["lid"] > 0.1 and r["loss"] == pytest.approx(expected, rel=1e-5), r


# -- fine-tuning's dev loss (which picks the checkpoints for average_by: best) ---------------

ADAPTIVE = dataclasses.replace(TINY, languages=("de", "en"))


class LetterTokenizer:
    """Token k is the k-th letter; all the dev CER needs."""

    def decode(self, ids: list[int]) -> str:
        return "".join(chr(ord("a") + i - 1) for i in ids)


@pytest.mark.parametrize("lid_weight", [0.0, 3.0])
def test_finetune_dev_loss_is_ctc_plus_weighted_lid(lid_weight):
    m = model(ADAPTIVE, seed=5)
    batch = make_batch([70, 90, 60], ["en", "de", "de"])
    metrics = FinetuneTask(m, tokenizer=LetterTokenizer(), lid_weight=lid_weight).evaluate(batch)
    with torch.no_grad():
        out = m(batch.features, batch.feature_lens)  # as at test time: the predicted language
        ctc = ctc_loss(out.log_probs, out.lengths, batch.targets, reduction="sum").item()
        lid = F.cross_entropy(out.lid_logits, torch.tensor([1, 0, 0]), reduction="sum").item()
    assert metrics["ctc"] == (pytest.approx(ctc, rel=1e-6), 3) and metrics["lid"] == (pytest.approx(lid, rel=1e-6), 3)
    assert lid > 0.1
    assert metrics["loss"] == (pytest.approx(ctc + lid_weight * lid, rel=1e-6), 3)
