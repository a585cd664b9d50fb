"""Hugging Face ``transformers`` CTC checkpoints as teachers (Wav2Vec2ForCTC, HubertForCTC,
WavLMForCTC, Data2VecAudioForCTC, Wav2Vec2ConformerForCTC, ...).

The directory is what ``model.save_pretrained(DIR)`` and ``processor.save_pretrained(DIR)``
write: config.json, the weights, vocab.json and the feature extractor's settings
(preprocessor_config.json; transformers 5 nests them in processor_config.json). It is loaded
strictly offline. ``transformers`` is an optional extra (``pip install 'mlkd[hf]'``),
imported only here.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from pathlib import Path
from typing import Any, Optional

import torch

from mlkd_cli.contracts import SAMPLING_RATE
from mlkd_cli.errors import ConfigError
from mlkd_cli.fsutil import file_digest
from mlkd_cli.teachers.base import Teacher, TeacherInputs, TeacherOutput

REQUIRED = {
    "config.json": "model.save_pretrained(DIR)",
    "vocab.json": "the processor's tokenizer: processor.save_pretrained(DIR)",
}
FEATURE_CONFIGS = ("preprocessor_config.json", "processor_config.json")
WEIGHTS = ("*.safetensors", "*.bin")


def import_transformers():
    try:
        import transformers
    except ImportError:
        raise ConfigError("hf teachers need the transformers package, which is not installed; "
                          "install it with `pip install 'mlkd[hf]'`") from None
    transformers.logging.set_verbosity_error()  # no load reports or progress bars on the terminal
    transformers.logging.disable_progress_bar()
    return transformers


@dataclasses.dataclass
class HfTeacher(Teacher):
    model: Any  # a transformers *ForCTC model
    feature_extractor: Any
    vocab: tuple[str, ...]

    kind = "hf"
    input = "waveform"

    @property
    def frame_shift(self) -> float:
        return math.prod(self.model.config.conv_stride) / self.feature_extractor.sampling_rate

    @property
    def layer_widths(self) -> tuple[int, ...]:
        return (self.model.config.hidden_size,) * self.model.config.num_hidden_layers

    @property
    def tokens(self) -> tuple[str, ...]:
        return self.vocab

    @property
    def blank(self) -> int:
        return self.model.config.pad_token_id

    @property
    def uses_attention_mask(self) -> bool:
        # Checkpoints with group-norm feature encoders (feat_extract_norm "group", e.g.
        # wav2vec2-base) were trained on zero-padded batches without a mask and must not get
        # one; layer-norm ones (large, XLSR) need it. The feature extractor records which.
        return bool(self.feature_extractor.return_attention_mask)

    @property
    def normalization(self) -> str:
        norm = "zero mean, unit variance per utterance" if self.feature_extractor.do_normalize else "none"
        mask = "with" if self.uses_attention_mask else "without"
        return f"{norm}; padded batches {mask} attention mask (feat_extract_norm {self.model.config.feat_extract_norm!r})"

    @property
    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.model.parameters())

    def to(self, device: torch.device) -> "HfTeacher":
        if self.model.device != device:
            self.model.to(device)
        return self

    def output_lengths(self, audio_lens: torch.Tensor) -> torch.Tensor:
        return self.model._get_feat_extract_output_lengths(audio_lens).long()

    def forward(self, inputs: TeacherInputs, return_attention: bool = False) -> TeacherOutput:
        if inputs.audio is None:
            raise ConfigError(f"teacher {self.name} reads audio, but the batch carries only features")
        lens = inputs.audio_lens.cpu()
        waves = [a[:n].float().cpu().numpy() for a, n in zip(inputs.audio, lens.tolist())]
        # the checkpoint's own feature extractor normalises and pads, as it did in training
        batch = self.feature_extractor(waves, sampling_rate=SAMPLING_RATE, return_tensors="pt", padding=True,
                                       return_attention_mask=self.uses_attention_mask)
        kwargs = {"attention_mask": batch["attention_mask"].to(self.model.device)} if self.uses_attention_mask else {}
        out = self.model(batch["input_values"].to(self.model.device), output_hidden_states=True, **kwargs)
        # hidden_states[0] is the transformer's input (the projected convolution features)
        hidden = list(out.hidden_states[1:])
        return TeacherOutput(hidden, self.output_lengths(lens).to(hidden[0].device), out.logits.float().log_softmax(-1))


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise ConfigError(f"{path}: unreadable ({e}); save it again with save_pretrained") from None


def hf_digest(path: Path) -> str:
    files = sorted({p for pattern in WEIGHTS for p in path.glob(pattern)} | {path / name for name in REQUIRED}
                   | {path / name for name in FEATURE_CONFIGS if (path / name).is_file()})
    return hashlib.sha256("".join(f"{p.name} {file_digest(p)}\n" for p in files).encode()).hexdigest()


def check_hf_dir(path: Path) -> None:
    """The files a checkpoint dir must hold, checked before transformers is even imported."""
    if not path.is_dir():
        raise ConfigError(f"{path}: no such Hugging Face checkpoint dir; give the dir that save_pretrained wrote")
    for name, fix in REQUIRED.items():
        if not (path / name).is_file():
            raise ConfigError(f"{path / name}: missing; write it with {fix}")
    if not any(path.glob(pattern) for pattern in WEIGHTS):
        raise ConfigError(f"{path}: no weights (*.safetensors or *.bin); write them with model.save_pretrained(DIR)")
    found = [path / name for name in FEATURE_CONFIGS if (path / name).is_file()]
    settings = _read_json(found[0]) if found else {}
    settings = settings.get("feature_extractor", settings)
    if "sampling_rate" not in settings:
        raise ConfigError(f"{path / FEATURE_CONFIGS[0]}: missing (the feature extractor's settings); "
                          "write it with the processor's feature extractor: processor.save_pretrained(DIR)")
    if settings["sampling_rate"] != SAMPLING_RATE:
        raise ConfigError(f"{found[0]}: sampling_rate {settings['sampling_rate']}; mlkd's teachers read "
                          f"{SAMPLING_RATE} Hz audio: use a checkpoint trained at {SAMPLING_RATE} Hz")


def load_hf_teacher(lang: Optional[str], path: Path) -> HfTeacher:
    check_hf_dir(path)
    if not lang:
        raise ConfigError(f"teacher hf:{path}: a Hugging Face checkpoint does not say its language; name it as LANG=hf:{path}")
    transformers = import_transformers()
    try:
        model = transformers.AutoModelForCTC.from_pretrained(path, local_files_only=True)
        extractor = transformers.AutoFeatureExtractor.from_pretrained(path, local_files_only=True)
    except (OSError, ValueError, KeyError) as e:
        raise ConfigError(f"{path}: transformers cannot load it as a CTC model ({str(e).splitlines()[0]})") from None
    vocab = _read_json(path / "vocab.json")
    if vocab and all(isinstance(v, dict) for v in vocab.values()):
        raise ConfigError(f"{path / 'vocab.json'}: a multi-language vocabulary; save the processor with one language's vocabulary")
    by_id = {int(i): token for token, i in vocab.items()}
    size = model.config.vocab_size
    if sorted(by_id) != list(range(len(by_id))) or len(by_id) > size:
        raise ConfigError(f"{path / 'vocab.json'}: ids must be 0..{size - 1} without gaps (the model's vocab_size is {size})")
    tokens = tuple(by_id[i] for i in range(len(by_id))) + tuple(f"<extra{i}>" for i in range(len(by_id), size))
    if not 0 <= model.config.pad_token_id < size:
        raise ConfigError(f"{path / 'config.json'}: pad_token_id {model.config.pad_token_id} (the CTC blank) is not a token id")
    model.eval().requires_grad_(False)
    return HfTeacher(lang, path, hf_digest(path), model, extractor, tokens)
