"""`mlkd decode`: batched inference → stitched posteriors → search → text + language.

Windows of all inputs are sorted by duration and batched up to ``max_duration`` seconds of
audio; the model runs under ``torch.inference_mode``. Precomputed features (prepared cuts)
are read as they are; raw audio is averaged over channels, resampled to 16 kHz and turned
into the same fbank the model was trained on, one window at a time, so memory stays bounded
for hour-long files.
"""

from __future__ import annotations

import dataclasses
import logging
import time
import warnings
from pathlib import Path
from typing import Callable, NamedTuple, Optional

import numpy as np
import torch

from mlkd_cli.config import ADDED
from mlkd_cli.data.features import downmix, fbank_extractor
from mlkd_cli.data.language import UNKNOWN
from mlkd_cli.decode.chunks import Window, plan_windows
from mlkd_cli.decode.ctc import greedy_confidence, greedy_search, prefix_beam_search, restrict_tokens
from mlkd_cli.decode.inputs import Item
from mlkd_cli.decode.rejection import SCORES, Rejection
from mlkd_cli.decode.timing import segment_record, segments_of, token_spans, words_of
from mlkd_cli.errors import ConfigError
from mlkd_cli.experiment.model_dir import ModelDir, load_model_dir
from mlkd_cli.log import progress_bar
from mlkd_cli.models.streaming import use_chunk

logger = logging.getLogger("mlkd")

METHODS = ("ctc-greedy", "ctc-prefix-beam", "wfst")


@dataclasses.dataclass(frozen=True)
class DecodeConfig:
    method: str = "ctc-greedy"
    beam: int = 8  # prefix beam width
    lang: str = ""  # force this language (and its token inventory); "" = predicted
    max_duration: float = 200.0  # seconds of audio per batch
    chunk: float = 30.0  # longer inputs are decoded in windows of this many seconds ...
    overlap: float = 2.0  # ... overlapping by this much
    threads: int = 0  # torch intra-op threads; 0 = torch's default
    quantize: str = ""  # "int8": dynamic int8 quantization of the linear layers (CPU)
    graph: str = "lm"  # WFST graph: ctc (topology only), lexicon, lm (lexicon + n-gram)
    lm_order: int = 3
    wfst_beam: float = 16.0
    max_active: int = 7000
    acoustic_scale: float = 1.0
    # Flag speech of no trained language `unknown` (see mlkd_cli.decode.rejection); None: never.
    unknown_threshold: Optional[float] = None
    unknown_score: str = "lid"
    # A streaming model: its chunk size (None: the largest it was trained with); `streaming`
    # feeds the audio chunk by chunk as it would arrive, else each utterance runs at once.
    chunk_ms: Optional[int] = dataclasses.field(default=None, metadata=ADDED)
    streaming: bool = dataclasses.field(default=False, metadata=ADDED)
    # With `streaming`: the posteriors of this `mlkd export --streaming` graph in onnxruntime, as
    # sherpa-onnx runs it (mlkd_cli.decode.streaming.OnnxStreamingDecoder); "": mlkd's PyTorch model.
    onnx: str = dataclasses.field(default="", metadata=ADDED)
    # Greedy decodes time their words and break the text into segments at pauses of at least
    # min_pause seconds, none longer than max_segment (mlkd_cli.decode.timing).
    min_pause: float = dataclasses.field(default=0.5, metadata=ADDED)
    max_segment: float = dataclasses.field(default=15.0, metadata=ADDED)

    # (field, the option that sets it, its least value, whether that value itself is allowed).
    # A chunk under a second would decode in windows too short to carry any context.
    _limits = (
        ("beam", "--beam", 1, True),
        ("max_duration", "--max-duration", 0, False),
        ("chunk", "--chunk", 1, True),
        ("threads", "--threads", 0, True),
        ("lm_order", "--lm-order", 1, True),
        ("wfst_beam", "--wfst-beam", 0, False),
        ("max_active", "--max-active", 1, True),
        ("acoustic_scale", "--acoustic-scale", 0, False),
        ("min_pause", "--min-pause", 0, False),
        ("max_segment", "--max-segment", 0, False),
    )

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ConfigError(f"decoding method {self.method!r} is not one of {', '.join(METHODS)}")
        if self.quantize not in ("", "int8"):
            raise ConfigError(f"quantize {self.quantize!r} is not supported; use int8 or nothing")
        for field, option, least, inclusive in self._limits:
            value = getattr(self, field)
            if not (value >= least if inclusive else value > least):  # also refuses NaN
                raise ConfigError(f"{option} {value}: must be {'at least' if inclusive else 'over'} {least}")
        if self.unknown_score not in SCORES:
            raise ConfigError(f"rejection score {self.unknown_score!r} is not one of {', '.join(SCORES)}")
        if self.onnx and not self.streaming:
            raise ConfigError(f"--onnx {self.onnx}: an export is decoded chunk by chunk, as sherpa-onnx runs it; "
                              "add --streaming")
        if self.onnx and self.quantize:
            raise ConfigError("--int8 quantizes mlkd's PyTorch model; decode an int8 export with "
                              "--onnx EXPORT_DIR/model.int8.onnx instead")
        if not 0 <= self.overlap < self.chunk / 2:
            raise ConfigError(f"--overlap {self.overlap}: must be at least 0 and under half of --chunk ({self.chunk})")


