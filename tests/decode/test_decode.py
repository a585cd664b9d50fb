"""`mlkd decode`: CTC search, window planning and stitching, inputs, outputs, bad input."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from conftest import run_cli
from fixtures.shared import copy_model_dir
from mlkd_cli.data.prepare import PreparedData
from mlkd_cli.decode.chunks import OUTPUT_FRAME, plan_windows
from mlkd_cli.decode.ctc import greedy_search, prefix_beam_search, restrict_tokens
from mlkd_cli.decode.decoder import DecodeConfig, Decoder
from mlkd_cli.experiment.config import TeacherConfig
from mlkd_cli.experiment.model_dir import ModelDir
from mlkd_cli.decode.inputs import resolve_inputs
from mlkd_cli.models import CtcOutput, ModelConfig
from mlkd_cli.models.subsampling import subsampled_lengths


def logp(rows: list[list[float]]) -> np.ndarray:
    return np.log(np.array(rows, dtype=np.float32))


# -- search ------------------------------------------------------------------------------------

def test_greedy_collapses_repeats_and_drops_blanks():
    rows = [[0.1, 0.8, 0.1], [0.1, 0.8, 0.1], [0.9, 0.05, 0.05], [0.1, 0.8, 0.1], [0.2, 0.1, 0.7]]
    assert greedy_search(logp(rows)) == [1, 1, 2]


def test_prefix_beam_sums_alignments_where_greedy_does_not():
    # Two frames, P(blank) = 0.6 each: the best path is "" (0.36), but the label "a" collects
    # aa + a- + -a = 0.16 + 0.24 + 0.24 = 0.64.
    rows = [[0.6, 0.4], [0.6, 0.4]]
    assert greedy_search(logp(rows)) == []
    assert prefix_beam_search(logp(rows), beam=4) == [1]


def test_prefix_beam_equals_greedy_on_peaky_posteriors():
    rng = np.random.default_rng(0)
    for _ in range(20):
        ids = rng.integers(0, 6, size=30)
        rows = np.full((30, 6), 0.002)
        rows[np.arange(30), ids] = 0.99
        matrix = np.log(rows / rows.sum(1, keepdims=True)).astype(np.float32)
        assert prefix_beam_search(matrix, beam=8) == greedy_search(matrix)


def test_restrict_tokens_keeps_blank_and_allowed_only():
    matrix = restrict_tokens(logp([[0.1, 0.2, 0.7]]), allowed=[1])
    assert math.isinf(matrix[0, 2]) and greedy_search(matrix) == [1]


# -- windows -----------------------------------------------------------------------------------

@pytest.mark.parametrize("duration", [5.0, 30.0, 30.04, 57.3, 3600.0])
def test_windows_tile_the_recording(duration):
    windows = plan_windows(duration, chunk=30.0, overlap=2.0)
    assert windows[0].start == 0 and windows[-1].start + windows[-1].duration == pytest.approx(duration)
    covered = []
    for w in windows:
        n_out = int(subsampled_lengths(torch.tensor([round(w.duration * 100)])))
        local = range(n_out)[w.keep_from: w.keep_to]
        offset = round(w.start / OUTPUT_FRAME)
        covered.extend(offset + k for k in local)
        assert all(w.duration <= 30.0 for w in windows)
    assert covered == list(range(covered[0], covered[0] + len(covered)))  # contiguous, never twice
    total = int(subsampled_lengths(torch.tensor([round(duration * 100)])))
    assert abs(len(covered) - total) <= 2


class FrameLocalModel(torch.nn.Module):
    """Each output frame depends only on its own 7 input frames: chunking must not change it."""

    def __init__(self, vocab: int):
        super().__init__()
        torch.manual_seed(0)
        self.proj = torch.nn.Linear(80, vocab)
        self.config = ModelConfig(vocab_size=vocab)

    def forward(self, features, lens, language=None):
        lengths = subsampled_lengths(lens)
        t = int(lengths.max())
        frames = torch.stack([features[:, 4 * k: 4 * k + 7].mean(1) for k in range(t)], dim=1)
        log_probs = (3 * self.proj(frames)).log_softmax(-1)
        return CtcOutput(log_probs, lengths, frames, [], None, None)


def test_chunked_decoding_of_long_audio_equals_whole_decoding(tmp_path, prepared):
    tokenizer = PreparedData(prepared).tokenizer()
    rng = np.random.default_rng(1)
    sf.write(tmp_path / "long.wav", (0.1 * rng.standard_normal(16000 * 75)).astype(np.float32), 16000)
    items = resolve_inputs([str(tmp_path / "long.wav")]).items
    config = TeacherConfig(data=str(prepared), lang="en")
    loaded = ModelDir(tmp_path, "train-teacher", config, FrameLocalModel(tokenizer.vocab_size), tokenizer, 0)
    captured = {}

    def keep(matrix, lang):
        captured.setdefault("m", []).append(matrix)
        return tokenizer.decode(greedy_search(matrix))

    whole = Decoder(loaded, DecodeConfig(chunk=100.0), search=keep).decode(items)
    chunked = Decoder(loaded, DecodeConfig(chunk=20.0, overlap=2.0), search=keep).decode(items)
    a, b = captured["m"]
    assert a.shape == b.shape
    assert np.allclose(a, b, atol=1e-4)
    assert whole[0].text == chunked[0].text


# -- the command -------------------------------------------------------------------------------

def test_decode_cuts_writes_kaldi_text_jsonl_refs_and_stats(prepared, tiny_adaptive):
    result = run_cli("decode", tiny_adaptive, prepared / "manifests" / "dev_cuts.jsonl.gz")
    assert result.exit_code == 0, result.output
    out = tiny_adaptive / "decode_dev_ctc-greedy"
    durations = {c.id: c.duration for c in PreparedData(prepared).cuts("dev")}
    hyps = [json.loads(line) for line in (out / "hyps.jsonl").read_text().splitlines()]
    ids = [line.split()[0] for line in (out / "hyp.text").read_text().splitlines()]
    refs = dict(line.split(maxsplit=1) for line in (out / "ref.text").read_text().splitlines())
    assert ids == [h["id"] for h in hyps] and set(ids) == set(refs)
    for h in hyps:
        assert h["language"] in ("de", "en", "ru") and sum(h["language_posteriors"].values()) == pytest.approx(1, abs=1e-4)
        assert h["language"] == max(h["language_posteriors"], key=h["language_posteriors"].get)
        assert h["duration"] == pytest.approx(durations[h["id"]], abs=1e-3) and h["processing_time"] > 0
    langs = dict(line.split() for line in (out / "ref.utt2lang").read_text().splitlines())
    assert set(langs.values()) == {"de", "en", "ru"}
    stats = json.loads((out / "stats.json").read_text())
    assert stats["num_utts"] == len(hyps) and stats["predicts_language"]
    assert stats["audio_seconds"] == pytest.approx(sum(durations.values()), abs=1e-2)
    # the whole run's real-time factor covers at least each utterance's share of the work
    assert stats["rtf"] >= sum(h["processing_time"] for h in hyps) / stats["audio_seconds"] - 1e-6 > 0
    assert json.loads((out / "stage.json").read_text())["command"] == "decode"


def test_audio_files_globs_lists_any_rate_and_corrupt_files(tmp_path, prepared, tiny_adaptive, tiny_corpus,
                                                            monkeypatch):
    wavs = [Path(line.split()[1]) for line in (tiny_corpus / "dev" / "wav.scp").read_text().splitlines()[:2]]
    audio, rate = sf.read(wavs[0])
    stereo8k = tmp_path / "in" / "stereo 8k.flac"
    stereo8k.parent.mkdir()
    resampled = np.interp(np.arange(0, len(audio), 2), np.arange(len(audio)), audio)
    sf.write(stereo8k, np.stack([resampled, 0.5 * resampled], axis=1), 8000)
    shutil.copy(wavs[1], tmp_path / "in" / "b.wav")
    (tmp_path / "in" / "broken.wav").write_bytes(b"RIFF\x00\x00not audio at all")
    listing = tmp_path / "files.list"
    listing.write_text("in/b.wav\n# a comment\n")
    monkeypatch.chdir(tmp_path)  # list entries are relative to the current directory
    result = run_cli("decode", tiny_adaptive, str(tmp_path / "in" / "*.*"), listing, "--name", "mine")
    assert result.exit_code == 0, result.output
    printed = [line.split("\t") for line in result.stdout.splitlines() if "\t" in line]
    assert sorted(Path(p).name for p, _, _ in printed) == ["b.wav", "b.wav", "stereo 8k.flac"]
    assert all(lang in ("de", "en", "ru") for _, lang, _ in printed)
    assert "skipped" in result.stderr and "broken.wav" in result.stderr
    stats = json.loads((tiny_adaptive / "decode_mine_ctc-greedy" / "stats.json").read_text())
    assert [Path(f["input"]).name for f in stats["failed"]] == ["broken.wav"] and stats["num_utts"] == 3
    hyps = [json.loads(line) for line in (tiny_adaptive / "decode_mine_ctc-greedy" / "hyps.jsonl").read_text().splitlines()]
    assert sorted(h["id"] for h in hyps) == ["b", "b-2", "stereo_8k"]
    assert {h["id"]: h["duration"] for h in hyps}["stereo_8k"] == pytest.approx(len(audio) / rate, abs=0.01)


def test_forced_language_restricts_tokens(prepared, tiny_adaptive):
    tokenizer = PreparedData(prepared).tokenizer()
    result = run_cli("decode", tiny_adaptive, prepared / "manifests" / "dev_cuts.jsonl.gz", "--lang", "ru",
                     "--method", "ctc-prefix-beam", "--beam", "4")
    assert result.exit_code == 0, result.output
    out = tiny_adaptive / "decode_dev_ctc-prefix-beam_lang-ru"
    allowed = {tokenizer.id_to_piece(i) for i in tokenizer.language_tokens("ru")}
    for h in map(json.loads, (out / "hyps.jsonl").read_text().splitlines()):
        assert h["language"] == "ru" and h["language_posteriors"] is None
        assert {tokenizer.id_to_piece(i) for i in tokenizer.encode(h["text"])} <= allowed | {"▁"}
    result = run_cli("decode", tiny_adaptive, prepared / "manifests" / "dev_cuts.jsonl.gz", "--lang", "fr")
    assert result.exit_code == 1 and "--lang fr: the model knows only de, en, ru" in result.output


def test_teacher_decodes_its_own_language_and_int8_works(prepared, tiny_teachers):
    result = run_cli("decode", tiny_teachers["de"], prepared / "manifests" / "dev_cuts.jsonl.gz", "--int8")
    assert result.exit_code == 0, result.output
    out = tiny_teachers["de"] / "decode_dev_ctc-greedy_int8"
    hyps = [json.loads(line) for line in (out / "hyps.jsonl").read_text().splitlines()]
    assert hyps and all(h["language"] == "de" and h["id"].startswith("de") for h in hyps)
    assert not json.loads((out / "stats.json").read_text())["predicts_language"]


def test_bad_model_dirs_are_errors(prepared, tmp_path, tiny_adaptive):
    cuts = prepared / "manifests" / "dev_cuts.jsonl.gz"
    result = run_cli("decode", tmp_path / "nowhere", cuts)
    assert result.exit_code == 1 and "is not an mlkd model directory" in result.output
    broken = tmp_path / "broken"
    copy_model_dir(tiny_adaptive, broken)
    (broken / "final.pt").write_bytes(b"\x00" * 10)
    result = run_cli("decode", broken, cuts)
    assert result.exit_code == 1 and "final.pt: not a readable checkpoint" in result.output
    result = run_cli("decode", tiny_adaptive, str(tmp_path / "*.nothing"))
    assert result.exit_code == 1 and "matches no file" in result.output


def test_wfst_with_the_ctc_topology_alone_equals_greedy_and_lm_graphs_are_cached(prepared, tiny_adaptive):
    cuts = prepared / "manifests" / "dev_cuts.jsonl.gz"
    for args in ([], ["--method", "wfst", "--graph", "ctc"], ["--method", "wfst", "--graph", "lm", "--lm-order", "2"]):
        result = run_cli("decode", tiny_adaptive, cuts, *args)
        assert result.exit_code == 0, result.output

    def texts(name):
        return {h["id"]: h["text"] for h in map(json.loads, (tiny_adaptive / name / "hyps.jsonl").read_text().splitlines())}

    assert texts("decode_dev_wfst-ctc") == texts("decode_dev_ctc-greedy")
    lm = texts("decode_dev_wfst-lm2")
    graphs = sorted(p.name for p in (tiny_adaptive / "graph").iterdir())
    predicted = {h["language"] for h in map(json.loads, (tiny_adaptive / "decode_dev_wfst-lm2" / "hyps.jsonl")
                                                  .read_text().splitlines())}
    assert graphs == ["ctc", *sorted(f"{lang}_lm2" for lang in predicted)]  # one graph per language used
    train_words = {w for cut in PreparedData(prepared).cuts("train") for w in cut.supervisions[0].text.split()}
    assert all(set(text.split()) <= train_words for text in lm.values())  # in-vocabulary words only
    graph_file = tiny_adaptive / "graph" / graphs[-1] / "graph.fst"
    stamp = graph_file.stat().st_mtime_ns
    assert run_cli("decode", tiny_adaptive, cuts, "--method", "wfst", "--lm-order", "2").exit_code == 0
    assert graph_file.stat().st_mtime_ns == stamp


@pytest.mark.slow
def test_an_hour_long_file_decodes_in_bounded_memory(tmp_path, tiny_adaptive, tiny_corpus):
    import resource
    import subprocess
    import sys

    wavs = [Path(line.split()[1]) for line in (tiny_corpus / "test" / "wav.scp").read_text().splitlines()]
    hour = tmp_path / "hour.wav"
    with sf.SoundFile(hour, "w", samplerate=16000, channels=1, subtype="PCM_16") as out:
        written = 0
        while written < 3600 * 16000:
            for w in wavs:
                samples, _ = sf.read(w, dtype="int16")
                out.write(samples)
                written += len(samples)
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    result = subprocess.run([sys.executable, "-m", "mlkd_cli", "decode", str(tiny_adaptive), str(hour), "--name", "hour"],
                            capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stderr
    peak_mib = max(before, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss) / 1024
    assert peak_mib < 2048, peak_mib
    (line,) = [l for l in result.stdout.splitlines() if "\t" in l]
    hyp = json.loads((tiny_adaptive / "decode_hour_ctc-greedy" / "hyps.jsonl").read_text())
    assert hyp["duration"] >= 3600 and line.startswith(str(hour))


def test_a_decode_of_nearly_only_empty_transcripts_is_warned_about(caplog):
    import logging

    from mlkd_cli.decode.decoder import Result
    from mlkd_cli.decode.stage import _warn_if_all_blank

    def results(texts: list[str], unknown: int = 0) -> list[Result]:
        return ([Result(f"u{i}", t, "en", None, 1.0, 0.1) for i, t in enumerate(texts)]
                + [Result(f"x{i}", "", "unknown", None, 1.0, 0.1) for i in range(unknown)])

    with caplog.at_level(logging.WARNING, logger="mlkd"):
        _warn_if_all_blank(Path("exp/s"), results(["a b"] + [""] * 19, unknown=30))  # 19 of 20: 95%
        assert [r.getMessage() for r in caplog.records] == [
            "exp/s: 19 of 20 transcripts are empty: the model outputs (nearly) only blanks; see its dev CER in "
            "final_metrics.json and train it longer"]
        caplog.clear()
        _warn_if_all_blank(Path("exp/s"), results(["a", "b"] + [""] * 18, unknown=30))  # 90%; rejections do not count
        _warn_if_all_blank(Path("exp/s"), results([], unknown=3))
        assert not caplog.records
