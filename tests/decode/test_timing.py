"""Word and segment times from the greedy CTC alignment, and CTM/SRT/WebVTT."""

from __future__ import annotations

import json

import numpy as np
import pytest

from conftest import run_cli
from fixtures.exports import make_experiment
from mlkd_cli.decode.decoder import DecodeConfig, Decoder, Posteriors
from mlkd_cli.decode.timing import Word, ctm_lines, segments_of, subtitles, token_spans, words_of
from mlkd_cli.experiment.model_dir import load_model_dir

PIECES = {1: "▁", 2: "a", 3: "b", 4: "▁c", 5: "d"}


def test_token_spans_collapse_repeats_and_blanks_separate_them():
    #                        0  1  2  3  4  5  6  7  8
    frames = np.array([0, 2, 2, 0, 2, 3, 3, 0, 0])
    assert token_spans(frames) == [(2, 1, 2), (2, 4, 4), (3, 5, 6)]


def test_words_start_at_a_boundary_piece_and_take_their_tokens_frames():
    spans = [(1, 0, 0), (2, 3, 4), (3, 6, 6), (4, 20, 21), (5, 23, 23), (1, 30, 30)]
    assert words_of(spans, PIECES.__getitem__) == [
        Word(0.12, 0.28, "ab", ((0.12, 0.2, "a"), (0.24, 0.28, "b"))),
        Word(0.8, 0.96, "cd", ((0.8, 0.88, "c"), (0.92, 0.96, "d")))]
    assert [w.text for w in words_of([(2, 2, 2)], PIECES.__getitem__)] == ["a"]  # no leading boundary


def test_segments_break_at_pauses_and_long_ones_at_their_longest_pause():
    words = [Word(0.0, 0.5, "a"), Word(0.6, 1.0, "b"), Word(2.0, 2.4, "c"), Word(2.5, 3.0, "d"), Word(3.3, 3.6, "e")]
    assert [[w.text for w in s] for s in segments_of(words, min_pause=0.5, max_length=30)] == [["a", "b"],
                                                                                             ["c", "d", "e"]]
    # c..e is 1.6 s long: split at its longest pause (0.3 s, before e)
    assert [[w.text for w in s] for s in segments_of(words, min_pause=0.5, max_length=1.2)] == [["a", "b"], ["c", "d"],
                                                                                              ["e"]]


def test_an_hour_of_speech_without_pauses_splits_evenly_into_bounded_segments():
    """Equal pauses everywhere: each split is the one nearest the middle; 9000 words (an hour at
    0.4 s a word) take no deep recursion."""
    words = [Word(0.4 * i, 0.4 * i + 0.4, f"w{i}") for i in range(9000)]
    segments = segments_of(words, min_pause=0.5, max_length=15)
    assert [w for s in segments for w in s] == words
    lengths = {round(s[-1].end - s[0].start, 6) for s in segments}
    assert lengths == {14.0, 14.4}  # the hour halved eight times: 256 parts of 35 or 36 words
    twelve = segments_of(words[:30], min_pause=0.5, max_length=6.5)  # 12 s: two halves of 6 s
    assert [len(s) for s in twelve] == [15, 15]


SEGMENTS = [{"start": 0.12, "end": 1.0, "text": "ab cd", "words": [[0.12, 0.28, "ab"], [0.8, 1.0, "cd"]]},
            {"start": 3661.5, "end": 3662.04, "text": "e", "words": [[3661.5, 3662.04, "e"]]}]


def test_ctm_srt_and_webvtt():
    assert ctm_lines("utt1", SEGMENTS) == ["utt1 1 0.12 0.16 ab", "utt1 1 0.80 0.20 cd", "utt1 1 3661.50 0.54 e"]
    assert subtitles(SEGMENTS, "srt") == ("1\n00:00:00,120 --> 00:00:01,000\nab cd\n\n"
                                          "2\n01:01:01,500 --> 01:01:02,040\ne\n")
    assert subtitles(SEGMENTS, "vtt") == ("WEBVTT\n\n00:00:00.120 --> 00:00:01.000\nab cd\n\n"
                                          "01:01:01.500 --> 01:01:02.040\ne\n")


