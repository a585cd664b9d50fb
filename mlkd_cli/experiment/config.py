"""Typed configs of the training stages: what ``config.yaml`` in an experiment directory holds.

``config.yaml`` is the envelope ``{format, command, <the stage's config>}``: ``command`` names
the dataclass below that reads the rest, strictly (an unknown or mistyped key is an error
naming the key, the file and the valid keys). The ``inference`` section says what decoding
needs besides the weights (features, text normalisation, tokenizer, languages); its files
travel in the model directory (see :mod:`mlkd_cli.experiment.model_dir`).
"""

from __future__ import annotations

import dataclasses
from typing import Optional

from mlkd_cli.contracts import OUTPUT_FRAME_MS
from mlkd_cli.config import ADDED
from mlkd_cli.data.tokenizer import TokenizerConfig
from mlkd_cli.errors import ConfigError
from mlkd_cli.models.config import ModelConfig

PRECISIONS = ("fp32", "bf16", "fp16")
AVERAGE_BY = ("last", "best")


@dataclasses.dataclass(frozen=True)
class SpecAugmentConfig:
    """lhotse SpecAugment settings (its defaults are tuned for LibriSpeech-scale training)."""

    enabled: bool = True
    time_warp_factor: int = 80
    num_feature_masks: int = 2
    features_mask_size: int = 27
    num_frame_masks: int = 10
    frames_mask_size: int = 100
    max_frames_mask_fraction: float = 0.15


def _check_probability(name: str, value: float) -> None:
    if not 0 <= value <= 1:
        raise ConfigError(f"augment {name} must be in [0, 1], got {value}")


def _check_range(name: str, low_high: tuple[float, float]) -> None:
    low, high = low_high
    if low > high:
        raise ConfigError(f"augment {name}: min {low} > max {high}; write [min, max]")


@dataclasses.dataclass(frozen=True)
class NoiseConfig:
    """Additive noise at a random SNR: recorded noise sets and/or babble of other training speakers."""

    prob: float = 0.0  # share of training utterances that get noise
    snr: tuple[float, float] = (10.0, 20.0)  # dB, drawn uniformly
    sets: tuple[str, ...] = ()  # Kaldi dirs or lhotse recordings/cuts manifests (e.g. `lhotse prepare musan`)
    babble: int = 0  # talkers in a babble source drawn from the training set; 0: no babble

    def __post_init__(self) -> None:
        _check_probability("noise prob", self.prob)
        _check_range("noise snr", self.snr)
        if self.babble < 0:
            raise ConfigError(f"augment noise babble must be 0 or more talkers, got {self.babble}")
        if self.prob > 0 and not self.sets and not self.babble:
            raise ConfigError("augment noise prob > 0 needs a source: noise sets (augment.noise.sets) or babble talkers")


@dataclasses.dataclass(frozen=True)
class ReverbConfig:
    prob: float = 0.0
    rirs: tuple[str, ...] = ()  # room impulse response sets (as noise sets); none: simulated rooms
    simulated_rooms: int = 200  # rooms simulated (pyroomacoustics, seeded) when no RIR set is given

    def __post_init__(self) -> None:
        _check_probability("reverb prob", self.prob)
        if self.simulated_rooms < 1:
            raise ConfigError(f"augment reverb simulated_rooms must be at least 1, got {self.simulated_rooms}")


TELEPHONE_CODECS = ("gsm", "none")


@dataclasses.dataclass(frozen=True)
class TelephoneConfig:
    """Narrow band: 8 kHz, through a codec, back to 16 kHz."""

    prob: float = 0.0
    codecs: tuple[str, ...] = ("gsm", "none")  # GSM 06.10 full rate (libsndfile); none: band limit only

    def __post_init__(self) -> None:
        _check_probability("telephone prob", self.prob)
        unknown = [c for c in self.codecs if c not in TELEPHONE_CODECS]
        if unknown or not self.codecs:
            raise ConfigError(f"augment telephone codecs {list(self.codecs)}: choose from {', '.join(TELEPHONE_CODECS)}")


