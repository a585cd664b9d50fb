"""`mlkd decode --streaming`: chunk-by-chunk decoding of files and standard input, partial results,
the same posteriors as the chunked whole-utterance decode, and its errors."""

from __future__ import annotations

import io
import json
import wave
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from scipy.signal import resample_poly

from mlkd_cli.decode.decoder import DecodeConfig, Decoder, load_for_decoding
from mlkd_cli.decode.inputs import resolve_inputs
from mlkd_cli.decode.streaming import StreamingDecoder, StreamResampler, Utterance, online_fbank, pcm_blocks
from mlkd_cli.data.features import fbank_extractor
from mlkd_cli.errors import DataError
from mlkd_cli.models.config import StreamingConfig
from conftest import run_cli as run
from fixtures.exports import make_experiment, synthetic_audio

STREAMING = StreamingConfig(chunk_ms=(160, 320), left_context_ms=640)


def json_lines(output: str) -> list[dict]:
    return [json.loads(line) for line in output.splitlines() if line.startswith("{")]


@pytest.fixture(scope="module")
def streaming_exp(tmp_path_factory, data_dir, wavs) -> Path:
    return make_experiment(tmp_path_factory.mktemp("stream") / "adaptive", data_dir, wavs[0],
                           languages=("de", "en"), streaming=STREAMING)


@pytest.fixture(scope="module")
def plain_exp(tmp_path_factory, data_dir, wavs) -> Path:
    return make_experiment(tmp_path_factory.mktemp("stream") / "plain", data_dir, wavs[0])


def test_online_fbank_is_lhotse_s_fbank():
    samples = synthetic_audio(1.3, seed=5)
    fbank = online_fbank()
    for i in range(0, len(samples), 999):  # blocks that split frames
        fbank.accept_waveform(16000, samples[i: i + 999])
    fbank.input_finished()
    ours = np.stack([fbank.get_frame(i) for i in range(fbank.num_frames_ready)])
    reference = fbank_extractor().extract(samples, 16000)
    assert ours.shape == reference.shape
    np.testing.assert_allclose(ours, reference, atol=1e-3)


@pytest.mark.parametrize("chunk_ms", [160, 320])
def test_streaming_a_file_equals_its_chunked_whole_utterance_decode(streaming_exp, wavs, chunk_ms):
    loaded = load_for_decoding(streaming_exp)
    items = resolve_inputs([str(w) for w in wavs]).items
    whole = Decoder(loaded, DecodeConfig(chunk_ms=chunk_ms)).posteriors(items)
    streamed = StreamingDecoder(loaded, DecodeConfig(chunk_ms=chunk_ms, streaming=True)).posteriors(items)
    for a, b in zip(whole, streamed):
        assert a.matrix.shape == b.matrix.shape
        assert (a.matrix.argmax(-1) == b.matrix.argmax(-1)).mean() > 0.97  # online vs lhotse fbank: ~1e-4 apart
        np.testing.assert_allclose(b.lid[0][1], a.lid[0][1], atol=1e-2)

    streaming = run("decode", streaming_exp, *wavs, "--streaming", "--chunk-ms", chunk_ms)
    chunked = run("decode", streaming_exp, *wavs, "--chunk-ms", chunk_ms)
    assert streaming.exit_code == 0 and chunked.exit_code == 0, streaming.output + chunked.output
    finals = {line["id"]: line["text"] for line in json_lines(streaming.output) if line["final"]}
    tsv = {Path(p).stem: text for p, _, text in (line.split("\t") for line in chunked.output.splitlines() if "\t" in line)}
    assert finals == tsv and all(len(text) >= 20 for text in finals.values()), (finals, tsv)
    assert (streaming_exp / f"decode_files_ctc-greedy_streaming-{chunk_ms}ms" / "hyps.jsonl").is_file()
    assert (streaming_exp / f"decode_files_ctc-greedy_chunk-{chunk_ms}ms" / "hyps.jsonl").is_file()


def test_partial_results_grow_with_the_audio_and_end_in_the_final_one(streaming_exp, wavs):
    result = run("decode", streaming_exp, wavs[0], "--streaming", "--chunk-ms", 320, "--name", "long")
    lines = json_lines(result.output)
    partials, final = lines[:-1], lines[-1]
    times = [p["time"] for p in partials]
    assert len(partials) >= 5 and times == sorted(times) and times[0] <= 0.64 + 0.03
    assert not any(p["final"] for p in partials) and final["final"] and final["time"] == pytest.approx(3.0)
    assert final["text"] == partials[-1]["text"]
    assert sum(p["text"] != q["text"] for p, q in zip(partials, partials[1:])) >= 3  # the text grows as audio comes
    assert final["language"] in ("de", "en") and 0 < final["language_settled"] <= 3.0
    settled = [p for p in partials if p["time"] >= final["language_settled"]]
    assert {p["language"] for p in settled} == {final["language"]}
    hyp = json.loads((streaming_exp / "decode_long_ctc-greedy_streaming-320ms" / "hyps.jsonl").read_text())
    assert hyp["language_settled"] == final["language_settled"]


def pcm16(samples: np.ndarray) -> bytes:
    return (np.clip(samples, -1, 1) * 32767).astype("<i2").tobytes()


