"""`mlkd decode --streaming`: audio fed chunk by chunk as it would arrive, partial results as it goes.

Each utterance's samples go in blocks of one chunk into kaldi-native-fbank's online fbank
(the same Kaldi fbank as lhotse's, computed as samples arrive; k2-fsa's library, what
sherpa-onnx uses) and its frames into a :class:`ModelStream`. After every chunk the greedy
transcript so far and the language predicted from the audio so far are reported, when either
changed, as a :class:`Partial`; the final result is searched over the whole posterior
sequence with the decode's method, as for a whole-utterance decode. The final posteriors equal
those of the model's chunked whole-utterance forward (`mlkd decode --chunk-ms N`).

Standard input (``-``) is raw 16-bit little-endian PCM, or a WAV stream (what ``arecord``
writes unless told ``-t raw``), one channel, at ``--sample-rate``.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
import struct
import time
from pathlib import Path
from typing import BinaryIO, Callable, Iterator, Optional

import numpy as np
import torch

from mlkd_cli.contracts import BLANK_ID, OUTPUT_FRAME_MS, SAMPLING_RATE, TOKENS_FILE, read_tokens
from mlkd_cli.data.features import NUM_MEL_BINS
from mlkd_cli.decode.decoder import Decoder, Posteriors
from mlkd_cli.decode.inputs import Item
from mlkd_cli.errors import DataError
from mlkd_cli.experiment.model_dir import TOKENIZER_DIR, ModelDir
from mlkd_cli.export.contract import Geometry, open_mlkd_streaming_export
from mlkd_cli.export.streaming import OnnxStream
from mlkd_cli.log import progress_bar
from mlkd_cli.models.streaming import ChunkOutput, StreamBatch
from mlkd_cli.stage import STAGE_FILE, read_stage

STDIN = "-"
PCM_SCALE = 32768.0  # the WeNet path of sherpa-onnx computes fbank of samples in 16-bit scale


@dataclasses.dataclass
class Partial:
    """One line of the streaming output: the transcript of the audio so far."""

    id: str
    time: float  # seconds of audio received when this result was ready
    text: str
    language: Optional[str]
    final: bool = False
    language_settled: Optional[float] = None  # final results: when the language stopped changing


def online_fbank():
    """kaldi-native-fbank's online fbank with lhotse's settings (80 bins, povey, no dither, edges not snipped)."""
    import kaldi_native_fbank as knf

    options = knf.FbankOptions()
    options.frame_opts.samp_freq = SAMPLING_RATE
    options.frame_opts.dither = 0.0
    options.frame_opts.snip_edges = False
    options.mel_opts.num_bins = NUM_MEL_BINS
    options.mel_opts.low_freq = 20.0
    options.mel_opts.high_freq = -400.0
    return knf.OnlineFbank(options)


class GreedyPath:
    """The greedy CTC transcript of a stream, extended chunk by chunk (repeats collapse across chunks)."""

    def __init__(self) -> None:
        self.tokens: list[int] = []
        self.previous = BLANK_ID

    def extend(self, log_probs: np.ndarray) -> None:
        for token in log_probs.argmax(-1).tolist():
            if token != self.previous and token != BLANK_ID:
                self.tokens.append(token)
            self.previous = token


class Utterance:
    """One stream being decoded: its audio blocks, fbank, chunks, transcript and language decisions."""

    def __init__(self, uid: str, blocks: Iterator[np.ndarray]) -> None:
        self.uid, self.blocks = uid, blocks
        self.fbank = online_fbank()
        self.received = 0  # samples
        self.seconds = 0.0  # processing time
        self.chunks: list[ChunkOutput] = []
        self.path = GreedyPath()
        self.decisions: list[tuple[float, Optional[str]]] = []  # (seconds of audio, language) at each change
        self.said: tuple = (None, None)  # the last reported (text, language)

    def take_block(self) -> bool:
        """Feed the next block to the fbank; False when the audio has ended (then the fbank is finished)."""
        block = next(self.blocks, None)
        if block is None:
            self.fbank.input_finished()
            return False
        self.received += len(block)
        self.fbank.accept_waveform(SAMPLING_RATE, block)
        return True

    def new_frames(self, consumed: int) -> np.ndarray:
        frames = [self.fbank.get_frame(i) for i in range(consumed, self.fbank.num_frames_ready)]
        return np.stack(frames) if frames else np.zeros((0, NUM_MEL_BINS), np.float32)


class StreamingDecoder(Decoder):
    """A :class:`Decoder` whose posteriors come chunk by chunk; ``on_partial`` hears every change.

    Utterances are streamed ``streams`` at a time in step (the longest first), their chunks
    batched; each gets its audio in blocks of one output frame (40 ms), so a chunk is decoded
    as soon as its audio is there.
    """

    def __init__(self, *args, on_partial: Optional[Callable[[Partial], None]] = None, streams: int = 16,
                 **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.on_partial = on_partial or (lambda partial: None)
        self.streams = streams

    @property
    def block(self) -> int:
        """Samples per block fed in: one output frame of audio."""
        return OUTPUT_FRAME_MS * SAMPLING_RATE // 1000

    def posteriors(self, items: list[Item]) -> list[Posteriors]:
        for item in items:
            if not item.cut.has_recording:
                raise DataError(f"{item.id}: streaming decodes audio, and this cut has features only; "
                                "give cuts with recordings (as `mlkd prepare` writes them) or audio files")
        order = sorted(range(len(items)), key=lambda i: items[i].cut.duration, reverse=True)
        out: dict[int, Posteriors] = {}
        with progress_bar(transient=True) as bar:
            task = bar.add_task("decode (streaming)", total=sum(item.cut.duration for item in items))
            for start in range(0, len(order), self.streams):
                group = order[start: start + self.streams]
                utterances = [Utterance(items[i].id, self._blocks(items[i])) for i in group]
                for i, post in zip(group, self.decode_together(utterances)):
                    out[i] = post
                bar.advance(task, sum(items[i].cut.duration for i in group))
        return [out[i] for i in range(len(items))]

    def decode_together(self, utterances: list[Utterance]) -> list[Posteriors]:
        """Stream the utterances in step, their chunks batched; each one's posteriors."""
        model = self.loaded.model
        batch = StreamBatch(model, model.encoder.chunk, self.forced, len(utterances))
        active = list(utterances)  # the batch's streams, in order
        while active:
            start = time.perf_counter()
            going = [u.take_block() for u in active]
            ended = [j for j, more in enumerate(going) if not more]
            if ended:  # their audio is over: they leave the batch and finish together
                done, leaving = batch.remove(ended), [active[j] for j in ended]
                active = [u for j, u in enumerate(active) if j not in ended]
                outputs = done.accept([u.new_frames(done.frames_received[j]) for j, u in enumerate(leaving)])
                for u, new, last in zip(leaving, outputs, done.finish()):
                    u.seconds += (time.perf_counter() - start) / len(leaving)
                    self._report(u, new + last)
            start = time.perf_counter()
            outputs = batch.accept([u.new_frames(batch.frames_received[j]) for j, u in enumerate(active)])
            for u, new in zip(active, outputs):
                u.seconds += (time.perf_counter() - start) / len(active)
                self._report(u, new)
        return [self._posteriors(u) for u in utterances]

    def _blocks(self, item: Item) -> Iterator[np.ndarray]:
        return cut_blocks(item.cut, self.block)

    def _posteriors(self, u: Utterance) -> Posteriors:
        if not u.chunks:
            raise DataError(f"{u.uid}: too short to decode ({u.received} samples)")
        matrix = np.concatenate([c.log_probs for c in u.chunks])
        last = u.chunks[-1].lid_logits
        lid = [(u.received / SAMPLING_RATE, last)] if last is not None else None
        settled = u.decisions[-1][0] if u.decisions else None  # from when the decision stayed the final one
        return Posteriors(matrix, lid, u.seconds, settled)

    def _report(self, u: Utterance, new: list[ChunkOutput]) -> None:
        """Add the ``new`` chunks, record the language decision after them and report a change of
        text or language."""
        if not new:
            return
        u.chunks += new
        for chunk in new:
            u.path.extend(chunk.log_probs)
        language = self._partial_language(new[-1].lid_logits)
        seconds = u.received / SAMPLING_RATE
        if not u.decisions or u.decisions[-1][1] != language:
            u.decisions.append((seconds, language))
        text = self.loaded.tokenizer.decode(u.path.tokens)
        if (text, language) != u.said:
            self.on_partial(Partial(u.uid, round(seconds, 3), text, language))
            u.said = (text, language)

    def _partial_language(self, lid_logits: Optional[np.ndarray]) -> Optional[str]:
        if self.config.lang or lid_logits is None:
            return self.config.lang or self.loaded.own_language
        return self.loaded.languages[int(lid_logits.argmax())]


