"""Untranscribed audio: prepared as a set of its own, mixed into distillation at a share, taught
by the teachers alone; refused where transcripts are needed."""

from __future__ import annotations

import json
import shutil
from collections import Counter
from pathlib import Path

import pytest
import torch
import yaml
from lhotse import CutSet, RecordingSet, SupervisionSet

from conftest import TINY_MODEL, run_cli
from mlkd_cli.data.kaldi_dir import validate_kaldi_dir
from mlkd_cli.data.prepare import PreparedData
from mlkd_cli.distill.pseudo_labels import with_pseudo_labels
from mlkd_cli.experiment.config import KdConfig
from mlkd_cli.models import ctc_loss
from mlkd_cli.teachers.base import Transcript
from mlkd_cli.train.batches import KD_TEXT
from mlkd_cli.train.sampling import language_mix
from mlkd_cli.training_stages.distill import rows_ctc_loss

from test_distill import train_records, train_yaml


def test_a_kaldi_dir_without_text_is_an_untranscribed_set(tiny_corpus, prepared):
    info = validate_kaldi_dir(tiny_corpus / "unlabeled")
    assert info.text is None and len(info.utterances) >= 4 and set(info.utt2lang.values()) == {"en", "de", "ru"}
    cuts = PreparedData(prepared).cuts("unlabeled")
    assert all(c.supervisions[0].text is None and c.supervisions[0].language in ("en", "de", "ru") for c in cuts)
    assert all(c.has_features for c in cuts)


def test_an_untranscribed_dir_is_validated_as_strictly(tiny_corpus, tmp_path):
    bad = tmp_path / "pool"
    shutil.copytree(tiny_corpus / "unlabeled", bad)
    (bad / "utt2lang").unlink()
    result = run_cli("prepare", tiny_corpus / "train", bad, tmp_path / "data")
    assert result.exit_code != 0 and f"{bad / 'utt2lang'}: missing; every utterance needs a language" in result.output
    assert not (tmp_path / "data").exists()


def test_untranscribed_lhotse_manifests_are_a_set_and_mixed_ones_are_refused(tiny_corpus, tmp_path):
    info = validate_kaldi_dir(tiny_corpus / "unlabeled")
    from lhotse import Recording, SupervisionSegment

    recordings = RecordingSet.from_recordings(Recording.from_file(r.path, recording_id=rid)
                                              for rid, r in info.recordings.items())
    supervisions = [SupervisionSegment(rid, rid, 0, recordings[rid].duration, language=info.utt2lang[rid])
                    for rid in recordings.ids]
    recordings.to_file(tmp_path / "pool_recordings.jsonl.gz")
    SupervisionSet.from_segments(supervisions).to_file(tmp_path / "pool_supervisions.jsonl.gz")
    result = run_cli("prepare", "--tokenizer", "char", tiny_corpus / "train", f"pool={tmp_path / 'pool_recordings.jsonl.gz'}",
                     tmp_path / "data")
    assert result.exit_code == 0, result.output
    assert all(c.supervisions[0].text is None for c in PreparedData(tmp_path / "data").cuts("pool"))

    supervisions[0] = SupervisionSegment(supervisions[0].id, supervisions[0].recording_id, 0, supervisions[0].duration,
                                         language=supervisions[0].language, text="some words")
    SupervisionSet.from_segments(supervisions).to_file(tmp_path / "pool_supervisions.jsonl.gz")
    result = run_cli("prepare", tiny_corpus / "train", f"pool={tmp_path / 'pool_recordings.jsonl.gz'}", tmp_path / "d2")
    assert result.exit_code != 0
    assert f"cut {supervisions[1].id} has an empty transcript (1 of {len(supervisions)} cuts have one)" in result.output


def test_a_set_mixing_transcribed_and_untranscribed_sources_is_refused(tiny_corpus, tmp_path):
    c = tiny_corpus
    result = run_cli("prepare", c / "train", f"dev={c / 'dev'}", f"dev={c / 'unlabeled'}", tmp_path / "data")
    assert result.exit_code != 0 and "set 'dev' mixes transcribed and untranscribed sources" in result.output
    assert "give the untranscribed audio a set name of its own (NAME=PATH)" in result.output


def test_an_untranscribed_training_set_is_refused(tiny_corpus, tmp_path):
    result = run_cli("prepare", f"train={tiny_corpus / 'unlabeled'}", tiny_corpus / "dev", tmp_path / "data")
    assert result.exit_code != 0
    assert "the training set 'train' has no transcripts" in result.output and "--unlabeled-set" in result.output


