"""`mlkd distill` and `mlkd finetune` end to end on tiny data: caching, linking, resume, bad inputs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import yaml
from lhotse import CutSet

from conftest import TINY_MODEL, run_cli
from fixtures.shared import copy_model_dir
from mlkd_cli.data.prepare import PreparedData
from mlkd_cli.distill.cache import cached_targets, load_cached_targets
from mlkd_cli.distill.ensemble import run_teachers
from mlkd_cli.teachers.base import TeacherInputs
from mlkd_cli.teachers.mlkd import MlkdTeacher
from mlkd_cli.models import load_model
from mlkd_cli.experiment.model_dir import load_model_dir
from mlkd_cli.score import score_decode_dir


def train_yaml(path: Path, **values) -> Path:
    base = dict(max_steps=30, max_duration=15.0, lr=0.003, warmup_steps=5, valid_interval=15, log_interval=1,
                keep_checkpoints=2, average=2, spec_augment={"enabled": False})
    path.write_text(yaml.safe_dump({**base, **values}))
    return path


def distill_args(data: Path, teachers, cfg: Path, exp: Path, *extra) -> list:
    return ["distill", "--data", data, "--model-config", TINY_MODEL, "--train-config", cfg, *extra, *teachers, exp]


def train_records(exp: Path) -> list[dict]:
    return [r for r in map(json.loads, (exp / "metrics.jsonl").read_text().splitlines()) if r["kind"] == "train"]


@pytest.fixture(scope="module")
def distilled(prepared, tiny_teachers, tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("distill")
    exp = root / "student_kd"
    kd = root / "kd.yaml"
    kd.write_text(yaml.safe_dump({"kl_weight": 1.0, "ctc_weight": 0.5}))
    result = run_cli(*distill_args(prepared, tiny_teachers.values(), train_yaml(root / "t.yaml", max_steps=40),
                                   exp, "--kd-config", kd))
    assert result.exit_code == 0, result.output
    return exp


def assert_final_lid_accuracy_is_the_decoded_one(exp: Path, prepared: Path) -> None:
    """final_metrics.json's dev LID accuracy is what `mlkd decode` + `mlkd score` measure on dev."""
    result = run_cli("decode", exp, prepared / "manifests" / "dev_cuts.jsonl.gz")
    assert result.exit_code == 0, result.output
    report = score_decode_dir(exp / "decode_dev_ctc-greedy")
    final = json.loads((exp / "final_metrics.json").read_text())
    assert final["lid_acc"] == pytest.approx(report.lid.accuracy) and report.lid.num_utts == 13


def test_distill_learns_and_links_its_teachers(distilled: Path, tiny_teachers, prepared):
    records = train_records(distilled)
    first = records[0]
    assert {"kd", "kd.l1", "kd.l2", "kl", "ctc", "lid"} <= set(first)
    assert sum(r["kd"] for r in records[-5:]) < 0.7 * sum(r["kd"] for r in records[:5])
    stage = json.loads((distilled / "stage.json").read_text())
    assert stage["status"] == "done" and stage["command"] == "distill"
    for lang, teacher in tiny_teachers.items():
        assert stage["inputs"][f"teacher:{lang}"]["path"] == str((teacher / "final.pt").resolve())
    loaded = load_model_dir(distilled)
    assert loaded.model.config.languages == ("de", "en", "ru") and sorted(loaded.config.teachers) == sorted(
        f"{lang}={t.resolve()}" for lang, t in tiny_teachers.items())
    assert sorted(p.name for p in (distilled / "teacher_targets").iterdir()) == ["de", "en", "ru"]
    assert_final_lid_accuracy_is_the_decoded_one(distilled, prepared)


def test_cached_and_on_the_fly_targets_agree(prepared, tiny_teachers, tmp_path):
    cfg = train_yaml(tmp_path / "t.yaml", max_steps=3, valid_interval=3, average=1)
    for mode in ("cached", "on-the-fly"):
        result = run_cli(*distill_args(prepared, tiny_teachers.values(), cfg, tmp_path / mode, "--targets", mode))
        assert result.exit_code == 0, result.output
    cached, live = train_records(tmp_path / "cached"), train_records(tmp_path / "on-the-fly")
    assert [r["kd"] for r in cached] == pytest.approx([r["kd"] for r in live], rel=2e-3)  # fp16 cache
    assert not (tmp_path / "on-the-fly" / "teacher_targets").exists()