def load_for_decoding(model_dir: Path, quantize: str = "") -> ModelDir:
    """The model dir, its model in eval mode (and int8-quantized when asked)."""
    loaded = load_model_dir(model_dir)
    loaded.model.eval()
    if quantize == "int8":
        with warnings.catch_warnings():  # torch.ao is deprecated in favour of torchao, still the CPU path in 2.13
            warnings.simplefilter("ignore")
            loaded.model = torch.ao.quantization.quantize_dynamic(loaded.model, {torch.nn.Linear}, dtype=torch.qint8)
    return loaded


@dataclasses.dataclass
class Segment:
    item: int
    window: Window


@dataclasses.dataclass
class Result:
    id: str
    text: str
    language: Optional[str]
    language_posteriors: Optional[dict[str, float]]
    duration: float
    processing_time: float
    confidence: Optional[float] = None  # mean posterior of the greedy path's emitted tokens
    language_energy: Optional[float] = None  # log-sum-exp of the language-ID logits (models that predict it)
    # Streaming: seconds of audio after which the predicted language no longer changed.
    language_settled: Optional[float] = None
    source: Optional[str] = None  # the audio file an audio-file input was read from
    # Greedy decodes: [{"start", "end", "text", "words": [[start, end, word], ...]}, ...] (seconds)
    segments: Optional[list[dict]] = None


class Posteriors(NamedTuple):
    """What the model made of one item: stitched (T, V) log-probs, language-ID logits per window
    (duration, logits), processing seconds, and (streaming) when the language decision settled."""

    matrix: np.ndarray
    lid: Optional[list[tuple[float, np.ndarray]]]
    seconds: float
    language_settled: Optional[float] = None


