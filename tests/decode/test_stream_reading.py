"""`decode --streaming` reads each file as it streams it: the blocks equal the loaded audio, and
memory stays flat however long the file."""

from __future__ import annotations

import json
import tracemalloc

import numpy as np
import pytest
import soundfile as sf
from lhotse import Recording

from mlkd_cli.decode.inputs import resolve_inputs
from mlkd_cli.decode.streaming import cut_blocks

BLOCK = 640  # one output frame of 16 kHz audio, what the streaming decoder feeds


def write(path, seconds: float, rate: int, channels: int = 1, seed: int = 0):
    rng = np.random.default_rng(seed)
    sf.write(path, (0.3 * rng.standard_normal((int(seconds * rate), channels))).astype(np.float32), rate,
             subtype="PCM_16")
    return path


def streamed(cut) -> tuple[np.ndarray, list[int]]:
    blocks = list(cut_blocks(cut, BLOCK))
    return np.concatenate(blocks), [len(b) for b in blocks]


def test_a_stereo_file_streams_as_its_loaded_channel_mean(tmp_path):
    cut = resolve_inputs([str(write(tmp_path / "a.wav", 2.03, 16000, channels=2))]).items[0].cut
    samples, sizes = streamed(cut)
    np.testing.assert_allclose(samples, np.atleast_2d(cut.load_audio()).mean(0), atol=1e-6)
    assert set(sizes[:-1]) == {BLOCK} and 0 < sizes[-1] <= BLOCK


def test_a_segment_of_a_file_streams_only_its_span(tmp_path):
    whole = Recording.from_file(write(tmp_path / "b.wav", 3.0, 16000)).to_cut()
    cut = whole.truncate(offset=0.75, duration=1.5)
    samples, _ = streamed(cut)
    assert len(samples) == 24000
    np.testing.assert_allclose(samples, cut.load_audio()[0], atol=1e-6)


def test_an_8_khz_file_is_resampled_as_it_streams(tmp_path):
    cut = resolve_inputs([str(write(tmp_path / "c.wav", 2.0, 8000))]).items[0].cut
    samples, _ = streamed(cut)
    loaded = cut.load_audio()[0]
    assert abs(len(samples) - len(loaded)) <= 1 and len(samples) == 32000
    middle = slice(200, 31800)  # the two resamplers' filters differ at the edges only
    assert np.abs(samples[middle] - loaded[middle]).max() < 0.02


def test_audio_only_a_pipe_gives_is_loaded_whole(tmp_path):
    wav = write(tmp_path / "d.wav", 1.0, 16000)
    recording = Recording.from_file(wav)
    piped = Recording.from_dict({**recording.to_dict(), "sources": [
        {"type": "command", "channels": [0], "source": f"cat {wav}"}]}).to_cut()
    samples, _ = streamed(piped)
    np.testing.assert_allclose(samples, recording.load_audio()[0], atol=1e-6)


def test_memory_does_not_grow_with_a_one_hour_file(tmp_path):
    path = tmp_path / "hour.wav"
    with sf.SoundFile(path, "w", 16000, 1, subtype="PCM_16") as f:
        minute = (0.1 * np.random.default_rng(0).standard_normal(16000 * 60)).astype(np.float32)
        for _ in range(60):
            f.write(minute)
    cut = resolve_inputs([str(path)]).items[0].cut
    tracemalloc.start()
    try:
        total = sum(len(b) for b in cut_blocks(cut, BLOCK))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert total == 3600 * 16000
    assert peak < 8 * 2**20, f"peak {peak / 2**20:.1f} MiB while streaming a one-hour file"


@pytest.mark.parametrize("rate", [16000, 8000])
def test_block_sizes_are_exact_until_the_last(tmp_path, rate):
    cut = resolve_inputs([str(write(tmp_path / "e.wav", 1.37, rate))]).items[0].cut
    _, sizes = streamed(cut)
    assert set(sizes[:-1]) == {BLOCK} and sum(sizes) in (21920, 21921)


# Runs the decode in a child of its own, so that RUSAGE_CHILDREN is the decode's peak alone.
PEAK_RSS = """
import resource, subprocess, sys
run = subprocess.run(sys.argv[1:], capture_output=True, text=True)
print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
sys.stderr.write(run.stderr)
sys.exit(run.returncode)
"""


@pytest.mark.slow
def test_a_one_hour_file_streams_in_bounded_memory(tmp_path, data_dir, wavs):
    import subprocess
    import sys

    from fixtures.exports import make_experiment
    from mlkd_cli.models.config import StreamingConfig

    exp = make_experiment(tmp_path / "exp", data_dir, wavs[0], streaming=StreamingConfig(chunk_ms=(320,),
                                                                                           left_context_ms=640))
    hour = tmp_path / "hour.wav"
    speech, _ = sf.read(wavs[0], dtype="int16")
    with sf.SoundFile(hour, "w", 16000, 1, subtype="PCM_16") as f:
        for _ in range(-(-3600 * 16000 // len(speech))):
            f.write(speech)
    run = subprocess.run([sys.executable, "-c", PEAK_RSS, sys.executable, "-m", "mlkd_cli", "decode", str(exp),
                          str(hour), "--streaming", "--name", "hour"], capture_output=True, text=True, timeout=1200)
    assert run.returncode == 0, run.stderr
    peak_mib = int(run.stdout.split()[-1]) / 1024
    assert peak_mib < 512, f"peak RSS {peak_mib:.0f} MiB"
    hyps = [json.loads(line) for line in (exp / "decode_hour_ctc-greedy_streaming" / "hyps.jsonl").read_text().splitlines()]
    seconds = sf.info(hour).duration
    assert len(hyps) == 1 and hyps[0]["id"] == "hour" and hyps[0]["duration"] == pytest.approx(seconds, abs=0.01)
    segments = hyps[0]["segments"]  # transcribed to the end: its last segment ends in the last minute
    assert len(segments) > 100 and segments[-1]["end"] > seconds - 60 and len(hyps[0]["text"]) > 1000
    print(f"peak RSS {peak_mib:.0f} MiB")