def test_an_untranscribed_set_in_an_untrained_language_is_refused(tiny_corpus, tmp_path):
    pool = tmp_path / "pool"
    shutil.copytree(tiny_corpus / "dev_unseen", pool)
    (pool / "text").unlink()
    result = run_cli("prepare", tiny_corpus / "train", pool, tmp_path / "data")
    assert result.exit_code != 0
    assert "untranscribed set 'pool' has language(s) cs, pl that the training set 'train' lacks" in result.output


def test_training_on_an_untranscribed_set_names_the_set_and_the_fix(prepared, tmp_path):
    result = run_cli("finetune", "--data", prepared, "--model-config", TINY_MODEL, "--train-set", "unlabeled",
                     "--max-steps", "2", tmp_path / "exp")
    assert result.exit_code != 0
    assert "set 'unlabeled' of" in result.output and "`mlkd distill --unlabeled-set unlabeled`" in result.output
    assert not (tmp_path / "exp" / "final.pt").exists()


def test_ctc_counts_only_the_transcribed_rows():
    torch.manual_seed(0)
    log_probs = torch.randn(3, 12, 6).log_softmax(-1)
    lengths = torch.tensor([12, 10, 8])
    targets = [[1, 2], None, [3, 3, 4]]
    index = torch.tensor([0, 2])
    expected = ctc_loss(log_probs[index], lengths[index], [[1, 2], [3, 3, 4]])
    assert rows_ctc_loss(log_probs, lengths, targets).item() == pytest.approx(expected.item())
    assert rows_ctc_loss(log_probs, lengths, [None, None, None]).item() == 0.0


def cuts_with_pool(tmp_path: Path, prepared) -> CutSet:
    data = PreparedData(prepared)
    return CutSet.from_cuts([*data.cuts("train"), *data.cuts("unlabeled")])


@pytest.mark.parametrize("share", [0.25, 0.6])
def test_the_mix_draws_the_untranscribed_share(prepared, tmp_path, share):
    mixed = language_mix(cuts_with_pool(tmp_path, prepared), alpha=0.0, seed=3, unlabeled_share=share)
    drawn = [c for _, c in zip(range(4000), mixed)]
    untranscribed = sum(c.supervisions[0].text is None for c in drawn) / len(drawn)
    assert untranscribed == pytest.approx(share, abs=0.03)
    by_lang = Counter(c.supervisions[0].language for c in drawn if c.supervisions[0].text is None)
    assert max(by_lang.values()) / min(by_lang.values()) < 1.2  # α = 0: languages equally often among them too


def test_without_a_share_the_pool_counts_as_its_languages_data(prepared, tmp_path):
    mixed = language_mix(cuts_with_pool(tmp_path, prepared), alpha=0.0, seed=3)
    drawn = [c for _, c in zip(range(3000), mixed)]
    by_lang = Counter(c.supervisions[0].language for c in drawn)
    assert max(by_lang.values()) / min(by_lang.values()) < 1.2
    assert 0 < sum(c.supervisions[0].text is None for c in drawn) < len(drawn)


def test_teacher_transcripts_label_untranscribed_cuts_without_a_reference_filter(prepared):
    cuts = CutSet.from_cuts(list(PreparedData(prepared).cuts("unlabeled"))[:2])
    ids = [c.id for c in cuts]
    langs = {c.id: c.supervisions[0].language for c in cuts}
    said = {lang: {} for lang in langs.values()}
    said[langs[ids[0]]][ids[0]] = Transcript("hello there", 0.9)
    said[langs[ids[1]]][ids[1]] = Transcript("unsure", 0.2)
    kd = KdConfig(sequence_weight=1.0, min_confidence=0.5, max_cer_to_reference=0.1)
    labelled = {c.id: (c.custom or {}).get(KD_TEXT) for c in with_pseudo_labels(cuts, said, kd, normalize=False)}
    assert labelled == {ids[0]: "hello there", ids[1]: None}


