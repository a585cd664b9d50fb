"""One live stream: what each chunk costs when a single stream is decoded as its audio arrives.

  python bench/live_stream.py MODEL_DIR CUTS [--utts 60] [--chunks 160 320 640] [--threads 1 2]

MODEL_DIR is a streaming model dir; CUTS a manifest with recordings (the first --utts utterances
are decoded, one after the other, each fed in 40 ms blocks as a microphone would give them).
For each chunk size and thread count it prints the real-time factor and the milliseconds of
compute per chunk of:

  mlkd         `mlkd decode --streaming` with one stream (StreamingDecoder, streams=1: online
               fbank, the chunk step, the partial results)
  step         the model's chunk step alone (StreamBatch of one stream, fbank frames precomputed)
  sherpa       sherpa-onnx's OnlineRecognizer (C++, onnxruntime) on `mlkd export --streaming`
  sherpa-int8  the same on its model.int8.onnx (`--int8`)

The sherpa arms run in a subprocess (its onnxruntime, not the Python one) on audio written to a
.npy file; exports go to MODEL_DIR/export_streaming_<ms>ms, made when missing.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from common import left_chunks, mlkd
from mlkd_cli.decode.decoder import DecodeConfig, load_for_decoding
from mlkd_cli.decode.inputs import resolve_inputs
from mlkd_cli.decode.streaming import StreamingDecoder, online_fbank
from mlkd_cli.models.streaming import StreamBatch, use_chunk

BLOCK = 640  # samples per block fed: one 40 ms output frame

SHERPA = r"""
import json, sys, time
import numpy as np, sherpa_onnx
model, tokens, chunk_size, left, threads, audio = sys.argv[1:]
recognizer = sherpa_onnx.OnlineRecognizer.from_wenet_ctc(
    model=model, tokens=tokens, chunk_size=int(chunk_size), num_left_chunks=int(left), num_threads=int(threads),
    sample_rate=16000, feature_dim=80, decoding_method="greedy_search")
utterances = list(np.load(audio, allow_pickle=True))
def decode(samples):
    stream, chunks = recognizer.create_stream(), 0
    for start in range(0, len(samples), 640):
        stream.accept_waveform(16000, samples[start:start + 640])
        while recognizer.is_ready(stream):
            recognizer.decode_stream(stream)
            chunks += 1
        recognizer.get_result(stream)
    stream.accept_waveform(16000, np.zeros(16 * (int(chunk_size) * 40 + 40), np.float32))  # its last chunk
    stream.input_finished()
    while recognizer.is_ready(stream):
        recognizer.decode_stream(stream)
        chunks += 1
    return chunks
decode(utterances[0])  # warm-up
start = time.perf_counter()
chunks = sum(decode(samples) for samples in utterances)
print(json.dumps({"seconds": time.perf_counter() - start, "chunks": chunks}))
"""


def mlkd_arm(model_dir: Path, items: list, chunk: int) -> float:
    """Seconds to decode the items one stream at a time with `mlkd decode --streaming`'s decoder."""
    decoder = StreamingDecoder(load_for_decoding(model_dir), DecodeConfig(streaming=True, chunk_ms=chunk), streams=1)
    decoder.decode(items[:1])  # warm-up
    start = time.perf_counter()
    decoder.decode(items)
    return time.perf_counter() - start


def step_arm(model_dir: Path, audio: list[np.ndarray], chunk: int) -> float:
    """Seconds of the chunk step alone: fbank frames computed first, fed 4 frames (40 ms) at a time."""
    model = load_for_decoding(model_dir).model
    frames = []
    for samples in audio:
        fbank = online_fbank()
        fbank.accept_waveform(16000, samples)
        fbank.input_finished()
        frames.append(np.stack([fbank.get_frame(i) for i in range(fbank.num_frames_ready)]))
    size = use_chunk(model, chunk)
    seconds = 0.0
    for f in frames:
        stream = StreamBatch(model, size)
        start = time.perf_counter()
        for i in range(0, len(f), 4):
            stream.accept([f[i:i + 4]])
        stream.finish()
        seconds += time.perf_counter() - start
    return seconds


def sherpa_arm(model_dir: Path, audio_file: Path, chunk: int, threads: int, int8: bool) -> tuple[float, int]:
    out = model_dir / f"export_streaming_{chunk}ms"
    if not (out / "model.int8.onnx").exists():
        mlkd("export", str(model_dir), "--streaming", "--chunk-ms", str(chunk), "--int8", "--force")
    left = left_chunks(out / "model.onnx")
    model = out / ("model.int8.onnx" if int8 else "model.onnx")
    result = subprocess.run([sys.executable, "-c", SHERPA, str(model), str(out / "tokens.txt"), str(chunk // 40),
                             str(left), str(threads), str(audio_file)], check=True, capture_output=True, text=True)
    figures = json.loads(result.stdout.strip().splitlines()[-1])
    return figures["seconds"], figures["chunks"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model_dir", type=Path)
    parser.add_argument("cuts", type=Path)
    parser.add_argument("--utts", type=int, default=60)
    parser.add_argument("--chunks", type=int, nargs="+", default=[160, 320, 640])
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    args = parser.parse_args()
    items = resolve_inputs([str(args.cuts)]).items[:args.utts]
    audio = [item.cut.resample(16000).load_audio()[0].astype(np.float32) for item in items]
    seconds = sum(len(a) for a in audio) / 16000
    print(f"{args.model_dir}: {len(items)} utterances, {seconds:.1f} s of audio, one stream at a time")
    print(f"{'arm':12} {'chunk':>6} {'threads':>7} {'RTF':>8} {'ms/chunk':>9}")
    with tempfile.TemporaryDirectory() as tmp:
        audio_file = Path(tmp) / "audio.npy"
        stacked = np.empty(len(audio), dtype=object)
        stacked[:] = audio
        np.save(audio_file, stacked, allow_pickle=True)
        for chunk in args.chunks:
            chunks = sum(int(np.ceil(len(a) / 16000 / (chunk / 1000))) for a in audio)
            for threads in args.threads:
                torch.set_num_threads(threads)
                rows = [("mlkd", mlkd_arm(args.model_dir, items, chunk)), ("step", step_arm(args.model_dir, audio, chunk))]
                for int8 in (False, True):
                    elapsed, _ = sherpa_arm(args.model_dir, audio_file, chunk, threads, int8)
                    rows.append(("sherpa-int8" if int8 else "sherpa", elapsed))
                for name, elapsed in rows:
                    print(f"{name:12} {chunk:>4}ms {threads:>7} {elapsed / seconds:8.4f} {1000 * elapsed / chunks:9.2f}",
                          flush=True)


if __name__ == "__main__":
    main()
