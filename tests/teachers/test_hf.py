"""Hugging Face CTC checkpoints as teachers: the real transformers classes, tiny, no download."""

from __future__ import annotations

import json
import shutil
import sys

import pytest
import torch
from lhotse import CutSet

from conftest import run_cli
from hf_checkpoints import GERMAN_VOCAB, frames_of, save_tiny_ctc
from mlkd_cli.data.prepare import PreparedData
from mlkd_cli.distill.ensemble import collate_inputs, run_teachers
from mlkd_cli.errors import ConfigError
from mlkd_cli.experiment.config import KdConfig
from mlkd_cli.models import ModelConfig, build_model
from mlkd_cli.teachers.base import TeacherInputs
from mlkd_cli.teachers.hf import HfTeacher
from mlkd_cli.teachers.load import load_teacher
from mlkd_cli.train.batches import AsrDataset
from mlkd_cli.training_stages.distill import DistillTask, LayerPlan


@pytest.mark.parametrize("checkpoint, mask", [("hf_wav2vec2", True), ("hf_hubert", False)])
def test_a_checkpoint_declares_its_input_frames_layers_and_vocabulary(checkpoint, mask, request):
    path = request.getfixturevalue(checkpoint)
    teacher = load_teacher(f"de=hf:{path}")
    assert isinstance(teacher, HfTeacher) and teacher.lang == "de" and teacher.input == "waveform"
    assert teacher.frame_shift == pytest.approx(0.02) and teacher.layer_widths == (32, 32, 32)
    assert teacher.tokens == tuple(GERMAN_VOCAB) and teacher.blank == 0
    assert teacher.uses_attention_mask is mask  # layer-norm feature encoders take a mask, group-norm ones must not
    samples = torch.tensor([16000, 12000, 8000])
    audio = torch.randn(3, 16000) * (torch.arange(16000)[None] < samples[:, None])
    out = teacher.forward(TeacherInputs(torch.zeros(3, 1, 80), torch.ones(3, dtype=torch.long), audio, samples))
    expected = [frames_of(n) for n in samples.tolist()]
    assert expected == [48, 36, 23]  # by hand: 16000 samples -> 3199 -> 798 -> 198 -> 48
    assert out.lengths.tolist() == expected and len(out.hidden) == 3
    assert out.hidden[0].shape == (3, 48, 32) and out.log_probs.shape == (3, 48, len(GERMAN_VOCAB))
    if mask:  # with its attention mask a padded utterance gives what it gives alone
        alone = teacher.forward(TeacherInputs(torch.zeros(1, 1, 80), torch.ones(1, dtype=torch.long),
                                              audio[2:, :8000], samples[2:]))
        assert torch.allclose(out.hidden[-1][2, :23], alone.hidden[-1][0], atol=1e-4)


def de_batch(prepared, n: int = 4):
    cuts = [c for c in PreparedData(prepared).cuts("dev") if c.supervisions[0].language == "de"]
    return CutSet.from_cuts(cuts[:n])