class OnnxStreamingDecoder(StreamingDecoder):
    """`decode --streaming --onnx FILE`: posteriors from a streaming export (`mlkd export --streaming`,
    its model.onnx or model.int8.onnx) run by onnxruntime the way sherpa-onnx's OnlineRecognizer
    runs it, so the text is the one a device gets: fbank of the samples in 16-bit scale, a chunk
    decoded once more than its 4C + 3 frames are there, and after the audio a chunk and 40 ms of
    silence (what docs/decode.md tells sherpa-onnx users to append before ``input_finished()``).
    Streams go one at a time (the graph's batch is 1). A language-adaptive export's language is
    the model's LID head on the running mean the graph keeps in its cache."""

    def __init__(self, loaded: ModelDir, config, export: "StreamingExport", search=None,
                 on_partial: Optional[Callable[[Partial], None]] = None) -> None:
        super().__init__(loaded, config, search, on_partial=on_partial, streams=1)
        self.export = export

    def decode_together(self, utterances: list[Utterance]) -> list[Posteriors]:
        return [self._stream(u) for u in utterances]

    def _stream(self, u: Utterance) -> Posteriors:
        geo = self.export.geo
        stream, consumed = OnnxStream(self.export.session, geo), 0
        tail = np.zeros((geo.chunk + 1) * self.block, np.float32)
        for block in itertools.chain(u.blocks, [None]):
            start = time.perf_counter()
            if block is None:
                u.fbank.accept_waveform(SAMPLING_RATE, tail)
                u.fbank.input_finished()
            else:
                u.received += len(block)
                u.fbank.accept_waveform(SAMPLING_RATE, block * PCM_SCALE)
            outputs = []
            while u.fbank.num_frames_ready - consumed > geo.frames:  # sherpa-onnx's IsReady
                frames = np.stack([u.fbank.get_frame(i) for i in range(consumed, consumed + geo.frames)])
                outputs.append(ChunkOutput(stream.step(frames), self._lid_logits(stream)))
                consumed += 4 * geo.chunk
            u.seconds += time.perf_counter() - start
            self._report(u, outputs)
        return self._posteriors(u)

    def _lid_logits(self, stream: OnnxStream) -> Optional[np.ndarray]:
        if not self.loaded.languages:
            return None
        with torch.no_grad():
            return self.loaded.model.lid_head(torch.from_numpy(stream.language_mean())).float().numpy()


