"""Self-contained model directories: everything inference needs, and nothing outside them.

Layout (written by every training stage when it finishes, published as one set)::

  config.yaml        {format, command, <stage config>}: see mlkd_cli.experiment.config
  final.pt           {"config": <ModelConfig>, "model": <state_dict>}
  tokenizer/         tokenizer.model, tokens.txt, tokens.<lang>.txt (see mlkd_cli.data.tokenizer)
  text/<lang>.txt    the language's training transcripts: the WFST lexicon and n-gram LM

A directory can be copied alone to another machine and decoded, exported or used as a
teacher there. A directory of an older layout (no ``format`` in config.yaml; its tokenizer
lived in the data dir) is refused with the command that upgrades it.
"""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

import yaml
from lhotse import CutSet

from mlkd_cli.contracts import TOKENS_FILE
from mlkd_cli.config import from_dict, to_dict
from mlkd_cli.data.prepare import PreparedData
from mlkd_cli.data.tokenizer import MODEL_FILE as TOKENIZER_MODEL, Tokenizer
from mlkd_cli.errors import ConfigError, DataError
from mlkd_cli.experiment.config import STAGE_CONFIGS, FeatureSpec, InferenceSpec, StageConfig, TeacherConfig
from mlkd_cli.fsutil import atomic_write_text
from mlkd_cli.models import CtcModel, ModelConfig, num_parameters
from mlkd_cli.models.checkpoint import load_model

FORMAT = 2  # of the model directory; 1 = config.yaml without `format` (tokenizer in the data dir)
CONFIG_FILE = "config.yaml"
WEIGHTS_FILE = "final.pt"
TOKENIZER_DIR = "tokenizer"
TEXT_DIR = "text"


def upgrade_hint(path: Path) -> str:
    return f"upgrade it with `mlkd upgrade-model {path}` (needs the data dir it was trained on)"


def read_stage_config(exp_dir: Path) -> tuple[str, StageConfig]:
    """The command that made ``exp_dir`` and its typed config (strict: unknown keys are errors)."""
    path = exp_dir / CONFIG_FILE
    raw = _read_yaml(path)
    if "format" not in raw:
        raise ConfigError(f"{path}: written by an older mlkd, whose model dirs did not carry their tokenizer; "
                          + upgrade_hint(exp_dir))
    if raw["format"] != FORMAT:
        raise ConfigError(f"{path}: model dir format {raw['format']!r}, this mlkd reads format {FORMAT}; "
                          "use the mlkd release that wrote it, or retrain")
    command = raw.get("command")
    if command not in STAGE_CONFIGS:
        raise ConfigError(f"{path}: `command: {command}` is not one of {', '.join(STAGE_CONFIGS)}")
    rest = {k: v for k, v in raw.items() if k not in ("format", "command")}
    return command, from_dict(STAGE_CONFIGS[command], rest, where=str(path))


def _read_yaml(path: Path) -> dict:
    if not path.is_file():
        raise DataError(f"{path}: not found; {path.parent} is not an mlkd model directory "
                        "(train one with `mlkd train-teacher`, `mlkd distill` or `mlkd finetune`)")
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML ({e})") from None
    if not isinstance(raw, dict) or "model" not in raw:
        raise ConfigError(f"{path}: no `model:` section; not an mlkd experiment config")
    return raw


def config_yaml(command: str, config: StageConfig) -> str:
    return yaml.safe_dump({"format": FORMAT, "command": command, **to_dict(config)}, sort_keys=False,
                          allow_unicode=True)