@pytest.fixture(scope="module")
def with_pool(prepared, tiny_teachers, tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("pool")
    kd = root / "kd.yaml"
    kd.write_text(yaml.safe_dump({"ctc_weight": 1.0, "kl_weight": 1.0, "sequence_weight": 0.5, "unlabeled_share": 0.5}))
    exp = root / "student"
    result = run_cli("distill", "--data", prepared, "--model-config", TINY_MODEL, "--kd-config", kd,
                     "--train-config", train_yaml(root / "t.yaml", max_steps=30), "--unlabeled-set", "unlabeled",
                     *tiny_teachers.values(), exp)
    assert result.exit_code == 0, result.output
    return exp


def test_distillation_learns_from_the_pool_and_records_it(with_pool, prepared):
    records = train_records(with_pool)
    assert sum(r["kd"] for r in records[-5:]) < 0.7 * sum(r["kd"] for r in records[:5])
    stage = json.loads((with_pool / "stage.json").read_text())
    assert "data:unlabeled" in stage["inputs"]
    config = yaml.safe_load((with_pool / "config.yaml").read_text())
    assert config["unlabeled_sets"] == ["unlabeled"] and config["kd"]["unlabeled_share"] == 0.5
    log = (with_pool / "log" / "train.0.log").read_text()
    assert "en untranscribed 16.7%" in log
    pool = {c.id for c in PreparedData(prepared).cuts("unlabeled")}
    transcripts = [json.loads(line)["id"] for lang in ("en", "de", "ru")
                   for line in (with_pool / "teacher_transcripts" / lang / "transcripts.jsonl").read_text().splitlines()]
    assert pool <= set(transcripts)  # the teachers transcribed the pool for sequence-level KD


def test_a_pool_in_a_language_without_a_teacher_is_refused(prepared, tiny_teachers, tmp_path):
    result = run_cli("distill", "--data", prepared, "--model-config", TINY_MODEL, "--unlabeled-set", "dev_unseen",
                     "--max-steps", "2", *tiny_teachers.values(), tmp_path / "exp")
    assert result.exit_code != 0
    assert "--unlabeled-set dev_unseen: language(s) cs, pl have no teacher (teachers: de, en, ru" in result.output
    assert not (tmp_path / "exp" / "final.pt").exists()


def test_a_transcribed_set_or_the_validation_set_as_the_pool_is_refused(prepared, tiny_teachers, tmp_path):
    result = run_cli("distill", "--data", prepared, "--model-config", TINY_MODEL, "--unlabeled-set", "test",
                     "--max-steps", "2", *tiny_teachers.values(), tmp_path / "exp")
    assert result.exit_code != 0
    assert "--unlabeled-set test: the set has transcripts, so it is not untranscribed audio" in result.output
    assert "--train-set test" in result.output and not (tmp_path / "exp" / "final.pt").exists()
    result = run_cli("distill", "--data", prepared, "--model-config", TINY_MODEL, "--unlabeled-set", "dev",
                     "--max-steps", "2", *tiny_teachers.values(), tmp_path / "exp")
    assert result.exit_code != 0 and "--unlabeled-set dev is the validation (--dev-set) set" in result.output


def test_a_pool_holding_the_validation_audio_is_refused(tiny_corpus, tiny_teachers, tmp_path):
    """The dev set's audio prepared again without its text, as the pool."""
    shutil.copytree(tiny_corpus / "dev", tmp_path / "pool")
    (tmp_path / "pool" / "text").unlink()
    data = tmp_path / "data"
    assert run_cli("prepare", tiny_corpus / "train", tiny_corpus / "dev", tmp_path / "pool", data).exit_code == 0
    result = run_cli("distill", "--data", data, "--model-config", TINY_MODEL, "--unlabeled-set", "pool",
                     "--max-steps", "2", *tiny_teachers.values(), tmp_path / "exp")
    assert result.exit_code != 0, result.output
    assert "--unlabeled-set pool: utterance" in result.output and "is also in the validation set dev" in result.output


def test_the_pseudo_label_baseline_learns_teacher_transcripts_without_running_a_teacher(prepared, tiny_teachers,
                                                                                      tmp_path):
    """conf/kd/pseudo_label.yaml: the teachers transcribe the training set and the pool once; no
    layer or posterior targets are computed or cached, no projection is trained."""
    kd = Path(__file__).resolve().parents[2] / "conf" / "kd" / "pseudo_label.yaml"
    exp = tmp_path / "baseline_pl"
    result = run_cli("distill", "--data", prepared, "--model-config", TINY_MODEL, "--kd-config", kd,
                     "--train-config", train_yaml(tmp_path / "t.yaml", max_steps=20), "--unlabeled-set", "unlabeled",
                     *tiny_teachers.values(), exp)
    assert result.exit_code == 0, result.output
    assert (exp / "teacher_transcripts" / "en" / "transcripts.jsonl").is_file()
    assert not (exp / "teacher_targets").exists()
    records = train_records(exp)
    assert all(r["kd"] == 0 and r["ctc"] > 0 for r in records) and "kl" not in records[0]
    checkpoint = torch.load(sorted((exp / "ckpt").glob("step-*.pt"))[-1], weights_only=False)
    assert not any(key.startswith("projections.") for key in checkpoint["task"])
