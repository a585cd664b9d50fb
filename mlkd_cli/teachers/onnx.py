"""sherpa-onnx offline CTC models as black-box teachers: they transcribe, nothing more.

The user names the loader, as sherpa-onnx itself needs it: ``zipformer-ctc`` (icefall CTC
models and what `mlkd export` writes), ``nemo-ctc`` or ``wenet-ctc``. The directory holds
``model.onnx`` (or ``model.int8.onnx``) and ``tokens.txt``. sherpa-onnx kills the process on
a model outside its contract, so the contract is checked first.
"""

from __future__ import annotations

import dataclasses
import math
import hashlib
from pathlib import Path
from typing import Any, Optional


from mlkd_cli.contracts import SAMPLING_RATE, TOKENS_FILE, read_tokens
from mlkd_cli.errors import ConfigError, MlkdError
from mlkd_cli.export.contract import INT8_FILE, MODEL_FILE, check_offline_model, session
from mlkd_cli.fsutil import file_digest
from mlkd_cli.teachers.base import Teacher, TeacherInputs, Transcript

LOADERS = ("zipformer-ctc", "nemo-ctc", "wenet-ctc")
NEMO_METADATA = ("vocab_size", "subsampling_factor")


@dataclasses.dataclass
class OnnxTeacher(Teacher):
    loader: str
    model_file: Path
    vocab: tuple[str, ...]
    parameters: int
    recognizer: Any = None  # built on first use (it is not picklable)
    num_threads: int = 1

    kind = "onnx"
    input = "waveform"

    @property
    def frame_shift(self) -> Optional[float]:
        return None

    @property
    def layer_widths(self) -> tuple[int, ...]:
        return ()

    @property
    def tokens(self) -> tuple[str, ...]:
        return self.vocab

    @property
    def blank(self) -> Optional[int]:
        return None

    @property
    def normalization(self) -> str:
        return f"sherpa-onnx's own front end for {self.loader} (80-dim fbank from the waveform)"

    @property
    def num_parameters(self) -> int:
        return self.parameters

    @property
    def name(self) -> str:
        return f"{self.lang}=onnx-{self.loader}:{self.path}"

    def _recognizer(self):
        if self.recognizer is None:
            sherpa_onnx = import_sherpa_onnx()
            load = getattr(sherpa_onnx.OfflineRecognizer, f"from_{self.loader.replace('-', '_')}")
            self.recognizer = load(model=str(self.model_file), tokens=str(self.path / TOKENS_FILE),
                                   num_threads=self.num_threads, sample_rate=SAMPLING_RATE)
        return self.recognizer

    def transcribe(self, inputs: TeacherInputs) -> list[Transcript]:
        recognizer = self._recognizer()
        streams = []
        for audio, n in zip(inputs.audio, inputs.audio_lens.tolist()):
            streams.append(recognizer.create_stream())
            streams[-1].accept_waveform(SAMPLING_RATE, audio[:n].float().cpu().numpy())
        recognizer.decode_streams(streams)
        return [Transcript(" ".join(s.result.text.split()), None) for s in streams]

    def __getstate__(self) -> dict:  # DataLoader workers get the teacher without the native recognizer
        return {**self.__dict__, "recognizer": None}


def import_sherpa_onnx():
    try:
        import sherpa_onnx
    except ImportError:
        raise ConfigError("onnx teachers need sherpa-onnx, which is not installed; "
                          "install it with `pip install 'mlkd[onnx]'`") from None
    return sherpa_onnx


def _check_contract(loader: str, model: Path, tokens: Path) -> int:
    """Raise unless ``loader`` can run these files; the model's parameter count."""
    if loader == "zipformer-ctc":
        check_offline_model(model, tokens)
    else:
        read_tokens(tokens, blank_first=False)
        meta = session(model).get_modelmeta().custom_metadata_map
        missing = [key for key in NEMO_METADATA if key not in meta] if loader == "nemo-ctc" else []
        if missing:
            raise ConfigError(f"{model}: sherpa-onnx's nemo-ctc loader needs metadata {', '.join(missing)}; "
                              "export the model with NeMo's sherpa-onnx export script")
    import onnx

    graph = onnx.load(str(model), load_external_data=False).graph
    return sum(math.prod(t.dims) for t in graph.initializer)


def load_onnx_teacher(lang: Optional[str], path: Path, loader: str) -> OnnxTeacher:
    if not lang:
        raise ConfigError(f"teacher onnx:{path}: an onnx model does not say its language; name it as LANG=onnx:{path}")
    model = next((path / name for name in (MODEL_FILE, INT8_FILE) if (path / name).is_file()), None)
    if model is None:
        raise ConfigError(f"{path}: no {MODEL_FILE} or {INT8_FILE}; give the dir of a sherpa-onnx CTC model "
                          "(`mlkd export EXP_DIR` writes one)")
    tokens = path / TOKENS_FILE
    try:
        parameters = _check_contract(loader, model, tokens)
        vocab = tuple(read_tokens(tokens, blank_first=loader == "zipformer-ctc"))
    except MlkdError as e:
        raise ConfigError(f"teacher {lang}=onnx-{loader}:{path}: {e}") from None
    import_sherpa_onnx()
    digest = hashlib.sha256(f"{loader} {file_digest(model)} {file_digest(tokens)}".encode()).hexdigest()
    return OnnxTeacher(lang, path, digest, loader, model, vocab, parameters)
