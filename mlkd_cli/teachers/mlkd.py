"""mlkd experiment directories as teachers: Conformer-CTC on the student's own fbank features."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Optional, Sequence

import torch

from mlkd_cli.contracts import TOKENS_FILE, read_tokens
from mlkd_cli.errors import ConfigError, DataError
from mlkd_cli.experiment.model_dir import TOKENIZER_DIR, ModelDir, load_model_dir
from mlkd_cli.fsutil import file_digest
from mlkd_cli.models import CtcModel
from mlkd_cli.teachers.base import Teacher, TeacherInputs, TeacherOutput


@dataclasses.dataclass
class MlkdTeacher(Teacher):
    model: CtcModel
    feature_shift: float = 0.01  # seconds per input frame
    own_tokens: Optional[tuple[str, ...]] = None
    model_dir: Optional[ModelDir] = None  # its feature settings and tokenizer, checked against the data

    kind = "mlkd"
    input = "fbank"

    @property
    def frame_shift(self) -> float:
        return self.feature_shift * self.model.config.subsampling

    @property
    def layer_widths(self) -> tuple[int, ...]:
        return (self.model.config.d_model,) * self.model.config.num_layers

    @property
    def tokens(self) -> Optional[tuple[str, ...]]:
        return self.own_tokens

    @property
    def blank(self) -> int:
        return 0

    @property
    def normalization(self) -> str:
        return "global mean/variance of its training features (inside the model)"

    @property
    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.model.parameters())

    def to(self, device: torch.device) -> "MlkdTeacher":
        if next(self.model.parameters()).device != device:
            self.model.to(device)
        return self

    def forward(self, inputs: TeacherInputs, return_attention: bool = False) -> TeacherOutput:
        out = self.model(inputs.features, inputs.feature_lens, return_attention=return_attention)
        return TeacherOutput(out.hidden, out.lengths, out.log_probs, out.attention)


def load_mlkd_teacher(lang: Optional[str], path: Path) -> MlkdTeacher:
    loaded = load_model_dir(path)
    lang = lang or loaded.own_language
    if not lang:
        raise _no_language(path)
    return _teacher(lang, path, loaded)


def load_mlkd_teachers(path: Path, langs: Sequence[str]) -> list[MlkdTeacher]:
    """The teachers a model dir named without LANG= gives: a teacher of its own language, or a
    language-adaptive student of each of its languages among ``langs`` (one model, shared): a
    full-context student teaching a streaming one, say."""
    loaded = load_model_dir(path)
    if loaded.own_language:
        return [_teacher(loaded.own_language, path, loaded)]
    if not loaded.languages:
        raise _no_language(path)
    taught = [lang for lang in loaded.languages if lang in langs]
    if not taught:
        raise DataError(f"{path}: a model of {', '.join(loaded.languages)}, none of which the training data has "
                        f"(its languages: {', '.join(langs)}); leave it out")
    return [_teacher(lang, path, loaded) for lang in taught]


def _no_language(path: Path) -> ConfigError:
    return ConfigError(f"{path / 'config.yaml'}: not a teacher of one language; name its language as LANG={path}")


def _teacher(lang: str, path: Path, loaded: ModelDir) -> MlkdTeacher:
    tokens = tuple(read_tokens(path / TOKENIZER_DIR / TOKENS_FILE))
    loaded.model.eval().requires_grad_(False)
    return MlkdTeacher(lang, path, file_digest(loaded.weights), loaded.model, loaded.inference.features.frame_shift,
                       tokens, loaded)
