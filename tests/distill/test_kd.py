"""Distillation and fine-tuning maths: KD/KL/attention losses, layer maps, routing, language
sampling, the distillation and fine-tuning tasks."""

from __future__ import annotations

import dataclasses
import math
from collections import Counter
from pathlib import Path

import pytest
import torch
from lhotse import CutSet, MonoCut, SupervisionSegment

from mlkd_cli.errors import ConfigError, DataError
from mlkd_cli.training_stages.distill import DistillTask, LayerPlan, plan_layers
from mlkd_cli.distill.losses import attention_kd_loss, even_layer_map, hidden_kd_loss, posterior_kl_loss
from mlkd_cli.distill.ensemble import run_teachers
from mlkd_cli.teachers.base import Teacher, TeacherInputs
from mlkd_cli.teachers.load import TeacherSpec, parse_teacher_arg
from mlkd_cli.teachers.mlkd import MlkdTeacher
from mlkd_cli.models import ModelConfig, build_model, ctc_loss
from mlkd_cli.models.checkpoint import load_model_state
from mlkd_cli.experiment.config import KdConfig
from mlkd_cli.training_stages.finetune import LANGUAGE_MODULES, FinetuneTask
from mlkd_cli.train.sampling import language_mix, language_weights
from tiny_tasks import TINY, make_batch, model

# -- losses ------------------------------------------------------------------------------------

def test_hidden_kd_loss_is_zero_for_equal_states_and_hand_computed_otherwise():
    teacher = torch.randn(2, 4, 3)
    lengths = torch.tensor([4, 2])
    assert hidden_kd_loss(teacher, teacher, lengths).item() == 0.0
    student = teacher.clone()
    student[0, 1] -= torch.tensor([1.0, 2.0, 2.0])  # ‖d‖² = 9 on one of 6 valid frames
    assert hidden_kd_loss(student, teacher, lengths).item() == pytest.approx(9 / 6)
    student[1, 0] += 1.0  # another frame with ‖d‖² = 3
    assert hidden_kd_loss(student, teacher, lengths).item() == pytest.approx(12 / 6)
    doubled = teacher + 2 * (student - teacher)
    assert hidden_kd_loss(doubled, teacher, lengths).item() == pytest.approx(4 * 12 / 6)  # quadratic


def test_hidden_kd_loss_ignores_padded_frames():
    teacher, lengths = torch.randn(2, 5, 3), torch.tensor([5, 2])
    student = teacher + 0.5
    garbage = student.clone()
    garbage[1, 2:] = 1e6
    assert hidden_kd_loss(garbage, teacher, lengths).item() == pytest.approx(hidden_kd_loss(student, teacher, lengths).item())
    assert hidden_kd_loss(student, teacher, lengths).item() == pytest.approx(0.75)


def test_posterior_kl_with_temperature_matches_a_hand_computation():
    # teacher (0.8, 0.2), student (0.5, 0.5); at T = 2 the teacher softens to (2/3, 1/3):
    # KL = 2/3 ln(4/3) + 1/3 ln(2/3), times T² = 4.
    teacher = torch.tensor([[[0.8, 0.2], [0.3, 0.7]]]).log()
    student = torch.tensor([[[0.5, 0.5], [0.9, 0.1]]]).log()
    expected = 4 * (2 / 3 * math.log(4 / 3) + 1 / 3 * math.log(2 / 3))
    got = posterior_kl_loss(student, teacher, torch.tensor([1]), temperature=2.0)  # second frame is padding
    assert got.item() == pytest.approx(expected, rel=1e-5)
    assert posterior_kl_loss(teacher, teacher, torch.tensor([2]), 3.0).item() == pytest.approx(0.0, abs=1e-7)
    # T = 1 is the plain KL
    plain = 0.8 * math.log(0.8 / 0.5) + 0.2 * math.log(0.2 / 0.5)
    assert posterior_kl_loss(student, teacher, torch.tensor([1]), 1.0).item() == pytest.approx(plain, rel=1e-5)