def test_cache_is_shared_reused_and_keyed_by_teacher_and_layers(prepared, tiny_teachers, tmp_path):
    data = PreparedData(prepared)
    cuts = data.cuts("dev").to_eager().filter(lambda c: c.supervisions[0].language == "de").to_eager()
    model, _ = load_model(tiny_teachers["de"] / "final.pt")
    teacher = MlkdTeacher("de", tiny_teachers["de"], "one", model.eval())
    root = tmp_path / "cache"

    def targets(teacher, layers, student):
        return cached_targets(root, tmp_path / student / "teacher_targets", teacher, cuts, layers, True,
                              torch.device("cpu"), "fp32", 30.0, student_shift=0.04)

    attached = targets(teacher, [1, 2], "a")
    (first,) = list(root.iterdir())
    assert first.name.startswith("de-") and (tmp_path / "a" / "teacher_targets" / "de").resolve() == first
    stamp = (first / "cuts.jsonl.gz").stat().st_mtime_ns
    again = targets(teacher, [1, 2], "b")  # a second student of the same teacher and data: the same cache
    assert list(root.iterdir()) == [first] and (first / "cuts.jsonl.gz").stat().st_mtime_ns == stamp
    assert (tmp_path / "b" / "teacher_targets" / "de").resolve() == first
    assert [c.id for c in again] == [c.id for c in attached]
    # the cached arrays are what the teacher computes now (fp16)
    batch_cuts = CutSet.from_cuts(list(attached)[:3])
    loaded = load_cached_targets(batch_cuts)["de"]
    from lhotse.dataset.collation import collate_features
    feats, lens = collate_features(batch_cuts)
    live = run_teachers({"de": teacher}, TeacherInputs(feats, lens), ["de"] * 3, {"de": [1, 2]}, 0.04, log_probs=True)["de"]
    assert torch.equal(loaded.lengths, live.lengths)
    for k in range(2):
        for i, n in enumerate(live.lengths.tolist()):
            assert torch.allclose(loaded.hidden[k][i, :n], live.hidden[k][i, :n], atol=2e-2, rtol=1e-2)
    # a retrained teacher (new digest) or other layers get caches of their own; the first stays
    changed = MlkdTeacher("de", tiny_teachers["de"], "two", model)
    targets(changed, [1, 2], "a")
    second = (tmp_path / "a" / "teacher_targets" / "de").resolve()
    assert sorted(root.iterdir()) == sorted([first, second]) and (first / "cuts.jsonl.gz").stat().st_mtime_ns == stamp
    assert json.loads((second / "stage.json").read_text())["inputs"]["teacher"]["digest"] == "two"
    one_layer = targets(changed, [2], "a")
    third = (tmp_path / "a" / "teacher_targets" / "de").resolve()
    assert len(list(root.iterdir())) == 3 and json.loads((third / "stage.json").read_text())["config"]["layers"] == [2]
    assert load_cached_targets(CutSet.from_cuts(list(one_layer)[:3]))["de"].hidden[0].shape[-1] == model.config.d_model
    assert len(load_cached_targets(CutSet.from_cuts(list(one_layer)[:3]))["de"].hidden) == 1


def test_finetune_from_the_student_and_from_scratch(prepared, distilled, tmp_path):
    cfg = train_yaml(tmp_path / "t.yaml", max_steps=20, valid_interval=10)
    exp = tmp_path / "student"
    result = run_cli("finetune", "--data", prepared, "--init", distilled, "--lid-weight", "0.5",
                     "--train-config", cfg, exp)
    assert result.exit_code == 0, result.output
    model, config = load_model_dir(exp).model, load_model_dir(exp).config
    assert model.config.languages == ("de", "en", "ru") and config.init == str(distilled.resolve())
    student = load_model_dir(distilled).model
    assert model.config.d_model == student.config.d_model
    records = train_records(exp)
    assert {"ctc", "lid"} <= set(records[0])
    assert records[0]["loss"] == pytest.approx(records[0]["ctc"] + 0.5 * records[0]["lid"], rel=1e-5)
    final = json.loads((exp / "final_metrics.json").read_text())
    assert "cer" in final
    assert_final_lid_accuracy_is_the_decoded_one(exp, prepared)
    stage = json.loads((exp / "stage.json").read_text())
    assert stage["inputs"]["init"]["path"] == str((distilled / "final.pt").resolve())
    # the same stage from scratch: the no-KD baseline
    result = run_cli("finetune", "--data", prepared, "--model-config", TINY_MODEL, "--train-config", cfg,
                     tmp_path / "baseline")
    assert result.exit_code == 0, result.output
    assert "init" not in json.loads((tmp_path / "baseline" / "stage.json").read_text())["inputs"]