def test_targets_come_out_at_the_student_frame_rate(prepared, hf_wav2vec2):
    teacher = load_teacher(f"de=hf:{hf_wav2vec2}")
    cuts = de_batch(prepared)
    inputs = collate_inputs(cuts, audio=True)
    targets = run_teachers({"de": teacher}, inputs, ["de"] * len(cuts), {"de": [1, 3]}, 0.04)["de"]
    student_frames = (((inputs.feature_lens - 1) // 2 - 1) // 2).tolist()
    assert targets.lengths.tolist() == student_frames
    own = teacher.forward(inputs)
    for i, n in enumerate(student_frames):  # student frame j = mean of teacher frames 2j, 2j+1
        t = own.hidden[2][i]
        assert torch.allclose(targets.hidden[1][i, 0], (t[0] + t[1]) / 2, atol=1e-5)
        assert torch.allclose(targets.hidden[1][i, n // 2], (t[2 * (n // 2)] + t[2 * (n // 2) + 1]) / 2, atol=1e-5)
    assert own.lengths.tolist() == [frames_of(int(s)) for s in inputs.audio_lens]


def test_the_student_learns_a_fixed_hf_teacher_s_layers(prepared, hf_hubert):
    torch.manual_seed(0)
    teacher = load_teacher(f"de=hf:{hf_hubert}")
    data = PreparedData(prepared)
    student = build_model(ModelConfig(d_model=32, num_layers=2, num_heads=2, ff_mult=2, conv_kernel=7,
                                      subsampling_channels=16, vocab_size=data.tokenizer().vocab_size))
    task = DistillTask(student, {"de": teacher}, LayerPlan([1, 2], {"de": [2, 3]}, [1.0, 1.0]),
                       KdConfig(targets="on-the-fly"), data.tokenizer())
    assert [p.weight.shape for p in task.projections["de"]] == [(32, 32), (32, 32)]
    batch = AsrDataset(data.tokenizer(), with_audio=True)[de_batch(prepared, 6)]
    optimizer = torch.optim.Adam([p for p in task.parameters() if p.requires_grad], lr=3e-3)
    losses = []
    for _ in range(40):
        loss, _ = task(batch)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0] and losses[-1] < losses[10], losses[::10]


def test_teacher_info_shows_what_mlkd_sees(prepared, hf_wav2vec2):
    result = run_cli("teacher-info", "--data", prepared, f"de=hf:{hf_wav2vec2}")
    assert result.exit_code == 0, result.output
    rows = dict(line.split(None, 1) if not line.startswith(("frame shift", "vocab map", "KD terms", "test run"))
                else (line[:11].strip(), line[11:].strip()) for line in result.output.splitlines())
    assert rows["kind"] == "hf (Wav2Vec2ForCTC)" and rows["language"] == "de"
    assert rows["frame shift"] == "20 ms" and rows["layers"] == "3 × 32"
    assert rows["vocabulary"] == "36 tokens, blank '<pad>' (id 0)"
    assert rows["input"].startswith("16 kHz waveform; zero mean, unit variance per utterance; padded batches with attention mask")
    assert "covers 100.0% of the 'de' training text's characters" in rows["vocab map"]
    assert rows["KD terms"] == "layer: yes; posterior: yes; sequence: yes (its transcripts)"


def test_bad_checkpoints_get_one_line_naming_the_file_and_the_fix(hf_wav2vec2, tmp_path, monkeypatch):
    broken = tmp_path / "broken"
    shutil.copytree(hf_wav2vec2, broken)
    (broken / "vocab.json").unlink()
    with pytest.raises(ConfigError, match=r"broken/vocab.json: missing; write it with the processor's tokenizer"):
        load_teacher(f"de=hf:{broken}")
    shutil.rmtree(broken)
    shutil.copytree(hf_wav2vec2, broken)
    settings = json.loads((broken / "processor_config.json").read_text())
    settings["feature_extractor"]["sampling_rate"] = 8000
    (broken / "processor_config.json").write_text(json.dumps(settings))
    with pytest.raises(ConfigError, match=r"processor_config.json: sampling_rate 8000; .* use a checkpoint trained at 16000 Hz"):
        load_teacher(f"de=hf:{broken}")
    (broken / "processor_config.json").unlink()
    with pytest.raises(ConfigError, match=r"preprocessor_config.json: missing \(the feature extractor's settings\)"):
        load_teacher(f"de=hf:{broken}")
    with pytest.raises(ConfigError, match="does not say its language; name it as LANG=hf:"):
        load_teacher(f"hf:{hf_wav2vec2}")
    monkeypatch.setitem(sys.modules, "transformers", None)  # as if the extra were not installed
    with pytest.raises(ConfigError, match=r"hf teachers need the transformers package, which is not installed; install it with `pip install 'mlkd\[hf\]'`"):
        load_teacher(f"de=hf:{hf_wav2vec2}")


def test_a_checkpoint_of_another_rate_is_refused_before_loading(transformers, tmp_path):
    path = save_tiny_ctc(tmp_path / "w2v2-8k", "wav2vec2", GERMAN_VOCAB, sampling_rate=8000)
    result = run_cli("teacher-info", f"de=hf:{path}")
    assert result.exit_code == 1 and "sampling_rate 8000" in result.output and len(result.output.splitlines()) == 1