@dataclasses.dataclass(frozen=True)
class StreamingExport:
    """An `mlkd export --streaming` graph of a model dir: its onnxruntime session and geometry."""

    path: Path
    session: object
    geo: Geometry

    @property
    def chunk_ms(self) -> int:
        return self.geo.chunk * OUTPUT_FRAME_MS

    @classmethod
    def open(cls, path: Path, loaded: ModelDir, weights_digest: str) -> "StreamingExport":
        """The export at ``path`` (tokens.txt beside it), checked against sherpa-onnx's contract and
        against the model dir ``loaded`` (whose weights have ``weights_digest``): its token table and
        shapes, and the weights the export's stage.json names, when it is there."""
        tokens = path.parent / TOKENS_FILE
        if not path.is_file() or not tokens.is_file():
            raise DataError(f"{path if not path.is_file() else tokens}: no such file; give --onnx the model.onnx or "
                            "model.int8.onnx of `mlkd export --streaming MODEL_DIR` (tokens.txt beside it)")
        sess, geo = open_mlkd_streaming_export(path, tokens)
        fix = f"give --onnx an export of this model (`mlkd export --streaming {loaded.path}`)"
        record = read_stage(path.parent)
        exported = record.inputs.get("model", {}) if record is not None else {}
        if exported and exported.get("digest") != weights_digest:
            raise DataError(f"{path}: an export of {exported.get('path')} ({path.parent / STAGE_FILE}), not of "
                            f"{loaded.path}; {fix}")
        config = loaded.model.config
        want = (config.num_layers + bool(config.languages), config.num_heads, config.d_model, config.conv_kernel,
                config.vocab_size)
        if (geo.blocks, geo.heads, geo.width, geo.kernel, geo.vocab) != want or read_tokens(tokens) != read_tokens(
                loaded.path / TOKENIZER_DIR / TOKENS_FILE):
            raise DataError(f"{path}: its shapes or token table are not those of {loaded.path}; {fix}")
        return cls(path, sess, geo)