def test_bad_teachers_are_clear_errors(prepared, tiny_teachers, tmp_path):
    cfg = train_yaml(tmp_path / "t.yaml")
    out = tmp_path / "student"
    result = run_cli(*distill_args(prepared, [tiny_teachers["en"], tiny_teachers["de"]], cfg, out))
    assert result.exit_code == 1 and "no teacher for language(s) ru" in result.output
    assert "mlkd train-teacher --data" in result.output
    result = run_cli(*distill_args(prepared, [*tiny_teachers.values(), f"fr={tiny_teachers['en']}"], cfg, out))
    assert result.exit_code == 1 and "teacher for language 'fr'" in result.output and "leave this teacher out" in result.output
    result = run_cli(*distill_args(prepared, [*tiny_teachers.values(), f"en={tiny_teachers['de']}"], cfg, out))
    assert result.exit_code == 1 and "two teachers for language 'en'" in result.output
    # a teacher whose features differ: its model dir says it read another frame shift
    moved = tmp_path / "teacher_ru"
    copy_model_dir(tiny_teachers["ru"], moved)
    raw = yaml.safe_load((moved / "config.yaml").read_text())
    raw["inference"]["features"]["frame_shift"] = 0.02
    (moved / "config.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    result = run_cli(*distill_args(prepared, [tiny_teachers["en"], tiny_teachers["de"], moved], cfg, out))
    assert result.exit_code == 1 and f"{moved}: the teacher was trained on features that differ" in result.output
    assert "frame_shift 0.02 vs 0.01" in result.output
    assert not out.exists()


def test_bad_finetune_inputs_are_clear_errors(prepared, distilled, tmp_path):
    cfg = train_yaml(tmp_path / "t.yaml")
    out = tmp_path / "student"
    result = run_cli("finetune", "--data", prepared, "--init", distilled, "--model-config", TINY_MODEL,
                     "--train-config", cfg, out)
    assert result.exit_code == 1 and "may only add a `streaming:` block; this one has none" in result.output
    result = run_cli("finetune", "--data", prepared, "--init", tmp_path / "nowhere", "--train-config", cfg, out)
    assert result.exit_code == 1 and "is not an mlkd model directory" in result.output
    broken = tmp_path / "broken"
    copy_model_dir(distilled, broken)
    (broken / "final.pt").write_bytes(b"not a checkpoint")
    result = run_cli("finetune", "--data", prepared, "--init", broken, "--train-config", cfg, out)
    assert result.exit_code == 1 and "final.pt: not a readable checkpoint" in result.output
    assert not out.exists()


def test_a_streaming_student_distils_from_full_context_teachers_and_keeps_streaming(prepared, tiny_teachers, tmp_path):
    """distill (KD delayed 80 ms) → finetune → decode --streaming: the config carries the streaming
    block, the loss falls, and streaming decoding of the test set gives the chunked decode's text."""
    streaming_model = Path(__file__).resolve().parents[2] / "conf" / "model" / "student_tiny_streaming.yaml"
    kd = tmp_path / "kd.yaml"
    kd.write_text(yaml.safe_dump({"kl_weight": 1.0, "ctc_weight": 0.5, "delay_ms": 80}))
    student_kd, student = tmp_path / "student_kd", tmp_path / "student"
    result = run_cli("distill", "--data", prepared, "--model-config", streaming_model, "--kd-config", kd,
                     "--train-config", train_yaml(tmp_path / "t.yaml", max_steps=30), *tiny_teachers.values(), student_kd)
    assert result.exit_code == 0, result.output
    records = train_records(student_kd)
    assert records[-1]["kd"] < 0.8 * records[0]["kd"]
    result = run_cli("finetune", "--data", prepared, "--init", student_kd,
                     "--train-config", train_yaml(tmp_path / "f.yaml", max_steps=10), student)
    assert result.exit_code == 0, result.output
    assert load_model_dir(student).model.config.streaming.chunk_ms == (160, 320)
    test = prepared / "manifests" / "test_cuts.jsonl.gz"
    streamed = run_cli("decode", student, test, "--streaming", "--chunk-ms", "160")
    chunked = run_cli("decode", student, test, "--chunk-ms", "160")
    assert streamed.exit_code == 0 and chunked.exit_code == 0, streamed.output + chunked.output
    read = lambda d: (student / d / "hyp.text").read_text().splitlines()  # noqa: E731
    same = sum(a == b for a, b in zip(read("decode_test_ctc-greedy_streaming-160ms"), read("decode_test_ctc-greedy_chunk-160ms")))
    assert same >= 0.9 * len(read("decode_test_ctc-greedy_chunk-160ms"))  # online fbank vs lhotse's: ~1e-4 apart


def test_a_full_context_student_named_without_languages_teaches_each_of_them(prepared, distilled, tmp_path):
    """A language-adaptive student as the teacher of a streaming one: named as DIR, it teaches every
    language of the data (one model); config.yaml records it once per language."""
    streaming_model = Path(__file__).resolve().parents[2] / "conf" / "model" / "student_tiny_streaming.yaml"
    kd = tmp_path / "kd.yaml"
    kd.write_text(yaml.safe_dump({"kl_weight": 1.0, "ctc_weight": 0.5}))
    exp = tmp_path / "student_kd"
    result = run_cli("distill", "--data", prepared, "--model-config", streaming_model, "--kd-config", kd,
                     "--train-config", train_yaml(tmp_path / "t.yaml", max_steps=20), distilled, exp)
    assert result.exit_code == 0, result.output
    config = yaml.safe_load((exp / "config.yaml").read_text())
    assert config["teachers"] == [f"{lang}={distilled.resolve()}" for lang in ("de", "en", "ru")]
    records = train_records(exp)
    assert records[-1]["kd"] < 0.8 * records[0]["kd"]
    again = run_cli("distill", "--data", prepared, "--model-config", streaming_model, "--kd-config", kd,
                    "--train-config", tmp_path / "t.yaml", distilled, f"en={distilled}", tmp_path / "other")
    assert again.exit_code == 1 and "two teachers for language 'en'" in again.output