def test_kl_blank_weight_reweights_the_teachers_blank_frames():
    # Frame 1: teacher says blank (0.8), frame 2: token 1 (0.8); the student is uniform over 2 tokens.
    teacher = torch.tensor([[[0.8, 0.2], [0.2, 0.8]]]).log()
    student = torch.full((1, 2, 2), 0.5).log()
    kl = 0.8 * math.log(0.8 / 0.5) + 0.2 * math.log(0.2 / 0.5)  # the same on both frames
    lengths = torch.tensor([2])
    assert posterior_kl_loss(student, teacher, lengths, 1.0, blank_weight=1.0).item() == pytest.approx(kl, rel=1e-5)
    assert posterior_kl_loss(student, teacher, lengths, 1.0, blank_weight=0.0).item() == pytest.approx(kl, rel=1e-5)
    # distinct per-frame KLs: frame 2 of the student leans the other way
    student = torch.tensor([[[0.5, 0.5], [0.9, 0.1]]]).log()
    kl2 = 0.2 * math.log(0.2 / 0.9) + 0.8 * math.log(0.8 / 0.1)
    got = posterior_kl_loss(student, teacher, lengths, 1.0, blank_weight=0.25).item()
    assert got == pytest.approx((0.25 * kl + kl2) / 1.25, rel=1e-5)
    assert posterior_kl_loss(student, teacher, lengths, 1.0, blank_weight=0.0).item() == pytest.approx(kl2, rel=1e-5)


def test_attention_kd_loss_compares_head_averages_on_valid_queries():
    maps = torch.softmax(torch.randn(1, 2, 3, 3), dim=-1)
    lengths = torch.tensor([2])
    assert attention_kd_loss(maps, maps, lengths).item() == pytest.approx(0.0, abs=1e-6)
    swapped = maps.flip(1)  # other head order, same average
    assert attention_kd_loss(swapped, maps, lengths).item() == pytest.approx(0.0, abs=1e-6)
    uniform = torch.full((1, 4, 3, 3), 1 / 3)  # the student may have another number of heads
    t = maps.mean(1)[0, :2]
    expected = (t * (t.log() - math.log(1 / 3))).sum(-1).mean().item()
    assert attention_kd_loss(uniform, maps, lengths).item() == pytest.approx(expected, rel=1e-5)


def test_even_layer_map():
    assert even_layer_map(4, 6) == [(1, 2), (2, 3), (3, 5), (4, 6)]
    assert even_layer_map(6, 6) == [(i, i) for i in range(1, 7)]
    assert even_layer_map(3, 12) == [(1, 4), (2, 8), (3, 12)]
    assert [t for _, t in even_layer_map(6, 3)] == [1, 1, 2, 2, 3, 3]


def test_layer_plan_checks_layers_per_teacher(tmp_path):
    teachers = {"de": MlkdTeacher("de", tmp_path / "de", "x", model(dataclasses.replace(TINY, num_layers=4))),
                "en": MlkdTeacher("en", tmp_path / "en", "y", model())}
    plan = plan_layers(KdConfig(), dataclasses.replace(TINY, num_layers=2), teachers)
    assert plan.student == [1, 2] and plan.teacher == {"de": [2, 4], "en": [1, 2]} and plan.weights == [1.0, 1.0]
    with pytest.raises(ConfigError, match=r"en=mlkd:.*en: kd teacher_layers \[3\] are not layers of this 2-layer teacher; name layers 1..2"):
        plan_layers(KdConfig(student_layers=(2,), teacher_layers=(3,)), TINY, teachers)
    with pytest.raises(ConfigError, match="layer_weights has 1 entries for 2 student layers"):
        plan_layers(KdConfig(layer_weights=(1.0,)), TINY, teachers)
    with pytest.raises(ConfigError, match="needs targets: on-the-fly"):
        KdConfig(attention_weight=1.0)