class Decoder:
    """Decodes items with one model; ``search`` turns a (T, V) matrix and the language into text."""

    def __init__(self, loaded: ModelDir, config: DecodeConfig,
                 search: Optional[Callable[[np.ndarray, Optional[str]], str]] = None):
        self.loaded, self.config = loaded, config
        self.extractor = fbank_extractor()
        if config.streaming or config.chunk_ms is not None or loaded.model.config.streaming is not None:
            use_chunk(loaded.model, config.chunk_ms)  # a ConfigError for a model that does not stream
        self.forced = self._forced_language()
        self.allowed = loaded.tokenizer.language_tokens(config.lang) if config.lang else None
        self.search = search or self._ctc_search
        self.rejection = None
        if config.unknown_threshold is not None and loaded.languages and not config.lang:
            self.rejection = Rejection(config.unknown_threshold, config.unknown_score)

    def _forced_language(self) -> Optional[torch.Tensor]:
        lang, known = self.config.lang, self.loaded.languages
        if not lang or not known:
            if lang and self.loaded.own_language and lang != self.loaded.own_language:
                raise ConfigError(f"--lang {lang}: the model is a {self.loaded.own_language} teacher; "
                                  f"it knows only {self.loaded.own_language}")
            return None
        if lang not in known:
            raise ConfigError(f"--lang {lang}: the model knows only {', '.join(known)}")
        return torch.tensor(known.index(lang))

    def _ctc_search(self, log_probs: np.ndarray, lang: Optional[str]) -> str:
        ids = (prefix_beam_search(log_probs, self.config.beam) if self.config.method == "ctc-prefix-beam"
               else greedy_search(log_probs))
        return self.loaded.tokenizer.decode(ids)

    def decode(self, items: list[Item]) -> list[Result]:
        return [dataclasses.replace(self.result(item.id, item.cut.duration, post), source=item.path)
                for item, post in zip(items, self.posteriors(items))]

    def result(self, uid: str, duration: float, post: Posteriors) -> Result:
        """The language and the searched transcript of one item's posteriors."""
        start = time.perf_counter()
        matrix = post.matrix
        if self.allowed is not None:
            matrix = restrict_tokens(matrix, self.allowed)
        language, posteriors, energy = self._language(post.lid)
        confidence = round(greedy_confidence(matrix), 6)
        segments = None
        if self.rejection is not None and self.rejection.rejects(posteriors, confidence, energy):
            language, text = UNKNOWN, ""  # not the nearest trained language's transcript
        else:
            text = self.search(matrix, language)
            if self.config.method == "ctc-greedy":
                words = words_of(token_spans(matrix.argmax(axis=1)), self.loaded.tokenizer.id_to_piece)
                segments = [segment_record(s) for s in segments_of(words, self.config.min_pause, self.config.max_segment)]
        return Result(uid, text, language, posteriors, duration, post.seconds + time.perf_counter() - start,
                      confidence, energy, post.language_settled, segments=segments)

    def posteriors(self, items: list[Item]) -> list[Posteriors]:
        """Each item's posteriors: windows of all items batched by duration, stitched per item."""
        segments = [Segment(i, w) for i, item in enumerate(items)
                    for w in plan_windows(item.cut.duration, self.config.chunk, self.config.overlap)]
        segments.sort(key=lambda s: s.window.duration, reverse=True)
        frames: dict[int, list[tuple[int, np.ndarray]]] = {}
        lid: dict[int, list[tuple[float, np.ndarray]]] = {}
        spent = np.zeros(len(items))
        with progress_bar(transient=True) as bar:
            task = bar.add_task("decode", total=sum(item.cut.duration for item in items))
            for batch in self._batches(segments):
                start = time.perf_counter()
                log_probs, lengths, lid_logits = self._forward([self._features(items[s.item], s.window) for s in batch])
                elapsed = time.perf_counter() - start
                batch_audio = sum(s.window.duration for s in batch)
                for k, seg in enumerate(batch):
                    w = seg.window
                    kept = log_probs[k, : lengths[k]][w.keep_from: w.keep_to]
                    frames.setdefault(seg.item, []).append((w.index, kept))
                    if lid_logits is not None:
                        lid.setdefault(seg.item, []).append((w.duration, lid_logits[k]))
                    spent[seg.item] += elapsed * w.duration / batch_audio
                bar.advance(task, batch_audio)
        return [Posteriors(np.concatenate([f for _, f in sorted(frames[i], key=lambda x: x[0])]), lid.get(i), spent[i])
                for i in range(len(items))]

    def _batches(self, segments: list[Segment]):
        batch, total = [], 0.0
        for seg in segments:
            if batch and total + seg.window.duration > self.config.max_duration:
                yield batch
                batch, total = [], 0.0
            batch.append(seg)
            total += seg.window.duration
        if batch:
            yield batch

    def _features(self, item: Item, window: Window) -> np.ndarray:
        cut = item.cut
        if window.start > 0 or window.duration < cut.duration:
            cut = cut.truncate(offset=window.start, duration=window.duration, preserve_id=True)
        if cut.has_features:
            return cut.load_features()
        samples = np.atleast_2d(cut.load_audio())
        return self.extractor.extract(downmix(samples, cut.sampling_rate)[0], cut.sampling_rate)

    @torch.inference_mode()
    def _forward(self, feats: list[np.ndarray]):
        lens = torch.tensor([f.shape[0] for f in feats])
        padded = torch.zeros(len(feats), int(lens.max()), feats[0].shape[1])
        for i, f in enumerate(feats):
            padded[i, : f.shape[0]] = torch.from_numpy(f)
        language = self.forced.expand(len(feats)) if self.forced is not None else None
        out = self.loaded.model(padded, lens, language=language)
        lid_logits = out.lid_logits.float().numpy() if out.lid_logits is not None else None
        return out.log_probs.numpy(), out.lengths.tolist(), lid_logits

    def _language(self, windows: Optional[list[tuple[float, np.ndarray]]]
                  ) -> tuple[Optional[str], Optional[dict], Optional[float]]:
        """The language, its posteriors and the LID energy (log-sum-exp of the logits): duration-weighted
        means over the windows; a forced or teacher language as is."""
        if self.config.lang:
            return self.config.lang, None, None
        if not windows:
            return self.loaded.own_language, None, None
        weights = np.array([d for d, _ in windows]) / sum(d for d, _ in windows)
        logits = np.stack([lg for _, lg in windows])
        top = logits.max(-1, keepdims=True)
        exp = np.exp(logits - top)
        mean = ((exp / exp.sum(-1, keepdims=True)) * weights[:, None]).sum(0)
        energy = float(((np.log(exp.sum(-1)) + top[:, 0]) * weights).sum())
        langs = self.loaded.languages
        return langs[int(mean.argmax())], {lang: round(float(p), 6) for lang, p in zip(langs, mean)}, round(energy, 6)
