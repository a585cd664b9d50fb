"""Speech in languages a model was not trained on: calibrated rejection as `unknown`, and its scoring."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from conftest import run_cli
from mlkd_cli.decode.ctc import greedy_confidence
from mlkd_cli.decode.rejection import CALIBRATION, Rejection, flagged_share, rejection_score, threshold_for
from mlkd_cli.errors import ConfigError
from mlkd_cli.score.metrics import LidScore
from mlkd_cli.score.report import score_decode_dir
from mlkd_cli.score.tables import format_summary


def test_threshold_flags_at_most_the_allowed_share():
    scores = [0.91, 0.15, 0.99, 0.62, 0.48, 0.97, 0.88, 0.3, 0.95, 0.7]
    # 20% of 10 may be flagged: the two lowest (0.15, 0.3); the third lowest (0.48) is the threshold
    assert threshold_for(scores, 0.2) == 0.48 and flagged_share(scores, 0.48) == 0.2
    assert threshold_for(scores, 0.0) == 0.15 and flagged_share(scores, 0.15) == 0.0
    assert threshold_for(scores, 0.29) == 0.48
    with pytest.raises(ConfigError, match="nothing to calibrate on"):
        threshold_for([], 0.1)


def test_greedy_confidence_is_the_mean_posterior_of_emitted_tokens():
    rows = np.log(np.array([[0.1, 0.8, 0.1],   # emits 1 (0.8)
                            [0.2, 0.6, 0.2],   # repeat of 1: not emitted
                            [0.9, 0.05, 0.05],  # blank
                            [0.3, 0.6, 0.1],   # emits 1 again (0.6)
                            [0.2, 0.1, 0.7]]))  # emits 2 (0.7)
    assert greedy_confidence(rows) == pytest.approx((0.8 + 0.6 + 0.7) / 3)
    assert greedy_confidence(np.log(np.array([[0.9, 0.1], [0.8, 0.2]]))) == 0.0


def test_rejection_scores():
    posteriors = {"en": 0.7, "de": 0.2, "ru": 0.1}
    assert rejection_score("lid", posteriors, 0.5, 2.0) == 0.7
    assert rejection_score("lid-x-ctc", posteriors, 0.5, 2.0) == pytest.approx(0.35)
    assert rejection_score("energy", posteriors, 0.5, 2.0) == 2.0
    assert Rejection(0.4, "lid-x-ctc").rejects(posteriors, 0.5, 2.0)
    assert not Rejection(0.4, "lid").rejects(posteriors, 0.5, 2.0)
    assert Rejection(2.5, "energy").rejects(posteriors, 0.5, 2.0)


def test_the_decoder_reports_the_lid_energy_of_its_windows():
    """Posteriors and energy are duration-weighted means over a long recording's windows."""
    from types import SimpleNamespace

    from mlkd_cli.decode.decoder import DecodeConfig, Decoder

    decoder = Decoder.__new__(Decoder)
    decoder.config = DecodeConfig()
    decoder.loaded = SimpleNamespace(languages=("en", "ru"), own_language=None)
    windows = [(30.0, np.array([2.0, 0.0])), (10.0, np.array([0.0, 1.0]))]
    lang, post, energy = decoder._language(windows)
    p1 = np.exp([2.0, 0.0]) / np.exp([2.0, 0.0]).sum()
    p2 = np.exp([0.0, 1.0]) / np.exp([0.0, 1.0]).sum()
    expected = 0.75 * p1 + 0.25 * p2
    assert lang == "en" and post["en"] == pytest.approx(expected[0], abs=1e-6)
    assert energy == pytest.approx(0.75 * np.log(np.exp(2.0) + 1) + 0.25 * np.log(1 + np.exp(1.0)), abs=1e-6)