def test_teacher_argument_forms():
    assert parse_teacher_arg("exp/teacher_en") == TeacherSpec(None, "mlkd", Path("exp/teacher_en"))
    assert parse_teacher_arg("en=exp/t") == TeacherSpec("en", "mlkd", Path("exp/t"))
    assert parse_teacher_arg("exp/a=b/t") == TeacherSpec(None, "mlkd", Path("exp/a=b/t"))
    assert parse_teacher_arg("de=hf:models/xlsr-de") == TeacherSpec("de", "hf", Path("models/xlsr-de"))
    assert parse_teacher_arg("ru=onnx:m/ru") == TeacherSpec("ru", "onnx", Path("m/ru"), "zipformer-ctc")
    assert parse_teacher_arg("ru=onnx-nemo-ctc:m/ru") == TeacherSpec("ru", "onnx", Path("m/ru"), "nemo-ctc")
    assert str(parse_teacher_arg("ru=onnx-nemo-ctc:m/ru")) == "ru=onnx-nemo-ctc:m/ru"
    with pytest.raises(ConfigError, match="unknown sherpa-onnx loader 'whisper'; use one of onnx-zipformer-ctc"):
        parse_teacher_arg("ru=onnx-whisper:m/ru")
    with pytest.raises(ConfigError, match="unknown kind 'tf'"):
        parse_teacher_arg("ru=tf:m/ru")


# -- routing -----------------------------------------------------------------------------------

def two_teachers(tmp_path) -> dict[str, Teacher]:
    return {"de": MlkdTeacher("de", tmp_path / "de", "d", model(seed=1)), "en": MlkdTeacher("en", tmp_path / "en", "e", model(seed=2))}


def test_each_utterance_goes_to_its_own_teacher(tmp_path):
    teachers = two_teachers(tmp_path)
    batch = make_batch([90, 60, 75], ["de", "en", "de"])
    targets = run_teachers(teachers, TeacherInputs(batch.features, batch.feature_lens), batch.langs, {"de": [1, 2], "en": [2]},
                           0.04, log_probs=True)
    assert targets["de"].index.tolist() == [0, 2] and targets["en"].index.tolist() == [1]
    with torch.no_grad():
        for lang, rows in (("de", [0, 2]), ("en", [1])):
            for row, got in zip(rows, range(len(rows))):
                n = int(batch.feature_lens[row])
                alone = teachers[lang].model(batch.features[row:row + 1, :n], batch.feature_lens[row:row + 1])
                frames = int(alone.lengths[0])
                assert targets[lang].lengths[got].item() == frames
                picked = [1, 2] if lang == "de" else [2]
                for k, layer in enumerate(picked):
                    assert torch.allclose(targets[lang].hidden[k][got, :frames], alone.hidden[layer - 1][0], atol=1e-5)
                assert torch.allclose(targets[lang].log_probs[got, :frames], alone.log_probs[0], atol=1e-5)
    with pytest.raises(DataError, match="language 'ru' but no teacher"):
        run_teachers(teachers, TeacherInputs(batch.features, batch.feature_lens), ["de", "en", "ru"], {"de": [1], "en": [1]}, 0.04)


def identity_projections(task: DistillTask) -> None:
    with torch.no_grad():
        for layers in task.projections.values():
            for linear in layers:
                linear.weight.copy_(torch.eye(linear.weight.size(0)))
                linear.bias.zero_()


def test_distill_loss_is_zero_when_the_student_is_each_teacher(tmp_path):
    same = model(seed=3)
    teachers = {lang: MlkdTeacher(lang, tmp_path / lang, lang, same) for lang in ("de", "en")}
    plan = LayerPlan([1, 2], {"de": [1, 2], "en": [1, 2]}, [1.0, 0.5])
    kd = KdConfig(kl_weight=1.0, targets="on-the-fly", attention_weight=1.0)
    task = DistillTask(same, teachers, plan, kd, tokenizer=None)
    identity_projections(task)
    batch = make_batch([80, 50, 64], ["en", "de", "en"])
    total, terms = task(batch)
    assert total.item() == pytest.approx(0.0, abs=1e-5) and set(terms) == {"kd", "kd.l1", "kd.l2", "kl", "attention"}


