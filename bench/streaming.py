"""Figures of bench/streaming.sh: each streaming student decoded with `mlkd decode --streaming` on the
test set at 160, 320 and 640 ms chunks (2 threads) against the full-context student's greedy CER.

  python bench/streaming.py --data DATA --full-context DIR STUDENT...

Per chunk size: CER (mean over languages) and its ratio to the full-context student's, real-time
factor (stats.json: `mlkd decode --streaming` streams 16 utterances at a time, in step) and that of
one stream at a time ("RTF 1", the first 60 utterances: a live microphone), emission latency and when the language decision settles. Latency of a word
= when it appeared in the partial results (seconds of audio heard, plus the time to compute one
chunk at the measured real-time factor) minus when the word ends in the audio; word ends come
from the CTC forced alignment of the reference transcript with the full-context student (the end
of the frame of the word's last token). Only words the streaming model got right count.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
from kaldialign import align

from live_stream import mlkd_arm
from mlkd_cli.decode.decoder import DecodeConfig, Decoder, load_for_decoding
from mlkd_cli.decode.inputs import resolve_inputs
from mlkd_cli.score import score_decode_dir

CHUNKS = (160, 320, 640)
SINGLE_STREAM_UTTS = 60  # utterances timed one stream at a time
FRAME = 0.04  # seconds per output frame


def mean_cer(decode_dir: Path) -> float:
    report = score_decode_dir(decode_dir)
    rates = [s.chars.rate for s in report.languages.values()]
    return 100 * sum(rates) / len(rates)


def forced_alignment(log_probs: np.ndarray, tokens: list[int]) -> list[int] | None:
    """The frame at which each token is emitted on the best CTC path through ``tokens`` (Viterbi).

    Hand-written: torchaudio's forced_align is not installed and k2 cannot be.
    """
    states = [0]
    for t in tokens:
        states += [t, 0]
    n, frames = len(states), len(log_probs)
    score = np.full((frames, n), -np.inf)
    back = np.zeros((frames, n), dtype=np.int64)
    score[0, 0] = log_probs[0, 0]
    if n > 1:
        score[0, 1] = log_probs[0, states[1]]
    for f in range(1, frames):
        for s in range(n):
            options = [(score[f - 1, s], s)]
            if s >= 1:
                options.append((score[f - 1, s - 1], s - 1))
            if s >= 2 and states[s] != 0 and states[s] != states[s - 2]:
                options.append((score[f - 1, s - 2], s - 2))
            best, arg = max(options)
            score[f, s], back[f, s] = best + log_probs[f, states[s]], arg
    s = n - 1 if n == 1 or score[-1, n - 1] >= score[-1, n - 2] else n - 2
    if score[-1, s] == -np.inf:  # too few frames for the tokens (repeats need a blank between)
        return None
    last_frame = {}
    for f in range(frames - 1, -1, -1):
        if states[s] != 0:
            last_frame.setdefault(s, f)  # the last frame in this token's state (walking backwards)
        s = back[f, s]
    return [last_frame[2 * i + 1] for i in range(len(tokens))]


def word_ends(full_context: Path, cuts: Path) -> dict[str, list[float]]:
    """End time (s) of each reference word, from the full-context student's forced alignment."""
    loaded = load_for_decoding(full_context)
    items = [item for item in resolve_inputs([str(cuts)]).items if item.ref_text]
    ends = {}
    for item, post in zip(items, Decoder(loaded, DecodeConfig()).posteriors(items)):
        words = item.ref_text.split()
        tokens, word_of = [], []
        for w, word in enumerate(words):
            ids = loaded.tokenizer.encode(word)  # a word's tokens carry its boundary, as in the whole text
            tokens += ids
            word_of += [w] * len(ids)
        if not tokens or len(tokens) > len(post.matrix):
            continue
        frames = forced_alignment(post.matrix, tokens)
        if frames is None:
            continue
        last = {}
        for w, f in zip(word_of, frames):
            last[w] = f
        ends[item.id] = [(last[w] + 1) * FRAME for w in range(len(words))]
    return ends