def test_lid_score_counts_rejections_of_trained_and_unseen_languages():
    confusion = {"en": {"en": 97, "unknown": 3}, "ru": {"ru": 50}, "pl": {"ru": 4, "unknown": 16}, "cs": {"unknown": 20}}
    lid = LidScore(confusion, trained=("en", "ru"))
    assert lid.num_utts == 150 and lid.correct == 147 and lid.accuracy == pytest.approx(147 / 150)
    assert lid.false_rejection == pytest.approx(3 / 150)
    assert lid.num_unseen == 40 and lid.unseen_rejection == pytest.approx(36 / 40)
    assert LidScore.from_dict(lid.to_dict()) == lid


def test_unseen_language_utterances_count_for_rejection_only(tmp_path):
    d = tmp_path / "decode_mix_ctc-greedy"
    d.mkdir()
    rows = [("en-1", "a cat", "a cat", "en", "en"), ("en-2", "the dog", "", "en", "unknown"),
            ("pl-1", "kot", "", "pl", "unknown"), ("pl-2", "pies", "piers", "pl", "en")]
    (d / "hyp.text").write_text("".join(f"{u} {h}".rstrip() + "\n" for u, _, h, _, _ in rows))
    (d / "ref.text").write_text("".join(f"{u} {r}\n" for u, r, _, _, _ in rows))
    (d / "ref.utt2lang").write_text("".join(f"{u} {lang}\n" for u, _, _, lang, _ in rows))
    (d / "hyps.jsonl").write_text("".join(json.dumps({"id": u, "text": h, "language": p}) + "\n" for u, _, h, _, p in rows))
    (d / "stats.json").write_text(json.dumps({"model_name": "m", "languages": ["en"], "predicts_language": True}))
    report = score_decode_dir(d)
    assert list(report.languages) == ["en"] and report.overall.num_utts == 2
    assert report.overall.chars.errors == 6  # "the dog" unrecognised: 6 letters deleted; pl counts nowhere here
    assert report.lid.accuracy == 0.5 and report.lid.false_rejection == 0.5 and report.lid.unseen_rejection == 0.5
    assert "rejected as unknown: 50.00% of 2 unseen-language utterances; 50.00% of 2 trained-language" in format_summary(report)
    png = d / "lid_confusion.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert json.loads((d / "score.json").read_text())["lid"]["rejection"]["unseen_flagged"] == 0.5


@pytest.fixture(scope="module")
def calibrated(tiny_adaptive, prepared, tmp_path_factory):
    """The tiny adaptive model calibrated on dev + dev_unseen, into an output dir of its own."""
    out = tmp_path_factory.mktemp("calibrated")
    m = prepared / "manifests"
    result = run_cli("calibrate-lid", tiny_adaptive, m / "dev_cuts.jsonl.gz", m / "dev_unseen_cuts.jsonl.gz",
                     "--max-false-reject", "0.1", "-o", out)
    assert result.exit_code == 0, result.output
    return out


def test_calibration_bounds_false_rejection_on_dev(calibrated):
    record = json.loads((calibrated / CALIBRATION).read_text())
    assert record["trained_utts"] == 13 and record["unseen_utts"] == 6
    chosen = record["candidates"][record["score"]]
    assert chosen["trained_flagged"] <= 0.1 and record["threshold"] == chosen["threshold"]
    assert record["score"] in ("lid", "lid-x-ctc", "energy") and set(record["candidates"]) == {"lid", "lid-x-ctc", "energy"}
    assert (calibrated / "decode_dev_unseen_ctc-greedy" / "hyps.jsonl").is_file()