def test_distill_loss_weights_languages_by_frames(tmp_path):
    teachers = two_teachers(tmp_path)
    student = model(seed=4)
    plan = LayerPlan([2], {"de": [2], "en": [2]}, [2.0])
    task = DistillTask(student, teachers, plan, KdConfig(ctc_weight=0.5, targets="on-the-fly"), tokenizer=None)
    batch = make_batch([80, 50, 64], ["en", "de", "en"])
    with torch.no_grad():
        out = student(batch.features, batch.feature_lens)
        targets = task.teacher_targets(batch)
        total, terms = task.losses(out, targets, batch)
        per_lang = {}
        for lang, t in targets.items():
            length = t.hidden[0].size(1)
            projected = task.projections[lang][0](out.hidden[1][t.index, :length])
            per_lang[lang] = (hidden_kd_loss(projected, t.hidden[0], t.lengths).item(), int(t.lengths.sum()))
    frames = sum(n for _, n in per_lang.values())
    expected_layer = sum(loss * n for loss, n in per_lang.values()) / frames
    assert terms["kd.l2"].item() == pytest.approx(expected_layer, rel=1e-5)
    assert terms["kd"].item() == pytest.approx(2.0 * expected_layer, rel=1e-5)
    ctc = ctc_loss(out.log_probs, out.lengths, batch.targets).item()
    assert total.item() == pytest.approx(2.0 * expected_layer + 0.5 * ctc, rel=1e-5)


def test_intermediate_ctc_reads_a_lower_layer_through_the_ctc_head_on_transcribed_rows(tmp_path):
    teachers = two_teachers(tmp_path)
    student = model(dataclasses.replace(TINY, num_layers=4), seed=5)
    kd = KdConfig(ctc_weight=1.0, inter_ctc_weight=0.3, targets="on-the-fly")
    plan = plan_layers(kd, student.config, teachers)
    assert plan.inter_ctc == 2  # the middle layer by default
    task = DistillTask(student, teachers, plan, kd, tokenizer=None)
    batch = make_batch([80, 50, 64], ["en", "de", "en"])
    batch = dataclasses.replace(batch, targets=[batch.targets[0], None, batch.targets[2]])  # row 1 untranscribed
    with torch.no_grad():
        out = student(batch.features, batch.feature_lens)
        total, terms = task.losses(out, task.teacher_targets(batch), batch)
        rows = torch.tensor([0, 2])
        layer2 = student.ctc_head(out.hidden[1]).log_softmax(-1)
        inter = ctc_loss(layer2[rows], out.lengths[rows], [batch.targets[0], batch.targets[2]]).item()
        top = ctc_loss(out.log_probs[rows], out.lengths[rows], [batch.targets[0], batch.targets[2]]).item()
    assert terms["inter_ctc"].item() == pytest.approx(inter, rel=1e-5) and inter != pytest.approx(top, rel=1e-3)
    assert total.item() == pytest.approx(terms["kd"].item() + top + 0.3 * inter, rel=1e-5)
    assert plan_layers(dataclasses.replace(kd, inter_ctc_layer=3), student.config, teachers).inter_ctc == 3
    assert plan_layers(KdConfig(inter_ctc_layer=3), student.config, teachers).inter_ctc == 0  # weight 0: off
    with pytest.raises(ConfigError, match=r"kd inter_ctc_layer 4 is not below the top of the 4-layer student.*1..3"):
        plan_layers(dataclasses.replace(kd, inter_ctc_layer=4), student.config, teachers)
    with pytest.raises(ConfigError, match="inter_ctc_layer must be >= 0"):
        KdConfig(inter_ctc_layer=-1)