@dataclasses.dataclass
class ModelDir:
    """A loaded model directory."""

    path: Path
    command: str
    config: StageConfig
    model: CtcModel
    tokenizer: Tokenizer
    num_parameters: int  # of the model as trained (before any quantization)

    @property
    def languages(self) -> tuple[str, ...]:
        """What the model tells apart (empty: it does not predict the language)."""
        return tuple(self.model.config.languages)

    @property
    def own_language(self) -> str | None:
        """A monolingual teacher's language."""
        return self.config.lang if isinstance(self.config, TeacherConfig) else None

    @property
    def inference(self) -> InferenceSpec:
        return self.config.inference

    @property
    def weights(self) -> Path:
        return self.path / WEIGHTS_FILE

    def training_text(self, lang: str) -> list[str]:
        path = self.path / TEXT_DIR / f"{lang}.txt"
        if not path.is_file():
            raise DataError(f"{path}: no {lang!r} training text in the model dir (it has "
                            f"{', '.join(self.inference.languages) or 'none'}); use --graph ctc")
        return path.read_text(encoding="utf-8").splitlines()

    def check_fits(self, data: PreparedData) -> None:
        """The model must read ``data``'s features and emit its tokenizer's tokens."""
        check_fits_data(self.model.config, data, self.path / CONFIG_FILE)
        tokens = (self.path / TOKENIZER_DIR / TOKENS_FILE).read_text(encoding="utf-8")
        if tokens != (data.lang_dir / TOKENS_FILE).read_text(encoding="utf-8"):
            raise ConfigError(f"{self.path / TOKENIZER_DIR / TOKENS_FILE}: differs from {data.lang_dir / TOKENS_FILE}; "
                              "the model was trained with another tokenizer")


def load_model_dir(path: str | Path) -> ModelDir:
    """Rebuild the model of ``path`` from its own files (weights, config, tokenizer)."""
    path = Path(path)
    command, config = read_stage_config(path)
    model, file_config = load_model(path / WEIGHTS_FILE)
    if file_config != config.model:
        diff = [f.name for f in dataclasses.fields(ModelConfig)
                if getattr(config.model, f.name) != getattr(file_config, f.name)]
        raise ConfigError(f"{path / WEIGHTS_FILE}: its model config differs from config.yaml in {', '.join(diff)}")
    tokenizer = Tokenizer(path / TOKENIZER_DIR)
    if tokenizer.vocab_size != model.config.vocab_size:
        raise ConfigError(f"{path / TOKENIZER_DIR}: {tokenizer.vocab_size} tokens, the model emits "
                          f"{model.config.vocab_size}; the directory mixes files of two models")
    return ModelDir(path, command, config, model, tokenizer, num_parameters(model))


def check_fits_data(config: ModelConfig, data: PreparedData, where: Path) -> None:
    tokenizer = data.tokenizer()
    if config.vocab_size != tokenizer.vocab_size:
        raise ConfigError(
            f"{where}: the model emits {config.vocab_size} tokens but {data.lang_dir} has {tokenizer.vocab_size}; "
            "the model was trained with another tokenizer"
        )
    num_features = data.num_features()
    if config.feature_dim != num_features:
        raise ConfigError(
            f"{where}: the model reads {config.feature_dim}-dim features but {data.root} has {num_features}-dim ones"
        )


def inference_spec(data: PreparedData, languages: list[str]) -> InferenceSpec:
    return InferenceSpec(languages=tuple(languages), normalize_text=data.config.normalize_text,
                         features=FeatureSpec(**data.feature_signature()), tokenizer=data.config.tokenizer)


def write_model_files(out: Path, command: str, config: StageConfig, data: PreparedData, train_cuts: CutSet) -> None:
    """config.yaml, tokenizer/ and text/ of a model trained on ``train_cuts`` of ``data``
    (``final.pt`` is the trainer's)."""
    tokenizer_dir = out / TOKENIZER_DIR
    tokenizer_dir.mkdir()
    languages = config.inference.languages
    for name in (TOKENIZER_MODEL, TOKENS_FILE, *(f"tokens.{lang}.txt" for lang in languages)):
        shutil.copy2(data.lang_dir / name, tokenizer_dir / name)
    (out / TEXT_DIR).mkdir()
    texts: dict[str, list[str]] = {lang: [] for lang in languages}
    for cut in train_cuts:
        sup = cut.supervisions[0]
        if sup.language in texts:
            texts[sup.language].append(sup.text)
    for lang, lines in texts.items():
        (out / TEXT_DIR / f"{lang}.txt").write_text("".join(f"{t}\n" for t in lines), encoding="utf-8")
    atomic_write_text(out / CONFIG_FILE, config_yaml(command, config))