def cut_blocks(cut, block: int) -> Iterator[np.ndarray]:
    """A cut's mono 16 kHz samples in blocks of ``block`` samples (the last may be shorter).

    A cut that is a span of one audio file libsndfile reads is read as it streams, so memory does
    not grow with the file's length; any other (a pipe in wav.scp, a format only audioread
    decodes) is loaded whole by lhotse, as a whole-utterance decode loads it.
    """
    pieces = _file_pieces(cut)
    if pieces is None:
        samples = np.atleast_2d(cut.load_audio()).mean(axis=0).astype(np.float32)
        yield from (samples[i: i + block] for i in range(0, len(samples), block))
        return
    pending = np.zeros(0, np.float32)
    for piece in pieces:
        pending = np.concatenate([pending, piece])
        whole = len(pending) - len(pending) % block
        yield from (pending[i: i + block] for i in range(0, whole, block))
        pending = pending[whole:]
    if len(pending):
        yield pending


def _file_pieces(cut) -> Optional[Iterator[np.ndarray]]:
    """The cut's mono 16 kHz samples read piece by piece from its file; None where it is not one
    file libsndfile opens, as recorded (no transform but a resampling to 16 kHz)."""
    import soundfile as sf
    from lhotse.augmentation import Resample

    recording = cut.recording
    if len(recording.sources) != 1 or recording.sources[0].type != "file":
        return None
    if not all(isinstance(t, Resample) and t.target_sampling_rate == SAMPLING_RATE for t in recording.transforms or ()):
        return None
    path = recording.sources[0].source
    try:
        rate = sf.info(path).samplerate
    except (sf.LibsndfileError, RuntimeError, OSError):
        return None
    channels = cut.channel if isinstance(cut.channel, list) else [cut.channel]
    start, frames = round(cut.start * rate), round(cut.duration * rate)

    def pieces() -> Iterator[np.ndarray]:
        resampler = StreamResampler(rate, SAMPLING_RATE) if rate != SAMPLING_RATE else None
        for data in sf.blocks(path, blocksize=rate, start=start, frames=frames, dtype="float32", always_2d=True):
            mono = data[:, channels].mean(axis=1)
            yield resampler(mono) if resampler else mono
        if resampler:
            yield resampler.flush()

    return pieces()


def pcm_blocks(source: BinaryIO, sample_rate: Optional[int], block_seconds: float) -> Iterator[np.ndarray]:
    """Float samples of 16-bit mono PCM from ``source`` (raw, or WAV with its header), in blocks.

    A WAV header's rate must equal ``sample_rate`` when one is given; raw PCM is taken to be at
    ``sample_rate`` (16 kHz when None). Audio at another rate than 16 kHz is resampled as it comes.
    """
    head = _read_exactly(source, 12)
    rate = sample_rate or SAMPLING_RATE
    pending = b""
    if head[:4] == b"RIFF" and head[8:12] == b"WAVE":
        wav_rate = _wav_header(source)
        if sample_rate is not None and wav_rate != sample_rate:
            raise DataError(f"stdin: the WAV header says {wav_rate} Hz, not the --sample-rate {sample_rate} given")
        if sample_rate is None and wav_rate != SAMPLING_RATE:
            raise DataError(f"stdin: audio at {wav_rate} Hz; the model reads {SAMPLING_RATE} Hz: pass --sample-rate "
                            f"{wav_rate} to resample it as it arrives")
        rate = wav_rate
    else:
        pending = head
    resampler = StreamResampler(rate, SAMPLING_RATE) if rate != SAMPLING_RATE else None
    size = 2 * max(1, round(block_seconds * rate))
    total = len(pending)
    while True:
        data = source.read(max(size - len(pending), 2))
        total += len(data)
        data, at_end = pending + data, not data
        usable = len(data) - len(data) % 2
        pending = data[usable:]
        if usable:
            samples = np.frombuffer(data[:usable], dtype="<i2").astype(np.float32) / 32768.0
            yield resampler(samples) if resampler else samples
        if at_end:
            break
    if pending:
        raise DataError(f"stdin: the audio ends mid-sample ({total} bytes, an odd number); 16-bit PCM has 2 bytes "
                        "per sample: check the recorder's format (arecord -f S16_LE -c 1)")
    if resampler:
        yield resampler.flush()