def test_bf16_teachers_give_fp32_targets_close_to_fp32_ones(tmp_path, monkeypatch):
    """kd teacher_precision: bf16 runs the teachers under bf16 autocast (here forced native), and
    their targets reach the losses in fp32, within bf16's rounding of the fp32 teachers' targets."""
    from mlkd_cli.train import loop

    monkeypatch.setattr(loop, "cpu_has_bf16", lambda: True)
    teachers = two_teachers(tmp_path)
    plan = LayerPlan([1, 2], {"de": [1, 2], "en": [1, 2]}, [1.0, 1.0])
    kd = KdConfig(kl_weight=1.0, targets="on-the-fly")
    batch = make_batch([80, 50, 64], ["en", "de", "en"])
    reference = DistillTask(model(), teachers, plan, kd, tokenizer=None).teacher_targets(batch)
    bf16 = DistillTask(model(), teachers, plan, kd, tokenizer=None, teacher_precision="bf16").teacher_targets(batch)
    for lang in ("de", "en"):
        for ours, theirs in zip(bf16[lang].hidden + [bf16[lang].log_probs], reference[lang].hidden + [reference[lang].log_probs]):
            assert ours.dtype == torch.float32 and not torch.equal(ours, theirs)
            assert (ours - theirs).abs().max().item() <= 0.05 * theirs.abs().max().item()
    inside_bf16 = DistillTask(model(), teachers, plan, kd, tokenizer=None, teacher_precision="fp32")
    with loop.autocast("bf16", torch.device("cpu")):  # a bf16 student's step: fp32 teachers stay fp32
        again = inside_bf16.teacher_targets(batch)
    assert all(torch.equal(a, b) for a, b in zip(again["en"].hidden, reference["en"].hidden))


def test_teacher_precision_defaults_to_the_trainings_and_is_checked():
    from mlkd_cli.experiment.config import DistillConfig, TrainConfig

    train = TrainConfig(precision="bf16")
    assert DistillConfig(data="d", teachers=("en=x",), train=train).teacher_precision == "bf16"
    assert DistillConfig(data="d", teachers=("en=x",), train=train, kd=KdConfig(teacher_precision="fp32")).teacher_precision == "fp32"
    with pytest.raises(ConfigError, match="kd teacher_precision 'int8' is not one of fp32, bf16, fp16"):
        KdConfig(teacher_precision="int8")


def test_teachers_are_frozen_and_not_part_of_the_student_checkpoint(tmp_path):
    teachers = two_teachers(tmp_path)
    for t in teachers.values():
        t.model.requires_grad_(False)
    task = DistillTask(model(), teachers, LayerPlan([1], {"de": [1], "en": [1]}, [1.0]), KdConfig(), tokenizer=None)
    keys = set(task.state_dict())
    assert any(k.startswith("projections.de.0") for k in keys) and any(k.startswith("asr_model.") for k in keys)
    assert not any("teacher" in k for k in keys)
    assert all(p.requires_grad for p in task.parameters())


# -- language sampling -------------------------------------------------------------------------

def cuts_of(langs: dict[str, int], duration: float = 2.0) -> CutSet:
    cuts = []
    for lang, n in langs.items():
        for i in range(n):
            cid = f"{lang}-{i}"
            cuts.append(MonoCut(cid, 0.0, duration, 0, supervisions=[
                SupervisionSegment(cid, cid, 0.0, duration, language=lang, text="a")]))
    return CutSet.from_cuts(cuts)


def test_language_weights_hand_computed():
    assert language_weights({"a": 4.0, "b": 1.0}, 1.0) == pytest.approx({"a": 0.8, "b": 0.2})
    assert language_weights({"a": 4.0, "b": 1.0}, 0.5) == pytest.approx({"a": 2 / 3, "b": 1 / 3})
    assert language_weights({"a": 4.0, "b": 1.0}, 0.0) == pytest.approx({"a": 0.5, "b": 0.5})


def test_language_mix_upsamples_the_small_language():
    mixed = language_mix(cuts_of({"big": 90, "small": 10}), alpha=0.0, seed=1)
    drawn = Counter(c.supervisions[0].language for c, _ in zip(mixed, range(2000)))
    assert abs(drawn["small"] / 2000 - 0.5) < 0.05  # balanced although the data is 9:1
    single = cuts_of({"only": 5})
    assert language_mix(single, 0.0, 1) is single