def placed_posteriors(tokenizer, utterances: list[list[str]], vocab: int, gap_frames: int) -> tuple[np.ndarray, list]:
    """Log-probs whose greedy path spells ``utterances`` (lists of words), each token 2 frames, words
    1 blank frame apart, utterances ``gap_frames`` blank frames apart; and where each word was put."""
    path, placed = [0] * 5, []
    for words in utterances:
        for word in words:
            start = len(path)
            for token in tokenizer.encode(word):
                path += [token, token, 0] if tokenizer.id_to_piece(token) != "▁" else [token]
            placed.append((start, len(path) - 1, word))
            path.append(0)
        path += [0] * gap_frames
    matrix = np.full((len(path), vocab), -20.0, dtype=np.float32)
    matrix[np.arange(len(path)), path] = 0.0
    return matrix, placed


def test_a_concatenation_of_utterances_gets_their_segments_and_word_times(tmp_path, data_dir, wavs):
    """Three utterances placed with 1.2 s of silence between them: three segments, each word where it was put."""
    loaded = load_model_dir(make_experiment(tmp_path / "model", data_dir, wavs[0]))
    tokenizer = loaded.tokenizer
    utterances = [["hello", "world"], ["guten", "tag"], ["privet"]]
    matrix, placed = placed_posteriors(tokenizer, utterances, loaded.model.config.vocab_size, gap_frames=30)
    result = Decoder(loaded, DecodeConfig()).result("long", len(matrix) * 0.04, Posteriors(matrix, None, 0.0))
    assert [s["text"] for s in result.segments] == ["hello world", "guten tag", "privet"]
    assert "".join(t[2] for t in result.segments[2]["tokens"]) == "privet"
    words = [w for s in result.segments for w in s["words"]]
    first_frames = [start for start, _, _ in placed]
    for (start, end, word), first, (_, last, placed_word) in zip(words, first_frames, placed):
        frames_of_word = [t for t in range(first, last + 1) if matrix[t].argmax() != 0 and tokenizer.id_to_piece(
            int(matrix[t].argmax())) != "▁"]
        assert word == placed_word
        assert start == pytest.approx(frames_of_word[0] * 0.04) and end == pytest.approx((frames_of_word[-1] + 1) * 0.04)
    assert result.segments[1]["start"] - result.segments[0]["end"] > 1.2  # the silence between them
    beam = Decoder(loaded, DecodeConfig(method="ctc-prefix-beam")).result("long", 1.0, Posteriors(matrix, None, 0.0))
    assert beam.segments is None  # times come from the greedy path only


def test_decode_prints_ctm_and_subtitles_and_records_the_source(tmp_path, data_dir, wavs):
    """A random model whose greedy output is varied text (fixtures/exports.py) times its words."""
    model = make_experiment(tmp_path / "model", data_dir, wavs[0])
    wav = wavs[0]
    ctm = run_cli("decode", model, wav, "--format", "ctm", "-o", tmp_path)
    assert ctm.exit_code == 0, ctm.output
    decode_dir = tmp_path / "decode_files_ctc-greedy"
    record = json.loads((decode_dir / "hyps.jsonl").read_text().splitlines()[0])
    assert record["source"] == str(wav)
    lines = [line for line in ctm.output.splitlines() if line.startswith(record["id"] + " ")]
    assert lines == ctm_lines(record["id"], record["segments"]) and len(lines) >= 3
    words = [w for s in record["segments"] for w in s["words"]]
    assert " ".join(w[2] for w in words) == " ".join(record["text"].split())
    assert all(0 <= start < end <= record["duration"] + 0.04 for start, end, _ in words)
    assert [w[0] for w in words] == sorted(w[0] for w in words)
    assert (decode_dir / "hyp.ctm").read_text().splitlines() == lines
    vtt = run_cli("decode", model, wav, "--format", "vtt", "-o", tmp_path)
    assert vtt.exit_code == 0 and "WEBVTT" in vtt.output.splitlines() and "up to date" in vtt.output
    assert subtitles(record["segments"], "vtt") in vtt.output and " --> " in vtt.output
    refused = run_cli("decode", model, wav, "--format", "srt", "--method", "ctc-prefix-beam", "-o", tmp_path)
    assert refused.exit_code == 1 and "--format srt: word times come from the greedy CTC alignment" in refused.output