def wav_bytes(samples: np.ndarray, rate: int) -> bytes:
    out = io.BytesIO()
    with wave.open(out, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(pcm16(samples))
    return out.getvalue()


def test_standard_input_raw_pcm_and_wav_give_the_file_s_result(streaming_exp, tmp_path):
    samples = synthetic_audio(2.2, seed=7)
    path = tmp_path / "clip.wav"
    sf.write(path, samples, 16000, subtype="PCM_16")
    from_file = json_lines(run("decode", streaming_exp, path, "--streaming", "--chunk-ms", 160, "-o", tmp_path).output)[-1]
    for data in (pcm16(samples), wav_bytes(samples, 16000)):
        result = run("decode", streaming_exp, "--streaming", "--chunk-ms", 160, "-", input=data)
        assert result.exit_code == 0, result.output
        final = json_lines(result.output)[-1]
        assert final["final"] and final["id"] == "-" and final["time"] == pytest.approx(2.2)
        assert (final["text"], final["language"]) == (from_file["text"], from_file["language"])


def test_standard_input_at_another_rate(streaming_exp):
    samples = synthetic_audio(2.0, seed=3)
    low = resample_poly(samples, 1, 2)
    refused = run("decode", streaming_exp, "--streaming", "-", input=wav_bytes(low, 8000))
    assert refused.exit_code == 1 and "8000 Hz" in refused.output and "--sample-rate 8000" in refused.output
    # What the stream should hear: the 16-bit samples, resampled to 16 kHz as one signal.
    heard = resample_poly(np.frombuffer(pcm16(low), "<i2") / 32768.0, 2, 1).astype(np.float32)
    decoder = StreamingDecoder(load_for_decoding(streaming_exp), DecodeConfig(streaming=True))
    expected = decoder.result("-", 2.0, decoder.decode_together([Utterance("-", iter([heard]))])[0])
    for data in (wav_bytes(low, 8000), pcm16(low)):
        result = run("decode", streaming_exp, "--streaming", "--sample-rate", 8000, "-", input=data)
        assert result.exit_code == 0, result.output
        final = json_lines(result.output)[-1]
        assert final["time"] == pytest.approx(2.0) and final["text"] == expected.text
    mismatch = run("decode", streaming_exp, "--streaming", "--sample-rate", 16000, "-", input=wav_bytes(low, 8000))
    assert mismatch.exit_code == 1 and "says 8000 Hz" in mismatch.output


@pytest.mark.parametrize("args,data,message", [
    (["--streaming", "-"], b"\x01\x02\x03", "ends mid-sample (3 bytes"),
    (["-"], b"\x00\x00", "with --streaming"),
    (["--streaming", "--chunk-ms", 100, "-"], b"\x00\x00" * 4000, "multiple of 40"),
])
def test_standard_input_errors(streaming_exp, args, data, message):
    result = run("decode", streaming_exp, *args, input=data)
    assert result.exit_code == 1 and message in result.output, result.output
    assert len([line for line in result.output.splitlines() if line.startswith("Error")]) == 1


@pytest.mark.parametrize("rate", [0, -8000])
def test_a_sample_rate_below_1_is_refused(streaming_exp, rate):
    result = run("decode", streaming_exp, "--streaming", "--sample-rate", rate, "-", input=b"\x00\x00" * 4000)
    assert result.exit_code == 2 and "Invalid value for '--sample-rate'" in result.output, result.output


def test_a_model_that_does_not_stream_refuses_streaming(plain_exp, wavs):
    for args in (["--streaming"], ["--chunk-ms", 320]):
        result = run("decode", plain_exp, wavs[0], *args)
        assert result.exit_code == 1 and "not a streaming model" in result.output, result.output
        assert "decode it without --streaming" in result.output
    result = run("decode", plain_exp, wavs[0], "--sample-rate", 8000)
    assert result.exit_code == 1 and "standard input" in result.output


def test_resampler_equals_scipy_on_the_whole_signal():
    rng = np.random.default_rng(0)
    for rate in (8000, 44100):
        x = rng.standard_normal(rate + 37)
        resampler, pieces, i = StreamResampler(rate, 16000), [], 0
        while i < len(x):
            n = int(rng.integers(1, 3000))
            pieces.append(resampler(x[i: i + n]))
            i += n
        got = np.concatenate(pieces + [resampler.flush()])
        expected = resample_poly(x, *(np.array([16000, rate]) // np.gcd(16000, rate)))
        np.testing.assert_allclose(got, expected, atol=1e-5)


def test_pcm_blocks_need_whole_samples():
    blocks = list(pcm_blocks(io.BytesIO(b"\x00\x40" * 1000), None, 0.01))
    assert [len(b) for b in blocks] == [160] * 6 + [40] and blocks[0][0] == 0.5 and blocks[-1][-1] == 0.5
    with pytest.raises(DataError, match="WAV of 2 channel"):
        stereo = io.BytesIO()
        with wave.open(stereo, "wb") as w:
            w.setnchannels(2)
            w.setsampwidth(2)
            w.setframerate(16000)
            w.writeframes(b"\x00" * 400)
        list(pcm_blocks(io.BytesIO(stereo.getvalue()), None, 0.01))


def test_the_streaming_greedy_path_keeps_a_token_repeated_after_a_blank_even_across_chunks():
    """a ∅ a is two a's; a a is one, also when the chunk boundary falls between them."""
    from mlkd_cli.decode.streaming import GreedyPath

    def frames(*tokens: int) -> np.ndarray:
        return np.log(np.eye(4)[list(tokens)] * 0.97 + 0.01)

    path = GreedyPath()
    path.extend(frames(2, 0, 2, 2))
    assert path.tokens == [2, 2]
    path.extend(frames(2))  # continues the last a
    path.extend(frames(0))
    path.extend(frames(2, 3))
    assert path.tokens == [2, 2, 2, 3]