def test_decode_applies_the_calibration_and_score_reports_it(calibrated, tiny_adaptive, prepared):
    m = prepared / "manifests"
    result = run_cli("decode", tiny_adaptive, m / "test_unseen_cuts.jsonl.gz", "-o", calibrated,
                     "--unknown-threshold", "1.01")  # an explicit threshold wins: everything is unknown
    assert result.exit_code == 0, result.output
    hyps = [json.loads(line) for line in (calibrated / "decode_test_unseen_ctc-greedy" / "hyps.jsonl").read_text().splitlines()]
    assert hyps and all(h["language"] == "unknown" and h["text"] == "" and h["language_posteriors"] for h in hyps)
    report = score_decode_dir(calibrated / "decode_test_unseen_ctc-greedy")
    assert report.lid.unseen_rejection == 1.0 and report.lid.num_utts == 0

    result = run_cli("decode", tiny_adaptive, m / "test_cuts.jsonl.gz", "-o", calibrated)
    assert result.exit_code == 0, result.output
    config = (calibrated / "decode_test_ctc-greedy" / "config.yaml").read_text()
    threshold = json.loads((calibrated / CALIBRATION).read_text())["threshold"]
    assert f"unknown_threshold: {threshold}" in config


def test_a_decode_follows_a_new_calibration_but_refuses_a_changed_setting(calibrated, tiny_adaptive, prepared,
                                                                          tmp_path):
    """Calibrating again (another --max-false-reject) redoes the decodes it applies to, as a score
    follows its decode; a setting given on the command line is still refused when it changes."""
    out = tmp_path / "out"
    shutil.copytree(calibrated, out)
    test = prepared / "manifests" / "test_cuts.jsonl.gz"
    assert run_cli("decode", tiny_adaptive, test, "-o", out).exit_code == 0
    m = prepared / "manifests"
    result = run_cli("calibrate-lid", tiny_adaptive, m / "dev_cuts.jsonl.gz", m / "dev_unseen_cuts.jsonl.gz",
                     "--max-false-reject", "0.3", "--score", "lid", "-o", out)
    assert result.exit_code == 0, result.output
    threshold = json.loads((out / CALIBRATION).read_text())["threshold"]
    assert threshold != json.loads((calibrated / CALIBRATION).read_text())["threshold"]
    result = run_cli("decode", tiny_adaptive, test, "-o", out)
    assert result.exit_code == 0, result.output
    assert f"unknown_threshold: {threshold}" in (out / "decode_test_ctc-greedy" / "config.yaml").read_text()
    result = run_cli("decode", tiny_adaptive, test, "-o", out, "--unknown-threshold", "0.5")
    assert result.exit_code == 1 and "changed: config.unknown_threshold" in result.output


def test_a_stale_calibration_or_a_teacher_is_refused(calibrated, tiny_adaptive, tiny_teachers, prepared, tmp_path):
    stale = tmp_path / "out"
    stale.mkdir()
    record = json.loads((calibrated / CALIBRATION).read_text())
    (stale / CALIBRATION).write_text(json.dumps({**record, "weights_digest": "0" * 64}))
    result = run_cli("decode", tiny_adaptive, prepared / "manifests" / "test_cuts.jsonl.gz", "-o", stale)
    assert result.exit_code != 0 and "calibrated for other weights" in result.output
    assert "re-run `mlkd calibrate-lid" in result.output
    result = run_cli("calibrate-lid", tiny_teachers["en"], prepared / "manifests" / "dev_cuts.jsonl.gz", "-o", tmp_path)
    assert result.exit_code != 0 and "the model does not predict the language" in result.output
    assert not list(tmp_path.glob("decode_*"))


def test_score_of_a_copied_decode_dir_keeps_its_rejection(calibrated, tmp_path):
    copy = tmp_path / "decode_dev_unseen_ctc-greedy"
    shutil.copytree(calibrated / "decode_dev_unseen_ctc-greedy", copy)
    report = score_decode_dir(copy)
    assert report.lid.num_unseen == 6 and report.overall.num_utts == 0


def test_confusion_columns_name_unknown_once_with_or_without_trained_languages():
    from mlkd_cli.score.confusion import confusion_labels

    confusion = {"en": {"en": 3, "unknown": 1}, "pl": {"unknown": 2, "ru": 1}}
    assert confusion_labels(LidScore(confusion)) == (["en", "pl"], ["en", "ru", "unknown"])
    assert confusion_labels(LidScore(confusion, trained=("en", "ru"))) == (["en", "pl"], ["en", "ru", "unknown"])
