"""One distillation run with a teacher of each kind: mlkd (en), Hugging Face (de), sherpa-onnx (ru)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "distill"))
from conftest import TINY_MODEL, run_cli  # noqa: E402
from test_distill import train_records, train_yaml  # noqa: E402

from mlkd_cli.experiment.model_dir import load_model_dir  # noqa: E402


@pytest.fixture(scope="module")
def onnx_ru(tiny_teachers, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("onnx") / "ru"
    result = run_cli("export", tiny_teachers["ru"], "-o", out)
    assert result.exit_code == 0, result.output
    return out


def kd_yaml(path: Path, **values) -> Path:
    path.write_text(yaml.safe_dump({"ctc_weight": 1.0, "kl_weight": 1.0, "sequence_weight": 1.0, **values}))
    return path


def distill(prepared, teachers: list[str], root: Path, name: str, kd: Path, steps: int = 20):
    cfg = train_yaml(root / "t.yaml", max_steps=steps, valid_interval=10)
    return run_cli("distill", "--data", prepared, "--model-config", TINY_MODEL, "--train-config", cfg,
                   "--kd-config", kd, *teachers, root / name)


@pytest.mark.parametrize("targets", ["cached", "on-the-fly"])
def test_teachers_of_every_kind_in_one_run(prepared, tiny_teachers, hf_wav2vec2, onnx_ru, tmp_path, targets):
    teachers = [str(tiny_teachers["en"]), f"de=hf:{hf_wav2vec2}", f"ru=onnx:{onnx_ru}"]
    result = distill(prepared, teachers, tmp_path, "student", kd_yaml(tmp_path / "kd.yaml", targets=targets))
    assert result.exit_code == 0, result.output
    exp = tmp_path / "student"
    records = train_records(exp)
    assert {"kd", "kl", "ctc", "sequence", "lid"} <= set(records[0])
    assert all(r["sequence"] >= 0 for r in records) and any(r["sequence"] > 0 for r in records)
    loaded = load_model_dir(exp)
    assert sorted(loaded.config.teachers) == sorted([f"de=hf:{hf_wav2vec2.resolve()}", f"en={tiny_teachers['en'].resolve()}",
                                                     f"ru=onnx-zipformer-ctc:{onnx_ru.resolve()}"])
    stage = json.loads((exp / "stage.json").read_text())
    assert stage["inputs"]["teacher:de"]["path"] == str(hf_wav2vec2.resolve())
    assert stage["inputs"]["teacher:ru"]["path"] == str(onnx_ru.resolve())
    # every teacher transcribed its language once; only white boxes have layer targets
    assert sorted(p.name for p in (exp / "teacher_transcripts").iterdir()) == ["de", "en", "ru"]
    if targets == "cached":
        assert sorted(p.name for p in (exp / "teacher_targets").iterdir()) == ["de", "en"]
    ru = [json.loads(line) for line in (exp / "teacher_transcripts" / "ru" / "transcripts.jsonl").read_text().splitlines()]
    assert len(ru) == sum(1 for c in load_cuts(prepared) if c.supervisions[0].language == "ru")
    assert all(row["confidence"] is None for row in ru)  # a black box says no confidence
    # an up-to-date rerun does nothing; the mixed teachers are part of the record
    again = distill(prepared, teachers, tmp_path, "student", kd_yaml(tmp_path / "kd.yaml", targets=targets))
    assert again.exit_code == 0 and "up to date" in again.output


def load_cuts(prepared):
    from mlkd_cli.data.prepare import PreparedData

    return PreparedData(prepared).cuts("train")


def test_what_a_teacher_cannot_serve_is_refused_before_training(prepared, tiny_teachers, hf_wav2vec2, onnx_ru, tmp_path):
    teachers = [str(tiny_teachers["en"]), f"de=hf:{hf_wav2vec2}", f"ru=onnx:{onnx_ru}"]
    result = distill(prepared, teachers, tmp_path, "a", kd_yaml(tmp_path / "kd.yaml", sequence_weight=0.0))
    assert result.exit_code == 1 and f"teacher ru=onnx-zipformer-ctc:{onnx_ru} is a black box" in result.output
    assert "set kd sequence_weight > 0" in result.output
    result = distill(prepared, teachers, tmp_path, "b", kd_yaml(tmp_path / "kd.yaml", min_vocab_coverage=1.0,
                                                                   teacher_layers=[1, 3], student_layers=[1, 2]))
    assert result.exit_code == 1 and f"teacher en=mlkd:{tiny_teachers['en']}: kd teacher_layers [3] are not layers " \
        "of this 2-layer teacher; name layers 1..2" in result.output
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_a_vocabulary_below_the_coverage_threshold_refuses_posterior_kd(prepared, tiny_teachers, transformers, tmp_path):
    from hf_checkpoints import save_tiny_ctc

    few = save_tiny_ctc(tmp_path / "few", "wav2vec2", ["<pad>", "|", *"AEIOU"])  # vowels only
    teachers = [str(tiny_teachers["en"]), f"de=hf:{few}", str(tiny_teachers["ru"])]
    result = distill(prepared, teachers, tmp_path, "c", kd_yaml(tmp_path / "kd.yaml"))
    assert result.exit_code == 1 and f"teacher de=hf:{few}: its vocabulary covers" in result.output
    assert "below kd min_vocab_coverage 95%" in result.output and "set kd kl_weight: 0" in result.output
    info = run_cli("teacher-info", "--data", prepared, f"de=hf:{few}")
    assert info.exit_code == 0 and "posterior: no (coverage below 95%)" in info.output


def test_a_teacher_that_fails_on_a_test_utterance_is_named_before_training(prepared, tiny_teachers, hf_wav2vec2,
                                                                          tmp_path, monkeypatch):
    from mlkd_cli.teachers.hf import HfTeacher

    def broken(self, inputs, return_attention=False):
        raise RuntimeError("Given groups=1, weight of size [16, 1, 10], expected input to have 1 channels")

    monkeypatch.setattr(HfTeacher, "forward", broken)
    teachers = [str(tiny_teachers["en"]), f"de=hf:{hf_wav2vec2}", str(tiny_teachers["ru"])]
    result = distill(prepared, teachers, tmp_path, "d", kd_yaml(tmp_path / "kd.yaml", sequence_weight=0.0))
    assert result.exit_code == 1 and len(result.output.splitlines()) == 1
    assert f"teacher de=hf:{hf_wav2vec2} failed on utterance " in result.output
    assert "(RuntimeError: Given groups=1" in result.output and "check that it is a CTC model of 16 kHz speech" in result.output
    assert not (tmp_path / "d").exists()