# -- fine-tuning -------------------------------------------------------------------------------

ADAPTIVE = dataclasses.replace(TINY, languages=("de", "en"))


def test_finetune_loss_is_ctc_plus_weighted_language_cross_entropy():
    m = model(ADAPTIVE).train()
    task = FinetuneTask(m, tokenizer=None, lid_weight=0.3)
    batch = make_batch([70, 90], ["en", "de"])
    torch.manual_seed(0)
    total, terms = task(batch)
    assert total.item() == pytest.approx(terms["ctc"] + 0.3 * terms["lid"], rel=1e-6)
    m.eval()
    with torch.no_grad():
        out = m(batch.features, batch.feature_lens, language=torch.tensor([1, 0]))
        expected_lid = torch.nn.functional.cross_entropy(out.lid_logits, torch.tensor([1, 0])).item()
        _, eval_terms = FinetuneTask(m, None, 0.3)(batch)
    assert eval_terms["lid"] == pytest.approx(expected_lid, rel=1e-5)
    with pytest.raises(DataError, match="language.s. fr, which the model does not know"):
        task(make_batch([70], ["fr"]))


def test_a_plain_model_initialises_a_language_adaptive_one_and_nothing_else_is_skipped():
    plain, adaptive = model(), model(ADAPTIVE, seed=5)
    load_model_state(adaptive, plain.state_dict(), "plain.pt", new_modules=LANGUAGE_MODULES)
    assert torch.equal(adaptive.ctc_head.weight, plain.ctc_head.weight)
    state = plain.state_dict()
    del state["ctc_head.bias"]
    with pytest.raises(ConfigError, match="1 missing key.s.: ctc_head.bias"):
        load_model_state(model(ADAPTIVE), state, "plain.pt", new_modules=LANGUAGE_MODULES)
    with pytest.raises(ConfigError, match="missing key.s.: language_embedding.weight, lid_head.bias"):
        load_model_state(model(ADAPTIVE), plain.state_dict(), "plain.pt")


# -- the recipe's presets (local/run.sh --preset NAME) ----------------------------------------

CONF = Path(__file__).resolve().parents[2] / "conf"
PRESETS = ("tiny", "demo", "full")


@pytest.mark.parametrize("preset", PRESETS)
def test_preset_is_complete_and_baseline_gets_distill_plus_finetune_updates(preset):
    """Every file local/run.sh reads for the preset loads as its typed config."""
    from mlkd_cli.config import load_yaml
    from mlkd_cli.experiment.config import TrainConfig

    steps = {name: load_yaml(TrainConfig, CONF / "train" / f"{name}_{preset}.yaml").max_steps
             for name in ("teacher", "distill", "finetune", "baseline")}
    assert steps["baseline"] == steps["distill"] + steps["finetune"]
    kd = load_yaml(KdConfig, CONF / "kd" / f"{preset}.yaml")
    student = load_yaml(ModelConfig, CONF / "model" / f"student_{preset}.yaml")
    load_yaml(ModelConfig, CONF / "model" / f"{preset}.yaml")
    assert not kd.layer_weights or len(kd.layer_weights) == len(kd.student_layers or range(student.num_layers))


@pytest.mark.parametrize("preset, langs", [("demo", ("de", "en", "es", "it", "ru")), ("full", ("de", "en", "es", "fr", "it"))])
@pytest.mark.parametrize("vocab", [60, 120, 500])
def test_student_has_at_most_a_third_of_a_teachers_parameters(preset, langs, vocab):
    from mlkd_cli.config import load_yaml
    from mlkd_cli.models import num_parameters

    def size(name: str, languages=()) -> int:
        config = load_yaml(ModelConfig, CONF / "model" / f"{name}.yaml").with_vocab(vocab)
        return num_parameters(build_model(dataclasses.replace(config, languages=languages)))

    assert size(f"student_{preset}", langs) <= size(preset) / 3