def appearance(partials: list[dict], final_words: list[str]) -> list[float]:
    """When each word of the final text first stood in its place in the partial results."""
    times = [None] * len(final_words)
    for p in partials:
        for j, word in enumerate(p["text"].split()[: len(final_words)]):
            if times[j] is None and word == final_words[j]:
                times[j] = p["time"]
    return [t if t is not None else partials[-1]["time"] for t in times]


def latencies(lines: list[dict], refs: dict[str, str], ends: dict[str, list[float]], compute: float) -> list[float]:
    by_id: dict[str, list[dict]] = {}
    for line in lines:
        by_id.setdefault(line["id"], []).append(line)
    out = []
    for uid, seq in by_id.items():
        if uid not in ends or uid not in refs:
            continue
        final_words = seq[-1]["text"].split()
        shown = appearance(seq, final_words)
        ref_words, j = refs[uid].split(), 0
        i = 0
        for r, h in align(ref_words, final_words, "*"):
            if r != "*" and h != "*" and r == h:
                out.append(shown[j] + compute - ends[uid][i])
            i += r != "*"
            j += h != "*"
    return out


def single_stream_rtf(student: Path, items: list, chunk: int) -> float:
    """Real-time factor of one stream at a time (a live microphone), over the given utterances."""
    import torch

    torch.set_num_threads(2)
    return mlkd_arm(student, items, chunk) / sum(item.cut.duration for item in items)


def decode_streaming(student: Path, cuts: Path, chunk: int, out: Path) -> list[dict]:
    partials = out / f"partials_{student.name}_{chunk}ms.jsonl"
    with open(partials, "w") as f:
        subprocess.run([sys.executable, "-m", "mlkd_cli", "decode", str(student), str(cuts), "--streaming",
                        "--chunk-ms", str(chunk), "--threads", "2", "--name", "test", "--force"],
                       check=True, stdout=f, stderr=subprocess.DEVNULL)
    return [json.loads(line) for line in partials.read_text().splitlines()]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--full-context", type=Path, required=True)
    parser.add_argument("students", type=Path, nargs="+")
    args = parser.parse_args()
    cuts = args.data / "manifests" / "test_cuts.jsonl.gz"
    # its own decode dir: the recipe's decode_test_ctc-greedy also holds the unseen languages' test set
    subprocess.run([sys.executable, "-m", "mlkd_cli", "decode", str(args.full_context), str(cuts), "--threads", "2",
                    "--name", "streaming_bench"], check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    full = mean_cer(args.full_context / "decode_streaming_bench_ctc-greedy")
    items = resolve_inputs([str(cuts)]).items
    refs = {item.id: item.ref_text for item in items}
    truth = {item.id: item.ref_lang for item in items}
    ends = word_ends(args.full_context, cuts)
    print(f"full-context student {args.full_context}: test CER {full:.2f}%  (word ends of {len(ends)} utterances)")
    print(f"{'student':22} {'chunk':>6} {'CER %':>7} {'/full':>6} {'RTF':>7} {'RTF 1':>7} {'lat p50':>8} "
          f"{'lat p90':>8} {'LID settled p50':>16} {'p90':>6} {'LID acc':>8}")
    for student in args.students:
        for chunk in CHUNKS:
            lines = decode_streaming(student, cuts, chunk, student)
            decode_dir = student / f"decode_test_ctc-greedy_streaming-{chunk}ms"
            cer = mean_cer(decode_dir)
            rtf = json.loads((decode_dir / "stats.json").read_text())["rtf"]
            lat = latencies(lines, refs, ends, compute=rtf * chunk / 1000)
            finals = [line for line in lines if line["final"]]
            settled = [line["language_settled"] for line in finals]
            accuracy = np.mean([line["language"] == truth[line["id"]] for line in finals])
            alone = single_stream_rtf(student, items[:SINGLE_STREAM_UTTS], chunk)
            print(f"{student.name:22} {chunk:>4}ms {cer:7.2f} {cer / full:6.3f} {rtf:7.4f} {alone:7.4f} {np.median(lat):7.3f}s "
                  f"{np.percentile(lat, 90):7.3f}s {1000 * np.median(settled):14.0f}ms {1000 * np.percentile(settled, 90):4.0f}ms "
                  f"{100 * accuracy:7.2f}%")


if __name__ == "__main__":
    main()