def _read_exactly(source: BinaryIO, n: int) -> bytes:
    data = b""
    while len(data) < n:
        more = source.read(n - len(data))
        if not more:
            break
        data += more
    return data


def _wav_header(source: BinaryIO) -> int:
    """Read a WAV stream's chunks up to its data; its sample rate (16-bit mono PCM only)."""
    rate = None
    while True:
        header = _read_exactly(source, 8)
        if len(header) < 8:
            raise DataError("stdin: a WAV header without audio data")
        kind, size = header[:4], struct.unpack("<I", header[4:])[0]
        if kind == b"data":
            if rate is None:
                raise DataError("stdin: a WAV stream without a fmt chunk before its data")
            return rate
        body = _read_exactly(source, size + size % 2)
        if kind == b"fmt ":
            fmt, channels, rate = struct.unpack("<HHI", body[:8])
            bits = struct.unpack("<H", body[14:16])[0]
            if fmt not in (1, 0xFFFE) or bits != 16 or channels != 1:
                raise DataError(f"stdin: WAV of {channels} channel(s), {bits}-bit, format {fmt}; streaming reads "
                                "16-bit mono PCM (arecord -f S16_LE -c 1)")


class StreamResampler:
    """Polyphase resampling of a stream: the output equals scipy's ``resample_poly`` of all input so far.

    Hand-written because no installed library resamples a stream (scipy's and lhotse's work on
    whole signals): each call keeps the input the filter still needs and emits the outputs whose
    window is complete; ``flush`` emits the rest as if the signal ended with zeros.
    """

    def __init__(self, source_rate: int, target_rate: int) -> None:
        from scipy.signal import firwin

        g = math.gcd(source_rate, target_rate)
        self.up, self.down = target_rate // g, source_rate // g
        half = 10 * max(self.up, self.down)  # resample_poly's default: a Kaiser-windowed sinc, 10 zero crossings
        self.taps = firwin(2 * half + 1, 1.0 / max(self.up, self.down), window=("kaiser", 5.0)) * self.up
        self.half = half
        self.buffer = np.zeros(0)  # input samples from index self.start
        self.start = 0
        self.emitted = 0  # output samples so far
        self.total = 0  # input samples so far

    def __call__(self, samples: np.ndarray, final: bool = False) -> np.ndarray:
        self.buffer = np.concatenate([self.buffer, samples.astype(np.float64)])
        self.total += len(samples)
        end = -(-self.total * self.up // self.down) if final else self._complete()
        out = self._outputs(self.emitted, max(end, self.emitted))
        self.emitted = max(self.emitted, end)
        drop = max(0, (self.emitted * self.down - self.half) // self.up - self.start)
        self.buffer, self.start = self.buffer[drop:], self.start + drop
        return out

    def flush(self) -> np.ndarray:
        return self(np.zeros(0), final=True)

    def _complete(self) -> int:
        """Outputs whose filter window lies within the input so far."""
        return max(0, ((self.total - 1) * self.up - self.half) // self.down + 1)

    def _outputs(self, begin: int, end: int) -> np.ndarray:
        # y[n] = sum_k taps[k] * upsampled[n*down + half - k], upsampled[m] = x[m / up] where up divides m.
        centre = np.arange(begin, end) * self.down + self.half
        first = np.maximum(0, -(-(centre - 2 * self.half) // self.up))
        idx = first[:, None] + np.arange(2 * self.half // self.up + 2)[None, :]
        valid = idx <= np.minimum(self.total - 1, centre // self.up)[:, None]
        taps = self.taps[np.clip(centre[:, None] - idx * self.up, 0, 2 * self.half)]
        x = self.buffer[np.clip(idx - self.start, 0, max(len(self.buffer) - 1, 0))] if len(self.buffer) else 0.0
        return np.where(valid, taps * x, 0.0).sum(1).astype(np.float32)