@dataclasses.dataclass(frozen=True)
class AugmentConfig:
    """Audio augmentation of training utterances, each kind with its own probability. Speed,
    reverberation and telephone are rendered once into ``copies`` copies per utterance (with their
    fbank, under the data dir); noise and volume are applied to the features of each batch."""

    noise: NoiseConfig = NoiseConfig()
    reverb: ReverbConfig = ReverbConfig()
    telephone: TelephoneConfig = TelephoneConfig()
    speed_prob: float = 0.0
    speed_factors: tuple[float, ...] = (0.9, 1.1)
    volume_prob: float = 0.0
    volume_range: tuple[float, float] = (0.25, 2.0)  # linear gain, drawn uniformly
    # precomputed copies per utterance, each drawing speed, reverb and telephone afresh
    copies: int = dataclasses.field(default=3, metadata=ADDED)
    # the share of training (from, to; of max_steps) during which utterances are augmented: clean
    # updates at the start leave the CTC blank plateau sooner, at the end they restore clean accuracy
    during: tuple[float, float] = dataclasses.field(default=(0.0, 1.0), metadata=ADDED)

    def __post_init__(self) -> None:
        _check_probability("speed_prob", self.speed_prob)
        _check_probability("volume_prob", self.volume_prob)
        _check_range("volume_range", self.volume_range)
        if not self.speed_factors or min(self.speed_factors) <= 0 or min(self.volume_range) <= 0:
            raise ConfigError("augment speed_factors and volume_range must be positive")
        if self.copies < 1:
            raise ConfigError(f"augment copies must be at least 1, got {self.copies}")
        if not 0 <= self.during[0] < self.during[1] <= 1:
            raise ConfigError(f"augment during {list(self.during)}: write [from, to] with 0 <= from < to <= 1 "
                              "(shares of max_steps)")

    @property
    def enabled(self) -> bool:
        return max(self.noise.prob, self.reverb.prob, self.telephone.prob, self.speed_prob, self.volume_prob) > 0

    @property
    def changes_waveform(self) -> bool:
        """Whether a kind that needs rendered audio (speed, reverb, telephone) is on."""
        return max(self.speed_prob, self.reverb.prob, self.telephone.prob) > 0


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    max_steps: int = 3000
    max_duration: float = 50.0  # seconds of audio per batch (per process)
    lr: float = 2e-3  # peak, after linear warm-up; cosine decay to final_lr_ratio * lr
    warmup_steps: int = 300
    final_lr_ratio: float = 0.05
    weight_decay: float = 0.01
    grad_clip: float = 5.0
    precision: str = "fp32"  # bf16 autocast works on CPU and GPU; fp16 only on GPU
    spec_augment: SpecAugmentConfig = SpecAugmentConfig()
    speed_perturb: bool = False  # 0.9x/1.1x copies of the training data, features on the fly
    augment: AugmentConfig = dataclasses.field(default=AugmentConfig(), metadata=ADDED)
    language_sampling: float = 0.0  # multilingual data: draw languages ∝ hours^this (0 = equally often)
    valid_interval: int = 500  # validate and write a resumable checkpoint every N steps
    log_interval: int = 25
    keep_checkpoints: int = 3
    average: int = 3  # final.pt = average of N checkpoints
    average_by: str = "last"  # "last" N, or "best" N by validation loss
    seed: int = 42
    num_workers: int = 0

    def __post_init__(self) -> None:
        if self.precision not in PRECISIONS:
            raise ConfigError(f"precision {self.precision!r} is not one of {', '.join(PRECISIONS)}")
        if self.average_by not in AVERAGE_BY:
            raise ConfigError(f"average_by {self.average_by!r} is not one of {', '.join(AVERAGE_BY)}")
        for name in ("max_steps", "valid_interval", "log_interval", "keep_checkpoints", "average"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be at least 1, got {getattr(self, name)}")
        if not 0 <= self.language_sampling <= 1:
            raise ConfigError(f"language_sampling must be in [0, 1], got {self.language_sampling}")
        if self.max_duration <= 0 or self.lr <= 0:
            raise ConfigError("max_duration and lr must be positive")


TARGET_MODES = ("cached", "on-the-fly")


@dataclasses.dataclass(frozen=True)
class KdConfig:
    """The distillation objective. Layer numbers are 1-based encoder layers."""

    student_layers: tuple[int, ...] = ()  # empty: every student layer
    teacher_layers: tuple[int, ...] = ()  # empty: the same relative depth in each teacher
    layer_weights: tuple[float, ...] = ()  # λ_l; empty: 1 for every layer pair
    ctc_weight: float = 0.0  # CTC on the transcripts
    kl_weight: float = 0.0  # teacher → student CTC posteriors
    kl_temperature: float = 2.0
    # Weight of frames the teacher assigns to blank in the KL average (others weigh 1); 0: the
    # KL runs over the teacher's token frames only (blank-frame selection).
    kl_blank_weight: float = dataclasses.field(default=1.0, metadata=ADDED)
    attention_weight: float = 0.0  # head-averaged attention maps (needs on-the-fly targets)
    targets: str = "cached"  # teacher targets computed once to disk, or every step
    # "augmented": the teachers see the student's SpecAugmented input (on-the-fly targets only),
    # so they teach on the same view the student gets instead of the clean one.
    teacher_input: str = "clean"
    # Sequence-level KD: CTC on each teacher's own transcript of the utterance (any teacher,
    # black boxes included), kept when the teacher's confidence (mean posterior of its emitted
    # tokens; white boxes only) is at least min_confidence and, when max_cer_to_reference is
    # set, its CER against the reference transcript is at most that.
    sequence_weight: float = dataclasses.field(default=0.0, metadata=ADDED)
    min_confidence: float = dataclasses.field(default=0.0, metadata=ADDED)
    max_cer_to_reference: Optional[float] = dataclasses.field(default=None, metadata=ADDED)
    # Posterior KD through a vocabulary map is refused for a teacher whose tokens cover less
    # than this share of its language's training-text characters.
    min_vocab_coverage: float = dataclasses.field(default=0.95, metadata=ADDED)
    # With untranscribed sets (`mlkd distill --unlabeled-set`): the share of training utterances
    # drawn from them; None: as many as their hours make of the data.
    unlabeled_share: Optional[float] = dataclasses.field(default=None, metadata=ADDED)
    # A streaming student hears less of the future than a full-context teacher: its frame t + d
    # learns the teacher's frame t (hidden layers and posteriors), d = delay_ms of output frames.
    delay_ms: int = dataclasses.field(default=0, metadata=ADDED)
    # The precision the teachers run in (their targets and transcripts); "": the training's.
    teacher_precision: str = dataclasses.field(default="", metadata=ADDED)
    # Intermediate CTC (InterCTC, Lee & Watanabe 2021): the CTC head also reads encoder layer
    # inter_ctc_layer (0: the middle one) and learns the transcripts there, at this weight.
    inter_ctc_weight: float = dataclasses.field(default=0.0, metadata=ADDED)
    inter_ctc_layer: int = dataclasses.field(default=0, metadata=ADDED)

    def __post_init__(self) -> None:
        if self.targets not in TARGET_MODES:
            raise ConfigError(f"kd targets {self.targets!r} is not one of {', '.join(TARGET_MODES)}")
        if self.attention_weight > 0 and self.targets == "cached":
            raise ConfigError("kd attention_weight > 0 needs targets: on-the-fly (attention maps are too big to cache)")
        if self.teacher_input not in ("clean", "augmented"):
            raise ConfigError(f"kd teacher_input {self.teacher_input!r} is not one of clean, augmented")
        if self.teacher_input == "augmented" and self.targets == "cached":
            raise ConfigError("kd teacher_input: augmented needs targets: on-the-fly (augmentation differs every step)")
        if self.teacher_layers and len(self.teacher_layers) != len(self.student_layers):
            raise ConfigError("kd teacher_layers needs one entry per student_layers entry")
        if min(self.ctc_weight, self.kl_weight, self.attention_weight, self.sequence_weight, self.kl_blank_weight,
               self.inter_ctc_weight, self.inter_ctc_layer) < 0 or self.kl_temperature <= 0:
            raise ConfigError("kd weights and inter_ctc_layer must be >= 0 and kl_temperature > 0")
        for name in ("min_confidence", "min_vocab_coverage"):
            if not 0 <= getattr(self, name) <= 1:
                raise ConfigError(f"kd {name} must be in [0, 1], got {getattr(self, name)}")
        if self.unlabeled_share is not None and not 0 <= self.unlabeled_share < 1:
            raise ConfigError(f"kd unlabeled_share must be in [0, 1) (some transcribed data stays), got {self.unlabeled_share}")
        if self.delay_ms < 0 or self.delay_ms % OUTPUT_FRAME_MS:
            raise ConfigError(f"kd delay_ms {self.delay_ms} must be a multiple of the {OUTPUT_FRAME_MS} ms output frame, >= 0")
        if self.teacher_precision not in ("", *PRECISIONS):
            raise ConfigError(f"kd teacher_precision {self.teacher_precision!r} is not one of {', '.join(PRECISIONS)} "
                              "(or empty: the training's precision)")
        if self.max_cer_to_reference is not None and self.max_cer_to_reference < 0:
            raise ConfigError(f"kd max_cer_to_reference must be >= 0, got {self.max_cer_to_reference}")

    def overridden(self, kl_weight: float | None = None, kd_weight: float | None = None,
                   layer_map: str | None = None) -> KdConfig:
        """This objective with a command line's overrides: ``kl_weight``; ``layer_map`` as ``S:T,...``
        (student layer S learns teacher layer T) or ``S,...`` (the teachers' layers at the same
        relative depth); ``kd_weight``, λ of every layer pair."""
        changes: dict[str, object] = {}
        if kl_weight is not None:
            changes["kl_weight"] = kl_weight
        pairs = self.layer_weights
        if layer_map is not None:
            try:
                entries = [entry.split(":") for entry in layer_map.replace(" ", "").split(",")]
                student = tuple(int(e[0]) for e in entries)
                teacher = tuple(int(e[1]) for e in entries) if all(len(e) == 2 for e in entries) else ()
                if not all(len(e) == (2 if teacher else 1) for e in entries):
                    raise ValueError
            except (ValueError, IndexError):
                raise ConfigError(f"--layer-map {layer_map!r}: write student:teacher layer pairs (1:2,3:4,6:6) "
                                  "or student layers (2,4,6)") from None
            changes.update(student_layers=student, teacher_layers=teacher)
            if len(set(self.layer_weights)) == 1:  # one λ for all carries over (none: 1 for all)
                pairs = (self.layer_weights[0],) * len(student)
            elif self.layer_weights and kd_weight is None and len(self.layer_weights) != len(student):
                raise ConfigError(f"--layer-map names {len(student)} layers but kd layer_weights has "
                                  f"{len(self.layer_weights)}; give --kd-weight for all of them")
            changes["layer_weights"] = pairs
        if kd_weight is not None:
            count = len(changes.get("student_layers", self.student_layers)) or len(self.layer_weights)
            if not count:
                raise ConfigError("--kd-weight: name the student layers it weighs (--layer-map, or kd "
                                  "student_layers / layer_weights in the KD YAML)")
            changes["layer_weights"] = (kd_weight,) * count
        return dataclasses.replace(self, **changes)

    @property
    def reads_teacher_outputs(self) -> bool:
        """Whether a term reads the teachers' hidden layers, posteriors or attention maps; without
        one (sequence-level KD alone: the pseudo-label baseline) training never runs a teacher."""
        layers = not self.layer_weights or any(w > 0 for w in self.layer_weights)
        return layers or self.kl_weight > 0 or self.attention_weight > 0


@dataclasses.dataclass(frozen=True)
class FeatureSpec:
    """The features a model reads (lhotse's names)."""

    type: str = "kaldi-fbank"
    num_features: int = 80
    frame_shift: float = 0.01
    sampling_rate: int = 16000


@dataclasses.dataclass(frozen=True)
class InferenceSpec:
    """What inference needs besides the weights; filled in by the stage from its data."""

    languages: tuple[str, ...] = ()  # of the training text (the model dir's text/<lang>.txt)
    normalize_text: bool = False  # transcripts normalised by `mlkd prepare --normalize-text`
    features: FeatureSpec = FeatureSpec()
    tokenizer: TokenizerConfig = TokenizerConfig()


@dataclasses.dataclass(frozen=True, kw_only=True)
class StageConfig:
    """What every training stage reads: data, architecture, optimisation, sets."""

    data: str
    model: ModelConfig = ModelConfig()
    train: TrainConfig = TrainConfig()
    train_set: str = "train"
    dev_set: str = "dev"
    inference: InferenceSpec = InferenceSpec()


@dataclasses.dataclass(frozen=True, kw_only=True)
class TeacherConfig(StageConfig):
    lang: str


@dataclasses.dataclass(frozen=True, kw_only=True)
class FinetuneConfig(StageConfig):
    init: str = ""  # experiment dir of the model to start from (a distilled student); "" = from scratch
    lid_weight: float = 1.0  # λ

    def __post_init__(self) -> None:
        if self.lid_weight < 0:
            raise ConfigError(f"lid_weight must be >= 0, got {self.lid_weight}")


@dataclasses.dataclass(frozen=True, kw_only=True)
class DistillConfig(StageConfig):
    teachers: tuple[str, ...]  # LANG=[KIND:]PATH, one per language of the training data
    kd: KdConfig = KdConfig()
    # Untranscribed sets of the data dir, taught by the teachers alone (no CTC on transcripts).
    unlabeled_sets: tuple[str, ...] = dataclasses.field(default=(), metadata=ADDED)
    # The student is language-adaptive from the start (conditioned on the true language,
    # with the language-ID loss at this weight), like the model fine-tuning makes of it.
    language_adaptive: bool = True
    lid_weight: float = 1.0

    @property
    def teacher_precision(self) -> str:
        """The precision the teachers run in."""
        return self.kd.teacher_precision or self.train.precision


# config.yaml's ``command`` → the dataclass that reads it
STAGE_CONFIGS: dict[str, type[StageConfig]] = {
    "train-teacher": TeacherConfig,
    "distill": DistillConfig,
    "finetune": FinetuneConfig,
}
